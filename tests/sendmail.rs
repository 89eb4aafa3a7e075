//! `postroom sendmail` for real: the `sendmail` binary (and `postroom`
//! run as `sendmail` or `postroom sendmail`) writes the maildrop of a
//! temporary spool; the spool is then opened here and picked up, or a
//! running `postroom smtpd` picks it up and delivers with `deliver`.
//! Every child runs under a deadline and is killed when its guard drops;
//! the server listens on 127.0.0.1 only.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use postroom::queue::maildrop::Submission;
use postroom::queue::{Entry, Queue, Schedule, Spool, SystemClock};

use crate::smtpd::Smtpd;
use crate::util::{Dir, Run, bin, cmd, require_tool, run_fed as run};

/// The `sendmail` binary with an empty environment but PATH.
fn sendmail() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sendmail"));
    c.env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin");
    c
}

/// A configuration in `dir/etc` with its spool at `dir/spool`, opened once
/// (as a server would) so the maildrop exists. Returns `dir/etc`.
pub(crate) fn setup(dir: &Dir) -> PathBuf {
    dir.write(
        "etc/postroom.conf",
        "hostname = mx.example.test\nlisten = 127.0.0.1:0\nspool = ../spool\n",
    );
    dir.write("etc/local-host-names", "example.test\n");
    drop(open(dir));
    dir.join("etc")
}

/// The spool at `dir/spool`, opened (and made) as a server opens it.
pub(crate) fn open(dir: &Dir) -> Spool {
    Spool::open(
        dir.join("spool"),
        Schedule::default(),
        Arc::new(SystemClock),
    )
    .expect("open spool")
    .0
}

/// `sendmail -C etc ARGS < input`, which must succeed.
fn submit(etc: &Path, args: &[&str], input: &[u8]) -> Run {
    let mut c = sendmail();
    c.arg("-C").arg(etc).args(args);
    let r = run(c, input);
    assert_eq!(r.code, 0, "sendmail {args:?}: {}", r.stderr);
    r
}

/// Picks the maildrop up into the spool; every entry with its message.
fn pick_up(dir: &Dir) -> Vec<(Entry, String)> {
    let spool = open(dir);
    let p = spool.pickup().expect("pickup");
    assert!(p.corrupt.is_empty() && p.errors.is_empty(), "{p:?}");
    let listing = spool.entries().unwrap();
    listing
        .entries
        .into_iter()
        .map(|e| {
            let m = String::from_utf8_lossy(&spool.message(&e.id).unwrap()).into_owned();
            (e, m)
        })
        .collect()
}

fn rcpts(e: &Entry) -> Vec<&str> {
    e.recipients
        .iter()
        .map(|r| r.address.address.as_str())
        .collect()
}

#[test]
fn dash_t_takes_to_cc_bcc_and_the_queued_message_has_no_bcc() {
    let dir = Dir::new("sendmail-t");
    let etc = setup(&dir);
    let msg = b"To: Bob <bob@example.test>\nCc: carol@example.test, \"D, D\" <dan@relay.test>\n\
                Bcc: eve@example.test\nSubject: team\n\nhello\n";
    let r = submit(&etc, &["-t", "-oi"], msg);
    assert_eq!(r.stderr, "");
    // Nothing is queued until the spool's owner picks it up.
    assert_eq!(
        crate::util::names_in(&dir.join("spool/active")),
        Vec::<String>::new()
    );
    assert_eq!(crate::util::names_in(&dir.join("spool/maildrop")).len(), 1);
    let got = pick_up(&dir);
    assert_eq!(got.len(), 1);
    let (e, m) = &got[0];
    assert_eq!(
        rcpts(e),
        [
            "bob@example.test",
            "carol@example.test",
            "dan@relay.test",
            "eve@example.test"
        ]
    );
    assert!(!m.contains("Bcc") && !m.contains("eve@"), "{m}");
    assert!(m.contains("\r\nTo: Bob <bob@example.test>\r\n"), "{m}");
    assert!(
        m.contains("\r\nSubject: team\r\n") && m.ends_with("\r\n\r\nhello\r\n"),
        "{m}"
    );
    assert_eq!(
        crate::util::names_in(&dir.join("spool/maildrop")),
        Vec::<String>::new()
    );
}

