//! The formail run itself: reading the input line by line the way
//! formail does, the header edits, the postmark, the reply header, the
//! body copy with `From ` escaping and `Content-Length:`, and `-s`
//! splitting with one program per message.
//!
//! Owns the input cursor, the output streams and the `-s` children. It
//! follows formail's reading model closely on purpose: formail decides
//! what is a header, where a message ends and what gets escaped one line
//! at a time with one byte of look-ahead, and the differential tests hold
//! us to its output byte for byte. It never touches the spool or a
//! mailbox.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};

use super::address::Sender;
use super::cache;
use super::field::{
    Field, break_field, detab, find, is_known_header, is_postmark, matches, skip_space,
};
use super::options::Options;
use crate::mailbox::{inode_code, local_host};

/// sysexits codes formail uses.
pub const EX_USAGE: i32 = 64;
/// No sender for a reply (`-r` found none: `foo@bar` is used).
pub const EX_NOUSER: i32 = 67;
/// A `-s` program could not be run.
pub const EX_UNAVAILABLE: i32 = 69;
/// The `-D` cache could not be opened.
pub const EX_CANTCREAT: i32 = 73;
/// Output could not be written.
pub const EX_IOERR: i32 = 74;

/// The sender formail puts in a postmark or reply when it finds none.
const UNKNOWN: &[u8] = b"foo@bar";

/// Where the current message's output goes. Writes are buffered like
/// formail's stdio and flushed when the message's output is closed.
enum Dest {
    Stdout,
    Pipe(BufWriter<ChildStdin>),
    Sink,
}

/// formail's `mystdout`: the destination plus the write-error flag and,
/// under `-l`, the byte count that replaces most output.
struct Out {
    dest: Dest,
    stdout: BufWriter<io::Stdout>,
    failed: bool,
    count_only: bool,
    total: u64,
}

impl Out {
    /// Writes (formail's `putssn`/`putcs`).
    fn put(&mut self, b: &[u8]) {
        let r = match &mut self.dest {
            Dest::Stdout => self.stdout.write_all(b),
            Dest::Pipe(p) => p.write_all(b),
            Dest::Sink => Ok(()),
        };
        if r.is_err() {
            self.failed = true;
        }
    }

    /// Writes message text, or only counts it under `-l` (`lputssn`).
    fn lput(&mut self, b: &[u8]) {
        if self.count_only {
            self.total += b.len() as u64;
        } else {
            self.put(b);
        }
    }

    /// Closes the current destination (formail's `fclose(mystdout)`);
    /// false if anything written to it failed.
    fn close(&mut self) -> bool {
        let flushed = match &mut self.dest {
            Dest::Stdout => self.stdout.flush().is_ok(),
            Dest::Pipe(p) => p.flush().is_ok(),
            Dest::Sink => true,
        };
        self.dest = Dest::Sink;
        let ok = flushed && !self.failed;
        self.failed = false;
        ok
    }
}

/// A `-s` program: running, or one that could not be started (its exit
/// status is what formail's forked child would have returned).
enum Kid {
    Running(Child),
    Failed(i32),
}

impl Kid {
    fn wait(self) -> i32 {
        match self {
            Kid::Failed(c) => c,
            Kid::Running(mut c) => c.wait().map_or(EX_UNAVAILABLE, status_code),
        }
    }
}

/// The exit code, or minus the signal that ended it.
fn status_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code()
        .unwrap_or_else(|| -st.signal().unwrap_or(libc::SIGKILL))
}

/// The saved values of the four fields a reply or postmark needs (the
/// text after the colon, newline included; the last such field wins).
#[derive(Default)]
struct Saved {
    subject: Option<Vec<u8>>,
    references: Option<Vec<u8>>,
    message_id: Option<Vec<u8>>,
    date: Option<Vec<u8>>,
}

/// How a run ends early.
enum Stop {
    /// Exit now with this code (formail's `exit()` calls).
    Exit(i32),
}

/// Where formail's `chp` pointer was left, for the `From ` lines it tests
/// without setting it (see `Engine::postmark_at`). When it points into a
/// header field, what it sees later depends on glibc's malloc: a freed
/// field block is handed to the next request of its size class (last
/// freed, first reused) and only overwritten as far as the new field
/// reaches, since formail's fields are not NUL-terminated.
struct Stale {
    /// The bytes it points into.
    text: Vec<u8>,
    /// Where in them.
    off: usize,
    /// The live field of the current list (`rdheader`) it points into.
    field: Option<usize>,
    /// Its block has been freed and is the last freed block of this size
    /// class, so the next field of that class lands on it.
    reusable: Option<usize>,
}

impl Stale {
    /// Pointing at bytes that no field allocation will change.
    fn fixed(text: Vec<u8>, off: usize) -> Option<Stale> {
        Some(Stale {
            text,
            off,
            field: None,
            reusable: None,
        })
    }

    /// Pointing into field `index` of the current list.
    fn in_field(text: Vec<u8>, off: usize, index: usize) -> Option<Stale> {
        Some(Stale {
            text,
            off,
            field: Some(index),
            reusable: None,
        })
    }
}

/// The glibc malloc size class (the chunk size, 64-bit) of a request of
/// `n` bytes: blocks freed and requested in one class are reused
/// last-freed-first, which decides what a stale pointer sees.
fn chunk_class(n: usize) -> usize {
    ((n + 8 + 15) & !15).max(32)
}

/// The malloc request formail makes for a field of `len` text bytes (its
/// `struct field` header is 24 bytes).
fn field_request(len: usize) -> usize {
    24 + len
}

/// What follows a message.
enum Flow {
    /// The next message of a `-s` split (its first fields already read).
    Next,
    /// The run is over, with this exit code.
    Done(i32),
}

/// One formail run over `input`.
pub struct Engine {
    o: Options,
    input: Box<dyn Read>,
    inbuf: Vec<u8>,
    pos: usize,
    filled: usize,
    buf: Vec<u8>,
    buflast: Option<u8>,
    rdheader: Vec<Field>,
    out: Out,
    retval: i32,
    split_failed: bool,
    kids: Vec<Kid>,
    iheader: Vec<Field>,
    uheader: Vec<(Field, Option<usize>)>,
    u_last: Vec<(Field, Option<usize>)>,
    cache: Option<(File, u64)>,
    rhash: u64,
    id_counter: u64,
    fileno: Option<(i64, usize)>,
    pid: u32,
    /// What formail's `chp` pointer last pointed at. A `From ` line that
    /// ended a header is checked against it instead of its own text (see
    /// `postmark_at`).
    stale: Option<Stale>,
}

