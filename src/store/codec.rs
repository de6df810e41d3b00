//! Column encoding shared by both backends, so they store and report the same way.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Encodes a value as the JSON text stored in a column. The error names the field, never the
/// value, which may be conversation content.
pub(super) fn to_json<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::Store(format!("cannot encode {what} as JSON")).because(e))
}

/// Decodes a JSON column; the error names the field, never the stored text.
pub(super) fn from_json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    // The parser's error is dropped on purpose: it may quote the stored text.
    serde_json::from_str(text).map_err(|_| Error::Store(format!("stored {what} is not valid JSON")))
}

/// A count or position as the signed 64-bit integer both databases store.
pub(super) fn to_i64(what: &str, n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::Store(format!("{what} out of range")))
}

/// A stored count back as unsigned; a negative one (never written by this code) reads as 0.
pub(super) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The error for a conversation owned by someone else: indistinguishable from a missing one.
pub(super) fn not_found(id: &str) -> Error {
    Error::NotFound(format!("conversation {id:?}"))
}

/// The error for an append that would take a conversation over its message limit.
pub(super) fn too_large(id: &str, max: u64) -> Error {
    Error::TooLarge(format!(
        "conversation {id:?} would exceed its limit of {max} messages"
    ))
}

/// Adds `surface` to `surfaces` unless it is empty or already there.
pub(super) fn add_surface(surfaces: &mut Vec<String>, surface: &str) -> bool {
    if surface.is_empty() || surfaces.iter().any(|s| s == surface) {
        return false;
    }
    surfaces.push(surface.to_owned());
    true
}

/// A stored key scope. A value this code never writes is a store error, not a guess.
pub(super) fn key_scope(text: &str) -> Result<crate::access::scope::KeyScope> {
    crate::access::scope::KeyScope::parse(text)
        .ok_or_else(|| Error::Store("an API key has an unknown scope".into()))
}

/// A stored message from its row, on either backend.
pub(super) fn message<'r, R>(row: &'r R) -> Result<crate::conversations::model::Message>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(crate::conversations::model::Message {
        id: row.try_get("id")?,
        role: row.try_get("role")?,
        content: row.try_get("content")?,
        surface: row.try_get("surface")?,
        mode: row.try_get("mode")?,
        timestamp: row.try_get("timestamp")?,
        meta: from_json("message meta", &row.try_get::<String, _>("meta")?)?,
    })
}

/// A conversation's header from its row, on either backend.
pub(super) fn summary<'r, R>(row: &'r R) -> Result<crate::conversations::model::Summary>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(crate::conversations::model::Summary {
        id: row.try_get("id")?,
        topic: row.try_get("topic")?,
        owner: row.try_get("owner")?,
        surfaces: from_json("surfaces", &row.try_get::<String, _>("surfaces")?)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        message_count: to_u64(row.try_get("message_count")?),
    })
}

/// Conversations after `?1` (in id order, at most `?2`), all of them: only opening a value
/// tells a sealed one from plaintext that starts like one, so the migration decides. `?N`
/// numbering reads the same in both databases' dialects once PostgreSQL's `$` replaces `?`
/// (see `dollars`).
pub(super) const RAW_CONVERSATIONS_SQL: &str = "
    SELECT id, owner, topic, tags, artifacts FROM conversations
    WHERE id > ?1 ORDER BY id LIMIT ?2";

/// Messages after `(?1, ?2)` in `(conversation_id, seq)` order, at most `?3`, each with its
/// conversation's owner (all of them, as above).
pub(super) const RAW_MESSAGES_SQL: &str = "
    SELECT m.conversation_id, m.seq, m.id, c.owner, m.content, m.meta
    FROM messages AS m JOIN conversations AS c ON c.id = m.conversation_id
    WHERE (m.conversation_id, m.seq) > (?1, ?2)
    ORDER BY m.conversation_id, m.seq LIMIT ?3";

