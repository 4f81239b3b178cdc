-- Online sessions, kept from RADIUS accounting. A row is one session of a
-- login on a NAS; it is closed (stopped_at) by Stop, by Accounting-On/Off
-- of its NAS, or by a CoA answer saying the NAS no longer has it.

CREATE TABLE sessions (
    id                 INTEGER PRIMARY KEY,
    -- NAS name, the NAS's own identity and Acct-Session-Id: unique among
    -- open sessions.
    session_key        TEXT NOT NULL,
    -- The [[nas]] entry the packets matched.
    nas_name           TEXT NOT NULL,
    -- The device itself: NAS-Identifier, else NAS-IP-Address, else the
    -- address the packets came from.
    nas_identity       TEXT NOT NULL,
    -- The address the packets came from (where CoA is sent).
    nas_address        TEXT NOT NULL,
    nas_ip_address     TEXT,
    nas_identifier     TEXT,
    username           TEXT NOT NULL,
    -- The login's contract when the session was recorded.
    contract_id        TEXT,
    acct_session_id    TEXT NOT NULL,
    framed_ip_address  TEXT,
    calling_station_id TEXT,
    nas_port_id        TEXT,
    started_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    stopped_at         INTEGER,
    session_time       INTEGER,
    input_octets       INTEGER NOT NULL DEFAULT 0,
    output_octets      INTEGER NOT NULL DEFAULT 0,
    terminate_cause    TEXT
) STRICT;

CREATE UNIQUE INDEX sessions_one_open ON sessions (session_key) WHERE stopped_at IS NULL;
CREATE INDEX sessions_by_key ON sessions (session_key, id);
CREATE INDEX sessions_open_by_contract ON sessions (contract_id) WHERE stopped_at IS NULL;
CREATE INDEX sessions_open_by_user ON sessions (username) WHERE stopped_at IS NULL;
CREATE INDEX sessions_open_by_nas ON sessions (nas_name, nas_identity) WHERE stopped_at IS NULL;
CREATE INDEX sessions_by_start ON sessions (started_at);
