//! The launcher, inside the sandbox: `maestra sandbox-exec --proxy-socket PATH -- PROGRAM
//! ARGS...`, started by Maestra for a tool program under local-only mode (see the module
//! above). It must run before any other thread exists: the kernel makes a user namespace only
//! for a single-threaded process, so `main` calls [`run`] before it builds a runtime.
//!
//! In order: new user and network namespaces, its own user and group mapped into them, the
//! loopback up, a relay on `127.0.0.1` that hands every connection to Maestra's proxy on
//! `PATH`, then the program with the proxy in its environment and the MCP pipe as its standard
//! input and output. It exits with the program's status. Its first line on standard error is
//! its [`Status`]; nothing else of it is read.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::Arc;

use nix::sched::CloneFlags;
use tokio::net::{TcpListener, UnixStream};
use tokio::sync::Semaphore;

use super::{ACCEPT_RETRY, MAX_CONNECTIONS, Status};

/// The exit status when the kernel refused the namespaces (as `env` and `unshare` do for a
/// command they could not run).
const EXIT_REFUSED: u8 = 125;
/// The exit status when the sandbox stood but the program could not be started.
const EXIT_FAILED: u8 = 126;
/// The variables that point a program at the proxy: the upper- and lower-case names, since
/// programs read one or the other, and `ALL_PROXY` for those that take one for everything.
const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];
/// Cleared, so that no destination skips the proxy (it would find no route anyway).
const NO_PROXY_VARS: [&str; 2] = ["NO_PROXY", "no_proxy"];
/// The kernel settings that decide whether a user may make a user namespace, with what each
/// must say and how to change it (`sysctl -w NAME=VALUE`, kept across boots in
/// `/etc/sysctl.d/`).
const KNOBS: [(&str, &str, &str); 3] = [
    (
        "/proc/sys/kernel/unprivileged_userns_clone",
        "0",
        "kernel.unprivileged_userns_clone is 0 (Debian's switch): set it to 1",
    ),
    (
        "/proc/sys/user/max_user_namespaces",
        "0",
        "user.max_user_namespaces is 0: set it above 0 (15000 is common)",
    ),
    (
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "1",
        "AppArmor restricts unprivileged user namespaces \
         (kernel.apparmor_restrict_unprivileged_userns is 1, Ubuntu's default since 23.10): \
         give the maestra binary an AppArmor profile that allows `userns`, or set it to 0",
    ),
];

/// What a supervisor may forbid besides the kernel's settings: named in every refusal, since
/// the launcher cannot tell them apart from inside (both say EPERM).
const SUPERVISORS: &str = "under systemd, the unit must let it make namespaces \
     (RestrictNamespaces= allowing user and net, RestrictAddressFamilies= with AF_NETLINK: the \
     units `maestra service install` and the Debian package write forbid both), and in a \
     container the seccomp profile must allow unshare(2)";

/// The launcher: the sandbox, then the program; the program's exit status, or the launcher's
/// when it could not get that far (the reason on standard error, as its status line).
pub fn run(socket: &Path, command: &[OsString]) -> ExitCode {
    if let Err(why) = enter() {
        say(&Status::Refused(why));
        return ExitCode::from(EXIT_REFUSED);
    }
    // One thread is enough: a relay of a few connections and a child to wait for.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say(&Status::Failed(format!("cannot start the runtime: {e}")));
            return ExitCode::from(EXIT_FAILED);
        }
    };
    runtime.block_on(relay_and_run(socket.to_path_buf(), command))
}

/// New user and network namespaces, with this process's user and group mapped to themselves
/// (a program sees the files it would see outside, and has no capability outside).
fn enter() -> Result<(), String> {
    let uid = rustix::process::getuid();
    let gid = rustix::process::getgid();
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET).map_err(|errno| {
        refusal(&format!(
            "the kernel refused to make its namespaces ({errno})"
        ))
    })?;
    // A process maps its own group only once it gives up setgroups(2): inside the new user
    // namespace it has no capability in the parent, root or not.
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/uid_map", &format!("{0} {0} 1\n", uid.as_raw()))?;
    write_proc("/proc/self/gid_map", &format!("{0} {0} 1\n", gid.as_raw()))?;
    Ok(())
}

