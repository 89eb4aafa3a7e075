//! Placeholder until the process module lands: the contract only.
#![allow(missing_docs, unused_variables)]
use std::path::PathBuf;
use std::time::Duration;
pub enum Program {
    Argv(Vec<Vec<u8>>),
    Shell {
        shell: Vec<u8>,
        flags: Vec<Vec<u8>>,
        text: Vec<u8>,
    },
}
pub enum Output {
    Null,
    Capture,
    Inherit,
}
pub struct Spawn {
    pub program: Program,
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    pub cwd: PathBuf,
    pub stderr: Option<std::os::fd::OwnedFd>,
    pub stdout: Output,
    pub timeout: Option<Duration>,
    pub wait: bool,
}
#[derive(Default)]
pub struct Ran {
    pub status: i32,
    pub output: Vec<u8>,
    pub write_error: bool,
    pub timed_out: bool,
    pub exec_failed: bool,
}
pub fn run(spawn: &Spawn, input: &[u8]) -> std::io::Result<Ran> {
    todo!()
}
