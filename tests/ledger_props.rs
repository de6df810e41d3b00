//! The money path under arbitrary numbers (issue 14): reserve / settle / release driven by a
//! property test with any `i64` amounts and limits, on the embedded and the shared backend,
//! against a model of what the ledger must hold. And old ledgers that an overflow corrupted
//! (a float total, a negative total, an out-of-range row) are repaired by the migration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use maestra::store::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use maestra::cost::ledger::{
    Limit, MAX_MICROS, Micros, Period, Reservation, ReserveOutcome, Scope, Tokens, Usage,
};
use maestra::store::{PostgresStore, SqliteStore, Store};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

#[derive(Debug, Clone)]
enum Op {
    Reserve { user: usize, amount: i64 },
    Settle { hold: usize, spent: i64 },
    Release { hold: usize },
}

#[derive(Debug, Clone)]
struct Case {
    global_limit: i64,
    user_limit: i64,
    ops: Vec<Op>,
}

/// Amounts a client, an upstream or a configuration could produce, including the ones that
/// broke the ledger: `i64::MAX`, negatives, values just over the cap.
fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0..50_000i64,
        1 => any::<i64>(),
        1 => Just(i64::MAX),
        1 => Just(MAX_MICROS),
        1 => Just(MAX_MICROS + 1),
        1 => i64::MIN..0,
    ]
}

fn limit() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0..200_000i64,
        1 => Just(MAX_MICROS),
        1 => 0..=i64::MAX,
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let op = prop_oneof![
        3 => (0..3usize, amount()).prop_map(|(user, amount)| Op::Reserve { user, amount }),
        2 => (any::<usize>(), amount()).prop_map(|(hold, spent)| Op::Settle { hold, spent }),
        1 => any::<usize>().prop_map(|hold| Op::Release { hold }),
    ];
    (limit(), limit(), prop::collection::vec(op, 1..40)).prop_map(
        |(global_limit, user_limit, ops)| Case {
            global_limit,
            user_limit,
            ops,
        },
    )
}

/// What the ledger must hold, computed independently of either backend.
#[derive(Default)]
struct Model {
    usage: HashMap<String, Usage>,
    /// Open holds: id, scope keys, amount held.
    open: Vec<(i64, Vec<String>, Micros)>,
}

impl Model {
    fn get(&self, key: &str) -> Usage {
        self.usage.get(key).copied().unwrap_or_default()
    }

    fn change(&mut self, keys: &[String], spent: Micros, reserved: Micros) {
        for k in keys {
            let u = self.usage.entry(k.clone()).or_default();
            u.spent += spent;
            u.reserved += reserved;
        }
    }
}

static CASE: AtomicU64 = AtomicU64::new(0);

