//! The queue runner: takes due entries, delivers, records, bounces, removes.
//!
//! Owns the order in which a queued message is handled (mta-semantics B.8
//! step 4, C.3): for each pending or due recipient it routes the address
//! ([`Router`]), hands each local target to a [`LocalDelivery`] strategy
//! (the real one, [`Exec`], runs the `deliver` binary; tests plug in a
//! fake), and calls [`Queue::record`] with the result before doing anything
//! else. Then it queues one DSN for the failed recipients ([`bounce::build`],
//! never to the null sender), marks them notified, sends at most one delay
//! warning, and removes the entry once every recipient is final.
//!
//! Like Postfix's qmgr, the runner prefers a duplicate to a loss: a crash
//! after `deliver` exited 0 but before [`Queue::record`] returned leaves the
//! recipient pending, and the next run delivers it again; a crash after a
//! DSN was enqueued but before [`Queue::mark_notified`] sends the DSN twice.
//! Nothing is ever removed before the queue says every recipient is final
//! and reported ([`Queue::remove`] itself refuses anything else).
//!
//! It never runs user code as root: system users are delivered by
//! `deliver -d user` (which switches to the user), virtual users by
//! `deliver -m` under the server's own uid, and files and pipes as the
//! target's `run_as` (A.6.2). It never speaks SMTP itself: remote
//! recipients go to a [`Relay`], forwards are queued as new entries.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{Read as _, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::deliver::zygote::{Ended, Request, ZygoteError, Zygotes};
use crate::queue::bounce::{self, BounceConfig, Kind};
use crate::queue::entry::{Attempt, Entry, Failure, State};
use crate::queue::spool::{self, QueueId};
use crate::queue::{Clock, Corrupt, Queue, QueueError};
use crate::route::lists::List;
use crate::route::{self, Delivery, Resolution, RunAs, Target, Users};
use crate::status::{Class, Outcome, sysexits};
use crate::submit::CONFIG_ENV;

/// Where the runner learns what a queued recipient address means now.
pub trait Router {
    /// Classifies and expands one recipient as queued (`bob@example.test`).
    fn route(&self, rcpt: &str) -> Resolution;
}

impl Router for route::Resolver<'_> {
    /// A queued recipient in a domain that is not ours goes out by SMTP
    /// ([`Resolution::Relay`]) whatever the relay tables say now: who may
    /// send where was decided when the message was accepted (RCPT for
    /// SMTP clients; local users, forwards and DSNs may reach any domain).
    fn route(&self, rcpt: &str) -> Resolution {
        let config = self.config();
        match route::Address::parse(rcpt.as_bytes()) {
            Some(a) if !a.domain.is_empty() && !config.is_local(&a.domain) => {
                match config.mailertable.route_for(&a.domain) {
                    // mailertable `local:user` (A.8): that local user, or
                    // the same local part here for `local:` alone.
                    Some(route::mailertable::Route::Local(user)) => {
                        let local = user.as_deref().unwrap_or(&a.local);
                        self.resolve(&route::Address::new(local, &config.host_name))
                    }
                    _ => Resolution::Relay(a),
                }
            }
            Some(a) => self.resolve(&a),
            None => Resolution::Refused(route::reply::bad_member()),
        }
    }
}

/// The road out: sends one message to remote recipients by SMTP (the real
/// one is the daemon's, over `smtp::client` and the mailertable; tests
/// plug in a fake).
pub trait Relay {
    /// Sends `message` (as queued) from `sender` (empty for `<>`) with the
    /// MAIL parameters `params` to `rcpts`, which all share `domain`.
    /// Returns one attempt per recipient, in order; a failure that is not
    /// one recipient's (no connection, a dropped DATA) is every one's.
    fn send(
        &self,
        domain: &[u8],
        sender: &str,
        rcpts: &[&str],
        params: &str,
        message: &[u8],
    ) -> Vec<Attempt>;
}

/// No road out: every remote recipient waits (deferred) for one.
pub struct NoRelay;

impl Relay for NoRelay {
    fn send(&self, _: &[u8], _: &str, rcpts: &[&str], _: &str, _: &[u8]) -> Vec<Attempt> {
        rcpts
            .iter()
            .map(|r| {
                Attempt::Failed(Failure {
                    class: Class::Temp,
                    detail: (4, 0),
                    diagnostic: format!("x-postroom; no relay configured, {r} stays queued"),
                    remote: None,
                })
            })
            .collect()
    }
}

impl<F: Fn(&str) -> Resolution> Router for F {
    fn route(&self, rcpt: &str) -> Resolution {
        self(rcpt)
    }
}

/// One local delivery to hand to a [`LocalDelivery`].
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    /// The queue entry it comes from.
    pub id: &'a QueueId,
    /// What to deliver to: a mailbox, a file or a pipe.
    pub target: &'a Target,
    /// The envelope sender (empty for `<>`), after any `owner-` rewrite.
    pub sender: &'a str,
    /// The message as the agent gets it: `Return-Path:`, `X-Original-To:`
    /// and `Delivered-To:` prepended, LF line ends (mta-semantics A.10).
    pub message: &'a [u8],
}

/// A way to carry out one local delivery: the real [`Exec`], or a fake in
/// tests.
pub trait LocalDelivery {
    /// Delivers `job` and says what happened; must not panic on failure.
    fn deliver(&self, job: &Job<'_>) -> Outcome;
}

/// What one [`Runner::run_once`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Entries looked at.
    pub entries: usize,
    /// Recipients delivered.
    pub delivered: usize,
    /// Recipients deferred (temporary failure, retry later).
    pub deferred: usize,
    /// Recipients failed for good (permanent failure or expiry).
    pub failed: usize,
    /// DSNs (failure reports and delay warnings) enqueued.
    pub dsns: usize,
    /// Failed recipients of null-sender mail, logged instead of bounced.
    pub not_bounced: usize,
    /// Entries removed because every recipient was done.
    pub removed: usize,
    /// Queue errors met, lowercase; the entry is left for the next run.
    /// Also one `corrupt: ID moved to PATH: REASON` line per entry the
    /// run's listing moved to `corrupt/`.
    pub errors: Vec<String>,
}

impl Summary {
    /// Adds `other`'s counts and errors to this one.
    pub fn add(&mut self, other: Summary) {
        self.entries += other.entries;
        self.delivered += other.delivered;
        self.deferred += other.deferred;
        self.failed += other.failed;
        self.dsns += other.dsns;
        self.not_bounced += other.not_bounced;
        self.removed += other.removed;
        self.errors.extend(other.errors);
    }
}

