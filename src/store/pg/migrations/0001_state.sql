-- cardwire's state in PostgreSQL, version 1: every kind of record the sled store keeps, one
-- table each. Records are the same JSON the sled store writes (serde), in `text` columns: the
-- gateway reads them whole and never queries inside them. Times are Unix milliseconds. Keys
-- and ids sort by their bytes (COLLATE "C"), as sled's keys do, whatever the database's locale.

-- Connections, their webhook URLs and user ids sealed (XChaCha20-Poly1305, the shared key).
CREATE TABLE connections (
    id text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);

-- When each connection last got a card.
CREATE TABLE last_delivery (
    connection text COLLATE "C" PRIMARY KEY,
    at_ms bigint NOT NULL
);

-- Connect flows in progress (single use: a state is deleted when its callback takes it).
CREATE TABLE flow_states (
    state text COLLATE "C" PRIMARY KEY,
    record text NOT NULL,
    created_ms bigint NOT NULL
);

-- Upstream delivery ids accepted (X-GitHub-Delivery, Idempotency-Key) and the event each got.
CREATE TABLE seen (
    key text COLLATE "C" PRIMARY KEY,
    event text NOT NULL,
    claimed_ms bigint NOT NULL
);
CREATE INDEX seen_by_time ON seen (claimed_ms);

-- Queued cards, in order per connection (seq), each with its delivery id.
CREATE TABLE outbox (
    seq bigserial PRIMARY KEY,
    connection text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL UNIQUE,
    retrying boolean NOT NULL DEFAULT false,
    record text NOT NULL
);
CREATE INDEX outbox_by_connection ON outbox (connection, seq);

-- Cards that will not be delivered without help.
CREATE TABLE dead (
    id text COLLATE "C" PRIMARY KEY,
    connection text COLLATE "C" NOT NULL,
    dead_ms bigint NOT NULL,
    record text NOT NULL
);

-- Delivered cards (without their bodies), kept for delivery.keep_delivered.
CREATE TABLE delivered (
    id text COLLATE "C" PRIMARY KEY,
    connection text COLLATE "C" NOT NULL,
    delivered_ms bigint NOT NULL,
    record text NOT NULL
);
CREATE INDEX delivered_by_time ON delivered (delivered_ms);

-- Noise control: dedup keys, fold buckets and their items, digest items and due times.
CREATE TABLE dedup (
    key text COLLATE "C" PRIMARY KEY,
    expires_ms bigint NOT NULL
);
CREATE TABLE fold_buckets (
    id text COLLATE "C" PRIMARY KEY,
    due_ms bigint NOT NULL,
    record text NOT NULL
);
CREATE INDEX fold_buckets_by_due ON fold_buckets (due_ms);
CREATE TABLE fold_items (
    seq bigserial PRIMARY KEY,
    bucket text COLLATE "C" NOT NULL,
    record text NOT NULL
);
CREATE INDEX fold_items_by_bucket ON fold_items (bucket, seq);
CREATE TABLE digest_items (
    seq bigserial PRIMARY KEY,
    connection text COLLATE "C" NOT NULL,
    record text NOT NULL
);
CREATE INDEX digest_items_by_connection ON digest_items (connection, seq);
CREATE TABLE digest_due (
    connection text COLLATE "C" PRIMARY KEY,
    due_ms bigint NOT NULL
);

-- The playground's ring of recent events (the newest 50 are kept).
CREATE TABLE recent_events (
    seq bigserial PRIMARY KEY,
    record text NOT NULL
);
