//! `postroom`: the SMTP server and its tools.
use std::path::Path;
use std::sync::Arc;

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
    let srv = match server::Server::bind(s, Arc::new(loaded.config), Arc::new(spool), log) {
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
    match srv.serve() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("postroom smtpd: {e}");
            71
        }
    }
}
