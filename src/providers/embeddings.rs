//! OpenAI's embeddings API (`POST /v1/embeddings`): the request read field by field, the body
//! sent upstream, and the answer checked before it is relayed.
//!
//! Embeddings are what an assistant's memory is made of, so the input is the person's own
//! text: it is held only for the call, never written anywhere, and nothing here derives
//! `Debug` over it. A field Maestra does not understand is refused by name, as for chat, so a
//! client never gets vectors computed differently from what it asked for.
//!
//! Routing says what the model name says: `text-embedding-*` is OpenAI's (a cloud call, under
//! the guard), a configured local model or `local/NAME` is the local server's. Anthropic has
//! no embeddings endpoint. There is no cloud fallback: vectors from another model live in
//! another space, and mixing them would silently spoil the client's index.

use std::fmt;

use base64::Engine as _;
use secrecy::ExposeSecret;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use super::{OPENAI_KEY, Provider, Providers, Route, Usage, check_status};
use crate::error::{Error, Result};
use crate::services::redact::Redactor;

/// Most strings one request may embed (OpenAI's own limit).
pub const MAX_INPUTS: usize = 2048;
/// Most input bytes one request may carry, all strings together.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// Largest `dimensions` accepted (above every published embeddings model).
pub const MAX_DIMENSIONS: u64 = 4096;
/// Tokens the reservation adds to each string beyond one a byte: room for the markers a
/// tokenizer puts around a text, so the bound stays a bound.
const TOKENS_PER_INPUT: u64 = 8;
/// Largest embeddings answer read. Far above a chat answer's: 2048 vectors of 1536 floats
/// written as JSON are tens of megabytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

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
    fn as_str(self) -> &'static str {
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
    /// The acting user the client named; never sent upstream.
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
            Some(Value::String(u)) => {
                crate::conversations::model::validate_id("user", u)?;
                Some(u.clone())
            }
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
    fn wire<'a>(&'a self, model: &'a str) -> Wire<'a> {
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
struct Wire<'a> {
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

/// One vector as the upstream wrote it: numbers, or a base64 string of `float32`s. Relayed as
/// received (numbers are read as `f64`, which holds every `float32` and every shortest decimal
/// of one exactly, and written back as the same value).
#[derive(Debug, Clone, PartialEq)]
pub enum Vector {
    Floats(Vec<f64>),
    Base64(String),
}

impl Serialize for Vector {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Vector::Floats(v) => v.serialize(s),
            Vector::Base64(b) => s.serialize_str(b),
        }
    }
}

