-- Sessions keyed by NAS, User-Name, Acct-Session-Id, NAS-Port and
-- NAS-Port-Id, and the NAS seen sending Message-Authenticator (see the
-- SQLite schema).

-- A packet whose key finds no session (its NAS left NAS-Port out, or the
-- session has the old key) is matched by these.
CREATE INDEX sessions_by_acct_session_id ON sessions (acct_session_id, nas_name);

ALTER TABLE sessions ADD COLUMN nas_port BIGINT;

ALTER TABLE sessions ADD COLUMN takes_coa BOOLEAN NOT NULL DEFAULT TRUE;

CREATE TABLE message_authenticator_seen (
    nas_name   TEXT NOT NULL,
    source     TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    PRIMARY KEY (nas_name, source)
);
