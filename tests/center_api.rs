//! The privacy center's JSON endpoints where the browser test does not reach: what the vault
//! section says of when a secret was last used, and a user's export as a job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Home;
use common::mock;
use common::server::{Server, upstream_env};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn openai_last_used(server: &Server) -> Value {
    let v: Value = client()
        .get(server.url("/api/vault"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = v["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "openai_api_key")
        .unwrap_or_else(|| panic!("no openai_api_key in {v}"))
        .clone();
    secret["last_used"].clone()
}

/// A client's report (`POST /api/audit/events`) cannot make a key look used, and neither can
/// a call local-only mode blocked; a real call can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_used_only_by_calls_maestra_made_with_it() {
    let (addr, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr);
    home.ok(&["init"], b"");
    home.ok(
        &["vault", "put", "openai_api_key"],
        b"sk-proj-center0123456789abcdef",
    );
    let server = Server::start(&home);
    let c = client();
    let r = c
        .post(server.url("/api/audit/events"))
        .json(
            &json!({"category": "llm", "service": "openai", "action": "chat",
                      "result": "success", "agent_id": "some-tool"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(openai_last_used(&server).await, Value::Null);

    let r = c
        .post(server.url("/v1/chat/completions"))
        .json(&json!({"model": "gpt-4o-mini", "max_tokens": 5,
                      "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let used = openai_last_used(&server).await;
    assert!(used.as_str().is_some_and(|t| t.starts_with("20")), "{used}");
}

/// A user's export runs as a job with progress; its result is the same export the GET gives,
/// and two users' exports are separate jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_export_is_a_job_with_progress() {
    let (addr, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr);
    let server = Server::start(&home);
    let c = client();
    for (user, n) in [("ann", 3), ("bob", 1)] {
        for i in 0..n {
            let r = c
                .post(server.url("/api/maestra/core"))
                .json(&json!({"user_id": user, "surface_id": "cli",
                              "conversation_id": format!("{user}{i}"), "message": "hi"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
        }
    }
    let start = |user: &'static str| {
        let c = c.clone();
        let url = server.url(&format!("/api/users/{user}/export"));
        async move {
            let v: Value = c
                .post(url)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v
        }
    };
    let (ann, bob) = (start("ann").await, start("bob").await);
    assert_ne!(ann["id"], bob["id"], "{ann} {bob}");
    let mut done = Value::Null;
    for _ in 0..200 {
        let url = server.url(&format!("/api/jobs/{}", ann["id"].as_str().unwrap()));
        let v: Value = c.get(url).send().await.unwrap().json().await.unwrap();
        if v["state"] != "running" {
            done = v;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["kind"], "user_export");
    assert_eq!(done["progress"], json!({"done": 3, "total": 3}));
    let direct: Value = c
        .get(server.url("/api/users/ann/export"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        done["result"]["conversations"], direct["conversations"],
        "the job exports what the GET does"
    );
    assert_eq!(done["result"]["user_id"], "ann");
    // Handed out once: the server keeps no copy of the user's content in the job.
    let job = |v: &Value| {
        let url = server.url(&format!("/api/jobs/{}", v["id"].as_str().unwrap()));
        let c = c.clone();
        async move {
            c.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let again = job(&ann).await;
    assert_eq!(again["state"], "done");
    assert_eq!(again["result"], json!({"emptied": "handed out"}), "{again}");
    // Forgetting a user empties their export job, finished or not, before anyone reads it.
    let r = c
        .delete(server.url("/api/users/bob/data"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let after = job(&bob).await;
    assert!(after["result"]["conversations"].is_null(), "{after}");
    assert!(after["result"]["emptied"].is_string(), "{after}");
    // Bad input gets the API's JSON errors.
    let r = c
        .post(server.url("/api/users/ann/export"))
        .json(&json!({"unexpected": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}
