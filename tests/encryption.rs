//! Conversations encrypted at rest per user (issue 18), on both backends.
//!
//! Each behaviour gets a [`Fixture`]: a vault key file, an audit log and a database (a fresh
//! SQLite file, or a fresh PostgreSQL database), and can open the store as often as it likes,
//! as several processes would. Canaries are random per test, so a hit in PostgreSQL's shared
//! write-ahead log can only come from the test that wrote it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use maestra::config::AuditConfig;
use maestra::conversations::model::{Conversation, ConversationMeta, Message};
use maestra::conversations::{migrate, open, rights};
use maestra::privsec::audit::{AuditLog, ChainKey};
use maestra::privsec::keyring::Keyring;
use maestra::privsec::vault::Vault;
use maestra::store::prelude::*;
use maestra::store::{PostgresStore, RawMessage, SqliteStore, Turn};
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Backends

#[derive(Clone)]
enum Db {
    Sqlite(PathBuf),
    Postgres(String),
}

struct Fixture {
    db: Db,
    dir: PathBuf,
}

impl Fixture {
    fn key_file(&self) -> PathBuf {
        self.dir.join("vault.key")
    }

    /// The undecorated store, as a new process would open it.
    async fn raw(&self) -> Arc<dyn Store> {
        match &self.db {
            Db::Sqlite(path) => Arc::new(SqliteStore::open(path).await.unwrap()),
            Db::Postgres(url) => Arc::new(PostgresStore::open(url).await.unwrap()),
        }
    }

    fn vault(&self, raw: &Arc<dyn Store>) -> Arc<Vault> {
        Keyring::create_file_if_missing(&self.key_file()).unwrap();
        let keys = Keyring::load(None, &self.key_file()).unwrap();
        Arc::new(Vault::new(keys, raw.clone()))
    }

    /// The raw store and the sealed one over it, plaintext sealed first.
    async fn open(&self) -> (Arc<dyn Store>, Arc<dyn Store>) {
        let raw = self.raw().await;
        let sealed = open::seal(raw.clone(), self.vault(&raw), &mut |_, _| Ok(()))
            .await
            .unwrap();
        (raw, sealed)
    }

    fn audit(&self) -> AuditLog {
        let cfg = AuditConfig {
            path: self.dir.join("logs").join("audit.log"),
            retention_days: 90,
            fail_closed: true,
            queue_capacity: 1024,
        };
        AuditLog::open(&cfg, ChainKey::from_bytes(&[7; 32])).unwrap()
    }

    /// Names of the database's files that hold `needle`: for SQLite the database, its
    /// write-ahead log and anything else under its directory; for PostgreSQL (read by the
    /// superuser through `pg_read_binary_file`, after a checkpoint) the content tables' files,
    /// their TOAST tables, and (`wal`) the newest write-ahead-log segments, which no scrub
    /// can reach (README: what encryption at rest does not cover).
    async fn files_containing(&self, needle: &str, wal: bool) -> Vec<String> {
        let needle = needle.as_bytes();
        let has = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        match &self.db {
            Db::Sqlite(path) => common::all_file_bytes(path.parent().unwrap())
                .into_iter()
                .filter(|(_, bytes)| has(bytes))
                .map(|(p, _)| p.display().to_string())
                .collect(),
            Db::Postgres(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::raw_sql("CHECKPOINT").execute(&pool).await.unwrap();
                let files: Vec<(String, Vec<u8>)> = sqlx::query_as(
                    "SELECT f.name || ' ' || f.path, pg_read_binary_file(f.path) FROM (
                         SELECT c.relname AS name, pg_relation_filepath(c.oid) AS path
                         FROM pg_class AS c
                         WHERE c.relname IN ('messages', 'conversations', 'data_keys')
                         UNION ALL
                         SELECT c.relname || ' (TOAST)', pg_relation_filepath(c.reltoastrelid)
                         FROM pg_class AS c
                         WHERE c.relname IN ('messages', 'conversations')
                             AND c.reltoastrelid <> 0
                         UNION ALL
                         SELECT * FROM (SELECT 'wal', 'pg_wal/' || name FROM pg_ls_waldir()
                                        WHERE $1 ORDER BY modification DESC LIMIT 3) AS w
                     ) AS f WHERE f.path IS NOT NULL",
                )
                .bind(wal)
                .fetch_all(&pool)
                .await
                .unwrap();
                assert!(files.len() >= 3, "found only {} files", files.len());
                pool.close().await;
                files
                    .into_iter()
                    .filter(|(_, bytes)| has(bytes))
                    .map(|(path, _)| path)
                    .collect()
            }
        }
    }
}

