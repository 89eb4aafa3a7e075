//! One SMTP server session as a state machine, sans I/O.
//!
//! Owns the command grammar and the order of commands (mta-semantics B.1),
//! the EHLO keywords (B.2), the replies by situation (B.3), address
//! policy that needs no tables (B.4, A.4 rules 1–5) and the limits (B.5).
//! Bytes go in through [`Session::feed`], in chunks of any size, and
//! [`Reply`]s come out in order, one per command (PIPELINING, RFC 2920:
//! nothing here waits for a flush). Everything that needs tables or disk
//! (is this user known, may we relay there, queue the message) is asked
//! of a [`Host`]. This module never opens a socket or a file and never
//! reads a clock: timeouts, the soft error delay and TLS belong to the
//! server around it.
//!
//! Room for later: STARTTLS and AUTH are parsed as commands and answered
//! `502 5.5.1`; offering them means adding a keyword in the EHLO reply and a
//! state field here, and for STARTTLS a reply the server sees as "switch
//! the stream now" (the line reader must then be empty, RFC 3207 §4.2).

use crate::route;

use super::address::{
    AddressError, Domain, ForwardPath, ReversePath, parse_forward_path, parse_reverse_path,
};
use super::proto::{BareNewline, DataEnd, DataReceiver, Ending, Line, LineReader};
use super::reply::Reply;

/// Limits and policies of a session.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our fully qualified host name: first word of the greeting.
    pub hostname: String,
    /// Longest command line, CRLF included (mta-semantics B.5: accept 2048).
    pub max_line: usize,
    /// Largest message in octets (the SIZE keyword; B.5 suggests 25 MB).
    pub max_message: u64,
    /// Largest header section in octets (B.5: 256 kB, refused, never cut).
    pub max_header: u64,
    /// Most accepted recipients per transaction (at least 100, RFC 5321
    /// §4.5.3.1.8).
    pub max_recipients: usize,
    /// Errors after which the next command gets `421` and the session ends
    /// (B.5: 20, as Postfix's hard limit).
    pub max_errors: u32,
    /// Most `Received:` fields, ours included, before a message is refused
    /// as looping (B.7: 100).
    pub max_hops: usize,
    /// What to do with bare LF / bare CR (module docs of [`super::proto`]).
    pub bare_newline: BareNewline,
    /// Refuse (`554 5.5.0`, then close) a client that sends more after
    /// EHLO, HELO or DATA in the same [`Session::feed`] call, i.e. without
    /// waiting for the reply (mta-semantics B.2, Postfix
    /// `smtpd_forbid_unauth_pipelining`). Only meaningful when the server
    /// feeds everything it has read at once; off by default, since RFC
    /// 2920 clients may legally start a group with message content.
    pub sync_check: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            hostname: "localhost".to_string(),
            max_line: 2048,
            max_message: 25 * 1024 * 1024,
            max_header: 256 * 1024,
            max_recipients: 1000,
            max_errors: 20,
            max_hops: 100,
            bare_newline: BareNewline::Reject,
            sync_check: false,
        }
    }
}

impl Config {
    /// Every way this config breaks RFC 5321's minimums, one lowercase
    /// message each (empty when it is fine), so a settings loader can
    /// report them all before refusing to start.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.hostname.is_empty() || self.hostname.contains(|c: char| !c.is_ascii_graphic()) {
            problems.push(format!(
                "smtp hostname `{}` is not a host name",
                self.hostname
            ));
        }
        // RFC 5321 §4.5.3.1.4 and §4.5.3.1.8.
        if self.max_line < 512 {
            problems.push(format!("smtp max_line {} is below 512", self.max_line));
        }
        if self.max_recipients < 100 {
            problems.push(format!(
                "smtp max_recipients {} is below 100",
                self.max_recipients
            ));
        }
        if self.max_message == 0 || self.max_header == 0 || self.max_errors == 0 {
            problems.push("smtp limits must not be 0".to_string());
        }
        problems
    }
}

/// The BODY parameter of MAIL (RFC 6152).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// The parameters given on MAIL FROM.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=n`: the client's estimate of the size (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=`.
    pub body: Option<Body>,
    /// `SMTPUTF8`: UTF-8 allowed in addresses and header (RFC 6531).
    pub smtputf8: bool,
}

/// One mail transaction as far as it got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The EHLO/HELO argument, as given (printable ASCII).
    pub helo: String,
    /// Whether the client said EHLO (for `with ESMTP` in `Received:`).
    pub esmtp: bool,
    /// The sender.
    pub from: ReversePath,
    /// The MAIL parameters.
    pub params: MailParams,
    /// The accepted recipients, in order.
    pub rcpts: Vec<ForwardPath>,
    /// How many `Received:` fields the message came with (counted at the
    /// end of DATA for the hop limit; 0 before).
    pub received: usize,
}

/// The host's answer to one RCPT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptVerdict {
    /// Take the recipient (`250 2.1.5 Ok`).
    Accept,
    /// Refuse it with this reply.
    Refuse(Reply),
}

impl RcptVerdict {
    /// `550 5.1.1 <a>: Recipient address rejected: User unknown`
    /// (mta-semantics B.3, A.4 rule 6).
    pub fn unknown_user(to: &ForwardPath) -> RcptVerdict {
        let about = format!("{to}: Recipient address rejected");
        RcptVerdict::Refuse(route::reply::user_unknown().about(&about))
    }

    /// `554 5.7.1 <a>: Relay access denied` (mta-semantics B.3, A.4 rule
    /// 8: never a 4xx, which would invite retries).
    pub fn relay_denied(to: &ForwardPath) -> RcptVerdict {
        RcptVerdict::Refuse(relay_denied(to))
    }
}

fn relay_denied(to: &ForwardPath) -> Reply {
    route::reply::relay_denied().about(&to.to_string())
}

/// What a session asks of the rest of the server: routing tables and the
/// queue. Each method is called at most once per command.
pub trait Host {
    /// Policy for a sender; the default takes every sender.
    fn mail(&mut self, from: &ReversePath, params: &MailParams) -> Result<(), Reply> {
        let _ = (from, params);
        Ok(())
    }

    /// Whether to take one recipient. The session has already refused bad
    /// syntax, routing disguises and address literals; `envelope` holds
    /// the recipients accepted so far.
    fn rcpt(&mut self, to: &ForwardPath, envelope: &Envelope) -> RcptVerdict;