/// Queues what waits in the maildrop (`postroom sendmail`), first thing
/// in every pass; files it moved aside and files it left are reported in
/// `sum.errors`.
pub fn pick_up(queue: &dyn Queue, sum: &mut Summary) {
    match queue.pickup() {
        Ok(p) => {
            report_corrupt(&p.corrupt, sum);
            sum.errors.extend(p.errors);
        }
        Err(e) => sum.errors.push(e.to_string()),
    }
}

/// Adds one line per entry the listing moved to `corrupt/` to `sum.errors`,
/// in the words of `queue::mailq`, so the server's log names each one.
pub fn report_corrupt(corrupt: &[Corrupt], sum: &mut Summary) {
    sum.errors.extend(corrupt.iter().map(Corrupt::to_string));
}

/// The queue runner.
pub struct Runner<'a> {
    queue: &'a dyn Queue,
    router: &'a dyn Router,
    local: &'a dyn LocalDelivery,
    relay: &'a dyn Relay,
    bounce: BounceConfig,
}

impl<'a> Runner<'a> {
    /// A runner over `queue`, routing with `router`, delivering local
    /// targets with `local`; DSNs are written as `bounce` says. Remote
    /// recipients wait ([`NoRelay`]) unless [`Runner::with_relay`] gives
    /// a road out.
    pub fn new(
        queue: &'a dyn Queue,
        router: &'a dyn Router,
        local: &'a dyn LocalDelivery,
        bounce: BounceConfig,
    ) -> Runner<'a> {
        Runner {
            queue,
            router,
            local,
            relay: &NoRelay,
            bounce,
        }
    }

    /// Sends remote recipients through `relay`.
    pub fn with_relay(mut self, relay: &'a dyn Relay) -> Runner<'a> {
        self.relay = relay;
        self
    }

    /// Handles every entry due at `now` (unix seconds), oldest first,
    /// after picking up the maildrop.
    pub fn run_once(&self, now: i64) -> Summary {
        self.pass(now, false)
    }

    /// Like [`Runner::run_once`], but every entry is handled and deferred
    /// recipients are tried now whatever their next retry time (sendmail
    /// `-q`, Postfix `postqueue -f`). The attempt is recorded at `now`, so
    /// the backoff and the lifetime go on as for any other attempt.
    pub fn flush(&self, now: i64) -> Summary {
        self.pass(now, true)
    }

    /// One pass over the queue: every due entry, or every entry when
    /// `force`.
    fn pass(&self, now: i64, force: bool) -> Summary {
        let mut sum = Summary::default();
        pick_up(self.queue, &mut sum);
        // Not `Queue::due`: it drops the listing's `corrupt`, and an entry
        // moved aside must be reported (spool.rs: "moved to corrupt/ and
        // reported, never deleted").
        let listing = match self.queue.entries() {
            Ok(l) => l,
            Err(e) => {
                sum.errors.push(e.to_string());
                return sum;
            }
        };
        report_corrupt(&listing.corrupt, &mut sum);
        let schedule = self.queue.schedule();
        for entry in listing.entries {
            if force || entry.is_due(now, schedule) {
                sum.add(self.run_entry(&entry.id, now, force));
            }
        }
        sum
    }

    /// Calls [`Runner::run_once`] with `clock`'s time every `interval`
    /// until `stop` is set; returns the summaries added up. The flag is
    /// looked at every 100 ms, so a stop takes effect quickly.
    pub fn run_until(&self, clock: &dyn Clock, interval: Duration, stop: &AtomicBool) -> Summary {
        let mut total = Summary::default();
        while !stop.load(Ordering::SeqCst) {
            total.add(self.run_once(spool::unix(clock.now())));
            let start = Instant::now();
            while start.elapsed() < interval && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100).min(interval));
            }
        }
        total
    }

    /// Handles the one entry `id` now: its due recipients (every deferred
    /// one too when `force`), its DSNs, its removal. An entry that is gone
    /// (delivered and removed since it was listed) is no error. This is
    /// what a delivery worker runs for each entry it is handed; the entry
    /// is read afresh, so a stale listing never causes a second delivery.
    pub fn run_entry(&self, id: &QueueId, now: i64, force: bool) -> Summary {
        let mut sum = Summary {
            entries: 1,
            ..Summary::default()
        };
        match self.entry_pass(id, now, force, &mut sum) {
            Ok(()) | Err(QueueError::NotFound(_)) => {}
            Err(e) => sum.errors.push(e.to_string()),
        }
        sum
    }

    /// One entry: attempts, reports, removal; `force` tries deferred
    /// recipients before their time ([`Runner::flush`]).
    fn entry_pass(
        &self,
        id: &QueueId,
        now: i64,
        force: bool,
        sum: &mut Summary,
    ) -> Result<(), QueueError> {
        let entry = self.queue.entry(id)?;
        let mut message = None;
        // Remote recipients, by domain in order of first appearance: one
        // SMTP transaction per domain once the local ones are done.
        let mut remote: Vec<Batch> = Vec::new();
        // A.6.3: one copy per envelope. A mailbox, file, pipe or forward
        // two recipients of this entry lead to gets the message once (in
        // this pass: a retry of a deferred recipient knows nothing of
        // what an earlier pass delivered).
        let mut done = HashSet::new();
        for (i, r) in entry.recipients.iter().enumerate() {
            let due = match &r.state {
                State::Pending => true,
                State::Deferred { next, .. } => force || *next <= now,
                _ => false,
            };
            if !due {
                continue;
            }
            let resolution = self.router.route(&r.address.address);
            if let Resolution::Relay(a) = &resolution {
                let address = String::from_utf8_lossy(&a.to_bytes()).into_owned();
                match remote.iter_mut().find(|(d, _)| *d == a.domain) {
                    Some((_, list)) => list.push((i, address)),
                    None => remote.push((a.domain.clone(), vec![(i, address)])),
                }
                continue;
            }
            let msg = match &message {
                Some(m) => m,
                None => message.insert(self.queue.message(id)?),
            };
            let attempt = self.attempt(&entry, i, resolution, msg, &mut done, now);
            // Recorded durably before anything else happens to the entry:
            // only the queue's word counts (module docs: a duplicate, never
            // a loss). The last one may remove the entry instead.
            if self.record(id, i, &attempt, now, sum)? {
                return Ok(());
            }
        }
        for (domain, rcpts) in &remote {
            let msg = match &message {
                Some(m) => m,
                None => message.insert(self.queue.message(id)?),
            };
            let addrs: Vec<&str> = rcpts.iter().map(|(_, a)| a.as_str()).collect();
            let attempts = self.relay.send(
                domain,
                &entry.envelope.sender,
                &addrs,
                &entry.envelope.params,
                msg,
            );
            // The remote's answers are written down before anything else:
            // after its 250 the message must never go out again.
            for ((i, _), attempt) in rcpts.iter().zip(attempts) {
                if self.record(id, *i, &attempt, now, sum)? {
                    return Ok(());
                }
            }
        }
        let entry = self.queue.entry(id)?;
        let unreported: Vec<usize> = entry
            .recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                matches!(
                    r.state,
                    State::Failed {
                        notified: false,
                        ..
                    }
                )
            })
            .map(|(i, _)| i)
            .collect();
        if !unreported.is_empty() {
            let msg = match message {
                Some(m) => m,
                None => self.queue.message(id)?,
            };
            match bounce::build(
                &self.bounce,
                &entry,
                &msg,
                Kind::Failed,
                now,
                self.queue.schedule(),
            ) {
                Some(b) => {
                    // The DSN is safe in the queue before the failures
                    // count as reported: a crash in between sends it twice.
                    self.queue.enqueue(&b.envelope, &b.message)?;
                    sum.dsns += 1;
                    self.queue.mark_notified(id, &b.reported)?;
                }
                None => {
                    // mta-semantics B.9: never a DSN for the null sender,
                    // a bounce of a bounce could loop; it is only logged.
                    sum.not_bounced += unreported.len();
                    self.queue.mark_notified(id, &unreported)?;
                }
            }
            message = Some(msg);
        }
        // Read again only when the reports above changed it.
        let entry = if unreported.is_empty() {
            entry
        } else {
            self.queue.entry(id)?
        };
        if !entry.warned && self.queue.schedule().should_warn(entry.arrival, now) {
            let msg = match message {
                Some(m) => m,
                None => self.queue.message(id)?,
            };
            if let Some(b) = bounce::build(
                &self.bounce,
                &entry,
                &msg,
                Kind::Delayed,
                now,
                self.queue.schedule(),
            ) {
                self.queue.enqueue(&b.envelope, &b.message)?;
                sum.dsns += 1;
            }
            // Marked even when nothing was sent (null sender, nothing
            // deferred): at most one warning per message (B.9).
            self.queue.mark_warned(id)?;
        }
        // `mark_warned` changes no recipient's state, so `entry` still
        // says whether they are all done.
        if entry.recipients.iter().all(|r| {
            matches!(
                r.state,
                State::Delivered | State::Failed { notified: true, .. }
            )
        }) {
            self.queue.remove(id)?;
            sum.removed += 1;
        }
        Ok(())
    }

    /// Records `attempt` for recipient `i` and counts it; true when that
    /// finished the entry and the queue removed it (nothing is left to do
    /// for it: no DSN, no warning).
    fn record(
        &self,
        id: &QueueId,
        i: usize,
        attempt: &Attempt,
        now: i64,
        sum: &mut Summary,
    ) -> Result<bool, QueueError> {
        let (state, removed) = self.queue.record_or_remove(id, i, attempt, now)?;
        count(state, sum);
        if removed {
            sum.removed += 1;
        }
        Ok(removed)
    }

    /// One attempt for local recipient `i`, routed as `resolution`:
    /// deliver to every target; forwards become one new entry.
    fn attempt(
        &self,
        entry: &Entry,
        i: usize,
        resolution: Resolution,
        message: &[u8],
        done: &mut HashSet<(u8, Vec<u8>)>,
        now: i64,
    ) -> Attempt {
        let rcpt = &entry.recipients[i].address;
        let targets = match resolution {
            Resolution::Local(t) => t,
            Resolution::Relay(_) => unreachable!("remote recipients are sent by the relay"),
            Resolution::Refused(reply) => return Attempt::Failed(from_reply(&reply)),
        };
        if targets.is_empty() {
            return Attempt::Failed(Failure {
                class: Class::Perm,
                detail: (1, 1),
                diagnostic: "x-unix; recipient expands to nothing".into(),
                remote: None,
            });
        }
        if has_delivered_to(message, &rcpt.address) {
            // mta-semantics B.7: the message was here before.
            return Attempt::from(&Outcome::perm(
                (4, 6),
                sysexits::EX_DATAERR,
                format!("mail forwarding loop for {}", rcpt.address),
            ));
        }
        let original = rcpt
            .orcpt
            .as_deref()
            .and_then(|o| o.split_once(';').map(|(_, a)| a.trim()))
            .unwrap_or(&rcpt.address);
        // One queued recipient may expand to several targets (an alias
        // list) and the queue keeps one state per queued recipient. A
        // temporary failure of any target defers the whole recipient, and
        // the retry delivers the targets that succeeded once more: a
        // duplicate rather than a loss (module docs). Otherwise the first
        // permanent failure is reported.
        let mut perm = None;
        let mut forwards: Vec<&Target> = Vec::new();
        // The message as the last list's copies show it: a list's members
        // follow one another, so it is made once per list, not per member.
        let mut listed: Option<(&List, Vec<u8>)> = None;
        for t in &targets {
            let key = t.delivery.key();
            if done.contains(&key) {
                continue;
            }
            let attempt = match &t.delivery {
                Delivery::Forward(_) => {
                    forwards.push(t);
                    done.insert(key);
                    continue;
                }
                Delivery::Error { reply, .. } => Attempt::Failed(from_reply(reply)),
                _ => {
                    let sender = match &t.sender {
                        Some(s) => String::from_utf8_lossy(s).into_owned(),
                        None => entry.envelope.sender.clone(),
                    };
                    let message = match t.list.as_deref() {
                        Some(list) => {
                            if listed.as_ref().is_none_or(|(l, _)| *l != list) {
                                listed = Some((list, with_list_fields(message, list)));
                            }
                            listed.as_ref().map_or(message, |(_, m)| m)
                        }
                        None => message,
                    };
                    let copy = local_copy(message, &sender, original, &rcpt.address);
                    let outcome = self.local.deliver(&Job {
                        id: &entry.id,
                        target: t,
                        sender: &sender,
                        message: &copy,
                    });
                    Attempt::from(&outcome)
                }
            };
            match attempt {
                Attempt::Delivered => {
                    done.insert(key);
                }
                Attempt::Failed(f) if f.class == Class::Temp => return Attempt::Failed(f),
                // A.6.4: the copies of a list with an `owner-` alias go out
                // with the owner as their sender, so a member's failure is
                // the owner's to hear about, not the original sender's.
                Attempt::Failed(f) if t.sender.is_some() => {
                    if let Err(e) = self.report_to_owner(entry, &rcpt.address, t, f, message, now) {
                        return Attempt::Failed(e);
                    }
                    done.insert(key);
                }
                Attempt::Failed(f) => {
                    perm.get_or_insert(f);
                }
            }
        }
        if let Err(f) = self.forward(entry, &rcpt.address, &forwards, message) {
            return Attempt::Failed(f);
        }
        perm.map_or(Attempt::Delivered, Attempt::Failed)
    }

    /// Queues a DSN to the list owner (`t.sender`) for member `t` of the
    /// queued recipient `rcpt`, which failed for good with `failure`: the
    /// report names the member as the final recipient and the list as the
    /// original one.
    fn report_to_owner(
        &self,
        entry: &Entry,
        rcpt: &str,
        t: &Target,
        failure: Failure,
        message: &[u8],
        now: i64,
    ) -> Result<(), Failure> {
        let owner = String::from_utf8_lossy(t.sender.as_deref().unwrap_or_default()).into_owned();
        let member = match &t.delivery {
            Delivery::Mailbox { user, .. } => String::from_utf8_lossy(user).into_owned(),
            Delivery::Error { member, .. } => String::from_utf8_lossy(member).into_owned(),
            Delivery::File { path, .. } => String::from_utf8_lossy(path).into_owned(),
            Delivery::Pipe { command, .. } => format!("|{}", String::from_utf8_lossy(command)),
            Delivery::Forward(a) => String::from_utf8_lossy(&a.to_bytes()).into_owned(),
        };
        // A local name is qualified with our host name, as the owner is.
        let member = match &t.delivery {
            Delivery::Mailbox { .. } | Delivery::Error { .. } if !member.contains('@') => {
                format!("{member}@{}", self.bounce.reporting_mta)
            }
            _ => member,
        };
        let envelope = crate::queue::entry::Envelope {
            sender: owner,
            recipients: vec![crate::queue::entry::Address {
                address: member,
                orcpt: Some(format!("rfc822;{rcpt}")),
            }],
            ..entry.envelope.clone()
        };
        let mut report = Entry::new(entry.id.clone(), entry.arrival, entry.size, &envelope);
        report.recipients[0].state = State::Failed {
            error: failure,
            notified: false,
        };
        let Some(b) = bounce::build(
            &self.bounce,
            &report,
            message,
            Kind::Failed,
            now,
            self.queue.schedule(),
        ) else {
            return Ok(());
        };
        self.queue
            .enqueue(&b.envelope, &b.message)
            .map(|_| ())
            .map_err(|e| Failure {
                class: Class::Temp,
                detail: (3, 0),
                diagnostic: format!("x-postroom; cannot queue the report to the list owner: {e}"),
                remote: None,
            })
    }

    /// Queues the forwards of local recipient `rcpt` as new entries (one
    /// per envelope sender), the message with `Delivered-To: rcpt` on top
    /// so a forwarding loop is seen when it comes back (Postfix local(8)).
    /// The forward counts as done once the new entry is safe in the queue.
    fn forward(
        &self,
        entry: &Entry,
        rcpt: &str,
        forwards: &[&Target],
        message: &[u8],
    ) -> Result<(), Failure> {
        // One new entry per sender and list.
        fn group(t: &Target) -> (Option<&Vec<u8>>, Option<&List>) {
            (t.sender.as_ref(), t.list.as_deref())
        }
        let mut groups: Vec<(Option<&Vec<u8>>, Option<&List>)> = Vec::new();
        for t in forwards {
            if !groups.contains(&group(t)) {
                groups.push(group(t));
            }
        }
        for (s, list) in groups {
            let recipients = forwards
                .iter()
                .filter(|t| group(t) == (s, list))
                .filter_map(|t| match &t.delivery {
                    Delivery::Forward(a) => Some(a),
                    _ => None,
                })
                .map(|a| crate::queue::entry::Address::new(String::from_utf8_lossy(&a.to_bytes())))
                .collect();
            let envelope = crate::queue::entry::Envelope {
                sender: s.map_or_else(
                    || entry.envelope.sender.clone(),
                    |s| String::from_utf8_lossy(s).into_owned(),
                ),
                recipients,
                hops: entry.envelope.hops + 1,
                client: format!("forward of {} for {rcpt}", entry.id),
                params: entry.envelope.params.clone(),
                envid: None,
                ret_headers: false,
            };
            // The line ends of the message as queued (CRLF from SMTP).
            let eol = eol(message);
            let mut copy =
                format!("Delivered-To: {}", rcpt.replace(['\r', '\n'], " ")).into_bytes();
            copy.extend_from_slice(eol);
            match list {
                Some(list) => copy.extend_from_slice(&with_list_fields(message, list)),
                None => copy.extend_from_slice(message),
            }
            self.queue.enqueue(&envelope, &copy).map_err(|e| Failure {
                class: Class::Temp,
                detail: (3, 0),
                diagnostic: format!("x-postroom; cannot queue the forward: {e}"),
                remote: None,
            })?;
        }
        Ok(())
    }
}

