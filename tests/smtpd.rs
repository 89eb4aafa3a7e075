//! `postroom smtpd` over loopback: the real server binary on a port the
//! system picks (`listen = 127.0.0.1:0`, read back from its log), real
//! clients (swaks, Python's smtplib, a raw socket), replies checked by
//! class and enhanced code (OpenSMTPD's smtpscript style), and the spool
//! read back with `queue::Spool` once the server is stopped. Every wait
//! is bounded: socket timeouts, swaks `--timeout`, a deadline on start-up.
//! The server runs the queue runner too: the SMTP tests set
//! `queue_interval = 1d` and `delivery_mode = queue` (its one pass at
//! start-up finds an empty spool, and nothing is delivered on arrival),
//! so what they queued stays for them to read; the end-to-end test at the
//! end lets it deliver through the real `deliver` and the example rcfiles.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use postroom::queue::{Queue, Schedule, Spool, SystemClock};

use crate::util::{Dir, cmd, require_tool};

/// The tables every test uses: example.test with alice and bob, relay
/// domain relay.test, a postmaster alias.
fn config(dir: &Dir, extra_settings: &str) {
    dir.write(
        "etc/postroom.conf",
        format!(
            "hostname = mx.example.test\nlisten = 127.0.0.1:0\nspool = ../spool\n\
             data_timeout = 10\n{}{extra_settings}",
            // Bounded waits everywhere; a test may set its own.
            if extra_settings.contains("command_timeout") {
                ""
            } else {
                "command_timeout = 10\n"
            }
        ) + "queue_interval = 1d\ndelivery_mode = queue\n",
    );
    dir.write("etc/local-host-names", "example.test\n");
    dir.write("etc/relay-domains", "relay.test\n");
    dir.write("etc/users", "alice:homes/alice\nbob:homes/bob\n");
    dir.write("etc/aliases", "postmaster: alice\n");
    dir.write("etc/virtusertable", "info@example.test alice\n");
}

/// A running `postroom smtpd`, killed when dropped.
pub(crate) struct Smtpd {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) log: Arc<Mutex<Vec<String>>>,
}

impl Smtpd {
    /// Starts `postroom smtpd` on the configuration in `dir/etc`.
    pub(crate) fn start(dir: &Dir) -> Smtpd {
        Smtpd::start_config(&dir.join("etc"))
    }

    /// Starts `postroom smtpd --config etc` and waits for its `listening
    /// on` line.
    pub(crate) fn start_config(etc: &std::path::Path) -> Smtpd {
        let mut child = cmd("postroom")
            .arg("smtpd")
            .arg("--config")
            .arg(etc)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start postroom smtpd");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(a) = line.strip_prefix("postroom smtpd: listening on ") {
                    let _ = tx.send(a.parse::<SocketAddr>().expect("address in log"));
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not start: {:?}", log.lock().unwrap());
            }
        };
        Smtpd { child, addr, log }
    }

    fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// Stops the server (releasing the spool's lock) and lists the spool:
    /// `(recipients, message)` per entry.
    fn stop_and_list(mut self, dir: &Dir) -> Vec<(Vec<String>, Vec<u8>)> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (spool, _) = Spool::open(
            dir.join("spool"),
            Schedule::default(),
            Arc::new(SystemClock),
        )
        .expect("open spool");
        let listing = spool.entries().expect("list spool");
        assert!(listing.corrupt.is_empty());
        listing
            .entries
            .iter()
            .map(|e| {
                let rcpts = e
                    .recipients
                    .iter()
                    .map(|r| r.address.address.clone())
                    .collect();
                (rcpts, spool.message(&e.id).expect("message"))
            })
            .collect()
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs swaks against the server; returns its exit status and transcript.
pub(crate) fn swaks(server: &Smtpd, args: &[&str]) -> (i32, String) {
    let out = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &server.port()])
        .args(["--helo", "client.test", "--timeout", "10"])
        .args(args)
        .output()
        .expect("run swaks");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// The server's reply lines in a swaks transcript (`<-  250 ...`,
/// `<** 550 ...`), without the arrows.
fn replies(transcript: &str) -> Vec<String> {
    transcript
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            ["<-  ", "<** ", "<~  ", "<~* "]
                .iter()
                .find_map(|p| l.strip_prefix(p))
                .map(str::to_string)
        })
        .collect()
}