impl Engine {
    /// A run of `o` over `input` (read as it goes, like formail: a run
    /// that ends early leaves the rest unread), with the `-D` cache
    /// already open.
    pub fn new(o: Options, input: Box<dyn Read>, cache: Option<(File, u64)>) -> Engine {
        let count_only = o.log_summary.is_some();
        let iheader = o.rename_insert.clone();
        let uheader = o.first_unique.iter().map(|f| (f.clone(), None)).collect();
        let u_last = o.last_unique.iter().map(|f| (f.clone(), None)).collect();
        Engine {
            o,
            input,
            inbuf: vec![0; 64 * 1024],
            pos: 0,
            filled: 0,
            buf: Vec::new(),
            buflast: None,
            rdheader: Vec::new(),
            out: Out {
                dest: Dest::Stdout,
                stdout: BufWriter::with_capacity(64 * 1024, io::stdout()),
                failed: false,
                count_only,
                total: 0,
            },
            retval: 0,
            split_failed: false,
            kids: Vec::new(),
            iheader,
            uheader,
            u_last,
            cache,
            rhash: 0,
            id_counter: 0,
            fileno: None,
            pid: std::process::id(),
            stale: None,
        }
    }

    /// The next input byte (`None` at the end; a read error ends the
    /// input as it does for formail's getchar()).
    fn getc(&mut self) -> Option<u8> {
        if self.pos == self.filled {
            self.pos = 0;
            self.filled = loop {
                match self.input.read(&mut self.inbuf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break 0,
                }
            };
            if self.filled == 0 {
                return None;
            }
        }
        let c = self.inbuf[self.pos];
        self.pos += 1;
        Some(c)
    }

    /// Appends one line to `buf` (always newline-terminated; at the end of
    /// the input an empty line) and reads one byte ahead.
    fn getline(&mut self) -> Option<u8> {
        let Some(c) = self.buflast else {
            self.buf.push(b'\n');
            return None;
        };
        self.buf.push(c);
        if c != b'\n' {
            while let Some(ch) = self.getc() {
                if ch == b'\n' {
                    break;
                }
                self.rhash = self.rhash.wrapping_mul(67067).wrapping_add(u64::from(ch));
                self.buf.push(ch);
            }
            self.buf.push(b'\n');
        }
        self.buflast = self.getc();
        self.buflast
    }

    /// Reads one header field (with its continuation lines) into
    /// `rdheader`; false, with the line left in `buf`, if it is none.
    fn readhead(&mut self) -> bool {
        self.getline();
        let idlen = break_field(&self.buf);
        if idlen <= 0 {
            return false;
        }
        if idlen == 5 && is_postmark(&self.buf) {
            if !self.rdheader.is_empty() {
                return false; // a second postmark: not this header's
            }
            while self.buflast == Some(b'>') {
                self.getline();
            }
        } else {
            while matches!(self.buflast, Some(b' ' | b'\t')) {
                self.getline();
            }
        }
        self.addbuf();
        true
    }

    fn addbuf(&mut self) {
        let f = Field::header(&self.buf);
        self.field_allocated(self.rdheader.len(), &f.text);
        self.rdheader.push(f);
        self.buf.clear();
    }

    /// A field block is allocated for `text`, to be field `index` of the
    /// current list: if it is the freed block the stale pointer points
    /// into, the new text overwrites the start of what it sees.
    fn field_allocated(&mut self, index: usize, text: &[u8]) {
        let Some(st) = self.stale.as_mut() else {
            return;
        };
        if st.reusable == Some(chunk_class(field_request(text.len()))) {
            let keep = st.text.get(text.len()..).unwrap_or_default().to_vec();
            st.text = [text, &keep[..]].concat();
            st.field = Some(index);
            st.reusable = None;
        }
    }

    /// Field `index`'s block (of `len` text bytes) is freed.
    fn field_freed(&mut self, index: usize, len: usize) {
        let class = chunk_class(field_request(len));
        if let Some(st) = self.stale.as_mut() {
            if st.field == Some(index) {
                st.field = None;
                st.reusable = Some(class);
            } else if st.reusable == Some(class) {
                st.reusable = None; // another block is on top now
            }
        }
    }

    /// The fields of the current list are freed, first to last.
    fn fields_freed(&mut self, fields: &[Field]) {
        for (j, f) in fields.iter().enumerate() {
            self.field_freed(j, f.text.len());
        }
    }

    /// Some other block of `request` bytes is freed.
    fn block_freed(&mut self, request: usize) {
        if let Some(st) = self.stale.as_mut()
            && st.reusable == Some(chunk_class(request))
        {
            st.reusable = None;
        }
    }

    /// A USENET `Article ` line starting a digest message.
    fn artheadr(&mut self) -> bool {
        if self.rdheader.is_empty() && self.buf.starts_with(b"Article ") {
            self.addbuf();
            self.rdheader[0].id_len = 8;
            return true;
        }
        false
    }

    fn digheadr(&self) -> bool {
        self.rdheader.last().is_some_and(is_known_header)
    }

    /// Runs formail; returns the exit code.
    pub fn run(mut self) -> i32 {
        match self.run_inner() {
            Ok(code) | Err(Stop::Exit(code)) => code,
        }
    }

    fn usage(&self) -> Result<i32, Stop> {
        eprint!("{}", super::options::USAGE);
        Err(Stop::Exit(EX_USAGE))
    }

