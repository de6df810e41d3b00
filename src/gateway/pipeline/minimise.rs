//! Stage 2: personal data out of a cloud call, placeholders in (SPEC §2.12), and the
//! originals back in its answer. Runs after the guard let the call through and before the
//! reservation, so the cost is reserved on the text that is sent.
//!
//! A local model is never minimised: nothing leaves the machine. A cloud call always loses
//! the vault's secrets and anything shaped like a key; the rest as its provider's `minimise`
//! setting says, or `X-Maestra-Minimise` when that asks for more (a request can only tighten).
//! The [`Withholding`] lives as long as the call's task and no longer.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::caller::Caller;
use crate::error::{Error, Result};
use crate::gateway::state::AppState;
use crate::minimise::{Level, StreamRestorer, Withholding};
use crate::providers::{ChatRequest, Completion, Delta, Provider, Route};

/// How much a call on `route` withholds: `None` for a local model.
pub fn level(state: &AppState, caller: &Caller, route: &Route) -> Result<Option<Level>> {
    let asked = caller.info.minimise.clone().map_err(Error::BadRequest)?;
    let configured = match route.provider {
        Provider::Local => return Ok(None),
        Provider::OpenAi => state.config.minimise.openai,
        Provider::Anthropic => state.config.minimise.anthropic,
    };
    Ok(Some(asked.map_or(configured, |a| a.max(configured))))
}

/// The request as the cloud will see it, and what was withheld from it; `None` when nothing
/// was (or the model is local).
pub async fn withhold(
    state: &AppState,
    caller: &Caller,
    route: &Route,
    req: &ChatRequest,
) -> Result<Option<(ChatRequest, Withholding)>> {
    let Some(level) = level(state, caller, route)? else {
        return Ok(None);
    };
    let mut w = Withholding::new(state.known.finder().await?, level);
    for m in &req.messages {
        w.note(&m.content);
        for p in &m.parts {
            if let crate::providers::chat::Part::Text(t) = p {
                w.note(t);
            }
        }
        for c in &m.tool_calls {
            w.note(&c.arguments);
        }
    }
    // Only what changed is replaced: most texts hold nothing to withhold.
    let mut sent = req.clone();
    for m in &mut sent.messages {
        // With parts, `content` is their text joined: what the wire sends is the parts.
        let joined = if m.parts.is_empty() {
            w.withhold(&m.content)?
        } else {
            w.withhold_copy(&m.content)?
        };
        if let Cow::Owned(t) = joined {
            m.content = t;
        }
        for p in &mut m.parts {
            if let crate::providers::chat::Part::Text(t) = p
                && let Cow::Owned(out) = w.withhold(t)?
            {
                *t = out;
            }
        }
        for c in &mut m.tool_calls {
            if let Cow::Owned(out) = w.withhold(&c.arguments)? {
                c.arguments = out;
            }
        }
    }
    Ok((!w.is_empty()).then_some((sent, w)))
}

/// Texts to embed as the cloud will see them, and what was withheld; `None` when nothing was
/// (or the model is local). Nothing comes back to restore: an embedding is of the text sent.
pub async fn withhold_texts(
    state: &AppState,
    caller: &Caller,
    route: &Route,
    texts: &[String],
) -> Result<Option<(Vec<String>, Withholding)>> {
    let Some(level) = level(state, caller, route)? else {
        return Ok(None);
    };
    let mut w = Withholding::new(state.known.finder().await?, level);
    for t in texts {
        w.note(t);
    }
    let sent = texts
        .iter()
        .map(|t| w.withhold(t).map(|c| c.into_owned()))
        .collect::<Result<Vec<_>>>()?;
    Ok((!w.is_empty()).then_some((sent, w)))
}

/// A whole answer with this call's placeholders put back: text, refusals and function-call
/// arguments (JSON-escaped there).
pub fn restore(w: &Withholding, c: &mut Completion) {
    for choice in &mut c.choices {
        choice.content = w.restore(&choice.content).into_owned();
        if let Some(r) = &mut choice.refusal {
            *r = w.restore(r).into_owned();
        }
        for call in &mut choice.tool_calls {
            call.arguments = w.restore_json(&call.arguments).into_owned();
        }
    }
}

/// Which text of a streamed choice a restorer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Piece {
    Text,
    Refusal,
    /// A function call's arguments, by the call's index.
    Call(u32),
}

/// A stream's restoration: one [`StreamRestorer`] per choice and piece of text, each holding
/// back what could still become a placeholder until the next delta (or the choice's end)
/// settles it.
pub struct StreamRestore {
    w: Withholding,
    open: BTreeMap<(u32, Piece), StreamRestorer>,
}

impl StreamRestore {
    pub fn new(w: Withholding) -> StreamRestore {
        StreamRestore {
            w,
            open: BTreeMap::new(),
        }
    }

    pub fn withholding(&self) -> &Withholding {
        &self.w
    }

    /// The deltas to send for one from the upstream: none while a piece is held back, what
    /// was held before a choice's `Finish`.
    pub fn delta(&mut self, d: Delta) -> Vec<Delta> {
        let (choice, piece, text) = match d {
            Delta::Text { choice, text } => (choice, Piece::Text, text),
            Delta::Refusal { choice, text } => (choice, Piece::Refusal, text),
            Delta::ToolCall {
                choice,
                index,
                id,
                name,
                arguments,
            } => {
                let r = self
                    .open
                    .entry((choice, Piece::Call(index)))
                    .or_insert_with(|| StreamRestorer::new(true));
                let arguments = r.push(&self.w, &arguments);
                if arguments.is_empty() && id.is_none() && name.is_none() {
                    return Vec::new();
                }
                return vec![Delta::ToolCall {
                    choice,
                    index,
                    id,
                    name,
                    arguments,
                }];
            }
            Delta::Finish { choice, reason } => {
                let mut out = self.flush(Some(choice));
                out.push(Delta::Finish { choice, reason });
                return out;
            }
            other => return vec![other],
        };
        let r = self
            .open
            .entry((choice, piece))
            .or_insert_with(|| StreamRestorer::new(false));
        let text = r.push(&self.w, &text);
        if text.is_empty() {
            return Vec::new();
        }
        vec![piece_delta(choice, piece, text)]
    }

    /// What is still held, for one choice or (at the stream's end) all.
    pub fn flush(&mut self, choice: Option<u32>) -> Vec<Delta> {
        let keys: Vec<(u32, Piece)> = self
            .open
            .keys()
            .filter(|(c, _)| choice.is_none_or(|want| *c == want))
            .copied()
            .collect();
        let mut out = Vec::new();
        for key in keys {
            if let Some(mut r) = self.open.remove(&key) {
                let text = r.finish(&self.w);
                if !text.is_empty() {
                    out.push(piece_delta(key.0, key.1, text));
                }
            }
        }
        out
    }
}

fn piece_delta(choice: u32, piece: Piece, text: String) -> Delta {
    match piece {
        Piece::Text => Delta::Text { choice, text },
        Piece::Refusal => Delta::Refusal { choice, text },
        Piece::Call(index) => Delta::ToolCall {
            choice,
            index,
            id: None,
            name: None,
            arguments: text,
        },
    }
}
