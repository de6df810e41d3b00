//! One behavioural suite for every `Store` backend.
//!
//! Each behaviour is a function taking `Arc<dyn Store>`; the `suite!` macro runs it against a
//! fresh SQLite file (`sqlite::*`) and a fresh PostgreSQL database (`postgres::*`).
//!
//! PostgreSQL: the tests connect as `postgres` to 127.0.0.1:5432 (database `test`, else
//! `postgres`), or to `MAESTRA_TEST_POSTGRES_URL` when set, create a database per test and drop
//! it afterwards (`common::pg`). An unreachable server fails the tests, never skips them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use maestra::store::prelude::*;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use maestra::Error;
use maestra::conversations::model::{Conversation, ConversationMeta, Message, now_millis};
use maestra::cost::ledger::{Limit, Period, Reservation, ReserveOutcome, Scope, Tokens};
use maestra::store::{
    ApiKeyRecord, ApprovalRecord, Decision, PostgresStore, SecretRecord, SqliteStore, Store, Turn,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Backends

async fn with_sqlite<F, Fut>(behaviour: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("maestra.db"))
            .await
            .unwrap(),
    );
    behaviour(store.clone()).await;
    store.close().await;
}

async fn with_postgres<F, Fut>(behaviour: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = common::pg::TempDb::create().await;
    // The behaviour runs in its own task so that a failing assertion still reaches the cleanup.
    let outcome = match PostgresStore::open(&db.url).await {
        Ok(store) => {
            let store = Arc::new(store);
            let outcome = tokio::spawn(behaviour(store.clone())).await;
            store.close().await;
            outcome.map_err(|e| e.into_panic())
        }
        Err(e) => Err(Box::new(format!("PostgresStore::open failed: {e}")) as _),
    };
    db.drop_db().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
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
    append_creates_and_extends,
    messages_keep_their_order,
    long_turns_keep_every_message_in_order,
    opening_turns_are_seen_by_every_later_read,
    recent_returns_the_last_messages_oldest_first,
    list_is_newest_first_filtered_and_paged,
    append_to_another_owners_conversation_is_not_found,
    append_over_max_messages_is_refused_whole,
    concurrent_appends_keep_every_message,
    refused_appends_among_concurrent_ones_affect_only_themselves,
    delete_one,
    delete_owner_leaves_others_untouched,
    delete_before_applies_retention,
    import_refuses_an_existing_id,
    import_and_get_round_trip,
    scrub_keeps_live_data,
    secrets_basic_behaviour,
    meta_basic_behaviour,
    ledger_reserves_settles_releases_and_sweeps,
    concurrent_reservations_never_pass_a_limit,
    api_keys_basic_behaviour,
    tool_approvals_keep_the_first_decision,
);

/// The conversation behaviours again through the per-user encryption (issue 18), which must
/// not change what any of them sees.
async fn sealed(raw: Arc<dyn Store>) -> Arc<dyn Store> {
    use maestra::privsec::keyring::{KeySource, Keyring};
    let key = SecretString::from(fernet::Fernet::generate_key());
    let keys = Keyring::parse(&key, KeySource::Environment).unwrap();
    let vault = Arc::new(maestra::privsec::vault::Vault::new(keys, raw.clone()));
    maestra::conversations::open::seal(raw, vault, &mut |_, _| Ok(()))
        .await
        .unwrap()
}

macro_rules! sealed_suite {
    ($($name:ident),* $(,)?) => {
        mod sealed_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::with_sqlite(|s| async move { super::$name(super::sealed(s).await).await })
                        .await;
                }
            )*
        }
        mod sealed_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::with_postgres(|s| async move { super::$name(super::sealed(s).await).await })
                        .await;
                }
            )*
        }
    };
}

sealed_suite!(
    append_creates_and_extends,
    messages_keep_their_order,
    long_turns_keep_every_message_in_order,
    opening_turns_are_seen_by_every_later_read,
    recent_returns_the_last_messages_oldest_first,
    list_is_newest_first_filtered_and_paged,
    append_to_another_owners_conversation_is_not_found,
    append_over_max_messages_is_refused_whole,
    concurrent_appends_keep_every_message,
    refused_appends_among_concurrent_ones_affect_only_themselves,
    delete_one,
    delete_owner_leaves_others_untouched,
    delete_before_applies_retention,
    import_refuses_an_existing_id,
    import_and_get_round_trip,
    scrub_keeps_live_data,
);

// ---------------------------------------------------------------------------------------------
// Fixtures

fn msg(id: &str, role: &str, content: &str, timestamp: i64) -> Message {
    Message {
        id: id.into(),
        role: role.into(),
        content: content.into(),
        surface: "cli".into(),
        mode: "chat".into(),
        timestamp,
        meta: json!({ "n": id }),
    }
}

fn msgs(prefix: &str, n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| {
            msg(
                &format!("{prefix}{i}"),
                if i % 2 == 0 { "user" } else { "assistant" },
                &format!("content {prefix}{i}"),
                1_700_000_000_000 + i as i64,
            )
        })
        .collect()
}

fn turn<'a>(id: &'a str, owner: &'a str, surface: &'a str, messages: &'a [Message]) -> Turn<'a> {
    Turn {
        conversation_id: id,
        owner,
        topic: "topic",
        surface,
        messages,
        max_messages: 1000,
        opens: false,
    }
}

fn conversation(id: &str, owner: &str, updated_at: i64, n: usize) -> Conversation {
    let messages = msgs(&format!("{id}-m"), n);
    Conversation {
        id: id.into(),
        topic: format!("about {id}"),
        owner: owner.into(),
        surfaces: vec!["cli".into()],
        tags: vec![],
        artifacts: vec![],
        meta: ConversationMeta {
            created_at: updated_at - 10,
            updated_at,
            status: "active".into(),
            message_count: messages.len() as u64,
        },
        messages,
    }
}

