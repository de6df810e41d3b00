//! The network sandbox of a tool program under local-only mode (SPEC §2.11).
//!
//! Why: a stdio tool server is a program, and a program can open a socket to anywhere whatever
//! its `kind` says. Local-only mode cannot take its word, so under it a `kind = "local"` program
//! runs in a network namespace of its own (Linux user and network namespaces: no root needed
//! where the kernel lets a user make them) that holds nothing but a loopback interface. Its one
//! way out is an HTTP proxy on that loopback, named to it in `HTTP_PROXY`, `HTTPS_PROXY` and
//! `ALL_PROXY`: a relay inside the namespace hands each connection to a Unix socket in the home
//! (a file, and files are the same in every network namespace), where Maestra serves the proxy
//! ([`proxy`]) and decides each destination with the egress guard ([`Egress::connect`]), which
//! audits it. So a local tool still reaches this machine and the devices on the local network,
//! a cloud destination is refused and audited, and a program that ignores the proxy finds no
//! route to anything. Proxying by name (`CONNECT host:port`, or a plain `GET http://...`) is
//! what makes this decidable: the guard resolves the name itself and dials only addresses it
//! checked, and a TLS tunnel needs no key of Maestra's.
//!
//! How: Maestra starts itself, `maestra sandbox-exec --proxy-socket PATH -- PROGRAM ARGS...`
//! ([`inside`], the launcher), as one process group with the program it starts, so stopping
//! the program (the MCP client dropped: a crash, a timeout, local-only mode's switch, the
//! server's end) kills both. While it still has one thread (the kernel refuses a user namespace
//! to a threaded process) the launcher unshares the namespaces and maps its own user and
//! group into them, then brings the loopback up over netlink (no `ip` program needed), binds
//! the relay on `127.0.0.1`, and starts the program with the MCP pipe as its standard input and
//! output. Its first line on standard error says whether it got that far ([`Status`]): a kernel
//! that refuses namespaces stops it there, the program is never started, and the call is
//! refused by local-only mode with the reason and what to change.
//!
//! What it does not confine: the file system. A program runs as Maestra's user and can use any
//! Unix socket that user can (a local daemon that dials out for it, the other sandboxes'
//! proxies, whose traffic the guard decides just the same).

#[cfg(target_os = "linux")]
pub mod inside;
mod proxy;
mod watched;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::ChildStderr;
use tokio_util::task::AbortOnDropHandle;

use crate::egress::Egress;
use crate::error::{Error, LocalOnlyBlock, Result};
use crate::privsec::audit::AuditLog;

/// The first argument that makes this binary the launcher (`main` looks for it before
/// anything else: `cli::before_runtime`).
pub const SUBCOMMAND: &str = "sandbox-exec";
/// Connections one sandboxed program may hold through its proxy at once (tunnels and plain
/// requests alike); more wait for one to end. A fetch tool needs a handful; a program that
/// opens hundreds is flooding, and each one holds a socket in Maestra.
pub const MAX_CONNECTIONS: usize = 64;
/// A tunnel or forwarded request that moves no byte either way for this long is closed, so
/// a program cannot pin connections (and their sockets) open forever.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// After a failed accept (out of descriptors, say) the wait before the next, so the proxy's
/// and the relay's loops do not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// The longest first line the launcher may write on its standard error: its status.
const MAX_STATUS_BYTES: u64 = 4096;
/// The longest path of a Unix socket (`sun_path` holds 108 bytes with the final NUL).
const MAX_SOCKET_PATH: usize = 107;

/// What the launcher says first, on a line of its standard error: the sandbox stands and the
/// program runs, the kernel refused the namespaces, or something else stopped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ready,
    /// The kernel would not make the namespaces: local-only mode refuses the program.
    Refused(String),
    /// The sandbox stood but the program (or the relay) could not start.
    Failed(String),
}

const STATUS_PREFIX: &str = "maestra-sandbox";

impl Status {
    /// The line the launcher writes (without its newline); one line whatever the message.
    pub fn line(&self) -> String {
        let one_line = |s: &str| s.replace(['\n', '\r'], " ");
        match self {
            Status::Ready => format!("{STATUS_PREFIX} ready"),
            Status::Refused(why) => format!("{STATUS_PREFIX} refused: {}", one_line(why)),
            Status::Failed(why) => format!("{STATUS_PREFIX} failed: {}", one_line(why)),
        }
    }

    /// The status a line says; anything else (nothing at all: the launcher died) is a failure.
    pub fn parse(line: &str) -> Status {
        let line = line.trim_end();
        let Some(rest) = line.strip_prefix(STATUS_PREFIX) else {
            return Status::Failed("the sandbox's launcher stopped without saying why".into());
        };
        if rest == " ready" {
            Status::Ready
        } else if let Some(why) = rest.strip_prefix(" refused: ") {
            Status::Refused(why.to_string())
        } else if let Some(why) = rest.strip_prefix(" failed: ") {
            Status::Failed(why.to_string())
        } else {
            Status::Failed(format!("the sandbox's launcher said {line:?}"))
        }
    }

