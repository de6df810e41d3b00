//! Backup and restore throughput for a large embedded database (BENCHMARKS.md). Ignored by
//! default: it writes a 1 GiB database and three times that on disk. Run it on a release build:
//!
//! ```text
//! cargo test --release --test backup_bench -- --ignored --nocapture
//! ```
//!
//! `BACKUP_BENCH_MB` sets the database size (default 1024 MiB).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use common::Home;

const PASS: &str = "correct horse battery staple";

/// Fills the database with `mb` MiB of incompressible rows (xorshift bytes).
fn grow(h: &Home, mb: usize) {
    let db = h.root().join("maestra.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display()))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE filler (b BLOB)")
            .execute(&mut c)
            .await
            .unwrap();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..mb {
            let mut blob = Vec::with_capacity(1 << 20);
            for _ in 0..(1 << 17) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                blob.extend_from_slice(&x.to_le_bytes());
            }
            sqlx::query("INSERT INTO filler (b) VALUES (?1)")
                .bind(blob)
                .execute(&mut c)
                .await
                .unwrap();
        }
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut c)
            .await
            .unwrap();
    });
}

fn timed(h: &Home, args: &[&str]) -> f64 {
    let start = Instant::now();
    h.ok(args, b"");
    start.elapsed().as_secs_f64()
}

#[test]
#[ignore = "writes gigabytes; run on a release build for BENCHMARKS.md"]
fn backup_and_restore_throughput() {
    let mb: usize = std::env::var("BACKUP_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let h = Home::new().with("MAESTRA_BACKUP_PASSPHRASE", PASS);
    h.ok(&["init"], b"");
    grow(&h, mb);
    let size = std::fs::metadata(h.root().join("maestra.db"))
        .unwrap()
        .len() as f64
        / 1e6;
    let dest = h.dir.path().join("backup");
    let d = dest.to_str().unwrap();
    let create = timed(&h, &["backup", "create", "--to", d]);
    let verify = timed(&h, &["backup", "verify", "--from", d]);
    let t = Home::new().with("MAESTRA_BACKUP_PASSPHRASE", PASS);
    let keys = h.root();
    let restore = timed(
        &t,
        &[
            "backup",
            "restore",
            "--from",
            d,
            "--keys-from",
            keys.to_str().unwrap(),
        ],
    );
    println!(
        "database {size:.0} MB ({} build): create {create:.1} s = {:.0} MB/s, verify {verify:.1} s = {:.0} MB/s, restore {restore:.1} s = {:.0} MB/s",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        size / create,
        size / verify,
        size / restore
    );
}