fn ids(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.id.as_str()).collect()
}

// ---------------------------------------------------------------------------------------------
// Behaviours

async fn append_creates_and_extends(store: Arc<dyn Store>) {
    assert!(store.conversation_get("c1").await.unwrap().is_none());
    let before = now_millis();
    let first = msgs("a", 2);
    store
        .conversation_append(&Turn {
            topic: "weekend plans",
            ..turn("c1", "alice", "cli", &first)
        })
        .await
        .unwrap();
    let c = store.conversation_get("c1").await.unwrap().unwrap();
    assert_eq!(c.id, "c1");
    assert_eq!(c.owner, "alice");
    assert_eq!(c.topic, "weekend plans");
    assert_eq!(c.surfaces, vec!["cli".to_string()]);
    assert_eq!(c.messages, first);
    assert_eq!(c.meta.message_count, 2);
    assert_eq!(c.meta.status, "active");
    assert!(c.meta.created_at >= before && c.meta.updated_at >= c.meta.created_at);

    // An existing conversation keeps its topic, gains the new surface once, counts on.
    let second = msgs("b", 1);
    store
        .conversation_append(&Turn {
            topic: "ignored",
            ..turn("c1", "alice", "vscode", &second)
        })
        .await
        .unwrap();
    store
        .conversation_append(&turn("c1", "alice", "cli", &msgs("c", 1)))
        .await
        .unwrap();
    let c2 = store.conversation_get("c1").await.unwrap().unwrap();
    assert_eq!(c2.topic, "weekend plans");
    assert_eq!(c2.surfaces, vec!["cli".to_string(), "vscode".to_string()]);
    assert_eq!(c2.meta.message_count, 4);
    assert_eq!(ids(&c2.messages), ["a0", "a1", "b0", "c0"]);
    assert_eq!(c2.meta.created_at, c.meta.created_at);
    assert!(c2.meta.updated_at >= c.meta.updated_at);
}

async fn messages_keep_their_order(store: Arc<dyn Store>) {
    let mut expected = Vec::new();
    for t in 0..6 {
        let mut batch = msgs(&format!("t{t}-"), 1 + t % 3);
        // Timestamps deliberately out of order: order is append order, not timestamp order.
        for m in &mut batch {
            m.timestamp = 2_000_000_000_000 - (t as i64) * 1000;
            m.meta = json!({ "turn": t, "nested": { "list": [1, "two", null] } });
            m.content = format!("{} — ünïcödé ✓ 'quotes' \"double\"", m.content);
        }
        store
            .conversation_append(&turn("ordered", "alice", "cli", &batch))
            .await
            .unwrap();
        expected.extend(batch);
    }
    let c = store.conversation_get("ordered").await.unwrap().unwrap();
    assert_eq!(c.messages, expected);
    assert_eq!(c.meta.message_count, expected.len() as u64);
}

