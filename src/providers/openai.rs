//! The OpenAI chat-completions wire format, spoken by OpenAI and by local servers (Ollama,
//! llama.cpp, vLLM, LM Studio): every field of a [`ChatRequest`] out, every choice, function
//! call, refusal and log probability back, whole or as stream fragments.
//!
//! Function-call fragments are read here as sent; the stream (`stream`) then puts them in the
//! shape OpenAI streams (the first fragment of a call names it, later ones add pieces of its
//! arguments, one index per call) whatever the server's dialect, and reassembling them is the
//! client's SDK's job, as it is against OpenAI directly.

use serde_json::{Map, Value, json};

use super::chat::{
    ChatMessage, ChatRequest, Choice, Completion, Delta, ImageSource, MAX_CHOICES,
    MAX_REPORTED_TOKENS, Part, ResponseFormat, ToolCall, ToolChoice, Usage,
};
use crate::error::{Error, Result};
use crate::services::redact::Redactor;

/// Most function calls one choice may carry (OpenAI's limit on declared tools): an answer with
/// more is not one a client asked for, and the stream's per-call redactors stay bounded.
pub const MAX_TOOL_CALLS: u32 = 128;

/// What a local OpenAI-compatible server cannot be trusted with, refused by name.
pub fn check_local(req: &ChatRequest) -> Result<()> {
    if req.n > 1 {
        return Err(Error::BadRequest(
            "`n` above 1 is not supported by local models: llama.cpp and Ollama return one \
             choice whatever `n` says"
                .into(),
        ));
    }
    if !req.remote_image_hosts().is_empty() {
        return Err(Error::BadRequest(
            "an http(s) `image_url` would have the local model server fetch it itself, \
             outside Maestra's guard; send the image as a data: URL"
                .into(),
        ));
    }
    Ok(())
}

/// The request body. `local` servers get the output cap as `max_tokens` (what llama.cpp and
/// Ollama read); OpenAI gets `max_completion_tokens` (its newer models refuse `max_tokens`).
pub fn request_body(req: &ChatRequest, model: &str, stream: bool, local: bool) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "messages".into(),
        req.messages.iter().map(message).collect(),
    );
    body.insert("stream".into(), json!(stream));
    for (k, v) in &req.options {
        body.insert(k.clone(), v.clone());
    }
    if let Some(n) = req.max_tokens {
        let field = if local {
            "max_tokens"
        } else {
            "max_completion_tokens"
        };
        body.insert(field.into(), json!(n));
    }
    if !req.tools.is_empty() {
        let tools = req.tools.iter().map(|t| {
            let mut f = Map::new();
            f.insert("name".into(), json!(t.name));
            if let Some(d) = &t.description {
                f.insert("description".into(), json!(d));
            }
            if let Some(p) = &t.parameters {
                f.insert("parameters".into(), p.clone());
            }
            if let Some(s) = t.strict {
                f.insert("strict".into(), json!(s));
            }
            json!({"type": "function", "function": f})
        });
        body.insert("tools".into(), tools.collect());
    }
    if let Some(c) = &req.tool_choice {
        let choice = match c {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}),
        };
        body.insert("tool_choice".into(), choice);
    }
    if let Some(p) = req.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), json!(p));
    }
    if let Some(f) = &req.response_format {
        body.insert("response_format".into(), response_format(f));
    }
    if req.logprobs {
        body.insert("logprobs".into(), json!(true));
    }
    if let Some(t) = req.top_logprobs {
        body.insert("top_logprobs".into(), json!(t));
    }
    if req.n > 1 {
        body.insert("n".into(), json!(req.n));
    }
    if stream {
        // Usage arrives in a last chunk; it is what the cost ledger settles on.
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Value::Object(body)
}

