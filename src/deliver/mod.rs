//! One recipient's delivery: find and trust the rcfile, drop privileges,
//! run the recipes with real effects, apply procmail's fallbacks.
//!
//! [`run`] is the whole of `deliver`: it takes a parsed command line, reads
//! the message, sets up procmail's start-up environment and hands the
//! rcfiles to `rc::eval` with [`Host`], the real [`Effects`]. The process
//! around it (`src/bin/deliver.rs`) only maps the returned status to the
//! exit code. Nothing here interprets recipes. [`signals`] ends a
//! delivery on TERM, HUP, INT and QUIT the way procmail does, removing the
//! lockfiles [`Host`] registered there. `comsat` sends the biff
//! notification at the end, the only network traffic here.

mod comsat;
pub mod proc;
pub mod signals;
pub mod user;
pub mod zygote;

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{HELP, Invocation, Mode, USAGE};
use crate::mailbox;
use crate::message::Message;
use crate::rc::eval::{
    self, Delivered, Effects, Eval, FolderOpts, Fork, Input, LockParams, Ran, RunRequest,
};
use crate::status::sysexits::*;

/// The version string printed by `-v` and stored in `PROCMAIL_VERSION`
/// (rcfiles test it, so it says which procmail we are compatible with).
pub const PROCMAIL_VERSION: &str = "3.23pre";

/// Where procmail's system-wide rcfile lives.
const ETC_PROCMAILRC: &str = "/etc/procmailrc";

/// The real effects: files, programs, locks, the log.
pub struct Host {
    log: Option<File>,
    locks: Vec<(u64, mailbox::lock::DotLock)>,
    next_lock: u64,
    host: Vec<u8>,
    /// The clones started without waiting (`c` blocks).
    children: Vec<nix::unistd::Pid>,
    /// The second of the last `[pid] date` line (procmail's `oldtime`);
    /// 0 before the first one.
    stamp: i64,
    /// Where the last folder delivery started in its file, and how many
    /// bytes of its `LASTFOLDER` follow the first file's name, for COMSAT.
    last_offset: u64,
    last_others_len: usize,
}

impl Host {
    /// A host that logs to stderr until `LOGFILE` is set.
    pub fn new() -> Host {
        Host {
            log: None,
            locks: Vec::new(),
            next_lock: 1,
            host: user::hostname(),
            children: Vec::new(),
            stamp: 0,
            last_offset: 0,
            last_others_len: 0,
        }
    }

    fn stderr_for_child(&self) -> Option<OwnedFd> {
        match &self.log {
            Some(f) => f.as_fd().try_clone_to_owned().ok(),
            None => io::stderr().as_fd().try_clone_to_owned().ok(),
        }
    }
}

impl Host {
    /// Logs one of procmail's diagnostics at its level.
    fn log_level(&mut self, level: mailbox::Level, text: &[u8]) {
        let verbose = signals::verbose();
        let show = match level {
            mailbox::Level::Always => true,
            mailbox::Level::Logged => self.log.is_some() || verbose,
            mailbox::Level::Verbose => verbose,
        };
        if show {
            self.diag(text, false);
        }
    }
}

impl Default for Host {
    fn default() -> Self {
        Host::new()
    }
}

impl Effects for Host {
    fn run(&mut self, req: &RunRequest, input: &[u8]) -> Ran {
        self.run_input(req, Input::raw(input))
    }

