//! Consistent copies of the embedded database for backups, taken while the server runs.
//!
//! `VACUUM INTO` reads the database in one read transaction (WAL lets the server's writer go
//! on meanwhile), so the copy holds exactly the commits made before it started, whole and
//! compacted. The copy is then stripped of the `data_keys` table's rows: a data backup never
//! carries the keys that open it, so a user whose key is destroyed after the backup stays
//! unreadable when that backup is restored with the keys of the day. The rows can be written
//! to a separate file beside it, for a backup made `--with-keys`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};

use crate::error::{Error, Result};
use crate::store::KeyUse;

/// The table of wrapped per-user data keys (migration 0007).
const DATA_KEYS: &str = "data_keys";

async fn connect(path: &Path, create: bool) -> Result<SqliteConnection> {
    let opts = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .create_if_missing(create)
        .busy_timeout(Duration::from_secs(30))
        // Zeroes freed pages, so the keys deleted from a copy leave no bytes behind.
        .pragma("secure_delete", "ON");
    Ok(SqliteConnection::connect_with(&opts).await?)
}

async fn has_data_keys(conn: &mut SqliteConnection, schema: &str) -> Result<bool> {
    let sql = format!("SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?1");
    Ok(sqlx::query(&sql)
        .bind(DATA_KEYS)
        .fetch_optional(&mut *conn)
        .await?
        .is_some())
}

/// Copies the database at `live` to `dest` (which must not exist) as of one moment, without
/// the data keys; when `keys_out` is given, the data keys are written there, alone, in a
/// database of their own. Returns how many data keys there were.
pub async fn snapshot_into(live: &Path, dest: &Path, keys_out: Option<&Path>) -> Result<u64> {
    if !live.exists() {
        return Err(Error::Store(format!(
            "no database at {} to back up",
            live.display()
        )));
    }
    let mut src = connect(live, false).await?;
    sqlx::query("VACUUM INTO ?1")
        .bind(dest.to_string_lossy().into_owned())
        .execute(&mut src)
        .await?;
    src.close().await?;

    let mut copy = connect(dest, false).await?;
    // The copy is a private file being prepared, not a live database: no WAL beside it.
    sqlx::query("PRAGMA journal_mode = DELETE")
        .execute(&mut copy)
        .await?;
    let mut count = 0u64;
    if has_data_keys(&mut copy, "main").await? {
        if let Some(keys) = keys_out {
            // The copy's connection may not create files: ATTACH needs the file to exist.
            connect(keys, true).await?.close().await?;
            sqlx::query("ATTACH DATABASE ?1 AS keys")
                .bind(keys.to_string_lossy().into_owned())
                .execute(&mut copy)
                .await?;
            sqlx::query("CREATE TABLE keys.data_keys AS SELECT * FROM main.data_keys")
                .execute(&mut copy)
                .await?;
            sqlx::query("DETACH DATABASE keys")
                .execute(&mut copy)
                .await?;
        }
        count = sqlx::query("DELETE FROM main.data_keys")
            .execute(&mut copy)
            .await?
            .rows_affected();
        // Rebuilds the file from live pages only: nothing of the deleted rows remains.
        sqlx::query("VACUUM").execute(&mut copy).await?;
    }
    copy.close().await?;
    Ok(count)
}

/// Adds to the database at `db` the data keys found in the database at `from` (a live home's
/// database, or a backup's key file from [`snapshot_into`]). Keys already in `db` are kept.
/// Returns how many were added.
pub async fn copy_data_keys(db: &Path, from: &Path) -> Result<u64> {
    let mut conn = connect(db, false).await?;
    if !from.is_file() {
        // ATTACH would create an empty database there.
        return Err(Error::Store(format!("no database at {}", from.display())));
    }
    // Only read, and attached read-only so it cannot be otherwise: the other home may be in
    // use, and a restore must never change it.
    sqlx::query("ATTACH DATABASE ?1 AS src")
        .bind(read_only_uri(from))
        .execute(&mut conn)
        .await?;
    let mut added = 0;
    if has_data_keys(&mut conn, "src").await? {
        if !has_data_keys(&mut conn, "main").await? {
            return Err(Error::Store(
                "the restored database has no data_keys table (made by an older version?)".into(),
            ));
        }
        added = sqlx::query("INSERT OR IGNORE INTO main.data_keys SELECT * FROM src.data_keys")
            .execute(&mut conn)
            .await?
            .rows_affected();
    }
    sqlx::query("DETACH DATABASE src")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(added)
}

/// `file:PATH?mode=ro`: an SQLite URI filename (sqlx opens connections with `SQLITE_OPEN_URI`,
/// so `ATTACH` reads it as one) that opens the file read-only; the path percent-encoded, so a
/// `?`, `#` or `%` in it stays part of the name.
fn read_only_uri(path: &Path) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let text = path.to_string_lossy();
    format!("file:{}?mode=ro", utf8_percent_encode(&text, KEEP))
}

/// What in the database at `db` depends on the vault key: its key check value, its encrypted
/// vault secrets and the KEKs of its data keys (each only where its table exists; a backup's
/// key file holds the data keys alone). Opened read-only.
pub async fn key_use(db: &Path) -> Result<KeyUse> {
    let opts = SqliteConnectOptions::from_str("sqlite:")?
        .filename(db)
        .read_only(true)
        .busy_timeout(Duration::from_secs(30));
    let mut conn = SqliteConnection::connect_with(&opts).await?;
    let mut uses = KeyUse::default();
    if has_table(&mut conn, "meta").await? {
        uses.check = sqlx::query_scalar("SELECT value FROM meta WHERE key = ?1")
            .bind(crate::privsec::keycheck::META_KEY)
            .fetch_optional(&mut conn)
            .await?;
    }
    if has_table(&mut conn, "secrets").await? {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT name, value FROM secrets WHERE encrypted <> 0")
                .fetch_all(&mut conn)
                .await?;
        uses.secrets = rows
            .into_iter()
            .map(|(n, v)| (n, secrecy::SecretString::from(v)))
            .collect();
    }
    if has_data_keys(&mut conn, "main").await? {
        uses.keks = sqlx::query_scalar("SELECT DISTINCT kek FROM data_keys")
            .fetch_all(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok(uses)
}

async fn has_table(conn: &mut SqliteConnection, name: &str) -> Result<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
    )
}

/// Puts a database copied by [`snapshot_into`] back in the write-ahead-log mode the server
/// runs it in, checking on the way that it opens and is intact.
pub async fn check_restored(db: &Path) -> Result<()> {
    let mut conn = connect(db, false).await?;
    let ok: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await?;
    if ok != "ok" {
        return Err(Error::Store(format!(
            "the restored database fails its integrity check: {ok}"
        )));
    }
    sqlx::query("PRAGMA journal_mode = WAL")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}
