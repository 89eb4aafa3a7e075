//! The main settings file of a configuration directory, `postroom.conf`.
//!
//! Owns the file's format and every default of the SMTP server: listen
//! addresses, host name, spool directory and limits. It turns them into a
//! [`session::Config`] and [`route::Options`] for the parts that use them.
//! It reads one file and never writes one, opens no socket and knows no
//! table format (those are `route`'s).
//!
//! The format is `key = value`, one setting a line; blank lines and lines
//! starting with `#` are ignored, `listen` may be given more than once,
//! every other key at most once. Every bad line is reported with its line
//! (a [`Diagnostic`]) and the rest still loads, so `postroom check` shows
//! them all at once:
//!
//! ```text
//! hostname = mx.example.test
//! listen = 127.0.0.1:2525
//! spool = ../state/spool          # relative to the configuration directory
//! max_message_size = 10485760     # octets (SIZE)
//! max_recipients = 100
//! max_line = 2048                 # command line, CRLF included
//! max_header = 262144             # header section, octets
//! command_timeout = 300           # seconds per command line
//! data_timeout = 180              # seconds per message, plus 1 s per 500 octets
//! max_sessions = 20               # sessions at once; beyond: 421 4.7.0
//! max_errors = 20                 # then 421 and close
//! max_hops = 100                  # Received: fields, ours included
//! bare_newline = reject           # or normalize (mta-semantics B.6)
//! queue_interval = 5s             # the queue runner: how often it looks
//! min_backoff = 5m                # retry schedule (s, m, h, d)
//! max_backoff = 1h
//! max_lifetime = 5d               # then the message bounces
//! deliver = /usr/local/bin/deliver   # default: next to postroom
//! mail_root = ../state/mail       # virtual users' mail folders are made here
//! virtual_user = mail             # as root: virtual users' uid and gid
//! smart_host = [mail.isp.test]:587   # relay for remote domains without a mailertable entry
//! smtp_connect_timeout = 30s      # the relay client's deadlines (s, m, h, d)
//! smtp_greeting_timeout = 5m
//! smtp_helo_timeout = 5m
//! smtp_mail_timeout = 5m
//! smtp_rcpt_timeout = 5m
//! smtp_data_init_timeout = 2m
//! smtp_data_block_timeout = 3m
//! smtp_data_done_timeout = 10m
//! smtp_quit_timeout = 5m
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diag::{Diagnostic, Span};
use crate::queue::schedule::Schedule;
use crate::route;
use crate::route::mailertable::{self, HostSpec};

use super::client::Timeouts;
use super::proto::BareNewline;
use super::session;

/// The settings file's name inside the configuration directory.
pub const FILE: &str = "postroom.conf";

/// Everything the SMTP server reads from `postroom.conf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Addresses to listen on (port 0 picks a free port, for tests).
    pub listen: Vec<SocketAddr>,
    /// Our fully qualified host name: greeting, `Received: by`, and always
    /// a local domain.
    pub hostname: String,
    /// The queue's spool directory, already joined to the configuration
    /// directory when written relative.
    pub spool: PathBuf,
    /// Largest message in octets.
    pub max_message: u64,
    /// Largest header section in octets.
    pub max_header: u64,
    /// Most recipients per transaction.
    pub max_recipients: usize,
    /// Longest command line, CRLF included.
    pub max_line: usize,
    /// Time allowed for one command line (mta-semantics B.5: a deadline
    /// per line, not per read, so a drip cannot hold a session).
    pub command_timeout: Duration,
    /// Time allowed for one message after `354`, plus one second per
    /// [`MIN_DATA_RATE`] octets received.
    pub data_timeout: Duration,
    /// Sessions at once; one more gets `421 4.7.0` and is closed.
    pub max_sessions: usize,
    /// Errors after which the session ends with `421`.
    pub max_errors: u32,
    /// Most `Received:` fields, ours included.
    pub max_hops: usize,
    /// What to do with a bare LF or CR in DATA.
    pub bare_newline: BareNewline,
    /// The queue runner's settings.
    pub runner: RunnerSettings,
    /// The relay client's settings.
    pub relay: RelaySettings,
    /// `:include:` files whose file and program lines are honoured
    /// (`trusted_include = PATH`, one line each, relative to the
    /// configuration directory; mta-semantics A.6.2: sendmail's per-file
    /// opt-in for lists kept by root).
    pub trusted_includes: Vec<PathBuf>,
    /// Aliases that are mailing lists (`list = ADDRESS [description]`, one
    /// line each; mta-semantics E): their copies get `List-*` fields and
    /// `Precedence: list`.
    pub lists: Vec<route::lists::ListSpec>,
}

