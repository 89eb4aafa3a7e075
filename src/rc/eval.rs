//! Walking recipes against a message.
//!
//! [`Eval`] holds what procmail keeps while it reads an rcfile: the
//! variables (which are also the environment of every program started), the
//! message, the chaining state of `A a E e`, the last score and exit status.
//! It reaches files, programs, locks and the log only through [`Effects`],
//! so this module does no I/O of its own and can be tested with an
//! in-memory host. Section numbers (§) refer to the procmail semantics
//! reference the project was built from; procmailrc(5) and procmailsc(5)
//! are the user-facing documents of the same behaviour.

use std::borrow::Cow;
use std::collections::HashMap;
use std::rc::Rc;

use super::ast::{Action, CondKind, Flags, Item, Lock, Recipe};
use super::regex::{Options, Regex, Step};
use super::{check, cond, syntax, vars};
use crate::message::Message;

/// procmailsc(5): scores saturate at ±(2^31 − 1).
pub const SCORE_MAX: f64 = 2147483647.0;

/// How a program's standard output is connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// `/dev/null`: pipes and `?` conditions.
    Null,
    /// Captured and returned: filters, backquotes, `VAR=|cmd`.
    Capture,
    /// The MTA's stdout: a bare `|` (never a program, see [`Effects::to_stdout`]).
    Inherit,
}

/// A program to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRequest {
    /// argv; for shell commands `[$SHELL, $SHELLFLAGS..., text]`.
    pub argv: Vec<Vec<u8>>,
    /// The complete environment of the program.
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    /// Where its stdout goes.
    pub stdout: Output,
    /// Wait for it to finish (otherwise return once the input is written).
    pub wait: bool,
    /// Seconds before it is terminated (`TIMEOUT`); 0 = never.
    pub timeout: u64,
    /// How `VERBOSE` shows the program in `Executing "x"`: the command
    /// text for the shell, else the words joined by commas (checked with
    /// procmail 3.23pre: `| tr a-z A-Z` logs `Executing "tr,a-z,A-Z"`).
    pub shown: Vec<u8>,
}

/// What happened when a program ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ran {
    /// Exit status, or the negated signal number.
    pub status: i32,
    /// Captured stdout (empty unless [`Output::Capture`]).
    pub output: Vec<u8>,
    /// The program did not read all of its input.
    pub write_error: bool,
    /// `TIMEOUT` expired and the program was terminated.
    pub timed_out: bool,
}

/// What a program reads on its stdin: `data`, then one newline when the
/// final-newline rule adds it (§10.1).
///
/// The two pieces stay apart so that a message of any size is never copied
/// just to append one byte: the host writes them one after the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Input<'a> {
    /// The bytes taken from the message (or a condition's search area).
    pub data: &'a [u8],
    /// Whether one newline follows `data`.
    pub newline: bool,
}

impl<'a> Input<'a> {
    /// `data` exactly as it is: `r` recipes, `?` conditions.
    pub fn raw(data: &'a [u8]) -> Input<'a> {
        Input {
            data,
            newline: false,
        }
    }

    /// `data` under the final-newline rule (§10.1): one newline is added
    /// unless it already ends in two.
    pub fn final_newline(data: &'a [u8]) -> Input<'a> {
        Input {
            data,
            newline: !data.ends_with(b"\n\n"),
        }
    }

    /// The final-newline rule unless `raw`: what pipes, filters, forwards
    /// and the MTA's stdout get.
    pub fn for_program(data: &'a [u8], raw: bool) -> Input<'a> {
        if raw {
            Input::raw(data)
        } else {
            Input::final_newline(data)
        }
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.data.len() + usize::from(self.newline)
    }

    /// Whether nothing at all is written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pieces in order; the second is empty or a newline.
    pub fn pieces(&self) -> [&'a [u8]; 2] {
        [self.data, if self.newline { b"\n" } else { b"" }]
    }

    /// One contiguous copy, for hosts that need a single slice (a copy of
    /// the whole input: real hosts use [`Input::pieces`]).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.len());
        all.extend_from_slice(self.data);
        if self.newline {
            all.push(b'\n');
        }
        all
    }
}

/// Options for writing into folders; see [`Effects::deliver_folders`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderOpts {
    /// `r`: no final newline, no escaping.
    pub raw: bool,
    /// Offset of the body in the data (for `>From` escaping exemptions).
    pub body_start: usize,
    /// Body bytes protected from `>From` escaping by `Content-Length:`.
    pub protect: usize,
    /// Length of the postmark and the `>From` lines below it.
    pub envelope_len: usize,
    /// `$MSGPREFIX` for directory folders.
    pub msgprefix: Vec<u8>,
}

/// A successful folder delivery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// The new `$LASTFOLDER`.
    pub lastfolder: Vec<u8>,
    /// Bytes written, for the log abstract.
    pub written: usize,
}

/// Where the mail went, told to the host once the delivery is over and
/// before the log abstract, for the COMSAT (biff) notification
/// (procmailrc(5) COMSAT, spec §9), which only the host sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice<'a> {
    /// `$COMSAT`; `None` when unset (notification on, to `biff@localhost`).
    pub comsat: Option<&'a [u8]>,
    /// `$LOGNAME`, the user named in the notification.
    pub logname: &'a [u8],
    /// The last delivery's `LASTFOLDER` with `$MAILDIR/` in front unless it
    /// is absolute (as it was when delivered), or `**Bounced**` /
    /// `**Requeued**` as they are when nothing was delivered.
    pub folder: &'a [u8],
    /// The last delivery wrote into a folder, so the offset the host got
    /// from [`Effects::deliver_folders`] is reported; false after a pipe,
    /// a forward or a failure.
    pub file: bool,
    /// `$LINEBUF`: a notification must fit in it.
    pub linebuf: usize,
}

/// Whether this process is the original or a clone after [`Effects::fork`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fork {
    /// The original process.
    Parent,
    /// The clone.
    Child,
    /// Cloning failed; the caller goes on alone.
    Failed,
}

/// Everything recipe evaluation may ask of the outside world.
pub trait Effects {
    /// Runs a program with `input` on its stdin.
    fn run(&mut self, req: &RunRequest, input: &[u8]) -> Ran;
    /// Runs a program with the pieces of `input` on its stdin. The
    /// evaluator only calls this one. The default joins the pieces (a copy
    /// of the message) and calls [`Effects::run`]; the real host writes
    /// them one after the other.
    fn run_input(&mut self, req: &RunRequest, input: Input<'_>) -> Ran {
        if input.newline {
            self.run(req, &input.to_vec())
        } else {
            self.run(req, input.data)
        }
    }
    /// Writes `data` into the folders `names` (already expanded), logging
    /// what procmail logs. A failure may still name a `LASTFOLDER`.
    fn deliver_folders(
        &mut self,
        names: &[Vec<u8>],
        data: &[u8],
        opts: &FolderOpts,
    ) -> Result<Delivered, Option<Vec<u8>>>;
    /// Writes the message to our stdout (a bare `|`).
    fn to_stdout(&mut self, data: &[u8]) -> bool;
    /// Takes the dot-lock `path`; the error is already logged when it fails.
    fn lock(&mut self, path: &[u8], params: &LockParams) -> Option<u64>;
    /// Releases a lock from [`Effects::lock`].
    fn unlock(&mut self, id: u64);
    /// Reads an rcfile for `INCLUDERC`/`SWITCHRC`.
    fn read_rcfile(&mut self, path: &[u8]) -> std::io::Result<Vec<u8>>;
    /// Appends raw bytes to the log (the log file, else stderr).
    fn log(&mut self, bytes: &[u8]);
    /// Changes directory for `MAILDIR`.
    fn chdir(&mut self, path: &[u8]) -> bool;
    /// Opens the log file for `LOGFILE`.
    fn open_log(&mut self, path: &[u8]) -> bool;
    /// Whether a `LOGFILE` is open.
    fn log_is_open(&self) -> bool;
    /// Sets the process umask for `UMASK`.
    fn set_umask(&mut self, mask: u32);
    /// The real host name, for `HOST`.
    fn hostname(&self) -> Vec<u8>;
    /// Clones the process (`c` on a block, `DELIVERED`). When `wait`, the
    /// parent returns only after the child ended.
    fn fork(&mut self, wait: bool) -> Fork;
    /// The process id, for `$$`.
    fn pid(&self) -> u32;
    /// Whether `path` names an existing directory (for folder types).
    fn is_dir(&self, path: &[u8]) -> bool;
    /// Gives up setuid/setgid privileges (`DROPPRIVS`).
    fn drop_privs(&mut self) {}
    /// Whether `VERBOSE` (procmail's extended diagnostics) is on. A signal
    /// may change it at any moment (procmail(1): USR1 off, USR2 on), so the
    /// host owns the switch and the evaluator asks before every line.
    fn verbose(&self) -> bool {
        false
    }
    /// Turns the extended diagnostics on or off (`VERBOSE=`).
    fn set_verbose(&mut self, _on: bool) {}
    /// Logs one diagnostic, `procmail: text` and a newline. `child` marks
    /// a line that procmail writes from the forked child (`Executing`):
    /// with `VERBOSE` it gets its own `[pid] date` line when the second
    /// changed, but the parent's record of the last one stays as it was.
    fn diag(&mut self, text: &[u8], child: bool) {
        let _ = child;
        let mut line = b"procmail: ".to_vec();
        line.extend_from_slice(text);
        line.push(b'\n');
        self.log(&line);
    }
    /// Whether [`Effects::deliver_folders`] logs procmail's VERBOSE
    /// `Assigning "LASTFOLDER=x"` line itself, where procmail writes it
    /// (before `Opening`, which only the host knows); the evaluator then
    /// sets the variable for folder deliveries without logging it.
    fn announces_lastfolder(&self) -> bool {
        false
    }
    /// The delivery is over and the abstract comes next; the original
    /// process (never a clone) says where the mail went, for COMSAT.
    fn delivery_over(&mut self, _notice: &Notice<'_>) {}
    /// The message is now `msg` (at the start and after a filter), for
    /// what the host must know of it without asking: the abstract written
    /// when a signal ends the delivery.
    fn message_changed(&mut self, _msg: &Message) {}
}

/// The dot-locking parameters from `LOCKSLEEP`, `LOCKTIMEOUT` and `SUSPEND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockParams {
    /// Seconds between attempts.
    pub sleep: u64,
    /// Age in seconds after which a lock is stale; 0 = never.
    pub timeout: u64,
    /// Seconds to wait after removing a stale lock.
    pub suspend: u64,
}

