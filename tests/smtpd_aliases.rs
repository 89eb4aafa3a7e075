//! The aliases and virtusertable rules end to end: mail sent with real
//! clients (swaks, Python's smtplib) through the real `postroom smtpd`
//! (started from `relay::relay_config`: virtual users alice and bob whose
//! rcfiles deliver to `mail/<user>/`, relay.test through the mailertable,
//! delivery on arrival), and the bytes that land read back from disk:
//! mbox files, pipe output, Maildir copies and what an aiosmtpd sink got
//! (mta-semantics A.5, A.6, B.7).
//!
//! A test knows its deliveries are over when `postroom queue` says the
//! queue is empty: a forward and a DSN are queued before the entry they
//! come from is removed, so the queue is never empty in between. Every
//! wait is bounded, and the server and the sink are killed by their
//! guards even when a test panics. As root, files and pipes of the system
//! aliases run as the default user `nobody` (A.6.2), so the test directory
//! is made traversable and `out/` writable for everyone.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::relay::relay_config;
use crate::relay_client::{free_port, have_aiosmtpd, sink};
use crate::smtpd::{Smtpd, names, swaks};
use crate::util::{Dir, require_tool};

/// A server for example.test as `relay_config` makes it (relay.test to
/// 127.0.0.1:`port`), with `aliases` after `postmaster: alice` and
/// `virtusertable`; `{dir}` in either is replaced by the test directory.
/// `out/` is writable for the default user. The caller may change the
/// files before it starts the server.
fn configure(dir: &Dir, port: u16, aliases: &str, virtusertable: &str) {
    relay_config(dir, port, &[]);
    let root = dir.path().to_str().unwrap();
    dir.write(
        "etc/aliases",
        format!("postmaster: alice\n{}", aliases.replace("{dir}", root)),
    );
    dir.write("etc/virtusertable", virtusertable.replace("{dir}", root));
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::create_dir(dir.join("out")).unwrap();
    std::fs::set_permissions(dir.join("out"), std::fs::Permissions::from_mode(0o777)).unwrap();
}

/// [`configure`], then the server started.
fn setup(dir: &Dir, port: u16, aliases: &str, virtusertable: &str) -> Smtpd {
    configure(dir, port, aliases, virtusertable);
    Smtpd::start(dir)
}

/// Sends `data` (a whole message, LF line ends) with swaks from `from` to
/// `to`; it must be accepted.
fn send(server: &Smtpd, from: &str, to: &str, data: &str) {
    let (code, t) = swaks(server, &["--from", from, "--to", to, "--data", data]);
    assert_eq!(code, 0, "{t}");
}

/// A small message with `subject`.
fn msg(subject: &str) -> String {
    format!("Subject: {subject}\n\nbody of {subject}")
}

/// Waits (at most 30 s) until the server's queue is empty: every
/// delivery, forward and DSN is done.
fn wait_empty(dir: &Dir) {
    crate::smtpd::wait_settled(&dir.join("etc"), &dir.join("spool"));
}

/// The messages in `user`'s Maildir (`mail/<user>/new`), in name order.
fn inbox(dir: &Dir, user: &str) -> Vec<String> {
    let rel = format!("mail/{user}/new");
    names(dir, &rel)
        .iter()
        .map(|n| String::from_utf8_lossy(&dir.read(&format!("{rel}/{n}"))).into_owned())
        .collect()
}

/// The Subject of each message in `user`'s Maildir, sorted.
fn subjects(dir: &Dir, user: &str) -> Vec<String> {
    let mut v: Vec<String> = inbox(dir, user)
        .iter()
        .map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or("(none)")
                .to_string()
        })
        .collect();
    v.sort();
    v
}

/// The header lines before the first `Received:` one: the trace fields
/// local delivery added (B.7).
fn trace(message: &str) -> Vec<&str> {
    message
        .lines()
        .take_while(|l| !l.starts_with("Received: "))
        .collect()
}

/// The uid of the default user the aliases' files and pipes run as.
fn nobody_uid() -> u32 {
    nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a `nobody` user")
        .uid
        .as_raw()
}

/// Asserts that `rel` was created by the default user when we are root
/// (A.6.2: never as root); as another user it is ours.
fn assert_written_by_default_user(dir: &Dir, rel: &str) {
    let uid = std::fs::metadata(dir.join(rel)).unwrap().uid();
    if nix::unistd::geteuid().is_root() {
        assert_eq!(uid, nobody_uid(), "{rel} written as uid {uid}");
    } else {
        assert_eq!(uid, nix::unistd::geteuid().as_raw(), "{rel}");
    }
}

