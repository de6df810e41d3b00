//! Guardrails that hold (SPEC §2.4, §2.6, §6): exact cost limits under concurrency, on one
//! instance and on three sharing PostgreSQL and Redis; API keys; rate limits; lockdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Home;
use common::http::{client, with_headers};
use common::mock;
use common::server::{Server, upstream_env};
use serde_json::{Value, json};

/// Each call costs exactly its reservation: input free, 5 output tokens at $1,000 per million
/// = $0.005, and the mock always answers with 5 completion tokens.
const PRICING: &str =
    "[pricing.\"gpt-4o-mini\"]\ninput_per_million = 0.0\noutput_per_million = 1000.0\n";
const VAULT_KEY: &str = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";

fn home_with(mock: SocketAddr, toml: &str, env: &[(&str, &str)]) -> Home {
    let mut home = upstream_env(Home::new(), mock)
        .with("MAESTRA_OPENAI_KEY", "sk-proj-CANARYguardrails0123456789")
        .with("MAESTRA_ENCRYPTION_KEY", VAULT_KEY);
    for (k, v) in env {
        home = home.with(k, v);
    }
    home.with_toml(toml)
}

fn paid(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 5, "stream": stream,
           "messages": [{"role": "user", "content": "how much?"}]})
}

/// Fires `n` requests at once, round-robin over `servers`; returns the statuses and one 402 body.
async fn burst(
    servers: &[&Server],
    n: usize,
    headers: &[(&str, &str)],
    body: Value,
) -> (Vec<u16>, Option<Value>) {
    let c = client();
    let mut tasks = Vec::new();
    for i in 0..n {
        let req = c
            .post(servers[i % servers.len()].url("/v1/chat/completions"))
            .json(&body);
        let req = with_headers(req, headers);
        tasks.push(tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.ok())
        }));
    }
    let mut statuses = Vec::new();
    let mut refusal = None;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        if s == 402 {
            refusal = v;
        }
        statuses.push(s);
    }
    (statuses, refusal)
}

