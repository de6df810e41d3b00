//! Function calling, JSON mode and images on a Claude route, black-box: the official `openai`
//! Python SDK speaks OpenAI's format to the real `maestra` binary, which speaks the Messages
//! API to the mock upstream (`tests/common/mock_anthropic.rs`, which checks each request as
//! the real API does and answers tool use with its real event sequence). What reached the
//! upstream is read from the mock's record; the audit entry from the audit log after the
//! server stopped. What the Messages API cannot do is refused by name, and nothing is sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Home;
use common::mock::{self, Mock};
use common::server::{Server, upstream_env};
use serde_json::{Value, json};

const ANTHROPIC_CANARY: &str = "sk-ant-CANARYanthropic0123456789";
const MODEL: &str = "claude-3-5-haiku-latest";

async fn setup() -> (Server, Mock, Home) {
    let (addr, mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr).with("MAESTRA_ANTHROPIC_KEY", ANTHROPIC_CANARY);
    let server = Server::start(&home);
    (server, mock, home)
}

/// What every script starts with: a client of Maestra (`sys.argv[1]`), the model
/// (`sys.argv[2]`), two tools, and `out`, printed as JSON at the end.
const PRELUDE: &str = r#"
import sys, json
import openai
from openai import OpenAI
c = OpenAI(base_url=sys.argv[1], api_key="unused-locally", max_retries=0)
model = sys.argv[2]
place = {"type": "object",
         "properties": {"city": {"type": "string"},
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
         "required": ["city", "unit"]}
tools = [{"type": "function", "function": {"name": "get_weather",
              "description": "The weather in a city", "parameters": place}},
         {"type": "function", "function": {"name": "get_time", "parameters": place}}]
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

/// Runs `PRELUDE` + `code` against `server`; returns its `out`.
async fn python(server: &Server, code: &str) -> Value {
    python_on(server, code, MODEL).await
}

/// [`python`] on another model.
async fn python_on(server: &Server, code: &str, model: &'static str) -> Value {
    let code = format!("{PRELUDE}{code}\nprint(json.dumps(out))\n");
    let base = server.url("/v1");
    let out =
        tokio::task::spawn_blocking(move || common::run_python(&code, &[base.as_str(), model]))
            .await
            .unwrap();
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The Messages API bodies the mock received, in order.
fn upstream(mock: &Mock) -> Vec<Value> {
    mock.requests()
        .into_iter()
        .filter(|s| s.path == "/v1/messages")
        .map(|s| s.body)
        .collect()
}

/// The audit log's chat entries and its whole text, read after the server stopped (which
/// flushes them).
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
out["stream"] = {"finish": final.choices[0].finish_reason, "content": fm.content, "done": done,
    "calls": [[t.id, t.function.name, json.loads(t.function.arguments)] for t in fm.tool_calls]}
with c.chat.completions.stream(model=model, messages=user("just one mode:two-calls"),
                               tools=tools, tool_choice="required",
                               parallel_tool_calls=False) as s:
    final = s.get_final_completion()
fm = final.choices[0].message
out["single"] = {"content": fm.content or "",
    "calls": [[t.id, t.function.name] for t in fm.tool_calls]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_calls_plain_and_streamed_reach_the_sdk_and_the_audit_names_them() {
    let (mut server, mock, home) = setup().await;
    let oslo = json!({"city": "Oslo", "unit": "celsius"});
    let bergen = json!({"city": "Bergen", "unit": "celsius"});
    let out = python(&server, CALLS).await;
    assert_eq!(
        out["plain"],
        json!({"finish": "tool_calls", "content": "Let me check.",
               "calls": [["toolu_01", "function", "get_weather", oslo]]})
    );
    // The SDK's stream helper put the input_json_delta pieces back together: two calls.
    assert_eq!(
        out["stream"],
        json!({"finish": "tool_calls", "content": "Let me check.",
               "done": [[0, "get_weather", oslo], [1, "get_time", bergen]],
               "calls": [["toolu_01", "get_weather", oslo], ["toolu_02", "get_time", bergen]]})
    );
    // A forced call writes no text; parallel calls turned off, one call.
    assert_eq!(
        out["single"],
        json!({"content": "", "calls": [["toolu_01", "get_weather"]]})
    );

    let sent = upstream(&mock);
    assert_eq!(sent.len(), 3);
    for body in &sent {
        assert_eq!(
            body["tools"][0],
            json!({"name": "get_weather", "description": "The weather in a city",
                   "input_schema": {"type": "object",
                       "properties": {"city": {"type": "string"},
                                      "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                       "required": ["city", "unit"]}})
        );
        assert_eq!(body["tools"][1]["name"], "get_time");
        assert!(body["tools"][1].get("description").is_none(), "{body}");
        // The Messages API requires a cap: the reservation's, as none was asked for.
        assert!(body["max_tokens"].as_u64().is_some_and(|n| n > 0), "{body}");
    }
    assert!(sent[0].get("tool_choice").is_none(), "{}", sent[0]);
    assert_eq!(sent[1]["stream"], true);
    assert_eq!(
        sent[2]["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );

    let (calls, text) = audited_calls(&mut server, &home);
    assert_eq!(calls.len(), 3, "{text}");
    let functions: Vec<&Value> = calls.iter().map(|c| &c["details"]["functions"]).collect();
    assert_eq!(
        functions,
        [
            &json!(["get_weather"]),
            &json!(["get_weather", "get_time"]),
            &json!(["get_weather"])
        ],
        "{text}"
    );
    // Names only: never the arguments (nor the question).
    assert!(!text.contains("Oslo") && !text.contains("Bergen"), "{text}");
}

const ROUND_TRIP: &str = r#"
history = [{"role": "system", "content": "be brief"}] + user("weather in Oslo and Bergen?") + [
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather",
            "arguments": "{\"city\":\"Oslo\",\"unit\":\"celsius\"}"}},
        {"id": "call_2", "type": "function", "function": {"name": "get_weather",
            "arguments": "{\"city\":\"Bergen\",\"unit\":\"celsius\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\":12}"},
    {"role": "tool", "tool_call_id": "call_2", "content": "{\"temp\":3}"},
]
r = c.chat.completions.create(model=model, messages=history, tools=tools, tool_choice="auto",
                              parallel_tool_calls=False, max_completion_tokens=50)
out["plain"] = [r.choices[0].message.content, r.choices[0].finish_reason]
with c.chat.completions.stream(model=model, messages=history, tools=tools) as s:
    out["stream"] = s.get_final_completion().choices[0].message.content
# A history Anthropic would refuse is refused by name, before anything is sent.
unknown = history[:3] + [{"role": "tool", "tool_call_id": "call_9", "content": "?"}]
out["unknown"] = refused(lambda: c.chat.completions.create(model=model, messages=unknown, tools=tools))
unanswered = history[:4] + user("and?")
out["unanswered"] = refused(lambda: c.chat.completions.create(
    model=model, messages=unanswered, tools=tools))
bad_args = json.loads(json.dumps(history))
bad_args[2]["tool_calls"][1]["function"]["arguments"] = "[1, 2]"
out["bad_args"] = refused(lambda: c.chat.completions.create(model=model, messages=bad_args, tools=tools))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_answer_round_trip_reaches_anthropic_as_tool_use_and_tool_result_blocks() {
    let (server, mock, _home) = setup().await;
    let out = python(&server, ROUND_TRIP).await;
    let said = r#"tool said: {"temp":12} | {"temp":3}"#;
    assert_eq!(out["plain"], json!([said, "stop"]), "{out}");
    assert_eq!(out["stream"], said, "{out}");
    for (case, field) in [
        ("unknown", "`messages[3].tool_call_id`"),
        ("unanswered", "`messages[2].tool_calls[1]`"),
        ("bad_args", "`messages[2].tool_calls[1].function.arguments`"),
    ] {
        assert_eq!(out[case][0], 400, "{case}: {out}");
        let message = out[case][1].as_str().unwrap();
        assert!(message.contains(field), "{case}: {message}");
    }

    let sent = upstream(&mock);
    assert_eq!(sent.len(), 2, "the refused histories reached the upstream");
    for body in &sent {
        assert_eq!(body["system"], "be brief");
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "weather in Oslo and Bergen?"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get_weather",
                     "input": {"city": "Oslo", "unit": "celsius"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather",
                     "input": {"city": "Bergen", "unit": "celsius"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "{\"temp\":12}"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "{\"temp\":3}"}]}
            ]),
            "{body}"
        );
    }
    assert_eq!(sent[0]["max_tokens"], 50);
    assert_eq!(
        sent[0]["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
}

const JSON_MODE: &str = r#"
r = c.chat.completions.create(model=model, messages=user("Oslo as JSON"),
                              response_format={"type": "json_object"})
ch = r.choices[0]
out["plain"] = [json.loads(ch.message.content), ch.finish_reason, ch.message.tool_calls]
s = c.chat.completions.create(model=model, messages=user("Oslo as JSON"), stream=True,
    response_format={"type": "json_schema",
                     "json_schema": {"name": "place", "schema": place, "strict": False}})
text, finish, calls = "", None, 0
for chunk in s:
    for choice in chunk.choices:
        text += choice.delta.content or ""
        calls += len(choice.delta.tool_calls or [])
        finish = choice.finish_reason or finish
out["stream"] = [json.loads(text), finish, calls]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_mode_is_a_forced_tool_whose_input_is_the_answer() {
    let (server, mock, _home) = setup().await;
    let out = python(&server, JSON_MODE).await;
    let oslo = json!({"city": "Oslo", "unit": "celsius"});
    assert_eq!(out["plain"], json!([oslo, "stop", null]), "{out}");
    assert_eq!(out["stream"], json!([oslo, "stop", 0]), "{out}");
    let sent = upstream(&mock);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["tools"].as_array().unwrap().len(), 1);
    assert_eq!(sent[0]["tools"][0]["name"], "json_answer");
    assert_eq!(
        sent[0]["tool_choice"],
        json!({"type": "tool", "name": "json_answer", "disable_parallel_tool_use": true})
    );
    assert_eq!(sent[1]["tools"][0]["name"], "place");
    assert_eq!(
        sent[1]["tools"][0]["input_schema"]["required"],
        json!(["city", "unit"])
    );
    assert_eq!(sent[1]["tool_choice"]["name"], "place");
    for body in &sent {
        assert!(body.get("response_format").is_none(), "{body}");
    }
}

const NO_INPUT: &str = r#"
ask = user("what time is it? mode:no-input")
r = c.chat.completions.create(model=model, messages=ask, tools=tools)
out["plain"] = [t.function.arguments for t in r.choices[0].message.tool_calls]
with c.chat.completions.stream(model=model, messages=ask, tools=tools) as s:
    done = [[e.name, json.loads(e.arguments)] for e in s
            if e.type == "tool_calls.function.arguments.done"]
    final = s.get_final_completion()
out["stream"] = [done, [json.loads(t.function.arguments) for t in final.choices[0].message.tool_calls]]
s = c.chat.completions.create(model=model, messages=ask, stream=True,
                              response_format={"type": "json_object"})
out["json"] = "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices)
"#;

/// A tool that takes no input streams no JSON from Anthropic (one empty piece); its streamed
/// arguments are still `{}`, as the whole answer's are, so the SDK can parse them, and a JSON
/// answer of `{}` streams as `{}`, not as nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_input_streams_as_an_empty_object() {
    let (server, _mock, _home) = setup().await;
    let out = python(&server, NO_INPUT).await;
    assert_eq!(out["plain"], json!(["{}"]), "{out}");
    assert_eq!(out["stream"], json!([[["get_weather", {}]], [{}]]), "{out}");
    assert_eq!(out["json"], "{}", "{out}");
}

/// A 1x1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

const IMAGES: &str = r#"
def look(url):
    return [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]}]
for name, url in [("inline", "data:image/png;base64," + PNG), ("remote", "https://img.example/cat.png")]:
    r = c.chat.completions.create(model=model, messages=look(url))
    out[name] = r.choices[0].finish_reason
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_arrive_as_image_blocks() {
    let (mut server, mock, home) = setup().await;
    let code = IMAGES.replace("PNG", &format!("{PNG:?}"));
    let out = python(&server, &code).await;
    assert_eq!(out, json!({"inline": "stop", "remote": "stop"}));
    let sent = upstream(&mock);
    assert_eq!(sent.len(), 2);
    let text = json!({"type": "text", "text": "what is this?"});
    assert_eq!(
        sent[0]["messages"][0]["content"],
        json!([text, {"type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": PNG}}])
    );
    assert_eq!(
        sent[1]["messages"][0]["content"],
        json!([text, {"type": "image",
            "source": {"type": "url", "url": "https://img.example/cat.png"}}])
    );
    let (calls, text) = audited_calls(&mut server, &home);
    assert_eq!(calls.len(), 2, "{text}");
    assert_eq!(calls[1]["details"]["image_hosts"], json!(["img.example"]));
}

const REFUSED: &str = r#"
from pydantic import BaseModel
class Place(BaseModel):
    city: str
ask = lambda **kw: (lambda: c.chat.completions.create(model=model, messages=user("x"), **kw))
out["n"] = refused(ask(n=2))
out["logprobs"] = refused(ask(logprobs=True))
out["seed"] = refused(ask(seed=7))
out["temperature"] = refused(ask(temperature=1.5))
strict = json.loads(json.dumps(tools))
strict[1]["function"]["strict"] = True
out["strict"] = refused(ask(tools=strict))
out["json_with_tools"] = refused(ask(tools=tools, response_format={"type": "json_object"}))
# The SDK's parse() asks for a strict schema, which this model cannot promise.
out["parse"] = refused(lambda: c.chat.completions.parse(
    model=model, messages=user("x"), response_format=Place))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_messages_api_cannot_do_is_refused_by_name_and_nothing_is_sent() {
    let (server, mock, _home) = setup().await;
    let out = python(&server, REFUSED).await;
    for (case, field) in [
        ("n", "`n`"),
        ("logprobs", "`logprobs`"),
        ("seed", "`seed`"),
        ("temperature", "`temperature`"),
        ("strict", "`tools[1].function.strict`"),
        ("json_with_tools", "`response_format`"),
        ("parse", "`response_format.json_schema.strict`"),
    ] {
        assert_eq!(out[case][0], 400, "{case}: {out}");
        let message = out[case][1].as_str().unwrap();
        assert!(message.contains(field), "{case}: {message}");
        assert!(message.contains("anthropic"), "{case}: {message}");
    }
    assert!(
        upstream(&mock).is_empty(),
        "a refused request reached the upstream"
    );
}

const STRICT: &str = r#"
from pydantic import BaseModel
class Place(BaseModel):
    city: str
    unit: str
strict = json.loads(json.dumps(tools))
strict[0]["function"]["strict"] = True
r = c.chat.completions.create(model=model, messages=user("weather?"), tools=strict)
out["call"] = r.choices[0].message.tool_calls[0].function.name
p = c.chat.completions.parse(model=model, messages=user("where?"), response_format=Place)
out["parsed"] = p.choices[0].message.parsed.model_dump()
"#;

/// A model that can guarantee a schema (Claude 4.5) takes `strict`: the tool goes upstream
/// strict, with the structured-outputs beta the API wants for it, and the SDK's `parse()`
/// (which always asks for a strict schema) works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_schemas_reach_a_model_that_guarantees_them() {
    let (server, mock, _home) = setup().await;
    let out = python_on(&server, STRICT, "claude-sonnet-4-5").await;
    assert_eq!(out["call"], "get_weather", "{out}");
    assert!(out["parsed"]["city"].is_string(), "{out}");
    let sent: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|s| s.path == "/v1/messages")
        .collect();
    assert_eq!(sent.len(), 2);
    for s in &sent {
        assert_eq!(
            s.headers
                .get("anthropic-beta")
                .and_then(|v| v.to_str().ok()),
            Some("structured-outputs-2025-11-13")
        );
    }
    assert_eq!(sent[0].body["tools"][0]["strict"], true, "{}", sent[0].body);
    assert!(sent[0].body["tools"][1].get("strict").is_none());
    assert_eq!(sent[1].body["tools"][0]["strict"], true, "{}", sent[1].body);
}

