//! `postroom`: the SMTP server, its queue runner and tools.
//!
//! `smtpd` owns the spool (its flock: one owner) and shares it between the
//! server's sessions and the queue runner thread. `queue` lists the spool
//! without taking it: while a server runs it reads the entries' envelope
//! files directly (each is replaced by an atomic rename, so a reader sees
//! the old or the new state, never half of one); `queue flush` leaves a
//! `flush` marker file in the spool that the runner polls for. With no
//! server running, both open the spool themselves.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use clap::Parser;
use postroom::cli::postroom::{Cli, Command, QueueAction};
use postroom::diag::{Diagnostic, Severity};
use postroom::queue::bounce::BounceConfig;
use postroom::queue::{Entry, Listing, Queue, QueueError, Spool, SystemClock};
use postroom::route::{Delivery, Users};
use postroom::runner::{Exec, Job, LocalDelivery, Runner, Summary};
use postroom::smtp::settings::RunnerSettings;
use postroom::smtp::{server, settings};
use postroom::status::Outcome;

fn main() {
    // Installed as /usr/sbin/sendmail or mailq (a symlink): sendmail's
    // command line, not ours.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv
        .first()
        .is_some_and(|a| postroom::submit::is_sendmail_name(a))
    {
        std::process::exit(postroom::submit::main_argv(&argv));
    }
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Sendmail { args } => postroom::submit::main(&args),
        Command::Check { config, rcfiles } => {
            let mut errors = check(&rcfiles);
            if let Some(dir) = config {
                errors += check_config(&dir).3;
            }
            if errors > 0 {
                eprintln!("{errors} error(s)");
                1
            } else {
                0
            }
        }
        Command::Smtpd { config } => smtpd(&absolute(&config)),
        Command::Queue { action, config } => {
            let dir = absolute(&config.unwrap_or_else(|| PathBuf::from(".")));
            match action {
                None => queue_list(&dir),
                Some(QueueAction::Flush) => queue_flush(&dir),
            }
        }
    };
    std::process::exit(code);
}

/// `dir` made absolute: the users' homes and the spool are given relative
/// to it, and `deliver` runs with its own working directory.
fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Prints diagnostics rendered against `src`; returns the errors among them.
fn report(diags: &[Diagnostic], src: &[u8]) -> usize {
    let mut errors = 0;
    for d in diags {
        eprint!("{}", d.render(src));
        if d.severity == Severity::Error {
            errors += 1;
        }
    }
    errors
}

/// `postroom check FILE...`: every diagnostic of every rcfile; the errors.
fn check(files: &[std::path::PathBuf]) -> usize {
    let mut errors = 0;
    for path in files {
        let name = path.display().to_string();
        let src = match std::fs::read(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot read {name}: {e}");
                errors += 1;
                continue;
            }
        };
        errors += report(&postroom::rc::check_source(&name, &src), &src);
    }
    errors
}

/// `postroom check --config DIR`: the settings file and every table, all
/// problems reported (OpenSMTPD: every error before refusing to start).
/// Returns the settings, the runner's settings and the tables as loaded
/// and the number of errors.
fn check_config(
    dir: &Path,
) -> (
    settings::Settings,
    RunnerSettings,
    postroom::route::Loaded,
    usize,
) {
    let (s, r, diags, src) = load_settings(dir);
    let mut errors = report(&diags, &src);
    let loaded = postroom::route::load(dir, &s.route_options());
    if !loaded.diagnostics.is_empty() {
        eprintln!("{}", loaded.render());
    }
    errors += loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    (s, r, loaded, errors)
}

/// Reads `dir/postroom.conf` (`smtp::settings`): the server's settings,
/// the runner's, the diagnostics and the file's bytes to render them against.
fn load_settings(dir: &Path) -> (settings::Settings, RunnerSettings, Vec<Diagnostic>, Vec<u8>) {
    let (s, diags, src) = settings::load(dir);
    let r = s.runner.clone();
    (s, r, diags, src)
}