    /// Writes the message and its final newline as two pieces (writev), so
    /// that a filter pass does not copy the message (bench/rss.sh).
    fn run_input(&mut self, req: &RunRequest, input: Input<'_>) -> Ran {
        let spawn = proc::Spawn {
            program: proc::Program::Argv(req.argv.clone()),
            env: req.env.clone(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            stderr: self.stderr_for_child(),
            stdout: req.stdout,
            timeout: (req.timeout > 0).then(|| Duration::from_secs(req.timeout)),
            wait: req.wait,
        };
        // ALRM (procmail's timeout path, spec §14) kills the program that
        // runs; an alarm from before it started does not count.
        signals::take_alarm();
        match proc::run_pieces(&spawn, &input.pieces(), None) {
            Ok(r) => Ran {
                status: r.status,
                output: r.output,
                write_error: r.write_error,
                timed_out: r.timed_out || signals::take_alarm(),
            },
            Err(e) => {
                let shown = req.argv.first().map(|a| a.as_slice()).unwrap_or(b"");
                self.log(
                    format!(
                        "procmail: Failed to execute \"{}\": {e}\n",
                        String::from_utf8_lossy(shown)
                    )
                    .as_bytes(),
                );
                Ran {
                    status: EX_UNAVAILABLE,
                    ..Ran::default()
                }
            }
        }
    }

    fn deliver_folders(
        &mut self,
        names: &[Vec<u8>],
        data: &[u8],
        opts: &FolderOpts,
    ) -> Result<Delivered, Option<Vec<u8>>> {
        let w = mailbox::WriteOpts {
            raw: opts.raw,
            body_start: opts.body_start,
            protect: (opts.protect > 0).then_some(opts.protect),
            envelope_len: opts.envelope_len,
            msgprefix: opts.msgprefix.clone(),
            host: self.host.clone(),
            fsync: true,
            announce: true,
        };
        let mut lines = Vec::new();
        let got = mailbox::deliver(names, data, &w, &mut |level, text| {
            lines.push((level, text.to_vec()))
        });
        for (level, text) in lines {
            self.log_level(level, &text);
        }
        match got {
            Ok(d) => {
                self.last_offset = d.offset;
                self.last_others_len = d.lastfolder.len() - d.first_len;
                Ok(Delivered {
                    lastfolder: d.lastfolder,
                    written: d.written,
                })
            }
            Err(e) => Err(e.lastfolder().map(|l| l.to_vec())),
        }
    }

    fn announces_lastfolder(&self) -> bool {
        true
    }

    fn delivery_over(&mut self, notice: &eval::Notice<'_>) {
        // procmailrc(5) COMSAT: a best-effort UDP datagram; nothing here
        // can change the outcome of the delivery.
        let Some(to) = comsat::target(notice.comsat) else {
            return;
        };
        let offset = notice.file.then_some(self.last_offset);
        // After several folders procmail names only the first file; the
        // notice's folder ends with the `LASTFOLDER` we returned.
        let folder = match notice.file {
            true => &notice.folder[..notice.folder.len().saturating_sub(self.last_others_len)],
            false => notice.folder,
        };
        let Some(msg) = comsat::message(notice.logname, offset, folder, notice.linebuf) else {
            return;
        };
        if comsat::send(to, &msg) {
            self.log_level(
                mailbox::Level::Verbose,
                &mailbox::quoted("Notified comsat:", &msg),
            );
        }
    }

    fn to_stdout(&mut self, data: &[u8]) -> bool {
        let mut out = io::stdout().lock();
        out.write_all(data).and_then(|_| out.flush()).is_ok()
    }

    fn lock(&mut self, path: &[u8], params: &LockParams) -> Option<u64> {
        let p = mailbox::lock::LockParams {
            sleep: Duration::from_secs(params.sleep),
            timeout: Duration::from_secs(params.timeout),
            suspend: Duration::from_secs(params.suspend),
            host: self.host.clone(),
            ..mailbox::lock::LockParams::default()
        };
        let mut lines = Vec::new();
        let path = Path::new(OsStr::from_bytes(path));
        let got = user::with_spool_group(path, || {
            mailbox::lock::DotLock::acquire(path, &p, &mut |level, text| {
                lines.push((level, text.to_vec()))
            })
        });
        for (level, text) in lines {
            self.log_level(level, &text);
        }
        let lock = got.ok()?;
        let id = self.next_lock;
        self.next_lock += 1;
        self.locks.push((id, lock));
        Some(id)
    }

    fn unlock(&mut self, id: u64) {
        let Some(at) = self.locks.iter().position(|(i, _)| *i == id) else {
            return;
        };
        let (_, lock) = self.locks.remove(at);
        let mut lines = Vec::new();
        let path = lock.path().to_path_buf();
        // The system mailbox's lockfile needs the spool group to go away.
        let _ = user::with_spool_group(&path, || {
            lock.release(&mut |level, text| lines.push((level, text.to_vec())))
        });
        for (level, text) in lines {
            self.log_level(level, &text);
        }
    }

    fn read_rcfile(&mut self, path: &[u8]) -> io::Result<Vec<u8>> {
        let p = Path::new(OsStr::from_bytes(path));
        let meta = std::fs::metadata(p)?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        std::fs::read(p)
    }

    fn log(&mut self, bytes: &[u8]) {
        match &mut self.log {
            Some(f) => {
                let _ = f.write_all(bytes);
            }
            None => {
                let _ = io::stderr().write_all(bytes);
            }
        }
    }

    fn chdir(&mut self, path: &[u8]) -> bool {
        std::env::set_current_dir(OsStr::from_bytes(path)).is_ok()
    }

    fn open_log(&mut self, path: &[u8]) -> bool {
        let opened = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o666)
            .open(OsStr::from_bytes(path));
        match opened {
            Ok(f) => {
                // Publish the new descriptor before the old one is closed,
                // so that a signal never writes to a closed (or reused) one.
                {
                    use std::os::fd::AsRawFd;
                    signals::set_log_fd(f.as_raw_fd());
                }
                self.log = Some(f);
                true
            }
            Err(_) => false,
        }
    }

