//! The configuration file as a backup without keys carries it (issue 23, class 5): whoever
//! holds a backup and its passphrase must not also hold the vault key, the API key, the
//! providers' keys or a database password just because they were written in `maestra.toml`.
//! The file is edited with `toml_edit`, so everything else (comments, order, layout) stays as
//! the user wrote it; a secret URL keeps its host and user, only its password is replaced.

use toml_edit::{DocumentMut, Item, Value};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Settings whose whole value is a secret (typed `SecretString` in the file's shape): removed.
const SECRET_KEYS: &[&str] = &["encryption_key", "api_key", "openai_key", "anthropic_key"];
/// Secret-typed settings that are URLs: their password is replaced, the rest kept.
const SECRET_URLS: &[&str] = &["db_url", "redis_url"];
/// What the name of a query parameter that carries a credential contains (any case): libpq's
/// `password` / `sslpassword`, and `api_key`, `access_token`, `client_secret`, `auth`, ...
const CREDENTIAL_PARAMS: &[&str] = &["pass", "key", "token", "secret", "auth"];
/// What a removed password reads as; connecting with it fails and says why.
pub const PLACEHOLDER: &str = "REMOVED-BY-MAESTRA-BACKUP";

/// The file without its secrets, and the settings that were changed (for the summary).
pub struct Redacted {
    pub text: Zeroizing<String>,
    pub removed: Vec<String>,
}

pub fn redact(text: &str) -> Result<Redacted> {
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        Error::Config(format!(
            "backup: cannot read maestra.toml to remove its secrets ({}); no backup was made",
            e.message()
        ))
    })?;
    let mut removed = Vec::new();
    let root = doc.as_table_mut();
    for key in SECRET_KEYS {
        if root.remove(key).is_some() {
            removed.push((*key).to_string());
        }
    }
    for key in SECRET_URLS {
        // One that is not a URL cannot be cut down to its password: it goes whole.
        let whole = match root.get(key) {
            Some(Item::Value(Value::String(s))) => url::Url::parse(s.value().trim()).is_err(),
            Some(_) => true,
            None => false,
        };
        if whole {
            root.remove(key);
            removed.push((*key).to_string());
        }
    }
    // Every other string anywhere (a URL a later setting may hold): its password goes.
    for (key, item) in root.iter_mut() {
        scrub_item(key.get(), item, &mut removed);
    }
    let mut out = Zeroizing::new(String::new());
    if !removed.is_empty() {
        out.push_str(&format!(
            "# maestra backup: secrets removed from this copy ({}); give them again through \
             the environment, the key file or the vault\n",
            removed.join(", ")
        ));
    }
    out.push_str(&doc.to_string());
    Ok(Redacted { text: out, removed })
}

fn scrub_item(path: &str, item: &mut Item, removed: &mut Vec<String>) {
    match item {
        Item::Value(v) => scrub_value(path, v, removed),
        Item::Table(t) => {
            for (k, i) in t.iter_mut() {
                scrub_item(&format!("{path}.{}", k.get()), i, removed);
            }
        }
        Item::ArrayOfTables(a) => {
            for t in a.iter_mut() {
                for (k, i) in t.iter_mut() {
                    scrub_item(&format!("{path}.{}", k.get()), i, removed);
                }
            }
        }
        Item::None => {}
    }
}

fn scrub_value(path: &str, v: &mut Value, removed: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Some(clean) = without_password(s.value()) {
                let decor = s.decor().clone();
                let mut new = toml_edit::Formatted::new(clean);
                *new.decor_mut() = decor;
                *s = new;
                removed.push(format!("{path} (password)"));
            }
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                scrub_value(path, x, removed);
            }
        }
        Value::InlineTable(t) => {
            for (k, x) in t.iter_mut() {
                scrub_value(&format!("{path}.{}", k.get()), x, removed);
            }
        }
        _ => {}
    }
}

