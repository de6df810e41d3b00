//! `maestra backup create | verify | restore` on directories (issue 18): round trips with the
//! backup's keys and with today's keys, nothing readable in the backup, and every refusal
//! (wrong passphrase, corrupted, truncated, unfinished, non-empty home) clear and changing
//! nothing on disk; a backup killed with SIGKILL at any point leaves nothing `verify` accepts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::backup_args;
use common::{Home, contains};
use serde_json::json;

const PASS: &str = "correct horse battery staple";
const CANARY: &str = "canary-bk-7f3a9c";

fn home() -> Home {
    Home::new().with("MAESTRA_BACKUP_PASSPHRASE", PASS)
}

/// A second home in its own directory (a restore target), with the same passphrase.
fn target() -> Home {
    home()
}

/// Imports one conversation of `owner` holding `text`.
fn import(h: &Home, owner: &str, text: &str) {
    let seed = h.dir.path().join(format!("seed-{owner}"));
    std::fs::create_dir_all(seed.join("conversations")).unwrap();
    let id = format!("conv_2025-12-28_{owner}_abc12345");
    let conv = json!({
        "id": id, "topic": "backup", "owner": owner,
        "surfaces": ["cli"], "tags": [], "artifacts": [],
        "messages": [{"id": "m1", "role": "user", "content": text,
                      "surface": "cli", "mode": "chat", "timestamp": "2025-12-28T10:00:00", "meta": {}}],
        "meta": {"created_at": "2025-12-28T10:00:00", "updated_at": "2025-12-28T10:05:00",
                 "status": "active", "message_count": 1}
    });
    std::fs::write(
        seed.join(format!("conversations/{id}.json")),
        conv.to_string(),
    )
    .unwrap();
    h.ok(&["import", "--from", seed.to_str().unwrap()], b"");
}

fn conv_id(owner: &str) -> String {
    format!("conv_2025-12-28_{owner}_abc12345")
}

/// A home with a vault secret, a config file and two users' conversations.
fn populated() -> Home {
    let h = home();
    h.ok(&["init"], b"");
    std::fs::write(
        h.root().join("maestra.toml"),
        format!("# {CANARY} in the configuration\nlocal_only = true\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        h.root().join("maestra.toml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    h.ok(
        &["vault", "put", "hue"],
        format!("{CANARY}-secret").as_bytes(),
    );
    import(&h, "ann", &format!("{CANARY} ann's message"));
    import(&h, "bob", &format!("{CANARY} bob's message"));
    h
}

/// Every path under `dir` with its contents, to show that a refusal changed nothing.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    if !dir.exists() {
        return Vec::new();
    }
    let mut t = common::all_file_bytes(dir);
    t.sort();
    t
}

