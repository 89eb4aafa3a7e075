//! Differential tests of `postroom::mailbox` against the real procmail:
//! the same messages go through `procmail -m rc` in one temp dir and
//! through `mailbox::deliver` in another, and the files must match byte
//! for byte (Maildir names and directory-folder codes compared by shape).
//! Also: 8 processes appending to one mbox at once (half procmail, half
//! ours) and a write that fails halfway.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use postroom::mailbox::lock::{DotLock, LockParams};
use postroom::mailbox::{self, Delivered, Level, MailboxError, WriteOpts};

use crate::util::{Dir, require_tool};

/// The message corpus: postmarks, `From ` lines in header and body,
/// `>From` lines, Content-Length fields already holding procmail's value,
/// missing final newlines, an empty message.
const MSGS: &[&[u8]] = &[
    b"From alice@example.com  Mon Jan  6 10:00:00 2025\n>From bob  foo\nSubject: hi\nFrom x\n\nFrom body1\nFrom body2\n>From kept\ntext\n",
    b"From a  b\nFrom x\nSubject: s\n\nFrom body\nfrom low\nFromnospace\n>From q\n From sp\nFrom last",
    b"From a  b\nContent-Length:9\n\n12345678\nFrom x\nFrom y\n",
    b"From a  b\nContent-Length: 20\n\nFrom \nFrom 2\nFrom 3\n",
    b"Subject: no postmark\n\nbody\n\n",
    b"\n\nSubject: x\nFrom y\n\nFrom b\n",
    b"\n\nFrom x\nSubject: y\nFrom z\n\nbody\n",
    b"Subject: only a header\n",
    b"x",
    b"",
];

/// Where procmail's header ends: leading empty lines skipped, then up to
/// and including the first empty line (spec §3).
fn body_start(m: &[u8]) -> usize {
    let lead = m.iter().take_while(|&&b| b == b'\n').count();
    let from = (lead + 1).min(m.len());
    m[from..]
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or(m.len(), |p| from + p + 2)
}

/// The Content-Length value, trusted as already right for the fixtures.
fn protect(m: &[u8]) -> Option<usize> {
    let header = &m[..body_start(m)];
    header.split(|&b| b == b'\n').find_map(|l| {
        let v = l.strip_prefix(b"Content-Length:")?;
        std::str::from_utf8(v).ok()?.trim().parse().ok()
    })
}

/// Postmark plus the `>From ` lines below it.
fn envelope_len(m: &[u8]) -> usize {
    if !m.starts_with(b"From ") {
        return 0;
    }
    let mut n = 0;
    loop {
        let line_end = m[n..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(m.len(), |p| n + p + 1);
        n = line_end;
        if !m[n..].starts_with(b">From ") {
            return n;
        }
    }
}

fn opts_for(m: &[u8], raw: bool) -> WriteOpts {
    WriteOpts {
        raw,
        body_start: body_start(m),
        protect: protect(m),
        envelope_len: envelope_len(m),
        fsync: false,
        ..WriteOpts::default()
    }
}

fn umask() -> u32 {
    let s = fs::read_to_string("/proc/self/status").unwrap();
    let v = s.lines().find_map(|l| l.strip_prefix("Umask:")).unwrap();
    u32::from_str_radix(v.trim(), 8).unwrap()
}

/// Runs the real procmail on `msg` in `dir` with a one-recipe rcfile.
/// Returns the size from the log abstract.
fn procmail(dir: &Path, flags: &str, action: &str, msg: &[u8]) -> Option<usize> {
    let rc = format!(
        "UMASK={:03o}\nLOGFILE=pm.log\n:0{flags}\n{action}\n",
        umask()
    );
    fs::write(dir.join("pm.rc"), rc).unwrap();
    let _ = fs::remove_file(dir.join("pm.log"));
    let mut child = Command::new("procmail")
        .args(["-m", "./pm.rc"])
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::piped())
        .spawn()
        .expect("run procmail");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(msg).unwrap();
    child.wait().unwrap();
    let log = fs::read_to_string(dir.join("pm.log")).unwrap_or_default();
    let folder = log.lines().find(|l| l.starts_with("  Folder: "))?;
    folder
        .rsplit(|c: char| c.is_whitespace())
        .next()?
        .parse()
        .ok()
}