/// Remote recipients of one entry in one domain: the domain and each
/// recipient's index and address.
type Batch = (Vec<u8>, Vec<(usize, String)>);

/// Adds a recorded state to the run's counts.
fn count(state: State, sum: &mut Summary) {
    match state {
        State::Delivered => sum.delivered += 1,
        State::Failed { .. } => sum.failed += 1,
        _ => sum.deferred += 1,
    }
}

/// A routing reply as a failure: its class and enhanced code as given.
pub fn from_reply(reply: &crate::status::Reply) -> Failure {
    let class = reply.class().unwrap_or(Class::Perm);
    let detail = reply.detail().unwrap_or((0, 0));
    let text = reply.to_string().replace(['\r', '\n'], " ");
    Failure {
        class,
        detail,
        diagnostic: format!("smtp; {text}"),
        remote: None,
    }
}

/// Where the header ends in `message`: the offset of its first empty
/// line (LF or CRLF), or the length when there is none.
fn header_end(message: &[u8]) -> usize {
    let mut end = 0;
    while end < message.len()
        && !message[end..].starts_with(b"\n")
        && !message[end..].starts_with(b"\r\n")
    {
        end = message[end..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |p| end + p + 1);
    }
    end
}

/// The line end of `message` as queued: CRLF when its first line ends so
/// (SMTP), LF otherwise.
fn eol(message: &[u8]) -> &'static [u8] {
    let crlf = message
        .iter()
        .position(|&b| b == b'\n')
        .is_some_and(|p| p > 0 && message[p - 1] == b'\r');
    if crlf { b"\r\n" } else { b"\n" }
}