/// One message: `content` as a string, or as parts when it carries images; an assistant's
/// calls with `content` null when it said nothing; a tool answer with the call it answers.
fn message(m: &ChatMessage) -> Value {
    let content = if !m.parts.is_empty() {
        m.parts.iter().map(part).collect()
    } else if m.content.is_empty() && !m.tool_calls.is_empty() {
        Value::Null
    } else {
        json!(m.content)
    };
    let mut out = json!({"role": m.role, "content": content});
    if !m.tool_calls.is_empty() {
        out["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|t| {
                json!({"id": t.id, "type": "function",
                       "function": {"name": t.name, "arguments": t.arguments}})
            })
            .collect();
    }
    if let Some(id) = &m.tool_call_id {
        out["tool_call_id"] = json!(id);
    }
    out
}

fn part(p: &Part) -> Value {
    match p {
        Part::Text(t) => json!({"type": "text", "text": t}),
        Part::Image(i) => {
            let url = match &i.source {
                ImageSource::Inline { media_type, base64 } => {
                    format!("data:{media_type};base64,{base64}")
                }
                ImageSource::Remote(u) => u.to_string(),
            };
            let mut image = json!({"url": url});
            if let Some(d) = &i.detail {
                image["detail"] = json!(d);
            }
            json!({"type": "image_url", "image_url": image})
        }
    }
}

fn response_format(f: &ResponseFormat) -> Value {
    match f {
        ResponseFormat::Text => json!({"type": "text"}),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => {
            let mut s = Map::new();
            s.insert("name".into(), json!(name));
            if let Some(d) = description {
                s.insert("description".into(), json!(d));
            }
            if let Some(schema) = schema {
                s.insert("schema".into(), schema.clone());
            }
            if let Some(strict) = strict {
                s.insert("strict".into(), json!(strict));
            }
            json!({"type": "json_schema", "json_schema": s})
        }
    }
}

/// A whole answer to a request for `n` choices: every choice in `index` order, with its
/// calls, refusal and log probabilities. A call without an id, name or text arguments, or a
/// choice the request did not ask for, is a broken answer (502).
pub fn parse_completion(v: &Value, n: u32) -> Result<Completion> {
    let raw = match v.get("choices") {
        Some(Value::Array(c)) if !c.is_empty() => c,
        _ => return Err(garbage("no `choices`")),
    };
    if raw.len() > n.min(MAX_CHOICES) as usize {
        return Err(garbage("more `choices` than the request asked for"));
    }
    let mut choices = raw
        .iter()
        .enumerate()
        .map(|(i, c)| match index_of(c, i)? {
            i if i >= n => Err(garbage("a choice `index` the request did not ask for")),
            i => Ok((i, choice(c)?)),
        })
        .collect::<Result<Vec<_>>>()?;
    choices.sort_by_key(|(i, _)| *i);
    Ok(Completion {
        choices: choices.into_iter().map(|(_, c)| c).collect(),
        usage: usage(v.get("usage")),
    })
}

fn choice(c: &Value) -> Result<Choice> {
    let message = c.get("message").unwrap_or(&Value::Null);
    let content = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(_) => return Err(garbage("`message.content` is not text")),
    };
    let tool_calls = match message.get("tool_calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) if calls.len() <= MAX_TOOL_CALLS as usize => {
            calls.iter().map(tool_call).collect::<Result<Vec<_>>>()?
        }
        Some(_) => return Err(garbage("`message.tool_calls` is not a list of calls")),
    };
    let refusal = match message.get("refusal") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(_) => return Err(garbage("`message.refusal` is not text")),
    };
    Ok(Choice {
        content,
        tool_calls,
        finish_reason: c
            .get("finish_reason")
            .and_then(Value::as_str)
            .unwrap_or("stop")
            .to_string(),
        logprobs: c.get("logprobs").filter(|l| !l.is_null()).cloned(),
        refusal,
    })
}

fn tool_call(c: &Value) -> Result<ToolCall> {
    let text = |p: &str| c.pointer(p).and_then(Value::as_str).map(str::to_string);
    match (
        text("/id"),
        text("/function/name"),
        text("/function/arguments"),
    ) {
        (Some(id), Some(name), Some(arguments)) => Ok(ToolCall {
            id,
            name,
            arguments,
        }),
        _ => Err(garbage(
            "a tool call lacks its `id`, `function.name` or `function.arguments` text",
        )),
    }
}

