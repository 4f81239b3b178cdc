-- API tokens: a name, a role, and only the SHA-256 of the token's secret
-- (the token itself is shown once, when it is made). The prefix, random
-- and shown in the token, finds its row; the secret is then compared in
-- constant time. A revoked token keeps its row, so its name is never
-- given to another.
CREATE TABLE tokens (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('read', 'release', 'billing', 'admin')),
    prefix TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    last_used_at INTEGER
);
