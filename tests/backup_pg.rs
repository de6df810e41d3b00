//! Backups of the shared PostgreSQL store (issue 18): `pg_dump` without the data keys' rows
//! (they go in only `--with-keys`), restored with `psql` into an empty database only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::backup_args;
use common::pg::TempDb;
use common::{Home, contains};
use serde_json::json;

const PASS: &str = "correct horse battery staple";
const CANARY: &str = "canary-pg-0c4e";

fn pg_home(db: &TempDb) -> Home {
    Home::new()
        .with("MAESTRA_BACKUP_PASSPHRASE", PASS)
        .with("MAESTRA_CLOUD_STORAGE", "postgresql")
        .with("MAESTRA_DB_URL", &db.url)
}

fn import(h: &Home, owner: &str) {
    let seed = h.dir.path().join(format!("seed-{owner}"));
    std::fs::create_dir_all(seed.join("conversations")).unwrap();
    let conv = json!({
        "id": format!("conv_2025-12-28_{owner}_abc12345"), "topic": "pg", "owner": owner,
        "surfaces": ["cli"], "tags": [], "artifacts": [],
        "messages": [{"id": "m1", "role": "user", "content": format!("{CANARY} {owner}"),
                      "surface": "cli", "mode": "chat", "timestamp": "2025-12-28T10:00:00", "meta": {}}],
        "meta": {"created_at": "2025-12-28T10:00:00", "updated_at": "2025-12-28T10:05:00",
                 "status": "active", "message_count": 1}
    });
    std::fs::write(seed.join("conversations/c.json"), conv.to_string()).unwrap();
    h.ok(&["import", "--from", seed.to_str().unwrap()], b"");
}

async fn count(url: &str, sql: &str) -> i64 {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backups_round_trip_into_an_empty_database_only() {
    let live = TempDb::create().await;
    let h = pg_home(&live);
    h.ok(&["init"], b"");
    import(&h, "ann");
    import(&h, "bob");
    assert_eq!(count(&live.url, "SELECT count(*) FROM data_keys").await, 2);

    let plain = h.dir.path().join("plain");
    let keyed = h.dir.path().join("keyed");
    h.ok(&["backup", "create", "--to", plain.to_str().unwrap()], b"");
    h.ok(
        &backup_args("create", keyed.to_str().unwrap(), &["--with-keys"]),
        b"",
    );
    for dir in [&plain, &keyed] {
        let out = h.ok(&["backup", "verify", "--from", dir.to_str().unwrap()], b"");
        assert!(out.contains("Postgresql"), "{out}");
        for (path, bytes) in common::all_file_bytes(dir) {
            assert!(!contains(&bytes, CANARY), "readable in {path:?}");
            assert!(!contains(&bytes, "CREATE TABLE"), "readable in {path:?}");
        }
    }
    h.ok(&["forget", "--user", "ann"], b"");

    // With today's keys (another home's key files, the live database's data keys), into an
    // empty database: ann, forgotten since, cannot be read; bob can. First, refusals that
    // change nothing: no live database named for the data keys.
    let empty = TempDb::create().await;
    let t = pg_home(&empty);
    let live_home = h.root();
    let keys_from = ["--keys-from", live_home.to_str().unwrap()];
    let restore_plain = |home: &Home| {
        let mut args = vec!["backup", "restore", "--from", plain.to_str().unwrap()];
        args.extend(keys_from);
        home.run(&args, b"")
    };
    let out = restore_plain(&t);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MAESTRA_RESTORE_KEYS_DB_URL"));
    assert!(!t.root().exists());
    let tables = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'";
    assert_eq!(count(&empty.url, tables).await, 0);
    let today = pg_home(&empty).with("MAESTRA_RESTORE_KEYS_DB_URL", &live.url);
    let out = restore_plain(&today);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    today.ok(&["audit", "verify"], b"");
    today.ok(&["doctor"], b"");
    assert_eq!(count(&empty.url, "SELECT count(*) FROM data_keys").await, 1);
    let bob = today.ok(
        &["conversations", "export", "conv_2025-12-28_bob_abc12345"],
        b"",
    );
    assert!(bob.contains(&format!("{CANARY} bob")), "{bob}");
    let ann = today.run(
        &["conversations", "export", "conv_2025-12-28_ann_abc12345"],
        b"",
    );
    assert!(!contains(&ann.stdout, CANARY) && !contains(&ann.stderr, CANARY));

    // The backup made --with-keys restores alone, with the keys of its day.
    let other = TempDb::create().await;
    let t = pg_home(&other);
    t.ok(
        &["backup", "restore", "--from", keyed.to_str().unwrap()],
        b"",
    );
    t.ok(&["audit", "verify"], b"");
    t.ok(&["doctor"], b"");
    // The backup's own keys open both users, ann too: she was forgotten after it was made.
    for owner in ["ann", "bob"] {
        let conv = t.ok(
            &[
                "conversations",
                "export",
                &format!("conv_2025-12-28_{owner}_abc12345"),
            ],
            b"",
        );
        assert!(conv.contains(&format!("{CANARY} {owner}")), "{conv}");
    }
    // A database with tables is never restored into.
    let again = pg_home(&other);
    let err = again.fails(
        &["backup", "restore", "--from", keyed.to_str().unwrap()],
        b"",
    );
    assert!(err.contains("already has tables"), "{err}");
}

/// After a vault key rotation, a backup restored with today's keys would hold its vault under
/// a key no longer in the key file: refused once loaded and checked, the load undone (the
/// database empty again) and the home moved back out. The `--with-keys` backup restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restore_after_a_key_rotation_is_refused_and_undone() {
    let live = TempDb::create().await;
    let h = pg_home(&live);
    h.ok(&["init"], b"");
    h.ok(&["vault", "put", "hue"], b"pg-secret");
    import(&h, "ann");
    let plain = h.dir.path().join("plain");
    let keyed = h.dir.path().join("keyed");
    h.ok(&["backup", "create", "--to", plain.to_str().unwrap()], b"");
    h.ok(
        &backup_args("create", keyed.to_str().unwrap(), &["--with-keys"]),
        b"",
    );
    h.ok(&["vault", "rotate-key"], b"");

    let empty = TempDb::create().await;
    let t = pg_home(&empty).with("MAESTRA_RESTORE_KEYS_DB_URL", &live.url);
    let out = t.run(
        &backup_args(
            "restore",
            plain.to_str().unwrap(),
            &["--keys-from", h.root().to_str().unwrap()],
        ),
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("does not open this backup's database") && err.contains("--with-keys"),
        "{err}"
    );
    assert!(!t.root().exists(), "the refused home is still in place");
    let tables = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'";
    assert_eq!(
        count(&empty.url, tables).await,
        0,
        "the load was not undone"
    );
    let leftovers: Vec<_> = std::fs::read_dir(t.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restore"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The same empty database takes the --with-keys backup, whose keys open it.
    let t = pg_home(&empty);
    t.ok(
        &["backup", "restore", "--from", keyed.to_str().unwrap()],
        b"",
    );
    t.ok(&["doctor"], b"");
    assert_eq!(
        t.ok(&["vault", "get", "hue", "--reveal"], b"").trim(),
        "pg-secret"
    );
}
