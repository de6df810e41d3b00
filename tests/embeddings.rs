//! `POST /v1/embeddings` (issue 24, SPEC §2.13) black-box: the real binary against the mock
//! upstream, spoken to by the official `openai` Python SDK where a client would be. A local
//! model unless the name is a cloud one; guarded, priced, limited and audited like chat; the
//! input kept nowhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Home;
use common::http::{client, get_json};
use common::mock::{self, Mock};
use common::mock_embeddings::{DEFAULT_DIMENSIONS, tokens, vector};
use common::server::{Server, upstream_env};
use serde_json::{Value, json};

const OPENAI_KEY: &str = "sk-proj-CANARYembeddings0123456789abcdef";
/// The person's text: it must reach the upstream and nothing else.
const DIARY: &str = "DIARYCANARY-5e1b my private memory of the lake";
/// $1,000 per million input tokens: a token is exactly $0.001, so sums are easy to read.
const PRICING: &str =
    "[pricing.\"text-embedding-3-small\"]\ninput_per_million = 1000.0\noutput_per_million = 0.0\n";

fn home(mock: SocketAddr, env: &[(&str, &str)]) -> Home {
    let mut home = upstream_env(Home::new(), mock).with("MAESTRA_OPENAI_KEY", OPENAI_KEY);
    for (k, v) in env {
        home = home.with(k, v);
    }
    home
}

async fn setup(env: &[(&str, &str)]) -> (Server, Mock, Home) {
    let (addr, mock) = mock::start().await;
    let home = home(addr, env);
    (Server::start(&home), mock, home)
}

