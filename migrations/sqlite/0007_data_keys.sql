-- Per-user data keys (issue 18): each user's conversation content is encrypted under a random
-- key of their own, stored here wrapped (encrypted) under a key derived from the vault key.
-- Kept in a table of its own so a data backup can leave it out: deleting a user's row here
-- ("forget") makes every copy of their content unreadable. `kek` names the vault key that
-- wraps it (a public fingerprint), so rotation knows what is left to re-wrap.
CREATE TABLE IF NOT EXISTS data_keys (
    user_id    TEXT PRIMARY KEY NOT NULL,
    wrapped    TEXT NOT NULL,
    kek        TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
