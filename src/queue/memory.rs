//! The in-memory twin of the file spool, for tests of the queue's users.
//!
//! Owns nothing durable: it keeps entries in a map and changes their state
//! with the same [`Entry::apply`] as the spool, so a runner or an SMTP
//! server tested against it sees the same states. It never touches the
//! disk, the network or a real clock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::entry::{Attempt, Entry, Envelope, State};
use super::schedule::Schedule;
use super::spool::{QueueId, unix};
use super::{Clock, Listing, Queue, QueueError};

/// A queue that lives in memory.
pub struct MemoryQueue {
    schedule: Schedule,
    clock: Arc<dyn Clock>,
    entries: Mutex<BTreeMap<QueueId, (Entry, Vec<u8>)>>,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new(schedule: Schedule, clock: Arc<dyn Clock>) -> MemoryQueue {
        MemoryQueue {
            schedule,
            clock,
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    fn with<T>(
        &self,
        id: &QueueId,
        f: impl FnOnce(&mut Entry, &[u8]) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (e, m) = map
            .get_mut(id)
            .ok_or_else(|| QueueError::NotFound(id.clone()))?;
        // Work on a copy so a refused change leaves the entry untouched,
        // as the spool does.
        let mut copy = e.clone();
        let out = f(&mut copy, m)?;
        *e = copy;
        Ok(out)
    }
}

impl Queue for MemoryQueue {
    fn enqueue_made<'m>(
        &self,
        envelope: &Envelope,
        make: &dyn Fn(&QueueId) -> std::borrow::Cow<'m, [u8]>,
    ) -> Result<QueueId, QueueError> {
        if envelope.recipients.is_empty() {
            return Err(QueueError::NoRecipients);
        }
        let now = self.clock.now();
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut id = QueueId::generate(now);
        while map.contains_key(&id) {
            id = QueueId::generate(now);
        }
        let message = make(&id);
        let entry = Entry::new(id.clone(), unix(now), message.len() as u64, envelope);
        map.insert(id.clone(), (entry, message.to_vec()));
        Ok(id)
    }

    fn entries(&self) -> Result<Listing, QueueError> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Listing {
            entries: map.values().map(|(e, _)| e.clone()).collect(),
            corrupt: Vec::new(),
        })
    }

    fn entry(&self, id: &QueueId) -> Result<Entry, QueueError> {
        self.with(id, |e, _| Ok(e.clone()))
    }

    fn message(&self, id: &QueueId) -> Result<Vec<u8>, QueueError> {
        self.with(id, |_, m| Ok(m.to_vec()))
    }

    fn record(
        &self,
        id: &QueueId,
        rcpt: usize,
        result: &Attempt,
        now: i64,
    ) -> Result<State, QueueError> {
        self.with(id, |e, _| {
            super::apply(e, rcpt, result, now, &self.schedule)
        })
    }

    fn mark_notified(&self, id: &QueueId, rcpts: &[usize]) -> Result<(), QueueError> {
        self.with(id, |e, _| super::mark_notified(id, e, rcpts))
    }

    fn mark_warned(&self, id: &QueueId) -> Result<(), QueueError> {
        self.with(id, |e, _| {
            e.warned = true;
            Ok(())
        })
    }

    fn remove(&self, id: &QueueId) -> Result<(), QueueError> {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (e, _) = map
            .get(id)
            .ok_or_else(|| QueueError::NotFound(id.clone()))?;
        super::check_done(e)?;
        map.remove(id);
        Ok(())
    }

    fn schedule(&self) -> &Schedule {
        &self.schedule
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Address, Failure, ManualClock};
    use super::*;
    use crate::status::Class;

    #[test]
    fn refused_change_leaves_the_entry_untouched() {
        let q = MemoryQueue::new(Schedule::default(), Arc::new(ManualClock::at(10)));
        let env = Envelope {
            recipients: vec![Address::new("a@b.test")],
            ..Envelope::default()
        };
        let id = q.enqueue(&env, b"m").unwrap();
        assert_eq!(q.entry(&id).unwrap().arrival, 10);
        let before = q.entry(&id).unwrap();
        let err = q.mark_notified(&id, &[0]).unwrap_err().to_string();
        assert!(err.ends_with("recipient 0 is pending, not failed"), "{err}");
        assert_eq!(q.entry(&id).unwrap(), before);
        let perm = Attempt::Failed(Failure {
            class: Class::Perm,
            detail: (1, 1),
            diagnostic: "x-unix; no".into(),
            remote: None,
        });
        q.record(&id, 0, &perm, 11).unwrap();
        assert_eq!(
            q.due(11).unwrap(),
            vec![id.clone()],
            "unreported failure is due"
        );
        assert!(matches!(
            q.enqueue(&Envelope::default(), b"m"),
            Err(QueueError::NoRecipients)
        ));
    }
}
