//! Running one program the way procmail does (procmail-semantics §12, §4.4,
//! §5 flags `w W i f`, §9 `TIMEOUT`, §13 `$?`).
//!
//! This module owns starting a child with exactly the environment it is
//! given, feeding it the message on stdin while its stdout is read (one
//! thread, `poll(2)`, so neither side can deadlock), the `/bin/sh` retry when
//! exec fails, the `TIMEOUT` kill, and reaping. It never decides whether a
//! command goes through the shell, never expands words, never writes to the
//! log and never judges a result: the evaluator does all of that with the
//! [`Ran`] it gets back.
//!
//! SIGPIPE: a program that exits without reading all of its input must not
//! kill us, so [`run`] makes sure SIGPIPE is ignored in this process (once,
//! and only if it still has the default action; Rust binaries already ignore
//! it, and so does procmail's `main`). Children get the default action back:
//! std resets it before exec, and procmail's children also start with no
//! ignored signals (checked with `grep SigIgn /proc/self/status` run from a
//! procmail pipe recipe).

use std::ffi::{CString, OsStr};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use crate::status::sysexits;

/// The shell procmail falls back to when a program cannot be executed.
const BIN_SH: &[u8] = b"/bin/sh";

/// procmail's status for a child that could not be executed at all
/// (EX_UNAVAILABLE, spec §2 and §12).
pub const EXEC_FAILED_STATUS: i32 = sysexits::EX_UNAVAILABLE;

/// What to run: the evaluator has already chosen between the shell and a
/// direct exec (spec §12) and expanded the words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// Exec these words directly; the first is looked up in the child's
    /// `PATH` (from [`Spawn::env`]) as execvp(3) does.
    Argv(Vec<Vec<u8>>),
    /// Run `shell flags... text`, i.e. `$SHELL $SHELLFLAGS "<text>"`.
    Shell {
        /// `$SHELL`.
        shell: Vec<u8>,
        /// `$SHELLFLAGS`, already split into words (normally `-c`).
        flags: Vec<Vec<u8>>,
        /// The command text, unexpanded.
        text: Vec<u8>,
    },
}

impl Program {
    /// The full argument vector, `argv[0]` first.
    pub fn argv(&self) -> Vec<&[u8]> {
        match self {
            Program::Argv(words) => words.iter().map(Vec::as_slice).collect(),
            Program::Shell { shell, flags, text } => std::iter::once(shell.as_slice())
                .chain(flags.iter().map(Vec::as_slice))
                .chain(std::iter::once(text.as_slice()))
                .collect(),
        }
    }
}

/// Where the program's stdout goes: the evaluator's own type, so that a
/// request passes through unchanged.
pub use crate::rc::eval::Output;

/// One program to start, and how.
#[derive(Debug)]
pub struct Spawn {
    /// The program and its arguments.
    pub program: Program,
    /// The complete environment of the child; nothing else is inherited.
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    /// The child's working directory (procmail's `MAILDIR`).
    pub cwd: PathBuf,
    /// The child's stderr: the open log file, or `None` to share ours.
    pub stderr: Option<OwnedFd>,
    /// The child's stdout.
    pub stdout: Output,
    /// `TIMEOUT`: after this long the child gets SIGTERM. `None` or zero
    /// means never.
    pub timeout: Option<Duration>,
    /// Wait for the exit status (`w`, `W`, conditions, filters, captures).
    /// When false, [`run`] returns once the input is written (and, with
    /// [`Output::Capture`], the output read to its end); the child may go on
    /// running and is reaped by a background thread.
    pub wait: bool,
}

/// What happened to one program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ran {
    /// The exit code, or minus the signal number that killed the child
    /// (procmail's `$?`: `-15` after a TIMEOUT). `0` when [`Spawn::wait`] was
    /// false (procmail leaves `$?` alone then), [`EXEC_FAILED_STATUS`] when
    /// nothing could be executed.
    pub status: i32,
    /// The captured stdout, complete (empty unless [`Output::Capture`]).
    pub output: Vec<u8>,
    /// Not all of the input went in: the program closed its stdin early
    /// (EPIPE) or the timeout cut the writing short. procmail logs
    /// `Error while writing to "x"` unless the recipe has `i`.
    pub write_error: bool,
    /// The timeout expired and SIGTERM was sent.
    pub timed_out: bool,
    /// Neither the program nor `/bin/sh program...` could be executed.
    pub exec_failed: bool,
}

