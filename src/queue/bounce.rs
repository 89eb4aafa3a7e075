//! Delivery status notifications: the RFC 3464 report for a queued message.
//!
//! Owns the text of a bounce (`Action: failed`) and of a delay warning
//! (`Action: delayed`) as a `multipart/report; report-type=delivery-status`
//! (RFC 6522): a human explanation, the `message/delivery-status` part,
//! and the original header as `text/rfc822-headers` (or the whole message
//! as `message/rfc822` when configured and small). It builds bytes and an
//! envelope for the caller to enqueue; it never sends, never writes a file
//! and never reads the clock. It never builds a report for the null sender
//! (RFC 5321 §4.5.5, mta-semantics B.9): a bounce of a bounce could loop.

use super::entry::{Address, Entry, Envelope, State};
use super::schedule::Schedule;

/// What the reports say about us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BounceConfig {
    /// Our fully qualified host name: `Reporting-MTA: dns; <name>` and the
    /// `MAILER-DAEMON@<name>` author.
    pub reporting_mta: String,
    /// Return the whole message (`message/rfc822`) when it is at most this
    /// many octets and the sender did not ask for `RET=HDRS`; otherwise,
    /// and by default, only its header (mta-semantics B.9 caps the
    /// returned content).
    pub return_full_up_to: Option<usize>,
}

/// Which report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The failed recipients not yet reported: `Action: failed`.
    Failed,
    /// The recipients still deferred: `Action: delayed`, a warning only.
    Delayed,
}

/// A report ready to enqueue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bounce {
    /// Null sender, the original sender as the only recipient.
    pub envelope: Envelope,
    /// The report, CRLF line ends (as the SMTP server hands messages to the
    /// queue).
    pub message: Vec<u8>,
    /// The recipients of the entry it reports on, by index: mark them
    /// notified once the report is queued.
    pub reported: Vec<usize>,
}

