//! Issue 23, class 6: nothing in the binary opens an outbound connection except through
//! egress (SPEC §2). This test lists every crate the binary links (the normal dependency tree,
//! build-time crates left out) whose source opens a socket or builds an HTTP client of its own,
//! and Maestra's own files that do, and requires each to be listed below with the reason it is
//! allowed: it is egress, it only serves or carries connections others made, or it dials a peer
//! the configuration names (the database, Redis; in local-only mode only a local one, checked
//! first). Where a crate is allowed because Maestra routes it through egress or checks its peer,
//! the lines of Maestra's source that do so must exist. A new crate (or file)
//! that can open a socket fails this test until it is listed with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A file of Maestra's source and the text in it that routes a crate through egress.
type Evidence = (&'static str, &'static str);

/// Crate → why it is allowed, and (for a crate routed through egress, or a configured peer that
/// local-only must check) the files and text in Maestra's source that do so.
const CRATES: &[(&str, &str, &[Evidence])] = &[
    (
        "reqwest",
        "egress's one outbound client (built only in src/egress.rs, checked below)",
        &[],
    ),
    (
        "object_store",
        "backups to S3: its HTTP client is replaced by egress (backup::connector::GuardedConnector)",
        &[("src/backup/location.rs", ".with_http_connector(")],
    ),
    (
        "hyper-util",
        "reqwest's connector (dials what egress's resolver allowed) and the server",
        &[],
    ),
    (
        "tokio",
        "the runtime's sockets, used by the crates listed here and the files below",
        &[],
    ),
    ("mio", "tokio's I/O driver", &[]),
    (
        "socket2",
        "sets options on sockets tokio and hyper-util open",
        &[],
    ),
    (
        "libc",
        "system call bindings; their callers are listed",
        &[],
    ),
    (
        "rustix",
        "system call bindings; Maestra uses it for processes and files only",
        &[],
    ),
    (
        "h2",
        "HTTP/2 over connections hyper and reqwest opened",
        &[],
    ),
    ("axum", "serves connections the server accepted", &[]),
    ("tokio-util", "adapters over I/O others opened", &[]),
    (
        "url",
        "parses URLs; resolving a host is egress's resolver's job",
        &[],
    ),
    (
        "dotenvy",
        "reads .env files for sqlx; its only socket mention is documentation",
        &[],
    ),
    (
        "eventsource-stream",
        "parses event streams egress received; its client is in documentation",
        &[],
    ),
    (
        "tower-http",
        "server middleware; its client is in a test module",
        &[],
    ),
    (
        "sqlx-core",
        "the configured database (MAESTRA_DB_URL): a peer by configuration",
        &[],
    ),
    (
        "sqlx-postgres",
        "the configured PostgreSQL (MAESTRA_DB_URL): a peer by configuration, checked local \
         in local-only mode before any connection",
        &[
            (
                "src/context.rs",
                "check_configured_peer(self.config.local_only, DB_URL_SETTING",
            ),
            (
                "src/backup/create.rs",
                "check_configured_peer(ctx.config.local_only, DB_URL_SETTING",
            ),
            ("src/backup/restore.rs", "\"MAESTRA_RESTORE_KEYS_DB_URL\","),
        ],
    ),
    (
        "rmcp",
        "MCP (SPEC §2.11): served on connections the server accepted, spoken over a tool \
         program's stdin and stdout, and to a `url` tool server through its streamable-HTTP \
         client, whose HTTP backend is mcp/remote.rs on egress; the file that matches \
         (`transport/auth/`) is behind its `auth` feature, which Maestra leaves off, as it does \
         its own HTTP client",
        &[
            (
                "Cargo.toml",
                "rmcp = { version = \"=3.11.0\", default-features = false",
            ),
            ("src/mcp/remote.rs", "impl StreamableHttpClient for Remote"),
            ("src/mcp/remote.rs", "self.egress.send(&self.name, request)"),
        ],
    ),
    (
        "nix",
        "process-wrap's system calls for the tool programs rmcp starts (process groups, \
         signals, descriptors), and unshare(2) for their network sandbox \
         (src/mcp/sandbox/inside.rs); its socket module is not called",
        &[],
    ),
    (
        "netlink-sys",
        "rtnetlink's NETLINK_ROUTE socket, opened only by the sandbox's launcher inside its own \
         network namespace to bring the loopback up (src/mcp/sandbox/inside.rs): a message to \
         the kernel, not a network connection",
        &[(
            "src/mcp/sandbox/inside.rs",
            "rtnetlink::LinkUnspec::new_with_name(\"lo\").up()",
        )],
    ),
    (
        "mdns-sd",
        "`maestra services discover` (issue 28): mDNS/DNS-SD queries multicast to 224.0.0.251 \
         and ff02::fb on the local link, from a socket per interface on port 5353; it answers \
         only for services registered with it, and Maestra registers none. Started only by \
         the discover command",
        &[("src/services/discover/mdns.rs", "ServiceDaemon::new()")],
    ),
    (
        "socket-pktinfo",
        "mdns-sd's multicast sockets (which interface a packet arrived on); opened by mdns-sd \
         alone",
        &[],
    ),
    (
        "redis",
        "the configured Redis (MAESTRA_REDIS_URL) for shared rate limits: a peer by configuration, \
         checked local in local-only mode before the server starts",
        &[
            ("src/access/ratelimit.rs", "redis::Client::open("),
            ("src/app.rs", "\"redis_url (MAESTRA_REDIS_URL)\","),
        ],
    ),
];