/// Runs one case on `store` in periods and scopes of its own, so cases never meet.
async fn run_case(
    store: &dyn Store,
    db: Option<&sqlx::SqlitePool>,
    case: &Case,
) -> Result<(), TestCaseError> {
    let n = CASE.fetch_add(1, Ordering::Relaxed);
    let (day, month) = (format!("case{n}-day"), format!("case{n}-month"));
    let users: Vec<String> = (0..3).map(|i| format!("case{n}-user{i}")).collect();
    let clamp = |x: i64| x.clamp(0, MAX_MICROS);
    let global = clamp(case.global_limit);
    let per_user = clamp(case.user_limit);
    let mut model = Model::default();
    let now_ms = maestra::conversations::model::now_millis();
    for op in &case.ops {
        match op {
            Op::Reserve { user, amount } => {
                let user = &users[*user];
                let limits = [
                    Limit {
                        scope: Scope::Global,
                        period: Period::Daily,
                        limit: case.global_limit,
                    },
                    Limit {
                        scope: Scope::User(user.clone()),
                        period: Period::Monthly,
                        limit: case.user_limit,
                    },
                ];
                let r = Reservation {
                    day: &day,
                    month: &month,
                    user_id: Some(user),
                    key_id: None,
                    model: "gpt-4o",
                    provider: "openai",
                    amount: *amount,
                    now_ms,
                    stale_before_ms: now_ms - 30 * 60 * 1000,
                };
                let held = clamp(*amount);
                let keys = vec![
                    format!("global|{day}"),
                    format!("global|{month}"),
                    format!("user:{user}|{day}"),
                    format!("user:{user}|{month}"),
                ];
                let fits = model.get(&keys[0]).spent + model.get(&keys[0]).reserved + held
                    <= global
                    && model.get(&keys[3]).spent + model.get(&keys[3]).reserved + held <= per_user;
                let outcome = store
                    .cost_reserve(&r, &limits)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("reserve failed: {e}")))?;
                match outcome {
                    ReserveOutcome::Reserved(id) => {
                        prop_assert!(fits, "admitted {held} past a limit");
                        model.change(&keys, 0, held);
                        model.open.push((id, keys, held));
                    }
                    ReserveOutcome::Exceeded { usage, .. } => {
                        prop_assert!(!fits, "refused {held}, which fits");
                        prop_assert!(usage.spent >= 0 && usage.reserved >= 0);
                    }
                }
            }
            Op::Settle { hold, spent } => {
                if model.open.is_empty() {
                    continue;
                }
                let (id, keys, held) = model.open.remove(hold % model.open.len());
                store
                    .cost_settle(id, *spent, Tokens::default())
                    .await
                    .unwrap();
                model.change(&keys, clamp(*spent).min(held), -held);
            }
            Op::Release { hold } => {
                if model.open.is_empty() {
                    continue;
                }
                let (id, keys, held) = model.open.remove(hold % model.open.len());
                store.cost_release(id).await.unwrap();
                model.change(&keys, 0, -held);
            }
        }
        // After every step: what the store reports is the model, within range and limits.
        for (key, scope, period, limit) in [
            (format!("global|{day}"), Scope::Global, &day, global),
            (format!("global|{month}"), Scope::Global, &month, MAX_MICROS),
        ]
        .into_iter()
        .chain(users.iter().map(|u| {
            (
                format!("user:{u}|{month}"),
                Scope::User(u.clone()),
                &month,
                per_user,
            )
        })) {
            let got = store.cost_usage(&scope, period).await.unwrap();
            prop_assert_eq!(got, model.get(&key), "{}", key);
            prop_assert!((0..=MAX_MICROS).contains(&got.spent));
            prop_assert!((0..=MAX_MICROS).contains(&got.reserved));
            prop_assert!(
                got.spent + got.reserved <= limit,
                "{key}: {got:?} over {limit}"
            );
        }
    }
    // Every hold given back: nothing left reserved, in memory or in the tables.
    for (id, keys, held) in std::mem::take(&mut model.open) {
        store.cost_release(id).await.unwrap();
        model.change(&keys, 0, -held);
    }
    for u in &users {
        let got = store
            .cost_usage(&Scope::User(u.clone()), &month)
            .await
            .unwrap();
        prop_assert_eq!(got.reserved, 0);
    }
    // The embedded ledger answers from memory: what it wrote behind must be the model too.
    if let Some(db) = db {
        store.cost_charges("0000").await.unwrap(); // waits for the write-behind queue
        for (key, want) in &model.usage {
            let (scope, period) = key.split_once('|').unwrap();
            let row: Option<(i64, i64)> = sqlx::query_as(
                "SELECT spent, reserved FROM cost_totals WHERE scope = ?1 AND period = ?2",
            )
            .bind(scope)
            .bind(period)
            .fetch_optional(db)
            .await
            .unwrap();
            let (spent, reserved) = row.unwrap_or_default();
            prop_assert_eq!((spent, reserved), (want.spent, want.reserved), "{}", key);
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("MAESTRA_PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64)
}

fn check(rt: &tokio::runtime::Runtime, store: Arc<dyn Store>, db: Option<&sqlx::SqlitePool>) {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case(), |c| rt.block_on(run_case(store.as_ref(), db, &c)));
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn sqlite_ledger_holds_any_amounts() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maestra.db");
    let store: Arc<dyn Store> = Arc::new(rt.block_on(SqliteStore::open(&path)).unwrap());
    let db = rt
        .block_on(sqlx::SqlitePool::connect(&format!(
            "sqlite://{}",
            path.display()
        )))
        .unwrap();
    check(&rt, store.clone(), Some(&db));
    rt.block_on(db.close());
    rt.block_on(store.close());
    // What was written behind reads back from the tables as integers in range.
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let bad: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM cost_totals
             WHERE typeof(spent) <> 'integer' OR typeof(reserved) <> 'integer'
                OR spent NOT BETWEEN 0 AND ?1 OR reserved <> 0",
        )
        .bind(MAX_MICROS)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(bad, 0, "totals out of range or holds left");
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cost_totals")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(rows > 0, "the ledger wrote nothing");
    });
}

