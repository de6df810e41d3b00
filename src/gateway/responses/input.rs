//! The Responses API request body, read field by field into the [`ChatRequest`] every
//! provider already speaks. The rules are chat's (`providers::chat::read`): a field Maestra
//! understands is checked and carried, any other is a 400 naming it. Two more follow from
//! being stateless: nothing refers to a stored response, conversation, prompt or file (the
//! client sends the history in `input`), and nothing asks a provider to keep what was sent.

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::providers::chat::read::{
    MAX_IMAGES, check_options, choice_against, function, image, optional_string, schema, tool_list,
    valid_name,
};
use crate::providers::chat::{MAX_MESSAGE_BYTES, MAX_MESSAGES, MAX_TOKENS};
use crate::providers::{
    ChatMessage, ChatRequest, Part, ResponseFormat, Tool, ToolCall, ToolChoice,
};

/// A request read: the chat request, and what the Response object echoes or the handler needs.
pub(super) struct Read {
    pub request: ChatRequest,
    pub instructions: Option<String>,
    pub stream: bool,
    pub user: Option<String>,
}

/// Every top-level field carried. The ones in [`UNCARRIED`] are read too, but only their
/// "ask for nothing" values pass.
const KNOWN_FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "text",
    "stream",
    "stream_options",
    "store",
    "user",
];

/// Documented fields Maestra does not carry, and why (the 400's message). Each passes only
/// with a value that asks for nothing: null, or its documented default (see [`asks_nothing`]).
const UNCARRIED: &[(&str, &str)] = &[
    (
        "previous_response_id",
        "needs a response stored by the server, and Maestra stores none (stateless): send the \
         history in `input`",
    ),
    (
        "conversation",
        "needs a conversation stored by the provider, and Maestra stores none (stateless): send \
         the history in `input`",
    ),
    (
        "prompt",
        "refers to a prompt template stored with the provider: send its text in `instructions`",
    ),
    (
        "reasoning",
        "(reasoning effort and summaries) is not carried by Maestra's Responses API",
    ),
    (
        "include",
        "asks for extra output (log probabilities, encrypted reasoning, tool sources) that \
         Maestra does not relay",
    ),
    (
        "metadata",
        "is kept by the provider with a stored response, which Maestra does not ask for",
    ),
    (
        "truncation",
        "`auto` would drop input items without a word; only `disabled` is carried",
    ),
    (
        "background",
        "runs a response the provider stores to be polled later, and Maestra stores nothing",
    ),
    (
        "service_tier",
        "changes the price in ways the cost guard cannot bound",
    ),
    (
        "max_tool_calls",
        "limits the provider's built-in tools, which Maestra does not offer",
    ),
    (
        "top_logprobs",
        "log probabilities are not relayed by the Responses API through Maestra (the chat \
         completions API relays them)",
    ),
];

