//! Anthropic's Messages API, translated to and from the chat format.
//!
//! Everything the chat request holds that the Messages API can do is carried: text, images,
//! function calling both ways (`tool_use` / `tool_result` blocks, `input_json_delta` events),
//! and JSON output, `strict` schemas on the models that can guarantee them. What it cannot do
//! (several choices, log probabilities, penalties, a seed, `strict` on an older model) is
//! refused by name before anything is reserved or sent, since dropping it would hand the
//! client an answer to a question it did not ask.
//!
//! The Messages API has no JSON mode: `response_format` becomes one forced tool whose input
//! schema is the requested schema, and that tool call's input is handed back as the answer's
//! text, plain and streamed, so the client sees what OpenAI's JSON mode gives it.
//!
//! - `request` — the request body (roles, blocks, tools, history checks)
//! - `answer`  — a whole answer
//! - `stream`  — streamed events

mod answer;
mod request;
mod stream;

use serde_json::{Value, json};

use super::chat::{ChatRequest, MAX_REPORTED_TOKENS, ResponseFormat, Usage};
use crate::error::{Error, Result};

pub use answer::parse_completion;
pub use request::request_body;
pub use stream::{StreamState, parse_event};

/// The API version every request names.
pub const VERSION: &str = "2023-06-01";
/// The `anthropic-beta` value that turns on strict tool use (structured outputs).
pub const STRUCTURED_OUTPUTS_BETA: &str = "structured-outputs-2025-11-13";

/// Whether a model can guarantee a schema (`strict`): Anthropic's structured outputs came
/// with Claude Opus 4.1 and the 4.5 models, and every later one has them.
pub fn guarantees_schemas(model: &str) -> bool {
    let mut parts = model.trim_start_matches("claude-").split('-');
    let (tier, major, minor) = (parts.next(), parts.next(), parts.next());
    let number = |p: Option<&str>| {
        p.filter(|p| p.len() <= 2)
            .and_then(|p| p.parse::<u32>().ok())
    };
    if !matches!(tier, Some("opus" | "sonnet" | "haiku")) {
        return false;
    }
    match (number(major), number(minor).unwrap_or(0)) {
        (Some(major), _) if major > 4 => true,
        (Some(4), minor) => minor >= 5 || (tier == Some("opus") && minor >= 1),
        _ => false,
    }
}

/// Whether the request needs [`STRUCTURED_OUTPUTS_BETA`]: it asks for a strict schema.
pub fn wants_strict(req: &ChatRequest) -> bool {
    req.tools.iter().any(|t| t.strict == Some(true))
        || matches!(
            req.response_format,
            Some(ResponseFormat::JsonSchema {
                strict: Some(true),
                ..
            })
        )
}

/// What the Messages API has no counterpart for, refused by name; and a history it would
/// refuse (an unanswered or unknown function call, arguments that are not an object), refused
/// here with the field named rather than as a paid round trip the upstream answers with a 400.
pub fn check(req: &ChatRequest, model: &str) -> Result<()> {
    let refuse = |field: &str, why: &str| {
        Err(Error::BadRequest(format!(
            "`{field}` is not supported by anthropic models: {why}"
        )))
    };
    if req.n > 1 {
        return refuse("n", "the Messages API returns one answer per call");
    }
    if req.logprobs {
        return refuse("logprobs", "the Messages API does not report them");
    }
    for field in [
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "logit_bias",
        "reasoning_effort",
    ] {
        if req.options.contains_key(field) {
            return refuse(field, "the Messages API has no such option");
        }
    }
    if req
        .options
        .get("temperature")
        .and_then(Value::as_f64)
        .is_some_and(|t| t > 1.0)
    {
        return refuse(
            "temperature",
            "above 1; anthropic models take a temperature from 0 to 1",
        );
    }
    let no_strict = format!(
        "{model} cannot guarantee that an answer follows a schema (Claude Opus 4.1, the 4.5 \
         models and later can); leave `strict` out or false, or ask one of those"
    );
    let strict_ok = guarantees_schemas(model);
    for (i, t) in req.tools.iter().enumerate() {
        if t.strict == Some(true) && !strict_ok {
            return refuse(&format!("tools[{i}].function.strict"), &no_strict);
        }
        if !describes_object(t.parameters.as_ref()) {
            return refuse(
                &format!("tools[{i}].function.parameters"),
                "a function's parameters must be a schema of `type: object`",
            );
        }
    }
    match &req.response_format {
        Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
            if !req.tools.is_empty() =>
        {
            return refuse(
                "response_format",
                "JSON output is asked of anthropic models through a forced function call, \
                 which cannot be combined with the request's own `tools`",
            );
        }
        Some(ResponseFormat::JsonSchema { strict, schema, .. }) => {
            if *strict == Some(true) && !strict_ok {
                return refuse("response_format.json_schema.strict", &no_strict);
            }
            if !describes_object(schema.as_ref()) {
                return refuse(
                    "response_format.json_schema.schema",
                    "the answer's schema must be of `type: object`",
                );
            }
        }
        _ => {}
    }
    request::check_history(req)
}

/// Whether a JSON Schema (absent meaning any object) describes an object, as a tool's
/// `input_schema` must.
fn describes_object(schema: Option<&Value>) -> bool {
    schema.is_none_or(|s| s.get("type").is_none_or(|t| t == "object"))
}

/// The tool forced when the client asked for JSON (`response_format`): its input is the answer.
struct Structured {
    name: String,
    description: String,
    schema: Value,
    /// The client asked for the schema guaranteed (`json_schema.strict`).
    strict: bool,
}

/// The tool name when the client asked for any JSON object.
const JSON_TOOL: &str = "json_answer";