async fn with_sqlite<F, Fut>(behaviour: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("db")).unwrap();
    behaviour(Fixture {
        db: Db::Sqlite(dir.path().join("db").join("maestra.db")),
        dir: dir.path().to_path_buf(),
    })
    .await;
}

async fn with_postgres<F, Fut>(behaviour: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let db = common::pg::TempDb::create().await;
    let fixture = Fixture {
        db: Db::Postgres(db.url.clone()),
        dir: dir.path().to_path_buf(),
    };
    // In a task of its own, so a failing assertion still reaches the cleanup.
    let outcome = tokio::spawn(behaviour(fixture)).await;
    db.drop_db().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::with_sqlite(super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::with_postgres(super::$name).await;
                }
            )*
        }
    };
}

suite!(
    content_round_trips_and_is_not_in_the_files,
    a_ciphertext_moved_to_another_row_does_not_open,
    forget_destroys_the_key_first_and_old_copies_stay_unreadable,
    a_forget_elsewhere_reaches_a_running_process,
    racing_first_writes_end_with_one_key,
    writes_racing_a_forget_are_deleted_or_readable,
    a_plaintext_database_is_sealed_resumably,
    a_migration_leaves_a_forgotten_users_sealed_rows_alone,
    rotation_rewraps_data_keys_and_content_still_reads,
);

// ---------------------------------------------------------------------------------------------
// Fixtures

fn canary() -> String {
    format!("CANARY-{}", uuid::Uuid::new_v4().simple())
}

fn msg(id: &str, content: &str) -> Message {
    Message {
        id: id.into(),
        role: "user".into(),
        content: content.into(),
        surface: "cli".into(),
        mode: "chat".into(),
        timestamp: 1_700_000_000_000,
        meta: json!({ "note": format!("meta of {content}") }),
    }
}

fn turn<'a>(id: &'a str, owner: &'a str, topic: &'a str, messages: &'a [Message]) -> Turn<'a> {
    Turn {
        conversation_id: id,
        owner,
        topic,
        surface: "cli",
        messages,
        max_messages: 10_000,
        opens: false,
    }
}

fn conversation(id: &str, owner: &str, secret: &str, n: usize) -> Conversation {
    Conversation {
        id: id.into(),
        topic: format!("topic {secret}"),
        owner: owner.into(),
        surfaces: vec!["cli".into()],
        tags: vec![format!("tag {secret}")],
        artifacts: vec![json!({ "artifact": secret })],
        messages: (0..n)
            .map(|i| msg(&format!("{id}-m{i}"), &format!("{secret} #{i}")))
            .collect(),
        meta: ConversationMeta {
            created_at: 1_700_000_000_000,
            updated_at: 1_700_000_000_000,
            status: "active".into(),
            message_count: n as u64,
        },
    }
}

/// Conversations and messages whose content columns do not all open as sealed values under
/// their owner's place (the plaintext the migration has left), read raw. A value that is
/// sealed does not hold the canary, which is how the test data tells them apart.
async fn plaintext_rows(raw: &Arc<dyn Store>) -> (usize, usize) {
    let plain = |text: &str| !text.starts_with("mx1:") || text.contains("CANARY");
    let conversations = raw.raw_conversations("", u32::MAX).await.unwrap();
    let messages = raw.raw_messages(("", i64::MIN), u32::MAX).await.unwrap();
    (
        conversations.iter().filter(|c| plain(&c.topic)).count(),
        messages.iter().filter(|m| plain(&m.content)).count(),
    )
}

