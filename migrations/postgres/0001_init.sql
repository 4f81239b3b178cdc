-- liberad's state on PostgreSQL: the same tables as on SQLite, so that the
-- same statements serve both. Instants are UTC seconds since the Unix epoch.

CREATE TABLE contracts (
    -- The id as the billing system knows it.
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL DEFAULT '',
    state            TEXT NOT NULL
                     CHECK (state IN ('active', 'reduced', 'blocked', 'cancelled')),
    state_changed_at BIGINT NOT NULL,
    created_at       BIGINT NOT NULL
);

CREATE INDEX contracts_state ON contracts (state);

CREATE TABLE logins (
    username      TEXT PRIMARY KEY,
    contract_id   TEXT NOT NULL REFERENCES contracts (id),
    -- Kept in clear text: CHAP and MS-CHAPv2 need the secret itself.
    password      TEXT NOT NULL,
    password_type TEXT NOT NULL DEFAULT 'cleartext'
                  CHECK (password_type IN ('cleartext')),
    -- Reply attributes, one 'Name = value' per line.
    reply         TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE INDEX logins_contract ON logins (contract_id);

-- One row per release. History: a row is never deleted, and the only
-- update ever made records its end, once.
CREATE TABLE releases (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contract_id TEXT NOT NULL REFERENCES contracts (id),
    started_at  BIGINT NOT NULL,
    ends_at     BIGINT NOT NULL CHECK (ends_at > started_at),
    operator    TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    actor_uid   BIGINT,
    ended_at    BIGINT,
    end_reason  TEXT CHECK (end_reason IN ('expired', 'unblocked', 'revoked')),
    ended_by    TEXT,
    end_note    TEXT,
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);

-- At most one release of a contract is open: the database itself refuses
-- a second, whichever instance asks.
CREATE UNIQUE INDEX releases_one_open ON releases (contract_id) WHERE ended_at IS NULL;
CREATE INDEX releases_by_contract ON releases (contract_id, started_at);
CREATE INDEX releases_open_by_end ON releases (ends_at) WHERE ended_at IS NULL;

CREATE FUNCTION releases_are_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'releases are history and are never deleted';
    END IF;
    IF OLD.ended_at IS NOT NULL
       OR NEW.contract_id IS DISTINCT FROM OLD.contract_id
       OR NEW.started_at IS DISTINCT FROM OLD.started_at
       OR NEW.ends_at IS DISTINCT FROM OLD.ends_at
       OR NEW.operator IS DISTINCT FROM OLD.operator
       OR NEW.reason IS DISTINCT FROM OLD.reason
       OR NEW.actor_uid IS DISTINCT FROM OLD.actor_uid THEN
        RAISE EXCEPTION 'a release is only ever updated to record its end, once';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER releases_are_history
BEFORE UPDATE OR DELETE ON releases
FOR EACH ROW EXECUTE FUNCTION releases_are_history();

-- The temporary-release parameters: exactly one row.
CREATE TABLE parameters (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    enabled          BOOLEAN NOT NULL,
    release_days     BIGINT NOT NULL CHECK (release_days BETWEEN 1 AND 90),
    renew_after_days BIGINT NOT NULL CHECK (renew_after_days BETWEEN 0 AND 365)
);

INSERT INTO parameters (id, enabled, release_days, renew_after_days) VALUES (1, TRUE, 1, 30);

-- Append-only: who did what, when, and how it ended.
CREATE TABLE audit (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor_uid   BIGINT,
    operator    TEXT,
    action      TEXT NOT NULL,
    contract_id TEXT,
    detail      TEXT NOT NULL DEFAULT '',
    outcome     TEXT NOT NULL
);

CREATE INDEX audit_by_contract ON audit (contract_id, id);

CREATE FUNCTION audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;

CREATE TRIGGER audit_is_append_only
BEFORE UPDATE OR DELETE ON audit
FOR EACH ROW EXECUTE FUNCTION audit_is_append_only();

-- Online sessions, kept from RADIUS accounting (see the SQLite schema).
CREATE TABLE sessions (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_key        TEXT NOT NULL,
    nas_name           TEXT NOT NULL,
    nas_identity       TEXT NOT NULL,
    nas_address        TEXT NOT NULL,
    nas_ip_address     TEXT,
    nas_identifier     TEXT,
    username           TEXT NOT NULL,
    contract_id        TEXT,
    acct_session_id    TEXT NOT NULL,
    framed_ip_address  TEXT,
    calling_station_id TEXT,
    nas_port_id        TEXT,
    started_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    stopped_at         BIGINT,
    session_time       BIGINT,
    input_octets       BIGINT NOT NULL DEFAULT 0,
    output_octets      BIGINT NOT NULL DEFAULT 0,
    terminate_cause    TEXT
);

CREATE UNIQUE INDEX sessions_one_open ON sessions (session_key) WHERE stopped_at IS NULL;
CREATE INDEX sessions_by_key ON sessions (session_key, id);
CREATE INDEX sessions_open_by_contract ON sessions (contract_id) WHERE stopped_at IS NULL;
CREATE INDEX sessions_open_by_user ON sessions (username) WHERE stopped_at IS NULL;
CREATE INDEX sessions_open_by_nas ON sessions (nas_name, nas_identity) WHERE stopped_at IS NULL;
CREATE INDEX sessions_by_start ON sessions (started_at);

-- The enforcement outbox (see the SQLite schema), with leases so that
-- instances sharing the database take over each other's jobs.
CREATE TABLE enforcement (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    contract_id  TEXT NOT NULL,
    session_id   BIGINT NOT NULL REFERENCES sessions (id),
    profile      TEXT NOT NULL
                 CHECK (profile IN ('active', 'released', 'reduced', 'blocked', 'reject')),
    cause        TEXT NOT NULL,
    state        TEXT NOT NULL
                 CHECK (state IN ('pending', 'sent', 'acked', 'nak', 'timeout',
                                  'superseded', 'dropped')),
    kind         TEXT CHECK (kind IN ('coa', 'disconnect')),
    fallback     BOOLEAN NOT NULL DEFAULT FALSE,
    packet       BYTEA,
    sends        BIGINT NOT NULL DEFAULT 0,
    error_cause  BIGINT,
    outcome      TEXT,
    finished_at  BIGINT,
    claimed_by   TEXT,
    lease_until  BIGINT
);

CREATE INDEX enforcement_pending ON enforcement (state, id) WHERE state IN ('pending', 'sent');
CREATE INDEX enforcement_by_session ON enforcement (session_id, id);
CREATE INDEX enforcement_by_contract ON enforcement (contract_id, id);