    fn log_is_open(&self) -> bool {
        self.log.is_some()
    }

    fn set_umask(&mut self, mask: u32) {
        mailbox::set_umask(mask);
    }

    fn hostname(&self) -> Vec<u8> {
        self.host.clone()
    }

    fn fork(&mut self, wait: bool) -> Fork {
        let _ = io::stdout().flush();
        // SAFETY: deliver is single-threaded whenever recipes run (program
        // runners join their threads before returning), so the child may
        // go on running Rust code after fork.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                if wait {
                    let _ = nix::sys::wait::waitpid(child, None);
                } else {
                    signals::spare_child(child.as_raw());
                    self.children.push(child);
                }
                Fork::Parent
            }
            Ok(nix::unistd::ForkResult::Child) => {
                // The clone takes no lockfiles with it (§5 `c`).
                for (_, l) in self.locks.drain(..) {
                    std::mem::forget(l);
                }
                signals::forget_children();
                self.children.clear();
                // A new process: its own `[pid] date` line comes first.
                self.stamp = 0;
                Fork::Child
            }
            Err(_) => Fork::Failed,
        }
    }

    fn is_dir(&self, path: &[u8]) -> bool {
        Path::new(OsStr::from_bytes(path)).is_dir()
    }

    fn pid(&self) -> u32 {
        std::process::id()
    }

    fn drop_privs(&mut self) {
        let _ = nix::unistd::setgid(nix::unistd::getgid());
        let _ = nix::unistd::setuid(nix::unistd::getuid());
    }

    fn verbose(&self) -> bool {
        signals::verbose()
    }

    fn set_verbose(&mut self, on: bool) {
        signals::set_verbose(on);
    }

    /// procmail(1) EXTENDED DIAGNOSTICS: with `VERBOSE`, a diagnostic in a
    /// new second is preceded by `[pid] date`.
    fn diag(&mut self, text: &[u8], child: bool) {
        let mut out = Vec::with_capacity(text.len() + 48);
        if signals::verbose() {
            let now = chrono::Local::now();
            if now.timestamp() != self.stamp {
                if !child {
                    self.stamp = now.timestamp();
                }
                let date = now.format(crate::message::CTIME);
                out.extend_from_slice(
                    format!("procmail: [{}] {date}\n", std::process::id()).as_bytes(),
                );
            }
        }
        out.extend_from_slice(b"procmail: ");
        out.extend_from_slice(text);
        out.push(b'\n');
        self.log(&out);
    }

    fn message_changed(&mut self, msg: &Message) {
        signals::set_postmark(msg.postmark());
    }
}