/// Runs one program with `input` on its stdin (spec §12).
///
/// If the program cannot be executed, it is retried as `/bin/sh argv...`,
/// the way procmail treats it as a shell script (a missing `nosuchprog` thus
/// gives dash's `cannot open nosuchprog` on stderr and status 2); if even
/// that cannot be executed, the result has `exec_failed` and status 69.
///
/// Errors are only returned for resources (no pipe, no process slot), which
/// the caller may retry later, for a `cwd` that is not a directory, and for
/// an empty argv or a NUL byte in the environment.
pub fn run(spawn: &Spawn, input: &[u8]) -> io::Result<Ran> {
    run_pieces(spawn, &[input], None)
}

/// [`run`], reading at most `max_output + 1` bytes of captured output, for
/// backquotes: procmail reads `LINEBUF` bytes of a backquote's output, tries
/// one more, logs `Excessive output quenched from "x"` if it got it, and
/// closes the pipe (spec §4.4). So `output.len() > max_output` means
/// "quenched": the caller logs and truncates. The program then gets EPIPE or
/// SIGPIPE on its next write. `None` reads everything, as for filters and
/// `NAME=|cmd`.
pub fn run_capped(spawn: &Spawn, input: &[u8], max_output: Option<usize>) -> io::Result<Ran> {
    run_pieces(spawn, &[input], max_output)
}

/// [`run_capped`] with the input given as pieces that the program reads one
/// after the other (written with writev(2)), so that a caller never has to
/// copy a message to append its final newline (spec §10.1).
pub fn run_pieces(spawn: &Spawn, input: &[&[u8]], max_output: Option<usize>) -> io::Result<Ran> {
    ignore_sigpipe();
    let argv = spawn.program.argv();
    if argv.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty command: no program to run",
        ));
    }
    let envp = Arc::new(Environ::new(&spawn.env)?);
    let started = Instant::now();
    let mut child = match start(spawn, &argv, &envp) {
        Ok(child) => child,
        Err(err) if is_resource_error(&err) => return Err(err),
        Err(err) if !std::fs::metadata(&spawn.cwd).is_ok_and(|m| m.is_dir()) => {
            // Not an exec failure: std reports a failed chdir the same way.
            return Err(io::Error::new(
                err.kind(),
                format!("cannot chdir to {}: {err}", spawn.cwd.display()),
            ));
        }
        Err(_) => {
            // procmail (pipes.c shexec): when execvp fails, try the file as a
            // script with /bin/sh; spec §12, checked with `| nosuchprog` and
            // `| /etc/passwd x` (dash: "not found" lines, status 127).
            let mut sh_argv = vec![BIN_SH];
            sh_argv.extend(&argv);
            match start(spawn, &sh_argv, &envp) {
                Ok(child) => child,
                Err(err) if is_resource_error(&err) => return Err(err),
                Err(_) => {
                    return Ok(Ran {
                        status: EXEC_FAILED_STATUS,
                        exec_failed: true,
                        ..Ran::default()
                    });
                }
            }
        }
    };
    let mut timer = Timer {
        limit: spawn.timeout.filter(|t| !t.is_zero()).map(|t| started + t),
        len: spawn.timeout.unwrap_or_default(),
    };
    let mut ran = Ran::default();
    if spawn.stdout == Output::Capture {
        ran.output = capture_buffer(input, max_output);
    }
    let stdin = child.stdin.take().map(OwnedFd::from);
    let stdout = child.stdout.take().map(OwnedFd::from);
    let cap = max_output.map(|max| max.saturating_add(1));
    let io = pump(&child, stdin, stdout, input, cap, &mut timer, &mut ran);
    if let Err(err) = io {
        // Something unexpected (poll failed): do not leave the child behind.
        let _ = child.kill();
        let _ = child.wait();
        return Err(err);
    }
    shrink_capture(&mut ran.output);
    if !spawn.wait {
        reap_in_background(child);
        return Ok(ran);
    }
    let status = wait_until(&mut child, &mut timer, &mut ran)?;
    ran.status = status_code(status);
    Ok(ran)
}

/// The buffer for a program's captured output, sized for the common case,
/// a filter that gives back about what it got: the input's length and a
/// little room for added header fields, or the cap of a backquote if that
/// is smaller. Growing a buffer by doubling instead costs a realloc per
/// doubling and, below glibc's mmap threshold, a copy each time. Only
/// address space is reserved here (pages are touched as output arrives),
/// and if even that is refused the buffer simply grows as needed.
fn capture_buffer(input: &[&[u8]], max_output: Option<usize>) -> Vec<u8> {
    /// Room for header fields a filter adds (formail, spam checkers).
    const SLACK: usize = 64 << 10;
    let total: usize = input.iter().map(|p| p.len()).sum();
    let want = total.saturating_add(SLACK);
    let want = max_output.map_or(want, |max| want.min(max.saturating_add(1)));
    let mut buf = Vec::new();
    let _ = buf.try_reserve_exact(want);
    buf
}

