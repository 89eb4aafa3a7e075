//! formail's command line, parsed the way formail parses it.
//!
//! Owns turning the argument vector into [`Options`]; it opens no file and
//! reads no message (the `-D` cache is opened by the caller). formail's
//! parser is not getopt: letters bundle (`-rtk`), an option that takes a
//! value takes the rest of its argument or, when that is empty, the next
//! argument (`-I"Precedence: junk"`, `-I Received`), `-D` and `-m` take
//! a number the same way and `-D` then a file name, `+N` and `-N` are
//! counts, and `-s` ends the options: everything after it is the command.
//! A value-taking letter inside a bundle eats the rest of the bundle
//! (`-rD 8192 file` works, `-Dr` does not: `r` is not a number).

use super::field::{Field, break_field, detab};

/// The usage text formail prints on stderr for a bad command line.
pub const USAGE: &str = "Usage: formail [-vbczfrktqY] [-D nnn idcache] [-p prefix] [-l folder]
\t[-xXaAiIuU field] [-R ofield nfield]
   Or: formail [+nnn] [-nnn] [-bczfrktedqBY] [-D nnn idcache] [-p prefix]
\t[-n [nnn]] [-m nnn] [-l folder] [-xXaAiIuU field] [-R ofield nfield]
\t-s [prg [arg ...]]
";

/// The option summary `-h` adds to [`USAGE`].
pub const HELP: &str = " -v\t\tdisplay the version number and exit
 -b\t\tdon't escape bogus mailbox headers
 -Y\t\tBerkeley format mailbox, disregard Content-Length:
 -c\t\tconcatenate continued header-fields
 -z\t\tzap whitespace and empty header-fields
 -f\t\tforce formail to pass along any non-mailbox format
 -r\t\tgenerate an auto-reply header, preserve fields with -i
 -k\t\ton auto-reply keep the body, prevent escaping with -b
 -t\t\treply to the header sender instead of the envelope sender
 -l folder\tgenerate a procmail-compatible log summary
 -D nnn idcache\tdetect duplicates with an idcache of length nnn
 -s prg arg\tsplit the mail, startup prg for every message
 +nnn\t\tskip the first nnn\t-nnn\toutput at most nnn messages
 -n [nnn]\tdon't serialise splits\t-e\tempty lines are optional
 -d\t\taccept digest format\t-B\texpect BABYL rmail format
 -q\t\tbe quiet\t\t-p prefix\tquotation prefix
 -m nnn \tmin fields threshold (default 2) for start of message
 -x field\textract contents\t-X field\textract fully
 -a field\tadd if not present\t-A field\tadd in any case
 -i field\trename and insert\t-I field\tdelete and insert
 -u field\tfirst unique\t\t-U field\tlast unique
 -R oldfield newfield\trename
";

/// The longest `-l` folder name formail keeps (its log line is 72
/// columns: `  Folder: ` plus the name plus at least one tab).
pub const MAX_FOLDER_LEN: usize = 61;

