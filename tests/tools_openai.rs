//! Function calling, JSON mode, images, several choices and log probabilities through the
//! OpenAI wire format, black-box: the official `openai` Python SDK speaks to the real
//! `maestra` binary, which speaks to the mock upstream as OpenAI (cloud route, `gpt-4o-mini`)
//! and as a local OpenAI-compatible server (`llama3.2`). What reached the upstream is read from
//! the mock's record; the audit entry is read from the audit log after the server stopped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Home;
use common::mock::{self, Mock};
use common::server::{Server, upstream_env};
use serde_json::{Value, json};

const OPENAI_CANARY: &str = "sk-proj-CANARYopenai0123456789abcdef";
/// The cloud route and the local one: the same wire format, each with its own rules.
const ROUTES: [&str; 2] = ["gpt-4o-mini", "llama3.2"];

async fn setup() -> (Server, Mock, Home) {
    let (addr, mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr).with("MAESTRA_OPENAI_KEY", OPENAI_CANARY);
    let server = Server::start(&home);
    (server, mock, home)
}

/// What every script starts with: a client of Maestra (`sys.argv[1]`), the model
/// (`sys.argv[2]`), a weather tool, and `out`, printed as JSON at the end.
const PRELUDE: &str = r#"
import sys, json
import openai
from openai import OpenAI
c = OpenAI(base_url=sys.argv[1], api_key="unused-locally", max_retries=0)
model = sys.argv[2]
tools = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object",
                   "properties": {"city": {"type": "string"},
                                  "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}]
def user(text):
    return [{"role": "user", "content": text}]
def refused(call):
    try:
        call()
        return None
    except openai.APIStatusError as e:
        return [e.status_code, e.message]
out = {}
"#;

/// Runs `PRELUDE` + `code` against `server` for `model`; returns its `out`.
async fn python(server: &Server, model: &str, code: &str) -> Value {
    let code = format!("{PRELUDE}{code}\nprint(json.dumps(out))\n");
    let args = [server.url("/v1"), model.to_string()];
    let out = tokio::task::spawn_blocking(move || {
        common::run_python(&code, &[args[0].as_str(), args[1].as_str()])
    })
    .await
    .unwrap();
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The chat bodies the mock received, in order.
fn upstream(mock: &Mock) -> Vec<Value> {
    mock.requests()
        .into_iter()
        .filter(|s| s.path == "/v1/chat/completions")
        .map(|s| s.body)
        .collect()
}

/// The audit log's chat entries, read after the server stopped (which flushes them).
fn audited_calls(server: &mut Server, home: &Home) -> (Vec<Value>, String) {
    server.stop();
    let text = std::fs::read_to_string(home.root().join("logs/audit.log")).unwrap();
    let calls = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["category"] == "llm" && e["action"] == "chat.completions")
        .collect();
    (calls, text)
}

const CALLS: &str = r#"
r = c.chat.completions.create(model=model, messages=user("weather in Oslo?"), tools=tools)
m = r.choices[0].message
out["plain"] = {"finish": r.choices[0].finish_reason, "content": m.content,
    "calls": [[t.id, t.type, t.function.name, json.loads(t.function.arguments)] for t in m.tool_calls]}
with c.chat.completions.stream(model=model, messages=user("Oslo and Bergen? mode:two-calls"),
                               tools=tools) as s:
    done = [[e.index, e.name, json.loads(e.arguments)] for e in s
            if e.type == "tool_calls.function.arguments.done"]
    final = s.get_final_completion()
fm = final.choices[0].message
out["stream"] = {"finish": final.choices[0].finish_reason, "done": done,
    "calls": [[t.id, t.function.name, json.loads(t.function.arguments)] for t in fm.tool_calls]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_calls_plain_and_streamed_reach_the_sdk_and_the_audit_names_them() {
    let (mut server, mock, home) = setup().await;
    let oslo = json!({"city": "Oslo", "unit": "celsius"});
    let bergen = json!({"city": "Bergen", "unit": "celsius"});
    for model in ROUTES {
        let out = python(&server, model, CALLS).await;
        assert_eq!(out["plain"]["finish"], "tool_calls", "{model}: {out}");
        assert_eq!(out["plain"]["content"], Value::Null, "{model}: {out}");
        assert_eq!(
            out["plain"]["calls"],
            json!([["call_1", "function", "get_weather", oslo]]),
            "{model}"
        );
        // The SDK's stream helper put the fragments back together: two parallel calls.
        assert_eq!(out["stream"]["finish"], "tool_calls", "{model}: {out}");
        assert_eq!(
            out["stream"]["calls"],
            json!([
                ["call_1", "get_weather", oslo],
                ["call_2", "get_weather", bergen]
            ]),
            "{model}"
        );
        assert_eq!(
            out["stream"]["done"],
            json!([[0, "get_weather", oslo], [1, "get_weather", bergen]]),
            "{model}"
        );
    }
    // The tools reached the upstream as declared, on both routes.
    let sent = upstream(&mock);
    assert_eq!(sent.len(), 4);
    for body in &sent {
        assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(
            body["tools"][0]["function"]["parameters"]["required"],
            json!(["city", "unit"])
        );
    }
    assert_eq!(
        (&sent[0]["model"], &sent[2]["model"]),
        (&json!("gpt-4o-mini"), &json!("llama3.2"))
    );
    let (calls, text) = audited_calls(&mut server, &home);
    assert_eq!(calls.len(), 4, "{text}");
    for (i, call) in calls.iter().enumerate() {
        let expected = if i % 2 == 0 {
            json!(["get_weather"])
        } else {
            json!(["get_weather", "get_weather"])
        };
        assert_eq!(call["result"], "success", "{call}");
        assert_eq!(call["details"]["functions"], expected, "{call}");
    }
    // Names only: never the arguments (nor the question).
    assert!(!text.contains("Oslo") && !text.contains("Bergen"), "{text}");
}

const ROUND_TRIP: &str = r#"
history = user("weather in Oslo?") + [
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\",\"unit\":\"celsius\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\":12}"},
]
r = c.chat.completions.create(model=model, messages=history, tools=tools, tool_choice="auto",
                              parallel_tool_calls=False, max_completion_tokens=50)
out["plain"] = r.choices[0].message.content
with c.chat.completions.stream(model=model, messages=history, tools=tools) as s:
    out["stream"] = s.get_final_completion().choices[0].message.content
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_answer_round_trip_reaches_the_upstream_as_sent() {
    let (server, mock, _home) = setup().await;
    for model in ROUTES {
        let out = python(&server, model, ROUND_TRIP).await;
        assert_eq!(out["plain"], r#"tool said: {"temp":12}"#, "{model}");
        assert_eq!(out["stream"], r#"tool said: {"temp":12}"#, "{model}");
    }
    let sent = upstream(&mock);
    assert_eq!(sent.len(), 4);
    for body in &sent {
        let expected = json!([
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                "type": "function", "function": {"name": "get_weather",
                "arguments": "{\"city\":\"Oslo\",\"unit\":\"celsius\"}"}}]},
            {"role": "tool", "content": "{\"temp\":12}", "tool_call_id": "call_1"},
        ]);
        let history = &body["messages"].as_array().unwrap()[1..];
        assert_eq!(history, expected.as_array().unwrap().as_slice(), "{body}");
    }
    // OpenAI gets the output cap under the name its newer models read; a local server under
    // the one llama.cpp and Ollama read. Streams ask for the usage they are settled on.
    let cloud = &sent[0];
    assert_eq!(cloud["max_completion_tokens"], 50);
    assert!(cloud.get("max_tokens").is_none(), "{cloud}");
    assert_eq!(
        (&cloud["tool_choice"], &cloud["parallel_tool_calls"]),
        (&json!("auto"), &json!(false))
    );
    let local = &sent[2];
    assert_eq!(local["max_tokens"], 50);
    assert!(local.get("max_completion_tokens").is_none(), "{local}");
    for streamed in [&sent[1], &sent[3]] {
        assert_eq!(streamed["stream_options"], json!({"include_usage": true}));
    }
}

