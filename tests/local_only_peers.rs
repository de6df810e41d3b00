//! Local-only reaches the configured peers too (SPEC §2.1, §2): with `MAESTRA_LOCAL_ONLY=true`,
//! a `db_url` (PostgreSQL) or `redis_url` whose host is not local is refused, naming the
//! setting, before anything resolves or dials it — by every command that opens the store, by
//! `maestra serve`, and by a backup (whose `pg_dump` would dial it). The hosts are IP literals
//! from TEST-NET-3 (203.0.113.0/24), so nothing here is ever sent off this machine: the answer
//! is the guard's refusal, and it comes at once (a dial would wait for its timeout).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::Home;

/// A password that must never be echoed.
const CANARY: &str = "CANARY-peer-password";
/// What a refusal must take at most: a connection attempt would wait for its timeout.
const AT_ONCE: Duration = Duration::from_secs(2);

fn public_db(host: &str) -> Home {
    Home::new()
        .with("MAESTRA_LOCAL_ONLY", "true")
        .with("MAESTRA_CLOUD_STORAGE", "postgresql")
        .with(
            "MAESTRA_DB_URL",
            &format!("postgresql://maestra:{CANARY}@{host}:5432/maestra"),
        )
        .with("MAESTRA_BACKUP_PASSPHRASE", "a passphrase for tests")
}

/// Runs `args`, which must fail at once with the guard's refusal of `setting`.
fn refused_at_once(h: &Home, args: &[&str], setting: &str, host: &str) {
    let t = Instant::now();
    let out = h.run_within(args, b"", Duration::from_secs(30));
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail: {err}");
    assert!(took < AT_ONCE, "{args:?} took {took:?}: {err}");
    assert!(
        err.contains("local-only mode blocked") && err.contains(setting) && err.contains(host),
        "{args:?}: {err}"
    );
    assert!(err.contains("no connection was made"), "{args:?}: {err}");
    assert!(!err.contains(CANARY), "{args:?} echoed the password: {err}");
    assert!(!err.contains("listening"), "{args:?}: {err}");
}

#[test]
fn a_public_database_is_refused_by_commands_the_server_and_backups() {
    for host in ["203.0.113.7", "[::ffff:203.0.113.7]"] {
        let h = public_db(host);
        let shown = host.trim_start_matches('[').trim_end_matches(']');
        let backup_dir = h.dir.path().join("backup");
        for args in [
            &["keys", "list"][..],
            &["cost", "report"],
            &["serve", "--bind", "127.0.0.1:0"],
            &["backup", "create", "--to", backup_dir.to_str().unwrap()],
        ] {
            refused_at_once(&h, args, "db_url (MAESTRA_DB_URL)", shown);
        }
    }
}

#[test]
fn a_public_redis_is_refused_before_the_server_starts() {
    let h = Home::new()
        .with("MAESTRA_LOCAL_ONLY", "true")
        .with("MAESTRA_MODE", "cloud")
        .with("MAESTRA_API_KEY", "peer-test-key-0123456789abcdef")
        .with(
            "MAESTRA_REDIS_URL",
            &format!("redis://:{CANARY}@203.0.113.7:6379/0"),
        );
    refused_at_once(
        &h,
        &["serve", "--bind", "127.0.0.1:0"],
        "redis_url (MAESTRA_REDIS_URL)",
        "203.0.113.7",
    );
}

/// The rule is the guard's address rule, not a ban: a database on this machine is dialled as
/// before (here a closed port: the error is the connection's, not the guard's).
#[test]
fn a_local_database_is_dialled_in_local_only_mode() {
    let h = public_db("127.0.0.1").with("MAESTRA_DB_URL", "postgresql://maestra@127.0.0.1:1/m");
    let out = h.run_within(&["keys", "list"], b"", Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("local-only"), "{err}");
}
