//! `maestra privacy ...`: what minimisation withholds from cloud calls (SPEC §2.12) — a dry
//! run on any text (`test`), and the person's own list of names (`names`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use serde_json::{Value, json};

use super::Context;
use crate::error::{Error, Result};
use crate::minimise::known::{Known, MAX_NAMES};
use crate::minimise::{Finder, Kind, Level, Withholding};
use crate::privsec::audit::{Category, Event, Outcome};

/// Longest text `test` reads (one argument, or one line of `--jsonl`).
const MAX_TEXT: usize = 1 << 20;
/// Largest vCard file `names import` reads.
const MAX_VCF: u64 = 16 << 20;

#[derive(Debug, Subcommand)]
pub enum PrivacyCommand {
    /// Show what a cloud call would withhold from TEXT, and the text the cloud would see.
    Test {
        /// The text; standard input when left out.
        text: Option<String>,
        /// How much to withhold (a provider's `minimise` setting).
        #[arg(long, default_value = "standard", value_parser = parse_level)]
        level: Level,
        /// One JSON object: the finds (kind, character offsets, value) and the text sent.
        #[arg(long, conflicts_with = "jsonl")]
        json: bool,
        /// Many texts: each line of standard input a JSON string, each line of output
        /// `{"withheld":[{"type","start","end"}]}` (offsets in characters).
        #[arg(long)]
        jsonl: bool,
    },
    /// The names withheld from cloud calls (kept in the vault, encrypted).
    #[command(subcommand)]
    Names(NamesCommand),
}

#[derive(Debug, Subcommand)]
pub enum NamesCommand {
    /// Add names ("Ann Lee").
    Add {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove names.
    Remove {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List the names.
    List,
    /// Add the names of a vCard file's contacts (their FN, formatted names).
    Import {
        #[arg(long)]
        vcf: PathBuf,
    },
}

fn parse_level(s: &str) -> std::result::Result<Level, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

pub async fn run(config_file: Option<&Path>, cmd: PrivacyCommand) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    let store = ctx.store().await?;
    let vault = crate::privsec::vault::Vault::new(ctx.keyring()?, store.clone());
    let known = Known::new(Arc::new(vault), store);
    match cmd {
        PrivacyCommand::Test {
            text,
            level,
            json,
            jsonl,
        } => {
            let finder = known.finder().await?;
            if jsonl {
                test_lines(&finder, level)
            } else {
                let text = match text {
                    Some(t) => t,
                    None => read_stdin()?,
                };
                test_one(&finder, level, &text, json)
            }
        }
        PrivacyCommand::Names(cmd) => {
            let action = match &cmd {
                NamesCommand::Add { .. } => "privacy.names.add",
                NamesCommand::Remove { .. } => "privacy.names.remove",
                NamesCommand::List => "privacy.names.list",
                NamesCommand::Import { .. } => "privacy.names.import",
            };
            let result = names(&known, cmd).await;
            // Counts only: the names are the person's data.
            let mut event = Event::new(
                Category::Admin,
                "privacy",
                action,
                if result.is_ok() {
                    Outcome::Success
                } else {
                    Outcome::Failed
                },
            );
            match &result {
                Ok(count) => event = event.detail("names", *count),
                Err(e) => event = event.detail("error", e.code()),
            }
            ctx.audit(event).await?;
            result.map(|_| ExitCode::SUCCESS)
        }
    }
}

fn read_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(std::io::stdin(), MAX_TEXT as u64 + 1),
        &mut text,
    )
    .map_err(|e| Error::io("cannot read standard input", e))?;
    if text.len() > MAX_TEXT {
        return Err(Error::TooLarge("the text is larger than 1 MiB".into()));
    }
    Ok(text)
}

/// A find as `test` shows it: character offsets, and the value unless it is a secret.
fn shown(text: &str, f: &crate::minimise::Found, with_value: bool) -> Value {
    let start = text[..f.range.start].chars().count();
    let end = start + text[f.range.clone()].chars().count();
    let mut v = json!({"type": f.kind, "start": start, "end": end});
    if with_value && f.kind != Kind::Secret {
        v["value"] = json!(&text[f.range.clone()]);
    }
    v
}

