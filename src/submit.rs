//! `postroom sendmail`: local submission, the sendmail command that
//! scripts, rcfiles (procmail's `!`), vacation and formail run.
//!
//! Owns what happens between a sendmail command line and a file in the
//! maildrop: the configuration directory to use, who is submitting and
//! whether they may choose the sender, reading the message (the lone-dot
//! rule of `-i`), completing its header as sendmail and Postfix do for
//! local submissions (`Received:`, `From:`, `Date:`, `Message-ID:`,
//! `X-Authentication-Warning:`), the recipients (arguments and `-t`), and
//! the sysexits code. The message then goes to
//! [`crate::queue::maildrop::drop_file`]; the spool's owner queues it with
//! [`crate::queue::Spool::pickup`].
//!
//! It never opens the spool (a running `postroom smtpd` holds its lock),
//! never delivers, never opens a socket, and exits 0 only once the
//! maildrop file and its directory entry are on disk. Every failure to
//! get there is `EX_TEMPFAIL` (75), so the caller (`deliver`, a script)
//! keeps the message. `-bp` and `-q` run `postroom queue [flush]`.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::io::Read as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::cli::sendmail::{self as cli, Invocation, Mode};
use crate::diag::Severity;
use crate::queue::QueueId;
use crate::queue::maildrop::{self, Submission};
use crate::smtp::address::{ForwardPath, ReversePath, parse_forward_path, parse_reverse_path};
use crate::smtp::settings::Settings;
use crate::status::sysexits::{
    EX_CONFIG, EX_DATAERR, EX_NOINPUT, EX_NOUSER, EX_OSERR, EX_TEMPFAIL, EX_USAGE,
};

/// Where the configuration is when neither `-C`/`--config` nor
/// `POSTROOM_CONFIG` says.
pub const DEFAULT_CONFIG: &str = "/etc/postroom";

/// The environment variable naming the configuration directory.
pub const CONFIG_ENV: &str = "POSTROOM_CONFIG";

/// Why a submission was refused; each maps to one sysexits code.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// A bad command line or address (`EX_USAGE`, 64).
    #[error("{0}")]
    Usage(String),
    /// No recipient at all (`EX_USAGE`, as sendmail's "Recipient names
    /// must be specified").
    #[error("recipient names must be specified")]
    NoRecipients,
    /// The message could not be read (`EX_NOINPUT`, 66).
    #[error("cannot read the message from standard input: {0}")]
    Input(std::io::Error),
    /// Bigger than `max_message_size` (`EX_DATAERR`, 65; sendmail gives
    /// up on a message over its MaxMessageSize the same way).
    #[error("message is too large ({size} octets or more; the limit is {max})")]
    TooBig {
        /// The size reached.
        size: u64,
        /// `max_message_size`.
        max: u64,
    },
    /// More `Received:` fields than `max_hops` (`EX_DATAERR`, 65): a mail
    /// loop, such as two rcfiles forwarding to each other (sendmail's
    /// "Too many hops"). The caller's forward fails and it keeps the mail.
    #[error("too many hops ({hops} Received: fields; the limit is {max})")]
    TooManyHops {
        /// `Received:` fields, ours included.
        hops: usize,
        /// `max_hops`.
        max: usize,
    },
    /// Who is submitting is unknown (`EX_NOUSER`, 67).
    #[error("{0}")]
    NoUser(String),
    /// The configuration is missing or broken (`EX_CONFIG`, 78).
    #[error("{0}")]
    Config(String),
    /// The maildrop could not be written (`EX_TEMPFAIL`, 75): the caller
    /// keeps the message.
    #[error("{0}")]
    Submission(#[from] maildrop::DropError),
}

impl SubmitError {
    /// The sysexits code to exit with.
    pub fn exit_code(&self) -> i32 {
        match self {
            SubmitError::Usage(_) | SubmitError::NoRecipients => EX_USAGE,
            SubmitError::TooBig { .. } | SubmitError::TooManyHops { .. } => EX_DATAERR,
            SubmitError::Input(_) => EX_NOINPUT,
            SubmitError::NoUser(_) => EX_NOUSER,
            SubmitError::Config(_) => EX_CONFIG,
            SubmitError::Submission(_) => EX_TEMPFAIL,
        }
    }
}

/// Whether a program named `arg0` acts as sendmail: its file name is
/// `sendmail` or `mailq` (the names it is installed under).
pub fn is_sendmail_name(arg0: &OsStr) -> bool {
    let base = Path::new(arg0).file_name().unwrap_or(arg0);
    base == "sendmail" || base == "mailq"
}

