DROP TABLE note_tags;
DROP TABLE notes;
DROP TABLE id_counters;
