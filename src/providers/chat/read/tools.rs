//! The function-calling and output fields of a chat request: `tools`, `tool_choice` and
//! `response_format`, and the name and schema rules they share (which the Responses API's
//! reader uses too).

use serde_json::{Map, Value};

use super::super::{ResponseFormat, Tool, ToolChoice};
use super::{MAX_TOOLS, bad};
use crate::error::Result;

/// Longest function name (OpenAI's rule: letters, digits, `_` and `-`, at most 64).
const MAX_NAME: usize = 64;

/// A function or schema name: 1 to 64 letters, digits, `_` or `-`.
pub(crate) fn valid_name(field: &str, v: Option<&Value>) -> Result<String> {
    match v.and_then(Value::as_str) {
        Some(n)
            if !n.is_empty()
                && n.len() <= MAX_NAME
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Ok(n.to_string())
        }
        _ => Err(bad(&format!(
            "`{field}` must be 1 to {MAX_NAME} letters, digits, `_` or `-`"
        ))),
    }
}

pub(crate) fn optional_string(field: &str, v: Option<&Value>) -> Result<Option<String>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(&format!("`{field}` must be a string"))),
    }
}

/// A JSON Schema, where one is expected: an object (its content is the provider's to judge).
pub(crate) fn schema(field: &str, v: Option<&Value>) -> Result<Option<Value>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
        Some(_) => Err(bad(&format!("`{field}` must be a JSON Schema object"))),
    }
}

/// The list a request's `tools` holds, at most [`MAX_TOOLS`] long; empty when absent.
pub(crate) fn tool_list(v: Option<&Value>) -> Result<&[Value]> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) if a.len() > MAX_TOOLS => Err(bad(&format!(
            "`tools` may declare at most {MAX_TOOLS} functions"
        ))),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(bad("`tools` must be an array")),
    }
}

/// One function's declaration: `name`, `description`, `parameters` and `strict` read from `f`
/// (chat nests them in `function`, the Responses API does not: `at` names where they are).
/// A name `declared` already holds is refused.
pub(crate) fn function(at: &str, f: &Map<String, Value>, declared: &[Tool]) -> Result<Tool> {
    let name = valid_name(&format!("{at}.name"), f.get("name"))?;
    if declared.iter().any(|t| t.name == name) {
        return Err(bad(&format!("`{at}.name` {name:?} is declared twice")));
    }
    let strict = match f.get("strict") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(bad(&format!("`{at}.strict` must be true or false"))),
    };
    Ok(Tool {
        description: optional_string(&format!("{at}.description"), f.get("description"))?,
        parameters: schema(&format!("{at}.parameters"), f.get("parameters"))?,
        strict,
        name,
    })
}

pub(super) fn tools(v: Option<&Value>) -> Result<Vec<Tool>> {
    let list = tool_list(v)?;
    let mut out: Vec<Tool> = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(other) => {
                return Err(bad(&format!(
                    "`tools[{i}].type` {other:?} is not supported: only function tools are"
                )));
            }
            None => return Err(bad(&format!("`tools[{i}].type` must be \"function\""))),
        }
        let f = t
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| bad(&format!("`tools[{i}].function` must be an object")))?;
        out.push(function(&format!("tools[{i}].function"), f, &out)?);
    }
    Ok(out)
}

pub(super) fn tool_choice(v: Option<&Value>, tools: &[Tool]) -> Result<Option<ToolChoice>> {
    let choice = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => {
                return Err(bad(
                    "`tool_choice` must be auto, none, required or a function",
                ));
            }
        },
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
            ToolChoice::Function(valid_name(
                "tool_choice.function.name",
                o.get("function").and_then(|f| f.get("name")),
            )?)
        }
        Some(_) => {
            return Err(bad(
                "`tool_choice` must be auto, none, required or a function",
            ));
        }
    };
    choice_against(choice, tools).map(Some)
}

/// A tool choice checked against the tools declared: one that names a function must name a
/// declared one, and one that asks for a call needs a tool to call (both APIs' rule).
pub(crate) fn choice_against(choice: ToolChoice, tools: &[Tool]) -> Result<ToolChoice> {
    match &choice {
        ToolChoice::Function(name) if !tools.iter().any(|t| &t.name == name) => Err(bad(&format!(
            "`tool_choice` names {name:?}, which `tools` does not declare"
        ))),
        ToolChoice::Required | ToolChoice::Function(_) if tools.is_empty() => Err(bad(
            "`tool_choice` asks for a call but `tools` declares none",
        )),
        _ => Ok(choice),
    }
}

pub(super) fn response_format(v: Option<&Value>) -> Result<Option<ResponseFormat>> {
    let o = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(bad("`response_format` must be an object")),
    };
    Ok(Some(match o.get("type").and_then(Value::as_str) {
        Some("text") => ResponseFormat::Text,
        Some("json_object") => ResponseFormat::JsonObject,
        Some("json_schema") => {
            let s = o
                .get("json_schema")
                .and_then(Value::as_object)
                .ok_or_else(|| bad("`response_format.json_schema` must be an object"))?;
            ResponseFormat::JsonSchema {
                name: valid_name("response_format.json_schema.name", s.get("name"))?,
                description: optional_string(
                    "response_format.json_schema.description",
                    s.get("description"),
                )?,
                schema: schema("response_format.json_schema.schema", s.get("schema"))?,
                strict: match s.get("strict") {
                    None | Some(Value::Null) => None,
                    Some(Value::Bool(b)) => Some(*b),
                    Some(_) => {
                        return Err(bad(
                            "`response_format.json_schema.strict` must be true or false",
                        ));
                    }
                },
            }
        }
        _ => {
            return Err(bad(
                "`response_format.type` must be text, json_object or json_schema",
            ));
        }
    }))
}
