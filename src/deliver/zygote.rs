//! A warm `deliver` that forks a fresh delivery for each request.
//!
//! A queue runner that starts `deliver` once per message pays for an
//! exec, the dynamic loader, relocations and CPU feature detection every
//! time, which costs more than many deliveries themselves. Postfix keeps
//! its local(8) agent running for the same reason. A zygote is `deliver
//! --postroom-zygote` started once, with a Unix stream socket on its
//! standard input; for each request it forks, and the child runs exactly
//! what `deliver ARGS…` would run — the same [`crate::cli::parse_deliver`]
//! and [`super::run`], with the request's environment, the message on its
//! standard input (a memfd) and its standard error kept (another memfd) —
//! then exits with deliver's exit code. The zygote itself never delivers,
//! so every child starts from the same state a fresh `deliver` would, minus
//! the exec.
//!
//! The child is a new process like an exec'd `deliver`: rcfiles, `chdir`,
//! `umask`, signals and locks are its own. The zygote is single-threaded
//! (fork is safe), runs one request at a time and ends when its socket
//! closes; a client that wants several at once starts several.
//!
//! The protocol (all integers little-endian): the zygote greets with
//! `PRZ1` once it runs (a program that does not is not a zygote). A
//! request is `PRZ1`, the
//! argument vector and the environment (each a u32 count of u32-length
//! strings), the uid and gid to run as (u32 + 1, 0 for "stay"), and the
//! message (u64 length). The zygote answers `P` + the child's pid (u32)
//! once it runs, or `E` + a u32-length error text when it cannot fork;
//! then `S` + the status (i32: the exit code, or minus the signal that
//! killed it) + the first [`STDERR_KEEP`] bytes of its stderr (u32 length).
//! This module never decides what a status means (`runner` does).

use std::borrow::Cow;
use std::ffi::{CString, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The argument that makes `deliver` a zygote.
pub const ZYGOTE_ARG: &str = "--postroom-zygote";

/// How much of a child's standard error comes back.
pub const STDERR_KEEP: usize = 1000;

const MAGIC: &[u8; 4] = b"PRZ1";

/// One delivery to run: what `deliver` would get from `Command`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request<'a> {
    /// The argument vector, `argv[0]` first (the child gets the zygote's
    /// own `argv[0]` in its place).
    pub argv: Vec<Vec<u8>>,
    /// The whole environment, `NAME=value` each.
    pub env: Vec<Vec<u8>>,
    /// Run as this uid and gid (the zygote must be root); `None` stays.
    pub id: Option<(u32, u32)>,
    /// The message, given on standard input (borrowed by a sender, owned
    /// once decoded).
    pub message: Cow<'a, [u8]>,
}

/// How a child ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    /// The exit code, or `None` when a signal killed it.
    pub code: Option<i32>,
    /// The start of what it wrote to standard error.
    pub stderr: Vec<u8>,
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

/// `s` with its u32 length in front.
fn put_bytes(out: &mut Vec<u8>, s: &[u8]) {
    put_u32(out, s.len());
    out.extend_from_slice(s);
}

fn put_list(out: &mut Vec<u8>, list: &[Vec<u8>]) {
    put_u32(out, list.len());
    for s in list {
        put_bytes(out, s);
    }
}

fn get_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn get_bytes(r: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    r.read_exact(&mut v)?;
    Ok(v)
}

/// What [`put_bytes`] wrote.
fn get_sized(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let len = get_u32(r)? as usize;
    get_bytes(r, len)
}

fn get_list(r: &mut impl Read) -> io::Result<Vec<Vec<u8>>> {
    let n = get_u32(r)? as usize;
    if n > 100_000 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "list too long"));
    }
    (0..n).map(|_| get_sized(r)).collect()
}

