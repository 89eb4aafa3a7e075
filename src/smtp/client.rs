//! The SMTP client that relays queued mail to the next hop (mta-semantics
//! C.3, C.4): connect, greet, send one or more transactions over the same
//! connection, quit.
//!
//! Owns the client side of the protocol: reading replies strictly (RFC
//! 5321 §4.2: the same three-digit code on every line, `-` on all but the
//! last), the EHLO capabilities it uses (PIPELINING, SIZE, 8BITMIME,
//! SMTPUTF8), CRLF line ends and dot-stuffing on the way out, a deadline
//! for every wait (RFC 5321 §4.5.3.2), and turning what the server says
//! into one [`Attempt`] per recipient with the class, enhanced code and
//! `Diagnostic-Code:` a DSN needs. It is blocking `std::net`, one
//! connection per thread: the queue runner calls it from a worker.
//!
//! It never touches the queue, never retries, never looks anything up in
//! `route` and never decides where mail goes: the caller hands it a host
//! (from [`crate::route::mailertable`]) and records the results. A host
//! name is resolved through getaddrinfo (`ToSocketAddrs`); there are no MX
//! lookups.
//!
//! Choices worth knowing:
//! * 8-bit content to a server that does not offer 8BITMIME (RFC 6152 §3
//!   lets the client bounce, convert, or not send): a message that came in
//!   as `BODY=8BITMIME` fails permanently with `5.6.3` (we do not convert
//!   to 7 bit; sendmail's "Cannot send 8-bit data to 7-bit destination"); a
//!   message that came in unlabelled but holds 8-bit bytes is sent as it
//!   is, unlabelled, as sendmail's `EightBitMode=pass8` and Postfix do: it
//!   was already not 7-bit clean when it reached us, and bouncing it would
//!   lose mail that every server in practice takes.
//! * SMTPUTF8 is asked for when the sender or a recipient is not ASCII or
//!   the message came in with `SMTPUTF8` and the server offers it. A non-ASCII
//!   address to a server without SMTPUTF8 fails permanently with `5.6.7`
//!   (RFC 6531 §3.2): the sender's fails every recipient, a recipient's
//!   only that one. A message that came in with `SMTPUTF8` but has ASCII
//!   addresses is sent without it (Postfix does the same).
//! * Line ends: the spool holds CRLF as received, but a bare LF or bare CR
//!   (a locally made message) becomes CRLF (mta-semantics B.6: never send a
//!   bare line end that a server could read as the end of data).
//! * A lost connection or a timeout after the final dot was sent but
//!   before its reply is a temporary failure: the message may then arrive
//!   twice (RFC 1047). A duplicate is better than a loss.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::queue::{Attempt, Failure};
use crate::status::{Class, Reply};

/// The longest reply line read, CRLF included (RFC 5321 §4.5.3.1.5 says
/// 512; we allow more, as servers send long texts).
pub const MAX_REPLY_LINE: usize = 4096;

/// The most lines one reply may have (an EHLO reply has one per
/// extension).
pub const MAX_REPLY_LINES: usize = 100;

/// The longest piece of a server's words put into a diagnostic.
const MAX_SHOWN: usize = 200;

/// How long each step may take (RFC 5321 §4.5.3.2; Postfix calls them
/// `smtp_*_timeout`). Each bounds one whole reply, not one read, so a
/// server that drips a byte at a time cannot hold a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening the TCP connection, over all of a host's addresses.
    pub connect: Duration,
    /// The `220` greeting.
    pub greeting: Duration,
    /// The reply to EHLO or HELO.
    pub helo: Duration,
    /// The reply to MAIL (and RSET).
    pub mail: Duration,
    /// The reply to each RCPT.
    pub rcpt: Duration,
    /// The `354` reply to DATA.
    pub data_init: Duration,
    /// Each block of the message written.
    pub data_block: Duration,
    /// The reply to the final dot.
    pub data_end: Duration,
    /// The reply to QUIT.
    pub quit: Duration,
}

impl Default for Timeouts {
    /// RFC 5321 §4.5.3.2: greeting 5 min, MAIL 5, RCPT 5, DATA 2, data
    /// block 3, final dot 10; EHLO/HELO and QUIT 5 min (Postfix), connect
    /// 30 s (Postfix `smtp_connect_timeout`).
    fn default() -> Timeouts {
        let min = |m: u64| Duration::from_secs(60 * m);
        Timeouts {
            connect: Duration::from_secs(30),
            greeting: min(5),
            helo: min(5),
            mail: min(5),
            rcpt: min(5),
            data_init: min(2),
            data_block: min(3),
            data_end: min(10),
            quit: min(5),
        }
    }
}