    fn run_inner(&mut self) -> Result<i32, Stop> {
        if self.o.babyl {
            self.skip_babyl_leader();
        }
        // Leading empty lines are skipped.
        loop {
            self.buflast = self.getc();
            if self.buflast != Some(b'\n') {
                break;
            }
        }
        if self.o.split {
            if self.buflast.is_none() {
                return Ok(0);
            }
            self.fileno = fileno_start();
            if self.o.total == Some(0) {
                // formail has closed its stdout for the split by now, and
                // closing it again fails: `-0` ends in a write error.
                if !self.o.quiet {
                    eprintln!("formail: Couldn't write to stdout");
                }
                return Err(Stop::Exit(EX_IOERR));
            }
            self.startprog();
            if self.o.min_fields == 0 {
                self.o.min_fields = 2;
            }
        } else if self.o.skip > 0
            || self.o.total.is_some()
            || self.o.every
            || self.o.digest
            || self.o.min_fields != 0
            || self.o.nowait.is_some()
        {
            return self.usage(); // only meaningful with -s
        }
        let o = &self.o;
        let extracting = o.extracting();
        if (extracting && o.log_summary.is_some()) || (o.keep_body && !(o.reply || extracting)) {
            return self.usage();
        }
        if o.header_reply == 2 {
            eprintln!("formail: Invalid field-name: \"Resent-\"");
            return self.usage();
        }
        if o.reply {
            // A reply keeps the X-Loop: fields.
            self.iheader.push(Field::option(b"X-Loop:\n"));
        }
        let mut first = true;
        loop {
            self.read_header(first);
            first = false;
            if let Flow::Done(code) = self.message()? {
                return Ok(code);
            }
        }
    }

    /// Skips a BABYL file's leader: up to the line `\x1f\x0c`, then one
    /// more line.
    fn skip_babyl_leader(&mut self) {
        loop {
            let a = self.getc();
            if a.is_none() {
                break;
            }
            if a == Some(0x1f) && self.getc() == Some(0x0c) && self.getc() == Some(b'\n') {
                break;
            }
            while !matches!(self.getc(), Some(b'\n') | None) {}
        }
        while !matches!(self.getc(), Some(b'\n') | None) {}
    }

    /// Reads the rest of a message's header into `rdheader` (which may
    /// already hold the fields that made a split).
    fn read_header(&mut self, first: bool) {
        if !first || self.readhead() || (self.o.digest && self.artheadr()) {
            while self.readhead() {}
        }
    }

    /// One message, its header read: the header edits and output, then
    /// the body until the input ends or (`-s`) the next message starts.
    fn message(&mut self) -> Result<Flow, Stop> {
        let extracting = self.o.extracting();
        self.clean_header();
        self.first_line_forms();
        let was_postmark = !self.o.force && self.rdheader.first().is_some_and(Field::is_postmark);
        self.procfields(self.o.reply);
        let (sender, saved) = self.scan_header();
        self.elimdups(sender.as_deref(), saved.message_id.as_deref())?;
        let ctlength = self.content_length();
        let parked = std::mem::take(&mut self.buf);
        if self.o.reply {
            self.reply_header(sender.as_deref(), &saved);
        } else {
            self.add_postmark(sender.as_deref(), &saved, was_postmark);
        }
        let added = self.added_fields();
        if self.o.log_summary.is_some() {
            self.summary_lines();
        }
        self.buf = parked;
        self.write_header(&added);
        // formail frees the header, then the -a fields, then the sender.
        for f in &added {
            self.block_freed(field_request(f.text.len()));
        }
        if let Some(a) = &sender {
            self.block_freed(a.len() + 1);
        }
        if self.o.keep_body || !extracting {
            self.out.lput(b"\n");
        }
        if !self.o.keep_body && (self.o.reply || extracting) {
            // Only the header was wanted: the body goes nowhere.
            self.logfolder();
            if !self.o.split {
                return self.finish_onlyhead().map(Flow::Done);
            }
            self.closemine()?;
            self.out.dest = Dest::Sink;
        }
        if self.buf.len() == 1 {
            self.buf.clear(); // the header's empty line, already written
        }
        if self.o.babyl {
            self.skip_babyl_pseudo_header();
        }
        let mut lnl = true;
        if ctlength > 0 {
            lnl = self.copy_counted(ctlength, lnl);
        }
        self.body(lnl)
    }

    /// formail's special first lines: a USENET `Article ` line becomes a
    /// field, and in BABYL files a `Mail-from: From ...` line a postmark.
    fn first_line_forms(&mut self) {
        let (babyl, force) = (self.o.babyl, self.o.force);
        let Some(f) = self.rdheader.first_mut() else {
            return;
        };
        if f.text.starts_with(b"Article ") {
            f.text[7] = b':';
        } else if babyl && !force && f.text.starts_with(b"Mail-from:") {
            let k = skip_space(&f.text, 10);
            if is_postmark(&f.text[k..]) {
                f.text.drain(..k);
                f.id_len = 5;
            }
        }
    }

    /// The pass over the header fields: `-z` and `-c` edits, the sender,
    /// and the saved Subject/References/Message-ID/Date values.
    fn scan_header(&mut self) -> (Option<Vec<u8>>, Saved) {
        let mode = match (self.o.reply, self.o.header_reply) {
            (true, 1) => 1,
            (true, h) if h != 0 => 3,
            _ => 0,
        };
        let mut sender = Sender::default();
        let mut saved = Saved::default();
        let mut k = 0;
        while k < self.rdheader.len() {
            if self.o.zap {
                let f = &mut self.rdheader[k];
                let j = f.id_len;
                if j > 0 && f.text.get(j - 1) == Some(&b':') {
                    let c = f.text.get(j).copied().unwrap_or(b'\n');
                    if c != b' ' && c != b'\t' && f.text.len() > j + 1 {
                        f.text.insert(j, b' ');
                    } else if f.text.len() <= j + 2 {
                        // Pointing into a field that is freed right away.
                        let class = chunk_class(field_request(f.text.len()));
                        self.stale = Some(Stale {
                            text: f.text.clone(),
                            off: j,
                            field: None,
                            reusable: Some(class),
                        });
                        self.rdheader.remove(k);
                        continue;
                    }
                }
            }
            if self.o.concatenate {
                concatenate(&mut self.rdheader[k]);
            }
            let f = &self.rdheader[k];
            self.stale = Stale::in_field(f.text.clone(), f.id_len, k);
            sender.consider(f, k == 0, mode);
            let j = f.id_len;
            let name = &f.text[..j.min(f.text.len())];
            let slot = if name.eq_ignore_ascii_case(b"Subject:") {
                Some(&mut saved.subject)
            } else if name.eq_ignore_ascii_case(b"References:") {
                Some(&mut saved.references)
            } else if name.eq_ignore_ascii_case(b"Message-ID:") {
                Some(&mut saved.message_id)
            } else if name.eq_ignore_ascii_case(b"Date:") {
                Some(&mut saved.date)
            } else {
                None
            };
            if let Some(slot) = slot
                && f.text.len() - j > 1
            {
                *slot = Some(f.text[j..].to_vec());
            }
            k += 1;
        }
        (sender.address, saved)
    }