/// Turns longer than one insert statement's rows (the embedded store writes 100 per statement).
async fn long_turns_keep_every_message_in_order(store: Arc<dyn Store>) {
    let first = msgs("a", 250);
    let second = msgs("b", 130);
    for batch in [&first, &second] {
        store
            .conversation_append(&turn("long", "alice", "cli", batch))
            .await
            .unwrap();
    }
    // Refused whole, however long: someone else's conversation, and one over the limit.
    let err = store
        .conversation_append(&turn("long", "bob", "cli", &msgs("x", 250)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    let err = store
        .conversation_append(&Turn {
            max_messages: 400,
            ..turn("long", "alice", "cli", &msgs("y", 250))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge(_)), "{err:?}");
    let c = store.conversation_get("long").await.unwrap().unwrap();
    let expected: Vec<Message> = first.into_iter().chain(second).collect();
    assert_eq!(c.messages, expected);
    assert_eq!(c.meta.message_count, 380);
}

/// A turn that opens a conversation may be acknowledged before its commit (the embedded store
/// does), but no read or delete after the append returns may miss it.
async fn opening_turns_are_seen_by_every_later_read(store: Arc<dyn Store>) {
    let m = msgs("o", 2);
    let opening = |id| Turn {
        opens: true,
        ..turn(id, "olga", "cli", &m)
    };
    store.conversation_append(&opening("o1")).await.unwrap();
    assert_eq!(
        store
            .conversation_get("o1")
            .await
            .unwrap()
            .unwrap()
            .messages,
        m
    );
    store.conversation_append(&opening("o2")).await.unwrap();
    let ctx = store.conversation_context("o2", 10).await.unwrap().unwrap();
    assert_eq!((ctx.owner.as_str(), ctx.recent.len()), ("olga", 2));
    store.conversation_append(&opening("o3")).await.unwrap();
    let listed = store.conversation_list(Some("olga"), 10, 0).await.unwrap();
    assert_eq!(listed.len(), 3);
    store.conversation_append(&opening("o4")).await.unwrap();
    assert!(store.conversation_delete("o4").await.unwrap());
    store.conversation_append(&opening("o5")).await.unwrap();
    assert_eq!(store.conversations_delete_owner("olga").await.unwrap(), 4);
    assert!(store.conversation_get("o5").await.unwrap().is_none());
}

async fn recent_returns_the_last_messages_oldest_first(store: Arc<dyn Store>) {
    let all = msgs("m", 10);
    for chunk in all.chunks(3) {
        store
            .conversation_append(&turn("r", "alice", "cli", chunk))
            .await
            .unwrap();
    }
    let ctx = store.conversation_context("r", 3).await.unwrap().unwrap();
    assert_eq!(ctx.owner, "alice");
    assert_eq!(ctx.message_count, 10);
    assert_eq!(ctx.recent, all[7..].to_vec());
    let ctx = store.conversation_context("r", 100).await.unwrap().unwrap();
    assert_eq!(ctx.recent, all);
    // Asking for no messages still tells who owns the conversation and how full it is.
    let ctx = store.conversation_context("r", 0).await.unwrap().unwrap();
    assert!(ctx.recent.is_empty());
    assert_eq!((ctx.owner.as_str(), ctx.message_count), ("alice", 10));
    // A conversation with no messages yet has a context too; a missing one has none.
    store
        .conversation_append(&turn("empty", "bob", "cli", &[]))
        .await
        .unwrap();
    let ctx = store
        .conversation_context("empty", 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ctx.owner.as_str(), ctx.message_count), ("bob", 0));
    assert!(ctx.recent.is_empty());
    assert!(
        store
            .conversation_context("missing", 5)
            .await
            .unwrap()
            .is_none()
    );
}

async fn list_is_newest_first_filtered_and_paged(store: Arc<dyn Store>) {
    let specs = [
        ("l1", "alice", 1_000),
        ("l2", "bob", 5_000),
        ("l3", "alice", 3_000),
        ("l4", "alice", 4_000),
        ("l5", "bob", 2_000),
    ];
    for (id, owner, updated) in specs {
        assert!(
            store
                .conversation_import(&conversation(id, owner, updated, 2))
                .await
                .unwrap()
        );
    }
    let list_ids = |v: Vec<maestra::conversations::model::Summary>| {
        v.into_iter().map(|s| s.id).collect::<Vec<_>>()
    };
    assert_eq!(
        list_ids(store.conversation_list(None, 100, 0).await.unwrap()),
        ["l2", "l4", "l3", "l5", "l1"]
    );
    assert_eq!(
        list_ids(
            store
                .conversation_list(Some("alice"), 100, 0)
                .await
                .unwrap()
        ),
        ["l4", "l3", "l1"]
    );
    assert_eq!(
        list_ids(store.conversation_list(Some("bob"), 100, 0).await.unwrap()),
        ["l2", "l5"]
    );
    assert!(
        store
            .conversation_list(Some("nobody"), 100, 0)
            .await
            .unwrap()
            .is_empty()
    );
    // Paging.
    assert_eq!(
        list_ids(store.conversation_list(None, 2, 0).await.unwrap()),
        ["l2", "l4"]
    );
    assert_eq!(
        list_ids(store.conversation_list(None, 2, 2).await.unwrap()),
        ["l3", "l5"]
    );
    assert_eq!(
        list_ids(store.conversation_list(None, 2, 4).await.unwrap()),
        ["l1"]
    );
    assert!(
        store
            .conversation_list(None, 2, 6)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        list_ids(store.conversation_list(Some("alice"), 1, 1).await.unwrap()),
        ["l3"]
    );
    // A summary carries the header, not the messages.
    let s = &store.conversation_list(Some("bob"), 1, 0).await.unwrap()[0];
    assert_eq!(s.id, "l2");
    assert_eq!(s.owner, "bob");
    assert_eq!(s.topic, "about l2");
    assert_eq!(s.surfaces, vec!["cli".to_string()]);
    assert_eq!((s.created_at, s.updated_at), (4_990, 5_000));
    assert_eq!(s.message_count, 2);
}

async fn append_to_another_owners_conversation_is_not_found(store: Arc<dyn Store>) {
    store
        .conversation_append(&turn("mine", "alice", "cli", &msgs("a", 2)))
        .await
        .unwrap();
    let before = store.conversation_get("mine").await.unwrap().unwrap();
    let err = store
        .conversation_append(&turn("mine", "bob", "phone", &msgs("b", 1)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert_eq!(err.status(), 404);
    // Nothing of bob's turn was written: no message, no surface, no new timestamp.
    assert_eq!(
        store.conversation_get("mine").await.unwrap().unwrap(),
        before
    );
    // Bob's own conversations still work.
    store
        .conversation_append(&turn("his", "bob", "phone", &msgs("b", 1)))
        .await
        .unwrap();
    assert_eq!(
        store.conversation_get("his").await.unwrap().unwrap().owner,
        "bob"
    );
}

async fn append_over_max_messages_is_refused_whole(store: Arc<dyn Store>) {
    fn limited(messages: &[Message]) -> Turn<'_> {
        Turn {
            max_messages: 3,
            ..turn("small", "alice", "cli", messages)
        }
    }
    store
        .conversation_append(&limited(&msgs("a", 2)))
        .await
        .unwrap();
    let before = store.conversation_get("small").await.unwrap().unwrap();
    let err = store
        .conversation_append(&Turn {
            surface: "web",
            ..limited(&msgs("b", 2))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge(_)), "{err:?}");
    assert_eq!(
        store.conversation_get("small").await.unwrap().unwrap(),
        before
    );
    // Exactly reaching the limit is allowed; one more is not.
    store
        .conversation_append(&limited(&msgs("c", 1)))
        .await
        .unwrap();
    let full = store.conversation_get("small").await.unwrap().unwrap();
    assert_eq!(full.meta.message_count, 3);
    assert_eq!(ids(&full.messages), ["a0", "a1", "c0"]);
    let err = store
        .conversation_append(&limited(&msgs("d", 1)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge(_)), "{err:?}");
    assert_eq!(
        store.conversation_get("small").await.unwrap().unwrap(),
        full
    );

    // A first turn over the limit does not even create the conversation.
    let err = store
        .conversation_append(&Turn {
            max_messages: 3,
            ..turn("born-too-big", "alice", "cli", &msgs("x", 4))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge(_)), "{err:?}");
    assert!(
        store
            .conversation_get("born-too-big")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .conversation_list(Some("alice"), 10, 0)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Appends that arrive together may be committed together (the embedded store group-commits);
/// a refused one must still write nothing and leave the others whole.
async fn refused_appends_among_concurrent_ones_affect_only_themselves(store: Arc<dyn Store>) {
    store
        .conversation_append(&turn("bobs", "bob", "cli", &msgs("b", 1)))
        .await
        .unwrap();
    let full = Turn {
        max_messages: 2,
        ..turn("full", "alice", "cli", &[])
    };
    store
        .conversation_append(&Turn {
            messages: &msgs("f", 2),
            ..full.clone()
        })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let m = msgs(&format!("t{i}-"), 2);
            let (id, owner, max) = match i % 3 {
                0 => ("bobs", "alice", 1000),
                1 => ("full", "alice", 2),
                _ => ("ok", "alice", 1000),
            };
            let t = Turn {
                max_messages: max,
                ..turn(id, owner, "cli", &m)
            };
            (i, store.conversation_append(&t).await)
        }));
    }
    for t in tasks {
        let (i, result) = t.await.unwrap();
        match i % 3 {
            0 => assert!(matches!(result, Err(Error::NotFound(_))), "{result:?}"),
            1 => assert!(matches!(result, Err(Error::TooLarge(_))), "{result:?}"),
            _ => result.unwrap(),
        }
    }
    let ok = store.conversation_get("ok").await.unwrap().unwrap();
    assert_eq!((ok.meta.message_count, ok.messages.len()), (20, 20));
    let bobs = store.conversation_get("bobs").await.unwrap().unwrap();
    assert_eq!(ids(&bobs.messages), ["b0"]);
    let full = store.conversation_get("full").await.unwrap().unwrap();
    assert_eq!(ids(&full.messages), ["f0", "f1"]);
}

