//! Shared helpers for the integration tests: a temp dir per test and a
//! command builder for the project's binaries with a cleaned environment.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh temporary directory, removed when dropped.
pub struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    /// A new empty directory named after the test.
    pub fn new(name: &str) -> Dir {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("postroom-{name}-"))
            .tempdir()
            .expect("create temp dir");
        Dir { tmp }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// `path()/rel`.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Writes a file (creating parent directories).
    pub fn write(&self, rel: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, data).expect("write file");
        p
    }

    /// Reads a file.
    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }
}

/// The path of one of the project's binaries.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "deliver" => PathBuf::from(env!("CARGO_BIN_EXE_deliver")),
        "postroom" => PathBuf::from(env!("CARGO_BIN_EXE_postroom")),
        other => panic!("unknown binary {other}"),
    }
}

/// A command for a project binary with an empty environment but PATH.
pub fn cmd(name: &str) -> Command {
    let mut c = Command::new(bin(name));
    c.env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin");
    c
}

/// Whether `ok`, a test's requirement (`what`: a tool, root). In CI
/// (CI=true) a missing one is a failure; elsewhere the test says so and is
/// skipped.
pub fn require(ok: bool, what: &str) -> bool {
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("this test needs {what}, which CI must have");
        }
        eprintln!("skipping: this test needs {what}");
    }
    ok
}

/// Whether a required external tool is present ([`require`]).
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    require(found, &format!("`{tool}`"))
}

/// Whether the tests run as root ([`require`]; CI runs them as root).
pub fn require_root() -> bool {
    require(nix::unistd::geteuid().is_root(), "root")
}

/// The names in directory `p`, sorted (empty if it does not exist).
pub fn names_in(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `useradd -M -s /bin/sh -d HOME NAME`, tried again while another
/// process holds the passwd lock (at most 20 times, 250 ms apart).
pub fn useradd(name: &str, home: &Path) {
    let mut tries = 0;
    loop {
        let out = Command::new("useradd")
            .args(["-M", "-s", "/bin/sh", "-d"])
            .arg(home)
            .arg(name)
            .output()
            .expect("run useradd");
        if out.status.success() {
            return;
        }
        tries += 1;
        assert!(
            tries < 20,
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// Copies the example configuration into `dir/into` as it lies under
/// examples/ (`etc-mail/`, `sendmail-stub`, `bin/`) and returns the path of
/// its `etc-mail`. Each of `edits` replaces one whole line of its
/// postroom.conf, which must be there as written (so a change to the
/// example that a test relies on fails here, not later).
pub fn example_copy(dir: &Dir, into: &str, edits: &[(&str, &str)]) -> PathBuf {
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let to = dir.join(into);
    std::fs::create_dir_all(&to).unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(ex.join("etc-mail"))
        .arg(ex.join("sendmail-stub"))
        .arg(ex.join("bin"))
        .arg(&to)
        .status()
        .expect("run cp")
        .success();
    assert!(ok, "cp examples/ into {}", to.display());
    let etc = to.join("etc-mail");
    let conf_path = etc.join("postroom.conf");
    let mut conf = std::fs::read_to_string(&conf_path).unwrap();
    for (from, to) in edits {
        let from = format!("\n{from}\n");
        assert!(
            conf.contains(&from),
            "no {from:?} in the example's postroom.conf"
        );
        conf = conf.replace(&from, &format!("\n{to}\n"));
    }
    std::fs::write(&conf_path, conf).unwrap();
    etc
}

/// A child killed (and reaped) when dropped, even on panic.
pub struct Guard(pub std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a finished command said.
pub struct Run {
    /// Its exit code (-1 when a signal ended it).
    pub code: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// A child started by [`spawn_fed`]: its input written and its output
/// read by threads, so that neither side can block the other.
pub struct Fed {
    guard: Guard,
    writer: std::thread::JoinHandle<bool>,
    out: std::thread::JoinHandle<String>,
    err: std::thread::JoinHandle<String>,
}

/// Starts `c` with `input` on its stdin.
pub fn spawn_fed(mut c: Command, input: &[u8]) -> Fed {
    use std::io::{Read, Write};
    use std::process::Stdio;
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = Guard(c.spawn().expect("spawn"));
    let mut stdin = guard.0.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input).is_ok());
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(guard.0.stdout.take().unwrap()));
    let err = read(Box::new(guard.0.stderr.take().unwrap()));
    Fed {
        guard,
        writer,
        out,
        err,
    }
}

/// Waits (at most 20 s) for a child from [`spawn_fed`]; also says whether
/// it took all of its input.
pub fn finish(mut f: Fed) -> (Run, bool) {
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = f.guard.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "no exit in 20 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let wrote = f.writer.join().unwrap();
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: f.out.join().unwrap(),
        stderr: f.err.join().unwrap(),
    };
    (run, wrote)
}

/// Runs `c` with `input` on stdin; at most 20 s.
pub fn run_fed(c: Command, input: &[u8]) -> Run {
    finish(spawn_fed(c, input)).0
}
