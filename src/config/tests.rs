//! Loading: defaults, seed aliases, precedence, and every way a setting can be wrong.

use super::*;
use secrecy::ExposeSecret;
use std::collections::HashMap;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(pairs: &[(&str, &str)], text: Option<&str>) -> Result<Config> {
    Config::from_parts(
        &env(pairs),
        PathBuf::from("/h"),
        PathBuf::from("/h/maestra.toml"),
        text,
    )
}

#[test]
fn defaults_match_the_spec() {
    let c = load(&[], None).unwrap();
    assert_eq!(c.bind, "127.0.0.1:8825");
    assert_eq!(c.mode, Mode::Local);
    assert!(!c.local_only);
    assert_eq!(c.daily_cost_limit, 5.0);
    assert_eq!(c.monthly_cost_limit, 100.0);
    assert_eq!(c.rate_limit_requests, 100);
    assert_eq!(c.rate_limit_window, 60);
    assert_eq!(c.audit.retention_days, 90);
    assert_eq!(c.audit.path, PathBuf::from("/h/logs/audit.log"));
    assert_eq!(c.local_model_url, "http://127.0.0.1:11434/v1");
    assert!(!c.cloud_fallback);
    assert!(c.discovery);
}

#[test]
fn discovery_is_turned_off_by_the_file_or_the_environment() {
    assert!(!load(&[], Some("discovery = false\n")).unwrap().discovery);
    assert!(
        !load(&[("MAESTRA_DISCOVERY", "false")], None)
            .unwrap()
            .discovery
    );
    assert!(
        load(&[("MAESTRA_DISCOVERY", "on")], Some("discovery = false\n"))
            .unwrap()
            .discovery
    );
    let e = load(&[("MAESTRA_DISCOVERY", "maybe")], None).unwrap_err();
    assert!(e.to_string().contains("MAESTRA_DISCOVERY"), "{e}");
}

#[test]
fn seed_aliases_are_honoured() {
    let c = load(
        &[
            ("ATOM_LOCAL_ONLY", "true"),
            ("BYOK_ENCRYPTION_KEY", "k1"),
            ("AUDIT_LOG_PATH", "/var/a.log"),
            ("AUDIT_LOG_RETENTION_DAYS", "7"),
            ("MAESTRA_MODE", "cloud"),
            ("MAESTRA_API_KEY", "static"),
            ("MAESTRA_DAILY_COST_LIMIT", "1.5"),
            ("MAESTRA_MONTHLY_COST_LIMIT", "20"),
            ("MAESTRA_RATE_LIMIT_REQUESTS", "10"),
            ("MAESTRA_RATE_LIMIT_WINDOW", "30"),
            ("MAESTRA_CLOUD_STORAGE", "postgresql"),
            ("MAESTRA_DB_URL", "postgresql://x"),
            ("MAESTRA_OPENAI_KEY", "sk-o"),
            ("MAESTRA_ANTHROPIC_KEY", "sk-a"),
        ],
        None,
    )
    .unwrap();
    assert!(c.local_only);
    assert_eq!(c.encryption_keys.unwrap().expose_secret(), "k1");
    assert_eq!(c.audit.path, PathBuf::from("/var/a.log"));
    assert_eq!(c.audit.retention_days, 7);
    assert_eq!(c.mode, Mode::Cloud);
    assert_eq!(c.daily_cost_limit, 1.5);
    assert_eq!(c.monthly_cost_limit, 20.0);
    assert_eq!(c.rate_limit_requests, 10);
    assert_eq!(c.rate_limit_window, 30);
    assert_eq!(c.cloud_storage.as_deref(), Some("postgresql"));
    assert!(c.openai_key.is_some() && c.anthropic_key.is_some());
}

#[test]
fn maestra_name_wins_over_seed_alias() {
    let c = load(
        &[("MAESTRA_LOCAL_ONLY", "false"), ("ATOM_LOCAL_ONLY", "true")],
        None,
    )
    .unwrap();
    assert!(!c.local_only);
}

#[test]
fn environment_overrides_file() {
    let c = load(
        &[("MAESTRA_BIND", "127.0.0.1:9")],
        Some("bind = \"127.0.0.1:1\"\nlocal_only = true\n[audit]\nfail_closed = true\n"),
    )
    .unwrap();
    assert_eq!(c.bind, "127.0.0.1:9");
    assert!(c.local_only);
    assert!(c.audit.fail_closed);
}

#[test]
fn server_and_conversation_tables_are_read() {
    let c = load(
        &[("MAESTRA_UPSTREAM_TIMEOUT", "7"), ("MAESTRA_LOCAL_MODEL", "a, b")],
        Some("[server]\nmax_body_bytes = 1000\n[conversations]\nretention_days = 30\nmax_messages = 9\n"),
    )
    .unwrap();
    assert_eq!(c.server.max_body_bytes, 1000);
    assert_eq!(c.conversations.retention_days, Some(30));
    assert_eq!(c.conversations.max_messages, 9);
    assert_eq!(c.upstream_timeout, 7);
    assert_eq!(c.local_models(), vec!["a", "b"]);
    let d = load(&[], None).unwrap();
    assert_eq!(d.conversations.retention_days, None);
    assert_eq!(d.local_models(), vec!["llama3.2"]);
    assert!(load(&[], Some("[server]\nmax_body = 1\n")).is_err());
}