    /// Takes a whole message (CRLF line ends, dot-stuffing undone) for
    /// the envelope. Must answer `250` only once the message is safe on
    /// disk (mta-semantics B.8), else a 4xx.
    fn data_end(&mut self, envelope: &Envelope, message: &[u8]) -> Reply;
}

/// Where the session is.
#[derive(Debug)]
enum Mode {
    /// Reading command lines.
    Command,
    /// Reading a message after `354`.
    Data(Box<DataReceiver>),
    /// A closing reply was given; input is ignored.
    Closed,
}

/// One SMTP server session.
pub struct Session<H: Host> {
    config: Config,
    host: H,
    lines: LineReader,
    mode: Mode,
    /// `(helo, esmtp)` once EHLO/HELO was accepted.
    helo: Option<(String, bool)>,
    tx: Option<Envelope>,
    /// RCPT commands given in this transaction, accepted or not.
    rcpt_tries: usize,
    errors: u32,
}

impl<H: Host> Session<H> {
    /// A new session; send [`Session::greeting`] first.
    pub fn new(config: Config, host: H) -> Session<H> {
        let lines = LineReader::new(config.max_line);
        Session {
            config,
            host,
            lines,
            mode: Mode::Command,
            helo: None,
            tx: None,
            rcpt_tries: 0,
            errors: 0,
        }
    }

    /// `220 <fqdn> ESMTP`.
    pub fn greeting(&self) -> Reply {
        Reply::plain(220, &format!("{} ESMTP", self.config.hostname))
    }

    /// `421 4.3.2 <fqdn> Service not available, closing transmission
    /// channel`, for the server to send on shutdown or timeout; ends the
    /// session and drops any transaction.
    pub fn shutdown(&mut self) -> Reply {
        self.close();
        let text = format!(
            "{} Service not available, closing transmission channel",
            self.config.hostname
        );
        Reply::temp(421, (3, 2), &text).closing()
    }

    /// The client went away: drop the transaction and any partial
    /// message (mta-semantics B.6: nothing is queued without the final dot).
    pub fn eof(&mut self) {
        self.close();
    }

    fn close(&mut self) {
        self.mode = Mode::Closed;
        self.tx = None;
    }

    /// Whether the session is over (the server closes the connection).
    pub fn is_closed(&self) -> bool {
        matches!(self.mode, Mode::Closed)
    }

    /// Whether a message is being read (after `354`).
    pub fn in_data(&self) -> bool {
        matches!(self.mode, Mode::Data(_))
    }

    /// Errors so far; the server may slow down its replies once this
    /// passes a soft limit (mta-semantics B.5: 10).
    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// The host.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The host, mutably.
    pub fn host_mut(&mut self) -> &mut H {
        &mut self.host
    }

    /// Takes the next bytes from the client and returns the replies due,
    /// in order. After a closing reply the rest of the input is ignored.
    pub fn feed(&mut self, mut input: &[u8]) -> Vec<Reply> {
        let mut out = Vec::new();
        while !input.is_empty() {
            match &mut self.mode {
                Mode::Closed => break,
                Mode::Data(rx) => {
                    if let Some(end) = rx.feed(&mut input) {
                        self.mode = Mode::Command;
                        let reply = self.data_end(end);
                        out.push(self.finish(reply));
                    }
                }
                Mode::Command => {
                    if let Some(line) = self.lines.next(&mut input) {
                        let reply =
                            if self.config.sync_check && !input.is_empty() && must_end_group(&line)
                            {
                                // mta-semantics B.2: the client did not wait
                                // for the reply to EHLO/HELO/DATA.
                                Reply::perm(554, (5, 0), "Error: SMTP protocol synchronization")
                                    .closing()
                            } else {
                                self.command(line)
                            };
                        out.push(self.finish(reply));
                    }
                }
            }
        }
        out
    }

    /// Counts failures towards the error limit and ends the session after
    /// a closing reply. A full recipient list is not the client's error:
    /// it is told to send the rest later.
    fn finish(&mut self, reply: Reply) -> Reply {
        if reply.closes() {
            self.close();
        }
        let too_many = reply.code() == 452 && reply.enhanced().as_deref() == Some("4.5.3");
        if reply.class().is_some() && !too_many {
            self.errors += 1;
        }
        reply
    }