/// The relay client's settings from `postroom.conf`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelaySettings {
    /// Where mail for a remote domain without a mailertable entry goes
    /// (`smart_host`, the mailertable's host syntax); `None`: nowhere (it
    /// bounces with `5.4.4`).
    pub smart_host: Option<HostSpec>,
    /// The client's deadlines (`smtp_*_timeout`, Postfix's names); RFC
    /// 5321 §4.5.3.2 by default.
    pub timeouts: Timeouts,
}

/// The queue runner's settings from `postroom.conf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerSettings {
    /// How often the runner looks for due entries (`queue_interval`,
    /// seconds; default 5).
    pub interval: Duration,
    /// The retry schedule (`min_backoff`, `max_backoff`, `max_lifetime`;
    /// the rest as [`Schedule::default`]).
    pub schedule: Schedule,
    /// The `deliver` binary (`deliver`); `None`: the one next to the
    /// running `postroom`.
    pub deliver: Option<PathBuf>,
    /// Where virtual users' mail folders live (`mail_root`): the runner
    /// creates `mail_root/<user>/` for each virtual user before a run, as
    /// an rcfile's `MAILDIR=` expects. `None`: nothing is created.
    pub mail_root: Option<PathBuf>,
    /// The system user whose uid and gid the virtual users' deliveries
    /// run with when the server runs as root (`virtual_user`); `None`:
    /// as the server itself (the demo and the tests, not as root).
    pub virtual_user: Option<String>,
    /// Deliver each message as soon as it is queued (`delivery_mode =
    /// background`, the default, sendmail's `DeliveryMode`), or leave it for
    /// the next queue run (`delivery_mode = queue`).
    pub on_arrival: bool,
    /// How many entries are delivered at once (`max_deliveries`, default
    /// 10): each is one worker thread running one delivery agent at a time.
    pub workers: usize,
    /// How many destinations are relayed to at once (`relay_lanes`,
    /// default 4): the entries for one destination domain go out one
    /// after the other, in arrival order.
    pub relay_lanes: usize,
    /// Fork each delivery from a warm `deliver` instead of starting one
    /// per message (`deliver_zygotes = yes`, the default; `no` starts
    /// `deliver` every time, as an MTA's local mailer is run).
    pub zygotes: bool,
    /// The sendmail virtual users' rcfiles forward and reply with
    /// (`sendmail`); `None`: the `sendmail` next to `deliver` when there
    /// is one (as `cargo build` puts them), else deliver's default.
    pub sendmail: Option<PathBuf>,
}

impl Default for RunnerSettings {
    fn default() -> RunnerSettings {
        RunnerSettings {
            interval: Duration::from_secs(5),
            schedule: Schedule::default(),
            deliver: None,
            mail_root: None,
            virtual_user: None,
            on_arrival: true,
            workers: 10,
            relay_lanes: 4,
            zygotes: true,
            sendmail: None,
        }
    }
}

/// The slowest transfer the DATA deadline allows for, in octets per
/// second (mta-semantics B.5: "min data rate 500 B/s").
pub const MIN_DATA_RATE: u64 = 500;

