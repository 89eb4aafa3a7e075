//! `postroom vacation` for real: the binary run on messages into the
//! maildrop of a temporary spool (the database, its interval, many
//! deliveries at once, the exit codes), and end to end behind the real
//! `postroom smtpd`: carol's example rcfile (`:0 c` + `| postroom
//! vacation`) and a sendmail-style alias pipe, with the replies read back
//! from the senders' Maildirs. Every child runs under a deadline and is
//! killed by a guard even on panic; servers listen on 127.0.0.1 only;
//! every wait is bounded.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use postroom::queue::maildrop::Submission;

use crate::relay::relay_config;
use crate::relay_client::free_port;
use crate::smtpd::{Smtpd, names, swaks, wait_for_file};
use crate::util::{Dir, bin, cmd, finish, require_tool, run_fed as run, spawn_fed};

/// The sendmail tests' configuration (host mx.example.test, its spool
/// at `dir/spool` with the maildrop made) and carol's message file at
/// `dir/away.msg`. Returns `dir/etc`.
fn setup(dir: &Dir) -> PathBuf {
    let etc = crate::sendmail::setup(dir);
    dir.write("away.msg", "I am away until Monday.\n");
    etc
}

fn open_spool(dir: &Dir) {
    drop(crate::sendmail::open(dir));
}

/// `postroom vacation -C etc -f dir/db -m dir/away.msg ARGS` with a clean
/// environment.
fn vacation(dir: &Dir, args: &[&str]) -> Command {
    let mut c = cmd("postroom");
    c.arg("vacation")
        .arg("-C")
        .arg(dir.join("etc"))
        .arg("-f")
        .arg(dir.join("db"))
        .arg("-m")
        .arg(dir.join("away.msg"))
        .args(args);
    c
}

/// A personal message from `sender` to carol.
fn personal(sender: &str, n: u32) -> Vec<u8> {
    format!(
        "From {sender} Thu Nov 26 12:00:00 2026\nFrom: {sender}\nTo: Carol <carol@example.test>\n\
         Subject: question {n}\nMessage-ID: <m{n}@client.test>\n\nsecret body {n}\n"
    )
    .into_bytes()
}

/// The maildrop files, parsed, in name order.
fn maildrop(dir: &Dir) -> Vec<Submission> {
    names(dir, "spool/maildrop")
        .iter()
        .map(|n| Submission::parse(&dir.read(&format!("spool/maildrop/{n}"))).expect("parse"))
        .collect()
}

/// The decision for every message in `fixtures/vacation` (`reply-*` must
/// be answered, `skip-*` not), with LF and with CRLF line ends, for carol;
/// the reasons snapshotted.
#[test]
fn the_fixture_corpus_gets_these_decisions_with_lf_and_crlf() {
    use postroom::vacation::decide::{Incoming, Me, decide, envelope_sender};
    let me = Me {
        login: "carol",
        aliases: &[],
        check_recipient: true,
    };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vacation");
    let mut table = String::new();
    let mut seen = 0;
    for name in crate::util::names_in(&fixtures) {
        let lf = std::fs::read(fixtures.join(&name)).unwrap();
        let crlf = String::from_utf8(lf.clone()).unwrap().replace('\n', "\r\n");
        let mut outcomes = Vec::new();
        for msg in [lf, crlf.into_bytes()] {
            let inc = Incoming::parse(&msg);
            let got = match decide(&inc, envelope_sender(&inc, None, None), &me) {
                Ok(s) => format!("reply to {s}"),
                Err(skip) => format!("no reply: {skip}"),
            };
            outcomes.push(got);
        }
        assert_eq!(outcomes[0], outcomes[1], "{name}: LF and CRLF agree");
        let want_reply = name.starts_with("reply-");
        assert!(want_reply || name.starts_with("skip-"), "{name}");
        assert_eq!(
            outcomes[0].starts_with("reply to "),
            want_reply,
            "{name}: {}",
            outcomes[0]
        );
        table.push_str(&format!("{name}: {}\n", outcomes[0]));
        seen += 1;
    }
    assert!(seen >= 10, "the corpus is there ({seen} files)");
    insta::assert_snapshot!(table);
}

