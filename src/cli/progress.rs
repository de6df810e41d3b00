//! Progress for long work (issue 25): the library's `(done, total)` callbacks drawn as an
//! indicatif bar on standard error when it is a terminal, and nothing at all when it is not
//! (a pipe, a file, a service's journal, a test harness), so piped output stays clean.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::Result;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Render {
    /// A bar redrawn in place on standard error.
    Bar,
    /// Nothing: not a byte of progress.
    Silent,
}

/// The renderer for a standard error that is (or is not) a terminal.
pub(crate) fn choose(stderr_is_terminal: bool) -> Render {
    if stderr_is_terminal {
        Render::Bar
    } else {
        Render::Silent
    }
}

/// A progress display for one piece of long work, labelled `label`.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar when standard error is a terminal, silence otherwise.
    pub(crate) fn new(label: &'static str) -> Progress {
        Progress::with(label, choose(std::io::stderr().is_terminal()))
    }

    pub(crate) fn with(label: &'static str, render: Render) -> Progress {
        let bar = match render {
            Render::Silent => None,
            Render::Bar => {
                // Hidden until the first count, so no empty "0/0" bar is drawn.
                let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
                let style = ProgressStyle::with_template("{msg}: [{bar:30}] {pos}/{len} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                bar.set_style(style);
                bar.set_message(label);
                Some(bar)
            }
        };
        Progress { bar }
    }

    /// `done` of `total` units are done; the bar ends (and stays, showing the count) at the
    /// total.
    pub(crate) fn update(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            let first = bar.is_hidden();
            bar.set_length(total);
            bar.set_position(done.min(total));
            if first {
                bar.set_draw_target(ProgressDrawTarget::stderr());
            }
            if done >= total {
                bar.finish();
            }
        }
    }

    #[cfg(test)]
    fn shows(&self) -> bool {
        self.bar.is_some()
    }
}

impl Drop for Progress {
    /// Work that stopped early (an error) leaves its bar where it stopped.
    fn drop(&mut self) {
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.abandon();
        }
    }
}

/// An activity indicator (spinner, label, time elapsed) for long work whose size the library
/// does not report in steps: drawn on a terminal, nothing otherwise; cleared when dropped.
pub(crate) struct Spinner {
    bar: Option<ProgressBar>,
}

impl Spinner {
    pub(crate) fn new(label: &'static str) -> Spinner {
        Spinner::with(label, choose(std::io::stderr().is_terminal()))
    }

    pub(crate) fn with(label: &'static str, render: Render) -> Spinner {
        let bar = match render {
            Render::Silent => None,
            Render::Bar => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                bar.set_style(style);
                bar.set_message(label);
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                Some(bar)
            }
        };
        Spinner { bar }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A `(done, total)` callback in `u64` (conversations, backups).
pub(crate) fn callback(label: &'static str) -> impl FnMut(u64, u64) -> Result<()> + Send {
    let progress = Progress::new(label);
    move |done, total| {
        progress.update(done, total);
        Ok(())
    }
}

/// A `(done, total)` callback in `usize` (the vault's rewrites, imports).
pub(crate) fn counter(label: &'static str) -> impl FnMut(usize, usize) -> Result<()> + Send {
    let mut inner = callback(label);
    move |done, total| inner(done as u64, total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_gets_a_bar_anything_else_nothing() {
        assert_eq!(choose(true), Render::Bar);
        assert_eq!(choose(false), Render::Silent);
        let silent = Progress::with("work", Render::Silent);
        assert!(!silent.shows());
        silent.update(1, 2);
        silent.update(2, 2);
        let bar = Progress::with("work", Render::Bar);
        assert!(bar.shows());
        assert!(Spinner::with("work", Render::Silent).bar.is_none());
        assert!(Spinner::with("work", Render::Bar).bar.is_some());
    }

    #[test]
    fn a_bar_finishes_at_the_total() {
        let bar = Progress::with("work", Render::Bar);
        bar.update(1, 3);
        assert!(!bar.bar.as_ref().unwrap().is_finished());
        bar.update(3, 3);
        assert!(bar.bar.as_ref().unwrap().is_finished());
        assert_eq!(bar.bar.as_ref().unwrap().position(), 3);
    }
}
