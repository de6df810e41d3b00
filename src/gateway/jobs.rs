//! Long actions the privacy center starts (an audit verify over a big log, a vault key
//! rotation, a device discovery run): each runs on its own task and is polled with `GET /api/jobs/{id}`, so the
//! request that starts it answers at once and the server never waits on it.
//!
//! One job of a kind runs at a time: starting another while one runs returns the running one.
//!
//! A user's export is that user's content in the clear, so its job does not keep it: the
//! first poll that finds it done takes the result away (later polls say it was handed out),
//! and forgetting the user through this server's API empties their export jobs, a running
//! one's result included. (A forget from the command line or another instance reaches only
//! the store: a finished export not yet collected waits here until it is polled or evicted.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::edge::ApiPath;
use super::state::Shared;
use crate::error::{Error, Result};

/// Jobs kept for polling; the oldest finished ones go first.
const KEEP: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    AuditVerify,
    VaultRotate,
    UserExport,
    ServiceDiscover,
}

impl Kind {
    /// Every kind, for the `Job` schema of `/openapi.json` (so the document cannot drift).
    pub const ALL: [Kind; 4] = [
        Kind::AuditVerify,
        Kind::VaultRotate,
        Kind::UserExport,
        Kind::ServiceDiscover,
    ];

    /// Whether a finished job's result is personal data, handed out once (see the module).
    fn hands_out_once(self) -> bool {
        self == Kind::UserExport
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AuditVerify => "audit_verify",
            Kind::VaultRotate => "vault_rotate",
            Kind::UserExport => "user_export",
            Kind::ServiceDiscover => "service_discover",
        }
    }
}

#[derive(Debug, Clone)]
enum Outcome {
    Running,
    Done(Value),
    Failed(Value),
    /// Done, and its personal result handed out or dropped (the reason).
    Emptied(&'static str),
}

/// A job's state, shared with the task doing it.
pub struct Job {
    id: String,
    kind: Kind,
    /// What the job is about when several of a kind may run (the user an export is of):
    /// a request joins a running job only of the same kind and subject.
    subject: Option<String>,
    started_at: String,
    done: AtomicU64,
    total: AtomicU64,
    outcome: Mutex<(Outcome, Option<String>)>,
}

impl Job {
    /// Progress: `done` of `total` steps (files, secrets).
    pub fn progress(&self, done: usize, total: usize) {
        self.done.store(done as u64, Ordering::Relaxed);
        self.total.store(total as u64, Ordering::Relaxed);
    }

    fn finish(&self, outcome: Outcome) {
        let mut o = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        // A job emptied while it ran (its user forgotten) keeps nothing of what it read.
        if !matches!(o.0, Outcome::Emptied(_)) {
            *o = (outcome, Some(now()));
        }
    }

    /// Drops what the job holds of a user's data, finished or not.
    fn empty(&self, why: &'static str) {
        let mut o = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        o.0 = Outcome::Emptied(why);
    }

    fn running(&self) -> bool {
        matches!(
            self.outcome
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .0,
            Outcome::Running
        )
    }

    /// The job as the API shows it; a personal result leaves the job with the first answer
    /// that carries it.
    pub fn to_json(&self) -> Value {
        let (outcome, finished_at) = {
            let mut o = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
            let shown = o.clone();
            if self.kind.hands_out_once() && matches!(o.0, Outcome::Done(_)) {
                o.0 = Outcome::Emptied("handed out");
            }
            shown
        };
        let (state, result, error) = match outcome {
            Outcome::Running => ("running", Value::Null, Value::Null),
            Outcome::Done(v) => ("done", v, Value::Null),
            Outcome::Failed(e) => ("failed", Value::Null, e),
            Outcome::Emptied(why) => ("done", json!({"emptied": why}), Value::Null),
        };
        json!({
            "id": self.id,
            "kind": self.kind.as_str(),
            "state": state,
            "started_at": self.started_at,
            "finished_at": finished_at,
            "progress": {"done": self.done.load(Ordering::Relaxed), "total": self.total.load(Ordering::Relaxed)},
            "result": result,
            "error": error,
        })
    }
}

#[derive(Default)]
pub struct Jobs {
    all: Mutex<Vec<Arc<Job>>>,
}

impl Jobs {
    /// The running job of `kind`, else a new one and whether it is new (the caller starts it).
    pub fn start(&self, kind: Kind) -> (Arc<Job>, bool) {
        self.start_for(kind, None)
    }