fn structured(req: &ChatRequest) -> Option<Structured> {
    match &req.response_format {
        Some(ResponseFormat::JsonObject) => Some(Structured {
            name: JSON_TOOL.to_string(),
            description: "Give the whole answer as this tool's input: a JSON object.".into(),
            schema: json!({"type": "object"}),
            strict: false,
        }),
        Some(ResponseFormat::JsonSchema {
            name,
            description,
            schema,
            strict,
        }) => Some(Structured {
            strict: *strict == Some(true),
            name: name.clone(),
            description: description.clone().unwrap_or_else(|| {
                "Give the whole answer as this tool's input, following its schema.".into()
            }),
            schema: schema.clone().unwrap_or_else(|| json!({"type": "object"})),
        }),
        Some(ResponseFormat::Text) | None => None,
    }
}

/// OpenAI's finish reason for an Anthropic `stop_reason`. A forced JSON tool's call is the
/// answer, not a call the client should make: it finishes as `stop`.
fn finish_reason(stop_reason: Option<&str>, structured: bool) -> String {
    match stop_reason {
        Some("max_tokens") => "length",
        Some("tool_use") if !structured => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
    .to_string()
}

/// A token count; one that is not a whole number in range becomes [`MAX_REPORTED_TOKENS`], so
/// the ledger charges the call its whole reservation rather than nothing.
fn num(v: &Value, pointer: &str) -> u64 {
    Usage::reported_count(v.pointer(pointer)).unwrap_or(MAX_REPORTED_TOKENS)
}

fn garbage(what: &str) -> Error {
    Error::Upstream(format!("anthropic sent an invalid answer: {what}"))
}

#[cfg(test)]
mod tests {
    use super::super::chat::{ChatMessage, Tool};
    use super::*;

    fn req() -> ChatRequest {
        ChatRequest::new("claude-x", vec![ChatMessage::text("user", "hi")])
    }

    fn tool(name: &str) -> Tool {
        Tool {
            name: name.into(),
            description: None,
            parameters: Some(json!({"type": "object", "properties": {}})),
            strict: None,
        }
    }

    fn refused(r: &ChatRequest) -> String {
        match check(r, "claude-3-5-haiku-latest") {
            Err(Error::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn what_anthropic_cannot_do_is_refused_by_name() {
        assert!(check(&req(), "claude-3-5-haiku-latest").is_ok());
        let mut r = req();
        r.n = 2;
        assert!(refused(&r).starts_with("`n`"));
        let mut r = req();
        r.logprobs = true;
        assert!(refused(&r).starts_with("`logprobs`"));
        let mut r = req();
        r.options.insert("seed".into(), json!(1));
        assert!(refused(&r).starts_with("`seed`"));
        let mut r = req();
        r.options.insert("temperature".into(), json!(1.5));
        assert!(refused(&r).starts_with("`temperature`"));
        r.options.insert("temperature".into(), json!(0.7));
        assert!(check(&r, "claude-3-5-haiku-latest").is_ok());

        let mut r = req();
        r.tools = vec![tool("a"), tool("b")];
        r.tools[1].strict = Some(true);
        assert!(refused(&r).starts_with("`tools[1].function.strict`"));
        r.tools[1].strict = Some(false);
        assert!(check(&r, "claude-3-5-haiku-latest").is_ok());
        r.tools[0].parameters = Some(json!({"type": "array"}));
        assert!(refused(&r).starts_with("`tools[0].function.parameters`"));

        let mut r = req();
        r.tools = vec![tool("a")];
        r.response_format = Some(ResponseFormat::JsonObject);
        assert!(refused(&r).starts_with("`response_format`"));
        r.tools.clear();
        assert!(check(&r, "claude-3-5-haiku-latest").is_ok());
        r.response_format = Some(ResponseFormat::JsonSchema {
            name: "answer".into(),
            description: None,
            schema: Some(json!({"type": "object"})),
            strict: Some(true),
        });
        assert!(refused(&r).starts_with("`response_format.json_schema.strict`"));
        // A model that can guarantee a schema takes `strict`.
        assert!(check(&r, "claude-sonnet-4-5-20250929").is_ok());
        // Text output with tools is what every function-calling client sends.
        let mut r = req();
        r.tools = vec![tool("a")];
        r.response_format = Some(ResponseFormat::Text);
        assert!(check(&r, "claude-3-5-haiku-latest").is_ok());
    }

    #[test]
    fn which_models_guarantee_schemas() {
        for yes in [
            "claude-sonnet-4-5",
            "claude-sonnet-4-5-20250929",
            "claude-haiku-4-5",
            "claude-opus-4-1-20250805",
            "claude-opus-4-6",
            "claude-sonnet-5",
        ] {
            assert!(guarantees_schemas(yes), "{yes}");
        }
        for no in [
            "claude-3-5-haiku-latest",
            "claude-3-7-sonnet-20250219",
            "claude-sonnet-4-20250514",
            "claude-sonnet-4-0",
            "claude-opus-4-20250514",
            "claude-haiku-4",
            "claude-x",
        ] {
            assert!(!guarantees_schemas(no), "{no}");
        }
    }

    #[test]
    fn finish_reasons_map() {
        assert_eq!(finish_reason(Some("end_turn"), false), "stop");
        assert_eq!(finish_reason(Some("stop_sequence"), false), "stop");
        assert_eq!(finish_reason(Some("max_tokens"), false), "length");
        assert_eq!(finish_reason(Some("tool_use"), false), "tool_calls");
        assert_eq!(finish_reason(Some("tool_use"), true), "stop");
        assert_eq!(finish_reason(Some("refusal"), false), "content_filter");
        assert_eq!(finish_reason(None, false), "stop");
    }
}
