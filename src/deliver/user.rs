//! Placeholder until the user module lands: the contract only.
#![allow(missing_docs, unused_variables)]
use std::path::{Path, PathBuf};
#[derive(Clone, Debug)]
pub struct User {
    pub name: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: Vec<u8>,
}
pub fn lookup(name: &[u8]) -> Option<User> {
    todo!()
}
pub fn current() -> User {
    todo!()
}
pub fn become_user(u: &User) -> Result<(), String> {
    todo!()
}
pub enum Trust {
    Ok,
    Suspicious(String),
}
pub fn rcfile_trust(path: &Path, user: &User, is_home_procmailrc: bool) -> Trust {
    todo!()
}
pub fn hostname() -> Vec<u8> {
    todo!()
}
