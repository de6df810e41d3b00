//! What this process knows of the conversations it is writing turns to: enough to acknowledge
//! a turn before its commit only when nothing stored could refuse it.
//!
//! The commit refuses a turn for a foreign owner or a full conversation. A caller that read the
//! conversation's context has checked both, but other turns of the same conversation may have
//! been queued since. So a context read takes a [`Seen`]: the conversation's message count as
//! read, and how many messages this process had admitted to it just before. When the turn is
//! appended, the messages admitted since are added to that count; if the total fits, the
//! commit cannot refuse the turn (this process is the only one that appends turns) and it is
//! written behind. Anything the book cannot vouch for — a conversation deleted meanwhile, an
//! entry already dropped, a total that does not fit — is committed before the caller hears
//! back, so the store, not the book, decides.
//!
//! Every change to the book happens under one lock together with the turn's place in the
//! writer's queue, so a read that flushes the queue after taking its [`Seen`] also sees every
//! message that [`Seen`] counted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Basis, Seen, Turn};

/// Conversations the book follows, at most; a context read beyond it takes no [`Seen`] and its
/// turn is committed before the reply.
pub(super) const CONVERSATIONS: usize = 100_000;
/// How long a context read's [`Seen`] stays usable: longer than any request may take.
pub(super) const KEEP: Duration = Duration::from_secs(300);

#[derive(Default)]
pub(super) struct Book {
    /// Set once the store is closing: from then on every turn is committed before its reply.
    pub closing: bool,
    conversations: HashMap<String, Entry>,
    /// Turns acknowledged but not yet committed, over all conversations.
    behind: usize,
    next_epoch: u64,
}

struct Entry {
    /// Names this entry's count of admitted messages: a [`Seen`] of another epoch is void.
    epoch: u64,
    /// Messages admitted since the entry was made.
    admitted: u64,
    /// Turns acknowledged and not yet committed.
    behind: usize,
    /// Until when a [`Seen`] may still come back; `None` if none was handed out.
    keep_until: Option<Instant>,
}

impl Book {
    /// Notes a context read of conversation `id` about to start; `None` when the book is full.
    /// The caller fills in [`Seen::count`] from the read.
    pub fn watch(&mut self, id: &str, now: Instant) -> Option<Seen> {
        if !self.conversations.contains_key(id) && self.conversations.len() >= CONVERSATIONS {
            self.sweep(now);
            if self.conversations.len() >= CONVERSATIONS {
                return None;
            }
        }
        let entry = match self.conversations.get_mut(id) {
            Some(entry) => entry,
            None => {
                let epoch = self.epoch();
                self.conversations.entry(id.to_owned()).or_insert(Entry {
                    epoch,
                    admitted: 0,
                    behind: 0,
                    keep_until: None,
                })
            }
        };
        entry.keep_until = Some(now + KEEP);
        Some(Seen {
            epoch: entry.epoch,
            admitted: entry.admitted,
            count: 0,
        })
    }

    /// Admits `turn` to the queue: true if it may be acknowledged before its commit. The caller
    /// queues the turn before letting go of the book.
    pub fn admit(&mut self, turn: &Turn<'_>) -> bool {
        let added = turn.messages.len() as u64;
        let behind = !self.closing
            && match turn.basis {
                Basis::Unknown => false,
                Basis::Opens => true,
                Basis::Read(seen) => {
                    self.conversations
                        .get(turn.conversation_id)
                        .is_some_and(|e| {
                            e.epoch == seen.epoch
                                && seen
                                    .count
                                    .saturating_add(e.admitted.saturating_sub(seen.admitted))
                                    .saturating_add(added)
                                    <= turn.max_messages
                        })
                }
            };
        let entry = match (
            self.conversations.contains_key(turn.conversation_id),
            behind,
        ) {
            (true, _) => self.conversations.get_mut(turn.conversation_id),
            // Followed only while it has turns behind (so reads can wait for them) or a `Seen`
            // out: otherwise nobody compares against its count.
            (false, true) => {
                let epoch = self.epoch();
                Some(
                    self.conversations
                        .entry(turn.conversation_id.to_owned())
                        .or_insert(Entry {
                            epoch,
                            admitted: 0,
                            behind: 0,
                            keep_until: None,
                        }),
                )
            }
            (false, false) => None,
        };
        if let Some(entry) = entry {
            entry.admitted += added;
            if behind {
                entry.behind += 1;
                self.behind += 1;
            }
        }
        behind
    }

    /// A turn acknowledged before its commit has been written (or failed to be).
    pub fn written(&mut self, id: &str, now: Instant) {
        let Some(entry) = self.conversations.get_mut(id) else {
            return;
        };
        entry.behind = entry.behind.saturating_sub(1);
        self.behind = self.behind.saturating_sub(1);
        if entry.behind == 0 && entry.keep_until.is_none_or(|t| t <= now) {
            self.conversations.remove(id);
        }
    }

