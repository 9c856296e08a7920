-- Version 3: message references, so that a card with a key edits or replies to the message
-- its key's first card made, whichever instance sends it.

-- Where a chat keeps a keyed card's message: written before the delivery that made or last
-- used it is recorded; pruned once unused for `delivery.keep_message_refs`.
CREATE TABLE message_refs (
    connection text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    message text NOT NULL,
    place text,
    delivery text NOT NULL,
    at_ms bigint NOT NULL,
    PRIMARY KEY (connection, key)
);
CREATE INDEX message_refs_by_age ON message_refs (at_ms);
