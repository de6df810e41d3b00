//! One server per home (issue 23, class 2): a second `maestra serve` on a home another one
//! serves is refused before it writes anything, with one line naming the first's PID and port;
//! the lock dies with its server, even by SIGKILL; a command-line write to state the server
//! keeps in memory (the cost ledger `maestra import` adds to) is refused while it runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Home;
use common::server::Server;

/// How long a refused `serve` may take to say so.
const REFUSAL: Duration = Duration::from_secs(20);

/// `maestra serve` on `home`, which must refuse: its one stderr line.
fn refused_serve(home: &Home) -> String {
    let out = home.run_within(&["serve", "--bind", "127.0.0.1:0"], b"", REFUSAL);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the second serve must fail: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one clear line: {err:?}");
    err
}

fn pid(server: &Server) -> u32 {
    server.child.as_ref().unwrap().id()
}

fn audit_count(home: &Home, action: &str) -> usize {
    let log = std::fs::read_to_string(home.root().join("logs/audit.log")).unwrap_or_default();
    let needle = format!("\"action\":\"{action}\"");
    log.lines().filter(|l| l.contains(&needle)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_the_same_home_is_refused_naming_the_first() {
    let home = Home::new();
    let first = Server::start(&home);
    let err = refused_serve(&home);
    assert!(err.contains(&format!("pid {}", pid(&first))), "{err}");
    assert!(err.contains(&first.addr.port().to_string()), "{err}");
    // No half start: the refused one wrote nothing to the audit log.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(audit_count(&home, "serve.start"), 1);
    // The first still answers.
    let client = common::http::pooled();
    let health = client.get(first.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[test]
fn the_lock_dies_with_a_killed_server() {
    let home = Home::new();
    let mut first = Server::start(&home);
    assert!(refused_serve(&home).contains(&format!("pid {}", pid(&first))));
    // SIGKILL: no chance to clean up; the lock must go with the process.
    let mut child = first.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let second = Server::start(&home);
    let err = refused_serve(&home);
    assert!(err.contains(&format!("pid {}", pid(&second))), "{err}");
    assert!(err.contains(&second.addr.port().to_string()), "{err}");
}

#[test]
fn import_is_refused_while_a_server_runs_and_followed_writes_still_work() {
    let home = Home::new();
    let seed = home.dir.path().join("seed");
    std::fs::create_dir_all(seed.join("conversations")).unwrap();
    std::fs::write(
        seed.join("maestra_cost_tracker.json"),
        r#"{"2025-12-28": 4.5}"#,
    )
    .unwrap();
    let seed = seed.to_str().unwrap();
    let mut server = Server::start(&home);
    let err = home.fails(&["import", "--from", seed], b"");
    assert!(err.contains(&format!("pid {}", pid(&server))), "{err}");
    assert!(err.contains("stop"), "{err}");
    // Writes the server follows (the vault by re-reading, keys per request) still work.
    home.ok(&["vault", "put", "hue_token"], b"secret-value");
    home.ok(&["keys", "create", "ops", "--scope", "admin"], b"");
    server.stop();
    let report = home.ok(&["cost", "report", "--days", "3650"], b"");
    assert!(!report.contains("2025-12-28"), "nothing imported: {report}");
    // Stopped: the import runs.
    let out = home.ok(&["import", "--from", seed], b"");
    assert!(out.contains("1 day(s) of cost history"), "{out}");
}