/// Runs a Python smtplib script with `PORT` set; returns its stdout.
pub(crate) fn python(server: &Smtpd, script: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("PORT", server.port())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn swaks_message_is_queued_with_our_received_field() {
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("smtpd-swaks");
    config(&dir, "");
    let server = Smtpd::start(&dir);
    let (code, t) = swaks(
        &server,
        &["--from", "sender@client.test", "--to", "alice@example.test"],
    );
    assert_eq!(code, 0, "{t}");
    let r = replies(&t);
    assert!(r[0].starts_with("220 mx.example.test ESMTP"), "{r:?}");
    let last_250 = r
        .iter()
        .rfind(|l| l.starts_with("250 2.0.0 Ok: queued as "));
    assert!(last_250.is_some(), "{r:?}");
    let queued = server.stop_and_list(&dir);
    assert_eq!(queued.len(), 1);
    let (rcpts, msg) = &queued[0];
    assert_eq!(rcpts, &["alice@example.test"]);
    let head = String::from_utf8_lossy(&msg[..200.min(msg.len())]).into_owned();
    assert!(
        head.starts_with(
            "Received: from client.test (unknown [127.0.0.1])\r\n\tby mx.example.test (postroom) with ESMTP id "
        ),
        "{head}"
    );
    assert!(head.contains("\r\n\tfor <alice@example.test>; "), "{head}");
    // The queue id in the 250 is the one in the spool's listing, and the
    // one our Received: field names.
    let id = last_250.unwrap().rsplit(' ').next().unwrap().to_string();
    assert!(std::fs::metadata(dir.join(&format!("spool/active/{id}"))).is_ok());
    assert!(head.contains(&format!(" with ESMTP id {id}\r\n")), "{head}");
}

#[test]
fn relaying_is_refused_also_in_disguise() {
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("smtpd-relay");
    config(&dir, "");
    let server = Smtpd::start(&dir);
    let table = [
        (
            "victim@other.test",
            "554 5.7.1 <victim@other.test>: Relay access denied",
        ),
        (
            "victim%other.test@example.test",
            "550 5.7.1 <victim%other.test@example.test>: ",
        ),
        (
            "victim@[192.0.2.1]",
            "554 5.7.1 <victim@[192.0.2.1]>: Relay access denied",
        ),
    ];
    for (to, want) in table {
        let (code, t) = swaks(&server, &["--from", "a@client.test", "--to", to]);
        assert_ne!(code, 0, "{t}");
        let got = replies(&t);
        assert!(got.iter().any(|l| l.starts_with(want)), "for {to}: {got:?}");
    }
    // A relay domain (and its subdomains) is taken.
    let (code, t) = swaks(
        &server,
        &["--from", "a@client.test", "--to", "x@mx.relay.test"],
    );
    assert_eq!(code, 0, "{t}");
    let queued = server.stop_and_list(&dir);
    assert_eq!(queued.len(), 1, "only the relay-domain message");
    assert_eq!(queued[0].0, ["x@mx.relay.test"]);
}

#[test]
fn smtplib_unknown_user_is_550_5_1_1_and_known_ones_are_taken() {
    if !require_tool("python3") {
        return;
    }
    let dir = Dir::new("smtpd-smtplib");
    config(&dir, "");
    let server = Smtpd::start(&dir);
    let out = python(
        &server,
        r#"
import os, smtplib
s = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]), timeout=10)
print("ehlo", s.ehlo("client.test")[0])
print("esmtp", " ".join(sorted(s.esmtp_features)))
print("mail", *s.mail("s@client.test"))
for r in ["nobody@example.test", "alice@example.test", "info@example.test", "Bob@Example.TEST"]:
    c, m = s.rcpt(r)
    print("rcpt", c, m.decode())
c, m = s.data(b"Subject: hi\r\n\r\nhello\r\n")
print("data", c, m.decode().split(" as ")[0])
print("quit", s.quit()[0])
"#,
    );
    let got: Vec<&str> = out.lines().collect();
    let want = [
        "ehlo 250",
        "esmtp 8bitmime enhancedstatuscodes pipelining size smtputf8",
        "mail 250 b'2.1.0 Ok'",
        "rcpt 550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown",
        "rcpt 250 2.1.5 Ok",
        "rcpt 250 2.1.5 Ok",
        "rcpt 250 2.1.5 Ok",
        "data 250 2.0.0 Ok: queued",
        "quit 221",
    ];
    assert_eq!(got, want);
    let queued = server.stop_and_list(&dir);
    assert_eq!(queued.len(), 1);
    assert_eq!(
        queued[0].0,
        [
            "alice@example.test",
            "info@example.test",
            "Bob@example.test"
        ]
    );
    // Three recipients: no `for <...>` (it would leak a Bcc, B.7).
    let msg = String::from_utf8_lossy(&queued[0].1).into_owned();
    assert!(
        !msg.split("\r\n\r\n").next().unwrap().contains("\tfor <"),
        "{msg}"
    );
    assert!(msg.ends_with("Subject: hi\r\n\r\nhello\r\n"), "{msg}");
}

#[test]
fn swaks_pipelining_gets_every_reply_in_order() {
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("smtpd-pipeline");
    config(&dir, "");
    let server = Smtpd::start(&dir);
    let (code, t) = swaks(
        &server,
        &[
            "--pipeline",
            "--from",
            "s@client.test",
            "--to",
            "alice@example.test,bob@example.test",
        ],
    );
    assert_eq!(code, 0, "{t}");
    let codes: Vec<String> = replies(&t)
        .iter()
        .filter(|l| !l.starts_with("250-"))
        .map(|l| l[..3].to_string())
        .collect();
    // greeting, EHLO, MAIL, RCPT, RCPT, DATA, end of data, QUIT.
    assert_eq!(
        codes,
        ["220", "250", "250", "250", "250", "354", "250", "221"]
    );
    let queued = server.stop_and_list(&dir);
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].0, ["alice@example.test", "bob@example.test"]);
}

