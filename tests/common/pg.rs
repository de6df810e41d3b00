//! A throwaway PostgreSQL database per test on the machine's server (127.0.0.1:5432, trust
//! auth, role `postgres`), or on `MAESTRA_TEST_POSTGRES_URL`. An unreachable server fails the
//! test: it is never skipped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::postgres::{PgPool, PgPoolOptions};

const DEFAULT_ADMIN_URLS: [&str; 2] = [
    "postgres://postgres@127.0.0.1:5432/test",
    "postgres://postgres@127.0.0.1:5432/postgres",
];

pub struct TempDb {
    admin: PgPool,
    name: String,
    pub url: String,
}

async fn admin() -> (PgPool, url::Url) {
    let urls: Vec<String> = match std::env::var("MAESTRA_TEST_POSTGRES_URL") {
        Ok(url) => vec![url],
        Err(_) => DEFAULT_ADMIN_URLS.iter().map(|u| u.to_string()).collect(),
    };
    let mut failures = Vec::new();
    for url in &urls {
        match PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await
        {
            Ok(pool) => return (pool, url::Url::parse(url).unwrap()),
            Err(e) => {
                // Name the server, never a password that may be in the URL.
                let mut shown = url::Url::parse(url).unwrap();
                let _ = shown.set_password(None);
                failures.push(format!("{shown}: {e}"));
            }
        }
    }
    panic!(
        "PostgreSQL is required and unreachable: {failures:?}. Start it \
         (pg_ctlcluster <version> main start; `bash scripts/test` does) or set MAESTRA_TEST_POSTGRES_URL."
    );
}

impl TempDb {
    pub async fn create() -> TempDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let (admin, mut url) = admin().await;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!(
            "maestra_test_{}_{}_{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        url.set_path(&name);
        TempDb {
            admin,
            name,
            url: url.to_string(),
        }
    }

    pub async fn drop_db(self) {
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&self.admin)
        .await
        .unwrap();
        self.admin.close().await;
    }
}
