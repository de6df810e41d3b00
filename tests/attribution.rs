//! Every `/v1` call names its agent (SPEC §2.13), so the privacy center's Report lists it
//! under a name instead of "(no agent or surface)": the `X-Maestra-Surface` header, else the
//! User-Agent's product (here the official `openai` Python SDK's own), and in cloud mode the
//! name of the key the call presented. Checked on the audit entries and on `GET /api/report`,
//! against the real binary and the mock upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::Home;
use common::http::{chat, client};
use common::mock;
use common::server::{Server, upstream_env};

fn ask(text: &str) -> Value {
    json!({"model": "llama3.2", "messages": [{"role": "user", "content": text}]})
}

async fn get(server: &Server, path: &str, key: Option<&str>) -> Value {
    let mut req = client().get(server.url(path));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

/// The `llm` entries' `surface_id`s, oldest first, once there are `n` of them.
async fn llm_surfaces(server: &Server, key: Option<&str>, n: usize) -> Vec<Value> {
    llm_field(server, key, n, "surface_id").await
}

/// One field of the `llm` entries, oldest first, once there are `n` of them.
async fn llm_field(server: &Server, key: Option<&str>, n: usize, field: &str) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let audit = get(server, "/api/audit?category=llm", key).await;
        let entries = audit["entries"].as_array().unwrap();
        if entries.len() >= n || start.elapsed() > Duration::from_secs(10) {
            assert_eq!(entries.len(), n, "{audit:#}");
            for e in entries {
                assert_eq!(e["action"], "chat.completions", "{e}");
            }
            return entries.iter().rev().map(|e| e[field].clone()).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Today's report's agents: name → calls.
async fn report_agents(server: &Server, key: Option<&str>) -> Vec<(String, u64)> {
    let report = get(server, "/api/report?period=today", key).await;
    report["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["agent"].as_str().unwrap().to_string(),
                a["totals"]["calls"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The official SDK's `chat.completions.create`, with the SDK's own User-Agent; prints the
/// answer.
const PY_CHAT: &str = r#"
import sys
from openai import OpenAI
c = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
r = c.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "from the sdk"}])
print(r.choices[0].message.content)
"#;

async fn sdk_call(server: &Server, key: &str) -> String {
    let base = server.url("/v1");
    let key = key.to_string();
    tokio::task::spawn_blocking(move || common::run_python(PY_CHAT, &[&base, &key]))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_calls_are_named_by_the_header_or_the_user_agent() {
    let (addr, mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr);
    let server = Server::start(&home);

    let (status, body) = chat(&server, &[("X-Maestra-Surface", "vscode")], ask("hi")).await;
    assert_eq!(status, 200, "{body}");
    // The header names the call, whatever the User-Agent says.
    let headers = [
        ("x-maestra-surface", "vscode"),
        ("user-agent", "python-httpx/0.27"),
    ];
    assert_eq!(chat(&server, &headers, ask("again")).await.0, 200);
    assert_eq!(
        sdk_call(&server, "unused-locally").await.trim(),
        "echo(1): from the sdk"
    );
    let ua = [("user-agent", "python-httpx/0.27")];
    assert_eq!(chat(&server, &ua, ask("plain httpx")).await.0, 200);
    // No header and no User-Agent: nothing to name the call by, and nothing is made up.
    assert_eq!(chat(&server, &[], ask("anonymous")).await.0, 200);

    // A header that is not an id is refused by name, before anything goes upstream.
    let sent = mock.requests().len();
    for bad in ["../etc", ".hidden", "two words", ""] {
        let (status, body) = chat(&server, &[("X-Maestra-Surface", bad)], ask("x")).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert_eq!(body["error"]["code"], "bad_request");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("X-Maestra-Surface"), "{message}");
    }
    assert_eq!(mock.requests().len(), sent, "a refused call went upstream");
    // The header is Maestra's: it never reaches the provider.
    for seen in mock.requests() {
        assert!(seen.headers.get("x-maestra-surface").is_none());
    }

    let surfaces = llm_surfaces(&server, None, 5).await;
    assert_eq!(
        surfaces,
        vec![
            json!("vscode"),
            json!("vscode"),
            json!("OpenAI"),
            json!("python-httpx"),
            Value::Null
        ]
    );
    let agents = report_agents(&server, None).await;
    for (name, calls) in [("vscode", 2), ("OpenAI", 1), ("python-httpx", 1)] {
        assert!(
            agents.contains(&(name.to_string(), calls)),
            "{name}: {agents:?}"
        );
    }
    // Only the call that said nothing is left unnamed.
    assert!(agents.contains(&(String::new(), 1)), "{agents:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_calls_are_named_by_their_key() {
    let (addr, _mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr).with("MAESTRA_MODE", "cloud");
    let laptop = home
        .ok(&["keys", "create", "laptop", "--user", "ann"], b"")
        .trim()
        .to_string();
    let admin = home
        .ok(&["keys", "create", "ops", "--scope", "admin"], b"")
        .trim()
        .to_string();
    let server = Server::start(&home);

    assert_eq!(
        sdk_call(&server, &laptop).await.trim(),
        "echo(1): from the sdk"
    );
    // The key's name is the authenticated fact; the header is only a claim, and may not file
    // the call under another name.
    let auth = format!("Bearer {laptop}");
    let claimed = [
        ("authorization", auth.as_str()),
        ("x-maestra-surface", "editor"),
    ];
    let (status, body) = chat(&server, &claimed, ask("hi")).await;
    assert_eq!(status, 200, "{body}");
    // It is still checked.
    let bad = [
        ("authorization", auth.as_str()),
        ("x-maestra-surface", "a b"),
    ];
    let (status, body) = chat(&server, &bad, ask("hi")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-Maestra-Surface")
    );

    // Both are kept: the key's name as the entry's agent, the claim as its surface (the
    // SDK's own product name, then the header's).
    let agents = llm_field(&server, Some(&admin), 2, "agent_id").await;
    assert_eq!(agents, vec![json!("laptop"), json!("laptop")]);
    let surfaces = llm_surfaces(&server, Some(&admin), 2).await;
    assert_eq!(surfaces, vec![json!("OpenAI"), json!("editor")]);
    let agents = report_agents(&server, Some(&admin)).await;
    assert_eq!(agents, vec![("laptop".to_string(), 2)]);
}
