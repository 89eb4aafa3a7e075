//! The queue runner end to end: due entries delivered, deferred and
//! retried, bounced or expired, over the in-memory queue and the file spool
//! (across a restart), with a fake local delivery and with the real
//! `deliver` binary writing into a virtual user's Maildir.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use postroom::deliver::zygote::{Request, Zygotes};
use postroom::queue::bounce::BounceConfig;
use postroom::queue::{
    Address, Clock, Envelope, ManualClock, MemoryQueue, Queue, Schedule, Spool, State,
};
use postroom::queue::{Attempt, Failure};
use postroom::route::{Delivery, Resolution, RunAs, Target, User, VirtualUsers};
use postroom::runner::{Exec, Job, LocalDelivery, Relay, Runner, Summary};
use postroom::status::{Class, Outcome, sysexits};

use crate::util::{Dir, bin};

/// 2026-11-26 12:00:00 UTC.
const T0: i64 = 1_795_694_400;

const MSG: &[u8] = b"Return-Path: <forged@x.test>\r\nFrom: alice@example.test\r\nSubject: hello\r\n\r\nbody line\r\n";

fn schedule() -> Schedule {
    Schedule {
        jitter_percent: 0,
        ..Schedule::default()
    }
}

fn bounce_cfg() -> BounceConfig {
    BounceConfig {
        reporting_mta: "mx.example.test".into(),
        return_full_up_to: None,
    }
}

fn envelope(sender: &str, rcpts: &[&str]) -> Envelope {
    Envelope {
        sender: sender.into(),
        recipients: rcpts.iter().map(|r| Address::new(*r)).collect(),
        ..Envelope::default()
    }
}

/// `*@example.test` are mailbox users named by the local part,
/// `*@relay.test` are relayed, the rest refused.
fn router(rcpt: &str) -> Resolution {
    let (local, domain) = rcpt.split_once('@').unwrap();
    let original = postroom::route::Address::new(local.as_bytes(), domain.as_bytes());
    match domain {
        "example.test" => Resolution::Local(vec![Target {
            delivery: Delivery::Mailbox {
                user: local.as_bytes().to_vec(),
                detail: None,
            },
            original,
            sender: None,
            list: None,
        }]),
        "relay.test" => Resolution::Relay(original),
        _ => Resolution::Refused(postroom::route::reply::relay_denied()),
    }
}

/// A fake agent: answers from a script per user (the last answer repeats)
/// and keeps what it was given.
#[derive(Default)]
struct Fake {
    script: Vec<(&'static str, Vec<Outcome>)>,
    seen: RefCell<Vec<(String, String, Vec<u8>)>>,
}

impl LocalDelivery for Fake {
    fn deliver(&self, job: &Job<'_>) -> Outcome {
        let Delivery::Mailbox { user, .. } = &job.target.delivery else {
            panic!("fake got {:?}", job.target)
        };
        let user = String::from_utf8(user.clone()).unwrap();
        let n = self
            .seen
            .borrow()
            .iter()
            .filter(|(u, _, _)| *u == user)
            .count();
        self.seen
            .borrow_mut()
            .push((user.clone(), job.sender.to_string(), job.message.to_vec()));
        let answers = &self
            .script
            .iter()
            .find(|(u, _)| *u == user)
            .unwrap_or_else(|| panic!("no script for {user}"))
            .1;
        answers[n.min(answers.len() - 1)].clone()
    }
}

fn temp() -> Outcome {
    Outcome::temp((2, 1), "mailbox locked")
}

fn perm() -> Outcome {
    Outcome::perm((1, 1), sysexits::EX_NOUSER, "no such user")
}

fn memory(clock: &Arc<ManualClock>) -> MemoryQueue {
    MemoryQueue::new(schedule(), clock.clone())
}

/// The DSNs in the queue: entries with the null sender.
fn dsns(q: &dyn Queue) -> Vec<(Envelope, String)> {
    q.entries()
        .unwrap()
        .entries
        .into_iter()
        .filter(|e| e.envelope.sender.is_empty())
        .map(|e| {
            let m = q.message(&e.id).unwrap();
            (e.envelope, String::from_utf8_lossy(&m).into_owned())
        })
        .collect()
}

#[test]
fn delivered_recipient_gets_trace_fields_and_the_entry_is_removed() {
    let clock = Arc::new(ManualClock::at(T0));
    let q = memory(&clock);
    let id = q
        .enqueue(&envelope("alice@example.test", &["bob@example.test"]), MSG)
        .unwrap();
    let fake = Fake {
        script: vec![("bob", vec![Outcome::Delivered])],
        ..Fake::default()
    };
    let got = Runner::new(&q, &router, &fake, bounce_cfg()).run_once(T0);
    let want = Summary {
        entries: 1,
        delivered: 1,
        removed: 1,
        ..Summary::default()
    };
    assert_eq!(got, want);
    assert!(q.entry(&id).is_err(), "entry removed");
    let seen = fake.seen.borrow();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1, "alice@example.test");
    assert_eq!(
        String::from_utf8_lossy(&seen[0].2),
        "Return-Path: <alice@example.test>\nX-Original-To: bob@example.test\n\
         Delivered-To: bob@example.test\nFrom: alice@example.test\nSubject: hello\n\nbody line\n"
    );
}

