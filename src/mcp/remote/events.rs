//! A tool server's event stream, read one bounded event at a time: the parser holds an event
//! until the blank line that ends it, so a server that never ends one would otherwise grow
//! Maestra's memory without bound. The first event over the limit ends the stream with an
//! error, and nothing more is read.

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use sse_stream::SseStream;

use super::Events;
use crate::error::{Error, Result};

/// `resp`'s body as events of at most `limit` bytes each; `who` names the server in errors.
pub(super) fn bounded(resp: reqwest::Response, limit: usize, who: String) -> Events {
    let state = (resp.bytes_stream().boxed(), EventLimit::new(limit), false);
    let bytes = stream::unfold(state, move |(mut inner, mut bound, done)| {
        let who = who.clone();
        async move {
            if done {
                return None;
            }
            let item: Result<Bytes> = match inner.next().await? {
                Ok(chunk) if bound.admits(&chunk) => Ok(chunk),
                Ok(_) => Err(Error::Upstream(format!(
                    "{who} sent an event over {limit} bytes; at most that is read"
                ))),
                Err(e) if e.is_timeout() => Err(Error::UpstreamTimeout(format!(
                    "{who} did not finish its answer in time"
                ))),
                Err(_) => Err(Error::Upstream(format!(
                    "{who} closed the connection mid-stream"
                ))),
            };
            let done = item.is_err();
            Some((item, (inner, bound, done)))
        }
    });
    SseStream::from_bytes_stream(bytes).boxed()
}

/// The bytes of the event being read, so far: what the parser holds until the blank line that
/// ends the event. Lines end with CR, LF or CRLF (the event-stream format allows each).
struct EventLimit {
    limit: usize,
    /// The event's finished lines, each with one byte for its end.
    event: usize,
    /// The line being read.
    line: usize,
    /// The last byte was a CR: an LF right after it ends no second line.
    after_cr: bool,
}

impl EventLimit {
    fn new(limit: usize) -> EventLimit {
        EventLimit {
            limit,
            event: 0,
            line: 0,
            after_cr: false,
        }
    }

    /// Whether the event being read is still within the limit once `chunk` is added.
    fn admits(&mut self, chunk: &[u8]) -> bool {
        for &b in chunk {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\r' | b'\n' => {
                    if self.line == 0 {
                        self.event = 0;
                    } else {
                        self.event += self.line + 1;
                        self.line = 0;
                    }
                    self.after_cr = b == b'\r';
                }
                _ => self.line += 1,
            }
            if self.event + self.line > self.limit {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_bounded_and_a_blank_line_starts_the_next() {
        let mut l = EventLimit::new(16);
        assert!(l.admits(b"data: 0123456\n\n"));
        // Each event alone fits, whatever the stream's length, with any line ending.
        for _ in 0..100 {
            assert!(l.admits(b"data: 01234\r\n\r\ndata: 012\r\rdata: 0\n"));
            assert!(l.admits(b"\n"));
        }
        // Split across chunks, a CRLF is still one line end, not a line and a blank one.
        let mut l = EventLimit::new(20);
        assert!(l.admits(b"data: 0123\r"));
        assert!(l.admits(b"\ndata: 1\n"));
        assert!(
            !l.admits(b"data: 2\n"),
            "three lines are one event of 27 bytes"
        );
        let mut l = EventLimit::new(16);
        assert!(!l.admits(&[b'x'; 17]), "a line with no end is bounded too");
    }
}
