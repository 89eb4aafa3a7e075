//! `deliver`: procmail's command line, postroom's delivery.
//!
//! All the work is in `postroom::deliver::run`; this only turns its status
//! into the exit code an MTA reads.
//!
//! An MTA starts `deliver` once per message, so its start-up is part of the
//! cost of every delivery. The program therefore has its own C `main`
//! instead of std's runtime start-up, which would read all of
//! `/proc/self/maps` (pthread_getattr_np, a quarter of the instructions of
//! `deliver -v`) and set up an alternate signal stack for a stack-overflow
//! message deliver does not need. What of that start-up matters here is
//! done below: the standard descriptors are made safe and SIGPIPE is
//! ignored, exactly as std does; a panic still exits 101. Arguments and the
//! environment are still read through std (glibc hands them to std before
//! `main` runs).
#![no_main]

use std::ffi::{c_char, c_int};

// The unwinder std needs (panics, backtraces) comes from the static
// libgcc_eh (what `gcc -static-libgcc` links) instead of libgcc_s.so:
// loading that one library cost about 0.1 ms per message on the 2-core VM
// (bench/startup.py: a C hello-world with and without -lgcc_s).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[link(name = "gcc_eh", kind = "static")]
unsafe extern "C" {}

/// `pow(3)`, for the weighted size conditions of procmailsc(5) (`w *
/// ratio^x`), the only libm function deliver calls. Defined here, it keeps
/// libm.so off the list of libraries loaded for every message (about 40 us
/// each, bench/startup.py); the rare recipe that needs it loads libm on
/// first use and gets glibc's own `pow`, so scores stay bit for bit those
/// of procmail, which calls the same function.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[unsafe(no_mangle)]
extern "C" fn pow(x: f64, y: f64) -> f64 {
    use std::sync::OnceLock;
    type Pow = unsafe extern "C" fn(f64, f64) -> f64;
    static LIBM_POW: OnceLock<Pow> = OnceLock::new();
    let f = LIBM_POW.get_or_init(|| {
        // SAFETY: dlopen/dlsym with NUL-terminated names; the handle is
        // never closed, so the function pointer stays valid, and glibc's
        // `pow` has exactly the signature of `Pow`.
        unsafe {
            let lib = libc::dlopen(c"libm.so.6".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            let sym = if lib.is_null() {
                std::ptr::null_mut()
            } else {
                libc::dlsym(lib, c"pow".as_ptr())
            };
            if sym.is_null() {
                // libm is part of glibc itself; without it nothing can
                // score, and guessing would deliver differently.
                libc::abort();
            }
            std::mem::transmute::<*mut libc::c_void, Pow>(sym)
        }
    });
    // SAFETY: a pure function of two doubles.
    unsafe { f(x, y) }
}

/// The program's entry point, called by the C library.
#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    runtime_init();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 2 && args[1] == postroom::deliver::zygote::ZYGOTE_ARG {
        // The queue runner's warm deliver: requests on standard input.
        // SAFETY: descriptor 0 is open (runtime_init) and ours from here.
        let sock =
            unsafe { <std::os::unix::net::UnixStream as std::os::fd::FromRawFd>::from_raw_fd(0) };
        std::process::exit(postroom::deliver::zygote::serve(sock));
    }
    let code = std::panic::catch_unwind(|| {
        let inv = postroom::cli::parse_deliver(args);
        postroom::deliver::run(inv)
    })
    // std's own `main` exits 101 after a panic (the message is printed by
    // the panic hook either way).
    .unwrap_or(101);
    std::process::exit(code)
}

/// What std's runtime does before `main` that deliver relies on.
///
/// - A closed stdin, stdout or stderr is opened on `/dev/null`, so that no
///   mailbox or log file opened later can become descriptor 1 or 2 and
///   receive what is printed there.
/// - SIGPIPE is ignored: a write to a pipe whose reader is gone must be an
///   error, not our death (`deliver::run` sets this again; std did it here).
fn runtime_init() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: poll(2) on a valid array; open(2) with a NUL-terminated path;
    // signal(2) with SIG_IGN runs no code of ours.
    unsafe {
        if libc::poll(fds.as_mut_ptr(), 3, 0) >= 0 {
            for pfd in &fds {
                if pfd.revents & libc::POLLNVAL != 0
                    && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR, 0) == -1
                {
                    libc::abort();
                }
            }
        } else {
            // poll(2) refused (e.g. a sandbox): ask each descriptor.
            for fd in 0..3 {
                if libc::fcntl(fd, libc::F_GETFD) == -1
                    && *libc::__errno_location() == libc::EBADF
                    && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR, 0) == -1
                {
                    libc::abort();
                }
            }
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}
