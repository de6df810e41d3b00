//! Encryption at rest through the real binary (issue 18): the server seals what it stores and
//! plaintext left from before; the command line reads the same conversations, rotates the key
//! under a running server (lockdown) and forgets a user by destroying their key first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::http::{core, get};
use common::server::{Server, upstream_env};
use common::{Home, mock};
use maestra::conversations::model::{Conversation, ConversationMeta, Message};
use maestra::store::SqliteStore;
use maestra::store::prelude::*;
use serde_json::Value;

fn canary() -> String {
    format!("CANARY-{}", uuid::Uuid::new_v4().simple())
}

async fn conversation(server: &Server, id: &str) -> (u16, Value) {
    get(&server.url(&format!("/api/conversations/{id}"))).await
}

/// Names of the database's files (the database, its log) that hold `needle`.
fn db_files_containing(home: &Home, needle: &str) -> Vec<String> {
    common::all_file_bytes(&home.root())
        .into_iter()
        .filter(|(p, _)| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("maestra.db"))
        })
        .filter(|(_, bytes)| common::contains(bytes, needle))
        .map(|(p, _)| p.display().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_seals_lockdown_rewraps_and_forget_destroys_the_key_first() {
    let secret = canary();
    let (addr, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr);
    let mut server = Server::start(&home);
    core(
        &server,
        "ann",
        "cli",
        Some("conv_a"),
        &format!("ann says {secret}"),
    )
    .await;
    core(&server, "bob", "cli", Some("conv_b"), "bob says hello").await;
    let (s, c) = conversation(&server, "conv_a").await;
    assert_eq!(s, 200, "{c}");
    assert!(c.to_string().contains(&secret));

    // Another process reads the same conversations with the same vault key.
    let export = home.ok(&["conversations", "export", "conv_a"], b"");
    assert!(export.contains(&secret), "{export}");

    // Lockdown rotates the vault key under the running server: the data keys are re-wrapped,
    // and both the server and a new process still read.
    let out = home.run(&["lockdown"], b"");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(conversation(&server, "conv_a").await.0, 200);
    assert!(
        home.ok(&["conversations", "export", "conv_a"], b"")
            .contains(&secret)
    );
    home.ok(&["lockdown", "--lift"], b"");

    // Forget from the command line while the server runs.
    let out = home.ok(&["forget", "--user", "ann"], b"");
    assert!(out.is_empty() || !out.contains(&secret));
    assert_eq!(conversation(&server, "conv_a").await.0, 404);
    let (s, bob) = conversation(&server, "conv_b").await;
    assert_eq!(s, 200, "{bob}");
    assert!(bob.to_string().contains("bob says hello"));
    server.stop();

    let store = SqliteStore::open(&home.root().join("maestra.db"))
        .await
        .unwrap();
    assert!(store.data_key_get("ann").await.unwrap().is_none());
    assert!(store.data_key_get("bob").await.unwrap().is_some());
    store.close().await;
    let audit = std::fs::read_to_string(home.root().join("logs/audit.log")).unwrap();
    let destroyed = audit.find("forget_user.key_destroyed").expect("audited");
    assert!(destroyed < audit.rfind("\"forget_user\"").unwrap());
    assert!(!audit.contains(&secret));
    assert_eq!(db_files_containing(&home, &secret), Vec::<String>::new());
    assert_eq!(
        db_files_containing(&home, "bob says hello"),
        Vec::<String>::new()
    );
}

/// A database from before encryption: the server seals it at start, and then no plaintext is
/// left in its files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_seals_a_plaintext_database_at_start() {
    let secret = canary();
    let (addr, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr);
    home.ok(&["init"], b"");
    // Written by the old code path: the store without encryption.
    let store = SqliteStore::open(&home.root().join("maestra.db"))
        .await
        .unwrap();
    let old = Conversation {
        id: "old".into(),
        topic: format!("topic {secret}"),
        owner: "ann".into(),
        surfaces: vec!["cli".into()],
        tags: vec![format!("tag {secret}")],
        artifacts: vec![],
        messages: vec![Message {
            id: "m1".into(),
            role: "user".into(),
            content: format!("from before {secret}"),
            surface: "cli".into(),
            mode: "chat".into(),
            timestamp: 1_700_000_000_000,
            meta: Value::Null,
        }],
        meta: ConversationMeta {
            created_at: 1_700_000_000_000,
            updated_at: 1_700_000_000_000,
            status: "active".into(),
            message_count: 1,
        },
    };
    assert!(store.conversation_import(&old).await.unwrap());
    store.close().await;
    assert!(!db_files_containing(&home, &secret).is_empty());

    let mut server = Server::start(&home);
    let (s, c) = conversation(&server, "old").await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["messages"][0]["content"], format!("from before {secret}"));
    assert_eq!(c["tags"][0], format!("tag {secret}"));
    assert_eq!(db_files_containing(&home, &secret), Vec::<String>::new());
    server.stop();
    assert_eq!(db_files_containing(&home, &secret), Vec::<String>::new());
}

