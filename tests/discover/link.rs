//! Two network namespaces of the test's own joined by a veth pair: the discovering side (A)
//! and the devices' side (B), with a /30 of 10.204.0.0/16 between them, a public documentation
//! address (RFC 5737) on B for the device that answers from outside the private ranges, and
//! a multicast route on both ends. Neither namespace has any other link, so whatever A sends
//! goes to B (where a packet counter reads it) or nowhere; multicast never leaves the pair.
//! Removed on drop, whatever the test's outcome. Needs root (or CAP_NET_ADMIN), as CI has.
// Shared by tests/discover.rs and tests/discover_server.rs, which each use a part.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The public address the far device answers from (TEST-NET-3, routed nowhere).
pub const PUBLIC: &str = "203.0.113.8";

/// A hang guard only: how long the responder may take to register its services and the
/// packet counter to open its socket.
const READY_WITHIN: Duration = Duration::from_secs(90);

pub struct Link {
    pub ns_a: String,
    pub ns_b: String,
    pub veth_a: String,
    pub veth_b: String,
    pub addr_a: Ipv4Addr,
    pub addr_b: Ipv4Addr,
    children: Vec<Child>,
    pub dir: tempfile::TempDir,
}

pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl Link {
    pub fn new() -> Link {
        let id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        // A /30 of its own, so tests running at once do not share an address.
        let block = rand::random::<u32>() % 16384;
        let base = u32::from(Ipv4Addr::new(10, 204, 0, 0)) + block * 4;
        let link = Link {
            ns_a: format!("maestra-da-{id}"),
            ns_b: format!("maestra-db-{id}"),
            veth_a: format!("dva{id}"),
            veth_b: format!("dvb{id}"),
            addr_a: Ipv4Addr::from(base + 1),
            addr_b: Ipv4Addr::from(base + 2),
            children: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        ip(&["netns", "add", &link.ns_a]);
        ip(&["netns", "add", &link.ns_b]);
        ip(&[
            "link",
            "add",
            &link.veth_a,
            "type",
            "veth",
            "peer",
            "name",
            &link.veth_b,
        ]);
        ip(&["link", "set", &link.veth_a, "netns", &link.ns_a]);
        ip(&["link", "set", &link.veth_b, "netns", &link.ns_b]);
        for (ns, veth, addr) in [
            (&link.ns_a, &link.veth_a, format!("{}/30", link.addr_a)),
            (&link.ns_b, &link.veth_b, format!("{}/30", link.addr_b)),
        ] {
            ip(&["-n", ns, "addr", "add", &addr, "dev", veth]);
            ip(&["-n", ns, "link", "set", veth, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", veth]);
        }
        ip(&[
            "-n",
            &link.ns_b,
            "addr",
            "add",
            &format!("{PUBLIC}/32"),
            "dev",
            &link.veth_b,
        ]);
        link
    }

    /// The MAC address of A's end, by which B's packet counter knows A's frames.
    pub fn mac_a(&self) -> String {
        let out = ip(&["-n", &self.ns_a, "-j", "link", "show", &self.veth_a]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["address"].as_str().unwrap().to_string()
    }

    /// Starts `python SCRIPT ARGS` in B and waits for it to print `ready`.
    pub fn start_in_b(&mut self, script: &Path, args: &[&str]) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns_b])
            .arg(super::common::python())
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        self.children.push(child);
        wait_ready(stdout, script);
    }

    /// The responder of `tests/discover/responder.py` in B, answering at B's address.
    pub fn start_responder(&mut self, extra: &[&str]) {
        let addr = self.addr_b.to_string();
        let args = [&["--address", addr.as_str(), "--public", PUBLIC][..], extra].concat();
        self.start_in_b(&script("responder.py"), &args);
    }

    /// The packet counter of `tests/discover/capture.py` on B's end; returns its log.
    pub fn start_capture(&mut self) -> PathBuf {
        let log = self.dir.path().join("packets.log");
        let (veth, mac) = (self.veth_b.clone(), self.mac_a());
        self.start_in_b(&script("capture.py"), &[&veth, &mac, log.to_str().unwrap()]);
        log
    }

    /// `ip netns exec A PYTHON SCRIPT ARGS`, its output once it exits; killed, and the test
    /// failed, if it runs past `within` (a hang guard: the scripts wait for conditions with
    /// deadlines of their own).
    pub fn python_in_a(&self, script: &Path, args: &[&str], within: Duration) -> Output {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns_a])
            .arg(super::common::python())
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id().to_string();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        let Ok(out) = rx.recv_timeout(within) else {
            let _ = Command::new("kill").arg(&pid).status();
            panic!("{} did not exit within {within:?}", script.display());
        };
        out.unwrap()
    }

    /// `ip netns exec A maestra ARGS` in `home`'s clean environment.
    pub fn maestra_in_a(&self, home: &super::common::Home, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns_a, env!("CARGO_BIN_EXE_maestra")])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home.dir.path())
            .envs(home.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(home.dir.path())
            .stdin(Stdio::null());
        cmd
    }
}

/// What A sent, as B's end of the only link saw it in `packets` (the counter's log): every UDP
/// datagram and TCP segment went to a multicast group or to `answered` (the kernel's own IGMP
/// membership reports and IPv6 neighbour discovery aside), and nothing to the public address.
/// Returns the `proto dst port` lines seen.
pub fn sent_by_a(packets: &Path, answered: &str) -> BTreeSet<String> {
    // Give the counter a moment to read the last frames: a frame it misses can only make this
    // check weaker, never fail it.
    std::thread::sleep(Duration::from_millis(500));
    let log = std::fs::read_to_string(packets).unwrap();
    let allowed = ["224.0.0.251", "239.255.255.250", "ff02::fb", answered];
    let mut seen = BTreeSet::new();
    for line in log.lines() {
        let mut f = line.split(' ');
        let (proto, dst, port) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        if proto == "udp" || proto == "tcp" {
            assert!(allowed.contains(&dst), "sent to {dst}: {line}\n{log}");
            seen.insert(format!("{proto} {dst} {port}"));
        }
        assert_ne!(dst, PUBLIC, "{line}");
    }
    seen
}

/// [`sent_by_a`], and that what a search sends was sent: the mDNS and SSDP queries, and the
/// fetch of the UPnP description from the address that answered.
pub fn assert_searched(packets: &Path, answered: &str) {
    let seen = sent_by_a(packets, answered);
    for expected in [
        "udp 224.0.0.251 5353".to_string(),
        "udp 239.255.255.250 1900".to_string(),
        format!("tcp {answered} 1400"),
    ] {
        assert!(seen.contains(&expected), "{expected} not sent: {seen:?}");
    }
}

pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/discover")
        .join(name)
}

fn wait_ready(stdout: ChildStdout, what: &Path) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines
            .next()
            .and_then(|l| l.ok())
            .is_some_and(|l| l == "ready");
        let _ = tx.send(ready);
        // Keep reading, so a chatty child never blocks on a full pipe.
        for _ in lines {}
    });
    match rx.recv_timeout(READY_WITHIN) {
        Ok(true) => {}
        Ok(false) => panic!("{} exited before it was ready", what.display()),
        Err(_) => panic!("{} was not ready within {READY_WITHIN:?}", what.display()),
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for mut c in self.children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting a namespace destroys its end of the pair, and with it the other end.
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
