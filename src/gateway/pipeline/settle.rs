//! Stage 4: a call's charge settled to its real usage (or what was counted when none was
//! reported), or its hold released when it failed.

use crate::cost::budget::Hold;
use crate::cost::ledger::Micros;
use crate::error::Result;
use crate::gateway::state::AppState;
use crate::providers::{ChatRequest, Completion, Route, Usage};

/// Settles a whole answer. A paid answer that reports no usage at all is charged what was
/// counted, like a stream: never $0. Returns the ledger's charge.
pub(super) async fn answer(
    state: &AppState,
    hold: Hold,
    route: &Route,
    req: &ChatRequest,
    c: &mut Completion,
) -> Result<Micros> {
    if hold.reserved > 0 && c.usage == Usage::default() {
        c.usage = counted_usage(route, req, c.output_bytes());
    }
    state.budget.settle(hold, route, c.usage).await
}

/// Charges a call its whole reservation: for one whose client left and whose upstream never
/// answered, which may still bill for the work. The reservation is the bound the limits
/// counted on, so this can never take a scope past its limit.
pub(super) async fn worst_case(state: &AppState, hold: Hold) -> Result<Micros> {
    state.budget.settle_reserved(hold).await
}

/// Gives a failed call's reservation back.
pub(super) async fn release(state: &AppState, hold: Hold) {
    state.budget.release(hold).await;
}

/// Usage counted from what was answered, when the provider reported none: the prompt as the
/// reservation sizes it (text, tool definitions, calls) at about four bytes a token, rounded
/// up, images at their worst case (there is no better count of them), and the answer at four
/// bytes a token; so a missing report is never charged as free.
pub fn counted_usage(route: &Route, req: &ChatRequest, answered_bytes: usize) -> Usage {
    let prompt = req.prompt_size(route);
    Usage {
        prompt_tokens: prompt.text.div_ceil(4).saturating_add(prompt.image_tokens),
        completion_tokens: answered_bytes.div_ceil(4) as u64,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::providers::Provider;
    use crate::providers::chat::{ChatMessage, Image, ImageSource, Part, Tool, ToolCall};

    #[test]
    fn a_missing_report_counts_images_tools_and_calls() {
        let route = Route {
            provider: Provider::OpenAi,
            model: "gpt-4o".into(),
        };
        let base = ChatRequest::new("gpt-4o", vec![ChatMessage::text("user", "hi")]);
        let plain = counted_usage(&route, &base, 8);
        assert_eq!(plain.completion_tokens, 2);

        let mut req = base.clone();
        req.messages[0].parts = vec![
            Part::Text("hi".into()),
            Part::Image(Image {
                source: ImageSource::Inline {
                    media_type: "image/png".into(),
                    base64: "AAAA".into(),
                },
                detail: None,
            }),
        ];
        req.tools.push(Tool {
            name: "f".into(),
            description: Some("d".repeat(4000)),
            parameters: Some(json!({"type": "object"})),
            strict: None,
        });
        let mut turn = ChatMessage::text("assistant", "");
        turn.tool_calls.push(ToolCall {
            id: "c".into(),
            name: "f".into(),
            arguments: "a".repeat(4000),
        });
        req.messages.push(turn);
        let counted = counted_usage(&route, &req, 8).prompt_tokens;
        // The image at its worst case, and about a token per four bytes of the rest.
        assert!(
            counted >= plain.prompt_tokens + 3_800 + 2_000,
            "{counted} vs {plain:?}"
        );
        // Never above the reservation's own bound.
        assert!(counted <= req.usage_bound(&route, 0).prompt_tokens);
    }
}