/// An item's `index`, or its place in the list when the server leaves it out.
fn index_of(v: &Value, position: usize) -> Result<u32> {
    match v.get("index") {
        None | Some(Value::Null) => u32::try_from(position).map_err(|_| garbage("too many items")),
        Some(i) => i
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| garbage("an `index` is not a small whole number")),
    }
}

/// The deltas in one streamed `data:` payload (`[DONE]` is handled by the caller): for each
/// choice, its text, its call fragments as sent, its log probabilities and its finish reason.
pub fn parse_chunk(data: &str) -> Result<Vec<Delta>> {
    // A syntax error names a line and column, never the payload's text: safe to keep.
    let v: Value =
        serde_json::from_str(data).map_err(|e| garbage("a stream chunk is not JSON").because(e))?;
    if let Some(err) = v.get("error") {
        return Err(Error::Upstream(format!(
            "the stream reported an error: {}",
            super::upstream_message(err)
        )));
    }
    let mut out = Vec::new();
    match v.get("choices") {
        Some(Value::Array(choices)) => {
            for (i, c) in choices.iter().enumerate() {
                chunk_choice(index_of(c, i)?, c, &mut out)?;
            }
        }
        Some(Value::Null) | None if v.get("usage").is_some() => {}
        _ => return Err(garbage("a stream chunk has no `choices`")),
    }
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        out.push(Delta::Usage(usage(Some(u))));
    }
    Ok(out)
}