/// Builds the report of `kind` for `entry` at `now` (unix seconds), or
/// `None` when the sender is null or there is nothing to report.
pub fn build(
    cfg: &BounceConfig,
    entry: &Entry,
    message: &[u8],
    kind: Kind,
    now: i64,
    schedule: &Schedule,
) -> Option<Bounce> {
    let sender = &entry.envelope.sender;
    if sender.is_empty() {
        return None;
    }
    let reported: Vec<usize> = entry
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| match (&r.state, kind) {
            (State::Failed { notified, .. }, Kind::Failed) => !notified,
            (State::Deferred { .. }, Kind::Delayed) => true,
            _ => false,
        })
        .map(|(i, _)| i)
        .collect();
    if reported.is_empty() {
        return None;
    }
    let mta = line(&cfg.reporting_mta);
    let mut boundary = format!("{}.{now}/{mta}", entry.id);
    while contains(message, boundary.as_bytes()) {
        boundary.push('=');
    }
    let (subject, action) = match kind {
        Kind::Failed => ("Undelivered Mail Returned to Sender", "failed"),
        Kind::Delayed => ("Delayed Mail (still being retried)", "delayed"),
    };

    let mut m = String::new();
    let mut h = |s: String| {
        m.push_str(&s);
        m.push_str("\r\n");
    };
    h(format!("From: Mail Delivery System <MAILER-DAEMON@{mta}>"));
    h(format!("To: <{}>", line(sender)));
    h(format!("Subject: {subject}"));
    h(format!("Date: {}", rfc5322(now)));
    h(format!("Message-ID: <{}.{now}.{action}@{mta}>", entry.id));
    h("Auto-Submitted: auto-replied".to_string());
    h("MIME-Version: 1.0".to_string());
    h("Content-Type: multipart/report; report-type=delivery-status;".to_string());
    h(format!("\tboundary=\"{boundary}\""));
    h(String::new());
    h("This is a MIME-encapsulated message.".to_string());
    h(String::new());

    // Part 1: for people.
    h(format!("--{boundary}"));
    h("Content-Description: Notification".to_string());
    h("Content-Type: text/plain; charset=us-ascii".to_string());
    h(String::new());
    h(format!("This is the mail system at host {mta}."));
    h(String::new());
    match kind {
        Kind::Failed => {
            h("Your message could not be delivered to one or more".to_string());
            h("recipients; the reasons are given below. It is attached.".to_string());
        }
        Kind::Delayed => {
            h("Your message could not be delivered yet to one or more".to_string());
            h("recipients. The mail system will keep trying until".to_string());
            h(format!(
                "{}; you need not send it again.",
                rfc5322(schedule.expiry(entry.arrival))
            ));
        }
    }
    h(String::new());
    for &i in &reported {
        let r = &entry.recipients[i];
        let why = r
            .state
            .error()
            .map_or(String::new(), |e| line(&e.diagnostic));
        h(format!("<{}>: {why}", line(&r.address.address)));
    }
    h(String::new());

    // Part 2: for programs (RFC 3464 §2.2 per message, §2.3 per recipient).
    h(format!("--{boundary}"));
    h("Content-Description: Delivery report".to_string());
    h("Content-Type: message/delivery-status".to_string());
    h(String::new());
    h(format!("Reporting-MTA: dns; {mta}"));
    h(format!("X-Postroom-Queue-ID: {}", entry.id));
    if let Some(envid) = &entry.envelope.envid {
        h(format!("Original-Envelope-Id: {}", line(envid)));
    }
    h(format!("Arrival-Date: {}", rfc5322(entry.arrival)));
    for &i in &reported {
        let r = &entry.recipients[i];
        h(String::new());
        h(format!(
            "Final-Recipient: rfc822; {}",
            line(&r.address.address)
        ));
        if let Some(orcpt) = &r.address.orcpt {
            h(format!("Original-Recipient: {}", line(orcpt)));
        }
        h(format!("Action: {action}"));
        if let Some(err) = r.state.error() {
            h(format!("Status: {}", err.status()));
            if let Some(remote) = &err.remote {
                h(format!("Remote-MTA: dns; {}", line(remote)));
            }
            h(format!("Diagnostic-Code: {}", line(&err.diagnostic)));
        }
        if let Some(t) = r.last_attempt {
            h(format!("Last-Attempt-Date: {}", rfc5322(t)));
        }
        if kind == Kind::Delayed {
            h(format!(
                "Will-Retry-Until: {}",
                rfc5322(schedule.expiry(entry.arrival))
            ));
        }
    }
    h(String::new());

    // Part 3: what was sent.
    h(format!("--{boundary}"));
    let full = !entry.envelope.ret_headers
        && cfg
            .return_full_up_to
            .is_some_and(|max| message.len() <= max);
    let mut out = m.into_bytes();
    if full {
        out.extend_from_slice(b"Content-Description: Undelivered Message\r\n");
        out.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        out.extend_from_slice(message);
    } else {
        out.extend_from_slice(b"Content-Description: Undelivered Message Headers\r\n");
        out.extend_from_slice(b"Content-Type: text/rfc822-headers\r\n\r\n");
        out.extend_from_slice(header(message));
    }
    if !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());

    Some(Bounce {
        envelope: Envelope {
            sender: String::new(),
            recipients: vec![Address::new(sender.clone())],
            hops: 0,
            client: "local (bounce)".to_string(),
            params: String::new(),
            envid: None,
            ret_headers: true,
        },
        message: out,
        reported,
    })
}

/// The header of a message without its ending empty line; LF or CRLF.
pub fn header(message: &[u8]) -> &[u8] {
    let mut pos = 0;
    for l in message.split_inclusive(|&b| b == b'\n') {
        if l == b"\n" || l == b"\r\n" {
            break;
        }
        pos += l.len();
    }
    &message[..pos]
}

/// RFC 5322 date in UTC.
fn rfc5322(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map_or_else(String::new, |d| {
        d.format(crate::message::RFC5322_DATE).to_string()
    })
}

