//! The privacy center's JSON endpoints where the browser test does not reach: what the vault
//! section says of when a secret was last used, and a user's export as a job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Home;
use common::http::{get_json, poll_job, pooled};
use common::mock;
use common::server::{Server, upstream_env};
use serde_json::{Value, json};

async fn openai_last_used(server: &Server) -> Value {
    let v = get_json(&server.url("/api/vault")).await;
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
    let c = pooled();
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
    let c = pooled();
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
    let done = poll_job(&server, ann["id"].as_str().unwrap()).await;
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

/// The report counts a failed call as an error apart from the calls (per agent, host and day),
/// and spend shows the requests and tokens a model's dollars paid for; without API keys there
/// is no per-key row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_counted_apart_and_spend_has_requests_and_tokens() {
    let (addr, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr)
        .with("MAESTRA_OPENAI_KEY", "sk-proj-center0123456789abcdef")
        .with_toml(
            "[pricing.\"gpt-4o-mini\"]\ninput_per_million = 100.0\noutput_per_million = 200.0\n",
        );
    let server = Server::start(&home);
    let c = pooled();
    let call = |content: &'static str| {
        let c = c.clone();
        let url = server.url("/v1/chat/completions");
        async move {
            c.post(url)
                .header("x-maestra-surface", "editor")
                .json(&json!({"model": "gpt-4o-mini", "max_tokens": 5,
                              "messages": [{"role": "user", "content": content}]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(call("hi").await, 200);
    assert_eq!(call("hello").await, 200);
    assert!(call("mode:500").await >= 500);
    let get = |path: &'static str| {
        let c = c.clone();
        let url = server.url(path);
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
    // The audit log commits in batches: the failure's entry may land just after its answer.
    let mut report = get("/api/report?period=today").await;
    for _ in 0..100 {
        if report["totals"]["calls"] == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        report = get("/api/report?period=today").await;
    }
    assert_eq!(
        (&report["totals"]["calls"], &report["totals"]["errors"]),
        (&json!(3), &json!(1)),
        "{report}"
    );
    let editor = report["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent"] == "editor")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(editor["destinations"][0]["errors"], json!(1), "{report}");
    assert_eq!(report["top_hosts"][0]["errors"], json!(1), "{report}");
    assert_eq!(report["days"][0]["errors"], json!(1), "{report}");

    let spend = get("/api/spend?days=30").await;
    // The mock reports 10 tokens in and 5 out for each call; the failed one is not charged.
    let model = &spend["by_model"][0];
    assert_eq!(model["key"], "gpt-4o-mini", "{spend}");
    assert_eq!(
        (
            &model["requests"],
            &model["tokens_in"],
            &model["tokens_out"]
        ),
        (&json!(2), &json!(20), &json!(10)),
        "{spend}"
    );
    assert_eq!(spend["by_day"][0]["requests"], json!(2), "{spend}");
    assert_eq!(spend["total_requests"], json!(2), "{spend}");
    assert_eq!(spend["by_key"], json!([]), "{spend}");
}