fn test_one(finder: &Finder, level: Level, text: &str, json: bool) -> Result<ExitCode> {
    if text.len() > MAX_TEXT {
        return Err(Error::TooLarge("the text is larger than 1 MiB".into()));
    }
    let found = finder.find(text, level);
    let mut w = Withholding::new(finder.clone(), level);
    w.note(text);
    let sent = w.withhold(text)?;
    let mut out = std::io::stdout().lock();
    let io = |e| Error::io(super::STDOUT_WRITE, e);
    if json {
        let finds: Vec<Value> = found.iter().map(|f| shown(text, f, true)).collect();
        let doc = json!({"level": level, "withheld": finds, "counts": w.counts(), "sent": sent});
        writeln!(out, "{doc}").map_err(io)?;
        return Ok(ExitCode::SUCCESS);
    }
    if found.is_empty() {
        writeln!(out, "nothing would be withheld at {level}").map_err(io)?;
    } else {
        writeln!(out, "withheld at {level}: {}", found.len()).map_err(io)?;
        for f in &found {
            let value = match f.kind {
                Kind::Secret => "(a secret: not shown)".to_string(),
                _ => text[f.range.clone()].escape_debug().to_string(),
            };
            writeln!(out, "  {:<8} {value}", f.kind.as_str()).map_err(io)?;
        }
    }
    writeln!(out, "the cloud would see:\n{sent}").map_err(io)?;
    Ok(ExitCode::SUCCESS)
}

fn test_lines(finder: &Finder, level: Level) -> Result<ExitCode> {
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let io = |e| Error::io(super::STDOUT_WRITE, e);
    for (n, line) in stdin.lines().enumerate() {
        let line = line.map_err(|e| Error::io("cannot read standard input", e))?;
        if line.len() > MAX_TEXT {
            return Err(Error::TooLarge(format!(
                "line {} is larger than 1 MiB",
                n + 1
            )));
        }
        let text: String = serde_json::from_str(&line)
            .map_err(|_| Error::BadRequest(format!("line {} is not a JSON string", n + 1)))?;
        let finds: Vec<Value> = finder
            .find(&text, level)
            .iter()
            .map(|f| shown(&text, f, false))
            .collect();
        writeln!(out, "{}", json!({"withheld": finds})).map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs a `names` command; the list's length after it, for the audit entry.
async fn names(known: &Known, cmd: NamesCommand) -> Result<usize> {
    let mut list = known.names().await?;
    let mut out = std::io::stdout().lock();
    let io = |e| Error::io(super::STDOUT_WRITE, e);
    match cmd {
        NamesCommand::List => {
            for n in &list {
                writeln!(out, "{n}").map_err(io)?;
            }
            Ok(list.len())
        }
        NamesCommand::Add { names } => {
            let before = list.len();
            for n in names {
                list.push(crate::minimise::known::check_name(&n)?);
            }
            known.set_names(list).await?;
            let after = known.names().await?.len();
            writeln!(
                out,
                "added {} name(s); the list holds {after}",
                after - before
            )
            .map_err(io)?;
            Ok(after)
        }
        NamesCommand::Remove { names } => {
            let gone: Vec<String> = names
                .iter()
                .map(|n| crate::minimise::known::check_name(n))
                .collect::<Result<_>>()?;
            let before = list.len();
            list.retain(|n| !gone.iter().any(|g| g.eq_ignore_ascii_case(n)));
            let after = list.len();
            known.set_names(list).await?;
            writeln!(
                out,
                "removed {} name(s); the list holds {after}",
                before - after
            )
            .map_err(io)?;
            Ok(after)
        }
        NamesCommand::Import { vcf } => {
            let found = vcard_names(&vcf)?;
            let before = list.len();
            list.extend(found);
            if list.len() > MAX_NAMES * 2 {
                return Err(Error::TooLarge(format!(
                    "the names list holds at most {MAX_NAMES} names"
                )));
            }
            known.set_names(list).await?;
            let after = known.names().await?.len();
            writeln!(
                out,
                "imported {} name(s) from {}; the list holds {after}",
                after - before,
                vcf.display()
            )
            .map_err(io)?;
            Ok(after)
        }
    }
}

/// The formatted name (FN) of each contact of a vCard file (3.0 or 4.0).
fn vcard_names(path: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?
        .len();
    if len > MAX_VCF {
        return Err(Error::TooLarge(format!(
            "{} is larger than {} MiB",
            path.display(),
            MAX_VCF >> 20
        )));
    }
    let reader = std::io::BufReader::new(file);
    let mut names = Vec::new();
    for (n, card) in ical::VcardParser::new(reader).enumerate() {
        let card = card.map_err(|e| {
            Error::BadRequest(format!(
                "{} is not a vCard file (contact {}): {e}",
                path.display(),
                n + 1
            ))
        })?;
        for p in card.properties {
            if p.name.eq_ignore_ascii_case("FN")
                && let Some(v) = p.value
                && let Ok(name) = crate::minimise::known::check_name(&v)
            {
                names.push(name);
            }
        }
    }
    Ok(names)
}