fn write_proc(path: &str, text: &str) -> Result<(), String> {
    std::fs::write(path, text)
        .map_err(|e| refusal(&format!("the kernel refused to write {path} ({e})")))
}

/// The reason for a refusal: what the kernel said, the settings on this machine that explain
/// it, and what to change.
fn refusal(said: &str) -> String {
    let found: Vec<&str> = KNOBS
        .iter()
        .filter(|(path, refuses, _)| {
            std::fs::read_to_string(path).is_ok_and(|v| v.trim() == *refuses)
        })
        .map(|(_, _, fix)| *fix)
        .collect();
    let how = if found.is_empty() {
        "allow unprivileged user namespaces (kernel.unprivileged_userns_clone=1, \
         user.max_user_namespaces above 0, AppArmor's kernel.apparmor_restrict_unprivileged_userns=0 \
         or a profile allowing `userns` for maestra)"
            .to_string()
    } else {
        found.join("; ")
    };
    format!(
        "{said}, so it is not started. To allow it: {how}; {SUPERVISORS}. Or turn local-only \
         mode off to run it unconfined"
    )
}

/// Writes the status line; if even that fails there is no one to tell.
fn say(status: &Status) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", status.line()).and_then(|()| err.flush());
}

async fn relay_and_run(socket: PathBuf, command: &[OsString]) -> ExitCode {
    let started = async {
        loopback_up().await?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot listen on the sandbox's loopback: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("cannot read the relay's address: {e}"))?
            .port();
        let child = start(command, port)?;
        Ok::<_, String>((listener, child))
    };
    let (listener, mut child) = match started.await {
        Ok(started) => started,
        Err(why) => {
            say(&Status::Failed(why));
            return ExitCode::from(EXIT_FAILED);
        }
    };
    say(&Status::Ready);
    tokio::select! {
        status = child.wait() => exit_code(status),
        // The relay runs for as long as the program; it never ends first.
        () = relay(listener, socket) => ExitCode::from(EXIT_FAILED),
    }
}

/// A new network namespace's loopback is down, and `127.0.0.1` unusable until it is up.
async fn loopback_up() -> Result<(), String> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| {
        format!(
            "cannot open a netlink socket to bring its loopback up ({e}); under systemd, \
             RestrictAddressFamilies= must include AF_NETLINK"
        )
    })?;
    let task = tokio::spawn(connection);
    let up = handle
        .link()
        .set(rtnetlink::LinkUnspec::new_with_name("lo").up().build())
        .execute()
        .await
        .map_err(|e| format!("cannot bring the sandbox's loopback up: {e}"));
    task.abort();
    up
}

/// The program, told of the proxy, its standard input and output the launcher's own (the MCP
/// pipe), its standard error discarded as Maestra discards an unsandboxed program's (it may
/// print the credentials it was given).
fn start(command: &[OsString], port: u16) -> Result<tokio::process::Child, String> {
    let Some((program, args)) = command.split_first() else {
        return Err("no program to start".into());
    };
    let proxy = format!("http://127.0.0.1:{port}");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for var in PROXY_VARS {
        cmd.env(var, &proxy);
    }
    for var in NO_PROXY_VARS {
        cmd.env(var, "");
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start {}: {e}", Path::new(program).display()))
}

/// Every connection the program makes to the relay, handed to the proxy's socket (at most
/// [`MAX_CONNECTIONS`] at once, as the proxy serves).
async fn relay(listener: TcpListener, socket: PathBuf) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((mut inbound, _)) = listener.accept().await else {
            tokio::time::sleep(ACCEPT_RETRY).await;
            continue;
        };
        let socket = socket.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = UnixStream::connect(&socket).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
            drop(slot);
        });
    }
}

/// The program's status as the launcher's: its code, or 128 + the signal that ended it (as a
/// shell reports it).
fn exit_code(status: std::io::Result<ExitStatus>) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => ExitCode::from(code as u8),
            (None, Some(signal)) => ExitCode::from((128 + signal) as u8),
            (None, None) => ExitCode::FAILURE,
        },
        Err(_) => ExitCode::FAILURE,
    }
}