/// The whole command, `argv[0]` included: `mailq` means `-bp`.
pub fn main_argv(argv: &[OsString]) -> i32 {
    let rest = argv.get(1..).unwrap_or_default();
    let name = argv.first().map(|a| Path::new(a).file_name().unwrap_or(a));
    if name.is_some_and(|n| n == "mailq") {
        let mut args = vec![OsString::from("-bp")];
        args.extend(rest.iter().cloned());
        return main(&args);
    }
    main(rest)
}

/// `sendmail ARGS`: parses, submits, reports on stderr, returns the exit
/// code.
pub fn main(args: &[OsString]) -> i32 {
    let inv = match cli::parse(args) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("postroom sendmail: {e}");
            return EX_USAGE;
        }
    };
    for w in &inv.warnings {
        eprintln!("postroom sendmail: warning: {w}");
    }
    let dir = config_dir(inv.config.as_deref(), std::env::var_os(CONFIG_ENV));
    match inv.mode {
        Mode::ListQueue => return run_queue_command(&dir, false),
        Mode::FlushQueue => return run_queue_command(&dir, true),
        Mode::Deliver => {}
    }
    match submit(&inv, &dir) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("postroom sendmail: {e}");
            e.exit_code()
        }
    }
}

/// The configuration directory: `-C`/`--config` (a file names its
/// directory, as sendmail's `-C` names its `.cf` file), else
/// `$POSTROOM_CONFIG`, else [`DEFAULT_CONFIG`].
pub fn config_dir(option: Option<&Path>, env: Option<OsString>) -> PathBuf {
    let given = match (option, env) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(e)) if !e.is_empty() => PathBuf::from(e),
        _ => PathBuf::from(DEFAULT_CONFIG),
    };
    if given.is_file() {
        given
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    } else {
        given
    }
}

/// `-bp` / `-q`: `postroom queue [flush] --config DIR`, the `postroom`
/// binary being this one or the one beside it.
fn run_queue_command(dir: &Path, flush: bool) -> i32 {
    use std::os::unix::process::CommandExt as _;
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("postroom sendmail: cannot find the postroom binary: {e}");
            return EX_OSERR;
        }
    };
    let postroom = if exe.file_name().is_some_and(|n| n == "postroom") {
        exe
    } else {
        exe.with_file_name("postroom")
    };
    let mut c = std::process::Command::new(&postroom);
    c.arg("queue");
    if flush {
        c.arg("flush");
    }
    c.arg("--config").arg(dir);
    let e = c.exec();
    eprintln!("postroom sendmail: cannot run {}: {e}", postroom.display());
    EX_OSERR
}

/// Reads the message and writes it to the maildrop of the spool that
/// `dir`'s settings name.
fn submit(inv: &Invocation, dir: &Path) -> Result<(), SubmitError> {
    require_dir(dir)?;
    let (settings, diags, src) = crate::smtp::settings::load(dir);
    let errors: Vec<_> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    if !errors.is_empty() {
        for d in &errors {
            eprint!("{}", d.render(&src));
        }
        return Err(SubmitError::Config(format!(
            "{} error(s) in {}",
            errors.len(),
            dir.join(crate::smtp::settings::FILE).display()
        )));
    }
    submit_input(inv, &settings, None, false)
}

/// Submits `message`, a whole message (LF or CRLF line ends, a line
/// holding only `.` kept), to `recipients` with the null reverse path
/// `<>`, as the current user, into the maildrop of the spool that
/// `settings` (`dir`'s, loaded and found free of errors by the caller)
/// name; its header is completed as for `postroom sendmail`.
///
/// For automatic replies (`postroom vacation`): RFC 3834 and RFC 5321
/// 4.5.5 ask for `<>` so that a failing reply cannot bounce back. Unlike
/// `sendmail -f '<>'` from an untrusted user, no
/// `X-Authentication-Warning:` is added: a null sender claims nobody's
/// address.
pub fn submit_null_sender(
    dir: &Path,
    settings: &Settings,
    recipients: &[String],
    message: &[u8],
) -> Result<(), SubmitError> {
    require_dir(dir)?;
    let inv = Invocation {
        recipients: recipients.iter().map(|r| r.as_bytes().to_vec()).collect(),
        ignore_dots: true,
        ..Invocation::default()
    };
    submit_input(&inv, settings, Some(message), true)
}

/// `EX_CONFIG` unless the configuration directory is there.
fn require_dir(dir: &Path) -> Result<(), SubmitError> {
    if dir.is_dir() {
        return Ok(());
    }
    Err(SubmitError::Config(format!(
        "no configuration directory {} (use -C DIR or set {CONFIG_ENV})",
        dir.display()
    )))
}

