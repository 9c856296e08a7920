-- Version 4: the GitHub Apps made for sources from a manifest, their secrets sealed.

CREATE TABLE source_apps (
    source text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);
