//! Upstream server-sent events to [`Delta`]s, with an idle timeout and a clear error when the
//! upstream stops before the answer is complete.
//!
//! The key sent upstream is scrubbed twice over: from each event before it is parsed (so an
//! `error` event quoting it yields a clean message), and from the text across deltas (a key
//! split over two deltas is held back until it is known to be one, then replaced). A stream
//! interleaves several texts — each choice's answer, each function call's arguments — so each
//! has its own redactor: a key split across two fragments of one call is caught even with
//! other choices' fragments between them. A choice's held text goes out before its first
//! function call and its finish reason, a call's held arguments before the next call starts,
//! and everything still held at the end. Log probabilities spell the text again, a key over
//! many tokens: they wait behind the text they spell, and go out with their tokens withheld
//! when that text had a key.
//!
//! Calls are put in the shape OpenAI streams them, whatever the server: one index per call
//! (Ollama gives every call index 0, each with its own id), named by its first fragment only
//! (llama-cpp-python names it in every fragment). A choice past the request's `n` is a broken
//! answer.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use serde_json::Value;

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
    /// Choices the request asked for (`n`): a choice index past it is a broken answer.
    n: u32,
    /// The key that was sent, looked for in each whole event; the template of the others.
    redactor: Redactor,
    /// Per choice: its text, and the log probabilities waiting for it.
    texts: BTreeMap<u32, Text>,
    /// Per (choice, call index sent on): the redactor of that call's arguments.
    calls: BTreeMap<(u32, u32), Redactor>,
    /// Per (choice, call index as the upstream sent it): the index sent on, and the call's id.
    slots: BTreeMap<(u32, u32), Slot>,
    /// Per choice: the index of the call it started last.
    last_call: BTreeMap<u32, u32>,
}

/// One choice's text as it streams.
struct Text {
    redactor: Redactor,
    /// Log probabilities that spell text still held back, in order, each with whether that
    /// text turned out to hold a key. They go out after the text they spell.
    logprobs: VecDeque<(Value, bool)>,
    /// The last text pushed had a key replaced: the next log probabilities spell part of it.
    taint_next: bool,
}

/// Where an upstream's call index goes.
struct Slot {
    /// The index the call is sent on.
    out: u32,
    /// The id its first fragment gave, if any.
    id: Option<String>,
}

/// Most log probabilities one choice queues behind held text; past it the oldest goes out
/// with its tokens withheld, as it cannot be vouched for yet.
const MAX_HELD_LOGPROBS: usize = 64;

