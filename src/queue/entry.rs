//! One queue entry's envelope and its on-disk text format.
//!
//! Owns the envelope record (sender, recipients and their per-recipient
//! state, arrival time, hop count, original recipients) and the state
//! changes a delivery attempt makes to it ([`Entry::apply`]), so the file
//! spool and the in-memory twin change state the same way. It never
//! touches the disk: [`Entry::to_text`] and [`Entry::parse`] turn an entry
//! into bytes and back, and the spool decides where they go.
//!
//! # Format, version 1
//!
//! ASCII text, one record a line, each line ending in LF, fields separated
//! by one space, in exactly this order:
//!
//! ```text
//! postroom-queue 1
//! id 06B081F4001E24000001F40001
//! arrival 1795694400
//! size 1234
//! hops 3
//! sender alice@example.test
//! envid -
//! ret hdrs
//! client mx.example.test%20(unknown%20[192.0.2.1])
//! params BODY=8BITMIME
//! warned 0
//! rcpt deferred 2 1795694400 1795694700 1795695300 0 4.4.1 primary.test smtp;%20421%20busy bob@relay.test rfc822;bob@relay.test
//! end
//! ```
//!
//! A `rcpt` line has twelve fields: state (`pending`, `deferred`,
//! `delivered`, `failed`), attempts, first attempt, last attempt, next
//! retry (unix seconds), notified (`1` once a DSN went out for it), status
//! (`4.4.1`), remote MTA, diagnostic, address, original recipient. Every
//! value is escaped: a byte that is a space, a control, `%` or not ASCII is
//! written `%XX` (upper-case hex), so addresses with quoted spaces and UTF-8
//! survive. `-` stands for an empty or absent value; a value that is a
//! single `-` is written `%2D`. The null sender `<>` is an empty sender.
//! The `end` line makes a cut-off file detectable. Parsing is strict: a
//! missing, extra or misplaced line, an unknown state, a bad number or a
//! state whose fields do not fit (a deferred recipient without its next
//! retry) is an error naming the line.

use std::fmt::Write as _;

use super::schedule::Schedule;
use super::spool::QueueId;
use crate::status::{Class, Outcome};

/// The first line of an envelope file: the format and its version.
pub const MAGIC: &str = "postroom-queue 1";

/// What the SMTP server hands to the queue with the message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Envelope sender without angle brackets; empty for the null sender
    /// `<>` (bounces), which never gets a DSN.
    pub sender: String,
    /// The accepted recipients, in order.
    pub recipients: Vec<Address>,
    /// `Received:` fields counted at end of DATA (mta-semantics B.7).
    pub hops: u32,
    /// Who sent it, for logs and the listing: `helo (rdns [ip])`.
    pub client: String,
    /// The MAIL parameters worth keeping (`BODY=8BITMIME SMTPUTF8`).
    pub params: String,
    /// `ENVID=` (RFC 3461), returned in a DSN.
    pub envid: Option<String>,
    /// `RET=HDRS` (RFC 3461): a DSN returns only the header.
    pub ret_headers: bool,
}

/// One recipient as given in RCPT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Address {
    /// The address to deliver to, without angle brackets.
    pub address: String,
    /// `ORCPT=` as given (`rfc822;bob@relay.test`), for the DSN's
    /// `Original-Recipient:` (RFC 3464 §2.3.1).
    pub orcpt: Option<String>,
}

impl Address {
    /// A recipient without an ORCPT.
    pub fn new(address: impl Into<String>) -> Address {
        Address {
            address: address.into(),
            orcpt: None,
        }
    }
}

/// Why an attempt failed, in the terms a DSN needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Temporary (retry) or permanent (bounce).
    pub class: Class,
    /// Enhanced status code without its class digit: `(4, 1)` for `x.4.1`.
    pub detail: (u16, u16),
    /// The DSN `Diagnostic-Code:` value with its type, one line:
    /// `smtp; 550 5.1.1 no such user` or `x-unix; mailbox full`.
    pub diagnostic: String,
    /// The host that answered, for `Remote-MTA: dns; host`.
    pub remote: Option<String>,
}

impl Failure {
    /// The enhanced status code, `4.4.1`; its first digit comes from the
    /// class, never from a number (STYLE.md, maddy's bug).
    pub fn status(&self) -> String {
        format!("{}.{}.{}", self.class.digit(), self.detail.0, self.detail.1)
    }
}

