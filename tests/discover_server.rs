//! The server's device discovery (SPEC §2.7, issue 28): `POST /api/services/discover` as a
//! job, `GET /api/devices`, and the privacy center's Devices section in headless Chromium,
//! against the devices of `tests/discover/responder.py` (the Python `zeroconf` package and a
//! UPnP responder) in a network namespace of the test's own. `maestra serve`, its clients and
//! the browser all run in a second namespace joined to it by a veth pair and nothing else
//! (`tests/discover/link.rs`), so no multicast reaches a real network; a packet counter on the
//! devices' end shows the server sent nothing but the multicast groups and the address that
//! answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "discover/link.rs"]
mod link;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use common::Home;
use link::{Link, PUBLIC};
use serde_json::{Value, json};

/// The Home Assistant token the responder's API accepts.
const HA_TOKEN: &str = "ha-long-lived-token-51c0";

/// The printer's name as the responder announces it (HTML-escaped markup, `responder.py`).
const MARKUP_NAME: &str = r#"Office &lt;img src=x&gt; &amp; "Den""#;

/// A hang guard only: the client's and the browser's own waits have deadlines.
const SCRIPT_WITHIN: Duration = Duration::from_secs(300);

/// `maestra serve` in A, killed when dropped (whatever the test's outcome).
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A home in local-only mode whose Home Assistant is the responder's, its token in the vault,
/// served in A on A's loopback.
fn serve(link: &Link) -> (Home, Serving) {
    let b = link.addr_b;
    let home = Home::new().with_toml(&format!(
        "# the person's own settings\nlocal_only = true\n\n[services.home_assistant]\n\
         base_url = \"http://{b}:8123\"\n"
    ));
    home.ok(&["vault", "put", "home_assistant"], HA_TOKEN.as_bytes());
    let log = std::fs::File::create(link.dir.path().join("serve.log")).unwrap();
    let child = link
        .maestra_in_a(&home, &["serve", "--bind", "127.0.0.1:8825"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    (home, Serving(child))
}

/// `[status, body]` of one of the client's answers.
fn answer(v: &Value) -> (u64, &Value) {
    (v[0].as_u64().unwrap(), &v[1])
}

/// The (kind, address, port) of each device of a list.
fn keys(devices: &Value) -> BTreeSet<(String, String, u64)> {
    devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_string(),
                d["address"].as_str().unwrap().to_string(),
                d["port"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn find<'a>(devices: &'a Value, kind: &str, addr: &str, port: u64) -> &'a Value {
    devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == kind && d["address"] == addr && d["port"] == port)
        .unwrap_or_else(|| panic!("no {kind} at {addr}:{port} in {devices:#}"))
}

/// The `network` audit entries.
fn network_entries(home: &Home) -> Vec<Value> {
    let out = home.ok(&["audit", "query", "--category", "network", "--json"], b"");
    let lines: Vec<Value> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines
        .into_iter()
        .flat_map(|e| match e {
            Value::Array(a) => a,
            one => vec![one],
        })
        .collect()
}

#[test]
fn the_server_finds_the_devices_as_a_job_and_lists_them() {
    let mut link = Link::new();
    let packets = link.start_capture();
    link.start_responder(&["--ha-token", HA_TOKEN]);
    let b = link.addr_b.to_string();
    let (home, serving) = serve(&link);
    let file = home.root().join("maestra.toml");
    let toml_before = std::fs::read_to_string(&file).unwrap();

    let out = link.python_in_a(
        &link::script("api_client.py"),
        &["http://127.0.0.1:8825"],
        SCRIPT_WITHIN,
    );
    drop(serving);
    let serve_log = std::fs::read_to_string(link.dir.path().join("serve.log")).unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\nserver:\n{serve_log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();

    // Before any run: discovery is on, nothing found yet, the configured service listed.
    let (status, before) = answer(&r["before"]);
    assert_eq!(status, 200, "{before}");
    assert_eq!(
        (
            &before["discovery"],
            &before["last_run"],
            &before["devices"]
        ),
        (&json!(true), &Value::Null, &json!([]))
    );

    // Bad input: SPEC §4 errors, and no run started by them.
    for bad in r["bad"].as_array().unwrap() {
        let (status, body) = answer(bad);
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
    }
    assert!(
        answer(&r["bad"][0]).1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("between 1000 and 120000"),
        "{}",
        r["bad"][0]
    );
    assert_eq!(answer(&r["bad_type"]).0, 415, "{}", r["bad_type"]);

    // The job: started, joined by a second start while it runs (one at a time), done.
    let (status, start) = answer(&r["start"]);
    assert_eq!(status, 200, "{start}");
    assert_eq!(start["kind"], "service_discover");
    let (_, again) = answer(&r["again"]);
    let jobs = r["jobs"].as_array().unwrap();
    if again["id"] != start["id"] {
        // Only if the first had already ended by then (a very slow machine).
        assert!(
            jobs[0]["finished_at"].as_str().unwrap() <= again["started_at"].as_str().unwrap(),
            "two runs at once: {start} {again}"
        );
    }
    let job = &jobs[0];
    assert_eq!(job["state"], "done", "{job:#}");
    let result = &job["result"];
    let devices = &result["devices"];

    // What it found, as `discover --json` reports it.
    let ha = find(devices, "home_assistant", &b, 8123);
    assert_eq!(ha["configured"], "home_assistant", "{ha}");
    assert_eq!(ha["offer"]["offer"], "configured");
    // (The responder is one host: every device at its address counts as the service
    // configured there, as `discover` reports it.)
    let hue = find(devices, "hue", &b, 443);
    assert_eq!(
        (&hue["name"], &hue["found_by"], &hue["configured"]),
        (
            &json!("Hue Bridge - 2A3B4C"),
            &json!(["mdns"]),
            &json!("home_assistant")
        )
    );
    let sonos = find(devices, "sonos", &b, 1400);
    assert_eq!(sonos["found_by"], json!(["ssdp"]));
    assert_eq!(sonos["name"], "Kitchen scriptalert(1)/script Sonos");
    assert_eq!(find(devices, "printer", &b, 631)["name"], MARKUP_NAME);
    let far = find(devices, "hue", PUBLIC, 443);
    assert_eq!(
        (&far["local"], &far["writable"]),
        (&json!(false), &json!(false))
    );
    assert!(
        far["not_writable"]
            .as_str()
            .unwrap()
            .contains("public address"),
        "{far}"
    );
    // It never writes maestra.toml, and says so.
    assert_eq!(result["written"], json!([]));
    assert!(
        result["note"]
            .as_str()
            .unwrap()
            .contains("maestra services discover --write"),
        "{result}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), toml_before);

    // The Devices list: what the runs found, when, and the calls to the configured service.
    let (status, proxied) = answer(&r["proxied"]);
    assert_eq!(status, 200, "{proxied}");
    let (status, after) = answer(&r["after"]);
    assert_eq!(status, 200, "{after}");
    assert_eq!(keys(&after["devices"]), keys(devices));
    let last_run = after["last_run"].as_str().unwrap();
    for d in after["devices"].as_array().unwrap() {
        assert_eq!(d["last_seen"], last_run, "{d}");
        assert_eq!(d["in_last_run"], true, "{d}");
        assert!(d["first_seen"].as_str().unwrap() <= last_run, "{d}");
    }
    let services = after["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "{after}");
    assert_eq!(
        (
            &services[0]["service"],
            &services[0]["address"],
            &services[0]["calls"],
            &services[0]["errors"]
        ),
        (
            &json!("home_assistant"),
            &json!(format!("http://{b}:8123")),
            &json!(1),
            &json!(0)
        ),
        "{after}"
    );
    assert!(services[0]["last_call"].is_string(), "{after}");

    // Each run is one audit entry, as the command's: counts and kinds, no name or address.
    let entries = network_entries(&home);
    assert_eq!(entries.len(), jobs.len(), "{entries:?}");
    let details = &entries[0]["details"];
    assert_eq!(details["found"], devices.as_array().unwrap().len());
    assert_eq!(details["kinds"]["hue"], 3);
    let configured = devices
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["configured"].is_string())
        .count();
    assert_eq!(details["configured"], configured);
    assert_eq!(details["written"], json!([]));
    let text = serde_json::to_string(&entries).unwrap();
    for secret in ["Hue Bridge", "Kitchen", "Office", &b, PUBLIC] {
        assert!(
            !text.contains(secret),
            "{secret} in the audit entry: {text}"
        );
    }

    // Only the multicast groups and the address that answered were sent to.
    link::assert_searched(&packets, &b);
}

/// The Devices section in headless Chromium, run in A with the server: Find devices starts a
/// run, the devices appear with the API's names as text (the printer's markup included), and
/// the configured service's calls are the API's.
#[test]
fn the_devices_section_finds_and_lists_the_devices_in_a_real_browser() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run `bash scripts/test`"
        );
    }
    let mut link = Link::new();
    link.start_responder(&["--ha-token", HA_TOKEN]);
    let b = link.addr_b.to_string();
    let (_home, serving) = serve(&link);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/privacy-center");
    std::fs::create_dir_all(&shots).unwrap();
    let expected = json!([
        ["hue", format!("{b}:443")],
        ["home_assistant", format!("{b}:8123")],
        ["sonos", format!("{b}:1400")],
        ["printer", format!("{b}:631")],
        ["hue", format!("{PUBLIC}:443")],
    ]);
    let out = link.python_in_a(
        &link::script("devices.py"),
        &[
            "http://127.0.0.1:8825",
            shots.to_str().unwrap(),
            &expected.to_string(),
            MARKUP_NAME,
        ],
        SCRIPT_WITHIN,
    );
    drop(serving);
    let serve_log = std::fs::read_to_string(link.dir.path().join("serve.log")).unwrap();
    assert!(
        out.status.success(),
        "the browser checks failed:\n{}\n{}\nserver:\n{serve_log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["markup_name"], MARKUP_NAME, "{summary}");
    assert!(summary["rows"].as_u64().unwrap() >= 5, "{summary}");
    assert!(shots.join("devices.png").exists());
}