async fn embed(server: &Server, body: Value) -> (u16, Value) {
    let resp = client()
        .post(server.url("/v1/embeddings"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The embeddings requests the mock received.
fn seen(mock: &Mock) -> Vec<mock::Seen> {
    mock.requests()
        .into_iter()
        .filter(|s| s.path == "/v1/embeddings")
        .collect()
}

/// Every audit entry of action `embeddings`, after the server has stopped (its writer flushed).
fn entries(home: &Home) -> Vec<Value> {
    std::fs::read_to_string(home.root().join("logs/audit.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == "embeddings")
        .collect()
}

/// Waits until nothing is reserved any more; returns today's spend.
async fn settled_spend(server: &Server) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = get_json(&server.url("/api/privacy")).await;
        let daily = &v["cost"]["daily"];
        if daily["reserved_usd"].as_f64() == Some(0.0) {
            return daily["spent_usd"].as_f64().unwrap();
        }
        assert!(Instant::now() < deadline, "still held: {daily}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn as_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|x| f64::from(*x)).collect()
}

async fn python(code: &'static str, server: &Server) -> String {
    let base = server.url("/v1");
    tokio::task::spawn_blocking(move || common::run_python(code, &[&base]))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_embeds_on_the_local_model_in_base64_and_in_floats() {
    let (mut server, mock, home) = setup(&[]).await;
    // The SDK asks for base64 unless told otherwise, and decodes it itself.
    let code = r#"
import sys, json
from openai import OpenAI
c = OpenAI(base_url=sys.argv[1], api_key="unused-locally", max_retries=0)
r = c.embeddings.create(model="llama3.2", input=["first text", "the second one"], user="jh")
print(json.dumps([d.embedding for d in r.data]))
print(r.usage.prompt_tokens, r.usage.total_tokens, r.model, r.object, [d.index for d in r.data])
f = c.embeddings.create(model="local/nomic-embed-text", input="single", encoding_format="float", dimensions=4)
print(json.dumps(f.data[0].embedding))
for model in ["claude-3-5-haiku-latest", "nope"]:
    try:
        c.embeddings.create(model=model, input="x")
    except Exception as e:
        print(type(e).__name__, e.status_code, e.body["code"])
"#;
    let out = python(code, &server).await;
    let lines: Vec<&str> = out.lines().collect();
    let decoded: Vec<Vec<f64>> = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        decoded,
        vec![
            as_f64(&vector("first text", DEFAULT_DIMENSIONS)),
            as_f64(&vector("the second one", DEFAULT_DIMENSIONS))
        ]
    );
    assert_eq!(lines[1], "5 5 llama3.2 list [0, 1]");
    let floats: Vec<f64> = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(floats, as_f64(&vector("single", 4)));
    assert_eq!(lines[3], "BadRequestError 400 bad_request");
    assert_eq!(lines[4], "NotFoundError 404 model_not_found");

    // Upstream: the options as asked, the input as written, no acting user, no key.
    let seen = seen(&mock);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        seen[0].body,
        json!({"model": "llama3.2", "input": ["first text", "the second one"],
               "encoding_format": "base64"})
    );
    assert_eq!(
        seen[1].body,
        json!({"model": "nomic-embed-text", "input": "single",
               "encoding_format": "float", "dimensions": 4})
    );
    assert!(
        seen.iter()
            .all(|s| !s.headers.contains_key("authorization"))
    );

    // The claude refusal says why.
    let (status, v) = embed(
        &server,
        json!({"model": "claude-3-5-haiku-latest", "input": "x"}),
    )
    .await;
    assert_eq!(status, 400);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("Anthropic has no embeddings"), "{msg}");
    server.stop();
    let entries = entries(&home);
    let first = &entries[0];
    assert_eq!(first["category"], "llm");
    assert_eq!(first["service"], "local_model");
    assert_eq!(first["user_id"], "jh");
    // Named after the SDK's User-Agent (`OpenAI/Python ...`), like every `/v1` call.
    assert_eq!(first["surface_id"], "OpenAI", "{first}");
    assert_eq!(first["details"]["inputs"], 2);
    assert_eq!(first["details"]["tokens_in"], 5);
    assert_eq!(first["details"]["cost_usd"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_route_is_priced_audited_and_keeps_nothing_of_the_input() {
    let (mut server, mock, home) = setup(&[]).await;
    let code = r#"
import sys, json
from openai import OpenAI
c = OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
r = c.embeddings.create(model="text-embedding-3-small",
    input=["DIARYCANARY-5e1b my private memory of the lake", "and another"])
print(len(r.data), len(r.data[0].embedding), r.usage.prompt_tokens)
"#;
    let out = python(code, &server).await;
    let inputs = [DIARY, "and another"];
    assert_eq!(
        out.trim(),
        format!("2 {DEFAULT_DIMENSIONS} {}", tokens(&inputs))
    );
    let seen = seen(&mock);
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers["authorization"].to_str().unwrap(),
        format!("Bearer {OPENAI_KEY}")
    );
    assert_eq!(seen[0].body["input"], json!(inputs));

    // The answer's own account, at the built-in $0.02 per million: charged, never $0.
    let (status, v) = embed(
        &server,
        json!({"model": "text-embedding-3-small", "input": DIARY, "encoding_format": "float"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["object"], "embedding");
    assert_eq!(v["data"][0]["index"], 0);
    assert_eq!(v["meta"]["source"], "cloud");
    assert!(v["meta"]["cost_usd"].as_f64().unwrap() > 0.0, "{v}");
    let decoded: Vec<f64> = serde_json::from_value(v["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(decoded, as_f64(&vector(DIARY, DEFAULT_DIMENSIONS)));
    assert!(settled_spend(&server).await > 0.0);

    let out = server.stop();
    let entries = entries(&home);
    assert_eq!(entries.len(), 2, "{entries:?}");
    for e in &entries {
        assert_eq!(e["category"], "llm", "{e}");
        assert_eq!(e["service"], "openai", "{e}");
        assert_eq!(e["result"], "success", "{e}");
        assert_eq!(e["details"]["model"], "text-embedding-3-small", "{e}");
        assert_eq!(e["details"]["source"], "cloud", "{e}");
        assert!(e["details"]["cost_usd"].as_f64().unwrap() > 0.0, "{e}");
        assert!(e["details"]["latency_ms"].is_u64(), "{e}");
    }
    assert_eq!(entries[0]["details"]["inputs"], 2);
    assert_eq!(entries[0]["details"]["tokens_in"], tokens(&inputs));
    // Neither the text nor the key anywhere Maestra writes or prints.
    for (path, bytes) in common::all_file_bytes(&home.root()) {
        for canary in ["DIARYCANARY", OPENAI_KEY] {
            assert!(
                !common::contains(&bytes, canary),
                "{canary} in {}",
                path.display()
            );
        }
    }
    assert!(
        !out.contains("DIARYCANARY") && !out.contains(OPENAI_KEY),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_only_mode_refuses_the_cloud_model_before_anything_leaves() {
    let (mut server, mock, home) = setup(&[("MAESTRA_LOCAL_ONLY", "true")]).await;
    let (status, v) = embed(
        &server,
        json!({"model": "text-embedding-3-small", "input": ["x", "y"]}),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "local_only_mode");
    assert!(seen(&mock).is_empty(), "a cloud request left Maestra");
    let (status, v) = embed(&server, json!({"model": "llama3.2", "input": "x"})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["meta"]["source"], "local");
    assert_eq!(seen(&mock).len(), 1);
    server.stop();
    let entries = entries(&home);
    assert_eq!(entries[0]["category"], "local_only_block", "{entries:?}");
    assert_eq!(entries[0]["result"], "blocked");
    assert_eq!(entries[0]["service"], "openai");
    assert_eq!(entries[1]["result"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_limit_holds_on_the_input_bound_and_settles_on_the_usage() {
    let (addr, mock) = mock::start().await;
    let home = home(addr, &[("MAESTRA_DAILY_COST_LIMIT", "0.05")]).with_toml(PRICING);
    let server = Server::start(&home);
    let paid = |input: Value| json!({"model": "text-embedding-3-small", "input": input});
    // Bound: 13 bytes + 8 = 21 tokens ($0.021), within $0.05; settled on the reported 3 words.
    let (status, v) = embed(&server, paid(json!("one two three"))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["meta"]["cost_usd"], 0.003);
    assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
    assert_eq!(settled_spend(&server).await, 0.003);
    // Bound: 60 bytes + 8 = 68 tokens ($0.068): refused before it leaves, though its real
    // usage (one word) would have been cheap: the bound is what the limit counts.
    let (status, v) = embed(&server, paid(json!(["a".repeat(60)]))).await;
    assert_eq!(status, 402, "{v}");
    assert_eq!(v["error"]["code"], "cost_limit_exceeded");
    assert_eq!(seen(&mock).len(), 1, "a refused call went upstream");
    // No usage reported: 16 bytes counted at four a token, rounded up: 4 tokens, $0.004.
    let (status, v) = embed(&server, paid(json!(["mode:no-usage xx"]))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["meta"]["cost_usd"], 0.004);
    assert_eq!(settled_spend(&server).await, 0.007);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_requests_are_refused_by_name_and_nothing_is_sent() {
    let (server, mock, _home) = setup(&[]).await;
    for (body, status, words) in [
        (
            json!({"model": "llama3.2", "input": "x", "truncate_prompt_tokens": 5}),
            400,
            "`truncate_prompt_tokens`",
        ),
        (
            json!({"model": "llama3.2", "input": [[101, 2023]]}),
            400,
            "token ids",
        ),
        (
            json!({"model": "llama3.2", "input": ["a", ""]}),
            400,
            "`input[1]`",
        ),
        (
            json!({"model": "llama3.2", "input": "x", "encoding_format": "int8"}),
            400,
            "`encoding_format`",
        ),
        (
            json!({"model": "llama3.2", "input": "x", "dimensions": 4097}),
            400,
            "`dimensions`",
        ),
        (
            json!({"model": "llama3.2", "input": vec!["x"; 2049]}),
            400,
            "2048",
        ),
        (
            json!({"model": "claude-3-5-haiku-latest", "input": "x"}),
            400,
            "Anthropic",
        ),
        (
            json!({"model": "gpt-4o-mini", "input": "x"}),
            404,
            "gpt-4o-mini",
        ),
        (json!({"input": "x"}), 400, "`model`"),
    ] {
        let (got, v) = embed(&server, body.clone()).await;
        assert_eq!(got, status, "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(words), "{body}: {msg}");
    }
    // A client that names itself wrongly is told so rather than filed under another name.
    let resp = client()
        .post(server.url("/v1/embeddings"))
        .header("x-maestra-surface", "{}")
        .json(&json!({"model": "llama3.2", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(seen(&mock).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_502_scrubbed_and_free() {
    let (addr, _mock) = mock::start().await;
    let home = home(addr, &[]).with_toml(PRICING);
    let mut server = Server::start(&home);
    for input in ["mode:500", "mode:garbage", "mode:echo-key-401"] {
        let (status, v) = embed(
            &server,
            json!({"model": "text-embedding-3-small", "input": [input]}),
        )
        .await;
        assert_eq!(status, 502, "{input}: {v}");
        assert_eq!(v["error"]["code"], "upstream_error", "{input}: {v}");
        assert!(!v.to_string().contains(OPENAI_KEY), "{v}");
    }
    assert_eq!(settled_spend(&server).await, 0.0);
    server.stop();
    let entries = entries(&home);
    assert_eq!(entries.len(), 3);
    assert!(
        entries.iter().all(|e| e["result"] == "error"),
        "{entries:?}"
    );
    assert!(!entries.iter().any(|e| e.to_string().contains(OPENAI_KEY)));
}

/// The call runs on a task of its own: a client that hangs up while the upstream works does
/// not make the work free nor leave it unaudited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_client_hung_up_is_settled_and_audited() {
    let (addr, _mock) = mock::start().await;
    let home = home(addr, &[]).with_toml(PRICING);
    let mut server = Server::start(&home);
    let sent = client()
        .post(server.url("/v1/embeddings"))
        .timeout(Duration::from_millis(200))
        .json(&json!({"model": "text-embedding-3-small", "input": "mode:linger four words here"}))
        .send()
        .await;
    assert!(sent.is_err(), "the call answered before the client left");
    assert_eq!(settled_spend(&server).await, 0.004);
    server.stop();
    let entries = entries(&home);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e["result"], "failed", "{e}");
    assert_eq!(e["details"]["abandoned"], true, "{e}");
    assert_eq!(e["details"]["cost_usd"], 0.004, "{e}");
}