/// `From <sender>  <ctime>`: the postmark procmail writes.
pub fn postmark_line(sender: &[u8]) -> Vec<u8> {
    let now = chrono::Local::now();
    let mut line = b"From ".to_vec();
    line.extend_from_slice(sender);
    line.extend_from_slice(b"  ");
    line.extend_from_slice(now.format(crate::message::CTIME).to_string().as_bytes());
    line
}

/// The start-up environment (§1.4): what procmail sets before any rcfile.
fn startup_env(
    inv: &Invocation,
    u: &user::User,
    maildir: &[u8],
    hostname: &[u8],
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let filter = matches!(inv.mode, Mode::Filter { .. });
    let mut env: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(24);
    let unsafe_name = |n: &[u8]| {
        n.starts_with(b"LD_")
            || n.starts_with(b"_RLD")
            || n.starts_with(b"ELF_LD_")
            || n.starts_with(b"AOUT_LD_")
            || n == b"LIBPATH"
    };
    if inv.preserve_env {
        for (k, v) in std::env::vars_os() {
            let (k, v) = (k.as_bytes(), v.as_bytes());
            if unsafe_name(k) || k == b"IFS" || k == b"ENV" || k == b"PWD" {
                continue;
            }
            if !env.iter().any(|(n, _)| n == k) {
                env.push((k.to_vec(), v.to_vec()));
            }
        }
    } else if let Some(tz) = std::env::var_os("TZ") {
        // Without -p only TZ survives: one getenv instead of copying the
        // whole environment (start-up cost, bench/startup.py).
        env.push((b"TZ".to_vec(), tz.as_bytes().to_vec()));
    }
    let mut set = |k: &[u8], v: Vec<u8>, only_if_unset: bool| {
        if let Some(slot) = env.iter_mut().find(|(n, _)| n == k) {
            if !only_if_unset {
                slot.1 = v;
            }
        } else {
            env.push((k.to_vec(), v));
        }
    };
    let keep = inv.preserve_env && filter;
    let home = u.home.as_os_str().as_bytes().to_vec();
    set(b"SHELLMETAS", b"&|<>~;?*[".to_vec(), keep);
    set(b"SHELL", u.shell.clone(), false);
    if !filter {
        let mut org = b"/var/mail/".to_vec();
        org.extend_from_slice(&u.name);
        set(b"ORGMAIL", org, false);
    }
    set(b"LOCKEXT", b".lock".to_vec(), keep);
    set(b"LOGNAME", u.name.clone(), false);
    set(b"SENDMAILFLAGS", b"-oi".to_vec(), keep);
    set(b"HOME", home.clone(), false);
    set(
        b"PROCMAIL_VERSION",
        PROCMAIL_VERSION.as_bytes().to_vec(),
        false,
    );
    set(b"SHELLFLAGS", b"-c".to_vec(), keep);
    set(b"MAILDIR", maildir.to_vec(), false);
    set(b"HOST", hostname.to_vec(), false);
    set(b"SENDMAIL", b"/usr/sbin/sendmail".to_vec(), keep);
    if matches!(inv.mode, Mode::Rcfiles(_) | Mode::Filter { .. }) {
        set(b"COMSAT", b"no".to_vec(), false);
    }
    set(b"MSGPREFIX", b"msg.".to_vec(), keep);
    if !filter {
        let mut org = b"/var/mail/".to_vec();
        org.extend_from_slice(&u.name);
        set(b"DEFAULT", org, false);
    }
    let mut path = home;
    path.extend_from_slice(b"/bin:/usr/local/bin:/usr/bin:/bin");
    set(b"PATH", path, keep);
    set(b"LINEBUF", b"2048".to_vec(), keep);
    env
}

/// Reads all of stdin.
fn read_stdin() -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io::stdin().lock().read_to_end(&mut buf)?;
    Ok(buf)
}

