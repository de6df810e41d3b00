//! `maestra services discover` (SPEC §2.7, issue 28) against devices no one here wrote: the
//! Python `zeroconf` package registering a Hue bridge, a Sonos player and Home Assistant over
//! mDNS, and a UPnP responder answering SSDP searches with a device description served over
//! HTTP (`tests/discover/responder.py`), in a network namespace of the test's own. Maestra runs
//! in a second namespace joined to it by a veth pair and nothing else, so no multicast reaches
//! a real network; a packet counter on the devices' end (`tests/discover/capture.py`) shows
//! that Maestra sent nothing but the multicast groups and the address that answered.
//!
//! Bad input comes from the responder too: a device answering from a public address (listed,
//! never written, never contacted), a name with a terminal escape, markup and a bidirectional
//! override, malformed mDNS answers, markup in a UPnP friendly name, and (in its own test) 10,000
//! SSDP answers. With `discovery = false` the command refuses and sends nothing. The server's
//! side (the job, the Devices list, the page) is `tests/discover_server.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "discover/link.rs"]
mod link;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

use common::Home;
use link::{Link, PUBLIC};
use serde_json::Value;

/// How long each run listens: zeroconf answers queries within a second, the SSDP responder at
/// once.
const LISTEN: &str = "4s";

/// A hang guard only: a discover run ends after its window and the descriptions' fetches.
const RUN_WITHIN: Duration = Duration::from_secs(60);

/// The Home Assistant token the responder's API accepts.
const HA_TOKEN: &str = "ha-long-lived-token-7d1e";

/// Run in A: asks the services proxy of the `maestra serve` in A for Home Assistant's
/// `/api/`, waiting (a hang guard) for the server to listen; prints the status and the body.
const PROXY_CLIENT: &str = r#"
import time, urllib.error, urllib.request
deadline = time.time() + 60
while True:
    try:
        r = urllib.request.urlopen("http://127.0.0.1:8825/api/services/home_assistant/api/", timeout=10)
        print(r.status, r.read().decode())
        break
    except urllib.error.HTTPError as e:
        print(e.code, e.read().decode())
        break
    except OSError:
        if time.time() > deadline:
            raise
        time.sleep(0.2)
"#;

fn run(cmd: &mut std::process::Command) -> Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    // Read while it runs: a report of a thousand devices is more than a pipe holds.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let Ok(out) = rx.recv_timeout(RUN_WITHIN) else {
        let _ = std::process::Command::new("kill").arg(&pid).status();
        panic!("maestra did not exit within {RUN_WITHIN:?}");
    };
    let out = out.unwrap();
    assert!(
        out.status.success(),
        "maestra failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn discover_json(link: &Link, home: &Home) -> Value {
    let out = run(&mut link.maestra_in_a(
        home,
        &["services", "discover", "--json", "--timeout", LISTEN],
    ));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn home() -> Home {
    Home::new().with_toml("# the person's own settings\nlocal_only = true\n")
}

/// The devices of kind `kind` at `addr`.
fn at<'a>(devices: &'a [Value], kind: &str, addr: &str) -> Vec<&'a Value> {
    devices
        .iter()
        .filter(|d| d["kind"] == kind && d["address"] == addr)
        .collect()
}