async fn concurrent_appends_keep_every_message(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for w in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..5 {
                let m = msgs(&format!("w{w}-{i}-"), 1);
                let surface = format!("s{w}");
                store
                    .conversation_append(&turn("busy", "alice", &surface, &m))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = store.conversation_get("busy").await.unwrap().unwrap();
    assert_eq!(c.meta.message_count, 30);
    assert_eq!(c.messages.len(), 30);
    let mut seen: Vec<_> = ids(&c.messages);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 30);
    let mut surfaces = c.surfaces.clone();
    surfaces.sort();
    assert_eq!(surfaces, ["s0", "s1", "s2", "s3", "s4", "s5"]);
    // Each worker's messages appear in the order it appended them.
    for w in 0..6 {
        let mine: Vec<_> = c
            .messages
            .iter()
            .filter(|m| m.id.starts_with(&format!("w{w}-")))
            .map(|m| m.id.clone())
            .collect();
        let expected: Vec<_> = (0..5).map(|i| format!("w{w}-{i}-0")).collect();
        assert_eq!(mine, expected);
    }
}

async fn delete_one(store: Arc<dyn Store>) {
    store
        .conversation_append(&turn("gone", "alice", "cli", &msgs("g", 3)))
        .await
        .unwrap();
    store
        .conversation_append(&turn("kept", "alice", "cli", &msgs("k", 2)))
        .await
        .unwrap();
    let kept = store.conversation_get("kept").await.unwrap().unwrap();
    assert!(store.conversation_delete("gone").await.unwrap());
    assert!(store.conversation_get("gone").await.unwrap().is_none());
    assert!(
        store
            .conversation_context("gone", 10)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!store.conversation_delete("gone").await.unwrap());
    assert!(!store.conversation_delete("never-was").await.unwrap());
    assert_eq!(store.conversation_get("kept").await.unwrap().unwrap(), kept);
    // The id can be used again, and starts empty: no message of the old one comes back.
    store
        .conversation_append(&turn("gone", "bob", "cli", &msgs("n", 1)))
        .await
        .unwrap();
    let again = store.conversation_get("gone").await.unwrap().unwrap();
    assert_eq!(again.owner, "bob");
    assert_eq!(ids(&again.messages), ["n0"]);
    assert_eq!(again.meta.message_count, 1);
}