/// A conversation as stored, read through the undecorated typed API.
async fn stored(raw: &Arc<dyn Store>, id: &str) -> Conversation {
    raw.conversation_get(id).await.unwrap().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Behaviours

/// What goes in comes out the same, and none of it is readable in the store or its files.
async fn content_round_trips_and_is_not_in_the_files(f: Fixture) {
    let secret = canary();
    let (raw, store) = f.open().await;
    let first = [msg("m1", &format!("hello {secret}"))];
    let second = [msg("m2", &format!("reply {secret}"))];
    let topic = format!("topic {secret}");
    store
        .conversation_append(&turn("chat", "alice", &topic, &first))
        .await
        .unwrap();
    store
        .conversation_append(&turn("chat", "alice", &topic, &second))
        .await
        .unwrap();
    let imported = conversation("imported", "alice", &secret, 3);
    assert!(store.conversation_import(&imported).await.unwrap());

    let chat = store.conversation_get("chat").await.unwrap().unwrap();
    assert_eq!(chat.topic, topic);
    assert_eq!(chat.messages, [first[0].clone(), second[0].clone()]);
    assert_eq!(
        store.conversation_get("imported").await.unwrap().unwrap(),
        imported
    );
    let context = store
        .conversation_context("chat", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(context.recent, [second[0].clone()]);
    let list = store.conversation_list(Some("alice"), 10, 0).await.unwrap();
    assert!(
        list.iter().all(|s| s.topic.contains(&secret)),
        "{}",
        list.len()
    );
    let summary = store.conversation_summary("chat").await.unwrap().unwrap();
    assert_eq!(summary.topic, topic);

    // The undecorated store holds ciphertext only, plain where it should be.
    for id in ["chat", "imported"] {
        let c = stored(&raw, id).await;
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains(&secret), "{text}");
        assert!(c.topic.starts_with("mx1:"));
        assert_eq!(c.owner, "alice");
        assert!(c.messages.iter().all(|m| m.content.starts_with("mx1:")));
    }
    assert_eq!(stored(&raw, "chat").await.messages[0].id, "m1");
    let key = raw.data_key_get("alice").await.unwrap().unwrap();
    assert!(!format!("{key:?}").contains(&key.wrapped));
    store.close().await;
    assert_eq!(
        f.files_containing(&secret, true).await,
        Vec::<String>::new()
    );
}

/// A ciphertext copied to another message, conversation or user does not open.
async fn a_ciphertext_moved_to_another_row_does_not_open(f: Fixture) {
    let (raw, store) = f.open().await;
    for (id, owner) in [("a", "alice"), ("b", "alice"), ("c", "bob")] {
        let messages = [msg(&format!("{id}1"), "one"), msg(&format!("{id}2"), "two")];
        store
            .conversation_append(&turn(id, owner, "t", &messages))
            .await
            .unwrap();
    }
    let row = |c: &Conversation, seq: usize| RawMessage {
        conversation_id: c.id.clone(),
        seq: seq as i64,
        id: c.messages[seq].id.clone(),
        owner: c.owner.clone(),
        content: c.messages[seq].content.clone(),
        meta: serde_json::to_string(&c.messages[seq].meta).unwrap(),
    };
    let a = stored(&raw, "a").await;
    // Into another message of the same conversation, another conversation of the same user,
    // and a conversation of another user.
    for (target, seq) in [("a", 1), ("b", 0), ("c", 0)] {
        let t = stored(&raw, target).await;
        let old = row(&t, seq);
        let moved = RawMessage {
            content: a.messages[0].content.clone(),
            ..old.clone()
        };
        assert_eq!(raw.raw_messages_rewrite(&[(old, moved)]).await.unwrap(), 1);
        let err = store
            .conversation_get(target)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be decrypted"), "{err}");
    }
    // The topic, into another conversation.
    let mut b = stored(&raw, "b").await;
    b.topic = a.topic.clone();
    b.id = "b2".into();
    assert!(raw.conversation_import(&b).await.unwrap());
    assert!(store.conversation_summary("b2").await.is_err());
    // Listing does not fail over it: the topic is left out.
    let listed = store.conversation_list(Some("alice"), 10, 0).await.unwrap();
    assert!(listed.iter().any(|s| s.id == "b2" && s.topic.is_empty()));
    store.close().await;
}

/// Waits until no scrub is owed (PostgreSQL defers one that older transactions or a table
/// lock stand in the way of, and retries it every 5 s); SQLite never owes one.
async fn owed_scrub_done(raw: &Arc<dyn Store>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while raw.meta_get("store.scrub_pending").await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "an owed scrub was not done within 2 minutes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Forget destroys the key (committed and audited) before deleting the rows; a copy of the
/// user's rows taken before (a backup) stays unreadable; other users are untouched.
async fn forget_destroys_the_key_first_and_old_copies_stay_unreadable(f: Fixture) {
    let secret = canary();
    let (raw, store) = f.open().await;
    assert!(
        store
            .conversation_import(&conversation("a1", "alice", &secret, 4))
            .await
            .unwrap()
    );
    let bobs = conversation("b1", "bob", "bob's", 2);
    assert!(store.conversation_import(&bobs).await.unwrap());
    let copy = stored(&raw, "a1").await;
    let wrapped = raw.data_key_get("alice").await.unwrap().unwrap().wrapped;

    let audit = f.audit();
    let n = rights::forget_user(store.as_ref(), &audit, "alice", &rights::Actor::cli())
        .await
        .unwrap();
    audit.close().await;
    assert_eq!(n, 1);
    assert!(raw.data_key_get("alice").await.unwrap().is_none());
    assert!(store.conversation_get("a1").await.unwrap().is_none());
    let log = std::fs::read_to_string(f.dir.join("logs").join("audit.log")).unwrap();
    let destroyed = log
        .find("forget_user.key_destroyed")
        .expect("key destruction audited");
    let forgot = log.rfind("\"forget_user\"").expect("forget audited");
    assert!(destroyed < forgot);
    assert!(!log.contains(&secret));

    // The old copy comes back (a restored backup): it does not open, in this process or in
    // a new one.
    assert!(raw.conversation_import(&copy).await.unwrap());
    let err = store.conversation_get("a1").await.unwrap_err();
    assert!(matches!(err, maestra::Error::NotFound(_)), "{err}");
    let err = err.to_string();
    assert!(err.contains("forgotten") && !err.contains(&secret), "{err}");
    store.close().await;
    let (raw_again, again) = f.open().await;
    assert!(again.conversation_get("a1").await.is_err());
    assert_eq!(again.conversation_get("b1").await.unwrap().unwrap(), bobs);
    // A new write for the forgotten user starts a new key, which cannot open the old copy.
    let fresh = [msg("n1", "new life")];
    again
        .conversation_append(&turn("a2", "alice", "t", &fresh))
        .await
        .unwrap();
    assert_eq!(
        again
            .conversation_get("a2")
            .await
            .unwrap()
            .unwrap()
            .messages,
        fresh
    );
    let err = again.conversation_get("a1").await.unwrap_err().to_string();
    assert!(err.contains("cannot be decrypted"), "{err}");
    assert!(again.conversations_delete_owner("alice").await.unwrap() == 2);
    again.scrub().await.unwrap();
    // On a busy PostgreSQL server (other tests' sessions, in any database) the scrub may be
    // owed rather than done at once; the README's promise is that it completes on the retries.
    owed_scrub_done(&raw_again).await;
    again.close().await;
    assert_eq!(
        f.files_containing(&secret, true).await,
        Vec::<String>::new()
    );
    // The destroyed wrapped key has left the files too (PostgreSQL's write-ahead log, which
    // the server recycles in its own time, aside).
    let wal = matches!(f.db, Db::Sqlite(_));
    assert_eq!(
        f.files_containing(&wrapped, wal).await,
        Vec::<String>::new()
    );
}

/// A server holds alice's key in its cache; `maestra forget` in another process destroys it:
/// within the watch period the server drops the key and cannot open her old rows either.
async fn a_forget_elsewhere_reaches_a_running_process(f: Fixture) {
    let (raw, server) = f.open().await;
    let messages = [msg("m1", "hello")];
    server
        .conversation_append(&turn("a1", "alice", "t", &messages))
        .await
        .unwrap();
    let copy = stored(&raw, "a1").await;
    let (_, cli) = f.open().await;
    let audit = f.audit();
    rights::forget_user(cli.as_ref(), &audit, "alice", &rights::Actor::cli())
        .await
        .unwrap();
    audit.close().await;
    cli.close().await;
    assert!(raw.conversation_import(&copy).await.unwrap());
    tokio::time::sleep(maestra::conversations::keys::WATCH_EVERY * 3).await;
    assert!(server.conversation_get("a1").await.is_err());
    server.close().await;
}

/// Two processes writing a new user's first turns at once end with one key, and each reads
/// what the other wrote.
async fn racing_first_writes_end_with_one_key(f: Fixture) {
    let (raw, one) = f.open().await;
    let (_, two) = f.open().await;
    let m1 = [msg("x1", "from one")];
    let m2 = [msg("y1", "from two")];
    let (t1, t2) = (turn("x", "carol", "t", &m1), turn("y", "carol", "t", &m2));
    let (r1, r2) = tokio::join!(one.conversation_append(&t1), two.conversation_append(&t2));
    r1.unwrap();
    r2.unwrap();
    assert_eq!(raw.data_key_list().await.unwrap().len(), 1);
    assert_eq!(
        one.conversation_get("y").await.unwrap().unwrap().messages,
        m2
    );
    assert_eq!(
        two.conversation_get("x").await.unwrap().unwrap().messages,
        m1
    );
    one.close().await;
    two.close().await;
}

/// Turns written while the user is being forgotten are either deleted with the rest or, if
/// they look their key up after the forget, stored under a new key that opens them: never
/// stored under the destroyed key (which would leave a conversation nobody can open).
async fn writes_racing_a_forget_are_deleted_or_readable(f: Fixture) {
    let (raw, store) = f.open().await;
    let first = [msg("d0", "before")];
    store
        .conversation_append(&turn("d", "dave", "t", &first))
        .await
        .unwrap();
    let audit = f.audit();
    let writers: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let m = [msg(&format!("w{i}"), &format!("racing {i}"))];
                let id = format!("r{i}");
                store
                    .conversation_append(&turn(&id, "dave", "t", &m))
                    .await
                    .unwrap();
            })
        })
        .collect();
    tokio::task::yield_now().await;
    rights::forget_user(store.as_ref(), &audit, "dave", &rights::Actor::cli())
        .await
        .unwrap();
    for w in writers {
        w.await.unwrap();
    }
    audit.close().await;
    assert!(store.conversation_get("d").await.unwrap().is_none());
    // Whatever survived was written after the forget and opens; a key left for dave is the
    // one it was written under.
    let left = store.conversation_list(Some("dave"), 500, 0).await.unwrap();
    for s in &left {
        let c = store.conversation_get(&s.id).await.unwrap().unwrap();
        assert_eq!(c.messages.len(), 1, "{}", s.id);
    }
    assert_eq!(
        raw.data_key_get("dave").await.unwrap().is_some(),
        !left.is_empty()
    );
    store.close().await;
}

