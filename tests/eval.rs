//! `rc::eval` against an in-memory host: the evaluator's decisions without
//! any file, process or clock. The real procmail is the reference for the
//! same behaviours in `diff.rs`; these tests pin the `Effects` contract.

use std::collections::BTreeMap;

use postroom::message::Message;
use postroom::rc::eval::{Delivered, Effects, Eval, FolderOpts, Fork, LockParams, Ran, RunRequest};

/// Folders are entries in a map; programs are answered by a table of
/// argv[0] -> (status, output); everything logged is kept.
#[derive(Default)]
struct MemHost {
    folders: BTreeMap<Vec<u8>, Vec<Vec<u8>>>,
    programs: BTreeMap<Vec<u8>, (i32, Vec<u8>)>,
    ran: Vec<Vec<Vec<u8>>>,
    unwritable: Vec<Vec<u8>>,
    log: Vec<u8>,
    locks: Vec<Vec<u8>>,
    rcfiles: BTreeMap<Vec<u8>, Vec<u8>>,
    verbose: bool,
}

impl Effects for MemHost {
    fn run(&mut self, req: &RunRequest, _input: &[u8]) -> Ran {
        self.ran.push(req.argv.clone());
        let (status, output) = self
            .programs
            .get(&req.argv[0])
            .cloned()
            .unwrap_or((127, Vec::new()));
        Ran {
            status,
            output,
            ..Ran::default()
        }
    }

    fn deliver_folders(
        &mut self,
        names: &[Vec<u8>],
        data: &[u8],
        _opts: &FolderOpts,
    ) -> Result<Delivered, Option<Vec<u8>>> {
        if self.unwritable.contains(&names[0]) {
            return Err(None);
        }
        self.folders
            .entry(names[0].clone())
            .or_default()
            .push(data.to_vec());
        Ok(Delivered {
            lastfolder: names[0].clone(),
            written: data.len(),
        })
    }

    fn to_stdout(&mut self, _data: &[u8]) -> bool {
        true
    }

    fn lock(&mut self, path: &[u8], _params: &LockParams) -> Option<u64> {
        self.locks.push(path.to_vec());
        Some(self.locks.len() as u64)
    }

    fn unlock(&mut self, _id: u64) {}

    fn read_rcfile(&mut self, path: &[u8]) -> std::io::Result<Vec<u8>> {
        self.rcfiles
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }

    fn log(&mut self, bytes: &[u8]) {
        self.log.extend_from_slice(bytes);
    }

    fn chdir(&mut self, _path: &[u8]) -> bool {
        true
    }

    fn open_log(&mut self, _path: &[u8]) -> bool {
        true
    }

    fn log_is_open(&self) -> bool {
        false
    }

    fn set_umask(&mut self, _mask: u32) {}

    fn hostname(&self) -> Vec<u8> {
        b"mem".to_vec()
    }

    fn fork(&mut self, _wait: bool) -> Fork {
        Fork::Failed
    }

    fn pid(&self) -> u32 {
        42
    }

    fn is_dir(&self, path: &[u8]) -> bool {
        path.ends_with(b"/")
    }

    fn verbose(&self) -> bool {
        self.verbose
    }

    fn set_verbose(&mut self, on: bool) {
        self.verbose = on;
    }
}

const MSG: &[u8] = b"From: alice@example.com\nTo: bob@example.org\nSubject: lunch\n\nsee you\n";

/// Runs `rc` over `MSG` with DEFAULT=default-box; returns the exit status.
fn eval(host: &mut MemHost, rc: &str) -> i32 {
    let env = vec![(b"DEFAULT".to_vec(), b"default-box".to_vec())];
    let mut ev = Eval::new(host, Message::from_bytes(MSG.to_vec()), env);
    ev.run_rcfile(b"rc", rc.as_bytes());
    ev.finish()
}

fn landed(host: &MemHost) -> Vec<String> {
    host.folders
        .iter()
        .map(|(k, v)| format!("{}x{}", String::from_utf8_lossy(k), v.len()))
        .collect()
}

#[test]
fn first_matching_recipe_delivers_and_stops() {
    let mut h = MemHost::default();
    let code = eval(
        &mut h,
        ":0\n* ^Subject: lunch\nfood\n:0\n* ^From: alice\nalice\n",
    );
    assert_eq!(code, 0);
    assert_eq!(landed(&h), vec!["foodx1"]);
}

#[test]
fn copy_flag_goes_on_to_default() {
    let mut h = MemHost::default();
    eval(&mut h, ":0 c\n* ^Subject: lunch\nfood\n");
    assert_eq!(landed(&h), vec!["default-boxx1", "foodx1"]);
}

