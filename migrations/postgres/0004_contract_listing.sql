-- Contracts are listed in pages (see the SQLite schema).

CREATE INDEX contracts_listing ON contracts (length(id), id);
