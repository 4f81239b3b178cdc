-- How a session was closed: by an Accounting-Request Stop ('stop'), by
-- Accounting-On or -Off of its NAS ('nas_on', 'nas_off'), or by a CoA
-- answer saying the NAS no longer has it ('gone'). A Stop is final: a Start
-- for the same session that arrives after it is late and reopens nothing.
-- Sessions closed before this column existed have none.

ALTER TABLE sessions ADD COLUMN closed_by TEXT
    CHECK (closed_by IN ('stop', 'nas_on', 'nas_off', 'gone'));

-- When each NAS last said it (re)started or stopped (Accounting-On/Off):
-- after that, it may give a new session the id of an old one.
CREATE TABLE nas_restarts (
    nas_name     TEXT NOT NULL,
    nas_identity TEXT NOT NULL,
    at           INTEGER NOT NULL,
    PRIMARY KEY (nas_name, nas_identity)
) STRICT;
