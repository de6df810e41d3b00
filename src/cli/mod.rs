//! The command line (SPEC §3): one file per command group.

mod audit;
mod backup;
mod completions;
mod conversations;
mod cost;
mod doctor;
mod guard;
mod init;
mod keys;
pub mod lockdown;
mod mcp;
mod privacy;
mod progress;
mod sandbox_exec;
mod serve;
mod service;
mod service_files;
mod services;
mod vault;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use crate::context::Context;

use crate::error::Result;

#[derive(Debug, Parser)]
#[command(
    name = "maestra",
    version,
    about = "Local-first, privacy-first backend for personal AI assistants"
)]
pub struct Cli {
    /// Configuration file (default: $MAESTRA_HOME/maestra.toml).
    #[arg(long, global = true, env = "MAESTRA_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (127.0.0.1:8825 by default).
    Serve {
        /// Address to listen on (overrides MAESTRA_BIND).
        #[arg(long)]
        bind: Option<String>,
    },
    /// The MCP server over stdin and stdout, for clients that launch a command (SPEC §2.11);
    /// `list` and `approve` for the tool servers' pinned tools.
    Mcp {
        #[command(subcommand)]
        command: Option<mcp::McpCommand>,
    },
    /// Create $MAESTRA_HOME, its keys, database and logs; safe to run again.
    Init {
        /// Tighten the permissions of an existing home instead of refusing it.
        #[arg(long)]
        fix: bool,
    },
    /// Check the configuration against the security checklist.
    Doctor {
        /// Repair what can be repaired (permissions, missing keys).
        #[arg(long)]
        fix: bool,
    },
    /// Credentials encrypted at rest.
    #[command(subcommand)]
    Vault(vault::VaultCommand),
    /// The local-only guard.
    #[command(subcommand)]
    Guard(guard::GuardCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Stored conversations: list, export, delete.
    #[command(subcommand)]
    Conversations(conversations::ConversationsCommand),
    /// Delete everything of a user (export first with `conversations export --user`).
    Forget {
        #[arg(long)]
        user: String,
        /// Then rotate the vault key, so that whole-database copies taken before (a disk
        /// snapshot, a replica, archived WAL), which still hold the user's wrapped data key,
        /// no longer open with the key in use. Needs the key in its file.
        #[arg(long)]
        rotate_key: bool,
    },
    /// Spend against the cost limits.
    #[command(subcommand)]
    Cost(cost::CostCommand),
    /// API keys for cloud mode.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Incident response: local-only on, API keys revoked, vault key rotated.
    Lockdown {
        /// Turn local-only back off (revoked keys stay revoked).
        #[arg(long)]
        lift: bool,
    },
    /// Import the seed system's conversations (DIR/conversations/*.json) and cost tracker.
    Import {
        #[arg(long)]
        from: PathBuf,
    },
    /// Encrypted backups: create, verify, restore (directory or s3://bucket/prefix).
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Run `maestra serve` as a system service (systemd unit, launchd job).
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// What cloud calls withhold: try it on a text (`test`), the person's names (`names`).
    #[command(subcommand)]
    Privacy(privacy::PrivacyCommand),
    /// Personal services: find devices on the local network (`discover`).
    #[command(subcommand)]
    Services(services::ServicesCommand),
    /// Print the completion script of a shell (bash, zsh, fish, elvish, powershell).
    ///
    /// For example `maestra completions bash > ~/.local/share/bash-completion/completions/maestra`,
    /// `maestra completions zsh > ~/.zfunc/_maestra` (with ~/.zfunc in fpath), or
    /// `maestra completions fish > ~/.config/fish/completions/maestra.fish`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (`maestra man | man -l -`), or write every page into DIR.
    Man {
        /// Write maestra.1 and a page per subcommand (maestra-vault-put.1, ...) here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Runs the command that must run before `main` starts the runtime (whose threads would stop
/// it), when the command line is that one: `maestra sandbox-exec ...`, the launcher of a tool
/// program's network sandbox (the kernel makes a user namespace only for a single-threaded
/// process). It is not in [`Cli`], so help, completions and the manual never offer it: only
/// Maestra starts it.
pub fn before_runtime() -> Option<ExitCode> {
    sandbox_exec::from_command_line()
}

/// Runs a parsed command; errors become one line on stderr in `main`.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Serve { bind } => serve::run(config, bind).await,
        Command::Mcp { command } => mcp::run(config, command).await,
        Command::Conversations(cmd) => conversations::run(config, cmd).await,
        Command::Forget { user, rotate_key } => {
            conversations::forget(config, user, rotate_key).await
        }
        Command::Cost(cmd) => cost::run(config, cmd).await,
        Command::Keys(cmd) => keys::run(config, cmd).await,
        Command::Lockdown { lift } => lockdown::run(config, lift).await,
        Command::Import { from } => conversations::import(config, from).await,
        Command::Init { fix } => init::run(config, fix).await,
        Command::Doctor { fix } => doctor::run(config, fix).await,
        Command::Vault(cmd) => vault::run(config, cmd).await,
        Command::Guard(cmd) => guard::run(config, cmd).await,
        Command::Audit(cmd) => audit::run(config, cmd).await,
        Command::Service(cmd) => service::run(config, cmd).await,
        Command::Services(cmd) => services::run(config, cmd).await,
        Command::Privacy(cmd) => privacy::run(config, cmd).await,
        Command::Backup(cmd) => backup::run(config, cmd).await,
        Command::Completions { shell } => completions::completions(shell),
        Command::Man { dir } => completions::man(dir.as_deref()),
    }
}

/// The context of every failed write to standard output (`Error::io(STDOUT_WRITE, e)`), by
/// which [`is_broken_pipe`] knows it from other writes.
pub(crate) const STDOUT_WRITE: &str = "cannot write to standard output";

/// Whether a command failed only because the reader of its standard output went away
/// (`maestra audit query | head -1`): `main` then exits quietly, with success.
pub fn is_broken_pipe(e: &crate::error::Error) -> bool {
    matches!(
        e,
        crate::error::Error::Io { context, source }
            if context == STDOUT_WRITE && source.kind() == std::io::ErrorKind::BrokenPipe
    )
}

/// Makes `println!` (and `eprintln!`) into a closed pipe a quiet, successful exit for every
/// command, instead of a panic: std ignores SIGPIPE, so such a write fails with EPIPE and
/// the macro panics with "failed printing to stdout: Broken pipe (os error 32)". This hook
/// recognises exactly that panic and ends the process with status 0 before anything is
/// printed; every other panic goes to the default hook as before. With [`is_broken_pipe`]
/// for the commands that write with `write!` and return the error, it is the one way a
/// command meets a closed standard output.
pub fn exit_quietly_on_broken_pipe() {
    let epipe = std::io::Error::from(rustix::io::Errno::PIPE).to_string();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to std") && message.ends_with(&epipe) {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// A progress callback for long work: a bar on a terminal, nothing when standard error is not
/// one (see [`progress::counter`]).
pub(crate) fn progress(label: &'static str) -> impl FnMut(usize, usize) -> Result<()> {
    progress::counter(label)
}