impl Timeouts {
    /// Every step bounded by the same `d` (for tests).
    pub fn all(d: Duration) -> Timeouts {
        Timeouts {
            connect: d,
            greeting: d,
            helo: d,
            mail: d,
            rcpt: d,
            data_init: d,
            data_block: d,
            data_end: d,
            quit: d,
        }
    }
}

/// One reply from the server: its code and the text of each line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerReply {
    /// The three-digit code, 200..=599.
    pub code: u16,
    /// Each line's text after the code and its `-` or space.
    pub lines: Vec<Vec<u8>>,
}

impl ServerReply {
    /// The failure class of a 4xx or 5xx reply, `None` for 2xx/3xx (read
    /// through [`Reply::from_code`], the one place a class comes from a
    /// number).
    pub fn class(&self) -> Option<Class> {
        Reply::from_code(self.code, (0, 0), "")
            .ok()
            .and_then(|r| r.class())
    }

    /// The enhanced status code's subject and detail, when the first line
    /// starts with one (RFC 2034) whose class digit agrees with the code's.
    /// A disagreeing one is ignored, so a 4xx reply never gives a 5.x.x
    /// failure.
    pub fn enhanced(&self) -> Option<(u16, u16)> {
        let first = self.lines.first()?;
        let word = first.split(|&b| b == b' ').next()?;
        let (c, s, d) = crate::status::parse_enhanced(word)?;
        (c == self.code / 100).then_some((s, d))
    }

    /// The reply as one printable line: code and the lines' text joined by
    /// a space, bytes outside printable ASCII escaped, cut to a sane length.
    pub fn text(&self) -> String {
        let joined: Vec<u8> = self.lines.join(&b' ');
        let mut s = format!("{} ", self.code);
        s.push_str(&printable(&joined));
        s.trim_end().to_string()
    }

    /// Whether the reply is 2xx.
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// What [`parse_reply`] found at the start of a buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parse {
    /// Not a whole reply yet: read more.
    Incomplete,
    /// A whole reply and how many bytes it took.
    Reply(ServerReply, usize),
    /// Not an SMTP reply; the text says what was there (printable).
    Garbage(String),
}

/// Reads one reply from the start of `buf`, strictly (RFC 5321 §4.2):
/// every line is a code from 200 to 599, the same on every line, then `-`
/// (more lines follow), a space or the line's end (the last line), and
/// ends in CRLF. A bare LF is taken as a line end as well (sans-IO: the
/// caller feeds whatever it has read, pipelined replies included).
pub fn parse_reply(buf: &[u8]) -> Parse {
    let mut pos = 0;
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let rest = &buf[pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() > MAX_REPLY_LINE {
                return Parse::Garbage(format!("a line longer than {MAX_REPLY_LINE} bytes"));
            }
            return Parse::Incomplete;
        };
        if nl + 1 > MAX_REPLY_LINE {
            return Parse::Garbage(format!("a line longer than {MAX_REPLY_LINE} bytes"));
        }
        let raw = &rest[..nl];
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let shown = || format!("\"{}\"", printable(line));
        let digits = line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit);
        let this = digits
            .then(|| u16::from(line[0] - b'0') * 100 + u16::from(line[1] - b'0') * 10)
            .map(|c| c + u16::from(line[2] - b'0'))
            .filter(|c| (200..600).contains(c));
        let Some(this) = this else {
            return Parse::Garbage(shown());
        };
        if code.is_some_and(|c| c != this) {
            return Parse::Garbage(format!("{} (code changed within a reply)", shown()));
        }
        code = Some(this);
        pos += nl + 1;
        let last = match line.get(3) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => return Parse::Garbage(shown()),
        };
        lines.push(line.get(4..).unwrap_or_default().to_vec());
        if last {
            return Parse::Reply(ServerReply { code: this, lines }, pos);
        }
        if lines.len() >= MAX_REPLY_LINES {
            return Parse::Garbage(format!("a reply of more than {MAX_REPLY_LINES} lines"));
        }
    }
}