impl Settings {
    /// The defaults (mta-semantics B.5), with the spool at `dir/spool`.
    pub fn defaults(dir: &Path) -> Settings {
        let s = session::Config::default();
        Settings {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            hostname: "localhost".to_string(),
            spool: dir.join("spool"),
            max_message: s.max_message,
            max_header: s.max_header,
            max_recipients: s.max_recipients,
            max_line: s.max_line,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            max_sessions: 20,
            max_errors: s.max_errors,
            max_hops: s.max_hops,
            bare_newline: s.bare_newline,
            runner: RunnerSettings::default(),
            relay: RelaySettings::default(),
            trusted_includes: Vec::new(),
            lists: Vec::new(),
        }
    }

    /// The limits and policies of one session.
    pub fn session_config(&self) -> session::Config {
        session::Config {
            hostname: self.hostname.clone(),
            max_line: self.max_line,
            max_message: self.max_message,
            max_header: self.max_header,
            max_recipients: self.max_recipients,
            max_errors: self.max_errors,
            max_hops: self.max_hops,
            bare_newline: self.bare_newline,
            ..session::Config::default()
        }
    }

    /// The settings `route::load` needs from here.
    pub fn route_options(&self) -> route::Options {
        route::Options {
            host_name: self.hostname.as_bytes().to_vec(),
            // A smart host is a route for forwards to any domain (A.5).
            smarthost: self.relay.smart_host.is_some(),
            trusted_includes: self.trusted_includes.clone(),
            lists: self.lists.clone(),
            // The caller that read the file sets it (`daemon`).
            settings_source: Vec::new(),
        }
    }
}

/// Reads `dir/postroom.conf`. A missing file gives the defaults and no
/// diagnostic; an unreadable one an error. Returns the settings (good
/// lines applied), the diagnostics and the file's bytes (to render them).
pub fn load(dir: &Path) -> (Settings, Vec<Diagnostic>, Vec<u8>) {
    let path = dir.join(FILE);
    match std::fs::read(&path) {
        Ok(src) => {
            let (s, d) = parse(FILE, &src, dir);
            (s, d, src)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (Settings::defaults(dir), Vec::new(), Vec::new())
        }
        Err(e) => (
            Settings::defaults(dir),
            vec![Diagnostic::error(
                FILE,
                Span::default(),
                format!("cannot read {}: {e}", path.display()),
            )],
            Vec::new(),
        ),
    }
}

