//! The delivery pool: the queue runner of a running server.
//!
//! Owns the worker threads that deliver queue entries and the dispatcher
//! that feeds them. Entries with only local recipients go to `workers`
//! threads in parallel; an entry with a remote recipient goes to one of
//! `relay_lanes` threads chosen by the first remote domain, so the entries
//! for one destination go out one after the other in the order they are
//! handed out (arrival order: a backlog reaches a primary that comes back
//! in the order it was queued, over the relay's cached connection), and a
//! destination that stalls holds up one lane, never local delivery.
//! Entries the server (or the runner, for a DSN) has just queued arrive
//! by channel and are handed out at once
//! (sendmail's `DeliveryMode=background`, Postfix's incoming queue); every
//! `queue_interval`, and on a flush, the spool is listed and every due
//! entry is handed out. An entry is with at most one worker at a time (the
//! in-flight set), and a worker reads it afresh from the spool, so a stale
//! listing never delivers anything twice. Each job builds its runner from
//! the tables in use at that moment, so a reload takes effect for the next
//! entry.
//!
//! It never decides what a delivery means: that is [`crate::runner::Runner::run_entry`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::queue::entry::{Entry, Envelope};
use crate::queue::schedule::Schedule;
use crate::queue::spool::QueueId;
use crate::queue::{Listing, Pickup, Queue, QueueError};
use crate::runner::{Summary, report_corrupt};

/// The name of the flush marker in the spool directory: `postroom queue
/// flush` leaves it, the dispatcher takes it away and flushes.
pub const FLUSH: &str = "flush";

/// A [`Queue`] that tells the dispatcher about every entry queued through
/// it, so the entry is delivered without waiting for the next run.
pub struct Kicking {
    inner: Arc<dyn Queue>,
    kick: Mutex<Option<Sender<Entry>>>,
}

impl Kicking {
    /// Wraps `inner`; the entries it queues come out of the returned
    /// receiver, as queued (so the dispatcher need not read them back).
    pub fn new(inner: Arc<dyn Queue>) -> (Kicking, Receiver<Entry>) {
        let (tx, rx) = mpsc::channel();
        let k = Kicking {
            inner,
            kick: Mutex::new(Some(tx)),
        };
        (k, rx)
    }

    /// Stops telling (`delivery_mode = queue`): entries wait for a run.
    pub fn quiet(&self) {
        *self.kick.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Queue for Kicking {
    fn enqueue_made<'m>(
        &self,
        envelope: &Envelope,
        make: &dyn Fn(&QueueId) -> std::borrow::Cow<'m, [u8]>,
    ) -> Result<QueueId, QueueError> {
        let id = self.inner.enqueue_made(envelope, make)?;
        if let Some(tx) = &*self.kick.lock().unwrap_or_else(|p| p.into_inner()) {
            // A dispatcher that is gone (stopping) leaves it for the next
            // start; the entry is safe in the spool either way. It reads
            // only the id and the recipients, so arrival and size need
            // not be the spool's.
            let _ = tx.send(Entry::new(id.clone(), unix_now(), 0, envelope));
        }
        Ok(id)
    }

    fn entries(&self) -> Result<Listing, QueueError> {
        self.inner.entries()
    }

    fn entry(&self, id: &QueueId) -> Result<Entry, QueueError> {
        self.inner.entry(id)
    }

    fn message(&self, id: &QueueId) -> Result<Vec<u8>, QueueError> {
        self.inner.message(id)
    }

    fn record(
        &self,
        id: &QueueId,
        rcpt: usize,
        result: &crate::queue::entry::Attempt,
        now: i64,
    ) -> Result<crate::queue::entry::State, QueueError> {
        self.inner.record(id, rcpt, result, now)
    }

    fn mark_notified(&self, id: &QueueId, rcpts: &[usize]) -> Result<(), QueueError> {
        self.inner.mark_notified(id, rcpts)
    }

    fn mark_warned(&self, id: &QueueId) -> Result<(), QueueError> {
        self.inner.mark_warned(id)
    }

    fn remove(&self, id: &QueueId) -> Result<(), QueueError> {
        self.inner.remove(id)
    }

    fn record_or_remove(
        &self,
        id: &QueueId,
        rcpt: usize,
        result: &crate::queue::entry::Attempt,
        now: i64,
    ) -> Result<(crate::queue::entry::State, bool), QueueError> {
        self.inner.record_or_remove(id, rcpt, result, now)
    }

    fn schedule(&self) -> &Schedule {
        self.inner.schedule()
    }

    /// The maildrop's submissions, each kicked like an SMTP one.
    fn pickup(&self) -> Result<Pickup, QueueError> {
        let p = self.inner.pickup()?;
        if let Some(tx) = &*self.kick.lock().unwrap_or_else(|p| p.into_inner()) {
            for (_, id) in &p.queued {
                // Gone already (delivered) or unreadable (the next scan
                // moves it aside): nothing to hand out.
                if let Ok(e) = self.inner.entry(id) {
                    let _ = tx.send(e);
                }
            }
        }
        Ok(p)
    }
}

/// The entries with a worker now; a condition variable says when one is
/// done.
#[derive(Default)]
struct InFlight {
    ids: Mutex<HashSet<QueueId>>,
    done: Condvar,
}

impl InFlight {
    /// Takes `id` for a worker; false when one has it already.
    fn take(&self, id: &QueueId) -> bool {
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone())
    }

