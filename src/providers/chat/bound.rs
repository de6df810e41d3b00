//! The most a chat request can use, which the cost guard reserves before anything is sent.
//!
//! Every byte the model reads counts as a token (no tokenizer produces more tokens than bytes
//! for the text providers take), with a fixed overhead per message, per tool call and for
//! declaring tools at all; every image counts its provider's stated worst case; the output is
//! the cap times the choices asked for.
//!
//! The tools counted are the ones the provider request will carry, not only the client's:
//! Anthropic's request declares a forced tool for structured output and declares by name the
//! functions a history calls, and its tool-use system prompt is billed whenever any tool is
//! declared.

use super::{ChatMessage, ChatRequest, ResponseFormat, Usage};
use crate::providers::{Provider, Route};

/// Tokens assumed per message on top of its bytes (role and framing).
const MESSAGE_OVERHEAD: u64 = 8;
/// Tokens assumed per function call or declared tool on top of its bytes.
const TOOL_OVERHEAD: u64 = 16;
/// The system prompt a provider adds when tools are declared (Anthropic documents up to 346
/// tokens for it; rounded up).
const TOOLS_PROMPT: u64 = 512;
/// Bytes of the tool definition Anthropic's request adds around a forced tool's schema or a
/// called function's name (`input_schema`, its default description, the JSON around them).
const DECLARED_TOOL_BYTES: u64 = 160;

/// The most tokens one image can be billed as, by provider and model, from the providers'
/// published rules at their largest input:
///
/// - Anthropic: an image is resized to at most ~1.15 megapixels, about 1,600 tokens.
/// - OpenAI `gpt-4o-mini` (and a fine-tune of it, `ft:gpt-4o-mini-…`): 2,833 base + 5,667 per
///   512-px tile, at most 8 tiles at high detail (a 768 × 2,048 image): 48,169.
/// - The OpenAI families whose rules are known to cost less, at most 3,800: `gpt-4o` (85 +
///   170 × 8 = 1,445), `gpt-4.1` (the same tiles) and `-mini`/`-nano` (1,536 patches × 1.62
///   and × 2.46: 2,489 and 3,779), `o1`/`o3` (75 + 150 × 8 = 1,275) and `o4-mini` (1,536 ×
///   1.72 = 2,642).
/// - Any other OpenAI model: 48,169, the largest published figure, since a family Maestra
///   does not know could be billed by any of the rules.
/// - A local model costs nothing, so its images bound nothing.
pub fn image_worst_tokens(route: &Route) -> u64 {
    const LARGEST: u64 = 48_169;
    match route.provider {
        Provider::Local => 0,
        Provider::Anthropic => 1_600,
        Provider::OpenAi => {
            let model = route.model.strip_prefix("ft:").unwrap_or(&route.model);
            let family = |f: &str| {
                model == f
                    || model
                        .strip_prefix(f)
                        .is_some_and(|rest| rest.starts_with('-'))
            };
            if family("gpt-4o-mini") {
                LARGEST
            } else if ["gpt-4o", "gpt-4.1", "o1", "o3", "o4-mini"]
                .into_iter()
                .any(family)
            {
                3_800
            } else {
                LARGEST
            }
        }
    }
}

fn bytes(s: &str) -> u64 {
    u64::try_from(s.len()).unwrap_or(u64::MAX)
}

fn message_bound(m: &ChatMessage) -> u64 {
    let calls = m.tool_calls.iter().fold(0u64, |sum, c| {
        sum.saturating_add(bytes(&c.id))
            .saturating_add(bytes(&c.name))
            .saturating_add(bytes(&c.arguments))
            .saturating_add(TOOL_OVERHEAD)
    });
    bytes(&m.content)
        .saturating_add(MESSAGE_OVERHEAD)
        .saturating_add(calls)
        .saturating_add(m.tool_call_id.as_deref().map_or(0, bytes))
}

/// A prompt's size in its two kinds: what is counted a token a byte (text, tool definitions,
/// calls and their fixed overheads), and the images' tokens at their worst case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptSize {
    pub text: u64,
    pub image_tokens: u64,
}

impl PromptSize {
    /// The bound: every byte a token, every image its worst case.
    pub fn bound(self) -> u64 {
        self.text.saturating_add(self.image_tokens)
    }
}

impl ChatRequest {
    /// Whether the provider request on `route` will declare any tool: the client's, and on
    /// Anthropic also the forced tool of structured output and the functions a history calls.
    fn carries_tools(&self, route: &Route) -> bool {
        !self.tools.is_empty()
            || (route.provider == Provider::Anthropic
                && (matches!(
                    self.response_format,
                    Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
                ) || self.messages.iter().any(|m| !m.tool_calls.is_empty())))
    }

