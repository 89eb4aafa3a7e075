//! The SMTP server: sockets, threads and deadlines around the sans-IO
//! [`Session`], and the [`Host`] that answers it from the routing tables
//! and the queue.
//!
//! Owns listening, one thread per session, the bound on sessions at once
//! (`421 4.7.0` beyond it, mta-semantics B.5), the per-command and per-DATA
//! deadlines, the `Received:` field (B.7) and the hand-off to
//! [`Queue::enqueue`], after which, and only after which, the client hears
//! `250` (B.8). It never delivers a message, never runs `deliver` or any
//! other program, never reads a table file (it is given a loaded
//! [`route::Config`]) and never decides SMTP grammar (that is the
//! session's).

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::queue::{self, Queue};
use crate::route::{self, Resolution, Resolver};
use crate::status::Reply;

use super::address::{Domain, ForwardPath, ReversePath};
use super::session::{Body, Envelope, Host, RcptVerdict, Session};
use super::settings::{MIN_DATA_RATE, Settings};

/// Errors in a session after which every reply is delayed by a second
/// (mta-semantics B.5: soft limit 10, Postfix `smtpd_soft_error_limit`).
pub const SOFT_ERROR_LIMIT: u32 = 10;

/// Where the server writes its log lines (stderr for `postroom smtpd`).
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// A log that writes each line to stderr, prefixed `postroom smtpd: `.
pub fn stderr_log() -> Log {
    Arc::new(|line| eprintln!("postroom smtpd: {line}"))
}

/// The [`Host`] of one session: recipients through `route`, messages into
/// the queue.
pub struct RouteHost {
    routes: Arc<route::Config>,
    queue: Arc<dyn Queue>,
    hostname: String,
    peer: SocketAddr,
    session_id: String,
    /// Messages taken in this session, numbering them in the log.
    taken: u32,
    log: Log,
}

impl RouteHost {
    /// A host for the session with `peer`; `session_id` names the session
    /// in the log (`Received: ... id` names the queue id).
    pub fn new(
        routes: Arc<route::Config>,
        queue: Arc<dyn Queue>,
        hostname: &str,
        peer: SocketAddr,
        session_id: &str,
        log: Log,
    ) -> RouteHost {
        RouteHost {
            routes,
            queue,
            hostname: hostname.to_string(),
            peer,
            session_id: session_id.to_string(),
            taken: 0,
            log,
        }
    }

    /// How the client is shown in `Received:` and the queue: `helo
    /// (unknown [ip])`. No reverse DNS lookup is done (the server never
    /// waits on the network for a trace field), so the name is `unknown`.
    fn client(&self, helo: &str) -> String {
        format!("{} (unknown [{}])", clean_helo(helo), self.peer.ip())
    }
}

