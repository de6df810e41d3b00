//! Local-only mode's network sandbox for local tool programs (issue 27 item 3, SPEC §2.11),
//! driven through Maestra's `/mcp` by the official Python SDK (`tests/mcp/client.py`):
//!
//! - the reference `mcp-server-fetch` from PyPI, declared `kind = "local"`, fetches a page
//!   from a test host in a network namespace of the test's own (through the sandbox's proxy,
//!   the destination audited), and is blocked, and audited, on `api.openai.com`;
//! - a program that ignores the proxy (`tests/mcp/connect_server.py`, a raw connect()) reaches
//!   the test host unsandboxed, and nothing once local-only mode puts it in its sandbox, where
//!   a CONNECT tunnel through the proxy still reaches it;
//! - where the kernel refuses user namespaces, local-only mode refuses the program, saying why
//!   and what to change.
//!
//! Nothing is sent off the machine: the test host is a veth peer in the test's own namespace,
//! and `api.openai.com` is answered from a hosts file bind-mounted for Maestra alone (a mount
//! namespace of its own), with a documentation address the guard refuses before dialling.
//! Needs root (or the capabilities to make network namespaces and mounts), as CI has.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Home;
use common::http;
use common::mcp::{audit, text};
use common::server::Server;
use serde_json::{Value, json};

/// The port the test host serves its page on, inside its own namespace.
const HOST_PORT: u16 = 8080;
/// What the test host's page says, found in the fetched text.
const MARKER: &str = "maestra-sandbox-marker-5f2c";
/// The address `api.openai.com` gets in Maestra's hosts file: a documentation address
/// (RFC 5737), public by the guard's rules, reachable by no one.
const CLOUD_ADDRESS: &str = "203.0.113.7";
/// A hang guard only: how long the test host may take to answer its first connection.
const HOST_START: Duration = Duration::from_secs(30);

