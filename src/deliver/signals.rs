//! Signals during a delivery (procmail(1) "SIGNALS", spec §14): TERM
//! requeues (exit 75), HUP and INT bounce (73), QUIT drops the mail
//! (exit 0, folder `**Lost**`), USR1/USR2 turn `VERBOSE` off/on and ALRM
//! takes the `TIMEOUT` path for the program that is running.
//!
//! This module owns the handlers and the little they may read: the
//! `VERBOSE` switch, the log's descriptor, the postmark for the final
//! abstract and the clones that must be spared. A terminating signal
//! removes every dotlock this process holds before `_exit` (the registry
//! lives with the locks, in `mailbox::lock`), so no lock outlives us
//! (spec §11 "No lockfile may remain after exit").
//!
//! It must never, inside a handler, allocate, take a lock or call anything
//! that is not async-signal-safe (only `write`, `open`, `read`, `close`,
//! `kill`, `unlink`, `getpid`, `setresgid` and `_exit`).

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering};

/// `VERBOSE`: read by every diagnostic, flipped by USR1/USR2.
static VERBOSE: AtomicBool = AtomicBool::new(false);
/// Where diagnostics go now: the `LOGFILE`, else stderr (2).
static LOG_FD: AtomicI32 = AtomicI32::new(2);
/// Set by ALRM, taken by the code that waited for the program.
static ALARM: AtomicBool = AtomicBool::new(false);
/// Set by the first terminating signal, so a second one does nothing.
static EXITING: AtomicBool = AtomicBool::new(false);
/// The message's postmark line for the final abstract, NUL-terminated and
/// leaked (null: no postmark).
static POSTMARK: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

/// How many spared children can be registered at once.
const SLOTS: usize = 32;
/// Children that a terminating signal must leave alone: clones of this
/// process started without waiting (`c` blocks), which go on on their own.
static SPARED: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];

/// Whether `VERBOSE` is on.
pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// Sets `VERBOSE`.
pub fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

/// Records the descriptor diagnostics go to (the log file or 2).
pub fn set_log_fd(fd: i32) {
    LOG_FD.store(fd, Ordering::Relaxed);
}

/// Records the postmark the abstract of a terminating signal shows.
pub fn set_postmark(line: Option<&[u8]>) {
    let new = match line.and_then(|l| CString::new(l).ok()) {
        Some(c) => c.into_raw(),
        None => std::ptr::null_mut(),
    };
    // The old string is leaked on purpose: a handler may be reading it.
    POSTMARK.store(new, Ordering::SeqCst);
}

/// Forgets the spared children (a clone after fork has none of its own).
pub fn forget_children() {
    for s in &SPARED {
        s.store(0, Ordering::SeqCst);
    }
}

/// Marks a child that terminating signals must not kill (a clone).
pub fn spare_child(pid: i32) {
    for s in &SPARED {
        if s.compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
}

/// Whether ALRM arrived since the last call (and clears it).
pub fn take_alarm() -> bool {
    ALARM.swap(false, Ordering::SeqCst)
}

/// The exit status and abstract folder of a terminating signal, procmail's
/// `srequeue`, `sbounce` and `slose` (checked with procmail 3.23pre: TERM
/// exits 75 with `**Requeued**`, HUP and INT 73 with `**Bounced**`, QUIT 0
/// with `**Lost**`).
pub fn outcome(sig: i32) -> Option<(i32, &'static str)> {
    match sig {
        libc::SIGTERM => Some((75, "**Requeued**")),
        libc::SIGHUP | libc::SIGINT => Some((73, "**Bounced**")),
        libc::SIGQUIT => Some((0, "**Lost**")),
        _ => None,
    }
}

/// The abstract's folder line for `folder` with size 0, padded as
/// `eval::abstract_text` pads it (tabs to column 72, size in 7 columns).
fn folder_line(folder: &str) -> String {
    let mut line = format!("  Folder: {folder}");
    let mut col = (10 + folder.len()) & !7;
    loop {
        line.push('\t');
        col += 8;
        if col >= 72 {
            break;
        }
    }
    line.push_str("      0\n");
    line
}

/// The folder lines, rendered once at installation so the handler only
/// writes them.
static FOLDER_LINES: std::sync::OnceLock<[(i32, String); 4]> = std::sync::OnceLock::new();

/// Installs the handlers. Signals that are ignored when we start stay
/// ignored, as procmail leaves them (checked: started in the background
/// by a shell, which ignores INT and QUIT, procmail survives both).
pub fn install() {
    FOLDER_LINES.get_or_init(|| {
        [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT].map(|s| {
            let (_, folder) = outcome(s).expect("terminating signal");
            (s, folder_line(folder))
        })
    });
    for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT] {
        set_handler(sig, on_terminate as *const () as libc::sighandler_t, true);
    }
    set_handler(
        libc::SIGUSR1,
        on_verbose as *const () as libc::sighandler_t,
        false,
    );
    set_handler(
        libc::SIGUSR2,
        on_verbose as *const () as libc::sighandler_t,
        false,
    );
    set_handler(
        libc::SIGALRM,
        on_alarm as *const () as libc::sighandler_t,
        false,
    );
}

/// Installs `handler` for `sig` (with `SA_RESTART`, so that interrupted
/// reads and waits go on), unless `keep_ignored` and the signal is ignored.
fn set_handler(sig: i32, handler: libc::sighandler_t, keep_ignored: bool) {
    // SAFETY: plain sigaction(2) calls on zero-initialised structs; the
    // handlers only use async-signal-safe functions.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
            return;
        }
        if keep_ignored && old.sa_sigaction == libc::SIG_IGN {
            return;
        }
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler;
        act.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(sig, &act, std::ptr::null_mut());
    }
}