    fn command(&mut self, line: Line) -> Reply {
        if self.errors >= self.config.max_errors {
            // mta-semantics B.3: the command after the last allowed error.
            let text = format!("{} Error: too many errors", self.config.hostname);
            return Reply::temp(421, (7, 0), &text).closing();
        }
        let (bytes, ending) = match line {
            Line::TooLong => return Reply::perm(500, (5, 2), "Error: line too long"),
            Line::Complete(bytes, ending) => (bytes, ending),
        };
        if ending == Ending::BareLf && self.config.bare_newline == BareNewline::Reject {
            return Reply::perm(500, (5, 2), "Error: bare <LF> received");
        }
        // mta-semantics B.6: NUL, bare CR and other controls (TAB too:
        // RFC 5321 separates with SP only) make the whole line bad; no
        // C-string truncation.
        if bytes.iter().any(|&b| b < b' ' || b == 0x7f) {
            return Reply::perm(501, (5, 2), "Error: invalid character in command");
        }
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return Reply::perm(501, (5, 2), "Error: invalid character in command");
        };
        let (verb, arg) = match text.split_once(' ') {
            Some((v, a)) => (v, Some(a)),
            None => (text, None),
        };
        // mta-semantics B.1: header lines and HTTP requests are not SMTP
        // clients (Postfix smtpd_forbidden_commands); hang up on them.
        let forbidden = ["GET", "POST", "CONNECT", "HEAD", "PUT"];
        if (verb.ends_with(':') && verb.len() > 1)
            || (arg.is_some() && forbidden.iter().any(|f| verb.eq_ignore_ascii_case(f)))
        {
            return Reply::ok(221, (7, 0), "Error: this is an SMTP server, goodbye").closing();
        }
        let upper = verb.to_ascii_uppercase();
        if !text.is_ascii() && upper != "MAIL" && upper != "RCPT" {
            return Reply::perm(500, (5, 2), "Error: non-ASCII character in command");
        }
        match upper.as_str() {
            "EHLO" => self.helo(arg, true),
            "HELO" => self.helo(arg, false),
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "DATA" => self.data(arg),
            "RSET" => match arg {
                Some(_) => Reply::perm(501, (5, 4), "Syntax: RSET"),
                None => {
                    self.reset();
                    Reply::ok(250, (0, 0), "Ok")
                }
            },
            "NOOP" => Reply::ok(250, (0, 0), "Ok"),
            "QUIT" => Reply::ok(221, (0, 0), "Bye").closing(),
            "HELP" => Reply::ok(
                214,
                (0, 0),
                "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
            ),
            // RFC 5321 §7.3: a server that does not verify answers 252.
            "VRFY" => match arg {
                Some(a) if !a.trim().is_empty() => Reply::ok(
                    252,
                    (5, 2),
                    "Cannot VRFY user, but will accept message and attempt delivery",
                ),
                _ => Reply::perm(501, (5, 4), "Syntax: VRFY address"),
            },
            // Never list members of an alias (mta-semantics B.1).
            "EXPN" | "STARTTLS" | "AUTH" | "ETRN" | "BDAT" | "TURN" | "ATRN" => {
                Reply::perm(502, (5, 1), "Error: command not implemented")
            }
            _ => Reply::perm(500, (5, 2), "Error: command not recognized"),
        }
    }

    fn reset(&mut self) {
        self.tx = None;
        self.rcpt_tries = 0;
    }

    fn helo(&mut self, arg: Option<&str>, esmtp: bool) -> Reply {
        // The first word only: it goes into Received: later (B.7).
        let name = arg.and_then(|a| a.split(' ').find(|w| !w.is_empty()));
        let name = name.unwrap_or("");
        if name.is_empty() {
            let verb = if esmtp { "EHLO" } else { "HELO" };
            return Reply::perm(501, (5, 4), &format!("Syntax: {verb} hostname"));
        }
        self.reset();
        self.helo = Some((name.to_string(), esmtp));
        let host = &self.config.hostname;
        if !esmtp {
            return Reply::plain(250, host);
        }
        Reply::plain(250, &format!("{host} greets {name}"))
            .with_line("PIPELINING")
            .with_line(&format!("SIZE {}", self.config.max_message))
            .with_line("8BITMIME")
            .with_line("ENHANCEDSTATUSCODES")
            .with_line("SMTPUTF8")
    }

    /// The argument after `FROM:`/`TO:`, tolerating one space after the
    /// colon (a common client bug, mta-semantics B.1) and trailing blanks.
    fn path_arg<'a>(arg: Option<&'a str>, keyword: &str) -> Option<&'a str> {
        let arg = arg?;
        let head = arg.get(..keyword.len())?;
        if !head.eq_ignore_ascii_case(keyword) {
            return None;
        }
        let rest = &arg[keyword.len()..];
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        Some(rest.trim_end_matches(' '))
    }

    fn mail(&mut self, arg: Option<&str>) -> Reply {
        let Some((helo, esmtp)) = self.helo.clone() else {
            return Reply::perm(503, (5, 1), "Error: send HELO/EHLO first");
        };
        if self.tx.is_some() {
            return Reply::perm(503, (5, 1), "Error: nested MAIL command");
        }
        let Some(arg) = Self::path_arg(arg, "FROM:") else {
            return Reply::perm(501, (5, 4), "Syntax: MAIL FROM:<address>");
        };
        let (from, rest) = match parse_reverse_path(arg, true) {
            Ok(p) => p,
            Err(e) => return bad_address(e, false),
        };
        let params = match self.mail_params(rest) {
            Ok(p) => p,
            Err(r) => return r,
        };
        // RFC 6531 §3.4: a non-ASCII address needs the SMTPUTF8 parameter.
        if let ReversePath::Mailbox(m) = &from
            && !params.smtputf8
            && !m.is_ascii()
        {
            return non_ascii();
        }
        if let Err(r) = self.host.mail(&from, &params) {
            return r;
        }
        self.tx = Some(Envelope {
            helo,
            esmtp,
            from,
            params,
            rcpts: Vec::new(),
            received: 0,
        });
        self.rcpt_tries = 0;
        Reply::ok(250, (1, 0), "Ok")
    }

    /// The ESMTP parameters of MAIL (RFC 5321 §4.1.2 `Mail-parameters`).
    fn mail_params(&self, rest: &str) -> Result<MailParams, Reply> {
        let mut p = MailParams::default();
        let mut seen: Vec<String> = Vec::new();
        for word in rest.split(' ').filter(|w| !w.is_empty()) {
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (word, None),
            };
            if !esmtp_keyword(key) || value.is_some_and(|v| !esmtp_value(v)) {
                return Err(Reply::perm(501, (5, 5), "Error: bad MAIL parameter syntax"));
            }
            let upper = key.to_ascii_uppercase();
            if seen.contains(&upper) {
                return Err(Reply::perm(501, (5, 4), "Error: duplicate MAIL parameter"));
            }
            seen.push(upper.clone());
            match (upper.as_str(), value) {
                ("SIZE", Some(v)) if v.bytes().all(|b| b.is_ascii_digit()) => {
                    // Too many digits for u64 is certainly too big.
                    let n = v.parse::<u64>().unwrap_or(u64::MAX);
                    if n > self.config.max_message {
                        return Err(Reply::perm(552, (3, 4), "Message size exceeds fixed limit"));
                    }
                    p.size = Some(n);
                }
                ("SIZE", _) => return Err(Reply::perm(501, (5, 4), "Syntax: SIZE=<number>")),
                ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => {
                    p.body = Some(Body::SevenBit)
                }
                ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => {
                    p.body = Some(Body::EightBitMime)
                }
                ("BODY", _) => {
                    return Err(Reply::perm(501, (5, 4), "Syntax: BODY=7BIT|8BITMIME"));
                }
                ("SMTPUTF8", None) => p.smtputf8 = true,
                ("SMTPUTF8", Some(_)) => {
                    return Err(Reply::perm(501, (5, 4), "Syntax: SMTPUTF8 takes no value"));
                }
                _ => return Err(unsupported(key)),
            }
        }
        Ok(p)
    }

    fn rcpt(&mut self, arg: Option<&str>) -> Reply {
        let Some(tx) = self.tx.as_mut() else {
            return Reply::perm(503, (5, 1), "Error: need MAIL command");
        };
        let Some(arg) = Self::path_arg(arg, "TO:") else {
            return Reply::perm(501, (5, 4), "Syntax: RCPT TO:<address>");
        };
        self.rcpt_tries += 1;
        if tx.rcpts.len() >= self.config.max_recipients {
            return Reply::temp(452, (5, 3), "Error: too many recipients");
        }
        let (to, rest) = match parse_forward_path(arg, true) {
            Ok(p) => p,
            Err(e) => return bad_address(e, true),
        };
        if !tx.params.smtputf8 && to.mailbox().is_some_and(|m| !m.is_ascii()) {
            return non_ascii();
        }
        // No RCPT parameters are offered (no DSN yet).
        if let Some(word) = rest.split(' ').find(|w| !w.is_empty()) {
            return unsupported(word.split('=').next().unwrap_or(word));
        }
        if let Some(m) = to.mailbox() {
            // mta-semantics A.4 rule 5 and F.2: routing through the local
            // part is never honoured from SMTP. Refused here for every
            // domain so that no host can forget it; for a foreign domain
            // this gives 550 5.7.1 where rule 8 would give 554 5.7.1.
            if m.disguise().is_some() {
                let text = format!("{to}: Recipient address rejected: Access denied");
                return Reply::perm(550, (7, 1), &text);
            }
            // mta-semantics A.2: address literals are never local.
            if matches!(m.domain(), Domain::Literal(_)) {
                return relay_denied(&to);
            }
        }
        match self.host.rcpt(&to, tx) {
            RcptVerdict::Accept => {
                tx.rcpts.push(to);
                Reply::ok(250, (1, 5), "Ok")
            }
            RcptVerdict::Refuse(r) => r,
        }
    }

    fn data(&mut self, arg: Option<&str>) -> Reply {
        if arg.is_some_and(|a| !a.trim().is_empty()) {
            return Reply::perm(501, (5, 4), "Syntax: DATA");
        }
        let Some(tx) = &self.tx else {
            return Reply::perm(503, (5, 1), "Error: need MAIL command");
        };
        if tx.rcpts.is_empty() {
            if self.rcpt_tries == 0 {
                return Reply::perm(503, (5, 1), "Error: need RCPT command");
            }
            return Reply::perm(554, (5, 1), "Error: no valid recipients");
        }
        let c = &self.config;
        let rx = DataReceiver::new(c.max_message, c.max_header, c.bare_newline);
        self.mode = Mode::Data(Box::new(rx));
        Reply::plain(354, "End data with <CR><LF>.<CR><LF>")
    }

    fn data_end(&mut self, end: DataEnd) -> Reply {
        let mut tx = self
            .tx
            .take()
            .expect("DATA is only entered with a transaction");
        self.rcpt_tries = 0;
        match end {
            DataEnd::TooBig => Reply::perm(552, (3, 4), "Error: message file too big"),
            DataEnd::HeaderTooBig => Reply::perm(552, (3, 4), "Error: header too large"),
            DataEnd::BareLf => Reply::perm(550, (5, 2), "Error: bare <LF> received"),
            DataEnd::BareCr => Reply::perm(550, (5, 2), "Error: bare <CR> received"),
            DataEnd::Message(m) => {
                // mta-semantics B.7: refuse at end of DATA, counting the
                // Received: field we are about to add.
                tx.received = received_count(&m);
                if tx.received + 1 > self.config.max_hops {
                    return Reply::perm(554, (4, 6), "Error: too many hops");
                }
                let reply = self.host.data_end(&tx, &m);
                if reply.class().is_none() {
                    // The error limit is for clients that deliver nothing.
                    self.errors = 0;
                }
                reply
            }
        }
    }
}

