//! Upstream server-sent events to [`Delta`]s, with an idle timeout and a clear error when the
//! upstream stops before the answer is complete.
//!
//! The key sent upstream is scrubbed twice over: from each event before it is parsed (so an
//! `error` event quoting it yields a clean message), and from the text across deltas (a key
//! split over two deltas is held back until it is known to be one, then replaced). A stream
//! interleaves several texts — each choice's answer, each function call's arguments — so each
//! has its own redactor: a key split across two fragments of one call is caught even with
//! other choices' fragments between them. A choice's held text goes out before its finish
//! reason, and everything still held at the end.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};

use super::chat::{Delta, MAX_CHOICES};
use super::openai::MAX_TOOL_CALLS;
use super::{Provider, anthropic, openai};
use crate::error::{Error, Result};
use crate::services::redact::Redactor;

pub type DeltaStream = Pin<Box<dyn Stream<Item = Result<Delta>> + Send>>;

type Events = Pin<
    Box<
        dyn Stream<
                Item = std::result::Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

struct State {
    provider: Provider,
    events: Events,
    anthropic: anthropic::StreamState,
    pending: VecDeque<Delta>,
    /// A finish reason was seen: an end of stream after it is a normal end.
    finished: bool,
    done: bool,
    /// The error that ended the stream, sent once the deltas read before it are.
    failed: Option<Error>,
    idle: Duration,
    /// When the stream is cut whatever it is doing, so its reservation is settled well before
    /// the ledger would take it for a dead request's ([`MAX_CALL_SECS`]).
    ///
    /// [`MAX_CALL_SECS`]: crate::cost::ledger::MAX_CALL_SECS
    deadline: tokio::time::Instant,
    /// The key that was sent, looked for in each whole event; the template of the others.
    redactor: Redactor,
    /// Per choice: the redactor of its text.
    texts: BTreeMap<u32, Redactor>,
    /// Per (choice, call index): the redactor of that call's arguments.
    calls: BTreeMap<(u32, u32), Redactor>,
}

pub fn deltas(
    provider: Provider,
    resp: reqwest::Response,
    idle: Duration,
    redactor: Redactor,
    anthropic: anthropic::StreamState,
) -> DeltaStream {
    let state = State {
        provider,
        events: Box::pin(resp.bytes_stream().eventsource()),
        anthropic,
        pending: VecDeque::new(),
        finished: false,
        done: false,
        failed: None,
        idle,
        deadline: tokio::time::Instant::now()
            + Duration::from_secs(crate::cost::ledger::MAX_CALL_SECS),
        redactor,
        texts: BTreeMap::new(),
        calls: BTreeMap::new(),
    };
    Box::pin(futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(d) = st.pending.pop_front() {
                return Some((Ok(d), st));
            }
            // After what was read before it went wrong; held text (a possible key's start)
            // is dropped.
            if let Some(e) = st.failed.take() {
                return Some((Err(e), st));
            }
            if st.done {
                return None;
            }
            if let Err(e) = next(&mut st).await {
                st.done = true;
                st.failed = Some(st.redactor.scrub_error(e));
            }
        }
    }))
}

/// Reads one upstream event into `pending`, or marks the stream done.
async fn next(st: &mut State) -> Result<()> {
    let service = st.provider.service();
    let left = st
        .deadline
        .saturating_duration_since(tokio::time::Instant::now());
    let event = match tokio::time::timeout(st.idle.min(left), st.events.next()).await {
        Err(_) if left <= st.idle => {
            return Err(Error::UpstreamTimeout(format!(
                "{service} streamed past the longest a call may take"
            )));
        }
        Err(_) => {
            return Err(Error::UpstreamTimeout(format!(
                "{service} stopped sending mid-stream"
            )));
        }
        Ok(None) if st.finished => {
            flush(st);
            st.done = true;
            return Ok(());
        }
        Ok(None) => {
            return Err(Error::Upstream(format!(
                "{service} closed the stream before the answer was complete"
            )));
        }
        Ok(Some(Err(_))) => {
            return Err(Error::Upstream(format!(
                "{service} broke the stream off mid-answer"
            )));
        }
        Ok(Some(Ok(ev))) => ev,
    };
    let data = st.redactor.scrub_text(&event.data);
    let deltas = match st.provider {
        Provider::Anthropic => {
            if ev_is(&event, "message_stop") {
                flush(st);
                st.done = true;
                return Ok(());
            }
            anthropic::parse_event(&mut st.anthropic, &event.event, &data)?
        }
        _ => {
            if data.trim() == "[DONE]" {
                flush(st);
                st.done = true;
                return Ok(());
            }
            openai::parse_chunk(&data)?
        }
    };
    for d in deltas {
        scrub(st, d)?;
    }
    Ok(())
}

