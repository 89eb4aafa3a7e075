//! The road out end to end: `postroom smtpd` relaying to a primary server
//! on loopback that the tests stop and start (Python's aiosmtpd through
//! `fixtures/smtp/sink.py`, and `fixtures/smtp/faulty.py` for a primary
//! that misbehaves), bounces coming back to a local sender's mailbox,
//! forwards from rcfiles through `postroom sendmail`, and kill -9 in the
//! middle of a relay. Retries run in seconds (`min_backoff = 1`), every
//! wait is bounded and every server is killed when its guard drops.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::relay_client::{Server, free_port, have_aiosmtpd, have_python, sink};
use crate::smtpd::{Smtpd, names, signal_and_wait, swaks, wait_log};
use crate::util::{Dir, require_tool};

/// A server for example.test (bob and alice, virtual users delivering to
/// `mail/<user>/`) whose relay domain relay.test goes to 127.0.0.1:`port`
/// by the mailertable; retries every second, 2 s client timeouts; `set`
/// replaces settings or adds them.
pub(crate) fn relay_config(dir: &Dir, port: u16, set: &[(&str, &str)]) {
    let mut settings: Vec<(&str, &str)> = vec![
        ("hostname", "mx.example.test"),
        ("listen", "127.0.0.1:0"),
        ("spool", "../spool"),
        ("command_timeout", "10"),
        ("data_timeout", "10"),
        ("queue_interval", "1"),
        ("min_backoff", "1"),
        ("max_backoff", "1"),
    ];
    for t in [
        "connect",
        "greeting",
        "helo",
        "mail",
        "rcpt",
        "data_init",
        "data_block",
        "data_done",
    ] {
        settings.push((Box::leak(format!("smtp_{t}_timeout").into_boxed_str()), "2"));
    }
    for (k, v) in set {
        match settings.iter_mut().find(|(key, _)| key == k) {
            Some(kv) => kv.1 = v,
            None => settings.push((k, v)),
        }
    }
    let text: String = settings
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    dir.write("etc/postroom.conf", text);
    dir.write("etc/local-host-names", "example.test\n");
    dir.write("etc/relay-domains", "relay.test\n");
    dir.write(
        "etc/mailertable",
        format!("relay.test esmtp:[127.0.0.1]:{port}\n"),
    );
    dir.write("etc/users", "alice:homes/alice\nbob:homes/bob\n");
    dir.write("etc/aliases", "postmaster: alice\n");
    std::fs::create_dir_all(dir.join("mail")).unwrap();
    for user in ["alice", "bob"] {
        let inbox = dir.join(&format!("mail/{user}"));
        dir.write(
            &format!("etc/homes/{user}/.procmailrc"),
            format!("DEFAULT={}/\n", inbox.display()),
        );
    }
}