/// `bytes` as printable ASCII: others as `\xNN`, cut at [`MAX_SHOWN`]
/// characters with `...`.
fn printable(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        if s.len() >= MAX_SHOWN {
            s.push_str("...");
            break;
        }
        if (0x20..0x7f).contains(&b) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// The message as sent after `354`: every line end CRLF (a bare LF or
/// bare CR becomes CRLF), a `.` doubled at the start of a line, a CRLF
/// added when the last line has none, then `.CRLF` (RFC 5321 §4.5.2).
pub fn encode_data(message: &[u8]) -> Vec<u8> {
    encode(message).0
}

/// [`encode_data`], and how many dots it added: the SIZE of RFC 1870 §3
/// counts CRLFs but neither the stuffed dots nor the final `.CRLF`.
fn encode(message: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut stuffed = 0;
    let mut line_start = true;
    let mut i = 0;
    while i < message.len() {
        let b = message[i];
        if line_start && b == b'.' {
            out.push(b'.');
            stuffed += 1;
        }
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if message.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                line_start = true;
            }
            _ => {
                out.push(b);
                line_start = false;
            }
        }
        i += 1;
    }
    if !line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    (out, stuffed)
}

/// What the server's EHLO reply offers, of what the client uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The server answered EHLO (false after the HELO fallback).
    pub esmtp: bool,
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// SIZE (RFC 1870) with its limit; `Some(0)`: offered without a limit.
    pub size: Option<u64>,
    /// 8BITMIME (RFC 6152).
    pub eight_bit_mime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
}

impl Capabilities {
    /// The capabilities of an EHLO reply (lines after the first; keywords
    /// case-insensitive).
    pub fn from_ehlo(reply: &ServerReply) -> Capabilities {
        let mut c = Capabilities {
            esmtp: true,
            ..Capabilities::default()
        };
        for line in reply.lines.iter().skip(1) {
            let text = String::from_utf8_lossy(line).to_ascii_uppercase();
            let mut words = text.split_ascii_whitespace();
            match words.next() {
                Some("PIPELINING") => c.pipelining = true,
                Some("8BITMIME") => c.eight_bit_mime = true,
                Some("SMTPUTF8") => c.smtputf8 = true,
                Some("SIZE") => {
                    c.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
                }
                _ => {}
            }
        }
        c
    }
}

/// What the queued envelope says about the message (its `params`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutParams {
    /// It came in as `BODY=8BITMIME`.
    pub body_8bitmime: bool,
    /// It came in with `SMTPUTF8`.
    pub smtputf8: bool,
}

impl OutParams {
    /// From the envelope's `params` text (`BODY=8BITMIME SMTPUTF8`, as
    /// `queue::Envelope::params` holds it); other words are ignored.
    pub fn from_envelope(params: &str) -> OutParams {
        let mut p = OutParams::default();
        for w in params.split_ascii_whitespace() {
            if w.eq_ignore_ascii_case("BODY=8BITMIME") {
                p.body_8bitmime = true;
            } else if w.eq_ignore_ascii_case("SMTPUTF8") {
                p.smtputf8 = true;
            }
        }
        p
    }
}

/// A failure of class `class` with enhanced `x.<detail>`.
fn failure(class: Class, detail: (u16, u16), diagnostic: String, remote: Option<&str>) -> Failure {
    Failure {
        class,
        detail,
        diagnostic,
        remote: remote.map(str::to_string),
    }
}

/// An open connection to one server, greeted and ready for a transaction.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    host: String,
    peer: String,
    caps: Capabilities,
    timeouts: Timeouts,
    usable: bool,
    /// A transaction was started and not finished (its final dot not
    /// answered): RSET before the next.
    dirty: bool,
}

