//! `postroom`: the SMTP server and its tools.
use clap::Parser;
use postroom::cli::postroom::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check { rcfiles } => check(&rcfiles),
    };
    std::process::exit(code);
}

/// `postroom check`: every diagnostic of every file, rendered; 1 if any error.
fn check(files: &[std::path::PathBuf]) -> i32 {
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
        let diags = postroom::rc::check_source(&name, &src);
        for d in &diags {
            eprint!("{}", d.render(&src));
            if d.severity == postroom::diag::Severity::Error {
                errors += 1;
            }
        }
    }
    if errors > 0 {
        eprintln!("{errors} error(s)");
        1
    } else {
        0
    }
}