/// The header fields of a header (LF or CRLF), each with its continuation
/// lines and line ends.
fn fields(header: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < header.len() {
        let end = header[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(header.len(), |p| i + p + 1);
        let cont = matches!(header.get(i), Some(b' ' | b'\t'));
        if !cont && i > start {
            out.push(&header[start..i]);
            start = i;
        }
        i = end;
    }
    if start < header.len() {
        out.push(&header[start..]);
    }
    out
}

/// Whether `field` is named `name` (ASCII case-insensitive).
fn is_field(field: &[u8], name: &[u8]) -> bool {
    field.len() > name.len()
        && field[..name.len()].eq_ignore_ascii_case(name)
        && field[name.len()] == b':'
}

/// `message` as a copy through `list` shows it (mta-semantics E): its
/// `List-*` and `Precedence:` fields dropped and the list's fields added at
/// the end of the header, in the message's own line ends (CRLF or LF).
fn with_list_fields(message: &[u8], list: &List) -> Vec<u8> {
    let eol = eol(message);
    let end = header_end(message);
    let mut out = Vec::with_capacity(message.len() + list.fields.len() + 64);
    for f in fields(&message[..end]) {
        let name = f.iter().position(|&b| b == b':').map_or(f, |p| &f[..p]);
        if !List::replaces(name) {
            out.extend_from_slice(f);
        }
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(eol);
    }
    for line in list.fields.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
        out.extend_from_slice(eol);
    }
    out.extend_from_slice(&message[end..]);
    out
}

