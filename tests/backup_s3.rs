//! Backups to an S3-compatible bucket (issue 18), against a real S3 server on 127.0.0.1:
//! moto's server (`moto[server]`, installed into `.venv` by `scripts/test`), started here on a
//! free port. Missing is a failure, never a skip. The bucket's operator sees two opaque objects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::backup_args;
use common::http::pooled;
use common::{Home, contains};
use serde_json::json;

const PASS: &str = "correct horse battery staple";
const CANARY: &str = "canary-s3-51d2";
const BUCKET: &str = "maestra-backups";

/// moto's S3 server on 127.0.0.1, stopped when dropped.
struct S3 {
    child: Child,
    endpoint: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_s3() -> S3 {
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    assert!(
        server.exists(),
        "{} is missing: run `bash scripts/test` (it installs moto[server] into .venv)",
        server.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s3 = S3 {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let http = pooled();
    let start = Instant::now();
    loop {
        if http.get(&s3.endpoint).send().await.is_ok() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "moto_server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let made = http
        .put(format!("{}/{BUCKET}", s3.endpoint))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{}", made.status());
    s3
}

fn home(s3: &S3) -> Home {
    Home::new()
        .with("MAESTRA_BACKUP_PASSPHRASE", PASS)
        .with("AWS_ENDPOINT", &s3.endpoint)
        .with("AWS_ALLOW_HTTP", "true")
        .with("AWS_REGION", "us-east-1")
        .with("AWS_ACCESS_KEY_ID", "testing")
        .with("AWS_SECRET_ACCESS_KEY", "testing")
}

fn import(h: &Home, owner: &str, text: &str) {
    let seed = h.dir.path().join("seed");
    std::fs::create_dir_all(seed.join("conversations")).unwrap();
    let conv = json!({
        "id": format!("conv_2025-12-28_{owner}_abc12345"), "topic": "s3", "owner": owner,
        "surfaces": ["cli"], "tags": [], "artifacts": [],
        "messages": [{"id": "m1", "role": "user", "content": text,
                      "surface": "cli", "mode": "chat", "timestamp": "2025-12-28T10:00:00", "meta": {}}],
        "meta": {"created_at": "2025-12-28T10:00:00", "updated_at": "2025-12-28T10:05:00",
                 "status": "active", "message_count": 1}
    });
    std::fs::write(seed.join("conversations/c.json"), conv.to_string()).unwrap();
    h.ok(&["import", "--from", seed.to_str().unwrap()], b"");
}

/// Adds `mb` MiB of incompressible rows to the home's database.
async fn grow(h: &Home, mb: usize) {
    use sqlx::Connection;
    let db = h.root().join("maestra.db");
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display()))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE filler (b BLOB)")
        .execute(&mut c)
        .await
        .unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..mb {
        let mut blob = Vec::with_capacity(1 << 20);
        for _ in 0..(1 << 17) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            blob.extend_from_slice(&x.to_le_bytes());
        }
        sqlx::query("INSERT INTO filler (b) VALUES (?1)")
            .bind(blob)
            .execute(&mut c)
            .await
            .unwrap();
    }
}

/// Every object key in the bucket, with its bytes, fetched with the test credentials (moto
/// refuses anonymous reads of some objects with an empty 403, which must not pass for an
/// object with nothing readable in it).
async fn objects(s3: &S3) -> Vec<(String, Vec<u8>)> {
    let http = pooled();
    let listing = http
        .get(format!("{}/{BUCKET}?list-type=2", s3.endpoint))
        .send()
        .await
        .unwrap();
    assert!(listing.status().is_success(), "{}", listing.status());
    let list = listing.text().await.unwrap();
    let bucket = maestra::backup::location::Bucket::connect(BUCKET, "", &settings(s3)).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    for (i, part) in list.split("<Key>").skip(1).enumerate() {
        let key = part.split("</Key>").next().unwrap().to_string();
        let local = scratch.path().join(i.to_string());
        bucket.download(&key, &local).await.unwrap();
        out.push((key, std::fs::read(&local).unwrap()));
    }
    out.sort();
    out
}

/// The test server's endpoint and credentials, for the library's own client.
fn settings(s3: &S3) -> maestra::backup::S3Settings {
    maestra::backup::S3Settings {
        config: maestra::config::BackupConfig {
            endpoint: Some(s3.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("testing".into()),
            secret_access_key_vault: None,
            allow_http: true,
        },
        vault_secret: Some(secrecy::SecretString::from("testing".to_string())),
        connector: maestra::backup::connector::GuardedConnector::new(
            maestra::egress::Egress::new(
                maestra::privsec::guard::Catalog::new(&Default::default()),
                maestra::egress::EgressOptions::default(),
            )
            .unwrap(),
            "s3",
            Default::default(),
        ),
    }
}

/// Issue 23, class 6: the bucket is reached through egress. In local-only mode a bucket on
/// this machine is allowed, and the upload and the download are audited with their bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_only_allows_a_local_bucket_and_audits_the_bytes() {
    let s3 = start_s3().await;
    let h = home(&s3).with("MAESTRA_LOCAL_ONLY", "true");
    h.ok(&["init"], b"");
    import(&h, "ann", &format!("{CANARY} ann's message"));
    let to = format!("s3://{BUCKET}/local-only");
    h.ok(&["backup", "create", "--to", &to], b"");
    h.ok(&["backup", "verify", "--from", &to], b"");
    let data = objects(&s3)
        .await
        .into_iter()
        .find(|(k, _)| k == "local-only/data.mxb")
        .unwrap()
        .1
        .len() as u64;
    let log = h.ok(&["audit", "query", "--service", "s3", "--json"], b"");
    let entries: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |action: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} entry: {log}"))
            .clone()
    };
    let up = find("backup.upload");
    assert_eq!(up["result"], "success", "{up}");
    assert_eq!(up["details"]["host"], "127.0.0.1", "{up}");
    assert!(up["details"]["bytes_sent"].as_u64().unwrap() > data, "{up}");
    let down = find("backup.download");
    assert!(
        down["details"]["bytes_received"].as_u64().unwrap() > data,
        "{down}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_to_s3_verifies_restores_and_shows_the_operator_nothing() {
    let s3 = start_s3().await;
    let h = home(&s3);
    h.ok(&["init"], b"");
    import(&h, "ann", &format!("{CANARY} ann's message"));
    // Over two 8 MiB parts: the upload is a real multipart upload.
    grow(&h, 20).await;
    let to = format!("s3://{BUCKET}/nightly/one");
    let out = h.ok(&["backup", "create", "--to", &to], b"");
    assert!(out.contains("backup written"), "{out}");

    let objs = objects(&s3).await;
    let keys: Vec<&str> = objs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["nightly/one/data.mxb", "nightly/one/manifest.mxb"]);
    assert!(objs[0].1.len() > 20 << 20, "{}", objs[0].1.len());
    for (key, bytes) in &objs {
        for needle in [CANARY, "maestra.db", "audit.log", "SQLite format"] {
            assert!(!contains(bytes, needle), "{needle} readable in {key}");
        }
    }

    let out = h.ok(&["backup", "verify", "--from", &to], b"");
    assert!(out.contains("backup OK"), "{out}");
    let err = h.fails(&["backup", "create", "--to", &to], b"");
    assert!(err.contains("already holds a backup"), "{err}");
    let err = h.fails(
        &backup_args("verify", &format!("s3://{BUCKET}/nothing"), &[]),
        b"",
    );
    assert!(err.contains("no manifest"), "{err}");
    let wrong = home(&s3).with("MAESTRA_BACKUP_PASSPHRASE", "another passphrase");
    let err = wrong.fails(&["backup", "verify", "--from", &to], b"");
    assert!(err.contains("wrong passphrase"), "{err}");

    let t = home(&s3);
    t.ok(
        &backup_args("restore", &to, &["--keys-from", h.root().to_str().unwrap()]),
        b"",
    );
    t.ok(&["audit", "verify"], b"");
    t.ok(&["doctor"], b"");
    let conv = t.ok(
        &["conversations", "export", "conv_2025-12-28_ann_abc12345"],
        b"",
    );
    assert!(conv.contains(CANARY), "{conv}");
    // The download's scratch directory is gone.
    assert_eq!(
        std::fs::read_dir(t.dir.path()).unwrap().count(),
        1,
        "only the restored home is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_key_can_live_in_the_vault_with_the_rest_in_maestra_toml() {
    let s3 = start_s3().await;
    // No AWS_* at all: endpoint and key id from [backup], the secret key from the vault.
    let h = Home::new().with("MAESTRA_BACKUP_PASSPHRASE", PASS);
    h.ok(&["init"], b"");
    let toml = h.root().join("maestra.toml");
    std::fs::write(
        &toml,
        format!(
            "[backup]\nendpoint = \"{}\"\nregion = \"us-east-1\"\naccess_key_id = \"testing\"\nsecret_access_key_vault = \"backup_s3\"\nallow_http = true\n",
            s3.endpoint
        ),
    )
    .unwrap();
    std::fs::set_permissions(&toml, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let to = format!("s3://{BUCKET}/from-vault");
    let err = h.fails(&["backup", "create", "--to", &to], b"");
    assert!(
        err.contains("backup_s3"),
        "the vault secret is missing: {err}"
    );
    h.ok(&["vault", "put", "backup_s3"], b"testing");
    h.ok(&["backup", "create", "--to", &to], b"");
    h.ok(&["backup", "verify", "--from", &to], b"");
    let keys: Vec<String> = objects(&s3).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["from-vault/data.mxb", "from-vault/manifest.mxb"]);
}

/// The manifest is committed with a conditional put (`If-None-Match: *`): of two backups that
/// both found the prefix free and race to commit, the second is refused, the first kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_manifest_under_one_prefix_is_refused_not_overwritten() {
    use maestra::backup::location::{Bucket, MANIFEST};
    let s3 = start_s3().await;
    let bucket = Bucket::connect(BUCKET, "race", &settings(&s3)).unwrap();
    bucket.put_new(MANIFEST, b"first".to_vec()).await.unwrap();
    let err = bucket
        .put_new(MANIFEST, b"second".to_vec())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("another backup was committed"), "{err}");
    let objs = objects(&s3).await;
    assert_eq!(objs, [("race/manifest.mxb".to_string(), b"first".to_vec())]);
}