/// [`submit`] with the message given (else read from stdin) and, when
/// `null_sender`, the envelope sender `<>`.
fn submit_input(
    inv: &Invocation,
    settings: &Settings,
    given: Option<&[u8]>,
    null_sender: bool,
) -> Result<(), SubmitError> {
    let who = Identity::current()?;
    // Trusted to set the sender: root and the spool's owner (sendmail's
    // class t holds root, daemon and the like; here the spool's owner is
    // the mail system's user).
    let spool_owner = std::fs::metadata(&settings.spool).map(|m| m.uid()).ok();
    let trusted = who.uid == 0 || Some(who.uid) == spool_owner;
    // Bounded: CRLF at most doubles the size, and prepare() measures the
    // result; past this much the message cannot fit (unless a lone dot
    // ended it earlier, which normalize() finds in what was read).
    let limit = settings.max_message.saturating_mul(2).saturating_add(4096);
    let input: Cow<[u8]> = match given {
        Some(m) => {
            let cap = usize::try_from(limit).unwrap_or(usize::MAX);
            Cow::Borrowed(&m[..m.len().min(cap)])
        }
        None => {
            let mut read = Vec::new();
            std::io::stdin()
                .lock()
                .take(limit)
                .read_to_end(&mut read)
                .map_err(SubmitError::Input)?;
            Cow::Owned(read)
        }
    };
    let now = SystemTime::now();
    let id = QueueId::generate(now);
    let local = chrono::DateTime::<chrono::Local>::from(now);
    let ctx = Context {
        hostname: &settings.hostname,
        who: &who,
        trusted,
        name_env: std::env::var("NAME").ok(),
        id: &id,
        date: local.format(crate::message::RFC5322_DATE).to_string(),
        stamp: local.format("%Y%m%d%H%M%S").to_string(),
        max_message: settings.max_message,
        max_hops: settings.max_hops,
    };
    let mut drop = prepare(inv, &ctx, &input)?;
    if null_sender {
        drop.sender = String::new();
        drop.sender_set = true;
    }
    maildrop::drop_file(&settings.spool, &id, &drop).map_err(|e| {
        if e.source.kind() == std::io::ErrorKind::NotFound {
            maildrop::DropError {
                op: "create (no maildrop: start `postroom smtpd` once to make the spool)",
                ..e
            }
        } else {
            e
        }
    })?;
    Ok(())
}

/// Who is submitting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The real uid.
    pub uid: u32,
    /// The login name.
    pub user: String,
    /// The passwd GECOS field, if any.
    pub gecos: Option<String>,
}

impl Identity {
    /// The real uid's passwd entry, or `$USER`/`$LOGNAME` when it has
    /// none (a container without the user in /etc/passwd).
    pub fn current() -> Result<Identity, SubmitError> {
        let uid = nix::unistd::getuid();
        if let Ok(Some(u)) = nix::unistd::User::from_uid(uid) {
            let gecos = u.gecos.to_string_lossy().into_owned();
            return Ok(Identity {
                uid: uid.as_raw(),
                user: u.name,
                gecos: Some(gecos).filter(|g| !g.is_empty()),
            });
        }
        let user = ["USER", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
            .ok_or_else(|| {
                SubmitError::NoUser(format!(
                    "uid {uid} has no passwd entry and neither USER nor LOGNAME is set"
                ))
            })?;
        Ok(Identity {
            uid: uid.as_raw(),
            user,
            gecos: None,
        })
    }
}

/// Everything [`prepare`] needs besides the command line and the bytes.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    /// Our host name (`hostname` in postroom.conf): qualifies addresses,
    /// names us in `Received:` and `Message-ID:`.
    pub hostname: &'a str,
    /// The submitter.
    pub who: &'a Identity,
    /// Whether the submitter may set the sender without a warning.
    pub trusted: bool,
    /// `$NAME`, sendmail's source of a full name after `-F`.
    pub name_env: Option<String>,
    /// The maildrop file's name, also the `Received:` id.
    pub id: &'a QueueId,
    /// The time as an RFC 5322 date.
    pub date: String,
    /// The time as `YYYYMMDDhhmmss`, for `Message-ID:`.
    pub stamp: String,
    /// `max_message_size`: the largest message, our fields included.
    pub max_message: u64,
    /// `max_hops`: the most `Received:` fields, ours included.
    pub max_hops: usize,
}

