//! Property tests: any value for a money, count or duration setting, from the file or the
//! environment, loads into a valid configuration or fails with an error naming the setting.
//! Never a panic, never an out-of-range value let through.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use proptest::prelude::*;

use super::*;

fn load(env: &[(&str, String)], text: &str) -> Result<Config> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    Config::from_parts(
        &env,
        PathBuf::from("/h"),
        PathBuf::from("/h/maestra.toml"),
        Some(text),
    )
}

/// A float as TOML writes it (`nan`, `inf`, `1e300`), so odd values reach the validator.
fn toml_float(v: f64) -> String {
    toml::Value::Float(v).to_string()
}

/// Floats that matter: ordinary, huge, tiny, negative, NaN and infinities.
fn any_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        -10.0f64..2e9,
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(1e9),
        Just(1e6),
        Just(-0.0),
    ]
}

fn in_limits(v: f64, max: f64) -> bool {
    v.is_finite() && (0.0..=max).contains(&v)
}

/// A file setting `(table, key)`; `None` table is the top level.
const FILE_MONEY: &[(Option<&str>, &str)] = &[
    (None, "daily_cost_limit"),
    (None, "monthly_cost_limit"),
    (Some("cost"), "user_daily_limit"),
    (Some("cost"), "user_monthly_limit"),
    (Some("cost"), "key_daily_limit"),
    (Some("cost"), "key_monthly_limit"),
];

fn file_text(table: Option<&str>, key: &str, value: &str) -> String {
    match table {
        Some(t) => format!("[{t}]\n{key} = {value}\n"),
        None => format!("{key} = {value}\n"),
    }
}

fn check_money(c: &Config) {
    for v in [c.daily_cost_limit, c.monthly_cost_limit] {
        assert!(in_limits(v, MAX_LIMIT_USD), "{v}");
    }
    for v in [
        c.cost.user_daily_limit,
        c.cost.user_monthly_limit,
        c.cost.key_daily_limit,
        c.cost.key_monthly_limit,
    ]
    .into_iter()
    .flatten()
    {
        assert!(in_limits(v, MAX_LIMIT_USD), "{v}");
    }
    for p in c.pricing.values() {
        assert!(in_limits(p.input_per_million, MAX_PRICE_PER_MILLION));
        assert!(in_limits(p.output_per_million, MAX_PRICE_PER_MILLION));
    }
    assert!((1..=MAX_OUTPUT_TOKENS).contains(&c.cost.max_output_tokens));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn money_limits_in_the_file(i in 0..FILE_MONEY.len(), v in any_float()) {
        let (table, key) = FILE_MONEY[i];
        match load(&[], &file_text(table, key, &toml_float(v))) {
            Ok(c) => {
                prop_assert!(in_limits(v, MAX_LIMIT_USD), "{key} = {v} was accepted");
                check_money(&c);
            }
            Err(e) => {
                prop_assert!(e.to_string().contains(key), "{key} = {v}: {e}");
                prop_assert!(!in_limits(v, MAX_LIMIT_USD), "{key} = {v} was refused: {e}");
            }
        }
    }

    #[test]
    fn money_limits_in_the_environment(
        daily in any::<bool>(),
        v in any_float(),
        junk in "[ -~]{0,12}",
        as_junk in any::<bool>(),
    ) {
        let name = if daily { "MAESTRA_DAILY_COST_LIMIT" } else { "MAESTRA_MONTHLY_COST_LIMIT" };
        let text = if as_junk { junk } else { v.to_string() };
        match load(&[(name, text.clone())], "") {
            Ok(c) => check_money(&c),
            Err(e) => prop_assert!(e.to_string().contains(name), "{name}={text:?}: {e}"),
        }
    }

    #[test]
    fn prices(input in any_float(), output in any_float(), model in "[a-z0-9.-]{1,20}") {
        let text = format!(
            "[pricing.\"{model}\"]\ninput_per_million = {}\noutput_per_million = {}\n",
            toml_float(input),
            toml_float(output)
        );
        let fine = in_limits(input, MAX_PRICE_PER_MILLION) && in_limits(output, MAX_PRICE_PER_MILLION);
        match load(&[], &text) {
            Ok(c) => {
                prop_assert!(fine, "{input} / {output} accepted");
                check_money(&c);
            }
            Err(e) => {
                prop_assert!(!fine, "refused: {e}");
                prop_assert!(e.to_string().contains("_per_million"), "{e}");
            }
        }
    }

    #[test]
    fn max_output_tokens(v in prop_oneof![any::<i64>(), 0i64..2_000_000]) {
        match load(&[], &format!("[cost]\nmax_output_tokens = {v}\n")) {
            Ok(c) => {
                prop_assert!((1..=1_000_000).contains(&v), "{v} accepted");
                check_money(&c);
            }
            Err(e) => {
                prop_assert!(!(1..=1_000_000).contains(&v), "{v} refused: {e}");
                prop_assert!(e.to_string().contains("max_output_tokens"), "{e}");
            }
        }
    }

    /// Counts, durations and sizes: any integer, accepted in range or refused by name.
    #[test]
    fn counts_and_durations(i in 0..INTEGERS.len(), v in any::<i64>()) {
        let (table, key, env) = INTEGERS[i];
        let from_file = load(&[], &file_text(table, key, &v.to_string()));
        if let Err(e) = &from_file {
            prop_assert!(e.to_string().contains(key), "{key} = {v}: {e}");
        }
        if let Some(env) = env
            && let Err(e) = load(&[(env, v.to_string())], "")
        {
            prop_assert!(e.to_string().contains(env), "{env}={v}: {e}");
        }
    }

    /// Strings: URLs, origins, names and filters either load or are refused by name.
    #[test]
    fn strings(i in 0..STRINGS.len(), v in "[ -~]{0,40}") {
        let (key, env) = STRINGS[i];
        if let Err(e) = load(&[(env, v.clone())], "") {
            prop_assert!(e.to_string().contains(env), "{env} ({key})={v:?}: {e}");
        }
    }
}

