//! Maestra in front of a real local model server, not a mock: `llama-cpp-python`'s
//! OpenAI-compatible server (llama.cpp built from source, installed into `.venv` by
//! `scripts/test`) serving a tiny random-weight llama model that
//! `scripts/local_model/make_gguf.py` writes with the `gguf` package. Maestra runs as the
//! README's quick start says (`MAESTRA_LOCAL_MODEL_URL` at that server); the client is the
//! official `openai` SDK (`scripts/local_model/client.py`).
//!
//! What the mocks cannot show: the real server's protocol, streaming and usage fields; that
//! a client leaving mid-stream stops the generation on the model server's side; and what a
//! prompt over the model's context becomes.
//!
//! A missing `.venv`, package or model server fails these tests, never skips them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Home;
use common::server::Server;
use serde_json::Value;

/// The name the model server answers to, and the one Maestra is told.
const MODEL: &str = "tiny-llama";
/// Generous, for a machine under load: loading the model, one answer, the server noticing.
const START_LIMIT: Duration = Duration::from_secs(180);
const NOTICE_LIMIT: Duration = Duration::from_secs(60);
/// What llama-cpp-python's server prints when a streamed answer's client goes away
/// (`get_event_publisher` in `llama_cpp/server/app.py`) — the generation ends there.
const UPSTREAM_SAW_DISCONNECT: &str = "Disconnected from client (via refresh/close)";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/local_model")
        .join(name)
}

