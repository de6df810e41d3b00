//! `POST /v1/responses`, black-box: the official `openai` Python SDK's `responses.create` and
//! `responses.stream` speak to the real `maestra` binary, which answers through the chat
//! pipeline from the mock upstream, as OpenAI (cloud route, `gpt-4o-mini`), as a local
//! OpenAI-compatible server (`llama3.2`) and as Anthropic (`claude-*`). What reached the
//! upstream is read from the mock's record; the audit entries from the audit log after the
//! server stopped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Home;
use common::http::{get_json, post_json};
use common::mock::{self, Mock};
use common::server::{Server, llm_entries, upstream_env};
use serde_json::{Value, json};

const OPENAI_CANARY: &str = "sk-proj-CANARYopenai0123456789abcdef";
const ANTHROPIC_CANARY: &str = "sk-ant-CANARYanthropic0123456789";
/// The local route and the cloud ones.
const LOCAL: &str = "llama3.2";
const OPENAI: &str = "gpt-4o-mini";
const CLAUDE: &str = "claude-3-5-haiku-latest";

async fn setup() -> (Server, Mock, Home) {
    let (addr, mock) = mock::start().await;
    let home = upstream_env(Home::new(), addr)
        .with("MAESTRA_OPENAI_KEY", OPENAI_CANARY)
        .with("MAESTRA_ANTHROPIC_KEY", ANTHROPIC_CANARY);
    let server = Server::start(&home);
    (server, mock, home)
}