#[test]
fn deferred_recipient_waits_for_its_retry_then_is_delivered() {
    let clock = Arc::new(ManualClock::at(T0));
    let q = memory(&clock);
    let id = q
        .enqueue(
            &envelope(
                "alice@example.test",
                &["bob@example.test", "carol@example.test"],
            ),
            MSG,
        )
        .unwrap();
    let fake = Fake {
        script: vec![
            ("bob", vec![temp(), Outcome::Delivered]),
            ("carol", vec![Outcome::Delivered]),
        ],
        ..Fake::default()
    };
    let runner = Runner::new(&q, &router, &fake, bounce_cfg());
    let got = runner.run_once(T0);
    assert_eq!((got.delivered, got.deferred, got.removed), (1, 1, 0));
    let e = q.entry(&id).unwrap();
    assert!(matches!(e.recipients[0].state, State::Deferred { next, .. } if next == T0 + 300));
    assert_eq!(e.recipients[1].state, State::Delivered);
    // Not due yet: nothing is tried.
    let got = runner.run_once(T0 + 299);
    assert_eq!(got, Summary::default());
    assert_eq!(fake.seen.borrow().len(), 2);
    // Due: bob only (carol is never delivered twice), then removed.
    let got = runner.run_once(T0 + 300);
    assert_eq!((got.delivered, got.deferred, got.removed), (1, 0, 1));
    let users: Vec<String> = fake.seen.borrow().iter().map(|s| s.0.clone()).collect();
    assert_eq!(users, ["bob", "carol", "bob"]);
    assert!(q.entry(&id).is_err());
}

#[test]
fn permanent_failure_queues_one_dsn_to_the_sender() {
    let clock = Arc::new(ManualClock::at(T0));
    let q = memory(&clock);
    let id = q
        .enqueue(
            &envelope(
                "alice@example.test",
                &["bob@example.test", "dave@other.test"],
            ),
            MSG,
        )
        .unwrap();
    let fake = Fake {
        script: vec![("bob", vec![perm()])],
        ..Fake::default()
    };
    let got = Runner::new(&q, &router, &fake, bounce_cfg()).run_once(T0);
    assert_eq!((got.failed, got.dsns, got.removed), (2, 1, 1));
    assert!(q.entry(&id).is_err());
    let d = dsns(&q);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].0.recipients, vec![Address::new("alice@example.test")]);
    assert!(d[0].1.contains("Final-Recipient: rfc822; bob@example.test"));
    assert!(d[0].1.contains("Status: 5.1.1"), "{}", d[0].1);
    assert!(d[0].1.contains("Diagnostic-Code: x-unix; no such user"));
    // The refused recipient (routing changed since it was accepted) too.
    assert!(d[0].1.contains("Final-Recipient: rfc822; dave@other.test"));
}

#[test]
fn null_sender_is_never_bounced() {
    let clock = Arc::new(ManualClock::at(T0));
    let q = memory(&clock);
    let id = q
        .enqueue(&envelope("", &["bob@example.test"]), MSG)
        .unwrap();
    let fake = Fake {
        script: vec![("bob", vec![perm()])],
        ..Fake::default()
    };
    let got = Runner::new(&q, &router, &fake, bounce_cfg()).run_once(T0);
    assert_eq!(
        (got.failed, got.dsns, got.not_bounced, got.removed),
        (1, 0, 1, 1)
    );
    assert!(q.entry(&id).is_err());
    assert!(q.entries().unwrap().entries.is_empty(), "no DSN queued");
    assert!(String::from_utf8_lossy(&fake.seen.borrow()[0].2).starts_with("Return-Path: <>\n"));
}

#[test]
fn temporary_failures_expire_after_the_lifetime_and_bounce_with_the_last_error() {
    let clock = Arc::new(ManualClock::at(T0));
    let s = Schedule {
        min_backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(60),
        max_lifetime: Duration::from_secs(200),
        ..schedule()
    };
    let q = MemoryQueue::new(s, clock.clone());
    let id = q
        .enqueue(&envelope("alice@example.test", &["bob@example.test"]), MSG)
        .unwrap();
    let fake = Fake {
        script: vec![("bob", vec![temp()])],
        ..Fake::default()
    };
    let runner = Runner::new(&q, &router, &fake, bounce_cfg());
    let mut now = T0;
    let mut total = Summary::default();
    while q.entry(&id).is_ok() && now <= T0 + 1000 {
        let s = runner.run_once(now);
        total.deferred += s.deferred;
        total.failed += s.failed;
        total.dsns += s.dsns;
        now += 10;
    }
    // Tried at 0, 60, 120, 180 and at the end of the lifetime, 200.
    assert_eq!(fake.seen.borrow().len(), 5);
    assert_eq!((total.deferred, total.failed, total.dsns), (4, 1, 1));
    let d = dsns(&q);
    assert_eq!(d.len(), 1);
    assert!(d[0].1.contains("Action: failed"));
    assert!(
        d[0].1.contains("Status: 4.2.1"),
        "last temporary status kept"
    );
}

#[test]
fn remote_recipients_wait_when_there_is_no_relay() {
    let clock = Arc::new(ManualClock::at(T0));
    let q = memory(&clock);
    let id = q
        .enqueue(&envelope("alice@example.test", &["bob@relay.test"]), MSG)
        .unwrap();
    let fake = Fake::default();
    let got = Runner::new(&q, &router, &fake, bounce_cfg()).run_once(T0);
    assert_eq!((got.deferred, got.removed), (1, 0));
    let e = q.entry(&id).unwrap();
    let err = e.recipients[0].state.error().unwrap();
    assert!(err.diagnostic.contains("no relay configured"), "{err:?}");
    assert_eq!(err.status(), "4.4.0");
}

