//! Cloud mode facing a network (issue 15): HTTPS with rustls and certificates that renew under
//! a running server, the Python `openai` client through HTTPS, the address allow-list and
//! trusted proxies from real source addresses in 127.0.0.0/8, the 401/429 headers, and every
//! bad setting a clear error before the server listens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use common::server::{Server, upstream_env};
use common::{Home, mock};
use serde_json::Value;

const API_KEY: &str = "mae-static-network-test-key-0123456789";

/// A CA and a server certificate it signed for `localhost` and 127.0.0.1.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki(name: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Writes the pair the way a renewal does: new files moved over the old ones.
fn install(dir: &Path, p: &Pki) {
    for (name, text) in [("cert.pem", &p.cert_pem), ("key.pem", &p.key_pem)] {
        let tmp = dir.join(format!("{name}.new"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

fn trusting(ca_pem: &str) -> reqwest::Client {
    common::http::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn from(addr: &str) -> reqwest::Client {
    common::http::builder()
        .local_address(addr.parse::<IpAddr>().unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn cloud_home(mock: std::net::SocketAddr) -> Home {
    let home = upstream_env(Home::new(), mock)
        .with("MAESTRA_MODE", "cloud")
        .with("MAESTRA_API_KEY", API_KEY);
    home.ok(&["init"], b"");
    home
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_renews_without_restart_and_speaks_to_the_openai_client() {
    let (addr, _mock) = mock::start().await;
    let home = cloud_home(addr);
    let tls = home.dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let first = pki("first");
    install(&tls, &first);
    let home = home
        .with("MAESTRA_TLS_CERT", tls.join("cert.pem").to_str().unwrap())
        .with("MAESTRA_TLS_KEY", tls.join("key.pem").to_str().unwrap());
    let server = Server::start(&home);
    assert_eq!(server.scheme, "https");
    let health = trusting(&first.ca_pem)
        .get(server.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let privacy: Value = trusting(&first.ca_pem)
        .get(server.url("/api/privacy"))
        .header("authorization", format!("bearer {API_KEY}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(privacy["network"]["tls"], "on");
    assert!(!privacy.to_string().contains(API_KEY));
    // Plain HTTP to the TLS port gets nothing served.
    let plain = common::http::client()
        .get(format!("http://{}/health", server.addr))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // The Python openai client, verifying the test CA.
    let ca = home.dir.path().join("ca.pem");
    std::fs::write(&ca, &first.ca_pem).unwrap();
    let out = common::run_python(
        r#"
import sys, openai
base, key, ca = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base, api_key=key, http_client=openai.DefaultHttpxClient(verify=ca))
r = client.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "over tls"}])
print(r.choices[0].message.content)
"#,
        &[&server.url("/v1"), API_KEY, ca.to_str().unwrap()],
    );
    assert!(out.contains("over tls"), "{out}");

    // A renewal under the running server: after the swap, new handshakes get the new pair.
    let second = pki("second");
    install(&tls, &second);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut renewed = false;
    for _ in 0..20 {
        if trusting(&second.ca_pem)
            .get(server.url("/health"))
            .send()
            .await
            .is_ok()
        {
            renewed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(renewed, "the renewed certificate was never served");
    assert!(
        trusting(&first.ca_pem)
            .get(server.url("/health"))
            .send()
            .await
            .is_err(),
        "the old certificate is still served"
    );
    // A half-written renewal keeps the last good pair serving.
    std::fs::write(tls.join("key.pem"), "not a key").unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let still = trusting(&second.ca_pem)
        .get(server.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_and_trusted_proxies_decide_by_the_real_client() {
    let (addr, _mock) = mock::start().await;
    let home = cloud_home(addr)
        .with("MAESTRA_ALLOW_IPS", "127.0.0.1, 127.0.0.3, 203.0.113.0/24")
        .with("MAESTRA_TRUSTED_PROXIES", "127.0.0.3");
    let server = Server::start(&home);
    let get = |client: reqwest::Client, xff: Option<&'static str>| {
        let mut r = client
            .get(server.url("/api/privacy"))
            .header("x-api-key", API_KEY);
        if let Some(x) = xff {
            r = r.header("x-forwarded-for", x);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(from("127.0.0.1"), None).await, 200);
    // Not on the list: refused before the key is even looked at.
    assert_eq!(get(from("127.0.0.2"), None).await, 403);
    let no_key = from("127.0.0.2")
        .get(server.url("/api/privacy"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 403);
    // A forwarded address is believed from the trusted proxy only.
    assert_eq!(get(from("127.0.0.2"), Some("203.0.113.9")).await, 403);
    assert_eq!(get(from("127.0.0.3"), Some("203.0.113.9")).await, 200);
    assert_eq!(get(from("127.0.0.3"), Some("198.51.100.1")).await, 403);
    // What a client typed before the proxy's entry does not matter, and an entry that is not
    // an address never turns into the proxy's (allowed) address.
    assert_eq!(
        get(from("127.0.0.3"), Some("203.0.113.5, 198.51.100.1")).await,
        403
    );
    assert_eq!(
        get(from("127.0.0.3"), Some("garbage, 203.0.113.9")).await,
        200
    );
    assert_eq!(
        get(from("127.0.0.3"), Some("203.0.113.9, garbage")).await,
        403
    );
    // The proxy appends to X-Forwarded-For; a Forwarded header it passed through is ignored.
    let spoofed = from("127.0.0.3")
        .get(server.url("/api/privacy"))
        .header("x-api-key", API_KEY)
        .header("forwarded", "for=203.0.113.9")
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 403);
    // The client behind the proxy is the address the audit log records.
    let c = from("127.0.0.3");
    let r = c
        .post(server.url("/api/audit/events"))
        .header("x-api-key", API_KEY)
        .header("x-forwarded-for", "6.6.6.6, 203.0.113.77")
        .json(
            &serde_json::json!({"category": "smarthome", "service": "hue",
            "action": "lights.on", "result": "success"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let audit = std::fs::read_to_string(home.root().join("logs/audit.log")).unwrap();
    assert!(audit.contains("\"ip_address\":\"203.0.113.77\""), "{audit}");
    assert!(audit.contains("address_not_allowed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_only_the_proxy_may_connect() {
    let (addr, _mock) = mock::start().await;
    let home = cloud_home(addr)
        .with("MAESTRA_TLS", "behind-proxy")
        .with("MAESTRA_TRUSTED_PROXIES", "127.0.0.3");
    let server = Server::start(&home);
    let get = |client: reqwest::Client| {
        let r = client
            .get(server.url("/api/privacy"))
            .header("x-api-key", API_KEY)
            .header("x-forwarded-for", "203.0.113.9");
        async move { r.send().await.unwrap() }
    };
    let direct = get(from("127.0.0.2")).await;
    assert_eq!(direct.status(), 403);
    let proxied = get(from("127.0.0.3")).await;
    assert_eq!(proxied.status(), 200);
    assert_eq!(
        proxied.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let privacy: Value = proxied.json().await.unwrap();
    assert_eq!(privacy["network"]["tls"], "behind-proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_their_headers_and_the_bearer_scheme_is_case_insensitive() {
    let (addr, _mock) = mock::start().await;
    let home = cloud_home(addr)
        .with("MAESTRA_RATE_LIMIT_REQUESTS", "3")
        .with("MAESTRA_RATE_LIMIT_WINDOW", "60");
    let server = Server::start(&home);
    let c = from("127.0.0.1");
    let denied = c.get(server.url("/v1/models")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    assert!(
        denied.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    // The 401 spent one of the address's three; two more pass, whatever the scheme's case.
    let mut statuses = Vec::new();
    let mut last = None;
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let r = c
            .get(server.url("/v1/models"))
            .header("authorization", format!("{scheme} {API_KEY}"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        last = Some(r);
    }
    assert_eq!(statuses, [200, 200, 429]);
    let r = last.unwrap();
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
}

/// Runs `maestra serve` expecting it to refuse: it must exit non-zero, with the setting named,
/// without ever printing that it listens.
fn refuses(home: &Home, bind: &str, names: &str) {
    let out = home.run_within(&["serve", "--bind", bind], b"", Duration::from_secs(10));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(!text.contains("listening"), "{text}");
    assert!(text.contains(names), "{names}: {text}");
}

#[test]
fn every_bad_network_setting_stops_the_start() {
    let home = Home::new()
        .with("MAESTRA_MODE", "cloud")
        .with("MAESTRA_API_KEY", API_KEY);
    home.ok(&["init"], b"");
    let dir = home.dir.path().join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let a = pki("a");
    let b = pki("b");
    std::fs::write(dir.join("a.crt"), &a.cert_pem).unwrap();
    std::fs::write(dir.join("b.key"), &b.key_pem).unwrap();
    std::fs::write(dir.join("garbage.pem"), "hello").unwrap();
    let with = |pairs: &[(&str, &str)]| {
        let mut h = Home {
            dir: tempfile::tempdir().unwrap(),
            env: home.env.clone(),
        };
        for (k, v) in pairs {
            h = h.with(k, v);
        }
        h
    };
    let path = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let (crt, key, junk, none) = (
        path("a.crt"),
        path("b.key"),
        path("garbage.pem"),
        path("none"),
    );
    refuses(
        &with(&[("MAESTRA_TLS_CERT", &none), ("MAESTRA_TLS_KEY", &key)]),
        "127.0.0.1:0",
        "tls.cert",
    );
    refuses(
        &with(&[("MAESTRA_TLS_CERT", &crt), ("MAESTRA_TLS_KEY", &key)]),
        "127.0.0.1:0",
        "tls.key",
    );
    refuses(
        &with(&[("MAESTRA_TLS_CERT", &crt), ("MAESTRA_TLS_KEY", &junk)]),
        "127.0.0.1:0",
        "tls.key",
    );
    refuses(
        &with(&[("MAESTRA_TLS_CERT", &junk), ("MAESTRA_TLS_KEY", &key)]),
        "127.0.0.1:0",
        "tls.cert",
    );
    refuses(
        &with(&[("MAESTRA_TLS_CERT", &crt)]),
        "127.0.0.1:0",
        "MAESTRA_TLS_KEY",
    );
    refuses(
        &with(&[("MAESTRA_ALLOW_IPS", "10.0.0.0/33")]),
        "127.0.0.1:0",
        "allow_ips",
    );
    refuses(
        &with(&[("MAESTRA_TRUSTED_PROXIES", "proxy.example")]),
        "127.0.0.1:0",
        "trusted_proxies",
    );
    refuses(
        &with(&[("MAESTRA_TLS", "behind-proxy")]),
        "127.0.0.1:0",
        "trusted_proxies",
    );
    // Cloud mode on an address other machines reach, with no TLS: no start.
    refuses(&with(&[]), "0.0.0.0:0", "needs TLS");
}
