//! A real `maestra serve` under concurrent load, killed with SIGKILL several times and
//! restarted on the same home. After every kill: the audit log verifies, the ledger reads (in
//! whole micro-USD, never negative), and no acknowledged turn outside the README's window
//! ("What a crash can lose") is missing.
//!
//! The README's promise, as asserted here: a turn whose request named its conversation
//! (`conversation_id`) is committed before its reply, so every one the client got a 200 for
//! must be readable after the restart. The first turn of a conversation the server names is
//! acknowledged once queued and committed within 5 ms: those may be lost only when they were
//! acknowledged just before the kill. They are counted, and any lost one acknowledged long
//! before the kill fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Home;
use common::mock;
use common::server::{Server, upstream_env};
use serde_json::{Value, json};

const ROUNDS: usize = 4;
const WORKERS: usize = 8;
/// Load before each kill.
const LOAD: Duration = Duration::from_millis(1500);
/// A lost server-named opening turn acknowledged earlier than this before the kill is a real
/// loss. The README's window is 5 ms; the margin covers a loaded 2-core machine's scheduling
/// (the kill is sent from this process, the acknowledgement observed here too).
const OPEN_WINDOW: Duration = Duration::from_millis(250);

/// One acknowledged turn: where it went, the unique message, and when the 200 arrived.
#[derive(Debug, Clone)]
struct Acked {
    conversation: String,
    message: String,
    /// The round whose kill ended the server that acknowledged it.
    round: usize,
    at: Instant,
    /// The request carried no `conversation_id`: the server named the conversation.
    server_named: bool,
}

#[derive(Default)]
struct Record {
    turns: Vec<Acked>,
    paid: usize,
}

/// A request the server never answers (it is being killed, or is under load) fails after
/// 10 s instead of hanging the test.
fn client() -> reqwest::Client {
    common::http::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// One worker: opens conversations (server- and client-named), continues its own, and makes
/// paid calls, until told to stop or the server is gone.
async fn worker(
    base: String,
    round: usize,
    w: usize,
    stop: Arc<AtomicBool>,
    record: Arc<Mutex<Record>>,
) {
    let http = client();
    let user = format!("crash_w{w}");
    let mut mine: Vec<String> = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let message = format!("r{round} w{w} turn {i}");
        let op = i % 4;
        if op == 3 {
            let body =
                json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": message}]});
            match http
                .post(format!("{base}/v1/chat/completions"))
                .json(&body)
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => record.lock().unwrap().paid += 1,
                Ok(r) => panic!("paid call answered {}", r.status()),
                Err(_) => return,
            }
            continue;
        }
        let conversation = match op {
            0 => None,
            1 => Some(format!("crash_r{round}_w{w}_{i}")),
            _ => mine.get(i % mine.len().max(1)).cloned(),
        };
        let mut body = json!({"user_id": user, "surface_id": "cli", "message": message});
        if let Some(c) = &conversation {
            body["conversation_id"] = json!(c);
        }
        let resp = match http
            .post(format!("{base}/api/maestra/core"))
            .json(&body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(_) => return,
        };
        let status = resp.status().as_u16();
        let Ok(v) = resp.json::<Value>().await else {
            return;
        };
        let at = Instant::now();
        assert_eq!(status, 200, "{v}");
        let id = v["conversation_id"].as_str().unwrap().to_string();
        if !mine.contains(&id) {
            mine.push(id.clone());
        }
        record.lock().unwrap().turns.push(Acked {
            conversation: id,
            message,
            round,
            at,
            server_named: conversation.is_none(),
        });
    }
}

/// Every number in the cost status is a non-negative whole number of micro-USD.
fn check_ledger(home: &Home) {
    let text = home.ok(&["cost", "report", "--json"], b"");
    let status: Value = serde_json::from_str(&text).unwrap();
    for period in ["daily", "monthly"] {
        for field in ["spent_usd", "reserved_usd", "limit_usd"] {
            let usd = status[period][field].as_f64().unwrap_or_else(|| {
                panic!("{period}.{field} is not a number: {text}");
            });
            let micros = usd * 1e6;
            assert!(usd >= 0.0, "{period}.{field} is negative: {text}");
            assert!(
                (micros - micros.round()).abs() < 1e-3,
                "{period}.{field} is not whole micro-USD: {text}"
            );
        }
    }
}

/// The user messages stored in each conversation, read through the restarted server.
async fn stored_messages(server: &Server, ids: &[&String]) -> HashMap<String, Vec<String>> {
    let http = client();
    let mut out = HashMap::new();
    for id in ids {
        let resp = http
            .get(server.url(&format!("/api/conversations/{id}")))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        let contents = if status == 200 {
            v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["role"] == "user")
                .map(|m| m["content"].as_str().unwrap_or_default().to_string())
                .collect()
        } else {
            assert_eq!(status, 404, "{v}");
            Vec::new()
        };
        out.insert(id.to_string(), contents);
    }
    out
}

fn kill(server: &mut Server) {
    let child = server.child.take().unwrap();
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let mut child = child;
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed, not exited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_acknowledged_outside_the_window() {
    let started = Instant::now();
    let (upstream, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), upstream)
        .with("MAESTRA_OPENAI_KEY", "sk-proj-crash0123456789abcdef")
        .with("MAESTRA_DAILY_COST_LIMIT", "1000")
        .with("MAESTRA_MONTHLY_COST_LIMIT", "10000");
    home.ok(&["init"], b"");
    let record = Arc::new(Mutex::new(Record::default()));
    let mut kills: Vec<Instant> = Vec::new();
    let mut server = Server::start(&home);
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let base = format!("http://{}", server.addr);
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| tokio::spawn(worker(base.clone(), round, w, stop.clone(), record.clone())))
            .collect();
        tokio::time::sleep(LOAD).await;
        kills.push(Instant::now());
        kill(&mut server);
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }

        // Before any restart: the log and the ledger as the crash left them.
        home.ok(&["audit", "verify"], b"");
        check_ledger(&home);

        server = Server::start(&home);
        let rec = record.lock().unwrap().turns.clone();
        let ids: Vec<&String> = {
            let mut ids: Vec<&String> = rec.iter().map(|t| &t.conversation).collect();
            ids.sort();
            ids.dedup();
            ids
        };
        let stored = stored_messages(&server, &ids).await;
        let mut lost_open = Vec::new();
        for t in &rec {
            if stored[&t.conversation].contains(&t.message) {
                continue;
            }
            assert!(
                t.server_named,
                "round {round}: an acknowledged turn with a conversation_id is lost: {t:?}"
            );
            // A reply read after the kill was sent just before it: zero.
            let before_kill = kills[t.round].saturating_duration_since(t.at);
            assert!(
                before_kill <= OPEN_WINDOW,
                "round {round}: a server-named opening turn acknowledged {before_kill:?} before \
                 the kill is lost: {t:?}"
            );
            lost_open.push(before_kill);
        }
        let paid = record.lock().unwrap().paid;
        eprintln!(
            "round {round}: {} acknowledged turns, {paid} paid calls so far; {} server-named \
             opening turns lost (acknowledged {:?} before the kill)",
            rec.len(),
            lost_open.len(),
            lost_open
        );
        home.ok(&["audit", "verify"], b"");
    }
    let total = record.lock().unwrap();
    assert!(
        total.turns.len() > 100,
        "too little load: {}",
        total.turns.len()
    );
    assert!(total.paid > 10, "too few paid calls: {}", total.paid);
    drop(total);
    server.stop();
    home.ok(&["audit", "verify"], b"");
    check_ledger(&home);
    assert!(started.elapsed() < Duration::from_secs(90));
}