/// Opens a connection to `host:port` and greets it: EHLO (HELO when it
/// answers 5xx, or at once when `esmtp` is false, sendmail's `smtp`
/// mailer). `host` is a name or an IP address without brackets; a name is
/// resolved through getaddrinfo and each address tried in turn within
/// [`Timeouts::connect`].
///
/// Failures: resolving (`4.4.3`) and connecting (`4.4.1`) are temporary;
/// a server that names itself `helo_name` is a mail loop (`5.4.6`);
/// a greeting or EHLO/HELO refused with 4xx/5xx fails with the server's
/// reply and class; a lost connection, a timeout or garbage is temporary
/// (`4.4.2`, `4.5.0`).
pub fn connect(
    host: &str,
    port: u16,
    helo_name: &str,
    esmtp: bool,
    t: &Timeouts,
) -> Result<Connection, Failure> {
    let addrs: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            return Err(failure(
                Class::Temp,
                (4, 3),
                format!("x-postroom; cannot resolve host {host}: {e}"),
                None,
            ));
        }
    };
    let deadline = Instant::now() + t.connect;
    let mut last = format!("x-postroom; host {host} has no address");
    let mut stream = None;
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => {
                stream = Some((s, a));
                break;
            }
            Err(e) => last = format!("x-postroom; connect to {host}[{}]:{port}: {e}", a.ip()),
        }
    }
    let Some((stream, addr)) = stream else {
        return Err(failure(Class::Temp, (4, 1), last, None));
    };
    let _ = stream.set_nodelay(true);
    let mut c = Connection {
        stream,
        buf: Vec::new(),
        host: host.to_string(),
        peer: format!("{host}[{}]:{port}", addr.ip()),
        caps: Capabilities::default(),
        timeouts: *t,
        usable: true,
        dirty: false,
    };
    let greeting = c.read_reply(t.greeting, "the greeting")?;
    if greeting.code != 220 {
        c.usable = false;
        return Err(c.refused(&greeting, "the greeting"));
    }
    c.check_loop(&greeting, helo_name)?;
    if esmtp {
        c.command(format!("EHLO {helo_name}\r\n").as_bytes(), t.helo, "EHLO")?;
        let reply = c.read_reply(t.helo, "EHLO")?;
        if reply.code == 250 {
            c.check_loop(&reply, helo_name)?;
            c.caps = Capabilities::from_ehlo(&reply);
            return Ok(c);
        }
        // RFC 5321 §3.2: a server that does not know EHLO answers 5xx;
        // try HELO. Anything else is that server's answer.
        if reply.class() != Some(Class::Perm) {
            c.usable = false;
            return Err(c.refused(&reply, "EHLO"));
        }
    }
    c.command(format!("HELO {helo_name}\r\n").as_bytes(), t.helo, "HELO")?;
    let reply = c.read_reply(t.helo, "HELO")?;
    if reply.code != 250 {
        c.usable = false;
        return Err(c.refused(&reply, "HELO"));
    }
    Ok(c)
}