/// Gives back the unused part of a capture buffer when most of it went
/// unused (a backquote or `NAME=|cmd` that printed one line about a big
/// message), so the value kept in a variable does not hold the reservation
/// for the rest of the delivery.
fn shrink_capture(output: &mut Vec<u8>) {
    if output.capacity() - output.len() > (64 << 10).max(output.len() / 8) {
        output.shrink_to_fit();
    }
}

/// The `TIMEOUT` clock of one run: first the deadline for SIGTERM, then,
/// once that was sent, the end of the grace period.
struct Timer {
    /// When the current period ends; `None` = no timeout.
    limit: Option<Instant>,
    /// The length of one period (`TIMEOUT`).
    len: Duration,
}

impl Timer {
    /// Sends SIGTERM (spec §9 TIMEOUT: `$?` becomes -15) and starts the grace
    /// period. procmail then waits without any limit; we give the child one
    /// more timeout period, after which it is killed and its stdout is no
    /// longer read, so that a stuck program cannot hold the message forever.
    fn expire(&mut self, child: &Child, ran: &mut Ran) {
        ran.timed_out = true;
        terminate(child);
        self.limit = Some(Instant::now() + self.len);
    }
}

/// Starts `argv` with the settings of `spawn`; exec errors come back as the
/// `Err` of `spawn()` (std reports them through a close-on-exec pipe).
fn start(spawn: &Spawn, argv: &[&[u8]], envp: &Arc<Environ>) -> io::Result<Child> {
    let mut cmd = Command::new(OsStr::from_bytes(argv[0]));
    cmd.args(argv[1..].iter().map(|a| OsStr::from_bytes(a)));
    // The environment is installed in the child (see Environ) instead of
    // through `Command::env`, which would sort it: procmail hands programs
    // its variables in its own order, and `env` in a pipe shows it.
    let envp = Arc::clone(envp);
    // SAFETY: the closure runs in the forked child before exec. It only
    // stores a pointer into `environ` and calls signal(2), both
    // async-signal-safe; the array and strings it points to were allocated
    // before the fork and are owned by the closure.
    unsafe {
        cmd.pre_exec(move || {
            envp.install();
            // procmail's shexec resets these two before exec (it ignores
            // them itself); every other ignored signal is inherited, as
            // checked by running procmail under a parent that ignores INT,
            // HUP, USR1, TERM, QUIT, XFSZ and 34.
            libc::signal(libc::SIGXCPU, libc::SIG_DFL);
            libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd.current_dir(&spawn.cwd);
    cmd.stdin(Stdio::piped());
    cmd.stdout(match spawn.stdout {
        Output::Null => Stdio::null(),
        Output::Capture => Stdio::piped(),
        Output::Inherit => Stdio::inherit(),
    });
    cmd.stderr(match &spawn.stderr {
        Some(fd) => Stdio::from(fd.try_clone()?),
        None => Stdio::inherit(),
    });
    cmd.spawn()
}

unsafe extern "C" {
    /// The C library's environment of this process (POSIX `environ`).
    static mut environ: *const *const libc::c_char;
}

/// A child's environment as a NULL-terminated `NAME=value` array, built
/// before the fork and installed in the child just before exec, so execvp(3)
/// both passes it on and searches its `PATH`.
struct Environ {
    /// The `NAME=value` strings; `ptrs` points into them.
    _strings: Vec<CString>,
    /// The array for `environ`, ending in NULL.
    ptrs: Vec<*const libc::c_char>,
}

// SAFETY: the pointers only refer to `_strings`, which the struct owns and
// never changes; nothing is shared with another thread.
unsafe impl Send for Environ {}
unsafe impl Sync for Environ {}

impl Environ {
    /// Builds the array; a NUL byte in a name or value is an error.
    fn new(env: &[(Vec<u8>, Vec<u8>)]) -> io::Result<Environ> {
        let strings = env
            .iter()
            .map(|(name, value)| {
                let mut entry = Vec::with_capacity(name.len() + 1 + value.len());
                entry.extend_from_slice(name);
                entry.push(b'=');
                entry.extend_from_slice(value);
                CString::new(entry).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "environment variable `{}` contains a NUL byte",
                            String::from_utf8_lossy(name)
                        ),
                    )
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut ptrs: Vec<_> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        Ok(Environ {
            _strings: strings,
            ptrs,
        })
    }

    /// Makes this the process environment. Only for the forked child.
    fn install(&self) {
        // SAFETY: called in the single-threaded child between fork and exec;
        // `ptrs` is NULL-terminated and outlives the exec.
        unsafe {
            environ = self.ptrs.as_ptr();
        }
    }
}

/// Errors of `Command::spawn` that mean "out of resources" rather than "this
/// program cannot be executed": retrying with `/bin/sh` would not help, and
/// the caller should treat them as temporary.
fn is_resource_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EAGAIN) | Some(libc::EMFILE) | Some(libc::ENFILE)
    )
}