/// How control leaves a list of items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    /// Go on with the next item.
    Next,
    /// End the current rcfile (SWITCHRC, a fatal syntax error).
    EndFile,
    /// Stop reading rcfiles: the mail was delivered, or `HOST` did not match.
    Stop,
}

/// The `A a E e` state (§5 "Chaining").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Chain {
    lastcond: bool,
    prevcond: bool,
    lastsucc: bool,
}

/// When to write the log abstract (`LOGABSTRACT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Abstract {
    /// Never.
    No,
    /// At exit, when a log file is open or VERBOSE is on (the default).
    Default,
    /// At exit, to stderr too.
    Yes,
    /// At exit and after every successful `c` delivery.
    All,
}

/// A compiled condition's key: pattern, `D` flag, leading backslash.
type RegexKey = (Vec<u8>, bool, bool);

/// The evaluation state of one delivery.
pub struct Eval<'fx> {
    fx: &'fx mut dyn Effects,
    /// The variables, in the order they were first set; also the environment.
    vars: Vec<(Vec<u8>, Vec<u8>)>,
    /// The message as it is now (filters change it).
    pub msg: Message,
    chain: Chain,
    /// Whether a delivering recipe succeeded.
    pub delivered: bool,
    /// Whether a `HOST` assignment ended the rcfiles.
    pub host_abort: bool,
    score: i64,
    last_status: i32,
    positional: Vec<Vec<u8>>,
    arg0: Vec<u8>,
    rcfile_stack: Vec<Vec<u8>>,
    global_lock: Option<(Vec<u8>, u64)>,
    regex_cache: HashMap<RegexKey, (Rc<Regex>, bool)>,
    exitcode_assigned: bool,
    /// Whether `DEFAULT` may be used when the rcfile ends (false in `-m`
    /// mode until the rcfile or command line assigns it, §1.4).
    pub default_enabled: bool,
    /// `-t`: requeue instead of bouncing.
    pub soft_fail: bool,
    /// Bytes protected from `>From` escaping by `Content-Length:`.
    pub protect: usize,
    /// `-Y`: ignore `Content-Length:`.
    pub berkeley: bool,
    /// What the last delivery wrote, for the abstract.
    last_written: usize,
    is_clone: bool,
    /// The recipe header being run overflowed `LINEBUF`: end the rcfile.
    header_overflow: bool,
    /// The last delivery's folder as COMSAT reports it, and whether it was
    /// written as a folder (see [`Notice`]).
    comsat_folder: Option<(Vec<u8>, bool)>,
}

impl<'fx> Eval<'fx> {
    /// A new evaluation over `msg` with the start-up variables `env`.
    pub fn new(fx: &'fx mut dyn Effects, msg: Message, env: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        fx.message_changed(&msg);
        Eval {
            fx,
            vars: env,
            msg,
            chain: Chain {
                lastcond: true,
                prevcond: true,
                lastsucc: true,
            },
            delivered: false,
            host_abort: false,
            score: 0,
            last_status: 0,
            positional: Vec::new(),
            arg0: b"procmail".to_vec(),
            rcfile_stack: Vec::new(),
            global_lock: None,
            regex_cache: HashMap::new(),
            exitcode_assigned: false,
            default_enabled: true,
            soft_fail: false,
            protect: 0,
            berkeley: false,
            last_written: 0,
            is_clone: false,
            comsat_folder: None,
            header_overflow: false,
        }
    }

    /// Sets `$0` and the positional parameters `$1...`.
    pub fn set_args(&mut self, arg0: Vec<u8>, positional: Vec<Vec<u8>>) {
        self.arg0 = arg0;
        self.positional = positional;
    }

    /// The value of a variable.
    pub fn var(&self, name: &[u8]) -> Option<&[u8]> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn var_or<'a>(&'a self, name: &[u8], default: &'a [u8]) -> &'a [u8] {
        self.var(name).unwrap_or(default)
    }

