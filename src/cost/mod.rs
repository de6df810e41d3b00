//! Cost guardrails (SPEC §2.4).
//!
//! - `pricing` — USD per million tokens per model; local models cost nothing
//! - `ledger`  — reservations, limits and charges in integer micro-USD
//! - `budget`  — the pipeline stage: reserve the worst case, settle the real usage
//! - `report`  — spend by day, model or user for `maestra cost report`

pub mod budget;
pub mod ledger;
pub mod pricing;
pub mod report;
