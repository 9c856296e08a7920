-- Version 2: several instances on one database.

-- Now by the server's clock, in Unix milliseconds: leases expire by one clock, whichever
-- instance looks.
CREATE FUNCTION cardwire_now_ms() RETURNS bigint
    LANGUAGE sql VOLATILE
    AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;

-- Which instance delivers a connection's cards: one at a time. `lease` changes with every
-- new holder, and every move of a card checks it, so a worker whose lease expired cannot
-- complete a card that another instance has taken since. Renewed by the holder while it
-- lives; an instance that dies lets its leases expire.
CREATE TABLE leases (
    connection text COLLATE "C" PRIMARY KEY,
    holder text NOT NULL,
    lease bigint NOT NULL,
    expires_ms bigint NOT NULL
);
CREATE INDEX leases_by_holder ON leases (holder);

-- Rate limits shared by every instance (a rule's limit, a connection's limit, Teams' caps):
-- GCRA, one row a key, holding its theoretical arrival time.
CREATE TABLE limits (
    key text COLLATE "C" PRIMARY KEY,
    tat_ms bigint NOT NULL
);