/// Everything the command line says. Field lists keep the order given.
/// `Options::default()` is formail run without arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `-r`: build a reply header.
    pub reply: bool,
    /// `-t` (bit 1) and `-a Resent-` (bit 2): which sender ranking a reply
    /// uses (`headreply` in formail).
    pub header_reply: u8,
    /// `-f`: never add a postmark.
    pub force: bool,
    /// `-e`: a message may start without an empty line before it.
    pub every: bool,
    /// `-d` (and `-B`): digests: split at known header fields too.
    pub digest: bool,
    /// `-B`: BABYL rmail input.
    pub babyl: bool,
    /// `-n [N]`: run the `-s` programs in parallel, at most N at once
    /// (0: no limit).
    pub nowait: Option<usize>,
    /// `-k`: keep the body.
    pub keep_body: bool,
    /// `-c`: join continued header fields.
    pub concatenate: bool,
    /// `-z`: ensure a blank after the colon, drop empty fields, trim `-x`.
    pub zap: bool,
    /// Not `-q-`: warnings are not printed.
    pub quiet: bool,
    /// `-l folder`: print a procmail log summary instead of the message.
    pub log_summary: Option<Vec<u8>>,
    /// `-s`: split a mailbox.
    pub split: bool,
    /// The command after `-s` (may be empty: write to stdout).
    pub command: Vec<Vec<u8>>,
    /// `+N`: skip the first N messages.
    pub skip: usize,
    /// `-N`: at most N messages (`None`: all).
    pub total: Option<usize>,
    /// `-m N`: header fields needed to recognise a message start (0: the
    /// default, 2).
    pub min_fields: usize,
    /// `-D maxlen cachefile`.
    pub duplicates: Option<(u64, Vec<u8>)>,
    /// Not `-b`: escape `From ` lines in the body.
    pub bogus: bool,
    /// `-Y`: ignore `Content-Length:`.
    pub berkeley: bool,
    /// `-p prefix`: the quotation/escape prefix (default `>`).
    pub prefix: Vec<u8>,
    /// `-a`: add if not present.
    pub add_if_not: Vec<Field>,
    /// `-A`: add always.
    pub add_always: Vec<Field>,
    /// `-i`: rename old to `Old-` and insert.
    pub rename_insert: Vec<Field>,
    /// `-I`: delete old and insert.
    pub delete_insert: Vec<Field>,
    /// `-x`: extract contents.
    pub extract: Vec<Field>,
    /// `-X`: extract whole fields.
    pub extract_keep: Vec<Field>,
    /// `-u`: keep the first of these.
    pub first_unique: Vec<Field>,
    /// `-U`: keep the last of these.
    pub last_unique: Vec<Field>,
    /// `-R old new`: each entry's text is the old name then the new one,
    /// its `id_len` the old name's length.
    pub rename: Vec<Field>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            reply: false,
            header_reply: 0,
            force: false,
            every: false,
            digest: false,
            babyl: false,
            nowait: None,
            keep_body: false,
            concatenate: false,
            zap: false,
            quiet: true,
            log_summary: None,
            split: false,
            command: Vec::new(),
            skip: 0,
            total: None,
            min_fields: 0,
            duplicates: None,
            bogus: true,
            berkeley: false,
            prefix: b">".to_vec(),
            add_if_not: Vec::new(),
            add_always: Vec::new(),
            rename_insert: Vec::new(),
            delete_insert: Vec::new(),
            extract: Vec::new(),
            extract_keep: Vec::new(),
            first_unique: Vec::new(),
            last_unique: Vec::new(),
            rename: Vec::new(),
        }
    }
}

impl Options {
    /// `-x` or `-X`: only the named fields are written.
    pub fn extracting(&self) -> bool {
        !self.extract.is_empty() || !self.extract_keep.is_empty()
    }
}

/// Why parsing stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A bad or incomplete command line: print [`USAGE`], exit 64.
    Usage,
    /// `-h` or `-?`: print [`USAGE`] and [`HELP`], exit 64.
    Help,
    /// `-v`: print the version, exit 64 (as formail does).
    Version,
    /// A field option whose argument is no field name: this message
    /// (`Invalid field-name: "x"`), then the usage, exit 64.
    InvalidField(Vec<u8>),
}

/// Parses formail's arguments (without `argv[0]`).
///
/// Like formail, the parser keeps one cursor: an option that takes a
/// value moves it into the next argument when its own is used up, and
/// letters are then read on from wherever the value ended.
pub fn parse(args: &[Vec<u8>]) -> Result<Options, ParseError> {
    let (o, r) = parse_partial(args);
    r.map(|()| o)
}

/// Like [`parse`], but also returns what was read before an error:
/// formail opens (creates) a `-D` cache file as soon as it reads the
/// option, so the file exists, or its failure to open decides the exit
/// code, even when a later argument is bad.
pub fn parse_partial(args: &[Vec<u8>]) -> (Options, Result<(), ParseError>) {
    let mut o = Options::default();
    let r = parse_into(&mut o, args);
    (o, r)
}

