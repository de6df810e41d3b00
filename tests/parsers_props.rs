//! Property tests for the parsers of untrusted input that live outside the HTTP edge (issue
//! 14): ids, API keys, vault keys and Fernet tokens, chat requests, timestamps. Each must
//! never panic, accept only what it documents, and never echo a secret in its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use maestra::access::keys::id_of;
use maestra::conversations::model::{MAX_ID_LEN, parse_millis, validate_id};
use maestra::privsec::keyring::{KeySource, Keyring, inspect};
use maestra::providers::ChatRequest;
use maestra::providers::chat::MAX_TOKENS;
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Value, json};

/// Strings made of the fragments that break path and token checks, and of anything at all.
fn hostile() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just("/".to_string()),
        Just("\\".to_string()),
        Just("%2e".to_string()),
        Just("\0".to_string()),
        Just("\n".to_string()),
        Just("_".to_string()),
        Just("mae_".to_string()),
        Just("0123456789ab_".to_string()),
        Just("é".to_string()),
        "[a-zA-Z0-9]{1,8}",
    ];
    prop_oneof![
        prop::collection::vec(fragment, 0..12).prop_map(|v| v.concat()),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn an_accepted_id_is_one_plain_name(id in hostile()) {
        if validate_id("id", &id).is_ok() {
            prop_assert!(!id.is_empty() && id.len() <= MAX_ID_LEN);
            prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b)));
            let parts: Vec<_> = std::path::Path::new(&id).components().collect();
            prop_assert_eq!(parts.len(), 1);
            prop_assert!(matches!(parts[0], std::path::Component::Normal(_)));
            prop_assert!(!id.starts_with('.') && !id.contains(".."));
        }
    }

    #[test]
    fn an_api_key_id_is_hex_of_fixed_length(key in prop_oneof![
        hostile(),
        ("[0-9a-fA-F]{10,14}", "[A-Za-z0-9_-]{0,70}").prop_map(|(id, s)| format!("mae_{id}_{s}")),
    ]) {
        if let Some(id) = id_of(&key) {
            prop_assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()));
            prop_assert!(key.starts_with("mae_") && id.len() == 12);
        }
    }

    #[test]
    fn a_bad_vault_key_is_refused_without_echoing_it(text in "[A-Za-z0-9_=+/-]{8,60}") {
        if let Err(e) = Keyring::parse(&SecretString::from(text.clone()), KeySource::Environment) {
            let message = e.to_string();
            prop_assert!(!message.contains(&text), "{}", message);
        }
    }

    #[test]
    fn a_forged_token_never_opens_nor_echoes(token in hostile()) {
        let ring = Keyring::parse(
            &SecretString::from("cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=".to_string()),
            KeySource::Environment,
        )
        .unwrap();
        let _ = inspect(&token);
        match ring.decrypt(&token, None) {
            Ok(_) => prop_assert!(false, "a random string opened"),
            Err(e) => {
                if token.len() >= 8 {
                    prop_assert!(!e.to_string().contains(&token));
                }
            }
        }
    }

    #[test]
    fn a_timestamp_parses_or_not_without_panicking(text in hostile()) {
        let _ = parse_millis(&text);
    }

    #[test]
    fn an_accepted_output_cap_is_in_range(
        field in prop_oneof![Just("max_tokens"), Just("max_completion_tokens")],
        value in prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            Just(json!("100")),
            Just(json!([1])),
        ],
        temperature in any::<f64>(),
    ) {
        let mut body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
        body[field] = value;
        body["temperature"] = serde_json::Number::from_f64(temperature).map_or(Value::Null, Value::Number);
        match ChatRequest::from_openai(body.as_object().unwrap()) {
            Ok(req) => {
                prop_assert!(req.max_tokens.is_none_or(|n| (1..=MAX_TOKENS).contains(&n)));
                if let Some(t) = req.options.get("temperature") {
                    prop_assert!((0.0..=2.0).contains(&t.as_f64().unwrap()));
                }
            }
            Err(e) => prop_assert!(matches!(e.status(), 400 | 413), "{}", e),
        }
    }
}
