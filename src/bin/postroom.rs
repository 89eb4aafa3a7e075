//! `postroom`: the SMTP server, its queue runner and tools. Argument
//! parsing only; the work is in `postroom::daemon`.
use clap::Parser;
use postroom::cli::postroom::{Cli, Command, QueueAction};
use postroom::daemon;

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
    if argv
        .first()
        .is_some_and(|a| postroom::vacation::is_vacation_name(a))
    {
        std::process::exit(postroom::vacation::main_argv(&argv));
    }
    // Linked as formail: formail's command line. `postroom formail ...`
    // skips clap too, so that every argument reaches formail's parser as
    // it was given (clap would take a `--` for itself).
    if argv
        .first()
        .is_some_and(|a| postroom::formail::is_formail_name(a))
    {
        std::process::exit(postroom::formail::main_argv(&argv));
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