/// A web server in a network namespace of the test's own, behind a veth pair with a /30 of
/// 10.203.0.0/16: the "device on the local network" a local tool reaches. Removed on drop,
/// whatever the test's outcome.
struct TestHost {
    ns: String,
    veth: String,
    addr: Ipv4Addr,
    server: Option<Child>,
    dir: tempfile::TempDir,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestHost {
    fn start() -> TestHost {
        let id = format!("{:06x}", rand_u32() & 0xff_ffff);
        // A /30 of its own, so tests running at once do not share an address.
        let block = rand_u32() % 16384;
        let base = u32::from(Ipv4Addr::new(10, 203, 0, 0)) + block * 4;
        let (outside, inside) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("index.html"),
            format!("<html><body><h1>Test host</h1><p>{MARKER}</p></body></html>\n"),
        )
        .unwrap();
        let mut host = TestHost {
            ns: format!("maestra-t-{id}"),
            veth: format!("mt{id}"),
            addr: inside,
            server: None,
            dir,
        };
        let peer = format!("mp{id}");
        ip(&["netns", "add", &host.ns]);
        ip(&[
            "link", "add", &host.veth, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &host.ns]);
        ip(&["addr", "add", &format!("{outside}/30"), "dev", &host.veth]);
        ip(&["link", "set", &host.veth, "up"]);
        let inside_ip = |args: &[&str]| {
            ip(&[&["netns", "exec", &host.ns, "ip"][..], args].concat());
        };
        inside_ip(&["addr", "add", &format!("{inside}/30"), "dev", &peer]);
        inside_ip(&["link", "set", &peer, "up"]);
        inside_ip(&["link", "set", "lo", "up"]);
        let server = Command::new("ip")
            .args(["netns", "exec", &host.ns])
            .arg(common::python())
            .args(["-m", "http.server", "--bind", &inside.to_string()])
            .arg(HOST_PORT.to_string())
            .arg("--directory")
            .arg(host.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        host.server = Some(server);
        let addr = SocketAddr::from((inside, HOST_PORT));
        let deadline = Instant::now() + HOST_START;
        while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            assert!(Instant::now() < deadline, "the test host never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
        host
    }

    fn url(&self) -> String {
        format!("http://{}:{HOST_PORT}/", self.addr)
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        // Deleting the namespace destroys its end of the pair, and with it the other end.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .stderr(Stdio::null())
            .status();
    }
}

fn rand_u32() -> u32 {
    rand::random()
}

/// Maestra started in a mount namespace of its own, where `/etc/hosts` names `api.openai.com`
/// as [`CLOUD_ADDRESS`]: the guard resolves it there, without asking any DNS server.
fn start_with_cloud_name(home: &Home, hosts_dir: &Path) -> Server {
    let hosts = hosts_dir.join("hosts");
    std::fs::write(
        &hosts,
        format!("127.0.0.1 localhost\n::1 localhost\n{CLOUD_ADDRESS} api.openai.com\n"),
    )
    .unwrap();
    let hosts = hosts.display().to_string();
    Server::start_wrapped(
        home,
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            r#"mount --bind "$0" /etc/hosts && exec "$@""#,
            &hosts,
        ],
    )
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `[mcp.servers.fetch]`: the reference fetch server from PyPI, and `[mcp.servers.raw]`: the
/// test's own server that connects without a proxy. Both declared local.
fn servers_toml() -> String {
    let python = common::python();
    format!(
        "[mcp.servers.fetch]\n\
         command = [\"{py}\", \"-m\", \"mcp_server_fetch\", \"--ignore-robots-txt\", \"--allow-private-ips\"]\n\
         kind = \"local\"\n\n\
         [mcp.servers.raw]\n\
         command = [\"{py}\", \"{script}\"]\n\
         kind = \"local\"\n",
        py = python.display(),
        script = repo("tests/mcp/connect_server.py").display()
    )
}

fn home(local_only: bool) -> Home {
    let mut home = Home::new();
    if local_only {
        home = home.with("MAESTRA_LOCAL_ONLY", "true");
    }
    home.ok(&["init"], b"");
    home.with_toml(&servers_toml())
}

/// Runs the SDK client against `/mcp` with `steps`; its JSON document.
fn sdk(server: &Server, steps: Value) -> Value {
    common::mcp::sdk(&["--http", &server.url("/mcp")], steps)
}

fn call(name: &str, arguments: Value) -> Value {
    json!({"op": "call", "name": name, "arguments": arguments})
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fetch_server_reaches_a_local_host_through_its_sandbox_and_a_cloud_host_is_blocked() {
    let host = TestHost::start();
    let home = home(true);
    let hosts_dir = tempfile::tempdir().unwrap();
    let mut server = start_with_cloud_name(&home, hosts_dir.path());
    let doc = sdk(
        &server,
        json!([
            {"op": "list"},
            call("fetch__fetch", json!({"url": host.url(), "raw": true})),
            call("fetch__fetch", json!({"url": "https://api.openai.com/", "raw": true})),
        ]),
    );
    let r = doc["results"].as_array().unwrap();
    let names: Vec<&str> = r[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"fetch__fetch"), "{names:?}");
    assert_eq!(r[1]["is_error"], false, "{}", r[1]);
    assert!(text(&r[1]).contains(MARKER), "{}", r[1]);
    // The fetch server reports the proxy's refusal as its tool error.
    assert_eq!(r[2]["is_error"], true, "{}", r[2]);
    assert!(text(&r[2]).contains("403"), "{}", r[2]);

    let host_ip = host.addr.to_string();
    let allowed = audit(&server, "category=tool&service=fetch").await;
    assert!(
        allowed.iter().any(|e| e["action"] == "network/connect"
            && e["result"] == "success"
            && e["details"]["host"] == host_ip.as_str()
            && e["details"]["port"] == HOST_PORT),
        "no allowed connection to {host_ip} audited: {allowed:#?}"
    );
    assert!(
        !allowed
            .iter()
            .any(|e| e["details"]["host"] == "api.openai.com" && e["result"] == "success"),
        "{allowed:#?}"
    );
    let blocks = audit(&server, "category=local_only_block&service=fetch").await;
    let block = blocks
        .iter()
        .find(|e| e["details"]["host"] == "api.openai.com")
        .unwrap_or_else(|| panic!("the cloud host's block is not audited: {blocks:#?}"));
    assert_eq!(block["result"], "blocked", "{block}");
    assert_eq!(block["details"]["port"], 443, "{block}");
    assert!(
        block["details"]["reason"]
            .as_str()
            .unwrap()
            .contains(CLOUD_ADDRESS),
        "{block}"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_program_that_ignores_the_proxy_reaches_nothing_once_local_only_mode_sandboxes_it() {
    let host = TestHost::start();
    let home = home(false);
    let mut server = Server::start(&home);
    let connect = call(
        "raw__connect",
        json!({"host": host.addr.to_string(), "port": HOST_PORT}),
    );
    // Unsandboxed (local-only mode off), the same program reaches the test host.
    let doc = sdk(&server, json!([connect.clone()]));
    let r = &doc["results"][0];
    assert_eq!(text(r), "connected", "{r}");

    // The page's switch: the running program is stopped and started again in its sandbox.
    let (status, body) =
        http::post_json(&server.url("/api/controls/local-only"), json!({"on": true})).await;
    assert_eq!(status, 200, "{body}");
    let tunnel = call(
        "raw__tunnel",
        json!({"host": host.addr.to_string(), "port": HOST_PORT}),
    );
    let doc = sdk(&server, json!([connect, tunnel]));
    let r = doc["results"].as_array().unwrap();
    assert_eq!(r[0]["is_error"], false, "{}", r[0]);
    let said = text(&r[0]);
    // The sandbox has a loopback only: no route to the test host, nothing sent.
    assert!(said.starts_with("refused: ENETUNREACH"), "{said}");
    // Its way out is the proxy: a CONNECT tunnel to the local host is let through.
    let said = text(&r[1]);
    assert!(said.starts_with("200 ") && said.contains(MARKER), "{said}");
    let entries = audit(&server, "category=tool&service=raw").await;
    assert!(
        entries.iter().any(|e| e["action"] == "tools/restart"),
        "{entries:#?}"
    );
    assert!(
        entries.iter().any(|e| e["action"] == "network/connect"
            && e["details"]["method"] == "CONNECT"
            && e["details"]["host"] == host.addr.to_string().as_str()
            && e["result"] == "success"),
        "{entries:#?}"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn where_the_kernel_refuses_namespaces_local_only_mode_does_not_start_the_program() {
    let home = home(true);
    // Maestra in a user namespace of its own whose limit on further user namespaces is 0:
    // the kernel refuses the sandbox exactly as on a machine that disallows them.
    let mut server = Server::start_wrapped(
        &home,
        &[
            "unshare",
            "--user",
            "--map-root-user",
            "sh",
            "-c",
            r#"echo 0 > /proc/sys/user/max_user_namespaces && exec "$@""#,
            "sh",
        ],
    );
    let doc = sdk(
        &server,
        json!([call(
            "raw__connect",
            json!({"host": "127.0.0.1", "port": 1})
        )]),
    );
    let r = &doc["results"][0];
    let message = r["rpc_error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("local-only"), "{r}");
    let all = r.to_string();
    assert!(
        all.contains("user.max_user_namespaces is 0") && all.contains("network sandbox"),
        "{all}"
    );
    let blocks = audit(&server, "category=local_only_block&service=raw").await;
    assert!(
        blocks.iter().any(|e| e["result"] == "blocked"
            && e["details"]["reason"]
                .as_str()
                .is_some_and(|why| why.contains("max_user_namespaces"))),
        "{blocks:#?}"
    );
    server.stop();
}
