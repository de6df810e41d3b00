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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::providers::chat::{Image, ImageSource, Part, Tool, ToolCall};

    fn route(provider: Provider, model: &str) -> Route {
        Route {
            provider,
            model: model.into(),
        }
    }

    fn image() -> Part {
        Part::Image(Image {
            source: ImageSource::Inline {
                media_type: "image/png".into(),
                base64: "AAAA".into(),
            },
            detail: None,
        })
    }

    #[test]
    fn text_counts_every_byte_and_output_is_cap_times_choices() {
        let mut req = ChatRequest::new("gpt-4o", vec![ChatMessage::text("user", "hello")]);
        let r = route(Provider::OpenAi, "gpt-4o");
        assert_eq!(
            req.usage_bound(&r, 100),
            Usage {
                prompt_tokens: 5 + MESSAGE_OVERHEAD,
                completion_tokens: 100
            }
        );
        req.n = 3;
        req.max_tokens = Some(10);
        assert_eq!(req.usage_bound(&r, 100).completion_tokens, 30);
    }

    #[test]
    fn tools_calls_schemas_and_images_all_count() {
        let base = ChatRequest::new("gpt-4o-mini", vec![ChatMessage::text("user", "hi")]);
        let r = route(Provider::OpenAi, "gpt-4o-mini");
        let plain = base.usage_bound(&r, 1).prompt_tokens;

        let mut with_tool = base.clone();
        with_tool.tools.push(Tool {
            name: "get_weather".into(),
            description: Some("the weather".into()),
            parameters: Some(json!({"type": "object"})),
            strict: None,
        });
        assert!(with_tool.usage_bound(&r, 1).prompt_tokens > plain + TOOLS_PROMPT);

        let mut with_call = base.clone();
        let mut turn = ChatMessage::text("assistant", "");
        turn.tool_calls.push(ToolCall {
            id: "call_1".into(),
            name: "f".into(),
            arguments: "x".repeat(1000),
        });
        with_call.messages.push(turn);
        assert!(with_call.usage_bound(&r, 1).prompt_tokens > plain + 1000);

        let mut with_image = base.clone();
        with_image.messages[0].parts = vec![Part::Text("hi".into()), image(), image()];
        assert_eq!(
            with_image.usage_bound(&r, 1).prompt_tokens,
            plain + 2 * 48_169
        );
        let claude = route(Provider::Anthropic, "claude-3-5-haiku");
        assert_eq!(
            with_image.usage_bound(&claude, 1).prompt_tokens,
            plain + 2 * 1_600
        );
    }

    #[test]
    fn a_huge_request_saturates_instead_of_wrapping() {
        let mut req = ChatRequest::new("gpt-4o", vec![ChatMessage::text("user", "x")]);
        req.max_tokens = Some(u64::MAX);
        req.n = 8;
        assert_eq!(
            req.usage_bound(&route(Provider::OpenAi, "gpt-4o"), 1)
                .completion_tokens,
            u64::MAX
        );
    }
}