    /// What a call of `server` gets for this status.
    pub fn into_result(self, server: &str) -> Result<()> {
        match self {
            Status::Ready => Ok(()),
            Status::Refused(why) => Err(Error::LocalOnly(Box::new(LocalOnlyBlock {
                service: server.to_string(),
                reason: format!(
                    "local-only mode runs the tool program {server:?} only inside a network \
                     sandbox, and {why}"
                ),
                suggested_alternatives: Vec::new(),
            }))),
            Status::Failed(why) => Err(Error::UpstreamUnavailable(format!(
                "the tool server {server:?} could not be started in its network sandbox: {why}"
            ))),
        }
    }
}

/// Where the sandboxes' proxies are served from, and the log their decisions go to.
pub struct Sandboxes {
    dir: PathBuf,
    audit: AuditLog,
}

/// One program's proxy, served while this lives; its socket is removed when it is dropped.
pub struct Sandbox {
    socket: PathBuf,
    _proxy: AbortOnDropHandle<()>,
}

impl Sandboxes {
    /// Sockets go in `HOME/sandbox/`, a private directory like the rest of the home.
    pub fn new(home: &Path, audit: AuditLog) -> Sandboxes {
        Sandboxes {
            dir: crate::home::Home::new(home).sandbox_dir(),
            audit,
        }
    }

    /// Starts the proxy of a program of `server`, on a socket of its own, deciding every
    /// destination with `egress`.
    pub fn open(&self, server: &str, egress: &Egress) -> Result<Sandbox> {
        if !cfg!(target_os = "linux") {
            // A refusal is always an error: nothing below runs.
            Status::Refused(
                "network namespaces are Linux's: on this system it cannot be confined, so it is \
                 not started (turn local-only mode off to use it)"
                    .into(),
            )
            .into_result(server)?;
        }
        crate::home::create_private_dir(&self.dir)?;
        // A name of its own per start: a command (`maestra mcp list`) may run beside a server.
        let socket = self
            .dir
            .join(format!("{server}-{:016x}.sock", rand::random::<u64>()));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(Error::Config(format!(
                "the home's path is too long for the sandbox's socket {} (at most \
                 {MAX_SOCKET_PATH} bytes): use a shorter MAESTRA_HOME",
                socket.display()
            )));
        }
        let listener = tokio::net::UnixListener::bind(&socket).map_err(|e| {
            Error::io(
                format!("cannot serve the sandbox's proxy on {}", socket.display()),
                e,
            )
        })?;
        let ctx = Arc::new(proxy::Ctx {
            server: server.to_string(),
            egress: egress.clone(),
            audit: self.audit.clone(),
        });
        let task = tokio::spawn(proxy::serve(listener, ctx));
        Ok(Sandbox {
            socket,
            _proxy: AbortOnDropHandle::new(task),
        })
    }
}

impl Sandbox {
    /// The socket the launcher relays every connection to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Waits for the launcher's status line (within `timeout`), then discards what else it writes
/// on standard error; the status as the call's result.
pub async fn started(stderr: ChildStderr, server: &str, timeout: Duration) -> Result<()> {
    let mut reader = BufReader::new(stderr.take(MAX_STATUS_BYTES));
    let mut line = String::new();
    let read = tokio::time::timeout(timeout, reader.read_line(&mut line)).await;
    let mut rest = reader.into_inner().into_inner();
    // Read to its end, so the launcher never blocks on a full pipe nor fails on a closed one.
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
    });
    match read {
        Ok(_) => Status::parse(&line).into_result(server),
        Err(_) => Err(Error::UpstreamTimeout(format!(
            "the network sandbox of the tool server {server:?} did not start within {} s",
            timeout.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_survives_its_line_and_a_refusal_is_local_only_modes() {
        for s in [
            Status::Ready,
            Status::Refused("the kernel said EPERM".into()),
            Status::Failed("cannot start x".into()),
        ] {
            assert_eq!(Status::parse(&format!("{}\n", s.line())), s);
        }
        assert_eq!(
            Status::parse(&Status::Refused("a\nb".into()).line()),
            Status::Refused("a b".into())
        );
        assert!(matches!(Status::parse(""), Status::Failed(_)));
        assert!(matches!(Status::parse("Traceback"), Status::Failed(_)));
        let e = Status::Refused("the kernel refused (EPERM): allow it with X".into())
            .into_result("fetch")
            .unwrap_err();
        match &e {
            Error::LocalOnly(b) => {
                assert_eq!(b.service, "fetch");
                assert!(b.reason.contains("allow it with X"), "{}", b.reason);
            }
            other => panic!("{other}"),
        }
        assert_eq!(e.status(), 403);
        let e = Status::Failed("no such program".into())
            .into_result("fetch")
            .unwrap_err();
        assert_eq!(e.status(), 503, "{e}");
    }
}