#[test]
fn postgres_ledger_holds_any_amounts() {
    let rt = runtime();
    let db = rt.block_on(common::pg::TempDb::create());
    let store: Arc<dyn Store> = Arc::new(rt.block_on(PostgresStore::open(&db.url)).unwrap());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check(&rt, store.clone(), None);
    }));
    rt.block_on(store.close());
    rt.block_on(db.drop_db());
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

// ---------------------------------------------------------------------------------------------
// Ledgers corrupted before the range checks are repaired by migration 5.

const CORRUPT_SQLITE: &str = "
INSERT INTO cost_ledger (id, day, month, user_id, model, provider, reserved, spent, settled, created_at)
VALUES (1, '2026-11-01', '2026-11', 'ann', 'gpt-4o', 'openai', 0, 9223372036854775807, 1, 0),
       (2, '2026-11-01', '2026-11', 'ann', 'gpt-4o', 'openai', 0, 60000, 1, 0),
       (3, '2026-11-02', '2026-11', NULL, 'gpt-4o', 'openai', 0, -5, 1, 0);
INSERT INTO cost_totals (scope, period, spent, reserved)
VALUES ('global', '2026-11-01', 1.8446744073709552e19, 0),
       ('global', '2026-11', -9223372036788000000, 0),
       ('user:ann', '2026-11-01', 9223372036854835807.0, 0);
";

#[tokio::test]
async fn migration_repairs_an_overflowed_sqlite_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maestra.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let all = sqlx::migrate!("migrations/sqlite");
    let before_fix = sqlx::migrate::Migrator {
        migrations: all.migrations.iter().take(4).cloned().collect(),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    before_fix.run(&pool).await.unwrap();
    sqlx::raw_sql(CORRUPT_SQLITE).execute(&pool).await.unwrap();
    pool.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    let day = store
        .cost_usage(&Scope::Global, "2026-11-01")
        .await
        .unwrap();
    // The overflowed row is clamped to the cap (fail closed: the day stays spent), the
    // negative one to zero, and the totals are rebuilt from the rows.
    assert_eq!(day.spent, MAX_MICROS);
    let month = store.cost_usage(&Scope::Global, "2026-11").await.unwrap();
    assert_eq!(month.spent, MAX_MICROS);
    let next_day = store
        .cost_usage(&Scope::Global, "2026-11-02")
        .await
        .unwrap();
    assert_eq!(next_day.spent, 0);
    let charges = store.cost_charges("2026-11-01").await.unwrap();
    assert!(charges.iter().all(|c| (0..=MAX_MICROS).contains(&c.spent)));
    store.close().await;

    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let float = sqlx::query(
        "INSERT INTO cost_totals (scope, period, spent, reserved) VALUES ('x', 'y', 1.5e19, 0)",
    )
    .execute(&pool)
    .await;
    assert!(float.is_err(), "the schema must refuse a float total");
    let negative = sqlx::query(
        "INSERT INTO cost_ledger (day, month, model, provider, reserved, created_at)
         VALUES ('d', 'm', 'x', 'y', -1, 0)",
    )
    .execute(&pool)
    .await;
    assert!(negative.is_err(), "the schema must refuse a negative hold");
}