async fn delete_owner_leaves_others_untouched(store: Arc<dyn Store>) {
    for i in 0..3 {
        store
            .conversation_append(&turn(&format!("a{i}"), "alice", "cli", &msgs("x", 2)))
            .await
            .unwrap();
    }
    for i in 0..2 {
        store
            .conversation_append(&turn(&format!("b{i}"), "bob", "cli", &msgs("y", 2)))
            .await
            .unwrap();
    }
    let b0 = store.conversation_get("b0").await.unwrap().unwrap();
    assert_eq!(store.conversations_delete_owner("alice").await.unwrap(), 3);
    assert!(
        store
            .conversation_list(Some("alice"), 10, 0)
            .await
            .unwrap()
            .is_empty()
    );
    for i in 0..3 {
        let id = format!("a{i}");
        assert!(store.conversation_get(&id).await.unwrap().is_none());
        assert!(store.conversation_context(&id, 10).await.unwrap().is_none());
    }
    assert_eq!(
        store
            .conversation_list(Some("bob"), 10, 0)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(store.conversation_get("b0").await.unwrap().unwrap(), b0);
    assert_eq!(store.conversations_delete_owner("alice").await.unwrap(), 0);
}

async fn delete_before_applies_retention(store: Arc<dyn Store>) {
    let now = now_millis();
    store
        .conversation_import(&conversation("old", "alice", 1_000, 2))
        .await
        .unwrap();
    store
        .conversation_import(&conversation("mid", "bob", 2_000, 2))
        .await
        .unwrap();
    store
        .conversation_append(&turn("fresh", "alice", "cli", &msgs("f", 1)))
        .await
        .unwrap();
    assert_eq!(store.conversations_delete_before(1_500).await.unwrap(), 1);
    assert!(store.conversation_get("old").await.unwrap().is_none());
    assert!(
        store
            .conversation_context("old", 10)
            .await
            .unwrap()
            .is_none()
    );
    // Strictly before: a conversation updated exactly at the cut-off stays.
    assert_eq!(store.conversations_delete_before(2_000).await.unwrap(), 0);
    assert!(store.conversation_get("mid").await.unwrap().is_some());
    assert_eq!(
        store
            .conversations_delete_before(now - 60_000)
            .await
            .unwrap(),
        1
    );
    let left: Vec<_> = store
        .conversation_list(None, 10, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, ["fresh"]);
    assert_eq!(
        store
            .conversation_get("fresh")
            .await
            .unwrap()
            .unwrap()
            .messages
            .len(),
        1
    );
}

async fn import_refuses_an_existing_id(store: Arc<dyn Store>) {
    let original = conversation("imp", "alice", 10_000, 3);
    assert!(store.conversation_import(&original).await.unwrap());
    let mut other = conversation("imp", "mallory", 20_000, 5);
    other.topic = "replaced".into();
    assert!(!store.conversation_import(&other).await.unwrap());
    assert_eq!(
        store.conversation_get("imp").await.unwrap().unwrap(),
        original
    );

    // Also over a conversation created by an append.
    store
        .conversation_append(&turn("live", "alice", "cli", &msgs("l", 1)))
        .await
        .unwrap();
    let live = store.conversation_get("live").await.unwrap().unwrap();
    assert!(
        !store
            .conversation_import(&conversation("live", "alice", 1, 4))
            .await
            .unwrap()
    );
    assert_eq!(store.conversation_get("live").await.unwrap().unwrap(), live);
}

async fn import_and_get_round_trip(store: Arc<dyn Store>) {
    let c = Conversation {
        id: "conv_2025-12-28_jh_abc12345".into(),
        topic: "Ünïcode topic — with 'quotes'".into(),
        owner: "user@example.com".into(),
        surfaces: vec!["vscode".into(), "cli".into(), "phone".into()],
        tags: vec!["music".into(), "home".into()],
        messages: vec![
            Message {
                id: "m1".into(),
                role: "user".into(),
                content: "Play something calm\nline two\ttabbed".into(),
                surface: "phone".into(),
                mode: "voice".into(),
                timestamp: 1_766_916_000_123,
                meta: json!({ "tokens": 12, "model": "llama3", "flags": [true, false] }),
            },
            Message {
                id: "m2".into(),
                role: "assistant".into(),
                content: "Playing \"Weightless\" on Sonos 🎵".into(),
                surface: "".into(),
                mode: "".into(),
                timestamp: 1_766_916_001_000,
                meta: serde_json::Value::Null,
            },
        ],
        artifacts: vec![
            json!({ "type": "file", "path": "/tmp/x.md" }),
            json!("plain"),
        ],
        meta: ConversationMeta {
            created_at: 1_766_916_000_000,
            updated_at: 1_766_916_001_000,
            status: "archived".into(),
            message_count: 2,
        },
    };
    assert!(store.conversation_import(&c).await.unwrap());
    assert_eq!(store.conversation_get(&c.id).await.unwrap().unwrap(), c);
    assert_eq!(
        store
            .conversation_context(&c.id, 1)
            .await
            .unwrap()
            .unwrap()
            .recent,
        vec![c.messages[1].clone()]
    );
    // The JSON export format round-trips through the store too.
    let exported = serde_json::to_string(&c).unwrap();
    let back: Conversation = serde_json::from_str(&exported).unwrap();
    assert_eq!(back, c);

    // Appending to an imported conversation continues after its messages.
    store
        .conversation_append(&turn(&c.id, &c.owner, "cli", &msgs("next", 1)))
        .await
        .unwrap();
    let after = store.conversation_get(&c.id).await.unwrap().unwrap();
    assert_eq!(ids(&after.messages), ["m1", "m2", "next0"]);
    assert_eq!(after.meta.message_count, 3);
    assert_eq!(after.surfaces, c.surfaces);
    assert_eq!(after.tags, c.tags);
    assert_eq!(after.artifacts, c.artifacts);

    // An empty conversation round-trips as well.
    let empty = conversation("empty", "alice", 5, 0);
    assert!(store.conversation_import(&empty).await.unwrap());
    assert_eq!(
        store.conversation_get("empty").await.unwrap().unwrap(),
        empty
    );
}

async fn scrub_keeps_live_data(store: Arc<dyn Store>) {
    store
        .conversation_append(&turn("doomed", "alice", "cli", &msgs("d", 3)))
        .await
        .unwrap();
    store
        .conversation_append(&turn("stays", "bob", "cli", &msgs("s", 3)))
        .await
        .unwrap();
    let stays = store.conversation_get("stays").await.unwrap().unwrap();
    store.conversations_delete_owner("alice").await.unwrap();
    store.scrub().await.unwrap();
    store.scrub().await.unwrap();
    assert!(store.conversation_get("doomed").await.unwrap().is_none());
    assert_eq!(
        store.conversation_get("stays").await.unwrap().unwrap(),
        stays
    );
    // The store is fully usable afterwards.
    store
        .conversation_append(&turn("stays", "bob", "cli", &msgs("t", 1)))
        .await
        .unwrap();
    assert_eq!(
        store
            .conversation_get("stays")
            .await
            .unwrap()
            .unwrap()
            .meta
            .message_count,
        4
    );
}

fn secret(name: &str, value: &str, encrypted: bool, at: i64) -> SecretRecord {
    SecretRecord {
        name: name.into(),
        value: SecretString::from(value.to_string()),
        encrypted,
        created_at: at,
        updated_at: at,
    }
}

async fn secrets_basic_behaviour(store: Arc<dyn Store>) {
    assert!(store.secret_get("OPENAI_API_KEY").await.unwrap().is_none());
    assert!(store.secret_list().await.unwrap().is_empty());
    store
        .secret_put(&secret("OPENAI_API_KEY", "gAAAAtoken1", true, 100))
        .await
        .unwrap();
    store
        .secret_put(&secret("HUE_TOKEN", "legacy-plain", false, 150))
        .await
        .unwrap();
    let got = store.secret_get("OPENAI_API_KEY").await.unwrap().unwrap();
    assert_eq!(got.name, "OPENAI_API_KEY");
    assert_eq!(got.value.expose_secret(), "gAAAAtoken1");
    assert!(got.encrypted);
    assert_eq!((got.created_at, got.updated_at), (100, 100));

    // Replacing keeps the creation time.
    store
        .secret_put(&secret("OPENAI_API_KEY", "gAAAAtoken2", true, 200))
        .await
        .unwrap();
    let got = store.secret_get("OPENAI_API_KEY").await.unwrap().unwrap();
    assert_eq!(got.value.expose_secret(), "gAAAAtoken2");
    assert_eq!((got.created_at, got.updated_at), (100, 200));

    let list = store.secret_list().await.unwrap();
    let names: Vec<_> = list.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["HUE_TOKEN", "OPENAI_API_KEY"]);
    assert!(!list[0].encrypted);
    assert_eq!(list[1].updated_at, 200);

    // Compare-and-swap: only from the expected value.
    let wrong = SecretString::from("gAAAAtoken1".to_string());
    let right = SecretString::from("legacy-plain".to_string());
    let new = SecretString::from("gAAAAencrypted".to_string());
    assert!(
        !store
            .secret_swap("HUE_TOKEN", &wrong, &new, true)
            .await
            .unwrap()
    );
    assert!(!store.secret_swap("NOPE", &right, &new, true).await.unwrap());
    assert!(
        store
            .secret_swap("HUE_TOKEN", &right, &new, true)
            .await
            .unwrap()
    );
    let hue = store.secret_get("HUE_TOKEN").await.unwrap().unwrap();
    assert_eq!(hue.value.expose_secret(), "gAAAAencrypted");
    assert!(hue.encrypted);

    assert!(store.secret_delete("HUE_TOKEN").await.unwrap());
    assert!(!store.secret_delete("HUE_TOKEN").await.unwrap());
    assert!(store.secret_get("HUE_TOKEN").await.unwrap().is_none());
    assert_eq!(store.secret_list().await.unwrap().len(), 1);
}

