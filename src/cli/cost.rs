//! `maestra cost report`: spend per day, model or user with bars, or the machine-readable
//! `{"daily": {...}, "monthly": {...}}` with `--json`.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use super::Context;
use crate::cost::budget::Budget;
use crate::cost::report::{self, GroupBy};
use crate::error::Result;

#[derive(Debug, Subcommand)]
pub enum CostCommand {
    /// Spend so far, against the limits.
    Report {
        /// Days of history to show (1 to 36,600: a century, so the date arithmetic always holds).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=36_600))]
        days: u32,
        #[arg(long, value_enum, default_value_t = GroupBy::Day)]
        by: GroupBy,
        /// Print the daily and monthly status as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config_file: Option<&Path>, cmd: CostCommand) -> Result<ExitCode> {
    let ctx = Context::load(config_file, false)?;
    let store = ctx.store().await?;
    let budget = Budget::new(&ctx.config, store.clone());
    let CostCommand::Report { days, by, json } = cmd;
    let status = budget.status().await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let since = time::OffsetDateTime::now_utc().date() - time::Duration::days(i64::from(days));
    let since = format!(
        "{:04}-{:02}-{:02}",
        since.year(),
        since.month() as u8,
        since.day()
    );
    let charges = store.cost_charges(&since).await?;
    print!("{}", report::render(&report::group(&charges, by), 40));
    for period in ["daily", "monthly"] {
        let p = &status[period];
        println!(
            "{period:<8} spent ${:.4} + ${:.4} reserved of ${:.2}; resets {}",
            p["spent_usd"].as_f64().unwrap_or(0.0),
            p["reserved_usd"].as_f64().unwrap_or(0.0),
            p["limit_usd"].as_f64().unwrap_or(0.0),
            p["resets_at"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}
