//! The worked examples the README walks through, run as a user would run
//! them: the example server (`examples/etc-mail`, copied into a test
//! folder with only its listening port changed) takes mail from swaks and
//! delivers it through the example users' rcfiles, and the files that land
//! under `state/` are read back. One test per job: spam routing, mailing
//! lists (aliases and an rcfile list), vacation replies, formail.
//!
//! Every wait is bounded; the server is killed by its guard even when a
//! test panics.

use std::process::Command;

use crate::smtpd::{Smtpd, swaks};
use crate::util::{Dir, names_in, require_tool};

/// The example configuration and the sendmail stub copied into `dir` as
/// they lie in the checkout (`examples/etc-mail/`,
/// `examples/sendmail-stub`, `examples/bin/`; state goes to
/// `examples/state/`), with
/// `target/debug` the directory of the binaries under test (the example
/// rcfiles fall back on it to find `postroom`), listening on a free
/// loopback port, and the server started.
fn start(dir: &Dir) -> Smtpd {
    std::fs::create_dir_all(dir.join("target")).unwrap();
    let bin = crate::util::bin("postroom");
    std::os::unix::fs::symlink(bin.parent().unwrap(), dir.join("target/debug")).unwrap();
    crate::util::example_copy(
        dir,
        "examples",
        &[("listen = 127.0.0.1:2525", "listen = 127.0.0.1:0")],
    );
    Smtpd::start_config(&dir.join("examples/etc-mail"))
}

/// Sends `data` (header and body, LF line ends) from `from` to `to`; it
/// must be accepted.
fn send(server: &Smtpd, from: &str, to: &str, data: &str) {
    let (code, t) = swaks(server, &["--from", from, "--to", to, "--data", data]);
    assert_eq!(code, 0, "{t}");
}

/// Waits (at most 30 s) until the example's queue is empty: every
/// delivery, forward and reply is done.
fn wait_empty(dir: &Dir) {
    crate::smtpd::wait_settled(
        &dir.join("examples/etc-mail"),
        &dir.join("examples/state/spool"),
    );
}

/// The messages of Maildir `state/mail/<rel>`, keyed by their Subject.
fn maildir(dir: &Dir, rel: &str) -> Vec<(String, String)> {
    let new = dir.join(&format!("examples/state/mail/{rel}/new"));
    let mut v: Vec<(String, String)> = names_in(&new)
        .iter()
        .map(|n| with_subject(&new.join(n)))
        .collect();
    v.sort();
    v
}

/// The subjects of Maildir `state/mail/<rel>`, sorted.
fn subjects(dir: &Dir, rel: &str) -> Vec<String> {
    maildir(dir, rel).into_iter().map(|(s, _)| s).collect()
}

/// The GTUBE test string: SpamAssassin scores it 1000.
const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

#[test]
fn spam_rules_send_spamassassins_spam_and_high_scores_to_the_spam_folder() {
    // examples/etc-mail/rc/spam.rc, included by alice's rcfile: the real
    // SpamAssassin (spamc finds no spamd and hands the message back; then
    // `spamassassin -L -x`) marks the GTUBE message; the weighted score
    // sends it and the casino offer to spam/, the lunch question to the
    // inbox.
    if !require_tool("swaks") || !require_tool("spamassassin") {
        return;
    }
    let dir = Dir::new("example-spam");
    let server = start(&dir);
    let from = "someone@client.test";
    send(
        &server,
        from,
        "alice@example.test",
        &format!("Subject: test pattern\nMessage-ID: <gtube@client.test>\n\n{GTUBE}\n"),
    );
    send(
        &server,
        from,
        "alice@example.test",
        "Subject: Claim your casino bonus, winner\nTo: undisclosed-recipients:;\n\
         Content-Type: text/html\n\n<p>Act now</p>\n",
    );
    send(
        &server,
        from,
        "alice@example.test",
        "Subject: lunch?\nMessage-ID: <lunch@client.test>\n\nNoon at the usual place?\n",
    );
    wait_empty(&dir);
    assert_eq!(
        subjects(&dir, "alice/spam"),
        ["Claim your casino bonus, winner", "test pattern"]
    );
    assert_eq!(subjects(&dir, "alice/inbox"), ["lunch?"]);
    for (subject, m) in maildir(&dir, "alice/spam") {
        assert!(m.contains("\nX-Spam-Checker-Version: SpamAssassin"), "{m}");
        if subject == "test pattern" {
            assert!(m.contains("\nX-Spam-Flag: YES\n"), "{m}");
        }
    }
    let (_, lunch) = &maildir(&dir, "alice/inbox")[0];
    assert!(lunch.contains("\nX-Spam-Status: No,"), "{lunch}");
    drop(server);
}

