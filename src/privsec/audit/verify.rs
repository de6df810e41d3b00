//! `audit verify`: walks the chain through every rotated day and the live file and names the
//! first line that was changed, inserted or removed, and a tail that was cut off.

use std::path::{Path, PathBuf};

use super::chain::{ChainKey, Mark, OpenError};
use super::files::{LogFiles, read_all};
use super::writer::{HEAD_LOST_ACTION, parse_prev, parse_seq};
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line number within `file`; 0 when the problem is not one line (a cut tail).
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{} line {}: {}",
                self.file.display(),
                self.line,
                self.message
            )
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub files: usize,
    pub entries: u64,
    pub last: Option<(u64, String)>,
    pub problem: Option<Problem>,
    /// Set when a cut tail cannot be ruled out: the head record is missing or not authentic
    /// now, or the chain records that it was when writing resumed. Without
    /// [`Options::allow_missing_head`] this is also the `problem`.
    pub head_warning: Option<String>,
}

/// What `verify` may accept.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Accept a log whose head record is (or once was) missing, reporting loudly that its tail
    /// cannot be checked. Deleting the head is how a cut tail would be hidden, so by default
    /// a missing head fails verification like any other tampering.
    pub allow_missing_head: bool,
}

/// Verifies strictly: a missing head is a failure.
pub fn verify(path: &Path, key: &ChainKey) -> Result<Report> {
    verify_with(path, key, Options::default())
}

pub fn verify_with(path: &Path, key: &ChainKey, options: Options) -> Result<Report> {
    verify_observed(path, key, options, &|_, _| {})
}