/// `text` with the password of its URL (user info or a password parameter) replaced, or
/// `None` when it is not a URL or holds none.
fn without_password(text: &str) -> Option<String> {
    let mut url = url::Url::parse(text.trim()).ok()?;
    let mut changed = false;
    if url.password().is_some_and(|p| p != PLACEHOLDER) {
        url.set_password(Some(PLACEHOLDER)).ok()?;
        changed = true;
    }
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    if pairs
        .iter()
        .any(|(k, v)| is_credential(k) && v != PLACEHOLDER)
    {
        let mut q = url.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            let v = if is_credential(k) { PLACEHOLDER } else { v };
            q.append_pair(k, v);
        }
        drop(q);
        changed = true;
    }
    changed.then(|| url.to_string())
}

/// A query parameter whose name says it holds a credential.
fn is_credential(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    CREDENTIAL_PARAMS.iter().any(|c| key.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_go_and_everything_else_stays() {
        let text = "# mine\nlocal_only = true # on\napi_key = \"k-CANARY\"\n\
                    encryption_key = \"e-CANARY\"\n\
                    db_url = \"postgresql://u:CANARY@h:5432/db?sslmode=require&password=CANARY2\"\n\
                    redis_url = \"not a url CANARY\"\n[backup]\nregion = \"r\"\n";
        let r = redact(text).unwrap();
        assert!(!r.text.contains("CANARY"), "{}", r.text.as_str());
        for kept in [
            "# mine",
            "local_only = true # on",
            "postgresql://u:",
            "@h:5432/db",
        ] {
            assert!(r.text.contains(kept), "{kept}: {}", r.text.as_str());
        }
        assert!(r.text.contains("sslmode=require"), "{}", r.text.as_str());
        assert!(r.text.contains("[backup]\nregion = \"r\""));
        assert_eq!(
            r.removed,
            [
                "encryption_key",
                "api_key",
                "redis_url",
                "db_url (password)"
            ]
        );
        // Every URL setting, tables included: any query parameter named like a credential.
        let text = "[services.notes]\nurl = \"https://h/x?API_Key=CANARY3&page=2\"\n\
                    [backup]\nendpoint = \"https://s3.lan/?X-Amz-Security-Token=CANARY4\"\n\
                    hooks = [\"https://h/?access_TOKEN=CANARY5\", \"https://h/?q=1\"]\n\
                    other = { u = \"https://h/?client_secret=CANARY6&sslpass=CANARY7\" }\n\
                    plain = \"https://h/?Authorization=CANARY8&mode=kept\"\n";
        let r = redact(text).unwrap();
        assert!(!r.text.contains("CANARY"), "{}", r.text.as_str());
        for kept in ["page=2", "q=1", "mode=kept", "https://s3.lan/", "API_Key="] {
            assert!(r.text.contains(kept), "{kept}: {}", r.text.as_str());
        }
        assert_eq!(r.removed.len(), 5, "{:?}", r.removed);
        assert!(
            r.removed
                .contains(&"services.notes.url (password)".to_string())
        );
        let none = redact("local_only = true\n").unwrap();
        assert!(none.removed.is_empty());
        assert_eq!(none.text.as_str(), "local_only = true\n");
    }

    /// Every setting the configuration types as a secret must be listed here: a new one that
    /// is not fails this test rather than slipping into backups.
    #[test]
    fn every_secret_typed_setting_is_listed() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut files = vec![std::path::PathBuf::from(format!("{dir}/config.rs"))];
        for e in std::fs::read_dir(format!("{dir}/config")).unwrap() {
            files.push(e.unwrap().path());
        }
        let field = regex::Regex::new(r"^\s*(?:pub\s+)?(\w+)\s*:\s*Option<SecretString>").unwrap();
        let mut found = 0;
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            // Only the file's shape (the structs serde reads), not the validated `Config`,
            // whose names differ (`encryption_keys`).
            for line in text.lines() {
                if let Some(c) = field.captures(line) {
                    let name = &c[1];
                    if name == "encryption_keys" {
                        continue;
                    }
                    found += 1;
                    assert!(
                        SECRET_KEYS.contains(&name) || SECRET_URLS.contains(&name),
                        "{name} in {} is a secret setting that backups do not remove",
                        f.display()
                    );
                }
            }
        }
        assert!(
            found >= 6,
            "the configuration's secret fields were not found"
        );
    }
}
