-- Runs once, when the database volume is first initialised.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS collections (
    name      text PRIMARY KEY,
    embedding vector(3) NOT NULL
);

INSERT INTO collections (name, embedding) VALUES
    ('manuals', '[3,4,0]'),
    ('runbooks', '[1,2,2]')
ON CONFLICT (name) DO NOTHING;
