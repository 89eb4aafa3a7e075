//! The queue through its public API: the file spool across restarts and
//! crashes, the in-memory twin doing the same, and a bounce that mail
//! readers can take apart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use postroom::queue::bounce::{self, BounceConfig, Kind};
use postroom::queue::{
    Address, Attempt, Entry, Envelope, Failure, ManualClock, MemoryQueue, Queue, QueueError,
    QueueId, Schedule, Spool, State, mailq,
};
use postroom::status::{Class, Outcome};

use mail_parser::MimeHeaders;

use crate::util::Dir;

/// 2026-11-26 12:00:00 UTC.
const T0: i64 = 1_795_694_400;

const MSG: &[u8] = b"Received: from client.test (client.test [192.0.2.7])\r\n\tby mx.example.test (postroom) with ESMTP\r\nFrom: alice@example.test\r\nSubject: hello\r\n\r\nbody line\r\n";

fn schedule() -> Schedule {
    Schedule {
        jitter_percent: 0,
        delay_warning: Some(Duration::from_secs(4 * 3600)),
        ..Schedule::default()
    }
}

fn envelope() -> Envelope {
    Envelope {
        sender: "alice@example.test".to_string(),
        recipients: vec![
            Address {
                address: "bob@relay.test".to_string(),
                orcpt: Some("rfc822;bob@relay.test".to_string()),
            },
            Address::new("carol@relay.test"),
        ],
        hops: 1,
        client: "client.test (client.test [192.0.2.7])".to_string(),
        params: "BODY=8BITMIME".to_string(),
        envid: None,
        ret_headers: false,
    }
}

fn open(root: &Path, clock: &Arc<ManualClock>) -> Spool {
    let (spool, rec) = Spool::open(root, schedule(), clock.clone()).expect("open spool");
    assert!(rec.corrupt.is_empty(), "{:?}", rec.corrupt);
    spool
}

fn temp(text: &str) -> Attempt {
    Attempt::Failed(Failure {
        class: Class::Temp,
        detail: (4, 1),
        diagnostic: format!("smtp; {text}"),
        remote: Some("primary.relay.test".to_string()),
    })
}

fn perm() -> Attempt {
    Attempt::Failed(Failure {
        class: Class::Perm,
        detail: (1, 1),
        diagnostic: "smtp; 550 5.1.1 <carol@relay.test>: user unknown".to_string(),
        remote: Some("primary.relay.test".to_string()),
    })
}

/// A message survives a restart with every recipient's state, and the
/// schedule resumes from the stored times.
#[test]
fn restart_resumes_the_spool() {
    let dir = Dir::new("queue-restart");
    let clock = Arc::new(ManualClock::at(T0));
    let spool = open(dir.path(), &clock);
    let id = spool.enqueue(&envelope(), MSG).unwrap();
    assert_eq!(
        spool.due(T0).unwrap(),
        vec![id.clone()],
        "first try at once"
    );
    let got = spool.record(&id, 0, &temp("421 4.4.1 busy"), T0).unwrap();
    assert!(matches!(got, State::Deferred { next, .. } if next == T0 + 300));
    spool.record(&id, 1, &Attempt::Delivered, T0).unwrap();
    drop(spool);

    let spool = open(dir.path(), &clock);
    let e = spool.entry(&id).unwrap();
    assert_eq!(e.arrival, T0);
    assert_eq!(e.envelope, envelope());
    assert_eq!(e.recipients[1].state, State::Delivered);
    assert_eq!(e.recipients[0].attempts, 1);
    assert_eq!(spool.message(&id).unwrap(), MSG);
    assert!(spool.due(T0 + 299).unwrap().is_empty());
    assert_eq!(spool.due(T0 + 300).unwrap(), vec![id.clone()]);
    // Second failure: 10 minutes.
    let got = spool.record(&id, 0, &temp("421 busy"), T0 + 300).unwrap();
    assert!(matches!(got, State::Deferred { next, .. } if next == T0 + 900));
    // Delivered recipients are never tried again.
    let err = spool
        .record(&id, 1, &Attempt::Delivered, T0 + 300)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("queue: entry {id}: recipient 1 is already delivered")
    );
    spool.record(&id, 0, &Attempt::Delivered, T0 + 900).unwrap();
    assert_eq!(
        spool.due(T0 + 900).unwrap(),
        vec![id.clone()],
        "due for removal"
    );
    spool.remove(&id).unwrap();
    drop(spool);
    let spool = open(dir.path(), &clock);
    assert!(spool.entries().unwrap().entries.is_empty());
    assert!(matches!(spool.entry(&id), Err(QueueError::NotFound(_))));
}