/// Set by SIGTERM and SIGINT: stop the server and the runner.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// The name of the flush marker in the spool directory.
const FLUSH: &str = "flush";

/// `postroom smtpd --config DIR`: check, open the spool, start the queue
/// runner, serve until SIGTERM or SIGINT.
fn smtpd(dir: &Path) -> i32 {
    let (s, r, loaded, errors) = check_config(dir);
    if errors > 0 {
        eprintln!(
            "postroom smtpd: {errors} error(s) in {}, not starting",
            dir.display()
        );
        return 78; // EX_CONFIG
    }
    let deliver = match deliver_binary(&r).and_then(|d| check_identity(&r).map(|()| d)) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("postroom smtpd: {e}");
            return 78;
        }
    };
    // Before the spool: when the spool's 0700 directories are made under
    // the same parent (examples/state/), the users' folders must stay
    // reachable for a `virtual_user`.
    if let Some(root) = &r.mail_root
        && let Err(e) = std::fs::create_dir_all(root)
    {
        eprintln!("postroom smtpd: cannot create {}: {e}", root.display());
        return 73; // EX_CANTCREAT
    }
    let clock = Arc::new(SystemClock);
    let spool = match Spool::open(&s.spool, r.schedule.clone(), clock) {
        Ok((spool, recovery)) => {
            report_corrupt("postroom smtpd", &recovery.corrupt);
            eprintln!(
                "postroom smtpd: spool {}: {} entries, {} partial removed",
                s.spool.display(),
                recovery.entries,
                recovery.removed_partial.len()
            );
            Arc::new(spool)
        }
        Err(e) => {
            eprintln!("postroom smtpd: {e}");
            return 75; // EX_TEMPFAIL
        }
    };
    let log = server::stderr_log();
    let opts = s.route_options();
    let bounce = BounceConfig {
        reporting_mta: s.hostname.clone(),
        return_full_up_to: None,
    };
    let tables = server::Tables::new(loaded.config);
    let queue: Arc<dyn Queue> = spool.clone();
    let srv = match server::Server::bind(s, tables, queue, log.clone()) {
        Ok(srv) => srv,
        Err(e) => {
            eprintln!("postroom smtpd: {e}");
            return 71; // EX_OSERR
        }
    };
    let stop = SigAction::new(
        SigHandler::Handler(on_stop),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        if let Err(e) = unsafe { sigaction(sig, &stop) } {
            eprintln!("postroom smtpd: cannot catch {sig}: {e}");
        }
    }
    reload_on_sighup(dir.to_path_buf(), opts, srv.tables());
    eprintln!(
        "postroom smtpd: queue runner started, deliver is {}",
        deliver.display()
    );
    let (started, first_pass) = std::sync::mpsc::channel();
    let runner = {
        let (tables, spool) = (srv.tables(), Arc::clone(&spool));
        let log = log.clone();
        std::thread::spawn(move || {
            run_queue(&spool, &tables, &r, &deliver, &bounce, &log, started);
        })
    };
    // What an earlier run left in the spool is tried before the first
    // session: the start-up is then the same every time (a message
    // received now waits for the next pass or a flush), which the tests
    // rely on. The socket is bound: clients wait in its backlog.
    let _ = first_pass.recv();
    match srv.local_addrs() {
        Ok(addrs) => {
            for a in addrs {
                eprintln!("postroom smtpd: listening on {a}");
            }
        }
        Err(e) => eprintln!("postroom smtpd: {e}"),
    }
    let server = std::thread::spawn(move || srv.serve());
    // The sessions and the runner live in other threads; this one waits
    // for a stop signal or a server that ended.
    while !STOP.load(Ordering::SeqCst) && !server.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    STOP.store(true, Ordering::SeqCst);
    // The runner finishes the delivery it is in, so a message is not
    // delivered and then retried for nothing. Sessions in progress are
    // cut: their messages were not acknowledged and stay the client's.
    let _ = runner.join();
    if server.is_finished()
        && let Ok(Err(e)) = server.join()
    {
        eprintln!("postroom smtpd: {e}");
        return 71;
    }
    eprintln!("postroom smtpd: stopped");
    0
}