    /// The `Content-Length:` value to honour (0: none, or ignored).
    fn content_length(&self) -> i64 {
        let o = &self.o;
        let wanted = Field::option(b"Content-Length:\n");
        let forget = o.digest
            || o.berkeley
            || (o.keep_body
                && (o.reply
                    || (!o.extract_keep.is_empty() && find(&wanted, &o.extract_keep).is_none())));
        if forget {
            return 0;
        }
        match self.rdheader.iter().find(|h| matches(&wanted, h)) {
            Some(f) => {
                let s = f.id_len.min(f.text.len());
                strtol(&f.text[s..f.text.len().saturating_sub(1).max(s)])
            }
            None => 0,
        }
    }

    /// `-r`: the header becomes the reply's (the kept X-Loop: fields,
    /// To:, Subject:, References:, In-Reply-To:), then -i/-I/-R/-u/-U
    /// apply to it.
    fn reply_header(&mut self, sender: Option<&[u8]>, saved: &Saved) {
        let old = std::mem::take(&mut self.rdheader);
        let pointed = self.stale.as_ref().and_then(|st| st.field);
        let mut kept_index = None;
        for (j, f) in old.into_iter().enumerate() {
            if find(&f, &self.iheader).is_some_and(|i| self.iheader[i].name_only()) {
                if pointed == Some(j) {
                    kept_index = Some(self.rdheader.len());
                }
                self.rdheader.push(f);
            } else {
                self.field_freed(j, f.text.len());
            }
        }
        if let Some(st) = self.stale.as_mut()
            && st.field.is_some()
        {
            st.field = kept_index;
        }
        let mut to = b"To: ".to_vec();
        match sender {
            Some(a) => to.extend_from_slice(a),
            None => {
                self.retval = EX_NOUSER;
                to.extend_from_slice(UNKNOWN);
            }
        }
        to.push(b'\n');
        self.field_allocated(self.rdheader.len(), &to);
        self.rdheader.push(Field::header(&to));
        if let Some(s) = &saved.subject {
            self.stale = Stale::fixed(s.clone(), 0);
            // Debian's formail prefixes "Re:" even when the subject
            // already has one (observed with 3.22-27).
            let mut t = b"Subject: Re:".to_vec();
            load_saved(&mut t, s);
            self.field_allocated(self.rdheader.len(), &t);
            self.rdheader.push(Field::header(&t));
        }
        if saved.references.is_some() || saved.message_id.is_some() {
            let mut t = b"References:".to_vec();
            if let Some(r) = &saved.references {
                let r = if saved.message_id.is_some() {
                    &r[..r.len() - 1]
                } else {
                    &r[..]
                };
                load_saved(&mut t, r);
            }
            if let Some(m) = &saved.message_id {
                load_saved(&mut t, m);
            }
            self.field_allocated(self.rdheader.len(), &t);
            self.rdheader.push(Field::header(&t));
        }
        if let Some(m) = &saved.message_id {
            let mut t = b"In-Reply-To:".to_vec();
            load_saved(&mut t, m);
            self.field_allocated(self.rdheader.len(), &t);
            self.rdheader.push(Field::header(&t));
        }
        self.procfields(false);
    }

    /// Puts a `From ` postmark in front when the header has none (and
    /// `-f`, or a -i/-I/-R on `From `, does not forbid it); `-a "From "`
    /// asks for one even when the original had one.
    fn add_postmark(&mut self, sender: Option<&[u8]>, saved: &Saved, was_postmark: bool) {
        let o = &self.o;
        if o.force || self.rdheader.first().is_some_and(Field::is_postmark) {
            return;
        }
        let from_ = Field::option(b"From \n");
        let forced = find(&from_, &o.add_if_not).is_some_and(|i| o.add_if_not[i].text.len() <= 6);
        if !(forced
            || (!was_postmark
                && find(&from_, &self.iheader).is_none()
                && find(&from_, &o.delete_insert).is_none()
                && find(&from_, &o.rename).is_none()))
        {
            return;
        }
        let mut t = b"From ".to_vec();
        t.extend_from_slice(sender.unwrap_or(UNKNOWN));
        t.push(b' ');
        let date_opt = Field::option(b"Date:\n");
        match &saved.date {
            // `-a Date:`: the postmark takes the message's date.
            Some(d) if find(&date_opt, &o.add_if_not).is_some() => load_saved(&mut t, d),
            _ => {
                t.push(b' ');
                let now = ctime_now();
                t.extend_from_slice(now.as_bytes());
                self.stale = Stale::fixed(now.into_bytes(), 0);
            }
        }
        if let Some(st) = self.stale.as_mut()
            && let Some(i) = st.field.as_mut()
        {
            *i += 1;
        }
        self.field_allocated(0, &t);
        self.rdheader.insert(0, Field::header(&t));
    }

    /// The `-a` fields the header lacks (a bare `-a Message-ID:` gets a
    /// fresh id).
    fn added_fields(&mut self) -> Vec<Field> {
        let mut added = Vec::new();
        for a in self.o.add_if_not.clone() {
            if self.rdheader.iter().any(|h| matches(&a, h)) {
                continue;
            }
            let name = a.name();
            if a.name_only()
                && (name.eq_ignore_ascii_case(b"Message-ID:")
                    || name.eq_ignore_ascii_case(b"Resent-Message-ID:"))
            {
                let mut t = a.text[..a.id_len].to_vec();
                t.extend_from_slice(b" <");
                t.extend_from_slice(&self.new_message_id());
                t.extend_from_slice(b">\n");
                added.push(Field::header(&t));
                // formail's pointer is left on freed memory here.
                self.stale = None;
            } else {
                added.push(a);
            }
        }
        added
    }

