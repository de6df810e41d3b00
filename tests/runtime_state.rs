//! One source of truth for runtime state (issue 25): local-only mode switched on in the
//! privacy center is what `maestra doctor` and `maestra guard status` report too, each naming
//! why, and nobody calls it a lockdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Home;
use common::server::Server;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_switch_is_what_doctor_and_guard_status_report() {
    let home = Home::new();
    home.ok(&["init"], b"");
    let mut server = Server::start(&home);
    let before = home.ok(&["guard", "status"], b"");
    assert!(before.contains("local-only mode: off"), "{before}");

    let r = common::http::client()
        .post(server.url("/api/controls/local-only"))
        .json(&json!({"on": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());

    let guard = home.ok(&["guard", "status"], b"");
    assert!(
        guard.contains("local-only mode: on (switched on in the privacy center)"),
        "{guard}"
    );
    let doctor = String::from_utf8_lossy(&home.run(&["doctor"], b"").stdout).to_string();
    assert!(
        doctor.contains("[pass] local: local-only mode is on (switched on in the privacy center)"),
        "{doctor}"
    );
    assert!(
        !guard.contains("lockdown") && !doctor.contains("lockdown"),
        "{guard}\n{doctor}"
    );
    let log = server.stop();
    assert!(!log.contains("changed by lockdown"), "{log}");
}
