//! `maestra service install [--user] | uninstall | status`: run `maestra serve` as a system
//! service — a hardened systemd unit on Linux, a launchd job on macOS — with the current home
//! and configuration. Where the service manager runs, install also enables and starts it;
//! elsewhere (a container, a build machine) it writes the file and says how to start it.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::Subcommand;

use super::Context;
use super::service_files::{self, LAUNCHD_LABEL, SYSTEMD_UNIT, ServiceSpec};
use crate::error::{Error, Result};
use crate::privsec::audit::{Category, Event, Outcome};

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Write the service file (and enable and start it where the service manager runs).
    Install {
        /// A per-user service (systemd --user, a LaunchAgent) instead of a system one.
        #[arg(long)]
        user: bool,
    },
    /// Stop, disable and remove the service file (system and per-user, whichever is there).
    Uninstall {
        /// Only the per-user service.
        #[arg(long)]
        user: bool,
    },
    /// Whether the service is installed (system or per-user), matches this configuration,
    /// and runs.
    Status {
        /// Only the per-user service.
        #[arg(long)]
        user: bool,
    },
}

/// Which service manager this build writes for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Manager {
    Systemd,
    Launchd,
}

impl Manager {
    fn here() -> Manager {
        if cfg!(target_os = "macos") {
            Manager::Launchd
        } else {
            Manager::Systemd
        }
    }

    /// Where the file goes: the user's or the system's directory of the manager.
    fn path(self, user: bool) -> Result<PathBuf> {
        let home = || {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .ok_or_else(|| Error::Config("HOME is not set".into()))
        };
        Ok(match (self, user) {
            (Manager::Systemd, true) => std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map_or_else(|| home().map(|h| h.join(".config")), Ok)?
                .join("systemd/user")
                .join(SYSTEMD_UNIT),
            (Manager::Systemd, false) => Path::new("/etc/systemd/system").join(SYSTEMD_UNIT),
            (Manager::Launchd, true) => home()?
                .join("Library/LaunchAgents")
                .join(format!("{LAUNCHD_LABEL}.plist")),
            (Manager::Launchd, false) => {
                Path::new("/Library/LaunchDaemons").join(format!("{LAUNCHD_LABEL}.plist"))
            }
        })
    }

    fn render(self, spec: &ServiceSpec) -> Result<String> {
        match self {
            Manager::Systemd => service_files::systemd_unit(spec),
            Manager::Launchd => service_files::launchd_plist(spec),
        }
    }

    /// Whether the manager runs on this machine (systemd: booted with it, per sd_booted(3)).
    fn running(self) -> bool {
        match self {
            Manager::Systemd => Path::new("/run/systemd/system").is_dir(),
            Manager::Launchd => Path::new("/bin/launchctl").exists(),
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io("cannot resolve a path", e))
}

/// The service as this configuration would run it.
fn spec(ctx: &Context, user: bool) -> Result<ServiceSpec> {
    let binary = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| Error::io("cannot find the maestra binary", e))?;
    let home = absolute(&ctx.config.home)?;
    let audit_dir = ctx.config.audit.path.parent().map(absolute).transpose()?;
    let extra_writable = audit_dir
        .into_iter()
        .filter(|d| !d.starts_with(&home))
        .collect();
    Ok(ServiceSpec {
        binary,
        home,
        config_file: absolute(&ctx.config.config_file)?,
        extra_writable,
        user,
        uid: rustix::process::getuid().as_raw(),
    })
}

/// Names of Maestra settings present in the environment that the service will not see: every
/// `MAESTRA_*` (and the seeds' aliases) but the two the service file sets. Names only.
fn shell_only_settings(names: impl Iterator<Item = std::ffi::OsString>) -> Vec<String> {
    const ALIASES: &[&str] = &[
        "BYOK_ENCRYPTION_KEY",
        "AUDIT_LOG_PATH",
        "AUDIT_LOG_RETENTION_DAYS",
        "ATOM_LOCAL_ONLY",
    ];
    let mut out: Vec<String> = names
        .filter_map(|n| n.into_string().ok())
        .filter(|n| n.starts_with("MAESTRA_") || ALIASES.contains(&n.as_str()))
        .filter(|n| n != "MAESTRA_HOME" && n != "MAESTRA_CONFIG")
        .collect();
    out.sort();
    out
}

/// Runs a service-manager command, reporting (not failing on) what it said.
fn manage(program: &str, args: &[&str]) -> bool {
    match Command::new(program).args(args).status() {
        Ok(s) if s.success() => true,
        Ok(s) => {
            eprintln!("`{program} {}` failed ({s})", args.join(" "));
            false
        }
        Err(e) => {
            eprintln!("cannot run {program}: {e}");
            false
        }
    }
}

fn systemctl(user: bool, args: &[&str]) -> bool {
    let mut all = Vec::with_capacity(args.len() + 1);
    if user {
        all.push("--user");
    }
    all.extend_from_slice(args);
    manage("systemctl", &all)
}

pub async fn run(config_file: Option<&Path>, cmd: ServiceCommand) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    let manager = Manager::here();
    match cmd {
        ServiceCommand::Install { user } => install(&ctx, manager, user).await,
        ServiceCommand::Uninstall { user } => uninstall(&ctx, manager, user).await,
        ServiceCommand::Status { user } => status(&ctx, manager, user),
    }
}