#[test]
fn a_lone_dot_ends_the_message_unless_oi() {
    let dir = Dir::new("sendmail-dot");
    let etc = setup(&dir);
    let msg = b"Subject: dots\n\nbefore\n.\nafter\n";
    submit(&etc, &["bob@example.test"], msg);
    submit(&etc, &["-oi", "carol@example.test"], msg);
    submit(&etc, &["-i", "dan@example.test"], msg);
    let got = pick_up(&dir);
    assert_eq!(got.len(), 3);
    for (e, m) in &got {
        if rcpts(e) == ["bob@example.test"] {
            assert!(m.ends_with("\r\n\r\nbefore\r\n"), "{m}");
        } else {
            assert!(m.ends_with("\r\n\r\nbefore\r\n.\r\nafter\r\n"), "{m}");
        }
    }
}

#[test]
fn headers_are_completed_only_where_missing() {
    let dir = Dir::new("sendmail-headers");
    let etc = setup(&dir);
    submit(
        &etc,
        &["-F", "Robot Reporter", "bob@example.test"],
        b"Subject: bare\n\nx\n",
    );
    submit(
        &etc,
        &["carol@example.test"],
        b"From: Me <me@example.test>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <m1@example.test>\nSubject: whole\n\nx\n",
    );
    let got = pick_up(&dir);
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name;
    for (e, m) in &got {
        assert!(
            m.starts_with(&format!(
                "Received: (from {user}@localhost)\r\n\tby mx.example.test (postroom) id "
            )),
            "{m}"
        );
        assert_eq!(e.envelope.sender, format!("{user}@mx.example.test"));
        assert_eq!(
            e.envelope.client,
            format!("local (uid {} {user})", nix::unistd::getuid())
        );
        if rcpts(e) == ["bob@example.test"] {
            assert!(
                m.contains(&format!(
                    "\r\nFrom: Robot Reporter <{user}@mx.example.test>\r\n"
                )),
                "{m}"
            );
            assert!(
                m.contains("\r\nDate: ") && m.contains("\r\nMessage-ID: <"),
                "{m}"
            );
        } else {
            assert_eq!(m.matches("From:").count(), 1, "{m}");
            assert_eq!(m.matches("Date:").count(), 1, "{m}");
            assert_eq!(
                m.to_ascii_lowercase().matches("message-id:").count(),
                1,
                "{m}"
            );
        }
    }
}