/// Appends `src` to `out` with its CRLF line ends turned into LF
/// (mta-semantics A.10: the agent gets LF).
fn extend_lf(out: &mut Vec<u8>, src: &[u8]) {
    let mut start = 0;
    // Whole runs between CRLFs are copied at once.
    for (i, w) in src.windows(2).enumerate() {
        if w == b"\r\n" {
            out.extend_from_slice(&src[start..i]);
            start = i + 1;
        }
    }
    out.extend_from_slice(&src[start..]);
}

/// Whether the message already carries `Delivered-To: rcpt` (mta-semantics
/// B.7 loop detection; case-insensitive, blanks and angle brackets
/// ignored).
pub fn has_delivered_to(message: &[u8], rcpt: &str) -> bool {
    // Only the header matters.
    let head = &message[..header_end(message)];
    fields(head).iter().any(|f| {
        is_field(f, b"Delivered-To")
            && f[13..]
                .iter()
                .filter(|b| !b" \t\r\n<>".contains(b))
                .copied()
                .collect::<Vec<u8>>()
                .eq_ignore_ascii_case(rcpt.as_bytes())
    })
}

/// The copy a local delivery agent gets (mta-semantics A.10, B.7): LF line
/// ends, any `Return-Path:` removed, then `Return-Path: <sender>`,
/// `X-Original-To: original` and `Delivered-To: rcpt` prepended in
/// Postfix's order.
pub fn local_copy(message: &[u8], sender: &str, original: &str, rcpt: &str) -> Vec<u8> {
    let end = header_end(message);
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    let trace = format!(
        "Return-Path: <{}>\nX-Original-To: {}\nDelivered-To: {}\n",
        clean(sender),
        clean(original),
        clean(rcpt)
    );
    let mut out = Vec::with_capacity(trace.len() + message.len());
    out.extend_from_slice(trace.as_bytes());
    for f in fields(&message[..end]) {
        if !is_field(f, b"Return-Path") {
            extend_lf(&mut out, f);
        }
    }
    extend_lf(&mut out, &message[end..]);
    out
}

/// What an agent's exit status means (mta-semantics A.10, sendmail's
/// `markfailure`): 0 delivered; 75 EX_TEMPFAIL, 74 EX_IOERR and 71
/// EX_OSERR, or death by a signal (`None`), temporary; every other status
/// permanent, with the RFC 3463 code of its sysexits name. `stderr` (one
/// line, bounded by the caller) becomes the reason.
pub fn outcome_of_exit(code: Option<i32>, stderr: &str) -> Outcome {
    use sysexits::*;
    let why = |what: &str| {
        let s = stderr.trim();
        if s.is_empty() {
            what.to_string()
        } else {
            format!("{what}: {s}")
        }
    };
    match code {
        Some(EX_OK) => Outcome::Delivered,
        None => Outcome::temp((3, 0), why("delivery agent killed by a signal")),
        Some(c @ (EX_TEMPFAIL | EX_IOERR | EX_OSERR)) => Outcome::Failed {
            class: Class::Temp,
            detail: (3, 0),
            exit: c,
            reason: why(&format!("delivery agent exit {c}")),
        },
        Some(c) => {
            let detail = match c {
                EX_NOUSER => (1, 1),
                EX_NOHOST => (1, 2),
                EX_DATAERR => (6, 0),
                EX_PROTOCOL => (5, 0),
                EX_NOPERM => (7, 1),
                EX_CONFIG => (3, 5),
                _ => (3, 0),
            };
            Outcome::perm(detail, c, why(&format!("delivery agent exit {c}")))
        }
    }
}

/// The real local delivery: runs the `deliver` binary for mailboxes and
/// files, `/bin/sh -c` for pipes, each with the message on stdin.
pub struct Exec {
    /// The `deliver` binary.
    pub deliver: PathBuf,
    /// Where mailbox users are looked up.
    pub users: Arc<dyn Users + Send + Sync>,
    /// The unprivileged user for system-alias files and pipes (sendmail
    /// `DefaultUser`); used only when running as root.
    pub default_user: String,
    /// Kill an agent after this long: a temporary failure (A.10, Postfix
    /// `command_time_limit`).
    pub time_limit: Duration,
    /// The uid and gid virtual users share, when the runner is root; `None`
    /// runs their `deliver -m` as the runner itself (route::users: virtual
    /// users share the server's uid).
    pub virtual_id: Option<(u32, u32)>,
    /// Warm `deliver` processes that fork each delivery instead of an exec
    /// per message ([`Zygotes`]); `None` starts `deliver` every time.
    pub zygotes: Option<Arc<Zygotes>>,
    /// Variables set on the command line of a virtual user's `deliver
    /// -m` (`SENDMAIL=` for forwards and replies, `POSTROOM_CONFIG=` so
    /// that `postroom sendmail` finds this server). Not the environment:
    /// procmail clears it at start-up (procmail(1), `-p`), and a default
    /// like SENDMAIL's wins over it; assignments win over both.
    pub vars: Vec<(String, OsString)>,
}