#[tokio::test]
async fn migration_repairs_an_overflowed_postgres_ledger() {
    let db = common::pg::TempDb::create().await;
    let outcome = tokio::spawn({
        let url = db.url.clone();
        async move {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let all = sqlx::migrate!("migrations/postgres");
            let before_fix = sqlx::migrate::Migrator {
                migrations: all.migrations.iter().take(4).cloned().collect(),
                ..sqlx::migrate::Migrator::DEFAULT
            };
            before_fix.run(&pool).await.unwrap();
            sqlx::raw_sql(
                "INSERT INTO cost_ledger (day, month, user_id, model, provider, reserved, spent, settled, created_at)
                 VALUES ('2026-11-01', '2026-11', 'ann', 'gpt-4o', 'openai', 9223372036854775807, 0, FALSE, 0),
                        ('2026-11-01', '2026-11', 'ann', 'gpt-4o', 'openai', 0, 60000, TRUE, 0),
                        ('2026-11-02', '2026-11', NULL, 'gpt-4o', 'openai', 0, -5, TRUE, 0);
                 INSERT INTO cost_totals (scope, period, spent, reserved)
                 VALUES ('global', '2026-11-01', -9223372036788000000, 9223372036854775807);",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;

            let store = PostgresStore::open(&url).await.unwrap();
            let day = store.cost_usage(&Scope::Global, "2026-11-01").await.unwrap();
            assert_eq!(day.spent, 60_000);
            assert_eq!(day.reserved, MAX_MICROS);
            let next_day = store.cost_usage(&Scope::Global, "2026-11-02").await.unwrap();
            assert_eq!(next_day.spent, 0);
            store.close().await;
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let negative = sqlx::query(
                "UPDATE cost_totals SET reserved = -1 WHERE scope = 'global'",
            )
            .execute(&pool)
            .await;
            assert!(negative.is_err(), "the schema must refuse a negative hold");
            pool.close().await;
        }
    })
    .await;
    db.drop_db().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

// ---------------------------------------------------------------------------------------------
// A hold whose request died is given back at the next start, not only when a refusal sweeps.

async fn hold(store: &dyn Store, day: &str, age_ms: i64) -> i64 {
    let now_ms = maestra::conversations::model::now_millis() - age_ms;
    let r = Reservation {
        day,
        month: "recover-month",
        user_id: None,
        key_id: None,
        model: "gpt-4o",
        provider: "openai",
        amount: 1_000,
        now_ms,
        stale_before_ms: now_ms - maestra::cost::ledger::STALE_AFTER_MS,
    };
    let limits = [Limit {
        scope: Scope::Global,
        period: Period::Daily,
        limit: 1_000_000,
    }];
    match store.cost_reserve(&r, &limits).await.unwrap() {
        ReserveOutcome::Reserved(id) => id,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn postgres_start_sweeps_stale_holds_and_keeps_live_ones() {
    let db = common::pg::TempDb::create().await;
    let url = db.url.clone();
    let outcome = tokio::spawn(async move {
        let store = PostgresStore::open(&url).await.unwrap();
        hold(&store, "stale-day", 31 * 60 * 1000).await;
        hold(&store, "live-day", 0).await;
        store.cost_recover().await.unwrap();
        let stale = store.cost_usage(&Scope::Global, "stale-day").await.unwrap();
        assert_eq!(
            stale.reserved, 0,
            "a dead instance's hold is swept at start"
        );
        let live = store.cost_usage(&Scope::Global, "live-day").await.unwrap();
        assert_eq!(live.reserved, 1_000, "another instance's live hold stays");
        store.close().await;
    })
    .await;
    db.drop_db().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn sqlite_start_releases_what_the_last_run_left_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maestra.db");
    let store = SqliteStore::open(&path).await.unwrap();
    hold(&store, "left-day", 0).await;
    store.close().await;
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store
            .cost_usage(&Scope::Global, "left-day")
            .await
            .unwrap()
            .reserved,
        1_000
    );
    store.cost_recover().await.unwrap();
    assert_eq!(
        store
            .cost_usage(&Scope::Global, "left-day")
            .await
            .unwrap()
            .reserved,
        0
    );
    store.close().await;
}
