//! `schemathesis` against `/openapi.json` of a real `maestra serve` with a mock upstream and a
//! mock service: generated and mutated requests on every operation, checking that no answer
//! is a 5xx of Maestra's own (an upstream's 502/503/504 passed on is allowed, see
//! `tests/schemathesis/hooks.py`) and that every answer conforms to the document: status,
//! content type, headers and schema.
//!
//! schemathesis lives in the project venv, installed by `scripts/test`. Missing is a failure,
//! never a skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Home;
use common::server::{Server, upstream_env};
use common::{mock, services_mock};

/// Examples per operation: ~20 operations, all answered by mocks on loopback, stay well
/// within CI's time on two cores.
const MAX_EXAMPLES: &str = "30";
/// The whole run's budget, in seconds.
const MAX_SECONDS: u64 = 150;

/// Checks on top of the hook's: everything schemathesis knows, except the ones that assume
/// a resource model the API does not have (`use_after_free`, `ensure_resource_availability`),
/// an auth scheme (local mode has none), or that every schema-valid input is accepted (ids
/// and names have rules beyond what a JSON schema says, refused with a clear 400).
const EXCLUDED_CHECKS: &str = "not_a_server_error,positive_data_acceptance,use_after_free,\
ensure_resource_availability,ignored_auth,object_level_authorization";

fn schemathesis() -> std::path::PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/schemathesis");
    assert!(
        bin.exists(),
        "{} is missing: run `bash scripts/test` (it installs schemathesis into .venv)",
        bin.display()
    );
    bin
}

fn write_toml(home: &Home, toml: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(home.root()).unwrap();
    std::fs::set_permissions(home.root(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = home.root().join("maestra.toml");
    std::fs::write(&file, toml).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_conforms_to_its_openapi_document() {
    let st = schemathesis();
    let (models, _mock) = mock::start().await;
    let (svc, _hue) = services_mock::hue().await;
    // Every route is called from the host's own network: discovery stays off (no multicast).
    let home = upstream_env(Home::new(), models)
        .with("MAESTRA_DISCOVERY", "false")
        .with("MAESTRA_OPENAI_KEY", "sk-proj-CANARYschemathesis0123456789")
        .with(
            "MAESTRA_ANTHROPIC_KEY",
            "sk-ant-CANARYschemathesis0123456789",
        );
    // Every built-in service and one of the user's, all answered by the mock, so a generated
    // service name reaches either a 404 or a real answer.
    let mut toml = String::new();
    for name in ["echo", "hue", "sonos", "home_assistant", "spotify"] {
        toml.push_str(&format!(
            "[services.{name}]\nbase_url = \"http://{svc}\"\ncategory = \"smarthome\"\n\
             kind = \"local\"\nauth = \"none\"\n\n"
        ));
    }
    write_toml(&home, &toml);
    let server = Server::start(&home);
    let report = home.dir.path().join("schemathesis.xml");
    let start = Instant::now();
    let out = tokio::task::spawn_blocking({
        let url = server.url("/openapi.json");
        let report = report.clone();
        let cwd = home.dir.path().to_path_buf();
        move || {
            // Run in the test's temporary directory: schemathesis leaves state in its cwd.
            Command::new(st)
                .current_dir(cwd)
                .arg("run")
                .arg(&url)
                .args(["--checks", "all", "--exclude-checks", EXCLUDED_CHECKS])
                .args(["--max-examples", MAX_EXAMPLES])
                .args(["--max-time", &MAX_SECONDS.to_string()])
                .args(["--workers", "1", "--seed", "14"])
                .args(["--generation-database", "none"])
                .args(["--request-timeout", "10"])
                .args(["--report", "junit", "--report-junit-path"])
                .arg(&report)
                .arg("--no-color")
                .env(
                    "SCHEMATHESIS_HOOKS",
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/hooks.py"),
                )
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found failures (exit {:?}) in {:?}:\n{stdout}\n{stderr}\nserver:\n{}",
        out.status.code(),
        start.elapsed(),
        server.output()
    );
    assert!(
        stdout.contains("passed") && !stdout.contains("No operations"),
        "schemathesis ran nothing:\n{stdout}"
    );
    assert!(start.elapsed() < Duration::from_secs(MAX_SECONDS + 60));
    // Discovery stayed off through every generated request: no run happened (each would be a
    // `network` audit entry).
    let audit = std::fs::read_to_string(home.root().join("logs/audit.log")).unwrap();
    assert!(
        !audit.contains("\"category\":\"network\""),
        "a discovery ran"
    );
}
