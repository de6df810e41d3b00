//! `maestra sandbox-exec --proxy-socket PATH -- PROGRAM [ARGS...]`: the launcher of a tool
//! program's network sandbox, which Maestra starts itself under local-only mode
//! (`mcp::sandbox`). Not a command for people, so not in the command line's definition (help,
//! completions, manual): `main` looks for it first, before any runtime exists, since the
//! kernel makes a user namespace only for a single-threaded process.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::mcp::sandbox::SUBCOMMAND;

#[derive(Debug, Parser)]
#[command(
    name = "maestra sandbox-exec",
    about = "Runs a tool program in its network sandbox (started by Maestra itself)"
)]
pub struct SandboxExecArgs {
    /// The Unix socket Maestra serves the program's proxy on.
    #[arg(long, value_name = "PATH")]
    pub proxy_socket: PathBuf,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    pub command: Vec<OsString>,
}

/// The launcher's exit status when the command line is `maestra sandbox-exec ...`.
pub fn from_command_line() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != SUBCOMMAND {
        return None;
    }
    let name = OsString::from(format!("maestra {SUBCOMMAND}"));
    let parsed = SandboxExecArgs::parse_from(std::iter::once(name).chain(args));
    Some(run(&parsed))
}

#[cfg(target_os = "linux")]
fn run(args: &SandboxExecArgs) -> ExitCode {
    crate::mcp::sandbox::inside::run(&args.proxy_socket, &args.command)
}

/// Elsewhere there are no network namespaces: the launcher refuses, as the kernel would.
#[cfg(not(target_os = "linux"))]
fn run(_args: &SandboxExecArgs) -> ExitCode {
    let refused = crate::mcp::sandbox::Status::Refused(
        "network namespaces are Linux's, so it is not started (turn local-only mode off to \
         use it)"
            .into(),
    );
    eprintln!("{}", refused.line());
    ExitCode::from(125)
}
