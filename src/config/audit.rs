//! The `[audit]` section (SPEC §2.3): where the log lives, how long it is kept, and whether a
//! request may proceed when its entry cannot be written.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::validate::{self, MAX_AUDIT_QUEUE, MAX_RETENTION_DAYS};
use super::{Lookup, names, report};
use crate::error::{Error, Result};

const DEFAULT_RETENTION_DAYS: u32 = 90;
/// Entries the writer may hold before a request waits (or, fail-closed, is refused).
const DEFAULT_QUEUE_CAPACITY: usize = 16_384;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditFile {
    path: Option<PathBuf>,
    retention_days: Option<u32>,
    fail_closed: Option<bool>,
    queue_capacity: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub path: PathBuf,
    pub retention_days: u32,
    pub fail_closed: bool,
    pub queue_capacity: usize,
}

/// Reads the section, the environment over the file; a relative path is under the home.
pub(super) fn load(e: &Lookup<'_>, file: AuditFile, home: &Path) -> Result<AuditConfig> {
    let path = e
        .get(names::AUDIT_LOG_PATH)
        .map(PathBuf::from)
        .or(file.path)
        .map(|p| if p.is_relative() { home.join(p) } else { p })
        .unwrap_or_else(|| home.join("logs").join("audit.log"));
    let path = if path.as_os_str().is_empty() || path.file_name().is_none() {
        Err(Error::Config(
            "audit.path (AUDIT_LOG_PATH) must name a file".into(),
        ))
    } else {
        Ok(path)
    };
    let retention_days = e.num(names::AUDIT_RETENTION_DAYS).and_then(|d| {
        validate::range(
            "audit.retention_days (AUDIT_LOG_RETENTION_DAYS)",
            d.or(file.retention_days).unwrap_or(DEFAULT_RETENTION_DAYS),
            1,
            MAX_RETENTION_DAYS,
        )
    });
    let fail_closed = e
        .bool(names::AUDIT_FAIL_CLOSED)
        .map(|b| b.or(file.fail_closed).unwrap_or(false));
    let queue_capacity = validate::range(
        "audit.queue_capacity",
        file.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY),
        1,
        MAX_AUDIT_QUEUE,
    );
    report(&[
        path.as_ref().err(),
        retention_days.as_ref().err(),
        fail_closed.as_ref().err(),
        queue_capacity.as_ref().err(),
    ])?;
    Ok(AuditConfig {
        path: path?,
        retention_days: retention_days?,
        fail_closed: fail_closed?,
        queue_capacity: queue_capacity?,
    })
}