#[test]
fn a_file_alias_appends_each_message_in_mbox_format_as_the_default_user() {
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("aliases-file");
    let server = setup(&dir, free_port(), "archive: {dir}/out/archive\n", "");
    send(
        &server,
        "sender@client.test",
        "archive@example.test",
        &msg("one"),
    );
    send(
        &server,
        "sender@client.test",
        "archive@example.test",
        &msg("two"),
    );
    wait_empty(&dir);
    let text = String::from_utf8(dir.read("out/archive")).unwrap();
    let copies: Vec<&str> = text.split("From sender@client.test ").collect();
    assert_eq!(copies[0], "", "the file starts with a From_ line: {text}");
    assert_eq!(copies.len(), 3, "two copies: {text}");
    for (copy, subject) in copies[1..].iter().zip(["one", "two"]) {
        let (_date, rest) = copy.split_once('\n').unwrap();
        assert_eq!(
            trace(rest),
            [
                "Return-Path: <sender@client.test>",
                "X-Original-To: archive@example.test",
                "Delivered-To: archive@example.test",
            ],
            "{rest}"
        );
        assert!(
            rest.contains("Received: from client.test (unknown [127.0.0.1])\n\tby mx.example.test (postroom) with ESMTP id "),
            "{rest}"
        );
        // LF line ends, and the blank line that ends an mbox message.
        assert!(!rest.contains('\r'), "{rest:?}");
        let want_end = format!("\nSubject: {subject}\n\nbody of {subject}\n\n");
        assert!(rest.ends_with(&want_end), "{rest:?}");
    }
    assert_written_by_default_user(&dir, "out/archive");
    // Nothing went to a mailbox.
    assert!(names(&dir, "mail/alice/new").is_empty());
    drop(server);
}

#[test]
fn pipe_aliases_get_the_message_on_stdin_directly_and_through_the_shell() {
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("aliases-pipe");
    // `tee` has no shell metacharacters and runs directly; the second
    // needs /bin/sh (A.10) and also records $SENDER.
    let server = setup(
        &dir,
        free_port(),
        "logger: \"|/usr/bin/tee {dir}/out/tee\", \"|cat > {dir}/out/sh; echo $SENDER > {dir}/out/sender\"\n",
        "",
    );
    send(
        &server,
        "sender@client.test",
        "logger@example.test",
        &msg("piped"),
    );
    wait_empty(&dir);
    for rel in ["out/tee", "out/sh"] {
        let got = String::from_utf8(dir.read(rel)).unwrap();
        // No From_ line: a pipe gets the message itself.
        assert_eq!(
            trace(&got),
            [
                "Return-Path: <sender@client.test>",
                "X-Original-To: logger@example.test",
                "Delivered-To: logger@example.test",
            ],
            "{rel}: {got}"
        );
        assert!(!got.contains('\r'), "{rel}: {got:?}");
        assert!(
            got.ends_with("\nSubject: piped\n\nbody of piped\n"),
            "{rel}: {got:?}"
        );
        assert_written_by_default_user(&dir, rel);
    }
    assert_eq!(dir.read("out/sender"), b"sender@client.test\n");
    drop(server);
}

#[test]
fn a_pipe_alias_gets_the_command_line_as_written_with_its_quoting() {
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("aliases-pipe-sh");
    // The example of the brief: a quoted pipe running `sh -c '...'`.
    let server = setup(
        &dir,
        free_port(),
        "logger: \"|/bin/sh -c 'cat > {dir}/out/out'\"\n",
        "",
    );
    send(
        &server,
        "sender@client.test",
        "logger@example.test",
        &msg("sh -c"),
    );
    wait_empty(&dir);
    let got = String::from_utf8(dir.read("out/out")).unwrap();
    assert!(
        got.starts_with("Return-Path: <sender@client.test>\nX-Original-To: logger@example.test\n"),
        "{got}"
    );
    assert!(got.ends_with("\n\nbody of sh -c\n"), "{got:?}");
    drop(server);
}

