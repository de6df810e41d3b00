//! `maestra completions SHELL` and `maestra man [--dir DIR]`: shell completions and manual
//! pages, generated from the command line's own definition (clap), so they cannot fall behind
//! it. Neither needs a home or a configuration.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::error::{Error, Result};

/// The completion script for `shell` on standard output.
pub fn completions(shell: Shell) -> Result<ExitCode> {
    let mut cmd = super::Cli::command();
    let mut script = Vec::new();
    // Generated into memory: the generator panics on a failed write (a closed pipe).
    clap_complete::generate(shell, &mut cmd, "maestra", &mut script);
    to_stdout(&script)
}

/// maestra(1) on standard output, or with `dir` every page (`maestra.1`, `maestra-vault.1`,
/// `maestra-vault-put.1`, ...) written there.
pub fn man(dir: Option<&Path>) -> Result<ExitCode> {
    let cmd = super::Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .and_then(|()| clap_mangen::generate_to(cmd, dir))
                .map_err(|e| {
                    Error::io(format!("cannot write the pages to {}", dir.display()), e)
                })?;
            eprintln!("wrote the manual pages to {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .map_err(|e| Error::io("cannot render the manual page", e))?;
            to_stdout(&page)
        }
    }
}

fn to_stdout(bytes: &[u8]) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Error::io(super::STDOUT_WRITE, e))?;
    Ok(ExitCode::SUCCESS)
}