/// The result of one attempt to deliver to one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The recipient has the message (or the next hop took it).
    Delivered,
    /// It does not.
    Failed(Failure),
}

impl From<&Outcome> for Attempt {
    /// A local delivery's outcome (`deliver`'s exit): its reason becomes an
    /// `x-unix` diagnostic.
    fn from(outcome: &Outcome) -> Attempt {
        match outcome {
            Outcome::Delivered => Attempt::Delivered,
            Outcome::Failed {
                class,
                detail,
                reason,
                ..
            } => Attempt::Failed(Failure {
                class: *class,
                detail: *detail,
                diagnostic: format!("x-unix; {reason}"),
                remote: None,
            }),
        }
    }
}

/// Where one recipient stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Not tried yet: due at once (mta-semantics C.2, first attempt
    /// immediately after acceptance).
    Pending,
    /// Failed temporarily; try again at `next` (unix seconds).
    Deferred {
        /// When the next attempt is due.
        next: i64,
        /// The last failure.
        error: Failure,
    },
    /// Done; never tried again.
    Delivered,
    /// Failed for good (permanent answer, or the lifetime ran out).
    Failed {
        /// The failure to report; for an expired recipient the last
        /// temporary one (mta-semantics C.3, as Postfix keeps it).
        error: Failure,
        /// Whether a DSN for it has been queued.
        notified: bool,
    },
}

impl State {
    /// The lowercase word used in the file and the listing.
    pub fn word(&self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Deferred { .. } => "deferred",
            State::Delivered => "delivered",
            State::Failed { .. } => "failed",
        }
    }

    /// Whether nothing more will be tried for this recipient.
    pub fn is_final(&self) -> bool {
        matches!(self, State::Delivered | State::Failed { .. })
    }

    /// The last failure, if any.
    pub fn error(&self) -> Option<&Failure> {
        match self {
            State::Deferred { error, .. } | State::Failed { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// One recipient of a queued message and its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// The address and original recipient as given.
    pub address: Address,
    /// Where it stands.
    pub state: State,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the first attempt was made (unix seconds).
    pub first_attempt: Option<i64>,
    /// When the last attempt was made (unix seconds).
    pub last_attempt: Option<i64>,
}

/// One queued message's envelope with the state of every recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its queue id.
    pub id: QueueId,
    /// When the message was accepted (unix seconds).
    pub arrival: i64,
    /// Size of the message file in octets.
    pub size: u64,
    /// Sender, hops, client, parameters as enqueued; its `recipients`
    /// mirror [`Entry::recipients`]' addresses.
    pub envelope: Envelope,
    /// Whether a delay warning was sent (at most one per message).
    pub warned: bool,
    /// The recipients with their state, in envelope order.
    pub recipients: Vec<Recipient>,
}

/// A malformed envelope file: the line (1-based) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct FormatError {
    /// Line number, from 1; the line after the last for a cut-off file.
    pub line: usize,
    /// Lowercase description.
    pub message: String,
}

/// Why [`Entry::apply`] refused an attempt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// There is no recipient at that index.
    #[error("no recipient {0}")]
    NoRecipient(usize),
    /// The recipient is already delivered or failed: a second result for
    /// it means the runner lost track, and overwriting could lose a bounce.
    #[error("recipient {0} is already {1}")]
    Final(usize, &'static str),
}

impl Entry {
    /// A fresh entry: every recipient pending.
    pub fn new(id: QueueId, arrival: i64, size: u64, envelope: &Envelope) -> Entry {
        let recipients = envelope
            .recipients
            .iter()
            .map(|a| Recipient {
                address: a.clone(),
                state: State::Pending,
                attempts: 0,
                first_attempt: None,
                last_attempt: None,
            })
            .collect();
        Entry {
            id,
            arrival,
            size,
            envelope: envelope.clone(),
            warned: false,
            recipients,
        }
    }

