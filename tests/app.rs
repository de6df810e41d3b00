//! The server in-process (issue 16): `App::build` from a configuration, `App::serve` until a
//! shutdown signal, and the stop writes everything acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use maestra::store::prelude::*;
use std::collections::HashMap;

use maestra::app::App;
use maestra::config::Config;
use maestra::store::{SqliteStore, Store};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_builds_serves_and_stops_in_process() {
    let (upstream, _mock) = common::mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("m");
    let env: HashMap<String, String> = [
        ("MAESTRA_BIND", "127.0.0.1:0".to_string()),
        ("MAESTRA_LOCAL_MODEL_URL", format!("http://{upstream}/v1")),
        ("MAESTRA_LOCAL_MODEL", "llama3.2".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = Config::from_parts(&env, home.clone(), home.join("maestra.toml"), None).unwrap();
    let app = App::build(config).await.unwrap();
    let url = app.url();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(app.serve(async {
        let _ = stopped.await;
    }));

    let client = common::http::pooled();
    let reply: Value = client
        .post(format!("{url}/api/maestra/core"))
        .json(&json!({"user_id": "ann", "surface_id": "cli", "message": "in process"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = reply["conversation_id"].as_str().unwrap().to_string();

    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    // Stopped: the opening turn acknowledged before the stop is in the database.
    let store = SqliteStore::open(&home.join("maestra.db")).await.unwrap();
    let c = store.conversation_get(&id).await.unwrap().unwrap();
    assert_eq!(c.owner, "ann");
    assert_eq!(c.messages.len(), 2);
    store.close().await;
    let audit = std::fs::read_to_string(home.join("logs/audit.log")).unwrap();
    assert!(audit.contains("serve.start") && audit.contains("serve.stop"));
}