    fn set_raw(&mut self, name: &[u8], value: Vec<u8>) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.vars.push((name.to_vec(), value)),
        }
    }

    fn unset_raw(&mut self, name: &[u8]) {
        self.vars.retain(|(n, _)| n != name);
    }

    /// A numeric variable read as procmail reads them (§9: numbers, or
    /// booleans), with its default when unset or unreadable.
    fn num(&self, name: &[u8], default: i64) -> i64 {
        self.var(name)
            .map_or(default, |v| vars::parse_num(v, default))
    }

    fn log_str(&mut self, text: &str) {
        self.fx.diag(text.as_bytes(), false);
    }

    /// Logs an extended diagnostic (only with `VERBOSE` on): `what "value"`,
    /// or `what` alone when `value` is `None`.
    pub fn yell(&mut self, what: &str, value: Option<&[u8]>) {
        if self.fx.verbose() {
            self.fx.diag(&quoted(what, value), false);
        }
    }

    /// `Assigning "NAME=value"` (or `"NAME"` for an unset), logged before
    /// the assignment takes effect, as procmail does: so `VERBOSE=on`
    /// itself is not shown and `VERBOSE=off` is (checked with 3.23pre).
    fn yell_assign(&mut self, name: &[u8], value: Option<&[u8]>) {
        if self.fx.verbose() {
            let mut text = name.to_vec();
            if let Some(v) = value {
                text.push(b'=');
                text.extend_from_slice(v);
            }
            self.yell("Assigning", Some(&text));
        }
    }

    /// The line buffer size: `$LINEBUF`, at least 128 (spec §4.3, §9).
    fn linebuf(&self) -> usize {
        self.num(b"LINEBUF", 2048).max(128) as usize
    }

    /// A line did not fit in `LINEBUF`: procmail logs `Exceeded LINEBUF`
    /// and sets `PROCMAIL_OVERFLOW=yes` (without an `Assigning` line).
    fn overflow(&mut self) {
        self.log_str("Exceeded LINEBUF");
        self.yell_assign(b"PROCMAIL_OVERFLOW", Some(b"yes"));
        self.set_raw(b"PROCMAIL_OVERFLOW", b"yes".to_vec());
    }

    /// Sets `LASTFOLDER` after a delivery, with its `Assigning` line.
    fn set_lastfolder(&mut self, value: Vec<u8>) {
        self.yell_assign(b"LASTFOLDER", Some(&value));
        self.set_lastfolder_quietly(value);
    }

    /// [`Eval::set_lastfolder`] without the `Assigning` line, for folder
    /// deliveries whose host logged it already.
    fn set_lastfolder_quietly(&mut self, value: Vec<u8>) {
        // Checked with procmail 3.23pre: COMSAT gets `$MAILDIR/` in front
        // of a relative name as MAILDIR is now (`MAILDIR=.` gives
        // `./mbox`), also of a pipe's command text.
        let shown = if value.starts_with(b"/") {
            value.clone()
        } else {
            [self.var_or(b"MAILDIR", b""), b"/", &value].concat()
        };
        self.comsat_folder = Some((shown, false));
        self.set_raw(b"LASTFOLDER", value);
    }

    /// Marks the last `LASTFOLDER` as a folder written (see [`Notice::file`]).
    fn lastfolder_was_written(&mut self) {
        if let Some((_, file)) = &mut self.comsat_folder {
            *file = true;
        }
    }

    /// Tells the host where the mail went (procmail's `Terminate`): the
    /// last delivery when the exit status is 0, else `**Bounced**` or
    /// `**Requeued**` (checked with procmail 3.23pre). Clones say nothing.
    fn notify_host(&mut self, status: i32) {
        if self.is_clone {
            return;
        }
        let (folder, file) = match status {
            0 => match &self.comsat_folder {
                Some((folder, file)) => (folder.clone(), *file),
                None => return,
            },
            75 => (b"**Requeued**".to_vec(), false),
            _ => (b"**Bounced**".to_vec(), false),
        };
        let comsat = self.var(b"COMSAT").map(|v| v.to_vec());
        let logname = self.var_or(b"LOGNAME", b"").to_vec();
        let notice = Notice {
            comsat: comsat.as_deref(),
            logname: &logname,
            folder: &folder,
            file,
            linebuf: self.linebuf(),
        };
        self.fx.delivery_over(&notice);
    }

    /// Assigns a variable from the command line or an rcfile, with the
    /// side effects of procmail's special variables (§9). Returns the flow
    /// for the assignments that end an rcfile (`HOST`).
    pub fn assign(&mut self, name: &[u8], value: Option<Vec<u8>>) -> bool {
        self.yell_assign(name, value.as_deref());
        self.assign_quietly(name, value)
    }

    /// [`Eval::assign`] without its `Assigning` line.
    fn assign_quietly(&mut self, name: &[u8], value: Option<Vec<u8>>) -> bool {
        let Some(value) = value else {
            self.unset_raw(name);
            if name == b"LOCKFILE" {
                self.release_global_lock();
            }
            return true;
        };
        match name {
            b"MAILDIR" if !self.fx.chdir(&value) => {
                self.log_str(&format!("Couldn't chdir to \"{}\"", show(&value)));
                // Checked with procmail 3.23pre: VERBOSE shows the fallback.
                self.yell_assign(name, Some(b"."));
                self.set_raw(name, b".".to_vec());
                return true;
            }
            b"LOGFILE" => {
                self.yell("Opening", Some(&value));
                if !self.fx.open_log(&value) {
                    self.log_str(&format!("Error while writing to \"{}\"", show(&value)));
                }
            }
            b"VERBOSE" => {
                let on = vars::parse_bool(&value, self.fx.verbose());
                self.fx.set_verbose(on);
            }
            b"LOG" => self.fx.log(&value),
            b"LOCKFILE" => {
                self.release_global_lock();
                if !value.is_empty() {
                    let params = self.lock_params();
                    if let Some(id) = self.fx.lock(&value, &params) {
                        self.global_lock = Some((value.clone(), id));
                    }
                }
            }
            b"UMASK" => {
                let digits: Vec<u8> = value
                    .iter()
                    .copied()
                    .take_while(|b| (b'0'..=b'7').contains(b))
                    .collect();
                let mask = u32::from_str_radix(std::str::from_utf8(&digits).unwrap_or("0"), 8)
                    .unwrap_or(0);
                self.fx.set_umask(mask & 0o777);
            }
            b"HOST" => {
                let real = self.fx.hostname();
                if value != real {
                    self.yell("HOST mismatched", Some(&real));
                    self.set_raw(name, real);
                    self.host_abort = true;
                    return false;
                }
            }
            b"SHIFT" => {
                let n = vars::parse_num(&value, 0).max(0) as usize;
                let n = n.min(self.positional.len());
                self.positional.drain(..n);
            }
            b"EXITCODE" => self.exitcode_assigned = true,
            b"DROPPRIVS" if vars::parse_bool(&value, false) => {
                self.yell("Assuming identity of the recipient, VERBOSE=off", None);
                self.fx.drop_privs();
            }
            b"DEFAULT" => self.default_enabled = true,
            _ => {}
        }
        self.set_raw(name, value);
        if name == b"DELIVERED" && vars::parse_bool(self.var_or(b"DELIVERED", b""), false) {
            // §9 DELIVERED: the parent tells the MTA "delivered" at once and
            // the clone carries on; later failures lose the mail, as documented.
            if self.fx.fork(false) == Fork::Parent {
                self.delivered = true;
                self.host_abort = true;
                return false;
            }
        }
        true
    }

    fn lock_params(&self) -> LockParams {
        LockParams {
            sleep: self.num(b"LOCKSLEEP", 8).max(0) as u64,
            timeout: self.num(b"LOCKTIMEOUT", 1024).max(0) as u64,
            suspend: self.num(b"SUSPEND", 16).max(0) as u64,
        }
    }

    fn release_global_lock(&mut self) {
        if let Some((_, id)) = self.global_lock.take() {
            self.fx.unlock(id);
        }
    }

    /// Runs the rcfile `src` (shown as `name`). Returns false when the
    /// rcfiles must stop (delivered or `HOST` mismatch).
    pub fn run_rcfile(&mut self, name: &[u8], src: &[u8]) -> bool {
        let (rc, _diags) = syntax::parse(&String::from_utf8_lossy(name), src);
        self.rcfile_stack.push(name.to_vec());
        let flow = self.run_items(&rc.items);
        self.rcfile_stack.pop();
        flow != Flow::Stop
    }

    fn run_items(&mut self, items: &[Item]) -> Flow {
        for item in items {
            let flow = match item {
                Item::Assign { name, value, .. } => self.run_assign(name, value.as_deref()),
                Item::Recipe(r) => self.run_recipe(r),
                Item::Invalid { log, .. } => {
                    self.log_str(log);
                    Flow::Next
                }
                Item::Abort { log, .. } => {
                    self.log_str(log);
                    Flow::EndFile
                }
            };
            if flow != Flow::Next {
                return flow;
            }
        }
        Flow::Next
    }

    fn run_assign(&mut self, name: &str, raw: Option<&[u8]>) -> Flow {
        let value = raw.map(|r| vars::expand_value(r, self));
        // Spec §4.3 LINEBUF, checked with procmail 3.23pre at LINEBUF=128:
        // `NAME=value` of 128 bytes is assigned, of 129 it is not (the
        // variable keeps its old value, or stays unset) and the rcfile
        // goes on.
        if let Some(v) = &value
            && name.len() + 1 + v.len() > self.linebuf()
        {
            self.overflow();
            return Flow::Next;
        }
        match name {
            "INCLUDERC" => {
                self.yell_assign(b"INCLUDERC", value.as_deref());
                let value = value.unwrap_or_default();
                self.set_raw(b"INCLUDERC", value.clone());
                return self.include(&value, false);
            }
            "SWITCHRC" => {
                self.yell_assign(b"SWITCHRC", value.as_deref());
                let Some(value) = value else {
                    return Flow::EndFile;
                };
                self.set_raw(b"SWITCHRC", value.clone());
                return self.include(&value, true);
            }
            _ => {}
        }
        if self.assign(name.as_bytes(), value) {
            Flow::Next
        } else {
            Flow::Stop
        }
    }

    /// `INCLUDERC` (go on here afterwards) and `SWITCHRC` (the current file ends).
    fn include(&mut self, path: &[u8], switch: bool) -> Flow {
        if path.is_empty() || path == b"/dev/null" {
            return if switch { Flow::EndFile } else { Flow::Next };
        }
        let src = match self.fx.read_rcfile(path) {
            Ok(src) => src,
            Err(_) => {
                self.log_str(&format!("Couldn't read \"{}\"", show(path)));
                return Flow::Next;
            }
        };
        let saved = self.chain;
        let go_on = self.run_rcfile(path, &src);
        self.chain = saved;
        match (go_on, switch) {
            (false, _) => Flow::Stop,
            (true, true) => Flow::EndFile,
            (true, false) => Flow::Next,
        }
    }

    fn run_recipe(&mut self, r: &Recipe) -> Flow {
        let mut f = r.flags;
        let flag_logs = check::flag_logs(r);
        self.log_read_complaints(r, &flag_logs);
        if f.else_failed && (f.else_ || f.and_last_ok) {
            // procmailrc(5): `e` wins over `E` and `a`.
            f.else_ = false;
            f.and_last_ok = false;
        }
        if !f.head_search && !f.body_search {
            f.head_search = true;
        }
        if !f.pass_head && !f.pass_body {
            f.pass_head = true;
            f.pass_body = true;
        }
        let c = self.chain;
        let mut test = if f.and_last {
            c.lastcond
        } else if f.and_last_ok {
            c.lastcond && c.lastsucc
        } else {
            true
        };
        if f.else_ {
            test = test && !c.prevcond;
        } else if f.else_failed {
            test = test && c.prevcond && !c.lastsucc;
        }
        // `$=` is the last recipe's score while this one's conditions are
        // expanded (checked with procmail 3.23pre: `* $ $=^0 x` after a
        // recipe scoring 8 logs `Score: 8`), and this recipe's from then
        // on: 0 when chaining flags keep its conditions from being tested
        // or none is weighted.
        let score_before = self.score;
        if test {
            test = self.conditions(r, &f);
        } else {
            self.score = 0;
        }
        if r.action == Action::Missing {
            // procmail tested the conditions above, then complains and goes
            // on as if they had failed, leaving `$=` as it was before this
            // recipe (checked with procmail 3.23pre: after it `A` and `e`
            // do not run and `E` does, also when the conditions matched;
            // an `A`/`a`/`E` recipe leaves the state its flag protects
            // alone, as when conditions fail; `$=` keeps the previous
            // recipe's score, whether this one scored, failed or was
            // skipped by its flag).
            self.log_str("Missing action");
            self.score = score_before;
            test = false;
        }
        if !f.and_last && !f.and_last_ok {
            self.chain.lastcond = test;
        }
        if !f.else_ || !c.prevcond {
            self.chain.prevcond = test;
        }
        if !test {
            if let Action::Block(items) = &r.action {
                self.log_skipped_block(items);
            }
            return Flow::Next;
        }
        for l in flag_logs.iter().filter(|l| l.only_when_run) {
            self.log_str(l.log);
        }
        self.action(r, &f)
    }

    /// What procmail complains about as it reads a recipe, whether or not
    /// the recipe runs: flag text that is no flag, conflicting and
    /// extraneous flags.
    fn log_read_complaints(&mut self, r: &Recipe, flag_logs: &[check::FlagLog]) {
        for bad in &r.bad_flags {
            self.log_str(&format!("Skipped \"{bad}\""));
        }
        for l in flag_logs.iter().filter(|l| !l.only_when_run) {
            self.log_str(l.log);
        }
        // Spec §4.3 LINEBUF: a condition line that does not fit is
        // reported as it is read, whether or not the recipe runs (checked
        // with procmail 3.23pre at LINEBUF=128: 127 bytes after `*` and
        // its blanks fit, 128 do not; also in a recipe skipped by `A`).
        let linebuf = self.linebuf();
        for c in &r.conds {
            if c.span.end - c.span.start >= linebuf {
                self.overflow();
            }
        }
    }

    /// procmail reads through a block it skips, so it still logs the
    /// complaints of what is inside (checked with procmail 3.23pre), except
    /// a missing closing brace, which it only notices in a block it entered.
    fn log_skipped_block(&mut self, items: &[Item]) {
        for item in items {
            match item {
                Item::Invalid { log, .. } if log != "Missing closing brace" => self.log_str(log),
                Item::Recipe(r) => {
                    // Reading a recipe resets `$=` even in a skipped block
                    // (checked with procmail 3.23pre).
                    self.score = 0;
                    self.log_read_complaints(r, &check::flag_logs(r));
                    if r.action == Action::Missing {
                        self.log_str("Missing action");
                    }
                    if let Action::Block(inner) = &r.action {
                        self.log_skipped_block(inner);
                    }
                }
                _ => {}
            }
        }
    }

    /// Evaluates the conditions; sets `$=`.
    fn conditions(&mut self, r: &Recipe, f: &Flags) -> bool {
        let mut score = 0.0f64;
        let mut weighted = false;
        let mut ok = true;
        for c in &r.conds {
            // Too long to read (reported by `log_read_complaints`): fails.
            if c.span.end - c.span.start >= self.linebuf() {
                ok = false;
                break;
            }
            let mut ctx = CondCtx {
                flags: *f,
                shown: Vec::new(),
                area_is_match: false,
                negate: false,
                weight: None,
                area: None,
            };
            match self.cond(&c.kind, &mut ctx, score) {
                CondResult::Bool(b) => {
                    if self.fx.verbose() {
                        let what = if b { "Match on" } else { "No match on" };
                        self.yell_cond(what, &ctx);
                    }
                    if !b {
                        ok = false;
                        break;
                    }
                }
                CondResult::Score(add) => {
                    weighted = true;
                    score = clamp_score(score + add);
                    if self.fx.verbose() {
                        let what = format!(
                            "Score: {:>7} {:>7}",
                            add.trunc() as i64,
                            score.trunc() as i64
                        );
                        self.yell_cond(&what, &ctx);
                    }
                    if score <= -SCORE_MAX {
                        ok = false;
                        break;
                    }
                }
                CondResult::SkippedWeight => weighted = true,
            }
        }
        if weighted {
            self.score = if score > 0.0 && score < 1.0 {
                1
            } else {
                score.trunc() as i64
            };
            ok && score > 0.0
        } else {
            self.score = 0;
            ok
        }
    }

    /// `Match on ! "x"` and the like: `what`, a `!` for a negated
    /// condition, the condition's text.
    fn yell_cond(&mut self, what: &str, ctx: &CondCtx) {
        let what = if ctx.negate {
            format!("{what} !")
        } else {
            what.to_string()
        };
        self.yell(&what, Some(&ctx.shown));
    }

    /// The size a `<`/`>` condition compares: the whole message unless a
    /// `NAME ??` chose another area (§6.6).
    fn size_area(&self, ctx: &CondCtx) -> usize {
        match &ctx.area {
            None => self.msg.len(),
            Some(AreaSel::Var(v)) => v.len(),
            Some(AreaSel::Head) => self.msg.header().len(),
            Some(AreaSel::Body) => self.msg.body().len(),
            Some(AreaSel::Both) => self.msg.len(),
        }
    }

    fn cond(&mut self, kind: &CondKind, ctx: &mut CondCtx, score: f64) -> CondResult {
        match kind {
            CondKind::Not(inner) => {
                ctx.negate = !ctx.negate;
                self.cond(inner, ctx, score)
            }
            CondKind::Expand(raw) => {
                let text = vars::expand_dquoted(raw, self);
                let start = text
                    .iter()
                    .position(|&b| b != b' ' && b != b'\t')
                    .unwrap_or(text.len());
                // Checked with procmail 3.23pre at LINEBUF=128: an expanded
                // condition of 127 bytes is used, one of 128 fails.
                if text.len() - start >= self.linebuf() {
                    self.overflow();
                    ctx.shown = text[start..].to_vec();
                    return CondResult::Bool(false);
                }
                let kind = cond::parse(&text[start..]);
                self.cond(&kind, ctx, score)
            }
            CondKind::Weighted {
                weight,
                exponent,
                inner,
            } => {
                if score >= SCORE_MAX {
                    return CondResult::SkippedWeight;
                }
                ctx.weight = Some((*weight, *exponent));
                self.cond(inner, ctx, score)
            }
            CondKind::Var { name, inner } => {
                ctx.area_is_match = name == "MATCH";
                ctx.area = Some(match name.as_str() {
                    "H" => AreaSel::Head,
                    "B" => AreaSel::Body,
                    "HB" | "BH" => AreaSel::Both,
                    _ => {
                        let v = vars::Env::get(self, name.as_bytes())
                            .map(|v| v.into_owned())
                            .unwrap_or_default();
                        AreaSel::Var(v)
                    }
                });
                self.cond(inner, ctx, score)
            }
            CondKind::Program(raw) => {
                ctx.shown = raw.to_vec();
                let (req, shown, _) = self.command_request(raw, Output::Null, true);
                let input = Input::raw(search_area(&self.msg, ctx));
                let ran = exec(&mut *self.fx, &req, input);
                self.last_status = ran.status;
                if ran.status != 0 && self.fx.verbose() {
                    let what = format!("Non-zero exitcode ({}) from", ran.status);
                    self.yell(&what, Some(&shown));
                }
                let ok = ran.status == 0;
                match ctx.weight {
                    None => CondResult::Bool(ok != ctx.negate),
                    Some((w, x)) if !ctx.negate => CondResult::Score(if ok { w } else { x }),
                    Some((w, x)) => {
                        // procmailsc(5): a negated program condition counts
                        // its exit status as that many matches.
                        let mut add = 0.0;
                        let mut cur = w;
                        for _ in 0..ran.status.max(0) {
                            add += cur;
                            if (add).abs() >= SCORE_MAX {
                                break;
                            }
                            cur *= x;
                        }
                        CondResult::Score(add)
                    }
                }
            }
            CondKind::Less(raw) | CondKind::Greater(raw) => {
                let text = vars::expand_spaced(raw, self);
                let op: &[u8] = if matches!(kind, CondKind::Less(_)) {
                    b"< "
                } else {
                    b"> "
                };
                ctx.shown = [op, trim_blanks(&text)].concat();
                let limit = vars::parse_num(&text, 0) as f64;
                let size = self.size_area(ctx) as f64;
                let less = matches!(kind, CondKind::Less(_)) != ctx.negate;
                match ctx.weight {
                    None => CondResult::Bool(if less { size < limit } else { size > limit }),
                    Some((w, x)) => {
                        let ratio = if less { limit / size } else { size / limit };
                        let add = if ratio.is_nan() {
                            0.0
                        } else if ratio.is_infinite() {
                            if ratio > 0.0 { SCORE_MAX } else { -SCORE_MAX }
                        } else {
                            w * ratio.powf(x)
                        };
                        CondResult::Score(add)
                    }
                }
            }
            CondKind::Regex(pat) => self.regex_cond(pat, false, ctx),
            CondKind::Literal(pat) => self.regex_cond(pat, true, ctx),
        }
    }

    fn regex_cond(&mut self, pat: &[u8], literal: bool, ctx: &mut CondCtx) -> CondResult {
        ctx.shown = pat.to_vec();
        let opts = Options {
            case_sensitive: ctx.flags.case_sensitive,
            leading_backslash: literal,
        };
        let key = (pat.to_vec(), opts.case_sensitive, literal);
        let (re, invalid) = self
            .regex_cache
            .entry(key)
            .or_insert_with(|| {
                let (re, err) = Regex::new_lenient(pat, opts);
                (Rc::new(re), err.is_some())
            })
            .clone();
        if invalid {
            // procmail logs the pattern and still searches with what it
            // made of it (checked: `a(b` is reported and matches `ab`).
            self.log_str(&format!("Invalid regexp \"{}\"", show(pat)));
        }
        let area = search_area(&self.msg, ctx);
        let mut matched = None;
        let result = match ctx.weight {
            None => {
                let found = if re.has_match_split() {
                    match re.find_match(area) {
                        Some(Some(range)) => {
                            matched = Some(range);
                            true
                        }
                        Some(None) => true,
                        None => false,
                    }
                } else {
                    re.is_match(area)
                };
                CondResult::Bool(found != ctx.negate)
            }
            Some((w, _)) if ctx.negate => {
                CondResult::Score(if re.is_match(area) { 0.0 } else { w })
            }
            Some((w, x)) => {
                // Every step through `\/` assigns MATCH, as in procmail.
                let mut it = re.matches(area);
                let steps = std::iter::from_fn(|| {
                    let step = it.next()?;
                    if let Some(r) = it.split() {
                        matched = Some(r);
                    }
                    Some(step)
                });
                CondResult::Score(weighted_matches(steps, w, x))
            }
        };
        let matched = matched.map(|r| area[r].to_vec());
        if let Some(m) = matched {
            // Checked with procmail 3.23pre: MATCH is first emptied, then
            // the matched text is shown.
            // `MATCH ??` searches MATCH itself, so it is not emptied first.
            if !ctx.area_is_match {
                self.yell_assign(b"MATCH", Some(b""));
            }
            self.yell("Matched", Some(&m));
            self.set_raw(b"MATCH", m);
        }
        result
    }

    /// Builds the argv for a program line: through `$SHELL $SHELLFLAGS` when
    /// it has shell metacharacters (or starts with `test`), else expanded and
    /// split by us (§12). Also returns the name used in `Program failure`.
    fn command_request(
        &mut self,
        raw: &[u8],
        stdout: Output,
        wait: bool,
    ) -> (RunRequest, Vec<u8>, Vec<u8>) {
        let metas = self.var_or(b"SHELLMETAS", b"&|<>~;?*[").to_vec();
        let (argv, shown, shell) = match vars::prepare_command(raw, &metas, self) {
            vars::Command::Shell(text) => {
                // §12: `$SHELL $SHELLFLAGS text`, the flags as one argument
                // (checked: SHELLFLAGS="-e -c" reaches the shell as one word).
                let argv = vec![
                    self.var_or(b"SHELL", b"/bin/sh").to_vec(),
                    self.var_or(b"SHELLFLAGS", b"-c").to_vec(),
                    text.clone(),
                ];
                (argv, text, true)
            }
            vars::Command::Argv(words)
                if words.iter().map(|w| w.len() + 1).sum::<usize>() > self.linebuf() + 1 =>
            {
                // Checked with procmail 3.23pre at LINEBUF=128: a command
                // procmail splits itself may expand to 128 bytes (words
                // and the blanks between them); a longer one is logged and
                // handed to the shell as written (`$LASTFOLDER` then shows
                // the text unexpanded).
                self.overflow();
                let text = raw.to_vec();
                let argv = vec![
                    self.var_or(b"SHELL", b"/bin/sh").to_vec(),
                    self.var_or(b"SHELLFLAGS", b"-c").to_vec(),
                    text.clone(),
                ];
                (argv, text, true)
            }
            vars::Command::Argv(words) => {
                let shown = words.first().cloned().unwrap_or_default();
                (words, shown, false)
            }
        };
        let shown_exec = if shell {
            shown.clone()
        } else {
            argv.join(&b',')
        };
        let req = RunRequest {
            argv,
            env: self.vars.clone(),
            stdout,
            wait,
            timeout: self.num(b"TIMEOUT", 960).max(0) as u64,
            shown: shown_exec,
        };
        // LASTFOLDER of a pipe (§9): the text as the shell got it, or the
        // words joined by single spaces.
        let lastfolder = if shell {
            shown.clone()
        } else {
            self.shown_words(raw, &req.argv)
        };
        (req, shown, lastfolder)
    }

    /// How procmail shows expanded words in `LASTFOLDER`: joined by spaces,
    /// except that a `"$@"` shows as one empty word (checked:
    /// `! x@y "$@" z@w` with two arguments shows `x@y  z@w`). Only in that
    /// rare case is the text expanded a second time, without parameters.
    fn shown_words(&mut self, raw: &[u8], words: &[Vec<u8>]) -> Vec<u8> {
        if crate::message::memfind(raw, b"\"$@\"").is_none() {
            return words.join(&b' ');
        }
        let saved = std::mem::take(&mut self.positional);
        let shown = vars::expand_words(raw, self);
        self.positional = saved;
        shown.join(&b' ')
    }

    fn action(&mut self, r: &Recipe, f: &Flags) -> Flow {
        match &r.action {
            // `run_recipe` never runs it: its test is always false.
            Action::Missing => Flow::Next,
            Action::Block(items) => self.block(items, f),
            Action::Capture { name, cmd } => {
                self.capture(name, cmd, f);
                Flow::Next
            }
            Action::Folder(raw) => {
                let names = vars::expand_folders(raw, self);
                let lock = self.take_local_lock(r, names.first().map(|n| n.as_slice()));
                if std::mem::take(&mut self.header_overflow) {
                    return Flow::EndFile;
                }
                let ok = self.deliver_to_folders(&names, f);
                self.release_local_lock(lock);
                self.after_delivery(ok, f)
            }
            Action::Pipe(raw) if trim_blanks(raw).is_empty() => {
                let input = Input::for_program(part(&self.msg, f).0, f.raw);
                let ok = to_stdout(&mut *self.fx, input);
                let len = input.len();
                if ok {
                    self.set_lastfolder(b"|".to_vec());
                    self.last_written = len;
                }
                self.after_delivery(ok, f)
            }
            Action::Pipe(raw) => {
                if f.filter {
                    let lock = self.take_local_lock(r, None);
                    if std::mem::take(&mut self.header_overflow) {
                        return Flow::EndFile;
                    }
                    self.filter(raw, f);
                    self.release_local_lock(lock);
                    return Flow::Next;
                }
                let lock = self.take_local_lock(r, None);
                if std::mem::take(&mut self.header_overflow) {
                    return Flow::EndFile;
                }
                let wait = f.wait || f.wait_quiet || lock.is_some();
                let ok = self.pipe(raw, f, wait);
                self.release_local_lock(lock);
                self.after_delivery(ok, f)
            }
            Action::Forward(raw) => {
                let ok = self.forward(raw, f);
                self.after_delivery(ok, f)
            }
        }
    }

    fn after_delivery(&mut self, ok: bool, f: &Flags) -> Flow {
        self.chain.lastsucc = ok;
        if !ok {
            return Flow::Next;
        }
        if f.copy {
            if self.abstract_mode() == Abstract::All {
                self.write_abstract();
            }
            return Flow::Next;
        }
        self.delivered = true;
        Flow::Stop
    }

    fn block(&mut self, items: &[Item], f: &Flags) -> Flow {
        if f.copy {
            match self.fx.fork(f.wait || f.wait_quiet) {
                Fork::Parent => {
                    self.chain.lastsucc = true;
                    return Flow::Next;
                }
                Fork::Child => self.is_clone = true,
                Fork::Failed => return Flow::Next,
            }
        }
        self.chain.lastsucc = true;
        let saved = self.chain;
        let flow = self.run_items(items);
        self.chain = saved;
        flow
    }

    fn capture(&mut self, name: &str, raw: &[u8], f: &Flags) {
        // Checked with procmail 3.23pre: `VERBOSE` shows `Assigning
        // "NAME="` before the program runs, and nothing when it is assigned.
        self.yell_assign(name.as_bytes(), Some(b""));
        let (req, shown, _) = self.command_request(raw, Output::Capture, true);
        let input = Input::final_newline(part(&self.msg, f).0);
        let ran = exec(&mut *self.fx, &req, input);
        self.last_status = ran.status;
        let failed = ran.status != 0;
        if failed && (f.wait || f.wait_quiet) {
            self.quiet_failure(f, ran.status, &shown);
            if f.wait {
                self.program_failure(ran.status, &shown);
                // Checked: procmail reports the rescue only when the
                // variable had a value to fall back to.
                if self.var(name.as_bytes()).is_some() {
                    self.log_str("Rescue of unfiltered data succeeded");
                }
            }
            return;
        }
        let mut out = ran.output;
        if out.last() == Some(&b'\n') {
            out.pop();
        }
        self.assign_quietly(name.as_bytes(), Some(out));
    }

    /// `W` keeps a failure out of the log, but `VERBOSE` still shows it as
    /// `Non-zero exitcode (N) from "x"` (checked with procmail 3.23pre).
    fn quiet_failure(&mut self, f: &Flags, status: i32, shown: &[u8]) {
        if f.wait_quiet && !f.wait && self.fx.verbose() {
            let what = format!("Non-zero exitcode ({status}) from");
            self.yell(&what, Some(shown));
        }
    }

    fn program_failure(&mut self, status: i32, shown: &[u8]) {
        self.log_str(&format!(
            "Program failure ({status}) of \"{}\"",
            show(shown)
        ));
    }

    fn filter(&mut self, raw: &[u8], f: &Flags) {
        let (req, shown, _) = self.command_request(raw, Output::Capture, true);
        let input = Input::for_program(part(&self.msg, f).0, f.raw);
        let ran = exec(&mut *self.fx, &req, input);
        if f.wait || f.wait_quiet {
            self.last_status = ran.status;
        }
        if ran.timed_out {
            self.log_str(&format!("Timeout, terminating \"{}\"", show(&shown)));
        }
        if ran.write_error && !f.ignore_write_error {
            self.log_str(&format!("Error while writing to \"{}\"", show(&shown)));
        }
        if ran.status != 0 && (f.wait || f.wait_quiet) {
            self.quiet_failure(f, ran.status, &shown);
            if f.wait {
                self.program_failure(ran.status, &shown);
                self.log_str("Rescue of unfiltered data succeeded");
            }
            self.chain.lastsucc = false;
            return;
        }
        // The output replaces the message in place: the old bytes go
        // before anything else is built, so a filter pass holds the message
        // and its output, no third copy.
        match (f.pass_head, f.pass_body) {
            (true, false) => self.msg.set_header(&ran.output),
            (false, true) => self.msg.set_body(&ran.output),
            _ => {
                drop(std::mem::take(&mut self.msg));
                self.msg = Message::from_bytes(ran.output);
            }
        }
        // procmail reads the filtered message as a new one: its
        // Content-Length is rewritten again (checked: a filter that sets
        // `Content-Length:1` gets `Content-Length:9` and `>From` escaping).
        if !self.berkeley {
            self.protect = self.msg.fix_content_length();
        }
        self.fx.message_changed(&self.msg);
        self.chain.lastsucc = true;
    }

    fn pipe(&mut self, raw: &[u8], f: &Flags, wait: bool) -> bool {
        let (req, shown, lastfolder) = self.command_request(raw, Output::Null, wait);
        let data = part(&self.msg, f).0;
        let input = Input::for_program(data, f.raw);
        let ran = exec(&mut *self.fx, &req, input);
        // Checked: when the program stops reading, procmail's abstract
        // counts the message without the newline it would have added.
        let len = if ran.write_error {
            data.len()
        } else {
            input.len()
        };
        if wait {
            // procmail leaves `$?` alone for programs it does not wait for.
            self.last_status = ran.status;
        }
        if ran.timed_out {
            self.log_str(&format!("Timeout, terminating \"{}\"", show(&shown)));
        }
        if ran.write_error && !f.ignore_write_error {
            self.log_str(&format!("Error while writing to \"{}\"", show(&shown)));
            // Checked with procmail 3.23pre: also a pipe that did not read
            // its input becomes `$LASTFOLDER`.
            self.set_lastfolder(lastfolder);
            return false;
        }
        if wait && ran.status != 0 {
            self.quiet_failure(f, ran.status, &shown);
            if f.wait {
                self.program_failure(ran.status, &shown);
            }
            // Checked with procmail 3.23pre: a failed `w` pipe still
            // becomes `$LASTFOLDER`.
            self.set_lastfolder(lastfolder);
            return false;
        }
        self.set_lastfolder(lastfolder);
        self.last_written = len;
        true
    }

    fn forward(&mut self, raw: &[u8], f: &Flags) -> bool {
        let words = vars::expand_words(raw, self);
        let mut argv = vec![self.var_or(b"SENDMAIL", b"/usr/sbin/sendmail").to_vec()];
        argv.extend(vars::split_blanks(self.var_or(b"SENDMAILFLAGS", b"-oi")));
        let shown_args = self.shown_words(raw, &words);
        let mut shown = argv.join(&b' ');
        shown.push(b' ');
        shown.extend_from_slice(&shown_args);
        argv.extend(words);
        // Checked with procmail 3.23pre at LINEBUF=128: `$SENDMAIL
        // $SENDMAILFLAGS args` may take 128 bytes; a longer forward is
        // logged and fails without running.
        if argv.iter().map(|w| w.len() + 1).sum::<usize>() > self.linebuf() + 1 {
            self.overflow();
            return false;
        }
        let wait = f.wait || f.wait_quiet;
        let req = RunRequest {
            shown: argv.join(&b','),
            argv: argv.clone(),
            env: self.vars.clone(),
            stdout: Output::Null,
            wait,
            timeout: self.num(b"TIMEOUT", 960).max(0) as u64,
        };
        let data = part(&self.msg, f).0;
        // §10.6: forwards leave out the postmark and the `>From` lines below it.
        let skip = if f.pass_head {
            self.msg.envelope_len().min(data.len())
        } else {
            0
        };
        let input = Input::for_program(&data[skip..], f.raw);
        let ran = exec(&mut *self.fx, &req, input);
        let len = input.len();
        self.last_status = ran.status;
        if ran.write_error && !f.ignore_write_error {
            self.log_str(&format!("Error while writing to \"{}\"", show(&argv[0])));
            return false;
        }
        if wait && ran.status != 0 {
            self.quiet_failure(f, ran.status, &argv[0]);
            if f.wait {
                self.program_failure(ran.status, &argv[0]);
            }
            // Checked with procmail 3.23pre, as for pipes.
            self.set_lastfolder(shown);
            return false;
        }
        self.set_lastfolder(shown);
        self.last_written = len;
        true
    }

    fn deliver_to_folders(&mut self, names: &[Vec<u8>], f: &Flags) -> bool {
        if names.is_empty() {
            return false;
        }
        let (data, body_start) = part(&self.msg, f);
        let opts = FolderOpts {
            raw: f.raw,
            body_start,
            protect: if f.pass_body { self.protect } else { 0 },
            envelope_len: if f.pass_head {
                self.msg.envelope_len()
            } else {
                0
            },
            msgprefix: self.var_or(b"MSGPREFIX", b"msg.").to_vec(),
        };
        let (lastfolder, ok) = match self.fx.deliver_folders(names, data, &opts) {
            Ok(d) => {
                self.last_written = d.written;
                (Some(d.lastfolder), true)
            }
            Err(lastfolder) => (lastfolder, false),
        };
        if let Some(l) = lastfolder {
            if self.fx.announces_lastfolder() {
                self.set_lastfolder_quietly(l);
            } else {
                self.set_lastfolder(l);
            }
            if ok {
                self.lastfolder_was_written();
            }
        }
        ok
    }

    /// The local lockfile of a recipe (§11): `:0 :` derives it from the
    /// folder name or the word after `>>` in a pipe.
    fn take_local_lock(&mut self, r: &Recipe, folder: Option<&[u8]>) -> Option<u64> {
        let lock = r.lock.as_ref()?;
        let ext = self.var_or(b"LOCKEXT", b".lock").to_vec();
        let path = match lock {
            Lock::Named(raw) => {
                let name = vars::expand_value(raw, self);
                if name.is_empty() {
                    return None;
                }
                // Spec §4.3: an overflowing recipe header ends the rcfile.
                // Checked with procmail 3.23pre at LINEBUF=128: a lockfile
                // name of 123 bytes is used, one of 124 is logged and ends
                // the rcfile (the mail goes to DEFAULT).
                if name.len() + 5 > self.linebuf() {
                    self.overflow();
                    self.header_overflow = true;
                    return None;
                }
                name
            }
            Lock::Implicit => match (&r.action, folder) {
                (_, Some(b"/dev/null")) => return None,
                (_, Some(name)) => [name, &ext].concat(),
                (Action::Pipe(raw), None) => {
                    if trim_blanks(raw).is_empty() {
                        return None;
                    }
                    let words = vars::expand_words(raw, self);
                    match words.iter().position(|w| w == b">>") {
                        Some(i) if i + 1 < words.len() => [&words[i + 1][..], &ext].concat(),
                        _ => {
                            self.log_str(&format!(
                                "Couldn't determine implicit lockfile from \"{}\"",
                                show(raw)
                            ));
                            ext.clone()
                        }
                    }
                }
                _ => return None,
            },
        };
        if self.global_lock.as_ref().map(|(p, _)| p) == Some(&path) {
            self.log_str(&format!("Deadlock attempted on \"{}\"", show(&path)));
            return None;
        }
        let params = self.lock_params();
        self.fx.lock(&path, &params)
    }

    fn release_local_lock(&mut self, id: Option<u64>) {
        if let Some(id) = id {
            self.fx.unlock(id);
        }
    }

    fn abstract_mode(&self) -> Abstract {
        match self.var(b"LOGABSTRACT") {
            None => Abstract::Default,
            Some(v) => match vars::parse_num(v, -1) {
                2 => Abstract::All,
                -1 => Abstract::Default,
                0 => Abstract::No,
                _ => Abstract::Yes,
            },
        }
    }

    /// Writes the three-line log abstract for the last delivery (§13).
    fn write_abstract(&mut self) {
        let folder = self.var_or(b"LASTFOLDER", b"").to_vec();
        let text = abstract_text(&self.msg, &folder, self.last_written);
        self.fx.log(&text);
    }

    /// Falls back to `DEFAULT` then `ORGMAIL` when nothing delivered, writes
    /// the abstract, runs `TRAP`, and returns the exit status (§2, §9, §15).
    pub fn finish(&mut self) -> i32 {
        let mut status = 0;
        if !self.delivered && !self.host_abort {
            let default = self.var(b"DEFAULT").map(|d| d.to_vec());
            let orgmail = self.var(b"ORGMAIL").map(|d| d.to_vec());
            let mut ok = false;
            if let Some(default) = default.as_ref().filter(|_| self.default_enabled) {
                ok = self.deliver_default(default, true);
            }
            if !ok && let Some(org) = orgmail.as_ref().filter(|o| Some(*o) != default.as_ref()) {
                ok = self.deliver_default(org, false);
            }
            if ok {
                self.delivered = true;
            } else {
                let folder: &[u8] = if self.soft_fail {
                    b"**Requeued**"
                } else {
                    b"**Bounced**"
                };
                // The abstract keeps the size of the last thing written
                // (checked with procmail 3.23pre: `:0 c` to a box, then no
                // DEFAULT in -m mode, logs `**Bounced**` with 54 bytes).
                self.set_raw(b"LASTFOLDER", folder.to_vec());
                status = if self.soft_fail { 75 } else { 73 };
            }
        }
        // A `HOST` mismatch leaves `LASTFOLDER` and the size alone (checked:
        // `LASTFOLDER=foo` then `HOST=x` logs `Folder: foo`, and after a
        // `c` delivery to `box` it logs `Folder: box` with its size).

        self.notify_host(status);
        match self.abstract_mode() {
            Abstract::No => {}
            // Checked with procmail 3.23pre: without a log file the
            // abstract still goes to stderr when VERBOSE is on at the end.
            Abstract::Default if !self.fx.log_is_open() && !self.fx.verbose() => {}
            _ => self.write_abstract(),
        }
        if let Some(trap) = self
            .var(b"TRAP")
            .map(|t| t.to_vec())
            .filter(|t| !t.is_empty())
        {
            if !self.exitcode_assigned {
                let code = status.to_string().into_bytes();
                self.yell_assign(b"EXITCODE", Some(&code));
                self.set_raw(b"EXITCODE", code);
            }
            // §9 TRAP: its stdout goes to the log as well as its stderr.
            let (req, _, _) = self.command_request(&trap, Output::Capture, true);
            let input = Input::final_newline(self.msg.as_bytes());
            let ran = exec(&mut *self.fx, &req, input);
            self.fx.log(&ran.output);
            if self.exitcode_assigned && self.var(b"EXITCODE") == Some(b"") {
                self.release_global_lock();
                return ran.status;
            }
        }
        // Checked with procmail 3.23pre: the global lockfile goes last,
        // after the abstract and TRAP (`Unlocking` is the final line).
        self.release_global_lock();
        if self.exitcode_assigned
            && let Some(v) = self.var(b"EXITCODE")
        {
            // §9: a value that is not a number reads as 0 (checked:
            // EXITCODE=foo exits 0 although nothing was delivered).
            let code = vars::parse_num(v, 0);
            if code >= 0 {
                return code as i32;
            }
        }
        status
    }

    fn deliver_default(&mut self, target: &[u8], locked: bool) -> bool {
        let f = Flags {
            pass_head: true,
            pass_body: true,
            ..Flags::default()
        };
        if target == b"|" {
            let input = Input::final_newline(self.msg.as_bytes());
            self.last_written = input.len();
            return to_stdout(&mut *self.fx, input);
        }
        let mut lock = None;
        // Checked with procmail: DEFAULT is locked only when it is a file;
        // Maildir, MH and directory defaults take no lockfile.
        let is_dir = target.ends_with(b"/") || target.ends_with(b"/.") || self.fx.is_dir(target);
        // §11: `/dev/null` is never locked (checked with VERBOSE=on:
        // procmail shows no `Locking "/dev/null.lock"` for DEFAULT=/dev/null).
        if locked && !is_dir && target != b"/dev/null" {
            let path = [target, self.var_or(b"LOCKEXT", b".lock")].concat();
            if self.global_lock.as_ref().map(|(p, _)| p) != Some(&path) {
                let params = self.lock_params();
                lock = self.fx.lock(&path, &params);
            }
        }
        let ok = self.deliver_to_folders(&[target.to_vec()], &f);
        self.release_local_lock(lock);
        ok
    }

    /// Whether this process is a clone made by a `c` block.
    pub fn is_clone(&self) -> bool {
        self.is_clone
    }
}

