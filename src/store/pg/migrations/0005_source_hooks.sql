-- Version 5: the GitLab project hooks made for sources with an access token, their tokens sealed.

CREATE TABLE source_hooks (
    key text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);