impl Connection {
    /// The host as given to [`connect`].
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `host[ip]:port`, as diagnostics name it.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// What the server offered in its EHLO reply.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Whether another message may be sent over this connection: it was
    /// not lost, timed out, fed garbage or closed by a `421`.
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    /// Sends one message from `sender` (without angle brackets, empty for
    /// `<>`) to `rcpts`, returning one [`Attempt`] per recipient in order,
    /// or one [`Failure`] that holds for every recipient (the connection is
    /// unusable, MAIL was refused, the message cannot go to this server
    /// at all: over its SIZE, 8-bit or UTF-8 it does not take).
    ///
    /// A 4xx to a RCPT defers that recipient, a 5xx fails it; without an
    /// accepted recipient there is no DATA. A refused DATA or final dot,
    /// or a connection lost after the RCPTs, gives every accepted
    /// recipient that failure. After the final dot's 2xx every accepted
    /// recipient is delivered. With PIPELINING, MAIL, every RCPT and DATA
    /// go out in one write and the replies are read in order (RFC 2920).
    pub fn send(
        &mut self,
        sender: &str,
        rcpts: &[String],
        params: &OutParams,
        message: &[u8],
    ) -> Result<Vec<Attempt>, Failure> {
        if !self.usable {
            return Err(self.lost("starting a transaction", "the connection is closed"));
        }
        if self.dirty {
            self.rset()?;
        }
        let mut mail = format!("MAIL FROM:<{sender}>");
        let (data, stuffed) = encode(message);
        let size = (data.len() - stuffed - 3) as u64;
        if let Some(limit) = self.caps.size {
            if limit > 0 && size > limit {
                return Err(self.local(
                    Class::Perm,
                    (3, 4),
                    format!(
                        "message size {size} exceeds the size limit {limit} of {}",
                        self.peer
                    ),
                ));
            }
            mail.push_str(&format!(" SIZE={size}"));
        }
        let eight_bit = message.iter().any(|&b| b >= 0x80);
        if eight_bit && self.caps.eight_bit_mime {
            mail.push_str(" BODY=8BITMIME");
        } else if eight_bit && params.body_8bitmime {
            return Err(self.local(
                Class::Perm,
                (6, 3),
                format!(
                    "cannot send 8-bit data to 7-bit destination {} (no 8BITMIME)",
                    self.peer
                ),
            ));
        }
        let needs_utf8 = !sender.is_ascii() || rcpts.iter().any(|r| !r.is_ascii());
        if self.caps.smtputf8 && (needs_utf8 || params.smtputf8) {
            mail.push_str(" SMTPUTF8");
        } else if !sender.is_ascii() {
            return Err(self.no_utf8("sender"));
        }
        mail.push_str("\r\n");
        // One result per recipient; `None` while the server has not said.
        let mut results: Vec<Option<Attempt>> = rcpts
            .iter()
            .map(|r| (!r.is_ascii() && !self.caps.smtputf8).then(|| self.no_utf8("recipient")))
            .map(|f| f.map(Attempt::Failed))
            .collect();
        let todo: Vec<usize> = (0..rcpts.len()).filter(|&i| results[i].is_none()).collect();
        if todo.is_empty() {
            return Ok(results.into_iter().flatten().collect());
        }
        let rcpt_line = |i: usize| format!("RCPT TO:<{}>\r\n", rcpts[i]);
        self.dirty = true;
        let t = self.timeouts;
        let data_reply;
        if self.caps.pipelining {
            let mut batch = mail.into_bytes();
            for &i in &todo {
                batch.extend_from_slice(rcpt_line(i).as_bytes());
            }
            batch.extend_from_slice(b"DATA\r\n");
            self.command(&batch, t.mail, "MAIL FROM")?;
            let mail_reply = self.read_reply(t.mail, "MAIL FROM")?;
            // A refused MAIL is the answer for everyone, even when the
            // replies after it are lost (a 421 closes the connection).
            let stop = |c: &Connection, results, f: &Failure| match mail_reply.is_ok() {
                true => Ok(fill(results, f)),
                false => Err(c.refused(&mail_reply, "MAIL FROM")),
            };
            let mut any = false;
            for &i in &todo {
                match self.read_reply(t.rcpt, "RCPT TO") {
                    Ok(r) => {
                        any |= r.is_ok();
                        results[i] = Some(self.rcpt_result(&r));
                    }
                    Err(f) => return stop(self, results, &f),
                }
            }
            let reply = match self.read_reply(t.data_init, "DATA") {
                Ok(r) => r,
                Err(f) => return stop(self, results, &f),
            };
            if !mail_reply.is_ok() || !any {
                // The server should have refused DATA (RFC 2920 §3.1); if
                // it did not, end the empty message it is waiting for.
                if reply.code == 354 {
                    self.abort_data();
                }
                if !mail_reply.is_ok() {
                    return Err(self.refused(&mail_reply, "MAIL FROM"));
                }
                return Ok(results.into_iter().flatten().collect());
            }
            data_reply = reply;
        } else {
            self.command(mail.as_bytes(), t.mail, "MAIL FROM")?;
            let mail_reply = self.read_reply(t.mail, "MAIL FROM")?;
            if !mail_reply.is_ok() {
                return Err(self.refused(&mail_reply, "MAIL FROM"));
            }
            let mut any = false;
            for &i in &todo {
                let step = self
                    .command(rcpt_line(i).as_bytes(), t.rcpt, "RCPT TO")
                    .and_then(|()| self.read_reply(t.rcpt, "RCPT TO"));
                match step {
                    Ok(r) => {
                        any |= r.is_ok();
                        results[i] = Some(self.rcpt_result(&r));
                    }
                    Err(f) => return Ok(fill(results, &f)),
                }
            }
            if !any {
                return Ok(results.into_iter().flatten().collect());
            }
            let step = self
                .command(b"DATA\r\n", t.data_init, "DATA")
                .and_then(|()| self.read_reply(t.data_init, "DATA"));
            data_reply = match step {
                Ok(r) => r,
                Err(f) => return Ok(fill(results, &f)),
            };
        }
        if data_reply.code != 354 {
            let f = self.refused(&data_reply, "DATA");
            return Ok(fill(results, &f));
        }
        let end = self
            .write_data(&data)
            .and_then(|()| self.read_reply(t.data_end, "end of data"));
        match end {
            Ok(r) if r.is_ok() => {
                self.dirty = false;
                Ok(results
                    .into_iter()
                    .map(|a| a.unwrap_or(Attempt::Delivered))
                    .collect())
            }
            Ok(r) => {
                // The transaction is over by RFC 5321, but not every
                // server agrees (aiosmtpd keeps it after a 500): RSET
                // before the next one.
                let f = self.refused(&r, "end of data");
                Ok(fill(results, &f))
            }
            Err(f) => Ok(fill(results, &f)),
        }
    }

