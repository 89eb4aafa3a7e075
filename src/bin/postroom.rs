//! `postroom`: the SMTP server, its queue runner and tools. Argument
//! parsing only; the work is in `postroom::daemon`.
use clap::Parser;
use postroom::cli::postroom::{Cli, Command, QueueAction};
use postroom::daemon;

fn main() {
    // Installed under a tool's name (a symlink): that tool's command
    // line, not ours. `postroom formail ...` skips clap too, so that every
    // argument reaches formail's parser as it was given (clap would take a
    // `--` for itself).
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let arg0 = argv
        .first()
        .map_or(std::ffi::OsStr::new(""), |a| a.as_os_str());
    let rest = argv.get(1..).unwrap_or_default();
    if postroom::submit::is_sendmail_name(arg0) {
        std::process::exit(postroom::submit::main_argv(&argv));
    }
    if postroom::vacation::is_vacation_name(arg0) {
        std::process::exit(postroom::vacation::main(rest));
    }
    if postroom::formail::is_formail_name(arg0) {
        std::process::exit(postroom::formail::main(rest));
    }
    if argv.get(1).is_some_and(|a| a == "formail") {
        std::process::exit(postroom::formail::main(&argv[2..]));
    }
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Sendmail { args } => postroom::submit::main(&args),
        Command::Vacation { args } => postroom::vacation::main(&args),
        Command::Formail { args } => postroom::formail::main(&args),
        Command::Check { config, rcfiles } => daemon::check(config.as_deref(), &rcfiles),
        Command::Smtpd { config } => daemon::smtpd(&config),
        Command::Queue { action, config } => {
            let dir = config.unwrap_or_else(|| std::path::PathBuf::from("."));
            match action {
                None => daemon::queue_list(&dir),
                Some(QueueAction::Flush) => daemon::queue_flush(&dir),
            }
        }
    };
    std::process::exit(code);
}