    /// Voids every [`Seen`] of conversation `id`, or of all for `None`: it is being deleted, so
    /// what was read of it before no longer holds.
    pub fn forget(&mut self, id: Option<&str>) {
        let mut epochs = Vec::new();
        for (key, _) in self.conversations.iter() {
            if id.is_none_or(|id| id == key) {
                epochs.push(key.clone());
            }
        }
        for key in epochs {
            let epoch = self.epoch();
            if let Some(entry) = self.conversations.get_mut(&key) {
                *entry = Entry {
                    epoch,
                    admitted: 0,
                    ..*entry
                };
            }
        }
    }

    /// Whether turns of conversation `id` (of any, for `None`) are acknowledged and not yet
    /// committed.
    pub fn is_behind(&self, id: Option<&str>) -> bool {
        match id {
            Some(id) => self.conversations.get(id).is_some_and(|e| e.behind > 0),
            None => self.behind > 0,
        }
    }

    /// Drops the entries nobody needs any more.
    pub fn sweep(&mut self, now: Instant) {
        self.conversations
            .retain(|_, e| e.behind > 0 || e.keep_until.is_some_and(|t| t > now));
    }

    fn epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversations::model::Message;

    fn messages(n: usize) -> Vec<Message> {
        (0..n)
            .map(|i| Message {
                id: format!("m{i}"),
                role: "user".into(),
                content: "x".into(),
                surface: String::new(),
                mode: String::new(),
                timestamp: 0,
                meta: serde_json::Value::Null,
            })
            .collect()
    }

    fn turn<'a>(id: &'a str, m: &'a [Message], basis: Basis) -> Turn<'a> {
        Turn {
            conversation_id: id,
            owner: "o",
            topic: "",
            surface: "",
            messages: m,
            max_messages: 10,
            basis,
        }
    }

    fn read(book: &mut Book, id: &str, count: u64, now: Instant) -> Basis {
        let seen = book.watch(id, now).unwrap();
        Basis::Read(Seen { count, ..seen })
    }

    /// Two turns answering the same read of a conversation with room for one: the second is
    /// not acknowledged before its commit, which will refuse it.
    #[test]
    fn turns_admitted_since_a_read_count_against_it() {
        let (mut book, now, m) = (Book::default(), Instant::now(), messages(2));
        let a = read(&mut book, "c", 7, now);
        let b = read(&mut book, "c", 7, now);
        assert!(book.admit(&turn("c", &m, a)));
        assert!(!book.admit(&turn("c", &m, b)));
        // A read after the first commit counts it, and finds the room gone too.
        book.written("c", now);
        let c = read(&mut book, "c", 9, now);
        assert!(!book.admit(&turn("c", &m, c)));
        // One that fits exactly goes behind.
        let d = read(&mut book, "d", 8, now);
        assert!(book.admit(&turn("d", &m, d)));
    }

    #[test]
    fn a_deleted_conversation_voids_what_was_read_of_it() {
        let (mut book, now, m) = (Book::default(), Instant::now(), messages(2));
        let (a, b) = (read(&mut book, "a", 0, now), read(&mut book, "b", 0, now));
        book.forget(Some("a"));
        assert!(!book.admit(&turn("a", &m, a)));
        assert!(book.admit(&turn("b", &m, b)));
        let c = read(&mut book, "c", 0, now);
        book.forget(None);
        assert!(!book.admit(&turn("c", &m, c)));
    }

    #[test]
    fn an_entry_dropped_meanwhile_voids_the_read_and_closing_stops_everything() {
        let (mut book, now, m) = (Book::default(), Instant::now(), messages(1));
        let a = read(&mut book, "a", 0, now);
        book.sweep(now + KEEP);
        assert!(!book.admit(&turn("a", &m, a)));
        assert!(!book.admit(&turn("x", &m, Basis::Unknown)));
        assert!(book.admit(&turn("n", &m, Basis::Opens)));
        book.closing = true;
        assert!(!book.admit(&turn("n2", &m, Basis::Opens)));
        let b = read(&mut book, "b", 0, now);
        assert!(!book.admit(&turn("b", &m, b)));
    }

    #[test]
    fn entries_last_while_turns_are_behind_or_a_read_may_come_back() {
        let (mut book, now, m) = (Book::default(), Instant::now(), messages(1));
        assert!(book.admit(&turn("n", &m, Basis::Opens)));
        assert!(book.is_behind(Some("n")) && book.is_behind(None));
        book.written("n", now);
        assert!(!book.is_behind(None));
        assert!(book.conversations.is_empty());
        let a = read(&mut book, "a", 0, now);
        assert!(book.admit(&turn("a", &m, a)));
        book.written("a", now);
        assert_eq!(
            book.conversations.len(),
            1,
            "a read of it may still come back"
        );
        book.sweep(now + KEEP);
        assert!(book.conversations.is_empty());
        // A turn nobody vouches for leaves nothing to follow.
        assert!(!book.admit(&turn("u", &m, Basis::Unknown)));
        assert!(book.conversations.is_empty());
    }

    #[test]
    fn a_full_book_hands_out_nothing() {
        let (mut book, now) = (Book::default(), Instant::now());
        for i in 0..CONVERSATIONS {
            assert!(book.watch(&format!("c{i}"), now).is_some());
        }
        assert!(book.watch("one-more", now).is_none());
        assert!(book.watch("c0", now).is_some(), "a followed one still is");
        // Once the reads are over, room is made.
        assert!(book.watch("one-more", now + KEEP).is_some());
    }
}