    /// [`Jobs::start`] for one subject of `kind` (see [`Job`]'s `subject`).
    pub fn start_for(&self, kind: Kind, subject: Option<&str>) -> (Arc<Job>, bool) {
        let mut all = self.all.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(j) = all
            .iter()
            .find(|j| j.kind == kind && j.subject.as_deref() == subject && j.running())
        {
            return (j.clone(), false);
        }
        if all.len() >= KEEP
            && let Some(at) = all.iter().position(|j| !j.running())
        {
            all.remove(at);
        }
        let job = Arc::new(Job {
            id: format!("job_{}", uuid::Uuid::new_v4().simple()),
            kind,
            subject: subject.map(str::to_owned),
            started_at: now(),
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            outcome: Mutex::new((Outcome::Running, None)),
        });
        all.push(job.clone());
        (job, true)
    }

    /// The newest job of `kind`.
    pub fn latest(&self, kind: Kind) -> Option<Arc<Job>> {
        let all = self.all.lock().unwrap_or_else(PoisonError::into_inner);
        all.iter().rev().find(|j| j.kind == kind).cloned()
    }

    /// Forget: empties every job holding `user`'s data (see the module).
    pub fn forget(&self, user: &str) {
        let all = self.all.lock().unwrap_or_else(PoisonError::into_inner);
        for j in all
            .iter()
            .filter(|j| j.kind.hands_out_once() && j.subject.as_deref() == Some(user))
        {
            j.empty("user forgotten");
        }
    }

    fn get(&self, id: &str) -> Option<Arc<Job>> {
        let all = self.all.lock().unwrap_or_else(PoisonError::into_inner);
        all.iter().find(|j| j.id == id).cloned()
    }
}

fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Runs `work` for `job` on its own task, recording how it ended.
pub fn spawn<F>(job: Arc<Job>, work: F)
where
    F: Future<Output = Result<Value>> + Send + 'static,
{
    tokio::spawn(async move {
        let outcome = match work.await {
            Ok(v) => Outcome::Done(v),
            Err(e) => Outcome::Failed(e.body()["error"].clone()),
        };
        job.finish(outcome);
    });
}

/// Rotates the vault key with a vault of its own on the same store and key file (the server's
/// vault re-reads the key file when it changes, as after `maestra vault rotate-key`), on a
/// blocking thread: the rotation's progress callback is not `Send`.
pub async fn rotate_vault(
    path: std::path::PathBuf,
    store: Arc<dyn crate::store::Store>,
    job: Arc<Job>,
) -> Result<crate::privsec::vault::Rewrite> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        handle.block_on(async move {
            let keys = crate::privsec::keyring::Keyring::load(None, &path)?;
            let mut vault = crate::privsec::vault::Vault::new(keys, store);
            let mut progress = |d: usize, t: usize| -> Result<()> {
                job.progress(d, t);
                Ok(())
            };
            vault.rotate_key(&mut progress).await
        })
    })
    .await
    .map_err(|e| Error::Vault("the key rotation stopped unexpectedly".into()).because(e))?
}

/// `GET /api/jobs/{id}`.
pub(super) async fn get(
    State(_state): State<Shared>,
    Extension(jobs): Extension<Arc<Jobs>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>> {
    jobs.get(&id).map(|j| Json(j.to_json())).ok_or_else(|| {
        let shown: String = id.chars().take(64).collect();
        Error::NotFound(format!("no job {shown:?}"))
    })
}
