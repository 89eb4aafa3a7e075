//! The `postroom` process: `smtpd` (the server, its delivery pool, stop
//! and reload signals), `check`, and `queue` / `queue flush`.
//!
//! Owns the wiring of one running server: `smtpd` owns the spool (its
//! flock: one owner) and shares it between the server's sessions and the
//! delivery pool ([`pool`]). `queue` lists the spool without taking it:
//! while a server runs it reads the entries' files directly
//! (`queue::spool::read_unlocked`: each is replaced by an atomic rename, so
//! a reader sees the old or the new state, never half of one); `queue flush` leaves a `flush` marker file
//! in the spool that the pool polls for. With no server running, both open
//! the spool themselves. Every function returns the process's exit code
//! (sysexits); the binary only parses arguments.
//!
//! It decides nothing about mail: routing is `route`, delivery and
//! bouncing `runner`, the protocol `smtp`.

pub mod pool;
pub mod relay;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::deliver::zygote::Zygotes;
use crate::diag::{Diagnostic, Severity};
use crate::queue::bounce::BounceConfig;
use crate::queue::{Entry, Queue, QueueError, Spool, SystemClock};
use crate::route::{Delivery, Users};
use crate::runner::{Exec, Job, LocalDelivery, Runner, Summary};
use crate::smtp::settings::RunnerSettings;
use crate::smtp::{server, settings};
use crate::status::Outcome;
use pool::FLUSH;

/// `dir` made absolute: the users' homes and the spool are given relative
/// to it, and `deliver` runs with its own working directory.
pub fn absolute(dir: &Path) -> PathBuf {
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

/// `postroom check [--config DIR] RCFILE...`: every diagnostic of every
/// rcfile and, with a directory, of its settings and tables; exit 1 when
/// any is an error.
pub fn check(config: Option<&Path>, rcfiles: &[PathBuf]) -> i32 {
    let mut errors = check_rcfiles(rcfiles);
    if let Some(dir) = config {
        errors += check_config(dir).3;
    }
    if errors > 0 {
        eprintln!("{errors} error(s)");
        1
    } else {
        0
    }
}

/// Every diagnostic of every rcfile; the number of errors.
fn check_rcfiles(files: &[PathBuf]) -> usize {
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
        errors += report(&crate::rc::check_source(&name, &src), &src);
    }
    errors
}

/// `postroom check --config DIR`: the settings file and every table, all
/// problems reported (OpenSMTPD: every error before refusing to start).
/// Returns the settings and the tables as loaded and the number of errors.
fn check_config(
    dir: &Path,
) -> (
    settings::Settings,
    crate::route::Options,
    crate::route::Loaded,
    usize,
) {
    let (s, diags, src) = settings::load(dir);
    let mut errors = report(&diags, &src);
    let mut opts = s.route_options();
    opts.settings_source = src;
    let loaded = crate::route::load(dir, &opts);
    if !loaded.diagnostics.is_empty() {
        eprintln!("{}", loaded.render());
    }
    errors += loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    (s, opts, loaded, errors)
}

