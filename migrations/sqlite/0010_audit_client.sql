-- A change asked for over the HTTP API names, in the audit trail, the
-- token it presented and the client's address.
ALTER TABLE audit ADD COLUMN token TEXT;
ALTER TABLE audit ADD COLUMN client_address TEXT;