/// A database written before encryption is sealed at start, in batches; a crash half-way
/// leaves it readable and the next start finishes; then nothing plaintext is left, in the
/// rows or in the files.
async fn a_plaintext_database_is_sealed_resumably(f: Fixture) {
    let secret = canary();
    let raw = f.raw().await;
    // Written by the old code path: the undecorated store.
    let n = (migrate::BATCH as usize) * 2 + 37;
    let mut originals = Vec::new();
    for (i, owner) in ["alice", "bob", "carol"].iter().enumerate() {
        let c = conversation(&format!("c{i}"), owner, &secret, n / 3 + i);
        assert!(raw.conversation_import(&c).await.unwrap());
        originals.push(c);
    }
    // Plaintext that starts like a sealed value is plaintext all the same.
    let chat = [msg("t1", &format!("mx1:turn{secret}"))];
    raw.conversation_append(&turn("chat", "alice", &format!("mx1:{secret}"), &chat))
        .await
        .unwrap();
    assert!(plaintext_rows(&raw).await.1 > 0);
    // The search works: the plaintext is there to find before the migration.
    assert!(!f.files_containing(&secret, false).await.is_empty());

    // The first start dies after its second batch (the first of messages).
    let vault = f.vault(&raw);
    let mut batches = 0;
    let mut crash = |_: u64, _: u64| {
        batches += 1;
        match batches {
            2 => Err(maestra::Error::Store("simulated crash".into())),
            _ => Ok(()),
        }
    };
    assert!(open::seal(raw.clone(), vault, &mut crash).await.is_err());
    let left = plaintext_rows(&raw).await.1;
    assert!(left > 0 && left < n, "{left} of {n} left");
    raw.close().await;

    // The next start finishes, and shows progress on the way.
    let raw = f.raw().await;
    let mut calls = Vec::new();
    let store = open::seal(raw.clone(), f.vault(&raw), &mut |done, total| {
        calls.push((done, total));
        Ok(())
    })
    .await
    .unwrap();
    assert!(
        calls.len() >= 2 && calls.iter().all(|(d, t)| d <= t),
        "{calls:?}"
    );
    assert_eq!(plaintext_rows(&raw).await, (0, 0));
    for c in &originals {
        assert_eq!(&store.conversation_get(&c.id).await.unwrap().unwrap(), c);
        let sealed = stored(&raw, &c.id).await;
        assert!(!serde_json::to_string(&sealed).unwrap().contains(&secret));
    }
    let got = store.conversation_get("chat").await.unwrap().unwrap();
    assert_eq!(got.messages, chat);
    assert_eq!(got.topic, format!("mx1:{secret}"));
    // A later start has nothing to do.
    let again = migrate::seal_plaintext(
        raw.as_ref(),
        &maestra::conversations::keys::UserKeys::new(f.vault(&raw), raw.clone()),
        &mut |_, _| Ok(()),
    )
    .await
    .unwrap();
    assert!(again.already_done);
    // A scrub deferred behind another session's transaction is done on the retries.
    owed_scrub_done(&raw).await;
    store.close().await;
    // The plaintext was written to PostgreSQL's write-ahead log before encryption existed:
    // that log is the server's to recycle, so only the tables' files are checked there.
    let wal = matches!(f.db, Db::Sqlite(_));
    assert_eq!(f.files_containing(&secret, wal).await, Vec::<String>::new());
}

