//! `maestra sandbox-exec --proxy-socket PATH -- PROGRAM [ARGS...]`, hidden: the launcher of a
//! tool program's network sandbox, which Maestra starts itself under local-only mode
//! (`mcp::sandbox`). `main` runs it before any runtime exists: the kernel makes a user
//! namespace only for a single-threaded process.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct SandboxExecArgs {
    /// The Unix socket Maestra serves the program's proxy on.
    #[arg(long, value_name = "PATH")]
    pub proxy_socket: PathBuf,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    pub command: Vec<OsString>,
}

#[cfg(target_os = "linux")]
pub fn run(args: &SandboxExecArgs) -> ExitCode {
    crate::mcp::sandbox::inside::run(&args.proxy_socket, &args.command)
}

/// Elsewhere there are no network namespaces: the launcher refuses, as the kernel would.
#[cfg(not(target_os = "linux"))]
pub fn run(_args: &SandboxExecArgs) -> ExitCode {
    let refused = crate::mcp::sandbox::Status::Refused(
        "network namespaces are Linux's, so it is not started (turn local-only mode off to \
         use it)"
            .into(),
    );
    eprintln!("{}", refused.line());
    ExitCode::from(125)
}
