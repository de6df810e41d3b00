//! Black-box tests of `maestra serve`: the real binary on 127.0.0.1 port 0 against a mock
//! upstream, spoken to over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::Home;
use common::http::{client, get, post_json};
use common::mock::{self, Mock};
use common::server::{Server, upstream_env};
use serde_json::{Value, json};

const OPENAI_CANARY: &str = "sk-proj-CANARYopenai0123456789abcdef";
const ANTHROPIC_CANARY: &str = "sk-ant-CANARYanthropic0123456789";

/// A server on the host's own network: device discovery is off (`every_documented_route_...`
/// calls every route, and a discovery run would send multicast to whatever network the host
/// is on).
async fn setup(extra: &[(&str, &str)]) -> (Server, Mock, Home) {
    let (addr, mock) = mock::start().await;
    let mut home = upstream_env(Home::new(), addr)
        .with("MAESTRA_DISCOVERY", "false")
        .with("MAESTRA_OPENAI_KEY", OPENAI_CANARY)
        .with("MAESTRA_ANTHROPIC_KEY", ANTHROPIC_CANARY);
    for (k, v) in extra {
        home = home.with(k, v);
    }
    let server = Server::start(&home);
    (server, mock, home)
}

fn ask(user: &str, conv: &str, message: &str) -> Value {
    json!({"user_id": user, "surface_id": "cli", "conversation_id": conv, "message": message})
}