fn dirs_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// No scratch directory of a backup (`.maestra-backup-*`) is left in the home.
fn assert_no_scratch(h: &Home) {
    let leftovers: Vec<String> = dirs_in(&h.root())
        .into_iter()
        .filter(|n| n.starts_with(".maestra-backup-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn round_trip_with_todays_keys_and_nothing_readable_in_the_backup() {
    let h = populated();
    let dest = h.dir.path().join("backup");
    let out = h.ok(&["backup", "create", "--to", dest.to_str().unwrap()], b"");
    assert!(out.contains("keys: not included"), "{out}");
    // Two opaque files: no file name, no content, no key readable in either.
    assert_eq!(dirs_in(&dest), ["data.mxb", "manifest.mxb"]);
    for (path, bytes) in tree(&dest) {
        for needle in [
            CANARY,
            "maestra.db",
            "audit.log",
            "SQLite format",
            "vault.key",
        ] {
            assert!(!contains(&bytes, needle), "{needle} readable in {path:?}");
        }
    }
    let out = h.ok(&["backup", "verify", "--from", dest.to_str().unwrap()], b"");
    assert!(
        out.contains("backup OK") && out.contains("every SHA-256 matches"),
        "{out}"
    );

    // Without keys in the backup, restore needs today's keys.
    let t = target();
    let err = t.fails(
        &["backup", "restore", "--from", dest.to_str().unwrap()],
        b"",
    );
    assert!(err.contains("--keys-from"), "{err}");
    assert!(!t.root().exists());
    let out = t.ok(
        &backup_args(
            "restore",
            dest.to_str().unwrap(),
            &["--keys-from", h.root().to_str().unwrap()],
        ),
        b"",
    );
    assert!(out.contains("restored"), "{out}");
    t.ok(&["audit", "verify"], b"");
    t.ok(&["doctor"], b"");
    assert_eq!(
        t.ok(&["vault", "get", "hue", "--reveal"], b"").trim(),
        format!("{CANARY}-secret")
    );
    for owner in ["ann", "bob"] {
        let conv = t.ok(&["conversations", "export", &conv_id(owner)], b"");
        assert!(
            conv.contains(&format!("{CANARY} {owner}'s message")),
            "{conv}"
        );
    }
    let toml = std::fs::read_to_string(t.root().join("maestra.toml")).unwrap();
    assert!(toml.contains(CANARY));
    // Nothing was left beside the restored home.
    assert_eq!(dirs_in(t.dir.path()), ["m"]);
}

#[test]
fn with_keys_the_backup_restores_alone_and_a_key_file_works_too() {
    let h = populated();
    let dest = h.dir.path().join("backup");
    let out = h.ok(
        &backup_args("create", dest.to_str().unwrap(), &["--with-keys"]),
        b"",
    );
    assert!(out.contains("keys: included"), "{out}");
    for (path, bytes) in tree(&dest) {
        let key = std::fs::read_to_string(h.root().join("keys/vault.key")).unwrap();
        assert!(
            !contains(&bytes, key.trim()),
            "the vault key is readable in {path:?}"
        );
    }
    let t = target();
    t.ok(
        &["backup", "restore", "--from", dest.to_str().unwrap()],
        b"",
    );
    t.ok(&["audit", "verify"], b"");
    t.ok(&["doctor"], b"");
    assert_eq!(
        std::fs::read(t.root().join("keys/vault.key")).unwrap(),
        std::fs::read(h.root().join("keys/vault.key")).unwrap()
    );
    let conv = t.ok(&["conversations", "export", &conv_id("ann")], b"");
    assert!(conv.contains(CANARY), "{conv}");

    // A key file instead of a passphrase; the passphrase does not open it, nor it the other.
    let key_file = h.dir.path().join("backup.key");
    std::fs::write(&key_file, [7u8; 32]).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let dest2 = h.dir.path().join("backup2");
    let kf = key_file.to_str().unwrap();
    h.ok(
        &backup_args("create", dest2.to_str().unwrap(), &["--key-file", kf]),
        b"",
    );
    h.ok(
        &backup_args("verify", dest2.to_str().unwrap(), &["--key-file", kf]),
        b"",
    );
    let err = h.fails(
        &["backup", "verify", "--from", dest2.to_str().unwrap()],
        b"",
    );
    assert!(err.contains("key file"), "{err}");
}

/// A damaged copy: what was done, its data and manifest files, the passphrase tried (`None`:
/// the right one), and what the one line of error must say.
type Case<'a> = (&'a str, Vec<u8>, Vec<u8>, Option<&'a str>, &'a str);

#[test]
fn damaged_backups_are_refused_clearly_and_change_nothing() {
    let h = populated();
    let dest = h.dir.path().join("backup");
    h.ok(&["backup", "create", "--to", dest.to_str().unwrap()], b"");
    let data = std::fs::read(dest.join("data.mxb")).unwrap();
    let manifest = std::fs::read(dest.join("manifest.mxb")).unwrap();
    let keys_from = h.root();
    // Another backup of the same home under the same passphrase: its manifest must not vouch
    // for this data file.
    let other = h.dir.path().join("other");
    h.ok(&["backup", "create", "--to", other.to_str().unwrap()], b"");
    let other_manifest = std::fs::read(other.join("manifest.mxb")).unwrap();

    let mut flipped = data.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let cases: Vec<Case> = vec![
        ("corrupted", flipped, manifest.clone(), None, "corrupted"),
        (
            "truncated",
            data[..data.len() - 100].to_vec(),
            manifest.clone(),
            None,
            "truncated",
        ),
        (
            "cut at a chunk edge",
            data[..57 + 65536 + 16].to_vec(),
            manifest.clone(),
            None,
            "truncated",
        ),
        (
            "truncated manifest",
            data.clone(),
            manifest[..manifest.len() - 1].to_vec(),
            None,
            "corrupted",
        ),
        (
            "another backup's manifest",
            data.clone(),
            other_manifest,
            None,
            "does not belong to this manifest",
        ),
        (
            "wrong passphrase",
            data.clone(),
            manifest.clone(),
            Some("not the passphrase"),
            "wrong passphrase",
        ),
    ];
    for (what, d, m, pass, says) in cases {
        let bad = h.dir.path().join(format!("bad-{}", what.replace(' ', "-")));
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(bad.join("data.mxb"), &d).unwrap();
        std::fs::write(bad.join("manifest.mxb"), &m).unwrap();
        let mut checker = home();
        if let Some(p) = pass {
            checker = checker.with("MAESTRA_BACKUP_PASSPHRASE", p);
        }
        let err = checker.fails(&["backup", "verify", "--from", bad.to_str().unwrap()], b"");
        assert!(err.contains(says), "{what}: {err}");
        let before = dirs_in(checker.dir.path());
        let err = checker.fails(
            &backup_args(
                "restore",
                bad.to_str().unwrap(),
                &["--keys-from", keys_from.to_str().unwrap()],
            ),
            b"",
        );
        assert!(err.contains(says), "{what}: {err}");
        assert!(
            !checker.root().exists(),
            "{what}: a failed restore made the home"
        );
        assert_eq!(dirs_in(checker.dir.path()), before, "{what}: leftovers");
    }

    // No manifest: an unfinished backup.
    let unfinished = h.dir.path().join("unfinished");
    std::fs::create_dir_all(&unfinished).unwrap();
    std::fs::write(unfinished.join("data.mxb"), &data).unwrap();
    let err = h.fails(
        &["backup", "verify", "--from", unfinished.to_str().unwrap()],
        b"",
    );
    assert!(err.contains("unfinished"), "{err}");
    // Killed between the data and the manifest: no backup, so the next one may go there.
    h.ok(
        &["backup", "create", "--to", unfinished.to_str().unwrap()],
        b"",
    );
    h.ok(
        &["backup", "verify", "--from", unfinished.to_str().unwrap()],
        b"",
    );

    // A non-empty home is refused, untouched.
    let t = target();
    std::fs::create_dir_all(t.root()).unwrap();
    std::fs::write(t.root().join("notes.txt"), "mine").unwrap();
    let before = tree(t.dir.path());
    let err = t.fails(
        &backup_args(
            "restore",
            dest.to_str().unwrap(),
            &["--keys-from", keys_from.to_str().unwrap()],
        ),
        b"",
    );
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(tree(t.dir.path()), before);

    // A destination holding anything is refused too: a backup never overwrites one.
    let err = h.fails(&["backup", "create", "--to", dest.to_str().unwrap()], b"");
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read(dest.join("data.mxb")).unwrap(), data);
    // No passphrase and no terminal: refused before anything is written.
    let none = Home::new();
    let err = none.fails(&["backup", "verify", "--from", dest.to_str().unwrap()], b"");
    assert!(err.contains("MAESTRA_BACKUP_PASSPHRASE"), "{err}");
}