impl Read {
    /// Reads a Responses API body, naming the first field that is wrong or unknown.
    pub(super) fn from_body(body: &Map<String, Value>) -> Result<Read> {
        for (key, v) in body {
            if let Some((_, why)) = UNCARRIED.iter().find(|(k, _)| k == key) {
                if !asks_nothing(key, v) {
                    return Err(bad(&format!("`{key}` {why}")));
                }
            } else if !KNOWN_FIELDS.contains(&key.as_str()) {
                return Err(bad(&format!(
                    "`{key}` is not a Responses API field Maestra understands; nothing was sent"
                )));
            }
        }
        match body.get("store") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(_) => {
                return Err(bad(
                    "`store` may only be false: Maestra keeps no response, and asks no provider \
                     to keep one",
                ));
            }
        }
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.trim().is_empty() => m.trim().to_string(),
            Some(_) => return Err(bad("`model` must be a non-empty string")),
            None => return Err(bad("`model` is required")),
        };
        let instructions = optional_string("instructions", body.get("instructions"))?;
        let mut messages = Vec::new();
        if let Some(text) = &instructions {
            messages.push(ChatMessage::text("system", sized("instructions", text)?));
        }
        input(body.get("input"), &mut messages)?;
        if messages.len() > MAX_MESSAGES {
            return Err(Error::TooLarge(format!(
                "at most {MAX_MESSAGES} messages per request"
            )));
        }
        if messages.iter().flat_map(ChatMessage::images).count() > MAX_IMAGES {
            return Err(Error::TooLarge(format!(
                "at most {MAX_IMAGES} images per request"
            )));
        }
        let options: Map<String, Value> = ["temperature", "top_p"]
            .iter()
            .filter_map(|k| body.get(*k).map(|v| ((*k).to_string(), v.clone())))
            .filter(|(_, v)| !v.is_null())
            .collect();
        check_options(&options)?;
        let tools = tools(body.get("tools"))?;
        let mut request = ChatRequest::new(model, messages);
        request.max_tokens = match body.get("max_output_tokens") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| (1..=MAX_TOKENS).contains(n))
                    .ok_or_else(|| {
                        bad(&format!(
                            "`max_output_tokens` must be an integer from 1 to {MAX_TOKENS}"
                        ))
                    })?,
            ),
        };
        request.options = options;
        request.tool_choice = tool_choice(body.get("tool_choice"), &tools)?;
        request.tools = tools;
        request.parallel_tool_calls = optional_bool(body, "parallel_tool_calls")?;
        request.response_format = text(body.get("text"))?;
        stream_options(body.get("stream_options"))?;
        let user = match body.get("user") {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) => {
                crate::conversations::model::validate_id("user", u)?;
                Some(u.clone())
            }
            Some(_) => return Err(bad("`user` must be a string")),
        };
        Ok(Read {
            request,
            instructions,
            stream: optional_bool(body, "stream")?.unwrap_or(false),
            user,
        })
    }
}

/// Whether an uncarried field's value asks for nothing: null, an empty list or map, or the
/// documented default.
fn asks_nothing(key: &str, v: &Value) -> bool {
    match (key, v) {
        (_, Value::Null) => true,
        ("include", Value::Array(a)) => a.is_empty(),
        ("metadata", Value::Object(o)) => o.is_empty(),
        ("truncation", Value::String(s)) => s == "disabled",
        ("background", Value::Bool(b)) => !b,
        _ => false,
    }
}

fn optional_bool(body: &Map<String, Value>, field: &str) -> Result<Option<bool>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(&format!("`{field}` must be true or false"))),
    }
}

/// `stream_options.include_obfuscation`: Maestra never pads its events, so only `false`.
fn stream_options(v: Option<&Value>) -> Result<()> {
    let o = match v {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(bad("`stream_options` must be an object")),
    };
    for (k, v) in o {
        match (k.as_str(), v) {
            ("include_obfuscation", Value::Null | Value::Bool(false)) => {}
            ("include_obfuscation", _) => {
                return Err(bad(
                    "`stream_options.include_obfuscation` may only be false: Maestra does not \
                     pad its events",
                ));
            }
            (other, _) => {
                return Err(bad(&format!(
                    "`stream_options.{other}` is not an option Maestra understands"
                )));
            }
        }
    }
    Ok(())
}

/// A text that becomes a message, within the size one message may have.
fn sized<'a>(field: &str, text: &'a str) -> Result<&'a str> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(Error::TooLarge(format!(
            "`{field}` is over {MAX_MESSAGE_BYTES} bytes"
        )));
    }
    Ok(text)
}