/// What every script starts with: a client of Maestra (`sys.argv[1]`), the model
/// (`sys.argv[2]`), a weather function tool as the Responses API declares one, and `out`,
/// printed as JSON at the end.
const PRELUDE: &str = r#"
import sys, json
import openai
from openai import OpenAI
c = OpenAI(base_url=sys.argv[1], api_key="unused-locally", max_retries=0)
model = sys.argv[2]
tools = [{"type": "function", "name": "get_weather", "description": "The weather in a city",
          "strict": True,
          "parameters": {"type": "object",
                         "properties": {"city": {"type": "string"},
                                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                         "required": ["city", "unit"], "additionalProperties": False}}]
# Maestra refuses `strict` for Claude, whose Messages API cannot promise it.
if model.startswith("claude"):
    del tools[0]["strict"]
def refused(call):
    try:
        call()
        return None
    except openai.APIStatusError as e:
        return [e.status_code, e.body.get("code") if isinstance(e.body, dict) else None, e.message]
def calls(output):
    return [[i.call_id, i.name, json.loads(i.arguments), i.status]
            for i in output if i.type == "function_call"]
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

/// The bodies the mock received for `path`, in order.
fn upstream(mock: &Mock, path: &str) -> Vec<Value> {
    mock.requests()
        .into_iter()
        .filter(|s| s.path == path)
        .map(|s| s.body)
        .collect()
}

async fn post(server: &Server, body: Value) -> (u16, Value) {
    post_json(&server.url("/v1/responses"), body).await
}

const TEXT: &str = r#"
r = c.responses.create(model=model, input="hello there")
out["plain"] = {"text": r.output_text, "id": r.id, "object": r.object, "status": r.status,
    "store": r.store, "usage": [r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens],
    "items": [[i.type, i.role, i.status, i.id[:4]] for i in r.output],
    "source": r.model_extra["meta"]["source"]}
r = c.responses.create(model=model, instructions="be brief", input="with instructions")
out["instructions"] = [r.output_text, r.instructions]
r = c.responses.create(model=model, input=[
    {"role": "user", "content": [{"type": "input_text", "text": "first"}]},
    {"type": "message", "role": "assistant",
     "content": [{"type": "output_text", "text": "an answer", "annotations": []}]},
    {"role": "developer", "content": "mind the history"},
    {"role": "user", "content": "second"}])
out["history"] = r.output_text
with c.responses.stream(model=model, input="streamed by the helper") as s:
    deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
    final = s.get_final_response()
out["helper"] = {"deltas": len(deltas), "joined": "".join(deltas), "text": final.output_text,
    "status": final.status, "total": final.usage.total_tokens}
events = list(c.responses.create(model=model, input="raw events", stream=True))
kinds = {}
for e in events:
    kinds[e.type] = kinds.get(e.type, 0) + 1
out["raw"] = {"kinds": kinds, "first": events[0].type, "last": events[-1].type,
    "seq": [e.sequence_number for e in events],
    "text": events[-1].response.output_text,
    "ids": sorted({e.response.id for e in events if hasattr(e, "response")}),
    "total": events[-1].response.usage.total_tokens}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_answers_plain_and_streamed_reach_the_sdk_on_every_route() {
    let (server, mock, _home) = setup().await;
    for model in [LOCAL, OPENAI, CLAUDE] {
        let out = python(&server, model, TEXT).await;
        let claude = model == CLAUDE;
        // The mock echoes the messages it received and their count (Anthropic: its own
        // phrase, its usage 12 + 6).
        let said = |n: usize, text: &str| {
            if claude {
                format!("claude says: {text}")
            } else {
                format!("echo({n}): {text}")
            }
        };
        let plain = &out["plain"];
        assert_eq!(plain["text"], said(1, "hello there"), "{model}: {out}");
        assert!(plain["id"].as_str().unwrap().starts_with("resp_"), "{out}");
        assert_eq!(plain["object"], "response");
        assert_eq!(plain["status"], "completed");
        assert_eq!(plain["store"], false);
        let usage = if claude {
            json!([12, 6, 18])
        } else {
            json!([10, 5, 15])
        };
        assert_eq!(plain["usage"], usage, "{model}");
        assert_eq!(
            plain["items"],
            json!([["message", "assistant", "completed", "msg_"]])
        );
        assert_eq!(
            plain["source"],
            if model == LOCAL { "local" } else { "cloud" }
        );
        assert_eq!(
            out["instructions"],
            json!([said(2, "with instructions"), "be brief"]),
            "{model}"
        );
        assert_eq!(out["history"], said(4, "second"), "{model}");
        let helper = &out["helper"];
        assert_eq!(helper["text"], said(1, "streamed by the helper"), "{model}");
        assert_eq!(helper["joined"], helper["text"], "{model}");
        assert!(helper["deltas"].as_u64().unwrap() >= 3, "{model}: {out}");
        assert_eq!(helper["status"], "completed");
        assert_eq!(helper["total"], usage[2]);
        let raw = &out["raw"];
        assert_eq!(raw["first"], "response.created", "{model}: {out}");
        assert_eq!(raw["last"], "response.completed");
        for (kind, n) in [
            ("response.created", 1),
            ("response.in_progress", 1),
            ("response.output_item.added", 1),
            ("response.content_part.added", 1),
            ("response.output_text.done", 1),
            ("response.content_part.done", 1),
            ("response.output_item.done", 1),
            ("response.completed", 1),
        ] {
            assert_eq!(raw["kinds"][kind], n, "{model} {kind}: {out}");
        }
        assert!(raw["kinds"]["response.output_text.delta"].as_u64().unwrap() >= 2);
        let seq: Vec<u64> = raw["seq"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(seq, (0..seq.len() as u64).collect::<Vec<_>>(), "{model}");
        assert_eq!(raw["text"], said(1, "raw events"));
        assert_eq!(raw["ids"].as_array().unwrap().len(), 1, "{out}");
        assert_eq!(raw["total"], usage[2]);
    }
    // The instructions went first, as a system message; the history in order, one message an
    // item.
    let chat = upstream(&mock, "/v1/chat/completions");
    let with_instructions = chat
        .iter()
        .find(|b| b.to_string().contains("with instructions"))
        .unwrap();
    assert_eq!(
        with_instructions["messages"][0],
        json!({"role": "system", "content": "be brief"})
    );
    let history = chat
        .iter()
        .find(|b| b.to_string().contains("mind the history"))
        .unwrap();
    let roles: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "developer", "user"]);
    let claude = upstream(&mock, "/v1/messages");
    assert!(
        claude
            .iter()
            .any(|b| b["system"].to_string().contains("be brief")),
        "{claude:?}"
    );
}

const TOOLS: &str = r#"
question = [{"role": "user", "content": "weather in Oslo?"}]
r = c.responses.create(model=model, input=question, tools=tools)
out["plain"] = {"calls": calls(r.output), "text": r.output_text, "status": r.status,
    "types": [i.type for i in r.output],
    "tool_choice": r.tool_choice, "tools": [t.name for t in r.tools]}
