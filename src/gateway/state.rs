//! What every stage and handler shares: the state built once at start.
//!
//! A file of its own, below every stage and handler that takes it, so none of them imports
//! the module that declares them (`gateway/mod.rs`).

use crate::minimise::known::Known;
use std::sync::Arc;
use std::time::Instant;

use super::calls::Calls;
use crate::access::Access;
use crate::config::Config;
use crate::cost::budget::Budget;
use crate::egress::Egress;
use crate::mcp::Upstreams;
use crate::mcp::approvals::Approvals;
use crate::metrics::Metrics;
use crate::privsec::audit::AuditLog;
use crate::privsec::vault::Vault;
use crate::providers::Providers;
use crate::store::Store;

/// Everything a request may touch, built once at start and shared.
pub struct AppState {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub vault: Arc<Vault>,
    pub audit: AuditLog,
    pub egress: Egress,
    pub providers: Providers,
    pub metrics: Metrics,
    pub budget: Budget,
    pub access: Access,
    pub started: Instant,
    /// The tasks of paid calls (whole answers and stream relays), which outlive their requests
    /// so that each call is settled and audited whatever its client does: shutdown waits for
    /// them before the store and the audit log close.
    pub calls: Calls,
    /// The tool servers the person added (`[mcp.servers]`), started on first use.
    pub tools: Upstreams,
    /// The vault's secrets and the person's names, which minimisation withholds from cloud
    /// calls (SPEC §2.12).
    pub known: Known,
    /// Calls of `ask` tools waiting for the person's decision.
    pub approvals: Approvals,
}

pub type Shared = Arc<AppState>;