/// A migration that meets rows sealed under a key destroyed since (another process forgot the
/// user mid-migration) leaves them as they are: no new key is made for the forgotten user and
/// nothing is sealed a second time.
async fn a_migration_leaves_a_forgotten_users_sealed_rows_alone(f: Fixture) {
    let (raw, store) = f.open().await;
    let eve = conversation("e1", "eve", "eve's words", 2);
    assert!(store.conversation_import(&eve).await.unwrap());
    let before = stored(&raw, "e1").await;
    assert!(raw.data_key_delete("eve").await.unwrap());
    raw.meta_delete(migrate::DONE).await.unwrap();
    let again = migrate::seal_plaintext(
        raw.as_ref(),
        &maestra::conversations::keys::UserKeys::new(f.vault(&raw), raw.clone()),
        &mut |_, _| Ok(()),
    )
    .await
    .unwrap();
    assert_eq!((again.conversations, again.messages), (0, 0));
    assert!(raw.data_key_get("eve").await.unwrap().is_none());
    assert_eq!(stored(&raw, "e1").await, before);
    store.close().await;
}

/// Rotating the vault key re-wraps every data key under the new key (content untouched) and
/// retires the old one; an interrupted rotation resumes; everything still reads.
async fn rotation_rewraps_data_keys_and_content_still_reads(f: Fixture) {
    let (raw, store) = f.open().await;
    let alice = conversation("a1", "alice", "alice's words", 3);
    let bob = conversation("b1", "bob", "bob's words", 2);
    for c in [&alice, &bob] {
        assert!(store.conversation_import(c).await.unwrap());
    }
    let sealed_before = stored(&raw, "a1").await;
    let first = Keyring::load(None, &f.key_file()).unwrap().primary_id();
    let mut vault = Vault::new(Keyring::load(None, &f.key_file()).unwrap(), raw.clone());
    vault
        .put("spotify", &secrecy::SecretString::from("tok"))
        .await
        .unwrap();

    // Interrupted after the secrets, before the data keys.
    let mut crash = |_: usize, _: usize| Err(maestra::Error::Vault("simulated crash".into()));
    assert!(vault.rotate_key(&mut crash).await.is_err());
    assert_eq!(Keyring::load(None, &f.key_file()).unwrap().len(), 2);
    assert!(
        raw.data_key_list()
            .await
            .unwrap()
            .iter()
            .all(|k| k.kek == first)
    );

    let mut vault = Vault::new(Keyring::load(None, &f.key_file()).unwrap(), raw.clone());
    let report = vault.rotate_key(&mut |_, _| Ok(())).await.unwrap();
    assert!(report.resumed);
    assert_eq!(report.data_keys_rewrapped, 2);
    let keys = Keyring::load(None, &f.key_file()).unwrap();
    assert_eq!(keys.len(), 1, "the old key is retired");
    assert_ne!(keys.primary_id(), first);
    assert!(
        raw.data_key_list()
            .await
            .unwrap()
            .iter()
            .all(|k| k.kek == keys.primary_id())
    );
    // No content was re-encrypted.
    assert_eq!(stored(&raw, "a1").await, sealed_before);

    // The running store (keys cached) and a new process (keys unwrapped anew) both read.
    assert_eq!(store.conversation_get("a1").await.unwrap().unwrap(), alice);
    store.close().await;
    let (raw, fresh) = f.open().await;
    assert_eq!(fresh.conversation_get("a1").await.unwrap().unwrap(), alice);
    assert_eq!(fresh.conversation_get("b1").await.unwrap().unwrap(), bob);
    // And a new user's key is wrapped under the new primary.
    let m = [msg("c1m", "hi")];
    fresh
        .conversation_append(&turn("c1", "carol", "t", &m))
        .await
        .unwrap();
    let carol = raw.data_key_get("carol").await.unwrap().unwrap();
    assert_eq!(carol.kek, keys.primary_id());
    fresh.close().await;
}