/// Maestra's own files that open sockets, build a client or start a program that may.
const OWN_FILES: &[(&str, &str)] = &[
    ("src/egress.rs", "the outbound client itself"),
    ("src/app.rs", "the server's listening socket (inbound)"),
    (
        "src/backup/postgres.rs",
        "pg_dump / psql: to the configured database",
    ),
    (
        "src/privsec/guard.rs",
        "resolves a configured peer's name (db_url, redis_url) in local-only mode, to check it \
         is local before anything connects",
    ),
    (
        "src/cli/service.rs",
        "systemctl / launchctl: the local service manager",
    ),
    (
        "src/services/discover/ssdp.rs",
        "`maestra services discover`: one UDP socket sending the SSDP search to \
         239.255.255.250:1900 with a TTL of one hop, and reading the answers sent back to it",
    ),
    (
        "src/mcp/upstream.rs",
        "the tool programs of [mcp.servers] (stdio); under local-only mode a local one only in \
         its network sandbox, a cloud one not at all",
    ),
    (
        "src/mcp/program.rs",
        "starts a tool program, or under local-only mode the sandbox's launcher (this binary's \
         `sandbox-exec`), which starts it in a network namespace whose only way out is the \
         proxy",
    ),
    (
        "src/mcp/sandbox/inside.rs",
        "the sandbox's launcher: inside the program's own network namespace (a loopback only), \
         a relay listening on 127.0.0.1 that connects to Maestra's proxy on a Unix socket, and \
         the program it starts",
    ),
    (
        "src/egress/connect.rs",
        "egress's guarded TCP connection (the sandbox proxy's tunnels and forwarded requests): \
         dials only the addresses the local-only decision allowed",
    ),
];

/// Source text that opens an outbound socket (`connect`, `connect_timeout`, ...), resolves a
/// name (DNS: `lookup_host`, `to_socket_addrs`) or builds an HTTP client.
fn opens_sockets() -> regex::Regex {
    regex::Regex::new(OUTBOUND).unwrap()
}

const OUTBOUND: &str = concat!(
    r"(TcpStream|UdpSocket|UnixStream|TcpSocket|UnixDatagram)::",
    r"(connect\w*|bind|new_v4|new_v6|unbound|pair)\b",
    r"|\blookup_host\b|\bto_socket_addrs\b",
    r"|socket2::Socket::new|\bSocket::new\(|libc::(connect|socket)\b",
    r"|reqwest::Client(Builder)?::(new|builder)\b|\bClientBuilder::new\(",
    r"|legacy::Client::builder",
);

/// For Maestra's own files, also listening sockets and programs it starts (which may dial).
fn own_file_opens_sockets() -> regex::Regex {
    regex::Regex::new(&format!(r"{OUTBOUND}|TcpListener::bind|\bCommand::new\(")).unwrap()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `name version` of every crate the binary links on this platform.
fn linked_crates() -> BTreeSet<(String, String)> {
    let tree = output(cargo().args([
        "tree",
        "--locked",
        "--offline",
        "-e",
        "normal,no-proc-macro",
        "--prefix",
        "none",
        "-f",
        "{p}",
    ]));
    tree.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?.to_string();
            let version = w.next()?.trim_start_matches('v').to_string();
            Some((name, version))
        })
        .filter(|(name, _)| name != "maestra")
        .collect()
}

/// Where each crate's source is.
fn source_dirs() -> BTreeMap<(String, String), PathBuf> {
    let vv = output(Command::new("rustc").arg("-vV"));
    let host = vv
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap()
        .to_string();
    let meta = output(cargo().args([
        "metadata",
        "--format-version",
        "1",
        "--locked",
        "--offline",
        "--filter-platform",
        &host,
    ]));
    let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let key = (
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
            );
            let dir = Path::new(p["manifest_path"].as_str().unwrap())
                .parent()
                .unwrap()
                .to_path_buf();
            (key, dir)
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn mentions(dir: &Path, re: &regex::Regex) -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&dir.join("src"), &mut files);
    files
        .into_iter()
        .filter(|f| std::fs::read_to_string(f).is_ok_and(|t| re.is_match(&t)))
        .collect()
}

#[test]
fn every_crate_that_can_open_a_socket_goes_through_egress_or_is_a_configured_peer() {
    let re = opens_sockets();
    let dirs = source_dirs();
    let mut unlisted = Vec::new();
    for krate in linked_crates() {
        let dir = dirs
            .get(&krate)
            .unwrap_or_else(|| panic!("no source for {krate:?}"));
        let hits = mentions(dir, &re);
        if !hits.is_empty() && !CRATES.iter().any(|(n, _, _)| *n == krate.0) {
            unlisted.push(format!("{} {} ({:?})", krate.0, krate.1, hits[0]));
        }
    }
    assert!(
        unlisted.is_empty(),
        "crates that can open a socket, not listed with their reason in CRATES: {unlisted:#?}"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, _, evidence) in CRATES {
        for (file, text) in *evidence {
            let src = std::fs::read_to_string(root.join(file)).unwrap();
            assert!(
                src.contains(text),
                "{name} is allowed because {file} routes it ({text:?}), but it does not"
            );
        }
    }
}

#[test]
fn only_the_listed_files_of_maestra_open_sockets_or_build_a_client() {
    let re = own_file_opens_sockets();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let hits: Vec<String> = mentions(root, &re)
        .into_iter()
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .filter(|p| !OWN_FILES.iter().any(|(f, _)| f == p))
        .collect();
    assert!(
        hits.is_empty(),
        "files that open sockets, build an HTTP client or start a program, not in OWN_FILES: {hits:?}"
    );
    // The one client: reqwest is built nowhere but in egress.
    let builds = regex::Regex::new(r"reqwest::Client(Builder)?::(new|builder)\b").unwrap();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let rel = f.strip_prefix(root).unwrap();
        assert!(
            rel == Path::new("src/egress.rs") || !builds.is_match(&text),
            "{rel:?} builds a reqwest client of its own"
        );
    }
}
