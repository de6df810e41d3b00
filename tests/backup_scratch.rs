//! Issue 23, class 4(a): erasure reaches every copy Maestra makes. A `backup create
//! --with-keys` that dies before its commit must leave nothing in the home that holds a key in
//! the clear, and whatever scratch it left is removed by the next start and by every forget
//! (command line and API), so a forgotten user's key survives nowhere in the home.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::server::Server;
use common::{Home, all_file_bytes, contains};
use serde_json::json;

const PASS: &str = "correct horse battery staple";
const CANARY: &str = "canary-scratch-5b9e";

fn import(h: &Home, owner: &str) {
    let seed = h.dir.path().join(format!("seed-{owner}"));
    std::fs::create_dir_all(seed.join("conversations")).unwrap();
    let id = format!("conv_2025-12-28_{owner}_abc12345");
    let conv = json!({
        "id": id, "topic": "scratch", "owner": owner,
        "surfaces": ["cli"], "tags": [], "artifacts": [],
        "messages": [{"id": "m1", "role": "user", "content": format!("{CANARY} {owner}"),
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

fn populated() -> Home {
    let h = Home::new().with("MAESTRA_BACKUP_PASSPHRASE", PASS);
    h.ok(&["init"], b"");
    import(&h, "ann");
    import(&h, "bob");
    h
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

fn vault_key(h: &Home) -> String {
    let text = std::fs::read_to_string(h.root().join("keys/vault.key")).unwrap();
    text.trim().to_string()
}

/// Runs `backup create --with-keys` in `h`'s home and has it die (SIGABRT: no destructor, no
/// clean-up) between its data file and its commit.
fn die_mid_backup(h: &Home) {
    let dest = h.dir.path().join(format!("backup-{}", rand_suffix()));
    let dying = Home::new()
        .with("MAESTRA_HOME", h.root().to_str().unwrap())
        .with("MAESTRA_BACKUP_PASSPHRASE", PASS)
        .with("MAESTRA_BACKUP_FAULT", "before-manifest");
    let out = dying.run(
        &[
            "backup",
            "create",
            "--with-keys",
            "--to",
            dest.to_str().unwrap(),
        ],
        b"",
    );
    assert!(!out.status.success(), "the fault did not stop the backup");
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn scratch_in(h: &Home) -> Vec<String> {
    std::fs::read_dir(h.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".maestra-backup-"))
        .collect()
}

/// No file of the home but the key file holds the vault key, and none but the live database
/// holds `user`'s wrapped data key (`None`: no file at all, once the user is forgotten).
fn assert_keys_only_where_they_live(h: &Home, wrapped: &str, in_db: bool) {
    let vault = vault_key(h);
    for (path, bytes) in all_file_bytes(&h.root()) {
        let rel = path.strip_prefix(h.root()).unwrap().to_path_buf();
        if rel != Path::new("keys/vault.key") {
            assert!(!contains(&bytes, &vault), "the vault key is in {rel:?}");
        }
        let live_db = rel.starts_with("maestra.db");
        if !(in_db && live_db) {
            assert!(
                !contains(&bytes, wrapped),
                "the wrapped data key is in {rel:?}"
            );
        }
    }
}

#[test]
fn a_killed_with_keys_backup_leaves_no_key_in_the_clear_and_a_cli_forget_sweeps_it() {
    let h = populated();
    let ann = wrapped_key(&h.root().join("maestra.db"), "ann");
    die_mid_backup(&h);
    // Whatever the dead run left holds no key in the clear.
    assert_keys_only_where_they_live(&h, &ann, true);

    h.ok(&["forget", "--user", "ann"], b"");
    assert!(scratch_in(&h).is_empty(), "{:?}", scratch_in(&h));
    assert_keys_only_where_they_live(&h, &ann, false);
}

#[test]
fn a_forget_through_the_api_sweeps_what_a_killed_backup_left() {
    let h = populated();
    let ann = wrapped_key(&h.root().join("maestra.db"), "ann");
    let server = Server::start(&h);
    die_mid_backup(&h);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        common::http::client()
            .delete(server.url("/api/users/ann/data"))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status.as_u16(), 200);
    assert!(scratch_in(&h).is_empty(), "{:?}", scratch_in(&h));
    drop(server);
    assert_keys_only_where_they_live(&h, &ann, false);
}