/// Writes `input` to the child's stdin and reads its stdout until both are
/// done, or until the deadline; then the child gets SIGTERM, the writing
/// stops, and the output is read for one more timeout period at most.
fn pump(
    child: &Child,
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    input: &[&[u8]],
    cap: Option<usize>,
    timer: &mut Timer,
    ran: &mut Ran,
) -> io::Result<()> {
    let mut stdin = stdin.map(std::fs::File::from);
    let mut stdout = stdout.map(std::fs::File::from);
    for fd in stdin
        .iter()
        .map(AsFd::as_fd)
        .chain(stdout.iter().map(AsFd::as_fd))
    {
        set_nonblocking(fd)?;
    }
    let mut pieces = unwritten(input);
    let mut rest: &mut [IoSlice<'_>] = &mut pieces;
    if rest.is_empty() {
        stdin = None; // end of file at once
    }
    while stdin.is_some() || stdout.is_some() {
        let mut fds = Vec::with_capacity(2);
        if let Some(f) = &stdin {
            fds.push(libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            });
        }
        if let Some(f) = &stdout {
            fds.push(libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if poll(&mut fds, timer.limit)? == 0 {
            if ran.timed_out {
                break; // grace over: give up on a pipe held open by others
            }
            timer.expire(child, ran);
            // procmail's write is interrupted by the alarm and it logs
            // `Error while writing` (checked with TIMEOUT=1 and `| sleep 5`).
            if stdin.take().is_some() {
                ran.write_error = true;
            }
            continue;
        }
        let mut next = 0;
        if let Some(f) = &mut stdin {
            let revents = fds[next].revents;
            next += 1;
            if revents != 0 {
                match f.write_vectored(rest) {
                    Ok(n) => IoSlice::advance_slices(&mut rest, n),
                    Err(e) if retry(&e) => {}
                    // EPIPE (the program exited without reading everything)
                    // or any other write error: spec §5 `i`, the caller
                    // decides whether it matters.
                    Err(_) => {
                        ran.write_error = true;
                        stdin = None;
                    }
                }
                if rest.is_empty() {
                    stdin = None; // close: the program sees end of file
                }
            }
        }
        if let Some(f) = &mut stdout
            && fds[next].revents != 0
        {
            // read_to_end keeps what it read when the pipe runs dry; `take`
            // stops it at the cap even if the writer never pauses.
            let room = cap.map_or(u64::MAX, |cap| (cap - ran.output.len()) as u64);
            match f.take(room).read_to_end(&mut ran.output) {
                Ok(_) => stdout = None,
                Err(e) if retry(&e) => {}
                Err(_) => stdout = None,
            }
            if cap.is_some_and(|cap| ran.output.len() >= cap) {
                stdout = None; // close: further writes get EPIPE or SIGPIPE
            }
        }
    }
    Ok(())
}

/// The pieces of `input` as writev(2) takes them, the empty ones left
/// out: what is left after a write is then empty exactly when everything
/// was written ([`IoSlice::advance_slices`] drops what it passes).
fn unwritten<'a>(input: &[&'a [u8]]) -> Vec<IoSlice<'a>> {
    input
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect()
}