/// Rewrites one conversation's content columns where the row still holds what was read.
pub(super) const RAW_CONVERSATION_REWRITE_SQL: &str = "
    UPDATE conversations SET topic = ?1, tags = ?2, artifacts = ?3
    WHERE id = ?4 AND owner = ?5 AND topic = ?6 AND tags = ?7 AND artifacts = ?8";

/// Rewrites one message's content columns where the row still holds what was read.
pub(super) const RAW_MESSAGE_REWRITE_SQL: &str = "
    UPDATE messages SET content = ?1, meta = ?2
    WHERE conversation_id = ?3 AND seq = ?4 AND content = ?5 AND meta = ?6";

/// The `data_keys` statements, the same on both backends.
pub(super) const DATA_KEY_GET_SQL: &str = "SELECT * FROM data_keys WHERE user_id = ?1";
pub(super) const DATA_KEY_INSERT_SQL: &str = "
    INSERT INTO data_keys (user_id, wrapped, kek, created_at) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (user_id) DO NOTHING";
pub(super) const DATA_KEY_DELETE_SQL: &str = "DELETE FROM data_keys WHERE user_id = ?1";
pub(super) const DATA_KEY_LIST_SQL: &str = "SELECT * FROM data_keys ORDER BY user_id";
/// Compare-and-swap: only a key still wrapped as read is re-wrapped.
pub(super) const DATA_KEY_SWAP_SQL: &str =
    "UPDATE data_keys SET wrapped = ?1, kek = ?2 WHERE user_id = ?3 AND wrapped = ?4";

/// A stored data key from its row, on either backend.
pub(super) fn data_key<'r, R>(row: &'r R) -> Result<crate::store::DataKeyRecord>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(crate::store::DataKeyRecord {
        user: row.try_get("user_id")?,
        wrapped: row.try_get("wrapped")?,
        kek: row.try_get("kek")?,
        created_at: row.try_get("created_at")?,
    })
}

/// PostgreSQL's numbered parameters (`$1`) for SQL written with SQLite's (`?1`).
pub(super) fn dollars(sql: &str) -> String {
    sql.replace('?', "$")
}

pub(super) fn raw_conversation<'r, R>(row: &'r R) -> Result<crate::store::RawConversation>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(crate::store::RawConversation {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        topic: row.try_get("topic")?,
        tags: row.try_get("tags")?,
        artifacts: row.try_get("artifacts")?,
    })
}

pub(super) fn raw_message<'r, R>(row: &'r R) -> Result<crate::store::RawMessage>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(crate::store::RawMessage {
        conversation_id: row.try_get("conversation_id")?,
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        content: row.try_get("content")?,
        meta: row.try_get("meta")?,
    })
}