    /// `-l`: the postmark and ` Subject: ...` lines of procmail's log.
    fn summary_lines(&mut self) {
        if let Some(f) = self.rdheader.first()
            && f.is_postmark()
        {
            self.out.put(&f.text);
        }
        let subj = Field::option(b"Subject:\n");
        if let Some(i) = self.rdheader.iter().position(|h| matches(&subj, h)) {
            let f = &mut self.rdheader[i];
            concatenate(f);
            let mut s = f.text[..f.text.len() - 1].to_vec();
            detab(&mut s);
            self.stale = Stale::fixed(s.clone(), 0);
            s.truncate(78);
            self.out.put(b" ");
            self.out.put(&s);
            self.out.put(b"\n");
        }
    }

    /// Writes the header: its fields, the `-a` additions, then the `-A`,
    /// `-i` and `-I` fields that have a value.
    fn write_header(&mut self, added: &[Field]) {
        let header = std::mem::take(&mut self.rdheader);
        self.fields_freed(&header);
        let (o, out) = (&self.o, &mut self.out);
        for f in header.iter().chain(added) {
            extract_field(o, out, f);
        }
        let inserted = o
            .add_always
            .iter()
            .chain(&self.iheader)
            .chain(&o.delete_insert);
        for f in inserted.filter(|f| !f.name_only()) {
            extract_field(o, out, f);
        }
    }

    /// Skips a BABYL message's pseudo header (up to an empty line).
    fn skip_babyl_pseudo_header(&mut self) {
        let mut lc = 0u8;
        let mut c;
        loop {
            c = self.getc();
            match c {
                None => break,
                Some(b'\n') if lc == b'\n' => break,
                Some(x) => lc = x,
            }
        }
        self.buflast = c;
    }

    /// Copies `ctlength` body bytes as they are (no escaping, no split);
    /// returns whether the copy ended on an empty line.
    fn copy_counted(&mut self, mut ctlength: i64, mut lnl: bool) -> bool {
        if !self.buf.is_empty() {
            let b = std::mem::take(&mut self.buf);
            self.out.lput(&b);
            ctlength -= b.len() as i64;
            lnl = false;
        }
        let mut tbl = self.buflast;
        let mut lwr = Some(b'\n');
        loop {
            ctlength -= 1;
            if ctlength < 0 {
                break;
            }
            let Some(c) = tbl else { break };
            lnl = lwr == Some(c) && c == b'\n';
            self.out.lput(&[c]);
            lwr = Some(c);
            tbl = self.getc();
        }
        self.buflast = tbl;
        if tbl == Some(b'\n') && lwr != tbl {
            // Stopped just before a line break: take it along.
            self.out.lput(b"\n");
            self.buflast = self.getc();
        }
        if !self.o.quiet && ctlength > 0 {
            eprintln!("formail: Content-Length: field exceeds actual length by {ctlength} bytes");
        }
        lnl
    }

    /// The body, line by line, until the input ends or (`-s`) the next
    /// message starts. `lnl`: the last line written was empty.
    fn body(&mut self, mut lnl: bool) -> Result<Flow, Stop> {
        let mut babyl_start = false;
        while !self.buf.is_empty() || !lnl || self.buflast.is_some() {
            if self.buf.is_empty() {
                self.readhead();
            }
            if (!self.o.babyl || babyl_start) && self.next_message_starts(lnl) {
                if !lnl {
                    self.out.lput(b"\n");
                }
                self.logfolder();
                if !self.out.close() {
                    self.split_failed = true;
                    if !self.o.quiet {
                        eprintln!("formail: Couldn't write to stdout, continuing...");
                    }
                }
                if self.o.nowait.is_none()
                    && !self.o.command.is_empty()
                    && let Some(kid) = self.kids.pop()
                {
                    let code = kid.wait();
                    if code != 0 && self.retval == 0 {
                        self.retval = code;
                    }
                }
                if self.o.total == Some(0) {
                    return Ok(Flow::Done(self.finish()));
                }
                self.startprog();
                return Ok(Flow::Next);
            }
            lnl = self.buf.len() == 1;
            if self.o.babyl && self.buf.first() == Some(&0x1f) {
                babyl_start = true;
                self.out.close();
                self.out.dest = Dest::Sink;
            }
            if self.o.reply && self.o.bogus {
                // `-rk`: the body is quoted, empty lines excepted.
                if !self.rdheader.is_empty() {
                    let fields = std::mem::take(&mut self.rdheader);
                    for f in &fields {
                        for line in f.text.split_inclusive(|&c| c == b'\n') {
                            self.out.lput(&self.o.prefix);
                            self.out.lput(line);
                        }
                    }
                    self.fields_freed(&fields);
                } else {
                    if self.buf.len() > 1 {
                        self.out.lput(&self.o.prefix);
                    }
                    self.out.lput(&self.buf);
                    self.buf.clear();
                }
            } else if !self.rdheader.is_empty() {
                let fields = std::mem::take(&mut self.rdheader);
                for f in &fields {
                    self.out.lput(&f.text);
                }
                self.fields_freed(&fields);
            } else {
                self.out.lput(&self.buf);
                self.buf.clear();
            }
        }
        self.logfolder();
        self.finish_onlyhead().map(Flow::Done)
    }

    /// Looks at the body line just read (in `rdheader` when it parsed as
    /// a field, else in `buf`): whether a new message starts here (`-s`
    /// only: a real postmark, or under `-d` known header fields, followed
    /// by enough header fields). A `From ` line that does not start one
    /// gets the escape prefix written before it (unless `-b`).
    fn next_message_starts(&mut self, lnl: bool) -> bool {
        let o = &self.o;
        let (split, digest, every, bogus) = (o.split, o.digest, o.every, o.bogus);
        let at_start = lnl || every;
        let mut from_line = false;
        let mut accumulate = false;
        if let Some(f) = self.rdheader.first() {
            self.stale = Stale::in_field(f.text.clone(), 0, 0);
            if f.is_postmark() {
                from_line = true;
            } else if split && digest && at_start && self.digheadr() {
                accumulate = true;
            }
        } else if is_postmark(&self.buf) {
            self.addbuf();
            from_line = true;
        } else if split && digest && at_start && self.artheadr() {
            accumulate = true;
        }
        if from_line {
            if split && at_start && self.postmark_at() {
                accumulate = true;
            } else if bogus {
                self.out.lput(&self.o.prefix);
            }
        }
        if !accumulate {
            return false;
        }
        // Enough header fields must follow (-m, 2 by default).
        let mut i = self.o.min_fields;
        loop {
            i = i.saturating_sub(1);
            if i == 0 || !self.readhead() || !self.digheadr() {
                break;
            }
        }
        i == 0
    }