/// What a crash can leave behind, written by hand: partial entries in
/// tmp/ are removed, a whole entry in active/ is kept, an unfinished
/// update is dropped, unreadable entries are moved to corrupt/ with their
/// bytes, never deleted.
#[test]
fn recovery_after_a_crash() {
    let dir = Dir::new("queue-crash");
    let clock = Arc::new(ManualClock::at(T0));
    let spool = open(dir.path(), &clock);
    let kept = spool.enqueue(&envelope(), MSG).unwrap();
    let before = spool.entry(&kept).unwrap();
    drop(spool);

    // A crash during enqueue: half an entry in tmp/.
    dir.write("tmp/06B081F4000000000000010000", &MSG[..20]);
    // A crash during enqueue after the whole file, before the rename.
    let env = Entry::new(
        QueueId::parse("06B081F4000000000000010001").unwrap(),
        T0,
        5,
        &envelope(),
    );
    dir.write("tmp/06B081F4000000000000010001", env.to_text() + "hello");
    // A crash during record(): half a new envelope.
    dir.write(
        &format!("active/{kept}.env.new"),
        "postroom-queue 1\nid 06B",
    );
    // Entries that cannot be read.
    dir.write(
        "active/06B081F4000000000000010002",
        "postroom-queue 9\nend\nprecious bytes",
    );
    let lying = Entry::new(
        QueueId::parse("06B081F4000000000000010003").unwrap(),
        T0,
        999,
        &envelope(),
    );
    dir.write(
        "active/06B081F4000000000000010003",
        lying.to_text() + "short",
    );
    dir.write("active/stray-file", "?");

    let (spool, rec) = Spool::open(dir.path(), schedule(), clock.clone()).unwrap();
    assert_eq!(
        rec.removed_partial,
        ["06B081F4000000000000010000", "06B081F4000000000000010001"]
    );
    assert_eq!(rec.dropped_updates, vec![kept.clone()]);
    assert_eq!(rec.entries, 1);
    let got: Vec<(&str, &str)> = rec
        .corrupt
        .iter()
        .map(|c| (c.name.as_str(), c.reason.as_str()))
        .collect();
    let want = [
        (
            "06B081F4000000000000010002",
            "envelope line 1: expected `postroom-queue 1`, found `postroom-queue 9`",
        ),
        (
            "06B081F4000000000000010003",
            "message has 5 octets, envelope says 999",
        ),
        (
            "stray-file",
            "invalid queue id `stray-file`: want 26 upper-case hex digits",
        ),
    ];
    assert_eq!(got, want);
    assert!(
        dir.read("corrupt/06B081F4000000000000010002")
            .ends_with(b"\nend\nprecious bytes")
    );
    assert!(dir.join("corrupt/stray-file").exists());
    assert_eq!(spool.entry(&kept).unwrap(), before);
    let listing = spool.entries().unwrap();
    assert_eq!(listing.entries.len(), 1);
    assert!(listing.corrupt.is_empty(), "moved only once");

    // The same name corrupted again does not overwrite the first copy.
    dir.write("active/06B081F4000000000000010002", "junk\nend\nsecond");
    let listing = spool.entries().unwrap();
    assert_eq!(
        listing.corrupt[0].moved_to,
        dir.join("corrupt/06B081F4000000000000010002.1")
    );
    assert!(
        dir.read("corrupt/06B081F4000000000000010002")
            .ends_with(b"precious bytes")
    );
    assert_eq!(
        dir.read("corrupt/06B081F4000000000000010002.1"),
        b"junk\nend\nsecond"
    );
    let text = mailq(&listing);
    assert!(
        text.contains("corrupt: 06B081F4000000000000010002 moved to "),
        "{text}"
    );
}

