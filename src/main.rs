//! The `maestra` binary: parse the command line, run it, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    maestra::cli::exit_quietly_on_broken_pipe();
    // Before the runtime's threads exist (see `cli::before_runtime`).
    if let Some(code) = maestra::cli::before_runtime() {
        return code;
    }
    let cli = maestra::cli::Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("maestra: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(maestra::cli::run(cli)) {
        Ok(code) => code,
        // `maestra ... | head`: the reader has what it wanted.
        Err(e) if maestra::cli::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("maestra: {}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}