#[test]
fn else_and_also_chain() {
    let mut h = MemHost::default();
    let rc = "\
:0
* ^Subject: dinner
dinner
:0 E
* ^From: alice
{ FROM_ALICE=yes }
:0 A
also
";
    eval(&mut h, rc);
    assert_eq!(landed(&h), vec!["alsox1"]);
}

#[test]
fn failed_folder_falls_through_and_e_reacts() {
    let mut h = MemHost {
        unwritable: vec![b"broken".to_vec()],
        ..MemHost::default()
    };
    eval(&mut h, ":0\nbroken\n:0 e\nrescued\n");
    assert_eq!(landed(&h), vec!["rescuedx1"]);
}

#[test]
fn nothing_writable_bounces_with_73() {
    let mut h = MemHost {
        unwritable: vec![b"default-box".to_vec()],
        ..MemHost::default()
    };
    assert_eq!(eval(&mut h, ":0\n* ^Subject: nomatch\nx\n"), 73);
    assert!(h.folders.is_empty());
}

#[test]
fn filter_output_replaces_the_message() {
    let mut h = MemHost::default();
    h.programs.insert(
        b"rewrite".to_vec(),
        (0, b"Subject: rewritten\n\nnew body\n".to_vec()),
    );
    eval(
        &mut h,
        ":0 fw\n| rewrite\n:0\n* ^Subject: rewritten\nafter\n",
    );
    assert_eq!(landed(&h), vec!["afterx1"]);
    assert_eq!(
        h.folders[&b"after".to_vec()][0],
        b"Subject: rewritten\n\nnew body\n"
    );
}

#[test]
fn failing_wait_filter_keeps_the_message() {
    let mut h = MemHost::default();
    h.programs
        .insert(b"broken".to_vec(), (3, b"garbage".to_vec()));
    eval(&mut h, ":0 fw\n| broken\n:0\n* ^Subject: lunch\nkept\n");
    assert_eq!(landed(&h), vec!["keptx1"]);
    let log = String::from_utf8_lossy(&h.log);
    assert!(log.contains("Program failure (3) of \"broken\""), "{log}");
}

#[test]
fn implicit_lockfile_is_folder_plus_lockext() {
    let mut h = MemHost::default();
    eval(&mut h, "LOCKEXT=.lk\n:0:\nbox\n");
    assert_eq!(h.locks, vec![b"box.lk".to_vec()]);
}

#[test]
fn includerc_runs_in_place() {
    let mut h = MemHost::default();
    h.rcfiles.insert(
        b"inc.rc".to_vec(),
        b":0\n* ^Subject: lunch\nincluded\n".to_vec(),
    );
    eval(&mut h, "INCLUDERC=inc.rc\n:0\nnever\n");
    assert_eq!(landed(&h), vec!["includedx1"]);
}

#[test]
fn weighted_score_decides() {
    let mut h = MemHost::default();
    eval(
        &mut h,
        ":0\n* -100^0\n* 60^0 ^Subject:.*lunch\n* 60^0 ^From:.*alice\nscored\n",
    );
    assert_eq!(landed(&h), vec!["scoredx1"]);
}

