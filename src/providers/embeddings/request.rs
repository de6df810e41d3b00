//! An embeddings request read field by field from the client's OpenAI-format body, its
//! bound for the cost guard, and the body sent upstream.
//!
//! The input is the person's own text: nothing here derives `Debug` over it. A field Maestra
//! does not understand is refused by name, as for chat, so a client never gets vectors
//! computed differently from what it asked for.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::providers::Usage;

/// Most strings one request may embed (OpenAI's own limit).
pub const MAX_INPUTS: usize = 2048;
/// Most input bytes one request may carry, all strings together.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// Largest `dimensions` accepted (above every published embeddings model).
pub const MAX_DIMENSIONS: u64 = 4096;
/// Tokens the reservation adds to each string beyond one a byte: room for the markers a
/// tokenizer puts around a text, so the bound stays a bound.
const TOKENS_PER_INPUT: u64 = 8;
/// Every field an embeddings request may carry. Anything else is refused by name.
pub const KNOWN_FIELDS: &[&str] = &["model", "input", "encoding_format", "dimensions", "user"];

/// How the vectors come back: JSON numbers, or base64 of little-endian `float32` (what the
/// official SDKs ask for by default, and decode themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Float,
    Base64,
}

impl Encoding {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Encoding::Float => "float",
            Encoding::Base64 => "base64",
        }
    }
}

/// One embeddings request, read and checked.
#[derive(Clone)]
pub struct EmbeddingsRequest {
    pub model: String,
    /// The texts, in order; each non-empty.
    pub inputs: Vec<String>,
    /// `input` was one string rather than an array: it goes upstream as the client wrote it.
    single: bool,
    /// Passed on when the client named one; the upstream's default (`float`) otherwise.
    pub encoding: Option<Encoding>,
    pub dimensions: Option<u32>,
    /// The acting user the client named, as written: the gateway checks it (it is the
    /// gateway's notion, not the provider's) and it is never sent upstream.
    pub user: Option<String>,
}

/// Counts only: the input is the person's text and must not reach a log through `{:?}`.
impl fmt::Debug for EmbeddingsRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddingsRequest")
            .field("model", &self.model)
            .field("inputs", &self.inputs.len())
            .field("bytes", &self.bytes())
            .field("encoding", &self.encoding)
            .field("dimensions", &self.dimensions)
            .finish_non_exhaustive()
    }
}

fn bad(msg: &str) -> Error {
    Error::BadRequest(msg.to_string())
}

impl EmbeddingsRequest {
    /// Reads an OpenAI-format embeddings body, naming the first field that is wrong or unknown.
    pub fn from_openai(body: &Map<String, Value>) -> Result<EmbeddingsRequest> {
        if let Some(key) = body.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
            return Err(bad(&format!(
                "`{key}` is not an embeddings field Maestra understands; nothing was sent"
            )));
        }
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.trim().is_empty() => m.trim().to_string(),
            Some(_) => return Err(bad("`model` must be a non-empty string")),
            None => return Err(bad("`model` is required")),
        };
        let (inputs, single) = inputs(body.get("input"))?;
        let encoding = match body.get("encoding_format") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "float" => Some(Encoding::Float),
            Some(Value::String(s)) if s == "base64" => Some(Encoding::Base64),
            Some(_) => return Err(bad("`encoding_format` must be \"float\" or \"base64\"")),
        };
        let dimensions = match body.get("dimensions") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|d| (1..=MAX_DIMENSIONS).contains(d))
                    .and_then(|d| u32::try_from(d).ok())
                    .ok_or_else(|| {
                        bad(&format!(
                            "`dimensions` must be an integer from 1 to {MAX_DIMENSIONS}"
                        ))
                    })?,
            ),
        };
        let user = match body.get("user") {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) => Some(u.clone()),
            Some(_) => return Err(bad("`user` must be a string")),
        };
        Ok(EmbeddingsRequest {
            model,
            inputs,
            single,
            encoding,
            dimensions,
            user,
        })
    }

    /// The input's size in bytes, all strings together.
    pub fn bytes(&self) -> usize {
        self.inputs.iter().map(String::len).sum()
    }

    /// The most the call can use: no tokenizer makes more tokens than bytes, plus a margin per
    /// string. Embeddings have no output.
    pub fn usage_bound(&self) -> Usage {
        Usage {
            prompt_tokens: self.bytes() as u64 + TOKENS_PER_INPUT * self.inputs.len() as u64,
            completion_tokens: 0,
        }
    }

    /// Usage counted from the input when the upstream reports none: about four bytes a token,
    /// rounded up, so a missing report is never charged as free.
    pub fn counted_usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.bytes().div_ceil(4) as u64,
            completion_tokens: 0,
        }
    }

    /// The body sent upstream: the model as routed, the input as the client wrote it, and the
    /// options it named. Never the acting user: that is Maestra's to know, not the provider's.
    pub(super) fn wire<'a>(&'a self, model: &'a str) -> Wire<'a> {
        Wire {
            model,
            input: if self.single {
                WireInput::One(&self.inputs[0])
            } else {
                WireInput::Many(&self.inputs)
            },
            encoding_format: self.encoding.map(Encoding::as_str),
            dimensions: self.dimensions,
        }
    }
}