const JSON_MODE: &str = r#"
from pydantic import BaseModel
class Answer(BaseModel):
    answer: str
r = c.chat.completions.create(model=model, messages=user("the sky"),
                              response_format={"type": "json_object"})
out["object"] = json.loads(r.choices[0].message.content)
p = c.chat.completions.parse(model=model, messages=user("the sea"), response_format=Answer)
out["parsed"] = p.choices[0].message.parsed.answer
out["refusal"] = p.choices[0].message.refusal
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_mode_and_structured_output() {
    let (server, mock, _home) = setup().await;
    for model in ROUTES {
        let out = python(&server, model, JSON_MODE).await;
        assert_eq!(out["object"], json!({"answer": "the sky"}), "{model}");
        assert_eq!(out["parsed"], "the sea", "{model}");
        assert_eq!(out["refusal"], Value::Null, "{model}");
    }
    let sent = upstream(&mock);
    assert_eq!(sent.len(), 4);
    for pair in sent.chunks(2) {
        assert_eq!(pair[0]["response_format"], json!({"type": "json_object"}));
        let schema = &pair[1]["response_format"];
        assert_eq!(schema["type"], "json_schema", "{schema}");
        assert_eq!(
            (
                &schema["json_schema"]["name"],
                &schema["json_schema"]["strict"]
            ),
            (&json!("Answer"), &json!(true))
        );
        assert_eq!(
            schema["json_schema"]["schema"]["required"],
            json!(["answer"])
        );
    }
}

/// A 1x1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

const IMAGES: &str = r#"
png = sys.argv[3]
def look(url):
    return [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]}]