    /// formail's `onlyhead`: close the output (exit 74 if it failed),
    /// then finish.
    fn finish_onlyhead(&mut self) -> Result<i32, Stop> {
        self.closemine()?;
        Ok(self.finish())
    }

    /// formail's `nconlyhead`: wait for every program, then the exit code.
    fn finish(&mut self) -> i32 {
        if self.o.split {
            for kid in std::mem::take(&mut self.kids) {
                let code = kid.wait();
                if self.retval == 0 && code != 0 {
                    self.retval = code;
                }
            }
        }
        if self.retval < 0 {
            self.retval = EX_UNAVAILABLE;
        }
        if self.retval != 0 {
            self.retval
        } else if self.split_failed {
            EX_IOERR
        } else {
            0
        }
    }

    fn closemine(&mut self) -> Result<(), Stop> {
        if !self.out.close() {
            if !self.o.quiet {
                eprintln!("formail: Couldn't write to stdout");
            }
            return Err(Stop::Exit(EX_IOERR));
        }
        Ok(())
    }

    /// The `-l` summary line for the message just written.
    fn logfolder(&mut self) {
        let Some(folder) = &self.o.log_summary else {
            return;
        };
        let mut line = b"  Folder: ".to_vec();
        line.extend_from_slice(folder);
        let mut i = line.len();
        i -= i % 8;
        loop {
            line.push(b'\t');
            i += 8;
            if i >= 72 {
                break;
            }
        }
        line.extend_from_slice(format!("{:>7}\n", self.out.total).as_bytes());
        self.out.put(&line);
        self.out.total = 0;
    }

    /// Starts the next `-s` message: skipped ones go nowhere; otherwise
    /// the program is started with the output piped to it (or stdout).
    fn startprog(&mut self) {
        if self.o.skip > 0 {
            self.o.skip -= 1;
            self.out.dest = Dest::Sink;
            return;
        }
        if let Some(t) = self.o.total.as_mut()
            && *t > 0
        {
            *t -= 1;
        }
        if self.o.command.is_empty() {
            self.out.dest = Dest::Stdout;
            return;
        }
        let mut fileno_value = None;
        if let Some((next, width)) = self.fileno.as_mut() {
            let v = *next;
            *next += 1;
            fileno_value = Some(if v < 0 {
                format!("-{:0w$}", -v, w = width.saturating_sub(1))
            } else {
                format!("{v:0width$}", width = *width)
            });
        }
        // Collect finished programs; with -n N wait while N are running.
        self.kids.retain_mut(|kid| {
            let code = match kid {
                Kid::Failed(code) => *code,
                Kid::Running(c) => match c.try_wait() {
                    Ok(Some(st)) => status_code(st),
                    _ => return true,
                },
            };
            if code != 0 {
                self.retval = code;
            }
            false
        });
        if let Some(limit) = self.o.nowait
            && limit > 0
        {
            while self.kids.len() >= limit {
                let kid = self.kids.remove(0);
                let code = kid.wait();
                if code != 0 {
                    self.retval = code;
                }
            }
        }
        let argv: Vec<std::ffi::OsString> = self
            .o
            .command
            .iter()
            .map(|a| std::os::unix::ffi::OsStringExt::from_vec(a.clone()))
            .collect();
        let spawn = |prog: &std::ffi::OsStr, args: &[std::ffi::OsString]| {
            let mut c = Command::new(prog);
            c.args(args).stdin(Stdio::piped());
            if let Some(v) = &fileno_value {
                c.env("FILENO", v);
            }
            c.spawn()
        };
        let child = spawn(&argv[0], &argv[1..]).or_else(|_| {
            // Not executable as it stands: formail hands it to the shell
            // as a script (common.c shexec).
            spawn(std::ffi::OsStr::new("/bin/sh"), &argv)
        });
        match child {
            Ok(mut c) => {
                let stdin = c.stdin.take();
                self.kids.push(Kid::Running(c));
                self.out.dest = match stdin {
                    Some(p) => Dest::Pipe(BufWriter::with_capacity(64 * 1024, p)),
                    None => Dest::Sink,
                };
            }
            Err(_) => {
                eprintln!(
                    "formail: Failed to execute \"{}\"",
                    String::from_utf8_lossy(&self.o.command[0])
                );
                self.kids.push(Kid::Failed(EX_UNAVAILABLE));
                self.out.dest = Dest::Sink;
            }
        }
    }

    /// `-D`: look the key up; without `-s` that decides the exit code
    /// (0 duplicate, 1 new) and nothing is written. Nothing without `-D`.
    fn elimdups(&mut self, namep: Option<&[u8]>, msgid: Option<&[u8]>) -> Result<(), Stop> {
        let Some((file, maxlen)) = self.cache.as_mut() else {
            return Ok(());
        };
        let key = if self.o.reply {
            namep
        } else {
            msgid.map(|m| &m[..m.len() - 1])
        };
        let mut dup = false;
        if let Some(key) = key {
            // A C string: up to the first NUL, leading spaces skipped.
            let key = key.split(|&c| c == 0).next().unwrap_or_default();
            let key = &key[key.iter().take_while(|&&c| c == b' ').count()..];
            match cache::check_and_record(file, key, *maxlen) {
                Ok(d) => dup = d,
                Err(e) if !self.o.quiet => {
                    eprintln!("formail: error on the duplicate cache: {e}");
                }
                Err(_) => {}
            }
            if dup && !self.o.quiet {
                eprintln!(
                    "formail: Duplicate key found:{}",
                    String::from_utf8_lossy(key)
                );
            }
        }
        if !self.o.split {
            return Err(Stop::Exit(if dup { 0 } else { 1 }));
        }
        if dup {
            self.closemine()?;
            self.out.dest = Dest::Sink;
        }
        Ok(())
    }

