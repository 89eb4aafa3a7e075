//! Tests of the relay client (`smtp::client`) against real servers on
//! 127.0.0.1: Python's aiosmtpd (`fixtures/smtp/sink.py`, which writes
//! each message and its envelope to a directory), Postfix's `smtp-sink`,
//! and `fixtures/smtp/faulty.py`, a raw-socket server that misbehaves in
//! one chosen way. Also the mailertable's load-time diagnostics
//! (`fixtures/mailertable/`). Every server is a child process killed by a
//! guard, even when a test panics; every wait is bounded.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use postroom::queue::{Attempt, Failure};
use postroom::route::{self, Options};
use postroom::smtp::client::{self, Connection, OutParams, Timeouts};
use postroom::status::Class;

use crate::util::Dir;

/// Debian's Python: the one on PATH may lack aiosmtpd.
const PYTHON: &str = "/usr/bin/python3";
const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// A server process, killed and reaped when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn have_aiosmtpd() -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    crate::util::require(
        ok,
        "python3-aiosmtpd (/usr/bin/python3 -c 'import aiosmtpd')",
    )
}

pub(crate) fn have_python() -> bool {
    crate::util::require(Path::new(PYTHON).exists(), "/usr/bin/python3")
}

fn have_smtp_sink() -> bool {
    crate::util::require(
        Path::new(SMTP_SINK).exists(),
        "postfix's /usr/sbin/smtp-sink",
    )
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/smtp")
        .join(name)
}

