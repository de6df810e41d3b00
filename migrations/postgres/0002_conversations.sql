-- Conversations (SPEC §2.5). Timestamps are Unix milliseconds; list-valued fields are JSON
-- text (not jsonb), so they read back byte for byte as written, as in the SQLite store.
CREATE TABLE IF NOT EXISTS conversations (
    id            TEXT PRIMARY KEY NOT NULL,
    owner         TEXT NOT NULL,
    topic         TEXT NOT NULL DEFAULT '',
    surfaces      TEXT NOT NULL DEFAULT '[]',
    tags          TEXT NOT NULL DEFAULT '[]',
    artifacts     TEXT NOT NULL DEFAULT '[]',
    status        TEXT NOT NULL DEFAULT 'active',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    message_count BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS conversations_owner ON conversations (owner, updated_at);
CREATE INDEX IF NOT EXISTS conversations_updated_at ON conversations (updated_at);

-- Messages of a conversation, in `seq` order; deleting a conversation deletes its messages.
CREATE TABLE IF NOT EXISTS messages (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    id              TEXT NOT NULL,
    role            TEXT NOT NULL,
    content         TEXT NOT NULL,
    surface         TEXT NOT NULL DEFAULT '',
    mode            TEXT NOT NULL DEFAULT '',
    timestamp       BIGINT NOT NULL,
    meta            TEXT NOT NULL DEFAULT 'null',
    PRIMARY KEY (conversation_id, seq)
);