    /// Removes blanks before the colon of every field name.
    fn clean_header(&mut self) {
        for f in &mut self.rdheader {
            let j = f.id_len;
            if j >= 2 && f.text[j - 1] == b':' && matches!(f.text[j - 2], b' ' | b'\t') {
                let mut q = j - 2;
                while q > 0 && matches!(f.text[q - 1], b' ' | b'\t') {
                    q -= 1;
                }
                f.text.drain(q..j - 1);
                f.id_len -= j - 1 - q;
            }
        }
    }

    /// Applies -i, -I, -R, -u and -U to `rdheader` (no -u/-U field seen
    /// yet: formail's `clear_uhead` before each pass). `reply_pass` is
    /// the pass over the original header when a reply is being built.
    fn procfields(&mut self, reply_pass: bool) {
        for u in self.uheader.iter_mut().chain(self.u_last.iter_mut()) {
            u.1 = None;
        }
        let fields = std::mem::take(&mut self.rdheader);
        let mut out: Vec<Option<Field>> = Vec::with_capacity(fields.len());
        for mut f in fields {
            let mut renamed = false;
            if !reply_pass
                && let Some(i) = find(&f, &self.iheader)
                && !(self.o.reply && f.id_len + 1 >= self.iheader[i].text.len())
            {
                rename_field(&mut f, 0, b"Old-");
                renamed = true;
            }
            if !renamed {
                if let Some(i) = find(&f, &self.o.delete_insert) {
                    let opt_len = self.o.delete_insert[i].text.len() - 1;
                    if !(reply_pass && f.id_len < opt_len) {
                        continue;
                    }
                }
                if let Some(i) = find(&f, &self.o.rename) {
                    let r = self.o.rename[i].clone();
                    rename_field(&mut f, r.id_len, &r.text[r.id_len..]);
                }
            }
            let uf = find_unique(&mut self.uheader, &f);
            if let Some(ui) = uf
                && self.uheader[ui].1.is_none()
            {
                self.uheader[ui].1 = Some(out.len());
                out.push(Some(f));
                continue;
            }
            if let Some(ui) = find_unique(&mut self.u_last, &f) {
                if let Some(prev) = self.u_last[ui].1 {
                    out[prev] = None;
                }
                self.u_last[ui].1 = Some(out.len());
                out.push(Some(f));
                continue;
            }
            if uf.is_some() {
                continue;
            }
            out.push(Some(f));
        }
        self.rdheader = out.into_iter().flatten().collect();
    }

    /// formail's postmark test in a body. It reads through its `chp`
    /// pointer, which normally holds the `From ` line just read; but for
    /// a `From ` line that ended a header (read before the header was
    /// processed), formail jumps to the test without setting it, so the
    /// test reads whatever `chp` last pointed at: the generated
    /// postmark's date (which passes: the line splits), a reply's
    /// subject, or the last header field's value (which rarely passes:
    /// the line is escaped). We keep that pointer's target in `stale`.
    fn postmark_at(&mut self) -> bool {
        let Some(st) = self.stale.as_mut() else {
            return false;
        };
        let (ok, at) = postmark_looks_real(&st.text, st.off);
        st.off = at;
        ok
    }

    /// A fresh Message-ID (formail's shape: four numbers in procmail's
    /// base 64 joined by dots, `@` the host name).
    fn new_message_id(&mut self) -> Vec<u8> {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let numbers = [
            self.rhash & 0xffff_ffff,
            self.id_counter,
            u64::from(self.pid),
            t,
        ];
        let mut id = numbers.map(inode_code).join(&b'.');
        id.push(b'@');
        id.extend_from_slice(&local_host());
        self.id_counter += 1;
        id
    }
}

/// Prints a header field, or under -x/-X only when it is asked for (-x:
/// its value only).
fn extract_field(o: &Options, out: &mut Out, f: &Field) {
    if o.extracting() {
        if find(f, &o.extract).is_some() {
            let end = f.text.len().saturating_sub(1).max(f.id_len);
            let mut s = f.id_len.min(end);
            let mut e = end;
            if o.zap {
                s = skip_space(&f.text, s).min(e);
                while e > s && matches!(f.text[e - 1], b' ' | b'\t') {
                    e -= 1;
                }
            }
            out.put(&f.text[s..e]);
            out.put(b"\n");
            return;
        }
        if find(f, &o.extract_keep).is_none() {
            return;
        }
    }
    out.lput(&f.text);
}

/// formail's `findf` on the -u/-U lists: a prefix entry that matches a
/// longer name first gets an exact entry for that name inserted before
/// it, so each distinct field name is kept unique on its own.
fn find_unique(list: &mut Vec<(Field, Option<usize>)>, f: &Field) -> Option<usize> {
    let i = list.iter().position(|(h, _)| matches(f, h))?;
    if f.id_len > list[i].0.id_len {
        let exact = Field::option(&f.text[..f.id_len]);
        list.insert(i, (exact, None));
    }
    Some(i)
}

/// Renames a field: replaces the first `oldl` bytes of its name with
/// `new` (a whole new name when `new` ends in a colon or is `From `).
fn rename_field(f: &mut Field, oldl: usize, new: &[u8]) {
    let last = f.text.len().saturating_sub(1);
    if is_postmark(&f.text) {
        // A postmark's `>From` continuation lines become ordinary ones.
        for k in 0..last {
            if f.text[k] == b'\n' && k + 1 < last && f.text[k + 1] == b'>' {
                f.text[k + 1] = b' ';
            }
        }
    }
    let mut oldl = oldl;
    if new.len() == 5 && is_postmark(new) {
        for k in 0..last {
            if f.text[k] == b'\n' && k + 1 < last && matches!(f.text[k + 1], b' ' | b'\t') {
                f.text[k + 1] = b'>';
            }
        }
        oldl = f.id_len;
    } else if new.last() == Some(&b':') {
        oldl = f.id_len;
    }
    let oldl = oldl.min(f.text.len());
    f.id_len = f.id_len + new.len() - oldl;
    let mut t = new.to_vec();
    t.extend_from_slice(&f.text[oldl..]);
    f.text = t;
}

/// `-c`: every newline but the last becomes a space (not in postmarks).
fn concatenate(f: &mut Field) {
    if f.is_postmark() {
        return;
    }
    let n = f.text.len();
    for k in 0..n.saturating_sub(1) {
        if f.text[k] == b'\n' {
            f.text[k] = b' ';
        }
    }
}

