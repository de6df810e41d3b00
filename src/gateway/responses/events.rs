//! A relayed chat stream as the Responses API's typed events, which the official SDKs
//! assemble into a Response (`event: <type>` lines; each `data` carries its `type` and an
//! increasing `sequence_number`):
//!
//! `response.created`, `response.in_progress`; per output item `response.output_item.added`,
//! its content (`response.content_part.added`, `response.output_text.delta`…, `.done`s for a
//! message; `response.function_call_arguments.delta`…, `.done` for a call), then
//! `response.output_item.done`; last `response.completed` (or `response.incomplete` when the
//! output cap cut the answer) with the whole Response, usage included. An upstream that fails
//! mid-answer ends it with `response.failed`, whose `error` carries Maestra's code.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;

use axum::response::sse::Event as SseEvent;
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::output::{self, End, Head};
use crate::gateway::pipeline::Relayed;
use crate::providers::{Delta, ToolCall, Usage};

/// One output item as it is being assembled.
enum Item {
    Message { id: String, text: String },
    Call { id: String, call: ToolCall },
}

impl Item {
    fn json(&self, status: &str) -> Value {
        match self {
            Item::Message { id, text } => output::message_item(id, text, None, status),
            Item::Call { id, call } => output::call_item(id, call, status),
        }
    }
}

struct Events {
    relayed: mpsc::Receiver<Relayed>,
    head: Head,
    sequence: u64,
    items: Vec<Item>,
    /// The item still receiving deltas (its `.done` events not sent yet).
    open: Option<usize>,
    /// The chat stream's call index → the output item it is.
    calls: HashMap<u32, usize>,
    finish: Option<String>,
    usage: Option<Usage>,
    queue: VecDeque<SseEvent>,
    ended: bool,
}

/// The events of one streamed response, from the relay's receiver (already past `Opened`).
pub(super) fn stream(
    relayed: mpsc::Receiver<Relayed>,
    head: Head,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let mut e = Events {
        relayed,
        head,
        sequence: 0,
        items: Vec::new(),
        open: None,
        calls: HashMap::new(),
        finish: None,
        usage: None,
        queue: VecDeque::new(),
        ended: false,
    };
    let created = e.snapshot(&End::in_progress());
    e.emit("response.created", json!({"response": created}));
    e.emit("response.in_progress", json!({"response": created}));
    futures_util::stream::unfold(e, |mut e| async move {
        loop {
            if let Some(event) = e.queue.pop_front() {
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
    fn emit(&mut self, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        self.queue
            .push_back(SseEvent::default().event(kind).data(data.to_string()));
    }

    /// The Response so far: an item still open when the answer failed is `incomplete`.
    fn snapshot(&self, end: &End) -> Value {
        let output = self
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.json(if self.open == Some(i) {
                    "incomplete"
                } else {
                    "completed"
                })
            })
            .collect();
        self.head.response(end, output, self.usage)
    }

    fn take(&mut self, relayed: Relayed) {
        match relayed {
            // One choice: the Responses API has no `n`.
            Relayed::Delta(Delta::Text { choice: 0, text }) => self.text(text),
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
                self.close();
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

    fn text(&mut self, text: String) {
        let index = match self.open {
            Some(i) if matches!(self.items[i], Item::Message { .. }) => i,
            _ => {
                self.close();
                let index = self.items.len();
                let id = output::item_id("msg");
                self.items.push(Item::Message {
                    id: id.clone(),
                    text: String::new(),
                });
                self.open = Some(index);
                let item = self.items[index].json("in_progress");
                // Added empty: the SDK appends the part that `content_part.added` brings.
                let mut item_added = item.clone();
                item_added["content"] = json!([]);
                self.emit(
                    "response.output_item.added",
                    json!({"output_index": index, "item": item_added}),
                );
                self.emit(
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "part": output::text_part("")}),
                );
                index
            }
        };
        let Item::Message { id, text: all } = &mut self.items[index] else {
            return;
        };
        all.push_str(&text);
        let id = id.clone();
        self.emit(
            "response.output_text.delta",
            json!({"item_id": id, "output_index": index, "content_index": 0,
                   "delta": text, "logprobs": []}),
        );
    }

    /// A fragment of call `index`: its first names it and opens its item, later ones add to
    /// its arguments.
    fn call(&mut self, index: u32, id: Option<String>, name: Option<String>, arguments: String) {
        let at = match self.calls.get(&index) {
            Some(at) => *at,
            None => {
                self.close();
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
                self.calls.insert(index, at);
                self.open = Some(at);
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

    /// Sends the `.done` events of the open item, if any.
    fn close(&mut self) {
        let Some(at) = self.open.take() else {
            return;
        };
        let item = self.items[at].json("completed");
        match &self.items[at] {
            Item::Message { id, text } => {
                let (id, text) = (id.clone(), text.clone());
                self.emit(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": at, "content_index": 0,
                           "text": text, "logprobs": []}),
                );
                self.emit(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": at, "content_index": 0,
                           "part": output::text_part(&text)}),
                );
            }
            Item::Call { id, call } => {
                let data = json!({"item_id": id, "output_index": at, "name": call.name,
                                  "arguments": call.arguments});
                self.emit("response.function_call_arguments.done", data);
            }
        }
        self.emit(
            "response.output_item.done",
            json!({"output_index": at, "item": item}),
        );
    }
}
