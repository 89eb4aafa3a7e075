//! `deliver` as a process: command line, exit codes, fallbacks. The
//! recipe semantics are compared with the real procmail in `diff.rs`;
//! these tests pin what an MTA sees.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::util::{Dir, cmd};

const MSG: &[u8] = b"From: alice@example.com\nTo: bob@example.com\nSubject: hello\n\nhi there\n";

/// Runs `command` with `input` on stdin; returns (status, stdout, stderr).
fn run(mut command: Command, input: &[u8]) -> (i32, Vec<u8>, Vec<u8>) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // A deliver that refuses its command line exits without reading.
    match child.stdin.take().unwrap().write_all(input) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.expect("write stdin"),
    }
    let out = child.wait_with_output().expect("wait");
    (out.status.code().unwrap_or(-1), out.stdout, out.stderr)
}

#[test]
fn help_exits_64_and_version_0() {
    let mut c = cmd("deliver");
    c.arg("-h");
    let (code, _, err) = run(c, b"");
    assert_eq!(code, 64);
    assert!(String::from_utf8_lossy(&err).contains("Usage: deliver"));
    let mut c = cmd("deliver");
    c.arg("-v");
    let (code, _, err) = run(c, b"");
    assert_eq!(code, 0);
    assert!(String::from_utf8_lossy(&err).contains("3.23pre"));
}

#[test]
fn filter_mode_without_rcfile_exits_66() {
    let mut c = cmd("deliver");
    c.arg("-m");
    let (code, _, err) = run(c, MSG);
    assert_eq!(code, 66);
    assert!(String::from_utf8_lossy(&err).contains("Missing rcfile"));
}

#[test]
fn unknown_user_exits_67() {
    let mut c = cmd("deliver");
    c.args(["-d", "no-such-user-postroom"]);
    let (code, _, _) = run(c, MSG);
    assert_eq!(code, 67);
}

#[test]
fn lmtp_is_refused_with_64() {
    let mut c = cmd("deliver");
    c.arg("-z");
    let (code, _, _) = run(c, MSG);
    assert_eq!(code, 64);
}

/// An unwritable DEFAULT with no ORGMAIL in -m mode: 73, or 75 with -t,
/// and the log abstract says where the mail went (nowhere).
#[test]
fn undeliverable_gives_73_or_75_with_t() {
    let d = Dir::new("undeliverable");
    // LOCKSLEEP=0: the lockfile in a missing directory is retried 8 times,
    // which costs about a minute at the default LOCKSLEEP, as in procmail.
    d.write("rc", "LOGFILE=log\nLOCKSLEEP=0\nDEFAULT=no/such/dir/mbox\n");
    for (flag, want, folder) in [(None, 73, "**Bounced**"), (Some("-t"), 75, "**Requeued**")] {
        let mut c = cmd("deliver");
        c.current_dir(d.path());
        if let Some(f) = flag {
            c.arg(f);
        }
        c.args(["-m", "./rc"]);
        let (code, _, _) = run(c, MSG);
        assert_eq!(code, want);
        let log = String::from_utf8_lossy(&d.read("log")).into_owned();
        assert!(log.contains(folder), "log lacks {folder}: {log}");
        std::fs::remove_file(d.join("log")).unwrap();
    }
}

/// A folder that cannot be written falls back to DEFAULT and exits 0.
#[test]
fn unwritable_folder_falls_back_to_default() {
    let d = Dir::new("fallback");
    d.write("rc", "DEFAULT=inbox\n:0\nno/such/dir/folder\n");
    let mut c = cmd("deliver");
    c.current_dir(d.path()).args(["-m", "./rc"]);
    let (code, _, _) = run(c, MSG);
    assert_eq!(code, 0);
    let inbox = d.read("inbox");
    assert!(
        inbox.ends_with(b"hi there\n\n"),
        "{}",
        String::from_utf8_lossy(&inbox)
    );
}

/// `postroom check` reports file:line:col and exits 1 on an error.
#[test]
fn check_reports_location_and_exits_1() {
    let d = Dir::new("check");
    d.write("good.rc", ":0:\n* ^Subject: hello\ninbox\n");
    d.write(
        "bad.rc",
        "# a comment\n:0 Zq\n* ^Subject: (unbalanced\ninbox\n",
    );
    let mut c = cmd("postroom");
    c.current_dir(d.path()).args(["check", "good.rc"]);
    let (code, _, err) = run(c, b"");
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    let mut c = cmd("postroom");
    c.current_dir(d.path()).args(["check", "bad.rc"]);
    let (code, _, err) = run(c, b"");
    let err = String::from_utf8_lossy(&err);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("bad.rc:2:"), "{err}");
    assert!(err.contains("bad.rc:3:"), "{err}");
}

/// The shipped rcfiles check clean (the issue's "postroom check reports
/// examples/ clean").
#[test]
fn shipped_rcfiles_check_clean() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut c = cmd("postroom");
    c.current_dir(root)
        .args(["check", "examples/procmailrc", "bench/procmailrc"]);
    let (code, _, err) = run(c, b"");
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
}

/// The README's main-job command: every example message lands where the
/// example rcfile sends it.
#[test]
fn example_run_shows_where_each_message_landed() {
    if !crate::util::require_tool("formail") {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let d = Dir::new("examples");
    // Run a copy so parallel test runs do not share examples/state.
    let copy = d.join("examples");
    let status = Command::new("cp")
        .arg("-r")
        .arg(root.join("examples"))
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(status.success());
    let _ = std::fs::remove_dir_all(copy.join("state"));
    let out = Command::new("bash")
        .arg(copy.join("run-deliver.sh"))
        .env("DELIVER", crate::util::bin("deliver"))
        .output()
        .expect("run-deliver.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = [
        ("01-list-postroom-dev.eml", "list.postroom-dev/new/"),
        ("02-list-debian-devel.eml", "debian-devel"),
        ("03-spam.eml", "spam/new/"),
        ("04-personal-carol.eml", "outbox/000.eml"),
        ("06-invoice.eml", "invoices/1"),
        ("08-own-reply-looped.eml", "(nothing written)"),
    ];
    for (msg, place) in want {
        let line = text
            .lines()
            .find(|l| l.starts_with(msg))
            .unwrap_or_else(|| panic!("no line for {msg} in:\n{text}"));
        assert!(line.contains("exit 0"), "{line}");
        assert!(line.contains(place), "{msg} should land in {place}: {line}");
    }
}