impl vars::Env for Eval<'_> {
    fn get(&self, name: &[u8]) -> Option<Cow<'_, [u8]>> {
        let owned = |s: String| Some(Cow::Owned(s.into_bytes()));
        match name {
            b"$" => owned(self.fx.pid().to_string()),
            b"?" => owned(self.last_status.to_string()),
            b"=" => owned(self.score.to_string()),
            b"#" => owned(self.positional.len().to_string()),
            b"_" => self
                .rcfile_stack
                .last()
                .map(|p| Cow::Borrowed(p.as_slice())),
            b"-" => self.var(b"LASTFOLDER").map(Cow::Borrowed),
            b"0" => Some(Cow::Borrowed(self.arg0.as_slice())),
            [d @ b'1'..=b'9'] => self
                .positional
                .get((d - b'1') as usize)
                .map(|v| Cow::Borrowed(v.as_slice())),
            _ => self.var(name).map(Cow::Borrowed),
        }
    }

    fn positional(&self) -> Vec<Vec<u8>> {
        self.positional.clone()
    }

    fn backquote(&mut self, cmd: &[u8]) -> Vec<u8> {
        let (req, _, _) = self.command_request(cmd, Output::Capture, true);
        let input = Input::final_newline(self.msg.as_bytes());
        let ran = exec(&mut *self.fx, &req, input);
        self.last_status = ran.status;
        ran.output
    }

    fn log(&mut self, text: &str) {
        self.log_str(text);
    }
}