r = c.chat.completions.create(model=model, messages=look("data:image/png;base64," + png))
out["inline"] = r.choices[0].message.content
out["remote"] = refused(lambda: c.chat.completions.create(
    model=model, messages=look("https://img.example/cat.png")))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_inline_everywhere_and_remote_only_to_the_cloud() {
    let (mut server, mock, home) = setup().await;
    for model in ROUTES {
        let code = IMAGES.replace("sys.argv[3]", &format!("{PNG:?}"));
        let out = python(&server, model, &code).await;
        assert_eq!(out["inline"], "echo(1): what is this?", "{model}: {out}");
        if model == "llama3.2" {
            // The local server would fetch the image itself, outside the guard.
            assert_eq!(out["remote"][0], 400, "{out}");
            assert!(
                out["remote"][1].as_str().unwrap().contains("image_url"),
                "{out}"
            );
        } else {
            assert_eq!(out["remote"], Value::Null, "{out}");
        }
    }
    let sent = upstream(&mock);
    // Cloud: inline and remote; local: inline only (the remote one never left).
    assert_eq!(sent.len(), 3);
    let part = |body: &Value| body["messages"][0]["content"][1].clone();
    let inline = json!({"type": "image_url",
        "image_url": {"url": format!("data:image/png;base64,{PNG}"), "detail": "low"}});
    assert_eq!(part(&sent[0]), inline);
    assert_eq!(part(&sent[2]), inline);
    assert_eq!(
        sent[0]["messages"][0]["content"][0],
        json!({"type": "text", "text": "what is this?"})
    );
    assert_eq!(
        part(&sent[1]),
        json!({"type": "image_url",
               "image_url": {"url": "https://img.example/cat.png", "detail": "low"}})
    );
    let (calls, text) = audited_calls(&mut server, &home);
    assert_eq!(calls.len(), 4, "{text}");
    // The cloud provider was sent to fetch from that host: the entry names it.
    assert_eq!(calls[1]["details"]["image_hosts"], json!(["img.example"]));
    assert!(calls[0]["details"].get("image_hosts").is_none());
    assert_eq!(
        (&calls[3]["result"], &calls[3]["details"]["error"]),
        (&json!("error"), &json!("bad_request"))
    );
}

const CHOICES: &str = r#"
r = c.chat.completions.create(model=model, messages=user("pick"), n=2)
out["plain"] = [[ch.index, ch.message.content] for ch in r.choices]
with c.chat.completions.stream(model=model, messages=user("pick"), n=2) as s:
    final = s.get_final_completion()
out["stream"] = [[ch.index, ch.message.content, ch.finish_reason] for ch in final.choices]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_choices_on_the_cloud_route_and_refused_by_name_locally() {
    let (server, mock, _home) = setup().await;
    let out = python(&server, "gpt-4o-mini", CHOICES).await;
    assert_eq!(
        out["plain"],
        json!([[0, "echo(1): pick"], [1, "echo(1): pick #1"]])
    );
    assert_eq!(
        out["stream"],
        json!([
            [0, "echo(1): pick", "stop"],
            [1, "echo(1): pick #1", "stop"]
        ])
    );
    let sent = upstream(&mock);
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|b| b["n"] == 2));

    let out = python(
        &server,
        "llama3.2",
        r#"out["n"] = refused(lambda: c.chat.completions.create(model=model, messages=user("x"), n=2))"#,
    )
    .await;
    assert_eq!(out["n"][0], 400, "{out}");
    assert!(out["n"][1].as_str().unwrap().contains("`n`"), "{out}");
    assert_eq!(upstream(&mock).len(), 2, "nothing reached the local server");
}

const LOGPROBS: &str = r#"
r = c.chat.completions.create(model=model, messages=user("two words"), logprobs=True, top_logprobs=2)
lp = r.choices[0].logprobs.content
out["plain"] = [r.choices[0].message.content, "".join(t.token for t in lp),
                [len(t.top_logprobs) for t in lp], lp[0].logprob]
s = c.chat.completions.create(model=model, messages=user("two words"), logprobs=True, stream=True)
text, tokens = "", ""
for ch in s:
    for choice in ch.choices:
        text += choice.delta.content or ""
        if choice.logprobs and choice.logprobs.content:
            tokens += "".join(t.token for t in choice.logprobs.content)
out["stream"] = [text, tokens]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_probabilities_pass_through() {
    let (server, mock, _home) = setup().await;
    for model in ROUTES {
        let out = python(&server, model, LOGPROBS).await;
        let text = "echo(1): two words";
        assert_eq!(
            out["plain"],
            json!([text, text, [2, 2, 2], -0.1]),
            "{model}"
        );
        assert_eq!(out["stream"], json!([text, text]), "{model}");
    }
    for body in upstream(&mock) {
        assert_eq!(body["logprobs"], true, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_field_is_refused_by_name_before_anything_is_sent() {
    let (server, mock, _home) = setup().await;
    for model in ROUTES {
        let out = python(
            &server,
            model,
            r#"out["x"] = refused(lambda: c.chat.completions.create(model=model, messages=user("x"),
                                                                     extra_body={"frobnicate": 1}))"#,
        )
        .await;
        assert_eq!(out["x"][0], 400, "{model}: {out}");
        assert!(
            out["x"][1].as_str().unwrap().contains("`frobnicate`"),
            "{out}"
        );
    }
    assert!(upstream(&mock).is_empty());
}