/// The `deliver` binary: the `deliver` setting, or the one next to the
/// running `postroom` (as `cargo build` puts them).
fn deliver_binary(r: &RunnerSettings) -> Result<PathBuf, String> {
    let path = match &r.deliver {
        Some(p) => p.clone(),
        None => {
            let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
            exe.with_file_name("deliver")
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no deliver binary at {} (run `cargo build`, or set `deliver =` in {})",
            path.display(),
            settings::FILE
        ))
    }
}

/// The runner's local delivery: [`Exec`], after making the virtual user's
/// folder under `mail_root` (the example rcfiles set
/// `MAILDIR=$HOME/../../../state/mail/<user>`, and procmail does not make
/// a missing MAILDIR: it logs and delivers in HOME instead).
struct MakeFolders<'a> {
    exec: Exec,
    mail_root: Option<&'a Path>,
    log: &'a server::Log,
}

impl LocalDelivery for MakeFolders<'_> {
    fn deliver(&self, job: &Job<'_>) -> Outcome {
        if let (Some(root), Delivery::Mailbox { user, .. }) = (self.mail_root, &job.target.delivery)
            && let Some(u) = self.exec.users.lookup(user)
            && u.uid.is_none()
        {
            let name = String::from_utf8_lossy(&u.name).into_owned();
            let folder = root.join(&name);
            if let Err(e) = std::fs::create_dir_all(&folder) {
                return Outcome::temp((3, 0), format!("cannot create {}: {e}", folder.display()));
            }
            // As root with `virtual_user`, the folder is theirs to write.
            if let Some((uid, gid)) = self.exec.virtual_id
                && let Err(e) = std::os::unix::fs::chown(&folder, Some(uid), Some(gid))
            {
                return Outcome::temp((3, 0), format!("cannot chown {}: {e}", folder.display()));
            }
        }
        let outcome = self.exec.deliver(job);
        let what = match &outcome {
            Outcome::Delivered => "delivered".to_string(),
            Outcome::Failed { class, reason, .. } => format!("{class:?} failure: {reason}"),
        };
        (self.log)(&format!("{}: {}: {what}", job.id, job.target.delivery));
        outcome
    }
}

/// One run of the queue with the tables in use now; `flush` tries every
/// deferred recipient.
fn run_pass(
    queue: &dyn Queue,
    tables: &server::Tables,
    r: &RunnerSettings,
    deliver: &Path,
    bounce: &BounceConfig,
    flush: bool,
    log: &server::Log,
) -> Summary {
    let config = tables.current();
    let users: Arc<dyn Users + Send + Sync> = match &config.virtual_users {
        Some(v) => Arc::new(v.clone()),
        None => Arc::new(postroom::route::SystemUsers),
    };
    let resolver = postroom::route::Resolver::new(&config, &*users);
    let mut exec = Exec::new(deliver, Arc::clone(&users));
    exec.virtual_id = virtual_id(r);
    let local = MakeFolders {
        exec,
        mail_root: r.mail_root.as_deref(),
        log,
    };
    let runner = Runner::new(queue, &resolver, &local, bounce.clone());
    let now = unix_now();
    if flush {
        runner.flush(now)
    } else {
        runner.run_once(now)
    }
}

/// The uid and gid of the `virtual_user` setting, when we are root and it
/// names an unprivileged user; `None` runs virtual users as ourselves.
/// `smtpd` checks the setting at start-up ([`check_identity`]).
fn virtual_id(r: &RunnerSettings) -> Option<(u32, u32)> {
    let name = r.virtual_user.as_deref()?;
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) if !u.uid.is_root() => Some((u.uid.as_raw(), u.gid.as_raw())),
        _ => None,
    }
}