fn parse_into(o: &mut Options, args: &[Vec<u8>]) -> Result<(), ParseError> {
    let mut a = 0usize;
    let at = |a: usize, i: usize| args.get(a).and_then(|x| x.get(i)).copied().unwrap_or(0);
    'args: while a < args.len() {
        let mut i = 1usize;
        let mut letter = at(a, 0);
        let mut number_now = match letter {
            b'+' => true,
            b'-' => false,
            _ => return Err(ParseError::Usage),
        };
        loop {
            if !number_now {
                letter = at(a, i);
                i += 1;
                match letter {
                    0 => break,
                    b't' => o.header_reply |= 1,
                    b'r' => o.reply = true,
                    b'f' => o.force = true,
                    b'e' => o.every = true,
                    b'B' => {
                        o.babyl = true;
                        o.every = true;
                        o.digest = true;
                    }
                    b'd' => o.digest = true,
                    b'n' => {
                        next_value(args, &mut a, &mut i)?;
                        let (n, used) = leading_number(&args[a][i..]);
                        o.nowait = Some(usize::try_from(n).unwrap_or(usize::MAX));
                        i += used;
                    }
                    b'k' => o.keep_body = true,
                    b'c' => o.concatenate = true,
                    b'z' => o.zap = true,
                    b'q' => {
                        o.quiet = true;
                        if at(a, i) == b'-' {
                            i += 1;
                            o.quiet = false;
                        }
                    }
                    b'l' => {
                        next_value(args, &mut a, &mut i)?;
                        let mut name = args[a][i..].to_vec();
                        name.truncate(MAX_FOLDER_LEN);
                        detab(&mut name);
                        o.log_summary = Some(name);
                        break;
                    }
                    b's' => {
                        if at(a, i) != 0 {
                            return Err(ParseError::Usage);
                        }
                        o.split = true;
                        o.command = args[a + 1..].to_vec();
                        break 'args;
                    }
                    b'h' | b'?' => return Err(ParseError::Help),
                    b'v' => return Err(ParseError::Version),
                    b'b' => o.bogus = false,
                    b'Y' => o.berkeley = true,
                    b'p' => {
                        next_value(args, &mut a, &mut i)?;
                        o.prefix = args[a][i..].to_vec();
                        break;
                    }
                    b'a' | b'A' | b'i' | b'I' | b'x' | b'X' | b'u' | b'U' | b'R' => {
                        next_value(args, &mut a, &mut i)?;
                        let text = args[a][i..].to_vec();
                        field_option(o, letter, &text, args, &mut a)?;
                        break;
                    }
                    b'D' | b'm' => {
                        next_value(args, &mut a, &mut i)?;
                        number_now = true;
                    }
                    // Anything else must be the digits of `-N` (formail
                    // steps back and reads a number, failing otherwise).
                    _ => {
                        i -= 1;
                        number_now = true;
                    }
                }
                if !number_now {
                    continue; // a flag: the next letter
                }
            }
            number_now = false;
            // The number, at the cursor.
            if !at(a, i).is_ascii_digit() {
                return Err(ParseError::Usage);
            }
            let (n, used) = leading_number(&args[a][i..]);
            i += used;
            match letter {
                b'+' => o.skip = usize::try_from(n).unwrap_or(usize::MAX),
                b'D' => {
                    // Then the cache file: the rest of this argument or
                    // the next one; nothing more is read from it.
                    next_value(args, &mut a, &mut i)?;
                    o.duplicates = Some((n, args[a][i..].to_vec()));
                    break;
                }
                b'm' => o.min_fields = usize::try_from(n).unwrap_or(usize::MAX),
                _ => o.total = Some(usize::try_from(n).unwrap_or(usize::MAX)),
            }
        }
        a += 1;
    }
    Ok(())
}

/// formail's "next argument" rule for a value: the rest of this argument
/// from the cursor if any, else the next argument (a usage error if
/// there is none).
fn next_value(args: &[Vec<u8>], a: &mut usize, i: &mut usize) -> Result<(), ParseError> {
    if *i < args[*a].len() {
        return Ok(());
    }
    *a += 1;
    *i = 0;
    if *a < args.len() {
        Ok(())
    } else {
        Err(ParseError::Usage)
    }
}

/// strtol on a non-negative decimal: the value and the digits used.
fn leading_number(s: &[u8]) -> (u64, usize) {
    let mut n: u64 = 0;
    let mut used = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            break;
        }
        n = n.saturating_mul(10).saturating_add(u64::from(c - b'0'));
        used += 1;
    }
    (n, used)
}

