//! The shared PostgreSQL store in a backup: `pg_dump` (a consistent snapshot: it reads in one
//! repeatable-read transaction while the instances go on writing), plain SQL, without the
//! `data_keys` table's rows; restored with `psql` into an empty database. Both tools come with
//! the PostgreSQL client package and must be on `PATH`.
//!
//! The connection: every parameter of `MAESTRA_DB_URL` becomes the libpq variable that means
//! the same (`sslmode` → `PGSSLMODE`, `sslrootcert` → `PGSSLROOTCERT`, ...), so the tools
//! connect exactly as the server does; a parameter libpq has no variable for is refused rather
//! than dropped, since a dropped TLS setting would silently weaken the connection. `PG*`
//! variables already set (and `HOME`, where libpq finds `~/.pgpass` and
//! `~/.postgresql/root.crt`) pass through, the URL's values over them. The password goes in
//! `PGPASSWORD`, never on a command line other users could read.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;

use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;
use tokio::process::Command;

use super::keys::KeyUse;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy)]
pub enum Part {
    /// Schema and rows of everything but the data keys (their table's schema is kept).
    DataWithoutKeys,
    /// The data keys' rows only (`--with-keys`).
    DataKeysOnly,
}

/// libpq's connection parameters and the variable each one is read from (libpq's
/// "Environment Variables" section), with sqlx's spellings of the same parameters.
const PARAMS: &[(&str, &str)] = &[
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("dbname", "PGDATABASE"),
    ("user", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("passfile", "PGPASSFILE"),
    ("channel_binding", "PGCHANNELBINDING"),
    ("service", "PGSERVICE"),
    ("servicefile", "PGSERVICEFILE"),
    ("options", "PGOPTIONS"),
    ("application_name", "PGAPPNAME"),
    ("sslmode", "PGSSLMODE"),
    ("ssl-mode", "PGSSLMODE"),
    ("requiressl", "PGREQUIRESSL"),
    ("sslnegotiation", "PGSSLNEGOTIATION"),
    ("sslcompression", "PGSSLCOMPRESSION"),
    ("sslcert", "PGSSLCERT"),
    ("ssl-cert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("ssl-key", "PGSSLKEY"),
    ("sslcertmode", "PGSSLCERTMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("ssl-root-cert", "PGSSLROOTCERT"),
    ("ssl-ca", "PGSSLROOTCERT"),
    ("sslcrl", "PGSSLCRL"),
    ("sslcrldir", "PGSSLCRLDIR"),
    ("sslsni", "PGSSLSNI"),
    ("requirepeer", "PGREQUIREPEER"),
    ("ssl_min_protocol_version", "PGSSLMINPROTOCOLVERSION"),
    ("ssl_max_protocol_version", "PGSSLMAXPROTOCOLVERSION"),
    ("gssencmode", "PGGSSENCMODE"),
    ("krbsrvname", "PGKRBSRVNAME"),
    ("gsslib", "PGGSSLIB"),
    ("gssdelegation", "PGGSSDELEGATION"),
    ("require_auth", "PGREQUIREAUTH"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("client_encoding", "PGCLIENTENCODING"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
    ("load_balance_hosts", "PGLOADBALANCEHOSTS"),
];

/// sqlx-only parameters with no meaning for the connection's security.
const SQLX_ONLY: &[&str] = &["statement-cache-capacity"];

/// `MAESTRA_DB_URL` as libpq's variables. Errors name a parameter, never a value.
fn pg_env(url: &SecretString) -> Result<Vec<(&'static str, String)>> {
    let u = url::Url::parse(url.expose_secret())
        // Dropped on purpose: the URL may hold the database password.
        .map_err(|_| Error::Config("MAESTRA_DB_URL is not a URL".into()))?;
    let mut env: Vec<(&'static str, String)> = Vec::new();
    let mut set = |k: &'static str, v: String| {
        env.retain(|(name, _)| *name != k);
        env.push((k, v));
    };
    if let Some(h) = u.host_str() {
        set("PGHOST", h.trim_matches(['[', ']']).to_string());
    }
    if let Some(p) = u.port() {
        set("PGPORT", p.to_string());
    }
    if !u.username().is_empty() {
        set("PGUSER", decode(u.username()));
    }
    if let Some(p) = u.password() {
        set("PGPASSWORD", decode(p));
    }
    let db = u.path().trim_start_matches('/');
    if !db.is_empty() {
        set("PGDATABASE", decode(db));
    }
    let mut options: Vec<String> = Vec::new();
    for (k, v) in u.query_pairs() {
        if let Some(name) = k.strip_prefix("options[").and_then(|n| n.strip_suffix(']')) {
            // sqlx's `options[NAME]=VALUE`: a run-time setting, as libpq's `-c NAME=VALUE`.
            options.push(format!("-c {name}={}", v.replace(' ', "\\ ")));
        } else if k == "options" {
            options.push(v.into_owned());
        } else if let Some((_, var)) = PARAMS.iter().find(|(p, _)| *p == k) {
            set(var, v.into_owned());
        } else if !SQLX_ONLY.contains(&k.as_ref()) {
            return Err(Error::Config(format!(
                "MAESTRA_DB_URL: the parameter {k:?} is not one pg_dump and psql know, so a \
                 backup cannot connect the way the server does; remove it or use its libpq name"
            )));
        }
    }
    if !options.is_empty() {
        set("PGOPTIONS", options.join(" "));
    }
    Ok(env)
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// What the tools inherit: `PATH`, `HOME` and every `PG*` variable (TLS files, pass file,
/// service file), non-UTF-8 ones included.
fn inherited() -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            k == "PATH" || k == "HOME" || k.starts_with("PG")
        })
        .collect()
}

async fn run(tool: &str, args: &[&str], url: &SecretString) -> Result<()> {
    let mut cmd = Command::new(tool);
    cmd.args(args)
        .env_clear()
        .envs(inherited())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in pg_env(url)? {
        cmd.env(k, v);
    }
    let out = cmd.output().await.map_err(|e| {
        Error::io(
            format!("cannot run {tool} (install the PostgreSQL client tools)"),
            e,
        )
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("").trim();
        return Err(Error::Store(format!("{tool} failed: {first}")));
    }
    Ok(())
}

/// One moment of the database, held open while it is dumped: a read-only repeatable-read
/// transaction whose snapshot `pg_dump --snapshot` reuses, so the data dump, the data keys'
/// dump and what [`Snapshot::key_use`] reads all see the same commits.
pub struct Snapshot {
    conn: sqlx::PgConnection,
    id: String,
}

impl Snapshot {
    pub async fn take(url: &SecretString) -> Result<Snapshot> {
        let mut conn = sqlx::PgConnection::connect(url.expose_secret()).await?;
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut conn)
            .await?;
        let id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut conn)
            .await?;
        Ok(Snapshot { conn, id })
    }

    /// Dumps `part` of the database as of this snapshot to `out` (plain SQL).
    pub async fn dump(&self, url: &SecretString, out: &Path, part: Part) -> Result<()> {
        dump_at(url, out, part, Some(&self.id)).await
    }

    /// The key check value, encrypted secrets and data-key KEKs as of this snapshot.
    pub async fn key_use(&mut self) -> Result<KeyUse> {
        key_use_on(&mut self.conn).await
    }

    pub async fn close(mut self) -> Result<()> {
        sqlx::query("COMMIT").execute(&mut self.conn).await?;
        self.conn.close().await?;
        Ok(())
    }
}

/// Dumps `part` of the database at `url` to `out` (plain SQL), as of its own snapshot.
pub async fn dump(url: &SecretString, out: &Path, part: Part) -> Result<()> {
    dump_at(url, out, part, None).await
}

async fn dump_at(url: &SecretString, out: &Path, part: Part, snapshot: Option<&str>) -> Result<()> {
    let file = format!("--file={}", out.display());
    let snap = snapshot.map(|s| format!("--snapshot={s}"));
    let mut args = vec!["--no-owner", "--no-privileges", file.as_str()];
    args.extend(snap.as_deref());
    match part {
        Part::DataWithoutKeys => args.push("--exclude-table-data=data_keys"),
        Part::DataKeysOnly => args.extend(["--data-only", "--table=data_keys"]),
    }
    run("pg_dump", &args, url).await?;
    crate::home::restrict_umask();
    Ok(())
}

/// Loads dumps into the database at `url`, all in one transaction: all of them or nothing.
pub async fn load(url: &SecretString, dumps: &[&Path]) -> Result<()> {
    let files: Vec<String> = dumps
        .iter()
        .map(|d| format!("--file={}", d.display()))
        .collect();
    let mut args = vec![
        "--quiet",
        "--no-psqlrc",
        "--single-transaction",
        "--set=ON_ERROR_STOP=1",
    ];
    args.extend(files.iter().map(String::as_str));
    run("psql", &args, url).await
}

/// Whether the database at `url` has no tables yet (a restore never mixes two databases).
pub async fn is_empty(url: &SecretString) -> Result<bool> {
    let mut conn = sqlx::PgConnection::connect(url.expose_secret()).await?;
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(n == 0)
}

/// What in the database at `url` depends on the vault key.
pub async fn key_use(url: &SecretString) -> Result<KeyUse> {
    let mut conn = sqlx::PgConnection::connect(url.expose_secret()).await?;
    let uses = key_use_on(&mut conn).await?;
    conn.close().await?;
    Ok(uses)
}

async fn key_use_on(conn: &mut sqlx::PgConnection) -> Result<KeyUse> {
    let mut uses = KeyUse::default();
    if has_table(conn, "meta").await? {
        uses.check = sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(crate::privsec::keycheck::META_KEY)
            .fetch_optional(&mut *conn)
            .await?;
    }
    if has_table(conn, "secrets").await? {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT name, value FROM secrets WHERE encrypted")
                .fetch_all(&mut *conn)
                .await?;
        uses.secrets = rows
            .into_iter()
            .map(|(n, v)| (n, SecretString::from(v)))
            .collect();
    }
    if has_table(conn, "data_keys").await? {
        uses.keks = sqlx::query_scalar("SELECT DISTINCT kek FROM data_keys")
            .fetch_all(&mut *conn)
            .await?;
    }
    Ok(uses)
}

async fn has_table(conn: &mut sqlx::PgConnection, name: &str) -> Result<bool> {
    Ok(sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables
                        WHERE table_schema = current_schema() AND table_name = $1)",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await?)
}

/// Undoes a load into a database that was empty before it (checked by [`is_empty`]): drops
/// every table of the current schema, their indexes and sequences with them.
pub async fn clear(url: &SecretString) -> Result<()> {
    let mut conn = sqlx::PgConnection::connect(url.expose_secret()).await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(table_name) FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut conn)
    .await?;
    if !tables.is_empty() {
        sqlx::query(&format!("DROP TABLE {} CASCADE", tables.join(", ")))
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(url: &str) -> Result<Vec<(&'static str, String)>> {
        pg_env(&SecretString::from(url.to_string()))
    }

    fn get<'a>(env: &'a [(&'static str, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_tls_parameter_reaches_libpq_and_unknown_ones_are_refused() {
        let e = env("postgres://u:p%40ss@db.example:6543/app?sslmode=verify-full&sslrootcert=/ca.pem&ssl-cert=/c.pem&sslkey=/k.pem&passfile=/pgpass&application_name=m&statement-cache-capacity=10&options[search_path]=s")
            .unwrap();
        for (k, v) in [
            ("PGHOST", "db.example"),
            ("PGPORT", "6543"),
            ("PGUSER", "u"),
            ("PGPASSWORD", "p@ss"),
            ("PGDATABASE", "app"),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", "/ca.pem"),
            ("PGSSLCERT", "/c.pem"),
            ("PGSSLKEY", "/k.pem"),
            ("PGPASSFILE", "/pgpass"),
            ("PGAPPNAME", "m"),
            ("PGOPTIONS", "-c search_path=s"),
        ] {
            assert_eq!(get(&e, k), Some(v), "{k}");
        }
        // A socket directory given as `host` wins over the URL's host.
        let e = env("postgres:///db?host=/run/postgresql").unwrap();
        assert_eq!(get(&e, "PGHOST"), Some("/run/postgresql"));
        assert_eq!(e.iter().filter(|(k, _)| *k == "PGHOST").count(), 1);
        let err = env("postgres://h/db?sslmod=require&x=secret-value")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sslmod") && !err.contains("secret-value"),
            "{err}"
        );
    }
}
