//! The durable queue: spool, retry schedule, bounces.
//!
//! Owns what happens to a message between the SMTP server's `250` and the
//! last recipient's delivery: the entry on disk ([`spool`], in the format
//! of [`entry`]), per-recipient state and when to try again ([`schedule`]),
//! and the RFC 3464 report when a recipient fails ([`bounce`]). The
//! [`Queue`] trait has two backends, the file [`Spool`] and the in-memory
//! [`MemoryQueue`] for tests of its users (OpenSMTPD's queue backends).
//!
//! The server calls [`Queue::enqueue`] after DATA and answers 250 only once
//! it returned (mta-semantics B.8). The runner (`crate::runner`) takes the due
//! entries, delivers each recipient, calls [`Queue::record`] before acting
//! on the result, queues a DSN for failed recipients, marks them notified,
//! and removes the entry once every recipient is final. Local submissions
//! (`postroom sendmail`) arrive as files in the spool's maildrop
//! ([`maildrop`]); [`Queue::pickup`], called at the start of every runner
//! pass, turns them into entries.
//!
//! This module never opens a socket, never runs `deliver` or any other
//! program, and never reads the clock except through a [`Clock`].

pub mod bounce;
pub mod entry;
pub mod maildrop;
pub mod memory;
pub mod schedule;
pub mod spool;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::status::Outcome;

pub use entry::{Address, Attempt, Entry, Envelope, Failure, Recipient, State};
pub use memory::MemoryQueue;
pub use schedule::Schedule;
pub use spool::{QueueId, Recovery, Spool};

/// Where the queue reads the time of arrival.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to, for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    /// A clock standing at `unix` seconds.
    pub fn at(unix: i64) -> ManualClock {
        ManualClock(Mutex::new(
            UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64),
        ))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An entry that could not be read, and where it went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corrupt {
    /// Its name in `active/` (usually the queue id).
    pub name: String,
    /// Where it is now, under `corrupt/`.
    pub moved_to: PathBuf,
    /// What was wrong, lowercase.
    pub reason: String,
}

/// `corrupt: NAME moved to PATH: REASON`, the one line that reports it
/// (mailq listing, the server's log).
impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "corrupt: {} moved to {}: {}",
            self.name,
            self.moved_to.display(),
            self.reason
        )
    }
}

/// The whole queue, for `postroom queue` (like mailq) and the runner.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// Readable entries, oldest first.
    pub entries: Vec<Entry>,
    /// Entries moved to `corrupt/` while listing.
    pub corrupt: Vec<Corrupt>,
}

/// What one [`Queue::pickup`] did with the maildrop.
#[derive(Clone, Debug, Default)]
pub struct Pickup {
    /// Maildrop files queued and removed: `(file name, queue id)`.
    pub queued: Vec<(String, QueueId)>,
    /// Unreadable files moved to `corrupt/` (never deleted).
    pub corrupt: Vec<Corrupt>,
    /// Abandoned `.tmp-` files older than a day, removed.
    pub removed_stale: Vec<String>,
    /// Files left where they are for the next pickup, with why
    /// (lowercase): unreadable for now, or the queue refused them.
    pub errors: Vec<String>,
}

/// Errors of the queue. All are temporary for the SMTP client (451).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// An OS call failed.
    #[error("queue: {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// No such entry.
    #[error("queue: no entry {0}")]
    NotFound(QueueId),
    /// The entry could not be read and was moved aside.
    #[error("queue: entry {} is corrupt ({}), moved to {}", .0.name, .0.reason, .0.moved_to.display())]
    Corrupt(Corrupt),
    /// The envelope has no recipient.
    #[error("queue: refusing an envelope without recipients")]
    NoRecipients,
    /// A result could not be recorded.
    #[error("queue: entry {id}: {source}")]
    Apply {
        /// The entry.
        id: QueueId,
        /// Why.
        source: entry::ApplyError,
    },
    /// [`Queue::remove`] of an entry with work left.
    #[error("queue: entry {id} is not done: {why}")]
    NotDone {
        /// The entry.
        id: QueueId,
        /// What is left, lowercase.
        why: String,
    },
    /// The crash test stopped enqueue here (never returned outside tests).
    #[doc(hidden)]
    #[error("queue: simulated crash while writing {0}")]
    Crashed(QueueId),
}

impl QueueError {
    /// The outcome to answer the SMTP client with: every queue error is
    /// temporary, `451 4.3.0` (mta-semantics B.8 step 3), so the client
    /// keeps the message and tries again.
    pub fn outcome(&self) -> Outcome {
        Outcome::temp((3, 0), self.to_string())
    }
}

/// A queue backend.
///
/// Every method that changes state returns only once the change is
/// durable, so a caller may act on it (send a DSN, remove an entry) right
/// away. Recipients are named by their index in the envelope.
pub trait Queue: Send + Sync {
    /// Takes a message (bytes as received, our `Received:` included) and
    /// returns its id once it is safe on disk: only then may the SMTP
    /// server answer 250 (mta-semantics B.8).
    fn enqueue(&self, envelope: &Envelope, message: &[u8]) -> Result<QueueId, QueueError> {
        self.enqueue_made(envelope, &|_| std::borrow::Cow::Borrowed(message))
    }

