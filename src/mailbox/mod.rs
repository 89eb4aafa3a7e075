//! Placeholder until the mailbox module lands: the contract only.
#![allow(missing_docs, unused_variables)]
pub mod lock;
pub struct WriteOpts {
    pub raw: bool,
    pub body_start: usize,
    pub protect: usize,
    pub envelope_len: usize,
    pub msgprefix: Vec<u8>,
    pub host: Vec<u8>,
    pub fsync: bool,
}
pub struct Delivered {
    pub lastfolder: Vec<u8>,
    pub written: usize,
    pub skipped: Vec<Vec<u8>>,
}
#[derive(Debug, thiserror::Error)]
#[error("error")]
pub struct MailboxError;
pub fn deliver(
    names: &[Vec<u8>],
    data: &[u8],
    opts: &WriteOpts,
) -> Result<Delivered, MailboxError> {
    todo!()
}