    /// Records one attempt for recipient `index` at `now`: delivered, failed
    /// for good, or deferred to the schedule's next retry. A temporary
    /// failure once the lifetime has run out fails the recipient with that
    /// temporary failure (mta-semantics C.3). Returns the new state.
    pub fn apply(
        &mut self,
        index: usize,
        attempt: &Attempt,
        now: i64,
        schedule: &Schedule,
    ) -> Result<&State, ApplyError> {
        let arrival = self.arrival;
        let seed = seed(self.id.as_str(), index);
        let r = self
            .recipients
            .get_mut(index)
            .ok_or(ApplyError::NoRecipient(index))?;
        if r.state.is_final() {
            return Err(ApplyError::Final(index, r.state.word()));
        }
        r.attempts = r.attempts.saturating_add(1);
        r.first_attempt.get_or_insert(now);
        r.last_attempt = Some(now);
        r.state = match attempt {
            Attempt::Delivered => State::Delivered,
            Attempt::Failed(f) if f.class == Class::Perm => State::Failed {
                error: f.clone(),
                notified: false,
            },
            Attempt::Failed(f) => match schedule.next_retry(arrival, r.attempts, now, seed) {
                Some(next) => State::Deferred {
                    next,
                    error: f.clone(),
                },
                None => State::Failed {
                    error: f.clone(),
                    notified: false,
                },
            },
        };
        Ok(&r.state)
    }

    /// Whether a runner has something to do for this entry at `now`: a
    /// pending or due recipient, a failure not yet reported, a delay
    /// warning due, or every recipient final (remove it).
    pub fn is_due(&self, now: i64, schedule: &Schedule) -> bool {
        self.recipients.iter().all(|r| r.state.is_final())
            || self.recipients.iter().any(|r| match &r.state {
                State::Pending => true,
                State::Deferred { next, .. } => *next <= now,
                State::Failed { notified, .. } => !notified,
                State::Delivered => false,
            })
            || (!self.warned && schedule.should_warn(self.arrival, now))
    }

    /// The earliest retry time among deferred recipients.
    pub fn next_retry(&self) -> Option<i64> {
        self.recipients
            .iter()
            .filter_map(|r| match r.state {
                State::Deferred { next, .. } => Some(next),
                _ => None,
            })
            .min()
    }

    /// The envelope file's text (see the module docs).
    pub fn to_text(&self) -> String {
        let e = &self.envelope;
        let mut s = String::new();
        let _ = writeln!(s, "{MAGIC}");
        let _ = writeln!(s, "id {}", self.id);
        let _ = writeln!(s, "arrival {}", self.arrival);
        let _ = writeln!(s, "size {}", self.size);
        let _ = writeln!(s, "hops {}", e.hops);
        let _ = writeln!(s, "sender {}", esc(&e.sender));
        let _ = writeln!(s, "envid {}", esc(e.envid.as_deref().unwrap_or("")));
        let ret = if e.ret_headers { "hdrs" } else { "full" };
        let _ = writeln!(s, "ret {ret}");
        let _ = writeln!(s, "client {}", esc(&e.client));
        let _ = writeln!(s, "params {}", esc(&e.params));
        let _ = writeln!(s, "warned {}", u8::from(self.warned));
        for r in &self.recipients {
            let (next, notified) = match &r.state {
                State::Deferred { next, .. } => (Some(*next), false),
                State::Failed { notified, .. } => (None, *notified),
                _ => (None, false),
            };
            let err = r.state.error();
            let _ = writeln!(
                s,
                "rcpt {} {} {} {} {} {} {} {} {} {} {}",
                r.state.word(),
                r.attempts,
                time(r.first_attempt),
                time(r.last_attempt),
                time(next),
                u8::from(notified),
                err.map_or("-".to_string(), Failure::status),
                esc(err.and_then(|e| e.remote.as_deref()).unwrap_or("")),
                esc(err.map_or("", |e| e.diagnostic.as_str())),
                esc(&r.address.address),
                esc(r.address.orcpt.as_deref().unwrap_or("")),
            );
        }
        s.push_str("end\n");
        s
    }