/// One header line's worth: controls (CR, LF, TAB...) become spaces, so no
/// value from the envelope can start a new header field.
fn line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::super::entry::{Attempt, Failure};
    use super::super::spool::QueueId;
    use super::*;
    use crate::status::Class;

    const MSG: &[u8] = b"Received: from a\r\n\tby b\r\nSubject: hello\r\nFrom: alice@example.test\r\n\r\nsecret body\r\n";

    fn entry(sender: &str) -> Entry {
        let env = Envelope {
            sender: sender.to_string(),
            recipients: vec![
                Address {
                    address: "bob2@relay.test".into(),
                    orcpt: Some("rfc822;bob2@relay.test".into()),
                },
                Address::new("carol@relay.test"),
                Address::new("dave@relay.test"),
            ],
            envid: Some("QQ314159".into()),
            ..Envelope::default()
        };
        let id = QueueId::parse("06B081F4001E24000001F40001").unwrap();
        let s = Schedule::default();
        let mut e = Entry::new(id, 1_795_694_400, MSG.len() as u64, &env);
        let perm = Attempt::Failed(Failure {
            class: Class::Perm,
            detail: (3, 0),
            diagnostic: "smtp; 500 5.3.0 Error: command failed\r\nInjected: yes".into(),
            remote: Some("127.0.0.1".into()),
        });
        e.apply(0, &perm, 1_795_694_460, &s).unwrap();
        e.apply(1, &Attempt::Delivered, 1_795_694_460, &s).unwrap();
        let temp = Attempt::Failed(Failure {
            class: Class::Temp,
            detail: (4, 1),
            diagnostic: "smtp; connect to primary: Connection refused".into(),
            remote: None,
        });
        e.apply(2, &temp, 1_795_694_460, &s).unwrap();
        e
    }

    fn cfg() -> BounceConfig {
        BounceConfig {
            reporting_mta: "mx.example.test".into(),
            return_full_up_to: None,
        }
    }

    #[test]
    fn never_to_the_null_sender() {
        let e = entry("");
        assert_eq!(
            build(&cfg(), &e, MSG, Kind::Failed, 0, &Schedule::default()),
            None
        );
    }

    #[test]
    fn nothing_to_report_gives_none() {
        let mut e = entry("alice@example.test");
        let State::Failed { notified, .. } = &mut e.recipients[0].state else {
            panic!()
        };
        *notified = true;
        assert_eq!(
            build(&cfg(), &e, MSG, Kind::Failed, 0, &Schedule::default()),
            None
        );
    }

    /// RFC 3464 / RFC 6522 layout as mta-semantics B.9 shows Postfix's.
    #[test]
    fn failed_report_has_three_parts_and_the_required_fields() {
        let e = entry("alice@example.test");
        let b = build(
            &cfg(),
            &e,
            MSG,
            Kind::Failed,
            1_795_694_461,
            &Schedule::default(),
        )
        .unwrap();
        assert_eq!(b.reported, vec![0]);
        assert_eq!(b.envelope.sender, "");
        assert_eq!(
            b.envelope.recipients,
            vec![Address::new("alice@example.test")]
        );
        let text = String::from_utf8(b.message.clone()).unwrap();
        let boundary = "06B081F4001E24000001F40001.1795694461/mx.example.test";
        for want in [
            "From: Mail Delivery System <MAILER-DAEMON@mx.example.test>\r\n",
            "To: <alice@example.test>\r\n",
            "Auto-Submitted: auto-replied\r\n",
            "Date: Thu, 26 Nov 2026 12:01:01 +0000\r\n",
            &format!(
                "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"
            ),
            "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.test\r\n",
            "Original-Envelope-Id: QQ314159\r\nArrival-Date: Thu, 26 Nov 2026 12:00:00 +0000\r\n\r\n\
             Final-Recipient: rfc822; bob2@relay.test\r\n\
             Original-Recipient: rfc822;bob2@relay.test\r\n\
             Action: failed\r\n\
             Status: 5.3.0\r\n\
             Remote-MTA: dns; 127.0.0.1\r\n\
             Diagnostic-Code: smtp; 500 5.3.0 Error: command failed  Injected: yes\r\n\
             Last-Attempt-Date: Thu, 26 Nov 2026 12:01:00 +0000\r\n",
            "Content-Type: text/rfc822-headers\r\n\r\nReceived: from a\r\n\tby b\r\nSubject: hello\r\nFrom: alice@example.test\r\n\r\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
        assert_eq!(text.matches(&format!("--{boundary}\r\n")).count(), 3);
        assert!(!text.contains("secret body"), "headers only by default");
        assert!(
            !text.contains("carol@") && !text.contains("dave@"),
            "only the failed one"
        );
        assert!(!text.contains("\nInjected"), "no header injection");
    }

    #[test]
    fn whole_message_when_small_and_not_ret_hdrs() {
        let e = entry("alice@example.test");
        let cfg = BounceConfig {
            return_full_up_to: Some(1000),
            ..cfg()
        };
        let b = build(&cfg, &e, MSG, Kind::Failed, 0, &Schedule::default()).unwrap();
        let text = String::from_utf8(b.message).unwrap();
        assert!(text.contains("Content-Type: message/rfc822\r\n\r\nReceived: from a"));
        assert!(text.contains("secret body"));
        let mut e = e;
        e.envelope.ret_headers = true;
        let b = build(&cfg, &e, MSG, Kind::Failed, 0, &Schedule::default()).unwrap();
        assert!(
            !String::from_utf8(b.message)
                .unwrap()
                .contains("secret body")
        );
        let small = BounceConfig {
            return_full_up_to: Some(10),
            ..cfg
        };
        e.envelope.ret_headers = false;
        let b = build(&small, &e, MSG, Kind::Failed, 0, &Schedule::default()).unwrap();
        assert!(
            !String::from_utf8(b.message)
                .unwrap()
                .contains("secret body")
        );
    }

    #[test]
    fn delay_warning_lists_deferred_recipients_and_the_give_up_time() {
        let e = entry("alice@example.test");
        let b = build(
            &cfg(),
            &e,
            MSG,
            Kind::Delayed,
            1_795_708_800,
            &Schedule::default(),
        )
        .unwrap();
        assert_eq!(b.reported, vec![2]);
        let text = String::from_utf8(b.message).unwrap();
        assert!(
            text.contains(
                "Final-Recipient: rfc822; dave@relay.test\r\nAction: delayed\r\nStatus: 4.4.1\r\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("Will-Retry-Until: Tue, 01 Dec 2026 12:00:00 +0000\r\n"),
            "{text}"
        );
        assert!(text.contains("Subject: Delayed Mail (still being retried)\r\n"));
    }

    #[test]
    fn boundary_never_occurs_in_the_returned_content() {
        let e = entry("alice@example.test");
        let evil = b"X-Trick: --06B081F4001E24000001F40001.5/mx.example.test\r\n\r\n";
        let b = build(&cfg(), &e, evil, Kind::Failed, 5, &Schedule::default()).unwrap();
        let text = String::from_utf8(b.message).unwrap();
        assert!(
            text.contains("boundary=\"06B081F4001E24000001F40001.5/mx.example.test=\""),
            "{text}"
        );
    }

    #[test]
    fn header_stops_at_the_empty_line() {
        let cases: [(&[u8], &[u8]); 4] = [
            (b"A: 1\r\nB: 2\r\n\r\nbody", b"A: 1\r\nB: 2\r\n"),
            (b"A: 1\n\nbody\n\n", b"A: 1\n"),
            (b"A: 1\n", b"A: 1\n"),
            (b"", b""),
        ];
        for (input, want) in cases {
            assert_eq!(header(input), want);
        }
    }
}
