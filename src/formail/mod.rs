//! `postroom formail`: procmail's mail (re)formatter, compatible with
//! Debian's formail (procmail 3.22/3.23pre) for what rcfiles use.
//!
//! Owns formail's command line (`options`), its view of header fields
//! (`field`), sender ranking and address scanning (`address`), the `-D`
//! duplicate cache file (`cache`) and the run itself (`engine`: header
//! edits, postmark, reply header, body escaping, `Content-Length:`, `-s`
//! splitting). It must never touch the spool, the queue or a mailbox,
//! and never decode mail: everything is bytes. The real formail is the
//! reference; where it and the documentation disagree, it wins (the
//! differential tests in `tests/formail.rs` run both).
//!
//! `postroom formail ARGS`, or the `postroom` binary run under the name
//! `formail`, take formail's arguments unchanged.

mod address;
mod cache;
pub mod engine;
pub mod field;
pub mod options;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

pub use options::{Options, ParseError, parse};

/// Whether `argv[0]` names formail (so `postroom` runs as formail).
pub fn is_formail_name(arg0: &OsStr) -> bool {
    Path::new(arg0).file_name().unwrap_or(arg0) == "formail"
}

/// Runs formail on stdin and stdout with `args` (without `argv[0]`);
/// returns the exit code.
pub fn main(args: &[OsString]) -> i32 {
    let args: Vec<Vec<u8>> = args.iter().map(|a| a.clone().into_vec()).collect();
    let (o, parsed) = options::parse_partial(&args);
    // The cache is opened first: formail opens it while parsing.
    let cache = match &o.duplicates {
        None => None,
        Some((maxlen, path)) => {
            let path = Path::new(OsStr::from_bytes(path));
            match open_cache(path) {
                Ok(f) => Some((f, *maxlen)),
                Err(_) => {
                    eprintln!("formail: Couldn't open \"{}\"", path.display());
                    return engine::EX_CANTCREAT;
                }
            }
        }
    };
    if let Err(e) = parsed {
        match e {
            ParseError::Usage => eprint!("{}", options::USAGE),
            ParseError::Help => eprint!("{}{}", options::USAGE, options::HELP),
            ParseError::Version => eprintln!(
                "formail (postroom {}), compatible with formail v3.23pre 2001/09/13",
                env!("CARGO_PKG_VERSION")
            ),
            ParseError::InvalidField(f) => {
                eprintln!(
                    "formail: Invalid field-name: \"{}\"",
                    String::from_utf8_lossy(&f)
                );
                eprint!("{}", options::USAGE);
            }
        }
        return engine::EX_USAGE;
    }
    engine::Engine::new(o, Box::new(std::io::stdin()), cache).run()
}

/// Opens the `-D` cache for reading and writing, creating it if needed.
///
/// formail tries fopen "r+b", then "w+b", which also truncates; we never
/// truncate, so that two first runs at once cannot wipe each other's key.
fn open_cache(p: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
}
