//! `sendmail`: local mail submission (`postroom::submit`).
//!
//! The argument vector goes to the library as it is; this file holds no
//! logic. Install it, or a symlink to `postroom`, as /usr/sbin/sendmail.

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    std::process::exit(postroom::submit::main_argv(&argv));
}
