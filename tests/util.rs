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

/// Whether a required external tool is present. In CI (CI=true) a missing
/// tool is a failure; elsewhere the test says so and is skipped.
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("required tool `{tool}` is missing in CI");
        }
        eprintln!("skipping: `{tool}` is not installed");
    }
    found
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