async fn meta_basic_behaviour(store: Arc<dyn Store>) {
    assert_eq!(store.meta_get("rotation").await.unwrap(), None);
    store.meta_set("rotation", "pending").await.unwrap();
    store.meta_set("other", "x").await.unwrap();
    assert_eq!(
        store.meta_get("rotation").await.unwrap().as_deref(),
        Some("pending")
    );
    store.meta_set("rotation", "done").await.unwrap();
    assert_eq!(
        store.meta_get("rotation").await.unwrap().as_deref(),
        Some("done")
    );
    store.meta_delete("rotation").await.unwrap();
    store.meta_delete("rotation").await.unwrap();
    assert_eq!(store.meta_get("rotation").await.unwrap(), None);
    assert_eq!(store.meta_get("other").await.unwrap().as_deref(), Some("x"));
    // A first value set once: of racing writers exactly one wins, and it stands.
    let racers = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .meta_set_if_absent("first", &format!("v{i}"))
                .await
                .unwrap()
        })
    });
    let won = futures_util::future::join_all(racers)
        .await
        .into_iter()
        .filter(|w| *w.as_ref().unwrap())
        .count();
    assert_eq!(won, 1);
    let first = store.meta_get("first").await.unwrap().unwrap();
    assert!(!store.meta_set_if_absent("first", "late").await.unwrap());
    assert_eq!(store.meta_get("first").await.unwrap().unwrap(), first);
}

fn approval(id: &str, asked_at: i64, expires_at: i64) -> ApprovalRecord {
    ApprovalRecord {
        id: id.into(),
        server: "time".into(),
        tool: "get_current_time".into(),
        asked_by: "agent a".into(),
        arguments_bytes: 20,
        arguments_digest: "digest".into(),
        asked_at,
        expires_at,
        decision: None,
        decided_by: None,
        decided_at: None,
    }
}

async fn tool_approvals_keep_the_first_decision(store: Arc<dyn Store>) {
    let now = 1_000_000_000_000;
    store
        .approval_insert(&approval("b", now + 1, now + 60_000))
        .await
        .unwrap();
    store
        .approval_insert(&approval("a", now, now + 60_000))
        .await
        .unwrap();
    store
        .approval_insert(&approval("gone", now, now + 10))
        .await
        .unwrap();
    let pending = store.approval_pending(now + 100, 10).await.unwrap();
    let ids: Vec<&str> = pending.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "oldest first; an ended wait is not listed");
    assert_eq!(pending[0], approval("a", now, now + 60_000));
    assert_eq!(store.approval_pending(now + 100, 1).await.unwrap().len(), 1);
    // Of racing decisions exactly one is kept.
    let racers = (0..6).map(|i| {
        let store = store.clone();
        let d = if i % 2 == 0 {
            Decision::Approved
        } else {
            Decision::Denied
        };
        tokio::spawn(async move {
            store
                .approval_decide("a", d, &format!("p{i}"), now + 200)
                .await
                .unwrap()
        })
    });
    let won = futures_util::future::join_all(racers)
        .await
        .into_iter()
        .filter(|w| *w.as_ref().unwrap())
        .count();
    assert_eq!(won, 1);
    let a = store.approval_get("a").await.unwrap().unwrap();
    assert!(
        a.decision.is_some() && a.decided_at == Some(now + 200),
        "{a:?}"
    );
    assert!(
        !store
            .approval_decide("a", Decision::Approved, "late", now + 300)
            .await
            .unwrap()
    );
    // A wait that ended cannot be decided any more, nor an unknown one.
    assert!(
        !store
            .approval_decide("gone", Decision::Approved, "p", now + 100)
            .await
            .unwrap()
    );
    assert!(
        !store
            .approval_decide("nope", Decision::Approved, "p", now)
            .await
            .unwrap()
    );
    assert_eq!(
        store.approval_pending(now + 400, 10).await.unwrap().len(),
        1
    );
    store.approval_delete("b").await.unwrap();
    assert!(store.approval_get("b").await.unwrap().is_none());
    // Rows whose wait ended long ago are cleared by the next insert.
    let later = now + 2 * 60 * 60 * 1000;
    store
        .approval_insert(&approval("c", later, later + 1))
        .await
        .unwrap();
    assert!(store.approval_get("gone").await.unwrap().is_none());
    assert!(store.approval_get("c").await.unwrap().is_some());
}