/// `maestra conversations list` on a big plaintext database shows its progress; killed
/// (SIGKILL) half-way, it leaves every batch either sealed or untouched, and the next run
/// finishes: every row sealed, every conversation as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_killed_half_way_resumes() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let secret = canary();
    let home = Home::new();
    home.ok(&["init"], b"");
    let store = SqliteStore::open(&home.root().join("maestra.db"))
        .await
        .unwrap();
    let messages = |c: usize| -> Vec<Message> {
        (0..1000)
            .map(|i| Message {
                id: format!("c{c}-m{i}"),
                role: "user".into(),
                content: format!("{secret} {c}/{i}"),
                surface: "cli".into(),
                mode: "chat".into(),
                timestamp: 1_700_000_000_000,
                meta: Value::Null,
            })
            .collect()
    };
    let mut originals = Vec::new();
    for c in 0..40 {
        let conversation = Conversation {
            id: format!("c{c:02}"),
            topic: format!("topic {c}"),
            owner: format!("user{}", c % 3),
            surfaces: vec!["cli".into()],
            tags: vec![],
            artifacts: vec![],
            messages: messages(c),
            meta: ConversationMeta {
                created_at: 1_700_000_000_000,
                updated_at: 1_700_000_000_000,
                status: "active".into(),
                message_count: 1000,
            },
        };
        assert!(store.conversation_import(&conversation).await.unwrap());
        originals.push(conversation);
    }
    let total = store.raw_counts().await.unwrap();
    store.close().await;

    // The first run is killed once it has shown progress.
    let mut child = Command::new(env!("CARGO_BIN_EXE_maestra"))
        .args(["conversations", "list"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.dir.path())
        .envs(home.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("encrypting conversations: "), "{first}");
    child.kill().unwrap();
    child.wait().unwrap();

    let store = SqliteStore::open(&home.root().join("maestra.db"))
        .await
        .unwrap();
    let plain = |text: &str| !text.starts_with("mx1:");
    let left = store
        .raw_messages(("", i64::MIN), u32::MAX)
        .await
        .unwrap()
        .iter()
        .filter(|m| plain(&m.content))
        .count() as u64;
    assert!(left > 0 && left < total.1, "{left} of {} left", total.1);
    // Batches are whole: what was rewritten is sealed through and through.
    assert_eq!(left % u64::from(maestra::conversations::migrate::BATCH), 0);
    store.close().await;

    let out = home.run(&["conversations", "list", "--json"], b"");
    assert!(out.status.success(), "{out:?}");
    let store = SqliteStore::open(&home.root().join("maestra.db"))
        .await
        .unwrap();
    assert!(
        store
            .raw_conversations("", u32::MAX)
            .await
            .unwrap()
            .iter()
            .all(|c| !plain(&c.topic))
    );
    assert!(
        store
            .raw_messages(("", i64::MIN), u32::MAX)
            .await
            .unwrap()
            .iter()
            .all(|m| !plain(&m.content))
    );
    store.close().await;
    for c in [&originals[0], &originals[39]] {
        let exported = home.ok(&["conversations", "export", &c.id], b"");
        let back: Conversation = serde_json::from_str(&exported).unwrap();
        assert_eq!(&back, c);
    }
    assert_eq!(db_files_containing(&home, &secret), Vec::<String>::new());
}

/// A copy of the whole database (a disk snapshot; a replica or archived WAL alike) holds every
/// user's wrapped data key. After a plain forget that copy still opens the forgotten user's
/// key with the vault key in use (README: what crypto-shredding does not cover); after
/// `forget --rotate-key` it opens nobody's, while the live database reads on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_with_rotate_key_cuts_off_whole_database_copies() {
    use maestra::privsec::datakeys;
    use maestra::privsec::keyring::Keyring;
    let secret = canary();
    let (addr, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr);
    let mut server = Server::start(&home);
    core(
        &server,
        "ann",
        "cli",
        Some("conv_a"),
        &format!("ann says {secret}"),
    )
    .await;
    core(
        &server,
        "cat",
        "cli",
        Some("conv_c"),
        &format!("cat says {secret}"),
    )
    .await;
    core(&server, "bob", "cli", Some("conv_b"), "bob says hello").await;
    server.stop();

    // The snapshot: the database's files as they are on disk.
    let snap = tempfile::tempdir().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let from = home.root().join(format!("maestra.db{suffix}"));
        if from.exists() {
            std::fs::copy(&from, snap.path().join(format!("maestra.db{suffix}"))).unwrap();
        }
    }
    let snapshot = SqliteStore::open(&snap.path().join("maestra.db"))
        .await
        .unwrap();
    let record = |user: &'static str| {
        let snapshot = &snapshot;
        async move { snapshot.data_key_get(user).await.unwrap().unwrap() }
    };
    let (ann, cat, bob) = (
        record("ann").await,
        record("cat").await,
        record("bob").await,
    );
    let keys = || Keyring::load(None, &home.root().join("keys/vault.key")).unwrap();

    home.ok(&["forget", "--user", "ann"], b"");
    assert!(
        datakeys::unwrap(&keys(), &ann).is_ok(),
        "a plain forget leaves the copy's key openable (the documented limit)"
    );

    let out = home.run(&["forget", "--user", "cat", "--rotate-key"], b"");
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("vault key rotated"), "{said}");
    for (user, r) in [("ann", &ann), ("cat", &cat), ("bob", &bob)] {
        let err = datakeys::unwrap(&keys(), r).unwrap_err().to_string();
        assert!(err.contains("does not open"), "{user}: {err}");
    }
    snapshot.close().await;

    // The live database: bob reads on under the new key; ann and cat are gone.
    let bob_now = home.ok(&["conversations", "export", "conv_b"], b"");
    assert!(bob_now.contains("bob says hello"), "{bob_now}");
    for conv in ["conv_a", "conv_c"] {
        assert!(
            !home
                .run(&["conversations", "export", conv], b"")
                .status
                .success()
        );
    }
    let audit = std::fs::read_to_string(home.root().join("logs/audit.log")).unwrap();
    assert!(audit.contains("\"after_forget\":\"cat\""), "{audit}");
    assert!(!audit.contains(&secret));

    // With the key from the environment the flag is refused before anything is deleted.
    let env_home = Home::new().with("MAESTRA_ENCRYPTION_KEY", &fernet::Fernet::generate_key());
    let out = env_home.run(&["forget", "--user", "bob", "--rotate-key"], b"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("key file"));
}
