//! Placeholder until the mailbox module lands: the contract only.
#![allow(missing_docs, unused_variables)]
use std::path::Path;
pub struct LockParams {
    pub sleep: std::time::Duration,
    pub timeout: std::time::Duration,
    pub suspend: std::time::Duration,
    pub retries: u32,
}
pub struct DotLock;
#[derive(Debug, thiserror::Error)]
#[error("lock")]
pub struct LockError;
impl DotLock {
    pub fn acquire(
        path: &Path,
        p: &LockParams,
        log: &mut dyn FnMut(&str),
    ) -> Result<DotLock, LockError> {
        todo!()
    }
}