/// Appends a saved field value, with a blank before it if it has none.
fn load_saved(t: &mut Vec<u8>, v: &[u8]) {
    if !matches!(v.first(), Some(b' ' | b'\t')) {
        t.push(b' ');
    }
    t.extend_from_slice(v);
}

/// Whether the text at `off` looks like the rest of a postmark that
/// starts a message: after 5 bytes (`From `) and blanks, a word, and
/// then more than a line end. Bytes past the end read as NUL, as in C.
/// Returns the answer and where formail's pointer is left (at the word).
fn postmark_looks_real(text: &[u8], off: usize) -> (bool, usize) {
    let at = |i: usize| text.get(i).copied().unwrap_or(0);
    let mut s = off + 5;
    while matches!(at(s), b' ' | b'\t') {
        s += 1;
    }
    let mut k = 0;
    while !matches!(at(s + k), b' ' | b'\t' | b'\n' | 0) {
        k += 1;
    }
    let mut e = s + k;
    while matches!(at(e), b' ' | b'\t') {
        e += 1;
    }
    (k > 0 && at(e) != b'\n', s)
}

/// C's strtol in base 10, as formail calls it: 0 when no digit is read.
fn strtol(v: &[u8]) -> i64 {
    crate::rc::vars::strtol(v).unwrap_or(0)
}

/// The `FILENO` counter: its start and width from the environment
/// (`000` when unset); `None` when the variable holds no number, in which
/// case it is passed on untouched.
fn fileno_start() -> Option<(i64, usize)> {
    use std::os::unix::ffi::OsStrExt;
    let v = std::env::var_os("FILENO");
    let v: Vec<u8> = v.map_or_else(|| b"000".to_vec(), |s| s.as_bytes().to_vec());
    let mut width = v.len().min(25);
    let mut i = 0;
    while i < v.len() && v[i].is_ascii_whitespace() {
        i += 1;
    }
    let neg = v.get(i) == Some(&b'-');
    if matches!(v.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let ds = i;
    while i < v.len() && v[i].is_ascii_digit() {
        i += 1;
    }
    if i == ds {
        i = 0; // strtol read nothing
    }
    if i < v.len() {
        return None;
    }
    let n = strtol(&v);
    if n < 0 || neg {
        width = width.saturating_sub(1);
    }
    Some((n, width))
}

/// The current time the way ctime(3) prints it (local time, newline
/// included).
fn ctime_now() -> String {
    let now = chrono::Local::now();
    format!("{}\n", now.format(crate::message::CTIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_keeps_the_rest() {
        let mut f = Field::header(b"X-Old-Foo: v\n");
        rename_field(&mut f, 5, b"X-New");
        assert_eq!(f.text, b"X-New-Foo: v\n");
        assert_eq!(f.id_len, 10);
        let mut f = Field::header(b"Subject: v\n");
        rename_field(&mut f, 8, b"Topic:");
        assert_eq!(f.text, b"Topic: v\n");
        let mut f = Field::header(b"Subject: v\n");
        rename_field(&mut f, 0, b"Old-");
        assert_eq!(f.text, b"Old-Subject: v\n");
        assert_eq!(f.id_len, 12);
    }

    #[test]
    fn body_postmarks() {
        assert!(postmark_looks_real(b"From a@b  Mon Jan 1\n", 0).0);
        assert!(!postmark_looks_real(b"From a@b\n", 0).0);
        assert!(!postmark_looks_real(b"From \n", 0).0);
        assert!(!postmark_looks_real(b"From   \n", 0).0);
        // Past the end reads as NUL: no word, no split.
        assert!(!postmark_looks_real(b" a\n", 0).0);
        // A ctime string passes from its sixth byte on.
        assert!(postmark_looks_real(b"Thu Nov 26 15:59:49 2026\n", 0).0);
    }

    #[test]
    fn malloc_classes() {
        // glibc on 64-bit: 16-byte steps, 32 at least, 8 bytes overhead.
        assert_eq!(chunk_class(1), 32);
        assert_eq!(chunk_class(24), 32);
        assert_eq!(chunk_class(25), 48);
        assert_eq!(chunk_class(field_request(14)), 48);
        assert_eq!(chunk_class(field_request(6)), 48);
        assert_eq!(chunk_class(field_request(34)), 80);
    }

    #[test]
    fn a_reused_block_is_overwritten_only_as_far_as_the_new_field() {
        let mut e = Engine::new(Options::default(), Box::new(std::io::empty()), None);
        let old = b"b:a[:<R;\tR!\n".to_vec();
        e.stale = Stale::in_field(old.clone(), 2, 3);
        // Freed as field 3 of its list: on top of its size class.
        e.field_freed(3, old.len());
        assert_eq!(e.stale.as_ref().unwrap().reusable, Some(48));
        // A field of another class leaves it alone.
        e.field_allocated(0, &[b'x'; 60]);
        assert_eq!(e.stale.as_ref().unwrap().text, old);
        // One of the same class lands on it.
        e.field_allocated(0, b"From \n");
        let st = e.stale.as_ref().unwrap();
        assert_eq!(st.text, b"From \nR;\tR!\n");
        assert_eq!((st.field, st.reusable), (Some(0), None));
        // formail's test then reads past the new line into the old bytes.
        assert!(postmark_looks_real(&st.text, st.off).0);
    }

    #[test]
    fn a_later_free_of_the_same_class_buries_the_block() {
        let mut e = Engine::new(Options::default(), Box::new(std::io::empty()), None);
        e.stale = Stale::in_field(b"Subject: a\n".to_vec(), 8, 0);
        e.fields_freed(&[
            Field::header(b"Subject: a\n"),
            Field::header(b"To: b@c.de\n"),
        ]);
        assert_eq!(e.stale.as_ref().unwrap().reusable, None);
        e.field_allocated(0, b"From z@w  Tue\n");
        assert_eq!(e.stale.as_ref().unwrap().text, b"Subject: a\n");
    }

    #[test]
    fn numbers() {
        assert_eq!(strtol(b" 42x"), 42);
        assert_eq!(strtol(b"-7"), -7);
        assert_eq!(strtol(b"x"), 0);
        assert_eq!(inode_code(0), b"A");
    }
}