impl Request<'_> {
    /// Writes the request as sent on the socket. The message follows the
    /// rest as it is: it is not copied into one buffer with it.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(MAGIC);
        put_list(&mut out, &self.argv);
        put_list(&mut out, &self.env);
        let (uid, gid) = self.id.map_or((0, 0), |(u, g)| (u64::from(u) + 1, g));
        out.extend_from_slice(&(uid as u32).to_le_bytes());
        out.extend_from_slice(&gid.to_le_bytes());
        out.extend_from_slice(&(self.message.len() as u64).to_le_bytes());
        w.write_all(&out)?;
        w.write_all(&self.message)
    }

    /// Reads one request; `Ok(None)` at a clean end of the stream.
    pub fn decode(r: &mut impl Read) -> io::Result<Option<Request<'static>>> {
        let mut magic = [0u8; 4];
        match r.read(&mut magic[..1])? {
            0 => return Ok(None),
            _ => r.read_exact(&mut magic[1..])?,
        }
        if &magic != MAGIC {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad magic"));
        }
        let argv = get_list(r)?;
        let env = get_list(r)?;
        let uid = get_u32(r)?;
        let gid = get_u32(r)?;
        let mut len = [0u8; 8];
        r.read_exact(&mut len)?;
        let message = get_bytes(r, u64::from_le_bytes(len) as usize)?;
        Ok(Some(Request {
            argv,
            env,
            id: (uid > 0).then(|| (uid - 1, gid)),
            message: Cow::Owned(message),
        }))
    }
}

/// A memfd holding `data`, positioned at its start.
fn memfd(name: &std::ffi::CStr, data: &[u8]) -> io::Result<std::fs::File> {
    // SAFETY: memfd_create with a NUL-terminated name; the descriptor it
    // returns is owned by the File from here on.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(data)?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0))?;
    Ok(f)
}

/// The zygote's loop on `sock` until it closes; returns the exit code of
/// the zygote process.
pub fn serve(sock: UnixStream) -> i32 {
    // The socket is usually descriptor 0, which each child replaces with
    // its message: keep it on a descriptor of its own (close-on-exec) and
    // put /dev/null in its place.
    let mut sock = match sock.try_clone() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("deliver zygote: {e}");
            return 71; // EX_OSERR
        }
    };
    // SAFETY: open/dup2/close on descriptors; 0 is no longer needed.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null > 0 {
            libc::dup2(null, 0);
            libc::close(null);
        }
    }
    // What every child would otherwise work out again after the fork:
    // CPU feature detection (a trap to the hypervisor on a VM).
    #[cfg(target_arch = "x86_64")]
    let _ = std::is_x86_feature_detected!("avx2");
    // And the name service modules glibc loads (dlopen) on the first
    // lookup in each database, which every delivery makes: passwd, and
    // the services and hosts lookups of the COMSAT notice (a `db` entry in
    // nsswitch.conf with no libnss_db installed costs some 80 failed
    // opens, once per process).
    let _ = nix::unistd::User::from_uid(nix::unistd::getuid());
    let _ = nix::unistd::gethostname();
    super::comsat::warm_up();
    // The greeting: whoever started us knows we are a zygote, not some
    // other program that took the argument for something else.
    if let Err(e) = sock.write_all(MAGIC) {
        eprintln!("deliver zygote: {e}");
        return 74;
    }
    loop {
        let req = match Request::decode(&mut sock) {
            Ok(Some(r)) => r,
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("deliver zygote: bad request: {e}");
                return 70; // EX_SOFTWARE
            }
        };
        if let Err(e) = answer(&mut sock, req) {
            eprintln!("deliver zygote: {e}");
            return 74; // EX_IOERR
        }
    }
}

/// Runs one request in a child and reports on `sock`.
fn answer(sock: &mut UnixStream, req: Request<'_>) -> io::Result<()> {
    let (input, errors) = match (memfd(c"message", &req.message), memfd(c"stderr", b"")) {
        (Ok(i), Ok(e)) => (i, e),
        (Err(e), _) | (_, Err(e)) => return refuse(sock, &format!("memfd: {e}")),
    };
    // Everything the child needs is made before the fork: after it, the
    // child only calls async-signal-safe functions until it runs deliver
    // (it is a copy of a single-threaded process, so even that is a rule
    // of caution, not of necessity).
    let env: Vec<CString> = req
        .env
        .into_iter()
        .filter_map(|e| CString::new(e).ok())
        .collect();
    // argv[0] as this program was started: a wrapper script that execs
    // deliver (what the client started) is not the name deliver sees, and
    // the name decides how procmail's options are read (`-d` implied).
    let argv: Vec<OsString> = std::env::args_os()
        .take(1)
        .chain(req.argv.into_iter().skip(1).map(OsString::from_vec))
        .collect();
    let sock_fd = sock.as_raw_fd();
    // SAFETY: fork in a single-threaded process; the child below runs the
    // delivery and always ends in `_exit`/`exit`, never returning here.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return refuse(sock, &format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        child(&input, &errors, sock_fd, &env, req.id, argv);
    }
    drop(input);
    let mut out = vec![b'P'];
    out.extend_from_slice(&(pid as u32).to_le_bytes());
    sock.write_all(&out)?;
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid status pointer.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    let mut kept = Vec::new();
    let mut errors = errors;
    std::io::Seek::seek(&mut errors, std::io::SeekFrom::Start(0))?;
    errors.take(STDERR_KEEP as u64).read_to_end(&mut kept)?;
    let mut out = vec![b'S'];
    out.extend_from_slice(&code.to_le_bytes());
    put_bytes(&mut out, &kept);
    sock.write_all(&out)
}

