//! A backup of a running server under load loses nothing acknowledged before it (issue 18):
//! workers keep writing through HTTP while `maestra backup create` runs; the backup is
//! restored into a new home and every turn acknowledged before the backup started is read
//! back through a server on the restored home.
//!
//! A turn naming its conversation (`conversation_id`) is committed before its reply, so every
//! one acknowledged before the backup started must be there. The first turn of a conversation
//! the server names is acknowledged once queued and committed within milliseconds (README,
//! "What a crash can lose"): those acknowledged within `OPEN_WINDOW` of the start are counted,
//! not required.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Home;
use common::mock;
use common::server::{Server, upstream_env};
use serde_json::{Value, json};

const WORKERS: usize = 6;
const OPEN_WINDOW: Duration = Duration::from_millis(250);
const PASS: &str = "correct horse battery staple";

#[derive(Debug, Clone)]
struct Acked {
    conversation: String,
    message: String,
    at: Instant,
    server_named: bool,
}

/// A request the server never answers (it is being killed, or is under load) fails after
/// 10 s instead of hanging the test.
fn client() -> reqwest::Client {
    common::http::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn worker(base: String, w: usize, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<Acked>>>) {
    let http = client();
    let mut mine: Vec<String> = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let message = format!("load w{w} turn {i}");
        let conversation = match i % 3 {
            0 => None,
            1 => Some(format!("load_w{w}_{i}")),
            _ => mine.last().cloned(),
        };
        let mut body =
            json!({"user_id": format!("load_u{w}"), "surface_id": "cli", "message": message});
        if let Some(c) = &conversation {
            body["conversation_id"] = json!(c);
        }
        let resp = http
            .post(format!("{base}/api/maestra/core"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        let at = Instant::now();
        assert_eq!(status, 200, "{v}");
        let id = v["conversation_id"].as_str().unwrap().to_string();
        if !mine.contains(&id) {
            mine.push(id.clone());
        }
        acked.lock().unwrap().push(Acked {
            conversation: id,
            message,
            at,
            server_named: conversation.is_none(),
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_holds_every_turn_acknowledged_before_it() {
    let (upstream, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), upstream).with("MAESTRA_BACKUP_PASSPHRASE", PASS);
    home.ok(&["init"], b"");
    let mut server = Server::start(&home);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        tasks.push(tokio::spawn(worker(
            server.url(""),
            w,
            stop.clone(),
            acked.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let dest = home.dir.path().join("backup");
    let started = Instant::now();
    let backup_home = Home {
        dir: tempfile::tempdir().unwrap(),
        env: home.env.clone(),
    };
    let dest_arg = dest.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        backup_home.run(&["backup", "create", "--to", &dest_arg], b"")
    })
    .await
    .unwrap();
    let finished = Instant::now();
    assert!(
        out.status.success(),
        "backup under load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Load goes on a little after the backup, then stops.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let before: Vec<&Acked> = acked.iter().filter(|a| a.at < started).collect();
    let after = acked.iter().filter(|a| a.at > finished).count();
    assert!(
        before.len() > 50,
        "too little load before the backup: {}",
        before.len()
    );
    assert!(after > 0, "no load after the backup");

    let restored = Home::new().with("MAESTRA_BACKUP_PASSPHRASE", PASS);
    restored.ok(
        &[
            "backup",
            "restore",
            "--from",
            dest.to_str().unwrap(),
            "--keys-from",
            home.root().to_str().unwrap(),
        ],
        &[],
    );
    let copy = Server::start(&restored);
    let http = client();
    let mut missing = Vec::new();
    let mut in_window = 0;
    let mut conversations: std::collections::HashMap<String, Vec<String>> = Default::default();
    for a in &before {
        if !conversations.contains_key(&a.conversation) {
            let resp = http
                .get(copy.url(&format!("/api/conversations/{}", a.conversation)))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            let msgs = if status == 200 {
                v["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["content"].as_str().unwrap_or_default().to_string())
                    .collect()
            } else {
                assert_eq!(status, 404, "{v}");
                Vec::new()
            };
            conversations.insert(a.conversation.clone(), msgs);
        }
        if !conversations[&a.conversation].contains(&a.message) {
            if a.server_named && started.duration_since(a.at) < OPEN_WINDOW {
                in_window += 1;
            } else {
                missing.push(a);
            }
        }
    }
    eprintln!(
        "{} turns acknowledged before the backup, {} during it, {} after; {} server-named ones in the window",
        before.len(),
        acked.len() - before.len() - after,
        after,
        in_window
    );
    assert!(
        missing.is_empty(),
        "{} of {} turns acknowledged before the backup are not in it ({} more in the window): {:?}",
        missing.len(),
        before.len(),
        in_window,
        missing.iter().take(5).collect::<Vec<_>>()
    );
    restored.ok(&["audit", "verify"], b"");
    server.stop();
}
