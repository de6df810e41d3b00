//! `maestra serve`: parse the flags, build the [`App`], answer until a signal.

use std::net::SocketAddr;
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
    println!(
        "  local model  {}",
        crate::providers::shown_url(&c.local_model_url)
    );
    let https = app.url().starts_with("https://");
    println!(
        "open {} to see what your assistant does",
        page_url(https, app.local_addr())
    );
}

/// The privacy center's address as a browser on this machine opens it: the bound address and
/// scheme, with a wildcard address (`0.0.0.0`, `[::]`) replaced by the loopback one.
fn page_url(https: bool, mut addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        let loopback: std::net::IpAddr = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        addr.set_ip(loopback);
    }
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{addr}/")
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

pub(super) fn init_logging(filter: &str) {
    // Libraries stay quiet below warnings: their debug output can carry URLs and headers, and
    // rmcp's logs every notification a tool server sends (and at debug every call's arguments
    // and result), which the audit log keeps only as digests.
    let spec = format!("sqlx=warn,hyper=warn,reqwest=warn,rmcp=warn,{filter}");
    let filter = tracing_subscriber::EnvFilter::try_new(spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::page_url;

    #[test]
    fn the_page_url_is_one_a_browser_here_opens() {
        let url = |https, addr: &str| page_url(https, addr.parse().unwrap());
        assert_eq!(url(false, "127.0.0.1:8825"), "http://127.0.0.1:8825/");
        assert_eq!(url(true, "10.0.0.5:443"), "https://10.0.0.5:443/");
        assert_eq!(url(true, "0.0.0.0:8825"), "https://127.0.0.1:8825/");
        assert_eq!(url(false, "[::]:8825"), "http://[::1]:8825/");
    }
}