/// The text a condition searches (§5 `H`/`B`, §6.4 `NAME ??`).
fn search_area<'a>(msg: &'a Message, ctx: &'a CondCtx) -> &'a [u8] {
    match &ctx.area {
        Some(AreaSel::Var(v)) => v,
        Some(AreaSel::Head) => msg.joined_header(),
        Some(AreaSel::Body) => msg.body(),
        Some(AreaSel::Both) => msg.joined_whole(),
        None => match (ctx.flags.head_search, ctx.flags.body_search) {
            (true, true) => msg.joined_whole(),
            (false, true) => msg.body(),
            _ => msg.joined_header(),
        },
    }
}

/// The part of the message a recipe passes on (`h`, `b`, both) and where
/// the body starts in it.
fn part<'m>(msg: &'m Message, f: &Flags) -> (&'m [u8], usize) {
    match (f.pass_head, f.pass_body) {
        (true, false) => (msg.header(), msg.header().len()),
        (false, true) => (msg.body(), 0),
        _ => (msg.as_bytes(), msg.header().len()),
    }
}

/// Which area a `NAME ??` condition selected.
#[derive(Clone, Debug)]
enum AreaSel {
    Head,
    Body,
    Both,
    Var(Vec<u8>),
}

/// The context a condition is evaluated in.
struct CondCtx {
    flags: Flags,
    /// The condition's text as `VERBOSE` shows it (`Match on "x"`).
    shown: Vec<u8>,
    /// The area is `MATCH ??`, which is not emptied before a `\/` match.
    area_is_match: bool,
    negate: bool,
    weight: Option<(f64, f64)>,
    area: Option<AreaSel>,
}