pub fn deltas(
    provider: Provider,
    resp: reqwest::Response,
    idle: Duration,
    redactor: Redactor,
    n: u32,
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
        n,
        redactor,
        texts: BTreeMap::new(),
        calls: BTreeMap::new(),
        slots: BTreeMap::new(),
        last_call: BTreeMap::new(),
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
/// redactor (what may be a key's start is held back), log probabilities behind the text they
/// spell. Each call goes out on an index of its own, named once, after the text before it.
fn scrub(st: &mut State, d: Delta) -> Result<()> {
    let choice = match &d {
        Delta::Text { choice, .. }
        | Delta::ToolCall { choice, .. }
        | Delta::Refusal { choice, .. }
        | Delta::Logprobs { choice, .. }
        | Delta::Finish { choice, .. } => Some(*choice),
        Delta::Usage(_) => None,
    };
    if choice.is_some_and(|c| c >= st.n) {
        return Err(too_many(st.provider, "choices"));
    }
    match d {
        Delta::Text { choice, text } => {
            let t = text_state(st, choice)?;
            let before = t.redactor.replaced();
            let safe = t.redactor.push(text.as_bytes());
            if t.redactor.replaced() > before {
                // The log probabilities queued spell the key's start, the next ones its end.
                t.logprobs
                    .iter_mut()
                    .for_each(|(_, tainted)| *tainted = true);
                t.taint_next = true;
            } else {
                t.taint_next = false;
            }
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
            let (out, first) = place_call(st, choice, index, id.as_deref());
            if first {
                // What came before the call goes out before it: the choice's text, and the
                // arguments of the call before it.
                flush_text(st, choice);
                if let Some(prev) = st.last_call.get(&choice).copied() {
                    flush_call(st, choice, prev);
                }
                call_redactor(st, choice, out)?;
                let id_seen = id.clone().filter(|i| !i.is_empty());
                st.slots.insert((choice, index), Slot { out, id: id_seen });
                st.last_call.insert(choice, out);
            }
            // Only a call's first fragment names it, as OpenAI streams them: some servers
            // (llama-cpp-python) repeat the id and name in every fragment, which the SDKs'
            // stream helpers would concatenate into `get_timeget_time...`.
            let (id, name) = if first { (id, name) } else { (None, None) };
            let safe = call_redactor(st, choice, out)?.push(arguments.as_bytes());
            // The fragment naming the call goes out even when its arguments are held back.
            if id.is_some() || name.is_some() || !safe.is_empty() {
                st.pending.push_back(Delta::ToolCall {
                    choice,
                    index: out,
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
            // They spell the answer's tokens out again: a key in one token (or JSON-escaped)
            // is scrubbed here, one spread over several tokens is caught by the text's
            // redactor, which they wait behind.
            let scrubbed = st.redactor.scrub_text(&logprobs.to_string());
            let mut logprobs = serde_json::from_str(&scrubbed).unwrap_or(Value::Null);
            if openai::logprobs_spell_key(&st.redactor, &logprobs) {
                withhold(&mut logprobs, &["content", "refusal"]);
            }
            match st.texts.get_mut(&choice) {
                None => st.pending.push_back(Delta::Logprobs { choice, logprobs }),
                Some(t) => {
                    t.logprobs.push_back((logprobs, t.taint_next));
                    t.taint_next = false;
                    if !t.redactor.holding() {
                        release_logprobs(st, choice);
                    } else if t.logprobs.len() > MAX_HELD_LOGPROBS
                        && let Some((mut logprobs, _)) = t.logprobs.pop_front()
                    {
                        withhold(&mut logprobs, &["content"]);
                        st.pending.push_back(Delta::Logprobs { choice, logprobs });
                    }
                }
            }
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

/// The index a call fragment goes out on, and whether it starts a call. A fragment under an
/// index already used but with another id starts a new call on the next free index (Ollama
/// gives every call index 0, each with its own id); id-less fragments under that index then
/// go to it. The same id again (llama-cpp-python repeats it) is the same call.
fn place_call(st: &State, choice: u32, index: u32, id: Option<&str>) -> (u32, bool) {
    let free = |from: u32| {
        (from..)
            .chain(0..from)
            .find(|i| !st.calls.contains_key(&(choice, *i)))
            .unwrap_or(from)
    };
    match st.slots.get(&(choice, index)) {
        None => (free(index), true),
        Some(Slot { id: Some(seen), .. }) if id.is_some_and(|id| !id.is_empty() && id != seen) => {
            (free(0), true)
        }
        Some(slot) => (slot.out, false),
    }
}

/// `fields` of a `logprobs` object set to null: tokens that cannot be sent.
fn withhold(logprobs: &mut Value, fields: &[&str]) {
    if let Some(o) = logprobs.as_object_mut() {
        for f in fields {
            if o.contains_key(*f) {
                o.insert((*f).to_string(), Value::Null);
            }
        }
    }
}

fn text_state(st: &mut State, choice: u32) -> Result<&mut Text> {
    if !st.texts.contains_key(&choice) && st.texts.len() >= MAX_CHOICES as usize {
        return Err(too_many(st.provider, "choices"));
    }
    let template = &st.redactor;
    Ok(st.texts.entry(choice).or_insert_with(|| Text {
        redactor: template.fresh(),
        logprobs: VecDeque::new(),
        taint_next: false,
    }))
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
        "{} sent an invalid answer: more {what} than the request asked for",
        p.service()
    ))
}

/// Sends what a choice's text redactor holds, then the log probabilities that waited for it.
fn flush_text(st: &mut State, choice: u32) {
    if let Some(t) = st.texts.get_mut(&choice) {
        let rest = t.redactor.finish();
        if !rest.is_empty() {
            st.pending.push_back(Delta::Text {
                choice,
                text: String::from_utf8_lossy(&rest).into_owned(),
            });
        }
        release_logprobs(st, choice);
    }
}

/// Sends a choice's queued log probabilities, those spelling a key with their tokens withheld.
fn release_logprobs(st: &mut State, choice: u32) {
    if let Some(t) = st.texts.get_mut(&choice) {
        for (mut logprobs, tainted) in t.logprobs.drain(..) {
            if tainted {
                withhold(&mut logprobs, &["content"]);
            }
            st.pending.push_back(Delta::Logprobs { choice, logprobs });
        }
    }
}

/// Sends what one call's argument redactor holds.
fn flush_call(st: &mut State, choice: u32, index: u32) {
    if let Some(r) = st.calls.get_mut(&(choice, index)) {
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

/// Sends what one choice's redactors still hold: its text, then its calls' arguments.
fn flush_choice(st: &mut State, choice: u32) {
    flush_text(st, choice);
    let indexes: Vec<u32> = st
        .calls
        .range((choice, 0)..=(choice, u32::MAX))
        .map(|(&(_, i), _)| i)
        .collect();
    for index in indexes {
        flush_call(st, choice, index);
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
        run_n(chunks, MAX_CHOICES).await
    }

    async fn run_n(chunks: &[serde_json::Value], n: u32) -> Vec<Result<Delta>> {
        let chunks: Vec<String> = chunks.iter().map(ToString::to_string).collect();
        run_raw(&chunks, n).await
    }

    async fn run_raw(chunks: &[String], n: u32) -> Vec<Result<Delta>> {
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
            n,
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
                                 "function": {"name": "note", "arguments": "{"}}),
            ),
            call_chunk(
                0,
                json!({"index": 1, "id": "call_2", "type": "function",
                                 "function": {"name": "note", "arguments": "{"}}),
            ),
            call_chunk(
                0,
                json!({"index": 0, "function": {"arguments": "\"k\":\"sk-pr"}}),
            ),
            text_chunk(1, "sk-proj-ST"),
            call_chunk(
                0,
                json!({"index": 1, "function": {"arguments": "\"k\":\"sk-"}}),
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
            r#"{"choices":[{"index":0,"delta":{},"logprobs":{"content":[{"token":"\u0073k-proj-STREAMKEY0123456789"}]},"finish_reason":null}]}"#
                .into(),
        );
        let deltas = ok(run_raw(&chunks, 2).await);
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
            Delta::Logprobs { choice: 0, logprobs } if logprobs["content"][0]["token"] == "[REDACTED]"
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

    /// A chunk of choice 0's text with its log probabilities, one per token.
    fn text_with_logprobs(tokens: &[&str]) -> serde_json::Value {
        let content: Vec<_> = tokens
            .iter()
            .map(
                |t| json!({"token": t, "logprob": -0.1, "bytes": t.as_bytes(), "top_logprobs": []}),
            )
            .collect();
        json!({"choices": [{"index": 0, "delta": {"content": tokens.concat()},
                            "logprobs": {"content": content}, "finish_reason": null}]})
    }

    #[tokio::test]
    async fn logprobs_wait_for_their_text_and_never_spell_a_key() {
        let deltas = ok(run(&[
            text_with_logprobs(&["Key", ":", " sk", "-proj", "-ST"]),
            text_with_logprobs(&["REAM", "KEY", "0123456789", "."]),
            // A possible start that is not one: its log probabilities go out whole, after it.
            text_with_logprobs(&[" s"]),
            text_with_logprobs(&["ure"]),
            finish_chunk(0, "stop"),
        ])
        .await);
        let (texts, _) = reassemble(&deltas);
        assert_eq!(texts[&0], "Key: [REDACTED]. sure");
        let shown: Vec<String> = deltas
            .iter()
            .filter_map(|d| match d {
                Delta::Text { text, .. } => Some(format!("text {text}")),
                Delta::Logprobs { logprobs, .. } => Some(format!(
                    "logprobs {}",
                    logprobs["content"]
                        .as_array()
                        .map(|c| c.iter().map(|t| t["token"].as_str().unwrap()).collect())
                        .unwrap_or_else(|| "(withheld)".to_string())
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            shown,
            [
                "text Key: ",
                "text [REDACTED].",
                "logprobs (withheld)",
                "logprobs (withheld)",
                "text  ",
                "text sure",
                "logprobs  s",
                "logprobs ure",
            ],
            "{deltas:?}"
        );
        // However many wait behind held text, a bounded number is kept.
        let mut chunks = vec![text_with_logprobs(&["sk-"])];
        let empty = json!({"choices": [{"index": 0, "delta": {},
                                        "logprobs": {"content": []}, "finish_reason": null}]});
        chunks.extend(std::iter::repeat_n(empty, MAX_HELD_LOGPROBS + 10));
        chunks.push(finish_chunk(0, "stop"));
        let deltas = ok(run(&chunks).await);
        let first_text = deltas.iter().position(|d| matches!(d, Delta::Text { .. }));
        let logprobs = deltas
            .iter()
            .filter(|d| matches!(d, Delta::Logprobs { .. }))
            .count();
        assert_eq!(logprobs, MAX_HELD_LOGPROBS + 11);
        assert!(matches!(
            &deltas[..11],
            [Delta::Logprobs { logprobs, .. }, ..] if logprobs["content"].is_null()
        ));
        assert_eq!(
            first_text,
            Some(11),
            "the ones past the bound went out early"
        );
    }

    /// Ollama gives every call index 0, each with its own id (ollama/ollama#15457).
    #[tokio::test]
    async fn calls_sharing_an_index_get_their_own() {
        let deltas = ok(run(&[
            call_chunk(
                0,
                json!({"index": 0, "id": "call_a", "type": "function",
                       "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}),
            ),
            call_chunk(
                0,
                json!({"index": 0, "id": "call_b", "type": "function",
                       "function": {"name": "get_time", "arguments": "{\"tz\":"}}),
            ),
            call_chunk(
                0,
                json!({"index": 0, "function": {"arguments": "\"UTC\"}"}}),
            ),
            finish_chunk(0, "tool_calls"),
        ])
        .await);
        let (_, calls) = reassemble(&deltas);
        assert_eq!(
            calls,
            BTreeMap::from([
                (
                    (0, 0),
                    (
                        "call_a".into(),
                        "get_weather".into(),
                        r#"{"city":"Oslo"}"#.into()
                    )
                ),
                (
                    (0, 1),
                    ("call_b".into(), "get_time".into(), r#"{"tz":"UTC"}"#.into())
                ),
            ])
        );
    }

    #[tokio::test]
    async fn what_was_held_goes_out_before_the_next_call() {
        let deltas = ok(run(&[
            // Both end on what may be the key's start.
            text_chunk(0, "Looking it up, s"),
            call_chunk(
                0,
                json!({"index": 0, "id": "call_1", "type": "function",
                       "function": {"name": "f", "arguments": "{\"a\":\"s"}}),
            ),
            call_chunk(
                0,
                json!({"index": 1, "id": "call_2", "type": "function",
                       "function": {"name": "g", "arguments": "{}"}}),
            ),
            finish_chunk(0, "tool_calls"),
        ])
        .await);
        let order: Vec<String> = deltas
            .iter()
            .map(|d| match d {
                Delta::Text { text, .. } => format!("text {text}"),
                Delta::ToolCall {
                    index, arguments, ..
                } => format!("call {index} {arguments}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            order[..5],
            [
                "text Looking it up, ",
                "text s",
                "call 0 {\"a\":\"",
                "call 0 s",
                "call 1 {}"
            ],
            "{order:?}"
        );
    }

    #[tokio::test]
    async fn a_choice_past_n_is_a_broken_answer() {
        let out = run_n(&[text_chunk(0, "a"), text_chunk(1, "b")], 1).await;
        assert!(matches!(&out[0], Ok(Delta::Text { choice: 0, .. })));
        assert!(
            matches!(out.last(), Some(Err(Error::Upstream(m))) if m.contains("choices")),
            "{out:?}"
        );
        let out = run_n(&[finish_chunk(2, "stop")], 2).await;
        assert!(matches!(out.last(), Some(Err(Error::Upstream(_)))));
    }
}