/// An identity to run a child as: uid and gid.
type Id = (u32, u32);

impl Exec {
    /// An `Exec` with Postfix's 1000 s time limit and `nobody` as the
    /// default user.
    pub fn new(deliver: impl Into<PathBuf>, users: Arc<dyn Users + Send + Sync>) -> Exec {
        Exec {
            deliver: deliver.into(),
            users,
            default_user: "nobody".into(),
            time_limit: Duration::from_secs(1000),
            virtual_id: None,
            zygotes: None,
            vars: Vec::new(),
        }
    }

    /// The identity to run `run_as` with, or `None` to stay as we are: when
    /// the runner is not root it can only run things as itself (the demo
    /// and the tests). Never root (A.6.2).
    fn identity(&self, run_as: &RunAs) -> Result<Option<Id>, Outcome> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        let by_name = |name: &str| match nix::unistd::User::from_name(name) {
            Ok(Some(u)) if !u.uid.is_root() => Ok(Some((u.uid.as_raw(), u.gid.as_raw()))),
            _ => Err(Outcome::temp(
                (3, 5),
                format!("no unprivileged user `{name}` to run as"),
            )),
        };
        match run_as {
            RunAs::DefaultUser => by_name(&self.default_user),
            RunAs::Owner { uid, gid } if *uid != 0 => Ok(Some((*uid, *gid))),
            RunAs::Owner { .. } => by_name(&self.default_user),
            RunAs::User { name } => {
                let user = self.users.lookup(name);
                match user.and_then(|u| u.uid) {
                    Some(uid) if uid != 0 => match nix::unistd::User::from_uid(uid.into()) {
                        Ok(Some(u)) => Ok(Some((uid, u.gid.as_raw()))),
                        _ => by_name(&self.default_user),
                    },
                    _ => by_name(&self.default_user),
                }
            }
        }
    }

    /// The `deliver` command for a mailbox user, and the identity to run
    /// it as: system users' `deliver -d` switches itself; virtual users
    /// get the shared identity, if we are root.
    fn mailbox(
        &self,
        user: &[u8],
        detail: Option<&[u8]>,
        sender: &str,
    ) -> Result<(Command, Option<Id>), Outcome> {
        let name = String::from_utf8_lossy(user).into_owned();
        let Some(u) = self.users.lookup(user) else {
            return Err(Outcome::perm(
                (1, 1),
                sysexits::EX_NOUSER,
                format!("no such user {name}"),
            ));
        };
        let mut c = Command::new(&self.deliver);
        c.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .arg("-f")
            .arg(null_sender(sender));
        if u.uid.is_some() {
            // A system user: `deliver -d user` (A.10, sendmail's
            // local_procmail); as root deliver switches to the user itself,
            // so we never run the user's rcfile as root.
            if let Some(d) = detail {
                c.arg("-a").arg(OsStr::from_bytes(d));
            }
            c.arg("-d").arg(&name);
            return Ok((c, None));
        }
        // A virtual user shares our uid: `deliver -m` with the user's own
        // rcfile, HOME and MAILDIR (route::users). They are given as
        // command-line assignments too, because procmail takes HOME from
        // the passwd entry of the uid, not from the environment (checked
        // against procmail 3.23pre: without `MAILDIR=` on the command line
        // a `Maildir/` recipe wrote into the invoking user's home).
        let rc = u.home.join(".procmailrc");
        let rcfile: &Path = if rc.exists() {
            &rc
        } else {
            Path::new("/dev/null")
        };
        let mut assign = |var: &str, p: &OsStr| {
            let mut a = OsString::from(format!("{var}="));
            a.push(p);
            c.env(var, p);
            a
        };
        let home = assign("HOME", u.home.as_os_str());
        let maildir = assign("MAILDIR", u.home.as_os_str());
        let default = u
            .mailbox
            .as_deref()
            .map(|m| assign("DEFAULT", m.as_os_str()));
        let vars: Vec<_> = self.vars.iter().map(|(k, v)| assign(k, v)).collect();
        c.env("LOGNAME", &name).env("USER", &name);
        c.arg("-m").arg(home).arg(maildir);
        c.args(default).args(vars);
        c.arg(rcfile);
        if let Some(d) = detail {
            // `-m rcfile arg`: the detail is $1, as `-a detail` makes it.
            c.arg(OsStr::from_bytes(d));
        }
        let id = self.virtual_id.filter(|_| nix::unistd::geteuid().is_root());
        Ok((c, id))
    }

    /// Runs `cmd` with `input` on stdin, within the time limit, keeping
    /// the first 1000 bytes of its stderr: in a zygote when it runs the
    /// `deliver` binary and there are zygotes, otherwise as a new process.
    fn run(&self, cmd: Command, id: Option<Id>, input: &[u8], what: &str) -> Outcome {
        if let Some(z) = &self.zygotes
            && cmd.get_program() == self.deliver.as_os_str()
        {
            let pair = |k: &OsStr, v: &OsStr| [k.as_bytes(), b"=", v.as_bytes()].concat();
            let req = Request {
                argv: std::iter::once(cmd.get_program())
                    .chain(cmd.get_args())
                    .map(|a| a.as_bytes().to_vec())
                    .collect(),
                // Every deliver command here starts from `env_clear`.
                env: cmd
                    .get_envs()
                    .filter_map(|(k, v)| v.map(|v| pair(k, v)))
                    .collect(),
                id,
                message: input.into(),
            };
            return match z.run(&req, self.time_limit) {
                Ok(end) => ended(end, what),
                // Nothing ran: deliver the ordinary way.
                Err(ZygoteError::NotStarted(_)) => self.spawn(cmd, id, input, what),
                // It may have run: the next attempt tries again (a
                // duplicate rather than a loss).
                Err(e) => Outcome::temp((3, 0), format!("{what}: {e}")),
            };
        }
        self.spawn(cmd, id, input, what)
    }

    /// [`Exec::run`] as a new process.
    fn spawn(&self, mut cmd: Command, id: Option<Id>, input: &[u8], what: &str) -> Outcome {
        use std::os::unix::process::CommandExt as _;
        if let Some((uid, gid)) = id {
            // std clears the supplementary groups when root sets a uid.
            cmd.uid(uid).gid(gid);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            // A missing or non-executable program will not appear by
            // itself: permanent, as the shell's 126/127 would be (A.10:
            // every status but 71/74/75 is permanent).
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                return Outcome::perm(
                    (3, 0),
                    sysexits::EX_UNAVAILABLE,
                    format!("{what}: cannot run: {e}"),
                );
            }
            Err(e) => return Outcome::temp((3, 0), format!("{what}: cannot run: {e}")),
        };
        let mut stdin = child.stdin.take();
        let mut stderr = child.stderr.take();
        let buf = input.to_vec();
        let writer = std::thread::spawn(move || {
            if let Some(s) = stdin.as_mut() {
                // A program that does not read all its input is its own
                // business (EPIPE); its exit status decides.
                let _ = s.write_all(&buf);
            }
        });
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(s) = stderr.as_mut() {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = s.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    if out.len() < 1000 {
                        out.extend_from_slice(&chunk[..n.min(1000 - out.len())]);
                    }
                }
            }
            out
        });
        // Wait in a thread so that the end of the program is seen at once
        // (no polling) while the time limit still holds.
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = match rx.recv_timeout(self.time_limit) {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => return Outcome::temp((3, 0), format!("{what}: wait: {e}")),
            Err(_) => {
                // Not reaped yet, so the pid is still this child's.
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = rx.recv();
                None
            }
        };
        let _ = waiter.join();
        let _ = writer.join();
        let stderr = reader.join().unwrap_or_default();
        ended(
            status.map(|s| Ended {
                code: s.code(),
                stderr,
            }),
            what,
        )
    }
}