async fn install(ctx: &Context, manager: Manager, user: bool) -> Result<ExitCode> {
    if !ctx.config.config_file.exists() {
        // `serve --config FILE` needs the file; an empty one means "the defaults".
        crate::home::write_private_atomic(
            &ctx.config.config_file,
            b"# maestra.toml: settings for `maestra serve` (see the README).\n",
        )?;
    }
    let spec = spec(ctx, user)?;
    let text = manager.render(&spec)?;
    let path = manager.path(user)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    crate::home::write_private_atomic(&path, text.as_bytes())?;
    println!("wrote {}", path.display());
    let left_out = shell_only_settings(std::env::vars_os().map(|(k, _)| k));
    if !left_out.is_empty() {
        eprintln!(
            "warning: set in this shell but not carried into the service (they may be secrets): \
             {}; put settings in {} and secrets in the vault (`maestra vault put`)",
            left_out.join(", "),
            spec.config_file.display()
        );
    }
    let started = if !manager.running() {
        let how = match manager {
            Manager::Systemd if user => "systemctl --user enable --now maestra.service",
            Manager::Systemd => "systemctl enable --now maestra.service",
            Manager::Launchd => "launchctl load -w <the file above>",
        };
        println!("the service manager is not running here; start the service with: {how}");
        false
    } else {
        match manager {
            Manager::Systemd => {
                systemctl(user, &["daemon-reload"])
                    && systemctl(user, &["enable", "--now", SYSTEMD_UNIT])
            }
            Manager::Launchd => manage("launchctl", &["load", "-w", &path.display().to_string()]),
        }
    };
    ctx.audit(
        Event::new(
            Category::Admin,
            "maestra",
            "service.install",
            Outcome::Success,
        )
        .detail("path", path.display().to_string())
        .detail("user", user)
        .detail("started", started),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Which unit a path is, in words, and the flag that names it on the command line.
fn kind(user: bool) -> (&'static str, &'static str) {
    if user {
        ("the per-user service", " --user")
    } else {
        ("the system service", "")
    }
}

/// The installed service files, system first: with `--user`, only the per-user one; without,
/// whichever exist (each flagged whether it is the per-user one).
fn found(manager: Manager, user: bool) -> Result<Vec<(bool, PathBuf)>> {
    let mut out = Vec::new();
    for u in [false, true] {
        if user && !u {
            continue;
        }
        let path = manager.path(u)?;
        if path.exists() {
            out.push((u, path));
        }
    }
    Ok(out)
}

/// What to say when no service file is there.
fn not_installed(manager: Manager, user: bool) -> Result<String> {
    Ok(if user {
        format!(
            "no per-user service installed ({} does not exist){}; install one with `maestra \
             service install --user`",
            manager.path(true)?.display(),
            if manager.path(false)?.exists() {
                format!(
                    "; the system service is ({}): leave out --user",
                    manager.path(false)?.display()
                )
            } else {
                String::new()
            }
        )
    } else {
        format!(
            "no service installed (neither {} nor {} exists); install one with `maestra service \
             install` (system) or `maestra service install --user` (per-user)",
            manager.path(false)?.display(),
            manager.path(true)?.display()
        )
    })
}

async fn uninstall(ctx: &Context, manager: Manager, user: bool) -> Result<ExitCode> {
    let units = found(manager, user)?;
    if units.is_empty() {
        println!("not installed: {}", not_installed(manager, user)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (user, path) in units {
        let (what, _) = kind(user);
        if manager.running() {
            match manager {
                Manager::Systemd => {
                    systemctl(user, &["disable", "--now", SYSTEMD_UNIT]);
                }
                Manager::Launchd => {
                    manage("launchctl", &["unload", "-w", &path.display().to_string()]);
                }
            }
        }
        std::fs::remove_file(&path)
            .map_err(|e| Error::io(format!("cannot remove {what} {}", path.display()), e))?;
        if manager.running() && manager == Manager::Systemd {
            systemctl(user, &["daemon-reload"]);
        }
        println!("removed {what}: {}", path.display());
        ctx.audit(
            Event::new(
                Category::Admin,
                "maestra",
                "service.uninstall",
                Outcome::Success,
            )
            .detail("path", path.display().to_string())
            .detail("user", user),
        )
        .await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The installed service file (per-user first, then system) and whether it is what install
/// would write for this configuration now; `None` when none is installed. For `doctor`.
pub fn installed(ctx: &Context) -> Result<Option<(PathBuf, bool, bool)>> {
    let manager = Manager::here();
    for user in [true, false] {
        let path = manager.path(user)?;
        if path.exists() {
            let now = manager.render(&spec(ctx, user)?)?;
            let on_disk = std::fs::read_to_string(&path)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            return Ok(Some((path, user, on_disk == now)));
        }
    }
    Ok(None)
}

fn status(ctx: &Context, manager: Manager, user: bool) -> Result<ExitCode> {
    let units = found(manager, user)?;
    if units.is_empty() {
        eprintln!("not installed: {}", not_installed(manager, user)?);
        return Ok(ExitCode::FAILURE);
    }
    let mut ok = true;
    for (user, path) in units {
        let (what, flag) = kind(user);
        let now = manager.render(&spec(ctx, user)?)?;
        let on_disk = std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        println!("installed: {what}, {}", path.display());
        if manager.running() && manager == Manager::Systemd {
            systemctl(user, &["is-active", SYSTEMD_UNIT]);
        } else if !manager.running() {
            println!("state: unknown (the service manager is not running here)");
        }
        match crate::home_lock::holder(&ctx.home) {
            Some(who) => println!("this home is served by {who}"),
            None => println!("no server runs on this home now"),
        }
        if on_disk != now {
            eprintln!(
                "{what} differs from what this configuration would write: run `maestra service \
                 install{flag}` again"
            );
            ok = false;
        } else {
            println!("{what} matches this configuration");
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