/// A condition's value: true/false, or a contribution to the score.
enum CondResult {
    Bool(bool),
    Score(f64),
    SkippedWeight,
}

fn clamp_score(s: f64) -> f64 {
    s.clamp(-SCORE_MAX, SCORE_MAX)
}

/// procmailsc(5) for a matching weighted regex: `w` for the first match,
/// `w·x` for the second, ...; stops once the terms shrink below 1 in
/// magnitude, and adds the geometric tail (or saturates) on an empty match.
pub fn weighted_matches(steps: impl Iterator<Item = Step>, w: f64, x: f64) -> f64 {
    let mut score = 0.0;
    let mut cur = w;
    for step in steps {
        match step {
            Step::Progress => {
                score += cur;
                if score >= SCORE_MAX || score <= -SCORE_MAX {
                    break;
                }
                let next = cur * x;
                let (nsq, psq) = (next * next, cur * cur);
                if nsq < psq && psq < 1.0 {
                    break;
                }
                cur = next;
            }
            Step::Empty => {
                // Checked with procmail 3.23pre on `x*`: 2^0.5 gives 4 (the
                // tail), 2^2 saturates, 2^0, 2^-0.5 and 2^-2 give 2.
                if x > 0.0 && x < 1.0 {
                    score += cur / (1.0 - x);
                } else if x >= 1.0 && cur != 0.0 {
                    score = if cur > 0.0 { SCORE_MAX } else { -SCORE_MAX };
                } else {
                    score += cur;
                }
                break;
            }
        }
    }
    score
}