/// `input`: a string (one user message) or a list of items, appended to `messages`.
fn input(v: Option<&Value>, messages: &mut Vec<ChatMessage>) -> Result<()> {
    let items = match v {
        Some(Value::String(s)) => {
            messages.push(ChatMessage::text("user", sized("input", s)?));
            return Ok(());
        }
        Some(Value::Array(a)) if a.is_empty() => return Err(bad("`input` must not be empty")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad("`input` must be a string or an array of items")),
        None => return Err(bad("`input` is required")),
    };
    if items.len() > MAX_MESSAGES {
        return Err(Error::TooLarge(format!(
            "at most {MAX_MESSAGES} input items per request"
        )));
    }
    for (i, item) in items.iter().enumerate() {
        let obj = item
            .as_object()
            .ok_or_else(|| bad(&format!("`input[{i}]` must be an object")))?;
        match obj.get("type") {
            None | Some(Value::Null) => messages.push(message(i, obj)?),
            Some(Value::String(t)) => match t.as_str() {
                "message" => messages.push(message(i, obj)?),
                "function_call" => {
                    let call = function_call(i, obj)?;
                    // Calls the model made in one turn are one assistant message, with the
                    // text it wrote before them, as the chat wire has them.
                    match messages.last_mut() {
                        Some(last) if last.role == "assistant" => last.tool_calls.push(call),
                        _ => {
                            let mut turn = ChatMessage::text("assistant", "");
                            turn.tool_calls.push(call);
                            messages.push(turn);
                        }
                    }
                }
                "function_call_output" => messages.push(function_output(i, obj)?),
                "item_reference" => {
                    return Err(bad(&format!(
                        "`input[{i}]` refers to a stored item, and Maestra stores none \
                         (stateless): send the item itself"
                    )));
                }
                other => {
                    return Err(bad(&format!(
                        "`input[{i}].type` {other:?} is not an item Maestra carries (message, \
                         function_call, function_call_output)"
                    )));
                }
            },
            Some(_) => return Err(bad(&format!("`input[{i}].type` must be a string"))),
        }
    }
    Ok(())
}

/// Fields an item may carry besides its own: the `id` and `status` of an output item sent
/// back as history (they name the earlier response's item; nothing here looks them up).
fn known_item_field(key: &str) -> bool {
    matches!(key, "type" | "id" | "status")
}

fn message(i: usize, obj: &Map<String, Value>) -> Result<ChatMessage> {
    let role = match obj.get("role").and_then(Value::as_str) {
        Some(r @ ("user" | "system" | "developer" | "assistant")) => r.to_string(),
        Some(other) => {
            return Err(bad(&format!(
                "`input[{i}].role` {other:?} is not one of user, system, developer, assistant"
            )));
        }
        None => return Err(bad(&format!("`input[{i}].role` is required"))),
    };
    if let Some(key) = obj
        .keys()
        .find(|k| !known_item_field(k) && !matches!(k.as_str(), "role" | "content"))
    {
        return Err(bad(&format!(
            "`input[{i}].{key}` is not a field of a message Maestra understands"
        )));
    }
    let parts = match obj.get("content") {
        Some(Value::String(s)) => vec![Part::Text(s.clone())],
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| part(i, j, &role, p))
            .collect::<Result<Vec<_>>>()?,
        _ => {
            return Err(bad(&format!(
                "`input[{i}].content` must be a string or an array of parts"
            )));
        }
    };
    let content = parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            Part::Image(_) => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    sized(&format!("input[{i}].content"), &content)?;
    let mut message = ChatMessage::text(&role, content);
    // Parts that are only text carry nothing the joined text does not.
    if parts.iter().any(|p| matches!(p, Part::Image(_))) {
        message.parts = parts;
    }
    Ok(message)
}

fn part(i: usize, j: usize, role: &str, p: &Value) -> Result<Part> {
    let at = format!("input[{i}].content[{j}]");
    let obj = p
        .as_object()
        .ok_or_else(|| bad(&format!("`{at}` must be an object")))?;
    let kind = match obj.get("type").and_then(Value::as_str) {
        Some(k) => k,
        None => return Err(bad(&format!("`{at}.type` is required"))),
    };
    let (fields, allowed): (&[&str], bool) = match kind {
        "input_text" => (&["type", "text"], role != "assistant"),
        "input_image" => (&["type", "image_url", "detail", "file_id"], role == "user"),
        "output_text" => (
            &["type", "text", "annotations", "logprobs"],
            role == "assistant",
        ),
        "refusal" => (&["type", "refusal"], role == "assistant"),
        _ => (&[], false),
    };
    if !allowed {
        return Err(bad(&format!(
            "`{at}.type` {kind:?} is not a part a {role} message may carry through Maestra ({})",
            match role {
                "assistant" => "output_text and refusal",
                "user" => "input_text and input_image",
                _ => "input_text",
            }
        )));
    }
    if let Some(key) = obj.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(bad(&format!(
            "`{at}.{key}` is not a field of an {kind} part Maestra understands"
        )));
    }
    let string = |field: &str| match obj.get(field) {
        Some(Value::String(t)) => Ok(t.clone()),
        _ => Err(bad(&format!("`{at}.{field}` must be a string"))),
    };
    match kind {
        "input_text" | "output_text" => Ok(Part::Text(string("text")?)),
        // An assistant's refusal in the history reads as its text, as in chat.
        "refusal" => Ok(Part::Text(string("refusal")?)),
        _ => {
            if !matches!(obj.get("file_id"), None | Some(Value::Null)) {
                return Err(bad(&format!(
                    "`{at}.file_id` refers to a file stored with the provider: send the image \
                     as a data: URL in `image_url`"
                )));
            }
            let url = string("image_url")?;
            let detail = obj.get("detail").cloned().unwrap_or(Value::Null);
            image(&at, Some(&json!({"url": url, "detail": detail})))
        }
    }
}

