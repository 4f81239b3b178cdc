-- liberad's state on SQLite. Instants are UTC seconds since the Unix epoch.

CREATE TABLE contracts (
    -- The id as the billing system knows it.
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL DEFAULT '',
    state            TEXT NOT NULL
                     CHECK (state IN ('active', 'reduced', 'blocked', 'cancelled')),
    state_changed_at INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
) STRICT;

CREATE INDEX contracts_state ON contracts (state);

CREATE TABLE logins (
    username      TEXT PRIMARY KEY NOT NULL,
    contract_id   TEXT NOT NULL REFERENCES contracts (id),
    -- Kept in clear text: CHAP and MS-CHAPv2 need the secret itself.
    password      TEXT NOT NULL,
    password_type TEXT NOT NULL DEFAULT 'cleartext'
                  CHECK (password_type IN ('cleartext')),
    -- Reply attributes, one 'Name = value' per line.
    reply         TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX logins_contract ON logins (contract_id);

-- One row per release. History: a row is never deleted, and the only
-- update ever made records its end, once.
CREATE TABLE releases (
    id          INTEGER PRIMARY KEY,
    contract_id TEXT NOT NULL REFERENCES contracts (id),
    started_at  INTEGER NOT NULL,
    ends_at     INTEGER NOT NULL CHECK (ends_at > started_at),
    operator    TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    actor_uid   INTEGER,
    ended_at    INTEGER,
    end_reason  TEXT CHECK (end_reason IN ('expired', 'unblocked', 'revoked')),
    ended_by    TEXT,
    end_note    TEXT,
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
) STRICT;

-- At most one release of a contract is open (not yet recorded as ended):
-- the database itself refuses a second.
CREATE UNIQUE INDEX releases_one_open ON releases (contract_id) WHERE ended_at IS NULL;
CREATE INDEX releases_by_contract ON releases (contract_id, started_at);
CREATE INDEX releases_open_by_end ON releases (ends_at) WHERE ended_at IS NULL;

CREATE TRIGGER releases_are_never_deleted
BEFORE DELETE ON releases
BEGIN
    SELECT RAISE(ABORT, 'releases are history and are never deleted');
END;

CREATE TRIGGER releases_only_record_their_end
BEFORE UPDATE ON releases
WHEN OLD.ended_at IS NOT NULL
  OR NEW.contract_id IS NOT OLD.contract_id
  OR NEW.started_at IS NOT OLD.started_at
  OR NEW.ends_at IS NOT OLD.ends_at
  OR NEW.operator IS NOT OLD.operator
  OR NEW.reason IS NOT OLD.reason
  OR NEW.actor_uid IS NOT OLD.actor_uid
BEGIN
    SELECT RAISE(ABORT, 'a release is only ever updated to record its end, once');
END;

-- The temporary-release parameters: exactly one row.
CREATE TABLE parameters (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    enabled          INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    release_days     INTEGER NOT NULL CHECK (release_days BETWEEN 1 AND 90),
    renew_after_days INTEGER NOT NULL CHECK (renew_after_days BETWEEN 0 AND 365)
) STRICT;

INSERT INTO parameters (id, enabled, release_days, renew_after_days) VALUES (1, 1, 1, 30);

-- Append-only: who did what, when, and how it ended.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor_uid   INTEGER,
    operator    TEXT,
    action      TEXT NOT NULL,
    contract_id TEXT,
    detail      TEXT NOT NULL DEFAULT '',
    outcome     TEXT NOT NULL
) STRICT;

CREATE INDEX audit_by_contract ON audit (contract_id, id);

CREATE TRIGGER audit_is_never_updated
BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_is_never_deleted
BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