#[test]
fn lists_by_alias_carry_list_fields_and_the_rcfile_list_stops_loops() {
    // team@example.test: the aliases' :include: list, made a list by
    // `list =` in postroom.conf. friends@example.test: a list kept in bob's
    // rcfile, which forwards each post with X-Loop and files a post that
    // comes back with it.
    if !require_tool("swaks") || !require_tool("formail") {
        return;
    }
    let dir = Dir::new("example-lists");
    let server = start(&dir);
    let from = "someone@client.test";
    send(
        &server,
        from,
        "team@example.test",
        "Subject: team meeting\nTo: team@example.test\nMessage-ID: <m1@client.test>\n\
         Precedence: bulk\n\nAt ten.\n",
    );
    send(
        &server,
        from,
        "friends@example.test",
        "Subject: dinner\nTo: friends@example.test\nMessage-ID: <m2@client.test>\n\nFriday?\n",
    );
    send(
        &server,
        from,
        "friends@example.test",
        "Subject: came back\nTo: friends@example.test\nMessage-ID: <m3@client.test>\n\
         X-Loop: friends@example.test\n\nround and round\n",
    );
    wait_empty(&dir);
    let members = std::fs::read_to_string(dir.join("examples/etc-mail/lists/team")).unwrap();
    let mut got = 0;
    for user in ["alice", "bob", "carol"] {
        // alice files the team into the Maildir team/, carol into the MH
        // folder team/, bob every list by its List-Id (list.team/).
        let folder = if user == "bob" { "list.team" } else { "team" };
        let copies: Vec<(String, String)> = maildir(&dir, &format!("{user}/{folder}"))
            .into_iter()
            .chain(mh(&dir, &format!("{user}/{folder}")))
            .collect();
        if !members.lines().any(|l| l.trim() == user) {
            assert!(copies.is_empty(), "{user} is no member: {copies:?}");
            continue;
        }
        assert_eq!(copies.len(), 1, "{user}: {copies:?}");
        // MH messages keep deliver's From_ line, as procmail's do.
        let m = &copies[0].1;
        let m = match m.strip_prefix("From ") {
            Some(rest) => &rest[rest.find('\n').unwrap() + 1..],
            None => &m[..],
        };
        got += 1;
        // The owner (alice) is the envelope sender; the list's fields
        // replace the post's Precedence.
        assert!(
            m.starts_with("Return-Path: <alice@mx.example.test>\n"),
            "{m}"
        );
        for want in [
            // A `.` is no atom character: the description is quoted.
            "\nList-Id: \"The example.test team\" <team.example.test>\n",
            "\nList-Post: <mailto:team@example.test>\n",
            "\nList-Owner: <mailto:owner-team@example.test>\n",
            "\nPrecedence: list\n",
        ] {
            assert!(m.contains(want), "{user}: no {want:?} in {m}");
        }
        assert!(!m.contains("Precedence: bulk"), "{m}");
    }
    assert!(got > 0, "nobody of {members:?} got the team post");
    // friends: alice and carol get the post through bob's forward, with
    // X-Loop and bob as the sender; the post that came back stays with bob.
    for user in ["alice", "carol"] {
        let inbox = maildir(&dir, &format!("{user}/inbox"));
        let dinner: Vec<&String> = inbox
            .iter()
            .filter(|(s, _)| s == "dinner")
            .map(|(_, m)| m)
            .collect();
        assert_eq!(dinner.len(), 1, "{user}: {inbox:?}");
        let m = dinner[0];
        assert!(m.starts_with("Return-Path: <bob@example.test>\n"), "{m}");
        assert!(m.contains("\nX-Loop: friends@example.test\n"), "{m}");
        assert!(m.contains("\nPrecedence: list\n"), "{m}");
        assert!(!inbox.iter().any(|(s, _)| s == "came back"), "{inbox:?}");
    }
    assert_eq!(subjects(&dir, "bob/friends-looped"), ["came back"]);
    assert!(subjects(&dir, "bob/inbox").is_empty());
    drop(server);
}