#[test]
fn the_model_routes_body_limit_is_its_own() {
    let d = load(&[], None).unwrap();
    assert_eq!(d.server.max_model_body_bytes, 20 * 1024 * 1024);
    let file = load(&[], Some("[server]\nmax_model_body_bytes = 5000\n")).unwrap();
    assert_eq!(file.server.max_model_body_bytes, 5000);
    assert_eq!(file.server.max_body_bytes, 1024 * 1024);
    let env = load(
        &[("MAESTRA_MAX_MODEL_BODY_BYTES", "7000")],
        Some("[server]\nmax_model_body_bytes = 5000\n"),
    )
    .unwrap();
    assert_eq!(env.server.max_model_body_bytes, 7000);
    for bad in ["0", "lots", "999999999999"] {
        let e = load(&[("MAESTRA_MAX_MODEL_BODY_BYTES", bad)], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("MAESTRA_MAX_MODEL_BODY_BYTES"), "{bad}: {e}");
    }
}

#[test]
fn pricing_and_cost_tables_are_validated() {
    let c = load(
        &[],
        Some("[pricing.\"my-model\"]\ninput_per_million = 1.0\noutput_per_million = 2.0\n[cost]\nuser_daily_limit = 1.5\n"),
    )
    .unwrap();
    assert_eq!(c.pricing["my-model"].output_per_million, 2.0);
    assert_eq!(c.cost.user_daily_limit, Some(1.5));
    assert_eq!(c.cost.max_output_tokens, 4096);
    let missing = load(&[], Some("[pricing.m]\ninput_per_million = 1.0\n"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("output_per_million"), "{missing}");
    let negative = load(
        &[],
        Some("[pricing.m]\ninput_per_million = -1.0\noutput_per_million = 1.0\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(negative.contains("input_per_million"), "{negative}");
    assert!(load(&[], Some("[cost]\nuser_daily_limit = -2\n")).is_err());
}

#[test]
fn unknown_key_is_named() {
    let err = load(&[], Some("local_onyl = true\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("local_onyl"), "{err}");
    let err = load(&[], Some("[audit]\nretention = 3\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("retention"), "{err}");
}

#[test]
fn every_invalid_setting_is_reported_at_once() {
    let err = load(
        &[
            ("MAESTRA_DAILY_COST_LIMIT", "-1"),
            ("MAESTRA_LOCAL_ONLY", "maybe"),
            ("AUDIT_LOG_RETENTION_DAYS", "0"),
        ],
        Some("[server]\nmax_body_bytes = 0\nrequest_timeout = 0\n[conversations]\nmax_messages = 0\n"),
    )
    .unwrap_err()
    .to_string();
    for setting in [
        "MAESTRA_DAILY_COST_LIMIT",
        "MAESTRA_LOCAL_ONLY",
        "AUDIT_LOG_RETENTION_DAYS",
        "server.max_body_bytes",
        "server.request_timeout",
        "conversations.max_messages",
    ] {
        assert!(err.contains(setting), "{setting} missing from: {err}");
    }
    assert!(err.contains("6 settings are invalid"), "{err}");
    // Checks that need the whole configuration are collected the same way.
    let err = load(
        &[("MAESTRA_CLOUD_STORAGE", "mysql"), ("MAESTRA_LOG", "[[[")],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("MAESTRA_CLOUD_STORAGE") && err.contains("MAESTRA_LOG"),
        "{err}"
    );
}

#[test]
fn garbled_line_is_a_config_error() {
    let err = load(&[], Some("bind = = 3\n")).unwrap_err();
    assert!(matches!(err, Error::Config(_)));
}

#[test]
fn bad_numbers_are_rejected() {
    for (k, v) in [
        ("MAESTRA_DAILY_COST_LIMIT", "-1"),
        ("MAESTRA_DAILY_COST_LIMIT", "abc"),
        ("MAESTRA_MONTHLY_COST_LIMIT", "NaN"),
        ("MAESTRA_RATE_LIMIT_REQUESTS", "0"),
        ("MAESTRA_LOCAL_ONLY", "maybe"),
        ("MAESTRA_MODE", "hybrid"),
    ] {
        let err = load(&[(k, v)], None).unwrap_err().to_string();
        assert!(err.contains(k), "{k}={v}: {err}");
    }
}

#[test]
fn secrets_print_masked() {
    let c = load(
        &[
            ("MAESTRA_ENCRYPTION_KEY", "CANARY-enc"),
            ("MAESTRA_API_KEY", "CANARY-api"),
            ("MAESTRA_DB_URL", "postgresql://u:CANARY-pw@h/db"),
        ],
        Some("openai_key = \"CANARY-openai\"\n"),
    )
    .unwrap();
    let dump = format!("{c:?}");
    assert!(!dump.contains("CANARY"), "{dump}");
}