# The history goes back as the SDK hands it out, plus the function's answer.
followup = question + r.output + [{"type": "function_call_output",
    "call_id": r.output[-1].call_id, "output": "12 degrees and clear"}]
r2 = c.responses.create(model=model, input=followup, tools=tools)
out["followup"] = [r2.output_text, calls(r2.output)]
forced = c.responses.create(model=model, input="any city", tools=tools,
    tool_choice={"type": "function", "name": "get_weather"}, parallel_tool_calls=False)
out["forced"] = [calls(forced.output), forced.tool_choice.name, forced.parallel_tool_calls]
with c.responses.stream(model=model, input="Oslo and Bergen? mode:two-calls", tools=tools) as s:
    events = list(s)
    final = s.get_final_response()
out["stream"] = {"done": [[e.name, json.loads(e.arguments)] for e in events
                          if e.type == "response.function_call_arguments.done"],
    "deltas": sum(1 for e in events if e.type == "response.function_call_arguments.delta"),
    "calls": calls(final.output), "status": final.status, "text": final.output_text}
# Two calls sent back: one assistant turn with both, then each answer.
ids = [i.call_id for i in final.output if i.type == "function_call"]
two = [{"role": "user", "content": "Oslo and Bergen?"}] + final.output + [
    {"type": "function_call_output", "call_id": ids[0], "output": "oslo: 12"},
    {"type": "function_call_output", "call_id": ids[1], "output": "bergen: 9"}]
