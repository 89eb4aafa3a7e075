//! `postroom`: the SMTP server and its tools.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use clap::Parser;
use postroom::cli::postroom::{Cli, Command};
use postroom::diag::{Diagnostic, Severity};
use postroom::smtp::{server, settings};

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check { config, rcfiles } => {
            let mut errors = check(&rcfiles);
            if let Some(dir) = config {
                errors += check_config(&dir).2;
            }
            if errors > 0 {
                eprintln!("{errors} error(s)");
                1
            } else {
                0
            }
        }
        Command::Smtpd { config } => smtpd(&config),
    };
    std::process::exit(code);
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
/// Returns the settings and tables as loaded and the number of errors.
fn check_config(dir: &Path) -> (settings::Settings, postroom::route::Loaded, usize) {
    let (s, diags, src) = settings::load(dir);
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
    (s, loaded, errors)
}

/// `postroom smtpd --config DIR`: check, open the spool, serve.
fn smtpd(dir: &Path) -> i32 {
    let (s, loaded, errors) = check_config(dir);
    if errors > 0 {
        eprintln!(
            "postroom smtpd: {errors} error(s) in {}, not starting",
            dir.display()
        );
        return 78; // EX_CONFIG
    }
    let clock = Arc::new(postroom::queue::SystemClock);
    let spool = match postroom::queue::Spool::open(&s.spool, Default::default(), clock) {
        Ok((spool, recovery)) => {
            eprintln!(
                "postroom smtpd: spool {}: {} entries, {} partial removed",
                s.spool.display(),
                recovery.entries,
                recovery.removed_partial.len()
            );
            spool
        }
        Err(e) => {
            eprintln!("postroom smtpd: {e}");
            return 75; // EX_TEMPFAIL
        }
    };
    let log = server::stderr_log();
    let opts = s.route_options();
    let tables = server::Tables::new(loaded.config);
    let srv = match server::Server::bind(s, tables, Arc::new(spool), log) {
        Ok(srv) => srv,
        Err(e) => {
            eprintln!("postroom smtpd: {e}");
            return 71; // EX_OSERR
        }
    };
    match srv.local_addrs() {
        Ok(addrs) => {
            for a in addrs {
                eprintln!("postroom smtpd: listening on {a}");
            }
        }
        Err(e) => eprintln!("postroom smtpd: {e}"),
    }
    reload_on_sighup(dir.to_path_buf(), opts, srv.tables());
    match srv.serve() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("postroom smtpd: {e}");
            71
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