/// Queues one delta with the key scrubbed out of it: text and call arguments through their own
/// redactor (what may be a key's start is held back), log probabilities whole.
fn scrub(st: &mut State, d: Delta) -> Result<()> {
    match d {
        Delta::Text { choice, text } => {
            let safe = text_redactor(st, choice)?.push(text.as_bytes());
            if !safe.is_empty() {
                st.pending.push_back(Delta::Text {
                    choice,
                    text: String::from_utf8_lossy(&safe).into_owned(),
                });
            }
        }
        Delta::ToolCall {
            choice,
            index,
            id,
            name,
            arguments,
        } => {
            // Only a call's first fragment names it, as OpenAI streams them: some servers
            // (llama-cpp-python) repeat the id and name in every fragment, which the SDKs'
            // stream helpers would concatenate into `get_timeget_time...`.
            let first = !st.calls.contains_key(&(choice, index));
            let (id, name) = if first { (id, name) } else { (None, None) };
            let safe = call_redactor(st, choice, index)?.push(arguments.as_bytes());
            // The fragment naming the call goes out even when its arguments are held back.
            if id.is_some() || name.is_some() || !safe.is_empty() {
                st.pending.push_back(Delta::ToolCall {
                    choice,
                    index,
                    id,
                    name,
                    arguments: String::from_utf8_lossy(&safe).into_owned(),
                });
            }
        }
        Delta::Refusal { choice, text } => {
            // Rare and short: scrubbed piece by piece, not held back across pieces.
            st.pending.push_back(Delta::Refusal {
                choice,
                text: st.redactor.scrub_text(&text),
            });
        }
        Delta::Logprobs { choice, logprobs } => {
            // They spell the answer's tokens out again.
            let scrubbed = st.redactor.scrub_text(&logprobs.to_string());
            st.pending.push_back(Delta::Logprobs {
                choice,
                logprobs: serde_json::from_str(&scrubbed).unwrap_or(serde_json::Value::Null),
            });
        }
        Delta::Finish { choice, reason } => {
            // What the choice still holds goes out before it ends.
            flush_choice(st, choice);
            st.finished = true;
            st.pending.push_back(Delta::Finish { choice, reason });
        }
        usage @ Delta::Usage(_) => st.pending.push_back(usage),
    }
    Ok(())
}

fn text_redactor(st: &mut State, choice: u32) -> Result<&mut Redactor> {
    if !st.texts.contains_key(&choice) && st.texts.len() >= MAX_CHOICES as usize {
        return Err(too_many(st.provider, "choices"));
    }
    let template = &st.redactor;
    Ok(st.texts.entry(choice).or_insert_with(|| template.fresh()))
}

fn call_redactor(st: &mut State, choice: u32, index: u32) -> Result<&mut Redactor> {
    let most = MAX_CHOICES as usize * MAX_TOOL_CALLS as usize;
    if !st.calls.contains_key(&(choice, index)) && st.calls.len() >= most {
        return Err(too_many(st.provider, "function calls"));
    }
    let template = &st.redactor;
    Ok(st
        .calls
        .entry((choice, index))
        .or_insert_with(|| template.fresh()))
}

fn too_many(p: Provider, what: &str) -> Error {
    Error::Upstream(format!(
        "{} sent an invalid answer: more {what} than any request asks for",
        p.service()
    ))
}

/// Sends what one choice's redactors still hold: its text, then its calls' arguments.
fn flush_choice(st: &mut State, choice: u32) {
    if let Some(r) = st.texts.get_mut(&choice) {
        let rest = r.finish();
        if !rest.is_empty() {
            st.pending.push_back(Delta::Text {
                choice,
                text: String::from_utf8_lossy(&rest).into_owned(),
            });
        }
    }
    for (&(_, index), r) in st.calls.range_mut((choice, 0)..=(choice, u32::MAX)) {
        let rest = r.finish();
        if !rest.is_empty() {
            st.pending.push_back(Delta::ToolCall {
                choice,
                index,
                id: None,
                name: None,
                arguments: String::from_utf8_lossy(&rest).into_owned(),
            });
        }
    }
}

/// Sends everything still held, choice by choice (the answer has ended).
fn flush(st: &mut State) {
    let mut choices: Vec<u32> = st
        .texts
        .keys()
        .chain(st.calls.keys().map(|(c, _)| c))
        .copied()
        .collect();
    choices.sort_unstable();
    choices.dedup();
    for choice in choices {
        flush_choice(st, choice);
    }
}

