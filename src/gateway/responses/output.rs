//! The Response object, as the official SDKs read it: the answer's output items (a message
//! with its text, a `function_call` per call the model made), the usage, and the request's
//! settings echoed back. Streamed and whole answers build it here alike, so the
//! `response.completed` event carries exactly what a plain call returns.

use serde_json::{Map, Value, json};

use crate::providers::{ChatRequest, Choice, ResponseFormat, Tool, ToolCall, ToolChoice, Usage};

/// What every Response object of one call shares: its id, time, model and the echoed
/// settings.
pub(super) struct Head {
    pub id: String,
    created_at: i64,
    pub model: String,
    settings: Map<String, Value>,
}

impl Head {
    pub(super) fn new(req: &ChatRequest, instructions: Option<&str>, model: String) -> Head {
        let option = |k: &str| req.options.get(k).cloned().unwrap_or(Value::Null);
        let settings = json!({
            "instructions": instructions,
            "tools": req.tools.iter().map(tool_json).collect::<Vec<_>>(),
            "tool_choice": req.tool_choice.as_ref().map_or(json!("auto"), tool_choice_json),
            "parallel_tool_calls": req.parallel_tool_calls.unwrap_or(true),
            "temperature": option("temperature"),
            "top_p": option("top_p"),
            "max_output_tokens": req.max_tokens,
            "text": {"format": req.response_format.as_ref().map_or(json!({"type": "text"}), format_json)},
            // Stateless: nothing kept, nothing to continue from, nothing dropped.
            "store": false,
            "previous_response_id": null,
            "truncation": "disabled",
            "background": false,
            "metadata": {},
            "reasoning": null,
        });
        Head {
            id: format!("resp_{}", hex_id()),
            created_at: crate::store::now_unix(),
            model,
            settings: settings.as_object().cloned().unwrap_or_default(),
        }
    }

    /// The Response object in a given state; `usage` is null until the answer is whole.
    pub(super) fn response(&self, end: &End, output: Vec<Value>, usage: Option<Usage>) -> Value {
        let mut r = json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "model": self.model,
            "status": end.status,
            "error": end.error,
            "incomplete_details": end.incomplete,
            "output": output,
            "usage": usage.map(usage_json),
        });
        if let Some(obj) = r.as_object_mut() {
            obj.extend(self.settings.clone());
            if end.status != "in_progress" && end.status != "failed" {
                obj.insert("completed_at".into(), json!(crate::store::now_unix()));
            }
        }
        r
    }
}

/// How a response ended, or that it has not yet.
pub(super) struct End {
    status: &'static str,
    error: Value,
    incomplete: Value,
}

impl End {
    pub(super) fn in_progress() -> End {
        End {
            status: "in_progress",
            error: Value::Null,
            incomplete: Value::Null,
        }
    }

    /// From the chat finish reason: a cut-off answer is `incomplete`, with the reason the
    /// SDKs know.
    pub(super) fn finished(finish_reason: Option<&str>) -> End {
        let incomplete = match finish_reason {
            Some("length") => json!({"reason": "max_output_tokens"}),
            Some("content_filter") => json!({"reason": "content_filter"}),
            _ => Value::Null,
        };
        End {
            status: if incomplete.is_null() {
                "completed"
            } else {
                "incomplete"
            },
            error: Value::Null,
            incomplete,
        }
    }

    /// The upstream failed: Maestra's error code and message (its SPEC §4 error body).
    pub(super) fn failed(body: &Value) -> End {
        End {
            status: "failed",
            error: json!({"code": body["error"]["code"], "message": body["error"]["message"]}),
            incomplete: Value::Null,
        }
    }

    pub(super) fn status(&self) -> &'static str {
        self.status
    }
}

/// A message item with its text (and the model's refusal, where there is one).
pub(super) fn message_item(id: &str, text: &str, refusal: Option<&str>, status: &str) -> Value {
    let mut content = vec![text_part(text)];
    if let Some(r) = refusal {
        content.push(refusal_part(r));
        if text.is_empty() {
            content.remove(0);
        }
    }
    message_json(id, content, status)
}

/// A message item with the content parts given.
pub(super) fn message_json(id: &str, content: Vec<Value>, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
           "content": content})
}

pub(super) fn refusal_part(refusal: &str) -> Value {
    json!({"type": "refusal", "refusal": refusal})
}

pub(super) fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// A `function_call` item: `call_id` is the provider's id, which the client's
/// `function_call_output` names.
pub(super) fn call_item(id: &str, call: &ToolCall, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call.id, "name": call.name,
           "arguments": call.arguments, "status": status})
}

/// The output items of a whole answer: the message when there is text (or no call at all),
/// then one item per call.
pub(super) fn output_of(choice: &Choice) -> Vec<Value> {
    let mut out = Vec::new();
    if !choice.content.is_empty() || choice.refusal.is_some() || choice.tool_calls.is_empty() {
        out.push(message_item(
            &item_id("msg"),
            &choice.content,
            choice.refusal.as_deref(),
            "completed",
        ));
    }
    for call in &choice.tool_calls {
        out.push(call_item(&item_id("fc"), call, "completed"));
    }
    out
}

pub(super) fn item_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex_id())
}

fn hex_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn usage_json(u: Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.total(),
    })
}

fn tool_json(t: &Tool) -> Value {
    json!({"type": "function", "name": t.name, "description": t.description,
           "parameters": t.parameters, "strict": t.strict})
}

fn tool_choice_json(c: &ToolChoice) -> Value {
    match c {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Function(name) => json!({"type": "function", "name": name}),
    }
}

fn format_json(f: &ResponseFormat) -> Value {
    match f {
        ResponseFormat::Text => json!({"type": "text"}),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => json!({"type": "json_schema", "name": name, "description": description,
                    "schema": schema, "strict": strict}),
    }
}