#[test]
fn exit_codes_like_sendmail() {
    let dir = Dir::new("sendmail-codes");
    let etc = setup(&dir);
    let code = |args: &[&str], input: &[u8]| {
        let mut c = sendmail();
        c.arg("-C").arg(&etc).args(args);
        let r = run(c, input);
        (r.code, r.stderr)
    };
    let (c, e) = code(&[], b"Subject: x\n\n");
    assert_eq!(
        (c, e.as_str()),
        (64, "postroom sendmail: recipient names must be specified\n")
    );
    let (c, e) = code(&["-bs"], b"");
    assert_eq!(c, 64, "{e}");
    assert!(e.contains("-bs is not supported"), "{e}");
    let (c, e) = code(&["not an address"], b"x\n");
    assert_eq!(c, 64, "{e}");
    // An unknown option is a warning and the mail still goes.
    let (c, e) = code(&["-Z", "-odi", "bob@example.test"], b"x\n");
    assert_eq!(c, 0, "{e}");
    assert!(e.contains("warning: unknown option -Z ignored"), "{e}");
    // The maildrop cannot be written: 75, the caller keeps the message.
    std::fs::remove_dir_all(dir.join("spool/maildrop")).unwrap();
    let (c, e) = code(&["bob@example.test"], b"x\n");
    assert_eq!(c, 75, "{e}");
    assert!(
        e.contains("no maildrop: start `postroom smtpd` once"),
        "{e}"
    );
    // No configuration: EX_CONFIG.
    let mut c = sendmail();
    c.env("POSTROOM_CONFIG", dir.join("nowhere"))
        .arg("bob@example.test");
    let r = run(c, b"x\n");
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(
        r.stderr.contains("no configuration directory"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_maildrop_is_1733_and_each_file_is_its_submitters_alone() {
    let dir = Dir::new("sendmail-modes");
    let etc = setup(&dir);
    let md = dir.join("spool/maildrop");
    let meta = std::fs::metadata(&md).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o1733);
    assert_eq!(
        std::fs::metadata(dir.join("spool"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o711
    );
    submit(&etc, &["bob@example.test"], b"x\n");
    let files = crate::util::names_in(&md);
    assert_eq!(files.len(), 1);
    assert!(!files[0].starts_with('.'), "{files:?}");
    let f = std::fs::metadata(md.join(&files[0])).unwrap();
    assert_eq!(f.permissions().mode() & 0o777, 0o600);
    assert_eq!(f.uid(), nix::unistd::getuid().as_raw());
    let d = Submission::parse(&std::fs::read(md.join(&files[0])).unwrap()).unwrap();
    assert_eq!(d.recipients, ["bob@example.test"]);
}

#[test]
fn pickup_moves_a_garbage_file_to_corrupt_and_queues_the_good_one() {
    let dir = Dir::new("sendmail-garbage");
    let etc = setup(&dir);
    dir.write("spool/maildrop/junk", "not a maildrop file\n");
    submit(
        &etc,
        &["-f", "list@example.test", "bob@example.test"],
        b"x\n",
    );
    let spool = open(&dir);
    let p = spool.pickup().unwrap();
    assert_eq!(p.queued.len(), 1);
    assert_eq!(p.corrupt.len(), 1);
    assert_eq!(p.corrupt[0].name, "junk");
    assert!(
        p.corrupt[0].reason.starts_with("maildrop file line 1"),
        "{:?}",
        p.corrupt
    );
    assert_eq!(
        dir.read("spool/corrupt/maildrop-junk"),
        b"not a maildrop file\n"
    );
    let e = spool.entry(&p.queued[0].1).unwrap();
    // Root (or the spool's owner, who runs this test) is trusted with -f.
    assert_eq!(e.envelope.sender, "list@example.test");
    assert!(
        !String::from_utf8_lossy(&spool.message(&e.id).unwrap())
            .contains("X-Authentication-Warning")
    );
}

#[test]
fn postroom_answers_to_the_name_sendmail_and_to_the_subcommand() {
    let dir = Dir::new("sendmail-names");
    let etc = setup(&dir);
    let link = dir.join("sendmail");
    std::os::unix::fs::symlink(bin("postroom"), &link).unwrap();
    let mut c = Command::new(&link);
    c.env_clear()
        .env("POSTROOM_CONFIG", &etc)
        .args(["-oi", "bob@example.test"]);
    let r = run(c, b"Subject: via link\n\nx\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut c = cmd("postroom");
    c.args(["sendmail", "-C"])
        .arg(&etc)
        .args(["-oi", "--", "carol@example.test"]);
    let r = run(c, b"Subject: via subcommand\n\nx\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    // -bp is `postroom queue`.
    let mut c = sendmail();
    c.arg("-bp").arg("-C").arg(&etc);
    let r = run(c, b"");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "Mail queue is empty\n"),
        "{}",
        r.stderr
    );
    // So is the name mailq.
    let mailq = dir.join("mailq");
    std::os::unix::fs::symlink(bin("postroom"), &mailq).unwrap();
    let mut c = Command::new(&mailq);
    c.env_clear().env("POSTROOM_CONFIG", &etc);
    let r = run(c, b"");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "Mail queue is empty\n"),
        "{}",
        r.stderr
    );
    let got = pick_up(&dir);
    let mut all: Vec<Vec<&str>> = got.iter().map(|(e, _)| rcpts(e)).collect();
    all.sort();
    assert_eq!(all, [["bob@example.test"], ["carol@example.test"]]);
}

// ---- As another user: the X-Authentication-Warning and the trust check.

/// A throwaway system user, removed when dropped.
struct SysUser {
    uid: u32,
    gid: u32,
    name: String,
}

impl SysUser {
    fn new(tag: &str) -> SysUser {
        let name = format!("ps{}{tag}", std::process::id());
        crate::util::useradd(&name, Path::new("/nonexistent"));
        let u = nix::unistd::User::from_name(&name).unwrap().unwrap();
        SysUser {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            name,
        }
    }
}

impl std::ops::Drop for SysUser {
    fn drop(&mut self) {
        for _ in 0..20 {
            if Command::new("userdel")
                .arg(&self.name)
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        eprintln!("warning: could not remove the test user {}", self.name);
    }
}

#[test]
fn an_untrusted_dash_f_is_marked_and_a_forged_trust_claim_goes_to_corrupt() {
    if !require_tool("useradd") || !crate::util::require_root() {
        return;
    }
    let dir = Dir::new("sendmail-untrusted");
    let etc = setup(&dir);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let user = SysUser::new("sm");
    {
        use std::os::unix::process::CommandExt as _;
        let mut c = sendmail();
        c.uid(user.uid).gid(user.gid);
        c.args(["-oi", "-f", "boss@example.test", "-C"])
            .arg(&etc)
            .arg("bob@example.test");
        let r = run(c, b"Subject: from a user\n\nx\n");
        assert_eq!(r.code, 0, "{}", r.stderr);
        // The user may not list the maildrop (1733).
        let mut ls = Command::new("ls");
        ls.uid(user.uid)
            .gid(user.gid)
            .arg(dir.join("spool/maildrop"));
        assert_ne!(run(ls, b"").code, 0);
    }
    let md = dir.join("spool/maildrop");
    let files = crate::util::names_in(&md);
    assert_eq!(files.len(), 1);
    assert_eq!(
        std::fs::metadata(md.join(&files[0])).unwrap().uid(),
        user.uid
    );
    // A hand-made file of the same user claiming trust.
    let forged = Submission {
        uid: user.uid,
        user: user.name.clone(),
        sender: "ceo@example.test".into(),
        sender_set: true,
        trusted: true,
        hops: 1,
        recipients: vec!["bob@example.test".into()],
        message: b"Subject: forged\r\n\r\nx\r\n".to_vec(),
        ..Submission::default()
    };
    let path = md.join("forged");
    std::fs::write(&path, forged.to_bytes()).unwrap();
    std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid)).unwrap();
    let spool = open(&dir);
    let p = spool.pickup().unwrap();
    assert_eq!(p.queued.len(), 1, "{p:?}");
    assert_eq!(p.corrupt.len(), 1, "{p:?}");
    assert_eq!(p.corrupt[0].name, "forged");
    assert!(
        p.corrupt[0].reason.contains("claims a trusted sender"),
        "{:?}",
        p.corrupt
    );
    let e = spool.entry(&p.queued[0].1).unwrap();
    assert_eq!(e.envelope.sender, "boss@example.test");
    assert_eq!(
        e.envelope.client,
        format!("local (uid {} {})", user.uid, user.name)
    );
    let m = String::from_utf8_lossy(&spool.message(&e.id).unwrap()).into_owned();
    assert!(
        m.contains(&format!(
            "\r\nX-Authentication-Warning: mx.example.test: {} set sender to boss@example.test using -f\r\n",
            user.name
        )),
        "{m}"
    );
    assert!(
        m.starts_with(&format!("Received: (from {}@localhost)", user.name)),
        "{m}"
    );
}

// ---- With the server, and from an rcfile.

/// The example configuration (examples/etc-mail) in `dir`, listening on a
/// free loopback port, the runner looking every second.
fn example(dir: &Dir) -> PathBuf {
    crate::util::example_copy(
        dir,
        "",
        &[
            ("listen = 127.0.0.1:2525", "listen = 127.0.0.1:0"),
            ("queue_interval = 2", "queue_interval = 1"),
        ],
    )
}

#[test]
fn sendmail_to_a_running_server_ends_in_bobs_maildir() {
    let dir = Dir::new("sendmail-e2e");
    let etc = example(&dir);
    let server = Smtpd::start_config(&etc);
    let mut c = sendmail();
    c.env("POSTROOM_CONFIG", &etc)
        .args(["-oi", "bob@example.test"]);
    let r = run(c, b"Subject: from the host\n\nhello bob\n.\nstill here\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = String::from_utf8_lossy(&crate::smtpd::wait_for_file(
        &dir,
        "state/mail/bob/inbox/new",
    ))
    .into_owned();
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name;
    assert!(
        got.starts_with(&format!("Return-Path: <{user}@mx.example.test>\n")),
        "{got}"
    );
    assert!(
        got.contains(&format!(
            "\nReceived: (from {user}@localhost)\n\tby mx.example.test (postroom) id "
        )),
        "{got}"
    );
    assert!(got.contains("\nSubject: from the host\n"), "{got}");
    assert!(got.ends_with("\n\nhello bob\n.\nstill here\n"), "{got}");
    assert_eq!(
        crate::util::names_in(&dir.join("state/spool/maildrop")),
        Vec::<String>::new()
    );
    let log = server.log.lock().unwrap().join("\n");
    assert!(!log.contains("corrupt"), "{log}");
}