    /// The prompt this request sends on `route`, sized as [`PromptSize`] says.
    pub fn prompt_size(&self, route: &Route) -> PromptSize {
        let mut text = self
            .messages
            .iter()
            .fold(0u64, |sum, m| sum.saturating_add(message_bound(m)));
        let images = self
            .messages
            .iter()
            .map(|m| m.images().count() as u64)
            .sum::<u64>();
        if self.carries_tools(route) {
            text = text.saturating_add(TOOLS_PROMPT);
        }
        for t in &self.tools {
            let schema = t.parameters.as_ref().map_or(0, |p| bytes(&p.to_string()));
            text = text
                .saturating_add(bytes(&t.name))
                .saturating_add(t.description.as_deref().map_or(0, bytes))
                .saturating_add(schema)
                .saturating_add(TOOL_OVERHEAD);
        }
        match &self.response_format {
            Some(ResponseFormat::JsonSchema {
                name,
                description,
                schema,
                ..
            }) => {
                text = text
                    .saturating_add(bytes(name))
                    .saturating_add(description.as_deref().map_or(0, bytes))
                    .saturating_add(schema.as_ref().map_or(0, |s| bytes(&s.to_string())))
                    .saturating_add(DECLARED_TOOL_BYTES)
                    .saturating_add(TOOL_OVERHEAD);
                // OpenAI carries a schema as its own system text, not as a tool.
                if route.provider != Provider::Anthropic {
                    text = text.saturating_add(TOOLS_PROMPT);
                }
            }
            Some(ResponseFormat::JsonObject) if route.provider == Provider::Anthropic => {
                text = text
                    .saturating_add(DECLARED_TOOL_BYTES)
                    .saturating_add(TOOL_OVERHEAD);
            }
            _ => {}
        }
        // Functions the history calls, declared by name when the client declares none.
        if route.provider == Provider::Anthropic && self.tools.is_empty() {
            let mut names: Vec<&str> = self
                .messages
                .iter()
                .flat_map(|m| m.tool_calls.iter().map(|c| c.name.as_str()))
                .collect();
            names.sort_unstable();
            names.dedup();
            for n in names {
                text = text
                    .saturating_add(bytes(n))
                    .saturating_add(DECLARED_TOOL_BYTES)
                    .saturating_add(TOOL_OVERHEAD);
            }
        }
        PromptSize {
            text,
            image_tokens: images.saturating_mul(image_worst_tokens(route)),
        }
    }

    /// The worst case of this request on `route`: prompt tokens as above, output the cap
    /// (`max_tokens`, or `default_max` when the request set none) times `n`.
    pub fn usage_bound(&self, route: &Route, default_max: u64) -> Usage {
        let per_choice = self.max_tokens.unwrap_or(default_max);
        Usage {
            prompt_tokens: self.prompt_size(route).bound(),
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

    #[test]
    fn fine_tunes_and_unknown_families_get_the_largest_image_figure() {
        for (model, worst) in [
            ("gpt-4o-mini", 48_169),
            ("ft:gpt-4o-mini-2024-07-18:acme::abc123", 48_169),
            ("gpt-4o-mini-2024-07-18", 48_169),
            ("gpt-4.5-preview", 48_169),
            ("chatgpt-4o-latest", 48_169),
            ("gpt-4omni", 48_169),
            ("gpt-4o", 3_800),
            ("gpt-4o-2024-08-06", 3_800),
            ("ft:gpt-4o-2024-08-06:acme::x", 3_800),
            ("gpt-4.1-nano", 3_800),
            ("o1", 3_800),
            ("o3-2025-04-16", 3_800),
            ("o4-mini", 3_800),
        ] {
            assert_eq!(
                image_worst_tokens(&route(Provider::OpenAi, model)),
                worst,
                "{model}"
            );
        }
    }

    #[test]
    fn anthropic_tools_of_its_own_making_are_counted() {
        let claude = route(Provider::Anthropic, "claude-sonnet-4-5");
        let openai = route(Provider::OpenAi, "gpt-4o");
        let base = ChatRequest::new("m", vec![ChatMessage::text("user", "hi")]);
        let plain = base.usage_bound(&claude, 1).prompt_tokens;

        // `json_object` becomes a forced `json_answer` tool, with the tool-use system prompt.
        let mut json = base.clone();
        json.response_format = Some(ResponseFormat::JsonObject);
        assert!(json.usage_bound(&claude, 1).prompt_tokens >= plain + TOOLS_PROMPT);
        assert_eq!(
            json.usage_bound(&openai, 1).prompt_tokens,
            base.usage_bound(&openai, 1).prompt_tokens
        );

        // A history that calls a function, with no tools declared: declared by name.
        let mut history = base.clone();
        let mut turn = ChatMessage::text("assistant", "");
        turn.tool_calls.push(ToolCall {
            id: "c".into(),
            name: "lookup".into(),
            arguments: "{}".into(),
        });
        history.messages.push(turn);
        let mut answer = ChatMessage::text("tool", "42");
        answer.tool_call_id = Some("c".into());
        history.messages.push(answer);
        let words = history.usage_bound(&openai, 1).prompt_tokens;
        assert!(history.usage_bound(&claude, 1).prompt_tokens >= words + TOOLS_PROMPT);

        // A schema is one forced tool: the prompt is counted once, not twice.
        let mut schema = base.clone();
        schema.response_format = Some(ResponseFormat::JsonSchema {
            name: "out".into(),
            description: None,
            schema: Some(json!({"type": "object"})),
            strict: None,
        });
        let s = schema.usage_bound(&claude, 1).prompt_tokens;
        assert!(
            s >= plain + TOOLS_PROMPT && s < plain + 2 * TOOLS_PROMPT,
            "{s}"
        );
    }
}