    /// Ends the session: QUIT and its reply (bounded by
    /// [`Timeouts::quit`]), then closes. Errors are of no interest by now.
    pub fn quit(mut self) {
        if self.usable
            && self
                .command(b"QUIT\r\n", self.timeouts.quit, "QUIT")
                .is_ok()
        {
            let _ = self.read_reply(self.timeouts.quit, "QUIT");
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// A permanent `5.4.6` when the server names itself as we do in the
    /// greeting or the EHLO reply: the route leads back to us
    /// (mta-semantics C.3; Postfix checks the same).
    fn check_loop(&mut self, r: &ServerReply, helo_name: &str) -> Result<(), Failure> {
        let first = r.lines.first().map(Vec::as_slice).unwrap_or_default();
        let name = first.split(|&b| b == b' ').next().unwrap_or_default();
        if !helo_name.is_empty() && name.eq_ignore_ascii_case(helo_name.as_bytes()) {
            self.usable = false;
            return Err(self.local(
                Class::Perm,
                (4, 6),
                format!(
                    "mail for {} loops back to myself ({} greets as {helo_name})",
                    self.host, self.peer
                ),
            ));
        }
        Ok(())
    }

    /// RSET after a transaction that stopped midway. A refusal makes the
    /// connection unusable and is temporary whatever its code: it says
    /// nothing about the next message, which may go over a new connection.
    fn rset(&mut self) -> Result<(), Failure> {
        self.command(b"RSET\r\n", self.timeouts.mail, "RSET")?;
        let r = self.read_reply(self.timeouts.mail, "RSET")?;
        if !r.is_ok() {
            self.usable = false;
            return Err(failure(
                Class::Temp,
                (5, 0),
                format!("x-postroom; {} refused RSET: {}", self.peer, r.text()),
                Some(&self.host),
            ));
        }
        self.dirty = false;
        Ok(())
    }

    /// Ends a DATA the server should not have opened with an empty
    /// message; the transaction is then RSET before the next one.
    fn abort_data(&mut self) {
        let t = self.timeouts.data_end;
        if self.command(b".\r\n", t, "end of data").is_ok() {
            let _ = self.read_reply(t, "end of data");
        }
    }

    /// The encoded message in blocks, each bounded by
    /// [`Timeouts::data_block`].
    fn write_data(&mut self, data: &[u8]) -> Result<(), Failure> {
        for block in data.chunks(64 * 1024) {
            self.command(block, self.timeouts.data_block, "the message")?;
        }
        Ok(())
    }

    /// Writes all of `bytes` within `timeout` (a deadline for the whole
    /// write, not per system call, so a server that reads a byte at a time
    /// cannot hold us); a failure makes the connection unusable.
    fn command(&mut self, bytes: &[u8], timeout: Duration, what: &str) -> Result<(), Failure> {
        let deadline = Instant::now() + timeout;
        let mut rest = bytes;
        let doing = || format!("sending {what}");
        let timed_out = || format!("timed out after {}", secs(timeout));
        while !rest.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.broken(&doing(), &timed_out()));
            }
            if let Err(e) = self.stream.set_write_timeout(Some(left)) {
                return Err(self.broken(&doing(), &e.to_string()));
            }
            match self.stream.write(rest) {
                Ok(0) => return Err(self.broken(&doing(), "closed by the server")),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(self.broken(&doing(), &timed_out())),
                Err(e) => return Err(self.broken(&doing(), &e.to_string())),
            }
        }
        Ok(())
    }

    /// Reads one whole reply within `timeout` (a deadline for the reply,
    /// not per read). A `421` marks the connection unusable (the server
    /// closes it); a timeout, a lost connection or garbage too.
    fn read_reply(&mut self, timeout: Duration, what: &str) -> Result<ServerReply, Failure> {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 4096];
        loop {
            match parse_reply(&self.buf) {
                Parse::Reply(r, n) => {
                    self.buf.drain(..n);
                    if r.code == 421 {
                        self.usable = false;
                    }
                    return Ok(r);
                }
                Parse::Garbage(g) => {
                    self.usable = false;
                    return Err(failure(
                        Class::Temp,
                        (5, 0),
                        format!(
                            "x-postroom; garbled reply from {} to {what}: {g}",
                            self.peer
                        ),
                        Some(&self.host),
                    ));
                }
                Parse::Incomplete => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let doing = || format!("waiting for the reply to {what}");
            let timed_out = || format!("timed out after {}", secs(timeout));
            if left.is_zero() {
                return Err(self.broken(&doing(), &timed_out()));
            }
            if let Err(e) = self.stream.set_read_timeout(Some(left)) {
                return Err(self.broken(&doing(), &e.to_string()));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(self.broken(&doing(), "closed by the server")),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(self.broken(&doing(), &timed_out())),
                Err(e) => return Err(self.broken(&doing(), &e.to_string())),
            }
        }
    }

    /// The result of one RCPT reply.
    fn rcpt_result(&self, r: &ServerReply) -> Attempt {
        if r.is_ok() {
            // Provisional: delivered only after the final dot's 2xx.
            return Attempt::Delivered;
        }
        Attempt::Failed(self.refused(r, "RCPT TO"))
    }

    /// The failure a server's reply to `what` means: class from its code,
    /// enhanced code from its text when it gave one that fits, the reply
    /// as an `smtp;` diagnostic. A 2xx/3xx where a failure is due (a 250
    /// greeting, a 354 to MAIL) is a temporary protocol error.
    fn refused(&self, r: &ServerReply, what: &str) -> Failure {
        match r.class() {
            Some(class) => failure(
                class,
                r.enhanced().unwrap_or((0, 0)),
                format!("smtp; {}", r.text()),
                Some(&self.host),
            ),
            None => failure(
                Class::Temp,
                (5, 0),
                format!(
                    "x-postroom; unexpected reply from {} to {what}: {}",
                    self.peer,
                    r.text()
                ),
                Some(&self.host),
            ),
        }
    }

    /// A temporary `4.4.2` for a connection lost (or timed out) while
    /// `doing`.
    fn lost(&self, doing: &str, why: &str) -> Failure {
        failure(
            Class::Temp,
            (4, 2),
            format!(
                "x-postroom; connection to {} lost while {doing}: {why}",
                self.peer
            ),
            Some(&self.host),
        )
    }

    /// [`Connection::lost`], and the connection is unusable from now on.
    fn broken(&mut self, doing: &str, why: &str) -> Failure {
        self.usable = false;
        self.lost(doing, why)
    }

    /// A failure decided here, before the server was asked.
    fn local(&self, class: Class, detail: (u16, u16), why: String) -> Failure {
        failure(
            class,
            detail,
            format!("x-postroom; {why}"),
            Some(&self.host),
        )
    }

    /// `5.6.7` for a non-ASCII address to a server without SMTPUTF8.
    fn no_utf8(&self, whose: &str) -> Failure {
        self.local(
            Class::Perm,
            (6, 7),
            format!(
                "non-ASCII {whose} address and {} does not offer SMTPUTF8",
                self.peer
            ),
        )
    }
}