/// A fake road out: answers each recipient from `answers` (by address;
/// delivered when not listed) and keeps every call.
#[derive(Default)]
struct FakeRelay {
    answers: Vec<(&'static str, Attempt)>,
    calls: RefCell<Vec<Call>>,
}

/// One `Relay::send`: domain, sender, recipients, parameters, message.
type Call = (String, String, Vec<String>, String, Vec<u8>);

impl Relay for FakeRelay {
    fn send(
        &self,
        domain: &[u8],
        sender: &str,
        rcpts: &[&str],
        params: &str,
        message: &[u8],
    ) -> Vec<Attempt> {
        self.calls.borrow_mut().push((
            String::from_utf8(domain.to_vec()).unwrap(),
            sender.into(),
            rcpts.iter().map(|r| r.to_string()).collect(),
            params.into(),
            message.to_vec(),
        ));
        rcpts
            .iter()
            .map(|r| {
                self.answers
                    .iter()
                    .find(|(a, _)| a == r)
                    .map_or(Attempt::Delivered, |(_, at)| at.clone())
            })
            .collect()
    }
}

fn remote_failure(class: Class, code: &str) -> Attempt {
    Attempt::Failed(Failure {
        class,
        detail: (1, 1),
        diagnostic: format!("smtp; {code} 5.1.1 no such user here"),
        remote: Some("mx.relay.test".into()),
    })
}

#[test]
fn remote_recipients_go_out_one_transaction_per_domain_and_each_answer_counts() {
    let clock = Arc::new(ManualClock::at(T0));
    let q = memory(&clock);
    let mut env = envelope(
        "alice@example.test",
        &[
            "x@relay.test",
            "bob@example.test",
            "gone@other.test",
            "y@relay.test",
        ],
    );
    env.params = "BODY=8BITMIME".into();
    let id = q.enqueue(&env, MSG).unwrap();
    let fake = Fake {
        script: vec![("bob", vec![Outcome::Delivered])],
        ..Fake::default()
    };
    let relay = FakeRelay {
        answers: vec![("gone@other.test", remote_failure(Class::Perm, "550"))],
        ..FakeRelay::default()
    };
    let got = Runner::new(&q, &router_out, &fake, bounce_cfg())
        .with_relay(&relay)
        .run_once(T0);
    assert_eq!((got.delivered, got.failed, got.dsns), (3, 1, 1), "{got:?}");
    let calls = relay.calls.borrow();
    let want: Vec<(&str, Vec<&str>)> = vec![
        ("relay.test", vec!["x@relay.test", "y@relay.test"]),
        ("other.test", vec!["gone@other.test"]),
    ];
    let got: Vec<(&str, Vec<&str>)> = calls
        .iter()
        .map(|c| (c.0.as_str(), c.2.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(got, want);
    for c in calls.iter() {
        assert_eq!(
            (c.1.as_str(), c.3.as_str()),
            ("alice@example.test", "BODY=8BITMIME")
        );
        assert_eq!(
            c.4, MSG,
            "the message goes out as queued, no local trace fields"
        );
    }
    assert_eq!(fake.seen.borrow().len(), 1, "bob delivered locally");
    // The 550 comes back to alice, with the remote's words and name.
    let d = dsns(&q);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].0.recipients[0].address, "alice@example.test");
    assert!(
        d[0].1.contains("Final-Recipient: rfc822; gone@other.test"),
        "{}",
        d[0].1
    );
    assert!(
        d[0].1
            .contains("Diagnostic-Code: smtp; 550 5.1.1 no such user here"),
        "{}",
        d[0].1
    );
    assert!(
        d[0].1.contains("Remote-MTA: dns; mx.relay.test"),
        "{}",
        d[0].1
    );
    assert!(q.entry(&id).is_err(), "every recipient is done: removed");
}

#[test]
fn a_remote_temporary_failure_defers_only_that_recipient_and_is_retried() {
    let clock = Arc::new(ManualClock::at(T0));
    let q = memory(&clock);
    let id = q
        .enqueue(
            &envelope("alice@example.test", &["x@relay.test", "y@relay.test"]),
            MSG,
        )
        .unwrap();
    let fake = Fake::default();
    let relay = FakeRelay {
        answers: vec![("y@relay.test", remote_failure(Class::Temp, "451"))],
        ..FakeRelay::default()
    };
    let runner = Runner::new(&q, &router_out, &fake, bounce_cfg()).with_relay(&relay);
    let got = runner.run_once(T0);
    assert_eq!((got.delivered, got.deferred), (1, 1));
    let e = q.entry(&id).unwrap();
    assert_eq!(e.recipients[0].state, State::Delivered);
    assert!(matches!(e.recipients[1].state, State::Deferred { .. }));
    // The retry sends to y alone: x got its 250 and never goes again.
    runner.flush(T0 + 1);
    let calls = relay.calls.borrow();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].2, ["y@relay.test"]);
}

