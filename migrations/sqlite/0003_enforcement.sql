-- The enforcement outbox: one row per CoA / Disconnect owed to an online
-- session after its contract's effective profile changed. A row is written
-- in the same transaction as the change, before anything is sent, so no
-- enforcement is lost to a crash; the packet is kept once built so that a
-- retransmission, even after a restart, is byte-identical.

CREATE TABLE enforcement (
    id           INTEGER PRIMARY KEY,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    contract_id  TEXT NOT NULL,
    session_id   INTEGER NOT NULL REFERENCES sessions (id),
    -- The profile the session must move to; 'reject' for a cancelled contract.
    profile      TEXT NOT NULL
                 CHECK (profile IN ('active', 'released', 'reduced', 'blocked', 'reject')),
    -- What caused it: "release 12 started", "state blocked -> active", ...
    cause        TEXT NOT NULL,
    -- pending: not sent yet; sent: in flight; the rest are final.
    state        TEXT NOT NULL
                 CHECK (state IN ('pending', 'sent', 'acked', 'nak', 'timeout',
                                  'superseded', 'dropped')),
    -- coa or disconnect, decided when first sent.
    kind         TEXT CHECK (kind IN ('coa', 'disconnect')),
    -- Set once a CoA fell back to Disconnect.
    fallback     INTEGER NOT NULL DEFAULT 0 CHECK (fallback IN (0, 1)),
    packet       BLOB,
    sends        INTEGER NOT NULL DEFAULT 0,
    error_cause  INTEGER,
    -- What happened, in words: "CoA-ACK", "CoA-NAK 503 ...; Disconnect-ACK".
    outcome      TEXT,
    finished_at  INTEGER
) STRICT;

CREATE INDEX enforcement_pending ON enforcement (state, id) WHERE state IN ('pending', 'sent');
CREATE INDEX enforcement_by_session ON enforcement (session_id, id);
CREATE INDEX enforcement_by_contract ON enforcement (contract_id, id);