/// One of -aAiIxXuUR with its field argument `text`.
fn field_option(
    o: &mut Options,
    letter: u8,
    text: &[u8],
    args: &[Vec<u8>],
    a: &mut usize,
) -> Result<(), ParseError> {
    let len = text.len();
    let i = break_field(text);
    let invalid = || ParseError::InvalidField(text.to_vec());
    match letter {
        b'a' => {
            if i <= 0 {
                // Only "Resent-" alone may be a partial name with -a: it
                // asks a reply to rank Resent- fields first.
                if -i == len as isize && text.eq_ignore_ascii_case(b"Resent-") {
                    o.header_reply |= 2;
                    return Ok(());
                }
                return Err(invalid());
            }
        }
        b'A' => {
            if i <= 0 {
                return Err(invalid());
            }
        }
        b'R' => {}
        _ => {
            // A partial name (letters up to the end, no colon) is fine.
            if -i != len as isize && i <= 0 {
                return Err(invalid());
            }
        }
    }
    let mut line = text.to_vec();
    line.push(b'\n');
    let mut f = Field::option(&line);
    if letter == b'R' {
        // The new name: right after the old one in the same argument, or
        // the next argument.
        let id = f.id_len;
        let first_complete = i > 0;
        let mut k = id;
        while k < line.len() && matches!(line[k], b' ' | b'\t' | b'\n') {
            k += 1;
        }
        let rest = &line[k..];
        let mut j = break_field(rest);
        let new: Vec<u8>;
        if j < 0 {
            if first_complete {
                return Err(invalid());
            }
            j = -j;
        }
        if j != 0 {
            new = rest[..j as usize].to_vec();
        } else {
            if k < line.len() {
                return Err(invalid());
            }
            *a += 1;
            let Some(next) = args.get(*a) else {
                return Err(ParseError::InvalidField(Vec::new()));
            };
            let mut j2 = break_field(next);
            if j2 == 0 && !next.is_empty() {
                return Err(ParseError::InvalidField(next.clone()));
            }
            if j2 <= 0 {
                j2 = -j2;
                if first_complete {
                    return Err(ParseError::InvalidField(next.clone()));
                }
            }
            new = next[..j2 as usize].to_vec();
        }
        let mut t = line[..id].to_vec();
        t.extend_from_slice(&new);
        f = Field {
            text: t,
            id_len: id,
        };
    }
    let list = match letter {
        b'a' => &mut o.add_if_not,
        b'A' => &mut o.add_always,
        b'i' => &mut o.rename_insert,
        b'I' => &mut o.delete_insert,
        b'x' => &mut o.extract,
        b'X' => &mut o.extract_keep,
        b'u' => &mut o.first_unique,
        b'U' => &mut o.last_unique,
        _ => &mut o.rename,
    };
    list.push(f);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, ParseError> {
        let v: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        parse(&v)
    }

    #[test]
    fn no_arguments_is_the_default() {
        assert_eq!(p(&[]).unwrap(), Options::default());
    }

    #[test]
    fn bundles_and_values() {
        let o = p(&["-rtk"]).unwrap();
        assert!(o.reply && o.keep_body && o.header_reply == 1);
        let o = p(&["-rD", "8192", "cache"]).unwrap();
        assert!(o.reply);
        assert_eq!(o.duplicates, Some((8192, b"cache".to_vec())));
        let o = p(&["-D8192", "cache"]).unwrap();
        assert_eq!(o.duplicates, Some((8192, b"cache".to_vec())));
        let o = p(&["-IPrecedence: junk"]).unwrap();
        assert_eq!(o.delete_insert[0].text, b"Precedence: junk\n");
        assert_eq!(o.delete_insert[0].id_len, 11);
        let o = p(&["-I", "Received"]).unwrap();
        assert_eq!(o.delete_insert[0].id_len, 8);
    }

    #[test]
    fn counts_and_split() {
        let o = p(&["+2", "-3", "-s", "sh", "-c", "cat"]).unwrap();
        assert_eq!(o.skip, 2);
        assert_eq!(o.total, Some(3));
        assert!(o.split);
        assert_eq!(
            o.command,
            vec![b"sh".to_vec(), b"-c".to_vec(), b"cat".to_vec()]
        );
        let o = p(&["-m", "3", "-es"]).unwrap();
        assert_eq!(o.min_fields, 3);
        assert!(o.every && o.split && o.command.is_empty());
        assert_eq!(p(&["-sx"]), Err(ParseError::Usage));
    }

    #[test]
    fn bad_fields() {
        assert_eq!(
            p(&["-a", "bad field"]),
            Err(ParseError::InvalidField(b"bad field".to_vec()))
        );
        assert!(p(&["-A", "Partial"]).is_err());
        assert!(p(&["-a", "Resent-"]).unwrap().header_reply == 2);
        assert_eq!(p(&["-x"]), Err(ParseError::Usage));
        assert_eq!(p(&["-Z"]), Err(ParseError::Usage));
        assert_eq!(p(&["x"]), Err(ParseError::Usage));
    }

    #[test]
    fn rename_forms() {
        let o = p(&["-R", "Subject:", "Topic:"]).unwrap();
        assert_eq!(o.rename[0].text, b"Subject:Topic:");
        assert_eq!(o.rename[0].id_len, 8);
        // One argument: the blank belongs to the first (partial) name, as
        // in formail, so this renames only fields starting "X-Old ".
        let o = p(&["-RX-Old X-New"]).unwrap();
        assert_eq!(o.rename[0].text, b"X-Old X-New");
        assert_eq!(o.rename[0].id_len, 6);
        let o = p(&["-R", "X-Old", "X-New"]).unwrap();
        assert_eq!(o.rename[0].text, b"X-OldX-New");
        assert!(p(&["-R", "Subject:", "Topic"]).is_err());
    }
}