/// A scrub on PostgreSQL does not wait for a long reader (a backup's `pg_dump` keeps a
/// snapshot and a share lock on every table for the whole dump): the forget returns, the
/// scrub is owed (a marker in `meta`) and done by a retry once the reader has gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrub_behind_a_long_reader_is_deferred_then_done() {
    with_postgres(|f: Fixture| async move {
        let secret = canary();
        let (raw, store) = f.open().await;
        // Plaintext, as written before encryption: what a scrub must take out of the files.
        assert!(
            raw.conversation_import(&conversation("d1", "dora", &secret, 3))
                .await
                .unwrap()
        );
        let Db::Postgres(url) = &f.db else {
            unreachable!()
        };
        let reader = begin_long_read(url.clone()).await;

        let audit = f.audit();
        // Blocking on the reader would never end: the reader ends only after this returns.
        let actor = rights::Actor::cli();
        let forget = rights::forget_user(store.as_ref(), &audit, "dora", &actor);
        let n = tokio::time::timeout(std::time::Duration::from_secs(60), forget)
            .await
            .expect("the forget waited for the long reader")
            .unwrap();
        assert_eq!(n, 1);
        assert!(raw.meta_get("store.scrub_pending").await.unwrap().is_some());
        assert!(!f.files_containing(&secret, false).await.is_empty());

        end_long_read(reader).await;
        let mut left = Vec::new();
        for _ in 0..120 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            left = f.files_containing(&secret, false).await;
            if left.is_empty() && raw.meta_get("store.scrub_pending").await.unwrap().is_none() {
                break;
            }
        }
        assert_eq!(left, Vec::<String>::new());
        assert!(raw.meta_get("store.scrub_pending").await.unwrap().is_none());
        audit.close().await;
        store.close().await;
    })
    .await;
}

/// A connection in a repeatable-read transaction that has read the messages: it holds a
/// snapshot and a share lock, as `pg_dump` does. Boxed so the test's spawned future is `Send`
/// by declaration (sqlx's connection executor lifetimes defeat the inference).
fn begin_long_read(url: String) -> futures_util::future::BoxFuture<'static, sqlx::PgConnection> {
    use sqlx::Connection;
    Box::pin(async move {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut conn)
            .await
            .unwrap();
        let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(seen, 3);
        conn
    })
}

fn end_long_read(mut conn: sqlx::PgConnection) -> futures_util::future::BoxFuture<'static, ()> {
    use sqlx::Connection;
    Box::pin(async move {
        sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    })
}
