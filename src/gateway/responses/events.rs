//! A relayed chat stream as the Responses API's typed events, which the official SDKs
//! assemble into a Response (`event: <type>` lines; each `data` carries its `type` and an
//! increasing `sequence_number`):
//!
//! `response.created`, `response.in_progress`; per output item `response.output_item.added`,
//! its content (`response.content_part.added`, `response.output_text.delta`… or
//! `response.refusal.delta`…, their `.done`s for a message; `response.function_call_arguments
//! .delta`…, `.done` for a call), then `response.output_item.done`; last `response.completed`
//! (or `response.incomplete` when the output cap or a refusal cut the answer) with the whole
//! Response, usage included. An upstream that fails mid-answer ends it with `response.failed`,
//! whose `error` carries Maestra's code.
//!
//! A message item closes when a call follows it. Function-call items stay open until the
//! answer ends: the chat stream may interleave fragments of several calls (and send a call's
//! last fragment late), and a fragment must never land after its item's `.done`.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;

use axum::response::sse::Event as SseEvent;
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::output::{self, End, Head};
use crate::gateway::pipeline::Relayed;
use crate::providers::{Delta, ToolCall, Usage};

/// A message's content part as it is being assembled: its text, or the model's refusal.
enum Part {
    Text(String),
    Refusal(String),
}

impl Part {
    fn json(&self) -> Value {
        match self {
            Part::Text(t) => output::text_part(t),
            Part::Refusal(r) => output::refusal_part(r),
        }
    }
}

/// One output item as it is being assembled.
enum Item {
    Message { id: String, parts: Vec<Part> },
    Call { id: String, call: ToolCall },
}

impl Item {
    fn json(&self, status: &str) -> Value {
        match self {
            Item::Message { id, parts } => {
                output::message_json(id, parts.iter().map(Part::json).collect(), status)
            }
            Item::Call { id, call } => output::call_item(id, call, status),
        }
    }
}

struct Events {
    relayed: mpsc::Receiver<Relayed>,
    head: Head,
    sequence: u64,
    items: Vec<Item>,
    /// Per item: still receiving deltas (its `.done` events not sent yet).
    open: Vec<bool>,
    /// The open message item, which text and refusal go to.
    message: Option<usize>,
    /// The chat stream's call index → the output item it is.
    calls: HashMap<u32, usize>,
    finish: Option<String>,
    usage: Option<Usage>,
    /// Events to send: their type and data.
    queue: VecDeque<(String, Value)>,
    ended: bool,
}

/// The events of one streamed response, from the relay's receiver (already past `Opened`).
pub(super) fn stream(
    relayed: mpsc::Receiver<Relayed>,
    head: Head,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let e = Events::new(relayed, head);
    futures_util::stream::unfold(e, |mut e| async move {
        loop {
            if let Some((kind, data)) = e.queue.pop_front() {
                let event = SseEvent::default().event(kind).data(data.to_string());
                return Some((Ok(event), e));
            }
            if e.ended {
                return None;
            }
            match e.relayed.recv().await {
                Some(r) => e.take(r),
                // The relay ended without a last word: nothing more to say.
                None => e.ended = true,
            }
        }
    })
}

impl Events {
    /// A stream's events, `response.created` and `response.in_progress` queued.
    fn new(relayed: mpsc::Receiver<Relayed>, head: Head) -> Events {
        let mut e = Events {
            relayed,
            head,
            sequence: 0,
            items: Vec::new(),
            open: Vec::new(),
            message: None,
            calls: HashMap::new(),
            finish: None,
            usage: None,
            queue: VecDeque::new(),
            ended: false,
        };
        let created = e.snapshot(&End::in_progress());
        e.emit("response.created", json!({"response": created}));
        e.emit("response.in_progress", json!({"response": created}));
        e
    }

    fn emit(&mut self, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        self.queue.push_back((kind.to_string(), data));
    }

    /// The Response so far: an item still open when the answer failed is `incomplete`.
    fn snapshot(&self, end: &End) -> Value {
        let output = self
            .items
            .iter()
            .zip(&self.open)
            .map(|(item, open)| item.json(if *open { "incomplete" } else { "completed" }))
            .collect();
        self.head.response(end, output, self.usage)
    }

    fn take(&mut self, relayed: Relayed) {
        match relayed {
            // One choice: the Responses API has no `n`.
            Relayed::Delta(Delta::Text { choice: 0, text }) => self.text(text, false),
            Relayed::Delta(Delta::Refusal { choice: 0, text }) => self.text(text, true),
            Relayed::Delta(Delta::ToolCall {
                choice: 0,
                index,
                id,
                name,
                arguments,
            }) => self.call(index, id, name, arguments),
            Relayed::Delta(Delta::Finish { choice: 0, reason }) => self.finish = Some(reason),
            Relayed::Delta(Delta::Usage(u)) => self.usage = Some(u),
            Relayed::Delta(_) | Relayed::Opened { .. } => {}
            Relayed::Done => {
                // Every item closes, in output order, only now: no fragment can follow.
                for at in 0..self.items.len() {
                    self.close(at);
                }
                let end = End::finished(self.finish.as_deref());
                let kind = if end.status() == "incomplete" {
                    "response.incomplete"
                } else {
                    "response.completed"
                };
                let response = self.snapshot(&end);
                self.emit(kind, json!({"response": response}));
                self.ended = true;
            }
            Relayed::Failed(body) => self.fail(&body),
            Relayed::Refused(e) => self.fail(&e.body()),
        }
    }

