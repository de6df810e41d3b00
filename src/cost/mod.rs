//! Cost guardrails (SPEC §2.4).
//!
//! - `pricing` — USD per million tokens per model; local models cost nothing

pub mod pricing;