/// Writes `input` to the MTA's stdout (a bare `|`), the data and then the
/// newline, so that the message is not copied to add it.
fn to_stdout(fx: &mut dyn Effects, input: Input<'_>) -> bool {
    fx.to_stdout(input.data) && (!input.newline || fx.to_stdout(b"\n"))
}

/// The log abstract (§13): postmark, first Subject line, folder and size.
/// The folder is cut to 60 characters (checked with procmail 3.23pre: names
/// of 60, 61 and 62 characters all show as 60).
pub fn abstract_text(msg: &Message, folder: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    // procmail logs these lines as C strings (mailfold.c `logabstract`):
    // each ends at its first NUL byte (checked: `Subject: nul\0byte` is
    // logged as ` Subject: nul`).
    let to_nul = |s: &[u8]| -> usize { s.iter().position(|&b| b == 0).unwrap_or(s.len()) };
    if let Some(pm) = msg.postmark() {
        out.extend_from_slice(&pm[..to_nul(pm)]);
        out.push(b'\n');
    }
    let header = msg.header();
    let subject = header
        .split(|&b| b == b'\n')
        .find(|l| l.len() >= 8 && l[..8].eq_ignore_ascii_case(b"Subject:"));
    if let Some(line) = subject {
        out.push(b' ');
        let line = &line[..line.len().min(78)];
        out.extend(
            line[..to_nul(line)]
                .iter()
                .map(|&b| if b < b' ' { b' ' } else { b }),
        );
        out.push(b'\n');
    }
    out.extend_from_slice(b"  Folder: ");
    let shown: Vec<u8> = folder
        .iter()
        .take(60)
        .map(|&b| if b < b' ' { b' ' } else { b })
        .collect();
    out.extend_from_slice(&shown);
    let mut col = (10 + shown.len()) & !7;
    loop {
        out.push(b'\t');
        col += 8;
        if col >= 72 {
            break;
        }
    }
    out.extend_from_slice(format!("{size:>7}\n").as_bytes());
    out
}