#[test]
fn finds_the_devices_by_kind_and_address_and_sends_nothing_off_the_link() {
    let mut link = Link::new();
    let packets = link.start_capture();
    link.start_responder(&[]);
    let home = home();
    let file = home.root().join("maestra.toml");
    let before = std::fs::read_to_string(&file).unwrap();
    let report = discover_json(&link, &home);
    let devices = report["devices"].as_array().unwrap();
    let b = link.addr_b.to_string();
    // Without --write, nothing is written.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);

    let hue = at(devices, "hue", &b);
    assert_eq!(hue.len(), 1, "{report:#}");
    assert_eq!(hue[0]["name"], "Hue Bridge - 2A3B4C");
    assert_eq!(hue[0]["found_by"], serde_json::json!(["mdns"]));
    assert_eq!(hue[0]["writable"], true);
    assert_eq!(hue[0]["offer"]["base_url"], format!("http://{b}"));
    let ha = at(devices, "home_assistant", &b);
    assert_eq!(
        (ha.len(), &ha[0]["port"]),
        (1, &Value::from(8123)),
        "{report:#}"
    );
    assert_eq!(ha[0]["offer"]["base_url"], format!("http://{b}:8123"));

    // The Sonos player, over mDNS and over SSDP, named from its UPnP description (whose
    // friendly name carries markup), and the hostile announcement.
    let sonos = at(devices, "sonos", &b);
    let by_port = |p: u64| sonos.iter().find(|d| d["port"] == p).copied();
    let upnp = by_port(1400).expect("the SSDP answer");
    assert_eq!(upnp["found_by"], serde_json::json!(["ssdp"]));
    assert_eq!(upnp["name"], "Kitchen scriptalert(1)/script Sonos");
    assert_eq!(upnp["offer"]["base_url"], format!("http://{b}:1400"));
    assert_eq!(by_port(1443).expect("the mDNS answer")["name"], "Sonos-Den");
    let hostile = by_port(1500).expect("the hostile announcement")["name"]
        .as_str()
        .unwrap();
    assert!(
        hostile.starts_with("Living") && hostile.ends_with("evil"),
        "{hostile:?}"
    );
    assert!(
        !hostile
            .chars()
            .any(|c| c.is_control() || "<>\u{202e}".contains(c)),
        "{hostile:?}"
    );

    // The device answering from a public address: listed by both ways, never offered.
    let far = at(devices, "hue", PUBLIC);
    let ways: BTreeSet<&str> = far
        .iter()
        .map(|d| d["found_by"][0].as_str().unwrap())
        .collect();
    assert_eq!(ways, BTreeSet::from(["mdns", "ssdp"]), "{report:#}");
    for d in &far {
        assert_eq!(
            (&d["local"], &d["writable"]),
            (&Value::Bool(false), &Value::Bool(false))
        );
        assert!(
            d["not_writable"]
                .as_str()
                .unwrap()
                .contains("public address")
        );
    }

    link::assert_searched(&packets, &b);

    // One audit entry: counts and kinds, no name and no address.
    let out = home.ok(&["audit", "query", "--category", "network", "--json"], b"");
    let entries: Vec<Value> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let entries: Vec<&Value> = entries
        .iter()
        .flat_map(|e| e.as_array().map_or(vec![e], |a| a.iter().collect()))
        .collect();
    assert_eq!(entries.len(), 1, "{out}");
    let details = &entries[0]["details"];
    assert_eq!(details["found"], devices.len());
    assert_eq!(details["kinds"]["hue"], 3);
    assert_eq!(details["not_local"], 2);
    for secret in ["Hue Bridge", "Kitchen", "Living", &b, PUBLIC] {
        assert!(!out.contains(secret), "{secret} in the audit entry: {out}");
    }
}

