-- The notes example's schema; written once for SQLite and PostgreSQL.
-- Ids come from a counter row: both engines serialize its update, so concurrent
-- inserts never pick the same id (no engine-specific SERIAL or AUTOINCREMENT).
CREATE TABLE id_counters (
    name TEXT PRIMARY KEY,
    last_id BIGINT NOT NULL
);
INSERT INTO id_counters (name, last_id) VALUES ('notes', 0);

CREATE TABLE notes (
    id BIGINT PRIMARY KEY,
    title TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);

CREATE TABLE note_tags (
    note_id BIGINT NOT NULL REFERENCES notes (id) ON DELETE CASCADE,
    tag TEXT NOT NULL CHECK (length(tag) BETWEEN 1 AND 30),
    PRIMARY KEY (note_id, tag)
);
