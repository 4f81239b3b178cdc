-- Several instances may share a database: an instance claims an
-- enforcement job for a while (a lease) and renews it with each send, so
-- that another can take over the jobs of one that died.

ALTER TABLE enforcement ADD COLUMN claimed_by TEXT;
ALTER TABLE enforcement ADD COLUMN lease_until INTEGER;