/// What the end of an agent run as `what` means, in a zygote or not:
/// `None` is a kill after the time limit (temporary), otherwise
/// [`outcome_of_exit`] of its status and stderr, with `what` in front of
/// a failure's reason.
fn ended(end: Option<Ended>, what: &str) -> Outcome {
    let Some(end) = end else {
        return Outcome::temp((4, 7), format!("{what}: killed after the time limit"));
    };
    let err = String::from_utf8_lossy(&end.stderr).replace(['\r', '\n', '\t'], " ");
    let mut outcome = outcome_of_exit(end.code, &err);
    if let Outcome::Failed { reason, .. } = &mut outcome {
        *reason = format!("{what}: {reason}");
    }
    outcome
}

/// The `-f` value: the null sender is `MAILER-DAEMON` in the From_ line, as
/// sendmail passes `$g` for `<>` to its local mailer (the Return-Path
/// header still says `<>`).
fn null_sender(sender: &str) -> &str {
    if sender.is_empty() {
        "MAILER-DAEMON"
    } else {
        sender
    }
}

impl LocalDelivery for Exec {
    fn deliver(&self, job: &Job<'_>) -> Outcome {
        match &job.target.delivery {
            Delivery::Mailbox { user, detail } => {
                match self.mailbox(user, detail.as_deref(), job.sender) {
                    Ok((cmd, id)) => self.run(cmd, id, job.message, "deliver"),
                    Err(o) => o,
                }
            }
            Delivery::File { path, run_as } => {
                // A.6.2: append in mbox format with locking, as run_as:
                // `deliver -m DEFAULT=path /dev/null` falls off the end of
                // the empty rcfile into DEFAULT (checked against procmail
                // 3.23pre: From_ line from -f, the file locked and
                // appended).
                if !path.starts_with(b"/") {
                    return Outcome::perm(
                        (1, 3),
                        sysexits::EX_CANTCREAT,
                        "file target is not an absolute path",
                    );
                }
                let id = match self.identity(run_as) {
                    Ok(id) => id,
                    Err(o) => return o,
                };
                let mut c = Command::new(&self.deliver);
                let mut def = OsString::from("DEFAULT=");
                def.push(OsStr::from_bytes(path));
                c.env_clear()
                    .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                    .arg("-f")
                    .arg(null_sender(job.sender))
                    .arg("-m")
                    .arg(def)
                    .arg("/dev/null");
                self.run(c, id, job.message, "file")
            }
            Delivery::Pipe { command, run_as } => {
                let id = match self.identity(run_as) {
                    Ok(id) => id,
                    Err(o) => return o,
                };
                let cmd = OsStr::from_bytes(command);
                // A.10: /bin/sh -c only when the command needs a shell,
                // otherwise split at blanks and run directly (Postfix).
                let mut c = if route::needs_shell(command) {
                    let mut c = Command::new("/bin/sh");
                    c.arg("-c").arg(cmd);
                    c
                } else {
                    let mut words = command
                        .split(|b| *b == b' ' || *b == b'\t')
                        .filter(|w| !w.is_empty())
                        .map(OsStr::from_bytes);
                    let Some(prog) = words.next() else {
                        return Outcome::perm((3, 0), sysexits::EX_USAGE, "empty pipe command");
                    };
                    let mut c = Command::new(prog);
                    c.args(words);
                    c
                };
                c.env_clear()
                    .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                    .env("SENDER", job.sender);
                // `postroom sendmail` and `postroom vacation` in a pipe find
                // this server's configuration, as virtual users' rcfiles do.
                for (k, v) in self.vars.iter().filter(|(k, _)| k == CONFIG_ENV) {
                    c.env(k, v);
                }
                self.run(c, id, job.message, "pipe")
            }
            other => Outcome::temp((3, 0), format!("not a local delivery: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_map_to_classes_as_mta_semantics_a10_says() {
        // (code, want class or None for delivered, want enhanced code)
        let cases: &[(Option<i32>, Option<Class>, &str)] = &[
            (Some(0), None, ""),
            (Some(75), Some(Class::Temp), "4.3.0"),
            (Some(74), Some(Class::Temp), "4.3.0"),
            (Some(71), Some(Class::Temp), "4.3.0"),
            (None, Some(Class::Temp), "4.3.0"),
            (Some(67), Some(Class::Perm), "5.1.1"),
            (Some(77), Some(Class::Perm), "5.7.1"),
            (Some(73), Some(Class::Perm), "5.3.0"),
            (Some(64), Some(Class::Perm), "5.3.0"),
            (Some(1), Some(Class::Perm), "5.3.0"),
        ];
        for &(code, want, want_status) in cases {
            let got = outcome_of_exit(code, "oops\n");
            match (want, &got) {
                (None, Outcome::Delivered) => {}
                (Some(c), Outcome::Failed { class, .. }) => {
                    assert_eq!(*class, c, "{code:?}");
                    let Attempt::Failed(f) = Attempt::from(&got) else {
                        unreachable!()
                    };
                    assert_eq!(f.status(), want_status, "{code:?}");
                    assert!(f.diagnostic.ends_with(": oops"), "{}", f.diagnostic);
                }
                _ => panic!("{code:?}: got {got:?}"),
            }
            if let Some(c) = code {
                assert_eq!(got.exit_code(), c, "the exit code is kept");
            }
        }
    }

    #[test]
    fn local_copy_adds_trace_fields_in_postfix_order_and_drops_return_path() {
        let msg = b"Return-Path: <old@x>\r\nSubject: hi\r\n\tthere\r\nReturn-path: <again>\r\n\r\nbody\r\n";
        let got = local_copy(
            msg,
            "alice@example.test",
            "Bob@example.test",
            "bob@example.test",
        );
        let want = "Return-Path: <alice@example.test>\nX-Original-To: Bob@example.test\nDelivered-To: bob@example.test\nSubject: hi\n\tthere\n\nbody\n";
        assert_eq!(String::from_utf8_lossy(&got), want);
        let got = local_copy(b"Subject: x\n\nReturn-Path: body\n", "", "a@b", "a@b");
        assert_eq!(
            String::from_utf8_lossy(&got),
            "Return-Path: <>\nX-Original-To: a@b\nDelivered-To: a@b\nSubject: x\n\nReturn-Path: body\n"
        );
    }

    #[test]
    fn list_copies_replace_list_fields_in_the_messages_own_line_ends() {
        use crate::route::lists::ListSpec;
        let spec = ListSpec::parse("team@example.test Team", crate::diag::Span::default()).unwrap();
        let list = List::new(&spec, false, true);
        let ours = "List-Id: Team <team.example.test>\nList-Post: <mailto:team@example.test>\nList-Owner: <mailto:owner-team@example.test>\nPrecedence: list\n";
        let cases: [(&str, String); 5] = [
            (
                "Subject: hi\nList-Id: other <o.x>\nprecedence: bulk\nList-Unsubscribe:\n <mailto:x>\nTo: a\n\nList-Id: body\n",
                format!("Subject: hi\nTo: a\n{ours}\nList-Id: body\n"),
            ),
            (
                "Subject: hi\r\nPrecedence: junk\r\n\r\nbody\r\n",
                format!("Subject: hi\r\n{}\r\nbody\r\n", ours.replace('\n', "\r\n")),
            ),
            // No body, no empty line, no last newline.
            ("Subject: hi", format!("Subject: hi\n{ours}")),
            // No header at all.
            ("\nbody\n", format!("{ours}\nbody\n")),
            // A field named like a list field but not one.
            ("Listing: x\n\n", format!("Listing: x\n{ours}\n")),
        ];
        for (input, want) in cases {
            let got = with_list_fields(input.as_bytes(), &list);
            assert_eq!(String::from_utf8_lossy(&got), want, "{input:?}");
        }
    }

    #[test]
    fn to_lf_turns_only_crlf_pairs_into_lf() {
        for (input, want) in [
            (&b"a\r\nb\rc\r\n"[..], &b"a\nb\rc\n"[..]),
            (b"\r\r\n\n\r", b"\r\n\n\r"),
            (b"", b""),
            (b"\r\n", b"\n"),
            (b"no line end", b"no line end"),
        ] {
            let mut got = Vec::new();
            extend_lf(&mut got, input);
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn delivered_to_loop_is_found_in_the_header_only() {
        let cases: &[(&[u8], bool)] = &[
            (b"Delivered-To: BOB@example.test\r\n\r\nx", true),
            (b"delivered-to:<bob@example.test>\n\nx", true),
            (b"Delivered-To: carol@example.test\n\nx", false),
            (b"Subject: x\n\nDelivered-To: bob@example.test\n", false),
        ];
        for &(msg, want) in cases {
            let got = has_delivered_to(msg, "bob@example.test");
            assert_eq!(got, want, "{}", String::from_utf8_lossy(msg));
        }
    }

    #[test]
    fn routing_replies_keep_their_class_and_enhanced_code() {
        // (reply, want status, want diagnostic)
        let cases = [
            (
                crate::route::reply::user_unknown(),
                "5.1.1",
                "smtp; 550 5.1.1 User unknown",
            ),
            (
                crate::status::Reply::temp(451, (2, 4), "Cannot open"),
                "4.2.4",
                "smtp; 451 4.2.4 Cannot open",
            ),
        ];
        for (reply, want_status, want_diag) in cases {
            let got = from_reply(&reply);
            assert_eq!(got.status(), want_status);
            assert_eq!(got.diagnostic, want_diag);
        }
    }

    #[test]
    fn flush_retries_a_deferred_recipient_before_its_time_and_run_once_does_not() {
        use crate::queue::{Address, Envelope, ManualClock, MemoryQueue, Schedule};
        use std::cell::Cell;
        struct Count(Cell<usize>, Outcome);
        impl LocalDelivery for Count {
            fn deliver(&self, _: &Job<'_>) -> Outcome {
                self.0.set(self.0.get() + 1);
                self.1.clone()
            }
        }
        let t0 = 1_795_694_400;
        let q = MemoryQueue::new(Schedule::default(), Arc::new(ManualClock::at(t0)));
        let env = Envelope {
            sender: "a@b.test".into(),
            recipients: vec![Address::new("bob@example.test")],
            ..Envelope::default()
        };
        let id = q.enqueue(&env, b"Subject: x\n\nhi\n").unwrap();
        let router = |rcpt: &str| {
            Resolution::Local(vec![Target {
                delivery: Delivery::Mailbox {
                    user: b"bob".to_vec(),
                    detail: None,
                },
                original: route::Address::parse(rcpt.as_bytes()).unwrap(),
                sender: None,
                list: None,
            }])
        };
        let bounce = BounceConfig {
            reporting_mta: "mx.example.test".into(),
            return_full_up_to: None,
        };
        let temp = Count(Cell::new(0), Outcome::temp((3, 0), "busy"));
        let runner = Runner::new(&q, &router, &temp, bounce.clone());
        assert_eq!(runner.run_once(t0).deferred, 1);
        // Deferred for min_backoff (5 min): a run a minute later skips it.
        assert_eq!(runner.run_once(t0 + 60).deferred, 0);
        assert_eq!(temp.0.get(), 1);
        let ok = Count(Cell::new(0), Outcome::Delivered);
        let got = Runner::new(&q, &router, &ok, bounce).flush(t0 + 60);
        assert_eq!((got.delivered, got.removed), (1, 1));
        assert_eq!(ok.0.get(), 1);
        assert!(matches!(q.entry(&id), Err(QueueError::NotFound(_))));
    }
}