/// [`verify_with`], calling `progress(files_done, files_total)` before each file, so a long
/// verify (the privacy center's) can show how far it got.
pub fn verify_observed(
    path: &Path,
    key: &ChainKey,
    options: Options,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Report> {
    let files = LogFiles::new(path);
    let mut sources: Vec<PathBuf> = files.rotated()?.into_iter().map(|r| r.path).collect();
    sources.push(files.live());

    let mut expected = match std::fs::read_to_string(files.anchor()) {
        Ok(text) => match Mark::decode(&text, key, "anchor") {
            Some(m) => m,
            None => {
                return Ok(problem_report(
                    files.anchor(),
                    0,
                    "the anchor record is not authentic (changed or forged)".into(),
                ));
            }
        },
        Err(_) => Mark::genesis(),
    };
    let mut report = Report::default();
    // The first entry saying the head was gone when writing resumed.
    let mut head_lost: Option<(PathBuf, usize, u64)> = None;
    for (done, src) in sources.iter().enumerate() {
        progress(done, sources.len());
        let text = read_all(src)?;
        if text.is_empty() {
            continue;
        }
        report.files += 1;
        if text.last() != Some(&b'\n') {
            let line = text.split(|b| *b == b'\n').count();
            report.problem = Some(Problem {
                file: src.clone(),
                line,
                message: "the last line is incomplete (cut off mid-entry)".into(),
            });
            return Ok(report);
        }
        let lines: Vec<&[u8]> = text[..text.len() - 1].split(|b| *b == b'\n').collect();
        let opened = open_all(key, &lines);
        for (i, (line, opened)) in lines.iter().zip(opened).enumerate() {
            let at = |message: String| Problem {
                file: src.clone(),
                line: i + 1,
                message,
            };
            let hash = match opened {
                Ok(h) => h,
                Err(OpenError::Malformed) => {
                    report.problem =
                        Some(at("not a sealed audit entry (changed or inserted)".into()));
                    return Ok(report);
                }
                Err(OpenError::BadHash) => {
                    report.problem = Some(at("its hash does not match: the line was changed, or inserted by someone without the audit key".into()));
                    return Ok(report);
                }
            };
            let body = &line[..line.len() - (64 + 2 + 9)];
            let (Some(seq), Some(prev)) = (parse_seq(body), parse_prev(body)) else {
                report.problem = Some(at("an authentic line without seq or prev_hash".into()));
                return Ok(report);
            };
            if seq != expected.seq + 1 || prev != expected.hash {
                let message = if seq > expected.seq + 1 {
                    format!(
                        "entries {}..={} are missing before this line (removed)",
                        expected.seq + 1,
                        seq - 1
                    )
                } else if seq <= expected.seq {
                    format!(
                        "seq {seq} repeats or goes back after {} (line inserted or reordered)",
                        expected.seq
                    )
                } else {
                    "prev_hash does not match the line before (chain broken)".to_string()
                };
                report.problem = Some(at(message));
                return Ok(report);
            }
            if head_lost.is_none() && records_head_loss(line) {
                head_lost = Some((src.clone(), i + 1, seq));
            }
            expected = Mark {
                seq,
                hash: hash.to_string(),
            };
            report.entries += 1;
        }
    }
    progress(sources.len(), sources.len());
    report.last = Some((expected.seq, expected.hash.clone()));
    let head = files.head();
    let head_text = std::fs::read_to_string(&head);
    let unvouched = match head_text.map(|t| Mark::decode(&t, key, "head")) {
        Ok(Some(mark)) if mark.seq > expected.seq => {
            report.problem = Some(Problem {
                file: files.live(),
                line: 0,
                message: format!(
                    "the tail was cut: the log ends at seq {} but entries up to seq {} were written",
                    expected.seq, mark.seq
                ),
            });
            return Ok(report);
        }
        Ok(Some(mark)) if mark.seq == expected.seq && mark.hash != expected.hash => {
            report.problem = Some(Problem {
                file: files.live(),
                line: 0,
                message: format!(
                    "the last entry (seq {}) is not the one that was written",
                    mark.seq
                ),
            });
            return Ok(report);
        }
        Ok(Some(_)) => None,
        // With no entry anywhere there is no tail to vouch for.
        _ if expected == Mark::genesis() => None,
        Ok(None) => Some(Problem {
            file: head,
            line: 0,
            message: "the head record is not authentic (changed, forged or damaged), so a cut \
                      tail cannot be ruled out"
                .into(),
        }),
        Err(_) => Some(Problem {
            file: head,
            line: 0,
            message: "the head record is missing, so a cut tail cannot be ruled out".into(),
        }),
    };
    let recorded = head_lost.map(|(file, line, seq)| Problem {
        file,
        line,
        message: format!(
            "the head record was gone when writing resumed at seq {seq}: entries before it may \
             have been cut off"
        ),
    });
    if let Some(p) = unvouched.or(recorded) {
        report.head_warning = Some(p.to_string());
        if !options.allow_missing_head {
            report.problem = Some(p);
        }
    }
    Ok(report)
}

/// Whether a sealed line is the writer's record of a lost head. Only an authentic line gets
/// here, and only Maestra's writer makes one with this service and action.
fn records_head_loss(line: &[u8]) -> bool {
    const NEEDLE: &str = "\"category\":\"admin\",\"service\":\"audit\",\"action\":\"";
    std::str::from_utf8(line).is_ok_and(|l| {
        l.match_indices(NEEDLE)
            .any(|(at, _)| l[at + NEEDLE.len()..].starts_with(HEAD_LOST_ACTION))
    })
}

fn problem_report(file: PathBuf, line: usize, message: String) -> Report {
    Report {
        problem: Some(Problem {
            file,
            line,
            message,
        }),
        ..Report::default()
    }
}

/// Checks every line's HMAC, spread over the machine's cores (the chain links are then checked
/// in order, which is cheap).
fn open_all<'a>(
    key: &ChainKey,
    lines: &[&'a [u8]],
) -> Vec<std::result::Result<&'a str, OpenError>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || lines.len() < 4096 {
        return lines.iter().map(|l| key.open(l)).collect();
    }
    let chunk = lines.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = lines
            .chunks(chunk)
            .map(|part| {
                let n = part.len();
                (
                    n,
                    s.spawn(move || part.iter().map(|l| key.open(l)).collect::<Vec<_>>()),
                )
            })
            .collect();
        handles
            .into_iter()
            // A worker that died checked nothing: its lines count as unverified.
            .flat_map(|(n, h)| {
                h.join()
                    .unwrap_or_else(|_| vec![Err(OpenError::Malformed); n])
            })
            .collect()
    })
}
