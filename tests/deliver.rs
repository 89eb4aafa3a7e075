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
    // A deliver that exits without reading (`-z`, `-h`) closes the pipe
    // first; the EPIPE that our write may then get is not a failure.
    let _ = child.stdin.take().unwrap().write_all(input);
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
/// Starts `deliver -m ./rc` in `d` with `MSG` on stdin and waits until the
/// rcfile's program has created `started` (so the signal that follows
/// reaches a deliver blocked in that program).
fn start_blocked(d: &Dir) -> std::process::Child {
    let mut c = cmd("deliver");
    c.current_dir(d.path())
        .args(["-m", "LOGFILE=./log", "./rc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn deliver");
    child.stdin.take().unwrap().write_all(MSG).unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !d.join("started").exists() {
        assert!(std::time::Instant::now() < until, "the pipe never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

fn signal(child: &std::process::Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, sig).expect("send signal");
}

/// The lockfiles left in `d`.
fn lockfiles(d: &Dir) -> Vec<String> {
    std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".lock"))
        .collect()
}

/// A terminating signal while deliver waits in a `w` pipe holding the
/// global LOCKFILE and a recipe lock: procmail's exit status and abstract
/// folder, the program is terminated and no lockfile remains. Each `want`
/// was checked with procmail 3.23pre (TERM 75 `**Requeued**`, HUP and INT
/// 73 `**Bounced**`, QUIT 0 `**Lost**`, `Terminating prematurely` logged).
#[test]
fn signals_end_delivery_without_leaving_lockfiles() {
    use nix::sys::signal::Signal;
    let cases = [
        (Signal::SIGTERM, 75, "**Requeued**"),
        (Signal::SIGHUP, 73, "**Bounced**"),
        (Signal::SIGINT, 73, "**Bounced**"),
        (Signal::SIGQUIT, 0, "**Lost**"),
    ];
    for (sig, want_code, want_folder) in cases {
        let d = Dir::new("signal");
        d.write(
            "rc",
            "LOCKFILE=global.lock\n:0 w: local.lock\n| cat >/dev/null; echo $$ > started; exec sleep 30\n",
        );
        let child = start_blocked(&d);
        assert_eq!(lockfiles(&d).len(), 2, "both locks held before {sig}");
        let program: i32 = String::from_utf8_lossy(&d.read("started"))
            .trim()
            .parse()
            .unwrap();
        signal(&child, sig);
        let out = child.wait_with_output().expect("wait");
        assert_eq!(out.status.code(), Some(want_code), "{sig}");
        assert_eq!(lockfiles(&d), Vec::<String>::new(), "{sig}");
        let log = String::from_utf8_lossy(&d.read("log")).into_owned();
        assert!(log.contains("Terminating prematurely"), "{sig}: {log}");
        assert!(log.contains(want_folder), "{sig}: {log}");
        // The program was terminated too (it is no longer running, or at
        // most a zombie waiting for init to reap it).
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{program}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                break;
            }
            assert!(
                std::time::Instant::now() < until,
                "{sig}: sleep still runs: {stat}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// USR2 turns VERBOSE on and USR1 off in a running deliver (procmail(1)
/// SIGNALS); checked with procmail 3.23pre.
#[test]
fn usr1_and_usr2_switch_verbose() {
    use nix::sys::signal::Signal;
    let rc = ":0 wc\n| cat >/dev/null; touch started; while [ ! -e go ]; do sleep 0.02; done\n:0\n* ^Subject: hello\nmd/\n";
    for (verbose_first, sig, want_verbose) in [
        ("", Signal::SIGUSR2, true),
        ("VERBOSE=on\n", Signal::SIGUSR1, false),
    ] {
        let d = Dir::new("usr");
        d.write("rc", format!("{verbose_first}{rc}"));
        let child = start_blocked(&d);
        signal(&child, sig);
        // Give the signal time to land before the program ends.
        std::thread::sleep(std::time::Duration::from_millis(200));
        d.write("go", "");
        let out = child.wait_with_output().expect("wait");
        assert_eq!(out.status.code(), Some(0));
        let log = String::from_utf8_lossy(&d.read("log")).into_owned();
        assert_eq!(
            log.contains("Match on \"^Subject: hello\""),
            want_verbose,
            "{sig}: {log}"
        );
    }
}

/// ALRM takes the TIMEOUT path: the running program is terminated, its
/// failure logged, and delivery goes on (checked with procmail 3.23pre:
/// `Timeout, terminating "sleep"`, `Program failure (-15) of "sleep"`).
#[test]
fn alrm_terminates_the_running_program() {
    let d = Dir::new("alrm");
    d.write(
        "rc",
        ":0 w\n| sh -c 'cat >/dev/null; touch started; exec sleep 30'\n:0\nmd/\n",
    );
    let child = start_blocked(&d);
    signal(&child, nix::sys::signal::Signal::SIGALRM);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&d.read("log")).into_owned();
    assert!(log.contains("Timeout, terminating"), "{log}");
    assert!(log.contains("Program failure (-15)"), "{log}");
    assert!(log.contains("Folder: md/new/"), "{log}");
}

/// The diagnostic lines of a log or stderr, without procmail's
/// `[pid] date` lines (their number depends on the clock) and with
/// Maildir names cut after `md/new/`.
fn diagnostics(text: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(text)
        .lines()
        .filter(|l| l.starts_with("procmail: ") && !l.starts_with("procmail: ["))
        .map(|l| match l.find("md/new/") {
            Some(i) => l[..i + 7].to_string(),
            None => l.to_string(),
        })
        .collect()
}

/// VERBOSE=on on the command line: the assignments after it are shown on
/// stderr until LOGFILE opens, then opening the rcfile shows MAILDIR and
/// the rcfile's name. `want` is what procmail 3.23pre writes for the same
/// command line and rcfile (stamp lines left out).
#[test]
fn verbose_on_the_command_line() {
    let d = Dir::new("verbose-cmdline");
    d.write("rc", ":0\nmd/\n");
    let mut c = cmd("deliver");
    c.current_dir(d.path())
        .args(["-m", "VERBOSE=on", "LOGFILE=./log", "./rc"]);
    let (code, _, err) = run(c, MSG);
    assert_eq!(code, 0);
    let want_err = [
        r#"procmail: Assigning "LOGFILE=./log""#,
        r#"procmail: Opening "./log""#,
    ];
    assert_eq!(diagnostics(&err), want_err);
    let want_log = [
        r#"procmail: Assigning "MAILDIR=.""#,
        r#"procmail: Rcfile: "./rc""#,
        r#"procmail: Assigning "LASTFOLDER=md/new/"#,
    ];
    assert_eq!(diagnostics(&d.read("log")), want_log);
    // The first diagnostic of a process is always preceded by a stamp.
    assert!(String::from_utf8_lossy(&err).starts_with("procmail: ["));
}
