-- Tool calls that wait for the person's approval (issue 27, `tools = { NAME = "ask" }`): the
-- waiting server writes a row, the privacy center or `maestra mcp approve` (from any process
-- or instance sharing the store) decides it, and the waiting server deletes it when its wait
-- ends. The call's arguments are never stored: only their size and keyed digest.
CREATE TABLE tool_approvals (
    id TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    asked_by TEXT NOT NULL,
    arguments_bytes INTEGER NOT NULL,
    arguments_digest TEXT NOT NULL,
    asked_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    decision TEXT CHECK (decision IN ('approved', 'denied')),
    decided_by TEXT,
    decided_at INTEGER
);
CREATE INDEX tool_approvals_expires ON tool_approvals (expires_at);