/// Starts a fixture script that prints `PORT n` once it listens.
pub(crate) fn start_script(script: &str, args: &[&str]) -> Server {
    let mut child = Command::new(PYTHON)
        .arg(fixture(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start python");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let mut server = Server { child, port: 0 };
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{script} did not say its port within 20 s"));
    server.port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{script} said {line:?}"));
    server
}

/// aiosmtpd writing into `dir`, with sink.py's `args`.
pub(crate) fn sink(dir: &Path, args: &[&str]) -> Server {
    let mut all = vec!["--dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    start_script("sink.py", &all)
}

/// faulty.py in `mode`, logging commands to `log`.
pub(crate) fn faulty(mode: &str, log: &Path, args: &[&str]) -> Server {
    let mut all = vec![mode, "0", "--log", log.to_str().unwrap()];
    all.extend_from_slice(args);
    start_script("faulty.py", &all)
}

/// A port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Postfix's smtp-sink with `opts`, dumping each message into `dir`.
fn smtp_sink(dir: &Path, opts: &[&str]) -> Server {
    let port = free_port();
    let mut cmd = Command::new(SMTP_SINK);
    // As root it must be told whose rights to take (smtp-sink(1) -u).
    if unsafe { libc::geteuid() } == 0 {
        cmd.args(["-u", "root"]);
    }
    let dump = format!("{}/%M.", dir.display());
    cmd.args(["-d", &dump])
        .args(opts)
        .arg(format!("127.0.0.1:{port}"))
        .arg("10")
        .stdout(Stdio::null());
    let server = Server {
        child: cmd.spawn().expect("start smtp-sink"),
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "smtp-sink did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// Tight deadlines for tests.
fn quick() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        ..Timeouts::all(Duration::from_secs(1))
    }
}

fn open(server: &Server) -> Connection {
    client::connect("127.0.0.1", server.port, "client.test", true, &quick())
        .unwrap_or_else(|f| panic!("connect: {f:?}"))
}

fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Waits (bounded) until `dir` holds `n` files ending in `suffix`; their
/// paths, sorted.
pub(crate) fn wait_files(dir: &Path, suffix: &str, n: usize) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut got: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.ends_with(suffix) && !name.starts_with(".")
            })
            .collect();
        if got.len() >= n || Instant::now() > deadline {
            got.sort();
            assert_eq!(got.len(), n, "files *{suffix} in {}", dir.display());
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The envelope sink.py saved with message `n`.
fn envelope(dir: &Path, n: usize) -> String {
    std::fs::read_to_string(dir.join(format!("{n}.json"))).unwrap()
}

fn failed(a: &Attempt) -> &Failure {
    match a {
        Attempt::Failed(f) => f,
        Attempt::Delivered => panic!("delivered, want a failure"),
    }
}

/// A message with the lines dot-stuffing must carry through.
const DOTS: &[u8] = b"From: a@client.test\r\nTo: b@sink.test\r\nSubject: dots\r\n\r\nline one\r\n.\r\n..\r\n.x\r\n...and more\r\nlast .\r\n";

#[test]
fn aiosmtpd_three_recipients_one_refused() {
    if !have_aiosmtpd() {
        return;
    }
    let d = Dir::new("relay-three");
    let s = sink(d.path(), &["--pipelining", "--refuse", "b@sink.test"]);
    let mut c = open(&s);
    assert!(c.capabilities().pipelining, "{:?}", c.capabilities());
    let to = rcpts(&["a@sink.test", "b@sink.test", "c@sink.test"]);
    let got = c
        .send("sender@client.test", &to, &OutParams::default(), DOTS)
        .expect("transaction");
    assert_eq!(got[0], Attempt::Delivered);
    assert_eq!(got[2], Attempt::Delivered);
    let f = failed(&got[1]);
    assert_eq!((f.class, f.status()), (Class::Perm, "5.1.1".to_string()));
    assert_eq!(
        f.diagnostic,
        "smtp; 550 5.1.1 <b@sink.test>: Recipient address rejected"
    );
    assert_eq!(f.remote.as_deref(), Some("127.0.0.1"));
    c.quit();
    wait_files(d.path(), ".eml", 1);
    assert_eq!(d.read("1.eml"), DOTS, "dot-stuffing round trip");
    let env = envelope(d.path(), 1);
    assert!(
        env.contains(r#""rcpt_tos": ["a@sink.test", "c@sink.test"]"#),
        "{env}"
    );
    assert!(
        env.contains(r#""mail_from": "sender@client.test""#),
        "{env}"
    );
    assert!(env.contains(r#""helo": "client.test""#), "{env}");
}

#[test]
fn aiosmtpd_gets_crlf_and_labels() {
    // A message with bare LF line ends goes out with CRLF (B.6); 8-bit
    // content gets BODY=8BITMIME, and SIZE= goes with every MAIL.
    if !have_aiosmtpd() {
        return;
    }
    let d = Dir::new("relay-labels");
    let s = sink(d.path(), &[]);
    let mut c = open(&s);
    assert!(
        !c.capabilities().pipelining,
        "aiosmtpd alone does not offer it"
    );
    let lf = b"Subject: lf\n\nline\n.\nend \xc3\xa9t\xc3\xa9\n";
    let got = c.send(
        "s@client.test",
        &rcpts(&["a@sink.test"]),
        &OutParams::default(),
        lf,
    );
    assert_eq!(got, Ok(vec![Attempt::Delivered]));
    let plain = b"Subject: plain\r\n\r\nascii only\r\n";
    let got = c.send("", &rcpts(&["a@sink.test"]), &OutParams::default(), plain);
    assert_eq!(got, Ok(vec![Attempt::Delivered]));
    c.quit();
    wait_files(d.path(), ".eml", 2);
    assert_eq!(
        d.read("1.eml"),
        b"Subject: lf\r\n\r\nline\r\n.\r\nend \xc3\xa9t\xc3\xa9\r\n"
    );
    let env = envelope(d.path(), 1);
    assert!(env.contains(r#""BODY=8BITMIME""#), "{env}");
    // RFC 1870: the size with CRLF line ends, without the stuffed dot.
    let crlf = lf.len() + lf.iter().filter(|&&b| b == b'\n').count();
    assert!(env.contains(&format!(r#""SIZE={crlf}""#)), "{env}");
    let env = envelope(d.path(), 2);
    assert!(!env.contains("BODY="), "7-bit message unlabelled: {env}");
    assert!(
        env.contains(r#""mail_from": "<>""#),
        "null sender stays <>: {env}"
    );
}

#[test]
fn aiosmtpd_one_connection_carries_several_messages() {
    // Reuse over a backlog; after a transaction without an accepted
    // recipient the next one starts with RSET and still arrives.
    if !have_aiosmtpd() {
        return;
    }
    let d = Dir::new("relay-reuse");
    let s = sink(d.path(), &["--refuse", "no@sink.test", "--pipelining"]);
    let mut c = open(&s);
    let p = OutParams::default();
    let msg = |n: u8| [b"Subject: ", &[b'0' + n][..], b"\r\n\r\nbody\r\n"].concat();
    let got = c.send("s@client.test", &rcpts(&["a@sink.test"]), &p, &msg(1));
    assert_eq!(got, Ok(vec![Attempt::Delivered]));
    let got = c
        .send("s@client.test", &rcpts(&["no@sink.test"]), &p, &msg(2))
        .unwrap();
    assert_eq!(failed(&got[0]).class, Class::Perm);
    assert!(c.is_usable());
    let got = c.send("s@client.test", &rcpts(&["b@sink.test"]), &p, &msg(3));
    assert_eq!(got, Ok(vec![Attempt::Delivered]));
    c.quit();
    wait_files(d.path(), ".eml", 2);
    assert_eq!(d.read("1.eml"), msg(1));
    assert_eq!(d.read("2.eml"), msg(3));
    assert!(envelope(d.path(), 2).contains(r#""rcpt_tos": ["b@sink.test"]"#));
}

#[test]
fn aiosmtpd_size_and_deferral() {
    // Over the advertised SIZE: a permanent 5.3.4 without sending, and the
    // connection stays good. A 451 to one RCPT defers only that one.
    if !have_aiosmtpd() {
        return;
    }
    let d = Dir::new("relay-size");
    let s = sink(d.path(), &["--size", "200", "--defer", "later@sink.test"]);
    let mut c = open(&s);
    assert_eq!(c.capabilities().size, Some(200));
    let big = [vec![b'x'; 298], b"\r\n".to_vec()].concat();
    let f = c
        .send(
            "s@client.test",
            &rcpts(&["a@sink.test"]),
            &OutParams::default(),
            &big,
        )
        .expect_err("too big");
    assert_eq!((f.class, f.status()), (Class::Perm, "5.3.4".to_string()));
    assert!(
        f.diagnostic
            .contains("message size 300 exceeds the size limit 200"),
        "{}",
        f.diagnostic
    );
    let to = rcpts(&["later@sink.test", "a@sink.test"]);
    let got = c
        .send("s@client.test", &to, &OutParams::default(), b"small\r\n")
        .unwrap();
    let f = failed(&got[0]);
    assert_eq!((f.class, f.status()), (Class::Temp, "4.2.0".to_string()));
    assert_eq!(got[1], Attempt::Delivered);
    c.quit();
    wait_files(d.path(), ".eml", 1);
    assert_eq!(d.read("1.eml"), b"small\r\n");
}

#[test]
fn aiosmtpd_eight_bit_to_a_seven_bit_server() {
    // No 8BITMIME offered: a message that came in as BODY=8BITMIME fails
    // 5.6.3 before anything is sent; unlabelled 8-bit goes out as it is
    // (pass8), and this strict server then refuses it after the dot, which
    // fails the accepted recipient with the server's reply.
    if !have_aiosmtpd() {
        return;
    }
    let d = Dir::new("relay-7bit");
    let s = sink(d.path(), &["--seven-bit"]);
    let mut c = open(&s);
    assert!(!c.capabilities().eight_bit_mime);
    let msg = b"Subject: x\r\n\r\ncaf\xc3\xa9\r\n";
    let declared = OutParams::from_envelope("BODY=8BITMIME");
    let f = c
        .send("s@client.test", &rcpts(&["a@sink.test"]), &declared, msg)
        .expect_err("5.6.3");
    assert_eq!((f.class, f.status()), (Class::Perm, "5.6.3".to_string()));
    let got = c
        .send(
            "s@client.test",
            &rcpts(&["a@sink.test"]),
            &OutParams::default(),
            msg,
        )
        .unwrap();
    let f = failed(&got[0]);
    assert_eq!(f.class, Class::Perm);
    assert_eq!(f.diagnostic, "smtp; 500 Error: strict ASCII mode");
    let got = c.send(
        "s@client.test",
        &rcpts(&["a@sink.test"]),
        &declared,
        b"ascii\r\n",
    );
    assert_eq!(
        got,
        Ok(vec![Attempt::Delivered]),
        "7-bit content goes anyway"
    );
    c.quit();
    wait_files(d.path(), ".eml", 1);
}

#[test]
fn aiosmtpd_smtputf8_only_when_offered() {
    if !have_aiosmtpd() {
        return;
    }
    let d = Dir::new("relay-utf8");
    let s = sink(d.path(), &[]);
    let mut c = open(&s);
    let to = rcpts(&["jö@sink.test", "a@sink.test"]);
    let got = c
        .send("s@client.test", &to, &OutParams::default(), b"x\r\n")
        .unwrap();
    let f = failed(&got[0]);
    assert_eq!((f.class, f.status()), (Class::Perm, "5.6.7".to_string()));
    assert_eq!(got[1], Attempt::Delivered);
    let f = c
        .send("jö@client.test", &to[1..], &OutParams::default(), b"x\r\n")
        .expect_err("sender needs SMTPUTF8");
    assert_eq!(f.status(), "5.6.7");
    c.quit();
    let d2 = Dir::new("relay-utf8-on");
    let s2 = sink(d2.path(), &["--smtputf8"]);
    let mut c = open(&s2);
    let got = c.send("s@client.test", &to, &OutParams::default(), b"x\r\n");
    assert_eq!(got, Ok(vec![Attempt::Delivered, Attempt::Delivered]));
    c.quit();
    wait_files(d2.path(), ".eml", 1);
    let env = envelope(d2.path(), 1);
    assert!(env.contains(r#""SMTPUTF8""#), "{env}");
    assert!(env.contains(r#""j\u00f6@sink.test""#), "{env}");
}

/// The smtp-sink dump files in `dir`, waiting for `n`.
fn dumps(dir: &Path, n: usize) -> Vec<String> {
    wait_files(dir, "", n)
        .iter()
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect()
}

#[test]
fn smtp_sink_esmtp_pipelined() {
    if !have_smtp_sink() {
        return;
    }
    let d = Dir::new("relay-sink");
    let s = smtp_sink(d.path(), &[]);
    let mut c = open(&s);
    let caps = c.capabilities().clone();
    assert!(
        caps.esmtp && caps.pipelining && caps.eight_bit_mime,
        "{caps:?}"
    );
    let msg = b"Subject: s\r\n\r\n\xe9\r\n.\r\n";
    let got = c.send(
        "s@client.test",
        &rcpts(&["a@sink.test", "b@sink.test"]),
        &OutParams::default(),
        msg,
    );
    assert_eq!(got, Ok(vec![Attempt::Delivered, Attempt::Delivered]));
    c.quit();
    let dump = &dumps(d.path(), 1)[0];
    assert!(dump.contains("X-Client-Proto: ESMTP\n"), "{dump}");
    assert!(
        dump.contains("X-Mail-Args: <s@client.test> BODY=8BITMIME\n"),
        "{dump}"
    );
    assert!(
        dump.contains("X-Rcpt-Args: <a@sink.test>\nX-Rcpt-Args: <b@sink.test>\n"),
        "{dump}"
    );
    assert!(dump.contains("Subject: s\n\n\u{fffd}\n.\n"), "{dump}");
}

#[test]
fn smtp_sink_helo_fallback_and_lockstep() {
    // -e: no ESMTP, so EHLO gets 5xx and the client says HELO; -p: no
    // PIPELINING, lock-step. esmtp=false (the `smtp` mailer): HELO only.
    if !have_smtp_sink() {
        return;
    }
    let cases: [(&[&str], bool, &str); 3] = [
        (&["-e"], true, "SMTP"),
        (&["-p"], true, "ESMTP"),
        (&[], false, "SMTP"),
    ];
    for (opts, esmtp, proto) in cases {
        let d = Dir::new("relay-helo");
        let s = smtp_sink(d.path(), opts);
        let mut c = client::connect("127.0.0.1", s.port, "client.test", esmtp, &quick())
            .unwrap_or_else(|f| panic!("{opts:?}: {f:?}"));
        assert_eq!(c.capabilities().esmtp, proto == "ESMTP", "{opts:?}");
        assert!(!c.capabilities().pipelining, "{opts:?}");
        let got = c.send(
            "s@client.test",
            &rcpts(&["a@sink.test", "b@sink.test"]),
            &OutParams::default(),
            b"hi\r\n",
        );
        assert_eq!(
            got,
            Ok(vec![Attempt::Delivered, Attempt::Delivered]),
            "{opts:?}"
        );
        c.quit();
        let dump = &dumps(d.path(), 1)[0];
        assert!(
            dump.contains(&format!("X-Client-Proto: {proto}\n")),
            "{opts:?}: {dump}"
        );
        assert!(dump.contains("X-Helo-Args: client.test\n"), "{dump}");
    }
}

#[test]
fn smtp_sink_refusals() {
    // smtp-sink -f/-r refuse a command with 500 5.3.0 / 450 4.3.0; -Q
    // answers 421 and hangs up.
    if !have_smtp_sink() {
        return;
    }
    let to = rcpts(&["a@sink.test", "b@sink.test"]);
    let send = |opts: &[&str]| {
        let d = Dir::new("relay-refuse");
        let s = smtp_sink(d.path(), opts);
        let mut c = open(&s);
        let got = c.send("s@client.test", &to, &OutParams::default(), b"hi\r\n");
        let usable = c.is_usable();
        c.quit();
        (got, usable)
    };
    let hard = "smtp; 500 5.3.0 Error: command failed";
    let soft = "smtp; 450 4.3.0 Error: command failed";
    let (got, _) = send(&["-f", "MAIL"]);
    let f = got.expect_err("MAIL refused");
    assert_eq!(
        (f.class, f.status(), f.diagnostic.as_str()),
        (Class::Perm, "5.3.0".into(), hard)
    );
    let (got, _) = send(&["-r", "MAIL"]);
    let f = got.expect_err("MAIL deferred");
    assert_eq!(
        (f.class, f.status(), f.diagnostic.as_str()),
        (Class::Temp, "4.3.0".into(), soft)
    );
    let (got, usable) = send(&["-f", "DATA"]);
    let f = common(&got);
    assert_eq!((f.class, f.diagnostic.as_str()), (Class::Perm, hard));
    assert!(usable);
    let (got, _) = send(&["-r", "."]);
    let f = common(&got);
    assert_eq!((f.class, f.diagnostic.as_str()), (Class::Temp, soft));
    let (got, usable) = send(&["-Q", "RCPT"]);
    let got = got.expect("per recipient");
    let first = failed(&got[0]);
    assert_eq!(first.class, Class::Temp);
    assert!(first.diagnostic.starts_with("smtp; 421 "), "{first:?}");
    let second = failed(&got[1]);
    assert_eq!(
        (second.class, second.status()),
        (Class::Temp, "4.4.2".into())
    );
    assert!(!usable, "a 421 ends the connection");
}

#[test]
fn smtp_sink_named_like_us_is_a_loop() {
    // C.3: a route that leads back to ourselves bounces with 5.4.6.
    if !have_smtp_sink() {
        return;
    }
    let d = Dir::new("relay-loop");
    let s = smtp_sink(d.path(), &["-h", "Client.Test"]);
    let f = client::connect("127.0.0.1", s.port, "client.test", true, &quick())
        .err()
        .expect("a loop");
    assert_eq!((f.class, f.status()), (Class::Perm, "5.4.6".to_string()));
    assert!(
        f.diagnostic
            .contains("mail for 127.0.0.1 loops back to myself"),
        "{}",
        f.diagnostic
    );
}

/// Runs a faulty.py mode: the connection's result, or the send's, and how
/// long it all took.
fn fault(mode: &str, size: usize) -> (Result<Vec<Attempt>, Failure>, Duration, String) {
    let d = Dir::new("relay-fault");
    let log = d.join("log");
    let s = faulty(mode, &log, &[]);
    let start = Instant::now();
    let result =
        client::connect("127.0.0.1", s.port, "client.test", true, &quick()).and_then(|mut c| {
            // A header, then lines of 100 octets: `size` + 16 in all.
            let line = [b"x".repeat(98), b"\r\n".to_vec()].concat();
            let msg = [b"Subject: big\r\n\r\n".to_vec(), line.repeat(size / 100)].concat();
            let r = c.send(
                "s@client.test",
                &rcpts(&["a@f.test", "b@f.test"]),
                &OutParams::default(),
                &msg,
            );
            c.quit();
            r
        });
    let took = start.elapsed();
    drop(s);
    let log = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
    (result, took, log)
}

/// The one failure every recipient got (or the whole-connection one).
fn common(result: &Result<Vec<Attempt>, Failure>) -> Failure {
    match result {
        Err(f) => f.clone(),
        Ok(v) => {
            assert_eq!(v.len(), 2);
            assert_eq!(v[0], v[1], "both recipients fail alike");
            failed(&v[0]).clone()
        }
    }
}

#[test]
fn faulty_servers_fail_as_they_should() {
    if !have_python() {
        return;
    }
    // (mode, class, status, diagnostic contains, whole connection failed)
    let cases = [
        (
            "no-read",
            Class::Temp,
            "4.4.2",
            "lost while sending the message: timed out after 1s",
            false,
        ),
        (
            "stall-greeting",
            Class::Temp,
            "4.4.2",
            "lost while waiting for the reply to EHLO: timed out after 1s",
            true,
        ),
        (
            "stall-dot",
            Class::Temp,
            "4.4.2",
            "lost while waiting for the reply to end of data: timed out after 1s",
            false,
        ),
        (
            "drop-data",
            Class::Temp,
            "4.4.2",
            "x-postroom; connection to 127.0.0.1[127.0.0.1]",
            false,
        ),
        (
            "garbage",
            Class::Temp,
            "4.5.0",
            "garbled reply from 127.0.0.1[127.0.0.1]:",
            true,
        ),
        (
            "greet421",
            Class::Temp,
            "4.3.2",
            "smtp; 421 4.3.2 faulty.test Service not available",
            true,
        ),
        (
            "rcpt451",
            Class::Temp,
            "4.3.0",
            "smtp; 451 4.3.0 Try again later",
            false,
        ),
        (
            "dot552",
            Class::Perm,
            "5.3.4",
            "smtp; 552 5.3.4 Message size exceeds fixed limit",
            false,
        ),
    ];
    for (mode, class, status, diag, whole) in cases {
        // Bigger than the socket buffers, so that a server that stops
        // reading blocks the client's writes.
        let size = if mode == "no-read" {
            40_000_000
        } else {
            300_000
        };
        let (result, took, log) = fault(mode, size);
        assert_eq!(result.is_err(), whole, "{mode}: {result:?}");
        let f = common(&result);
        assert_eq!(
            (f.class, f.status()),
            (class, status.to_string()),
            "{mode}: {f:?}"
        );
        assert!(f.diagnostic.contains(diag), "{mode}: {}", f.diagnostic);
        assert_eq!(f.remote.as_deref(), Some("127.0.0.1"), "{mode}");
        assert!(took < Duration::from_secs(5), "{mode} took {took:?}");
        if mode == "garbage" {
            assert!(
                f.diagnostic
                    .contains(r#""hello there, \x01 I am no mail server""#),
                "{}",
                f.diagnostic
            );
        }
        if mode == "rcpt451" {
            // Lock-step without an accepted recipient: no DATA at all.
            assert!(log.contains("RCPT TO:<b@f.test>\n"), "{log}");
            assert!(!log.contains("DATA"), "{log}");
        }
    }
}

#[test]
fn pipelining_is_used_when_offered_and_only_then() {
    // pipeline-check answers MAIL only when MAIL, RCPTs and DATA came in
    // one go; lockstep-check refuses the message if anything came early.
    if !have_python() {
        return;
    }
    for mode in ["pipeline-check", "lockstep-check"] {
        let (result, _, log) = fault(mode, 300_000);
        assert_eq!(
            result,
            Ok(vec![Attempt::Delivered, Attempt::Delivered]),
            "{mode}"
        );
        assert!(
            log.contains("MAIL FROM:<s@client.test> SIZE=300016\n"),
            "{log}"
        );
    }
    // Pipelined, every RCPT refused: DATA went out with them and was
    // refused; the next transaction starts with RSET.
    let d = Dir::new("relay-pipe-none");
    let log = d.join("log");
    let s = faulty("rcpt451", &log, &["--pipelining"]);
    let mut c = open(&s);
    let got = c
        .send(
            "s@client.test",
            &rcpts(&["a@f.test"]),
            &OutParams::default(),
            b"x\r\n",
        )
        .unwrap();
    assert_eq!(failed(&got[0]).status(), "4.3.0");
    let got = c
        .send(
            "s@client.test",
            &rcpts(&["a@f.test"]),
            &OutParams::default(),
            b"x\r\n",
        )
        .unwrap();
    assert_eq!(failed(&got[0]).status(), "4.3.0");
    c.quit();
    drop(s);
    let log = std::fs::read_to_string(&log).unwrap();
    let want = "# connection\nEHLO client.test\nMAIL FROM:<s@client.test> SIZE=3\nRCPT TO:<a@f.test>\nDATA\nRSET\nMAIL FROM:<s@client.test> SIZE=3\nRCPT TO:<a@f.test>\nDATA\nQUIT\n";
    assert_eq!(log, want);
}

#[test]
fn connection_refused_is_temporary() {
    let port = free_port();
    let start = Instant::now();
    let f = client::connect("127.0.0.1", port, "client.test", true, &quick())
        .err()
        .expect("nothing listens");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!((f.class, f.status()), (Class::Temp, "4.4.1".to_string()));
    assert!(
        f.diagnostic.starts_with(&format!(
            "x-postroom; connect to 127.0.0.1[127.0.0.1]:{port}: "
        )),
        "{}",
        f.diagnostic
    );
    let f = client::connect("no-such-host.invalid", 25, "client.test", true, &quick())
        .err()
        .expect("no such host");
    assert_eq!((f.class, f.status()), (Class::Temp, "4.4.3".to_string()));
}

#[test]
fn mailertable_errors_are_reported_with_file_and_line() {
    // Loaded through route::load, as `postroom check` does; good lines
    // load, bad ones are skipped.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mailertable");
    let opts = Options {
        host_name: b"mx.example.test".to_vec(),
        ..Options::default()
    };
    let loaded = route::load(&dir, &opts);
    insta::assert_snapshot!(loaded.render());
    let t = &loaded.config.mailertable;
    let route_of = |d: &str| t.route_for(d.as_bytes()).cloned();
    use route::mailertable::Route;
    let smtp = |h: &str, port, mx, esmtp| {
        Some(Route::Smtp {
            host: h.to_string(),
            port,
            mx,
            esmtp,
        })
    };
    assert_eq!(
        route_of("relay.test"),
        smtp("primary.relay.test", 25, false, true)
    );
    assert_eq!(
        route_of("a.relay.test"),
        smtp("127.0.0.1", 2526, false, true)
    );
    assert_eq!(
        route_of("plain.test"),
        smtp("mx.plain.test", 25, true, false)
    );
    assert_eq!(
        route_of("elsewhere.test"),
        smtp("smart.test", 587, false, true)
    );
    assert_eq!(route_of("uucp.test"), smtp("smart.test", 587, false, true));
    assert_eq!(
        route_of("local.test"),
        Some(Route::Local(Some(b"postmaster".to_vec())))
    );
    assert!(matches!(route_of("old.test"), Some(Route::Error(_))));
}