    fn fail(&mut self, body: &Value) {
        let response = self.snapshot(&End::failed(body));
        self.emit("response.failed", json!({"response": response}));
        self.ended = true;
    }

    /// The open message item, opened (added empty) if there is none.
    fn message(&mut self) -> usize {
        if let Some(at) = self.message {
            return at;
        }
        let at = self.items.len();
        self.items.push(Item::Message {
            id: output::item_id("msg"),
            parts: Vec::new(),
        });
        self.open.push(true);
        self.message = Some(at);
        let item = self.items[at].json("in_progress");
        self.emit(
            "response.output_item.added",
            json!({"output_index": at, "item": item}),
        );
        at
    }

    /// A piece of the answer's text, or of its refusal (`refusal`): each is one content part
    /// of the message, added (empty) when its first piece comes.
    fn text(&mut self, piece: String, refusal: bool) {
        let at = self.message();
        let Item::Message { id, parts } = &mut self.items[at] else {
            return;
        };
        let id = id.clone();
        let found = parts
            .iter()
            .position(|p| matches!(p, Part::Refusal(_)) == refusal);
        let content = match found {
            Some(c) => c,
            None => {
                parts.push(if refusal {
                    Part::Refusal(String::new())
                } else {
                    Part::Text(String::new())
                });
                let c = parts.len() - 1;
                let part = parts[c].json();
                // The SDK appends the part that `content_part.added` brings.
                self.emit(
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": at, "content_index": c, "part": part}),
                );
                c
            }
        };
        let Item::Message { parts, .. } = &mut self.items[at] else {
            return;
        };
        match &mut parts[content] {
            Part::Text(all) | Part::Refusal(all) => all.push_str(&piece),
        }
        let mut data = json!({"item_id": id, "output_index": at, "content_index": content,
                              "delta": piece});
        let kind = if refusal {
            "response.refusal.delta"
        } else {
            data["logprobs"] = json!([]);
            "response.output_text.delta"
        };
        self.emit(kind, data);
    }

    /// A fragment of call `index`: its first names it and opens its item (closing the message
    /// before it), later ones add to its arguments.
    fn call(&mut self, index: u32, id: Option<String>, name: Option<String>, arguments: String) {
        let at = match self.calls.get(&index) {
            Some(at) => *at,
            None => {
                if let Some(m) = self.message.take() {
                    self.close(m);
                }
                let at = self.items.len();
                let call = ToolCall {
                    id: id.clone().unwrap_or_else(|| output::item_id("call")),
                    name: name.clone().unwrap_or_default(),
                    arguments: String::new(),
                };
                self.items.push(Item::Call {
                    id: output::item_id("fc"),
                    call,
                });
                self.open.push(true);
                self.calls.insert(index, at);
                let item = self.items[at].json("in_progress");
                self.emit(
                    "response.output_item.added",
                    json!({"output_index": at, "item": item}),
                );
                at
            }
        };
        let Item::Call { id: item_id, call } = &mut self.items[at] else {
            return;
        };
        // A name that came late (never first, with OpenAI or Anthropic) still names the call.
        if call.name.is_empty()
            && let Some(name) = name
        {
            call.name = name;
        }
        if arguments.is_empty() {
            return;
        }
        call.arguments.push_str(&arguments);
        let item_id = item_id.clone();
        self.emit(
            "response.function_call_arguments.delta",
            json!({"item_id": item_id, "output_index": at, "delta": arguments}),
        );
    }

    /// Sends the `.done` events of item `at`, if it is still open.
    fn close(&mut self, at: usize) {
        if !std::mem::replace(&mut self.open[at], false) {
            return;
        }
        if self.message == Some(at) {
            self.message = None;
        }
        let item = self.items[at].json("completed");
        let mut done = Vec::new();
        match &self.items[at] {
            Item::Message { id, parts } => {
                for (c, part) in parts.iter().enumerate() {
                    let at_part = json!({"item_id": id, "output_index": at, "content_index": c});
                    let (kind, mut data) = match part {
                        Part::Text(text) => (
                            "response.output_text.done",
                            json!({"text": text, "logprobs": []}),
                        ),
                        Part::Refusal(refusal) => {
                            ("response.refusal.done", json!({"refusal": refusal}))
                        }
                    };
                    merge(&mut data, &at_part);
                    done.push((kind, data));
                    let mut part_done = json!({"part": part.json()});
                    merge(&mut part_done, &at_part);
                    done.push(("response.content_part.done", part_done));
                }
            }
            Item::Call { id, call } => done.push((
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": at, "name": call.name,
                       "arguments": call.arguments}),
            )),
        }
        for (kind, data) in done {
            self.emit(kind, data);
        }
        self.emit(
            "response.output_item.done",
            json!({"output_index": at, "item": item}),
        );
    }
}

/// `extra`'s fields added to `data` (both objects).
fn merge(data: &mut Value, extra: &Value) {
    if let (Some(d), Some(e)) = (data.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
}

#[cfg(test)]
mod tests;