extern "C" fn on_verbose(sig: libc::c_int) {
    VERBOSE.store(sig == libc::SIGUSR2, Ordering::Relaxed);
}

extern "C" fn on_alarm(_sig: libc::c_int) {
    ALARM.store(true, Ordering::SeqCst);
    kill_children();
}

/// TERM, HUP, INT, QUIT: end the program that runs, log procmail's
/// `Terminating prematurely` and the abstract, remove every lockfile we
/// hold, exit with the signal's status.
extern "C" fn on_terminate(sig: libc::c_int) {
    if EXITING.swap(true, Ordering::SeqCst) {
        return;
    }
    let code = outcome(sig).map_or(75, |(c, _)| c);
    kill_children();
    let fd = LOG_FD.load(Ordering::Relaxed);
    write_all(fd, b"procmail: Terminating prematurely\n");
    // The abstract (spec §13), written only to a log file, as by default.
    // Checked with procmail 3.23pre: after a signal it shows the postmark
    // and the folder, but no Subject line.
    if fd != 2 {
        let pm = POSTMARK.load(Ordering::SeqCst);
        if !pm.is_null() {
            // SAFETY: a NUL-terminated string that is never freed.
            let len = unsafe { libc::strlen(pm) };
            // SAFETY: `pm` points to `len` readable bytes.
            write_all(fd, unsafe {
                std::slice::from_raw_parts(pm as *const u8, len)
            });
            write_all(fd, b"\n");
        }
        if let Some(lines) = FOLDER_LINES.get()
            && let Some((_, line)) = lines.iter().find(|(s, _)| *s == sig)
        {
            write_all(fd, line.as_bytes());
        }
    }
    // The dotlocks this process holds (`mailbox::lock` keeps the registry,
    // by pid, so a clone never removes its parent's); the system mailbox's
    // lockfile needs the spool group kept for it.
    crate::deliver::user::take_spool_group_for_exit();
    crate::mailbox::lock::unlink_held_locks();
    // SAFETY: _exit(2) is async-signal-safe and ends the process at once.
    unsafe { libc::_exit(code) }
}

/// Writes all of `data` to `fd`, ignoring errors (we are exiting).
fn write_all(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: write(2) on a valid buffer.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        data = &data[n as usize..];
    }
}

/// Sends SIGTERM to the programs we started (procmail kills the child it
/// waits for, `pidchild`). The children are read from
/// `/proc/self/task/<pid>/children` (programs are started by the main
/// thread) into a stack buffer; clones in `SPARED` are left alone.
fn kill_children() {
    // SAFETY: getpid(2) is async-signal-safe.
    let pid = unsafe { libc::getpid() };
    let mut path = [0u8; 64];
    let mut n = 0;
    for b in b"/proc/self/task/" {
        path[n] = *b;
        n += 1;
    }
    n += write_decimal(&mut path[n..], pid as u64);
    for b in b"/children" {
        path[n] = *b;
        n += 1;
    }
    path[n] = 0;
    // SAFETY: open/read/close on a NUL-terminated path and a stack buffer.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY) };
    if fd < 0 {
        return;
    }
    let mut buf = [0u8; 4096];
    // SAFETY: as above.
    let len = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: as above.
    unsafe { libc::close(fd) };
    if len <= 0 {
        return;
    }
    for word in buf[..len as usize].split(|&b| b == b' ' || b == b'\n') {
        let Some(child) = parse_decimal(word) else {
            continue;
        };
        if SPARED.iter().any(|s| s.load(Ordering::SeqCst) == child) {
            continue;
        }
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(child, libc::SIGTERM) };
    }
}

/// Writes `v` in decimal into `out`; returns the number of digits.
fn write_decimal(out: &mut [u8], mut v: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..n {
        out[i] = digits[n - 1 - i];
    }
    n
}

/// A positive decimal pid, or `None`.
fn parse_decimal(word: &[u8]) -> Option<i32> {
    if word.is_empty() || word.len() > 9 || !word.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = word.iter().fold(0i32, |v, d| v * 10 + (d - b'0') as i32);
    (v > 0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_round_trip() {
        let cases: [(u64, &str); 3] = [(0, "0"), (7, "7"), (4194304, "4194304")];
        for (v, want) in cases {
            let mut buf = [0u8; 20];
            let n = write_decimal(&mut buf, v);
            let got = std::str::from_utf8(&buf[..n]).unwrap();
            assert_eq!(got, want);
            assert_eq!(parse_decimal(got.as_bytes()), (v > 0).then_some(v as i32));
        }
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"12a"), None);
    }

    #[test]
    fn folder_lines_are_padded_like_the_abstract() {
        // Checked with procmail 3.23pre after TERM: seven tabs after
        // `**Requeued**` (column 72), then the size in seven columns.
        assert_eq!(
            folder_line("**Requeued**"),
            "  Folder: **Requeued**\t\t\t\t\t\t\t      0\n"
        );
        let msg = crate::message::Message::from_bytes(b"\n".to_vec());
        let want = crate::rc::eval::abstract_text(&msg, b"**Bounced**", 0);
        assert_eq!(folder_line("**Bounced**").as_bytes(), &want[..]);
    }

    #[test]
    fn outcomes_follow_procmail() {
        let want = [
            (libc::SIGTERM, Some((75, "**Requeued**"))),
            (libc::SIGHUP, Some((73, "**Bounced**"))),
            (libc::SIGINT, Some((73, "**Bounced**"))),
            (libc::SIGQUIT, Some((0, "**Lost**"))),
            (libc::SIGUSR1, None),
        ];
        for (sig, w) in want {
            assert_eq!(outcome(sig), w, "signal {sig}");
        }
    }
}