/// A stored API key from its row, on either backend: the columns and their decoding are the
/// same; only the row type differs.
pub(super) fn key_record<'r, R>(row: &'r R) -> Result<crate::store::ApiKeyRecord>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(crate::store::ApiKeyRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        hash: row.try_get("hash")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
        user_id: row.try_get("user_id")?,
        scope: key_scope(&row.try_get::<String, _>("scope")?)?,
        services: key_services_from_column(row.try_get("services")?)?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// A key's service list as its column holds it (JSON text; NULL for every service).
pub(super) fn key_services_to_column(services: Option<&Vec<String>>) -> Result<Option<String>> {
    services.map(|s| to_json("key services", s)).transpose()
}

pub(super) fn key_services_from_column(text: Option<String>) -> Result<Option<Vec<String>>> {
    text.map(|s| from_json("key services", &s)).transpose()
}

/// How a limit's scope is named in the totals table.
pub(super) fn scope_key(scope: &crate::cost::ledger::Scope) -> String {
    use crate::cost::ledger::Scope;
    match scope {
        Scope::Global => "global".into(),
        Scope::User(u) => format!("user:{u}"),
        Scope::Key(k) => format!("key:{k}"),
    }
}

/// Every scope a charge by `user` with `key` counts towards.
pub(super) fn scopes(user: Option<&str>, key: Option<&str>) -> Vec<String> {
    let mut out = vec!["global".to_string()];
    out.extend(user.map(|u| format!("user:{u}")));
    out.extend(key.map(|k| format!("key:{k}")));
    out
}

/// The bind parameters of a multi-row `VALUES`: `rows` groups of `cols`, `(?, ?), (?, ?)`,
/// or numbered `($1, $2), ($3, $4)` for PostgreSQL when `dollar`.
pub(super) fn value_rows(rows: usize, cols: usize, dollar: bool) -> String {
    let group = |r: usize| {
        let params: Vec<String> = (1..=cols)
            .map(|i| {
                if dollar {
                    format!("${}", r * cols + i)
                } else {
                    "?".into()
                }
            })
            .collect();
        format!("({})", params.join(", "))
    };
    (0..rows).map(group).collect::<Vec<_>>().join(", ")
}

/// Two statements that add to `rows` totals rows at once, run in order with the same binds
/// per row: scope, period, spent, reserved. The first makes sure every row exists (at 0), the
/// second adds the changes. `dollar` numbers the bind parameters ($1, $2, ...) for PostgreSQL.
///
/// Every total stays in `0..=MAX_MICROS` in the database as in memory: the sum is clamped, so
/// neither database can overflow (PostgreSQL's `bigint out of range`) or turn the column into
/// a float (SQLite's integer overflow), and a release can never leave a negative hold. Two
/// statements because an upsert checks the proposed row, a negative change, against the
/// table's range constraint before it finds the row to update.
pub(super) fn totals_sql(rows: usize, dollar: bool) -> [String; 2] {
    let (min, max) = if dollar {
        ("LEAST", "GREATEST")
    } else {
        ("MIN", "MAX")
    };
    let cap = crate::cost::ledger::MAX_MICROS;
    let values = value_rows(rows, 4, dollar);
    [
        format!(
            "INSERT INTO cost_totals (scope, period, spent, reserved)
             SELECT v.column1, v.column2, 0, 0 FROM (VALUES {values}) AS v WHERE true
             ON CONFLICT (scope, period) DO NOTHING"
        ),
        format!(
            "UPDATE cost_totals
             SET spent = {min}({max}(spent + CAST(v.column3 AS BIGINT), 0), {cap}),
                 reserved = {min}({max}(reserved + CAST(v.column4 AS BIGINT), 0), {cap})
             FROM (VALUES {values}) AS v
             WHERE cost_totals.scope = v.column1 AND cost_totals.period = v.column2"
        ),
    ]
}

/// A waiting tool call from its row, on either backend.
pub(super) fn approval_record<'r, R>(row: &'r R) -> Result<crate::store::ApprovalRecord>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let decision = row
        .try_get::<Option<String>, _>("decision")?
        .map(|d| {
            crate::store::Decision::parse(&d)
                .ok_or_else(|| Error::Store("a tool approval has an unknown decision".into()))
        })
        .transpose()?;
    Ok(crate::store::ApprovalRecord {
        id: row.try_get("id")?,
        server: row.try_get("server")?,
        tool: row.try_get("tool")?,
        asked_by: row.try_get("asked_by")?,
        arguments_bytes: row.try_get("arguments_bytes")?,
        arguments_digest: row.try_get("arguments_digest")?,
        asked_at: row.try_get("asked_at")?,
        expires_at: row.try_get("expires_at")?,
        decision,
        decided_by: row.try_get("decided_by")?,
        decided_at: row.try_get("decided_at")?,
    })
}

/// How long a row outlives its wait before the next insert removes it: enough for the waiting
/// server to read a decision made at the last moment.
pub(super) const APPROVAL_KEPT_MS: i64 = 60 * 60 * 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_rows_numbers_postgres_parameters_across_rows() {
        assert_eq!(value_rows(2, 2, false), "(?, ?), (?, ?)");
        assert_eq!(value_rows(2, 3, true), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(value_rows(0, 3, true), "");
    }
}
