//! The most a chat request can use, which the cost guard reserves before anything is sent.
//!
//! Every byte the model reads counts as a token (no tokenizer produces more tokens than bytes
//! for the text providers take), with a fixed overhead per message, per tool call and for
//! declaring tools at all; every image counts its provider's stated worst case; the output is
//! the cap times the choices asked for.

use super::{ChatMessage, ChatRequest, ResponseFormat, Usage};
use crate::providers::{Provider, Route};

/// Tokens assumed per message on top of its bytes (role and framing).
const MESSAGE_OVERHEAD: u64 = 8;
/// Tokens assumed per function call or declared tool on top of its bytes.
const TOOL_OVERHEAD: u64 = 16;
/// The system prompt a provider adds when tools are declared (Anthropic documents up to 346
/// tokens for it; rounded up).
const TOOLS_PROMPT: u64 = 512;

/// The most tokens one image can be billed as, by provider and model, from the providers'
/// published rules at their largest input:
///
/// - Anthropic: an image is resized to at most ~1.15 megapixels, about 1,600 tokens.
/// - OpenAI `gpt-4o-mini`: 2,833 base + 5,667 per 512-px tile, at most 8 tiles at high
///   detail (a 768 × 2,048 image): 48,169.
/// - Other OpenAI models: at most 3,800 (gpt-4o's 85 + 170 × 8 = 1,445; gpt-4.1-mini's and
///   -nano's 1,536 patches × their multipliers, 2,488 and 3,779).
/// - A local model costs nothing, so its images bound nothing.
pub fn image_worst_tokens(route: &Route) -> u64 {
    match route.provider {
        Provider::Local => 0,
        Provider::Anthropic => 1_600,
        Provider::OpenAi if route.model.starts_with("gpt-4o-mini") => 48_169,
        Provider::OpenAi => 3_800,
    }
}

fn bytes(s: &str) -> u64 {
    u64::try_from(s.len()).unwrap_or(u64::MAX)
}

fn message_bound(m: &ChatMessage, image_tokens: u64) -> u64 {
    let calls = m.tool_calls.iter().fold(0u64, |sum, c| {
        sum.saturating_add(bytes(&c.id))
            .saturating_add(bytes(&c.name))
            .saturating_add(bytes(&c.arguments))
            .saturating_add(TOOL_OVERHEAD)
    });
    let images = (m.images().count() as u64).saturating_mul(image_tokens);
    bytes(&m.content)
        .saturating_add(MESSAGE_OVERHEAD)
        .saturating_add(calls)
        .saturating_add(images)
        .saturating_add(m.tool_call_id.as_deref().map_or(0, bytes))
}

impl ChatRequest {
    /// The worst case of this request on `route`: prompt tokens as above, output the cap
    /// (`max_tokens`, or `default_max` when the request set none) times `n`.
    pub fn usage_bound(&self, route: &Route, default_max: u64) -> Usage {
        let image_tokens = image_worst_tokens(route);
        let mut prompt = self.messages.iter().fold(0u64, |sum, m| {
            sum.saturating_add(message_bound(m, image_tokens))
        });
        if !self.tools.is_empty() {
            prompt = prompt.saturating_add(TOOLS_PROMPT);
        }
        for t in &self.tools {
            let schema = t.parameters.as_ref().map_or(0, |p| bytes(&p.to_string()));
            prompt = prompt
                .saturating_add(bytes(&t.name))
                .saturating_add(t.description.as_deref().map_or(0, bytes))
                .saturating_add(schema)
                .saturating_add(TOOL_OVERHEAD);
        }
        if let Some(ResponseFormat::JsonSchema {
            name,
            description,
            schema,
            ..
        }) = &self.response_format
        {
            prompt = prompt
                .saturating_add(bytes(name))
                .saturating_add(description.as_deref().map_or(0, bytes))
                .saturating_add(schema.as_ref().map_or(0, |s| bytes(&s.to_string())))
                .saturating_add(TOOLS_PROMPT);
        }
        let per_choice = self.max_tokens.unwrap_or(default_max);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: per_choice.saturating_mul(u64::from(self.n)),
        }
    }
}