#[test]
fn an_include_list_gives_each_member_one_copy_from_the_lists_owner() {
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("aliases-include");
    dir.write("lists/team", "# the team\nalice\nbob, alice\n");
    dir.write("lists/crew", "alice\nbob\n");
    // A.6.4, sendmail's rule: a plain owner value is the sender itself
    // (qualified with the host name); any other value makes the sender
    // `owner-NAME@host`.
    let server = setup(
        &dir,
        free_port(),
        "team: :include:{dir}/lists/team\nowner-team: alice\n\
         crew: :include:{dir}/lists/crew\nowner-crew: alice, bob\n\
         plain: :include:{dir}/lists/crew\n",
        "",
    );
    send(
        &server,
        "sender@client.test",
        "team@example.test",
        &msg("team"),
    );
    send(
        &server,
        "sender@client.test",
        "crew@example.test",
        &msg("crew"),
    );
    send(
        &server,
        "sender@client.test",
        "plain@example.test",
        &msg("plain"),
    );
    wait_empty(&dir);
    for user in ["alice", "bob"] {
        assert_eq!(subjects(&dir, user), ["crew", "plain", "team"], "{user}");
        for m in inbox(&dir, user) {
            let list = m.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap();
            let sender = match list {
                "team" => "alice@mx.example.test",
                "crew" => "owner-crew@mx.example.test",
                // No owner alias: the envelope sender stays (A.6.4).
                _ => "sender@client.test",
            };
            assert_eq!(
                trace(&m),
                [
                    format!("Return-Path: <{sender}>"),
                    format!("X-Original-To: {list}@example.test"),
                    format!("Delivered-To: {list}@example.test"),
                ],
                "{user}: {m}"
            );
        }
    }
    drop(server);
}

#[test]
fn a_list_setting_gives_every_copy_the_lists_fields_and_request_reaches_the_owner() {
    if !have_aiosmtpd() || !require_tool("swaks") {
        return;
    }
    // mta-semantics E with `list = ...` in postroom.conf: local and
    // remote members' copies carry List-Id, List-Post, List-Help/
    // Subscribe/Unsubscribe (team-request has no alias: it reaches the
    // owner), List-Owner and Precedence: list, in place of the post's own
    // List-* and Precedence fields; the sender is the owner.
    let dir = Dir::new("aliases-list-fields");
    let port = free_port();
    std::fs::create_dir(dir.join("primary")).unwrap();
    let _primary = sink(&dir.join("primary"), &["--port", &port.to_string()]);
    dir.write("lists/team", "alice\nbob\nfriend@relay.test\n");
    configure(
        &dir,
        port,
        "team: :include:{dir}/lists/team\nowner-team: alice\n",
        "",
    );
    let mut conf = dir.read("etc/postroom.conf");
    conf.extend_from_slice(b"list = team@example.test The example team\n");
    dir.write("etc/postroom.conf", conf);
    let server = Smtpd::start(&dir);
    send(
        &server,
        "sender@client.test",
        "team@example.test",
        "Subject: post\nPrecedence: bulk\nList-Id: Elsewhere <other.list.test>\nList-Unsubscribe:\n <mailto:x@other.list.test>\n\nhello team",
    );
    send(
        &server,
        "sender@client.test",
        "team-request@example.test",
        &msg("unsubscribe"),
    );
    wait_empty(&dir);
    let fields = [
        "List-Id: The example team <team.example.test>",
        "List-Post: <mailto:team@example.test>",
        "List-Help: <mailto:team-request@example.test?subject=help>",
        "List-Subscribe: <mailto:team-request@example.test?subject=subscribe>",
        "List-Unsubscribe: <mailto:team-request@example.test?subject=unsubscribe>",
        "List-Owner: <mailto:owner-team@example.test>",
        "Precedence: list",
    ];
    let check = |m: &str, eol: &str| {
        let header = &m[..m.find(&format!("{eol}{eol}")).expect("a header")];
        let want = fields.join(eol);
        assert!(header.ends_with(&want), "list fields last in {header:?}");
        for gone in ["Precedence: bulk", "other.list.test"] {
            assert!(!header.contains(gone), "{gone} kept in {header:?}");
        }
        assert!(m.ends_with(&format!("{eol}{eol}hello team{eol}")), "{m:?}");
    };
    assert_eq!(subjects(&dir, "alice"), ["post", "unsubscribe"]);
    assert_eq!(subjects(&dir, "bob"), ["post"]);
    for user in ["alice", "bob"] {
        let m = inbox(&dir, user)
            .into_iter()
            .find(|m| m.contains("Subject: post"))
            .unwrap();
        assert!(
            m.starts_with("Return-Path: <alice@mx.example.test>\n"),
            "{m}"
        );
        check(&m, "\n");
    }
    // The request message is no list copy.
    let request = inbox(&dir, "alice")
        .into_iter()
        .find(|m| m.contains("Subject: unsubscribe"))
        .unwrap();
    assert!(!request.contains("List-Id:"), "{request}");
    assert!(
        request.contains("Delivered-To: team-request@example.test\n"),
        "{request}"
    );
    // The remote member's copy, relayed with the owner as sender.
    assert_eq!(names(&dir, "primary"), ["1.eml", "1.json"]);
    let meta = String::from_utf8(dir.read("primary/1.json")).unwrap();
    assert!(
        meta.contains("\"mail_from\": \"alice@mx.example.test\""),
        "{meta}"
    );
    check(
        &String::from_utf8(dir.read("primary/1.eml")).unwrap(),
        "\r\n",
    );
    drop(server);
}

