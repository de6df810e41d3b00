//! Issue 23, class 6: every outbound byte passes the guard, backups to S3 included. With
//! local-only on (by configuration or by a lockdown) `backup create --to s3://` and `verify
//! --from s3://` to a non-local endpoint are refused as `maestra guard check` refuses the same
//! URL, before any connection, and the refusal is audited. The commands run in a network
//! namespace of their own where the system allows it (`unshare -rn`: nothing could leave even
//! if the guard failed); the endpoint is a documentation address (TEST-NET-3), never a real one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::Home;

const ENDPOINT: &str = "http://203.0.113.7:9000";

fn home() -> Home {
    Home::new()
        .with("MAESTRA_BACKUP_PASSPHRASE", "correct horse battery staple")
        .with("AWS_ENDPOINT", ENDPOINT)
        .with("AWS_ALLOW_HTTP", "true")
        .with("AWS_REGION", "us-east-1")
        .with("AWS_ACCESS_KEY_ID", "testing")
        .with("AWS_SECRET_ACCESS_KEY", "testing")
}

/// Whether this system lets an unprivileged process make its own network namespace.
fn netns() -> bool {
    Command::new("unshare")
        .args(["-rn", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `maestra ARGS` in `h`'s clean environment, inside a fresh network namespace if possible.
fn run_isolated(h: &Home, args: &[&str]) -> Output {
    let bin = env!("CARGO_BIN_EXE_maestra");
    let mut cmd = if netns() {
        let mut c = Command::new("unshare");
        c.args(["-rn", bin]);
        c
    } else {
        Command::new(bin)
    };
    let mut child = cmd
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", h.dir.path())
        .envs(h.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(h.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"").unwrap();
    child.wait_with_output().unwrap()
}

/// The guard's verdict on the endpoint, the backup refused with the same reason, and the
/// refusal in the audit log.
fn assert_refused_like_guard_check(h: &Home) {
    let check = h.run(&["guard", "check", ENDPOINT], b"");
    assert_eq!(check.status.code(), Some(3), "guard check must say blocked");

    for args in [
        &["backup", "create", "--to", "s3://maestra-backups/p"][..],
        &["backup", "verify", "--from", "s3://maestra-backups/p"][..],
    ] {
        let out = run_isolated(h, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains("local-only"), "{args:?}: {err}");
    }
    let log = h.ok(
        &["audit", "query", "--category", "local_only_block", "--json"],
        b"",
    );
    let blocked: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .flat_map(|v: serde_json::Value| match v {
            serde_json::Value::Array(a) => a,
            one => vec![one],
        })
        .filter(|e| e["service"] == "s3" && e["result"] == "blocked")
        .collect();
    assert_eq!(blocked.len(), 2, "{log}");
    for e in &blocked {
        assert_eq!(e["details"]["bytes_sent"], 0, "{e}");
        assert_eq!(e["details"]["host"], "203.0.113.7", "{e}");
    }
}

#[test]
fn s3_in_local_only_mode_is_refused_before_any_connection_and_audited() {
    let h = home().with("MAESTRA_LOCAL_ONLY", "true");
    h.ok(&["init"], b"");
    assert_refused_like_guard_check(&h);
}

#[test]
fn s3_under_lockdown_is_refused_before_any_connection_and_audited() {
    let h = home();
    h.ok(&["init"], b"");
    h.ok(&["lockdown"], b"");
    assert_refused_like_guard_check(&h);
}