    /// Parses an envelope file strictly (see the module docs).
    pub fn parse(text: &[u8]) -> Result<Entry, FormatError> {
        let mut p = Parser {
            lines: text.split_inclusive(|&b| b == b'\n').enumerate(),
            line: 0,
        };
        let magic = p.next_line()?;
        if magic != MAGIC.as_bytes() {
            return Err(p.err(format!(
                "expected `{MAGIC}`, found `{}`",
                String::from_utf8_lossy(magic)
            )));
        }
        let id_text = p.field("id")?;
        let id = QueueId::parse(&id_text).map_err(|e| p.err(e.to_string()))?;
        let arrival = p.number("arrival")?;
        let size = p.number("size")?;
        let hops = p.number("hops")?;
        let sender = p.value("sender")?;
        let envid = p.value("envid")?;
        let ret_headers = match p.field("ret")?.as_str() {
            "hdrs" => true,
            "full" => false,
            other => return Err(p.err(format!("`ret` must be `full` or `hdrs`, not `{other}`"))),
        };
        let client = p.value("client")?;
        let params = p.value("params")?;
        let warned = p.flag("warned")?;
        let mut recipients = Vec::new();
        loop {
            let line = p.next_line()?;
            if line == b"end" {
                break;
            }
            let Some(rest) = line.strip_prefix(b"rcpt ") else {
                let found =
                    String::from_utf8_lossy(line.split(|&b| b == b' ').next().unwrap_or(b""));
                return Err(p.err(format!("expected `rcpt` or `end`, found `{found}`")));
            };
            recipients.push(p.recipient(rest)?);
        }
        if let Some((n, _)) = p.lines.next() {
            return Err(FormatError {
                line: n + 1,
                message: "text after `end`".to_string(),
            });
        }
        if recipients.is_empty() {
            return Err(p.err("no `rcpt` line".to_string()));
        }
        let envelope = Envelope {
            sender,
            recipients: recipients.iter().map(|r| r.address.clone()).collect(),
            hops,
            client,
            params,
            envid: Some(envid).filter(|s| !s.is_empty()),
            ret_headers,
        };
        Ok(Entry {
            id,
            arrival,
            size,
            envelope,
            warned,
            recipients,
        })
    }
}

/// A stable per-recipient seed for the schedule's jitter (FNV-1a), so the
/// same entry gets the same retry times on every run.
fn seed(id: &str, index: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain(index.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn time(t: Option<i64>) -> String {
    t.map_or("-".to_string(), |t| t.to_string())
}

/// Escapes one value (module docs): `-` for empty.
pub(super) fn esc(value: &str) -> String {
    if value.is_empty() {
        return "-".to_string();
    }
    if value == "-" {
        return "%2D".to_string();
    }
    let mut s = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b <= b' ' || b >= 0x7f || b == b'%' {
            let _ = write!(s, "%{b:02X}");
        } else {
            s.push(char::from(b));
        }
    }
    s
}

/// Undoes [`esc`]; the result must be UTF-8.
pub(super) fn unesc(token: &[u8]) -> Result<String, String> {
    if token == b"-" {
        return Ok(String::new());
    }
    let mut out = Vec::with_capacity(token.len());
    let mut i = 0;
    while i < token.len() {
        let b = token[i];
        if b == b'%' {
            let hex = token
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .filter(|h| {
                    h.bytes()
                        .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
                })
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "bad `%` escape".to_string())?;
            out.push(hex);
            i += 3;
        } else if b <= b' ' || b >= 0x7f {
            return Err(format!("unescaped byte 0x{b:02x}"));
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "value is not UTF-8".to_string())
}

struct Parser<'a, I: Iterator<Item = (usize, &'a [u8])>> {
    lines: I,
    line: usize,
}

