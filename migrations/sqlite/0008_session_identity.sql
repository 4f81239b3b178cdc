-- Sessions are told apart as FreeRADIUS's acct_unique tells them: by the
-- NAS, User-Name, Acct-Session-Id, NAS-Port and NAS-Port-Id, so that two
-- subscribers given the same Acct-Session-Id (pppd derives it from the
-- second alone) are two sessions. New rows carry a key made of all five;
-- a session recorded before keeps its old key (NAS and Acct-Session-Id)
-- until its next packet finds it under that key and gives it the new one.

-- A packet whose key finds no session (its NAS left NAS-Port out, or the
-- session has the old key) is matched by these.
CREATE INDEX sessions_by_acct_session_id ON sessions (acct_session_id, nas_name);

ALTER TABLE sessions ADD COLUMN nas_port INTEGER;

-- Whether the session's NAS takes CoA and Disconnect requests: no
-- enforcement job is queued for a session on a NAS with coa_mode = "none";
-- a change reaches it at its next connection.
ALTER TABLE sessions ADD COLUMN takes_coa INTEGER NOT NULL DEFAULT 1;

-- The NAS entries and source addresses seen sending Message-Authenticator
-- in an Access-Request: with require_message_authenticator = "auto", one
-- is required from them from then on (BlastRADIUS, CVE-2024-3596).
CREATE TABLE message_authenticator_seen (
    nas_name   TEXT NOT NULL,
    source     TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    PRIMARY KEY (nas_name, source)
) STRICT;