/// Runs `rc` on a small message; returns the log and the variables
/// asked for.
fn run_rc(rc: &str, names: &[&str]) -> (String, MemHost, Vec<Option<String>>) {
    let mut fake = MemHost::default();
    let msg = Message::from_bytes(b"From: a@b\nSubject: hi there\n\nbody\n".to_vec());
    let mut ev = Eval::new(&mut fake, msg, Vec::new());
    ev.run_rcfile(b"rc", rc.as_bytes());
    let got = names
        .iter()
        .map(|n| {
            ev.var(n.as_bytes())
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
        .collect();
    drop(ev);
    (String::from_utf8_lossy(&fake.log).into_owned(), fake, got)
}

#[test]
fn verbose_lines_follow_procmail() {
    // Each line as procmail 3.23pre logs it for the same rcfile (the
    // `[pid] date` lines come from the host and are not made here).
    // VERBOSE=on itself is not shown, VERBOSE=off is.
    let rc = "VERBOSE=on\nFOO=bar\nFOO\n:0\n* ^Subject: hi\n* ! ^X-No\n* $ ^From: a@${FOO-b}\n/dev/null\nVERBOSE=off\nBAR=1\n";
    let (log, _, _) = run_rc(rc, &[]);
    let want = concat!(
        "procmail: Assigning \"FOO=bar\"\n",
        "procmail: Assigning \"FOO\"\n",
        "procmail: Match on \"^Subject: hi\"\n",
        "procmail: Match on ! \"^X-No\"\n",
        "procmail: Match on \"^From: a@b\"\n",
        "procmail: Assigning \"LASTFOLDER=/dev/null\"\n",
    );
    assert_eq!(log, want);
}

#[test]
fn verbose_shows_score_and_matched_text() {
    let rc = "VERBOSE=on\n:0\n* 2^1 e\n* -1^0 ! ^X-No\n* 1^0 ^Subject:\\/.*\n{ }\n";
    let (log, _, got) = run_rc(rc, &["MATCH"]);
    // `e` matches three times in the header: 2 + 2 + 2.
    let want = concat!(
        "procmail: Score:       6       6 \"e\"\n",
        "procmail: Score:      -1       5 ! \"^X-No\"\n",
        "procmail: Assigning \"MATCH=\"\n",
        "procmail: Matched \" hi there\"\n",
        "procmail: Score:       1       6 \"^Subject:\\/.*\"\n",
    );
    assert_eq!(log, want);
    assert_eq!(got, [Some(" hi there".to_string())]);
}

#[test]
fn default_dev_null_takes_no_lockfile() {
    // Checked with procmail 3.23pre (VERBOSE=on): DEFAULT=/dev/null
    // shows no `Locking`, a DEFAULT file locks `$DEFAULT$LOCKEXT`.
    let cases: [(&[u8], &[&[u8]]); 2] = [(b"/dev/null", &[]), (b"inbox", &[b"inbox.lock"])];
    for (default, want) in cases {
        let mut fake = MemHost::default();
        let msg = Message::from_bytes(b"Subject: x\n\nbody\n".to_vec());
        let env = vec![(b"DEFAULT".to_vec(), default.to_vec())];
        let mut ev = Eval::new(&mut fake, msg, env);
        ev.run_rcfile(b"rc", b"");
        assert_eq!(ev.finish(), 0);
        drop(ev);
        let got: Vec<&[u8]> = fake.locks.iter().map(|l| l.as_slice()).collect();
        assert_eq!(got, want, "{}", String::from_utf8_lossy(default));
    }
}

#[test]
fn linebuf_assignment_boundary() {
    // Checked with procmail 3.23pre: at LINEBUF=128 (also the minimum,
    // so LINEBUF=10 behaves the same) `V=` plus 126 bytes is
    // assigned, plus 127 is not, and the old value stays.
    for (linebuf, len, want_assigned) in [
        ("128", 126, true),
        ("128", 127, false),
        ("10", 126, true),
        ("10", 127, false),
        ("200", 198, true),
        ("200", 199, false),
    ] {
        let rc = format!("LINEBUF={linebuf}\nV=old\nV={}\n", "x".repeat(len));
        let (log, _, got) = run_rc(&rc, &["V", "PROCMAIL_OVERFLOW"]);
        let want_v = if want_assigned {
            "x".repeat(len)
        } else {
            "old".into()
        };
        assert_eq!(got[0].as_deref(), Some(want_v.as_str()), "{linebuf}/{len}");
        let want_overflow = (!want_assigned).then(|| "yes".to_string());
        assert_eq!(got[1], want_overflow, "{linebuf}/{len}");
        assert_eq!(log.contains("Exceeded LINEBUF"), !want_assigned);
    }
}

#[test]
fn linebuf_overflowing_lockfile_ends_the_rcfile() {
    // Checked with procmail 3.23pre at LINEBUF=128: a lockfile name of
    // 123 bytes is taken, one of 124 ends the rcfile unlocked.
    for (len, want_reached) in [(123, true), (124, false)] {
        let rc = format!(
            "LINEBUF=128\nA={}\n:0 c: $A\n/dev/null\nREACHED=yes\n",
            "l".repeat(len)
        );
        let (_, fake, got) = run_rc(&rc, &["REACHED"]);
        assert_eq!(got[0].is_some(), want_reached, "{len}");
        assert_eq!(fake.locks.len(), usize::from(want_reached), "{len}");
    }
}

#[test]
fn linebuf_overflowing_condition_fails() {
    // Checked with procmail 3.23pre at LINEBUF=128: an expanded `$`
    // condition of 127 bytes is searched, one of 128 fails.
    for (len, want_overflow) in [(127, false), (128, true)] {
        let rc = format!(
            "LINEBUF=128\nA={}\nB={}\n:0\n* ! $ $A$B\n{{ HIT=yes }}\n",
            "z".repeat(60),
            "y".repeat(len - 60)
        );
        let (_, _, got) = run_rc(&rc, &["HIT", "PROCMAIL_OVERFLOW"]);
        assert_eq!(got[0].is_none(), want_overflow, "{len}");
        assert_eq!(got[1].is_some(), want_overflow, "{len}");
    }
}