/// The runner's whole path for a permanent failure: record, build the
/// DSN, queue it, mark the recipient reported, remove the entry once
/// everything is final. The DSN itself is never bounced.
#[test]
fn permanent_failure_bounces_once_then_the_entry_goes() {
    let dir = Dir::new("queue-bounce");
    let clock = Arc::new(ManualClock::at(T0));
    let spool = open(dir.path(), &clock);
    let id = spool.enqueue(&envelope(), MSG).unwrap();
    spool.record(&id, 0, &Attempt::Delivered, T0 + 1).unwrap();
    spool.record(&id, 1, &perm(), T0 + 1).unwrap();
    let cfg = BounceConfig {
        reporting_mta: "mx.example.test".to_string(),
        return_full_up_to: Some(100_000),
    };
    let e = spool.entry(&id).unwrap();
    let msg = spool.message(&id).unwrap();
    let dsn = bounce::build(&cfg, &e, &msg, Kind::Failed, T0 + 2, spool.schedule()).unwrap();
    assert_eq!(dsn.reported, vec![1]);
    let dsn_id = spool.enqueue(&dsn.envelope, &dsn.message).unwrap();
    spool.mark_notified(&id, &dsn.reported).unwrap();
    let e = spool.entry(&id).unwrap();
    assert_eq!(
        bounce::build(&cfg, &e, &msg, Kind::Failed, T0 + 3, spool.schedule()),
        None,
        "reported once"
    );
    spool.remove(&id).unwrap();

    // The DSN in the queue: null sender, to alice; if it fails, no DSN.
    let d = spool.entry(&dsn_id).unwrap();
    assert_eq!(d.envelope.sender, "");
    assert_eq!(d.recipients[0].address.address, "alice@example.test");
    spool.record(&dsn_id, 0, &perm(), T0 + 4).unwrap();
    let d = spool.entry(&dsn_id).unwrap();
    let m = spool.message(&dsn_id).unwrap();
    assert_eq!(
        bounce::build(&cfg, &d, &m, Kind::Failed, T0 + 5, spool.schedule()),
        None
    );

    // A mail reader sees an RFC 3464 report of three parts.
    let parsed = mail_parser::MessageParser::default()
        .parse(&m[..])
        .expect("dsn parses");
    let ct = parsed.content_type().expect("content type");
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    let subtypes: Vec<String> = parsed.parts[1..]
        .iter()
        .filter_map(|p| p.content_type())
        .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
        .collect();
    assert!(
        subtypes.starts_with(&[
            "text/plain".to_string(),
            "message/delivery-status".to_string(),
            "message/rfc822".to_string()
        ]),
        "{subtypes:?}"
    );
    let text = String::from_utf8_lossy(&m);
    assert!(
        text.contains(
            "Final-Recipient: rfc822; carol@relay.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("Content-Type: message/rfc822\r\n\r\nReceived: from client.test"),
        "{text}"
    );
}

/// Temporary failures until the lifetime runs out: the last retry lands
/// on the expiry, the next failure fails the recipient with the last
/// temporary status, and a delay warning was due once on the way.
#[test]
fn expiry_after_five_days_and_one_delay_warning() {
    let dir = Dir::new("queue-expiry");
    let clock = Arc::new(ManualClock::at(T0));
    let spool = open(dir.path(), &clock);
    let mut env = envelope();
    env.recipients.truncate(1);
    let id = spool.enqueue(&env, MSG).unwrap();
    let mut now = T0;
    let mut tries = 0;
    let mut warned_at = None;
    loop {
        let e = spool.entry(&id).unwrap();
        if !e.warned && spool.schedule().should_warn(e.arrival, now) {
            let cfg = BounceConfig {
                reporting_mta: "mx.example.test".to_string(),
                return_full_up_to: None,
            };
            let w = bounce::build(&cfg, &e, MSG, Kind::Delayed, now, spool.schedule()).unwrap();
            assert!(String::from_utf8_lossy(&w.message).contains("Action: delayed\r\n"));
            spool.mark_warned(&id).unwrap();
            warned_at = Some(now);
        }
        tries += 1;
        match spool
            .record(&id, 0, &temp("421 4.4.1 try later"), now)
            .unwrap()
        {
            State::Deferred { next, .. } => now = next,
            State::Failed { error, .. } => {
                assert_eq!(error.status(), "4.4.1", "last temporary status kept");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let five_days = 5 * 24 * 3600;
    assert_eq!(now, T0 + five_days, "last attempt at the expiry");
    // Attempts at 0, 300, 900, 2100 s; then from 4500 s hourly while
    // before the expiry (119 of them); then one at the expiry.
    assert_eq!(tries, 4 + 119 + 1);
    // The first attempt at or after 4 h: 4500 + 3 * 3600 = 15300 s.
    assert_eq!(warned_at, Some(T0 + 15_300));
    assert!(spool.entry(&id).unwrap().warned);
}

/// The in-memory twin and the file spool go through the same states.
#[test]
fn memory_twin_matches_the_spool() {
    let dir = Dir::new("queue-twin");
    let clock = Arc::new(ManualClock::at(T0));
    let spool = open(dir.path(), &clock);
    let memory = MemoryQueue::new(schedule(), clock.clone());
    let queues: [&dyn Queue; 2] = [&spool, &memory];
    let mut got = Vec::new();
    for q in queues {
        let id = q.enqueue(&envelope(), MSG).unwrap();
        let mailbox_full = Attempt::from(&Outcome::temp((2, 2), "mailbox full"));
        let states = vec![
            q.record(&id, 0, &temp("421 busy"), T0).unwrap(),
            q.record(&id, 1, &mailbox_full, T0).unwrap(),
            q.record(&id, 1, &perm(), T0 + 300).unwrap(),
        ];
        assert!(q.remove(&id).is_err());
        assert!(matches!(
            q.record(&id, 7, &perm(), T0),
            Err(QueueError::Apply { .. })
        ));
        assert!(matches!(
            q.enqueue(&Envelope::default(), MSG),
            Err(QueueError::NoRecipients)
        ));
        let mut e = q.entry(&id).unwrap();
        e.id = QueueId::parse("00000000000000000000000000").unwrap();
        got.push((
            states,
            e,
            q.message(&id).unwrap(),
            q.due(T0 + 1).unwrap().len(),
        ));
    }
    assert_eq!(got[0], got[1]);
}