/// The mock holds requests to the real API's rules, or the tests above would prove less.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_refuses_what_the_messages_api_refuses() {
    let (addr, _mock) = mock::start().await;
    let client = common::http::pooled();
    let call = json!({"type": "tool_use", "id": "toolu_01", "name": "f", "input": {}});
    let result = |id: &str| json!({"type": "tool_result", "tool_use_id": id, "content": "ok"});
    let tools = json!([{"name": "f", "input_schema": {"type": "object"}}]);
    let cases = [
        json!({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}),
        json!({"messages": [{"role": "user", "content": "a"}], "n": 2}),
        json!({"messages": [{"role": "user", "content": ""}]}),
        json!({"tools": tools, "messages": [{"role": "user", "content": "a"},
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [result("toolu_09")]}]}),
        json!({"tools": tools, "messages": [{"role": "user", "content": "a"},
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [{"type": "text", "text": "b"}, result("toolu_01")]}]}),
        json!({"tools": tools, "messages": [{"role": "user", "content": "a"},
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": "no result"}]}),
        json!({"tools": tools, "messages": [{"role": "user", "content": "a"},
            {"role": "assistant", "content": [call]}, {"role": "user", "content": [result("toolu_01")]},
            {"role": "assistant", "content": [call]}, {"role": "user", "content": [result("toolu_01")]}]}),
        json!({"messages": [{"role": "user", "content": "a"},
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [result("toolu_01")]}]}),
        json!({"tools": [{"name": "f", "input_schema": {"type": "object"}, "strict": true}],
               "messages": [{"role": "user", "content": "a"}]}),
    ];
    for mut body in cases {
        body["model"] = json!(MODEL);
        body["max_tokens"] = json!(10);
        let resp = client
            .post(format!("http://{addr}/v1/messages"))
            .header("x-api-key", "k")
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["type"], "invalid_request_error", "{body}");
    }
}