/// Prepares the message: postmark (`-f`, `-d`), Content-Length (§3).
fn prepare_message(
    inv: &Invocation,
    bytes: Vec<u8>,
    deliver_mode: bool,
    invoker: &[u8],
) -> (Message, usize) {
    let mut msg = Message::from_bytes(bytes);
    if deliver_mode {
        msg.skip_leading_newlines();
    }
    match &inv.from {
        Some(f) if f == b"-" => {
            let sender = msg
                .postmark()
                .map(|p| {
                    p[5..]
                        .split(|&b| b == b' ')
                        .next()
                        .unwrap_or(invoker)
                        .to_vec()
                })
                .unwrap_or_else(|| invoker.to_vec());
            msg.set_postmark(&postmark_line(&sender));
        }
        Some(f) => msg.set_postmark(&postmark_line(f)),
        None if deliver_mode && msg.postmark_len() == 0 => {
            msg.set_postmark(&postmark_line(invoker))
        }
        None => {}
    }
    let protect = if inv.berkeley {
        0
    } else {
        msg.fix_content_length()
    };
    (msg, protect)
}

/// Starts one delivery as `u`, as every mode does: the message prepared
/// (`-d` mode when `invoker`, who ran us, is given; else `u` did), a
/// [`Host`], the start-up environment with `MAILDIR` set to `maildir`, and
/// the evaluator set up from the command line (`-m`: no `DEFAULT` unless
/// an rcfile cannot be read, §1.4); `go` takes it from there.
fn with_eval(
    inv: &Invocation,
    bytes: Vec<u8>,
    u: &user::User,
    invoker: Option<&[u8]>,
    maildir: &[u8],
    go: impl FnOnce(&mut Eval<'_>) -> i32,
) -> i32 {
    let (msg, protect) = prepare_message(inv, bytes, invoker.is_some(), invoker.unwrap_or(&u.name));
    let mut host = Host::new();
    let env = startup_env(inv, u, maildir, &host.host);
    let mut ev = Eval::new(&mut host, msg, env);
    ev.protect = protect;
    ev.berkeley = inv.berkeley;
    ev.soft_fail = inv.soft_fail;
    ev.default_enabled = !matches!(inv.mode, Mode::Filter { .. });
    go(&mut ev)
}

/// Runs `deliver` for a parsed command line; returns the exit status.
pub fn run(inv: Invocation) -> i32 {
    for w in &inv.warnings {
        eprintln!("procmail: {w}");
    }
    if !inv.warnings.is_empty() {
        eprint!("{USAGE}");
        eprintln!("procmail: Processing continued");
    }
    match &inv.mode {
        Mode::Help => {
            eprint!("{USAGE}{HELP}");
            return EX_USAGE;
        }
        Mode::Version => {
            // One write(2), not one per formatted piece.
            let text = format!(
                "deliver (postroom {}), compatible with procmail v{PROCMAIL_VERSION}\n\nLocking strategies:\tdotlocking, fcntl()\nDefault rcfile:\t\t$HOME/.procmailrc\n",
                env!("CARGO_PKG_VERSION")
            );
            eprint!("{text}");
            return EX_OK;
        }
        Mode::Lmtp => {
            eprintln!("procmail: LMTP support not enabled in this binary");
            return EX_USAGE;
        }
        _ => {}
    }
    mailbox::set_umask(0o077);
    // A write to a pipe whose reader is gone must be an error, not our death.
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigIgn,
        );
    }
    signals::install();
    let bytes = match read_stdin() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("procmail: error reading the message: {e}");
            return EX_TEMPFAIL;
        }
    };
    match inv.mode.clone() {
        Mode::Deliver(recipients) => deliver_users(&inv, bytes, &recipients),
        Mode::Filter { rcfile, positional } => {
            let me = user::current();
            let Some(rcfile) = rcfile else {
                eprintln!("procmail: Missing rcfile");
                return EX_NOINPUT;
            };
            // §1.4: MAILDIR is `.` for a relative rcfile in -m mode.
            let maildir = if rcfile.starts_with(b"/") {
                me.home.as_os_str().as_bytes().to_vec()
            } else {
                b".".to_vec()
            };
            with_eval(&inv, bytes, &me, None, &maildir, |ev| {
                ev.set_args(inv.arg0.clone(), positional);
                run_rcfiles(ev, &inv, &[rcfile], &me, false)
            })
        }
        Mode::Rcfiles(files) => {
            let me = user::current();
            let maildir = if files.first().is_some_and(|f| f.starts_with(b"./")) {
                b".".to_vec()
            } else {
                me.home.as_os_str().as_bytes().to_vec()
            };
            with_eval(&inv, bytes, &me, None, &maildir, |ev| {
                ev.set_args(inv.arg0.clone(), inv.args.clone());
                let files: Vec<Vec<u8>> =
                    files.iter().map(|f| home_relative(f, &me.home)).collect();
                run_rcfiles(ev, &inv, &files, &me, false)
            })
        }
        _ => {
            let me = user::current();
            let home = me.home.as_os_str().as_bytes();
            with_eval(&inv, bytes, &me, None, home, |ev| {
                ev.set_args(inv.arg0.clone(), inv.args.clone());
                let rc = home_relative(b".procmailrc", &me.home);
                run_rcfiles(ev, &inv, &[rc], &me, !inv.preserve_env)
            })
        }
    }
}