/// A `llama_cpp.server` child on 127.0.0.1, its stdout and stderr collected in one log.
struct LlamaServer {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl LlamaServer {
    /// Writes the test model and serves it with a context of `n_ctx` tokens, one thread,
    /// and `interrupt_requests` off: by default the server cuts a running stream short when
    /// another request arrives, which would stop a generation Maestra had left running.
    fn start(n_ctx: u32) -> LlamaServer {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny.gguf");
        let made = Command::new(common::python())
            .arg(script("make_gguf.py"))
            .arg(&model)
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "make_gguf.py failed (is `gguf` in .venv? run `bash scripts/test`): {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let mut child = Command::new(common::python())
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(&model)
            .args(["--model_alias", MODEL, "--host", "127.0.0.1"])
            // Port 0: the system picks a free one, and uvicorn logs the one it got.
            .args(["--port", "0"])
            .args(["--n_ctx", &n_ctx.to_string()])
            .args(["--n_threads", "1", "--n_threads_batch", "1"])
            .args(["--chat_format", "chatml", "--interrupt_requests", "False"])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut pipe = pipe;
                let mut chunk = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    log.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            });
        }
        let mut server = LlamaServer {
            child,
            port: 0,
            log,
            _dir: dir,
        };
        const READY: &str = "Uvicorn running on http://127.0.0.1:";
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let log = server.log();
            if let Some((_, rest)) = log.split_once(READY) {
                // Whole only when the message goes on past the number.
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if rest[digits.len()..].starts_with(' ')
                    && let Ok(port) = digits.parse()
                {
                    server.port = port;
                    break;
                }
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "the llama.cpp server exited ({status}) before serving (is \
                     `llama-cpp-python[server]` in .venv? run `bash scripts/test`):\n{}",
                    server.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the llama.cpp server did not start within {START_LIMIT:?}:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `maestra serve` as the README's quick start has it, with this server as the local one.
    fn maestra(&self) -> (Server, Home) {
        let home = Home::new()
            .with(
                "MAESTRA_LOCAL_MODEL_URL",
                &format!("http://127.0.0.1:{}/v1", self.port),
            )
            .with("MAESTRA_LOCAL_MODEL", MODEL);
        (Server::start(&home), home)
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `client.py BASE MODEL MODE [N]` with the `openai` SDK from `.venv`; its JSON line.
fn client(maestra: &Server, mode: &str, n: u32) -> Value {
    let out = Command::new(common::python())
        .arg(script("client.py"))
        .args([&maestra.url("/v1"), MODEL, mode, &n.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client.py {mode} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        maestra.output()
    );
    serde_json::from_slice(out.stdout.trim_ascii()).unwrap()
}

fn count(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not a token count: {v}"))
}

#[test]
fn plain_and_streamed_answers_come_through_with_usage() {
    let llama = LlamaServer::start(256);
    let (maestra, _home) = llama.maestra();

    let plain = client(&maestra, "plain", 0);
    let content = plain["content"].as_str().unwrap_or_default();
    assert!(!content.is_empty(), "an answer with text: {plain}");
    assert_eq!(plain["model"], MODEL, "{plain}");
    // The model never stops by itself (make_gguf.py): it runs to max_tokens.
    assert_eq!(plain["finish_reason"], "length", "{plain}");
    let usage = &plain["usage"];
    assert!(count(&usage["prompt_tokens"]) > 0, "{plain}");
    assert_eq!(count(&usage["completion_tokens"]), 12, "{plain}");
    assert_eq!(
        count(&usage["total_tokens"]),
        count(&usage["prompt_tokens"]) + 12,
        "{plain}"
    );

    let streamed = client(&maestra, "stream", 0);
    let text = streamed["content"].as_str().unwrap_or_default();
    assert!(!text.is_empty(), "a streamed answer with text: {streamed}");
    assert!(
        count(&streamed["chunks"]) > 1,
        "streamed in parts: {streamed}"
    );
    assert_eq!(streamed["finish_reason"], "length", "{streamed}");
    // Asked for (`stream_options.include_usage`), but llama-cpp-python 0.3.36 ignores that
    // option and reports no usage in a stream: Maestra then sends its own count, the one it
    // settles on, so the client still gets the usage it asked for.
    let usage = &streamed["usage"];
    assert!(count(&usage["prompt_tokens"]) > 0, "{streamed}");
    assert!(count(&usage["completion_tokens"]) > 0, "{streamed}");

    // The control for the disconnect test below: a stream read to its end is not reported as
    // a client that left.
    assert!(
        !llama.log().contains(UPSTREAM_SAW_DISCONNECT),
        "{}",
        llama.log()
    );
}

/// Function calling through Maestra to a real server: llama.cpp writes a forced call with a
/// grammar built from the function's schema, so even the random-weight model answers with a
/// complete call; the SDK reads it from a whole answer and reassembles it from a stream.
#[test]
fn a_forced_function_call_comes_through_plain_and_streamed() {
    let llama = LlamaServer::start(512);
    let (maestra, home) = llama.maestra();
    for mode in ["tool", "tool_stream"] {
        let out = client(&maestra, mode, 0);
        let calls = out["calls"].as_array().cloned().unwrap_or_default();
        assert_eq!(calls.len(), 1, "{mode}: one call: {out}");
        assert_eq!(calls[0]["name"], "set_unit", "{mode}: {out}");
        let args: Value = serde_json::from_str(calls[0]["arguments"].as_str().unwrap_or(""))
            .unwrap_or_else(|e| panic!("{mode}: arguments are not JSON ({e}): {out}"));
        assert!(
            matches!(args["unit"].as_str(), Some("celsius" | "fahrenheit")),
            "{mode}: {out}"
        );
        assert!(
            !calls[0]["id"].as_str().unwrap_or_default().is_empty(),
            "{mode}: the call has an id: {out}"
        );
    }
    // Both calls are audited with the function's name, never its arguments.
    let audit = std::fs::read_to_string(home.root().join("logs/audit.log")).unwrap_or_default();
    let named = audit
        .lines()
        .filter(|l| l.contains("\"functions\":[\"set_unit\"]"))
        .count();
    assert_eq!(named, 2, "{audit}");
    assert!(
        !audit.contains("celsius") && !audit.contains("fahrenheit"),
        "{audit}"
    );
}

#[test]
fn a_client_that_leaves_mid_stream_stops_the_generation() {
    // A long context: left alone, the generation runs for thousands of tokens.
    let llama = LlamaServer::start(4096);
    let (maestra, _home) = llama.maestra();
    assert!(
        !llama.log().contains(UPSTREAM_SAW_DISCONNECT),
        "{}",
        llama.log()
    );

    let left = client(&maestra, "abandon", 3);
    assert_eq!(left["chunks_read"], 3, "{left}");

    // The model server itself says its client went away: the connection Maestra held to it
    // closed before the generation ended (it had up to 4096 tokens to go, and this model never
    // stops early), and the server stopped generating there.
    let deadline = Instant::now() + NOTICE_LIMIT;
    while !llama.log().contains(UPSTREAM_SAW_DISCONNECT) {
        assert!(
            Instant::now() < deadline,
            "the model server did not see its stream's client leave within {NOTICE_LIMIT:?} \
             (Maestra kept the upstream generation running):\n{}\nmaestra:\n{}",
            llama.log(),
            maestra.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Its single slot is free again: the next answer is not queued behind the abandoned one.
    let next = client(&maestra, "plain", 0);
    assert_eq!(count(&next["usage"]["completion_tokens"]), 12, "{next}");
}

#[test]
fn a_prompt_over_the_models_context_is_a_clear_400_naming_the_limit() {
    // llama.cpp rounds a context up to a multiple of 256 tokens: 256 is what it serves.
    let llama = LlamaServer::start(256);
    let (maestra, _home) = llama.maestra();

    let over = client(&maestra, "overflow", 400);
    assert_eq!(over["status"], 400, "a client error, not a 502: {over}");
    let err = &over["body"]["error"];
    assert!(err["code"].is_string(), "SPEC §4 error shape: {over}");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("context") && message.contains("256"),
        "the message names the context limit: {over}"
    );

    // Streamed, the model server answers 200 before it looks at the prompt's length, then
    // ends the stream without a word (its error goes to its log only): Maestra cannot name the
    // limit, but the client gets an error, never an empty answer passed off as complete.
    let streamed = client(&maestra, "overflow_stream", 400);
    assert!(
        streamed["stream_error"].is_string() || count(&streamed["status"]) >= 400,
        "the cut stream is an error: {streamed}"
    );

    // The server is still fine afterwards.
    let plain = client(&maestra, "plain", 0);
    assert_eq!(count(&plain["usage"]["completion_tokens"]), 12, "{plain}");
}