// ---------------------------------------------------------------------------------------------
// SQLite only: "forget" holds for someone reading the files afterwards.

/// Every file under the database directory, as bytes, by its path in the directory.
fn database_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    common::all_file_bytes(dir)
        .into_iter()
        .map(|(p, bytes)| {
            let name = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
            (name, bytes)
        })
        .collect()
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    database_files(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(name, _)| name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_scrub_leaves_no_trace_of_deleted_content_in_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("maestra.db"))
        .await
        .unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let canary = format!("CANARY-{nanos}-q7Zx");

    // A small message, and a large one that spills into overflow pages.
    let mut planted = msgs("p", 2);
    planted[0].content = format!("my secret is {canary}, keep it");
    planted[1].content = format!("{canary} ").repeat(2_000);
    store
        .conversation_append(&Turn {
            topic: &format!("topic {canary}"),
            ..turn("forget-me", "alice", "cli", &planted)
        })
        .await
        .unwrap();
    store
        .conversation_append(&turn("forget-me-too", "alice", "web", &planted[..1]))
        .await
        .unwrap();
    // Someone else's conversation, which must survive.
    store
        .conversation_append(&turn("bobs", "bob", "cli", &msgs("b", 3)))
        .await
        .unwrap();

    // The test can fail: the canary is on disk before the deletion (in the WAL at least).
    assert!(
        !files_containing(dir.path(), canary.as_bytes()).is_empty(),
        "canary not found on disk before deletion; files: {:?}",
        database_files(dir.path())
            .iter()
            .map(|(n, b)| (n.clone(), b.len()))
            .collect::<Vec<_>>()
    );
    // And after a checkpoint it sits in the main file too.
    store.scrub().await.unwrap();
    assert_eq!(
        files_containing(dir.path(), canary.as_bytes()),
        ["maestra.db"]
    );

    assert_eq!(store.conversations_delete_owner("alice").await.unwrap(), 2);
    store.scrub().await.unwrap();

    let names: Vec<_> = database_files(dir.path())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.contains(&"maestra.db".to_string()), "{names:?}");
    let leaks = files_containing(dir.path(), canary.as_bytes());
    assert!(leaks.is_empty(), "deleted content still in {leaks:?}");
    // Not even a fragment of it.
    let fragment = format!("{nanos}");
    let leaks = files_containing(dir.path(), fragment.as_bytes());
    assert!(
        leaks.is_empty(),
        "a fragment of deleted content still in {leaks:?}"
    );

    // Bob's conversation is intact, and still so after the store is closed and reopened.
    assert_eq!(
        store
            .conversation_get("bobs")
            .await
            .unwrap()
            .unwrap()
            .messages
            .len(),
        3
    );
    store.close().await;
    assert!(files_containing(dir.path(), canary.as_bytes()).is_empty());
    let store = SqliteStore::open(&dir.path().join("maestra.db"))
        .await
        .unwrap();
    assert!(store.conversation_get("forget-me").await.unwrap().is_none());
    assert_eq!(
        store
            .conversation_get("bobs")
            .await
            .unwrap()
            .unwrap()
            .messages
            .len(),
        3
    );
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// Cost ledger and API keys

fn reservation<'a>(user: Option<&'a str>, amount: i64, now_ms: i64) -> Reservation<'a> {
    Reservation {
        day: "2026-11-23",
        month: "2026-11",
        user_id: user,
        key_id: None,
        model: "gpt-4o-mini",
        provider: "openai",
        amount,
        now_ms,
        stale_before_ms: now_ms - 1_000,
    }
}

fn daily(scope: Scope, limit: i64) -> Limit {
    Limit {
        scope,
        period: Period::Daily,
        limit,
    }
}

async fn usage(store: &Arc<dyn Store>, scope: Scope, key: &str) -> (i64, i64) {
    let u = store.cost_usage(&scope, key).await.unwrap();
    (u.spent, u.reserved)
}