/// A rcfile name as procmail resolves it (§1.3): absolute, `./`-relative,
/// or relative to `$HOME`.
fn home_relative(name: &[u8], home: &Path) -> Vec<u8> {
    if name.starts_with(b"/") || name.starts_with(b"./") {
        return name.to_vec();
    }
    home.join(OsStr::from_bytes(name))
        .as_os_str()
        .as_bytes()
        .to_vec()
}

/// Performs the command-line assignments, runs the rcfiles in order and
/// returns the exit status after procmail's fallbacks.
fn run_rcfiles(
    ev: &mut Eval<'_>,
    inv: &Invocation,
    files: &[Vec<u8>],
    u: &user::User,
    etc: bool,
) -> i32 {
    let filter = matches!(inv.mode, Mode::Filter { .. });
    let maildir = ev.var(b"MAILDIR").map(|m| m.to_vec()).unwrap_or_default();
    ev.assign(b"MAILDIR", Some(maildir));
    for (name, raw) in &inv.assignments {
        let value = crate::rc::vars::expand_spaced(raw, ev);
        if name == b"INCLUDERC" || name == b"SWITCHRC" {
            continue;
        }
        if !ev.assign(name, Some(value)) {
            return ev.finish();
        }
    }
    if etc
        && Path::new(ETC_PROCMAILRC).is_file()
        && let Ok(src) = std::fs::read(ETC_PROCMAILRC)
        && !ev.run_rcfile(ETC_PROCMAILRC.as_bytes(), &src)
    {
        return ev.finish();
    }
    for (i, file) in files.iter().enumerate() {
        let path = Path::new(OsStr::from_bytes(file));
        let is_home_rc = path == u.home.join(".procmailrc");
        let shown = String::from_utf8_lossy(file).into_owned();
        let opened = File::open(path);
        if is_home_rc
            && opened
                .as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
        {
            // No ~/.procmailrc: straight to DEFAULT, silently (§14).
            continue;
        }
        let Ok(mut f) = opened else {
            ev_log(ev, &format!("Couldn't read \"{shown}\""));
            // §1.4: an rcfile that cannot be read makes DEFAULT usable.
            ev.default_enabled = true;
            continue;
        };
        // §14: rcfiles named relative to the current directory are the
        // caller's own business; the others must be trustworthy.
        let relative = file.starts_with(b"./") || (filter && !file.starts_with(b"/"));
        if !relative
            && let user::Trust::Suspicious(why) = user::rcfile_trust_opened(&f, path, u, is_home_rc)
        {
            ev_log(ev, &format!("Suspicious rcfile \"{shown}\" ({why})"));
            ev_log(ev, &format!("Couldn't read \"{shown}\""));
            ev.default_enabled = true;
            continue;
        }
        let mut src = Vec::new();
        if f.read_to_end(&mut src).is_err() {
            ev_log(ev, &format!("Couldn't read \"{shown}\""));
            ev.default_enabled = true;
            continue;
        }
        // procmail(1) EXTENDED DIAGNOSTICS, checked with 3.23pre and
        // VERBOSE=on on the command line: opening the rcfile shows `Rcfile:
        // "x"` and, unless the command line set MAILDIR, the MAILDIR it
        // starts in (before the name for a `./` rcfile, after it otherwise).
        let maildir_given = inv.assignments.iter().any(|(n, _)| n == b"MAILDIR");
        let mut assigning = b"MAILDIR=".to_vec();
        assigning.extend_from_slice(ev.var(b"MAILDIR").unwrap_or_default());
        if relative && !maildir_given {
            ev.yell("Assigning", Some(&assigning));
        }
        ev.yell("Rcfile:", Some(file));
        if !relative && !maildir_given {
            ev.yell("Assigning", Some(&assigning));
        }
        let go_on = ev.run_rcfile(file, &src);
        // A HOST mismatch tries the next rcfile on the command line.
        if !go_on && ev.host_abort && !ev.delivered && i + 1 < files.len() {
            ev.host_abort = false;
            continue;
        }
        break;
    }
    ev.finish()
}