/// Waits (at most `secs`) until `rel` under `dir` holds `n` files not
/// starting with a dot; returns their names, sorted.
fn wait_count(dir: &Dir, rel: &str, n: usize, secs: u64) -> Vec<String> {
    let start = Instant::now();
    loop {
        let got: Vec<String> = names(dir, rel)
            .into_iter()
            .filter(|f| !f.starts_with('.'))
            .collect();
        if got.len() >= n {
            assert_eq!(got.len(), n, "{rel}: {got:?}");
            return got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{rel}: {} of {n} files after {secs} s",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The messages sink.py wrote, in the order it got them: (envelope JSON,
/// message).
fn received(dir: &Dir, rel: &str) -> Vec<(String, String)> {
    let mut n: Vec<usize> = names(dir, rel)
        .iter()
        .filter_map(|f| f.strip_suffix(".eml")?.parse().ok())
        .collect();
    n.sort();
    n.iter()
        .map(|i| {
            let meta = String::from_utf8(dir.read(&format!("{rel}/{i}.json"))).unwrap();
            let msg = String::from_utf8_lossy(&dir.read(&format!("{rel}/{i}.eml"))).into_owned();
            (meta, msg)
        })
        .collect()
}

/// Sends one message with swaks from `from` to `to`, `subject` as its
/// Subject; it must be accepted.
fn send_one(server: &Smtpd, from: &str, to: &str, subject: &str) {
    let (code, t) = swaks(
        server,
        &[
            "--from",
            from,
            "--to",
            to,
            "--header",
            &format!("Subject: {subject}"),
        ],
    );
    assert_eq!(code, 0, "{t}");
}

/// `postroom queue --config DIR/etc`.
fn queue_listing(dir: &Dir) -> String {
    let out = crate::util::cmd("postroom")
        .args(["queue", "--config"])
        .arg(dir.join("etc"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A sink on `port` writing into `dir/rel`.
fn sink_on(dir: &Dir, rel: &str, port: u16, args: &[&str]) -> Server {
    std::fs::create_dir_all(dir.join(rel)).unwrap();
    let port = port.to_string();
    let mut all = vec!["--port", port.as_str()];
    all.extend_from_slice(args);
    sink(Path::new(&dir.join(rel)), &all)
}

#[test]
fn a_down_primary_gets_the_backlog_in_arrival_order_over_one_connection_when_it_is_back() {
    if !have_aiosmtpd() || !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("relay-backlog");
    let port = free_port();
    // Backoff doubling up to 4 s: the oldest entries, tried most often,
    // are due last, so their own retry times would send them last.
    relay_config(&dir, port, &[("max_backoff", "4")]);
    let server = Smtpd::start(&dir);
    // Staggered, so that their retry times (each entry's own backoff,
    // with jitter) interleave while the primary is down.
    for n in 1..=5 {
        send_one(
            &server,
            "sender@client.test",
            "x@relay.test",
            &format!("backlog {n}"),
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Nobody listens: each is tried, deferred and kept.
    let start_wait = Instant::now();
    loop {
        let listing = queue_listing(&dir);
        if listing.matches("deferred x@relay.test").count() == 5 {
            assert!(listing.contains("4.4.1"), "{listing}");
            break;
        }
        assert!(
            start_wait.elapsed() < Duration::from_secs(20),
            "not deferred: {listing}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A few more retries while it is down, then the primary comes back on
    // the same port.
    std::thread::sleep(Duration::from_millis(2500));
    let _primary = sink_on(&dir, "primary", port, &["--pipelining"]);
    wait_count(&dir, "primary", 10, 30);
    let got = received(&dir, "primary");
    let subjects: Vec<String> = got
        .iter()
        .map(|(_, m)| {
            m.lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        subjects,
        [
            "backlog 1",
            "backlog 2",
            "backlog 3",
            "backlog 4",
            "backlog 5"
        ]
    );
    let ports: Vec<&str> = got
        .iter()
        .map(|(meta, _)| meta.split("\"peer_port\": ").nth(1).unwrap())
        .collect();
    assert!(
        ports.iter().all(|p| *p == ports[0]),
        "one connection: {ports:?}"
    );
    for (meta, msg) in &got {
        assert!(
            meta.contains("\"mail_from\": \"sender@client.test\""),
            "{meta}"
        );
        assert!(meta.contains("\"rcpt_tos\": [\"x@relay.test\"]"), "{meta}");
        assert!(msg.contains("Received: from client.test"), "{msg}");
        assert!(!msg.contains("Delivered-To:"), "{msg}");
    }
    // Each is written down as delivered and leaves the queue.
    let start_wait = Instant::now();
    while !queue_listing(&dir).contains("Mail queue is empty") {
        assert!(start_wait.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(server);
}

#[test]
fn a_remote_refusal_comes_back_as_a_dsn_in_the_local_senders_mailbox() {
    if !have_aiosmtpd() || !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("relay-refused");
    let port = free_port();
    relay_config(&dir, port, &[]);
    let _primary = sink_on(&dir, "primary", port, &["--refuse", "nobody@relay.test"]);
    let server = Smtpd::start(&dir);
    send_one(
        &server,
        "bob@example.test",
        "nobody@relay.test",
        "to nobody",
    );
    let got = wait_count(&dir, "mail/bob/new", 1, 30);
    let dsn = String::from_utf8(dir.read(&format!("mail/bob/new/{}", got[0]))).unwrap();
    for want in [
        "Return-Path: <>",
        "Content-Type: multipart/report; report-type=delivery-status",
        "Final-Recipient: rfc822; nobody@relay.test",
        "Action: failed",
        "Status: 5.1.1",
        "Remote-MTA: dns; 127.0.0.1",
        "Diagnostic-Code: smtp; 550 5.1.1 <nobody@relay.test>: Recipient address rejected",
        "Subject: to nobody",
    ] {
        assert!(dsn.contains(want), "no {want:?} in {dsn}");
    }
    assert!(names(&dir, "primary").is_empty(), "nothing was accepted");
    drop(server);
}

#[test]
fn a_forward_from_an_rcfile_goes_out_through_postroom_sendmail() {
    if !have_aiosmtpd() || !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("relay-forward");
    let port = free_port();
    relay_config(&dir, port, &[]);
    // alice keeps a copy and forwards one; deliver gets SENDMAIL (the
    // sendmail next to it) and POSTROOM_CONFIG from the runner.
    let inbox = dir.join("mail/alice");
    dir.write(
        "etc/homes/alice/.procmailrc",
        format!("DEFAULT={}/\n:0 c\n! friend@relay.test\n", inbox.display()),
    );
    let _primary = sink_on(&dir, "primary", port, &[]);
    let server = Smtpd::start(&dir);
    send_one(
        &server,
        "sender@client.test",
        "alice@example.test",
        "pass it on",
    );
    wait_count(&dir, "primary", 2, 30);
    wait_count(&dir, "mail/alice/new", 1, 10);
    let got = received(&dir, "primary");
    let (meta, msg) = &got[0];
    assert!(
        meta.contains("\"rcpt_tos\": [\"friend@relay.test\"]"),
        "{meta}"
    );
    assert!(msg.contains("Subject: pass it on"), "{msg}");
    // The copy that went out is the one alice's rcfile saw.
    assert!(msg.contains("Delivered-To: alice@example.test"), "{msg}");
    drop(server);
}

#[test]
fn kill_9_during_a_relay_then_restart_delivers_exactly_once() {
    if !have_aiosmtpd() || !have_python() || !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("relay-kill9");
    let port = free_port();
    // A long final-dot wait: the server is killed while it waits.
    relay_config(&dir, port, &[("smtp_data_done_timeout", "60")]);
    let log = dir.join("faulty.log");
    let stall = faulty_on("stall-dot", port, &log);
    let mut server = Smtpd::start(&dir);
    send_one(&server, "sender@client.test", "x@relay.test", "once");
    // The primary has the whole message and has not answered the dot.
    let start_wait = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("DATA")
    {
        assert!(start_wait.elapsed() < Duration::from_secs(20), "no DATA");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    signal_and_wait(&mut server, nix::sys::signal::Signal::SIGKILL);
    drop(stall);
    // The primary comes back well; the restarted server sends it once.
    let _primary = sink_on(&dir, "primary", port, &[]);
    let server = Smtpd::start(&dir);
    wait_count(&dir, "primary", 2, 30);
    // A second copy would come within a few retries.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(names(&dir, "primary").len(), 2, "exactly one message");
    let start_wait = Instant::now();
    while !queue_listing(&dir).contains("Mail queue is empty") {
        assert!(start_wait.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_log(&server, "delivered");
}

/// faulty.py in `mode` on `port`, logging commands to `log`.
fn faulty_on(mode: &str, port: u16, log: &Path) -> Server {
    let port = port.to_string();
    crate::relay_client::start_script(
        "faulty.py",
        &[mode, port.as_str(), "--log", log.to_str().unwrap()],
    )
}

/// A primary misbehaving as faulty.py's `mode` for the whole lifetime of
/// a message from bob: it stays queued, is tried again, and bounces to bob
/// when its lifetime (6 s here) is over, with the last error.
/// `tried` is what the primary's log shows once per attempt: a new
/// connection, or a RCPT when the relay keeps its connection.
fn misbehaving_primary_bounces_at_the_end_of_the_lifetime(
    mode: &str,
    tried: &str,
    want_status: &str,
) {
    if !have_python() || !require_tool("swaks") {
        return;
    }
    let dir = Dir::new(&format!("relay-fault-{mode}"));
    let port = free_port();
    relay_config(&dir, port, &[("max_lifetime", "6")]);
    let log = dir.join("faulty.log");
    let _primary = faulty_on(mode, port, &log);
    let server = Smtpd::start(&dir);
    send_one(
        &server,
        "bob@example.test",
        "x@relay.test",
        &format!("fault {mode}"),
    );
    let got = wait_count(&dir, "mail/bob/new", 1, 40);
    let dsn = String::from_utf8(dir.read(&format!("mail/bob/new/{}", got[0]))).unwrap();
    assert!(dsn.contains("Action: failed"), "{dsn}");
    assert!(
        dsn.contains(&format!("Status: {want_status}")),
        "{mode}: {dsn}"
    );
    assert!(dsn.contains("Subject: fault"), "{dsn}");
    let commands = std::fs::read_to_string(&log).unwrap_or_default();
    let tries = commands.lines().filter(|l| l.starts_with(tried)).count();
    assert!(tries >= 2, "{mode}: tried {tries} times: {commands}");
    assert!(queue_listing(&dir).contains("Mail queue is empty"));
    drop(server);
}

#[test]
fn a_primary_that_stalls_after_the_greeting_keeps_the_message_queued_until_it_bounces() {
    misbehaving_primary_bounces_at_the_end_of_the_lifetime(
        "stall-greeting",
        "# connection",
        "4.4.2",
    );
}

#[test]
fn a_primary_that_drops_the_connection_mid_data_keeps_the_message_queued_until_it_bounces() {
    misbehaving_primary_bounces_at_the_end_of_the_lifetime("drop-data", "# connection", "4.4.2");
}

#[test]
fn a_primary_that_answers_garbage_keeps_the_message_queued_until_it_bounces() {
    misbehaving_primary_bounces_at_the_end_of_the_lifetime("garbage", "# connection", "4.5.0");
}

#[test]
fn a_primary_that_answers_4xx_forever_keeps_the_message_queued_until_it_bounces() {
    misbehaving_primary_bounces_at_the_end_of_the_lifetime("rcpt451", "RCPT TO", "4.");
}

#[test]
fn a_flush_sends_to_a_primary_that_is_back_before_its_retry_time() {
    if !have_aiosmtpd() || !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("relay-flush");
    let port = free_port();
    relay_config(&dir, port, &[("min_backoff", "1h"), ("max_backoff", "1h")]);
    let server = Smtpd::start(&dir);
    send_one(&server, "sender@client.test", "x@relay.test", "flushed");
    let start_wait = Instant::now();
    while !queue_listing(&dir).contains("deferred x@relay.test") {
        assert!(start_wait.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(100));
    }
    let _primary = sink_on(&dir, "primary", port, &[]);
    // Neither the retry time (an hour) nor the pause of the host (as
    // long) holds a flush back.
    let out = crate::util::cmd("postroom")
        .args(["queue", "flush", "--config"])
        .arg(dir.join("etc"))
        .output()
        .unwrap();
    assert!(out.status.success());
    wait_count(&dir, "primary", 2, 20);
    drop(server);
}