impl<'a, I: Iterator<Item = (usize, &'a [u8])>> Parser<'a, I> {
    fn err(&self, message: String) -> FormatError {
        FormatError {
            line: self.line,
            message,
        }
    }

    fn next_line(&mut self) -> Result<&'a [u8], FormatError> {
        match self.lines.next() {
            Some((n, l)) => {
                self.line = n + 1;
                l.strip_suffix(b"\n")
                    .ok_or_else(|| self.err("cut off: no line end".to_string()))
            }
            None => {
                self.line += 1;
                Err(self.err("cut off: no `end` line".to_string()))
            }
        }
    }

    /// `key token`, the token still escaped.
    fn field(&mut self, key: &str) -> Result<String, FormatError> {
        let line = self.next_line()?;
        let got_key = line.split(|&b| b == b' ').next().unwrap_or(b"");
        if got_key != key.as_bytes() {
            return Err(self.err(format!(
                "expected `{key}`, found `{}`",
                String::from_utf8_lossy(got_key)
            )));
        }
        let rest = &line[key.len()..];
        let Some(token) = rest.strip_prefix(b" ") else {
            return Err(self.err(format!("`{key}` has no value")));
        };
        if token.is_empty() || token.contains(&b' ') {
            return Err(self.err(format!("`{key}` must have exactly one value")));
        }
        Ok(String::from_utf8_lossy(token).into_owned())
    }

    fn value(&mut self, key: &str) -> Result<String, FormatError> {
        let token = self.field(key)?;
        unesc(token.as_bytes()).map_err(|m| self.err(format!("`{key}`: {m}")))
    }

    fn number<T: std::str::FromStr>(&mut self, key: &str) -> Result<T, FormatError> {
        let token = self.field(key)?;
        num(&token).ok_or_else(|| self.err(format!("`{key}`: bad number `{token}`")))
    }

    fn flag(&mut self, key: &str) -> Result<bool, FormatError> {
        match self.field(key)?.as_str() {
            "0" => Ok(false),
            "1" => Ok(true),
            other => Err(self.err(format!("`{key}` must be 0 or 1, not `{other}`"))),
        }
    }

    fn recipient(&self, rest: &[u8]) -> Result<Recipient, FormatError> {
        let f: Vec<&[u8]> = rest.split(|&b| b == b' ').collect();
        if f.len() != 11 || f.iter().any(|t| t.is_empty()) {
            return Err(self.err(format!(
                "`rcpt` needs 11 values, found {}",
                f.iter().filter(|t| !t.is_empty()).count()
            )));
        }
        let text = |i: usize| String::from_utf8_lossy(f[i]).into_owned();
        let opt_time = |i: usize, what: &str| -> Result<Option<i64>, FormatError> {
            match f[i] {
                b"-" => Ok(None),
                t => num(&String::from_utf8_lossy(t))
                    .map(Some)
                    .ok_or_else(|| self.err(format!("`rcpt` {what}: bad number `{}`", text(i)))),
            }
        };
        let attempts: u32 = num(&text(1))
            .ok_or_else(|| self.err(format!("`rcpt` attempts: bad number `{}`", text(1))))?;
        let first_attempt = opt_time(2, "first attempt")?;
        let last_attempt = opt_time(3, "last attempt")?;
        let next = opt_time(4, "next retry")?;
        let notified = match f[5] {
            b"0" => false,
            b"1" => true,
            _ => return Err(self.err(format!("`rcpt` notified must be 0 or 1, not `{}`", text(5)))),
        };
        let field =
            |i: usize, what: &str| unesc(f[i]).map_err(|m| self.err(format!("`rcpt` {what}: {m}")));
        let remote = field(7, "remote")?;
        let diagnostic = field(8, "diagnostic")?;
        let address = field(9, "address")?;
        let orcpt = field(10, "original recipient")?;
        if address.is_empty() {
            return Err(self.err("`rcpt` address is empty".to_string()));
        }
        let error = match f[6] {
            b"-" => None,
            s => Some(
                parse_status(s)
                    .ok_or_else(|| self.err(format!("`rcpt` bad status `{}`", text(6))))?,
            ),
        }
        .map(|(class, detail)| Failure {
            class,
            detail,
            diagnostic,
            remote: Some(remote).filter(|s| !s.is_empty()),
        });
        let state = match (f[0], next, error) {
            (b"pending", None, None) if attempts == 0 && !notified => State::Pending,
            (b"delivered", None, None) if !notified => State::Delivered,
            (b"deferred", Some(next), Some(error)) if !notified => State::Deferred { next, error },
            (b"failed", None, Some(error)) => State::Failed { error, notified },
            (b"pending" | b"delivered" | b"deferred" | b"failed", ..) => {
                return Err(self.err(format!("`rcpt` fields do not fit state `{}`", text(0))));
            }
            _ => return Err(self.err(format!("`rcpt` unknown state `{}`", text(0)))),
        };
        Ok(Recipient {
            address: Address {
                address,
                orcpt: Some(orcpt).filter(|s| !s.is_empty()),
            },
            state,
            attempts,
            first_attempt,
            last_attempt,
        })
    }
}