/// Our delivery of `msg` to `names` (relative to `dir`); LASTFOLDER made
/// relative again.
/// The part of `msg` a recipe with `flags` writes (`h`, `b` or both) and
/// the options describing it.
fn part(msg: &[u8], flags: &str) -> (Vec<u8>, WriteOpts) {
    let mut o = opts_for(msg, flags.contains('r'));
    let bs = body_start(msg);
    match (flags.contains('h'), flags.contains('b')) {
        (true, false) => {
            o.body_start = bs;
            o.envelope_len = o.envelope_len.min(bs);
            (msg[..bs].to_vec(), o)
        }
        (false, true) => {
            o.body_start = 0;
            o.envelope_len = 0;
            (msg[bs..].to_vec(), o)
        }
        _ => (msg.to_vec(), o),
    }
}

fn ours(
    dir: &Path,
    names: &[&str],
    msg: &[u8],
    flags: &str,
) -> (Result<Delivered, MailboxError>, Vec<String>) {
    let (data, opts) = part(msg, flags);
    let prefix = format!("{}/", dir.display());
    let full: Vec<String> = names
        .iter()
        .map(|n| match n.starts_with('/') {
            true => n.to_string(),
            false => format!("{prefix}{n}"),
        })
        .collect();
    let mut lines = Vec::new();
    let r = mailbox::deliver(&full, &data, &opts, &mut |l, t| {
        if l == Level::Always {
            lines.push(String::from_utf8_lossy(t).replace(&prefix, ""));
        }
    });
    let r = r.map(|mut d| {
        d.lastfolder = String::from_utf8_lossy(&d.lastfolder)
            .replace(&prefix, "")
            .into_bytes();
        d
    });
    (r, lines)
}