/// A call id as the provider made it (`call_…`, `toolu_…`), sent back to pair a call with its
/// output.
fn call_id(i: usize, obj: &Map<String, Value>) -> Result<String> {
    match obj.get("call_id") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 256 => Ok(id.clone()),
        _ => Err(bad(&format!(
            "`input[{i}].call_id` must be the non-empty id of a function call"
        ))),
    }
}

fn function_call(i: usize, obj: &Map<String, Value>) -> Result<ToolCall> {
    if let Some(key) = obj
        .keys()
        .find(|k| !known_item_field(k) && !matches!(k.as_str(), "call_id" | "name" | "arguments"))
    {
        return Err(bad(&format!(
            "`input[{i}].{key}` is not a field of a function_call item Maestra understands"
        )));
    }
    let arguments = match obj.get("arguments") {
        Some(Value::String(a)) => sized(&format!("input[{i}].arguments"), a)?.to_string(),
        _ => return Err(bad(&format!("`input[{i}].arguments` must be a string"))),
    };
    Ok(ToolCall {
        id: call_id(i, obj)?,
        name: valid_name(&format!("input[{i}].name"), obj.get("name"))?,
        arguments,
    })
}

fn function_output(i: usize, obj: &Map<String, Value>) -> Result<ChatMessage> {
    if let Some(key) = obj
        .keys()
        .find(|k| !known_item_field(k) && !matches!(k.as_str(), "call_id" | "output"))
    {
        return Err(bad(&format!(
            "`input[{i}].{key}` is not a field of a function_call_output item Maestra \
             understands"
        )));
    }
    let output = match obj.get("output") {
        Some(Value::String(s)) => s.clone(),
        // The list form, where every part is text (a tool message carries no image).
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(
                |(j, p)| match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("input_text"), Some(Value::String(t))) => Ok(t.as_str()),
                    _ => Err(bad(&format!(
                        "`input[{i}].output[{j}]` must be an input_text part: a function's \
                     output carries text through Maestra"
                    ))),
                },
            )
            .collect::<Result<Vec<_>>>()?
            .join("\n"),
        _ => return Err(bad(&format!("`input[{i}].output` must be a string"))),
    };
    let mut message = ChatMessage::text("tool", sized(&format!("input[{i}].output"), &output)?);
    message.tool_call_id = Some(call_id(i, obj)?);
    Ok(message)
}

/// Function tools, flat as the Responses API declares them. Any other kind would be run by
/// the provider itself (a web search, a file search, a computer), outside Maestra's guard.
fn tools(v: Option<&Value>) -> Result<Vec<Tool>> {
    let list = tool_list(v)?;
    let mut out: Vec<Tool> = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let obj = t
            .as_object()
            .ok_or_else(|| bad(&format!("`tools[{i}]` must be an object")))?;
        match obj.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some("custom") => {
                return Err(bad(&format!(
                    "`tools[{i}].type` \"custom\" (free-form input) is not carried through \
                     Maestra: declare a function tool"
                )));
            }
            Some(other) => {
                return Err(bad(&format!(
                    "`tools[{i}].type` {other:?} is a tool the provider would run itself, \
                     outside Maestra's guard and audit: only function tools are carried"
                )));
            }
            None => return Err(bad(&format!("`tools[{i}].type` must be \"function\""))),
        }
        if let Some(key) = obj.keys().find(|k| {
            !matches!(
                k.as_str(),
                "type" | "name" | "description" | "parameters" | "strict"
            )
        }) {
            return Err(bad(&format!(
                "`tools[{i}].{key}` is not a field of a function tool Maestra understands"
            )));
        }
        out.push(function(&format!("tools[{i}]"), obj, &out)?);
    }
    Ok(out)
}