#[test]
fn one_reply_goes_to_the_maildrop_with_the_null_sender() {
    let dir = Dir::new("vacation-one");
    setup(&dir);
    let r = run(vacation(&dir, &["carol"]), &personal("bob@client.test", 1));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = maildrop(&dir);
    assert_eq!(got.len(), 1);
    let d = &got[0];
    assert_eq!(d.sender, "", "<>");
    assert_eq!(d.recipients, ["bob@client.test"]);
    let m = String::from_utf8(d.message.clone()).unwrap();
    for want in [
        "\r\nFrom: carol@mx.example.test\r\n",
        "\r\nTo: bob@client.test\r\n",
        "\r\nSubject: Re: question 1\r\n",
        "\r\nIn-Reply-To: <m1@client.test>\r\n",
        "\r\nReferences: <m1@client.test>\r\n",
        "\r\nAuto-Submitted: auto-replied\r\n",
        "\r\nPrecedence: bulk\r\n",
        "\r\n\r\nI am away until Monday.\r\n",
    ] {
        assert!(m.contains(want), "{want:?} in {m}");
    }
    assert!(m.starts_with("Received: (from "), "{m}");
    assert!(!m.contains("X-Authentication-Warning"), "{m}");
    assert!(!m.contains("secret"), "never the original body: {m}");
    assert!(m.contains(".vacation@mx.example.test>\r\n"), "{m}");
    // -l shows the sender answered.
    let r = run(vacation(&dir, &["-l"]), b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("bob@client.test "), "{}", r.stdout);
}

#[test]
fn many_deliveries_at_once_for_one_sender_reply_exactly_once() {
    let dir = Dir::new("vacation-race");
    setup(&dir);
    let msg = personal("bob@client.test", 1);
    let children: Vec<_> = (0..8)
        .map(|_| spawn_fed(vacation(&dir, &["carol"]), &msg))
        .collect();
    for g in children {
        let (r, wrote) = finish(g);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(wrote, "all input read");
    }
    let got = maildrop(&dir);
    assert_eq!(got.len(), 1, "exactly one reply");
    assert_eq!(got[0].recipients, ["bob@client.test"]);
    // A different sender still gets one.
    let r = run(vacation(&dir, &["carol"]), &personal("dan@client.test", 2));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(maildrop(&dir).len(), 2);
}

#[test]
fn the_interval_then_once_only() {
    let dir = Dir::new("vacation-interval");
    setup(&dir);
    let count = || maildrop(&dir).len();
    let send = |args: &[&str]| {
        let mut a = args.to_vec();
        a.push("carol");
        let r = run(vacation(&dir, &a), &personal("bob@client.test", 1));
        assert_eq!(r.code, 0, "{}", r.stderr);
    };
    send(&["-t", "1s"]);
    assert_eq!(count(), 1);
    // The interval is stored: no -t now.
    send(&[]);
    assert_eq!(count(), 1, "within the interval");
    std::thread::sleep(Duration::from_millis(1100));
    send(&[]);
    assert_eq!(count(), 2, "the interval is over");
    std::thread::sleep(Duration::from_millis(1100));
    // -r 0: once only, stored too, whatever the time.
    send(&["-r", "0"]);
    assert_eq!(count(), 2, "answered before: never again");
    std::thread::sleep(Duration::from_millis(1100));
    send(&[]);
    assert_eq!(count(), 2);
    let db = String::from_utf8(dir.read("db")).unwrap();
    assert!(
        db.starts_with("postroom-vacation 1\ninterval once\nat "),
        "{db}"
    );
}

#[test]
fn no_reply_exits_0_reads_everything_and_needs_no_configuration() {
    let dir = Dir::new("vacation-none");
    // No configuration at all: a decision not to reply needs none.
    dir.write("away.msg", "away\n");
    let mut big = b"From list@lists.test Thu Nov 26 12:00:00 2026\nTo: carol@example.test\n\
                    List-Id: Team <team.lists.test>\nSubject: news\n\n"
        .to_vec();
    big.extend(std::iter::repeat_n(b'x', 2 << 20));
    big.push(b'\n');
    let mut c = vacation(&dir, &["-d", "carol"]);
    c.env("POSTROOM_CONFIG", dir.join("nowhere"));
    let g = spawn_fed(c, &big);
    let (r, wrote) = finish(g);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(wrote, "the whole 2 MB message was read");
    assert!(
        r.stderr.contains("carol: no reply: list mail (List-Id:)"),
        "{}",
        r.stderr
    );
    assert!(!dir.join("db").exists(), "no database for a decided no");
}