/// Waits for the child to exit, honouring the timer: at the deadline it gets
/// SIGTERM (if `pump` did not send it already), and if it is still there at
/// the end of the grace period, SIGKILL.
fn wait_until(child: &mut Child, timer: &mut Timer, ran: &mut Ran) -> io::Result<ExitStatus> {
    if timer.limit.is_none() {
        return child.wait();
    }
    let pidfd = pidfd_open(child.id());
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        let expired = match &pidfd {
            Some(fd) => {
                let mut fds = [libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                }];
                poll(&mut fds, timer.limit)? == 0
            }
            None => {
                // No pidfd (old kernel): look again every 10 ms.
                let now = Instant::now();
                let limit = timer.limit.unwrap_or(now);
                if now >= limit {
                    true
                } else {
                    std::thread::sleep((limit - now).min(Duration::from_millis(10)));
                    false
                }
            }
        };
        if !expired {
            continue;
        }
        if ran.timed_out {
            // It ignored SIGTERM for a whole grace period (see Timer::expire).
            let _ = child.kill();
            return child.wait();
        }
        timer.expire(child, ran);
    }
}

/// Sends SIGTERM to a child that has not been reaped yet (so its pid cannot
/// have been reused).
fn terminate(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// Reaps a child we do not wait for (a pipe without `w`).
///
/// A thread per such child rather than a double fork: std's `Command` cannot
/// double-fork without `pre_exec` tricks, and the thread costs nothing when
/// `deliver` exits first (the child is then re-parented to init, which reaps
/// it). If no thread can be started the child stays a zombie until we exit,
/// which is what procmail itself does.
fn reap_in_background(mut child: Child) {
    let _ = std::thread::Builder::new()
        .name("reap-child".into())
        .spawn(move || {
            let _ = child.wait();
        });
}

/// procmail's `$?` for an exit status: the code, or minus the signal.
fn status_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => -sig,
        (None, None) => EXEC_FAILED_STATUS,
    }
}