/// Builds the maildrop submission from the command line and the bytes
/// read: the lone-dot rule, a leading `From ` line dropped, CRLF line
/// ends, the header completed, the recipients found and checked.
pub fn prepare(
    inv: &Invocation,
    ctx: &Context<'_>,
    input: &[u8],
) -> Result<Submission, SubmitError> {
    let own = format!("{}@{}", ctx.who.user, ctx.hostname);
    let (sender, sender_set) = match &inv.from {
        Some(f) => (sender_address(f, ctx.hostname)?, true),
        None => (checked_sender(&own)?, false),
    };
    let text = normalize(input, inv.ignore_dots);
    let (fields, body) = split_header(&text);
    let resent = fields
        .iter()
        .any(|f| name_of(f).len() > 7 && name_of(f)[..7].eq_ignore_ascii_case(b"resent-"));
    let mut recipients: Vec<String> = Vec::new();
    for arg in &inv.recipients {
        for a in address_list(arg) {
            push_unique(&mut recipients, forward_address(&a, ctx.hostname)?);
        }
    }
    if inv.extract {
        // sendmail headers.c: with Resent- fields only their recipient
        // fields count.
        let names: &[&[u8]] = if resent {
            &[b"resent-to", b"resent-cc", b"resent-bcc"]
        } else {
            &[b"to", b"cc", b"bcc"]
        };
        for f in &fields {
            if names.iter().any(|n| name_of(f).eq_ignore_ascii_case(n)) {
                for a in address_list(value_of(f)) {
                    push_unique(&mut recipients, forward_address(&a, ctx.hostname)?);
                }
            }
        }
    }
    if recipients.is_empty() {
        return Err(SubmitError::NoRecipients);
    }
    let has = |n: &[u8]| fields.iter().any(|f| name_of(f).eq_ignore_ascii_case(n));
    let mut out = Vec::with_capacity(text.len() + 512);
    let user = crate::diag::one_line(&ctx.who.user);
    out.extend_from_slice(
        format!(
            "Received: (from {user}@localhost)\r\n\tby {} (postroom) id {}; {}\r\n",
            crate::diag::one_line(ctx.hostname),
            ctx.id,
            ctx.date
        )
        .as_bytes(),
    );
    // sendmail main.c: an untrusted user's -f is allowed but marked,
    // unless it names the user's own address.
    let own_sender = sender.eq_ignore_ascii_case(&own);
    if sender_set && !ctx.trusted && !own_sender {
        out.extend_from_slice(
            format!(
                "X-Authentication-Warning: {}: {user} set sender to {} using -{}\r\n",
                crate::diag::one_line(ctx.hostname),
                crate::diag::one_line(&String::from_utf8_lossy(
                    inv.from.as_deref().unwrap_or_default()
                )),
                inv.from_letter
            )
            .as_bytes(),
        );
    }
    for f in &fields {
        // -t: the blind copies' addresses leave with their field.
        if inv.extract
            && (name_of(f).eq_ignore_ascii_case(b"bcc")
                || name_of(f).eq_ignore_ascii_case(b"resent-bcc"))
        {
            continue;
        }
        out.extend_from_slice(f);
    }
    if !has(b"from") {
        let addr = if sender.is_empty() {
            own.clone()
        } else {
            sender.clone()
        };
        let name = inv
            .full_name
            .as_ref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .or_else(|| ctx.name_env.clone())
            .or_else(|| {
                own_sender
                    .then(|| {
                        ctx.who
                            .gecos
                            .as_deref()
                            .and_then(|g| gecos_name(g, &ctx.who.user))
                    })
                    .flatten()
            })
            .filter(|n| !n.trim().is_empty());
        let field = match name {
            Some(n) => format!("From: {} <{addr}>\r\n", display_name(&n)),
            None => format!("From: {addr}\r\n"),
        };
        out.extend_from_slice(field.as_bytes());
    }
    if !has(b"date") {
        out.extend_from_slice(format!("Date: {}\r\n", ctx.date).as_bytes());
    }
    if !has(b"message-id") {
        out.extend_from_slice(
            format!(
                "Message-ID: <{}.{}@{}>\r\n",
                ctx.stamp,
                ctx.id,
                crate::diag::one_line(ctx.hostname)
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    let hops = 1 + fields
        .iter()
        .filter(|f| name_of(f).eq_ignore_ascii_case(b"received"))
        .count();
    if hops > ctx.max_hops {
        return Err(SubmitError::TooManyHops {
            hops,
            max: ctx.max_hops,
        });
    }
    if out.len() as u64 > ctx.max_message {
        return Err(SubmitError::TooBig {
            size: out.len() as u64,
            max: ctx.max_message,
        });
    }
    let mut params = Vec::new();
    // The bytes decide, not -B: sendmail's collect() turns a claimed
    // 8BITMIME without 8-bit data into 7BIT, and 8-bit data cannot go
    // out as 7BIT.
    if out.iter().any(|&b| b >= 0x80) {
        params.push("BODY=8BITMIME");
    }
    if !sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii()) {
        params.push("SMTPUTF8");
    }
    Ok(Submission {
        uid: ctx.who.uid,
        user: ctx.who.user.clone(),
        sender,
        sender_set,
        trusted: ctx.trusted,
        hops: u32::try_from(hops).unwrap_or(u32::MAX),
        envid: inv
            .envid
            .as_ref()
            .map(|e| String::from_utf8_lossy(e).into_owned()),
        ret_headers: inv.ret_headers.unwrap_or(false),
        params: params.join(" "),
        recipients,
        message: out,
    })
}

fn push_unique(list: &mut Vec<String>, a: String) {
    if !list.iter().any(|x| x.eq_ignore_ascii_case(&a)) {
        list.push(a);
    }
}

/// The full name in a GECOS field: its first comma-separated part, `&`
/// standing for the login name capitalised (passwd(5), sendmail's
/// `buildfname`).
fn gecos_name(gecos: &str, user: &str) -> Option<String> {
    let first = gecos.split(',').next().unwrap_or("");
    let mut cap = user.chars();
    let capital: String = cap
        .next()
        .map(|c| c.to_uppercase().chain(cap).collect())
        .unwrap_or_default();
    let name = first.replace('&', &capital);
    Some(name).filter(|n| !n.trim().is_empty())
}

/// A display name as an RFC 5322 phrase, control characters dropped.
fn display_name(n: &str) -> String {
    crate::message::phrase(&crate::diag::one_line(n))
}

/// The sender of `-f`/`-r`: an address as in a header field (`<a@x>`,
/// `Name <a@x>`, `a@x`); `<>` or nothing is the null sender; an
/// unqualified name gets our host name (as sendmail's `$j`).
fn sender_address(raw: &[u8], hostname: &str) -> Result<String, SubmitError> {
    let bad = || {
        SubmitError::Usage(format!(
            "invalid sender address `{}`",
            crate::diag::one_line(&String::from_utf8_lossy(raw))
        ))
    };
    match address_list(raw).as_slice() {
        [] => Ok(String::new()),
        [one] => {
            let s = std::str::from_utf8(one).map_err(|_| bad())?;
            checked_sender(&qualify(s, hostname))
        }
        _ => Err(bad()),
    }
}

fn checked_sender(s: &str) -> Result<String, SubmitError> {
    match parse_reverse_path(&format!("<{s}>"), true) {
        Ok((ReversePath::Mailbox(m), "")) => Ok(m.to_string()),
        Ok((ReversePath::Null, "")) => Ok(String::new()),
        _ => Err(SubmitError::Usage(format!(
            "invalid sender address `{}`",
            crate::diag::one_line(s)
        ))),
    }
}

/// One recipient, qualified and checked with the SMTP server's grammar
/// (RFC 5321), so the queue holds only what the server would accept.
fn forward_address(a: &[u8], hostname: &str) -> Result<String, SubmitError> {
    let bad = || {
        SubmitError::Usage(format!(
            "invalid recipient address `{}`",
            crate::diag::one_line(&String::from_utf8_lossy(a))
        ))
    };
    let s = std::str::from_utf8(a).map_err(|_| bad())?;
    match parse_forward_path(&format!("<{}>", qualify(s, hostname)), true) {
        Ok((ForwardPath::Mailbox(m), "")) => Ok(m.to_string()),
        _ => Err(bad()),
    }
}

/// `user` becomes `user@hostname`; an address with a domain stays.
fn qualify(s: &str, hostname: &str) -> String {
    let after_quote = s.rfind('"').map_or(0, |p| p + 1);
    if s[after_quote..].contains('@') {
        s.to_string()
    } else {
        format!("{s}@{hostname}")
    }
}

/// The bytes read made into the message to queue: cut at a line holding
/// only `.` unless `ignore_dots` (sendmail collect.c), a leading mbox
/// `From ` line dropped (it is not a header field; sendmail and Postfix
/// drop it too), every line ending CRLF.
pub fn normalize(input: &[u8], ignore_dots: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 32);
    let mut first = true;
    for line in input.split_inclusive(|&b| b == b'\n') {
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
        if !ignore_dots && bare == b"." {
            break;
        }
        if first && bare.starts_with(b"From ") {
            first = false;
            continue;
        }
        first = false;
        out.extend_from_slice(bare);
        if line.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A CRLF message split into its header fields (each with its
/// continuation lines and CRLF) and its body. The header ends at the empty
/// line (dropped) or at the first line that is not a field (which starts
/// the body, as in sendmail's collect: a message without a header).
fn split_header(msg: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    let mut start: Option<usize> = None;
    while pos < msg.len() {
        let end = msg[pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(msg.len(), |p| pos + p + 2);
        let line = &msg[pos..end];
        if line == b"\r\n" {
            if let Some(s) = start {
                fields.push(&msg[s..pos]);
            }
            return (fields, &msg[end..]);
        }
        let cont = matches!(line[0], b' ' | b'\t');
        if cont && start.is_some() {
            pos = end;
            continue;
        }
        if let Some(s) = start.take() {
            fields.push(&msg[s..pos]);
        }
        if !is_field_line(line) {
            return (fields, &msg[pos..]);
        }
        start = Some(pos);
        pos = end;
    }
    if let Some(s) = start {
        fields.push(&msg[s..]);
    }
    (fields, &msg[msg.len()..])
}

/// `Name: ...` with a name of printable ASCII other than `:` (RFC 5322
/// ftext).
fn is_field_line(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        Some(p) if p > 0 => line[..p].iter().all(|&b| (33..=126).contains(&b)),
        _ => false,
    }
}

fn name_of(field: &[u8]) -> &[u8] {
    let p = field.iter().position(|&b| b == b':').unwrap_or(0);
    &field[..p]
}

fn value_of(field: &[u8]) -> &[u8] {
    let p = field
        .iter()
        .position(|&b| b == b':')
        .map_or(field.len(), |p| p + 1);
    &field[p..]
}

/// The addresses of an RFC 5322 address list (a header field's value or
/// one sendmail argument): comma-separated, each `Name <addr>`, `addr
/// (comment)` or a bare `addr`; groups (`team: a, b;`) give their members.
/// Quotes, angle brackets and nested comments are honoured; folding is
/// whitespace.
pub fn address_list(s: &[u8]) -> Vec<Vec<u8>> {
    let mut items: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let (mut quoted, mut angle, mut comment) = (false, false, 0usize);
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if quoted {
            cur.push(b);
            if b == b'\\' && i + 1 < s.len() {
                cur.push(s[i + 1]);
                i += 1;
            } else if b == b'"' {
                quoted = false;
            }
        } else if comment > 0 {
            if b == b'\\' {
                i += 1;
            } else if b == b'(' {
                comment += 1;
            } else if b == b')' {
                comment -= 1;
            }
        } else {
            match b {
                b'"' => {
                    quoted = true;
                    cur.push(b);
                }
                b'(' => comment = 1,
                b'<' => {
                    angle = true;
                    cur.push(b);
                }
                b'>' => {
                    angle = false;
                    cur.push(b);
                }
                b',' | b';' if !angle => items.push(std::mem::take(&mut cur)),
                // A group's name ends at its colon (outside brackets,
                // where a source route has one).
                b':' if !angle => cur.clear(),
                _ => cur.push(b),
            }
        }
        i += 1;
    }
    items.push(cur);
    items
        .into_iter()
        .filter_map(|item| {
            let addr = match (
                item.iter().position(|&b| b == b'<'),
                item.iter().rposition(|&b| b == b'>'),
            ) {
                (Some(l), Some(r)) if l < r => item[l + 1..r].to_vec(),
                _ => item,
            };
            let addr: Vec<u8> = addr
                .iter()
                .copied()
                .filter(|b| !matches!(b, b'\r' | b'\n'))
                .collect();
            let t = addr.trim_ascii();
            (!t.is_empty()).then(|| t.to_vec())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Identity {
        Identity {
            uid: 1000,
            user: "alice".into(),
            gecos: Some("Alice &son,Room 1,,".into()),
        }
    }

    fn run(args: &[&str], trusted: bool, input: &[u8]) -> Result<Submission, SubmitError> {
        let inv = cli::parse(args).unwrap();
        let id = QueueId::parse("06B081F40000000000001F4000").unwrap();
        let who = who();
        let ctx = Context {
            hostname: "mx.example.test",
            who: &who,
            trusted,
            name_env: None,
            id: &id,
            date: "Thu, 26 Nov 2026 12:00:00 +0000".into(),
            stamp: "20261126120000".into(),
            max_message: 1000,
            max_hops: 3,
        };
        prepare(&inv, &ctx, input)
    }

    fn text(d: &Submission) -> String {
        String::from_utf8_lossy(&d.message).into_owned()
    }

    #[test]
    fn a_bare_message_gets_every_header_and_crlf() {
        let d = run(&["bob"], false, b"hello\nworld\n").unwrap();
        assert_eq!(
            text(&d),
            "Received: (from alice@localhost)\r\n\tby mx.example.test (postroom) id 06B081F40000000000001F4000; Thu, 26 Nov 2026 12:00:00 +0000\r\n\
             From: Alice Aliceson <alice@mx.example.test>\r\n\
             Date: Thu, 26 Nov 2026 12:00:00 +0000\r\n\
             Message-ID: <20261126120000.06B081F40000000000001F4000@mx.example.test>\r\n\
             \r\nhello\r\nworld\r\n"
        );
        assert_eq!(d.recipients, ["bob@mx.example.test"]);
        assert_eq!(d.sender, "alice@mx.example.test");
        assert!(!d.sender_set);
        assert_eq!(d.hops, 1);
        assert_eq!(d.params, "");
    }

    #[test]
    fn headers_are_added_only_when_missing() {
        let msg = b"From: Someone <s@x.test>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-Id: <a@b>\nReceived: earlier\nSubject: hi\n\nbody\n";
        let d = run(&["bob@example.test"], false, msg).unwrap();
        let t = text(&d);
        assert!(t.starts_with("Received: (from alice@localhost)\r\n"), "{t}");
        assert!(t.ends_with("From: Someone <s@x.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-Id: <a@b>\r\nReceived: earlier\r\nSubject: hi\r\n\r\nbody\r\n"), "{t}");
        assert_eq!(t.matches("From:").count(), 1);
        assert_eq!(t.matches("Date:").count(), 1);
        assert_eq!(d.hops, 2);
    }

    #[test]
    fn a_lone_dot_ends_the_message_unless_oi() {
        let msg = b"Subject: x\n\nline\n.\nafter\n";
        assert!(!text(&run(&["b"], false, msg).unwrap()).contains("after"));
        let t = text(&run(&["-oi", "b"], false, msg).unwrap());
        assert!(t.ends_with("\r\nline\r\n.\r\nafter\r\n"), "{t}");
        // ".." is not a lone dot; sendmail -bm does no unstuffing.
        let t = text(&run(&["b"], false, b"Subject: x\n\n..\nz\r\n.\r\n").unwrap());
        assert!(t.ends_with("\r\n\r\n..\r\nz\r\n"), "{t}");
    }

    #[test]
    fn dash_t_reads_to_cc_bcc_and_drops_bcc() {
        let msg = b"To: Bob <bob@example.test>, carol@example.test\nCc: \"Dan, D.\" <dan@example.test> (work)\nBcc: eve@example.test,\n  frank\nSubject: t\n\nbody\n";
        let d = run(
            &["-t", "-oi", "zed@example.test", "bob@example.test"],
            false,
            msg,
        )
        .unwrap();
        assert_eq!(
            d.recipients,
            [
                "zed@example.test",
                "bob@example.test",
                "carol@example.test",
                "dan@example.test",
                "eve@example.test",
                "frank@mx.example.test"
            ]
        );
        let t = text(&d);
        assert!(!t.contains("Bcc") && !t.contains("eve"), "{t}");
        assert!(
            t.contains("\r\nCc: \"Dan, D.\" <dan@example.test> (work)\r\n"),
            "{t}"
        );
    }

    #[test]
    fn dash_t_with_resent_fields_uses_only_those() {
        let msg = b"To: old@example.test\nResent-From: a@x.test\nResent-To: new@example.test\nResent-Bcc: hidden@example.test\n\nb\n";
        let d = run(&["-t"], false, msg).unwrap();
        assert_eq!(d.recipients, ["new@example.test", "hidden@example.test"]);
        assert!(!text(&d).contains("hidden"));
    }

    #[test]
    fn an_untrusted_dash_f_is_marked_and_a_trusted_or_own_one_is_not() {
        let t = text(&run(&["-f", "boss@example.test", "b"], false, b"x\n").unwrap());
        assert!(t.contains("\r\nX-Authentication-Warning: mx.example.test: alice set sender to boss@example.test using -f\r\n"), "{t}");
        // The made From: shows the sender, without alice's GECOS name.
        assert!(t.contains("\r\nFrom: boss@example.test\r\n"), "{t}");
        let d = run(&["-r", "boss@example.test", "b"], true, b"x\n").unwrap();
        assert!(!text(&d).contains("X-Authentication-Warning"));
        assert!(d.sender_set && d.trusted);
        assert_eq!(d.sender, "boss@example.test");
        let own = run(&["-f", "alice", "b"], false, b"x\n").unwrap();
        assert!(!text(&own).contains("X-Authentication-Warning"));
        assert_eq!(own.sender, "alice@mx.example.test");
        let named = run(&["-f", "Boss <boss@example.test>", "b"], true, b"x\n").unwrap();
        assert_eq!(named.sender, "boss@example.test");
        assert!(run(&["-f", "a@x.test, b@x.test", "b"], true, b"x\n").is_err());
        let null = run(&["-f", "<>", "-F", "Mail System", "b"], true, b"x\n").unwrap();
        assert_eq!(null.sender, "");
        assert!(text(&null).contains("\r\nFrom: Mail System <alice@mx.example.test>\r\n"));
    }

    #[test]
    fn recipients_and_their_errors() {
        let d = run(
            &["Bob <bob@example.test>, carol", "BOB@example.test"],
            false,
            b"x\n",
        )
        .unwrap();
        assert_eq!(d.recipients, ["bob@example.test", "carol@mx.example.test"]);
        for bad in ["a b@example.test", "bob@", "<@x>"] {
            let e = run(&[bad], false, b"x\n").unwrap_err();
            assert_eq!(e.exit_code(), 64, "{bad}");
            assert!(
                e.to_string().starts_with("invalid recipient address"),
                "{bad}: {e}"
            );
        }
        let e = run(&[], false, b"To: x@y.test\n\nb\n").unwrap_err();
        assert_eq!(e.to_string(), "recipient names must be specified");
        assert_eq!(e.exit_code(), 64);
        assert!(run(&["-t"], false, b"Subject: none\n\n").is_err());
        let e = run(&["-f", "a b", "x"], false, b"x\n").unwrap_err();
        assert!(e.to_string().starts_with("invalid sender address"), "{e}");
    }

    #[test]
    fn an_empty_message_is_taken_with_made_headers_as_sendmail_does() {
        let d = run(&["bob"], false, b"").unwrap();
        let t = text(&d);
        assert!(t.ends_with("@mx.example.test>\r\n\r\n"), "{t}");
        assert!(t.contains("\r\nDate: "));
    }

    #[test]
    fn a_leading_from_line_is_dropped_and_8bit_is_noted() {
        let d = run(
            &["b"],
            false,
            b"From alice Thu Nov 26 12:00:00 2026\nSubject: caf\xc3\xa9\n\nx\n",
        )
        .unwrap();
        let t = text(&d);
        assert!(!t.contains("From alice"), "{t}");
        assert!(t.contains("\r\nSubject: caf\u{e9}\r\n"));
        assert_eq!(d.params, "BODY=8BITMIME");
    }

    #[test]
    fn a_loop_or_an_oversized_message_is_refused_with_65() {
        // Ours makes three: at the limit, still taken.
        assert!(run(&["b"], false, b"Received: a\nReceived: b\n\nx\n").is_ok());
        let e = run(
            &["b"],
            false,
            b"Received: a\nReceived: b\nReceived: c\n\nx\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "too many hops (4 Received: fields; the limit is 3)"
        );
        assert_eq!(e.exit_code(), 65);
        let big = vec![b'x'; 900];
        let e = run(&["b"], false, &big).unwrap_err();
        assert!(e.to_string().starts_with("message is too large ("), "{e}");
        assert_eq!(e.exit_code(), 65);
    }

    #[test]
    fn address_lists() {
        let cases: &[(&str, &[&str])] = &[
            ("a@x, b@y", &["a@x", "b@y"]),
            ("Name <a@x>", &["a@x"]),
            ("\"Last, First\" <a@x>, b", &["a@x", "b"]),
            ("a@x (The (nested) A), b@y", &["a@x", "b@y"]),
            ("team: a@x, b@y;, c@z", &["a@x", "b@y", "c@z"]),
            ("undisclosed-recipients:;", &[]),
            ("<@relay:a@x>", &["@relay:a@x"]),
            ("\"a b\"@x", &["\"a b\"@x"]),
            ("  ,, ", &[]),
        ];
        for (input, want) in cases {
            let got: Vec<String> = address_list(input.as_bytes())
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            assert_eq!(got, *want, "{input}");
        }
    }

    #[test]
    fn the_config_directory_comes_from_the_option_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("postroom.conf");
        std::fs::write(&conf, "").unwrap();
        assert_eq!(config_dir(Some(&conf), None), dir.path());
        assert_eq!(config_dir(Some(dir.path()), Some("/e".into())), dir.path());
        assert_eq!(config_dir(None, Some("/e".into())), PathBuf::from("/e"));
        assert_eq!(config_dir(None, None), PathBuf::from(DEFAULT_CONFIG));
        assert!(is_sendmail_name(OsStr::new("/usr/sbin/sendmail")));
        assert!(is_sendmail_name(OsStr::new("mailq")));
        assert!(!is_sendmail_name(OsStr::new("/usr/bin/postroom")));
    }
}
