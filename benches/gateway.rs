//! Gateway benchmark (issue 3): `cargo bench --bench gateway` (needs `oha`; see BENCHMARKS.md).
//!
//! Added latency of Maestra over calling the same mock upstream directly, at fixed request
//! rates, with a real HTTP load generator (`oha`, open loop with latency correction). The full
//! pipeline is on: every request to `/api/maestra/core` goes through the edge layers, the
//! egress client, the conversation store and the audit log. Both sides run in the same process
//! run, taking turns over several rounds, so the difference is what to read on this shared
//! machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mock.rs"]
mod mock;
// What `mock` reaches as `super::`: its Anthropic tool behaviour and its embeddings.
#[path = "../tests/common/mock_anthropic.rs"]
mod mock_anthropic;
#[path = "../tests/common/mock_embeddings.rs"]
mod mock_embeddings;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const RATES: &[u32] = &[500, 2000];
const SECONDS: u32 = 15;

fn oha() -> String {
    std::env::var("MAESTRA_BENCH_OHA").unwrap_or_else(|_| {
        let local = concat!(env!("CARGO_MANIFEST_DIR"), "/../.tools/bin/oha");
        if std::path::Path::new(local).exists() {
            local.to_string()
        } else {
            "oha".to_string()
        }
    })
}

struct Run {
    p50_ms: f64,
    p99_ms: f64,
    rps: f64,
    ok: u64,
    errors: u64,
}

/// What oha sends: one body, or for each request a line of a file picked at random.
enum Body<'a> {
    One(&'a Value),
    Lines(&'a std::path::Path),
}

fn load(url: &str, body: &Value, rate: u32) -> Run {
    load_with(url, body, rate, None)
}

fn load_with(url: &str, body: &Value, rate: u32, header: Option<(&str, &str)>) -> Run {
    run_oha(url, Body::One(body), rate, header)
}

fn run_oha(url: &str, body: Body, rate: u32, header: Option<(&str, &str)>) -> Run {
    let (body_flag, body_arg) = match body {
        Body::One(v) => ("-d", v.to_string()),
        Body::Lines(path) => ("-Z", path.display().to_string()),
    };
    let mut cmd = Command::new(oha());
    if let Some((k, v)) = header {
        cmd.args(["-H", &format!("{k}: {v}")]);
    }
    let out = cmd
        .args([
            "--no-tui",
            "--output-format",
            "json",
            "--latency-correction",
            "-z",
            &format!("{SECONDS}s"),
            "-q",
            &rate.to_string(),
            "-c",
            "64",
            "-m",
            "POST",
            "-H",
            "content-type: application/json",
            body_flag,
            &body_arg,
            url,
        ])
        .output()
        .expect("oha is missing: cargo install oha --locked --root ../.tools (see BENCHMARKS.md)");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("oha output: {}", String::from_utf8_lossy(&out.stderr)));
    let codes = v["statusCodeDistribution"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let ok = codes.get("200").and_then(Value::as_u64).unwrap_or(0);
    let total: u64 = codes.values().filter_map(Value::as_u64).sum();
    // Requests still in flight when the run's time is up are cut by oha itself, not failures.
    let transport: u64 = v["errorDistribution"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !k.contains("deadline"))
                .filter_map(|(_, n)| n.as_u64())
                .sum()
        })
        .unwrap_or(0);
    if total - ok + transport > 0 {
        eprintln!(
            "{url} at {rate}/s: status codes {}, errors {}",
            v["statusCodeDistribution"], v["errorDistribution"]
        );
    }
    Run {
        p50_ms: v["latencyPercentiles"]["p50"].as_f64().unwrap_or(f64::NAN) * 1000.0,
        p99_ms: v["latencyPercentiles"]["p99"].as_f64().unwrap_or(f64::NAN) * 1000.0,
        rps: v["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        ok,
        errors: total - ok + transport,
    }
}

