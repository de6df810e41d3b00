//! Upstream server-sent events to [`Delta`]s, with an idle timeout and a clear error when the
//! upstream stops before the answer is complete.
//!
//! The key sent upstream is scrubbed twice over: from each event before it is parsed (so an
//! `error` event quoting it yields a clean message), and from the text across deltas (a key
//! split over two deltas is held back until it is known to be one, then replaced).

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};

use super::chat::Delta;
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
    idle: Duration,
    /// When the stream is cut whatever it is doing, so its reservation is settled well before
    /// the ledger would take it for a dead request's ([`MAX_CALL_SECS`]).
    ///
    /// [`MAX_CALL_SECS`]: crate::cost::ledger::MAX_CALL_SECS
    deadline: tokio::time::Instant,
    /// The key that was sent, looked for in the events and in the text.
    redactor: Redactor,
}

pub fn deltas(
    provider: Provider,
    resp: reqwest::Response,
    idle: Duration,
    redactor: Redactor,
) -> DeltaStream {
    let state = State {
        provider,
        events: Box::pin(resp.bytes_stream().eventsource()),
        anthropic: anthropic::StreamState::default(),
        pending: VecDeque::new(),
        finished: false,
        done: false,
        idle,
        deadline: tokio::time::Instant::now()
            + Duration::from_secs(crate::cost::ledger::MAX_CALL_SECS),
        redactor,
    };
    Box::pin(futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(d) = st.pending.pop_front() {
                return Some((Ok(d), st));
            }
            if st.done {
                return None;
            }
            match next(&mut st).await {
                Ok(()) => continue,
                Err(e) => {
                    st.done = true;
                    let e = st.redactor.scrub_error(e);
                    return Some((Err(e), st));
                }
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
        match d {
            Delta::Text { choice, text } => {
                let safe = st.redactor.push(text.as_bytes());
                if !safe.is_empty() {
                    st.pending.push_back(Delta::Text {
                        choice,
                        text: String::from_utf8_lossy(&safe).into_owned(),
                    });
                }
            }
            other => {
                // Text held back as a possible key's start goes out before what follows it.
                flush(st);
                if matches!(other, Delta::Finish { .. }) {
                    st.finished = true;
                }
                st.pending.push_back(other);
            }
        }
    }
    Ok(())
}

/// Sends the text the redactor still holds (the answer's text has ended, or paused for a
/// finish reason or a usage report).
fn flush(st: &mut State) {
    let rest = st.redactor.finish();
    if !rest.is_empty() {
        st.pending.push_back(Delta::Text {
            choice: 0,
            text: String::from_utf8_lossy(&rest).into_owned(),
        });
    }
}

fn ev_is(event: &eventsource_stream::Event, kind: &str) -> bool {
    event.event == kind || event.data.contains(&format!("\"type\":\"{kind}\""))
}