    /// Like [`Queue::enqueue`], with the message made by `make` once the
    /// entry's id is chosen: the server's `Received:` field names it, as
    /// sendmail's and Postfix's do.
    fn enqueue_made<'m>(
        &self,
        envelope: &Envelope,
        make: &dyn Fn(&QueueId) -> std::borrow::Cow<'m, [u8]>,
    ) -> Result<QueueId, QueueError>;

    /// Every entry, oldest first; unreadable ones are moved aside and
    /// listed in [`Listing::corrupt`].
    fn entries(&self) -> Result<Listing, QueueError>;

    /// One entry.
    fn entry(&self, id: &QueueId) -> Result<Entry, QueueError>;

    /// One entry's message bytes.
    fn message(&self, id: &QueueId) -> Result<Vec<u8>, QueueError>;

    /// Records one attempt for recipient `rcpt` at `now` (unix seconds)
    /// and returns the recipient's new state (see [`Entry::apply`]).
    fn record(
        &self,
        id: &QueueId,
        rcpt: usize,
        result: &Attempt,
        now: i64,
    ) -> Result<State, QueueError>;

    /// Marks failed recipients as reported, after their DSN was queued
    /// (or, for a null sender, logged).
    fn mark_notified(&self, id: &QueueId, rcpts: &[usize]) -> Result<(), QueueError>;

    /// Marks that the delay warning was queued.
    fn mark_warned(&self, id: &QueueId) -> Result<(), QueueError>;

    /// Removes a finished entry: every recipient delivered or failed and
    /// every failure reported. Refuses anything else, so no mistake of a
    /// runner can drop a message that still has work.
    fn remove(&self, id: &QueueId) -> Result<(), QueueError>;

    /// Records one attempt like [`Queue::record`]; when that leaves the
    /// entry with nothing to do (every recipient delivered, or failed and
    /// reported) the entry is removed. Returns the recipient's new state
    /// and whether the entry is gone. A backend may do both in one durable
    /// step.
    fn record_or_remove(
        &self,
        id: &QueueId,
        rcpt: usize,
        result: &Attempt,
        now: i64,
    ) -> Result<(State, bool), QueueError> {
        let state = self.record(id, rcpt, result, now)?;
        // `remove` checks whether the entry is done and refuses it if not.
        match self.remove(id) {
            Ok(()) => Ok((state, true)),
            Err(QueueError::NotDone { .. }) => Ok((state, false)),
            Err(e) => Err(e),
        }
    }

    /// The retry policy in use.
    fn schedule(&self) -> &Schedule;

    /// Turns the local submissions waiting in the maildrop
    /// (`postroom sendmail`, see [`maildrop`]) into entries. A backend
    /// without a maildrop has nothing to pick up.
    fn pickup(&self) -> Result<Pickup, QueueError> {
        Ok(Pickup::default())
    }

    /// The ids of entries with work at `now` (see [`Entry::is_due`]),
    /// oldest first.
    fn due(&self, now: i64) -> Result<Vec<QueueId>, QueueError> {
        let s = self.schedule();
        Ok(self
            .entries()?
            .entries
            .into_iter()
            .filter(|e| e.is_due(now, s))
            .map(|e| e.id)
            .collect())
    }
}

/// Shared by both backends: sets `notified` on failed recipients.
fn mark_notified(id: &QueueId, e: &mut Entry, rcpts: &[usize]) -> Result<(), QueueError> {
    for &i in rcpts {
        match e.recipients.get_mut(i).map(|r| &mut r.state) {
            Some(State::Failed { notified, .. }) => *notified = true,
            Some(other) => {
                return Err(QueueError::NotDone {
                    id: id.clone(),
                    why: format!("recipient {i} is {}, not failed", other.word()),
                });
            }
            None => {
                return Err(QueueError::Apply {
                    id: id.clone(),
                    source: entry::ApplyError::NoRecipient(i),
                });
            }
        }
    }
    Ok(())
}

/// Shared by both backends: `result` applied to recipient `rcpt` of `e`
/// (see [`Entry::apply`]), its error as a [`QueueError`].
fn apply(
    e: &mut Entry,
    rcpt: usize,
    result: &Attempt,
    now: i64,
    schedule: &Schedule,
) -> Result<State, QueueError> {
    let id = e.id.clone();
    e.apply(rcpt, result, now, schedule)
        .cloned()
        .map_err(|source| QueueError::Apply { id, source })
}

/// Shared by both backends: whether an entry may be removed.
fn check_done(e: &Entry) -> Result<(), QueueError> {
    for (i, r) in e.recipients.iter().enumerate() {
        let why = match &r.state {
            State::Delivered | State::Failed { notified: true, .. } => continue,
            State::Failed { .. } => format!("recipient {i} failed and was not reported"),
            other => format!("recipient {i} is {}", other.word()),
        };
        return Err(QueueError::NotDone {
            id: e.id.clone(),
            why,
        });
    }
    Ok(())
}