/// At start-up: a `virtual_user` must be an unprivileged user of this
/// system; as root without one, virtual users run as root, which is
/// allowed for the demo and tests but said in the log.
fn check_identity(r: &RunnerSettings) -> Result<(), String> {
    match r.virtual_user.as_deref() {
        Some(name) => match nix::unistd::User::from_name(name) {
            Ok(Some(u)) if !u.uid.is_root() => Ok(()),
            _ => Err(format!(
                "`virtual_user = {name}` is not an unprivileged user of this system"
            )),
        },
        None => {
            if nix::unistd::geteuid().is_root() {
                eprintln!(
                    "postroom smtpd: warning: running as root without `virtual_user`: virtual users' rcfiles run as root"
                );
            }
            Ok(())
        }
    }
}

/// Seconds since 1970.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Logs what a run did, when it did anything.
fn log_summary(log: &server::Log, what: &str, s: &Summary) {
    if s.delivered + s.deferred + s.failed + s.dsns + s.removed > 0 {
        log(&format!(
            "{what}: {} delivered, {} deferred, {} failed, {} dsn(s), {} removed",
            s.delivered, s.deferred, s.failed, s.dsns, s.removed
        ));
    }
    for e in &s.errors {
        log(&format!("{what}: {e}"));
    }
}

