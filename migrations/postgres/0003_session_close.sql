-- How a session was closed, and when each NAS last restarted (see the
-- SQLite schema).

ALTER TABLE sessions ADD COLUMN closed_by TEXT
    CHECK (closed_by IN ('stop', 'nas_on', 'nas_off', 'gone'));

CREATE TABLE nas_restarts (
    nas_name     TEXT NOT NULL,
    nas_identity TEXT NOT NULL,
    at           BIGINT NOT NULL,
    PRIMARY KEY (nas_name, nas_identity)
);