/// Adds `mb` MiB of incompressible rows to the home's database, so a backup takes long enough
/// to be killed at several points.
fn grow(h: &Home, mb: usize) {
    let db = h.root().join("maestra.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display()))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE filler (b BLOB)")
            .execute(&mut c)
            .await
            .unwrap();
        for i in 0..mb {
            let blob: Vec<u8> = (0..1024 * 1024)
                .map(|j: usize| (j.wrapping_mul(2654435761).wrapping_add(i * 7919) >> 13) as u8)
                .collect();
            sqlx::query("INSERT INTO filler (b) VALUES (?1)")
                .bind(blob)
                .execute(&mut c)
                .await
                .unwrap();
        }
    });
}

/// When a round kills the backup: after a delay, or once the data file has this many bytes.
#[derive(Debug, Clone, Copy)]
enum Kill {
    After(Duration),
    Written(u64),
}

#[test]
fn a_backup_killed_at_any_point_leaves_nothing_verify_accepts() {
    let h = populated();
    grow(&h, 48);
    let dest = h.dir.path().join("backup");
    let partial = dest.join(".data.mxb.partial");
    let rounds = [
        Kill::After(Duration::from_millis(20)),
        Kill::After(Duration::from_millis(120)),
        Kill::Written(1),
        Kill::Written(8 << 20),
        Kill::Written(30 << 20),
    ];
    let mut killed_mid_write = 0;
    for (round, when) in rounds.into_iter().enumerate() {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_maestra"));
        cmd.args(["backup", "create", "--to", dest.to_str().unwrap()])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(h.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let start = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let due = match when {
                Kill::After(d) => start.elapsed() >= d,
                Kill::Written(n) => std::fs::metadata(&partial).is_ok_and(|m| m.len() >= n),
            };
            if due {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "round {round}: hung"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        if child.try_wait().unwrap().is_some() {
            panic!("round {round}: the backup finished before the kill ({when:?})");
        }
        if partial.exists() {
            killed_mid_write += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            !dest.join("manifest.mxb").exists(),
            "round {round}: a killed backup left a manifest"
        );
        let out = h.run(&["backup", "verify", "--from", dest.to_str().unwrap()], b"");
        assert!(
            !out.status.success(),
            "round {round}: verify accepted a killed backup"
        );
    }
    assert!(
        killed_mid_write >= 3,
        "kills while writing: {killed_mid_write}"
    );
    // The next backup to the same place sweeps what the killed ones left, and succeeds.
    h.ok(&["backup", "create", "--to", dest.to_str().unwrap()], b"");
    h.ok(&["backup", "verify", "--from", dest.to_str().unwrap()], b"");
    assert_no_scratch(&h);
}

/// The proof of crypto-shredding through backups: back up, forget ann, restore that earlier
/// backup with today's keys. Ann's conversations are in the restored database but nothing can
/// open them (her data key is gone from today's keys, and the backup never had it); bob's are
/// intact. A backup made `--with-keys` is the exception, and says so.
#[test]
fn a_user_forgotten_after_a_backup_stays_unreadable_when_it_is_restored() {
    let h = populated();
    let dest = h.dir.path().join("backup");
    let out = h.ok(&["backup", "create", "--to", dest.to_str().unwrap()], b"");
    assert!(out.contains("2 data keys left out"), "{out}");
    let ann_key = wrapped_key(&h.root().join("maestra.db"), "ann");
    let ann_text = format!("{CANARY} ann's message");
    let bob_text = format!("{CANARY} bob's message");
    h.ok(&["forget", "--user", "ann"], b"");

    let t = target();
    t.ok(
        &backup_args(
            "restore",
            dest.to_str().unwrap(),
            &["--keys-from", h.root().to_str().unwrap()],
        ),
        b"",
    );
    t.ok(&["audit", "verify"], b"");
    let bob = t.ok(&["conversations", "export", &conv_id("bob")], b"");
    assert!(bob.contains(&bob_text), "{bob}");
    let ann = t.run(&["conversations", "export", &conv_id("ann")], b"");
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&ann.stdout),
        String::from_utf8_lossy(&ann.stderr)
    );
    assert!(!shown.contains(&ann_text), "ann's message opened: {shown}");
    // Refused for the right reason: her key is destroyed, not some other failure.
    assert!(!ann.status.success(), "{shown}");
    assert!(
        shown.contains("was forgotten (their data key is destroyed)"),
        "{shown}"
    );
    let listed = t.run(&["conversations", "export", "--user", "ann"], b"");
    assert!(!contains(&listed.stdout, &ann_text) && !contains(&listed.stderr, &ann_text));
    // Her rows came back (the backup holds them) but only as ciphertext: no byte of the
    // restored home, database and write-ahead log included, holds her words.
    // Nor her wrapped key: the snapshot's copy of the table was emptied and vacuumed.
    for (path, bytes) in common::all_file_bytes(&t.root()) {
        assert!(
            !contains(&bytes, &ann_text),
            "ann's message readable in {path:?}"
        );
        assert!(
            !contains(&bytes, &ann_key),
            "ann's wrapped key is in {path:?}"
        );
    }
}

