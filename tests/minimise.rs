//! Minimisation before a cloud call (SPEC §2.12), black-box: the official `openai` Python SDK
//! and plain HTTP speak to the real `maestra` binary, which speaks to the mock upstream as
//! OpenAI (`gpt-4o-mini`, cloud) and as a local server (`llama3.2`). What reached the upstream
//! is read from the mock's record: it must never hold the test set's values; what the client
//! gets back must hold them all again, whole answers and streams alike.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Home;
use common::http::{client, post_json, send_json, with_headers};
use common::mock::{self, Mock};
use common::server::{Server, llm_entries, upstream_env};
use serde_json::{Value, json};

/// A name on the person's list, a vault secret, and one value of every other kind.
const NAME: &str = "Ingrid Halvorsen";
const VAULT_SECRET: &str = "vault-canary-9f8e7d6c";
const TEST_SET: &[(&str, &str)] = &[
    ("PERSON", NAME),
    ("EMAIL", "ann.lee@example.org"),
    ("PHONE", "+44 20 7946 0018"),
    ("CARD", "4111 1111 1111 1111"),
    ("IBAN", "DE89 3704 0044 0532 0130 00"),
    ("IP", "203.0.113.7"),
    ("URL", "https://files.example.net/share?token=Zx81kq"),
    ("SSN", "078-05-1120"),
    ("NINO", "AB 12 34 56 C"),
    ("SECRET", VAULT_SECRET),
    ("SECRET", "sk-proj-abcdefghijklmnopqrstuvwx0123"),
];

/// The test set in one message, each value once.
fn prompt(mode: &str) -> String {
    let values: Vec<String> = TEST_SET
        .iter()
        .map(|(kind, v)| format!("{kind}: {v} ;"))
        .collect();
    format!("{mode} I am writing about {}", values.join(" "))
}

async fn setup(extra: &[(&str, &str)]) -> (Server, Mock, Home) {
    let (addr, mock) = mock::start().await;
    let mut home = upstream_env(Home::new(), addr).with("MAESTRA_OPENAI_KEY", "sk-test-openai");
    for (k, v) in extra {
        home = home.with(k, v);
    }
    home.ok(&["init"], b"");
    home.ok(&["vault", "put", "hue"], VAULT_SECRET.as_bytes());
    home.ok(&["privacy", "names", "add", NAME], b"");
    let server = Server::start(&home);
    (server, mock, home)
}

/// Every chat body the mock received, as text.
fn received(mock: &Mock) -> Vec<String> {
    mock.requests()
        .into_iter()
        .filter(|s| s.path == "/v1/chat/completions")
        .map(|s| s.body.to_string())
        .collect()
}

fn assert_withheld(body: &str) {
    for (kind, value) in TEST_SET {
        assert!(
            !body.contains(value),
            "{kind} {value:?} reached the cloud: {body}"
        );
        assert!(
            body.contains(&format!("<{kind}_")),
            "no {kind} placeholder: {body}"
        );
    }
}

const SDK: &str = r#"
import sys, json
from openai import OpenAI
c = OpenAI(base_url=sys.argv[1], api_key="unused-locally", max_retries=0)
model, text = sys.argv[2], sys.argv[3]
msgs = [{"role": "user", "content": text}]
out = {"plain": c.chat.completions.create(model=model, messages=msgs).choices[0].message.content}
pieces = []
for chunk in c.chat.completions.create(model=model, messages=msgs, stream=True):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
out["pieces"] = pieces
tools = [{"type": "function", "function": {"name": "send_note", "parameters": {"type": "object",
          "properties": {"note": {"type": "string"}}}}}]
r = c.chat.completions.create(model=model, messages=msgs, tools=tools)
out["call"] = r.choices[0].message.tool_calls[0].function.arguments
with c.chat.completions.stream(model=model, messages=msgs, tools=tools) as s:
    final = s.get_final_completion()
out["streamed_call"] = final.choices[0].message.tool_calls[0].function.arguments
print(json.dumps(out))
"#;