/// The per-recipient results after the transaction stopped with `f`: a
/// recipient the server refused keeps its refusal; every other one
/// (accepted, or not yet answered) gets `f`, as nothing was delivered.
fn fill(results: Vec<Option<Attempt>>, f: &Failure) -> Vec<Attempt> {
    results
        .into_iter()
        .map(|a| match a {
            Some(Attempt::Failed(x)) => Attempt::Failed(x),
            _ => Attempt::Failed(f.clone()),
        })
        .collect()
}

/// Whether an I/O error is a socket timeout.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A duration as `Ns` (or `N.Ns` under ten seconds), for diagnostics.
fn secs(d: Duration) -> String {
    if d.as_secs() >= 10 || d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, lines: &[&str]) -> ServerReply {
        ServerReply {
            code,
            lines: lines.iter().map(|l| l.as_bytes().to_vec()).collect(),
        }
    }

    #[test]
    fn replies_are_parsed_strictly() {
        // (input, want)
        let cases: Vec<(&[u8], Parse)> = vec![
            (b"250 ok\r\n", Parse::Reply(reply(250, &["ok"]), 8)),
            (b"250\r\n", Parse::Reply(reply(250, &[""]), 5)),
            (b"250 ok\n", Parse::Reply(reply(250, &["ok"]), 7)),
            (
                b"250-a\r\n250-b\r\n250 c\r\nMORE",
                Parse::Reply(reply(250, &["a", "b", "c"]), 21),
            ),
            (b"250-a\r\n250 ", Parse::Incomplete),
            (b"25", Parse::Incomplete),
            (b"", Parse::Incomplete),
            (
                b"250-a\r\n251 b\r\n",
                Parse::Garbage("\"251 b\" (code changed within a reply)".into()),
            ),
            (b"hello there\r\n", Parse::Garbage("\"hello there\"".into())),
            (b"250_x\r\n", Parse::Garbage("\"250_x\"".into())),
            (b"199 low\r\n", Parse::Garbage("\"199 low\"".into())),
            (b"600 high\r\n", Parse::Garbage("\"600 high\"".into())),
            (b"\xff\x00\r\n", Parse::Garbage("\"\\xff\\x00\"".into())),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_reply(input),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long = vec![b'2'; MAX_REPLY_LINE + 1];
        assert!(matches!(parse_reply(&long), Parse::Garbage(_)));
    }

    #[test]
    fn pipelined_replies_come_apart_in_order() {
        // RFC 2920: several replies in one read are taken one at a time.
        let mut buf = b"250 2.1.0 ok\r\n550 5.1.1 no\r\n354 go\r\n".to_vec();
        let mut got = Vec::new();
        while let Parse::Reply(r, n) = parse_reply(&buf) {
            got.push(r.code);
            buf.drain(..n);
        }
        assert_eq!(got, [250, 550, 354]);
        assert!(buf.is_empty());
    }

    #[test]
    fn enhanced_codes_must_agree_with_the_class() {
        // maddy's bug (STYLE.md): a 4xx reply with a 5.x.x code must not
        // become a permanent failure.
        let cases = [
            (reply(550, &["5.1.1 no such user"]), Some((1, 1))),
            (reply(451, &["4.3.0 try later"]), Some((3, 0))),
            (reply(451, &["5.1.1 confused"]), None),
            (reply(550, &["no such user"]), None),
            (reply(550, &["5.1 short"]), None),
        ];
        for (r, want) in cases {
            assert_eq!(r.enhanced(), want, "{r:?}");
        }
        assert_eq!(reply(451, &["x"]).class(), Some(Class::Temp));
        assert_eq!(reply(550, &["x"]).class(), Some(Class::Perm));
        assert_eq!(reply(354, &["x"]).class(), None);
        assert_eq!(
            reply(550, &["5.1.1 a", "b\tc\u{1}"]).text(),
            "550 5.1.1 a b\\x09c\\x01"
        );
    }

    #[test]
    fn data_is_dot_stuffed_with_crlf() {
        // (message, want on the wire)
        let cases: [(&[u8], &[u8]); 8] = [
            (b"", b".\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b"a", b"a\r\n.\r\n"),
            (
                b".\r\n..\r\n.x\r\nx.\r\n",
                b"..\r\n...\r\n..x\r\nx.\r\n.\r\n",
            ),
            (b"a\n.\nb\n", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\r.\rb", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\r\r\nb\r\n", b"a\r\n\r\nb\r\n.\r\n"),
            (b"8bit \xe9\r\n", b"8bit \xe9\r\n.\r\n"),
        ];
        for (msg, want) in cases {
            let got = encode_data(msg);
            assert_eq!(
                got,
                want,
                "{:?} -> {:?}",
                String::from_utf8_lossy(msg),
                String::from_utf8_lossy(&got)
            );
        }
    }

    #[test]
    fn size_counts_crlf_but_not_stuffing() {
        // RFC 1870 §3: CRLF pairs count, stuffed dots and `.CRLF` do not.
        let cases: [(&[u8], usize); 4] =
            [(b"a\r\n", 3), (b"a\n", 3), (b".\r\n..\r\n", 7), (b"", 0)];
        for (msg, want) in cases {
            let (data, stuffed) = encode(msg);
            assert_eq!(data.len() - stuffed - 3, want, "{msg:?}");
        }
    }

    #[test]
    fn ehlo_capabilities() {
        let r = reply(
            250,
            &[
                "mx.test hi",
                "PIPELINING",
                "size 1000",
                "8BITMIME",
                "SMTPUTF8",
                "DSN",
            ],
        );
        let got = Capabilities::from_ehlo(&r);
        let want = Capabilities {
            esmtp: true,
            pipelining: true,
            size: Some(1000),
            eight_bit_mime: true,
            smtputf8: true,
        };
        assert_eq!(got, want);
        let got = Capabilities::from_ehlo(&reply(250, &["mx.test", "SIZE"]));
        assert_eq!((got.size, got.pipelining), (Some(0), false));
    }

    #[test]
    fn envelope_params() {
        let got = OutParams::from_envelope("BODY=8BITMIME SMTPUTF8");
        assert_eq!(
            got,
            OutParams {
                body_8bitmime: true,
                smtputf8: true
            }
        );
        assert_eq!(OutParams::from_envelope("body=7bit"), OutParams::default());
    }

    #[test]
    fn fill_keeps_refusals() {
        let refused = failure(Class::Perm, (1, 1), "smtp; 550".into(), None);
        let lost = failure(Class::Temp, (4, 2), "x-postroom; lost".into(), None);
        let got = fill(
            vec![
                Some(Attempt::Delivered),
                Some(Attempt::Failed(refused.clone())),
                None,
            ],
            &lost,
        );
        let want = [
            Attempt::Failed(lost.clone()),
            Attempt::Failed(refused),
            Attempt::Failed(lost),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn timeouts_default_to_rfc_5321() {
        let t = Timeouts::default();
        let min = |m: u64| Duration::from_secs(60 * m);
        assert_eq!(
            (
                t.greeting,
                t.mail,
                t.rcpt,
                t.data_init,
                t.data_block,
                t.data_end
            ),
            (min(5), min(5), min(5), min(2), min(3), min(10))
        );
        assert_eq!(secs(Duration::from_millis(1500)), "1.5s");
        assert_eq!(secs(Duration::from_secs(300)), "300s");
    }
}