#[test]
fn a_failed_member_of_an_owned_list_is_reported_to_the_owner() {
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("aliases-owner-dsn");
    // ghost is no user: that member fails after the RCPT was accepted
    // (A.6.5), and the report goes to the list's owner, alice, not to the
    // sender, bob.
    dir.write("lists/team", "bob\nghost\n");
    let server = setup(
        &dir,
        free_port(),
        "team: :include:{dir}/lists/team\nowner-team: alice\n",
        "",
    );
    send(
        &server,
        "bob@example.test",
        "team@example.test",
        &msg("owned"),
    );
    wait_empty(&dir);
    let alice = inbox(&dir, "alice");
    assert_eq!(alice.len(), 1, "one DSN for the owner: {alice:?}");
    for want in [
        "Final-Recipient: rfc822; ghost@mx.example.test",
        "Original-Recipient: rfc822;team@example.test",
        "Status: 5.1.1",
    ] {
        assert!(alice[0].contains(want), "no {want:?} in {}", alice[0]);
    }
    // bob got his copy and no DSN.
    assert_eq!(subjects(&dir, "bob"), ["owned"]);
    drop(server);
}

#[test]
fn an_alias_loop_is_accepted_and_its_member_bounced_as_user_unknown() {
    if !require_tool("python3") {
        return;
    }
    let dir = Dir::new("aliases-loop");
    // A.6.3: loop1 → loop2 → loop1 makes loop1 a self reference, which
    // means the mailbox loop1; there is none, so that member fails with
    // user unknown. A.6.5: a member's failure does not refuse the RCPT of
    // an existing alias; it is reported by DSN to the sender (bob).
    let server = setup(&dir, free_port(), "loop1: loop2\nloop2: loop1\n", "");
    let out = crate::smtpd::python(
        &server,
        r#"
import os, smtplib
s = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]), timeout=10)
s.ehlo("client.test")
s.mail("bob@example.test")
c, m = s.rcpt("loop1@example.test")
print("rcpt", c, m.decode())
c, m = s.data(b"Subject: loop\r\n\r\nround and round\r\n")
print("data", c, m.decode().split(" as ")[0])
s.quit()
"#,
    );
    assert_eq!(out, "rcpt 250 2.1.5 Ok\ndata 250 2.0.0 Ok: queued\n");
    wait_empty(&dir);
    let dsns = inbox(&dir, "bob");
    assert_eq!(dsns.len(), 1, "{dsns:?}");
    for want in [
        "Return-Path: <>",
        "Final-Recipient: rfc822; loop1@example.test",
        "Action: failed",
        "Status: 5.1.1",
        "Subject: loop",
    ] {
        assert!(dsns[0].contains(want), "no {want:?} in {}", dsns[0]);
    }
    drop(server);
}

#[test]
fn a_virtusertable_loop_is_refused_at_rcpt_with_554_5_4_6() {
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("aliases-vloop");
    // A.5: hops are counted per recipient and stop past 10.
    let server = setup(
        &dir,
        free_port(),
        "",
        "vloop1@example.test vloop2@example.test\nvloop2@example.test vloop1@example.test\n",
    );
    let (code, t) = swaks(
        &server,
        &[
            "--from",
            "sender@client.test",
            "--to",
            "vloop1@example.test",
        ],
    );
    assert_ne!(code, 0, "{t}");
    let want = "<** 554 5.4.6 <vloop1@example.test>: aliasing/forwarding loop broken (11 aliases deep; 10 max)";
    assert!(t.lines().any(|l| l.trim_start() == want), "{t}");
    drop(server);
}