/// CPU seconds (user + system) from a `/proc/.../stat` line: `own` or, with `children`, of
/// the children already waited for (here: the `oha` runs).
fn cpu_seconds(stat_path: &str, children: bool) -> f64 {
    let text = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime, stime, cutime, cstime are fields 14-17 of the line, 12-15 after the name.
    let (a, b) = if children { (13, 14) } else { (11, 12) };
    let ticks = fields.get(a).copied().unwrap_or(0) + fields.get(b).copied().unwrap_or(0);
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Where the CPU went during one run, in milliseconds per request served: Maestra, the load
/// generator, and this process (the mock upstream).
struct Cpu {
    maestra_ms: f64,
    oha_ms: f64,
    mock_ms: f64,
    /// Cores busy on average over the run, all three together.
    cores: f64,
}

/// Runs `f` and accounts the CPU it made `server` (if any), `oha` and the mock use.
fn with_cpu(server: Option<u32>, f: impl FnOnce() -> Run) -> (Run, Cpu) {
    let server_stat = server.map(|p| format!("/proc/{p}/stat"));
    let server_cpu = || {
        server_stat
            .as_deref()
            .map_or(0.0, |p| cpu_seconds(p, false))
    };
    let (s0, o0, m0) = (
        server_cpu(),
        cpu_seconds("/proc/self/stat", true),
        cpu_seconds("/proc/self/stat", false),
    );
    let run = f();
    let (s1, o1, m1) = (
        server_cpu(),
        cpu_seconds("/proc/self/stat", true),
        cpu_seconds("/proc/self/stat", false),
    );
    let n = (run.ok + run.errors).max(1) as f64;
    let cpu = Cpu {
        maestra_ms: (s1 - s0) * 1000.0 / n,
        oha_ms: (o1 - o0) * 1000.0 / n,
        mock_ms: (m1 - m0) * 1000.0 / n,
        cores: ((s1 - s0) + (o1 - o0) + (m1 - m0)) / f64::from(SECONDS),
    };
    (run, cpu)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn start_maestra(
    home: &std::path::Path,
    upstream: SocketAddr,
    env: &[(&str, &str)],
) -> (Child, SocketAddr) {
    // `MAESTRA_BENCH_BIN` runs another build (a copy of an earlier one, for an A/B).
    let bin = std::env::var("MAESTRA_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_maestra").to_string());
    let mut child = Command::new(bin)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("MAESTRA_HOME", home)
        .env("MAESTRA_LOCAL_MODEL_URL", format!("http://{upstream}/v1"))
        .env("MAESTRA_OPENAI_BASE_URL", format!("http://{upstream}/v1"))
        .env("MAESTRA_OPENAI_KEY", "sk-bench-not-a-real-key-0000000000")
        .env("MAESTRA_LOCAL_MODEL", "llama3.2")
        .env("MAESTRA_RATE_LIMIT_REQUESTS", "1000000")
        .env("MAESTRA_DAILY_COST_LIMIT", "1000000")
        .env("MAESTRA_MONTHLY_COST_LIMIT", "1000000")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(a) = line.strip_prefix("maestra listening on http://") {
            break a.parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (upstream, _mock) = rt.block_on(mock::start());
    // `MAESTRA_BENCH_ONLY=core` or `=guardrails` runs one half, for quicker iterations.
    let only = std::env::var("MAESTRA_BENCH_ONLY").unwrap_or_default();
    if only != "guardrails" {
        core(upstream);
    }
    if only != "core" {
        guardrails(upstream);
    }
}

/// Issue 3: `/api/maestra/core` with the full pipeline vs the mock upstream called directly.
///
/// Three kinds of turn, since the store treats them differently: a new conversation per
/// request (acknowledged once queued, committed within 5 ms with others); turns continuing
/// 1,000 conversations picked at random (an assistant's many users: the last messages read and
/// sent upstream, the turn stored); and every request continuing one conversation (the worst
/// case: each read of it meets turns of it not yet committed). A continued turn sends 20
/// earlier messages upstream, which costs the upstream too, so its added latency is measured
/// against a direct call with the same 21 messages. A run of `/v1/chat/completions` (the same
/// pipeline without the store) shows what is left for the store to add. The runs take turns,
/// round after round; figures are medians over rounds.
fn core(upstream: SocketAddr) {
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("m");
    private_dir(&root);
    // Room for every turn of a round in one conversation.
    private_file(
        &root.join("maestra.toml"),
        "[conversations]\nmax_messages = 200000\n",
    );
    let (mut child, addr) = start_maestra(&root, upstream, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let rest = rss_kib(child.id());

    let direct_url = format!("http://{upstream}/v1/chat/completions");
    let core_url = format!("http://{addr}/api/maestra/core");
    // The same pipeline without the conversation store (stateless OpenAI route, model priced
    // 0 so no ledger either): what Maestra adds before any storage.
    let chat_url = format!("http://{addr}/v1/chat/completions");
    // `MAESTRA_BENCH_MESSAGE_BYTES=1500` pads the question (and so the stored turns and the
    // history sent upstream) to that size: replies and notes are often longer than one line.
    let mut question = "what is on my calendar today?".to_string();
    if let Some(bytes) = std::env::var("MAESTRA_BENCH_MESSAGE_BYTES")
        .ok()
        .and_then(|b| b.parse::<usize>().ok())
    {
        while question.len() < bytes {
            question.push_str(" and then?");
        }
    }
    let question = question.as_str();
    let direct_body =
        json!({"model": "llama3.2", "messages": [{"role": "user", "content": question}]});
    // What Maestra sends upstream for a continued turn: 20 earlier messages and the new one.
    let mut history: Vec<Value> = (0..10)
        .flat_map(|_| {
            [
                json!({"role": "user", "content": question}),
                json!({"role": "assistant", "content": format!("echo(21): {question}")}),
            ]
        })
        .collect();
    history.push(json!({"role": "user", "content": question}));
    let direct_history_body = json!({"model": "llama3.2", "messages": history});
    let new_body = json!({"user_id": "bench", "surface_id": "cli", "message": question});
    let continued = |id: &str| json!({"user_id": "bench", "surface_id": "cli", "conversation_id": id, "message": question});
    let many = home.path().join("many-conversations.jsonl");
    let lines: Vec<String> = (0..1000)
        .map(|i| continued(&format!("bench-many-{i}")).to_string())
        .collect();
    std::fs::write(&many, lines.join("\n")).unwrap();
    // Warm every path (connection pools, SQLite page cache) and give the 1,000 conversations
    // their history.
    load(&direct_url, &direct_body, 200);
    load(&chat_url, &direct_body, 200);
    load(&core_url, &new_body, 200);
    load(&core_url, &continued("bench-warm"), 200);
    run_oha(&core_url, Body::Lines(&many), 1000, None);

    let rounds = rounds();
    println!(
        "added latency of Maestra (/api/maestra/core, full pipeline) over the mock upstream directly"
    );
    println!(
        "{SECONDS} s per run, oha open loop with latency correction, 64 connections; \
         {rounds} rounds, the runs taking turns; median over the rounds"
    );
    println!(
        "| rate | run | p50 | p99 | added p50 | added p99 | p99 of each round | ok / errors | maestra RSS after |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut cpu_rows = Vec::new();
    /// A run of the table: its name, the direct run its added latency is measured against
    /// (0 or 1), whether Maestra serves it, and what it sends at a rate in a round.
    type Load<'a> = Box<dyn Fn(u32, usize) -> Run + 'a>;
    let table: [(&str, usize, bool, Load); 6] = [
        (
            "direct",
            0,
            false,
            Box::new(|rate, _| load(&direct_url, &direct_body, rate)),
        ),
        (
            "direct, 21 messages",
            1,
            false,
            Box::new(|rate, _| load(&direct_url, &direct_history_body, rate)),
        ),
        (
            "no store: /v1/chat/completions",
            0,
            true,
            Box::new(|rate, _| load(&chat_url, &direct_body, rate)),
        ),
        (
            "new conversation",
            0,
            true,
            Box::new(|rate, _| load(&core_url, &new_body, rate)),
        ),
        (
            "continued, 1,000 conversations",
            1,
            true,
            Box::new(|rate, _| run_oha(&core_url, Body::Lines(&many), rate, None)),
        ),
        (
            "continued, one conversation",
            1,
            true,
            Box::new(|rate, round| {
                load(
                    &core_url,
                    &continued(&format!("bench-{rate}-{round}")),
                    rate,
                )
            }),
        ),
    ];
    for rate in rates() {
        let mut runs: [Vec<(Run, Cpu)>; 6] = Default::default();
        for round in 0..rounds {
            for ((_, _, served, send), runs) in table.iter().zip(&mut runs) {
                let pid = served.then(|| child.id());
                runs.push(with_cpu(pid, || send(rate, round)));
            }
        }
        let rss = rss_kib(child.id());
        let bases = [rounds_of(&runs[0]), rounds_of(&runs[1])];
        for ((name, base, _, _), runs) in table.iter().zip(&runs) {
            let (r, base) = (rounds_of(runs), &bases[*base]);
            println!(
                "| {rate}/s | {name} | {:.3} ms | {:.3} ms | {:+.3} ms | {:+.3} ms | {} | {} / {} ({:.0} req/s) | {:.1} MiB |",
                r.p50,
                r.p99,
                r.p50 - base.p50,
                r.p99 - base.p99,
                r.each.join(", "),
                r.ok,
                r.errors,
                r.rps,
                rss as f64 / 1024.0
            );
            cpu_rows.push((format!("{rate}/s {name}"), mean_cpu(runs)));
        }
        assert!(
            runs[..2].iter().flatten().all(|(r, _)| r.errors == 0),
            "the direct runs had errors"
        );
    }
    print_cpu(&cpu_rows);
    println!("maestra RSS at rest: {:.1} MiB", rest as f64 / 1024.0);
    let _ = child.kill();
    let _ = child.wait();
}

/// The request rates of the core runs: [`RATES`], or `MAESTRA_BENCH_RATES` (e.g. `2000`) for
/// quicker iterations.
fn rates() -> Vec<u32> {
    std::env::var("MAESTRA_BENCH_RATES")
        .ok()
        .map(|r| r.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .filter(|r: &Vec<u32>| !r.is_empty())
        .unwrap_or_else(|| RATES.to_vec())
}

fn rounds() -> usize {
    std::env::var("MAESTRA_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
}

fn private_dir(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
}

fn private_file(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The CPU figures of `runs`, averaged.
fn mean_cpu(runs: &[(Run, Cpu)]) -> Cpu {
    let n = runs.len().max(1) as f64;
    Cpu {
        maestra_ms: runs.iter().map(|(_, c)| c.maestra_ms).sum::<f64>() / n,
        oha_ms: runs.iter().map(|(_, c)| c.oha_ms).sum::<f64>() / n,
        mock_ms: runs.iter().map(|(_, c)| c.mock_ms).sum::<f64>() / n,
        cores: runs.iter().map(|(_, c)| c.cores).sum::<f64>() / n,
    }
}

/// Issue 4: the same OpenAI-compatible call with the guardrails off and on. Off: local mode,
/// the model priced at 0 (no ledger). On: cloud mode with an API key, a rate limit per client
/// and per key, and the real price (a reservation and a settlement in the ledger per call),
/// in process and with Redis.
///
/// A p99 over 15 s on this shared machine moves by a few hundred microseconds from one run to
/// the next, more than the difference to measure. So the three instances run side by side
/// and take turns, round after round, and each one's figures are the median over its rounds:
/// a burst of noise lands in one round of one configuration, not in the comparison.
fn guardrails(upstream: SocketAddr) {
    let free = "[pricing.\"gpt-4o-mini\"]\ninput_per_million = 0.0\noutput_per_million = 0.0\n";
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 50,
                      "messages": [{"role": "user", "content": "what is on my calendar today?"}]});
    let prefix = format!("maestra_bench_{}:", std::process::id());
    type Config<'a> = (&'a str, Option<&'a str>, Vec<(&'a str, &'a str)>);
    let configs: [Config<'_>; 4] = [
        ("off", Some(free), vec![]),
        // Splits the cost of the guardrails: the access stages without a ledger.
        (
            "key + rate limit only (priced 0)",
            Some(free),
            vec![
                ("MAESTRA_MODE", "cloud"),
                ("MAESTRA_API_KEY", "bench-key-0123456789"),
            ],
        ),
        (
            "on, in process",
            None,
            vec![
                ("MAESTRA_MODE", "cloud"),
                ("MAESTRA_API_KEY", "bench-key-0123456789"),
            ],
        ),
        (
            "on, Redis",
            None,
            vec![
                ("MAESTRA_MODE", "cloud"),
                ("MAESTRA_API_KEY", "bench-key-0123456789"),
                ("MAESTRA_REDIS_URL", "redis://127.0.0.1:6379"),
                ("MAESTRA_REDIS_PREFIX", prefix.as_str()),
            ],
        ),
    ];
    let rounds = rounds();
    let key = ("x-api-key", "bench-key-0123456789");
    let mut instances = Vec::new();
    for (name, toml, env) in &configs {
        let home = tempfile::tempdir().unwrap();
        let root = home.path().join("m");
        private_dir(&root);
        if let Some(t) = toml {
            private_file(&root.join("maestra.toml"), t);
        }
        let (child, addr) = start_maestra(&root, upstream, env);
        let url = format!("http://{addr}/v1/chat/completions");
        load_with(&url, &body, 200, Some(key));
        instances.push((*name, home, child, url, Vec::new()));
    }
    for _ in 0..rounds {
        for (_, _, child, url, runs) in instances.iter_mut() {
            runs.push(with_cpu(Some(child.id()), || {
                load_with(url, &body, 2000, Some(key))
            }));
        }
    }

    println!();
    println!(
        "guardrails off vs on: POST /v1/chat/completions (gpt-4o-mini via the mock) at 2000/s, \
         {rounds} rounds of {SECONDS} s, configurations taking turns; median over the rounds"
    );
    println!(
        "| guardrails | p50 | p99 | added p50 vs off | added p99 vs off | p99 of each round | ok / errors |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut base: Option<(f64, f64)> = None;
    let mut cpu_rows = Vec::new();
    for (name, _home, mut child, _, runs) in instances {
        let Rounds {
            p50,
            p99,
            each,
            ok,
            errors,
            ..
        } = rounds_of(&runs);
        let (b50, b99) = *base.get_or_insert((p50, p99));
        println!(
            "| {name} | {p50:.3} ms | {p99:.3} ms | {:+.3} ms | {:+.3} ms | {} | {ok} / {errors} |",
            p50 - b50,
            p99 - b99,
            each.join(", ")
        );
        cpu_rows.push((name.to_string(), mean_cpu(&runs)));
        let _ = child.kill();
        let _ = child.wait();
    }
    print_cpu(&cpu_rows);
}

/// One configuration's runs over the rounds: medians, each round's p99, and totals.
struct Rounds {
    p50: f64,
    p99: f64,
    each: Vec<String>,
    ok: u64,
    errors: u64,
    rps: f64,
}

fn rounds_of(runs: &[(Run, Cpu)]) -> Rounds {
    Rounds {
        p50: median(runs.iter().map(|(r, _)| r.p50_ms).collect()),
        p99: median(runs.iter().map(|(r, _)| r.p99_ms).collect()),
        each: runs
            .iter()
            .map(|(r, _)| format!("{:.3}", r.p99_ms))
            .collect(),
        ok: runs.iter().map(|(r, _)| r.ok).sum(),
        errors: runs.iter().map(|(r, _)| r.errors).sum(),
        rps: median(runs.iter().map(|(r, _)| r.rps).collect()),
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// CPU per request served, per process, and how many of the machine's cores were busy.
fn print_cpu(rows: &[(String, Cpu)]) {
    println!();
    println!("CPU per request (user + system) and cores busy over the run:");
    println!("| run | maestra | oha | mock | cores busy |");
    println!("|---|---|---|---|---|");
    for (name, c) in rows {
        println!(
            "| {name} | {:.3} ms | {:.3} ms | {:.3} ms | {:.2} |",
            c.maestra_ms, c.oha_ms, c.mock_ms, c.cores
        );
    }
}
