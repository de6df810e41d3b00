//! What `maestra service install` writes: a hardened systemd unit (Linux) or a launchd
//! property list (macOS), both rendered from one [`ServiceSpec`] so they run the same command.
//!
//! Nothing secret goes into either file: they name the binary, the home and the configuration
//! file, and the server reads its keys from the vault and the key file as it does by hand.
//! Settings made only through environment variables in the shell that ran `install` are not
//! copied either (they may be secrets): put them in `maestra.toml`, and secrets in the key
//! file or the vault ([`SECRETS_GUIDANCE`]), never in the file backups copy.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The launchd label; the seed's deployment already uses it (`launchctl stop com.8825.maestra`).
pub const LAUNCHD_LABEL: &str = "com.8825.maestra";
/// The systemd unit's file name.
pub const SYSTEMD_UNIT: &str = "maestra.service";

/// The systemd settings that confine the server; `doctor` checks an installed unit has them.
pub const HARDENING: &[&str] = &[
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=read-only",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "UMask=0077",
];

/// Everything a service file says, in one place.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    /// The `maestra` binary, absolute.
    pub binary: PathBuf,
    /// `$MAESTRA_HOME`, absolute.
    pub home: PathBuf,
    /// The configuration file passed as `--config`.
    pub config_file: PathBuf,
    /// Paths the server writes outside its home (an audit log configured elsewhere).
    pub extra_writable: Vec<PathBuf>,
    /// A per-user service (systemd `--user`, a LaunchAgent) rather than a system one.
    pub user: bool,
    /// The account a system service runs as (numeric uid; systemd and launchd accept it).
    pub uid: u32,
}

impl ServiceSpec {
    /// The command line both files run.
    pub fn argv(&self) -> Vec<String> {
        vec![
            self.binary.display().to_string(),
            "serve".into(),
            "--config".into(),
            self.config_file.display().to_string(),
        ]
    }
}

/// A path as a quoted systemd word: `%` doubled (specifiers), quotes and backslashes and
/// control characters refused rather than escaped, so no path can end or change a directive.
fn systemd_word(what: &str, path: &Path) -> Result<String> {
    let text = path
        .to_str()
        .ok_or_else(|| Error::Config(format!("{what} {} is not UTF-8", path.display())))?;
    if !path.is_absolute()
        || text
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        return Err(Error::Config(format!(
            "{what} {text:?} must be an absolute path without quotes, backslashes or control \
             characters to be written into a systemd unit"
        )));
    }
    Ok(format!("\"{}\"", text.replace('%', "%%")))
}

/// What the unit says about secrets: none in it (`Environment=` lines are readable by anyone
/// who can run `systemctl show`), and none in `maestra.toml` either, whose copies go into
/// backups (without secrets unless `--with-keys`, but a key that is never in the file is
/// never at risk): the vault key in its key file, everything else in the vault.
pub const SECRETS_GUIDANCE: &str = "\
# No secret is written here, and none belongs in maestra.toml: the vault key stays in
# $MAESTRA_HOME/keys/vault.key (mode 0600), provider and service keys in the vault
# (`maestra vault put openai_api_key`, `anthropic_api_key`, a service's credential name).
# Never add an Environment= line with a key: unit settings are readable with `systemctl show`.
";

/// The systemd unit.
pub fn systemd_unit(spec: &ServiceSpec) -> Result<String> {
    let exec = [
        systemd_word("the maestra binary", &spec.binary)?,
        "serve".into(),
        "--config".into(),
        systemd_word("the configuration file", &spec.config_file)?,
    ]
    .join(" ");
    let home = systemd_word("MAESTRA_HOME", &spec.home)?;
    let mut writable = vec![home.clone()];
    for p in &spec.extra_writable {
        writable.push(systemd_word("a writable path", p)?);
    }
    let home_env = format!("\"MAESTRA_HOME={}\"", &home[1..home.len() - 1]);
    let mut out = String::new();
    out.push_str(
        "# Written by `maestra service install`; `maestra service uninstall` removes it.\n",
    );
    out.push_str(SECRETS_GUIDANCE);
    out.push_str("[Unit]\n");
    out.push_str("Description=Maestra, a local-first privacy backend for personal AI assistants\n");
    if !spec.user {
        out.push_str("After=network-online.target\nWants=network-online.target\n");
    }
    out.push_str("\n[Service]\nType=exec\n");
    out.push_str(&format!("ExecStart={exec}\n"));
    out.push_str(&format!("Environment={home_env}\n"));
    if !spec.user {
        out.push_str(&format!("User={}\n", spec.uid));
    }
    // SIGTERM is a graceful stop: the server writes everything queued before it exits.
    out.push_str("KillSignal=SIGTERM\nTimeoutStopSec=30\nRestart=on-failure\nRestartSec=2\n");
    for line in HARDENING {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!("ReadWritePaths={}\n", writable.join(" ")));
    let target = if spec.user {
        "default.target"
    } else {
        "multi-user.target"
    };
    out.push_str(&format!("\n[Install]\nWantedBy={target}\n"));
    Ok(out)
}