/// The messages of MH folder `state/mail/<rel>` (numbered files), keyed
/// by their Subject.
fn mh(dir: &Dir, rel: &str) -> Vec<(String, String)> {
    let folder = dir.join(&format!("examples/state/mail/{rel}"));
    names_in(&folder)
        .iter()
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .map(|n| with_subject(&folder.join(n)))
        .collect()
}

#[test]
fn formail_in_alices_rcfile_answers_each_sender_once_through_postroom_formail() {
    // alice's rcfile keeps the classic procmail vacation idiom: `formail
    // -rD 8192 vacation.cache` remembers each sender (formail's cache
    // format), and `formail -r -I... -A...` builds the reply header for the
    // sendmail stub. Her PATH puts examples/bin first, where `formail` is
    // a link to the postroom under test.
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("example-formail");
    let server = start(&dir);
    let out = Command::new(dir.join("examples/bin/formail"))
        .arg("-v")
        .output()
        .expect("run examples/bin/formail");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(postroom "),
        "examples/bin/formail is not postroom's: {out:?}"
    );
    // One at a time: the stub numbers its files by counting them.
    for (from, subject) in [
        ("someone@client.test", "first"),
        ("someone@client.test", "second"),
        ("other@client.test", "third"),
    ] {
        send(
            &server,
            from,
            "alice@example.test",
            &format!(
                "From: {from}\nTo: alice@example.test\nSubject: {subject}\n\
                 Message-ID: <{subject}@client.test>\n\nHello.\n"
            ),
        );
        wait_empty(&dir);
    }
    assert_eq!(subjects(&dir, "alice/inbox"), ["first", "second", "third"]);
    let outbox = dir.join("examples/state/outbox");
    let replies: Vec<String> = names_in(&outbox)
        .iter()
        .map(|n| std::fs::read_to_string(outbox.join(n)).unwrap())
        .collect();
    assert_eq!(replies.len(), 2, "one reply per sender: {replies:?}");
    for (reply, (to, subject)) in replies.iter().zip([
        ("someone@client.test", "first"),
        ("other@client.test", "third"),
    ]) {
        for want in [
            "X-Stub-Argv: -oi -t\n".to_string(),
            format!("\nTo: {to}\n"),
            format!("\nSubject: Re: {subject}\n"),
            format!("\nIn-Reply-To: <{subject}@client.test>\n"),
            "\nPrecedence: junk\n".to_string(),
            "\nX-Loop: alice@example.test\n".to_string(),
            "\n\nI am away until Monday".to_string(),
        ] {
            assert!(reply.contains(&want), "no {want:?} in {reply}");
        }
    }
    // formail's cache: NUL-terminated keys, the insertion point marked by
    // an empty key.
    let cache = std::fs::read(dir.join("examples/state/mail/alice/vacation.cache")).unwrap();
    assert_eq!(cache, b"someone@client.test\0other@client.test\0\0");
    drop(server);
}

/// The message in file `p` with its Subject first.
fn with_subject(p: &std::path::Path) -> (String, String) {
    let m = String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    let subject = m
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or("(none)")
        .to_string();
    (subject, m)
}