fn chunk_choice(choice: u32, c: &Value, out: &mut Vec<Delta>) -> Result<()> {
    match c.pointer("/delta/content") {
        Some(Value::String(t)) if !t.is_empty() => out.push(Delta::Text {
            choice,
            text: t.clone(),
        }),
        Some(Value::String(_) | Value::Null) | None => {}
        Some(_) => return Err(garbage("a chunk's `delta.content` is not text")),
    }
    match c.pointer("/delta/refusal") {
        Some(Value::String(t)) if !t.is_empty() => out.push(Delta::Refusal {
            choice,
            text: t.clone(),
        }),
        Some(Value::String(_) | Value::Null) | None => {}
        Some(_) => return Err(garbage("a chunk's `delta.refusal` is not text")),
    }
    match c.pointer("/delta/tool_calls") {
        Some(Value::Array(calls)) => {
            for (i, call) in calls.iter().enumerate() {
                out.push(fragment(choice, index_of(call, i)?, call)?);
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => return Err(garbage("a chunk's `delta.tool_calls` is not a list")),
    }
    if let Some(lp) = c.get("logprobs").filter(|l| !l.is_null()) {
        out.push(Delta::Logprobs {
            choice,
            logprobs: lp.clone(),
        });
    }
    if let Some(Value::String(r)) = c.get("finish_reason") {
        out.push(Delta::Finish {
            choice,
            reason: r.clone(),
        });
    }
    Ok(())
}

/// One call fragment, as sent: `id` and `name` where present (the first fragment), and the
/// piece of `arguments` it carries ("" when none).
fn fragment(choice: u32, index: u32, call: &Value) -> Result<Delta> {
    let text = |p: &str| match call.pointer(p) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(garbage("a tool call fragment has a field that is not text")),
    };
    Ok(Delta::ToolCall {
        choice,
        index,
        id: text("/id")?,
        name: text("/function/name")?,
        arguments: text("/function/arguments")?.unwrap_or_default(),
    })
}

/// Whether a `logprobs` object spells a credential `redactor` knows across its tokens, in its
/// `content` or `refusal` list: a tokenizer splits a key over many tokens, each with its own
/// `token` text and `bytes`, so no single field holds it and scrubbing them one by one finds
/// nothing.
pub fn logprobs_spell_key(redactor: &Redactor, logprobs: &Value) -> bool {
    ["content", "refusal"].iter().any(|list| {
        let Some(Value::Array(tokens)) = logprobs.get(*list) else {
            return false;
        };
        let (mut text, mut bytes) = (Vec::new(), Vec::new());
        for t in tokens {
            if let Some(s) = t.get("token").and_then(Value::as_str) {
                text.extend_from_slice(s.as_bytes());
            }
            if let Some(Value::Array(b)) = t.get("bytes") {
                bytes.extend(b.iter().filter_map(Value::as_u64).map(|b| b as u8));
            }
        }
        redactor.contains(&text) || redactor.contains(&bytes)
    })
}

/// A count that is not a whole number in range becomes [`MAX_REPORTED_TOKENS`]: the ledger
/// then charges the call its whole reservation, never less than it may have cost.
fn usage(u: Option<&Value>) -> Usage {
    let n =
        |k: &str| Usage::reported_count(u.and_then(|u| u.get(k))).unwrap_or(MAX_REPORTED_TOKENS);
    Usage {
        prompt_tokens: n("prompt_tokens"),
        completion_tokens: n("completion_tokens"),
    }
}

fn garbage(what: &str) -> Error {
    Error::Upstream(format!("the model server sent an invalid answer: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::chat::{Image, Tool};

    fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    fn full_request() -> ChatRequest {
        let mut asked = ChatMessage::text("user", "what is this?");
        asked.parts = vec![
            Part::Text("what is this?".into()),
            Part::Image(Image {
                source: ImageSource::Inline {
                    media_type: "image/png".into(),
                    base64: "iVBORw0K".into(),
                },
                detail: Some("low".into()),
            }),
            Part::Image(Image {
                source: ImageSource::Remote(url::Url::parse("https://img.example/a.png").unwrap()),
                detail: None,
            }),
        ];
        let mut called = ChatMessage::text("assistant", "");
        called.tool_calls = vec![call("call_1", "get_weather", r#"{"city":"Oslo"}"#)];
        let mut answered = ChatMessage::text("tool", "12C");
        answered.tool_call_id = Some("call_1".into());
        let mut req = ChatRequest::new("m", vec![asked, called, answered]);
        req.max_tokens = Some(99);
        req.options.insert("seed".into(), json!(7));
        req.tools = vec![Tool {
            name: "get_weather".into(),
            description: Some("the weather".into()),
            parameters: Some(json!({"type": "object"})),
            strict: Some(true),
        }];
        req.tool_choice = Some(ToolChoice::Function("get_weather".into()));
        req.parallel_tool_calls = Some(false);
        req.response_format = Some(ResponseFormat::JsonSchema {
            name: "answer".into(),
            description: None,
            schema: Some(json!({"type": "object"})),
            strict: Some(true),
        });
        req.logprobs = true;
        req.top_logprobs = Some(2);
        req.n = 2;
        req
    }

    #[test]
    fn the_request_carries_every_field() {
        let body = request_body(&full_request(), "gpt-4o-mini", true, false);
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}},
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
                ]},
                {"role": "tool", "content": "12C", "tool_call_id": "call_1"},
            ])
        );
        assert_eq!(
            body["tools"],
            json!([{"type": "function", "function": {"name": "get_weather",
                "description": "the weather", "parameters": {"type": "object"}, "strict": true}}])
        );
        assert_eq!(
            body["tool_choice"],
            json!({"type": "function", "function": {"name": "get_weather"}})
        );
        assert_eq!(body["parallel_tool_calls"], false);
        assert_eq!(
            body["response_format"],
            json!({"type": "json_schema", "json_schema":
                {"name": "answer", "schema": {"type": "object"}, "strict": true}})
        );
        assert_eq!(
            (&body["logprobs"], &body["top_logprobs"]),
            (&json!(true), &json!(2))
        );
        assert_eq!((&body["n"], &body["seed"]), (&json!(2), &json!(7)));
        assert_eq!(body["max_completion_tokens"], 99);
        assert!(body.get("max_tokens").is_none());
        assert_eq!(body["stream_options"], json!({"include_usage": true}));

        // A local server reads `max_tokens`; a plain request has no stream options, and what
        // was not asked for is not sent.
        let local = request_body(&full_request(), "llama3.2", false, true);
        assert_eq!(local["max_tokens"], 99);
        assert!(local.get("max_completion_tokens").is_none());
        assert!(local.get("stream_options").is_none());
        let plain = request_body(
            &ChatRequest::new("m", vec![ChatMessage::text("user", "hi")]),
            "m",
            false,
            false,
        );
        assert_eq!(
            plain,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": false})
        );
        for (choice, sent) in [
            (ToolChoice::Auto, json!("auto")),
            (ToolChoice::None, json!("none")),
            (ToolChoice::Required, json!("required")),
        ] {
            let mut req = full_request();
            req.tool_choice = Some(choice);
            req.response_format = Some(ResponseFormat::JsonObject);
            let body = request_body(&req, "m", false, false);
            assert_eq!(body["tool_choice"], sent);
            assert_eq!(body["response_format"], json!({"type": "json_object"}));
        }
    }

    #[test]
    fn every_choice_with_its_calls_refusal_and_logprobs() {
        let lp = json!({"content": [{"token": "hi", "logprob": -0.1, "bytes": [104, 105], "top_logprobs": []}]});
        let answer = json!({
            "choices": [
                {"index": 1, "message": {"role": "assistant", "content": null, "refusal": "no"}, "finish_reason": "stop"},
                {"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{}"}}
                ]}, "logprobs": lp, "finish_reason": "tool_calls"},
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}
        });
        // One choice asked for: two, or one under another index, is not the answer asked for.
        assert!(matches!(
            parse_completion(&answer, 1),
            Err(Error::Upstream(_))
        ));
        let second = json!({"choices": [answer["choices"][0].clone()]});
        assert!(matches!(
            parse_completion(&second, 1),
            Err(Error::Upstream(_))
        ));
        let c = parse_completion(&answer, 2).unwrap();
        assert_eq!(c.choices.len(), 2);
        assert_eq!(
            c.choices[0].tool_calls,
            vec![call("call_1", "f", "{\"a\":1}"), call("call_2", "g", "{}")]
        );
        assert_eq!(c.choices[0].finish_reason, "tool_calls");
        assert_eq!(c.choices[0].logprobs, Some(lp));
        assert_eq!(c.choices[1].refusal.as_deref(), Some("no"));
        assert_eq!(c.choices[1].logprobs, None);
        assert_eq!(c.called_functions(), ["f", "g"]);

        // A call missing a part is a broken answer, never a panic.
        for broken in [
            json!({"type": "function", "function": {"name": "f", "arguments": "{}"}}),
            json!({"id": "c", "function": {"arguments": "{}"}}),
            json!({"id": "c", "function": {"name": "f", "arguments": {"a": 1}}}),
            json!("call"),
        ] {
            let answer =
                json!({"choices": [{"message": {"content": null, "tool_calls": [broken]}}]});
            assert!(matches!(
                parse_completion(&answer, 1),
                Err(Error::Upstream(_))
            ));
        }
        for broken in [
            json!({"choices": []}),
            json!({"choices": [{"index": -1, "message": {"content": "x"}}]}),
            json!({"choices": [{"message": {"content": "x", "refusal": 3}}]}),
            json!({"choices": [{"message": {"content": "x", "tool_calls": {}}}]}),
        ] {
            assert!(parse_completion(&broken, 2).is_err(), "{broken}");
        }
    }

    #[test]
    fn a_key_spelled_over_many_tokens_is_found() {
        let key = secrecy::SecretString::from("sk-proj-LOGPROBKEY42");
        let r = Redactor::new([&key]);
        let tokens = |list: &[&str]| -> Value {
            list.iter()
                .map(|t| json!({"token": t, "logprob": -0.5, "bytes": t.as_bytes(), "top_logprobs": []}))
                .collect()
        };
        let split = tokens(&["sk", "-proj", "-LOG", "PROB", "KEY", "42"]);
        assert!(logprobs_spell_key(&r, &json!({"content": split})));
        assert!(logprobs_spell_key(
            &r,
            &json!({"content": null, "refusal": split})
        ));
        // Only the bytes spell it (a token's text may be a replacement character).
        let mut by_bytes = tokens(&["sk-proj-LOG", "PROBKEY42"]);
        by_bytes[1]["token"] = json!("\u{fffd}");
        assert!(logprobs_spell_key(&r, &json!({"content": by_bytes})));
        assert!(!logprobs_spell_key(
            &r,
            &json!({"content": tokens(&["sk", "-proj", "-LOG"])})
        ));
        assert!(!logprobs_spell_key(&r, &json!(null)));
    }

    #[test]
    fn a_streamed_refusal_is_its_own_delta() {
        assert_eq!(
            parse_chunk(
                r#"{"choices":[{"index":0,"delta":{"refusal":"I can't"},"finish_reason":null}]}"#
            )
            .unwrap(),
            vec![Delta::Refusal {
                choice: 0,
                text: "I can't".into()
            }]
        );
        assert!(parse_chunk(r#"{"choices":[{"index":0,"delta":{"refusal":5}}]}"#).is_err());
    }

    #[test]
    fn completion_and_chunks() {
        let c = parse_completion(&json!({
            "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}
        }), 1)
        .unwrap();
        assert_eq!((c.text(), c.usage.total()), ("hi", 4));
        assert_eq!(
            parse_chunk(r#"{"choices":[{"delta":{"content":"a"},"finish_reason":null}]}"#).unwrap(),
            vec![Delta::Text {
                choice: 0,
                text: "a".into()
            }]
        );
        assert_eq!(
            parse_chunk(r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#)
                .unwrap(),
            vec![Delta::Usage(Usage {
                prompt_tokens: 1,
                completion_tokens: 2
            })]
        );
        assert!(parse_chunk("not json").is_err());
        assert!(parse_completion(&json!({"foo": 1}), 1).is_err());
    }

    /// Reassembles call fragments the way the OpenAI SDK does: by choice, then call index.
    fn reassemble(deltas: &[Delta]) -> Vec<(u32, u32, String, String, String)> {
        let mut calls: Vec<(u32, u32, String, String, String)> = Vec::new();
        for d in deltas {
            if let Delta::ToolCall {
                choice,
                index,
                id,
                name,
                arguments,
            } = d
            {
                match calls.iter_mut().find(|c| (c.0, c.1) == (*choice, *index)) {
                    Some(c) => c.4.push_str(arguments),
                    None => calls.push((
                        *choice,
                        *index,
                        id.clone().unwrap_or_default(),
                        name.clone().unwrap_or_default(),
                        arguments.clone(),
                    )),
                }
            }
        }
        calls
    }

    #[test]
    fn call_fragments_across_chunks_and_interleaved_choices() {
        let chunks = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"get_time","arguments":""}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Oslo\"}"}},{"index":1,"function":{"arguments":"{}"}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":1,"delta":{"content":"b"},"logprobs":{"content":[]},"finish_reason":null},{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[{"index":1,"delta":{},"finish_reason":"stop"}]}"#,
        ];
        let deltas: Vec<Delta> = chunks
            .iter()
            .flat_map(|c| parse_chunk(c).unwrap())
            .collect();
        assert_eq!(
            reassemble(&deltas),
            vec![
                (
                    0,
                    0,
                    "call_1".into(),
                    "get_weather".into(),
                    r#"{"city":"Oslo"}"#.into()
                ),
                (0, 1, "call_2".into(), "get_time".into(), "{}".into()),
            ]
        );
        // Later fragments carry only their piece, as sent.
        assert_eq!(
            deltas[1],
            Delta::ToolCall {
                choice: 0,
                index: 0,
                id: None,
                name: None,
                arguments: "{\"city\":".into()
            }
        );
        assert_eq!(
            deltas[deltas.len() - 4..],
            [
                Delta::Text {
                    choice: 1,
                    text: "b".into()
                },
                Delta::Logprobs {
                    choice: 1,
                    logprobs: json!({"content": []})
                },
                Delta::Finish {
                    choice: 0,
                    reason: "tool_calls".into()
                },
                Delta::Finish {
                    choice: 1,
                    reason: "stop".into()
                },
            ]
        );
        for broken in [
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":{}}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":{}}}]}"#,
            r#"{"choices":[{"index":"0","delta":{}}]}"#,
            r#"{"choices":[{"delta":{"content":7}}]}"#,
            r#"{"id":"x"}"#,
        ] {
            assert!(
                matches!(parse_chunk(broken), Err(Error::Upstream(_))),
                "{broken}"
            );
        }
    }
}