#[test]
fn an_rcfile_forward_through_deliver_reaches_the_maildrop_whole() {
    let dir = Dir::new("sendmail-rcfile");
    let etc = setup(&dir);
    let rc = dir.write("rc", ":0 c\n! carol@example.test\n\n:0\nkept/\n");
    let msg = b"From sender@client.test Thu Nov 26 12:00:00 2026\nFrom: sender@client.test\nTo: bob@example.test\nSubject: forward me\n\nfirst\n.\nlast\n";
    let mut c = cmd("deliver");
    c.arg("-m")
        .arg(format!("MAILDIR={}", dir.path().display()))
        .arg(format!("SENDMAIL={}", env!("CARGO_BIN_EXE_sendmail")))
        .arg(format!("POSTROOM_CONFIG={}", etc.display()))
        .arg(&rc);
    let r = run(c, msg);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(crate::util::names_in(&dir.join("kept/new")).len(), 1);
    let got = pick_up(&dir);
    assert_eq!(got.len(), 1);
    let (e, m) = &got[0];
    assert_eq!(rcpts(e), ["carol@example.test"]);
    // The original message, without its From_ line, its lone dot kept
    // (procmail passes -oi), CRLF in the queue, and the empty line procmail
    // itself puts at the end of a forwarded message (the real procmail
    // does the same, with an `!` to a script that records its input).
    let original = "From: sender@client.test\r\nTo: bob@example.test\r\nSubject: forward me\r\n";
    assert!(m.contains(original), "{m}");
    assert!(m.ends_with("\r\n\r\nfirst\r\n.\r\nlast\r\n\r\n"), "{m}");
    assert!(!m.contains("From sender@client.test Thu"), "{m}");
    // Nothing else in the maildrop, nothing half-written.
    assert!(crate::util::names_in(&dir.join("spool/maildrop")).is_empty());
}