fn refuse(sock: &mut UnixStream, why: &str) -> io::Result<()> {
    let mut out = vec![b'E'];
    put_bytes(&mut out, why.as_bytes());
    sock.write_all(&out)
}

/// The child: standard descriptors, identity and environment of the
/// request, then deliver itself. Never returns.
fn child(
    input: &std::fs::File,
    errors: &std::fs::File,
    sock: i32,
    env: &[CString],
    id: Option<(u32, u32)>,
    argv: Vec<OsString>,
) -> ! {
    // SAFETY: plain system calls on descriptors we own; clearenv/putenv in
    // a single-threaded child, with strings that live until exit (leaked).
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if libc::dup2(input.as_raw_fd(), 0) < 0
            || libc::dup2(null, 1) < 0
            || libc::dup2(errors.as_raw_fd(), 2) < 0
        {
            libc::_exit(71); // EX_OSERR
        }
        libc::close(null);
        libc::close(sock);
        if let Some((uid, gid)) = id
            && (libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0)
        {
            libc::_exit(71);
        }
        libc::clearenv();
        for e in env {
            libc::putenv(e.clone().into_raw());
        }
    }
    let code =
        std::panic::catch_unwind(|| super::run(crate::cli::parse_deliver(argv))).unwrap_or(101);
    std::process::exit(code)
}

/// The client side: one running zygote.
pub struct Zygote {
    child: Child,
    sock: UnixStream,
}

/// What can go wrong talking to a zygote; the caller then runs `deliver`
/// the ordinary way or defers.
#[derive(Debug, thiserror::Error)]
pub enum ZygoteError {
    /// No zygote could take the request: none could be started, or the
    /// one asked was gone before the request was written. Nothing ran, so
    /// the caller may run `deliver` the ordinary way.
    #[error("deliver zygote: {0}")]
    NotStarted(io::Error),
    /// The zygote stopped answering after it took the request: whether the
    /// delivery ran is unknown.
    #[error("deliver zygote: {0}")]
    Io(#[from] io::Error),
    /// The zygote could not start the child.
    #[error("deliver zygote could not start a delivery: {0}")]
    Refused(String),
}

impl Zygote {
    /// Starts `deliver --postroom-zygote` (with an empty environment but
    /// `PATH`) and waits up to 10 s for its greeting; its stderr goes where
    /// ours does. A program that does not greet is killed.
    pub fn start(deliver: &Path) -> io::Result<Zygote> {
        let (ours, theirs) = UnixStream::pair()?;
        let child = Command::new(deliver)
            .arg(ZYGOTE_ARG)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .spawn()?;
        let mut z = Zygote { child, sock: ours };
        z.sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut hello = [0u8; 4];
        match z.sock.read_exact(&mut hello) {
            Ok(()) if &hello == MAGIC => Ok(z),
            Ok(()) => {
                let _ = z.child.kill();
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a postroom deliver", deliver.display()),
                ))
            }
            Err(e) => {
                let _ = z.child.kill();
                Err(e)
            }
        }
    }

    /// Runs `req`; after `limit` the child is killed and `Ok(None)`
    /// returned (its end is still waited for, so the zygote stays usable).
    pub fn run(&mut self, req: &Request, limit: Duration) -> Result<Option<Ended>, ZygoteError> {
        // The fork answer comes at once; a zygote that says nothing for a
        // minute is broken.
        self.sock
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(ZygoteError::NotStarted)?;
        req.write_to(&mut self.sock)
            .map_err(ZygoteError::NotStarted)?;
        let mut tag = [0u8; 1];
        self.sock.read_exact(&mut tag)?;
        match tag[0] {
            b'P' => {}
            b'E' => {
                let text = get_sized(&mut self.sock)?;
                return Err(ZygoteError::Refused(
                    String::from_utf8_lossy(&text).into_owned(),
                ));
            }
            _ => return Err(bad_answer()),
        }
        let pid = get_u32(&mut self.sock)? as i32;
        self.sock.set_read_timeout(Some(limit))?;
        let mut killed = false;
        match self.sock.read(&mut tag) {
            Ok(1) => {}
            Ok(_) => return Err(bad_answer()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // Not reaped yet (the zygote answers only after waitpid),
                // so the pid is still the child's.
                // SAFETY: kill(2) on a pid that is our zygote's child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                killed = true;
                self.sock.set_read_timeout(Some(Duration::from_secs(60)))?;
                self.sock.read_exact(&mut tag)?;
            }
            Err(e) => return Err(e.into()),
        }
        if tag[0] != b'S' {
            return Err(bad_answer());
        }
        let mut code = [0u8; 4];
        self.sock.read_exact(&mut code)?;
        let code = i32::from_le_bytes(code);
        let n = get_u32(&mut self.sock)? as usize;
        let stderr = get_bytes(&mut self.sock, n.min(STDERR_KEEP))?;
        if killed {
            return Ok(None);
        }
        Ok(Some(Ended {
            code: (code >= 0).then_some(code),
            stderr,
        }))
    }
}

