//! Instances sharing one vault (PostgreSQL) must share its key: one started with another key
//! refuses with one clear line and writes nothing, while the first keeps serving paid calls;
//! `doctor` names the mismatch. The same holds for a home's own SQLite vault.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Home;
use common::mock;
use common::server::{Server, upstream_env};
use serde_json::json;

const FIRST_KEY_CANARY: &str = "sk-proj-CANARYfirst0123456789abcdef";
const SECOND_KEY_CANARY: &str = "sk-proj-CANARYsecond0123456789abcde";
const REFUSAL: &str = "not this vault's key";
const DOCTOR_LINE: &str = "local: the vault key opens this vault";

/// The one stderr line of a refused command.
fn refused(home: &Home, args: &[&str]) -> String {
    let out = home.run_within(args, b"a-value\n", Duration::from_secs(30));
    assert!(!out.status.success(), "maestra {args:?} should refuse");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "one clear line: {err:?}");
    assert!(err.contains(REFUSAL), "{err}");
    assert!(!err.contains("CANARY"), "{err}");
    err
}

fn doctor_line(home: &Home) -> String {
    let out = home.run_within(&["doctor"], b"a-value\n", Duration::from_secs(30));
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find(|l| l.contains(DOCTOR_LINE))
        .unwrap_or_else(|| panic!("doctor has no vault key line: {text}"))
        .to_string()
}

async fn paid_call(server: &Server) -> u16 {
    common::http::client()
        .post(server.url("/v1/chat/completions"))
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn vault_rows(pg: &sqlx::PgPool) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> =
        sqlx::query_as("SELECT key, value FROM meta WHERE key LIKE 'vault.%'")
            .fetch_all(pg)
            .await
            .unwrap();
    rows.extend(
        sqlx::query_as::<_, (String, String)>("SELECT name, value FROM secrets")
            .fetch_all(pg)
            .await
            .unwrap(),
    );
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_with_another_key_refuses_and_the_first_keeps_working() {
    let db = common::pg::TempDb::create().await;
    let (upstream, mock) = mock::start().await;
    let instance = |key: &str, provider_key: &str| {
        upstream_env(Home::new(), upstream)
            .with("MAESTRA_CLOUD_STORAGE", "postgresql")
            .with("MAESTRA_DB_URL", &db.url)
            .with("MAESTRA_ENCRYPTION_KEY", key)
            .with("MAESTRA_OPENAI_KEY", provider_key)
    };
    let first = instance(&fernet::Fernet::generate_key(), FIRST_KEY_CANARY);
    let second = instance(&fernet::Fernet::generate_key(), SECOND_KEY_CANARY);

    let mut server = Server::start(&first);
    assert_eq!(paid_call(&server).await, 200);
    let pg = sqlx::PgPool::connect(&db.url).await.unwrap();
    let before = vault_rows(&pg).await;
    assert!(
        before.iter().any(|(k, _)| k == "vault.key_check"),
        "the first start stores the check value: {before:?}"
    );

    // The second instance refuses to start, to write a secret, or to rotate, and writes
    // nothing: no import of its provider key, no re-encryption.
    refused(&second, &["serve", "--bind", "127.0.0.1:0"]);
    refused(&second, &["vault", "put", "other"]);
    refused(&second, &["vault", "rotate-key"]);
    assert_eq!(vault_rows(&pg).await, before);
    assert!(doctor_line(&second).starts_with("[FAIL]"));
    assert!(doctor_line(&first).starts_with("[pass]"));

    // The first instance still reads its key and pays with it.
    assert_eq!(paid_call(&server).await, 200);
    let auth = mock.requests().last().unwrap().headers["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(auth, format!("Bearer {FIRST_KEY_CANARY}"));
    server.stop();
    pg.close().await;
    db.drop_db().await;
}

#[test]
fn a_home_vault_opened_with_another_key_refuses_and_doctor_fails() {
    let h = Home::new();
    h.ok(&["init"], b"");
    h.ok(&["vault", "put", "hue"], b"bridge-user");
    assert!(doctor_line(&h).starts_with("[pass]"));
    let wrong = Home {
        dir: h.dir,
        env: h.env.clone(),
    }
    .with("MAESTRA_ENCRYPTION_KEY", &fernet::Fernet::generate_key());
    refused(&wrong, &["vault", "put", "hue"]);
    refused(&wrong, &["vault", "delete", "hue"]);
    refused(&wrong, &["vault", "get", "hue", "--reveal"]);
    refused(&wrong, &["serve", "--bind", "127.0.0.1:0"]);
    let line = doctor_line(&wrong);
    assert!(
        line.starts_with("[FAIL]") && line.contains("vault's key"),
        "{line}"
    );
    let out = wrong.run_within(&["doctor"], b"a-value\n", Duration::from_secs(30));
    assert!(!out.status.success());
    // The right key still reads what was stored.
    let right = Home {
        dir: wrong.dir,
        env: wrong.env[..1].to_vec(),
    };
    assert_eq!(
        right.ok(&["vault", "get", "hue", "--reveal"], b""),
        "bridge-user\n"
    );
    right.ok(&["vault", "rotate-key"], b"");
    assert!(doctor_line(&right).starts_with("[pass]"));
}

/// In an incident, lockdown does every step it can: with a key file that is not the vault's,
/// local-only mode and the revocations still take effect; the rotation is refused, said, and
/// the exit code is not 0.
#[test]
fn lockdown_with_a_foreign_key_still_locks_down_and_says_what_it_could_not_do() {
    let h = Home::new();
    h.ok(&["init"], b"");
    h.ok(&["vault", "put", "hue"], b"bridge-user");
    h.ok(&["keys", "create", "ops", "--scope", "admin"], b"");
    std::fs::write(
        h.root().join("keys/vault.key"),
        format!("{}\n", fernet::Fernet::generate_key()),
    )
    .unwrap();
    let out = h.run(&["lockdown"], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("not rotated"), "{stderr}");
    assert!(h.ok(&["keys", "list"], b"").contains("REVOKED"));
    let status = h.run(&["guard", "status"], b"");
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("local-only mode: on"),
        "{status:?}"
    );
}
