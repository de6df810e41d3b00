//! The privacy center's report over an audit log of 1,000,000 entries (issue 17: ≤ 1 s).
//! Ignored by default (it writes ~400 MB and takes minutes in a debug build); run with
//!
//! ```text
//! cargo nextest run --test report_scale --run-ignored only --no-capture
//! ```
//!
//! It writes the entries through the real audit writer (sealed, chained, fsynced in batches),
//! spread over 30 days, 20 agents, 12 services and their hosts, with local-only blocks and
//! bytes, then times `GET /api/report?period=30d` on a real server: the first answer (no
//! summary yet: rebuilt from the whole log), the next ones (the summary kept in memory), and
//! the first after a restart (the saved summary, caught up from the log's tail). It also
//! checks the report's totals against a count of the log itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::Home;
use common::server::Server;
use maestra::config::AuditConfig;
use maestra::privsec::audit::{AuditLog, Category, ChainKey, Event, Outcome};
use serde_json::Value;

const ENTRIES: u64 = 1_000_000;
const SERVICES: [(&str, &str, Category); 4] = [
    ("openai", "api.openai.com", Category::Llm),
    ("local_model", "127.0.0.1", Category::Llm),
    ("spotify", "api.spotify.com", Category::Media),
    ("hue", "192.168.1.20", Category::Smarthome),
];

fn event(i: u64, today: time::Date) -> Event {
    let day = today - time::Duration::days((i % 30) as i64);
    let (service, host, category) = SERVICES[(i % 4) as usize];
    let blocked = i.is_multiple_of(10);
    let mut e = if blocked {
        Event::new(Category::LocalOnlyBlock, service, "call", Outcome::Blocked).detail(
            "reason",
            "it is a cloud service and local-only mode keeps traffic on this machine",
        )
    } else if i.is_multiple_of(17) {
        Event::new(Category::Auth, "maestra", "bad_key", Outcome::Blocked)
    } else {
        Event::new(category, service, "call", Outcome::Success)
            .detail("host", host)
            .detail("bytes_sent", 200 + i % 50)
            .detail("bytes_received", 1000 + i % 100)
    };
    e.ts = format!("{day}T{:02}:{:02}:00Z", i % 24, i % 60);
    e.agent(format!("agent{}", i % 20))
}

async fn report(server: &Server) -> (Duration, Value) {
    let start = Instant::now();
    let v: Value = common::http::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
        .get(server.url("/api/report?period=30d"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (start.elapsed(), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes a 1,000,000-entry audit log; run explicitly (see the module docs)"]
async fn the_report_over_a_million_entries() {
    let home = Home::new();
    home.ok(&["init"], b"");
    let path = home.root().join("logs").join("audit.log");
    let key = ChainKey::load(&maestra::home::Home::new(home.root()).audit_key()).unwrap();
    let cfg = AuditConfig {
        path: path.clone(),
        retention_days: 90,
        fail_closed: false,
        queue_capacity: 65_536,
    };
    let log = AuditLog::open(&cfg, key).unwrap();
    let today = time::OffsetDateTime::now_utc().date();
    let start = Instant::now();
    let (mut calls, mut blocked, mut sent) = (0u64, 0u64, 0u64);
    for i in 0..ENTRIES {
        let e = event(i, today);
        if e.category != Category::Auth {
            calls += 1;
            blocked += u64::from(e.category == Category::LocalOnlyBlock);
            sent += e
                .details
                .get("bytes_sent")
                .and_then(Value::as_u64)
                .unwrap_or(0);
        }
        log.record(e).await.unwrap();
    }
    log.close().await;
    let written = start.elapsed();
    let size = std::fs::metadata(&path).unwrap().len();

    let mut server = Server::start(&home);
    let (cold, first) = report(&server).await;
    // init and serve.start wrote entries of their own (admin): not calls.
    assert_eq!(first["totals"]["calls"], calls, "{}", first["totals"]);
    assert_eq!(first["totals"]["blocked"], blocked);
    assert_eq!(first["totals"]["bytes_sent"], sent);
    assert_eq!(first["days"].as_array().unwrap().len(), 30);
    let mut warm = Vec::new();
    for _ in 0..5 {
        let (t, v) = report(&server).await;
        assert_eq!(v["totals"], first["totals"]);
        warm.push(t);
    }
    server.stop();
    let server = Server::start(&home);
    let (restart, again) = report(&server).await;
    assert_eq!(again["totals"], first["totals"]);
    warm.sort();
    println!(
        "report over {ENTRIES} entries ({} MB log, written in {:.1?}): cold (rebuilt from the log) {:.3?}, \
         warm median {:.3?} (max {:.3?}), after a restart {:.3?}",
        size / 1_000_000,
        written,
        cold,
        warm[warm.len() / 2],
        warm[warm.len() - 1],
        restart
    );
    assert!(warm[warm.len() / 2] <= Duration::from_secs(1));
    assert!(restart <= Duration::from_secs(1));
}
