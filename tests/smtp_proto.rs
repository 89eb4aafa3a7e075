//! Snapshot transcripts of the sans-IO SMTP session: every
//! `fixtures/smtp/*.txt` is a client script, fed to a session with
//! `MemoryHost::example()` (local `example.test` with users alice and bob,
//! relay domain `relay.test`); the replies and the queued messages are
//! recorded. Every script is also fed whole, cut in two at every byte
//! position and one byte at a time, and must give the same replies and
//! queue each way (smtp-proto style).
//!
//! Script format: one client line per line, sent with CRLF. Lines starting
//! with `#` are comments; `#! key value` sets a `Config` field
//! (`max_line`, `max_message`, `max_header`, `max_recipients`,
//! `max_errors`, `max_hops`, `bare_newline reject|normalize`). Escapes:
//! `\r`, `\n`, `\t`, `\0`, `\\`, `\xHH`; a line ending in a lone `\` is
//! sent without CRLF (joined to the next one).
//!
//! The reply codes and enhanced codes are those of mta-semantics B.3; they
//! come from the spec's Postfix experiments, not from procmail, which has
//! no SMTP side.

use postroom::smtp::proto::BareNewline;
use postroom::smtp::session::{Config, MemoryHost, Session};

/// A script: the config and the chunks (one per script line).
fn parse_script(src: &str) -> (Config, Vec<Vec<u8>>) {
    let mut config = Config {
        hostname: "mx.example.test".into(),
        ..Config::default()
    };
    let mut chunks = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    for line in src.lines() {
        if let Some(set) = line.strip_prefix("#!") {
            let (key, value) = set.trim().split_once(' ').expect("#! key value");
            let n = || value.trim().parse::<u64>().expect("a number");
            match key {
                "max_line" => config.max_line = n() as usize,
                "max_message" => config.max_message = n(),
                "max_header" => config.max_header = n(),
                "max_recipients" => config.max_recipients = n() as usize,
                "max_errors" => config.max_errors = n() as u32,
                "max_hops" => config.max_hops = n() as usize,
                "bare_newline" => {
                    config.bare_newline = match value.trim() {
                        "reject" => BareNewline::Reject,
                        "normalize" => BareNewline::Normalize,
                        v => panic!("bare_newline {v}?"),
                    }
                }
                k => panic!("unknown setting {k}"),
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (bytes, joined) = unescape(line);
        pending.extend_from_slice(&bytes);
        if !joined {
            pending.extend_from_slice(b"\r\n");
            chunks.push(std::mem::take(&mut pending));
        }
    }
    if !pending.is_empty() {
        chunks.push(pending);
    }
    (config, chunks)
}

/// The bytes of one script line, and whether it ended in a lone `\`.
fn unescape(line: &str) -> (Vec<u8>, bool) {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            None => return (out, true),
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                out.push(u8::from_str_radix(hex, 16).expect("\\xHH"));
                i += 2;
            }
            Some(c) => panic!("unknown escape \\{}", *c as char),
        }
        i += 2;
    }
    (out, false)
}

/// Bytes for the transcript: printable ASCII as is, the rest escaped.
fn show(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0 => s.push_str("\\0"),
            b' '..=b'~' => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// Replies (wire form) and queue after feeding `input` cut at `cuts`.
fn feed(config: &Config, input: &[u8], cuts: &[usize]) -> (Vec<String>, String) {
    let mut s = Session::new(config.clone(), MemoryHost::example());
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(input.len());
    let mut replies = Vec::new();
    for w in bounds.windows(2) {
        replies.extend(s.feed(&input[w[0]..w[1]]).iter().map(|r| r.to_string()));
    }
    s.eof();
    (replies, queue(s.host()))
}

fn queue(host: &MemoryHost) -> String {
    let mut out = String::new();
    for (env, msg) in &host.queued {
        let rcpts: Vec<String> = env.rcpts.iter().map(|r| r.to_string()).collect();
        out.push_str(&format!(
            "from={} rcpts={} helo={} esmtp={} {:?}\n",
            env.from,
            rcpts.join(","),
            env.helo,
            env.esmtp,
            env.params
        ));
        for line in msg.split_inclusive(|&b| b == b'\n') {
            out.push_str(&format!("| {}\n", show(line)));
        }
    }
    out
}

#[test]
fn transcripts() {
    let mut seen = 0;
    insta::glob!("fixtures/smtp/*.txt", |path| {
        seen += 1;
        let src = std::fs::read_to_string(path).expect("read script");
        let (config, chunks) = parse_script(&src);
        let mut s = Session::new(config.clone(), MemoryHost::example());
        let mut transcript = format!("S: {}\n", s.greeting());
        let mut replies = Vec::new();
        for chunk in &chunks {
            transcript.push_str(&format!("C: {}\n", show(chunk)));
            for r in s.feed(chunk) {
                for line in r.to_string().lines() {
                    transcript.push_str(&format!("S: {line}\n"));
                }
                if r.closes() {
                    transcript.push_str("-- closed --\n");
                }
                replies.push(r.to_string());
            }
        }
        s.eof();
        let queued = queue(s.host());
        transcript.push_str("-- queued --\n");
        transcript.push_str(&queued);

        let input: Vec<u8> = chunks.concat();
        let want = (replies, queued);
        assert_eq!(feed(&config, &input, &[]), want, "fed whole");
        for cut in 0..=input.len() {
            assert_eq!(feed(&config, &input, &[cut]), want, "cut at {cut}");
        }
        let all: Vec<usize> = (1..input.len()).collect();
        assert_eq!(feed(&config, &input, &all), want, "one byte at a time");

        insta::assert_snapshot!(transcript);
    });
    assert!(seen > 0, "no scripts under tests/fixtures/smtp");
}