/// The launchd property list (XML), written with the `plist` crate so every value is escaped.
pub fn launchd_plist(spec: &ServiceSpec) -> Result<String> {
    use plist::{Dictionary, Value};
    let mut env = Dictionary::new();
    env.insert(
        "MAESTRA_HOME".into(),
        Value::String(spec.home.display().to_string()),
    );
    let mut keep_alive = Dictionary::new();
    // Restarted when it fails, not after a clean stop (`launchctl stop`).
    keep_alive.insert("SuccessfulExit".into(), Value::Boolean(false));
    let log = spec.home.join("logs").join("service.log");
    let mut d = Dictionary::new();
    d.insert("Label".into(), Value::String(LAUNCHD_LABEL.into()));
    d.insert(
        "ProgramArguments".into(),
        Value::Array(spec.argv().into_iter().map(Value::String).collect()),
    );
    d.insert("EnvironmentVariables".into(), Value::Dictionary(env));
    d.insert("RunAtLoad".into(), Value::Boolean(true));
    d.insert("KeepAlive".into(), Value::Dictionary(keep_alive));
    d.insert("Umask".into(), Value::Integer(0o077.into()));
    d.insert("ProcessType".into(), Value::String("Standard".into()));
    d.insert(
        "StandardOutPath".into(),
        Value::String(log.display().to_string()),
    );
    d.insert(
        "StandardErrorPath".into(),
        Value::String(log.display().to_string()),
    );
    if !spec.user {
        d.insert("UserName".into(), Value::String(spec.uid.to_string()));
    }
    let mut out = Vec::new();
    plist::to_writer_xml(&mut out, &Value::Dictionary(d)).map_err(|e| {
        Error::Config(format!("cannot write the launchd property list: {e}")).because(e)
    })?;
    String::from_utf8(out)
        .map_err(|_| Error::Config("the launchd property list is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(user: bool) -> ServiceSpec {
        ServiceSpec {
            binary: "/opt/maestra 1/bin/maestra".into(),
            home: "/home/ann/.8825".into(),
            config_file: "/home/ann/.8825/maestra.toml".into(),
            extra_writable: vec!["/var/log/maestra%x".into()],
            user,
            uid: 1000,
        }
    }

    #[test]
    fn the_unit_runs_serve_confined_to_its_home() {
        let unit = systemd_unit(&spec(false)).unwrap();
        assert!(unit.contains(
            "ExecStart=\"/opt/maestra 1/bin/maestra\" serve --config \"/home/ann/.8825/maestra.toml\"\n"
        ));
        assert!(unit.contains("Environment=\"MAESTRA_HOME=/home/ann/.8825\"\n"));
        assert!(unit.contains("ReadWritePaths=\"/home/ann/.8825\" \"/var/log/maestra%%x\"\n"));
        assert!(unit.contains("User=1000\n") && unit.contains("WantedBy=multi-user.target"));
        for line in HARDENING {
            assert!(unit.lines().any(|l| l == *line), "{line}");
        }
        let user = systemd_unit(&spec(true)).unwrap();
        assert!(!user.contains("User=") && user.contains("WantedBy=default.target"));
        // The guidance on secrets: the key file and the vault, never the unit.
        assert!(unit.contains(SECRETS_GUIDANCE) && unit.contains("keys/vault.key"));
        assert!(!unit.contains("Environment=\"MAESTRA_ENCRYPTION_KEY"));
    }

    /// The Debian package's unit (packaging/debian/) is written by hand, for a fixed account
    /// and home: it must confine the server exactly as the units written here do.
    #[test]
    fn the_packaged_unit_is_as_hardened_as_an_installed_one() {
        let packaged = include_str!("../../packaging/debian/maestra.service");
        for line in HARDENING {
            assert!(packaged.lines().any(|l| l == *line), "{line}");
        }
        assert!(packaged.contains("ReadWritePaths=/var/lib/maestra\n"));
        assert!(!packaged.contains("Environment=MAESTRA_ENCRYPTION_KEY"));
    }

    #[test]
    fn a_path_that_could_break_out_of_its_directive_is_refused() {
        for bad in [
            "/a\"b",
            "/a\nExecStartPre=/bin/sh",
            "relative/path",
            "/a\\b",
        ] {
            let mut s = spec(true);
            s.home = bad.into();
            assert!(systemd_unit(&s).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_plist_runs_the_same_command() {
        let mut s = spec(false);
        s.home = "/Users/a&b <c>".into();
        let xml = launchd_plist(&s).unwrap();
        let parsed: plist::Value = plist::from_bytes(xml.as_bytes()).unwrap();
        let d = parsed.as_dictionary().unwrap();
        assert_eq!(d["Label"].as_string(), Some(LAUNCHD_LABEL));
        let argv: Vec<&str> = d["ProgramArguments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_string().unwrap())
            .collect();
        assert_eq!(argv, s.argv());
        let env = d["EnvironmentVariables"].as_dictionary().unwrap();
        assert_eq!(env["MAESTRA_HOME"].as_string(), Some("/Users/a&b <c>"));
        assert_eq!(d["UserName"].as_string(), Some("1000"));
        assert_eq!(d["Umask"].as_signed_integer(), Some(0o077));
    }
}
