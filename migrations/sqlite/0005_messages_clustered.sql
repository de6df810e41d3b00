-- Messages clustered by conversation (WITHOUT ROWID: the primary key is the table). A rowid
-- table interleaves the conversations' messages in arrival order, so reading a conversation's
-- last 20 messages touched up to 20 table pages through a separate key index, and every append
-- wrote both B-trees. Clustered, those messages sit on one or two pages, and an append writes
-- one tree. (Measured: BENCHMARKS.md, issue 3.)
CREATE TABLE messages_clustered (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    id              TEXT NOT NULL,
    role            TEXT NOT NULL,
    content         TEXT NOT NULL,
    surface         TEXT NOT NULL DEFAULT '',
    mode            TEXT NOT NULL DEFAULT '',
    timestamp       INTEGER NOT NULL,
    meta            TEXT NOT NULL DEFAULT 'null',
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;

-- In key order, so the new tree is built densely. A message whose conversation is gone (only a
-- write with foreign keys off could leave one) has no place in it and is dropped with the old
-- table.
INSERT INTO messages_clustered (conversation_id, seq, id, role, content, surface, mode, timestamp, meta)
    SELECT conversation_id, seq, id, role, content, surface, mode, timestamp, meta FROM messages
    WHERE conversation_id IN (SELECT id FROM conversations)
    ORDER BY conversation_id, seq;

-- The old pages are zeroed as they are freed (`secure_delete`), so no copy of a message is
-- left behind in the file.
DROP TABLE messages;
ALTER TABLE messages_clustered RENAME TO messages;