/// The queue as `mailq` shows it: one block per entry (id, size, arrival,
/// sender), then one line per recipient with its state, attempts, next
/// retry and last error. Times are UTC.
pub fn mailq(listing: &Listing) -> String {
    let mut s = String::new();
    if listing.entries.is_empty() {
        s.push_str("Mail queue is empty\n");
    } else {
        let _ = writeln!(
            s,
            "{:<26} {:>9} {:<20} Sender/Recipient",
            "Queue ID", "Size", "Arrival Time"
        );
    }
    let mut total = 0;
    for e in &listing.entries {
        total += e.size;
        let sender = if e.envelope.sender.is_empty() {
            "<>"
        } else {
            &e.envelope.sender
        };
        let _ = writeln!(
            s,
            "{:<26} {:>9} {:<20} {sender}",
            e.id,
            e.size,
            date(e.arrival)
        );
        for r in &e.recipients {
            let mut line = format!("{:>58}{} {}", "", r.state.word(), r.address.address);
            if r.attempts > 0 {
                let _ = write!(
                    line,
                    ", {} attempt{}",
                    r.attempts,
                    if r.attempts == 1 { "" } else { "s" }
                );
            }
            if let State::Deferred { next, .. } = r.state {
                let _ = write!(line, ", next {}", date(next));
            }
            s.push_str(&line);
            s.push('\n');
            if let Some(err) = r.state.error() {
                let _ = writeln!(
                    s,
                    "{:>60}({} {})",
                    "",
                    err.status(),
                    crate::diag::one_line(&err.diagnostic)
                );
            }
        }
        s.push('\n');
    }
    if !listing.entries.is_empty() {
        let n = listing.entries.len();
        let _ = writeln!(
            s,
            "-- {total} octets in {n} request{}.",
            if n == 1 { "" } else { "s" }
        );
    }
    for c in &listing.corrupt {
        let _ = writeln!(s, "{c}");
    }
    s
}

/// `2026-11-26 12:00:00` in UTC.
fn date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map_or_else(
        || unix.to_string(),
        |d| d.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Class;

    #[test]
    fn mailq_shows_state_next_retry_and_last_error() {
        let q = MemoryQueue::new(
            Schedule {
                jitter_percent: 0,
                ..Schedule::default()
            },
            std::sync::Arc::new(ManualClock::at(1_795_694_400)),
        );
        let env = Envelope {
            sender: "alice@example.test".into(),
            recipients: vec![
                Address::new("bob@relay.test"),
                Address::new("carol@relay.test"),
            ],
            ..Envelope::default()
        };
        let id = q.enqueue(&env, b"Subject: x\r\n\r\nhi\r\n").unwrap();
        let fail = Attempt::Failed(Failure {
            class: Class::Temp,
            detail: (4, 1),
            diagnostic: "smtp; connect to primary.test: Connection refused\r\n".into(),
            remote: None,
        });
        q.record(&id, 0, &fail, 1_795_694_400).unwrap();
        let got = mailq(&q.entries().unwrap());
        let want = format!(
            "{:<26} {:>9} {:<20} Sender/Recipient\n\
             {id}        18 2026-11-26 12:00:00  alice@example.test\n\
             {:>58}deferred bob@relay.test, 1 attempt, next 2026-11-26 12:05:00\n\
             {:>60}(4.4.1 smtp; connect to primary.test: Connection refused??)\n\
             {:>58}pending carol@relay.test\n\
             \n-- 18 octets in 1 request.\n",
            "Queue ID", "Size", "Arrival Time", "", "", ""
        );
        assert_eq!(got, want);
        assert_eq!(mailq(&Listing::default()), "Mail queue is empty\n");
    }

    #[test]
    fn every_queue_error_is_a_451_4_3_0() {
        let got = QueueError::NoRecipients.outcome();
        assert_eq!(got.smtp(), (451, "4.3.0".to_string()));
        assert_eq!(got.exit_code(), 75);
    }

    #[test]
    fn remove_refuses_an_entry_with_work_left() {
        let q = MemoryQueue::new(Schedule::default(), std::sync::Arc::new(ManualClock::at(0)));
        let env = Envelope {
            recipients: vec![Address::new("bob@relay.test")],
            ..Envelope::default()
        };
        let id = q.enqueue(&env, b"x").unwrap();
        let err = q.remove(&id).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("queue: entry {id} is not done: recipient 0 is pending")
        );
        let perm = Attempt::Failed(Failure {
            class: Class::Perm,
            detail: (1, 1),
            diagnostic: "smtp; 550".into(),
            remote: None,
        });
        q.record(&id, 0, &perm, 1).unwrap();
        let err = q.remove(&id).unwrap_err().to_string();
        assert!(
            err.ends_with("recipient 0 failed and was not reported"),
            "{err}"
        );
        q.mark_notified(&id, &[0]).unwrap();
        q.remove(&id).unwrap();
        assert!(matches!(q.entry(&id), Err(QueueError::NotFound(_))));
    }
}
