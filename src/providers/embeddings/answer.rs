//! An embeddings answer checked before it is relayed: one sound vector per input, in input
//! order, and the usage it reports read as chat's is (a count that is not a whole number in
//! range stands in as [`MAX_REPORTED_TOKENS`], so the ledger charges the whole reservation).
//!
//! The vectors are a faithful image of the person's text: relayed as received, never logged.

use std::fmt;

use base64::Engine as _;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::EmbeddingsRequest;
use crate::error::{Error, Result};
use crate::providers::chat::MAX_REPORTED_TOKENS;
use crate::providers::{Provider, Usage};
use crate::services::redact::Redactor;

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
            Vector::Base64(s) => decode(s).is_some_and(|b| !b.is_empty() && b.len() % 4 == 0),
        }
    }
}

fn decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// The upstream's answer, checked: one vector per input, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vector>,
    /// `usage.prompt_tokens` when the upstream reported a count above zero (an invalid count
    /// is [`MAX_REPORTED_TOKENS`]).
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
            // The parser's error is dropped on purpose: a wrong type is quoted with its value,
            // and what a provider puts in its answer is not for the log.
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
        let prompt_tokens = match Usage::reported_count(answer.usage.get("prompt_tokens")) {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(MAX_REPORTED_TOKENS),
        };
        Ok(Embeddings {
            // Every slot was filled: as many items as inputs, each index used once.
            vectors: slots.into_iter().flatten().collect(),
            prompt_tokens,
        })
    }

    /// Whether a base64 vector decodes to bytes that hold a secret the call sent (the API
    /// key): an upstream that echoes its credential must not have it relayed as a vector.
    /// The key is looked for in the decoded bytes, where a key sent back in a vector's place
    /// would be; the base64 text itself cannot hold one (keys contain `-`, not in its
    /// alphabet).
    pub fn quotes(&self, secrets: &Redactor) -> bool {
        self.vectors.iter().any(|v| match v {
            Vector::Base64(s) => decode(s).is_some_and(|b| secrets.contains(&b)),
            Vector::Floats(_) => false,
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
    fn an_invalid_usage_count_stands_in_as_the_most_reported() {
        for bad in [
            json!(-3),
            json!(1.5),
            json!("9"),
            json!(MAX_REPORTED_TOKENS + 1),
        ] {
            let e = parse(
                json!({"data": [{"embedding": [1.0]}], "usage": {"prompt_tokens": bad}}),
                1,
            )
            .unwrap();
            assert_eq!(e.prompt_tokens, Some(MAX_REPORTED_TOKENS), "{bad}");
        }
    }

    #[test]
    fn a_key_sent_back_as_a_vector_is_seen() {
        let key = secrecy::SecretString::from("sk-proj-abc_DEF-123456789012");
        let redactor = Redactor::new([&key]);
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        // The key's bytes, padded to whole float32s, as a base64 vector.
        let mut bytes = b"\0\0\0\0".to_vec();
        bytes.extend_from_slice(b"sk-proj-abc_DEF-123456789012");
        let echoed = parse(json!({"data": [{"embedding": b64(&bytes)}]}), 1).unwrap();
        assert!(echoed.quotes(&redactor));
        let honest = parse(
            json!({"data": [{"embedding": b64(&1.5f32.to_le_bytes())}, {"embedding": [0.5]}]}),
            2,
        )
        .unwrap();
        assert!(!honest.quotes(&redactor));
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