/// Leading blanks and tabs removed, trailing ones too.
fn trim_blanks(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |p| p + 1);
    &s[start..end]
}

/// Runs a program, logging `Executing "x"` first with `VERBOSE` (a free
/// function so that the message may stay borrowed as the input).
fn exec(fx: &mut dyn Effects, req: &RunRequest, input: Input<'_>) -> Ran {
    if fx.verbose() {
        let text = quoted("Executing", Some(&req.shown));
        fx.diag(&text, true);
    }
    fx.run_input(req, input)
}

/// `what "value"` (or `what` alone) as a diagnostic's text.
fn quoted(what: &str, value: Option<&[u8]>) -> Vec<u8> {
    let mut text = what.as_bytes().to_vec();
    if let Some(v) = value {
        text.extend_from_slice(b" \"");
        text.extend_from_slice(v);
        text.push(b'"');
    }
    text
}

/// Bytes shown in a log line.
fn show(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_arithmetic_matches_procmailsc_examples() {
        let six = || (0..6).map(|_| Step::Progress);
        // procmail-semantics §8, checked there against procmail.
        assert_eq!(weighted_matches(six(), 1.0, 0.5), 1.5);
        assert_eq!(weighted_matches(six(), 10.0, 0.5), 19.375);
        assert_eq!(weighted_matches(six(), 1.0, 1.0), 6.0);
        assert_eq!(
            weighted_matches(std::iter::once(Step::Empty), 1.0, 0.5),
            2.0
        );
        assert_eq!(
            weighted_matches(std::iter::once(Step::Empty), 1.0, 1.0),
            SCORE_MAX
        );
    }

    #[test]
    fn input_pieces_follow_the_final_newline_rule() {
        // §10.1's final-newline rule: the pieces joined must
        // give what procmail writes to a program (§10.1), raw or not.
        let cases: [(&[u8], bool, &[u8]); 6] = [
            (b"text", false, b"text\n"),
            (b"text\n", false, b"text\n\n"),
            (b"text\n\n", false, b"text\n\n"),
            (b"", false, b"\n"),
            (b"text", true, b"text"),
            (b"", true, b""),
        ];
        for (data, raw, want) in cases {
            let input = Input::for_program(data, raw);
            let got = input.pieces().concat();
            assert_eq!(got, want, "data {data:?} raw {raw}");
            assert_eq!(input.to_vec(), want);
            assert_eq!(input.len(), want.len());
            assert_eq!(input.is_empty(), want.is_empty());
            // Never a copy: the first piece is the caller's slice.
            assert_eq!(input.pieces()[0].as_ptr(), data.as_ptr());
        }
    }

    /// A host that records what `run` and `to_stdout` got, to check the
    /// default `run_input` and the two-piece stdout writes.
    #[derive(Default)]
    struct Recorder {
        runs: Vec<Vec<u8>>,
        stdout: Vec<Vec<u8>>,
    }

    impl Effects for Recorder {
        fn run(&mut self, _req: &RunRequest, input: &[u8]) -> Ran {
            self.runs.push(input.to_vec());
            Ran::default()
        }
        fn deliver_folders(
            &mut self,
            _names: &[Vec<u8>],
            _data: &[u8],
            _opts: &FolderOpts,
        ) -> Result<Delivered, Option<Vec<u8>>> {
            Err(None)
        }
        fn to_stdout(&mut self, data: &[u8]) -> bool {
            self.stdout.push(data.to_vec());
            true
        }
        fn lock(&mut self, _path: &[u8], _params: &LockParams) -> Option<u64> {
            None
        }
        fn unlock(&mut self, _id: u64) {}
        fn read_rcfile(&mut self, _path: &[u8]) -> std::io::Result<Vec<u8>> {
            Err(std::io::ErrorKind::NotFound.into())
        }
        fn log(&mut self, _bytes: &[u8]) {}
        fn chdir(&mut self, _path: &[u8]) -> bool {
            true
        }
        fn open_log(&mut self, _path: &[u8]) -> bool {
            false
        }
        fn log_is_open(&self) -> bool {
            false
        }
        fn set_umask(&mut self, _mask: u32) {}
        fn hostname(&self) -> Vec<u8> {
            b"h".to_vec()
        }
        fn fork(&mut self, _wait: bool) -> Fork {
            Fork::Failed
        }
        fn pid(&self) -> u32 {
            1
        }
        fn is_dir(&self, _path: &[u8]) -> bool {
            false
        }
    }

    #[test]
    fn default_run_input_joins_the_pieces() {
        let mut host = Recorder::default();
        let req = RunRequest {
            argv: vec![b"cat".to_vec()],
            env: Vec::new(),
            stdout: Output::Capture,
            wait: true,
            timeout: 0,
            shown: b"cat".to_vec(),
        };
        host.run_input(&req, Input::final_newline(b"a\n"));
        host.run_input(&req, Input::raw(b"b"));
        assert_eq!(host.runs, [b"a\n\n".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn stdout_gets_the_data_then_the_newline() {
        let mut host = Recorder::default();
        assert!(to_stdout(&mut host, Input::final_newline(b"msg\n")));
        assert!(to_stdout(&mut host, Input::final_newline(b"two\n\n")));
        let want: [&[u8]; 3] = [b"msg\n", b"\n", b"two\n\n"];
        assert_eq!(host.stdout, want);
    }

    #[test]
    fn abstract_pads_folder_to_column_72() {
        // Checked against procmail 3.23pre: eight tabs after `inbox`.
        let msg = Message::from_bytes(
            b"From alice@example.com  Mon Jan  6 10:00:00 2025\nSubject: Hello there\n\nhi\n"
                .to_vec(),
        );
        let got = abstract_text(&msg, b"inbox", 255);
        let want = b"From alice@example.com  Mon Jan  6 10:00:00 2025\n Subject: Hello there\n  Folder: inbox\t\t\t\t\t\t\t\t    255\n";
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    }

    #[test]
    fn abstract_subject_ends_at_a_nul() {
        // Checked against procmail 3.23pre: ` Subject: nul` for a Subject
        // field holding `nul\0byte`.
        let msg = Message::from_bytes(b"X-A: b\nSubject: nul\0byte\n\nbody\n".to_vec());
        let got = abstract_text(&msg, b"box", 5);
        let want = b" Subject: nul\n  Folder: box\t\t\t\t\t\t\t\t      5\n";
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    }
}