#[test]
fn a_failure_to_queue_the_reply_exits_75_and_records_nothing() {
    let dir = Dir::new("vacation-tempfail");
    setup(&dir);
    std::fs::remove_dir_all(dir.join("spool")).unwrap();
    let r = run(vacation(&dir, &["carol"]), &personal("bob@client.test", 1));
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("cannot send the reply to bob@client.test"),
        "{}",
        r.stderr
    );
    // Not recorded: once the spool is back, the retry answers.
    open_spool(&dir);
    let r = run(vacation(&dir, &["carol"]), &personal("bob@client.test", 1));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(maildrop(&dir).len(), 1);
    // A missing message file is a failure too, not a silent no.
    let r = run(
        vacation(&dir, &["-m", "/nonexistent/away", "carol"]),
        &personal("erin@client.test", 2),
    );
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("cannot read the message file /nonexistent/away"),
        "{}",
        r.stderr
    );
}

#[test]
fn exclusions_listing_and_a_fresh_start() {
    let dir = Dir::new("vacation-x");
    setup(&dir);
    let r = run(vacation(&dir, &["-x"]), b"@client.test\nBoss@Work.test\n\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(vacation(&dir, &["-l"]), b"");
    assert_eq!(
        r.stdout,
        format!(
            "{:<40} (exclusion)\n{:<40} (exclusion)\n",
            "@client.test", "boss@work.test"
        )
    );
    for s in ["bob@client.test", "boss@work.test"] {
        let r = run(vacation(&dir, &["carol"]), &personal(s, 1));
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    assert_eq!(maildrop(&dir).len(), 0, "excluded");
    // -i starts over: the exclusions are gone.
    let r = run(vacation(&dir, &["-i"]), b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(run(vacation(&dir, &["-l"]), b"").stdout, "");
    let r = run(vacation(&dir, &["carol"]), &personal("bob@client.test", 1));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(maildrop(&dir).len(), 1);
}

#[test]
fn a_bad_command_line_is_64_and_the_name_vacation_works_as_a_link() {
    let dir = Dir::new("vacation-usage");
    setup(&dir);
    let r = run(vacation(&dir, &["-q", "carol"]), b"");
    assert_eq!(r.code, 64);
    assert!(r.stderr.contains("unknown option `-q`"), "{}", r.stderr);
    let r = run(vacation(&dir, &[]), b"");
    assert_eq!(r.code, 64);
    assert!(r.stderr.contains("no login name given"), "{}", r.stderr);
    // postroom installed as `vacation` takes vacation(1)'s command line.
    let link = dir.join("vacation");
    std::os::unix::fs::symlink(bin("postroom"), &link).unwrap();
    let mut c = Command::new(&link);
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg("-C")
        .arg(dir.join("etc"))
        .arg("-f")
        .arg(dir.join("db"))
        .arg("-m")
        .arg(dir.join("away.msg"))
        .arg("carol");
    let r = run(c, &personal("bob@client.test", 1));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(maildrop(&dir).len(), 1);
}

// ---- End to end behind `postroom smtpd`.

/// Local users besides the example's: each only sends, and their inbox
/// would show any reply they were wrongly sent.
const SENDERS: &[&str] = &["dave", "erin", "frank", "gina", "hank"];

/// The example configuration copied into `dir` (as the smtpd tests do),
/// listening on a free port, delivering on arrival and picking up every
/// second; the users in [`SENDERS`] added with an rcfile that keeps
/// everything in `state/mail/<user>/inbox/`; carol's rcfile run with the
/// postroom under test first in PATH.
fn example(dir: &Dir) -> PathBuf {
    crate::util::example_copy(
        dir,
        "",
        &[
            ("listen = 127.0.0.1:2525", "listen = 127.0.0.1:0"),
            ("queue_interval = 2", "queue_interval = 1"),
        ],
    );
    let mut users = String::from_utf8(dir.read("etc-mail/users")).unwrap();
    for u in SENDERS {
        users.push_str(&format!("{u}:homes/{u}\n"));
        dir.write(
            &format!("etc-mail/homes/{u}/.procmailrc"),
            format!(
                "DEFAULT={}/\n",
                dir.join(&format!("state/mail/{u}/inbox")).display()
            ),
        );
    }
    dir.write("etc-mail/users", users);
    let rc = String::from_utf8(dir.read("etc-mail/homes/carol/.procmailrc")).unwrap();
    assert!(rc.contains("\n| postroom vacation "), "{rc}");
    let bin_dir = bin("postroom").parent().unwrap().to_path_buf();
    dir.write(
        "etc-mail/homes/carol/.procmailrc",
        format!("PATH={}:$PATH\n{rc}", bin_dir.display()),
    );
    dir.join("etc-mail")
}

/// Sends with swaks: `from` (`<>` for the null sender) to `to`, the header fields
/// `fields` (LF separated) and a body; it must be accepted.
fn send(server: &Smtpd, from: &str, to: &str, fields: &str) {
    let data = format!("{fields}\nDate: Thu, 26 Nov 2026 12:00:00 +0000\n\nbody\n");
    let (code, t) = swaks(server, &["--from", from, "--to", to, "--data", &data]);
    assert_eq!(code, 0, "{t}");
}

/// Waits (at most 30 s) until `postroom queue` is empty and nothing is
/// left in the maildrop.
fn wait_settled(dir: &Dir, etc: &Path, spool: &str) {
    crate::smtpd::wait_settled(etc, &dir.join(spool));
}

/// The messages in Maildir `rel/new` under `dir`.
fn messages(dir: &Dir, rel: &str) -> Vec<String> {
    names(dir, &format!("{rel}/new"))
        .iter()
        .map(|n| String::from_utf8_lossy(&dir.read(&format!("{rel}/new/{n}"))).into_owned())
        .collect()
}

#[test]
fn carols_rcfile_answers_once_and_never_lists_bulk_robots_bccs_or_bounces() {
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("vacation-e2e");
    let etc = example(&dir);
    let server = Smtpd::start_config(&etc);
    let carol = "carol@example.test";
    // First: bob writes to carol; his inbox gets the reply.
    send(
        &server,
        "bob@example.test",
        carol,
        "From: Bob <bob@example.test>\nTo: Carol <carol@example.test>\n\
         Subject: =?utf-8?q?Caf=C3=A9?= tomorrow\nMessage-ID: <first@example.test>",
    );
    let reply = String::from_utf8(wait_for_file(&dir, "state/mail/bob/inbox/new")).unwrap();
    // Then everything that must not be answered, and bob again.
    send(
        &server,
        "bob@example.test",
        carol,
        "From: bob@example.test\nTo: carol@example.test\nSubject: again",
    );
    send(
        &server,
        "dave@example.test",
        carol,
        "From: dave@example.test\nTo: carol@example.test\nSubject: list\n\
         List-Id: Friends <friends.example.test>",
    );
    send(
        &server,
        "erin@example.test",
        carol,
        "From: erin@example.test\nTo: carol@example.test\nSubject: bulk\nPrecedence: bulk",
    );
    send(
        &server,
        "frank@example.test",
        carol,
        "From: frank@example.test\nTo: carol@example.test\nSubject: robot\n\
         Auto-Submitted: auto-generated",
    );
    send(
        &server,
        "gina@example.test",
        carol,
        "From: gina@example.test\nTo: hank@example.test\nSubject: blind copy",
    );
    send(
        &server,
        "<>",
        carol,
        "From: Mail Delivery System <MAILER-DAEMON@example.test>\nTo: carol@example.test\n\
         Subject: bounce",
    );
    wait_settled(&dir, &etc, "state/spool");
    // A stray reply would still be on its way through the maildrop and
    // the queue: give it three pick-up intervals.
    std::thread::sleep(Duration::from_secs(3));
    wait_settled(&dir, &etc, "state/spool");

    // carol's folders work as before: all seven in her inbox.
    assert_eq!(messages(&dir, "state/mail/carol/inbox").len(), 7);
    // Exactly one reply in all: bob's, and nothing for anyone else.
    assert_eq!(
        messages(&dir, "state/mail/bob/inbox").len(),
        1,
        "one reply to bob"
    );
    for u in SENDERS {
        assert_eq!(
            messages(&dir, &format!("state/mail/{u}/inbox")),
            Vec::<String>::new(),
            "{u}"
        );
    }
    assert_eq!(names(&dir, "state/outbox"), Vec::<String>::new());
    for want in [
        "Return-Path: <>\n",
        "\nDelivered-To: bob@example.test\n",
        "\nFrom: Carol <carol@example.test>\n",
        "\nTo: bob@example.test\n",
        "\nSubject: Re: =?utf-8?q?Caf=C3=A9?= tomorrow\n",
        "\nIn-Reply-To: <first@example.test>\n",
        "\nReferences: <first@example.test>\n",
        "\nAuto-Submitted: auto-replied\n",
        "\nPrecedence: bulk\n",
        "\nContent-Type: text/plain; charset=utf-8\n",
        "about \"Café tomorrow\"\nwhen I am back.",
    ] {
        assert!(reply.contains(want), "{want:?} in {reply}");
    }
    assert!(reply.starts_with("Return-Path: <>\n"), "{reply}");
    assert!(!reply.contains("\nbody\n"), "{reply}");
    let db = String::from_utf8(dir.read("state/mail/carol/vacation.db")).unwrap();
    assert_eq!(db.matches("\nat ").count(), 1, "{db}");
    assert!(db.contains(" bob@example.test\n"), "{db}");
}

#[test]
fn an_alias_pipe_answers_through_the_queue_as_the_default_user() {
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("vacation-alias");
    relay_config(&dir, free_port(), &[]);
    // As root, pipes of the system aliases run as `nobody` (A.6.2): the
    // directory must be traversable and out/ writable for everyone.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::create_dir(dir.join("out")).unwrap();
    std::fs::set_permissions(dir.join("out"), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir.write("out/away.msg", "Subject: Away\n\nAlice is away.\n");
    // vacation(1)'s classic form, postroom installed under its name; no
    // -C: the runner gives pipes POSTROOM_CONFIG.
    let link = dir.join("out/vacation");
    std::os::unix::fs::symlink(bin("postroom"), &link).unwrap();
    dir.write(
        "etc/aliases",
        format!(
            "postmaster: alice\nalice-away: alice, \"|{} -f {} -m {} -a alice-away alice\"\n",
            link.display(),
            dir.join("out/db").display(),
            dir.join("out/away.msg").display()
        ),
    );
    let server = Smtpd::start(&dir);
    for subject in ["one", "two"] {
        let data = format!(
            "From: bob@example.test\nTo: alice-away@example.test\nSubject: {subject}\n\nhi\n"
        );
        let (code, t) = swaks(
            &server,
            &[
                "--from",
                "bob@example.test",
                "--to",
                "alice-away@example.test",
                "--data",
                &data,
            ],
        );
        assert_eq!(code, 0, "{t}");
    }
    let reply = String::from_utf8(wait_for_file(&dir, "mail/bob/new")).unwrap();
    wait_settled(&dir, &dir.join("etc"), "spool");
    std::thread::sleep(Duration::from_secs(3));
    wait_settled(&dir, &dir.join("etc"), "spool");
    assert_eq!(messages(&dir, "mail/alice").len(), 2, "alice keeps both");
    assert_eq!(messages(&dir, "mail/bob").len(), 1, "one reply");
    assert!(reply.starts_with("Return-Path: <>\n"), "{reply}");
    assert!(reply.contains("\nFrom: alice@mx.example.test\n"), "{reply}");
    assert!(reply.contains("\nSubject: Away\n"), "{reply}");
    assert!(
        reply.contains("\nAuto-Submitted: auto-replied\n"),
        "{reply}"
    );
    assert!(reply.ends_with("\n\nAlice is away.\n"), "{reply}");
    // Never as root: the database and the submission are the default
    // user's (or ours when we are not root).
    let want = if nix::unistd::geteuid().is_root() {
        nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("a `nobody` user")
            .uid
            .as_raw()
    } else {
        nix::unistd::geteuid().as_raw()
    };
    assert_eq!(std::fs::metadata(dir.join("out/db")).unwrap().uid(), want);
    let name = nix::unistd::User::from_uid(want.into())
        .unwrap()
        .unwrap()
        .name;
    assert!(
        reply.contains(&format!("\nReceived: (from {name}@localhost)\n")),
        "{reply}"
    );
}
