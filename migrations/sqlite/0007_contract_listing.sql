-- Contracts are listed in pages, ordered as numbers are (shorter ids
-- first): the index serves each page without sorting every contract.

CREATE INDEX contracts_listing ON contracts (length(id), id);