/// Parses the text of a settings file named `file` (for diagnostics);
/// relative paths are joined to `dir`. Also reports the limits that break
/// RFC 5321's minimums ([`session::Config::check`]) on the line that set
/// them, or at the start of the file for a default.
pub fn parse(file: &str, src: &[u8], dir: &Path) -> (Settings, Vec<Diagnostic>) {
    let mut s = Settings::defaults(dir);
    let mut diags = Vec::new();
    let mut seen: Vec<(String, Span)> = Vec::new();
    let mut listen_given = false;
    let mut off = 0;
    for raw in src.split_inclusive(|&b| b == b'\n') {
        let start = off;
        off += raw.len();
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // A `#` starts a comment anywhere: no value here may contain one.
        let body = match line.iter().position(|&b| b == b'#') {
            Some(p) => &line[..p],
            None => line,
        };
        let lead = body.len() - body.trim_ascii_start().len();
        let body = body.trim_ascii();
        if body.is_empty() {
            continue;
        }
        let span = Span::new(start + lead, start + lead + body.len());
        let Ok(body) = std::str::from_utf8(body) else {
            diags.push(Diagnostic::error(file, span, "line is not UTF-8"));
            continue;
        };
        let Some((key, value)) = body.split_once('=') else {
            diags.push(Diagnostic::error(
                file,
                span,
                "expected `key = value`".to_string(),
            ));
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if !["listen", "trusted_include", "list"].contains(&key) {
            if let Some((_, first)) = seen.iter().find(|(k, _)| k == key) {
                let mut d = Diagnostic::error(file, span, format!("`{key}` is set twice"));
                let (l, _) = first.line_col(src);
                d.notes.push(format!("first set on line {l}"));
                diags.push(d);
                continue;
            }
            seen.push((key.to_string(), span));
        }
        if value.is_empty() {
            diags.push(Diagnostic::error(
                file,
                span,
                format!("`{key}` has no value"),
            ));
            continue;
        }
        if key == "list" {
            match route::lists::ListSpec::parse(value, span) {
                Ok(list) if s.lists.iter().any(|l| l.name == list.name) => diags.push(
                    Diagnostic::error(file, span, "this list is already set on another line"),
                ),
                Ok(list) => s.lists.push(list),
                Err(what) => diags.push(Diagnostic::error(file, span, format!("`list`: {what}"))),
            }
            continue;
        }
        match apply(&mut s, key, value, dir, &mut listen_given) {
            Ok(true) => {}
            Ok(false) => diags.push(Diagnostic::error(
                file,
                span,
                format!("unknown setting `{key}`"),
            )),
            Err(what) => diags.push(Diagnostic::error(file, span, format!("`{key}`: {what}"))),
        }
    }
    if s.max_sessions == 0 {
        let span = span_of(&seen, "max_sessions");
        diags.push(Diagnostic::error(
            file,
            span,
            "`max_sessions` must be at least 1",
        ));
    }
    if let Err(e) = s.runner.schedule.validate() {
        let span = span_of(&seen, "max_backoff");
        diags.push(Diagnostic::error(file, span, e.to_string()));
    }
    for problem in s.session_config().check() {
        // The session names its fields `smtp max_line` etc.; point at the
        // line that set the value when there is one.
        let key = ["max_line", "max_recipients", "hostname"]
            .into_iter()
            .find(|k| problem.contains(k));
        let span = key.map_or(Span::default(), |k| span_of(&seen, k));
        diags.push(Diagnostic::error(file, span, problem));
    }
    (s, diags)
}

/// The span of the line that set `key`, or the start of the file.
fn span_of(seen: &[(String, Span)], key: &str) -> Span {
    seen.iter()
        .find(|(k, _)| k == key)
        .map_or(Span::default(), |(_, s)| *s)
}

/// A duration: a whole number with an optional unit `s`, `m`, `h` or `d`
/// (seconds when none), at least one second.
fn duration(v: &str) -> Result<Duration, &'static str> {
    let (num, mult) = match v.as_bytes().last() {
        Some(b's') => (&v[..v.len() - 1], 1),
        Some(b'm') => (&v[..v.len() - 1], 60),
        Some(b'h') => (&v[..v.len() - 1], 3600),
        Some(b'd') => (&v[..v.len() - 1], 86400),
        _ => (v, 1),
    };
    match num.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n.saturating_mul(mult))),
        _ => Err("want a whole number of seconds (or with a unit s, m, h, d), at least 1"),
    }
}