out["two"] = c.responses.create(model=model, input=two, tools=tools).output_text
raw = list(c.responses.create(model=model, input=question, tools=tools, stream=True))
out["raw"] = [e.type for e in raw if e.type.startswith("response.output_item")]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_tools_plain_and_streamed_and_their_answers_go_back() {
    let (mut server, mock, home) = setup().await;
    let oslo = json!({"city": "Oslo", "unit": "celsius"});
    let bergen = json!({"city": "Bergen", "unit": "celsius"});
    for model in [LOCAL, OPENAI, CLAUDE] {
        let out = python(&server, model, TOOLS).await;
        // Claude writes a line before an unforced call, and names its calls `toolu_…`.
        let claude = model == CLAUDE;
        let (id1, id2) = if claude {
            ("toolu_01", "toolu_02")
        } else {
            ("call_1", "call_2")
        };
        let preface = if claude { "Let me check." } else { "" };
        assert_eq!(
            out["plain"]["calls"],
            json!([[id1, "get_weather", oslo, "completed"]]),
            "{model}: {out}"
        );
        assert_eq!(out["plain"]["text"], preface, "{model}");
        let types = if claude {
            json!(["message", "function_call"])
        } else {
            json!(["function_call"])
        };
        assert_eq!(out["plain"]["types"], types, "{model}");
        assert_eq!(out["plain"]["status"], "completed");
        assert_eq!(out["plain"]["tool_choice"], "auto");
        assert_eq!(out["plain"]["tools"], json!(["get_weather"]));
        assert_eq!(
            out["followup"],
            json!(["tool said: 12 degrees and clear", []]),
            "{model}: {out}"
        );
        assert_eq!(
            out["forced"],
            json!([
                [[id1, "get_weather", oslo, "completed"]],
                "get_weather",
                false
            ]),
            "{model}"
        );
        // The SDK's stream helper put the fragments back together: two calls, in order.
        assert_eq!(
            out["stream"]["done"],
            json!([["get_weather", oslo], ["get_weather", bergen]]),
            "{model}: {out}"
        );
        assert!(out["stream"]["deltas"].as_u64().unwrap() > 2);
        assert_eq!(
            out["stream"]["calls"],
            json!([
                [id1, "get_weather", oslo, "completed"],
                [id2, "get_weather", bergen, "completed"]
            ]),
            "{model}"
        );
        assert_eq!(out["stream"]["text"], preface, "{model}");
        let two = if claude {
            "tool said: oslo: 12 | bergen: 9"
        } else {
            "tool said: bergen: 9"
        };
        assert_eq!(out["two"], two, "{model}: {out}");
        let one_item = ["response.output_item.added", "response.output_item.done"];
        let raw: Vec<&str> = if claude {
            one_item.iter().chain(one_item.iter()).copied().collect()
        } else {
            one_item.to_vec()
        };
        assert_eq!(out["raw"], json!(raw), "{model}");
    }
    // The follow-up reached the upstream as chat history: the call as an assistant turn, its
    // output as a tool message answering it.
    let chat = upstream(&mock, "/v1/chat/completions");
    let followup = chat
        .iter()
        .find(|b| b.to_string().contains("12 degrees and clear"))
        .unwrap();
    let messages = followup["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{followup}");
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["tool_calls"][0]["id"], "call_1");
    assert_eq!(
        messages[1]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(
        messages[2],
        json!({"role": "tool", "tool_call_id": "call_1", "content": "12 degrees and clear"})
    );
    let two = chat
        .iter()
        .find(|b| b.to_string().contains("bergen: 9"))
        .unwrap();
    let roles: Vec<&str> = two["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "tool"], "{two}");
    assert_eq!(
        two["messages"][1]["tool_calls"].as_array().unwrap().len(),
        2
    );
    assert_eq!(followup["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(followup["tools"][0]["function"]["strict"], true);
    let forced = chat
        .iter()
        .find(|b| b.to_string().contains("any city"))
        .unwrap();
    assert_eq!(
        forced["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(forced["parallel_tool_calls"], false);
    // Each call audited as `responses`, naming the functions the model asked for, never what
    // it was asked or answered.
    let (calls, text) = llm_entries(&mut server, &home);
    assert!(!calls.is_empty());
    assert!(
        calls.iter().all(|e| e["action"] == "responses"),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|e| e["details"]["functions"] == json!(["get_weather", "get_weather"])),
        "{calls:?}"
    );
    for secret in ["12 degrees", "weather in Oslo", "Bergen"] {
        assert!(!text.contains(secret), "{secret} in the audit log");
    }
}

const REFUSED: &str = r#"
ask = lambda **kw: c.responses.create(model=model, input="hi", **kw)
out["store"] = refused(lambda: ask(store=True))
out["previous"] = refused(lambda: ask(previous_response_id="resp_123"))
out["web_search"] = refused(lambda: ask(tools=[{"type": "web_search"}]))
out["file_search"] = refused(lambda: ask(tools=[{"type": "file_search", "vector_store_ids": ["vs_1"]}]))
out["include"] = refused(lambda: ask(include=["reasoning.encrypted_content"]))
out["reasoning"] = refused(lambda: ask(reasoning={"effort": "low"}))
out["metadata"] = refused(lambda: ask(metadata={"k": "v"}))
out["unknown"] = refused(lambda: ask(extra_body={"frobnicate": 1}))
out["stored_item"] = refused(lambda: c.responses.create(model=model,
    input=[{"type": "item_reference", "id": "msg_1"}]))
out["undeclared"] = refused(lambda: ask(tools=tools,
    tool_choice={"type": "function", "name": "nope"}))
out["nothing_asked"] = c.responses.create(model=model, input="fine", store=False, include=[],
    metadata={}, truncation="disabled", background=False).output_text
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_maestra_does_not_carry_is_refused_by_name_and_nothing_is_stored() {
    let (mut server, mock, home) = setup().await;
    let out = python(&server, LOCAL, REFUSED).await;
    for (key, names) in [
        ("store", "`store`"),
        ("previous", "`previous_response_id`"),
        ("web_search", "\"web_search\""),
        ("file_search", "\"file_search\""),
        ("include", "`include`"),
        ("reasoning", "`reasoning`"),
        ("metadata", "`metadata`"),
        ("unknown", "`frobnicate`"),
        ("stored_item", "`input[0]`"),
        ("undeclared", "\"nope\""),
    ] {
        let r = &out[key];
        assert_eq!(r[0], 400, "{key}: {out}");
        assert!(r[2].as_str().unwrap().contains(names), "{key}: {r}");
    }
    assert_eq!(out["nothing_asked"], "echo(1): fine");
    // Only the last call reached the upstream.
    assert_eq!(upstream(&mock, "/v1/chat/completions").len(), 1);

    // Bodies no SDK would send: a 4xx naming what is wrong, never a 5xx.
    for body in [
        json!({}),
        json!({"model": "llama3.2"}),
        json!({"model": "llama3.2", "input": []}),
        json!({"model": "llama3.2", "input": 5}),
        json!({"model": "llama3.2", "input": [7]}),
        json!({"model": "llama3.2", "input": [{"role": "tool", "content": "x"}]}),
        json!({"model": "llama3.2", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
        json!({"model": "llama3.2", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x/y.png"}]}]}),
        json!({"model": "llama3.2", "input": [{"type": "function_call", "call_id": "", "name": "f", "arguments": "{}"}]}),
        json!({"model": "llama3.2", "input": [{"type": "function_call_output", "call_id": "c", "output": 3}]}),
        json!({"model": "llama3.2", "input": "x", "tools": [{"type": "function", "name": "bad name"}]}),
        json!({"model": "llama3.2", "input": "x", "text": {"format": {"type": "json_schema"}}}),
        json!({"model": "llama3.2", "input": "x", "temperature": 9}),
        json!({"model": "llama3.2", "input": "x", "max_output_tokens": 0}),
        json!({"model": "llama3.2", "input": "x", "stream": "yes"}),
        json!({"model": "llama3.2", "input": "x", "stream_options": {"include_obfuscation": true}}),
        json!({"model": "no-such-model", "input": "x"}),
    ] {
        let (status, err) = post(&server, body.clone()).await;
        assert!((400..500).contains(&status), "{body} -> {status} {err}");
        assert!(err["error"]["message"].is_string(), "{body} -> {err}");
    }
    assert_eq!(upstream(&mock, "/v1/chat/completions").len(), 1);

    // Stateless: no conversation was kept, and the audit entry is the call's, without content.
    let list = get_json(&server.url("/api/conversations")).await;
    assert_eq!(list["conversations"], json!([]), "{list}");
    let (calls, text) = llm_entries(&mut server, &home);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["action"], "responses");
    assert_eq!(calls[0]["service"], "local_model");
    assert!(!text.contains("fine\""), "content in the audit log");
}

const FAILURES: &str = r#"
out["plain"] = refused(lambda: c.responses.create(model=model, input="mode:500 please"))
events = list(c.responses.create(model=model, input="mode:broken mid-answer", stream=True))
last = events[-1]
out["stream"] = {"last": last.type, "status": last.response.status,
    "code": last.response.error.code, "text": last.response.output_text,
    "completed": any(e.type == "response.completed" for e in events)}
try:
    with c.responses.stream(model=model, input="mode:broken again") as s:
        for _ in s:
            pass
        s.get_final_response()
    out["helper"] = None
except RuntimeError as e:
    out["helper"] = str(e)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_failure_is_an_error_plain_and_response_failed_streamed() {
    let (server, _mock, _home) = setup().await;
    for model in [LOCAL, OPENAI, CLAUDE] {
        let out = python(&server, model, FAILURES).await;
        assert_eq!(out["plain"][0], 502, "{model}: {out}");
        let stream = &out["stream"];
        assert_eq!(stream["last"], "response.failed", "{model}: {out}");
        assert_eq!(stream["status"], "failed");
        assert!(
            stream["code"].as_str().unwrap().starts_with("upstream"),
            "{out}"
        );
        assert_eq!(stream["completed"], false);
        // What arrived before the failure is in the failed response.
        let before = if model == CLAUDE {
            "claude "
        } else {
            "echo(1):"
        };
        assert!(
            stream["text"].as_str().unwrap().starts_with(before),
            "{model}: {out}"
        );
        assert!(
            out["helper"]
                .as_str()
                .unwrap()
                .contains("response.completed"),
            "{out}"
        );
    }
}

const CLAUDE_STRICT: &str = r#"
strict = [dict(tools[0], strict=True)]
out["plain"] = refused(lambda: c.responses.create(model=model, input="hi", tools=strict))
out["stream"] = refused(lambda: list(c.responses.create(model=model, input="hi", tools=strict,
                                                        stream=True)))
"#;

/// What a Claude model cannot do is refused with the field named as the Responses body names
/// it (`tools[0].strict`), not as the chat request it became does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_field_is_named_as_the_responses_api_names_it() {
    let (server, mock, _home) = setup().await;
    let out = python(&server, CLAUDE, CLAUDE_STRICT).await;
    for case in ["plain", "stream"] {
        assert_eq!(out[case][0], 400, "{case}: {out}");
        let message = out[case][2].as_str().unwrap();
        assert!(message.contains("`tools[0].strict`"), "{case}: {message}");
        assert!(!message.contains("function"), "{case}: {message}");
    }
    assert!(upstream(&mock, "/v1/messages").is_empty());
}