#[test]
fn without_a_server_dash_q_picks_up_and_delivers() {
    let dir = Dir::new("sendmail-q");
    let etc = example(&dir);
    // The spool as a server leaves it: made, maildrop included.
    drop(
        Spool::open(
            dir.join("state/spool"),
            Schedule::default(),
            Arc::new(SystemClock),
        )
        .expect("open spool"),
    );
    let mut c = sendmail();
    c.env("POSTROOM_CONFIG", &etc)
        .args(["-oi", "bob@example.test"]);
    let r = run(c, b"Subject: queued while down\n\nx\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        crate::util::names_in(&dir.join("state/spool/maildrop")).len(),
        1
    );
    assert!(crate::util::names_in(&dir.join("state/mail/bob/inbox/new")).is_empty());
    let mut c = sendmail();
    c.env("POSTROOM_CONFIG", &etc).arg("-q");
    let r = run(c, b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("no server running"), "{}", r.stdout);
    let got = String::from_utf8_lossy(&crate::smtpd::wait_for_file(
        &dir,
        "state/mail/bob/inbox/new",
    ))
    .into_owned();
    assert!(got.contains("\nSubject: queued while down\n"), "{got}");
    assert!(crate::util::names_in(&dir.join("state/spool/maildrop")).is_empty());
    assert!(crate::util::names_in(&dir.join("state/spool/active")).is_empty());
}