/// `router`, plus `fwd@example.test`, an alias of two remote addresses and
/// bob, and `list@example.test` whose forwards come from `owner-list`.
fn router_out(rcpt: &str) -> Resolution {
    let target = |delivery: Delivery, sender: Option<&str>| Target {
        delivery,
        original: postroom::route::Address::new(b"fwd", b"example.test"),
        sender: sender.map(|s| s.as_bytes().to_vec()),
        list: None,
    };
    let remote = |a: &str| {
        let (l, d) = a.split_once('@').unwrap();
        Delivery::Forward(postroom::route::Address::new(l.as_bytes(), d.as_bytes()))
    };
    match rcpt {
        "fwd@example.test" => Resolution::Local(vec![
            target(remote("one@far.test"), None),
            target(
                Delivery::Mailbox {
                    user: b"bob".to_vec(),
                    detail: None,
                },
                None,
            ),
            target(remote("two@far.test"), None),
        ]),
        "list@example.test" => Resolution::Local(vec![target(
            remote("member@far.test"),
            Some("owner-list@example.test"),
        )]),
        _ => match router(rcpt) {
            Resolution::Refused(_) => {
                let (l, d) = rcpt.split_once('@').unwrap();
                Resolution::Relay(postroom::route::Address::new(l.as_bytes(), d.as_bytes()))
            }
            r => r,
        },
    }
}

#[test]
fn forwards_are_queued_as_a_new_entry_with_delivered_to_on_top() {
    let clock = Arc::new(ManualClock::at(T0));
    let q = memory(&clock);
    let mut env = envelope(
        "alice@example.test",
        &["fwd@example.test", "list@example.test"],
    );
    env.hops = 3;
    let id = q.enqueue(&env, MSG).unwrap();
    let fake = Fake {
        script: vec![("bob", vec![Outcome::Delivered])],
        ..Fake::default()
    };
    let got = Runner::new(&q, &router_out, &fake, bounce_cfg()).run_once(T0);
    assert_eq!((got.delivered, got.removed), (2, 1), "{got:?}");
    assert!(q.entry(&id).is_err());
    assert_eq!(fake.seen.borrow().len(), 1, "bob's copy delivered here");
    let mut out: Vec<_> = q
        .entries()
        .unwrap()
        .entries
        .into_iter()
        .map(|e| {
            let m = String::from_utf8(q.message(&e.id).unwrap()).unwrap();
            let rcpts: Vec<String> = e
                .envelope
                .recipients
                .iter()
                .map(|r| r.address.clone())
                .collect();
            (e.envelope.sender, rcpts, e.envelope.hops, m)
        })
        .collect();
    out.sort();
    assert_eq!(out.len(), 2, "{out:?}");
    let msg = String::from_utf8_lossy(MSG);
    assert_eq!(
        out[0],
        (
            "alice@example.test".to_string(),
            vec!["one@far.test".to_string(), "two@far.test".to_string()],
            4,
            format!("Delivered-To: fwd@example.test\r\n{msg}")
        )
    );
    assert_eq!(
        out[1],
        (
            "owner-list@example.test".to_string(),
            vec!["member@far.test".to_string()],
            4,
            format!("Delivered-To: list@example.test\r\n{msg}")
        )
    );
}

#[test]
fn a_forward_that_comes_back_is_a_loop_and_bounces() {
    let clock = Arc::new(ManualClock::at(T0));
    let q = memory(&clock);
    let looped = [b"Delivered-To: fwd@example.test\r\n".as_slice(), MSG].concat();
    let id = q
        .enqueue(
            &envelope("alice@example.test", &["fwd@example.test"]),
            &looped,
        )
        .unwrap();
    let fake = Fake::default();
    let got = Runner::new(&q, &router_out, &fake, bounce_cfg()).run_once(T0);
    assert_eq!((got.failed, got.dsns), (1, 1), "{got:?}");
    assert!(q.entry(&id).is_err());
    assert!(fake.seen.borrow().is_empty());
    let d = dsns(&q);
    assert!(d[0].1.contains("Status: 5.4.6"), "{}", d[0].1);
}

