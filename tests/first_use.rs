//! What a new user meets first (issue 25): the messages, files and helpers of a first session
//! with `maestra`, each as the binary shows them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};

use common::Home;

/// `maestra ARGS` in `home`, its standard output a pipe whose reader is already gone, as in
/// `maestra guard status | head -0`: every write to it fails with EPIPE.
fn into_closed_pipe(home: &Home, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_maestra"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.dir.path())
        .envs(home.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_pipe_ends_every_command_quietly() {
    let h = Home::new();
    h.ok(&["init"], b"");
    h.ok(&["vault", "put", "hue"], b"bridge-user");
    // `println!` (guard, audit), `writeln!` that returns the error (vault), before and after
    // the audit entry is written.
    for args in [
        &["guard", "status"][..],
        &["vault", "list"],
        &["vault", "get", "hue", "--reveal"],
        &["audit", "query"],
        &["audit", "verify"],
        &["cost", "report"],
        &["keys", "list"],
    ] {
        let out = into_closed_pipe(&h, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "maestra {args:?} | head -0 failed: {:?} {stderr}",
            out.status
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "maestra {args:?} | head -0: {stderr}"
        );
    }
}

#[test]
fn vault_put_strips_exactly_one_trailing_newline_and_says_so() {
    let h = Home::new();
    h.ok(&["init"], b"");
    for (input, stored, stripped) in [
        (&b"tok\n"[..], "tok", true),
        (b"tok\r\n", "tok", true),
        (b"tok\n\n", "tok\n", true),
        (b"tok", "tok", false),
        (b" tok \n", " tok ", true),
    ] {
        let out = h.run(&["vault", "put", "x"], input);
        assert!(out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(err.contains("newline"), stripped, "{input:?}: {err}");
        // `get --reveal` ends what it prints with one newline of its own.
        let shown = h.ok(&["vault", "get", "x", "--reveal"], b"");
        assert_eq!(shown, format!("{stored}\n"), "{input:?}");
    }
    // Only a newline is still nothing to store, and the refusal stays one line.
    h.fails(&["vault", "put", "empty"], b"\n");
}

/// Waits (a few seconds at most) for `serve` to have printed a line containing `needle`.
fn printed(server: &common::server::Server, needle: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if server.stdout.lock().unwrap().contains(needle) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

#[test]
fn serve_says_where_the_privacy_center_is() {
    let h = Home::new();
    h.ok(&["init"], b"");
    let server = common::server::Server::start(&h);
    let line = format!(
        "open http://{}/ to see what your assistant does",
        server.addr
    );
    assert!(printed(&server, &line), "{}", server.output());
    drop(server);

    // Cloud mode with TLS: the page is https.
    let h = Home::new().with("MAESTRA_MODE", "cloud").with(
        "MAESTRA_API_KEY",
        "mae-static-first-use-test-key-0123456789",
    );
    h.ok(&["init"], b"");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = h.dir.path().join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    let h = h
        .with("MAESTRA_TLS_CERT", dir.join("cert.pem").to_str().unwrap())
        .with("MAESTRA_TLS_KEY", dir.join("key.pem").to_str().unwrap());
    let server = common::server::Server::start(&h);
    assert_eq!(server.scheme, "https");
    let line = format!(
        "open https://{}/ to see what your assistant does",
        server.addr
    );
    assert!(printed(&server, &line), "{}", server.output());
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_model_that_is_down_is_named_with_the_fix() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let h = Home::new()
        .with("MAESTRA_LOCAL_MODEL_URL", &url)
        .with("MAESTRA_LOCAL_MODEL", "llama3.2");
    h.ok(&["init"], b"");
    let server = common::server::Server::start(&h);
    let client = common::http::pooled();
    let chat = |stream: bool| {
        serde_json::json!({
            "model": "llama3.2",
            "stream": stream,
            "messages": [{"role": "user", "content": "hello"}],
        })
    };
    let core = serde_json::json!({
        "user_id": "ann", "surface_id": "cli", "conversation_id": null, "message": "hello",
    });
    for (path, body) in [
        ("/v1/chat/completions", chat(false)),
        ("/v1/chat/completions", chat(true)),
        ("/api/maestra/core", core),
    ] {
        let resp = client
            .post(server.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(status, 502, "{path}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        for needle in [
            url.as_str(),
            "MAESTRA_LOCAL_MODEL_URL",
            "start Ollama or llama.cpp there",
        ] {
            assert!(message.contains(needle), "{path}: {message}");
        }
    }
}

/// The sample with every `#key = value` and `#[table]` line uncommented; prose stays.
fn uncommented(sample: &str) -> String {
    sample
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Every environment name the configuration reads: each string literal that is a whole
/// `NAME_LIKE_THIS` in `src/config.rs` and `src/config/*.rs`.
fn config_env_names() -> std::collections::BTreeSet<String> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join("config.rs")];
    for e in std::fs::read_dir(src.join("config")).unwrap() {
        files.push(e.unwrap().path());
    }
    let literal = regex::Regex::new(r#""([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)""#).unwrap();
    let mut names = std::collections::BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        names.extend(literal.captures_iter(&text).map(|c| c[1].to_string()));
    }
    names
}

#[test]
fn init_writes_a_commented_sample_with_every_setting() {
    use maestra::config::Config;
    let h = Home::new();
    let out = h.ok(&["init"], b"");
    let path = h.root().join("maestra.toml");
    assert!(out.contains("every setting"), "{out}");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions())
            & 0o777,
        0o600
    );
    let sample = std::fs::read_to_string(&path).unwrap();
    assert!(sample.is_ascii(), "a file cut short must still be UTF-8");
    let load = |text: &str| {
        Config::from_parts(
            &std::collections::HashMap::<String, String>::new(),
            h.root(),
            path.clone(),
            Some(text),
        )
    };
    // As written it is the defaults; every setting uncommented is still a valid file.
    load(&sample).unwrap();
    let all = uncommented(&sample);
    load(&all).unwrap_or_else(|e| panic!("{e}\n{all}"));
    h.ok(&["doctor"], b"");

    // Every key each table of the loader knows (its "expected one of" list) is there.
    let tables: toml::Table = toml::from_str(&all).unwrap();
    let first = |t: &str| {
        tables[t]
            .as_table()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .clone()
    };
    for (probe, section) in [
        ("", toml::Value::Table(tables.clone())),
        ("[audit]", tables["audit"].clone()),
        ("[server]", tables["server"].clone()),
        ("[cost]", tables["cost"].clone()),
        ("[conversations]", tables["conversations"].clone()),
        ("[backup]", tables["backup"].clone()),
        ("[guard]", tables["guard"].clone()),
        ("[mcp]", tables["mcp"].clone()),
        ("[tls]", tables["tls"].clone()),
        ("[pricing.\"m\"]", first("pricing")),
        ("[services.x]", first("services")),
    ] {
        let err = load(&format!("{probe}\nzz_probe = 0\n"))
            .unwrap_err()
            .to_string();
        // serde's "expected `a`", "expected `a` or `b`", "expected one of `a`, `b`, ...".
        let Some((_, expected)) = err.split_once("expected ") else {
            // `tls` is a table or a string: no list, so its two keys are named here.
            assert_eq!(probe, "[tls]", "{err}");
            for key in ["cert", "key"] {
                assert!(section.get(key).is_some(), "[tls] {key}");
            }
            continue;
        };
        for key in expected.split('`').skip(1).step_by(2) {
            let listed = section.get(key).is_some()
                || (probe.is_empty() && sample.contains(&format!("\n# {key}:")));
            assert!(listed, "{probe} {key} is not in the sample");
        }
    }
    // And every environment name the configuration reads.
    let names = config_env_names();
    assert!(
        names.contains("MAESTRA_LOCAL_MODEL_URL") && names.len() > 30,
        "{names:?}"
    );
    for name in names {
        assert!(sample.contains(&name), "{name} is not in the sample");
    }

    // An existing file is never replaced.
    std::fs::write(&path, "# mine\nlocal_only = true\n").unwrap();
    let out = h.ok(&["init"], b"");
    assert!(!out.contains("every setting"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "# mine\nlocal_only = true\n"
    );
}

#[test]
fn completions_and_the_manual_come_from_the_command_line_itself() {
    // No home is needed: these run before anything is set up.
    let h = Home::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = h.ok(&["completions", shell], b"");
        for word in [
            "serve",
            "vault",
            "rotate-key",
            "guard",
            "backup",
            "completions",
        ] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    assert!(!h.root().exists());
    assert!(!h.run(&["completions", "cmd.exe"], b"").status.success());

    // roff: clap_mangen's two-line quote preamble, then the title line.
    let title = |page: &str| {
        page.lines()
            .find(|l| !l.starts_with(".ie") && !l.starts_with(".el"))
            .unwrap_or_default()
            .to_string()
    };
    let page = h.ok(&["man"], b"");
    assert!(title(&page).starts_with(".TH maestra 1"), "{page}");
    assert!(page.contains("vault") && page.contains("completions"));
    // Every subcommand gets its page.
    let dir = h.dir.path().join("man1");
    h.ok(&["man", "--dir", dir.to_str().unwrap()], b"");
    for page in [
        "maestra.1",
        "maestra-vault.1",
        "maestra-vault-put.1",
        "maestra-completions.1",
    ] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(title(&text).starts_with(".TH maestra"), "{page}: {text}");
    }
    // And `man` itself renders it, where man is installed.
    if let Ok(out) = Command::new("man")
        .args(["-l", dir.join("maestra-vault-put.1").to_str().unwrap()])
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        && out.status.success()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("maestra-vault-put"), "{text}");
    }
}