/// Set by SIGTERM and SIGINT: stop the server and the runner.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// `postroom smtpd --config DIR`: check, open the spool, start the
/// delivery pool, serve until SIGTERM or SIGINT.
pub fn smtpd(dir: &Path) -> i32 {
    let dir = &absolute(dir);
    let (s, opts, loaded, errors) = check_config(dir);
    let r = s.runner.clone();
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
    let tables = server::Tables::new(loaded.config);
    let agents = Agents::new(dir, &s, tables.clone(), deliver.clone(), log.clone());
    // Everything queued goes through `kicking`: the server's messages and
    // the runner's DSNs reach the pool at once.
    let (kicking, kicks) = pool::Kicking::new(spool.clone());
    if !r.on_arrival {
        kicking.quiet();
    }
    let queue: Arc<dyn Queue> = Arc::new(kicking);
    let srv = match server::Server::bind(s, tables, Arc::clone(&queue), log.clone()) {
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
        "postroom smtpd: queue runner started ({} at once, {} relay lanes), deliver is {}{}",
        r.workers,
        r.relay_lanes,
        deliver.display(),
        if agents.zygotes.is_some() {
            ", forked from warm zygotes"
        } else {
            ", started for each message"
        }
    );
    let (started, first_pass) = std::sync::mpsc::channel();
    let runner = {
        let log = log.clone();
        let root = spool.root().to_path_buf();
        std::thread::spawn(move || {
            let cfg = pool::PoolConfig {
                workers: r.workers,
                relay_lanes: r.relay_lanes,
                interval: r.interval,
                spool_root: &root,
                stop: &STOP,
                on_flush: &|| agents.relay.resume_all(),
            };
            let job =
                |id: &crate::queue::QueueId, force: bool| agents.deliver_entry(&*queue, id, force);
            let lane_of = |e: &Entry| first_remote_domain(&agents.tables.current(), e);
            let log_job = |what: &str, s: &Summary| log_summary(&log, what, s);
            pool::run(&*queue, &cfg, &job, &lane_of, &log_job, &kicks, &started);
        })
    };
    // What an earlier run left in the spool is tried before the first
    // session: the start-up is then the same every time, which the tests
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

/// Everything a runner is built from, for the life of a server or a flush.
struct Agents {
    tables: server::Tables,
    r: RunnerSettings,
    deliver: PathBuf,
    bounce: BounceConfig,
    log: server::Log,
    zygotes: Option<Arc<Zygotes>>,
    relay: relay::SmtpRelay,
    /// The identity of virtual users' deliveries ([`virtual_id`]), looked
    /// up once.
    virtual_id: Option<(u32, u32)>,
    /// The assignments every virtual user's `deliver -m` gets
    /// (`runner::Exec::vars`).
    vars: Vec<(String, std::ffi::OsString)>,
}

/// The users of the tables in use, shared with the runner's `Exec`
/// without copying the `users` table for each entry.
struct ConfigUsers(Arc<crate::route::Config>);

impl Users for ConfigUsers {
    fn lookup(&self, name: &[u8]) -> Option<crate::route::User> {
        self.0.users().lookup(name)
    }

    fn forward(&self, user: &crate::route::User, detail: Option<&[u8]>) -> crate::route::Forward {
        self.0.users().forward(user, detail)
    }
}

impl Agents {
    fn new(
        dir: &Path,
        s: &settings::Settings,
        tables: server::Tables,
        deliver: PathBuf,
        log: server::Log,
    ) -> Agents {
        let r = s.runner.clone();
        let relay = relay::SmtpRelay::new(
            tables.clone(),
            s.relay.smart_host.clone(),
            s.relay.timeouts,
            s.hostname.clone(),
            r.schedule.min_backoff,
        );
        let sendmail = match &r.sendmail {
            Some(p) => Some(p.clone()),
            None => Some(deliver.with_file_name("sendmail")).filter(|p| p.is_file()),
        };
        let vars = sendmail
            .map(|p| ("SENDMAIL".to_string(), p.into_os_string()))
            .into_iter()
            .chain([(
                crate::submit::CONFIG_ENV.to_string(),
                dir.as_os_str().to_owned(),
            )])
            .collect();
        Agents {
            zygotes: if r.zygotes {
                Zygotes::of(&deliver).map(Arc::new)
            } else {
                None
            },
            bounce: BounceConfig {
                reporting_mta: s.hostname.clone(),
                return_full_up_to: None,
            },
            virtual_id: virtual_id(&r),
            vars,
            tables,
            r,
            deliver,
            log,
            relay,
        }
    }

    /// Calls `f` with a runner over `queue` built from the tables in use
    /// now (a reload takes effect for the next entry).
    fn with_runner<T>(&self, queue: &dyn Queue, f: impl FnOnce(&Runner<'_>) -> T) -> T {
        let config = self.tables.current();
        let resolver = crate::route::Resolver::new(&config, config.users());
        let mut exec = Exec::new(&self.deliver, Arc::new(ConfigUsers(Arc::clone(&config))));
        exec.virtual_id = self.virtual_id;
        exec.zygotes = self.zygotes.clone();
        exec.vars = self.vars.clone();
        let local = MakeFolders {
            exec,
            mail_root: self.r.mail_root.as_deref(),
            log: &self.log,
        };
        f(&Runner::new(queue, &resolver, &local, self.bounce.clone()).with_relay(&self.relay))
    }

    /// One pool job: the entry `id`.
    fn deliver_entry(&self, queue: &dyn Queue, id: &crate::queue::QueueId, force: bool) -> Summary {
        self.with_runner(queue, |runner| {
            runner.run_entry(id, pool::unix_now(), force)
        })
    }
}

/// The domain of the first recipient of `e` still to be done that is not
/// local: the entry then goes to that domain's relay lane.
fn first_remote_domain(config: &crate::route::Config, e: &Entry) -> Option<Vec<u8>> {
    e.recipients
        .iter()
        .filter(|r| !r.state.is_final())
        .filter_map(|r| crate::route::Address::parse(r.address.address.as_bytes()))
        .map(|a| a.domain)
        .find(|d| !d.is_empty() && !config.is_local(d))
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

/// Logs the queue entries that opening the spool moved to `corrupt/`
/// (never deleted; this line is their report).
fn report_corrupt(who: &str, corrupt: &[crate::queue::Corrupt]) {
    for c in corrupt {
        eprintln!("{who}: {c}");
    }
}

/// `postroom queue --config DIR`: the mailq listing; exit 0, or 75 when
/// the spool cannot be read.
pub fn queue_list(dir: &Path) -> i32 {
    let dir = &absolute(dir);
    let (s, diags, src) = settings::load(dir);
    if report(&diags, &src) > 0 {
        return 78;
    }
    match Spool::open(&s.spool, s.runner.schedule, Arc::new(SystemClock)) {
        Ok((spool, recovery)) => match spool.entries() {
            Ok(mut listing) => {
                // Entries the opening just moved aside are reported here,
                // or nowhere.
                listing.corrupt.splice(0..0, recovery.corrupt);
                print!("{}", crate::queue::mailq(&listing));
                0
            }
            Err(e) => {
                eprintln!("postroom queue: {e}");
                75
            }
        },
        Err(QueueError::Io { source, .. }) if source.raw_os_error() == Some(libc::EWOULDBLOCK) => {
            // A server owns the spool: read it without taking it.
            match crate::queue::spool::read_unlocked(&s.spool) {
                Ok((listing, unreadable)) => {
                    print!("{}", crate::queue::mailq(&listing));
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

/// `postroom queue flush --config DIR`: with a server running, leave the
/// marker its runner polls for; otherwise run the queue once here.
pub fn queue_flush(dir: &Path) -> i32 {
    let dir = &absolute(dir);
    let (s, _, loaded, errors) = check_config(dir);
    if errors > 0 {
        return 78;
    }
    match Spool::open(&s.spool, s.runner.schedule.clone(), Arc::new(SystemClock)) {
        Ok((spool, recovery)) => {
            report_corrupt("postroom queue", &recovery.corrupt);
            let deliver = match deliver_binary(&s.runner) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("postroom queue: {e}");
                    return 78;
                }
            };
            let tables = server::Tables::new(loaded.config);
            let log: server::Log = Arc::new(|l| eprintln!("postroom queue: {l}"));
            let agents = Agents::new(dir, &s, tables, deliver, log.clone());
            let sum = agents.with_runner(&spool, |runner| runner.flush(pool::unix_now()));
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
fn reload_on_sighup(dir: PathBuf, opts: crate::route::Options, tables: server::Tables) {
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
            let loaded = crate::route::load(&dir, &opts);
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