/// Whether the line is EHLO, HELO or DATA: commands after which a
/// pipelining client must wait for the reply (RFC 2920 §3.1).
fn must_end_group(line: &Line) -> bool {
    let Line::Complete(bytes, _) = line else {
        return false;
    };
    let verb = bytes.split(|&b| b == b' ').next().unwrap_or(&[]);
    [&b"EHLO"[..], b"HELO", b"DATA"]
        .iter()
        .any(|v| verb.eq_ignore_ascii_case(v))
}

fn bad_address(e: AddressError, rcpt: bool) -> Reply {
    // The reason is for the log; the reply stays generic.
    let _ = e;
    if rcpt {
        Reply::perm(501, (1, 3), "Error: bad recipient address syntax")
    } else {
        Reply::perm(501, (1, 7), "Error: bad sender address syntax")
    }
}

fn non_ascii() -> Reply {
    Reply::perm(553, (6, 7), "Error: non-ASCII address needs SMTPUTF8")
}

/// RFC 5321 §4.1.1.11: `555 5.5.4` for a parameter we do not offer.
fn unsupported(key: &str) -> Reply {
    Reply::perm(555, (5, 4), &format!("Unsupported option: {key}"))
}

/// `esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")`.
fn esmtp_keyword(k: &str) -> bool {
    k.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `esmtp-value = 1*(%d33-60 / %d62-126)`.
fn esmtp_value(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| (33..=126).contains(&b) && b != b'=')
}

/// `Received:` fields in the header section of a CRLF message.
fn received_count(m: &[u8]) -> usize {
    let mut n = 0;
    for line in m.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.len() >= 8 && line[..8].eq_ignore_ascii_case(b"received") {
            let rest = &line[8..];
            let colon = rest.iter().position(|&b| b != b' ' && b != b'\t');
            if colon.is_some_and(|i| rest[i] == b':') {
                n += 1;
            }
        }
    }
    n
}

/// A [`Host`] held in memory, for tests: fixed local domains, users and
/// relay domains, and a list standing in for the queue.
#[derive(Clone, Debug, Default)]
pub struct MemoryHost {
    /// Local domains, lower case.
    pub local_domains: Vec<String>,
    /// Known local parts (lower case), valid in every local domain.
    pub users: Vec<String>,
    /// Relay domains, lower case; subdomains match too (mta-semantics A.3).
    pub relay_domains: Vec<String>,
    /// When set, `data_end` answers this instead of queueing.
    pub refuse_data: Option<Reply>,
    /// The messages "queued", in order.
    pub queued: Vec<(Envelope, Vec<u8>)>,
}

impl MemoryHost {
    /// Local domain `example.test` with users `alice` and `bob`, relay
    /// domain `relay.test`.
    pub fn example() -> MemoryHost {
        MemoryHost {
            local_domains: vec!["example.test".into()],
            users: vec!["alice".into(), "bob".into()],
            relay_domains: vec!["relay.test".into()],
            ..MemoryHost::default()
        }
    }
}