/// A user's data key as stored (wrapped), read straight from the database file.
fn wrapped_key(db: &Path, user: &str) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display()))
            .await
            .unwrap();
        sqlx::query_scalar("SELECT wrapped FROM data_keys WHERE user_id = ?1")
            .bind(user)
            .fetch_one(&mut c)
            .await
            .unwrap()
    })
}

/// After a vault key rotation the key file keeps only the new key, while a backup made before
/// it holds the vault's check value and secrets under the old one: restoring it with today's
/// keys is refused before anything is written, naming the way out (a `--with-keys` backup,
/// which restores alone).
#[test]
fn a_restore_with_todays_keys_after_a_key_rotation_is_refused_and_leaves_nothing() {
    let h = populated();
    let plain = h.dir.path().join("plain");
    let keyed = h.dir.path().join("keyed");
    h.ok(&["backup", "create", "--to", plain.to_str().unwrap()], b"");
    h.ok(
        &backup_args("create", keyed.to_str().unwrap(), &["--with-keys"]),
        b"",
    );
    h.ok(&["vault", "rotate-key"], b"");

    let t = target();
    let before = dirs_in(t.dir.path());
    let err = t.fails(
        &backup_args(
            "restore",
            plain.to_str().unwrap(),
            &["--keys-from", h.root().to_str().unwrap()],
        ),
        b"",
    );
    assert!(
        err.contains("does not open this backup's database") && err.contains("--with-keys"),
        "{err}"
    );
    assert!(!t.root().exists(), "a refused restore made the home");
    assert_eq!(dirs_in(t.dir.path()), before, "leftovers");
    // An empty home that existed stays, empty.
    std::fs::create_dir_all(t.root()).unwrap();
    t.fails(
        &backup_args(
            "restore",
            plain.to_str().unwrap(),
            &["--keys-from", h.root().to_str().unwrap()],
        ),
        b"",
    );
    assert_eq!(dirs_in(&t.root()), Vec::<String>::new());
    std::fs::remove_dir(t.root()).unwrap();

    // The backup made --with-keys carries the keys of its day and restores alone.
    t.ok(
        &["backup", "restore", "--from", keyed.to_str().unwrap()],
        b"",
    );
    t.ok(&["doctor"], b"");
    assert_eq!(
        t.ok(&["vault", "get", "hue", "--reveal"], b"").trim(),
        format!("{CANARY}-secret")
    );
}