/// Integer settings: `(table, key, environment name)`.
const INTEGERS: &[(Option<&str>, &str, Option<&str>)] = &[
    (
        None,
        "rate_limit_requests",
        Some("MAESTRA_RATE_LIMIT_REQUESTS"),
    ),
    (None, "rate_limit_window", Some("MAESTRA_RATE_LIMIT_WINDOW")),
    (None, "upstream_timeout", Some("MAESTRA_UPSTREAM_TIMEOUT")),
    (Some("server"), "max_body_bytes", None),
    (
        Some("server"),
        "max_model_body_bytes",
        Some("MAESTRA_MAX_MODEL_BODY_BYTES"),
    ),
    (Some("server"), "request_timeout", None),
    (Some("server"), "shutdown_grace", None),
    (
        Some("conversations"),
        "retention_days",
        Some("MAESTRA_CONVERSATION_RETENTION_DAYS"),
    ),
    (Some("conversations"), "max_messages", None),
    (Some("conversations"), "context_messages", None),
    (
        Some("audit"),
        "retention_days",
        Some("AUDIT_LOG_RETENTION_DAYS"),
    ),
    (Some("audit"), "queue_capacity", None),
];

/// String settings given through the environment: `(file key, environment name)`.
const STRINGS: &[(&str, &str)] = &[
    ("bind", "MAESTRA_BIND"),
    ("local_model_url", "MAESTRA_LOCAL_MODEL_URL"),
    ("openai_base_url", "MAESTRA_OPENAI_BASE_URL"),
    ("anthropic_base_url", "MAESTRA_ANTHROPIC_BASE_URL"),
    ("cors_origins", "MAESTRA_CORS_ORIGINS"),
    ("log", "MAESTRA_LOG"),
    ("redis_url", "MAESTRA_REDIS_URL"),
    ("db_url", "MAESTRA_DB_URL"),
    ("redis_prefix", "MAESTRA_REDIS_PREFIX"),
    ("local_model", "MAESTRA_LOCAL_MODEL"),
    ("api_key", "MAESTRA_API_KEY"),
    ("cloud_storage", "MAESTRA_CLOUD_STORAGE"),
    ("mode", "MAESTRA_MODE"),
];

#[test]
fn wildcard_and_malformed_origins_are_refused_by_name() {
    for text in [
        "cors_origins = [\"*\"]\n",
        "cors_origins = [\"http://localhost:3000/\"]\n",
        "cors_origins = [\"localhost:3000\"]\n",
    ] {
        let e = load(&[], text).unwrap_err().to_string();
        assert!(e.contains("cors_origins"), "{text}: {e}");
    }
    let e = load(&[("MAESTRA_CORS_ORIGINS", "http://a.example,*".into())], "")
        .unwrap_err()
        .to_string();
    assert!(e.contains("MAESTRA_CORS_ORIGINS"), "{e}");
    let c = load(&[], "cors_origins = [\"http://localhost:3000\"]\n").unwrap();
    assert_eq!(c.cors_origins, vec!["http://localhost:3000"]);
}

#[test]
fn every_setting_has_a_range() {
    for (text, name) in [
        (
            "[audit]\nqueue_capacity = 9223372036854775807\n",
            "audit.queue_capacity",
        ),
        (
            "[audit]\nretention_days = 4000000000\n",
            "audit.retention_days",
        ),
        (
            "[server]\nshutdown_grace = 18446744073709551615\n",
            "shutdown_grace",
        ),
        (
            "[server]\nshutdown_grace = 9000000\n",
            "server.shutdown_grace",
        ),
        (
            "[conversations]\ncontext_messages = 4000000000\n",
            "conversations.context_messages",
        ),
        (
            "rate_limit_window = 18446744073709551615\n",
            "rate_limit_window",
        ),
        ("log = \"maestra=loud\"\n", "log"),
        ("bind = \"localhost\"\n", "bind"),
        ("openai_base_url = \"ftp://x\"\n", "openai_base_url"),
        ("local_model_url = \"http://u:p@h/v1\"\n", "local_model_url"),
        ("redis_url = \"http://h\"\n", "redis_url"),
        ("db_url = \"mysql://h\"\n", "db_url"),
        ("api_key = \"two words\"\n", "api_key"),
        ("daily_cost_limit = 1e10\n", "daily_cost_limit"),
        (
            "[guard]\ncloud_services = [\"Bad Name\"]\n",
            "guard.cloud_services",
        ),
        ("rate_limit_requests = -1\n", "rate_limit_requests"),
    ] {
        let e = load(&[], text).unwrap_err().to_string();
        assert!(e.contains(name), "{text}: {e}");
    }
}