fn ev_log(ev: &mut Eval<'_>, text: &str) {
    crate::rc::vars::Env::log(ev, text);
}

/// `-d user...`: deliver to each user in turn (a child process per user
/// when there are several), as that user.
fn deliver_users(inv: &Invocation, mut bytes: Vec<u8>, recipients: &[Vec<u8>]) -> i32 {
    if recipients.is_empty() {
        eprint!("{USAGE}");
        return EX_USAGE;
    }
    let invoker = user::current();
    let mut status = EX_OK;
    for r in recipients {
        let s = deliver_one(inv, &mut bytes, r, &invoker.name);
        if status == EX_OK {
            status = s;
        }
    }
    status
}

/// Delivers to one user in a child process. The message is not copied for
/// it: the child takes the buffer out of its own (copy-on-write) view of
/// `bytes`, which the parent keeps for the next recipient.
fn deliver_one(inv: &Invocation, bytes: &mut Vec<u8>, name: &[u8], invoker: &[u8]) -> i32 {
    let Some(u) = user::lookup(name) else {
        eprintln!(
            "procmail: Unknown user \"{}\"",
            String::from_utf8_lossy(name)
        );
        return EX_NOUSER;
    };
    // SAFETY: fork in a single-threaded process; the child only runs Rust code.
    let child = match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
        Ok(nix::unistd::ForkResult::Child) => {
            let code = deliver_as(inv, std::mem::take(bytes), &u, invoker);
            std::process::exit(code);
        }
        Err(_) => return EX_OSERR,
    };
    match nix::sys::wait::waitpid(child, None) {
        Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => code,
        _ => EX_TEMPFAIL,
    }
}

/// The spool directory of the system mailboxes (`ORGMAIL`'s directory).
const SPOOL_DIR: &str = "/var/mail";

fn deliver_as(inv: &Invocation, bytes: Vec<u8>, u: &user::User, invoker: &[u8]) -> i32 {
    // §14: the system mailbox is checked and made before the switch, since
    // the user may not create files in the spool directory.
    match user::prepare_system_mailbox(u, Path::new(SPOOL_DIR)) {
        user::SystemMailbox::Ready(notes) => {
            for n in notes {
                eprintln!("procmail: {n}");
            }
        }
        user::SystemMailbox::Autoforward => {
            eprintln!("procmail: Autoforwarding mailbox found");
            return EX_NOUSER;
        }
    }
    if let Err(e) = user::become_user_in_spool(u, Path::new(SPOOL_DIR)) {
        eprintln!("procmail: {e}");
        return e.exit_code();
    }
    let home = u.home.as_os_str().as_bytes();
    with_eval(inv, bytes, u, Some(invoker), home, |ev| {
        ev.set_args(inv.arg0.clone(), inv.args.clone());
        let rc = home_relative(b".procmailrc", &u.home);
        run_rcfiles(ev, inv, &[rc], u, true)
    })
}