/// Sets one key (`list` excepted, which [`parse`] reads itself); false
/// when `key` is no setting; the error says what the value should be.
fn apply(
    s: &mut Settings,
    key: &str,
    value: &str,
    dir: &Path,
    listen_given: &mut bool,
) -> Result<bool, String> {
    let number = |v: &str| v.parse::<u64>().map_err(|_| "want a whole number");
    let positive = |v: &str| match number(v)? {
        0 => Err("want a whole number, at least 1"),
        n => Ok(n),
    };
    let secs = |v: &str| match v.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
        _ => Err("want a whole number of seconds, at least 1"),
    };
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    match key {
        "listen" => {
            let a = value
                .parse::<SocketAddr>()
                .map_err(|_| "want an address and port, e.g. `127.0.0.1:2525`")?;
            // A `listen` line replaces the default address.
            if !*listen_given {
                s.listen.clear();
                *listen_given = true;
            }
            s.listen.push(a);
        }
        "hostname" => {
            if value.contains(|c: char| !c.is_ascii_graphic()) || !value.contains('.') {
                return Err("want a fully qualified host name".into());
            }
            s.hostname = value.to_ascii_lowercase();
        }
        "spool" => s.spool = dir.join(value),
        "max_message_size" => s.max_message = number(value)?,
        "max_header" => s.max_header = number(value)?,
        "max_recipients" => s.max_recipients = size(number(value)?),
        "max_line" => s.max_line = size(number(value)?),
        "max_sessions" => s.max_sessions = size(number(value)?),
        "max_errors" => s.max_errors = u32::try_from(number(value)?).unwrap_or(u32::MAX),
        "max_hops" => s.max_hops = size(number(value)?),
        "command_timeout" => s.command_timeout = secs(value)?,
        "data_timeout" => s.data_timeout = secs(value)?,
        "bare_newline" => {
            s.bare_newline = match value {
                "reject" => BareNewline::Reject,
                "normalize" => BareNewline::Normalize,
                _ => return Err("want `reject` or `normalize`".into()),
            }
        }
        "queue_interval" => s.runner.interval = duration(value)?,
        "min_backoff" => s.runner.schedule.min_backoff = duration(value)?,
        "max_backoff" => s.runner.schedule.max_backoff = duration(value)?,
        "max_lifetime" => s.runner.schedule.max_lifetime = duration(value)?,
        "deliver" => s.runner.deliver = Some(dir.join(value)),
        "mail_root" => s.runner.mail_root = Some(dir.join(value)),
        "virtual_user" => s.runner.virtual_user = Some(value.to_string()),
        "delivery_mode" => {
            s.runner.on_arrival = match value {
                "background" => true,
                "queue" => false,
                _ => return Err("want `background` or `queue`".into()),
            }
        }
        "max_deliveries" => s.runner.workers = size(positive(value)?),
        "sendmail" => s.runner.sendmail = Some(dir.join(value)),
        "trusted_include" => s.trusted_includes.push(PathBuf::from(value)),
        "deliver_zygotes" => {
            s.runner.zygotes = match value {
                "yes" => true,
                "no" => false,
                _ => return Err("want `yes` or `no`".into()),
            }
        }
        "relay_lanes" => s.runner.relay_lanes = size(positive(value)?),
        "delay_warning" => s.runner.schedule.delay_warning = Some(duration(value)?),
        "smart_host" => s.relay.smart_host = Some(mailertable::parse_host(value.as_bytes())?),
        "smtp_connect_timeout" => s.relay.timeouts.connect = duration(value)?,
        "smtp_greeting_timeout" => s.relay.timeouts.greeting = duration(value)?,
        "smtp_helo_timeout" => s.relay.timeouts.helo = duration(value)?,
        "smtp_mail_timeout" => s.relay.timeouts.mail = duration(value)?,
        "smtp_rcpt_timeout" => s.relay.timeouts.rcpt = duration(value)?,
        "smtp_data_init_timeout" => s.relay.timeouts.data_init = duration(value)?,
        "smtp_data_block_timeout" => s.relay.timeouts.data_block = duration(value)?,
        "smtp_data_done_timeout" => s.relay.timeouts.data_end = duration(value)?,
        "smtp_quit_timeout" => s.relay.timeouts.quit = duration(value)?,
        _ => return Ok(false),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(src: &str) -> (Settings, Vec<String>) {
        let (s, d) = parse("postroom.conf", src.as_bytes(), Path::new("/etc/mail"));
        let msgs = d
            .iter()
            .map(|d| {
                let (l, _) = d.span.line_col(src.as_bytes());
                format!("{l}: {}", d.message)
            })
            .collect();
        (s, msgs)
    }

    #[test]
    fn example_values_load() {
        let (s, d) = parse_str(
            "# comment\nhostname = MX.Example.TEST\nlisten = 127.0.0.1:2525\nlisten = [::1]:25\n\
             spool = ../state/spool\nmax_message_size = 1000 # small\ncommand_timeout = 5\n\
             data_timeout=7\nmax_sessions = 3\nmax_hops = 30\nbare_newline = normalize\n",
        );
        assert_eq!(d, Vec::<String>::new());
        assert_eq!(s.hostname, "mx.example.test");
        assert_eq!(s.listen.len(), 2, "a given listen replaces the default");
        assert_eq!(s.listen[1].port(), 25);
        assert_eq!(s.spool, Path::new("/etc/mail/../state/spool"));
        assert_eq!(s.max_message, 1000);
        assert_eq!(s.command_timeout, Duration::from_secs(5));
        assert_eq!(s.data_timeout, Duration::from_secs(7));
        assert_eq!(s.max_sessions, 3);
        assert_eq!(s.bare_newline, BareNewline::Normalize);
        let c = s.session_config();
        assert_eq!((c.max_message, c.max_hops), (1000, 30));
        assert_eq!(s.route_options().host_name, b"mx.example.test");
    }

    #[test]
    fn absolute_spool_stays() {
        let (s, _) = parse_str("spool = /var/spool/postroom\n");
        assert_eq!(s.spool, Path::new("/var/spool/postroom"));
    }

    #[test]
    fn every_bad_line_is_reported_with_its_line() {
        let table = [
            ("nonsense\n", "1: expected `key = value`"),
            ("colour = blue\n", "1: unknown setting `colour`"),
            (
                "\n\nlisten = nowhere\n",
                "3: `listen`: want an address and port, e.g. `127.0.0.1:2525`",
            ),
            (
                "max_recipients = lots\n",
                "1: `max_recipients`: want a whole number",
            ),
            (
                "command_timeout = 0\n",
                "1: `command_timeout`: want a whole number of seconds, at least 1",
            ),
            (
                "hostname = localhost\n",
                "1: `hostname`: want a fully qualified host name",
            ),
            (
                "bare_newline = keep\n",
                "1: `bare_newline`: want `reject` or `normalize`",
            ),
            ("max_line = 100\n", "1: smtp max_line 100 is below 512"),
            ("max_sessions = 0\n", "1: `max_sessions` must be at least 1"),
            ("max_hops =\n", "1: `max_hops` has no value"),
            ("max_hops = 5\nmax_hops = 6\n", "2: `max_hops` is set twice"),
        ];
        for (src, want) in table {
            let (_, got) = parse_str(src);
            assert_eq!(got, vec![want.to_string()], "for {src:?}");
        }
    }

    #[test]
    fn good_lines_still_apply_around_bad_ones() {
        let (s, d) = parse_str("max_hops = x\nmax_recipients = 200\nfoo = 1\n");
        assert_eq!(d.len(), 2);
        assert_eq!(s.max_recipients, 200);
        assert_eq!(s.max_hops, session::Config::default().max_hops);
    }

    #[test]
    fn missing_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let (s, d, src) = load(dir.path());
        assert!(d.is_empty() && src.is_empty());
        assert_eq!(s, Settings::defaults(dir.path()));
    }

    #[test]
    fn runner_keys_are_read() {
        let src = b"hostname = a.test\nqueue_interval = 2\nmin_backoff = 1m # c\nmax_backoff = 2h\nmax_lifetime = 3d\ndeliver = bin/deliver\nmail_root = ../state/mail\nvirtual_user = mail\nlisten = 127.0.0.1:0\n";
        let (s, diags) = parse("postroom.conf", src, Path::new("/etc/p"));
        assert!(diags.is_empty(), "{diags:?}");
        let got = s.runner;
        assert_eq!(got.virtual_user.as_deref(), Some("mail"));
        assert_eq!(got.interval, Duration::from_secs(2));
        assert_eq!(got.schedule.min_backoff, Duration::from_secs(60));
        assert_eq!(got.schedule.max_backoff, Duration::from_secs(7200));
        assert_eq!(got.schedule.max_lifetime, Duration::from_secs(3 * 86400));
        assert_eq!(got.deliver, Some(PathBuf::from("/etc/p/bin/deliver")));
        assert_eq!(got.mail_root, Some(PathBuf::from("/etc/p/../state/mail")));
    }

    #[test]
    fn relay_keys_are_read() {
        let src = b"smart_host = [Mail.ISP.test]:587\nsmtp_connect_timeout = 2\nsmtp_data_done_timeout = 1m\nsmtp_quit_timeout = 3s\n";
        let (s, diags) = parse("postroom.conf", src, Path::new("/etc/p"));
        assert!(diags.is_empty(), "{diags:?}");
        let want = HostSpec {
            host: "mail.isp.test".to_string(),
            port: 587,
            mx: false,
        };
        assert_eq!(s.relay.smart_host, Some(want));
        let t = s.relay.timeouts;
        assert_eq!(t.connect, Duration::from_secs(2));
        assert_eq!(t.data_end, Duration::from_secs(60));
        assert_eq!(t.quit, Duration::from_secs(3));
        assert_eq!(t.rcpt, Timeouts::default().rcpt);
        assert!(s.route_options().smarthost, "a smart host routes forwards");
        assert!(!Settings::defaults(Path::new(".")).route_options().smarthost);
        let (_, got) = parse_str("\nsmart_host = [mail.isp.test\n");
        let want = "2: `smart_host`: `[mail.isp.test` has `[` without `]`";
        assert_eq!(got, vec![want.to_string()]);
    }

    #[test]
    fn bad_runner_values_are_reported_on_their_line() {
        // (text, want message)
        let cases = [
            (
                "queue_interval = 0\n",
                "`queue_interval`: want a whole number",
            ),
            ("min_backoff = soon\n", "`min_backoff`: want a whole number"),
            (
                "min_backoff = 2h\nmax_backoff = 1h\n",
                "maximal backoff is shorter than the minimal backoff",
            ),
        ];
        for (src, want) in cases {
            let (_, diags) = parse("f", src.as_bytes(), Path::new("."));
            assert_eq!(diags.len(), 1, "{src}");
            let got = &diags[0].message;
            assert!(got.contains(want), "{src}: {got}");
        }
        let (_, diags) = parse("f", b"#x\n#y\nqueue_interval = -1\n", Path::new("."));
        assert_eq!(diags[0].span.start, 6);
    }
    #[test]
    fn delivery_keys_have_their_defaults() {
        let s = Settings::defaults(Path::new("/etc/p"));
        let r = &s.runner;
        assert!(r.on_arrival, "delivery_mode = background by default");
        assert_eq!((r.workers, r.relay_lanes), (10, 4));
        assert!(r.zygotes);
        assert_eq!(r.sendmail, None);
        assert_eq!(r.schedule.delay_warning, None);
        assert_eq!(s.relay.smart_host, None);
    }

    #[test]
    fn delivery_keys_are_read() {
        let src = "delivery_mode = queue\nmax_deliveries = 3\nrelay_lanes = 2\n\
                   delay_warning = 4h\ndeliver_zygotes = no\nsendmail = ../bin/sendmail\n\
                   smart_host = Mail.ISP.test\n";
        let (s, diags) = parse("postroom.conf", src.as_bytes(), Path::new("/etc/p"));
        assert!(diags.is_empty(), "{diags:?}");
        let r = &s.runner;
        assert!(!r.on_arrival);
        assert_eq!((r.workers, r.relay_lanes), (3, 2));
        assert_eq!(
            r.schedule.delay_warning,
            Some(Duration::from_secs(4 * 3600))
        );
        assert!(!r.zygotes);
        // Relative to the configuration directory, like `deliver`.
        assert_eq!(r.sendmail, Some(PathBuf::from("/etc/p/../bin/sendmail")));
        // Without brackets the host is an MX name, on port 25.
        let want = HostSpec {
            host: "mail.isp.test".to_string(),
            port: 25,
            mx: true,
        };
        assert_eq!(s.relay.smart_host, Some(want));
        assert!(s.route_options().smarthost);
    }

    #[test]
    fn delivery_keys_other_values() {
        let src = "delivery_mode = background\ndeliver_zygotes = yes\nsendmail = /usr/sbin/sendmail\n\
                   delay_warning = 90\nmax_deliveries = 1\nrelay_lanes = 1\n\
                   smart_host = [192.0.2.1]:2525\n";
        let (s, diags) = parse("postroom.conf", src.as_bytes(), Path::new("/etc/p"));
        assert!(diags.is_empty(), "{diags:?}");
        let r = &s.runner;
        assert!(r.on_arrival);
        assert!(r.zygotes);
        assert_eq!(r.sendmail, Some(PathBuf::from("/usr/sbin/sendmail")));
        assert_eq!(r.schedule.delay_warning, Some(Duration::from_secs(90)));
        assert_eq!((r.workers, r.relay_lanes), (1, 1));
        let want = HostSpec {
            host: "192.0.2.1".to_string(),
            port: 2525,
            mx: false,
        };
        assert_eq!(s.relay.smart_host, Some(want));
    }

    #[test]
    fn bad_delivery_values_are_reported_on_their_line_and_change_nothing() {
        // (text, want: the one diagnostic, "line: message")
        let cases = [
            (
                "\ndelivery_mode = now\n",
                "2: `delivery_mode`: want `background` or `queue`",
            ),
            (
                "delivery_mode = QUEUE\n",
                "1: `delivery_mode`: want `background` or `queue`",
            ),
            (
                "max_deliveries = 0\n",
                "1: `max_deliveries`: want a whole number, at least 1",
            ),
            (
                "max_deliveries = many\n",
                "1: `max_deliveries`: want a whole number",
            ),
            (
                "# lanes\nrelay_lanes = 0\n",
                "2: `relay_lanes`: want a whole number, at least 1",
            ),
            (
                "relay_lanes = -2\n",
                "1: `relay_lanes`: want a whole number",
            ),
            (
                "delay_warning = 0\n",
                "1: `delay_warning`: want a whole number of seconds (or with a unit s, m, h, d), at least 1",
            ),
            (
                "delay_warning = 2w\n",
                "1: `delay_warning`: want a whole number of seconds (or with a unit s, m, h, d), at least 1",
            ),
            (
                "deliver_zygotes = true\n",
                "1: `deliver_zygotes`: want `yes` or `no`",
            ),
            ("sendmail =\n", "1: `sendmail` has no value"),
            (
                "smart_host = [mail.isp.test]:0\n",
                "1: `smart_host`: bad port `0` (want 1 to 65535)",
            ),
            (
                "smart_host = 192.0.2.1\n",
                "1: `smart_host`: IP address `192.0.2.1` must be written in brackets, `[192.0.2.1]`",
            ),
            (
                "max_deliveries = 2\nmax_deliveries = 3\n",
                "2: `max_deliveries` is set twice",
            ),
        ];
        let defaults = Settings::defaults(Path::new("/etc/mail"));
        for (src, want) in cases {
            let (s, got) = parse_str(src);
            assert_eq!(got, vec![want.to_string()], "for {src:?}");
            let mut runner = s.runner.clone();
            if src.starts_with("max_deliveries = 2") {
                // The first line stays; only the repeat is refused.
                assert_eq!(runner.workers, 2);
                runner.workers = defaults.runner.workers;
            }
            assert_eq!(runner, defaults.runner, "for {src:?}");
            assert_eq!(s.relay, defaults.relay, "for {src:?}");
        }
    }

    #[test]
    fn trusted_includes_may_be_listed_many_times_and_reach_the_route_options() {
        let (s, d) = parse_str("trusted_include = lists/ops\ntrusted_include = /etc/mail/staff\n");
        assert!(d.is_empty(), "{d:?}");
        let want = vec![PathBuf::from("lists/ops"), PathBuf::from("/etc/mail/staff")];
        assert_eq!(s.trusted_includes, want);
        assert_eq!(s.route_options().trusted_includes, want);
    }

    #[test]
    fn lists_may_be_set_many_times_each_list_once() {
        let (s, d) = parse_str(
            "list = team@example.test The team\nlist = ops@example.test\n\
             list = TEAM@other.test\nlist = not-an-address\n",
        );
        assert_eq!(
            d,
            [
                "3: this list is already set on another line",
                "4: `list`: `not-an-address` is not an address (want `name@domain`)"
            ]
        );
        let names: Vec<&[u8]> = s.lists.iter().map(|l| &l.name[..]).collect();
        assert_eq!(names, [&b"team"[..], b"ops"]);
        assert_eq!(s.lists[0].description, "The team");
        assert_eq!(s.route_options().lists, s.lists);
    }
}