fn audit_text(home: &Home) -> String {
    std::fs::read_to_string(home.root().join("logs/audit.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_is_multi_turn_stores_minimised_and_audits_without_content() {
    let (mut server, mock, home) = setup(&[]).await;
    let secret_msg = "remember my key sk-proj-SECRETabcdefghijklmnopqrstu please";
    let (status, env) = post_json(
        &server.url("/api/maestra/core"),
        ask("jh", "conv_t1", secret_msg),
    )
    .await;
    assert_eq!(status, 200, "{env}");
    for field in [
        "reply",
        "mode",
        "conversation_id",
        "source",
        "version",
        "artifacts",
        "actions",
    ] {
        assert!(env.get(field).is_some(), "missing {field}: {env}");
    }
    assert_eq!(env["source"], "local");
    assert_eq!(env["conversation_id"], "conv_t1");
    assert_eq!(env["meta"]["model"], "llama3.2");
    assert_eq!(env["meta"]["tokens"], 15);
    assert_eq!(env["meta"]["cost_usd"], 0.0);
    assert!(env["meta"]["latency_ms"].is_u64());

    let (status, env2) = post_json(
        &server.url("/api/maestra/core"),
        ask("jh", "conv_t1", "and now?"),
    )
    .await;
    assert_eq!(status, 200, "{env2}");
    // The second call carried the first turn upstream: user, assistant, user.
    let seen = mock.requests();
    let last = &seen.last().unwrap().body;
    assert_eq!(last["messages"].as_array().unwrap().len(), 3, "{last}");
    // The model saw the message as written; the history it gets back is the stored, redacted one.
    assert_eq!(seen[0].body["messages"][0]["content"], secret_msg);
    assert!(
        last["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("[REDACTED:openai_key]")
    );

    let (status, conv) = get(&server.url("/api/conversations/conv_t1")).await;
    assert_eq!(status, 200);
    assert_eq!(conv["owner"], "jh");
    assert_eq!(conv["meta"]["message_count"], 4);
    assert_eq!(conv["messages"].as_array().unwrap().len(), 4);
    let stored = conv["messages"][0]["content"].as_str().unwrap();
    assert!(stored.contains("[REDACTED:openai_key]"), "{stored}");
    assert!(!conv.to_string().contains("SECRETabcdefghij"));

    // A surface's file content goes to the model but is never stored; its path is.
    let mut with_file = ask("jh", "conv_t2", "summarise this file");
    with_file["surface_context"] =
        json!({"file_path": "/home/jh/plan.md", "file_content": "FILECANARY secret plans"});
    let (status, _) = post_json(&server.url("/api/maestra/core"), with_file).await;
    assert_eq!(status, 200);
    let sent = mock.requests().last().unwrap().body.to_string();
    assert!(sent.contains("FILECANARY"), "{sent}");
    let (_, conv2) = get(&server.url("/api/conversations/conv_t2")).await;
    assert!(!conv2.to_string().contains("FILECANARY"), "{conv2}");
    assert_eq!(
        conv2["messages"][0]["meta"]["surface_context"]["file_path"],
        "/home/jh/plan.md"
    );

    // Another user cannot extend (or read through the model) this conversation.
    let (status, err) = post_json(
        &server.url("/api/maestra/core"),
        ask("mallory", "conv_t1", "hi"),
    )
    .await;
    assert_eq!(status, 404, "{err}");

    // Audit entries are queued (fail_closed = false); stopping flushes them.
    let out = server.stop();
    let audit = audit_text(&home);
    let llm: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["category"] == "llm")
        .collect();
    assert_eq!(llm.len(), 3, "{audit}");
    assert_eq!(llm[0]["details"]["model"], "llama3.2");
    assert_eq!(llm[0]["details"]["tokens_in"], 10);
    assert_eq!(llm[0]["user_id"], "jh");
    assert!(!audit.contains("remember my key") && !audit.contains("and now?"));
    assert!(!out.contains("remember my key"), "content in logs: {out}");
    common::Home::ok(&home, &["audit", "verify"], b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_compatible_plain_and_streamed() {
    let (server, mock, _home) = setup(&[]).await;
    let body =
        json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hello there"}]});
    let (status, v) = post_json(&server.url("/v1/chat/completions"), body.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "echo(1): hello there"
    );
    assert_eq!(v["usage"]["total_tokens"], 15);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let resp = client()
        .post(server.url("/v1/chat/completions"))
        .json(&streamed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = resp.text().await.unwrap();
    let datas: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(*datas.last().unwrap(), "[DONE]");
    let mut content = String::new();
    let mut usage = Value::Null;
    for d in &datas[..datas.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap();
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(c);
        }
        if v["usage"].is_object() {
            usage = v["usage"].clone();
        }
    }
    assert_eq!(content, "echo(1): hello there");
    assert_eq!(usage["total_tokens"], 15);
    // Upstream was asked for usage so the call can be accounted.
    assert_eq!(
        mock.requests().last().unwrap().body["stream_options"]["include_usage"],
        true
    );

    let (status, models) = get(&server.url("/v1/models")).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"llama3.2") && ids.contains(&"qwen2.5"),
        "{ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_is_translated_and_its_key_injected_from_the_vault() {
    let (mut server, mock, home) = setup(&[]).await;
    let body = json!({"model": "claude-3-5-haiku-latest", "max_tokens": 50,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi claude"}]});
    let (status, v) = post_json(&server.url("/v1/chat/completions"), body.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "claude says: hi claude"
    );
    assert_eq!(v["usage"]["prompt_tokens"], 12);
    assert_eq!(v["meta"]["source"], "cloud");
    assert!(v["meta"]["cost_usd"].as_f64().unwrap() > 0.0);
    let seen = mock.requests();
    let req = seen.last().unwrap();
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.headers["x-api-key"], ANTHROPIC_CANARY);
    assert_eq!(req.body["system"], "be brief");

    let mut streamed = body;
    streamed["stream"] = json!(true);
    let text = client()
        .post(server.url("/v1/chat/completions"))
        .json(&streamed)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let content: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(content, "claude says: hi claude");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");

    // OpenAI gets its key as a bearer token, also from the vault.
    let (status, _) = post_json(
        &server.url("/v1/chat/completions"),
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let auth = mock.requests().last().unwrap().headers["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(auth, format!("Bearer {OPENAI_CANARY}"));

    // The keys are in the vault encrypted, and printed nowhere.
    let out = server.stop();
    for (path, bytes) in common::all_file_bytes(&home.root()) {
        assert!(
            !common::contains(&bytes, OPENAI_CANARY),
            "{}",
            path.display()
        );
        assert!(
            !common::contains(&bytes, ANTHROPIC_CANARY),
            "{}",
            path.display()
        );
    }
    assert!(!out.contains("CANARY"), "{out}");
    let listing = home.ok(&["vault", "list"], b"");
    assert!(listing.contains("openai_api_key") && listing.contains("anthropic_api_key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_only_blocks_cloud_models_while_the_local_one_answers() {
    let (mut server, mock, home) = setup(&[("MAESTRA_LOCAL_ONLY", "true")]).await;
    for model in ["gpt-4o-mini", "claude-3-5-haiku-latest"] {
        let (status, v) = post_json(
            &server.url("/v1/chat/completions"),
            json!({"model": model, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
        assert_eq!(status, 403, "{v}");
        assert_eq!(v["error"]["code"], "local_only_mode");
        assert!(v["error"]["suggested_alternatives"].is_array(), "{v}");
        assert!(v["error"]["reason"].is_string());
    }
    assert!(mock.requests().is_empty(), "a cloud request left Maestra");
    let (status, env) = post_json(
        &server.url("/api/maestra/core"),
        ask("jh", "conv_lo", "local please"),
    )
    .await;
    assert_eq!(status, 200, "{env}");
    assert_eq!(env["source"], "local");
    let (_, privacy) = get(&server.url("/api/privacy")).await;
    assert_eq!(privacy["local_only"], true);
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("maestra_local_only_blocks_total{service=\"openai\"} 1"),
        "{metrics}"
    );
    server.stop();
    let blocks = audit_text(&home)
        .lines()
        .filter(|l| {
            l.contains("\"category\":\"local_only_block\"") && l.contains("\"result\":\"blocked\"")
        })
        .count();
    assert_eq!(blocks, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_json_error_and_stores_nothing() {
    let (server, _mock, _home) = setup(&[]).await;
    let c = client();
    let raw = |body: Vec<u8>, ctype: Option<&'static str>| {
        let mut r = c.post(server.url("/api/maestra/core")).body(body);
        if let Some(t) = ctype {
            r = r.header("content-type", t);
        }
        r
    };
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            raw(b"{not json".to_vec(), Some("application/json")),
            400,
            "bad_request",
        ),
        (
            raw(
                b"{\"user_id\": \"u\", \"surface_id\": \"s\", \"message\": \"m\", \"surface_context\": -3}".to_vec(),
                Some("application/json"),
            ),
            400,
            "bad_request",
        ),
        (
            c.post(server.url("/v1/chat/completions")).json(&json!({
                "model": "llama3.2", "user": {},
                "messages": [{"role": "user", "content": "hi"}]
            })),
            400,
            "bad_request",
        ),
        (
            raw(
                b"{\"user_id\": 5, \"surface_id\": \"s\", \"message\": \"m\"}".to_vec(),
                Some("application/json"),
            ),
            400,
            "bad_request",
        ),
        (
            raw(
                b"{\"surface_id\": \"s\", \"message\": \"m\"}".to_vec(),
                Some("application/json"),
            ),
            400,
            "bad_request",
        ),
        (
            raw(
                vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'],
                Some("application/json"),
            ),
            400,
            "bad_request",
        ),
        (raw(b"{}".to_vec(), None), 415, "unsupported_media_type"),
        (
            raw(
                b"user_id=a".to_vec(),
                Some("application/x-www-form-urlencoded"),
            ),
            415,
            "unsupported_media_type",
        ),
        (
            raw(vec![b' '; 2 * 1024 * 1024], Some("application/json")),
            413,
            "payload_too_large",
        ),
    ];
    for (i, (req, status, code)) in cases.into_iter().enumerate() {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "case {i}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "case {i}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 5);
    }
    for id in ["../../etc/passwd", "a/b", ".hidden", &"x".repeat(200)] {
        let (status, v) = post_json(&server.url("/api/maestra/core"), ask("jh", id, "hi")).await;
        assert_eq!(status, 400, "{id}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("conversation_id")
        );
    }
    let (status, v) = get(&server.url("/api/conversations/..%2F..%2Fetc%2Fpasswd")).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = post_json(
        &server.url("/v1/chat/completions"),
        json!({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("model_not_found")),
        "{v}"
    );
    let (status, v) = get(&server.url("/no/such/route")).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let resp = c.put(server.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 405);

    // Upstream failures: garbage, 500, silence. Each is a 5xx JSON error and stores nothing.
    for (msg, status, code) in [
        ("mode:garbage", 502, "upstream_error"),
        ("mode:500", 502, "upstream_error"),
        ("mode:slow", 504, "upstream_timeout"),
    ] {
        let start = Instant::now();
        let (s, v) = post_json(
            &server.url("/api/maestra/core"),
            ask("jh", "conv_fail", msg),
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{msg}: {v}"
        );
        assert!(start.elapsed() < Duration::from_secs(10), "{msg} hung");
    }
    let (status, _) = get(&server.url("/api/conversations/conv_fail")).await;
    assert_eq!(status, 404, "a failed call stored a half conversation");

    // A stream that breaks off or stalls ends with an error event, never with [DONE].
    for msg in ["mode:broken", "mode:stall"] {
        let text = c
            .post(server.url("/v1/chat/completions"))
            .json(&json!({"model": "llama3.2", "stream": true,
                          "messages": [{"role": "user", "content": msg}]}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!text.contains("[DONE]"), "{msg}: {text}");
        assert!(text.contains("\"error\""), "{msg}: {text}");
    }
    let (status, _) = get(&server.url("/health")).await;
    assert_eq!(status, 200, "the server survived all of it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_removes_the_content_from_the_database_files() {
    let (mut server, _mock, home) = setup(&[]).await;
    let canary = "CANARYforgetme7731";
    for i in 0..3 {
        let (s, v) = post_json(
            &server.url("/api/maestra/core"),
            ask(
                "gone",
                &format!("conv_g{i}"),
                &format!("note {canary} number {i}"),
            ),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, _) = post_json(
        &server.url("/api/maestra/core"),
        ask("stays", "conv_s", "keep me"),
    )
    .await;
    assert_eq!(s, 200);
    let (s, export) = get(&server.url("/api/users/gone/export")).await;
    assert_eq!(s, 200);
    assert_eq!(export["conversations"].as_array().unwrap().len(), 3);
    assert!(export.to_string().contains(canary));

    let resp = client()
        .delete(server.url("/api/users/gone/data"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["deleted_conversations"], 3);
    let (s, list) = get(&server.url("/api/conversations?user_id=gone")).await;
    assert_eq!(s, 200);
    assert_eq!(list["conversations"].as_array().unwrap().len(), 0);
    let (s, _) = get(&server.url("/api/conversations/conv_s")).await;
    assert_eq!(s, 200, "another user's data is untouched");

    server.stop();
    for (path, bytes) in common::all_file_bytes(&home.root()) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("maestra.db") {
            assert!(!common::contains(&bytes, canary), "content left in {name}");
        }
    }
    let audit = audit_text(&home);
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"category\":\"data\"") && l.contains("forget_user"))
    );
    assert!(!audit.contains(canary));

    // The same rights from the command line, on the same store.
    let listing = home.ok(&["conversations", "list", "--user", "stays"], b"");
    assert!(listing.contains("conv_s"), "{listing}");
    let export: Value =
        serde_json::from_str(&home.ok(&["conversations", "export", "--user", "stays"], b""))
            .unwrap();
    assert_eq!(export["conversations"][0]["id"], "conv_s");
    assert_eq!(
        export["conversations"][0]["messages"][0]["content"],
        "keep me"
    );
    let one: Value =
        serde_json::from_str(&home.ok(&["conversations", "export", "conv_s"], b"")).unwrap();
    assert_eq!(one["meta"]["message_count"], 2);
    let err = home.fails(&["conversations", "export", "../../etc/passwd"], b"");
    assert!(err.contains("conversation id"), "{err}");
    home.ok(&["forget", "--user", "stays"], b"");
    let err = home.fails(&["conversations", "delete", "conv_s"], b"");
    assert!(err.contains("no conversation"), "{err}");
    let db = std::fs::read(home.root().join("maestra.db")).unwrap();
    assert!(!common::contains(&db, "keep me"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_exists_and_edges_are_set() {
    let (server, _mock, _home) = setup(&[]).await;
    let (status, doc) = get(&server.url("/openapi.json")).await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 13);
    let mut discover_refused = false;
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let url = server.url(&path.replace("{id}", "nope").replace("{user_id}", "nobody"));
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = client()
                .request(m, url)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path}");
            assert!(
                !body.contains("no route for"),
                "{method} {path} is documented but not served"
            );
            assert!(
                status < 500 || status == 503,
                "{method} {path}: {status} {body}"
            );
            if path == "/api/services/discover" {
                // Discovery is off here: a clear refusal, and no job started.
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(
                    (status, v["error"]["code"].as_str()),
                    (409, Some("discovery_off")),
                    "{body}"
                );
                assert!(body.contains("MAESTRA_DISCOVERY=true"), "{body}");
                discover_refused = true;
            }
        }
    }
    assert!(
        discover_refused,
        "POST /api/services/discover is documented"
    );
    let resp = client().get(server.url("/health")).send().await.unwrap();
    let h = resp.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-request-id"].len(), 32);
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "maestra_http_requests_total{route=\"/openapi.json\",method=\"GET\",status=\"200\"} 2"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("maestra_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_openai_client_works_unchanged() {
    let (server, _mock, _home) = setup(&[]).await;
    let code = r#"
import sys
from openai import OpenAI
c = OpenAI(base_url=sys.argv[1], api_key="unused-locally", max_retries=0)
r = c.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "from python"}])
print(r.choices[0].message.content)
print(r.usage.total_tokens)
s = c.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "streamed words"}], stream=True)
print("".join((ch.choices[0].delta.content or "") for ch in s if ch.choices))
print(",".join(m.id for m in c.models.list()))
try:
    c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
except Exception as e:
    print(type(e).__name__, getattr(e, "status_code", None))
"#;
    let base = server.url("/v1");
    let out = tokio::task::spawn_blocking(move || common::run_python(code, &[&base]))
        .await
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "echo(1): from python");
    assert_eq!(lines[1], "15");
    assert_eq!(lines[2], "echo(1): streamed words");
    assert!(lines[3].contains("llama3.2"), "{out}");
    assert_eq!(lines[4], "NotFoundError 404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_flushes_the_audit_log() {
    let (mut server, _mock, home) = setup(&[]).await;
    let url = server.url("/api/maestra/core");
    let inflight = tokio::spawn(async move {
        client()
            .post(url)
            .json(&ask("jh", "conv_sd", "mode:delay then answer"))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    let resp = inflight
        .await
        .unwrap()
        .expect("the in-flight request was cut off");
    assert_eq!(resp.status(), 200);
    assert!(out.contains("audit log flushed"), "{out}");
    let audit = audit_text(&home);
    let last: Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(last["action"], "serve.stop");
    assert!(audit.contains("\"conversation_id\"") || audit.contains("\"category\":\"llm\""));
    home.ok(&["audit", "verify"], b"");
}

/// New conversations are acknowledged before their commit (see `store::sqlite_turns`): a stop
/// right after their replies must still write every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_right_after_the_replies_keeps_every_new_conversation() {
    let (mut server, _mock, home) = setup(&[]).await;
    let url = server.url("/api/maestra/core");
    let asks = (0..20).map(|i| {
        let url = url.clone();
        async move {
            let body = json!({"user_id": "quick", "surface_id": "cli", "message": format!("q{i}")});
            client()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    for status in futures_util::future::join_all(asks).await {
        assert_eq!(status, 200);
    }
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    let listed: Value = serde_json::from_str(
        &home.ok(&["conversations", "list", "--user", "quick", "--json"], b""),
    )
    .unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 20, "{listed:?}");
    assert!(listed.iter().all(|c| c["message_count"] == 2), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_refuses_a_public_bind() {
    let home = Home::new().with("MAESTRA_BIND", "0.0.0.0:0");
    let err = home.fails(&["serve"], b"");
    assert!(err.contains("loopback"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_live_in_postgresql_when_configured() {
    let db = common::pg::TempDb::create().await;
    let (mut server, _mock, home) = setup(&[
        ("MAESTRA_CLOUD_STORAGE", "postgresql"),
        ("MAESTRA_DB_URL", db.url.as_str()),
    ])
    .await;
    let (s, v) = post_json(
        &server.url("/api/maestra/core"),
        ask("pg", "conv_pg", "stored in postgres"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, conv) = get(&server.url("/api/conversations/conv_pg")).await;
    assert_eq!(s, 200);
    assert_eq!(conv["messages"].as_array().unwrap().len(), 2);
    let (_, privacy) = get(&server.url("/api/privacy")).await;
    assert_eq!(privacy["storage"], "postgresql");
    // The rows are in PostgreSQL itself, encrypted (issue 18), and forgetting removes them.
    let pg = sqlx::PgPool::connect(&db.url).await.unwrap();
    let stored = "SELECT COUNT(*) FROM messages
                  WHERE conversation_id = 'conv_pg' AND content LIKE 'mx1:%'";
    let n: i64 = sqlx::query_scalar(stored).fetch_one(&pg).await.unwrap();
    assert_eq!(n, 2);
    let plain = "SELECT COUNT(*) FROM messages WHERE content LIKE '%stored in postgres%'";
    let n: i64 = sqlx::query_scalar(plain).fetch_one(&pg).await.unwrap();
    assert_eq!(n, 0);
    let resp = client()
        .delete(server.url("/api/users/pg/data"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let n: i64 = sqlx::query_scalar(stored).fetch_one(&pg).await.unwrap();
    assert_eq!(n, 0);
    pg.close().await;
    server.stop();
    // Nothing went to the embedded file: the conversation lived only in PostgreSQL.
    let db_file = std::fs::read(home.root().join("maestra.db")).unwrap_or_default();
    assert!(!common::contains(&db_file, "stored in postgres"));
    db.drop_db().await;
}