#[test]
fn too_big_is_552_at_mail_and_after_the_dot_and_nothing_is_queued() {
    if !require_tool("swaks") || !require_tool("python3") {
        return;
    }
    let dir = Dir::new("smtpd-size");
    config(&dir, "max_message_size = 2000\n");
    let server = Smtpd::start(&dir);
    let body = "x".repeat(70) + "\n";
    let body = body.repeat(60);
    let (code, t) = swaks(
        &server,
        &[
            "--from",
            "s@client.test",
            "--to",
            "alice@example.test",
            "--body",
            &body,
        ],
    );
    assert_ne!(code, 0, "{t}");
    let r = replies(&t);
    assert!(r.iter().any(|l| l.starts_with("552 5.3.4 ")), "{r:?}");
    let out = python(
        &server,
        r#"
import os, smtplib
s = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]), timeout=10)
s.ehlo("client.test")
print(s.esmtp_features["size"])
c, m = s.mail("s@client.test", ["SIZE=999999"])
print(c, m.decode()[:5])
"#,
    );
    assert_eq!(out, "2000\n552 5.3.4\n");
    assert!(server.stop_and_list(&dir).is_empty());
}

/// Reads from `s` until EOF or `limit`, returning what came.
fn read_all(s: &mut TcpStream, limit: Duration) -> String {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn idle_and_dripping_clients_are_cut_at_the_deadline() {
    let dir = Dir::new("smtpd-timeout");
    config(&dir, "command_timeout = 1\n");
    let server = Smtpd::start(&dir);
    // Idle: the greeting, then 421 after about a second, then EOF.
    let mut s = TcpStream::connect(server.addr).unwrap();
    let start = Instant::now();
    let got = read_all(&mut s, Duration::from_secs(8));
    assert!(got.starts_with("220 "), "{got}");
    assert!(got.contains("\r\n421 4.3.2 mx.example.test "), "{got}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // Dripping one byte every 300 ms never completes a line in time: the
    // deadline is per command line, not per read (mta-semantics B.5).
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut greeting = [0u8; 64];
    let _ = s.read(&mut greeting).unwrap();
    let start = Instant::now();
    for b in b"NOOP NOOP NOOP NOOP\r\n" {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let got = read_all(&mut s, Duration::from_secs(3));
    assert!(got.starts_with("421 4.3.2 "), "{got}");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn sessions_beyond_the_bound_get_421_4_7_0() {
    let dir = Dir::new("smtpd-bound");
    config(&dir, "max_sessions = 1\n");
    let server = Smtpd::start(&dir);
    let mut first = TcpStream::connect(server.addr).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 256];
    let n = first.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"220 "));
    let mut second = TcpStream::connect(server.addr).unwrap();
    let got = read_all(&mut second, Duration::from_secs(3));
    assert_eq!(
        got,
        "421 4.7.0 mx.example.test Error: too many connections\r\n"
    );
    // Once the first one leaves, a new session is served again.
    first.write_all(b"QUIT\r\n").unwrap();
    let got = read_all(&mut first, Duration::from_secs(3));
    assert!(got.starts_with("221 "), "{got}");
    let mut third = TcpStream::connect(server.addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = third.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"220 "),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // The refusal is logged (the log reader runs behind: poll briefly).
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let log = server.log.lock().unwrap().join("\n");
        if log.contains(": refused, 1 sessions at once") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no refusal in the log: {:?}", server.log.lock().unwrap());
}

#[test]
fn example_config_checks_clean() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/etc-mail");
    let out = cmd("postroom")
        .args(["check", "--config", dir])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The example users' rcfiles pass too.
    for user in ["alice", "bob", "carol"] {
        let rc = format!("{dir}/homes/{user}/.procmailrc");
        let out = cmd("postroom").args(["check", &rc]).output().unwrap();
        assert!(
            out.status.success(),
            "{rc}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_reports_every_settings_and_table_error_with_its_line() {
    let dir = Dir::new("smtpd-check");
    config(&dir, "listen = nowhere\nmax_hops = many\ncolour = blue\n");
    dir.write("etc/relay-domains", "relay.test\nbad..domain\n");
    let out = cmd("postroom")
        .args(["check", "--config"])
        .arg(dir.join("etc"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    insta::assert_snapshot!(text);
    // The server refuses to start on the same directory (EX_CONFIG).
    let out = cmd("postroom")
        .args(["smtpd", "--config"])
        .arg(dir.join("etc"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
}

/// Reads one whole reply (up to the `NNN ` line) from `r`.
fn read_reply(r: &mut BufReader<TcpStream>) -> String {
    let mut reply = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return reply;
        }
        reply.push_str(&line);
        if line.as_bytes().get(3) == Some(&b' ') {
            return reply;
        }
    }
}

/// Connects to `addr`, replies awaited 10 s at most; returns the writer,
/// the reader and the greeting.
fn connect(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>, String) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let greeting = read_reply(&mut r);
    (w, r, greeting)
}

/// Connects and goes as far as the `354` after DATA for one message to
/// alice, asserting each reply; returns the writer and the reader.
fn open_data(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let (mut w, mut r, _) = connect(addr);
    for (c, want) in [
        ("EHLO client.test", "250 "),
        ("MAIL FROM:<s@client.test>", "250 "),
        ("RCPT TO:<alice@example.test>", "250 "),
        ("DATA", "354 "),
    ] {
        w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        let got = read_reply(&mut r);
        assert!(got.lines().last().unwrap().starts_with(want), "{c}: {got}");
    }
    (w, r)
}

/// Sends each command alone and waits for its reply; returns the last
/// line of every reply, the greeting first.
fn converse(addr: SocketAddr, commands: &[&str]) -> Vec<String> {
    let (mut w, mut r, greeting) = connect(addr);
    let last = |reply: String| {
        reply
            .trim_end()
            .rsplit("\r\n")
            .next()
            .unwrap_or("")
            .to_string()
    };
    let mut out = vec![last(greeting)];
    for c in commands {
        w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        out.push(last(read_reply(&mut r)));
    }
    out
}

/// Waits up to 5 s for a log line containing `what`.
pub(crate) fn wait_log(server: &Smtpd, what: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if server.log.lock().unwrap().iter().any(|l| l.contains(what)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no `{what}` in the log: {:?}", server.log.lock().unwrap());
}

#[test]
fn sighup_reloads_clean_tables_and_keeps_the_old_ones_otherwise() {
    let dir = Dir::new("smtpd-hup");
    config(&dir, "");
    let server = Smtpd::start(&dir);
    let rcpt_carol = || {
        converse(
            server.addr,
            &[
                "EHLO client.test",
                "MAIL FROM:<s@client.test>",
                "RCPT TO:<carol@example.test>",
                "QUIT",
            ],
        )[3]
        .clone()
    };
    assert!(rcpt_carol().starts_with("550 5.1.1 "));
    let hup = || {
        let pid = nix::unistd::Pid::from_raw(server.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    };
    dir.write(
        "etc/users",
        "alice:homes/alice\nbob:homes/bob\ncarol:homes/carol\n",
    );
    hup();
    wait_log(&server, "tables reloaded");
    assert_eq!(rcpt_carol(), "250 2.1.5 Ok");
    // A broken table is refused whole: carol stays.
    dir.write("etc/users", "alice:homes/alice\nbad user:x\n");
    hup();
    wait_log(&server, "reload refused, the running tables stay");
    assert_eq!(rcpt_carol(), "250 2.1.5 Ok");
}

#[test]
fn past_ten_errors_each_reply_waits_a_second() {
    let dir = Dir::new("smtpd-soft");
    config(&dir, "");
    let server = Smtpd::start(&dir);
    let (mut w, mut r, _) = connect(server.addr);
    for i in 1..=10 {
        let start = Instant::now();
        w.write_all(b"BOGUS\r\n").unwrap();
        assert!(read_reply(&mut r).starts_with("500 5.5.2 "));
        // Loose: the machine may be busy; the delay would be a second.
        assert!(
            start.elapsed() < Duration::from_millis(900),
            "error {i} is fast"
        );
    }
    let start = Instant::now();
    w.write_all(b"BOGUS\r\n").unwrap();
    assert!(read_reply(&mut r).starts_with("500 5.5.2 "));
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "the eleventh waits"
    );
}

#[test]
fn a_message_dripped_after_354_is_cut_at_the_data_deadline_and_not_queued() {
    let dir = Dir::new("smtpd-data-deadline");
    config(&dir, "");
    dir.write(
        "etc/postroom.conf",
        "hostname = mx.example.test\nlisten = 127.0.0.1:0\nspool = ../spool\n\
         command_timeout = 10\ndata_timeout = 1\n",
    );
    let server = Smtpd::start(&dir);
    let (mut w, mut r) = open_data(server.addr);
    let start = Instant::now();
    for b in b"Subject: slow\r\n\r\nbody\r\n.\r\n" {
        if w.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        if start.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let got = read_reply(&mut r);
    assert!(got.starts_with("421 4.3.2 "), "{got}");
    assert!(server.stop_and_list(&dir).is_empty());
}

/// The example configuration (`examples/etc-mail`, its homes'
/// `.procmailrc` files and the sendmail stub) copied into `dir` with the
/// layout the rcfiles expect (`etc-mail/`, `sendmail-stub`, `state/`),
/// listening on a free port, the runner waiting for a flush (nothing is
/// delivered on arrival).
fn example_config(dir: &Dir) {
    crate::util::example_copy(
        dir,
        "",
        &[
            ("listen = 127.0.0.1:2525", "listen = 127.0.0.1:0"),
            ("queue_interval = 2", "queue_interval = 1d"),
            ("delivery_mode = background", "delivery_mode = queue"),
        ],
    );
}

/// Waits (at most 30 s) until `postroom queue --config etc` says the
/// queue is empty and `spool/maildrop` holds nothing: every delivery,
/// forward, DSN and submitted reply is done (a forward or a DSN is queued
/// before the entry it comes from is removed, so the queue is never empty
/// in between).
pub(crate) fn wait_settled(etc: &std::path::Path, spool: &std::path::Path) {
    let start = Instant::now();
    loop {
        let out = cmd("postroom")
            .args(["queue", "--config"])
            .arg(etc)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        let dropped = crate::util::names_in(&spool.join("maildrop"));
        if listing.contains("Mail queue is empty") && dropped.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not settled after 30 s: {listing} {dropped:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `postroom queue --config DIR [ARGS]`: its stdout.
fn postroom_queue(dir: &Dir, args: &[&str]) -> String {
    let out = cmd("postroom")
        .arg("queue")
        .args(args)
        .arg("--config")
        .arg(dir.join("etc-mail"))
        .output()
        .expect("run postroom queue");
    assert!(
        out.status.success(),
        "postroom queue {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (at most 20 s) until `rel` under `dir` is a directory holding a
/// file; returns that file's bytes.
pub(crate) fn wait_for_file(dir: &Dir, rel: &str) -> Vec<u8> {
    let start = Instant::now();
    loop {
        if let Ok(mut rd) = std::fs::read_dir(dir.join(rel))
            && let Some(Ok(f)) = rd.next()
        {
            return std::fs::read(f.path()).expect("read delivered file");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing in {rel} after 20 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn smtpd_delivers_through_the_example_rcfiles_on_flush_and_the_queue_empties() {
    if !require_tool("swaks") || !require_tool("formail") {
        return;
    }
    let dir = Dir::new("smtpd-e2e");
    example_config(&dir);
    let mut server = Smtpd::start_config(&dir.join("etc-mail"));
    for (to, extra) in [
        ("bob@example.test", "X-Test: plain"),
        ("alice@example.test", "X-Test: vacation"),
    ] {
        let (code, t) = swaks(
            &server,
            &[
                "--from",
                "sender@client.test",
                "--to",
                to,
                "--add-header",
                extra,
            ],
        );
        assert_eq!(code, 0, "{t}");
    }
    // queue_interval = 1d: both wait, and `postroom queue` reads them
    // while the server holds the spool.
    let listing = postroom_queue(&dir, &[]);
    assert!(listing.contains("pending bob@example.test\n"), "{listing}");
    assert!(
        listing.contains("pending alice@example.test\n"),
        "{listing}"
    );
    assert!(listing.contains("-- "), "{listing}");
    assert!(listing.contains(" in 2 requests.\n"), "{listing}");
    assert_eq!(
        postroom_queue(&dir, &["flush"]),
        "flush requested from the running server\n"
    );

    // bob's rcfile: DEFAULT=$MAILDIR/inbox/, MAILDIR under state/mail/bob
    // (made by the runner from mail_root). The runner's trace fields come
    // first, Return-Path from the envelope sender.
    let got = String::from_utf8(wait_for_file(&dir, "state/mail/bob/inbox/new")).unwrap();
    assert!(
        got.starts_with(
            "Return-Path: <sender@client.test>\nX-Original-To: bob@example.test\n\
             Delivered-To: bob@example.test\nReceived: from client.test"
        ),
        "{got}"
    );
    assert!(got.contains("\nX-Test: plain\n"), "{got}");
    assert!(!got.contains('\r'), "LF line ends for the agent: {got:?}");

    // alice: her inbox, and the vacation reply through the sendmail stub
    // (SENDMAIL=$HOME/../../../sendmail-stub writes state/outbox/000.eml).
    let got = String::from_utf8(wait_for_file(&dir, "state/mail/alice/inbox/new")).unwrap();
    assert!(
        got.contains("\nDelivered-To: alice@example.test\n"),
        "{got}"
    );
    assert!(
        got.starts_with("Return-Path: <sender@client.test>\n"),
        "{got}"
    );
    let reply = String::from_utf8(wait_for_file(&dir, "state/outbox")).unwrap();
    assert!(reply.starts_with("X-Stub-Argv: -oi -t\n"), "{reply}");
    assert!(reply.contains("\nTo: sender@client.test\n"), "{reply}");
    assert!(reply.contains("\nX-Loop: alice@example.test\n"), "{reply}");
    assert!(reply.contains("I am away until Monday"), "{reply}");

    // The entries are removed once both are delivered.
    let start = Instant::now();
    loop {
        let listing = postroom_queue(&dir, &[]);
        if listing == "Mail queue is empty\n" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{listing}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // SIGTERM: the runner and the server stop, exit 0.
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    // The log thread may still be reading the last lines.
    std::thread::sleep(Duration::from_millis(200));
    let log = server.log.lock().unwrap().join("\n");
    for user in ["bob", "alice"] {
        assert!(
            log.contains(&format!(": mailbox {user}: delivered\n")),
            "{log}"
        );
    }
    assert!(log.ends_with("postroom smtpd: stopped"), "{log}");

    // With no server, `queue` opens the spool itself and `queue flush`
    // runs the queue once here instead of leaving a marker.
    assert_eq!(postroom_queue(&dir, &[]), "Mail queue is empty\n");
    assert_eq!(
        postroom_queue(&dir, &["flush"]),
        "flushed: 0 entr(ies) looked at, no server running\n"
    );
    assert!(!dir.join("state/spool/flush").exists());
}

// ---- Faults: a client that goes away, restarts, kill -9, a corrupt
// entry, the hop limit. Every wait is bounded (≤ 20 s), loopback only.

/// Sends one message for `rcpt` with `header_and_body` (CRLF, no final
/// dot) command by command; returns the reply to the final dot.
pub(crate) fn send(addr: SocketAddr, rcpt: &str, header_and_body: &str) -> String {
    let got = converse(
        addr,
        &[
            "EHLO client.test",
            "MAIL FROM:<sender@client.test>",
            &format!("RCPT TO:<{rcpt}>"),
            "DATA",
            &format!("{header_and_body}."),
        ],
    );
    assert!(got[4].starts_with("354 "), "{got:?}");
    got[5].clone()
}

/// Sends one message that must be queued; returns its queue id.
pub(crate) fn queue_one(addr: SocketAddr, rcpt: &str, header_and_body: &str) -> String {
    let got = send(addr, rcpt, header_and_body);
    assert!(got.starts_with("250 2.0.0 Ok: queued as "), "{got}");
    got.rsplit(' ').next().unwrap().to_string()
}

/// The names in `rel` under `dir` (empty if it does not exist).
pub(crate) fn names(dir: &Dir, rel: &str) -> Vec<String> {
    crate::util::names_in(&dir.join(rel))
}

/// Sends `sig` to the server and waits (at most 20 s) for it to exit.
pub(crate) fn signal_and_wait(server: &mut Smtpd, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(server.child.id() as i32);
    nix::sys::signal::kill(pid, sig).unwrap();
    let start = Instant::now();
    while server.child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no exit on {sig}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `postroom smtpd` on the example configuration in `dir`.
fn start_example(dir: &Dir) -> Smtpd {
    Smtpd::start_config(&dir.join("etc-mail"))
}

/// Sets the example configuration's `queue_interval` (from 1d).
fn set_interval(dir: &Dir, to: &str) {
    let conf = String::from_utf8(dir.read("etc-mail/postroom.conf")).unwrap();
    assert!(conf.contains("\nqueue_interval = 1d\n"), "{conf}");
    let conf = conf.replace(
        "\nqueue_interval = 1d\n",
        &format!("\nqueue_interval = {to}\n"),
    );
    dir.write("etc-mail/postroom.conf", conf);
}

/// Waits until bob's inbox holds a message, then a further 3 s (three
/// runner intervals) so a second delivery would show; returns the files.
fn bobs_inbox_settled(dir: &Dir) -> Vec<Vec<u8>> {
    wait_for_file(dir, "state/mail/bob/inbox/new");
    std::thread::sleep(Duration::from_secs(3));
    names(dir, "state/mail/bob/inbox/new")
        .iter()
        .map(|n| dir.read(&format!("state/mail/bob/inbox/new/{n}")))
        .collect()
}

#[test]
fn a_client_gone_mid_data_leaves_nothing_and_the_server_goes_on() {
    let dir = Dir::new("smtpd-gone-mid-data");
    config(&dir, "");
    let server = Smtpd::start(&dir);
    // Cut in the body, and cut inside the end marker (`CRLF .` without
    // its CRLF): neither is a whole message (RFC 5321 4.1.1.4).
    for cut in [
        "Subject: cut\r\n\r\nfirst half\r\n",
        "Subject: cut\r\n\r\nfirst half\r\n.",
    ] {
        let (mut w, _) = open_data(server.addr);
        w.write_all(cut.as_bytes()).unwrap();
        w.shutdown(std::net::Shutdown::Both).unwrap();
    }
    // Both sessions saw the EOF; nothing reached the spool, not even tmp/.
    let start = Instant::now();
    while server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.ends_with(": disconnect"))
        .count()
        < 2
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            server.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(names(&dir, "spool/active"), Vec::<String>::new());
    assert_eq!(names(&dir, "spool/tmp"), Vec::<String>::new());
    // The server keeps serving: a whole message right after is queued.
    let got = send(
        server.addr,
        "bob@example.test",
        "Subject: ok\r\n\r\nwhole\r\n",
    );
    assert!(got.starts_with("250 2.0.0 Ok: queued as "), "{got}");
    let queued = server.stop_and_list(&dir);
    assert_eq!(queued.len(), 1, "only the whole message");
    assert_eq!(queued[0].0, ["bob@example.test"]);
    // After a restart nothing partial is left anywhere in the spool.
    let server = Smtpd::start(&dir);
    assert_eq!(names(&dir, "spool/tmp"), Vec::<String>::new());
    assert_eq!(names(&dir, "spool/corrupt"), Vec::<String>::new());
    let queued = server.stop_and_list(&dir);
    assert_eq!(queued.len(), 1);
    assert!(
        !queued
            .iter()
            .any(|(_, m)| m.windows(10).any(|w| w == b"first half"))
    );
}

#[test]
fn a_queued_message_survives_sigterm_and_is_delivered_once_after_restart() {
    if !require_tool("formail") {
        return;
    }
    let dir = Dir::new("smtpd-restart");
    example_config(&dir);
    // queue_interval = 1d: the runner's start-up pass finds an empty spool
    // and then waits; the message stays queued.
    let mut server = start_example(&dir);
    let id = queue_one(
        server.addr,
        "bob@example.test",
        "Subject: restart\r\n\r\nkept\r\n",
    );
    signal_and_wait(&mut server, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(server.child.wait().unwrap().code(), Some(0));
    assert_eq!(
        names(&dir, "state/mail/bob/inbox/new"),
        Vec::<String>::new()
    );
    assert_eq!(names(&dir, "state/spool/active"), std::slice::from_ref(&id));

    set_interval(&dir, "1");
    let server = start_example(&dir);
    let got = bobs_inbox_settled(&dir);
    assert_eq!(got.len(), 1, "delivered exactly once");
    let msg = String::from_utf8_lossy(&got[0]);
    assert!(msg.contains("\nSubject: restart\n\nkept\n"), "{msg}");
    assert_eq!(
        msg.matches("\nDelivered-To: bob@example.test\n").count(),
        1,
        "{msg}"
    );
    assert_eq!(names(&dir, "state/spool/active"), Vec::<String>::new());
    drop(server);
}

#[test]
fn kill_9_right_after_the_250_and_the_message_is_still_delivered() {
    if !require_tool("formail") {
        return;
    }
    let dir = Dir::new("smtpd-kill9");
    example_config(&dir);
    let mut server = start_example(&dir);
    // The 250 to the dot, then SIGKILL before QUIT: no chance to tidy up.
    let (mut w, mut r, _) = connect(server.addr);
    let mut last = String::new();
    for c in [
        "EHLO client.test",
        "MAIL FROM:<sender@client.test>",
        "RCPT TO:<bob@example.test>",
        "DATA",
        "Subject: killed\r\n\r\nstill here\r\n.",
    ] {
        w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        last = read_reply(&mut r);
    }
    assert!(last.starts_with("250 2.0.0 Ok: queued as "), "{last}");
    signal_and_wait(&mut server, nix::sys::signal::Signal::SIGKILL);
    drop(w);
    drop(r);

    set_interval(&dir, "1");
    let server = start_example(&dir);
    // The restart found the entry whole: nothing partial, nothing corrupt.
    wait_log(&server, ": 1 entries, 0 partial removed");
    let got = bobs_inbox_settled(&dir);
    assert_eq!(got.len(), 1, "delivered exactly once");
    assert!(
        String::from_utf8_lossy(&got[0]).contains("\nSubject: killed\n\nstill here\n"),
        "{:?}",
        String::from_utf8_lossy(&got[0])
    );
    drop(server);
}

#[test]
fn a_corrupt_entry_is_moved_to_corrupt_and_reported_never_deleted() {
    let dir = Dir::new("smtpd-corrupt");
    config(&dir, "");
    let server = Smtpd::start(&dir);
    let id = queue_one(
        server.addr,
        "alice@example.test",
        "Subject: c\r\n\r\nkeep me\r\n",
    );
    // The entry's file as queued, and a state beside it that is garbage.
    let entry = dir.read(&format!("spool/active/{id}"));
    dir.write(&format!("spool/active/{id}.env"), "not an envelope\n");
    let queue = |args: &[&str]| {
        let out = cmd("postroom")
            .arg("queue")
            .args(args)
            .arg("--config")
            .arg(dir.join("etc"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // While the server owns the spool, `postroom queue` only reads: the
    // entry is reported as unreadable and left where it is.
    let listing = queue(&[]);
    assert!(
        listing.contains(&format!(
            "unreadable (being written or corrupt): {id}: envelope "
        )),
        "{listing}"
    );
    let both = [id.clone(), format!("{id}.env")];
    assert_eq!(names(&dir, "spool/active"), both);
    // The runner's next pass (a flush) moves it aside and logs it.
    queue(&["flush"]);
    wait_log(&server, &format!("corrupt: {id} moved to "));
    assert_eq!(names(&dir, "spool/active"), Vec::<String>::new());
    assert_eq!(names(&dir, "spool/corrupt"), both);
    assert_eq!(dir.read(&format!("spool/corrupt/{id}")), entry);
    assert_eq!(
        dir.read(&format!("spool/corrupt/{id}.env")),
        b"not an envelope\n"
    );
    drop(server);
}

#[test]
fn more_received_fields_than_max_hops_is_554_5_4_6_at_end_of_data() {
    let dir = Dir::new("smtpd-hops");
    config(&dir, "max_hops = 3\n");
    let server = Smtpd::start(&dir);
    let hops = |n: usize| "Received: from a by b; x\r\n".repeat(n) + "Subject: h\r\n\r\nbody\r\n";
    // max_hops counts our own Received: field too (settings.rs, mta-semantics
    // B.7): two earlier hops plus ours make three, which is allowed.
    let got = send(server.addr, "alice@example.test", &hops(2));
    assert!(got.starts_with("250 2.0.0 Ok: queued as "), "{got}");
    for n in [3, 4, 10] {
        let got = send(server.addr, "alice@example.test", &hops(n));
        assert_eq!(got, "554 5.4.6 Error: too many hops", "{n} Received fields");
    }
    let queued = server.stop_and_list(&dir);
    assert_eq!(queued.len(), 1, "only the two-hop message");
}

/// With no server running, `postroom queue` opens the spool itself, and
/// `Spool::open`'s recovery moves a corrupt entry to `corrupt/`: the
/// listing must report it, and the entry must be kept.
#[test]
fn without_a_server_postroom_queue_reports_the_corrupt_entry_it_moves() {
    let dir = Dir::new("smtpd-corrupt-offline");
    config(&dir, "");
    let server = Smtpd::start(&dir);
    let id = queue_one(
        server.addr,
        "alice@example.test",
        "Subject: c\r\n\r\nkeep\r\n",
    );
    drop(server);
    dir.write(&format!("spool/active/{id}"), "not an envelope\n");
    let out = cmd("postroom")
        .args(["queue", "--config"])
        .arg(dir.join("etc"))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(names(&dir, "spool/corrupt"), std::slice::from_ref(&id));
    assert_eq!(
        dir.read(&format!("spool/corrupt/{id}")),
        b"not an envelope\n"
    );
    assert!(
        listing.contains(&format!("corrupt: {id} moved to ")),
        "{listing}"
    );
}

#[test]
fn a_deferred_message_survives_sigterm_and_is_delivered_once_after_restart() {
    if !require_tool("formail") {
        return;
    }
    let dir = Dir::new("smtpd-deferred-restart");
    example_config(&dir);
    // A `deliver` that fails temporarily (EX_TEMPFAIL) while `tempfail`
    // exists, and is the real one otherwise.
    let flag = dir.write("tempfail", "");
    let real = crate::util::bin("deliver");
    let script = dir.write(
        "fake-deliver",
        format!(
            "#!/bin/sh\nif [ -e '{}' ]; then cat >/dev/null; exit 75; fi\nexec '{}' \"$@\"\n",
            flag.display(),
            real.display()
        ),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    set_interval(&dir, "1");
    let conf = String::from_utf8(dir.read("etc-mail/postroom.conf")).unwrap();
    assert!(conf.contains("\nmin_backoff = 5m\n"), "{conf}");
    let conf = conf.replace("\nmin_backoff = 5m\n", "\nmin_backoff = 1\n")
        + &format!("deliver = {}\n", script.display());
    dir.write("etc-mail/postroom.conf", conf);

    let mut server = start_example(&dir);
    let id = queue_one(
        server.addr,
        "bob@example.test",
        "Subject: later\r\n\r\nretried\r\n",
    );
    wait_log(&server, "1 deferred");
    signal_and_wait(&mut server, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(server.child.wait().unwrap().code(), Some(0));
    assert_eq!(
        names(&dir, "state/mail/bob/inbox/new"),
        Vec::<String>::new()
    );
    assert_eq!(
        names(&dir, "state/spool/active"),
        [id.clone(), format!("{id}.env")]
    );
    let envelope = String::from_utf8(dir.read(&format!("state/spool/active/{id}.env"))).unwrap();

    // The temporary failure is on disk: bob is `deferred`, with attempts.
    assert!(envelope.contains("\nrcpt deferred "), "{envelope}");
    std::fs::remove_file(&flag).unwrap();
    let server = start_example(&dir);
    let got = bobs_inbox_settled(&dir);
    assert_eq!(
        got.len(),
        1,
        "delivered exactly once; envelope was {envelope}"
    );
    let msg = String::from_utf8_lossy(&got[0]);
    assert!(msg.contains("\nSubject: later\n\nretried\n"), "{msg}");
    assert_eq!(names(&dir, "state/spool/active"), Vec::<String>::new());
    drop(server);
}

/// `config` with messages delivered as soon as they are queued
/// (`delivery_mode = background`, the default) by `workers` at once.
fn config_on_arrival(dir: &Dir, workers: usize) {
    config(dir, &format!("max_deliveries = {workers}\n"));
    let conf = String::from_utf8(dir.read("etc/postroom.conf")).unwrap();
    dir.write(
        "etc/postroom.conf",
        conf.replace("delivery_mode = queue\n", ""),
    );
}

#[test]
fn a_message_is_delivered_on_arrival_without_waiting_for_a_run() {
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("smtpd-arrival");
    config_on_arrival(&dir, 2);
    dir.write(
        "etc/homes/bob/.procmailrc",
        format!("DEFAULT={}/\n", dir.join("bob-inbox").display()),
    );
    let server = Smtpd::start(&dir);
    let (code, t) = swaks(
        &server,
        &["--from", "sender@client.test", "--to", "bob@example.test"],
    );
    assert_eq!(code, 0, "{t}");
    // queue_interval = 1d: only the arrival can have started it.
    let start = Instant::now();
    while names(&dir, "bob-inbox/new").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not delivered on arrival"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server.stop_and_list(&dir).is_empty(),
        "the entry is removed"
    );
}

#[test]
fn two_messages_are_delivered_at_the_same_time() {
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("smtpd-parallel");
    config_on_arrival(&dir, 4);
    // Each delivery marks itself started, waits (at most 10 s) until it
    // sees a second start, and writes how many starts it saw. Deliveries
    // one after the other: the first sees only itself.
    let marks = dir.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    std::fs::create_dir_all(dir.join("seen")).unwrap();
    dir.write(
        "etc/homes/bob/.procmailrc",
        format!(
            "SHELL=/bin/sh\nM={}\nS={}\n:0\n| f=`mktemp $M/started.XXXXXX`; i=0; \
             while [ `ls $M | wc -l` -lt 2 ] && [ $i -lt 100 ]; do sleep 0.1; i=`expr $i + 1`; done; \
             n=`basename $f`; ls $M | wc -l > $S/$n.tmp; mv $S/$n.tmp $S/$n.seen\n",
            marks.display(),
            dir.join("seen").display()
        ),
    );
    let server = Smtpd::start(&dir);
    for n in 0..2 {
        let (code, t) = swaks(
            &server,
            &[
                "--from",
                "sender@client.test",
                "--to",
                "bob@example.test",
                "--header",
                &format!("Subject: {n}"),
            ],
        );
        assert_eq!(code, 0, "{t}");
    }
    let start = Instant::now();
    let seen = loop {
        let seen: Vec<String> = names(&dir, "seen")
            .iter()
            .filter(|n| n.ends_with(".seen"))
            .map(|n| {
                let text = String::from_utf8(dir.read(&format!("seen/{n}"))).unwrap();
                text.trim().to_string()
            })
            .collect();
        if seen.len() == 2 {
            break seen;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "deliveries did not end: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(seen, ["2", "2"], "each saw the other start");
    assert!(server.stop_and_list(&dir).is_empty());
}