async fn ledger_reserves_settles_releases_and_sweeps(store: Arc<dyn Store>) {
    let now = 10_000_000;
    let limits = [
        daily(Scope::Global, 100),
        daily(Scope::User("u".into()), 60),
    ];
    let ReserveOutcome::Reserved(a) = store
        .cost_reserve(&reservation(Some("u"), 50, now), &limits)
        .await
        .unwrap()
    else {
        panic!("first reservation refused");
    };
    assert_eq!(usage(&store, Scope::Global, "2026-11-23").await, (0, 50));
    // The user's own limit (60) refuses a second 50 although the global one (100) has room.
    match store
        .cost_reserve(&reservation(Some("u"), 50, now), &limits)
        .await
        .unwrap()
    {
        ReserveOutcome::Exceeded { limit, usage } => {
            assert_eq!(limit.scope, Scope::User("u".into()));
            assert_eq!((usage.spent, usage.reserved), (0, 50));
        }
        other => panic!("{other:?}"),
    }
    // Calls without a user are held to the global limit only.
    let global = [daily(Scope::Global, 100)];
    let used = Tokens {
        input: 12,
        output: 7,
    };
    store.cost_settle(a, 30, used).await.unwrap();
    // Settling twice changes nothing.
    store.cost_settle(a, 999, Tokens::default()).await.unwrap();
    assert_eq!(usage(&store, Scope::Global, "2026-11-23").await, (30, 0));
    assert_eq!(
        usage(&store, Scope::User("u".into()), "2026-11").await,
        (30, 0)
    );
    let ReserveOutcome::Reserved(b) = store
        .cost_reserve(&reservation(None, 70, now), &global)
        .await
        .unwrap()
    else {
        panic!("refused");
    };
    store.cost_release(b).await.unwrap();
    assert_eq!(usage(&store, Scope::Global, "2026-11-23").await, (30, 0));
    // A reservation whose request died is swept once it is older than the stale horizon.
    let ReserveOutcome::Reserved(_) = store
        .cost_reserve(&reservation(None, 70, now), &global)
        .await
        .unwrap()
    else {
        panic!("refused");
    };
    assert!(matches!(
        store
            .cost_reserve(&reservation(None, 70, now), &global)
            .await
            .unwrap(),
        ReserveOutcome::Exceeded { .. }
    ));
    let later = now + 10_000;
    assert!(matches!(
        store
            .cost_reserve(&reservation(None, 70, later), &global)
            .await
            .unwrap(),
        ReserveOutcome::Reserved(_)
    ));
    let charges = store.cost_charges("2026-11-01").await.unwrap();
    assert_eq!(charges.iter().map(|c| c.spent).sum::<i64>(), 30);
    // A charge keeps the tokens its call used, for the privacy center's spend.
    let settled: Vec<_> = charges.iter().filter(|c| c.spent > 0).collect();
    assert_eq!(settled.len(), 1, "{charges:?}");
    assert_eq!(settled[0].tokens, used);
    assert!(settled[0].request && settled[0].user_id.as_deref() == Some("u"));
    assert!(
        store
            .cost_import("2025-12-28", 2_450_000, now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .cost_import("2025-12-28", 2_450_000, now)
            .await
            .unwrap()
    );
    assert_eq!(
        usage(&store, Scope::Global, "2025-12").await,
        (2_450_000, 0)
    );
    // An imported day is spend, not a request.
    let imported = store.cost_charges("2025-12-01").await.unwrap();
    let day = imported.iter().find(|c| c.day == "2025-12-28").unwrap();
    assert!(!day.request && day.tokens == Tokens::default(), "{day:?}");
}

async fn concurrent_reservations_never_pass_a_limit(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let limits = [daily(Scope::Global, 100)];
            store
                .cost_reserve(&reservation(None, 10, 10_000_000), &limits)
                .await
                .unwrap()
        }));
    }
    let mut reserved = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), ReserveOutcome::Reserved(_)) {
            reserved += 1;
        }
    }
    assert_eq!(reserved, 10);
    assert_eq!(usage(&store, Scope::Global, "2026-11-23").await, (0, 100));
}

async fn api_keys_basic_behaviour(store: Arc<dyn Store>) {
    let k = ApiKeyRecord {
        id: "0123456789ab".into(),
        name: "laptop".into(),
        hash: "h".into(),
        created_at: 1,
        last_used_at: None,
        revoked_at: None,
        user_id: Some("ann".into()),
        scope: maestra::access::scope::KeyScope::Assistant,
        services: Some(vec!["hue".into(), "spotify".into()]),
        expires_at: Some(1_000),
    };
    store.api_key_insert(&k).await.unwrap();
    let dup = store
        .api_key_insert(&ApiKeyRecord {
            id: "ffffffffffff".into(),
            ..k.clone()
        })
        .await;
    assert!(matches!(dup, Err(Error::BadRequest(_))));
    // Whose it is, what it may do and until when read back as written.
    assert_eq!(store.api_key_get(&k.id).await.unwrap().unwrap(), k);
    store.api_key_touch(&k.id, 5).await.unwrap();
    assert_eq!(
        store
            .api_key_get(&k.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(5)
    );
    assert!(store.api_key_revoke("laptop", 9).await.unwrap());
    assert!(!store.api_key_revoke("laptop", 9).await.unwrap());
    assert_eq!(store.api_key_list().await.unwrap()[0].revoked_at, Some(9));
    assert_eq!(store.api_keys_revoke_all(10).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ledger_survives_a_restart_and_recovers_dead_reservations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maestra.db");
    let limits = [daily(Scope::Global, 100)];
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
        let ReserveOutcome::Reserved(a) = store
            .cost_reserve(&reservation(None, 40, 10_000_000), &limits)
            .await
            .unwrap()
        else {
            panic!("refused");
        };
        store.cost_settle(a, 25, Tokens::default()).await.unwrap();
        // A reservation whose request dies with the process.
        let _ = store
            .cost_reserve(&reservation(None, 50, 10_000_000), &limits)
            .await
            .unwrap();
        store.cost_charges("2026-01-01").await.unwrap(); // flushes the write-behind queue
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    assert_eq!(usage(&store, Scope::Global, "2026-11-23").await, (25, 50));
    store.cost_recover().await.unwrap();
    let fresh: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    assert_eq!(usage(&fresh, Scope::Global, "2026-11-23").await, (25, 0));
}