#[test]
fn write_adds_the_found_services_and_the_proxy_and_its_tools_reach_them() {
    let mut link = Link::new();
    link.start_responder(&["--ha-token", HA_TOKEN]);
    let b = link.addr_b.to_string();
    // A Sonos player configured where nothing answers now (DHCP moved it): offered, not
    // rewritten.
    let old_sonos = format!("http://{}:1400", link.addr_a);
    let toml = format!(
        "# the person's own settings\nlocal_only = true # keep\n\n[services.sonos]\n# the old \
         player\nbase_url = \"{old_sonos}\"\n"
    );
    let home = Home::new().with_toml(&toml);
    let out = run(&mut link.maestra_in_a(
        &home,
        &["services", "discover", "--write", "--timeout", LISTEN],
    ));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("added to"), "{text}");
    assert!(text.contains("[services.hue]") && text.contains("[services.home_assistant]"));
    assert!(text.contains("maestra vault put home_assistant"), "{text}");
    assert!(text.contains("link button"), "{text}");
    assert!(
        text.contains(&format!("[services.sonos] has base_url {old_sonos}"))
            && text.contains("never rewritten"),
        "{text}"
    );

    let file = home.root().join("maestra.toml");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.starts_with("# the person's own settings\nlocal_only = true # keep\n"));
    assert!(written.contains("# the old player\n"), "{written}");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let parsed: toml::Table = toml::from_str(&written).unwrap();
    let services = parsed["services"].as_table().unwrap();
    assert_eq!(
        services["sonos"]["base_url"].as_str(),
        Some(old_sonos.as_str())
    );
    assert_eq!(
        services["hue"]["base_url"].as_str(),
        Some(format!("http://{b}").as_str())
    );
    let ha_url = format!("http://{b}:8123");
    assert_eq!(
        services["home_assistant"]["base_url"].as_str(),
        Some(ha_url.as_str())
    );
    assert!(!written.contains(PUBLIC), "{written}");
    // Maestra reads the file it wrote.
    assert!(
        home.ok(&["guard", "status"], b"")
            .contains("local-only mode: on")
    );

    // A second run adds nothing and changes nothing.
    let again = run(&mut link.maestra_in_a(
        &home,
        &["services", "discover", "--write", "--timeout", LISTEN],
    ));
    let again = String::from_utf8(again.stdout).unwrap();
    assert!(again.contains("nothing written"), "{again}");
    assert!(again.contains("yes (home_assistant)"), "{again}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);

    // The services proxy, in local-only mode, reaches Home Assistant at the written address
    // with the vault's token (the responder answers 401 to anything else).
    home.ok(&["vault", "put", "home_assistant"], HA_TOKEN.as_bytes());
    let mut serve = link
        .maestra_in_a(&home, &["serve", "--bind", "127.0.0.1:8825"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &link.ns_a])
        .arg(common::python())
        .args(["-c", PROXY_CLIENT])
        .output()
        .unwrap();
    // And so does its tool, called by the official MCP SDK over /mcp (the server listens by
    // now: the proxy's client waited for it).
    let tool = common::mcp::sdk_in(
        &["ip", "netns", "exec", &link.ns_a],
        &["--http", "http://127.0.0.1:8825/mcp"],
        serde_json::json!([{"op": "call", "name": "home_assistant__service_request",
            "arguments": {"method": "GET", "path": "api/"}}]),
    );
    let _ = serve.kill();
    let _ = serve.wait();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.starts_with("200 ") && answer.contains("API running."),
        "{answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = &tool["results"][0];
    assert_eq!(result["is_error"], false, "{tool}");
    assert!(result.to_string().contains("API running."), "{tool}");
    assert!(!tool.to_string().contains(HA_TOKEN), "{tool}");
}

#[test]
fn ten_thousand_answers_keep_at_most_a_thousand_devices() {
    let mut link = Link::new();
    link.start_responder(&["--flood", "10000"]);
    let report = discover_json(&link, &home());
    let devices = report["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1000, "dropped {}", report["dropped"]);
    assert!(
        report["dropped"].as_u64().unwrap() > 0,
        "{}",
        report["dropped"]
    );
}

/// With `discovery = false` the command refuses with one line saying how to turn it on, sends
/// nothing (the packet counter sees no datagram) and audits no run. Run in the namespace all the
/// same: were the refusal broken, the search would reach only the test's own link.
#[test]
fn turned_off_it_refuses_and_sends_nothing() {
    let mut link = Link::new();
    let packets = link.start_capture();
    link.start_responder(&[]);
    let home = Home::new().with_toml("discovery = false\n");
    let out = link
        .maestra_in_a(&home, &["services", "discover", "--timeout", "1s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("turned off") && err.contains("MAESTRA_DISCOVERY=true"),
        "{err}"
    );
    assert!(link::sent_by_a(&packets, "none").is_empty());
    let audit = home.ok(&["audit", "query", "--category", "network", "--json"], b"");
    assert!(!audit.contains("discover"), "{audit}");
}
