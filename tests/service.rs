//! `maestra service` (issue 15): the unit it writes passes `systemd-analyze verify` with no
//! warning, is hardened (`systemd-analyze security` exposure), carries no secret, and the
//! command it runs — taken from the file, with only the file's environment — starts the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Home;

const CANARY: &str = "sk-proj-CANARYservice0123456789";

fn home() -> (Home, std::path::PathBuf) {
    let home = Home::new();
    let xdg = home.dir.path().join("xdg");
    let home = home
        .with("XDG_CONFIG_HOME", xdg.to_str().unwrap())
        .with("MAESTRA_OPENAI_KEY", CANARY);
    (home, xdg.join("systemd/user/maestra.service"))
}

/// The words of a unit's `ExecStart=` line: double-quoted words or bare ones, `%%` as `%`.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap();
            out.push(quoted[..end].replace("%%", "%"));
            rest = quoted[end + 1..].trim_start();
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    out
}

#[test]
fn the_unit_verifies_is_hardened_and_starts_the_server() {
    let (home, unit) = home();
    home.ok(&["init"], b"");
    let out = home.run(&["service", "install", "--user"], b"");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("MAESTRA_OPENAI_KEY") && !stderr.contains(CANARY),
        "the shell-only setting is named, never its value: {stderr}"
    );
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(!text.contains(CANARY), "{text}");
    assert!(text.contains("NoNewPrivileges=yes") && text.contains("ProtectSystem=strict"));

    let verify = Command::new("systemd-analyze")
        .args(["verify", unit.to_str().unwrap()])
        .output()
        .expect("systemd-analyze (Debian's systemd package) is needed by this test");
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{said}");
    assert!(
        !said.contains("Unknown") && !said.contains("ignoring"),
        "{said}"
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", unit.to_str().unwrap()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = report
        .split("Overall exposure level for maestra.service: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{report}"));
    assert!(exposure <= 3.0, "exposure {exposure}: {report}");

    let ok = home.ok(&["service", "status", "--user"], b"");
    assert!(ok.contains("matches this configuration"), "{ok}");
    // Without --user, status finds the per-user unit too, and says which it is.
    let ok = home.ok(&["service", "status"], b"");
    assert!(
        ok.contains("installed: the per-user service")
            && ok.contains("matches this configuration")
            && ok.contains("no server runs on this home now"),
        "{ok}"
    );
    // Installed is not running: nothing holds the home.
    let doctor = String::from_utf8_lossy(&home.run(&["doctor"], b"").stdout).to_string();
    assert!(
        doctor.contains("[pass] service: per-user service ")
            && doctor.contains("installed, not running"),
        "{doctor}"
    );

    // Run exactly what the unit runs, with only what the unit sets.
    std::fs::write(home.root().join("maestra.toml"), "bind = \"127.0.0.1:0\"\n").unwrap();
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let argv = words(exec);
    let env = text
        .lines()
        .find_map(|l| l.strip_prefix("Environment="))
        .map(|e| words(e).remove(0))
        .unwrap();
    let (name, value) = env.split_once('=').unwrap();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .env(name, value)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("maestra listening on http://") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30));
    let health = addr.as_ref().ok().map(|addr| {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        use std::io::{Read, Write};
        write!(
            stream,
            "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    });
    // While it runs, doctor and status say so (the home's lock is held), naming the process.
    let doctor = String::from_utf8_lossy(&home.run(&["doctor"], b"").stdout).to_string();
    let status = home.ok(&["service", "status"], b"");
    let _ = child.kill();
    let _ = child.wait();
    let health = health.expect("the unit's command did not start the server");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let pid = format!("pid {}", child.id());
    assert!(
        doctor.contains("a server runs on this home: `maestra serve`") && doctor.contains(&pid),
        "{doctor}"
    );
    assert!(
        status.contains("this home is served by `maestra serve`") && status.contains(&pid),
        "{status}"
    );

    // An edited unit is no longer what this configuration would write.
    std::fs::write(&unit, text.replace("NoNewPrivileges=yes\n", "")).unwrap();
    for args in [&["service", "status", "--user"][..], &["service", "status"]] {
        let stale = home.run(args, b"");
        assert!(!stale.status.success());
        let said = String::from_utf8_lossy(&stale.stderr);
        assert!(
            said.contains("differs") && said.contains("run `maestra service install --user` again"),
            "{said}"
        );
    }
    let doctor = String::from_utf8_lossy(&home.run(&["doctor"], b"").stdout).to_string();
    assert!(
        doctor.contains("[FAIL] service: ")
            && doctor.contains("fix: run `maestra service install --user` again"),
        "{doctor}"
    );
    // Uninstall without --user finds the per-user unit and says which it removed.
    let removed = home.ok(&["service", "uninstall"], b"");
    assert!(
        removed.contains("removed the per-user service"),
        "{removed}"
    );
    assert!(!unit.exists());
    let gone = home.run(&["service", "status", "--user"], b"");
    assert!(!gone.status.success());
    let gone = home.run(&["service", "status"], b"");
    assert!(!gone.status.success());
    let said = String::from_utf8_lossy(&gone.stderr);
    assert!(
        said.contains("`maestra service install` (system)")
            && said.contains("`maestra service install --user` (per-user)"),
        "{said}"
    );
}