async fn sdk(server: &Server, model: &str, text: &str) -> Value {
    let args = [server.url("/v1"), model.to_string(), text.to_string()];
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run_python(SDK, &args)
    })
    .await
    .unwrap();
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_call_never_carries_the_values_and_every_answer_comes_back_restored() {
    let (mut server, mock, home) = setup(&[]).await;
    // Streamed 3 characters a delta, so placeholders arrive split; function-call arguments
    // quote the text (their fragments are 5 characters).
    let text = prompt("mode:chars3 mode:call-echo");
    let out = sdk(&server, "gpt-4o-mini", &text).await;
    let echo = format!("echo(1): {text}");
    assert_eq!(out["plain"], echo.as_str());
    let pieces: Vec<&str> = out["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(pieces.concat(), echo);
    // Held back while a placeholder could still be forming, then sent restored: no delta ends
    // in part of one.
    for p in &pieces {
        assert!(
            !p.contains('<'),
            "a placeholder piece reached the client: {p:?}"
        );
    }
    let note = json!({ "note": text }).to_string();
    for call in ["call", "streamed_call"] {
        let args: Value = serde_json::from_str(out[call].as_str().unwrap()).unwrap();
        assert_eq!(args.to_string(), note, "{call}");
    }
    let bodies = received(&mock);
    assert_eq!(bodies.len(), 4);
    for body in &bodies {
        assert_withheld(body);
    }

    // A local model sees the text as written: nothing leaves the machine.
    let local = sdk(&server, "llama3.2", &text).await;
    assert_eq!(local["plain"], echo.as_str());
    let bodies = received(&mock);
    assert!(bodies[4].contains(NAME) && bodies[4].contains("4111 1111 1111 1111"));

    // Each cloud entry counts what was withheld, per kind; no entry holds a value.
    let (entries, log) = llm_entries(&mut server, &home);
    let cloud: Vec<&Value> = entries
        .iter()
        .filter(|e| e["service"] == "openai")
        .collect();
    assert_eq!(cloud.len(), 4, "{log}");
    for e in &cloud {
        let w = &e["details"]["withheld"];
        for kind in [
            "PERSON", "EMAIL", "PHONE", "CARD", "IBAN", "IP", "URL", "SSN", "NINO",
        ] {
            assert_eq!(w[kind], 1, "{kind}: {e}");
        }
        assert_eq!(w["SECRET"], 2, "{e}");
    }
    assert!(
        entries
            .iter()
            .filter(|e| e["service"] == "local_model")
            .all(|e| e["details"].get("withheld").is_none())
    );
    for (kind, value) in TEST_SET {
        assert!(!log.contains(value), "{kind} in the audit log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alikes_case_and_the_header_that_only_tightens() {
    let (server, mock, home) = setup(&[]).await;
    let url = server.url("/v1/chat/completions");
    let chat = |text: &str, headers: &[(&str, &str)]| {
        let req = client().post(&url).json(&json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": text}],
        }));
        send_json(with_headers(req, headers))
    };
    // The user's own `<EMAIL_1>` is text, not a placeholder: it is sent and answered as it
    // is, and the real address gets another number.
    let text = "mode:lower my template is <EMAIL_1> and my address Ann.Lee@Example.org";
    let (status, body) = chat(text, &[]).await;
    assert_eq!(status, 200, "{body}");
    let sent = received(&mock).pop().unwrap();
    assert!(
        sent.contains("<EMAIL_1>") && sent.contains("<EMAIL_2>"),
        "{sent}"
    );
    assert!(!sent.to_lowercase().contains("ann.lee"), "{sent}");
    // The mock lower-cased its echo: `<email_2>` still comes back as the address as written.
    assert_eq!(
        body["choices"][0]["message"]["content"],
        format!(
            "echo(1): {}",
            text.to_lowercase()
                .replace("ann.lee@example.org", "Ann.Lee@Example.org")
        )
    );

    // A plain URL goes at `standard`; `X-Maestra-Minimise: strict` withholds it; `off` cannot
    // loosen the provider's `standard`.
    let text = "see https://example.com/guide and ann@example.org";
    chat(text, &[("x-maestra-minimise", "off")]).await;
    let sent = received(&mock).pop().unwrap();
    assert!(
        sent.contains("https://example.com/guide") && !sent.contains("ann@"),
        "{sent}"
    );
    chat(text, &[("x-maestra-minimise", "strict")]).await;
    let sent = received(&mock).pop().unwrap();
    assert!(
        !sent.contains("example.com/guide") && sent.contains("<URL_1>"),
        "{sent}"
    );
    let (status, body) = chat(text, &[("x-maestra-minimise", "everything")]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-Maestra-Minimise")
    );

    // A secret put into the vault by another process while the server runs is withheld from
    // the very next call (the store's marker is read before each cloud call).
    home.ok(&["vault", "put", "late"], b"late-canary-5e6f7a8b");
    chat("the new key is late-canary-5e6f7a8b", &[]).await;
    let sent = received(&mock).pop().unwrap();
    assert!(
        !sent.contains("late-canary") && sent.contains("<SECRET_1>"),
        "{sent}"
    );

    // Texts embedded by a cloud model lose theirs too (nothing comes back to restore).
    let req = client().post(server.url("/v1/embeddings")).json(&json!({
        "model": "text-embedding-3-small",
        "input": ["call me on +44 20 7946 0018", "ann@example.org"],
    }));
    let (status, body) = send_json(req).await;
    assert_eq!(status, 200, "{body}");
    let embedded = mock
        .requests()
        .into_iter()
        .rfind(|s| s.path == "/v1/embeddings")
        .unwrap()
        .body;
    assert_eq!(
        embedded["input"],
        json!(["call me on <PHONE_1>", "<EMAIL_1>"])
    );

    // A message of text parts is counted once, though its joined text is withheld too.
    let req = client().post(&url).json(&json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "mail ann@example.org"},
            {"type": "text", "text": "or bo@example.org"},
        ]}],
    }));
    let (status, body) = send_json(req).await;
    assert_eq!(status, 200, "{body}");
    let sent = received(&mock).pop().unwrap();
    assert!(
        sent.contains("<EMAIL_2>") && !sent.contains("@example.org"),
        "{sent}"
    );

    // A 1 MB prompt (five messages of ~210 kB, under the 256 kB a text may hold), an address
    // at the end of each: withheld everywhere, one placeholder, the echo restored.
    let part = format!(
        "{} ann@example.org",
        "lorem ipsum dolor sit amet ".repeat(7_800)
    );
    let messages: Vec<Value> = (0..5)
        .map(|_| json!({"role": "user", "content": part}))
        .collect();
    let req = client()
        .post(&url)
        .json(&json!({"model": "gpt-4o-mini", "messages": messages}));
    let (status, body) = send_json(req).await;
    assert_eq!(status, 200, "{body}");
    let sent = received(&mock).pop().unwrap();
    assert!(sent.len() > 1_000_000);
    assert!(!sent.contains("ann@example.org") && sent.contains("<EMAIL_1>"));
    assert!(!sent.contains("<EMAIL_2>"));
    assert_eq!(
        body["choices"][0]["message"]["content"],
        format!("echo(5): {part}")
    );

    // 10,000 addresses: each withheld, each restored, nothing mixed up.
    let many: Vec<String> = (0..10_000).map(|i| format!("u{i}@example.org")).collect();
    let text = many.join(" ");
    let (status, body) = chat(&text, &[]).await;
    assert_eq!(status, 200);
    let sent = received(&mock).pop().unwrap();
    assert!(!sent.contains("@example.org") && sent.contains("<EMAIL_10000>"));
    assert_eq!(
        body["choices"][0]["message"]["content"],
        format!("echo(1): {text}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_endpoint_minimises_its_cloud_fallback() {
    // The local model is down and the person allowed a cloud fallback: the core call goes to
    // OpenAI, minimised.
    let (mut server, mock, home) = setup(&[
        ("MAESTRA_LOCAL_MODEL_URL", "http://127.0.0.1:9/v1"),
        ("MAESTRA_CLOUD_FALLBACK", "true"),
    ])
    .await;
    let text = prompt("");
    let (status, env) = post_json(
        &server.url("/api/maestra/core"),
        json!({"user_id": "jh", "surface_id": "cli", "conversation_id": "conv_m1", "message": text}),
    )
    .await;
    assert_eq!(status, 200, "{env}");
    assert_eq!(env["source"], "cloud");
    assert_eq!(env["reply"], format!("echo(1): {text}"));
    let bodies = received(&mock);
    assert_eq!(bodies.len(), 1);
    assert_withheld(&bodies[0]);
    let (entries, _) = llm_entries(&mut server, &home);
    let cloud = entries.iter().find(|e| e["service"] == "openai").unwrap();
    assert_eq!(cloud["details"]["withheld"]["EMAIL"], 1);
}

#[test]
fn privacy_test_names_and_vcf_import() {
    let home = Home::new();
    home.ok(&["init"], b"");
    let vcf = home.dir.path().join("contacts.vcf");
    std::fs::write(
        &vcf,
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ola Nordmann\r\nN:Nordmann;Ola;;;\r\nEND:VCARD\r\n\
         BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Kari Nordmann\r\nEND:VCARD\r\n",
    )
    .unwrap();
    let out = home.ok(
        &["privacy", "names", "import", "--vcf", vcf.to_str().unwrap()],
        b"",
    );
    assert!(out.contains("imported 2 name(s)"), "{out}");
    home.ok(&["privacy", "names", "add", "Per Hansen"], b"");
    home.ok(&["privacy", "names", "remove", "kari nordmann"], b"");
    assert_eq!(
        home.ok(&["privacy", "names", "list"], b""),
        "Ola Nordmann\nPer Hansen\n"
    );
    // Encrypted at rest: no file of the home holds a name.
    for (path, bytes) in common::all_file_bytes(&home.root()) {
        assert!(!common::contains(&bytes, "Nordmann"), "{}", path.display());
    }
    let out = home.ok(
        &[
            "privacy",
            "test",
            "--json",
            "Ola Nordmann: ola@example.no, +47 22 12 34 56",
        ],
        b"",
    );
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["sent"], "<PERSON_1>: <EMAIL_1>, <PHONE_1>");
    assert_eq!(
        doc["withheld"][0],
        json!({"type": "PERSON", "start": 0, "end": 12, "value": "Ola Nordmann"})
    );
    // Many texts, offsets in characters.
    let out = home.ok(
        &["privacy", "test", "--jsonl"],
        "\"Zoë: zoe@example.org\"\n\"nothing\"\n".as_bytes(),
    );
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            json!({"withheld": [{"type": "EMAIL", "start": 5, "end": 20}]}),
            json!({"withheld": []}),
        ]
    );
    let err = home.fails(
        &["privacy", "names", "import", "--vcf", "/nonexistent.vcf"],
        b"",
    );
    assert!(err.contains("/nonexistent.vcf"), "{err}");
}
