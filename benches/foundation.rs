//! Foundation benchmark (issue 2): `cargo bench --bench foundation`.
//!
//! Side by side in one run, since this machine is shared and noisy:
//! 1. Fernet encrypt+decrypt of a 64-byte message: Maestra vs Python `cryptography`.
//! 2. Durable audit appends per second, group commit, 256 concurrent writers, each append
//!    acknowledged only once its batch is fsynced.
//! 3. `audit verify` throughput over the log written in 2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use maestra::config::AuditConfig;
use maestra::privsec::audit::{self, AuditLog, Category, ChainKey, Event, Outcome};
use maestra::privsec::keyring::{KeySource, Keyring};
use secrecy::SecretString;

const FERNET_OPS: usize = 200_000;
const WRITERS: usize = 256;
const APPENDS_PER_WRITER: usize = 1_000;

const PY_FERNET: &str = r#"
import sys, time
from cryptography.fernet import Fernet
f = Fernet(sys.argv[1]); n = int(sys.argv[2]); msg = b"x" * 64
t = time.perf_counter()
for _ in range(n):
    f.decrypt(f.encrypt(msg))
print(n / (time.perf_counter() - t))
"#;

fn fernet_rust(key: &str) -> f64 {
    let ring =
        Keyring::parse(&SecretString::from(key.to_string()), KeySource::Environment).unwrap();
    let msg = [b'x'; 64];
    let t = Instant::now();
    for _ in 0..FERNET_OPS {
        let token = ring.encrypt(&msg);
        let plain = ring.decrypt(&token, None).unwrap();
        std::hint::black_box(plain);
    }
    FERNET_OPS as f64 / t.elapsed().as_secs_f64()
}

fn fernet_python(key: &str) -> Option<f64> {
    let python = std::env::var("MAESTRA_BENCH_PYTHON").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".venv/bin/python")
            .display()
            .to_string()
    });
    let out = Command::new(python)
        .args(["-c", PY_FERNET, key, &(FERNET_OPS / 4).to_string()])
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

async fn audit_appends(cfg: &AuditConfig) -> f64 {
    let log = AuditLog::open(cfg, ChainKey::from_bytes(&[9; 32])).unwrap();
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(WRITERS);
    for w in 0..WRITERS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..APPENDS_PER_WRITER {
                let e = Event::new(
                    Category::Llm,
                    "openai",
                    "chat.completions",
                    Outcome::Success,
                )
                .user(format!("user-{w}"))
                .detail("model", "gpt-4o-mini")
                .detail("tokens", 150 + i as u64)
                .detail("latency_ms", 42);
                log.append(e).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let rate = (WRITERS * APPENDS_PER_WRITER) as f64 / t.elapsed().as_secs_f64();
    log.close().await;
    rate
}

fn main() {
    let key = fernet::Fernet::generate_key();
    let rust = fernet_rust(&key);
    let python = fernet_python(&key);
    println!("fernet encrypt+decrypt, 64-byte message");
    println!("  maestra (rust)        {rust:>12.0} ops/s");
    match python {
        Some(py) => {
            println!("  python cryptography   {py:>12.0} ops/s");
            println!("  ratio                 {:>12.2}x", rust / py);
        }
        None => println!(
            "  python cryptography   unavailable (run `bash scripts/test` once to create .venv)"
        ),
    }

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let cfg = AuditConfig {
        path: dir.path().join("audit.log"),
        retention_days: 90,
        fail_closed: true,
        queue_capacity: 16_384,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let appends = rt.block_on(audit_appends(&cfg));
    println!(
        "audit append, durable, group commit, {WRITERS} writers x {APPENDS_PER_WRITER}: {appends:>10.0} entries/s"
    );

    let t = Instant::now();
    let report = audit::verify(&cfg.path, &ChainKey::from_bytes(&[9; 32])).unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(report.problem.is_none(), "{:?}", report.problem);
    println!(
        "audit verify: {} entries in {:.3} s = {:>10.0} entries/s",
        report.entries,
        secs,
        report.entries as f64 / secs
    );
}