/// The HELO argument as it may appear in a trace field: printable ASCII
/// without parentheses or brackets (which would end the comment or the
/// address part), at most 255 octets (mta-semantics B.7: sanitise it).
fn clean_helo(helo: &str) -> String {
    let s: String = helo
        .chars()
        .take(255)
        .map(|c| {
            if c.is_ascii_graphic() && !"()[]\\;".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.is_empty() {
        "unknown".to_string()
    } else {
        s
    }
}

/// The route address for a forward path: unquoted local part, domain
/// name; `None` for an address literal (never local, A.2).
fn route_address(to: &ForwardPath) -> Option<route::Address> {
    match to {
        ForwardPath::Postmaster => Some(route::Address::new(b"postmaster", b"")),
        ForwardPath::Mailbox(m) => match m.domain() {
            Domain::Name(d) => Some(route::Address::new(m.local().as_bytes(), d.as_bytes())),
            Domain::Literal(_) => None,
        },
    }
}

/// The envelope address of a forward path as the queue stores it.
fn queue_address(to: &ForwardPath) -> String {
    match to {
        ForwardPath::Postmaster => "postmaster".to_string(),
        ForwardPath::Mailbox(m) => m.to_string(),
    }
}

/// The `Received:` field we prepend (mta-semantics B.7, RFC 5321 §4.4),
/// folded with a TAB. `for <rcpt>` only with exactly one recipient, so a
/// Bcc is never shown to the others.
pub fn received_field(
    client: &str,
    hostname: &str,
    envelope: &Envelope,
    id: &str,
    date: &str,
) -> String {
    let with = match (envelope.esmtp, envelope.params.smtputf8) {
        (true, true) => "UTF8SMTP",
        (true, false) => "ESMTP",
        (false, _) => "SMTP",
    };
    let mut f =
        format!("Received: from {client}\r\n\tby {hostname} (postroom) with {with} id {id}");
    if let [only] = envelope.rcpts.as_slice() {
        let _ = write!(f, "\r\n\tfor {only}");
    }
    let _ = write!(f, "; {date}\r\n");
    f
}

/// The current time as an RFC 5322 date with the zone's name as a
/// comment, as Postfix writes it: `Thu, 26 Nov 2026 09:01:41 +0000 (UTC)`.
fn rfc5322_now() -> String {
    let now = chrono::Local::now();
    let date = now.format(crate::message::RFC5322_DATE).to_string();
    match zone_name(now.timestamp()) {
        Some(zone) => format!("{date} ({zone})"),
        None => date,
    }
}

/// The local time zone's abbreviation at `t` (`UTC`, `CET`), as the C
/// library names it for localtime(3) and as Postfix writes it in its
/// `Received:` comment; chrono only knows the offset.
fn zone_name(t: i64) -> Option<String> {
    let t = libc::time_t::try_from(t).ok()?;
    // SAFETY: localtime_r writes only into `tm`; tm_zone then points to
    // static storage of the C library (or is null), read at once.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() || tm.tm_zone.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(tm.tm_zone).to_string_lossy();
        (!name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-".contains(&b)))
        .then(|| name.into_owned())
    }
}

impl Host for RouteHost {
    fn rcpt(&mut self, to: &ForwardPath, _envelope: &Envelope) -> RcptVerdict {
        let Some(addr) = route_address(to) else {
            return RcptVerdict::relay_denied(to);
        };
        let resolver = Resolver::new(&self.routes, self.routes.users());
        let verdict = match resolver.resolve(&addr) {
            Resolution::Local(targets) => {
                let list: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
                (self.log)(&format!(
                    "{}: rcpt {to}: local: {}",
                    self.session_id,
                    list.join(", ")
                ));
                return RcptVerdict::Accept;
            }
            Resolution::Relay(a) => {
                (self.log)(&format!("{}: rcpt {to}: relay {a}", self.session_id));
                return RcptVerdict::Accept;
            }
            // The session words these two itself (B.3); other refusals
            // (virtusertable `error:`, loops) keep the table's reply.
            Resolution::Refused(r) if r == route::reply::user_unknown() => {
                RcptVerdict::unknown_user(to)
            }
            Resolution::Refused(r) if r == route::reply::relay_denied() => {
                RcptVerdict::relay_denied(to)
            }
            Resolution::Refused(r) => RcptVerdict::Refuse(r.about(&to.to_string())),
        };
        if let RcptVerdict::Refuse(r) = &verdict {
            (self.log)(&format!(
                "{}: rcpt {to}: refused: {}",
                self.session_id,
                String::from_utf8_lossy(&r.to_wire()).trim_end()
            ));
        }
        verdict
    }

    fn data_end(&mut self, envelope: &Envelope, message: &[u8]) -> Reply {
        self.taken += 1;
        let id = format!("{}.{}", self.session_id, self.taken);
        let client = self.client(&envelope.helo);
        let date = rfc5322_now();
        // Our Received: field names the queue id, chosen by the queue.
        let make = |qid: &crate::queue::QueueId| {
            let received = received_field(&client, &self.hostname, envelope, qid.as_str(), &date);
            let mut bytes = Vec::with_capacity(received.len() + message.len());
            bytes.extend_from_slice(received.as_bytes());
            bytes.extend_from_slice(message);
            std::borrow::Cow::Owned(bytes)
        };
        let mut params = Vec::new();
        if envelope.params.body == Some(Body::EightBitMime) {
            params.push("BODY=8BITMIME");
        }
        if envelope.params.smtputf8 {
            params.push("SMTPUTF8");
        }
        let qenv = queue::Envelope {
            sender: match &envelope.from {
                ReversePath::Null => String::new(),
                ReversePath::Mailbox(m) => m.to_string(),
            },
            recipients: envelope
                .rcpts
                .iter()
                .map(|r| queue::Address::new(queue_address(r)))
                .collect(),
            // Ours, at the top of the header, and the message's own.
            hops: u32::try_from(envelope.received + 1).unwrap_or(u32::MAX),
            client: client.clone(),
            params: params.join(" "),
            envid: None,
            ret_headers: false,
        };
        // B.8: the 250 goes out only after enqueue returned, i.e. after
        // the entry was fsync'ed and renamed into active/.
        match self.queue.enqueue_made(&qenv, &make) {
            Ok(qid) => {
                (self.log)(&format!(
                    "{id}: queued as {qid}: from {} to {} recipient(s), {} octets",
                    envelope.from,
                    envelope.rcpts.len(),
                    message.len()
                ));
                Reply::ok(250, (0, 0), &format!("Ok: queued as {qid}"))
            }
            Err(e) => {
                (self.log)(&format!("{id}: not queued: {e}"));
                Reply::temp(451, (3, 0), "Error: queue file write error")
            }
        }
    }
}

/// The routing tables in use, shared by all sessions and swapped whole
/// on reload (mta-semantics A.1: never half a table). A session keeps the
/// set it started with.
#[derive(Clone)]
pub struct Tables(Arc<RwLock<Arc<route::Config>>>);

impl Tables {
    /// Tables starting with `config`.
    pub fn new(config: route::Config) -> Tables {
        Tables(Arc::new(RwLock::new(Arc::new(config))))
    }

    /// The set in use now.
    pub fn current(&self) -> Arc<route::Config> {
        Arc::clone(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts `config` in use for sessions that start from now on.
    pub fn replace(&self, config: route::Config) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }
}

/// A bound server: listening sockets plus what every session needs.
pub struct Server {
    listeners: Vec<TcpListener>,
    shared: Arc<Shared>,
}

struct Shared {
    settings: Settings,
    tables: Tables,
    queue: Arc<dyn Queue>,
    log: Log,
    active: AtomicUsize,
    next_id: AtomicU64,
}

/// Counts a session while it lives.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Server {
    /// Binds every `listen` address of `settings`.
    pub fn bind(
        settings: Settings,
        tables: Tables,
        queue: Arc<dyn Queue>,
        log: Log,
    ) -> io::Result<Server> {
        let mut listeners = Vec::new();
        for addr in &settings.listen {
            let l = TcpListener::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            listeners.push(l);
        }
        Ok(Server {
            listeners,
            shared: Arc::new(Shared {
                settings,
                tables,
                queue,
                log,
                active: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
            }),
        })
    }

    /// The tables the server uses, to replace them on reload.
    pub fn tables(&self) -> Tables {
        self.shared.tables.clone()
    }

    /// The addresses actually bound (a port 0 in the settings becomes the
    /// port the system chose).
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.listeners.iter().map(|l| l.local_addr()).collect()
    }

    /// Accepts sessions until an accept fails hard; one thread per
    /// listener beyond the first, one per session.
    pub fn serve(self) -> io::Result<()> {
        let mut listeners = self.listeners.into_iter();
        let Some(first) = listeners.next() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no listen address",
            ));
        };
        for l in listeners {
            let shared = Arc::clone(&self.shared);
            thread::spawn(move || accept_loop(&l, &shared));
        }
        accept_loop(&first, &self.shared)
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) -> io::Result<()> {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(x) => x,
            // A client that went away between SYN and accept, or a
            // passing shortage of descriptors: keep serving the others.
            Err(e) => {
                (shared.log)(&format!("accept: {e}"));
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let sid = format!("S{:X}.{id}", std::process::id());
        let n = shared.active.fetch_add(1, Ordering::SeqCst) + 1;
        let slot = Slot(Arc::clone(shared));
        if n > shared.settings.max_sessions {
            drop(slot);
            (shared.log)(&format!(
                "{sid}: {peer}: refused, {} sessions at once",
                n - 1
            ));
            refuse_busy(stream, &shared.settings);
            continue;
        }
        let spawned = thread::Builder::new().name(sid.clone()).spawn(move || {
            let shared = Arc::clone(&slot.0);
            if let Err(e) = session(stream, peer, &sid, &shared, slot) {
                (shared.log)(&format!("{sid}: {peer}: {e}"));
            }
        });
        if let Err(e) = spawned {
            (shared.log)(&format!("cannot start a session thread: {e}"));
        }
    }
}