#[test]
fn a_backslash_name_goes_to_the_mailbox_without_aliasing() {
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("aliases-backslash");
    // bob is an alias for alice; `\bob` is bob's own mailbox (A.6.2).
    let server = setup(&dir, free_port(), "bob: alice\ndirect: \\bob\n", "");
    send(
        &server,
        "sender@client.test",
        "bob@example.test",
        &msg("to bob"),
    );
    send(
        &server,
        "sender@client.test",
        "direct@example.test",
        &msg("direct"),
    );
    wait_empty(&dir);
    assert_eq!(subjects(&dir, "alice"), ["to bob"]);
    assert_eq!(subjects(&dir, "bob"), ["direct"]);
    let m = &inbox(&dir, "bob")[0];
    assert_eq!(
        trace(m),
        [
            "Return-Path: <sender@client.test>",
            "X-Original-To: direct@example.test",
            "Delivered-To: direct@example.test",
        ]
    );
    drop(server);
}

#[test]
fn duplicate_members_of_an_alias_are_delivered_once_each() {
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("aliases-dup");
    // A.6.3: one copy per distinct final target; `ALICE`, `\alice` and
    // `alice@example.test` are the same mailbox.
    let server = setup(
        &dir,
        free_port(),
        "both: alice, alice, bob, ALICE, \\alice, alice@example.test\n",
        "",
    );
    send(
        &server,
        "sender@client.test",
        "both@example.test",
        &msg("both"),
    );
    wait_empty(&dir);
    assert_eq!(subjects(&dir, "alice"), ["both"]);
    assert_eq!(subjects(&dir, "bob"), ["both"]);
    drop(server);
}

#[test]
fn a_mailbox_reached_by_two_recipients_of_one_message_gets_one_copy() {
    if !require_tool("python3") {
        return;
    }
    let dir = Dir::new("aliases-envelope-dup");
    let server = setup(&dir, free_port(), "both: alice, bob\n", "");
    let out = crate::smtpd::python(
        &server,
        r#"
import os, smtplib
s = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]), timeout=10)
refused = s.sendmail("sender@client.test", ["alice@example.test", "both@example.test"],
                     b"Subject: envelope\r\n\r\nonce\r\n")
print("refused", refused)
s.quit()
"#,
    );
    assert_eq!(out, "refused {}\n");
    wait_empty(&dir);
    assert_eq!(subjects(&dir, "alice"), ["envelope"]);
    assert_eq!(subjects(&dir, "bob"), ["envelope"]);
    drop(server);
}

#[test]
fn a_remote_alias_member_reaches_the_relay_with_delivered_to_on_top() {
    if !have_aiosmtpd() || !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("aliases-forward");
    let port = free_port();
    std::fs::create_dir(dir.join("primary")).unwrap();
    let _primary = sink(&dir.join("primary"), &["--port", &port.to_string()]);
    // `far` keeps a local copy in alice's mailbox too.
    let server = setup(&dir, port, "far: friend@relay.test, alice\n", "");
    send(
        &server,
        "sender@client.test",
        "far@example.test",
        &msg("far away"),
    );
    wait_empty(&dir);
    let got = names(&dir, "primary");
    assert_eq!(got, ["1.eml", "1.json"], "one message relayed");
    let meta = String::from_utf8(dir.read("primary/1.json")).unwrap();
    // An alias keeps the envelope sender (A.5, RFC 5321 §3.9.1).
    assert!(
        meta.contains("\"mail_from\": \"sender@client.test\""),
        "{meta}"
    );
    assert!(
        meta.contains("\"rcpt_tos\": [\"friend@relay.test\"]"),
        "{meta}"
    );
    let relayed = String::from_utf8(dir.read("primary/1.eml")).unwrap();
    // B.7: `Delivered-To:` on top so a loop is seen when it comes back;
    // no Return-Path on relayed mail; the line ends as queued.
    assert!(
        relayed.starts_with(
            "Delivered-To: far@example.test\r\nReceived: from client.test (unknown [127.0.0.1])\r\n"
        ),
        "{relayed}"
    );
    assert!(!relayed.contains("Return-Path:"), "{relayed}");
    assert!(relayed.ends_with("\r\nbody of far away\r\n"), "{relayed:?}");
    assert_eq!(subjects(&dir, "alice"), ["far away"]);
    drop(server);
}

