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
