//! The size every tool's answer is held to, whichever way it came (a program, a `url` server,
//! a personal service): below the modules that read answers, so they share one figure.

/// The largest result passed on to the assistant; a larger one is refused, not cut (a cut
/// JSON document would mislead more than it tells).
pub const MAX_RESULT_BYTES: usize = 4 * 1024 * 1024;