/// `--with-keys` puts the vault key in the backup: never under a key file, only under a
/// passphrase; refused before anything is written.
#[test]
fn key_files_go_in_only_under_a_passphrase() {
    let h = populated();
    let key_file = h.dir.path().join("backup.key");
    std::fs::write(&key_file, [9u8; 32]).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let dest = h.dir.path().join("backup");
    let err = h.fails(
        &backup_args(
            "create",
            dest.to_str().unwrap(),
            &["--with-keys", "--key-file", key_file.to_str().unwrap()],
        ),
        b"",
    );
    assert!(
        err.contains("--with-keys") && err.contains("only under a passphrase"),
        "{err}"
    );
    assert!(!dest.exists(), "a refused backup made its destination");
}

/// A `--with-keys` backup whose copied vault key does not open the snapshot (what a rotation
/// finishing between the two leaves) is refused, not written for `verify` to pass.
#[test]
fn a_with_keys_backup_whose_key_file_does_not_open_the_database_is_refused() {
    let h = populated();
    let key = h.root().join("keys/vault.key");
    let foreign = "ZmRzYWZkc2FmZHNhZmRzYWZkc2FmZHNhZmRzYWZkc2E=\n";
    std::fs::write(&key, foreign).unwrap();
    let dest = h.dir.path().join("backup");
    let out = h.run(
        &backup_args("create", dest.to_str().unwrap(), &["--with-keys"]),
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    // Taken once more (a rotation may just have finished), then refused.
    assert!(err.contains("copying again"), "{err}");
    assert!(
        err.contains("does not open the database snapshot") && err.contains("rotation"),
        "{err}"
    );
    assert!(!dest.join("manifest.mxb").exists());
    assert_no_scratch(&h);
}

/// Killed at the one moment between the data file's rename and the manifest's commit (a fault
/// injected there): `verify` and `restore` refuse the directory as unfinished, and the next
/// backup to it clears it and succeeds.
#[test]
fn a_backup_killed_between_its_data_and_its_manifest_is_unfinished() {
    let h = populated();
    let dest = h.dir.path().join("backup");
    let dying = home().with("MAESTRA_HOME", h.root().to_str().unwrap());
    let dying = dying.with("MAESTRA_BACKUP_FAULT", "before-manifest");
    let out = dying.run(&["backup", "create", "--to", dest.to_str().unwrap()], b"");
    assert!(!out.status.success());
    assert_eq!(
        dirs_in(&dest),
        ["data.mxb"],
        "the data was renamed, no manifest"
    );
    let err = h.fails(&["backup", "verify", "--from", dest.to_str().unwrap()], b"");
    assert!(err.contains("unfinished"), "{err}");
    let t = target();
    let err = t.fails(
        &backup_args(
            "restore",
            dest.to_str().unwrap(),
            &["--keys-from", h.root().to_str().unwrap()],
        ),
        b"",
    );
    assert!(err.contains("unfinished"), "{err}");
    assert!(!t.root().exists());
    h.ok(&["backup", "create", "--to", dest.to_str().unwrap()], b"");
    h.ok(&["backup", "verify", "--from", dest.to_str().unwrap()], b"");
    // The dead run's scratch directory was swept by the next one.
    assert_no_scratch(&h);
}
