//! The provider-neutral chat shapes: what the gateway hands a provider and gets back.
//!
//! Requests arrive in OpenAI's chat format (the lingua franca of local servers too) and are
//! read into these types field by field (`read`): every documented field is understood and
//! carried, or refused by name, so nothing a client asked for is dropped without a word and no
//! provider switch slips past the cost guard unpriced. Each wire module translates from these
//! types, so the gateway never sees a provider's dialect.
//!
//! - `read`  — the OpenAI request body, checked and read
//! - `bound` — the most a request can use, for the reservation

mod bound;
pub(crate) mod read;

use serde_json::{Map, Value};

pub use bound::image_worst_tokens;
pub use read::{KNOWN_FIELDS, MAX_CHOICES};

/// Longest single message accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Most messages accepted in one request.
pub const MAX_MESSAGES: usize = 1_000;
/// The largest `max_tokens` accepted: above any model's output window, and small enough that
/// the worst case of a request is plain integer arithmetic. A larger value is a 400 naming the
/// field, not a cap applied silently.
pub const MAX_TOKENS: u64 = 1_000_000;
/// Tokens an upstream may report for one call, at most. A larger (or negative, fractional,
/// non-numeric) count is not a usage report anyone can bill from: the call is charged its
/// reservation instead (see [`Usage::reported_count`]).
pub const MAX_REPORTED_TOKENS: u64 = 100_000_000;