/// `421 4.7.0 <fqdn> Error: too many connections`, then close (B.5).
fn refuse_busy(mut stream: TcpStream, settings: &Settings) {
    let text = format!("{} Error: too many connections", settings.hostname);
    let reply = Reply::temp(421, (7, 0), &text).closing();
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = stream.write_all(&reply.to_wire());
    let _ = stream.shutdown(Shutdown::Both);
}

/// Runs one session to its end; `slot` is given back before the
/// connection is closed, so a client that saw the close may connect again
/// at once.
fn session(
    mut stream: TcpStream,
    peer: SocketAddr,
    sid: &str,
    shared: &Shared,
    slot: Slot,
) -> io::Result<()> {
    let settings = &shared.settings;
    (shared.log)(&format!("{sid}: connect from {peer}"));
    let host = RouteHost::new(
        shared.tables.current(),
        Arc::clone(&shared.queue),
        &settings.hostname,
        peer,
        sid,
        Arc::clone(&shared.log),
    );
    let mut s = Session::new(settings.session_config(), host);
    stream.set_write_timeout(Some(settings.command_timeout))?;
    stream.write_all(&s.greeting().to_wire())?;
    let mut buf = vec![0u8; 64 * 1024];
    // The deadline runs from the last reply: a command line must be
    // complete within command_timeout, a message within data_timeout plus
    // one second per MIN_DATA_RATE octets (B.5: a per-read timeout alone
    // lets a client that drips one byte at a time hold the session).
    let mut since = Instant::now();
    let mut octets: u64 = 0;
    loop {
        let allowed = if s.in_data() {
            settings.data_timeout + Duration::from_secs(octets / MIN_DATA_RATE)
        } else {
            settings.command_timeout
        };
        let left = allowed.saturating_sub(since.elapsed());
        if left.is_zero() {
            let r = s.shutdown();
            (shared.log)(&format!("{sid}: timeout"));
            let _ = stream.write_all(&r.to_wire());
            break;
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                s.eof();
                (shared.log)(&format!("{sid}: disconnect"));
                break;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                s.eof();
                return Err(e);
            }
        };
        octets += n as u64;
        let replies = s.feed(&buf[..n]);
        if !replies.is_empty() {
            // Postfix's soft error limit (mta-semantics B.5): past it,
            // each answer waits a second, slowing down a guessing client.
            if s.errors() > SOFT_ERROR_LIMIT {
                thread::sleep(Duration::from_secs(1));
            }
            let mut out = Vec::new();
            for r in &replies {
                out.extend_from_slice(&r.to_wire());
            }
            stream.write_all(&out)?;
            since = Instant::now();
            octets = 0;
        }
        if s.is_closed() {
            break;
        }
    }
    drop(slot);
    let _ = stream.shutdown(Shutdown::Both);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{MemoryQueue, Schedule, SystemClock};
    use crate::smtp::session::MailParams;

    fn envelope(rcpts: &[&str], esmtp: bool) -> Envelope {
        let rcpts = rcpts
            .iter()
            .map(|r| {
                crate::smtp::address::parse_forward_path(r, false)
                    .unwrap()
                    .0
            })
            .collect();
        Envelope {
            helo: "client.test".into(),
            esmtp,
            from: ReversePath::Null,
            params: MailParams::default(),
            rcpts,
            received: 0,
        }
    }

    #[test]
    fn received_names_the_single_recipient_only() {
        let one = received_field(
            "c (unknown [127.0.0.1])",
            "mx.example.test",
            &envelope(&["<a@example.test>"], true),
            "S1.1",
            "D",
        );
        assert_eq!(
            one,
            "Received: from c (unknown [127.0.0.1])\r\n\tby mx.example.test (postroom) with ESMTP id S1.1\r\n\tfor <a@example.test>; D\r\n"
        );
        let two = received_field(
            "c",
            "mx",
            &envelope(&["<a@x.test>", "<b@x.test>"], false),
            "I",
            "D",
        );
        assert_eq!(
            two,
            "Received: from c\r\n\tby mx (postroom) with SMTP id I; D\r\n"
        );
    }

    #[test]
    fn helo_cannot_break_the_trace_field() {
        let table = [
            ("mail.client.test", "mail.client.test"),
            ("x) (forged [10.0.0.1]", "x???forged??10.0.0.1?"),
            ("", "unknown"),
        ];
        for (helo, want) in table {
            let got = clean_helo(helo);
            assert_eq!(got, want, "for {helo:?}");
        }
        assert_eq!(clean_helo(&"a".repeat(1000)).len(), 255);
    }

    #[test]
    fn date_has_the_rfc5322_shape() {
        let d = rfc5322_now();
        let re = regex_automata::meta::Regex::new(
            r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4} \(.+\)$",
        )
        .unwrap();
        assert!(re.is_match(&d), "{d}");
    }

    fn host(routes: route::Config) -> (RouteHost, Arc<MemoryQueue>) {
        let q = Arc::new(MemoryQueue::new(Schedule::default(), Arc::new(SystemClock)));
        let h = RouteHost::new(
            Arc::new(routes),
            q.clone(),
            "mx.example.test",
            "192.0.2.7:4000".parse().unwrap(),
            "S1.1",
            Arc::new(|_| {}),
        );
        (h, q)
    }

    fn routes() -> route::Config {
        let mut c = route::Config::new("/nonexistent", b"mx.example.test");
        c.local.insert(b"example.test");
        c.relay.insert(b"relay.test");
        c.virtual_users = Some(route::VirtualUsers::with_names(["alice"]));
        c
    }

    #[test]
    fn rcpt_verdicts_come_from_the_tables() {
        let (mut h, _) = host(routes());
        let env = envelope(&[], true);
        let table = [
            ("<alice@example.test>", "accept"),
            ("<ALICE@Example.TEST>", "accept"),
            ("<x@relay.test>", "accept"),
            ("<x@sub.relay.test>", "accept"),
            (
                "<nobody@example.test>",
                "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown",
            ),
            (
                "<x@other.test>",
                "554 5.7.1 <x@other.test>: Relay access denied",
            ),
            (
                "<x@[192.0.2.1]>",
                "554 5.7.1 <x@[192.0.2.1]>: Relay access denied",
            ),
        ];
        for (to, want) in table {
            let path = crate::smtp::address::parse_forward_path(to, false)
                .unwrap()
                .0;
            let got = match h.rcpt(&path, &env) {
                RcptVerdict::Accept => "accept".to_string(),
                RcptVerdict::Refuse(r) => String::from_utf8(r.to_wire())
                    .unwrap()
                    .trim_end()
                    .to_string(),
            };
            assert_eq!(got, want, "for {to}");
        }
    }

    #[test]
    fn data_end_queues_with_our_received_field_first() {
        let (mut h, q) = host(routes());
        let mut env = envelope(&["<alice@example.test>"], true);
        // The session counts the message's own Received: fields.
        env.received = 1;
        let r = h.data_end(&env, b"Received: old\r\nSubject: hi\r\n\r\nbody\r\n");
        assert_eq!(r.code(), 250);
        assert!(r.lines()[0].starts_with("Ok: queued as "));
        let listing = q.entries().unwrap();
        assert_eq!(listing.entries.len(), 1);
        let e = &listing.entries[0];
        let msg = q.message(&e.id).unwrap();
        let want = format!(
            "Received: from client.test (unknown [192.0.2.7])\r\n\tby mx.example.test (postroom) with ESMTP id {}\r\n\tfor <alice@example.test>; ",
            e.id
        );
        assert!(
            msg.starts_with(want.as_bytes()),
            "{}",
            String::from_utf8_lossy(&msg)
        );
        assert_eq!(r.lines()[0], format!("Ok: queued as {}", e.id));
        assert!(msg.ends_with(b"Received: old\r\nSubject: hi\r\n\r\nbody\r\n"));
        assert_eq!(e.envelope.hops, 2, "ours and the client's");
    }

    #[test]
    fn the_received_date_ends_with_the_zone_name_when_there_is_one() {
        let d = rfc5322_now();
        // `Thu, 26 Nov 2026 14:00:00 +0000 (UTC)`: the comment is a name,
        // never chrono's `+00:00`.
        assert!(!d.contains(":00)") && !d.contains("(+"), "{d}");
        if let Some(open) = d.find('(') {
            assert!(d.ends_with(')'), "{d}");
            assert!(
                d[open + 1..d.len() - 1]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-".contains(&b)),
                "{d}"
            );
        }
    }
}