/// `input`: a non-empty string, or 1 to [`MAX_INPUTS`] of them, [`MAX_INPUT_BYTES`] in all.
/// Token-id arrays are refused by name: their cost depends on a tokenizer Maestra cannot see,
/// and a local server would read the numbers as something else.
fn inputs(v: Option<&Value>) -> Result<(Vec<String>, bool)> {
    const TOKENS: &str = "`input` as token ids (arrays of integers) is not supported through \
                          Maestra; send the text itself";
    let (inputs, single) = match v {
        None | Some(Value::Null) => return Err(bad("`input` is required")),
        Some(Value::String(s)) => (vec![s.clone()], true),
        Some(Value::Array(a)) if a.is_empty() => return Err(bad("`input` must not be empty")),
        Some(Value::Array(a)) => {
            // A 400 rather than a 413: the count is part of the documented request (OpenAI's
            // own limit, `maxItems` in the schema), not a size of Maestra's.
            if a.len() > MAX_INPUTS {
                return Err(bad(&format!(
                    "`input` may hold at most {MAX_INPUTS} strings per embeddings request"
                )));
            }
            let mut out = Vec::with_capacity(a.len());
            for (i, item) in a.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    Value::Number(_) | Value::Array(_) => return Err(bad(TOKENS)),
                    _ => return Err(bad(&format!("`input[{i}]` must be a string"))),
                }
            }
            (out, false)
        }
        Some(_) => {
            return Err(bad("`input` must be a string or an array of strings"));
        }
    };
    if let Some(i) = inputs.iter().position(String::is_empty) {
        return Err(bad(&if single {
            "`input` must not be an empty string".to_string()
        } else {
            format!("`input[{i}]` must not be an empty string")
        }));
    }
    let bytes: usize = inputs.iter().map(String::len).sum();
    if bytes > MAX_INPUT_BYTES {
        return Err(Error::TooLarge(format!(
            "the input is {bytes} bytes; at most {MAX_INPUT_BYTES} per embeddings request"
        )));
    }
    Ok((inputs, single))
}

#[derive(Serialize)]
pub(super) struct Wire<'a> {
    model: &'a str,
    input: WireInput<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding_format: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum WireInput<'a> {
    One(&'a str),
    Many(&'a [String]),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(v: Value) -> Result<EmbeddingsRequest> {
        EmbeddingsRequest::from_openai(v.as_object().unwrap())
    }

    fn refusal(v: Value) -> (u16, String) {
        let e = read(v).unwrap_err();
        (e.status(), e.to_string())
    }

    #[test]
    fn a_request_is_read_and_sent_as_written_without_the_user() {
        let r = read(
            json!({"model": "text-embedding-3-small", "input": ["a b", "c"],
            "encoding_format": "base64", "dimensions": 256, "user": "jh"}),
        )
        .unwrap();
        assert_eq!((r.inputs.len(), r.bytes()), (2, 4));
        assert_eq!(r.user.as_deref(), Some("jh"));
        let wire = serde_json::to_value(r.wire("text-embedding-3-small")).unwrap();
        assert_eq!(
            wire,
            json!({"model": "text-embedding-3-small", "input": ["a b", "c"],
                   "encoding_format": "base64", "dimensions": 256})
        );
        let one = read(json!({"model": "m", "input": "just one"})).unwrap();
        assert_eq!(
            serde_json::to_value(one.wire("m")).unwrap(),
            json!({"model": "m", "input": "just one"})
        );
        // Every byte a token, plus 8 a string; counted at four bytes a token, rounded up.
        assert_eq!(r.usage_bound().prompt_tokens, 4 + 16);
        assert_eq!(one.counted_usage().prompt_tokens, 2);
        assert!(!format!("{one:?}").contains("just one"));
    }

    #[test]
    fn every_wrong_field_is_refused_by_name() {
        for (body, words) in [
            (
                json!({"model": "m", "input": "x", "truncate": true}),
                "`truncate`",
            ),
            (json!({"input": "x"}), "`model` is required"),
            (json!({"model": " ", "input": "x"}), "`model`"),
            (json!({"model": "m"}), "`input` is required"),
            (json!({"model": "m", "input": []}), "must not be empty"),
            (json!({"model": "m", "input": ""}), "empty string"),
            (json!({"model": "m", "input": ["a", ""]}), "`input[1]`"),
            (json!({"model": "m", "input": [1, 2, 3]}), "token ids"),
            (json!({"model": "m", "input": [[1, 2]]}), "token ids"),
            (
                json!({"model": "m", "input": ["a", {}]}),
                "`input[1]` must be a string",
            ),
            (json!({"model": "m", "input": 5}), "`input` must be"),
            (
                json!({"model": "m", "input": "x", "encoding_format": "int8"}),
                "`encoding_format`",
            ),
            (
                json!({"model": "m", "input": "x", "dimensions": 0}),
                "`dimensions`",
            ),
            (
                json!({"model": "m", "input": "x", "dimensions": 4097}),
                "`dimensions`",
            ),
            (
                json!({"model": "m", "input": "x", "dimensions": 1.5}),
                "`dimensions`",
            ),
            (json!({"model": "m", "input": "x", "user": 7}), "`user`"),
        ] {
            let (status, msg) = refusal(body.clone());
            assert_eq!(status, 400, "{body}: {msg}");
            assert!(msg.contains(words), "{body}: {msg}");
        }
    }

    #[test]
    fn the_acting_user_is_carried_for_the_gateway_to_judge() {
        // Whether a user id is well formed is the gateway's rule (the chat handler's too),
        // not the provider layer's: the request carries it as written.
        let r = read(json!({"model": "m", "input": "x", "user": "not an id!"})).unwrap();
        assert_eq!(r.user.as_deref(), Some("not an id!"));
    }

    #[test]
    fn sizes_past_the_limits_are_refused() {
        let many = vec!["x"; MAX_INPUTS + 1];
        assert_eq!(refusal(json!({"model": "m", "input": many})).0, 400);
        let big = "x".repeat(MAX_INPUT_BYTES + 1);
        assert_eq!(refusal(json!({"model": "m", "input": big})).0, 413);
        let most = vec!["x"; MAX_INPUTS];
        assert!(read(json!({"model": "m", "input": most})).is_ok());
    }
}