/// Read straight from the answer's bytes, without a `Value` per number (a large answer has
/// millions of them).
impl<'de> Deserialize<'de> for Vector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Vector, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vector;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of numbers or a base64 string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Vector, E> {
                Ok(Vector::Base64(s.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Vector, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(x) = seq.next_element::<f64>()? {
                    out.push(x);
                }
                Ok(Vector::Floats(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Vector {
    /// Whether it is a vector at all: non-empty, and a base64 string that decodes to whole
    /// `float32`s.
    fn is_sound(&self) -> bool {
        match self {
            Vector::Floats(v) => !v.is_empty(),
            Vector::Base64(s) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .is_ok_and(|b| !b.is_empty() && b.len() % 4 == 0),
        }
    }
}

/// The upstream's answer, checked: one vector per input, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vector>,
    /// `usage.prompt_tokens` when the upstream reported a count above zero.
    pub prompt_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Answer {
    data: Vec<Item>,
    #[serde(default)]
    usage: Value,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    index: Option<u64>,
    embedding: Vector,
}

impl Embeddings {
    /// Parses an OpenAI-shaped answer for `inputs` strings. Anything else (not JSON, a vector
    /// that is not numbers or base64, too few or too many, an index twice or out of range) is
    /// an upstream error (502): relaying it would hand the client garbage as its memory.
    pub fn parse(p: Provider, body: &[u8], inputs: usize) -> Result<Embeddings> {
        let wrong = |what: &str| Error::Upstream(format!("{} sent {what}", p.service()));
        let answer: Answer = serde_json::from_slice(body)
            .map_err(|_| wrong("an embeddings answer that is not the documented shape"))?;
        if answer.data.len() != inputs {
            return Err(wrong(&format!(
                "{} vectors for {inputs} inputs",
                answer.data.len()
            )));
        }
        let mut slots: Vec<Option<Vector>> = vec![None; inputs];
        for (pos, item) in answer.data.into_iter().enumerate() {
            if !item.embedding.is_sound() {
                return Err(wrong(
                    "a vector that is neither numbers nor base64 float32s",
                ));
            }
            let i = item.index.map_or(Some(pos), |i| usize::try_from(i).ok());
            match i.and_then(|i| slots.get_mut(i)) {
                Some(slot @ None) => *slot = Some(item.embedding),
                _ => return Err(wrong("vectors whose indexes do not match the inputs")),
            }
        }
        let prompt_tokens = answer
            .usage
            .get("prompt_tokens")
            .and_then(Value::as_u64)
            .filter(|n| *n > 0);
        Ok(Embeddings {
            // Every slot was filled: as many items as inputs, each index used once.
            vectors: slots.into_iter().flatten().collect(),
            prompt_tokens,
        })
    }

    /// What the call used: the upstream's own count, or the input counted.
    pub fn usage(&self, req: &EmbeddingsRequest) -> Usage {
        match self.prompt_tokens {
            Some(n) => Usage {
                prompt_tokens: n,
                completion_tokens: 0,
            },
            None => req.counted_usage(),
        }
    }
}

fn no_anthropic(model: &str) -> Error {
    bad(&format!(
        "`{model}` is an Anthropic model, and Anthropic has no embeddings API; use a local \
         embeddings model or OpenAI's text-embedding-3-small"
    ))
}

impl Providers {
    /// Routes an embeddings model by name: `local/NAME` and the configured local models to the
    /// local server, `text-embedding-*` to OpenAI; `claude-*` is refused (400), anything else
    /// is an unknown model (404).
    pub fn route_embeddings(&self, model: &str) -> Result<Route> {
        let route = |provider| {
            Ok(Route {
                provider,
                model: model.to_string(),
            })
        };
        if let Some(name) = model.strip_prefix("local/") {
            return Ok(Route {
                provider: Provider::Local,
                model: name.to_string(),
            });
        }
        if self.local_models.iter().any(|m| m == model) {
            route(Provider::Local)
        } else if model.starts_with("text-embedding-") {
            route(Provider::OpenAi)
        } else if model.starts_with("claude-") {
            Err(no_anthropic(model))
        } else {
            Err(Error::UnknownModel(model.to_string()))
        }
    }

    /// One embeddings call through egress, with the upstream timeout over the whole answer.
    /// Errors are scrubbed of the key that was sent, and an answer that quotes it is refused.
    pub async fn embed(&self, route: &Route, req: &EmbeddingsRequest) -> Result<Embeddings> {
        let service = route.provider.service();
        self.egress.check_service(service)?;
        let url = match route.provider {
            Provider::Local => &self.local_embeddings,
            Provider::OpenAi => &self.openai_embeddings,
            Provider::Anthropic => return Err(no_anthropic(&route.model)),
        };
        let url = url
            .clone()
            .ok_or_else(|| Error::Config(format!("the {service} base URL is not a URL")))?;
        let builder = self
            .egress
            .request(reqwest::Method::POST, url)
            .json(&req.wire(&route.model))
            .timeout(self.timeout);
        // Credentials are injected here, at egress, straight from the vault.
        let (builder, key) = match route.provider {
            Provider::OpenAi => {
                let key = self.key(OPENAI_KEY).await?;
                (builder.bearer_auth(key.expose_secret()), Some(key))
            }
            _ => (builder, None),
        };
        let redactor = Redactor::new(key.as_ref());
        let answer = async {
            let resp = self.egress.send(service, builder).await?;
            let resp = check_status(route.provider, resp, &redactor).await?;
            let body = read_answer(route.provider, resp).await?;
            let e = Embeddings::parse(route.provider, &body, req.inputs.len())?;
            let quoted = e.vectors.iter().any(|v| match v {
                Vector::Base64(s) => redactor.contains(s.as_bytes()),
                Vector::Floats(_) => false,
            });
            if quoted {
                return Err(Error::Upstream(format!(
                    "{service} sent the API key back in place of a vector"
                )));
            }
            Ok(e)
        };
        answer
            .await
            .map_err(|e| self.local_down(route, redactor.scrub_error(e)))
    }
}

/// The answer's body, up to [`MAX_ANSWER_BYTES`].
async fn read_answer(p: Provider, mut resp: reqwest::Response) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(Error::Upstream(format!(
                        "{} sent an embeddings answer over {MAX_ANSWER_BYTES} bytes; send \
                         fewer inputs per request",
                        p.service()
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => return Err(super::timeout(p)),
            Err(_) => {
                return Err(Error::Upstream(format!(
                    "{} closed the connection mid-answer",
                    p.service()
                )));
            }
        }
    }
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
    fn sizes_past_the_limits_are_refused() {
        let many = vec!["x"; MAX_INPUTS + 1];
        assert_eq!(refusal(json!({"model": "m", "input": many})).0, 400);
        let big = "x".repeat(MAX_INPUT_BYTES + 1);
        assert_eq!(refusal(json!({"model": "m", "input": big})).0, 413);
        let most = vec!["x"; MAX_INPUTS];
        assert!(read(json!({"model": "m", "input": most})).is_ok());
    }

    fn parse(answer: Value, inputs: usize) -> Result<Embeddings> {
        Embeddings::parse(Provider::Local, answer.to_string().as_bytes(), inputs)
    }

    #[test]
    fn answers_are_put_in_input_order_and_relayed_as_received() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(1.5f32.to_le_bytes());
        let e = parse(
            json!({"object": "list", "data": [
                {"object": "embedding", "index": 1, "embedding": b64},
                {"object": "embedding", "index": 0, "embedding": [0.1, -2, 3e-5]}],
                "usage": {"prompt_tokens": 9, "total_tokens": 9}}),
            2,
        )
        .unwrap();
        assert_eq!(
            e.vectors,
            vec![
                Vector::Floats(vec![0.1, -2.0, 3e-5]),
                Vector::Base64(b64.clone())
            ]
        );
        assert_eq!(e.prompt_tokens, Some(9));
        assert_eq!(
            serde_json::to_value(&e.vectors).unwrap(),
            json!([[0.1, -2.0, 3e-5], b64])
        );
        // No usage, or zero: counted from the input instead.
        let e = parse(
            json!({"data": [{"embedding": [1.0]}], "usage": {"prompt_tokens": 0}}),
            1,
        );
        assert_eq!(e.unwrap().prompt_tokens, None);
    }

    #[test]
    fn garbage_is_an_upstream_error() {
        for answer in [
            json!({"data": [{"embedding": ["a", "b"]}]}),
            json!({"data": [{"embedding": "not base64!"}]}),
            json!({"data": [{"embedding": "AAA="}]}),
            json!({"data": [{"embedding": []}]}),
            json!({"data": [{"embedding": {"x": 1}}]}),
            json!({"data": [{"embedding": null}]}),
            json!({"data": [{"embedding": [1.0]}, {"embedding": [1.0]}]}),
            json!({"data": [{"index": 3, "embedding": [1.0]}]}),
            json!({"data": []}),
            json!({"vectors": [[1.0]]}),
            json!("the model crashed"),
        ] {
            let e = parse(answer.clone(), 1).unwrap_err();
            assert_eq!((e.status(), e.code()), (502, "upstream_error"), "{answer}");
        }
        let twice =
            json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}]});
        assert_eq!(parse(twice, 2).unwrap_err().status(), 502);
        let e = Embeddings::parse(Provider::OpenAi, b"<html>", 1).unwrap_err();
        assert!(e.to_string().contains("openai"), "{e}");
    }
}