#[test]
fn a_virtusertable_catch_all_takes_every_address_not_listed_before_it() {
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("aliases-catchall");
    // A.5: `@d` is tried last, and before the mailbox users: alice keeps
    // her own mail only because she is listed; bob's goes to the
    // catch-all. Its `%1` is the local part without the detail.
    configure(
        &dir,
        free_port(),
        "",
        "alice@example.test alice\n@example.test catchall\n",
    );
    dir.write(
        "etc/users",
        "alice:homes/alice\nbob:homes/bob\ncatchall:homes/catchall\n",
    );
    let inbox_dir = dir.join("mail/catchall");
    dir.write(
        "etc/homes/catchall/.procmailrc",
        format!("DEFAULT={}/\n", inbox_dir.display()),
    );
    let server = Smtpd::start(&dir);
    let cases = [
        ("someone@example.test", "someone"),
        ("alice@example.test", "alice"),
        ("bob@example.test", "bob"),
        ("x+y@example.test", "plussed"),
    ];
    for (to, subject) in cases {
        send(&server, "sender@client.test", to, &msg(subject));
    }
    wait_empty(&dir);
    assert_eq!(subjects(&dir, "alice"), ["alice"]);
    assert!(subjects(&dir, "bob").is_empty());
    assert_eq!(subjects(&dir, "catchall"), ["bob", "plussed", "someone"]);
    // Each copy says where it was sent (X-Original-To) and which address
    // took it (Delivered-To: the recipient as given).
    let m = inbox(&dir, "catchall")
        .into_iter()
        .find(|m| m.contains("Subject: someone"))
        .unwrap();
    assert_eq!(
        trace(&m),
        [
            "Return-Path: <sender@client.test>",
            "X-Original-To: someone@example.test",
            "Delivered-To: someone@example.test",
        ]
    );
    drop(server);
}

#[test]
fn plus_details_follow_the_virtusertable_key_order() {
    if !require_tool("swaks") {
        return;
    }
    let dir = Dir::new("aliases-plus");
    // A.5 keys for `u+x@d`: `u+x@d`, `u++@d` (x not empty), `u+*@d`,
    // `u@d`; A.6.6: a mailbox user takes `user+anything` and its rcfile
    // gets the detail as $1 (procmail's `-a`).
    let server = {
        configure(
            &dir,
            free_port(),
            "",
            "sales+urgent@example.test bob\nsales@example.test alice\n\
             help+*@example.test bob\nhelp@example.test alice\n\
             list++@example.test bob\nlist@example.test alice\n",
        );
        let bob = dir.join("mail/bob");
        let tagged = dir.join("mail/bob-tagged");
        dir.write(
            "etc/homes/bob/.procmailrc",
            format!(
                "DEFAULT={}/\nDETAIL=$1\n:0\n* DETAIL ?? .\n{}/\n",
                bob.display(),
                tagged.display()
            ),
        );
        Smtpd::start(&dir)
    };
    // (address, subject, the Maildir it must land in)
    let cases = [
        ("sales+urgent@example.test", "key 1 exact", "bob"),
        ("Sales+Urgent@Example.TEST", "key 1 any case", "bob"),
        ("sales+other@example.test", "key 4 u", "alice"),
        ("sales@example.test", "key 1 plain", "alice"),
        ("list+x@example.test", "key 2 u++", "bob"),
        ("list+@example.test", "key 4 not u++ when empty", "alice"),
        ("help+x@example.test", "key 3 u+*", "bob"),
        ("help+@example.test", "key 3 empty detail", "bob"),
        ("help@example.test", "no plus", "alice"),
        ("bob+news@example.test", "mailbox detail", "bob-tagged"),
        ("bob@example.test", "mailbox plain", "bob"),
    ];
    for (to, subject, _) in cases {
        send(&server, "sender@client.test", to, &msg(subject));
    }
    wait_empty(&dir);
    for folder in ["alice", "bob", "bob-tagged"] {
        let mut want: Vec<&str> = cases
            .iter()
            .filter(|c| c.2 == folder)
            .map(|c| c.1)
            .collect();
        want.sort();
        assert_eq!(subjects(&dir, folder), want, "in mail/{folder}");
    }
    // The virtusertable rewrote the envelope only: X-Original-To and
    // Delivered-To keep the address as the client gave it (its domain
    // lower case).
    let m = inbox(&dir, "bob-tagged").pop().unwrap();
    assert_eq!(
        trace(&m),
        [
            "Return-Path: <sender@client.test>",
            "X-Original-To: bob+news@example.test",
            "Delivered-To: bob+news@example.test",
        ]
    );
    drop(server);
}
