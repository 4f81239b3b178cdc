-- A login may keep only the NT hash of its password (MS-CHAPv2 and PAP
-- work with it, CHAP does not). SQLite cannot change a CHECK constraint,
-- so the table is rebuilt; nothing refers to it by a foreign key.

CREATE TABLE logins_new (
    username      TEXT PRIMARY KEY NOT NULL,
    contract_id   TEXT NOT NULL REFERENCES contracts (id),
    -- The password in clear text (CHAP needs it), or its NT hash in
    -- lower-case hex.
    password      TEXT NOT NULL,
    password_type TEXT NOT NULL DEFAULT 'cleartext'
                  CHECK (password_type IN ('cleartext', 'nt_hash')),
    -- Reply attributes, one 'Name = value' per line.
    reply         TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

INSERT INTO logins_new (username, contract_id, password, password_type, reply, created_at, updated_at)
SELECT username, contract_id, password, password_type, reply, created_at, updated_at FROM logins;

DROP TABLE logins;
ALTER TABLE logins_new RENAME TO logins;
CREATE INDEX logins_contract ON logins (contract_id);