#[test]
fn spool_restart_resumes_the_deferred_recipient() {
    let dir = Dir::new("runner-spool");
    let clock = Arc::new(ManualClock::at(T0));
    let fake = Fake {
        script: vec![("bob", vec![temp(), Outcome::Delivered])],
        ..Fake::default()
    };
    let id = {
        let (spool, _) = Spool::open(dir.join("q"), schedule(), clock.clone()).unwrap();
        let id = spool
            .enqueue(&envelope("alice@example.test", &["bob@example.test"]), MSG)
            .unwrap();
        let got = Runner::new(&spool, &router, &fake, bounce_cfg()).run_once(T0);
        assert_eq!(got.deferred, 1);
        id
    };
    clock.advance(Duration::from_secs(300));
    let (spool, rec) = Spool::open(dir.join("q"), schedule(), clock.clone()).unwrap();
    assert_eq!(rec.entries, 1);
    assert_eq!(spool.entry(&id).unwrap().recipients[0].attempts, 1);
    let stop = AtomicBool::new(false);
    let runner = Runner::new(&spool, &router, &fake, bounce_cfg());
    // The loop runs here; a watcher sets the stop flag once the entry is
    // gone, and the loop notices it within its 100 ms poll.
    let got = std::thread::scope(|s| {
        s.spawn(|| {
            while spool.entry(&id).is_ok() {
                std::thread::sleep(Duration::from_millis(10));
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        runner.run_until(clock.as_ref() as &dyn Clock, Duration::from_secs(60), &stop)
    });
    assert_eq!((got.delivered, got.removed), (1, 1));
    assert!(spool.entries().unwrap().entries.is_empty());
    assert!(dir.join("q/active").read_dir().unwrap().next().is_none());
}

/// A virtual user `bob` whose rcfile files everything into `Maildir/`.
/// The one message in `virtual_bob`'s Maildir `new/`.
fn bobs_only_message(dir: &Dir) -> std::path::PathBuf {
    let new: Vec<_> = dir
        .join("home/bob/Maildir/new")
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    new.into_iter().next().unwrap()
}

fn virtual_bob(dir: &Dir) -> VirtualUsers {
    dir.write("home/bob/.procmailrc", ":0\nMaildir/\n");
    let mut users = VirtualUsers::default();
    users.insert(User {
        name: b"bob".to_vec(),
        home: dir.join("home/bob"),
        mailbox: None,
        uid: None,
    });
    users
}

#[test]
fn real_deliver_writes_the_virtual_users_maildir() {
    let dir = Dir::new("runner-deliver");
    let exec = Exec::new(bin("deliver"), Arc::new(virtual_bob(&dir)));
    let clock = Arc::new(ManualClock::at(T0));
    let q = memory(&clock);
    q.enqueue(&envelope("alice@example.test", &["bob@example.test"]), MSG)
        .unwrap();
    let got = Runner::new(&q, &router, &exec, bounce_cfg()).run_once(T0);
    assert_eq!((got.delivered, got.removed), (1, 1), "{got:?}");
    let got = std::fs::read(bobs_only_message(&dir)).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        "Return-Path: <alice@example.test>\nX-Original-To: bob@example.test\n\
         Delivered-To: bob@example.test\nFrom: alice@example.test\nSubject: hello\n\nbody line\n"
    );
}

/// What a recipient resolves to when it is an alias for one pipe.
fn pipe_to(command: &[u8]) -> Resolution {
    Resolution::Local(vec![Target {
        delivery: Delivery::Pipe {
            command: command.to_vec(),
            run_as: RunAs::DefaultUser,
        },
        original: postroom::route::Address::new(b"x", b"example.test"),
        sender: None,
        list: None,
    }])
}

#[test]
fn real_deliver_unknown_user_and_pipe_exit_codes_bounce_or_defer() {
    let dir = Dir::new("runner-exit");
    let exec = Exec::new(bin("deliver"), Arc::new(virtual_bob(&dir)));
    // Quotes make it go through /bin/sh -c (A.10).
    let pipe =
        |code: &'static str| move |_: &str| pipe_to(format!("sh -c 'exit {code}'").as_bytes());
    let clock = Arc::new(ManualClock::at(T0));
    // 75 (EX_TEMPFAIL) from a pipe defers.
    let q = memory(&clock);
    let id = q
        .enqueue(&envelope("alice@example.test", &["x@example.test"]), MSG)
        .unwrap();
    let r75 = pipe("75");
    let got = Runner::new(&q, &r75, &exec, bounce_cfg()).run_once(T0);
    assert_eq!(got.deferred, 1, "{got:?}");
    let e = q.entry(&id).unwrap();
    assert_eq!(e.recipients[0].state.error().unwrap().status(), "4.3.0");
    // 77 (EX_NOPERM) from a pipe bounces with 5.7.1.
    let q = memory(&clock);
    q.enqueue(&envelope("alice@example.test", &["x@example.test"]), MSG)
        .unwrap();
    let r77 = pipe("77");
    let got = Runner::new(&q, &r77, &exec, bounce_cfg()).run_once(T0);
    assert_eq!((got.failed, got.dsns), (1, 1), "{got:?}");
    assert!(dsns(&q)[0].1.contains("Status: 5.7.1"));
    // A mailbox user that vanished since acceptance bounces with 5.1.1.
    let q = memory(&clock);
    q.enqueue(
        &envelope("alice@example.test", &["nobody-here@example.test"]),
        MSG,
    )
    .unwrap();
    let got = Runner::new(&q, &router, &exec, bounce_cfg()).run_once(T0);
    assert_eq!((got.failed, got.dsns), (1, 1), "{got:?}");
    assert!(dsns(&q)[0].1.contains("Status: 5.1.1"));
    // A program that does not exist is run directly and bounces.
    let q = memory(&clock);
    q.enqueue(&envelope("alice@example.test", &["x@example.test"]), MSG)
        .unwrap();
    let missing = |_: &str| pipe_to(b"/nonexistent/prog arg");
    let got = Runner::new(&q, &missing, &exec, bounce_cfg()).run_once(T0);
    assert_eq!((got.failed, got.dsns), (1, 1), "{got:?}");
    assert!(dsns(&q)[0].1.contains("Status: 5.3.0"));
}

/// What `agent` wrote into the virtual user's Maildir for MSG, run through
/// [`Exec`] (the same argv and environment for both agents).
fn maildir_copy_by(agent: &std::path::Path, name: &str) -> Vec<u8> {
    maildir_copy(Exec::new(agent, Arc::new(VirtualUsers::default())), name)
}

/// What `exec` (its users replaced by `virtual_bob`) writes into bob's
/// Maildir for one queued message.
fn maildir_copy(mut exec: Exec, name: &str) -> Vec<u8> {
    let dir = Dir::new(name);
    exec.users = Arc::new(virtual_bob(&dir));
    let agent = exec.deliver.clone();
    let clock = Arc::new(ManualClock::at(T0));
    let q = memory(&clock);
    q.enqueue(&envelope("alice@example.test", &["bob@example.test"]), MSG)
        .unwrap();
    let got = Runner::new(&q, &router, &exec, bounce_cfg()).run_once(T0);
    assert_eq!(got.delivered, 1, "{}: {got:?}", agent.display());
    std::fs::read(bobs_only_message(&dir)).unwrap()
}

#[test]
fn virtual_user_invocation_gives_the_same_maildir_file_as_procmail() {
    // The `-m HOME=.. MAILDIR=.. rcfile` command line checked against
    // the real procmail 3.23pre: both write the same bytes into the
    // virtual user's own Maildir (not the invoking user's home).
    if !crate::util::require_tool("procmail") {
        return;
    }
    let want = maildir_copy_by(std::path::Path::new("/usr/bin/procmail"), "runner-pm");
    let got = maildir_copy_by(&bin("deliver"), "runner-dl");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}

#[test]
fn file_target_is_appended_in_mbox_format() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Dir::new("runner-file");
    // As root the write runs as the default user (nobody): let it in.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::create_dir(dir.join("out")).unwrap();
    std::fs::set_permissions(dir.join("out"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.join("out/archive");
    let exec = Exec::new(bin("deliver"), Arc::new(VirtualUsers::default()));
    let to_file = |_: &str| {
        Resolution::Local(vec![Target {
            delivery: Delivery::File {
                path: path.to_str().unwrap().as_bytes().to_vec(),
                run_as: RunAs::DefaultUser,
            },
            original: postroom::route::Address::new(b"archive", b"example.test"),
            sender: None,
            list: None,
        }])
    };
    let clock = Arc::new(ManualClock::at(T0));
    let q = memory(&clock);
    for _ in 0..2 {
        q.enqueue(
            &envelope("alice@example.test", &["archive@example.test"]),
            MSG,
        )
        .unwrap();
    }
    let got = Runner::new(&q, &to_file, &exec, bounce_cfg()).run_once(T0);
    assert_eq!((got.delivered, got.removed), (2, 2), "{got:?}");
    let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
    let copies: Vec<&str> = text.split("From alice@example.test ").skip(1).collect();
    assert_eq!(copies.len(), 2, "{text}");
    for c in copies {
        let (_date, rest) = c.split_once('\n').unwrap();
        assert_eq!(
            rest,
            "Return-Path: <alice@example.test>\nX-Original-To: archive@example.test\n\
             Delivered-To: archive@example.test\nFrom: alice@example.test\nSubject: hello\n\nbody line\n\n"
        );
    }
}

#[test]
fn one_delay_warning_is_sent_while_a_recipient_waits() {
    let clock = Arc::new(ManualClock::at(T0));
    let s = Schedule {
        delay_warning: Some(Duration::from_secs(600)),
        ..schedule()
    };
    let q = MemoryQueue::new(s, clock.clone());
    let id = q
        .enqueue(&envelope("alice@example.test", &["bob@example.test"]), MSG)
        .unwrap();
    let fake = Fake {
        // The warning goes to alice, who is local here: it is delivered
        // by the next run like any other message.
        script: vec![("bob", vec![temp()]), ("alice", vec![Outcome::Delivered])],
        ..Fake::default()
    };
    let runner = Runner::new(&q, &router, &fake, bounce_cfg());
    let mut dsn_count = 0;
    for t in (0..=3600).step_by(60) {
        dsn_count += runner.run_once(T0 + t).dsns;
    }
    assert_eq!(dsn_count, 1);
    assert!(q.entry(&id).unwrap().warned);
    let seen = fake.seen.borrow();
    let to_alice: Vec<_> = seen.iter().filter(|s| s.0 == "alice").collect();
    assert_eq!(to_alice.len(), 1);
    // From the null sender, never bounced back (B.9).
    assert_eq!(to_alice[0].1, "");
    let text = String::from_utf8_lossy(&to_alice[0].2);
    assert!(text.starts_with("Return-Path: <>\n"), "{text}");
    assert!(text.contains("Action: delayed"), "{text}");
}

#[test]
fn a_temporary_failure_of_one_alias_member_defers_the_whole_recipient() {
    // bob@ expands to bob and carol; carol's mailbox is locked.
    let list = |_: &str| {
        let t = |u: &str| Target {
            delivery: Delivery::Mailbox {
                user: u.as_bytes().to_vec(),
                detail: None,
            },
            original: postroom::route::Address::new(b"list", b"example.test"),
            sender: Some(b"owner-list@example.test".to_vec()),
            list: None,
        };
        Resolution::Local(vec![t("bob"), t("carol")])
    };
    let clock = Arc::new(ManualClock::at(T0));
    let q = memory(&clock);
    let id = q
        .enqueue(&envelope("alice@example.test", &["list@example.test"]), MSG)
        .unwrap();
    let fake = Fake {
        script: vec![
            ("bob", vec![Outcome::Delivered]),
            ("carol", vec![temp(), Outcome::Delivered]),
        ],
        ..Fake::default()
    };
    let runner = Runner::new(&q, &list, &fake, bounce_cfg());
    assert_eq!(runner.run_once(T0).deferred, 1);
    assert!(q.entry(&id).is_ok());
    assert_eq!(runner.run_once(T0 + 300).delivered, 1);
    // bob got it twice: a duplicate rather than a loss (runner docs).
    let seen = fake.seen.borrow();
    let users: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(users, ["bob", "carol", "bob", "carol"]);
    // The owner- sender is the one the agent is given.
    assert!(seen.iter().all(|s| s.1 == "owner-list@example.test"));
}

#[test]
fn a_message_already_delivered_to_the_recipient_bounces_as_a_loop() {
    // mta-semantics B.7: Delivered-To for this recipient is already there.
    let clock = Arc::new(ManualClock::at(T0));
    let q = memory(&clock);
    let looped = b"Delivered-To: bob@example.test\r\nSubject: again\r\n\r\nx\r\n";
    q.enqueue(
        &envelope("alice@example.test", &["bob@example.test"]),
        looped,
    )
    .unwrap();
    let fake = Fake::default();
    let got = Runner::new(&q, &router, &fake, bounce_cfg()).run_once(T0);
    assert_eq!((got.failed, got.dsns), (1, 1), "{got:?}");
    assert!(fake.seen.borrow().is_empty(), "the agent is not run");
    let d = dsns(&q);
    assert!(d[0].1.contains("Status: 5.4.6"), "{}", d[0].1);
    assert!(d[0].1.contains("mail forwarding loop for bob@example.test"));
}

/// A program that outlives the time limit is killed and the recipient is
/// deferred (4.4.7), soon after the limit rather than when it would end.
#[test]
fn real_pipe_past_the_time_limit_is_killed_and_deferred() {
    let dir = Dir::new("runner-time-limit");
    let mut exec = Exec::new(bin("deliver"), Arc::new(virtual_bob(&dir)));
    exec.time_limit = std::time::Duration::from_millis(500);
    let slow = |_: &str| pipe_to(b"sleep 30");
    let clock = Arc::new(ManualClock::at(T0));
    let q = memory(&clock);
    let id = q
        .enqueue(&envelope("alice@example.test", &["x@example.test"]), MSG)
        .unwrap();
    let start = std::time::Instant::now();
    let got = Runner::new(&q, &slow, &exec, bounce_cfg()).run_once(T0);
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(got.deferred, 1, "{got:?}");
    let e = q.entry(&id).unwrap();
    assert_eq!(e.recipients[0].state.error().unwrap().status(), "4.4.7");
}

#[test]
fn a_zygote_delivery_writes_what_an_exec_of_deliver_writes() {
    let want = maildir_copy_by(&bin("deliver"), "runner-exec");
    let mut exec = Exec::new(bin("deliver"), Arc::new(VirtualUsers::default()));
    exec.zygotes = Some(Arc::new(Zygotes::new(bin("deliver"))));
    let got = maildir_copy(exec, "runner-zygote");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}

#[test]
fn a_zygote_gives_the_exit_code_and_stderr_an_exec_gives() {
    let dir = Dir::new("runner-zygote-codes");
    dir.write("rc-tempfail", "EXITCODE=75\n:0\n/dev/null\n");
    dir.write("rc-log", "LOG=\"hello from the rcfile\n\"\n:0\n/dev/null\n");
    dir.write("rc-bad", ":0 Q\n/dev/null\n");
    dir.write(
        "rc-env",
        "LOG=\"config=$POSTROOM_CONFIG\n\"\n:0\n| printenv POSTROOM_CONFIG >&2\n",
    );
    let zygotes = Zygotes::new(bin("deliver"));
    for (args, env) in [
        (vec!["-m", "rc-tempfail"], vec![]),
        (vec!["-m", "rc-log"], vec![]),
        (vec!["-m", "rc-bad"], vec![]),
        (vec!["-m", "/nonexistent/rc"], vec![]),
        (vec!["-m", "rc-log"], vec![("LOGFILE", "/dev/stderr")]),
        (vec!["-v"], vec![]),
        (
            vec!["-m", "rc-env"],
            vec![("POSTROOM_CONFIG", "/etc/somewhere")],
        ),
    ] {
        let path: Vec<(String, String)> = std::iter::once(("PATH".into(), "/usr/bin:/bin".into()))
            .chain(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let out = std::process::Command::new(bin("deliver"))
            .args(&args)
            .current_dir(dir.path())
            .env_clear()
            .envs(path.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                // `-v` does not read it.
                let _ = c.stdin.take().unwrap().write_all(MSG);
                c.wait_with_output()
            })
            .unwrap();
        // The zygote's child starts in the zygote's directory: absolute
        // rcfile names make both runs read the same files.
        let abs: Vec<Vec<u8>> = args
            .iter()
            .map(|a| {
                if a.starts_with("rc-") {
                    dir.join(a).to_str().unwrap().as_bytes().to_vec()
                } else {
                    a.as_bytes().to_vec()
                }
            })
            .collect();
        let req = Request {
            argv: std::iter::once(bin("deliver").to_str().unwrap().as_bytes().to_vec())
                .chain(abs)
                .collect(),
            env: path
                .iter()
                .map(|(k, v)| format!("{k}={v}").into_bytes())
                .collect(),
            id: None,
            message: MSG.into(),
        };
        let got = zygotes
            .run(&req, Duration::from_secs(20))
            .unwrap()
            .expect("not killed");
        let what = format!("{args:?} {env:?}");
        assert_eq!(got.code, out.status.code(), "{what}");
        let want_err =
            String::from_utf8_lossy(&out.stderr).replace(dir.path().to_str().unwrap(), "");
        let got_err =
            String::from_utf8_lossy(&got.stderr).replace(dir.path().to_str().unwrap(), "");
        assert_eq!(
            got_err.replace("/rc-", "rc-"),
            want_err.replace("/rc-", "rc-"),
            "{what}"
        );
    }
}

#[test]
fn a_zygote_child_past_the_time_limit_is_killed_and_the_zygote_goes_on() {
    let dir = Dir::new("runner-zygote-limit");
    dir.write("rc-slow", "X=`sleep 30`\n");
    dir.write("rc-fast", ":0\n/dev/null\n");
    let zygotes = Zygotes::new(bin("deliver"));
    let req = |rc: &str| Request {
        argv: vec![
            b"deliver".to_vec(),
            b"-m".to_vec(),
            dir.join(rc).to_str().unwrap().as_bytes().to_vec(),
        ],
        env: vec![b"PATH=/usr/bin:/bin".to_vec()],
        id: None,
        message: MSG.into(),
    };
    let start = std::time::Instant::now();
    let got = zygotes
        .run(&req("rc-slow"), Duration::from_millis(500))
        .unwrap();
    assert_eq!(got, None, "killed");
    assert!(start.elapsed() < Duration::from_secs(10));
    let got = zygotes
        .run(&req("rc-fast"), Duration::from_secs(20))
        .unwrap();
    assert_eq!(got.map(|e| e.code), Some(Some(0)));
}

#[test]
fn zygotes_are_used_for_our_deliver_only() {
    assert!(Zygotes::of(&bin("deliver")).is_some());
    if std::path::Path::new("/usr/bin/procmail").exists() {
        assert!(Zygotes::of(std::path::Path::new("/usr/bin/procmail")).is_none());
    }
    assert!(Zygotes::of(std::path::Path::new("/bin/true")).is_none());
}

#[test]
fn a_zygote_started_through_a_wrapper_reads_options_by_deliver_s_own_name() {
    let dir = Dir::new("runner-zygote-wrapper");
    let wrapper = dir.write(
        "my-wrapper",
        format!("#!/bin/sh\nexec '{}' \"$@\"\n", bin("deliver").display()),
    );
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    dir.write("rc", ":0\n/dev/null\n");
    let zygotes = Zygotes::of(&wrapper).expect("the wrapper runs our deliver");
    let req = Request {
        argv: vec![
            wrapper.to_str().unwrap().as_bytes().to_vec(),
            b"-m".to_vec(),
            dir.join("rc").to_str().unwrap().as_bytes().to_vec(),
        ],
        env: vec![b"PATH=/usr/bin:/bin".to_vec()],
        id: None,
        message: MSG.into(),
    };
    let got = zygotes.run(&req, Duration::from_secs(20)).unwrap().unwrap();
    assert_eq!(
        (got.code, String::from_utf8_lossy(&got.stderr).into_owned()),
        (Some(0), String::new())
    );
}

/// As root with `virtual_user`, a virtual user's delivery runs as that
/// user, forked from a zygote as from an exec: the file it writes is the
/// user's, and its rcfile cannot write where that user may not.
#[test]
fn a_virtual_users_delivery_runs_as_the_virtual_user_through_a_zygote() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !crate::util::require_root() {
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let id = (nobody.uid.as_raw(), nobody.gid.as_raw());
    for zygote in [false, true] {
        let dir = Dir::new("runner-virtual-id");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let users = virtual_bob(&dir);
        // bob's home (his rcfile) readable, his Maildir's parent writable
        // by nobody only.
        for p in ["home", "home/bob"] {
            std::fs::set_permissions(dir.join(p), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(
            dir.join("home/bob/.procmailrc"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::os::unix::fs::chown(dir.join("home/bob"), Some(id.0), Some(id.1)).unwrap();
        let mut exec = Exec::new(bin("deliver"), Arc::new(users));
        exec.virtual_id = Some(id);
        if zygote {
            exec.zygotes = Some(Arc::new(Zygotes::new(bin("deliver"))));
        }
        let clock = Arc::new(ManualClock::at(T0));
        let q = memory(&clock);
        q.enqueue(&envelope("alice@example.test", &["bob@example.test"]), MSG)
            .unwrap();
        let got = Runner::new(&q, &router, &exec, bounce_cfg()).run_once(T0);
        assert_eq!(got.delivered, 1, "zygote {zygote}: {got:?}");
        let meta = std::fs::metadata(bobs_only_message(&dir)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), id, "zygote {zygote}");
    }
}

/// A zygote that died while idle costs nothing but itself: the delivery
/// that finds it gone runs `deliver` the ordinary way, and the next one
/// gets a new zygote.
#[test]
fn a_dead_zygote_falls_back_to_an_exec_of_deliver() {
    let dir = Dir::new("runner-zygote-dead");
    let mut exec = Exec::new(bin("deliver"), Arc::new(virtual_bob(&dir)));
    let zygotes = Arc::new(Zygotes::new(bin("deliver")));
    exec.zygotes = Some(Arc::clone(&zygotes));
    let clock = Arc::new(ManualClock::at(T0));
    let q = memory(&clock);
    let runner = Runner::new(&q, &router, &exec, bounce_cfg());
    let one = |n: u64| {
        q.enqueue(&envelope("alice@example.test", &["bob@example.test"]), MSG)
            .unwrap();
        let got = runner.run_once(T0 + n as i64);
        assert_eq!(got.delivered, 1, "message {n}: {got:?}");
    };
    one(1);
    let pids = zygotes.idle_pids();
    assert_eq!(pids.len(), 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Its end is seen through the socket; give the kill a moment to land.
    std::thread::sleep(Duration::from_millis(200));
    one(2);
    one(3);
    let now = zygotes.idle_pids();
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], pids[0], "a new zygote");
    let new = dir.join("home/bob/Maildir/new");
    assert_eq!(new.read_dir().unwrap().count(), 3);
}