fn ev_is(event: &eventsource_stream::Event, kind: &str) -> bool {
    event.event == kind || event.data.contains(&format!("\"type\":\"{kind}\""))
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use serde_json::json;

    use super::*;

    const KEY: &str = "sk-proj-STREAMKEY0123456789";

    /// The deltas of an OpenAI stream made of `chunks` (then `[DONE]`), sent with [`KEY`].
    async fn run(chunks: &[serde_json::Value]) -> Vec<Result<Delta>> {
        run_raw(&chunks.iter().map(ToString::to_string).collect::<Vec<_>>()).await
    }

    async fn run_raw(chunks: &[String]) -> Vec<Result<Delta>> {
        let mut body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
        body.push_str("data: [DONE]\n\n");
        let resp = reqwest::Response::from(http::Response::new(body));
        let key = SecretString::from(KEY.to_string());
        let redactor = Redactor::new([&key]);
        deltas(
            Provider::OpenAi,
            resp,
            Duration::from_secs(5),
            redactor,
            Default::default(),
        )
        .collect()
        .await
    }

    fn text_chunk(choice: u32, text: &str) -> serde_json::Value {
        json!({"choices": [{"index": choice, "delta": {"content": text}, "finish_reason": null}]})
    }

    fn call_chunk(choice: u32, call: serde_json::Value) -> serde_json::Value {
        json!({"choices": [{"index": choice, "delta": {"tool_calls": [call]}, "finish_reason": null}]})
    }

    fn finish_chunk(choice: u32, reason: &str) -> serde_json::Value {
        json!({"choices": [{"index": choice, "delta": {}, "finish_reason": reason}]})
    }

    /// A reassembled call: id, name, arguments.
    type Call = (String, String, String);
    /// Each choice's text, and each (choice, call index)'s call.
    type Reassembled = (BTreeMap<u32, String>, BTreeMap<(u32, u32), Call>);

    /// Each choice's text, and each (choice, call)'s id, name and arguments, put back
    /// together as the OpenAI SDK does.
    fn reassemble(deltas: &[Delta]) -> Reassembled {
        let (mut texts, mut calls) = (BTreeMap::new(), BTreeMap::new());
        for d in deltas {
            match d {
                Delta::Text { choice, text } => texts
                    .entry(*choice)
                    .or_insert_with(String::new)
                    .push_str(text),
                Delta::ToolCall {
                    choice,
                    index,
                    id,
                    name,
                    arguments,
                } => {
                    let c: &mut Call = calls.entry((*choice, *index)).or_default();
                    if let Some(id) = id {
                        assert!(c.0.is_empty(), "a call named twice");
                        c.0 = id.clone();
                    }
                    if let Some(name) = name {
                        assert!(c.1.is_empty(), "a call named twice");
                        c.1 = name.clone();
                    }
                    c.2.push_str(arguments);
                }
                _ => {}
            }
        }
        (texts, calls)
    }

    fn ok(deltas: Vec<Result<Delta>>) -> Vec<Delta> {
        deltas.into_iter().map(|d| d.unwrap()).collect()
    }

    /// llama-cpp-python names the call in every fragment; the client gets it named once.
    #[tokio::test]
    async fn a_call_named_in_every_fragment_is_named_once() {
        let named = |args: &str| {
            call_chunk(
                0,
                json!({"index": 0, "id": "call_0", "type": "function",
                       "function": {"name": "set_unit", "arguments": args}}),
            )
        };
        let deltas = ok(run(&[
            named("{\"unit\""),
            named(": \"celsius\"}"),
            finish_chunk(0, "tool_calls"),
        ])
        .await);
        let (_, calls) = reassemble(&deltas);
        assert_eq!(
            calls[&(0, 0)],
            (
                "call_0".into(),
                "set_unit".into(),
                r#"{"unit": "celsius"}"#.into()
            )
        );
    }

    #[tokio::test]
    async fn two_calls_reassemble_across_chunks() {
        let deltas = ok(run(&[
            call_chunk(
                0,
                json!({"index": 0, "id": "call_1", "type": "function",
                                 "function": {"name": "get_weather", "arguments": ""}}),
            ),
            call_chunk(0, json!({"index": 0, "function": {"arguments": "{\"ci"}})),
            call_chunk(
                0,
                json!({"index": 1, "id": "call_2", "type": "function",
                                 "function": {"name": "get_time", "arguments": ""}}),
            ),
            call_chunk(
                0,
                json!({"index": 0, "function": {"arguments": "ty\":\"Oslo\"}"}}),
            ),
            call_chunk(0, json!({"index": 1, "function": {"arguments": "{}"}})),
            finish_chunk(0, "tool_calls"),
        ])
        .await);
        let (texts, calls) = reassemble(&deltas);
        assert!(texts.is_empty());
        assert_eq!(
            calls,
            BTreeMap::from([
                (
                    (0, 0),
                    (
                        "call_1".into(),
                        "get_weather".into(),
                        r#"{"city":"Oslo"}"#.into()
                    )
                ),
                ((0, 1), ("call_2".into(), "get_time".into(), "{}".into())),
            ])
        );
        assert_eq!(
            deltas.last(),
            Some(&Delta::Finish {
                choice: 0,
                reason: "tool_calls".into()
            })
        );
    }

    #[tokio::test]
    async fn interleaved_choices_keep_their_own_text() {
        let deltas = ok(run(&[
            text_chunk(0, "one "),
            text_chunk(1, "uno "),
            text_chunk(0, "two"),
            text_chunk(1, "dos"),
            finish_chunk(1, "stop"),
            finish_chunk(0, "stop"),
        ])
        .await);
        let (texts, _) = reassemble(&deltas);
        assert_eq!(
            texts,
            BTreeMap::from([(0, "one two".into()), (1, "uno dos".into())])
        );
    }

    #[tokio::test]
    async fn a_key_split_across_fragments_is_scrubbed() {
        let chunks = [
            // Arguments of call 0 quote the key in three pieces, with another choice's text and
            // another call's fragments in between.
            call_chunk(
                0,
                json!({"index": 0, "id": "call_1", "type": "function",
                                 "function": {"name": "note", "arguments": "{\"k\":\"sk-pr"}}),
            ),
            text_chunk(1, "sk-proj-ST"),
            call_chunk(
                0,
                json!({"index": 1, "id": "call_2", "type": "function",
                                 "function": {"name": "note", "arguments": "{\"k\":\"sk-"}}),
            ),
            call_chunk(
                0,
                json!({"index": 0, "function": {"arguments": "oj-STREAMKE"}}),
            ),
            text_chunk(1, "REAMKEY0123456789 done"),
            call_chunk(0, json!({"index": 1, "function": {"arguments": "pro"}})),
            call_chunk(
                0,
                json!({"index": 0, "function": {"arguments": "Y0123456789\"}"}}),
            ),
            // Call 1 ends on what may be a key's start: held until its choice finishes.
            finish_chunk(0, "tool_calls"),
            finish_chunk(1, "stop"),
        ];
        let mut chunks: Vec<String> = chunks.iter().map(ToString::to_string).collect();
        // Log probabilities spelling the key with a JSON escape the whole-event scrub misses.
        chunks.push(
            r#"{"choices":[{"index":1,"delta":{},"logprobs":{"content":[{"token":"\u0073k-proj-STREAMKEY0123456789"}]},"finish_reason":null}]}"#
                .into(),
        );
        let deltas = ok(run_raw(&chunks).await);
        for d in &deltas {
            assert!(!format!("{d:?}").contains("STREAMKE"), "{d:?}");
        }
        let (texts, calls) = reassemble(&deltas);
        assert_eq!(texts[&1], "[REDACTED] done");
        assert_eq!(calls[&(0, 0)].2, r#"{"k":"[REDACTED]"}"#);
        assert_eq!(calls[&(0, 1)].2, r#"{"k":"sk-pro"#);
        // The held piece of call 1 went out before choice 0's finish.
        let finish = deltas
            .iter()
            .position(|d| matches!(d, Delta::Finish { choice: 0, .. }))
            .unwrap();
        assert!(matches!(
            &deltas[finish - 1],
            Delta::ToolCall { choice: 0, index: 1, arguments, .. } if arguments == "sk-pro"
        ));
        assert!(deltas.iter().any(|d| matches!(
            d,
            Delta::Logprobs { choice: 1, logprobs } if logprobs["content"][0]["token"] == "[REDACTED]"
        )));
    }

    #[tokio::test]
    async fn the_redactors_are_bounded() {
        let most = MAX_CHOICES * MAX_TOOL_CALLS;
        let calls: Vec<_> = (0..=most)
            .map(|i| json!({"index": i, "id": format!("c{i}"), "function": {"name": "f", "arguments": "{}"}}))
            .collect();
        let out = run(&[json!({"choices": [{"index": 0, "delta": {"tool_calls": calls}}]})]).await;
        assert!(
            matches!(out.last(), Some(Err(Error::Upstream(m))) if m.contains("function calls")),
            "{:?}",
            out.last()
        );
        assert_eq!(
            out.len(),
            most as usize + 1,
            "every call up to the bound went out"
        );
        let texts: Vec<_> = (0..=MAX_CHOICES).map(|c| text_chunk(c, "x")).collect();
        let out = run(&texts).await;
        assert!(matches!(out.last(), Some(Err(Error::Upstream(m))) if m.contains("choices")));
    }
}
