//! Issue 23, class 5: a backup carries no key unless asked. Every secret setting written in
//! `maestra.toml` (the vault key, the API key, provider keys, a password inside a URL) is
//! removed from the backup's copy of the file unless `--with-keys` is given; the backup says
//! so, and the restore still works.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use common::{Home, all_file_bytes, backup_args, contains};

const PASS: &str = "correct horse battery staple";

/// One canary per secret setting; the vault key is a real Fernet key (it must open the vault).
struct Canaries {
    encryption_key: String,
    plain: Vec<&'static str>,
}

fn canaries() -> Canaries {
    let mut raw = [0u8; 32];
    for (i, b) in raw.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    Canaries {
        encryption_key: base64::engine::general_purpose::URL_SAFE.encode(raw),
        plain: vec![
            "canary-api-key-3c1d",
            "sk-canary-openai-77ab",
            "sk-ant-canary-anthropic-90fe",
            "canary-db-password-41aa",
            "canary-redis-password-5e02",
        ],
    }
}

fn config_text(c: &Canaries) -> String {
    let p = &c.plain;
    format!(
        "# my settings (this comment stays)\n\
         local_only = true\n\
         encryption_key = \"{}\"\n\
         api_key = \"{}\"\n\
         openai_key = \"{}\"\n\
         anthropic_key = \"{}\"\n\
         db_url = \"postgresql://maestra:{}@127.0.0.1:1/maestra\"\n\
         redis_url = \"redis://:{}@127.0.0.1:1/0\"\n\
         \n\
         [backup]\n\
         region = \"eu-west-1\"\n",
        c.encryption_key, p[0], p[1], p[2], p[3], p[4]
    )
}

/// A home whose `maestra.toml` holds a canary in every secret setting.
fn home_with_secrets(c: &Canaries) -> Home {
    let h = Home::new().with("MAESTRA_BACKUP_PASSPHRASE", PASS);
    std::fs::create_dir_all(h.root()).unwrap();
    std::fs::set_permissions(
        h.root(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let file = h.root().join("maestra.toml");
    std::fs::write(&file, config_text(c)).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    h.ok(&["init"], b"");
    h
}

/// Restores `dest` into a fresh home (the vault key given in the environment, since the
/// backup's copy of the file may not hold it) and returns that home.
fn restore(dest: &str, keys_from: Option<&Home>, c: &Canaries) -> Home {
    let t = Home::new()
        .with("MAESTRA_BACKUP_PASSPHRASE", PASS)
        .with("MAESTRA_ENCRYPTION_KEY", &c.encryption_key);
    let keys_root = keys_from.map(|h| h.root().display().to_string());
    let extra: Vec<&str> = match &keys_root {
        Some(r) => vec!["--keys-from", r.as_str()],
        None => vec![],
    };
    t.ok(&backup_args("restore", dest, &extra), b"");
    t
}

#[test]
fn a_backup_without_keys_carries_no_secret_of_the_configuration_file() {
    let c = canaries();
    let h = home_with_secrets(&c);
    let dest = h.dir.path().join("backup");
    let dest = dest.to_str().unwrap();
    let out = h.ok(&["backup", "create", "--to", dest], b"");
    h.ok(&["backup", "verify", "--from", dest], b"");

    let t = restore(dest, Some(&h), &c);
    let mut needles = c.plain.clone();
    needles.push(&c.encryption_key);
    for (path, bytes) in all_file_bytes(&t.root()) {
        for n in &needles {
            assert!(!contains(&bytes, n), "{n} is in the restored {path:?}");
        }
    }
    // What is not secret stays, comments and the URLs' other parts included, and the
    // restored home works.
    let toml = std::fs::read_to_string(t.root().join("maestra.toml")).unwrap();
    for kept in [
        "# my settings (this comment stays)",
        "local_only = true",
        "postgresql://maestra:",
        "@127.0.0.1:1/maestra",
        "redis://:",
        "[backup]",
    ] {
        assert!(toml.contains(kept), "{kept:?} lost: {toml}");
    }
    t.ok(&["audit", "verify"], b"");
    t.ok(&["guard", "status"], b"");
    // And the backup said what it left out.
    assert!(out.contains("secrets removed"), "{out}");
    for name in ["encryption_key", "api_key", "openai_key", "anthropic_key"] {
        assert!(out.contains(name), "{name} not named: {out}");
    }
}

#[test]
fn a_backup_with_keys_keeps_the_configuration_file_as_it_is() {
    let c = canaries();
    let h = home_with_secrets(&c);
    let dest = h.dir.path().join("backup-keys");
    let dest = dest.to_str().unwrap();
    let out = h.ok(&["backup", "create", "--to", dest, "--with-keys"], b"");
    assert!(!out.contains("secrets removed"), "{out}");
    let t = restore(dest, None, &c);
    let toml = std::fs::read_to_string(t.root().join("maestra.toml")).unwrap();
    assert_eq!(toml, config_text(&c));
}
