//! `maestra vault ...`: secrets in, secrets out (only with `--reveal`), keys rotated.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::Context;
use crate::error::{Error, Result};
use crate::privsec::audit::{Category, Event, Outcome};

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Store a secret; the value is read from standard input, less one trailing newline.
    Put { name: String },
    /// Show a secret's value (only with --reveal).
    Get {
        name: String,
        #[arg(long)]
        reveal: bool,
    },
    /// List secret names (never values).
    List,
    /// Delete a secret.
    Delete { name: String },
    /// Encrypt standard input to a Fernet token with the primary key.
    Encrypt,
    /// Decrypt a Fernet token from standard input with any configured key.
    Decrypt {
        /// Refuse tokens older than this many seconds.
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Make a new primary key and re-encrypt every secret (resumes an interrupted run).
    RotateKey,
    /// Encrypt legacy plaintext secrets.
    Migrate,
}

/// Standard input, bounded, with exactly one trailing newline (`\n` or `\r\n`) dropped, as
/// password stores do: `echo tok | maestra vault put X` stores `tok`. Says whether one was.
fn read_stdin(what: &str) -> Result<(Zeroizing<Vec<u8>>, bool)> {
    const MAX: u64 = 1 << 20;
    let mut buf = Zeroizing::new(Vec::new());
    std::io::stdin()
        .take(MAX + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("cannot read standard input", e))?;
    if buf.len() as u64 > MAX {
        return Err(Error::BadRequest(format!("{what} is larger than 1 MiB")));
    }
    let stripped = buf.ends_with(b"\n");
    if stripped {
        buf.pop();
        if buf.ends_with(b"\r") {
            buf.pop();
        }
    }
    if buf.is_empty() {
        return Err(Error::BadRequest(format!(
            "{what} on standard input is empty"
        )));
    }
    Ok((buf, stripped))
}

/// The note a command adds when it dropped the input's trailing newline.
const NEWLINE_NOTE: &str = "one trailing newline of the input was left out \
                            (to keep it, end the input with two)";

fn admin(action: &str, outcome: Outcome) -> Event {
    Event::new(Category::Admin, "vault", action, outcome)
}

pub async fn run(config_file: Option<&Path>, cmd: VaultCommand) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    let result = dispatch(&ctx, &cmd).await;
    let (action, name) = match &cmd {
        VaultCommand::Put { name } => ("vault.put", Some(name)),
        VaultCommand::Get { name, .. } => ("vault.get", Some(name)),
        VaultCommand::List => ("vault.list", None),
        VaultCommand::Delete { name } => ("vault.delete", Some(name)),
        VaultCommand::Encrypt => ("vault.encrypt", None),
        VaultCommand::Decrypt { .. } => ("vault.decrypt", None),
        VaultCommand::RotateKey => ("vault.rotate_key", None),
        VaultCommand::Migrate => ("vault.migrate", None),
    };
    let outcome = if result.is_ok() {
        Outcome::Success
    } else {
        Outcome::Failed
    };
    let mut event = admin(action, outcome);
    if let Some(n) = name {
        event = event.detail("name", n.as_str());
    }
    if let Err(e) = &result {
        // Error messages never contain values, only names and reasons.
        event = event.detail("error", e.code());
    }
    ctx.audit(event).await?;
    result
}

async fn dispatch(ctx: &Context, cmd: &VaultCommand) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let io = |e| Error::io(super::STDOUT_WRITE, e);
    match cmd {
        VaultCommand::Put { name } => {
            crate::privsec::vault::validate_name(name)?;
            let (bytes, stripped) = read_stdin("the secret")?;
            let value = String::from_utf8(bytes.to_vec())
                // Dropped on purpose: a `FromUtf8Error` holds the secret's bytes.
                .map_err(|_| Error::BadRequest("the secret is not UTF-8 text".into()))?;
            ctx.vault()
                .await?
                .put(name, &SecretString::from(value))
                .await?;
            if stripped {
                eprintln!("stored {name:?} (encrypted); {NEWLINE_NOTE}");
            } else {
                eprintln!("stored {name:?} (encrypted)");
            }
        }
        VaultCommand::Get { name, reveal } => {
            let vault = ctx.vault().await?;
            let value = vault.get(name).await?;
            if *reveal {
                writeln!(out, "{}", value.expose_secret()).map_err(io)?;
            } else {
                eprintln!("{name:?} is set; add --reveal to print its value");
            }
        }
        VaultCommand::List => {
            for s in ctx.vault().await?.list().await? {
                let state = if s.encrypted {
                    "encrypted"
                } else {
                    "PLAINTEXT (run `maestra vault migrate`)"
                };
                writeln!(out, "{}\t{}\t{}", s.name, state, s.updated_at).map_err(io)?;
            }
        }
        VaultCommand::Delete { name } => {
            ctx.vault().await?.delete(name).await?;
            eprintln!("deleted {name:?}");
        }
        VaultCommand::Encrypt => {
            let (data, stripped) = read_stdin("the data")?;
            writeln!(out, "{}", ctx.keyring()?.encrypt(&data)).map_err(io)?;
            if stripped {
                eprintln!("encrypted; {NEWLINE_NOTE}");
            }
        }
        VaultCommand::Decrypt { ttl } => {
            let (token, _) = read_stdin("the token")?;
            let token = std::str::from_utf8(&token).map_err(|e| {
                Error::InvalidToken("not a Fernet token (not text)".into()).because(e)
            })?;
            let plain = ctx.keyring()?.decrypt(token.trim(), *ttl)?;
            out.write_all(&plain)
                .and_then(|_| out.flush())
                .map_err(io)?;
        }
        VaultCommand::RotateKey => {
            let mut vault = ctx.vault().await?;
            let mut progress = super::progress("re-encrypting");
            let report = vault.rotate_key(&mut progress).await?;
            let keys = vault.keys();
            eprintln!(
                "{} secret(s) re-encrypted, {} already under the new key{}; primary key {}",
                report.rewritten,
                report.already_done,
                if report.resumed {
                    " (resumed an interrupted rotation)"
                } else {
                    ""
                },
                keys.primary_id()
            );
            eprintln!(
                "{} user data key(s) re-wrapped (conversations need no re-encryption)",
                report.data_keys_rewrapped
            );
            if report.plaintext_left > 0 {
                eprintln!(
                    "{} legacy plaintext secret(s) left: run `maestra vault migrate`",
                    report.plaintext_left
                );
            }
            if keys.source == crate::privsec::keyring::KeySource::Environment && keys.len() > 1 {
                eprintln!(
                    "every secret is now under the first key of MAESTRA_ENCRYPTION_KEY; the others can be removed"
                );
            }
        }
        VaultCommand::Migrate => {
            let vault = ctx.vault().await?;
            let mut progress = super::progress("encrypting");
            let report = vault.migrate(&mut progress).await?;
            eprintln!("{} legacy plaintext secret(s) encrypted", report.rewritten);
        }
    }
    Ok(ExitCode::SUCCESS)
}