/// Every file under `dir` (except the rcfile and log) by relative path,
/// with Maildir names and directory codes replaced by placeholders.
fn tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
        let mut entries: Vec<_> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for (i, p) in entries.iter().enumerate() {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == "pm.rc" || rel == "pm.log" {
                continue;
            }
            let meta = fs::metadata(p).unwrap();
            let mode = meta.mode() & 0o7777;
            let base = p.file_name().unwrap().to_string_lossy();
            let norm = if rel.contains("/new/") || rel.contains("/tmp/") {
                rel.replace(&*base, &format!("MAILDIR{i}"))
            } else if base.starts_with("msg.") {
                rel.replace(&*base, "msg.CODE")
            } else {
                rel.clone()
            };
            if meta.is_dir() {
                out.insert(format!("{norm}/"), (Vec::new(), mode));
                walk(root, p, out);
            } else {
                out.insert(norm, (fs::read(p).unwrap(), mode));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn show(t: &BTreeMap<String, (Vec<u8>, u32)>) -> String {
    t.iter()
        .map(|(k, (v, m))| format!("{k} {m:o}: {:?}\n", String::from_utf8_lossy(v)))
        .collect()
}

/// Delivers every message of the corpus with both programs, twice over,
/// and compares the trees and the abstract sizes.
fn differential(flags: &str, action: &str, setup: &(dyn Fn(&Path) + Sync)) {
    if !require_tool("procmail") {
        return;
    }
    let names: Vec<&str> = action.split(' ').collect();
    // One thread per message: procmail sleeps a second on a new mbox
    // (its new-mail trick, spec §10.3), so running them side by side keeps
    // the test short.
    std::thread::scope(|s| {
        let runs: Vec<_> = MSGS
            .iter()
            .enumerate()
            .map(|(i, msg)| {
                let names = &names;
                s.spawn(move || {
                    let theirs = Dir::new("pm");
                    let mine = Dir::new("ours");
                    setup(theirs.path());
                    setup(mine.path());
                    for round in 0..2 {
                        let want_size = procmail(theirs.path(), flags, action, msg);
                        let (got, _) = ours(mine.path(), names, msg, flags);
                        let got = got.unwrap_or_else(|e| panic!("msg {i} `{action}`: {e}"));
                        if let Some(want) = want_size {
                            assert_eq!(got.written, want, "msg {i} round {round} `{action}` size");
                        }
                    }
                    let (want, got) = (tree(theirs.path()), tree(mine.path()));
                    assert_eq!(show(&got), show(&want), "msg {i} `:0{flags}` `{action}`");
                })
            })
            .collect();
        for r in runs {
            if let Err(p) = r.join() {
                std::panic::resume_unwind(p);
            }
        }
    });
}

#[test]
fn mbox_matches_procmail() {
    differential("", "box", &|_| {});
}

#[test]
fn dev_null_matches_procmail() {
    differential("", "/dev/null", &|_| {});
}

#[test]
fn header_or_body_only_matches_procmail() {
    for flags in ["h", "b", "hr", "br"] {
        differential(flags, "box", &|_| {});
        differential(flags, "md/", &|_| {});
        differential(flags, "mh/.", &|_| {});
    }
}

#[test]
fn raw_mbox_matches_procmail() {
    differential("r", "box", &|_| {});
}

#[test]
fn existing_mbox_gets_o_x_like_procmail() {
    differential("", "box", &|d| {
        fs::write(d.join("box"), "old\n").unwrap();
        fs::set_permissions(
            d.join("box"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    });
}

#[test]
fn maildir_matches_procmail() {
    differential("", "md/", &|_| {});
}

#[test]
fn maildir_with_extra_slashes_and_old_dirs_matches_procmail() {
    differential("", "md///", &|d| {
        for sub in ["md", "md/new", "md/cur", "md/tmp"] {
            fs::create_dir(d.join(sub)).unwrap();
            fs::set_permissions(
                d.join(sub),
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )
            .unwrap();
        }
    });
}

#[test]
fn mh_matches_procmail() {
    differential("", "mh//.", &|d| {
        fs::create_dir(d.join("mh")).unwrap();
        fs::write(d.join("mh/7"), "seven\n").unwrap();
        fs::write(d.join("mh/09x"), "not a number\n").unwrap();
    });
}

#[test]
fn raw_mh_matches_procmail() {
    differential("r", "mh/.", &|_| {});
}

#[test]
fn directory_folder_matches_procmail() {
    differential("", "dd", &|d| fs::create_dir(d.join("dd")).unwrap());
}

#[test]
fn multi_folder_matches_procmail() {
    differential("", "a/. b md/ c", &|d| fs::create_dir(d.join("c")).unwrap());
    differential("", "md/ y/ z/. w", &|_| {});
    differential("", "dd a/.", &|d| fs::create_dir(d.join("dd")).unwrap());
}

#[test]
fn mbox_first_skips_the_rest_like_procmail() {
    differential("", "m1 m2/ m3", &|_| {});
    let d = Dir::new("skip");
    let (got, lines) = ours(d.path(), &["m1", "m2/", "m3"], MSGS[0], "");
    let got = got.unwrap();
    assert_eq!(got.lastfolder, b"m1");
    let prefix = format!("{}/", d.path().display());
    let skipped: Vec<String> = got
        .skipped
        .iter()
        .map(|n| String::from_utf8_lossy(n).replace(&prefix, ""))
        .collect();
    assert_eq!(skipped, ["m2/", "m3"]);
    // Checked: procmail logs `Skipped "m2/ m3"`.
    assert_eq!(lines, vec!["Skipped \"m2/ m3\"".to_string()]);
}

#[test]
fn file_where_a_directory_is_wanted_becomes_an_mbox() {
    differential("", "f1/", &|d| fs::write(d.join("f1"), "old\n").unwrap());
    differential("", "f2/.", &|d| fs::write(d.join("f2"), "old\n").unwrap());
    let d = Dir::new("notdir");
    d.write("f1", "old\n");
    let (got, lines) = ours(d.path(), &["f1/"], MSGS[4], "");
    assert_eq!(got.unwrap().lastfolder, b"f1");
    // Checked against procmail's log.
    assert_eq!(
        lines,
        vec!["Unable to treat as directory \"f1\"".to_string()]
    );
}

#[test]
fn lastfolder_has_procmails_shape() {
    let d = Dir::new("lastfolder");
    fs::create_dir(d.join("dd")).unwrap();
    let (got, _) = ours(d.path(), &["md/", "y/", "z/.", "w", "dd"], MSGS[0], "");
    let lf = String::from_utf8(got.unwrap().lastfolder).unwrap();
    let parts: Vec<&str> = lf.split(' ').collect();
    assert_eq!(parts.len(), 5, "{lf}");
    let host = String::from_utf8(mailbox::local_host()).unwrap();
    let pid = std::process::id();
    for (part, dir) in parts[..2].iter().zip(["md", "y"]) {
        let name = part
            .strip_prefix(&format!("{dir}/new/"))
            .unwrap_or_else(|| panic!("{part}"));
        let (t, rest) = name.split_once('.').unwrap();
        assert!(t.parse::<u64>().is_ok(), "{name}");
        let (pid_n, h) = rest.split_once('.').unwrap();
        assert_eq!(h, host);
        let (p, n) = pid_n.split_once('_').unwrap();
        assert_eq!(p, pid.to_string());
        assert!(n.parse::<u32>().is_ok(), "{name}");
    }
    assert_eq!(parts[2], "z/1");
    // Directory folders: msg. + the inode code, least significant first.
    for part in &parts[3..] {
        let code = part.rsplit_once("/msg.").unwrap().1;
        let ino = fs::metadata(d.join(part)).unwrap().ino();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let decoded = code.bytes().rev().fold(0u64, |n, c| {
            n * 64 + alphabet.find(c as char).unwrap() as u64
        });
        assert_eq!(decoded, ino, "{part}");
    }
    assert_eq!(fs::metadata(d.join(parts[0])).unwrap().nlink(), 5);
}

#[test]
fn dev_null_writes_nothing() {
    let d = Dir::new("devnull");
    let got = mailbox::deliver(
        &["/dev/null"],
        b"x\n",
        &WriteOpts::default(),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(got.lastfolder, b"/dev/null");
    assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
}

#[test]
fn missing_parent_is_a_write_error() {
    let d = Dir::new("noparent");
    let (got, lines) = ours(d.path(), &["nodir/box"], MSGS[0], "");
    let err = got.unwrap_err();
    // Checked: procmail logs `Error while writing to "nodir/box"` and
    // still sets LASTFOLDER.
    assert_eq!(
        lines,
        vec!["Error while writing to \"nodir/box\"".to_string()]
    );
    assert!(err.lastfolder().is_some());
    assert_eq!(err.outcome().exit_code(), 75);
}

// ---------------------------------------------------------------------
// Helpers run in a child process: the test binary re-executes itself with
// POSTROOM_MAILBOX_CHILD set and runs only `child_entry`.

const CHILD: &str = "POSTROOM_MAILBOX_CHILD";

fn spawn_child(mode: &str, args: &[&str]) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "mailbox::child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, format!("{mode}\x1f{}", args.join("\x1f")))
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Not a test of its own: does the child's work when re-executed.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let parts: Vec<&str> = spec.split('\x1f').collect();
    match parts[0] {
        "append" => {
            let (dir, id, count) = (parts[1], parts[2], parts[3].parse::<usize>().unwrap());
            let dotlock = parts[4] == "dotlock";
            let lock = Path::new(dir).join("box.lock");
            let params = LockParams {
                sleep: Duration::from_millis(5),
                ..LockParams::default()
            };
            for k in 0..count {
                let msg = concurrent_msg(id, k);
                let l = dotlock.then(|| DotLock::acquire(&lock, &params, &mut |_, _| {}).unwrap());
                let mut o = opts_for(&msg, false);
                o.fsync = true;
                mailbox::deliver(&[format!("{dir}/box")], &msg, &o, &mut |_, _| {}).unwrap();
                if let Some(l) = l {
                    l.release(&mut |_, _| {}).unwrap();
                }
            }
        }
        "fsize" => {
            // A write that fails halfway: the file size limit, with SIGXFSZ
            // ignored so that write(2) returns EFBIG instead of killing us.
            let limit: u64 = parts[2].parse().unwrap();
            // SAFETY: plain libc calls on valid arguments.
            unsafe {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let rl = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &rl), 0);
            }
            let msg = big_msg();
            let mut lines = Vec::new();
            let r = mailbox::deliver(&[parts[1]], &msg, &opts_for(&msg, false), &mut |l, t| {
                if l != Level::Verbose {
                    lines.push(String::from_utf8_lossy(t).into_owned())
                }
            });
            let err = r.expect_err("the write must fail");
            let MailboxError::Write { source, .. } = &err else {
                panic!("wrong error {err:?}");
            };
            assert_eq!(source.raw_os_error(), Some(libc::EFBIG));
            // procmail names the file it was writing: the mbox, the
            // Maildir's tmp file, or the MH message.
            let want = match parts[1] {
                n if n.ends_with('/') => format!("Error while writing to \"{n}tmp/"),
                n if n.ends_with("/.") => {
                    format!("Error while writing to \"{}/1\"", n.trim_end_matches("/."))
                }
                n => format!("Error while writing to \"{n}\""),
            };
            assert!(lines[0].starts_with(&want), "{lines:?}");
            if !parts[1].ends_with('/') && !parts[1].ends_with("/.") {
                assert!(
                    lines.iter().any(|l| l == "Truncated file to former size"),
                    "{lines:?}"
                );
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

/// A message big enough (about 150 kB, with 300 escaped lines spread
/// through it) that both procmail and we need many write(2) calls for it, so that
/// missing locks would show as interleaving.
fn concurrent_msg(id: &str, k: usize) -> Vec<u8> {
    let mut m =
        format!("From sender{id}@example.com  Mon Jan  6 10:00:00 2025\nSubject: {id}-{k}\n\n");
    for block in 0..300 {
        m.push_str(&format!("line of {id}-{k} padding padding padding\n").repeat(10 + k));
        m.push_str(&format!("From the body of {id}-{k} block {block}\n"));
    }
    m.push_str(&format!("end {id}-{k}\n"));
    m.into_bytes()
}

fn big_msg() -> Vec<u8> {
    let mut m = b"From big  Mon Jan  6 10:00:00 2025\nSubject: big\n\n".to_vec();
    m.extend(b"0123456789 From inside a line\n".repeat(2000));
    m
}

#[test]
fn eight_writers_one_mbox_nothing_interleaved() {
    eight_writers(true);
}

#[test]
fn eight_writers_kernel_lock_alone_suffices() {
    // procmail `:0` without a lockfile relies on its fcntl lock only; ours
    // (an OFD lock) must exclude it and be excluded by it.
    eight_writers(false);
}

fn eight_writers(dotlock: bool) {
    if !require_tool("procmail") {
        return;
    }
    let d = Dir::new("concurrent");
    let dir = d.path().to_str().unwrap().to_string();
    let rc = if dotlock {
        "LOCKSLEEP=1\n:0:\nbox\n"
    } else {
        ":0\nbox\n"
    };
    d.write("pm.rc", rc);
    const EACH: usize = 6;
    let mut sent: Vec<Vec<u8>> = Vec::new();
    for w in 0..4 {
        for id in [format!("pm{w}"), format!("ours{w}")] {
            for k in 0..EACH {
                let m = concurrent_msg(&id, k);
                d.write(&format!("msg-{id}-{k}"), &m);
                sent.push(m);
            }
        }
    }
    let mut children = Vec::new();
    for w in 0..4 {
        children.push(spawn_child(
            "append",
            &[
                &dir,
                &format!("ours{w}"),
                &EACH.to_string(),
                if dotlock { "dotlock" } else { "nolock" },
            ],
        ));
        let script = format!(
            "for k in $(seq 0 {}); do procmail -m ./pm.rc < msg-pm{w}-$k || exit 1; done",
            EACH - 1
        );
        let c = Command::new("sh")
            .args(["-c", &script])
            .current_dir(&dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .spawn()
            .unwrap();
        children.push(c);
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let got = split_mbox(&d.read("box"));
    assert_eq!(got.len(), 8 * EACH);
    assert!(
        got == want_mbox(&sent),
        "mbox differs from the messages sent"
    );
    assert!(!d.join("box.lock").exists());
}

#[test]
fn failed_write_leaves_mbox_as_it_was() {
    let d = Dir::new("efbig");
    let old = b"From old  Mon Jan  6 10:00:00 2025\nSubject: old\n\nold body\n\n".repeat(20);
    d.write("box", &old);
    let box_path = d.join("box");
    let status = spawn_child("fsize", &[box_path.to_str().unwrap(), "8192"])
        .wait()
        .unwrap();
    assert!(status.success());
    assert_eq!(d.read("box"), old, "mbox changed by a failed write");
}

#[test]
fn failed_write_leaves_no_maildir_or_mh_file() {
    for name in ["md/", "mh/."] {
        let d = Dir::new("efbig-dir");
        let target = format!("{}/{name}", d.path().display());
        let status = spawn_child("fsize", &[&target, "8192"]).wait().unwrap();
        assert!(status.success(), "{name}");
        let left: Vec<_> = walk_files(d.path());
        assert!(left.is_empty(), "{name}: files left behind: {left:?}");
    }
}

fn walk_files(p: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if e.is_dir() {
            out.extend(walk_files(&e));
        } else {
            out.push(e.display().to_string());
        }
    }
    out
}

#[test]
fn procmail_waits_for_our_dotlock() {
    if !require_tool("procmail") {
        return;
    }
    let d = Dir::new("lockinterop");
    d.write("pm.rc", "LOCKSLEEP=1\n:0:\nbox\n");
    let lock =
        DotLock::acquire(&d.join("box.lock"), &LockParams::default(), &mut |_, _| {}).unwrap();
    let mut child = Command::new("procmail")
        .args(["-m", "./pm.rc"])
        .current_dir(d.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(fs::File::open(d.write("msg", MSGS[0])).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "procmail ignored our lock"
    );
    assert!(!d.join("box").exists());
    lock.release(&mut |_, _| {}).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(d.read("box").starts_with(b"From alice"));
    assert!(!d.join("box.lock").exists());
}

#[test]
fn we_wait_for_procmails_dotlock() {
    if !require_tool("procmail") {
        return;
    }
    let d = Dir::new("lockinterop2");
    // procmail holds the global lockfile while a backquote sleeps.
    d.write("pm.rc", "LOCKFILE=box.lock\nX=`sleep 2`\n:0\n/dev/null\n");
    let mut child = Command::new("procmail")
        .args(["-m", "./pm.rc"])
        .current_dir(d.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(fs::File::open(d.write("msg", MSGS[4])).unwrap())
        .spawn()
        .unwrap();
    let lock = d.join("box.lock");
    let start = std::time::Instant::now();
    while !lock.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "procmail made no lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = std::time::Instant::now();
    // procmail's lockfile is what ours is: "0", mode 0444 & ~umask.
    assert_eq!(d.read("box.lock"), b"0");
    let params = LockParams {
        sleep: Duration::from_millis(50),
        ..LockParams::default()
    };
    let held = DotLock::acquire(&lock, &params, &mut |_, _| {}).unwrap();
    assert!(
        seen.elapsed() >= Duration::from_millis(1000),
        "lock taken while procmail held it"
    );
    assert!(child.wait().unwrap().success());
    held.release(&mut |_, _| {}).unwrap();
    assert!(!lock.exists());
}

#[test]
fn threads_appending_to_one_mbox_do_not_interleave() {
    let d = Dir::new("threads");
    let target = format!("{}/box", d.path().display());
    let mut sent = Vec::new();
    std::thread::scope(|s| {
        for t in 0..6 {
            let msgs: Vec<Vec<u8>> = (0..4)
                .map(|k| concurrent_msg(&format!("t{t}"), k))
                .collect();
            sent.extend(msgs.clone());
            let target = &target;
            s.spawn(move || {
                for m in msgs {
                    let o = opts_for(&m, false);
                    mailbox::deliver(&[target], &m, &o, &mut |_, _| {}).unwrap();
                }
            });
        }
    });
    let got = split_mbox(&d.read("box"));
    assert_eq!(got.len(), sent.len());
    assert!(
        got == want_mbox(&sent),
        "mbox differs from the messages sent"
    );
}

/// The mbox cut at its postmarks, sorted.
fn split_mbox(mbox: &[u8]) -> Vec<String> {
    let mbox = String::from_utf8(mbox.to_vec()).unwrap();
    let mut got: Vec<String> = Vec::new();
    let mut cur = String::new();
    for line in mbox.split_inclusive('\n') {
        if line.starts_with("From sender") && !cur.is_empty() {
            got.push(std::mem::take(&mut cur));
        }
        cur.push_str(line);
    }
    got.push(cur);
    got.sort();
    got
}

/// How each message of `concurrent_msg` looks in an mbox (body `From `
/// lines escaped, one newline added), sorted.
fn want_mbox(sent: &[Vec<u8>]) -> Vec<String> {
    let mut want: Vec<String> = sent
        .iter()
        .map(|m| {
            format!(
                "{}\n",
                String::from_utf8_lossy(m).replace("\nFrom the", "\n>From the")
            )
        })
        .collect();
    want.sort();
    want
}

#[test]
fn unusable_maildir_and_non_directory_link_are_skipped_like_procmail() {
    let d = Dir::new("skipdirs");
    fs::create_dir(d.join("md")).unwrap();
    d.write("md/new", "");
    d.write("f", "old\n");
    let (got, lines) = ours(d.path(), &["md/"], MSGS[4], "");
    assert!(matches!(got, Err(MailboxError::Skipped { .. })));
    let (got, more) = ours(d.path(), &["mh/.", "f/", "g/."], MSGS[4], "");
    let got = got.unwrap();
    assert_eq!(got.lastfolder, b"mh/1 g/1");
    // Checked: the log of `procmail -m` with `:0c md/` and `:0 mh/. f/ g/.`.
    let want = [
        "Unable to treat as directory \"md/new\"",
        "Skipped \"md\"",
        "Unable to treat as directory \"f\"",
        "Skipped \"f\"",
    ];
    assert_eq!([lines, more].concat(), want);
    assert_eq!(d.read("f"), b"old\n");
}