/// The runner thread: a run every `queue_interval`, or at once when the
/// flush marker appears; ends when [`STOP`] is set (looked at every
/// 100 ms, and after each run). Says on `started` when a run is done.
fn run_queue(
    spool: &Spool,
    tables: &server::Tables,
    r: &RunnerSettings,
    deliver: &Path,
    bounce: &BounceConfig,
    log: &server::Log,
    started: std::sync::mpsc::Sender<()>,
) {
    let marker = spool.root().join(FLUSH);
    let mut flush = false;
    while !STOP.load(Ordering::SeqCst) {
        let s = run_pass(spool, tables, r, deliver, bounce, flush, log);
        log_summary(log, if flush { "queue flush" } else { "queue" }, &s);
        let _ = started.send(());
        flush = false;
        let start = std::time::Instant::now();
        while start.elapsed() < r.interval && !STOP.load(Ordering::SeqCst) {
            if std::fs::remove_file(&marker).is_ok() {
                flush = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Logs the queue entries that opening the spool moved to `corrupt/`
/// (never deleted; this line is their report).
fn report_corrupt(who: &str, corrupt: &[postroom::queue::Corrupt]) {
    for c in corrupt {
        eprintln!(
            "{who}: corrupt: {} moved to {}: {}",
            c.name,
            c.moved_to.display(),
            c.reason
        );
    }
}

/// `postroom queue --config DIR`: the mailq listing; exit 0, or 75 when
/// the spool cannot be read.
fn queue_list(dir: &Path) -> i32 {
    let (s, r, diags, src) = load_settings(dir);
    if report(&diags, &src) > 0 {
        return 78;
    }
    match Spool::open(&s.spool, r.schedule, Arc::new(SystemClock)) {
        Ok((spool, recovery)) => match spool.entries() {
            Ok(mut listing) => {
                // Entries the opening just moved aside are reported here,
                // or nowhere.
                listing.corrupt.splice(0..0, recovery.corrupt);
                print!("{}", postroom::queue::mailq(&listing));
                0
            }
            Err(e) => {
                eprintln!("postroom queue: {e}");
                75
            }
        },
        Err(QueueError::Io { source, .. }) if source.raw_os_error() == Some(libc::EWOULDBLOCK) => {
            // A server owns the spool: read it without taking it.
            match read_entries(&s.spool) {
                Ok((listing, unreadable)) => {
                    print!("{}", postroom::queue::mailq(&listing));
                    for (name, why) in unreadable {
                        println!("unreadable (being written or corrupt): {name}: {why}");
                    }
                    0
                }
                Err(e) => {
                    eprintln!("postroom queue: {e}");
                    75
                }
            }
        }
        Err(e) => {
            eprintln!("postroom queue: {e}");
            75
        }
    }
}

/// The entries under `spool/active/`, read without the spool's lock and
/// without moving anything: the owner does that. Returns the readable
/// entries oldest first and the names that could not be read, with why.
fn read_entries(spool: &Path) -> Result<(Listing, Vec<(String, String)>), String> {
    let active = spool.join("active");
    let dir = std::fs::read_dir(&active).map_err(|e| format!("read {}: {e}", active.display()))?;
    let mut listing = Listing::default();
    let mut bad = Vec::new();
    for d in dir {
        let d = d.map_err(|e| format!("read {}: {e}", active.display()))?;
        let name = d.file_name().to_string_lossy().into_owned();
        match std::fs::read(d.path().join("envelope")) {
            // Removed between the listing and the read: delivered.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !d.path().exists() => {}
            Err(e) => bad.push((name, format!("envelope: {e}"))),
            Ok(b) => match Entry::parse(&b) {
                Ok(e) => listing.entries.push(e),
                Err(e) => bad.push((name, format!("envelope {e}"))),
            },
        }
    }
    listing
        .entries
        .sort_by(|a, b| (a.arrival, a.id.as_str()).cmp(&(b.arrival, b.id.as_str())));
    bad.sort();
    Ok((listing, bad))
}

/// `postroom queue flush --config DIR`: with a server running, leave the
/// marker its runner polls for; otherwise run the queue once here.
fn queue_flush(dir: &Path) -> i32 {
    let (s, r, loaded, errors) = check_config(dir);
    if errors > 0 {
        return 78;
    }
    match Spool::open(&s.spool, r.schedule.clone(), Arc::new(SystemClock)) {
        Ok((spool, recovery)) => {
            report_corrupt("postroom queue", &recovery.corrupt);
            let deliver = match deliver_binary(&r) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("postroom queue: {e}");
                    return 78;
                }
            };
            let bounce = BounceConfig {
                reporting_mta: s.hostname.clone(),
                return_full_up_to: None,
            };
            let tables = server::Tables::new(loaded.config);
            let log: server::Log = Arc::new(|l| eprintln!("postroom queue: {l}"));
            let sum = run_pass(&spool, &tables, &r, &deliver, &bounce, true, &log);
            log_summary(&log, "flush", &sum);
            println!(
                "flushed: {} entr(ies) looked at, no server running",
                sum.entries
            );
            if sum.errors.is_empty() { 0 } else { 75 }
        }
        Err(QueueError::Io { source, .. }) if source.raw_os_error() == Some(libc::EWOULDBLOCK) => {
            let marker = s.spool.join(FLUSH);
            match std::fs::write(&marker, b"") {
                Ok(()) => {
                    println!("flush requested from the running server");
                    0
                }
                Err(e) => {
                    eprintln!("postroom queue: cannot write {}: {e}", marker.display());
                    75
                }
            }
        }
        Err(e) => {
            eprintln!("postroom queue: {e}");
            75
        }
    }
}

/// Set by the SIGHUP handler, cleared by the reload thread.
static HUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hup(_: libc::c_int) {
    HUP.store(true, Ordering::SeqCst);
}

/// DESIGN.md: the tables are reloaded on SIGHUP after a successful check;
/// with any error the running tables stay and the errors are logged.
/// Settings (listen, limits, host name) need a restart.
fn reload_on_sighup(dir: PathBuf, opts: postroom::route::Options, tables: server::Tables) {
    let action = SigAction::new(
        SigHandler::Handler(on_hup),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe.
    if let Err(e) = unsafe { sigaction(Signal::SIGHUP, &action) } {
        eprintln!("postroom smtpd: cannot catch SIGHUP: {e}");
        return;
    }
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            if !HUP.swap(false, Ordering::SeqCst) {
                continue;
            }
            let loaded = postroom::route::load(&dir, &opts);
            if !loaded.diagnostics.is_empty() {
                eprintln!("{}", loaded.render());
            }
            match loaded.clean() {
                Ok(config) => {
                    tables.replace(config);
                    eprintln!("postroom smtpd: tables reloaded");
                }
                Err(_) => eprintln!("postroom smtpd: reload refused, the running tables stay"),
            }
        }
    });
}
