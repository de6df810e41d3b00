-- Keys belong to someone and can do only what they are for (issue 15): the user a key acts
-- for, its scope, the personal services it may call (JSON list; NULL: every configured one)
-- and when it expires. Keys made before scopes could do everything: they stay `admin`, so
-- nothing that works today breaks; `maestra keys create` makes `assistant` keys by default.
ALTER TABLE api_keys ADD COLUMN user_id TEXT;
ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin'
    CHECK (scope IN ('read', 'assistant', 'admin'));
ALTER TABLE api_keys ADD COLUMN services TEXT;
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