impl Host for MemoryHost {
    fn rcpt(&mut self, to: &ForwardPath, _envelope: &Envelope) -> RcptVerdict {
        let Some(m) = to.mailbox() else {
            return RcptVerdict::Accept;
        };
        let Domain::Name(d) = m.domain() else {
            return RcptVerdict::relay_denied(to);
        };
        if self.local_domains.contains(d) {
            if self.users.contains(&m.local().to_ascii_lowercase()) {
                RcptVerdict::Accept
            } else {
                RcptVerdict::unknown_user(to)
            }
        } else if self
            .relay_domains
            .iter()
            .any(|r| d == r || d.ends_with(&format!(".{r}")))
        {
            RcptVerdict::Accept
        } else {
            RcptVerdict::relay_denied(to)
        }
    }

    fn data_end(&mut self, envelope: &Envelope, message: &[u8]) -> Reply {
        if let Some(r) = &self.refuse_data {
            return r.clone();
        }
        self.queued.push((envelope.clone(), message.to_vec()));
        Reply::ok(250, (0, 0), &format!("Ok: queued as {}", self.queued.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_fields_are_counted_in_the_header_only() {
        let m = b"Received: a\r\nRECEIVED : b\r\nX-Received: c\r\n\r\nReceived: body\r\n";
        assert_eq!(received_count(m), 2);
    }

    fn config() -> Config {
        Config {
            hostname: "mx.example.test".into(),
            ..Config::default()
        }
    }

    fn feed_chunks(config: &Config, input: &[u8], cuts: &[usize]) -> (Vec<String>, MemoryHost) {
        let mut s = Session::new(config.clone(), MemoryHost::example());
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(input.len());
        let mut out = Vec::new();
        for w in bounds.windows(2) {
            out.extend(s.feed(&input[w[0]..w[1]]).iter().map(|r| r.to_string()));
        }
        (out, s.host().clone())
    }

    /// Runs `input` whole, cut in two at every position and one byte at a
    /// time; all must give the same replies and the same queue.
    fn run_with(config: &Config, input: &[u8]) -> (Vec<String>, MemoryHost) {
        let (want, host) = feed_chunks(config, input, &[]);
        for cut in 0..=input.len() {
            let (got, h) = feed_chunks(config, input, &[cut]);
            assert_eq!(got, want, "cut at {cut}");
            assert_eq!(h.queued, host.queued, "cut at {cut}");
        }
        let all: Vec<usize> = (1..input.len()).collect();
        let (got, h) = feed_chunks(config, input, &all);
        assert_eq!(got, want, "one byte at a time");
        assert_eq!(h.queued, host.queued, "one byte at a time");
        (want, host)
    }

    fn run(input: &str) -> (Vec<String>, MemoryHost) {
        run_with(&config(), input.as_bytes())
    }

    /// The first line of each reply, for short assertions.
    fn heads(replies: &[String]) -> Vec<&str> {
        replies.iter().map(|r| r.lines().last().unwrap()).collect()
    }

    #[test]
    fn config_check() {
        assert!(Config::default().check().is_empty());
        let c = Config {
            hostname: "mx example".into(),
            max_line: 100,
            max_recipients: 10,
            ..Config::default()
        };
        let got = c.check();
        let want = [
            "smtp hostname `mx example` is not a host name",
            "smtp max_line 100 is below 512",
            "smtp max_recipients 10 is below 100",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn pipelined_transaction() {
        let (got, host) = run(concat!(
            "EHLO client.test\r\nMAIL FROM:<s@client.test> SIZE=100 BODY=8BITMIME\r\n",
            "RCPT TO:<alice@example.test>\r\nRCPT TO:<x@sub.relay.test>\r\nDATA\r\n",
            "Subject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n",
        ));
        let want = [
            "250-mx.example.test greets client.test\n250-PIPELINING\n250-SIZE 26214400\n250-8BITMIME\n250-ENHANCEDSTATUSCODES\n250 SMTPUTF8",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as 1",
            "221 2.0.0 Bye",
        ];
        assert_eq!(got, want);
        let (env, msg) = &host.queued[0];
        assert_eq!(msg, b"Subject: hi\r\n\r\n.dot\r\n");
        assert_eq!(env.from.to_string(), "<s@client.test>");
        assert_eq!(env.params.size, Some(100));
        assert_eq!(env.params.body, Some(Body::EightBitMime));
        assert!(env.esmtp);
        let rcpts: Vec<String> = env.rcpts.iter().map(|r| r.to_string()).collect();
        assert_eq!(rcpts, ["<alice@example.test>", "<x@sub.relay.test>"]);
    }

    #[test]
    fn bad_sequences() {
        let (got, _) = run(concat!(
            "MAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n",
            "HELO c\r\nMAIL FROM:<a@b.test>\r\nMAIL FROM:<a@b.test>\r\nDATA\r\n",
            "RCPT TO:<nobody@example.test>\r\nDATA\r\nRSET\r\n",
            "RCPT TO:<alice@example.test>\r\n",
        ));
        let want = [
            "503 5.5.1 Error: send HELO/EHLO first",
            "503 5.5.1 Error: need MAIL command",
            "503 5.5.1 Error: need MAIL command",
            "250 mx.example.test",
            "250 2.1.0 Ok",
            "503 5.5.1 Error: nested MAIL command",
            "503 5.5.1 Error: need RCPT command",
            "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown",
            "554 5.5.1 Error: no valid recipients",
            "250 2.0.0 Ok",
            "503 5.5.1 Error: need MAIL command",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn ehlo_resets_the_transaction() {
        let (got, _) = run("EHLO a\r\nMAIL FROM:<>\r\nEHLO b\r\nRCPT TO:<alice@example.test>\r\n");
        assert_eq!(heads(&got)[3], "503 5.5.1 Error: need MAIL command");
        let (_, host) =
            run("EHLO  a.test b c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n.\r\n");
        assert_eq!(host.queued[0].0.helo, "a.test");
    }

    #[test]
    fn other_commands() {
        let (got, _) = run(concat!(
            "NOOP\r\nNOOP whatever\r\nnoop\r\nVRFY alice\r\nVRFY\r\nEXPN list\r\nHELP\r\n",
            "STARTTLS\r\nAUTH PLAIN\r\nBDAT 10 LAST\r\nFOO\r\nNOOPX\r\nEHLO\r\nHELO\r\n",
            "RSET x\r\nDATA x\r\n",
        ));
        let want = [
            "250 2.0.0 Ok",
            "250 2.0.0 Ok",
            "250 2.0.0 Ok",
            "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery",
            "501 5.5.4 Syntax: VRFY address",
            "502 5.5.1 Error: command not implemented",
            "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
            "502 5.5.1 Error: command not implemented",
            "502 5.5.1 Error: command not implemented",
            "502 5.5.1 Error: command not implemented",
            "500 5.5.2 Error: command not recognized",
            "500 5.5.2 Error: command not recognized",
            "501 5.5.4 Syntax: EHLO hostname",
            "501 5.5.4 Syntax: HELO hostname",
            "501 5.5.4 Syntax: RSET",
            "501 5.5.4 Syntax: DATA",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn mail_and_rcpt_syntax() {
        let cases: &[(&str, &str)] = &[
            ("MAIL FROM:<a@b.test>", "250 2.1.0 Ok"),
            ("mail from: <a@b.test>", "250 2.1.0 Ok"),
            ("MAIL FROM:a@b.test", "250 2.1.0 Ok"),
            ("MAIL FROM:<>", "250 2.1.0 Ok"),
            ("MAIL FROM:<a@b.test> ", "250 2.1.0 Ok"),
            ("MAIL FROM:<a@b.test> SMTPUTF8", "250 2.1.0 Ok"),
            ("MAIL FROM:<a@b.test> BODY=7bit", "250 2.1.0 Ok"),
            ("MAIL FROM:<a@b.test> SIZE=26214400", "250 2.1.0 Ok"),
            ("MAIL FROM:<jö@b.test> SMTPUTF8", "250 2.1.0 Ok"),
            (
                "MAIL FROM:<jö@b.test>",
                "553 5.6.7 Error: non-ASCII address needs SMTPUTF8",
            ),
            (
                "MAIL FROM:<a@b.test> SIZE=26214401",
                "552 5.3.4 Message size exceeds fixed limit",
            ),
            (
                "MAIL FROM:<a@b.test> SIZE=99999999999999999999999",
                "552 5.3.4 Message size exceeds fixed limit",
            ),
            (
                "MAIL FROM:<a@b.test> SIZE=ten",
                "501 5.5.4 Syntax: SIZE=<number>",
            ),
            (
                "MAIL FROM:<a@b.test> SIZE",
                "501 5.5.4 Syntax: SIZE=<number>",
            ),
            (
                "MAIL FROM:<a@b.test> BODY=BINARYMIME",
                "501 5.5.4 Syntax: BODY=7BIT|8BITMIME",
            ),
            (
                "MAIL FROM:<a@b.test> SMTPUTF8=yes",
                "501 5.5.4 Syntax: SMTPUTF8 takes no value",
            ),
            (
                "MAIL FROM:<a@b.test> SIZE=1 SIZE=2",
                "501 5.5.4 Error: duplicate MAIL parameter",
            ),
            (
                "MAIL FROM:<a@b.test> RET=FULL",
                "555 5.5.4 Unsupported option: RET",
            ),
            (
                "MAIL FROM:<a@b.test> =x",
                "501 5.5.5 Error: bad MAIL parameter syntax",
            ),
            (
                "MAIL FROM:<a@b@c.test>",
                "501 5.1.7 Error: bad sender address syntax",
            ),
            (
                "MAIL FROM:<<x@y.test>>",
                "501 5.1.7 Error: bad sender address syntax",
            ),
            ("MAIL FROM:", "501 5.1.7 Error: bad sender address syntax"),
            (
                "MAIL FROM:<postmaster>",
                "501 5.1.7 Error: bad sender address syntax",
            ),
            (
                "MAIL FROM:<a@b.test>x",
                "501 5.1.7 Error: bad sender address syntax",
            ),
            (
                "MAIL FROM:  <a@b.test>",
                "501 5.1.7 Error: bad sender address syntax",
            ),
            (
                "MAIL TO:<a@b.test>",
                "501 5.5.4 Syntax: MAIL FROM:<address>",
            ),
            ("MAIL", "501 5.5.4 Syntax: MAIL FROM:<address>"),
        ];
        for (line, want) in cases {
            let (got, _) = run(&format!("EHLO c\r\n{line}\r\n"));
            assert_eq!(heads(&got)[1], *want, "line {line:?}");
        }
        let cases: &[(&str, &str)] = &[
            ("RCPT TO:<alice@example.test>", "250 2.1.5 Ok"),
            ("RCPT TO:<ALICE@EXAMPLE.TEST.>", "250 2.1.5 Ok"),
            ("RCPT TO:<\"alice\"@example.test>", "250 2.1.5 Ok"),
            ("rcpt to:alice@example.test", "250 2.1.5 Ok"),
            ("RCPT TO:<Postmaster>", "250 2.1.5 Ok"),
            ("RCPT TO:<x@relay.test>", "250 2.1.5 Ok"),
            (
                "RCPT TO:<x@xrelay.test>",
                "554 5.7.1 <x@xrelay.test>: Relay access denied",
            ),
            (
                "RCPT TO:<x@relay.test.evil.test>",
                "554 5.7.1 <x@relay.test.evil.test>: Relay access denied",
            ),
            (
                "RCPT TO:<victim@evil.test>",
                "554 5.7.1 <victim@evil.test>: Relay access denied",
            ),
            (
                "RCPT TO:<victim@[192.0.2.1]>",
                "554 5.7.1 <victim@[192.0.2.1]>: Relay access denied",
            ),
            (
                "RCPT TO:<@example.test:victim@evil.test>",
                "554 5.7.1 <victim@evil.test>: Relay access denied",
            ),
            (
                "RCPT TO:<victim%evil.test@example.test>",
                "550 5.7.1 <victim%evil.test@example.test>: Recipient address rejected: Access denied",
            ),
            (
                "RCPT TO:<evil.test!victim@example.test>",
                "550 5.7.1 <evil.test!victim@example.test>: Recipient address rejected: Access denied",
            ),
            (
                "RCPT TO:<\"victim@evil.test\"@example.test>",
                "550 5.7.1 <\"victim@evil.test\"@example.test>: Recipient address rejected: Access denied",
            ),
            (
                "RCPT TO:<victim%evil.test@relay.test>",
                "550 5.7.1 <victim%evil.test@relay.test>: Recipient address rejected: Access denied",
            ),
            (
                "RCPT TO:<\"|/bin/true\"@example.test>",
                "550 5.7.1 <|/bin/true@example.test>: Recipient address rejected: Access denied",
            ),
            (
                "RCPT TO:<alice>",
                "501 5.1.3 Error: bad recipient address syntax",
            ),
            (
                "RCPT TO:<>",
                "501 5.1.3 Error: bad recipient address syntax",
            ),
            (
                "RCPT TO:<jö@example.test>",
                "553 5.6.7 Error: non-ASCII address needs SMTPUTF8",
            ),
            (
                "RCPT TO:<alice@example.test> NOTIFY=NEVER",
                "555 5.5.4 Unsupported option: NOTIFY",
            ),
            (
                "RCPT FROM:<alice@example.test>",
                "501 5.5.4 Syntax: RCPT TO:<address>",
            ),
        ];
        for (line, want) in cases {
            let (got, _) = run(&format!("EHLO c\r\nMAIL FROM:<>\r\n{line}\r\n"));
            assert_eq!(heads(&got)[2], *want, "line {line:?}");
        }
    }

    #[test]
    fn utf8_recipient_with_smtputf8() {
        let mut c = config();
        let (got, host) = run_with(
            &c,
            "EHLO c\r\nMAIL FROM:<ö@b.test> SMTPUTF8\r\nRCPT TO:<x@bücher.relay.test>\r\nDATA\r\n.\r\n"
                .as_bytes(),
        );
        assert_eq!(heads(&got)[2], "250 2.1.5 Ok");
        assert_eq!(host.queued.len(), 1);
        // Non-ASCII outside MAIL/RCPT is refused.
        c.max_errors = 50;
        let (got, _) = run_with(&c, "NOOP ö\r\n".as_bytes());
        assert_eq!(got, ["500 5.5.2 Error: non-ASCII character in command"]);
        // Invalid UTF-8 is refused even in MAIL.
        let (got, _) = run_with(&c, b"EHLO c\r\nMAIL FROM:<\xff@b.test> SMTPUTF8\r\n");
        assert_eq!(
            heads(&got)[1],
            "501 5.5.2 Error: invalid character in command"
        );
    }

    #[test]
    fn bad_bytes_in_commands() {
        let (got, _) = run_with(
            &config(),
            b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.test>\0<v@evil.test>\r\nRCPT TO:<alice@example.test>\rX\r\nNOOP\tx\r\nNOOP\n",
        );
        assert_eq!(
            &heads(&got)[2..],
            [
                "501 5.5.2 Error: invalid character in command",
                "501 5.5.2 Error: invalid character in command",
                "501 5.5.2 Error: invalid character in command",
                "500 5.5.2 Error: bare <LF> received",
            ]
        );
        let c = Config {
            bare_newline: BareNewline::Normalize,
            ..config()
        };
        let (got, _) = run_with(&c, b"NOOP\nQUIT\n");
        assert_eq!(got, ["250 2.0.0 Ok", "221 2.0.0 Bye"]);
    }

    #[test]
    fn long_line_answered_once_and_in_step() {
        let c = Config {
            max_line: 512,
            ..config()
        };
        let mut input = b"NOOP ".to_vec();
        input.extend(vec![b'x'; 600]);
        input.extend_from_slice(b"\r\nNOOP\r\n");
        let (got, _) = run_with(&c, &input);
        assert_eq!(got, ["500 5.5.2 Error: line too long", "250 2.0.0 Ok"]);
        // 510 octets plus CRLF is within the limit.
        let mut input = b"NOOP ".to_vec();
        input.extend(vec![b'x'; 505]);
        input.extend_from_slice(b"\r\n");
        let (got, _) = run_with(&c, &input);
        assert_eq!(got, ["250 2.0.0 Ok"]);
    }

    #[test]
    fn not_an_smtp_client() {
        let (got, _) = run("Subject: hello\r\nNOOP\r\n");
        assert_eq!(got, ["221 2.7.0 Error: this is an SMTP server, goodbye"]);
        let (got, _) = run("GET / HTTP/1.1\r\nHost: x\r\n");
        assert_eq!(got, ["221 2.7.0 Error: this is an SMTP server, goodbye"]);
    }

    #[test]
    fn error_limit_closes() {
        let c = Config {
            max_errors: 3,
            ..config()
        };
        let (got, _) = run_with(&c, b"FOO\r\nFOO\r\nNOOP\r\nFOO\r\nNOOP\r\nNOOP\r\n");
        let want = [
            "500 5.5.2 Error: command not recognized",
            "500 5.5.2 Error: command not recognized",
            "250 2.0.0 Ok",
            "500 5.5.2 Error: command not recognized",
            "421 4.7.0 mx.example.test Error: too many errors",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn recipient_limit() {
        let c = Config {
            max_recipients: 100,
            max_errors: 3,
            ..config()
        };
        let mut input = String::from("EHLO c\r\nMAIL FROM:<>\r\n");
        for _ in 0..105 {
            input.push_str("RCPT TO:<alice@example.test>\r\n");
        }
        input.push_str("DATA\r\n.\r\n");
        let mut s = Session::new(c, MemoryHost::example());
        let got: Vec<String> = s
            .feed(input.as_bytes())
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert!(got[2..102].iter().all(|r| r == "250 2.1.5 Ok"));
        // Over the limit: 452 4.5.3, not counted as errors (limit is 3).
        assert!(
            got[102..107]
                .iter()
                .all(|r| r == "452 4.5.3 Error: too many recipients")
        );
        assert_eq!(got[108], "250 2.0.0 Ok: queued as 1");
        assert_eq!(s.host().queued[0].0.rcpts.len(), 100);
    }

    #[test]
    fn message_too_big_is_read_to_the_end_and_dropped() {
        let c = Config {
            max_message: 10,
            ..config()
        };
        let (got, host) = run_with(
            &c,
            b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n0123456789\r\n.\r\nNOOP\r\n",
        );
        assert_eq!(
            &heads(&got)[4..],
            ["552 5.3.4 Error: message file too big", "250 2.0.0 Ok"]
        );
        assert!(host.queued.is_empty());
        // Exactly at the limit is fine (8 octets + CRLF).
        let (got, host) = run_with(
            &c,
            b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n01234567\r\n.\r\n",
        );
        assert_eq!(heads(&got)[4], "250 2.0.0 Ok: queued as 1");
        assert_eq!(host.queued.len(), 1);
    }

    #[test]
    fn smuggled_message_is_never_a_second_message() {
        let input = concat!(
            "EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n",
            "From: a\r\n\r\nhello\n.\r\n",
            "MAIL FROM:<ceo@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n",
            "From: ceo@example.test\r\n\r\npay\r\n.\r\nQUIT\r\n",
        );
        let (got, host) = run(input);
        assert_eq!(
            &heads(&got)[4..],
            ["550 5.5.2 Error: bare <LF> received", "221 2.0.0 Bye"]
        );
        assert!(host.queued.is_empty());
        let c = Config {
            bare_newline: BareNewline::Normalize,
            ..config()
        };
        let (got, host) = run_with(&c, input.as_bytes());
        assert_eq!(
            &heads(&got)[4..],
            ["250 2.0.0 Ok: queued as 1", "221 2.0.0 Bye"]
        );
        assert_eq!(host.queued.len(), 1);
        let (env, msg) = &host.queued[0];
        assert_eq!(env.rcpts.len(), 1);
        let msg = String::from_utf8_lossy(msg);
        assert!(
            msg.contains("hello\r\n\r\nMAIL FROM:<ceo@example.test>\r\n"),
            "{msg:?}"
        );
    }

    #[test]
    fn hop_limit() {
        let c = Config {
            max_hops: 3,
            ..config()
        };
        let head = "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n";
        let two = format!("{head}Received: a\r\nreceived : b\r\n\r\nReceived: body\r\n.\r\n");
        let (got, _) = run_with(&c, two.as_bytes());
        assert_eq!(heads(&got)[4], "250 2.0.0 Ok: queued as 1");
        let three = format!("{head}Received: a\r\nX: y\r\nRECEIVED: b\r\nReceived:c\r\n\r\n.\r\n");
        let (got, _) = run_with(&c, three.as_bytes());
        assert_eq!(heads(&got)[4], "554 5.4.6 Error: too many hops");
    }

    #[test]
    fn host_refusal_and_eof() {
        let mut s = Session::new(config(), MemoryHost::example());
        s.host_mut().refuse_data = Some(Reply::temp(451, (3, 0), "Error: queue file write error"));
        let got =
            s.feed(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nx\r\n.\r\n");
        assert_eq!(
            got[4].to_string(),
            "451 4.3.0 Error: queue file write error"
        );
        // Disconnect in the middle of a message: nothing is queued.
        s.host_mut().refuse_data = None;
        let got = s.feed(b"MAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nx\r\n.");
        assert_eq!(got.len(), 3);
        assert!(s.in_data());
        s.eof();
        assert!(s.is_closed());
        assert!(s.feed(b"\r\n").is_empty());
        assert!(s.host().queued.is_empty());
    }

    #[test]
    fn sync_check_refuses_early_talkers() {
        let c = Config {
            sync_check: true,
            ..config()
        };
        let mut s = Session::new(c.clone(), MemoryHost::example());
        let got = s.feed(b"EHLO c\r\nMAIL FROM:<>\r\n");
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].to_string(),
            "554 5.5.0 Error: SMTP protocol synchronization"
        );
        assert!(s.is_closed());
        // Waiting for each reply is fine; so is pipelining MAIL and RCPT.
        let mut s = Session::new(c.clone(), MemoryHost::example());
        let mut got = s.feed(b"EHLO c\r\n");
        got.extend(s.feed(b"MAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"));
        got.extend(s.feed(b"x\r\n.\r\n"));
        let got: Vec<u16> = got.iter().map(Reply::code).collect();
        assert_eq!(got, [250, 250, 250, 354, 250]);
        // Message text sent with DATA is refused, and never read as mail.
        let mut s = Session::new(c, MemoryHost::example());
        s.feed(b"EHLO c\r\n");
        let got = s.feed(b"MAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nx\r\n.\r\n");
        assert_eq!(
            got[2].to_string(),
            "554 5.5.0 Error: SMTP protocol synchronization"
        );
        assert!(s.host().queued.is_empty());
    }

    /// Random scripts from a vocabulary rich in line-end and dot
    /// fragments: the replies and the queue never depend on how the input
    /// is cut (a small deterministic fuzzer; no dependency needed).
    #[test]
    fn replies_never_depend_on_chunking() {
        const TXN: &[u8] = b"MAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n";
        let words: &[&[u8]] = &[
            b"EHLO c\r\n",
            TXN,
            TXN,
            TXN,
            b"MAIL FROM:<a@b.test>\r\n",
            b"RCPT TO:<alice@example.test>\r\n",
            b"RCPT TO:<x@evil.test>\r\n",
            b"DATA\r\n",
            b"RSET\r\n",
            b"NOOP\r\n",
            b"\r\n.\r\n",
            b".",
            b"..",
            b"\r",
            b"\n",
            b"\r\n",
            b"x",
            b"Subject: s",
            b"\0",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut queued = 0;
        for policy in [BareNewline::Reject, BareNewline::Normalize] {
            let c = Config {
                bare_newline: policy,
                max_line: 40,
                max_message: 30,
                max_header: 12,
                ..config()
            };
            for _ in 0..300 {
                let n = 5 + next() % 30;
                let mut input = b"EHLO c\r\n".to_vec();
                for _ in 0..n {
                    input.extend_from_slice(words[(next() % words.len() as u64) as usize]);
                }
                let (want, host) = feed_chunks(&c, &input, &[]);
                queued += host.queued.len();
                let all: Vec<usize> = (1..input.len()).collect();
                let (got, h) = feed_chunks(&c, &input, &all);
                assert_eq!(
                    (&got, &h.queued),
                    (&want, &host.queued),
                    "{:?}",
                    input.escape_ascii().to_string()
                );
                let mut cuts: Vec<usize> = (0..4)
                    .map(|_| (next() as usize) % (input.len() + 1))
                    .collect();
                cuts.sort();
                let (got, h) = feed_chunks(&c, &input, &cuts);
                assert_eq!(
                    (&got, &h.queued),
                    (&want, &host.queued),
                    "{:?}",
                    input.escape_ascii().to_string()
                );
            }
        }
        // The scripts must reach the end of DATA now and then.
        assert!(queued > 30, "only {queued} messages queued");
    }

    #[test]
    fn quit_ignores_the_rest() {
        let mut s = Session::new(config(), MemoryHost::example());
        assert_eq!(s.greeting().to_string(), "220 mx.example.test ESMTP");
        let got = s.feed(b"QUIT\r\nNOOP\r\n");
        assert_eq!(got.len(), 1);
        assert!(got[0].closes());
        assert!(s.is_closed());
        let mut s = Session::new(config(), MemoryHost::example());
        let r = s.shutdown();
        assert_eq!(
            r.to_string(),
            "421 4.3.2 mx.example.test Service not available, closing transmission channel"
        );
        assert!(s.is_closed());
    }
}