/// A decimal number with no sign, spaces or leading `+`.
fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `4.4.1` → (Temp, (4, 1)); the class digit must be 4 or 5.
fn parse_status(s: &[u8]) -> Option<(Class, (u16, u16))> {
    let s = std::str::from_utf8(s).ok()?;
    let mut parts = s.split('.');
    let class = match parts.next()? {
        "4" => Class::Temp,
        "5" => Class::Perm,
        _ => return None,
    };
    let a = num::<u16>(parts.next()?).filter(|&n| n <= 999)?;
    let b = num::<u16>(parts.next()?).filter(|&n| n <= 999)?;
    if parts.next().is_some() {
        return None;
    }
    Some((class, (a, b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> QueueId {
        QueueId::parse("06B081F4001E24000001F40001").unwrap()
    }

    fn envelope() -> Envelope {
        Envelope {
            sender: "alice@example.test".to_string(),
            recipients: vec![
                Address::new("bob@relay.test"),
                Address {
                    address: "\"carol smith\"@relay.test".to_string(),
                    orcpt: Some("rfc822;carol@relay.test".to_string()),
                },
                Address::new("dörte@relay.test"),
            ],
            hops: 3,
            client: "mx.example.test (unknown [192.0.2.1])".to_string(),
            params: "BODY=8BITMIME".to_string(),
            envid: Some("-".to_string()),
            ret_headers: true,
        }
    }

    fn temp(diag: &str) -> Attempt {
        Attempt::Failed(Failure {
            class: Class::Temp,
            detail: (4, 1),
            diagnostic: diag.to_string(),
            remote: Some("primary.test".to_string()),
        })
    }

    #[test]
    fn every_state_survives_the_text_format() {
        let s = Schedule::default();
        let mut e = Entry::new(id(), 1_000_000, 42, &envelope());
        e.apply(0, &temp("smtp; 421 4.4.1 busy % now"), 1_000_000, &s)
            .unwrap();
        e.apply(1, &Attempt::Delivered, 1_000_010, &s).unwrap();
        e.recipients.push(e.recipients[2].clone());
        e.envelope.recipients.push(e.recipients[2].address.clone());
        e.apply(
            3,
            &Attempt::Failed(Failure {
                class: Class::Perm,
                detail: (1, 1),
                diagnostic: "smtp; 550 5.1.1 no\tsuch user".to_string(),
                remote: None,
            }),
            1_000_020,
            &s,
        )
        .unwrap();
        e.warned = true;
        let text = e.to_text();
        let got = Entry::parse(text.as_bytes()).unwrap();
        assert_eq!(got, e);
        assert!(
            text.contains("rcpt pending 0 - - - 0 - - - d%C3%B6rte@relay.test -\n"),
            "{text}"
        );
        assert!(
            text.contains(" \"carol%20smith\"@relay.test rfc822;carol@relay.test\n"),
            "{text}"
        );
        assert!(text.contains("\nenvid %2D\n"), "{text}");
        assert!(text.ends_with("\nend\n"));
    }

    /// The example in the module docs is a valid file.
    #[test]
    fn module_doc_example_parses() {
        let src = include_str!("entry.rs");
        let start = src.find("//! ```text\n").unwrap() + "//! ```text\n".len();
        let end = start + src[start..].find("//! ```\n").unwrap();
        let text: String = src[start..end]
            .lines()
            .map(|l| format!("{}\n", l.strip_prefix("//! ").unwrap()))
            .collect();
        let e = Entry::parse(text.as_bytes()).unwrap();
        assert_eq!(e.to_text(), text);
        let State::Deferred { next, error } = &e.recipients[0].state else {
            panic!("{e:?}")
        };
        assert_eq!(*next, 1_795_695_300);
        assert_eq!(error.diagnostic, "smtp; 421 busy");
    }

    #[test]
    fn null_sender_is_written_as_a_dash() {
        let mut env = envelope();
        env.sender.clear();
        let e = Entry::new(id(), 5, 0, &env);
        let text = e.to_text();
        assert!(text.contains("\nsender -\n"));
        assert_eq!(Entry::parse(text.as_bytes()).unwrap().envelope.sender, "");
    }

    /// Each broken file is refused with the line and the reason.
    #[test]
    fn strict_parse_names_the_line() {
        let good = Entry::new(id(), 5, 0, &envelope()).to_text();
        let cases: Vec<(String, &str)> = vec![
            (
                good.replace("postroom-queue 1", "postroom-queue 2"),
                "line 1: expected `postroom-queue 1`, found `postroom-queue 2`",
            ),
            (
                good.replace("arrival 5", "arrival +5"),
                "line 3: `arrival`: bad number `+5`",
            ),
            (
                good.replace("hops 3\n", ""),
                "line 5: expected `hops`, found `sender`",
            ),
            (
                good.replace("size 0", "size 0 1"),
                "line 4: `size` must have exactly one value",
            ),
            (
                good.replace("ret hdrs", "ret some"),
                "line 8: `ret` must be `full` or `hdrs`, not `some`",
            ),
            (
                good.replace("\nend\n", "\n"),
                "line 15: cut off: no `end` line",
            ),
            (
                good.replace("\nend\n", "\nend"),
                "line 15: cut off: no line end",
            ),
            (
                good.replace("\nend\n", "\nend\nrcpt\n"),
                "line 16: text after `end`",
            ),
            (
                good.replace("rcpt pending 0", "rcpt sent 0"),
                "line 12: `rcpt` unknown state `sent`",
            ),
            (
                good.replace("rcpt pending 0 - - -", "rcpt deferred 1 - - -"),
                "line 12: `rcpt` fields do not fit state `deferred`",
            ),
            (
                good.replace("rcpt pending 0 - - - 0 -", "rcpt pending 0 - - - 0 6.0.0"),
                "line 12: `rcpt` bad status `6.0.0`",
            ),
            (
                good.replace("bob@relay.test", "bob%4@relay.test"),
                "line 12: `rcpt` address: bad `%` escape",
            ),
            (
                good.replace("bob@relay.test", "bob@relay.test x"),
                "line 12: `rcpt` needs 11 values, found 12",
            ),
            (
                good.replace("warned 0", "hello 0"),
                "line 11: expected `warned`, found `hello`",
            ),
            (
                good.replace("sender alice", "sender al%FFice"),
                "line 6: `sender`: value is not UTF-8",
            ),
        ];
        for (text, want) in cases {
            let got = Entry::parse(text.as_bytes()).unwrap_err().to_string();
            assert_eq!(got, want, "for\n{text}");
        }
        let mut none = good
            .lines()
            .filter(|l| !l.starts_with("rcpt"))
            .collect::<Vec<_>>()
            .join("\n");
        none.push('\n');
        assert_eq!(
            Entry::parse(none.as_bytes()).unwrap_err().to_string(),
            "line 12: no `rcpt` line"
        );
    }

    #[test]
    fn temporary_failure_defers_then_expires_with_the_last_status() {
        let s = Schedule {
            jitter_percent: 0,
            ..Schedule::default()
        };
        let mut e = Entry::new(id(), 0, 0, &envelope());
        let got = e.apply(0, &temp("smtp; 421 busy"), 0, &s).unwrap().clone();
        assert!(matches!(got, State::Deferred { next: 300, .. }), "{got:?}");
        assert_eq!(e.next_retry(), Some(300));
        assert!(!e.is_due(299, &s) || e.recipients[1].state == State::Pending);
        // After the lifetime a temporary failure fails the recipient, keeping 4.4.1.
        let late = s.max_lifetime.as_secs() as i64;
        let got = e
            .apply(0, &temp("smtp; 421 still busy"), late, &s)
            .unwrap()
            .clone();
        match got {
            State::Failed { error, notified } => {
                assert_eq!(error.status(), "4.4.1");
                assert_eq!(error.diagnostic, "smtp; 421 still busy");
                assert!(!notified);
            }
            other => panic!("want failed, got {other:?}"),
        }
        assert_eq!(e.recipients[0].attempts, 2);
        assert_eq!(e.recipients[0].first_attempt, Some(0));
        assert_eq!(e.recipients[0].last_attempt, Some(late));
        assert_eq!(
            e.apply(0, &Attempt::Delivered, late, &s),
            Err(ApplyError::Final(0, "failed"))
        );
        assert_eq!(
            e.apply(9, &Attempt::Delivered, late, &s),
            Err(ApplyError::NoRecipient(9))
        );
    }

    #[test]
    fn due_when_pending_unreported_or_all_final() {
        let s = Schedule {
            jitter_percent: 0,
            ..Schedule::default()
        };
        let mut env = envelope();
        env.recipients.truncate(1);
        let mut e = Entry::new(id(), 0, 0, &env);
        assert!(e.is_due(0, &s), "pending is due at once");
        e.apply(0, &temp("x"), 0, &s).unwrap();
        assert!(!e.is_due(299, &s));
        assert!(e.is_due(300, &s));
        e.apply(0, &Attempt::Delivered, 300, &s).unwrap();
        assert!(e.is_due(301, &s), "all final: due for removal");
    }

    #[test]
    fn outcome_becomes_an_x_unix_diagnostic() {
        let o = Outcome::temp((2, 2), "mailbox full");
        let Attempt::Failed(f) = Attempt::from(&o) else {
            panic!()
        };
        assert_eq!(f.status(), "4.2.2");
        assert_eq!(f.diagnostic, "x-unix; mailbox full");
        assert_eq!(Attempt::from(&Outcome::Delivered), Attempt::Delivered);
    }
}