fn tool_choice(v: Option<&Value>, tools: &[Tool]) -> Result<Option<ToolChoice>> {
    const WHAT: &str =
        "`tool_choice` must be auto, none, required or {\"type\": \"function\", \"name\": …}";
    let choice = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => return Err(bad(WHAT)),
        },
        Some(Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some("function") => {
                if let Some(key) = o.keys().find(|k| !matches!(k.as_str(), "type" | "name")) {
                    return Err(bad(&format!(
                        "`tool_choice.{key}` is not a field of a function choice Maestra \
                         understands"
                    )));
                }
                ToolChoice::Function(valid_name("tool_choice.name", o.get("name"))?)
            }
            Some(other) => {
                return Err(bad(&format!(
                    "`tool_choice.type` {other:?} is not carried through Maestra: only \
                     function tools are"
                )));
            }
            None => return Err(bad(WHAT)),
        },
        Some(_) => return Err(bad(WHAT)),
    };
    choice_against(choice, tools).map(Some)
}

/// `text.format`, the Responses API's `response_format`, flat.
fn text(v: Option<&Value>) -> Result<Option<ResponseFormat>> {
    let o = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(bad("`text` must be an object")),
    };
    for (k, v) in o {
        match k.as_str() {
            "format" => {}
            "verbosity" if v.is_null() => {}
            "verbosity" => {
                return Err(bad(
                    "`text.verbosity` is not carried by Maestra's Responses API",
                ));
            }
            other => {
                return Err(bad(&format!(
                    "`text.{other}` is not an option Maestra understands"
                )));
            }
        }
    }
    let f = match o.get("format") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(f)) => f,
        Some(_) => return Err(bad("`text.format` must be an object")),
    };
    let kind = f.get("type").and_then(Value::as_str);
    let fields: &[&str] = match kind {
        Some("text" | "json_object") => &["type"],
        Some("json_schema") => &["type", "name", "schema", "description", "strict"],
        _ => {
            return Err(bad(
                "`text.format.type` must be text, json_object or json_schema",
            ));
        }
    };
    if let Some(key) = f.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(bad(&format!(
            "`text.format.{key}` is not a field of a {} format Maestra understands",
            kind.unwrap_or_default()
        )));
    }
    Ok(Some(match kind {
        Some("text") => ResponseFormat::Text,
        Some("json_object") => ResponseFormat::JsonObject,
        _ => ResponseFormat::JsonSchema {
            name: valid_name("text.format.name", f.get("name"))?,
            description: optional_string("text.format.description", f.get("description"))?,
            schema: schema("text.format.schema", f.get("schema"))?,
            strict: match f.get("strict") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(_) => return Err(bad("`text.format.strict` must be true or false")),
            },
        },
    }))
}

/// A refusal from the chat pipeline names the chat request's fields (`tools[0].function
/// .strict`, `response_format`); the client wrote a Responses body, so it hears its own names
/// (`tools[0].strict`, `text.format`).
pub(super) fn responses_names(e: Error) -> Error {
    let Error::BadRequest(m) = e else {
        return e;
    };
    let m = m
        .replace("`response_format.json_schema.", "`text.format.")
        .replace("`response_format`", "`text.format`");
    let mut out = String::with_capacity(m.len());
    let mut rest = m.as_str();
    while let Some(p) = rest.find("`tools[") {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let digits = rest[7..].bytes().take_while(u8::is_ascii_digit).count();
        let end = 7 + digits;
        if digits > 0 && rest[end..].starts_with("].function.") {
            out.push_str(&rest[..=end]);
            rest = &rest[end + "].function".len()..];
        } else {
            out.push_str(&rest[..7]);
            rest = &rest[7..];
        }
    }
    out.push_str(rest);
    Error::BadRequest(out)
}

fn bad(msg: &str) -> Error {
    Error::BadRequest(msg.to_string())
}

#[cfg(test)]
mod tests;