    fn finish(&self, id: &QueueId) {
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.done.notify_all();
    }

    /// Waits until no entry is with a worker, or `stop` is set.
    fn wait_idle(&self, stop: &AtomicBool) {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        while !ids.is_empty() && !stop.load(Ordering::SeqCst) {
            ids = self
                .done
                .wait_timeout(ids, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// What the pool needs from the process around it.
pub struct PoolConfig<'a> {
    /// Worker threads for local-only entries (`max_deliveries`).
    pub workers: usize,
    /// Threads for entries with remote recipients, one destination domain
    /// always on the same one (`relay_lanes`).
    pub relay_lanes: usize,
    /// Time between runs over the whole spool (`queue_interval`).
    pub interval: Duration,
    /// The spool directory, where the flush marker is looked for.
    pub spool_root: &'a Path,
    /// Set to stop: workers finish the entry they are in, then end.
    pub stop: &'a AtomicBool,
    /// Called when a flush starts (the relay forgets which destinations
    /// it left alone: a flush tries everything now).
    pub on_flush: &'a (dyn Fn() + Sync),
}

/// What the pool needs to know of an entry to hand it out: the domain of
/// its first remote recipient, or `None` when every recipient is local.
pub type LaneOf<'a> = dyn Fn(&Entry) -> Option<Vec<u8>> + Sync + 'a;

/// Runs the pool until `cfg.stop` is set. `job(id, force)` delivers one
/// entry (a fresh [`crate::runner::Runner`] each time); `lane_of` says
/// whether an entry goes to a relay lane; `log` gets each job's summary
/// lines; `kicks` brings the entries just queued. Says on `started`
/// once the entries found at start-up have all been tried, so a restart
/// behaves the same every time.
pub fn run(
    queue: &dyn Queue,
    cfg: &PoolConfig<'_>,
    job: &(dyn Fn(&QueueId, bool) -> Summary + Sync),
    lane_of: &LaneOf<'_>,
    log: &(dyn Fn(&str, &Summary) + Sync),
    kicks: &Receiver<Entry>,
    started: &Sender<()>,
) {
    let in_flight = InFlight::default();
    let (jobs_tx, jobs_rx) = mpsc::channel::<(QueueId, bool)>();
    let jobs_rx = Mutex::new(jobs_rx);
    let mut lanes_tx = Vec::new();
    let mut lanes_rx = Vec::new();
    for _ in 0..cfg.relay_lanes.max(1) {
        let (tx, rx) = mpsc::channel::<(QueueId, bool)>();
        lanes_tx.push(tx);
        lanes_rx.push(Mutex::new(rx));
    }
    // One job: skipped when stopping (it stays in the spool for the next
    // start), run otherwise; either way the entry is free again.
    let work = |(id, force): (QueueId, bool)| {
        if !cfg.stop.load(Ordering::SeqCst) {
            let sum = job(&id, force);
            log(if force { "queue flush" } else { "queue" }, &sum);
        }
        in_flight.finish(&id);
    };
    std::thread::scope(|scope| {
        for _ in 0..cfg.workers.max(1) {
            scope.spawn(|| take_jobs(&jobs_rx, &work));
        }
        for rx in &lanes_rx {
            scope.spawn(|| take_jobs(rx, &work));
        }
        // Hands `id` to the workers, or to the lane of `domain`.
        let send = |id: &QueueId, force: bool, domain: Option<&[u8]>| {
            if !in_flight.take(id) {
                return;
            }
            let job = (id.clone(), force);
            // The threads end only when the senders are dropped below.
            let _ = match domain {
                None => jobs_tx.send(job),
                Some(d) => lanes_tx[lane(d, lanes_tx.len())].send(job),
            };
        };
        // The entries waiting for each remote domain, oldest first (ids
        // sort by arrival): rebuilt by every scan, added to by arrivals.
        let backlog: Mutex<HashMap<Vec<u8>, BTreeSet<QueueId>>> = Mutex::new(HashMap::new());
        // An entry for a remote domain goes out after every older one
        // waiting for the same domain, which is sent along now whatever
        // its retry time (`force`): when a primary comes back it gets the
        // whole backlog in arrival order, and a message that arrives while
        // a backlog waits does not overtake it. While the domain is still
        // down, the relay's pause fails the older ones at once.
        // `domain` is the entry's `lane_of`.
        let submit = |id: &QueueId, force: bool, domain: Option<&[u8]>| {
            let Some(domain) = domain else {
                send(id, force, None);
                return;
            };
            let older: Vec<QueueId> = {
                let mut b = backlog.lock().unwrap_or_else(|p| p.into_inner());
                let waiting = b.entry(domain.to_vec()).or_default();
                let older = waiting.range(..id.clone()).cloned().collect();
                waiting.insert(id.clone());
                older
            };
            for old in &older {
                send(old, true, Some(domain));
            }
            send(id, force, Some(domain));
        };
        // The maildrop (`postroom sendmail`) into the queue; what it moved
        // aside or could not take is logged.
        let pick_up = || {
            let mut picked = Summary::default();
            crate::runner::pick_up(queue, &mut picked);
            log("queue", &picked);
        };
        let scan = |force: bool| {
            if force {
                (cfg.on_flush)();
            }
            // Local submissions (`postroom sendmail`) first, so they are
            // in the listing below.
            pick_up();
            let listing = match queue.entries() {
                Ok(l) => l,
                Err(e) => {
                    log(
                        "queue",
                        &Summary {
                            errors: vec![e.to_string()],
                            ..Summary::default()
                        },
                    );
                    return;
                }
            };
            let mut sum = Summary::default();
            report_corrupt(&listing.corrupt, &mut sum);
            log("queue", &sum);
            let lanes: Vec<Option<Vec<u8>>> = listing.entries.iter().map(lane_of).collect();
            {
                let mut b = backlog.lock().unwrap_or_else(|p| p.into_inner());
                b.clear();
                for (e, d) in listing.entries.iter().zip(&lanes) {
                    if let Some(d) = d {
                        b.entry(d.clone()).or_default().insert(e.id.clone());
                    }
                }
            }
            let now = unix_now();
            for (e, d) in listing.entries.iter().zip(&lanes) {
                if force || e.is_due(now, queue.schedule()) {
                    submit(&e.id, force, d.as_deref());
                }
            }
        };
        scan(false);
        in_flight.wait_idle(cfg.stop);
        let _ = started.send(());
        let marker = cfg.spool_root.join(FLUSH);
        let mut next_scan = Instant::now() + cfg.interval;
        let mut next_marker = Instant::now();
        // The maildrop is picked up when its directory changes (a file was
        // renamed into it), so `postroom sendmail` mail goes at once.
        let maildrop = cfg.spool_root.join("maildrop");
        let changed = || std::fs::metadata(&maildrop).and_then(|m| m.modified()).ok();
        let mut maildrop_seen = changed();
        while !cfg.stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= next_marker {
                next_marker = now + Duration::from_millis(100);
                if std::fs::remove_file(&marker).is_ok() {
                    scan(true);
                    next_scan = Instant::now() + cfg.interval;
                    continue;
                }
                let seen = changed();
                if seen != maildrop_seen {
                    maildrop_seen = seen;
                    // The new entries come back as kicks.
                    pick_up();
                }
            }
            if now >= next_scan {
                scan(false);
                next_scan = Instant::now() + cfg.interval;
                continue;
            }
            let wait = next_scan
                .min(next_marker)
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            match kicks.recv_timeout(wait) {
                Ok(e) => submit(&e.id, false, lane_of(&e).as_deref()),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            }
        }
        // Workers finish the entry they are in (a delivery is not cut and
        // then retried for nothing), skip the jobs not started and end
        // once their channel has no sender.
        drop(jobs_tx);
        drop(lanes_tx);
    });
}

/// A worker's loop: the next job from `rx` to `work` until the channel has
/// no sender. The lock is held only while waiting, never while working
/// (in a `while let` the guard would live through the body).
fn take_jobs(rx: &Mutex<Receiver<(QueueId, bool)>>, work: &(dyn Fn((QueueId, bool)) + Sync)) {
    loop {
        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        match next {
            Ok(job) => work(job),
            Err(_) => break,
        }
    }
}

/// The relay lane of `domain` among `n`: always the same one.
fn lane(domain: &[u8], n: usize) -> usize {
    let h = domain.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x100_0000_01b3)
    });
    (h % n as u64) as usize
}