fn bad_answer() -> ZygoteError {
    ZygoteError::Io(io::Error::new(
        io::ErrorKind::InvalidData,
        "unexpected answer",
    ))
}

impl Drop for Zygote {
    fn drop(&mut self) {
        // Closing the socket ends the zygote's loop.
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        let _ = self.child.wait();
    }
}

/// Zygotes to share between threads: each run takes an idle one (or
/// starts one) and gives it back when it is still sound.
pub struct Zygotes {
    deliver: PathBuf,
    idle: std::sync::Mutex<Vec<Zygote>>,
}

impl Zygotes {
    /// Zygotes of the `deliver` binary at `deliver`, started on demand.
    pub fn new(deliver: impl Into<PathBuf>) -> Zygotes {
        Zygotes {
            deliver: deliver.into(),
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Zygotes of `deliver` when it is postroom's own (its `-v`, on
    /// stderr as procmail's, says so), `None` for any other program
    /// (procmail, a wrapper script), which must be started once per
    /// message as usual.
    pub fn of(deliver: &Path) -> Option<Zygotes> {
        let out = Command::new(deliver)
            .arg("-v")
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .ok()?;
        out.stderr
            .starts_with(b"deliver (postroom ")
            .then(|| Zygotes::new(deliver))
    }

    /// The process ids of the idle zygotes.
    pub fn idle_pids(&self) -> Vec<u32> {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|z| z.child.id())
            .collect()
    }

    /// Runs `req` in an idle zygote (a new one if none is idle).
    pub fn run(&self, req: &Request, limit: Duration) -> Result<Option<Ended>, ZygoteError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut z = match idle {
            Some(z) => z,
            None => Zygote::start(&self.deliver).map_err(ZygoteError::NotStarted)?,
        };
        let result = z.run(req, limit);
        // A zygote that failed to talk is dropped (and ends); a refused
        // fork is the system's trouble, not the zygote's.
        if matches!(result, Ok(_) | Err(ZygoteError::Refused(_))) {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(z);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_survives_its_encoding() {
        let want = Request {
            argv: vec![b"deliver".to_vec(), b"-m".to_vec(), b"\xff rc".to_vec()],
            env: vec![b"HOME=/h".to_vec(), b"X=".to_vec()],
            id: Some((0, 5)),
            message: b"From: a\n\nbody\0\n".to_vec().into(),
        };
        let mut bytes = Vec::new();
        want.write_to(&mut bytes).unwrap();
        let got = Request::decode(&mut &bytes[..]).unwrap().unwrap();
        assert_eq!(got, want);
        let none = Request::default();
        let mut none_bytes = Vec::new();
        none.write_to(&mut none_bytes).unwrap();
        let got = Request::decode(&mut &none_bytes[..]).unwrap().unwrap();
        assert_eq!(got, none);
        assert!(Request::decode(&mut &b""[..]).unwrap().is_none());
        assert!(Request::decode(&mut &b"XXXX"[..]).is_err());
        assert!(Request::decode(&mut &bytes[..bytes.len() - 1]).is_err());
    }
}
