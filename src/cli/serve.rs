//! `maestra serve`: parse the flags, build the [`App`], answer until a signal.

use std::path::Path;
use std::process::ExitCode;

use super::Context;
use crate::app::App;
use crate::config::Mode;
use crate::error::Result;

pub async fn run(config_file: Option<&Path>, bind: Option<String>) -> Result<ExitCode> {
    let mut ctx = Context::load(config_file, false)?;
    if let Some(b) = bind {
        ctx.config.bind = b;
    }
    init_logging(&ctx.config.log);
    let app = App::build(ctx.config.clone()).await?;
    announce(&ctx, &app);
    app.serve(shutdown_signal()).await?;
    eprintln!("maestra: stopped; audit log flushed");
    Ok(ExitCode::SUCCESS)
}

fn announce(ctx: &Context, app: &App) {
    let c = &ctx.config;
    println!("maestra listening on {}", app.url());
    println!("  home         {}", ctx.home.root.display());
    if c.uses_postgres() {
        println!("  storage      postgresql (MAESTRA_DB_URL)");
    } else {
        println!("  storage      {}", ctx.home.db().display());
    }
    println!("  audit log    {}", c.audit.path.display());
    println!(
        "  mode         {}{}",
        if c.mode == Mode::Cloud {
            "cloud"
        } else {
            "local"
        },
        if c.local_only { ", local-only" } else { "" }
    );
    println!("  local model  {}", c.local_model_url);
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn init_logging(filter: &str) {
    // Libraries stay quiet below warnings: their debug output can carry URLs and headers.
    let spec = format!("sqlx=warn,hyper=warn,reqwest=warn,{filter}");
    let filter = tracing_subscriber::EnvFilter::try_new(spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