/// Seconds since 1970.
pub(crate) fn unix_now() -> i64 {
    crate::queue::spool::unix(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::entry::{Address, Attempt, Failure};
    use crate::queue::{MemoryQueue, SystemClock};
    use crate::status::Class;

    /// Runs the pool over `queue` until its first scan is done; the jobs
    /// it ran, in order, with their `force`.
    fn first_scan(queue: &dyn Queue, lane_of: &LaneOf<'_>) -> Vec<(QueueId, bool)> {
        let ran = Mutex::new(Vec::new());
        let stop = AtomicBool::new(false);
        let dir = tempfile::tempdir().unwrap();
        let cfg = PoolConfig {
            workers: 2,
            relay_lanes: 1,
            interval: Duration::from_secs(3600),
            spool_root: dir.path(),
            stop: &stop,
            on_flush: &|| {},
        };
        let job = |id: &QueueId, force: bool| {
            ran.lock().unwrap().push((id.clone(), force));
            Summary::default()
        };
        let (_kick, kicks) = mpsc::channel();
        let (started, first) = mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(move || run(queue, &cfg, &job, lane_of, &|_, _| {}, &kicks, &started));
            first.recv_timeout(Duration::from_secs(10)).unwrap();
            stop.store(true, Ordering::SeqCst);
        });
        ran.into_inner().unwrap()
    }

    #[test]
    fn a_due_entry_for_a_domain_goes_after_the_older_ones_waiting_for_it() {
        let q = MemoryQueue::new(Schedule::default(), Arc::new(SystemClock));
        let env = |to: &str| Envelope {
            sender: "a@example.test".into(),
            recipients: vec![Address::new(to)],
            ..Envelope::default()
        };
        let old1 = q.enqueue(&env("x@relay.test"), b"1").unwrap();
        let other = q.enqueue(&env("y@other.test"), b"2").unwrap();
        let old2 = q.enqueue(&env("x@relay.test"), b"3").unwrap();
        let new = q.enqueue(&env("x@relay.test"), b"4").unwrap();
        let local = q.enqueue(&env("bob@example.test"), b"5").unwrap();
        // The older ones for relay.test and the one for other.test wait
        // (deferred for minutes); the newest for relay.test and the local
        // one are due.
        let temp = Attempt::Failed(Failure {
            class: Class::Temp,
            detail: (4, 1),
            diagnostic: "x-postroom; down".into(),
            remote: None,
        });
        for id in [&old1, &other, &old2] {
            q.record(id, 0, &temp, unix_now()).unwrap();
        }
        let lane_of = |e: &Entry| {
            let a = &e.recipients[0].address.address;
            (!a.ends_with("@example.test")).then(|| a.rsplit('@').next().unwrap().into())
        };
        let mut got = first_scan(&q, &lane_of);
        // The local entry goes to the workers, in parallel with the lane.
        let at = got.iter().position(|(id, _)| *id == local).unwrap();
        assert!(!got.remove(at).1);
        assert_eq!(got, [(old1, true), (old2, true), (new, false)]);
    }
}