/// Most called functions one audit entry names.
pub const MAX_AUDITED_CALLS: usize = 128;
/// What the audit entry names a call to a function the request did not declare.
pub const UNDECLARED: &str = "(undeclared)";

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text: the string content, or the text parts joined with newlines. What pricing,
    /// counting and the conversation store read.
    pub content: String,
    /// The content parts in order when the client sent an array (text and images); empty when
    /// it sent a plain string. A wire module sends these when present, `content` otherwise.
    pub parts: Vec<Part>,
    /// The functions an assistant turn asked to call (history sent back by the client).
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` message: the call it answers.
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A plain text message.
    pub fn text(role: &str, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.to_string(),
            content: content.into(),
            parts: Vec::new(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    pub fn images(&self) -> impl Iterator<Item = &Image> {
        self.parts.iter().filter_map(|p| match p {
            Part::Image(i) => Some(i),
            Part::Text(_) => None,
        })
    }
}

/// One content part.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Image(Image),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub source: ImageSource,
    /// OpenAI's `detail` (`low`, `high`, `auto`), passed where the provider has it.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// A `data:` URL's content: the media type and the base64 text as sent.
    Inline { media_type: String, base64: String },
    /// An `http(s)` URL the provider would fetch itself (see `read` for where that is allowed).
    Remote(url::Url),
}

/// A function the model asked to call; `arguments` is the JSON text the model wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// A JSON Schema object.
    pub parameters: Option<Value>,
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    Function(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        description: Option<String>,
        schema: Option<Value>,
        strict: Option<bool>,
    },
}

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// The output cap, per choice.
    pub max_tokens: Option<u64>,
    /// Sampling options passed on as they are, checked against the documented types and
    /// ranges: `temperature`, `top_p`, `stop`, `presence_penalty`, `frequency_penalty`, `seed`,
    /// `logit_bias`, `reasoning_effort`.
    pub options: Map<String, Value>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<ResponseFormat>,
    /// Log probabilities of the output tokens, and how many alternatives per token.
    pub logprobs: bool,
    pub top_logprobs: Option<u8>,
    /// Choices asked for (`n`), 1 unless the client asked for more.
    pub n: u32,
}

impl ChatRequest {
    /// A request with only messages: what the core and advisor routes send.
    pub fn new(model: impl Into<String>, messages: Vec<ChatMessage>) -> ChatRequest {
        ChatRequest {
            model: model.into(),
            messages,
            max_tokens: None,
            options: Map::new(),
            tools: Vec::new(),
            tool_choice: None,
            parallel_tool_calls: None,
            response_format: None,
            logprobs: false,
            top_logprobs: None,
            n: 1,
        }
    }

    /// The functions an answer asked to call, as the audit entry names them: a name the
    /// request declared in `tools`, anything else (an upstream's invention, which may be any
    /// text) as [`UNDECLARED`]; at most [`MAX_AUDITED_CALLS`] of them.
    pub fn audited_calls(&self, names: impl IntoIterator<Item = String>) -> Vec<String> {
        names
            .into_iter()
            .take(MAX_AUDITED_CALLS)
            .map(|n| self.audited_call(&n))
            .collect()
    }

    /// One called function's name as the audit entry names it (see [`Self::audited_calls`]).
    pub fn audited_call(&self, name: &str) -> String {
        match self.tools.iter().find(|t| t.name == name) {
            Some(t) => t.name.clone(),
            None => UNDECLARED.to_string(),
        }
    }

    /// The hosts of the `http(s)` images in the request, which the provider will fetch.
    pub fn remote_image_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .messages
            .iter()
            .flat_map(ChatMessage::images)
            .filter_map(|i| match &i.source {
                ImageSource::Remote(u) => u.host_str().map(str::to_string),
                ImageSource::Inline { .. } => None,
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    /// A count from an upstream's usage report, or `None` when the field is present but is
    /// not a whole number in `0..=MAX_REPORTED_TOKENS` (a missing field counts as 0).
    pub fn reported_count(v: Option<&Value>) -> Option<u64> {
        match v {
            None | Some(Value::Null) => Some(0),
            Some(v) => v.as_u64().filter(|n| *n <= MAX_REPORTED_TOKENS),
        }
    }
}

/// One of a whole answer's choices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Choice {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    /// `stop`, `length`, `tool_calls`, `content_filter`.
    pub finish_reason: String,
    /// The provider's `logprobs` object, as it sent it (asked for with `logprobs`).
    pub logprobs: Option<Value>,
    /// A model's refusal text (structured output), where the provider gives one.
    pub refusal: Option<String>,
}

/// A whole (non-streamed) answer: one choice, or `n`.
#[derive(Debug, Clone)]
pub struct Completion {
    pub choices: Vec<Choice>,
    pub usage: Usage,
}

impl Completion {
    /// The first choice's text: the reply of the core and advisor routes.
    pub fn text(&self) -> &str {
        self.choices.first().map_or("", |c| c.content.as_str())
    }

    /// Bytes of output across choices (text and call arguments), for a count when the
    /// provider reported none.
    pub fn output_bytes(&self) -> usize {
        self.choices
            .iter()
            .map(|c| {
                c.content.len()
                    + c.tool_calls
                        .iter()
                        .map(|t| t.name.len() + t.arguments.len())
                        .sum::<usize>()
            })
            .sum()
    }

    /// The functions the model asked to call, by name, in order, as the upstream wrote them
    /// (the audit entry takes them through [`ChatRequest::audited_calls`]).
    pub fn called_functions(&self) -> Vec<String> {
        self.choices
            .iter()
            .flat_map(|c| c.tool_calls.iter().map(|t| t.name.clone()))
            .collect()
    }
}

/// One piece of a streamed answer. `choice` is the choice's index (0 unless `n` > 1).
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    Text {
        choice: u32,
        text: String,
    },
    /// A fragment of a function call, as OpenAI streams them: the first fragment of call
    /// `index` carries its `id` and `name`, later ones only more of `arguments`.
    ToolCall {
        choice: u32,
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    /// A piece of the model's refusal (structured output), where the provider streams one.
    Refusal {
        choice: u32,
        text: String,
    },
    /// The provider's `logprobs` for this piece, as it sent it.
    Logprobs {
        choice: u32,
        logprobs: Value,
    },
    Finish {
        choice: u32,
        reason: String,
    },
    Usage(Usage),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_names_only_declared_functions_and_a_bounded_number() {
        let mut req = ChatRequest::new("m", vec![ChatMessage::text("user", "hi")]);
        req.tools = vec![Tool {
            name: "get_weather".into(),
            description: None,
            parameters: None,
            strict: None,
        }];
        let called = ["get_weather", "rm -rf /\n<script>", "json_answer"].map(String::from);
        assert_eq!(
            req.audited_calls(called),
            ["get_weather", UNDECLARED, UNDECLARED]
        );
        let many = std::iter::repeat_n("get_weather".to_string(), MAX_AUDITED_CALLS + 5);
        assert_eq!(req.audited_calls(many).len(), MAX_AUDITED_CALLS);
    }
}