fn count(statuses: &[u16], code: u16) -> usize {
    statuses.iter().filter(|s| **s == code).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cost_limit_admits_exactly_n_of_200_concurrent_requests() {
    let (addr, mock) = mock::start().await;
    let home = home_with(addr, PRICING, &[("MAESTRA_DAILY_COST_LIMIT", "0.05")]);
    let server = Server::start(&home);
    let (statuses, refusal) = burst(&[&server], 200, &[], paid(false)).await;
    assert_eq!(count(&statuses, 200), 10, "{statuses:?}");
    assert_eq!(count(&statuses, 402), 190);
    assert_eq!(
        mock.requests().len(),
        10,
        "a refused call must not go upstream"
    );
    let err = &refusal.unwrap()["error"];
    assert_eq!(err["code"], "cost_limit_exceeded");
    assert_eq!(err["limit_usd"], 0.05);
    assert_eq!(err["period"], "daily");
    assert!(err["resets_at"].as_str().unwrap().ends_with("T00:00:00Z"));
    let privacy: Value = client()
        .get(server.url("/api/privacy"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(privacy["cost"]["daily"]["spent_usd"], 0.05);
    assert_eq!(privacy["cost"]["daily"]["reserved_usd"], 0.0);
    // The embedded ledger is written behind; give it a moment before another process reads.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = home.ok(&["cost", "report", "--json"], b"");
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["daily"]["spent_usd"], 0.05);
    assert_eq!(report["monthly"]["limit_usd"], 100.0);
    let table = home.ok(&["cost", "report", "--by", "model"], b"");
    assert!(
        table.contains("gpt-4o-mini") && table.contains('█'),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streamed_calls_are_charged_like_plain_ones() {
    let (addr, _mock) = mock::start().await;
    let home = home_with(addr, PRICING, &[("MAESTRA_DAILY_COST_LIMIT", "0.01")]);
    let server = Server::start(&home);
    let spent = |s: &Server| {
        let url = s.url("/api/privacy");
        async move {
            let v: Value = client()
                .get(url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["cost"]["daily"]["spent_usd"].as_f64().unwrap()
        }
    };
    let text = client()
        .post(server.url("/v1/chat/completions"))
        .json(&paid(true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("[DONE]"), "{text}");
    // The stream settles as it ends; give the settlement a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(spent(&server).await, 0.005);
    let (s, _) = burst(&[&server], 1, &[], paid(false)).await;
    assert_eq!(s, vec![200]);
    assert_eq!(spent(&server).await, 0.01);
    let (s, _) = burst(&[&server], 1, &[], paid(true)).await;
    assert_eq!(s, vec![402], "the limit holds for streams too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_one_budget() {
    let db = common::pg::TempDb::create().await;
    let prefix = format!("maestra_test_{}_{}:", std::process::id(), rand_suffix());
    let (addr, mock) = mock::start().await;
    let env = [
        ("MAESTRA_CLOUD_STORAGE", "postgresql"),
        ("MAESTRA_DB_URL", db.url.as_str()),
        ("MAESTRA_REDIS_URL", "redis://127.0.0.1:6379"),
        ("MAESTRA_REDIS_PREFIX", prefix.as_str()),
        ("MAESTRA_DAILY_COST_LIMIT", "0.05"),
        ("MAESTRA_MODE", "cloud"),
        ("MAESTRA_API_KEY", "static-test-key-0123456789"),
        ("MAESTRA_RATE_LIMIT_REQUESTS", "100000"),
    ];
    let homes: Vec<Home> = (0..3).map(|_| home_with(addr, PRICING, &env)).collect();
    let servers: Vec<Server> = homes.iter().map(Server::start).collect();
    let refs: Vec<&Server> = servers.iter().collect();
    let key = [("x-api-key", "static-test-key-0123456789")];

    let (statuses, _) = burst(&refs, 200, &key, paid(false)).await;
    assert_eq!(count(&statuses, 200), 10, "{statuses:?}");
    assert_eq!(count(&statuses, 402), 190);
    assert_eq!(mock.requests().len(), 10);

    drop(servers);
    redis_cleanup(&prefix).await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_rate_limit_of_100_lets_100_through_three_instances() {
    let prefix = format!("maestra_test_{}_{}:", std::process::id(), rand_suffix());
    let (addr, _mock) = mock::start().await;
    let env = [
        ("MAESTRA_REDIS_URL", "redis://127.0.0.1:6379"),
        ("MAESTRA_REDIS_PREFIX", prefix.as_str()),
        ("MAESTRA_MODE", "cloud"),
        ("MAESTRA_API_KEY", "static-test-key-0123456789"),
        ("MAESTRA_RATE_LIMIT_REQUESTS", "100"),
        ("MAESTRA_RATE_LIMIT_WINDOW", "3600"),
    ];
    let homes: Vec<Home> = (0..3).map(|_| home_with(addr, "", &env)).collect();
    let servers: Vec<Server> = homes.iter().map(Server::start).collect();
    let c = client();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let req = c
            .get(servers[i % 3].url("/v1/models"))
            .header("authorization", "Bearer static-test-key-0123456789");
        tasks.push(tokio::spawn(async move {
            req.send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(count(&statuses, 200), 100, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 200);
    let mut servers = servers;
    for s in &mut servers {
        s.stop();
    }
    let audit: String = homes
        .iter()
        .map(|h| std::fs::read_to_string(h.root().join("logs/audit.log")).unwrap())
        .collect();
    let hits = audit
        .lines()
        .filter(|l| l.contains("\"category\":\"auth\"") && l.contains("rate_limit"))
        .count();
    assert_eq!(hits, 200, "every refusal is audited");
    drop(servers);
    redis_cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_mode_requires_valid_unrevoked_keys() {
    let (addr, _mock) = mock::start().await;
    let home = home_with(
        addr,
        "",
        &[("MAESTRA_MODE", "cloud"), ("MAESTRA_BIND", "127.0.0.1:0")],
    );
    let err = home.fails(&["serve"], b"");
    assert!(err.contains("maestra keys create"), "{err}");

    let key = home
        .ok(&["keys", "create", "laptop", "--user", "ann"], b"")
        .trim()
        .to_string();
    assert!(key.starts_with("mae_"), "{key}");
    let mut server = Server::start(&home);
    let c = client();
    let status =
        |req: reqwest::RequestBuilder| async move { req.send().await.unwrap().status().as_u16() };
    let models = server.url("/v1/models");
    assert_eq!(status(c.get(&models)).await, 401);
    assert_eq!(
        status(c.get(&models).header("x-api-key", "mae_000000000000_wrong")).await,
        401
    );
    assert_eq!(
        status(c.get(&models).header("x-api-key", "garbage")).await,
        401
    );
    assert_eq!(status(c.get(&models).header("x-api-key", &key)).await, 200);
    assert_eq!(status(c.get(&models).bearer_auth(&key)).await, 200);
    assert_eq!(
        status(c.get(server.url("/health"))).await,
        200,
        "health needs no key"
    );
    let body: Value = c.get(&models).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    home.ok(&["keys", "revoke", "laptop"], b"");
    assert_eq!(status(c.get(&models).header("x-api-key", &key)).await, 401);
    let listing = home.ok(&["keys", "list"], b"");
    assert!(listing.contains("REVOKED") && !listing.contains(&key));

    let out = server.stop();
    // `mae_<hex id>_<secret>`: the secret is base64url, which may hold `_` itself, so it is
    // everything after the id (its last `_`-part alone could be a two-letter string that any
    // file holds by chance).
    let secret = key
        .strip_prefix("mae_")
        .and_then(|rest| rest.split_once('_'))
        .map(|(_, secret)| secret)
        .unwrap();
    assert_eq!(secret.len(), 43, "{key}");
    assert!(!out.contains(secret), "{out}");
    for (path, bytes) in common::all_file_bytes(&home.root()) {
        assert!(!common::contains(&bytes, secret), "{}", path.display());
    }
    let audit = std::fs::read_to_string(home.root().join("logs/audit.log")).unwrap();
    let fails = audit
        .lines()
        .filter(|l| l.contains("\"category\":\"auth\"") && l.contains("bad_key"))
        .count();
    assert!(fails >= 4, "{audit}");
    assert!(audit.contains("\"ip_address\":\"127.0.0.1\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_shared_limiter_fails_closed() {
    let (addr, _mock) = mock::start().await;
    let home = home_with(
        addr,
        "",
        &[
            ("MAESTRA_MODE", "cloud"),
            ("MAESTRA_API_KEY", "static-test-key-0123456789"),
            ("MAESTRA_REDIS_URL", "redis://127.0.0.1:1"),
        ],
    );
    let server = Server::start(&home);
    let resp = client()
        .get(server.url("/v1/models"))
        .header("x-api-key", "static-test-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("Redis"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_refuses_foreign_hosts_and_origins() {
    let (addr, _mock) = mock::start().await;
    let home = home_with(addr, "cors_origins = [\"http://localhost:3000\"]\n", &[]);
    let server = Server::start(&home);
    let c = client();
    let url = server.url("/v1/models");
    let s = c
        .get(&url)
        .header("host", "evil.example:8825")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, 403, "DNS rebinding");
    let s = c
        .get(&url)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, 403);
    let resp = c
        .get(&url)
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    // A rebinding page's request carries its own name both as Host and as Origin, so the page
    // check (Origin equal to this server) takes the Origin away: the loopback Host check must
    // still refuse it, for reads and for writes.
    for (method, path) in [
        ("GET", "/api/conversations"),
        ("POST", "/api/controls/local-only"),
    ] {
        let resp = c
            .request(method.parse().unwrap(), server.url(path))
            .header("host", "evil.example:8825")
            .header("origin", "http://evil.example:8825")
            .json(&serde_json::json!({"on": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{method} {path}");
        let v: Value = resp.json().await.unwrap();
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    let privacy: Value = c
        .get(server.url("/api/privacy"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(privacy["local_only"], false, "{privacy}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockdown_forces_local_only_revokes_keys_and_rotates_the_vault_key() {
    let (addr, mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr)
        .with("MAESTRA_OPENAI_KEY", "sk-proj-CANARYlockdown0123456789");
    home.ok(&["keys", "create", "phone", "--scope", "admin"], b"");
    let server = Server::start(&home);
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]});
    let s = client()
        .post(server.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, 200);
    let old_key = std::fs::read_to_string(home.root().join("keys/vault.key")).unwrap();

    let out = home.ok(&["lockdown"], b"");
    assert!(out.contains("1 API key(s) revoked"), "{out}");
    assert_ne!(
        std::fs::read_to_string(home.root().join("keys/vault.key")).unwrap(),
        old_key
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let resp = client()
        .post(server.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "local_only_mode"
    );
    assert_eq!(mock.requests().len(), 1);
    assert!(home.ok(&["keys", "list"], b"").contains("REVOKED"));
    let audit = std::fs::read_to_string(home.root().join("logs/audit.log")).unwrap();
    assert_eq!(
        audit
            .lines()
            .filter(|l| l.contains("\"action\":\"lockdown\""))
            .count(),
        1
    );
    // The provider key survived the rotation.
    assert!(
        home.ok(&["vault", "get", "openai_api_key", "--reveal"], b"")
            .contains("CANARYlockdown")
    );
    home.ok(&["lockdown", "--lift"], b"");
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn redis_cleanup(prefix: &str) {
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reads_the_seed_conversations_and_cost_tracker() {
    let home = Home::new();
    let seed = home.dir.path().join("seed");
    std::fs::create_dir_all(seed.join("conversations")).unwrap();
    std::fs::write(
        seed.join("maestra_cost_tracker.json"),
        r#"{"2025-12-28": 2.45, "2025-12-27": 3.12, "monthly_total_2025-12": 45.67}"#,
    )
    .unwrap();
    let conv = json!({
        "id": "conv_2025-12-28_jh_abc12345", "topic": "music", "owner": "jh",
        "surfaces": ["cli"], "tags": [], "artifacts": [],
        "messages": [{"id": "m1", "role": "user", "content": "my token is ghp_abcdefghijklmnopqrstuvwxyz0123456789",
                      "surface": "cli", "mode": "chat", "timestamp": "2025-12-28T10:00:00", "meta": {}}],
        "meta": {"created_at": "2025-12-28T10:00:00", "updated_at": "2025-12-28T10:05:00",
                 "status": "active", "message_count": 1}
    });
    std::fs::write(
        seed.join("conversations/conv_2025-12-28_jh_abc12345.json"),
        conv.to_string(),
    )
    .unwrap();
    std::fs::write(seed.join("conversations/broken.json"), "{not json").unwrap();
    let out = home.run(&["import", "--from", seed.to_str().unwrap()], b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("imported 1 conversation(s)") && stdout.contains("2 day(s)"),
        "{stdout}"
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "an unreadable file is reported in the exit code"
    );
    let again = home.run(&["import", "--from", seed.to_str().unwrap()], b"");
    assert!(String::from_utf8_lossy(&again.stdout).contains("1 already present"));
    let report = home.ok(&["cost", "report", "--days", "3650", "--by", "day"], b"");
    assert!(
        report.contains("2025-12-28") && report.contains("5.5700"),
        "{report}"
    );
    let exported = home.ok(
        &["conversations", "export", "conv_2025-12-28_jh_abc12345"],
        b"",
    );
    assert!(
        exported.contains("[REDACTED:github_token]") && !exported.contains("ghp_abc"),
        "{exported}"
    );
}

/// Issue 14: numbers a client sends cannot wrap the budget around. An output cap no ledger
/// can take is a 400 naming the field; the largest accepted one is a worst case over the limit
/// (402); calls held by a slow upstream that then fails count until they are released; and
/// the ledger reads back after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn numbers_from_a_client_cannot_wrap_the_budget() {
    let (addr, mock) = mock::start().await;
    let home = home_with(addr, PRICING, &[("MAESTRA_DAILY_COST_LIMIT", "0.05")]);
    let mut server = Server::start(&home);
    let c = client();
    let ask = |body: Value| {
        let req = c.post(server.url("/v1/chat/completions")).json(&body);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    for (field, value) in [
        ("max_tokens", json!(u64::MAX)),
        ("max_tokens", json!(0)),
        ("max_tokens", json!(-1)),
        ("max_tokens", json!(2.5)),
        ("max_completion_tokens", json!(1e300)),
        ("max_completion_tokens", json!(1_000_001)),
    ] {
        let mut body = paid(false);
        body.as_object_mut().unwrap().remove("max_tokens");
        body[field] = value.clone();
        let (status, err) = ask(body).await;
        assert_eq!(status, 400, "{field}={value}: {err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{field}: {message}");
    }
    let mut biggest = paid(false);
    biggest["max_tokens"] = json!(1_000_000);
    let (status, err) = ask(biggest).await;
    assert_eq!(status, 402, "{err}");
    assert_eq!(err["error"]["code"], "cost_limit_exceeded");
    assert_eq!(mock.requests().len(), 0, "nothing refused may go upstream");

    // Ten calls hold the whole budget while the upstream takes 800 ms and then fails.
    let failing = json!({"model": "gpt-4o-mini", "max_tokens": 5,
                         "messages": [{"role": "user", "content": "mode:delay mode:500"}]});
    let held = tokio::spawn({
        let servers_url = server.url("/v1/chat/completions");
        async move {
            let c = client();
            let calls = (0..10).map(|_| c.post(&servers_url).json(&failing).send());
            futures_util::future::join_all(calls).await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (statuses, _) = burst(&[&server], 5, &[], paid(false)).await;
    assert_eq!(
        count(&statuses, 402),
        5,
        "held budget must count: {statuses:?}"
    );
    for r in held.await.unwrap() {
        assert!(r.unwrap().status().is_server_error());
    }
    // Released, not charged: exactly ten $0.005 calls fit afterwards.
    let (statuses, _) = burst(&[&server], 20, &[], paid(false)).await;
    assert_eq!(count(&statuses, 200), 10, "{statuses:?}");
    assert_eq!(count(&statuses, 402), 10, "{statuses:?}");
    let privacy: Value = c
        .get(server.url("/api/privacy"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(privacy["cost"]["daily"]["spent_usd"], 0.05);
    assert_eq!(privacy["cost"]["daily"]["reserved_usd"], 0.0);

    // The ledger reads back after a restart, and still refuses.
    server.stop();
    let server = Server::start(&home);
    let report: Value = serde_json::from_str(&home.ok(&["cost", "report", "--json"], b"")).unwrap();
    assert_eq!(report["daily"]["spent_usd"], 0.05);
    let resp = client()
        .post(server.url("/v1/chat/completions"))
        .json(&paid(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 402);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_amounts_the_ledger_cannot_hold() {
    for amount in ["-1", "1e300", "2000000000", "\"5\""] {
        let home = Home::new();
        let seed = home.dir.path().join("seed");
        std::fs::create_dir_all(seed.join("conversations")).unwrap();
        std::fs::write(
            seed.join("maestra_cost_tracker.json"),
            format!(r#"{{"2025-12-28": {amount}, "2025-12-27": 1.0}}"#),
        )
        .unwrap();
        let out = home.run(&["import", "--from", seed.to_str().unwrap()], b"");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("2025-12-28"), "{amount}: {text}");
        let report = home.ok(&["cost", "report", "--days", "3650", "--by", "day"], b"");
        assert!(
            !report.contains("2025-12-27"),
            "a bad file imports nothing: {report}"
        );
    }
}

/// A paid answer that reports no usage is charged what was counted, never $0, and the
/// `cost_usd` it reports is the ledger's charge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_answer_without_usage_is_not_free() {
    let (addr, _mock) = mock::start().await;
    let home = home_with(addr, PRICING, &[("MAESTRA_DAILY_COST_LIMIT", "5")]);
    let server = Server::start(&home);
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 5,
                      "messages": [{"role": "user", "content": "mode:nousage"}]});
    let answer: Value = client()
        .post(server.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reported = answer["meta"]["cost_usd"].as_f64().unwrap();
    assert!(reported > 0.0, "{answer}");
    let privacy: Value = client()
        .get(server.url("/api/privacy"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        privacy["cost"]["daily"]["spent_usd"].as_f64().unwrap(),
        reported
    );
}

/// The local-only guard runs before the reservation (issue 16's order): with no budget at all,
/// a cloud call in local-only mode is refused as a local-only block (403), not as a cost
/// limit, and holds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_cloud_call_reserves_nothing() {
    let (addr, mock) = mock::start().await;
    let home = home_with(
        addr,
        PRICING,
        &[
            ("MAESTRA_DAILY_COST_LIMIT", "0"),
            ("MAESTRA_LOCAL_ONLY", "true"),
        ],
    );
    let server = Server::start(&home);
    let resp = client()
        .post(server.url("/v1/chat/completions"))
        .json(&paid(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "local_only_mode", "{err}");
    assert!(mock.requests().is_empty());
    let mut server = server;
    server.stop(); // the audit log is flushed on a graceful stop
    let audit = std::fs::read_to_string(home.root().join("logs/audit.log")).unwrap();
    assert!(!audit.contains("cost_limit"), "{audit}");
    assert!(audit.contains("local_only_block"), "{audit}");
}

/// A paid model the pricing table does not know is refused with a 400 `unpriced_model` that
/// names the model and the fix, before anything is reserved or sent (issue 25); priced in
/// `maestra.toml`, the same name goes through. A local model needs no price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpriced_paid_model_is_refused_before_anything_is_sent() {
    let (addr, mock) = mock::start().await;
    let body = json!({"model": "gpt-9-ultra", "max_tokens": 5,
                      "messages": [{"role": "user", "content": "how much?"}]});
    let home = home_with(addr, PRICING, &[("MAESTRA_DAILY_COST_LIMIT", "5")]);
    let server = Server::start(&home);
    let resp = client()
        .post(server.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "unpriced_model", "{err}");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.contains("[pricing.\"gpt-9-ultra\"]"), "{msg}");
    assert!(msg.contains("output_per_million"), "{msg}");
    assert!(msg.contains("maestra.toml"), "{msg}");
    assert!(mock.requests().is_empty());
    let privacy: Value = client()
        .get(server.url("/api/privacy"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(privacy["cost"]["daily"]["spent_usd"].as_f64().unwrap(), 0.0);
    drop(server);

    let priced = format!(
        "{PRICING}[pricing.\"gpt-9-ultra\"]\ninput_per_million = 0.0\noutput_per_million = 1000.0\n"
    );
    let home = home_with(addr, &priced, &[("MAESTRA_DAILY_COST_LIMIT", "5")]);
    let server = Server::start(&home);
    let resp = client()
        .post(server.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert!(
        answer["meta"]["cost_usd"].as_f64().unwrap() > 0.0,
        "{answer}"
    );
    drop(server);
}

/// A client that walks away from a paid stream mid-answer still pays for what the upstream
/// produced: the stream's relay notices the closed connection while the upstream is silent,
/// settles the hold to the counted usage (nothing stays reserved) and audits the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_abandoned_by_its_client_is_settled_and_audited() {
    let (addr, _mock) = mock::start().await;
    let home = home_with(addr, PRICING, &[("MAESTRA_DAILY_COST_LIMIT", "5")]);
    let mut server = Server::start(&home);
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 5, "stream": true,
                      "messages": [{"role": "user", "content": "mode:stall words"}]});
    let mut resp = client()
        .post(server.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // Read until the first word has arrived, so the relay has counted it, then walk away.
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("echo") {
        seen.extend_from_slice(&resp.chunk().await.unwrap().unwrap());
    }
    drop(resp);
    let daily = || async {
        let v: Value = client()
            .get(server.url("/api/privacy"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["cost"]["daily"].clone()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let settled = loop {
        let d = daily().await;
        if d["reserved_usd"].as_f64() == Some(0.0) && d["spent_usd"].as_f64() > Some(0.0) {
            break d;
        }
        assert!(std::time::Instant::now() < deadline, "still held: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let spent = settled["spent_usd"].as_f64().unwrap();
    assert!(spent > 0.0 && spent <= 0.005, "{settled}");
    server.stop();
    let audit = std::fs::read_to_string(home.root().join("logs/audit.log")).unwrap();
    let entry = audit
        .lines()
        .find(|l| l.contains("chat.completions"))
        .unwrap_or_else(|| panic!("no entry for the call: {audit}"));
    // The relay writes the entry in the request's egress tally: it names what was received.
    let v: Value = serde_json::from_str(entry).unwrap();
    assert_eq!(v["result"], "failed", "{entry}");
    assert_eq!(v["details"]["abandoned"], true, "{entry}");
    assert_eq!(v["details"]["cost_usd"].as_f64(), Some(spent), "{entry}");
    assert!(
        v["details"]["bytes_received"].as_u64().unwrap_or(0) > 0,
        "{entry}"
    );
}