/// Whether an I/O error only means "not now".
fn retry(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// poll(2) until `limit` (forever when `None`); returns the number of ready
/// descriptors, 0 when the limit passed. EINTR is retried.
fn poll(fds: &mut [libc::pollfd], limit: Option<Instant>) -> io::Result<usize> {
    loop {
        let timeout_ms = match limit {
            None => -1,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(0);
                }
                // Round up so that we never wake a hair before the deadline.
                i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
            }
        };
        // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n >= 0 {
            if n == 0 && limit.is_some_and(|at| Instant::now() < at) {
                continue; // woke early
            }
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Puts our end of a pipe into non-blocking mode (the child's end is a
/// different open file description and stays blocking).
fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    unsafe {
        let flags = libc::fcntl(raw, libc::F_GETFL);
        if flags < 0 || libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A pidfd for our unreaped child, to wait for its exit with a timeout in
/// poll(2). `None` where the kernel has no pidfd_open(2) (before 5.3).
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: a plain syscall with integer arguments; on success it returns a
    // new descriptor that nobody else owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes sure SIGPIPE cannot kill this process (see the module comment).
fn ignore_sigpipe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: querying and, if it is the default, replacing the SIGPIPE
        // disposition; SIG_IGN runs no code of ours.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_DFL
            {
                libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Seek;

    /// A spawn of `argv` with a small clean environment, waiting, stdout
    /// captured, no timeout.
    fn spawn(argv: &[&str]) -> Spawn {
        Spawn {
            program: Program::Argv(argv.iter().map(|a| a.as_bytes().to_vec()).collect()),
            env: vec![(b"PATH".to_vec(), b"/usr/bin:/bin".to_vec())],
            cwd: PathBuf::from("/"),
            stderr: None,
            stdout: Output::Capture,
            timeout: None,
            wait: true,
        }
    }

    fn sh(text: &str) -> Spawn {
        Spawn {
            program: Program::Shell {
                shell: b"/bin/sh".to_vec(),
                flags: vec![b"-c".to_vec()],
                text: text.as_bytes().to_vec(),
            },
            ..spawn(&[])
        }
    }

    /// A temp file to serve as the child's stderr (the log), and a reader.
    fn log_file() -> (OwnedFd, File) {
        let file = tempfile::tempfile().unwrap();
        (OwnedFd::from(file.try_clone().unwrap()), file)
    }

    use std::fs::File;

    fn read_all(mut file: File) -> String {
        let mut s = String::new();
        file.rewind().unwrap();
        file.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn cat_echoes_the_input() {
        let got = run(&spawn(&["cat"]), b"From x\nSubject: a\n\nbody\n").unwrap();
        let want = Ran {
            output: b"From x\nSubject: a\n\nbody\n".to_vec(),
            ..Ran::default()
        };
        assert_eq!(got, want);
    }

    #[test]
    fn exit_codes_and_signals() {
        // Checked with procmail: `:0 w` + `| /bin/sh -c 'exit 3'` gives
        // `Program failure (3)` and $?=3; `| sh -c "kill -9 \$\$"` gives -9.
        let cases: &[(&str, i32)] = &[("exit 0", 0), ("exit 3", 3), ("kill -9 $$", -9)];
        for &(text, want) in cases {
            let got = run(&spawn(&["/bin/sh", "-c", text]), b"").unwrap().status;
            assert_eq!(got, want, "argv: {text}");
            let got = run(&sh(text), b"").unwrap().status;
            assert_eq!(got, want, "shell: {text}");
        }
    }

    #[test]
    fn shell_argv_is_shell_flags_text() {
        let p = Program::Shell {
            shell: b"/bin/bash".to_vec(),
            flags: vec![b"-e".to_vec(), b"-c".to_vec()],
            text: b"echo $0".to_vec(),
        };
        let want: Vec<&[u8]> = vec![b"/bin/bash", b"-e", b"-c", b"echo $0"];
        assert_eq!(p.argv(), want);
    }

    #[test]
    fn environment_is_exactly_the_given_one() {
        let mut s = spawn(&["env"]);
        s.env.push((b"A".to_vec(), b"\xff1".to_vec()));
        s.env.push((b"B".to_vec(), b"2".to_vec()));
        // In the given order, not sorted.
        s.env.insert(0, (b"Z".to_vec(), b"0".to_vec()));
        let got = run(&s, b"").unwrap().output;
        assert_eq!(got, b"Z=0\nPATH=/usr/bin:/bin\nA=\xff1\nB=2\n");
    }

    #[test]
    fn program_is_found_in_the_childs_path_and_runs_in_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("mytool");
        std::fs::write(&tool, "#!/bin/sh\npwd\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut s = spawn(&["mytool"]);
        s.env = vec![(b"PATH".to_vec(), dir.path().as_os_str().as_bytes().to_vec())];
        s.cwd = dir.path().to_path_buf();
        let got = run(&s, b"").unwrap();
        let want = format!("{}\n", dir.path().canonicalize().unwrap().display());
        assert_eq!(String::from_utf8_lossy(&got.output), want);
    }

    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn missing_program_is_retried_with_bin_sh() {
        // Checked with procmail: `| nosuchprog arg1` logs dash's message and
        // `Program failure (2) of "nosuchprog"`.
        let (fd, log) = log_file();
        let dir = tempfile::tempdir().unwrap();
        let mut s = spawn(&["nosuchprog", "arg1"]);
        s.stderr = Some(fd);
        s.cwd = dir.path().to_path_buf();
        let got = run(&s, b"mail\n").unwrap();
        assert_eq!((got.status, got.exec_failed), (2, false));
        assert_eq!(
            read_all(log),
            "/bin/sh: 0: cannot open nosuchprog: No such file\n"
        );
    }

    #[test]
    fn missing_shell_is_retried_with_bin_sh() {
        // Checked with procmail: SHELL=/nonexistent/sh and `| echo hi; exit 3`
        // log `/bin/sh: 0: cannot open /nonexistent/sh: No such file`, $?=2.
        let (fd, log) = log_file();
        let mut s = sh("echo hi; exit 3");
        s.program = Program::Shell {
            shell: b"/nonexistent/sh".to_vec(),
            flags: vec![b"-c".to_vec()],
            text: b"echo hi; exit 3".to_vec(),
        };
        s.stderr = Some(fd);
        let got = run(&s, b"").unwrap();
        assert_eq!((got.status, got.output), (2, Vec::new()));
        assert_eq!(
            read_all(log),
            "/bin/sh: 0: cannot open /nonexistent/sh: No such file\n"
        );
    }

    #[test]
    fn missing_cwd_is_an_error_not_an_exec_failure() {
        let mut s = spawn(&["true"]);
        s.cwd = PathBuf::from("/nonexistent/dir");
        let err = run(&s, b"").unwrap_err();
        assert!(
            err.to_string().contains("cannot chdir to /nonexistent/dir"),
            "{err}"
        );
    }

    #[test]
    fn non_executable_file_runs_as_a_script() {
        // Checked with procmail: `| /etc/passwd x` feeds the file to dash.
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        std::fs::write(&script, "echo \"$1\"; exit 7\n").unwrap();
        let got = run(&spawn(&[script.to_str().unwrap(), "arg"]), b"").unwrap();
        assert_eq!((got.status, got.output), (7, b"arg\n".to_vec()));
    }

    #[test]
    fn unexecutable_even_by_bin_sh_is_69() {
        // A NUL byte cannot reach execve(2) at all, not even as an argument
        // of /bin/sh: the only portable way to make both attempts fail.
        let got = run(&spawn(&["a\0b"]), b"x\n").unwrap();
        let want = Ran {
            status: 69,
            exec_failed: true,
            ..Ran::default()
        };
        assert_eq!(got, want);
    }

    #[test]
    fn program_that_reads_nothing_is_a_write_error() {
        // Checked with procmail: `:0 w` + `| true` with a 3 MB message logs
        // `Error while writing to "true"`, and $? is 0.
        let input = vec![b'x'; 1 << 20];
        let got = run(&spawn(&["true"]), &input).unwrap();
        assert_eq!((got.status, got.write_error), (0, true));
    }

    #[test]
    fn big_input_and_output_do_not_deadlock() {
        // Far beyond the pipe buffers in both directions at once.
        let input: Vec<u8> = (0..16 << 20).map(|i| (i % 251) as u8).collect();
        let got = run(&spawn(&["cat"]), &input).unwrap();
        assert!(!got.write_error);
        assert!(got.output == input, "output differs from input");
    }

    #[test]
    fn pieces_arrive_in_order_as_one_input() {
        // Big pieces cross the pipe buffer in the middle of a piece and at
        // the boundaries; empty pieces are no end of file.
        let big: Vec<u8> = (0..300_000).map(|i| (i % 251) as u8).collect();
        let cases: [&[&[u8]]; 4] = [
            &[b"abc", b"\n"],
            &[b"", b"x", b"", b"y"],
            &[&big, b"\n", &big],
            &[b"", b""],
        ];
        for pieces in cases {
            let want = pieces.concat();
            let got = run_pieces(&spawn(&["cat"]), pieces, None).unwrap();
            assert!(!got.write_error);
            assert!(
                got.output == want,
                "{} bytes in, {} out",
                want.len(),
                got.output.len()
            );
        }
    }

    #[test]
    fn pending_advances_across_pieces() {
        let mut pieces = unwritten(&[b"ab", b"", b"cde", b"f"]);
        let mut p: &mut [IoSlice<'_>] = &mut pieces;
        let left = |p: &[IoSlice<'_>]| p.iter().map(|s| s.to_vec()).collect::<Vec<_>>();
        IoSlice::advance_slices(&mut p, 1);
        assert_eq!(left(p), [&b"b"[..], b"cde", b"f"]);
        IoSlice::advance_slices(&mut p, 3);
        assert_eq!(left(p), [&b"e"[..], b"f"]);
        IoSlice::advance_slices(&mut p, 2);
        assert!(p.is_empty());
    }

    #[test]
    fn capture_buffer_is_sized_then_trimmed() {
        let input = vec![b'x'; 1 << 20];
        let buf = capture_buffer(&[&input, b"\n"], None);
        assert!(buf.capacity() > input.len());
        let buf = capture_buffer(&[&input], Some(2048));
        assert_eq!(buf.capacity(), 2049);
        // A short answer to a big input does not keep the reservation.
        let got = run(&spawn(&["head", "-c", "5"]), &input).unwrap();
        assert_eq!(got.output, b"xxxxx");
        assert!(got.output.capacity() < 1 << 16, "{}", got.output.capacity());
        // A filter's output that fills it keeps it.
        let got = run(&spawn(&["cat"]), &input).unwrap();
        assert_eq!(got.output.len(), input.len());
    }

    #[test]
    fn capped_output_stops_an_endless_writer() {
        let got = run_capped(&spawn(&["yes"]), b"", Some(10)).unwrap();
        // 10 bytes kept plus the one that shows the overflow; then `yes`
        // dies of SIGPIPE once we close the pipe.
        assert_eq!(
            (got.output, got.status),
            (b"y\ny\ny\ny\ny\ny".to_vec(), -13)
        );
        let got = run_capped(&sh("printf abc"), b"", Some(3)).unwrap();
        assert_eq!(got.output, b"abc", "exactly the limit is no overflow");
    }

    #[test]
    #[ignore = "100 MB; run by hand: cargo test --lib deliver::proc -- --ignored"]
    fn hundred_megabytes() {
        let input = vec![b'y'; 100 << 20];
        let got = run(&spawn(&["cat"]), &input).unwrap();
        assert_eq!(got.output.len(), input.len());
    }

    #[test]
    fn timeout_terminates() {
        // Checked with procmail: TIMEOUT=1 and `:0 w` + `| sleep 5` logs
        // `Timeout, terminating "sleep"`, and $? is -15.
        let mut s = spawn(&["sleep", "5"]);
        s.timeout = Some(Duration::from_secs(1));
        let started = Instant::now();
        let got = run(&s, b"").unwrap();
        assert_eq!((got.status, got.timed_out), (-15, true));
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn timeout_while_writing_is_also_a_write_error() {
        // procmail logs `Error while writing` after the timeout interrupts
        // its write (checked with the 3 MB message and `| sleep 5`).
        let mut s = spawn(&["sleep", "5"]);
        s.timeout = Some(Duration::from_millis(300));
        let got = run(&s, &vec![b'x'; 1 << 20]).unwrap();
        assert_eq!(
            (got.status, got.timed_out, got.write_error),
            (-15, true, true)
        );
    }

    #[test]
    fn zero_timeout_means_none() {
        let mut s = spawn(&["sleep", "0.2"]);
        s.timeout = Some(Duration::ZERO);
        let got = run(&s, b"").unwrap();
        assert_eq!((got.status, got.timed_out), (0, false));
    }

    #[test]
    fn child_ignoring_sigterm_is_killed_after_the_grace_period() {
        let mut s = sh("trap '' TERM; sleep 3; sleep 3");
        s.timeout = Some(Duration::from_millis(300));
        let started = Instant::now();
        let got = run(&s, b"").unwrap();
        assert_eq!((got.status, got.timed_out), (-9, true));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn captured_pipe_held_by_a_grandchild_is_given_up() {
        let mut s = sh("echo hi; sleep 3 &");
        s.timeout = Some(Duration::from_millis(300));
        let started = Instant::now();
        let got = run(&s, b"").unwrap();
        assert_eq!((got.output, got.timed_out), (b"hi\n".to_vec(), true));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn without_wait_returns_once_written() {
        let mut s = spawn(&["sh", "-c", "cat >/dev/null; sleep 3; exit 5"]);
        s.wait = false;
        s.stdout = Output::Null;
        let started = Instant::now();
        let got = run(&s, b"mail\n").unwrap();
        assert_eq!(got, Ran::default());
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// Our child processes named `comm`, with their state letters.
    fn children_named(comm: &str) -> Vec<String> {
        let me = std::process::id().to_string();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...
            let Some((head, tail)) = stat.rsplit_once(") ") else {
                continue;
            };
            let fields: Vec<&str> = tail.split(' ').collect();
            if head.ends_with(&format!("({comm}")) && fields.get(1) == Some(&me.as_str()) {
                found.push(fields[0].to_string());
            }
        }
        found
    }

    #[test]
    fn unwaited_child_is_reaped() {
        // A name no other test uses, so its zombie would be recognisable.
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("reapme");
        std::os::unix::fs::symlink("/bin/true", &prog).unwrap();
        let mut s = spawn(&[prog.to_str().unwrap()]);
        s.wait = false;
        s.stdout = Output::Null;
        run(&s, b"").unwrap();
        let started = Instant::now();
        loop {
            let left = children_named("reapme");
            if left.is_empty() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "not reaped: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn null_stdout_discards_and_stderr_goes_to_the_log() {
        let (fd, log) = log_file();
        let mut s = sh("echo out; echo err >&2");
        s.stdout = Output::Null;
        s.stderr = Some(fd);
        let got = run(&s, b"").unwrap();
        assert_eq!(got.output, b"");
        assert_eq!(read_all(log), "err\n");
    }

    #[test]
    fn child_gets_default_sigpipe_and_sigxfsz() {
        // Checked with procmail: `| grep SigIgn /proc/self/status` shows
        // SIGPIPE and SIGXFSZ not ignored although procmail ignores them.
        // Ignore SIGXFSZ here to see it reset (harmless for the tests).
        // SAFETY: SIG_IGN for a signal nothing in the tests raises.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        }
        let got = run(&spawn(&["grep", "SigIgn", "/proc/self/status"]), b"").unwrap();
        let text = String::from_utf8(got.output).unwrap();
        let mask = u64::from_str_radix(text.trim().trim_start_matches("SigIgn:\t"), 16).unwrap();
        for sig in [libc::SIGPIPE, libc::SIGXFSZ, libc::SIGXCPU] {
            assert_eq!(mask & (1 << (sig - 1)), 0, "signal {sig} ignored: {text}");
        }
    }

    #[test]
    fn nul_in_the_environment_is_an_error() {
        let mut s = spawn(&["true"]);
        s.env.push((b"A".to_vec(), b"x\0y".to_vec()));
        let err = run(&s, b"").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn empty_argv_is_an_error() {
        let err = run(&spawn(&[]), b"").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
