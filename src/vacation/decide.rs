//! Whether a message gets a vacation reply at all, from its header alone:
//! the never-reply rules of RFC 3834, RFC 5230 and vacation(1)
//! (mta-semantics D.1), and who the envelope sender is.
//!
//! Owns the header view of the incoming message ([`Incoming`]), the
//! sender ([`envelope_sender`]), vacation(1)'s junk-sender rule
//! ([`junk_sender`]) and the checks in [`decide`]. Pure: it opens no
//! file, reads no clock and never looks at the database (whether this
//! sender was answered lately is `db`'s question, asked afterwards).

use std::fmt;

/// One header field of the incoming message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The name as written (compare without case).
    pub name: Vec<u8>,
    /// The value after the colon, folds and all, line ends as LF.
    pub value: Vec<u8>,
}

impl Field {
    /// The value unfolded (each line end with the blanks after it one
    /// space) and trimmed.
    pub fn unfolded(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.value.len());
        let mut i = 0;
        let v = &self.value;
        while i < v.len() {
            if v[i] == b'\r' || v[i] == b'\n' {
                while i < v.len() && matches!(v[i], b'\r' | b'\n' | b' ' | b'\t') {
                    i += 1;
                }
                out.push(b' ');
            } else {
                out.push(v[i]);
                i += 1;
            }
        }
        out.trim_ascii().to_vec()
    }
}

/// The header of the incoming message: its `From ` line, if any, and its
/// fields in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Incoming {
    /// The mbox `From ` line's text after `From `, without its line end
    /// (what `deliver` and procmail put first).
    pub from_line: Option<Vec<u8>>,
    /// The fields, in order.
    pub fields: Vec<Field>,
}

impl Incoming {
    /// Parses a header (LF or CRLF line ends; the body, if given, is
    /// ignored): an optional `From ` line, then fields up to the empty
    /// line or the first line that is not a field.
    pub fn parse(header: &[u8]) -> Incoming {
        Incoming::split(header).0
    }

    /// [`Incoming::parse`], and the rest of `text`: after the empty line
    /// that ends a header with fields, else from the line the header
    /// stopped at (an empty first line, or one that is not a field).
    pub fn split(text: &[u8]) -> (Incoming, &[u8]) {
        let mut inc = Incoming::default();
        let mut pos = 0;
        let mut lines = text.split_inclusive(|&b| b == b'\n').peekable();
        if let Some(first) = lines.peek()
            && let Some(rest) = first.strip_prefix(b"From ")
        {
            inc.from_line = Some(trim_eol(rest).to_vec());
            pos = first.len();
            lines.next();
        }
        for line in lines {
            let bare = trim_eol(line);
            if bare.is_empty() {
                if !inc.fields.is_empty() {
                    pos += line.len();
                }
                break;
            }
            if matches!(bare[0], b' ' | b'\t') {
                let Some(f) = inc.fields.last_mut() else {
                    break;
                };
                f.value.push(b'\n');
                f.value.extend_from_slice(bare);
            } else {
                let Some(colon) = bare.iter().position(|&b| b == b':') else {
                    break;
                };
                let name = &bare[..colon];
                if name.is_empty() || !name.iter().all(|b| (33..=126).contains(b)) {
                    break;
                }
                inc.fields.push(Field {
                    name: name.to_vec(),
                    value: bare[colon + 1..].to_vec(),
                });
            }
            pos += line.len();
        }
        (inc, &text[pos..])
    }

    /// The fields named `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Field> + 'a {
        self.fields
            .iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// The first field named `name`.
    pub fn get(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// Why no reply is sent. Each is a decision, not a failure: the run
/// exits 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// No `From ` line, `Return-Path:` or `-s`: nobody to answer.
    NoSender,
    /// The envelope sender is `<>` (a bounce or a notification).
    NullSender,
    /// A daemon or list address (vacation(1)'s junkmail()).
    JunkSender(String),
    /// `Auto-Submitted:` other than `no`.
    AutoSubmitted(String),
    /// `Precedence: bulk`, `list` or `junk`.
    Precedence(String),
    /// A `List-*:` or `Mailing-List:` field.
    List(String),
    /// `Content-Type: multipart/report` (a DSN or an MDN).
    Report,
    /// The user is in no `To:`/`Cc:` (nor their `Resent-` forms, nor
    /// `Bcc:`): a list, a Bcc or a forward brought it.
    NotARecipient,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::NoSender => f.write_str("no sender (no From_ line or Return-Path:)"),
            Skip::NullSender => f.write_str("null sender <>"),
            Skip::JunkSender(s) => write!(f, "sender {s} is a daemon or a list"),
            Skip::AutoSubmitted(v) => write!(f, "Auto-Submitted: {v}"),
            Skip::Precedence(v) => write!(f, "Precedence: {v}"),
            Skip::List(n) => write!(f, "list mail ({n}:)"),
            Skip::Report => f.write_str("a delivery or disposition report"),
            Skip::NotARecipient => f.write_str("not addressed to the user in To: or Cc:"),
        }
    }
}

/// Who the reply is for: `-s ADDR` if given, else the envelope sender as
/// local delivery shows it: the `From ` line (vacation(1)), else the
/// first `Return-Path:` (what the queue runner writes), else `$SENDER`
/// (what it sets for an alias pipe). `Some("")` is the null sender.
pub fn envelope_sender(
    inc: &Incoming,
    given: Option<&str>,
    env_sender: Option<&str>,
) -> Option<String> {
    if let Some(s) = given {
        return Some(strip_angles(s.as_bytes()));
    }
    if let Some(line) = &inc.from_line {
        return Some(from_line_address(line));
    }
    if let Some(rp) = inc.get("Return-Path") {
        return Some(strip_angles(&rp.unfolded()));
    }
    env_sender.map(|s| strip_angles(s.as_bytes()))
}

/// `<a@b>` → `a@b`, `<>` → empty; control characters dropped.
fn strip_angles(s: &[u8]) -> String {
    let t = s.trim_ascii();
    let t = match (t.first(), t.last()) {
        (Some(b'<'), Some(b'>')) if t.len() >= 2 => &t[1..t.len() - 1],
        _ => t,
    };
    String::from_utf8_lossy(t)
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .to_string()
}

/// The address of a `From ` line: up to the first blank outside quotes
/// (vacation(1) readheaders(), backslash escapes kept).
fn from_line_address(line: &[u8]) -> String {
    let mut quoted = false;
    let mut end = line.len();
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'\\' => i += 1,
            b'"' => quoted = !quoted,
            b' ' | b'\t' if !quoted => {
                end = i;
                break;
            }
            _ => {}
        }
        i += 1;
    }
    let addr = strip_angles(&line[..end.min(line.len())]);
    // procmail and deliver write MAILER-DAEMON for the null sender; the
    // junk rule catches it too, but say what it is.
    if addr.eq_ignore_ascii_case("MAILER-DAEMON") {
        String::new()
    } else {
        addr
    }
}

/// Whether the sender is a daemon, a list or a list's owner, which never
/// get a reply: vacation(1) junkmail(): the local part (after the last
/// `!`, cut at the first `%`, `@` or `+` outside quotes) is `postmaster`,
/// `uucp`, `mailer-daemon` or `mailer`, ends in `-request`, `-relay` or
/// `-owner`, or begins with `owner-`; all without case. We add
/// `daemon`, the `noreply` family and Mailman's `-bounces` (nobody reads
/// them; RFC 3834 5.1 leaves the list to the responder).
pub fn junk_sender(sender: &str) -> bool {
    let mut local = String::new();
    let mut quoted = false;
    let mut chars = sender.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' => {
                if let Some(n) = chars.next() {
                    local.push(n);
                }
            }
            '!' if !quoted => local.clear(),
            '%' | '@' | '+' if !quoted => break,
            c => local.push(c),
        }
    }
    let l = local.to_ascii_lowercase();
    const WHOLE: &[&str] = &[
        "postmaster",
        "uucp",
        "mailer-daemon",
        "mailer",
        "daemon",
        "noreply",
        "no-reply",
        "donotreply",
        "do-not-reply",
    ];
    const SUFFIX: &[&str] = &["-request", "-relay", "-owner", "-bounces"];
    !l.is_empty()
        && (WHOLE.contains(&l.as_str())
            || SUFFIX.iter().any(|s| l.ends_with(s))
            || l.starts_with("owner-"))
}

/// The user on vacation, as the recipient check sees them.
#[derive(Clone, Copy, Debug)]
pub struct Me<'a> {
    /// The login name: matches that local part at any domain.
    pub login: &'a str,
    /// `-a`: bare names match as the login does; an address with `@`
    /// matches only itself.
    pub aliases: &'a [String],
    /// `false` with `-j`: skip the recipient check.
    pub check_recipient: bool,
}

impl Me<'_> {
    /// Whether `addr` (from a recipient field) is the user's: its local
    /// part, any `+detail` cut off, is the login or a bare alias (at any
    /// domain, as vacation(1) matches names), or the whole address is an
    /// `-a` address; all without case.
    pub fn is_me(&self, addr: &[u8]) -> bool {
        let addr = String::from_utf8_lossy(addr);
        let (local, domain) = match addr.rfind('@') {
            Some(at) => (&addr[..at], Some(&addr[at + 1..])),
            None => (&addr[..], None),
        };
        let local = local.trim_matches('"');
        let base = local.split('+').next().unwrap_or(local);
        let bare_match = |name: &str| base.eq_ignore_ascii_case(name);
        if bare_match(self.login) {
            return true;
        }
        self.aliases.iter().any(|a| match a.rsplit_once('@') {
            None => bare_match(a),
            Some((al, ad)) => {
                domain.is_some_and(|d| d.eq_ignore_ascii_case(ad))
                    && (base.eq_ignore_ascii_case(al) || local.eq_ignore_ascii_case(al))
            }
        })
    }
}

/// The recipient fields the check reads: vacation(1) reads `To:` and
/// `Cc:`; RFC 3834 2 adds the `Resent-` forms and `Bcc:`, present when a
/// sender kept them (a Bcc'd copy normally has none that names us).
const RECIPIENT_FIELDS: &[&str] = &["To", "Cc", "Resent-To", "Resent-Cc", "Bcc", "Resent-Bcc"];

/// The never-reply rules, in order: no or null sender, a junk sender,
/// `Auto-Submitted:` not `no`, `Precedence:` bulk/list/junk, any `List-*:`
/// (or `Mailing-List:`), `multipart/report`, and the user not a
/// recipient. `Ok` carries the sender to answer.
pub fn decide(inc: &Incoming, sender: Option<String>, me: &Me<'_>) -> Result<String, Skip> {
    let sender = sender.ok_or(Skip::NoSender)?;
    if sender.is_empty() {
        return Err(Skip::NullSender);
    }
    if junk_sender(&sender) {
        return Err(Skip::JunkSender(sender));
    }
    for f in inc.all("Auto-Submitted") {
        let v = String::from_utf8_lossy(&f.unfolded()).into_owned();
        // The keyword before any parameters or comment (RFC 3834 5).
        let kw = v
            .split([';', '(', ' ', '\t'])
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if !kw.eq_ignore_ascii_case("no") {
            return Err(Skip::AutoSubmitted(v));
        }
    }
    for f in inc.all("Precedence") {
        let v = String::from_utf8_lossy(&f.unfolded()).into_owned();
        // vacation(1) compares the first four letters.
        let head = v.get(..4).unwrap_or(&v).to_ascii_lowercase();
        if ["bulk", "list", "junk"].contains(&head.as_str()) {
            return Err(Skip::Precedence(v));
        }
    }
    if let Some(f) = inc.fields.iter().find(|f| {
        f.name.len() > 5 && f.name[..5].eq_ignore_ascii_case(b"list-")
            || f.name.eq_ignore_ascii_case(b"mailing-list")
    }) {
        return Err(Skip::List(String::from_utf8_lossy(&f.name).into_owned()));
    }
    if inc.all("Content-Type").any(|f| {
        let v = f.unfolded().to_ascii_lowercase();
        let media: Vec<u8> = v
            .iter()
            .copied()
            .take_while(|&b| b != b';')
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        media == b"multipart/report"
    }) {
        return Err(Skip::Report);
    }
    if me.check_recipient {
        let mine = RECIPIENT_FIELDS.iter().any(|name| {
            inc.all(name).any(|f| {
                crate::submit::address_list(&f.unfolded())
                    .iter()
                    .any(|a| me.is_me(a))
            })
        });
        if !mine {
            return Err(Skip::NotARecipient);
        }
    }
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAROL: Me<'static> = Me {
        login: "carol",
        aliases: &[],
        check_recipient: true,
    };

    fn run(header: &str) -> Result<String, Skip> {
        let inc = Incoming::parse(header.as_bytes());
        let s = envelope_sender(&inc, None, None);
        decide(&inc, s, &CAROL)
    }

    const OK: &str = "From bob@client.test Thu Nov 26 12:00:00 2026\n\
                      To: Carol <carol@example.test>\nSubject: hi\n\nbody\n";

    #[test]
    fn a_plain_personal_message_is_answered() {
        assert_eq!(run(OK), Ok("bob@client.test".into()));
        // CRLF and a Return-Path instead of the From_ line.
        let m =
            "Return-Path: <bob@client.test>\r\nCc: x@y.test,\r\n carol+work@example.test\r\n\r\n";
        assert_eq!(run(m), Ok("bob@client.test".into()));
    }

    #[test]
    fn the_sender_comes_from_s_then_from_line_then_return_path_then_env() {
        let inc = Incoming::parse(
            b"From \"a b\"@x.test Thu Nov 26 12:00:00 2026\nReturn-Path: <rp@x.test>\n\n",
        );
        assert_eq!(envelope_sender(&inc, None, None).unwrap(), "\"a b\"@x.test");
        assert_eq!(
            envelope_sender(&inc, Some("<s@x.test>"), None).unwrap(),
            "s@x.test"
        );
        let inc = Incoming::parse(b"Return-Path: <rp@x.test>\nReturn-Path: <two@x>\n\n");
        assert_eq!(
            envelope_sender(&inc, None, Some("e@x")).unwrap(),
            "rp@x.test"
        );
        let inc = Incoming::parse(b"Subject: x\n\n");
        assert_eq!(envelope_sender(&inc, None, Some("e@x")).unwrap(), "e@x");
        assert_eq!(envelope_sender(&inc, None, None), None);
    }

    #[test]
    fn never_to_the_null_sender_or_nobody() {
        assert_eq!(
            run("From MAILER-DAEMON Thu Nov 26 12:00:00 2026\nTo: carol@example.test\n\n"),
            Err(Skip::NullSender)
        );
        assert_eq!(
            run("Return-Path: <>\nTo: carol@example.test\n\n"),
            Err(Skip::NullSender)
        );
        assert_eq!(run("To: carol@example.test\n\n"), Err(Skip::NoSender));
    }

    #[test]
    fn never_to_daemons_and_list_addresses() {
        let junk = [
            "postmaster@x.test",
            "MAILER-DAEMON@x.test",
            "uucp",
            "mailer@x",
            "team-request@lists.test",
            "x-relay@y",
            "team-OWNER@y",
            "owner-team@y",
            "site!owner-team@y",
            "noreply@shop.test",
            "no-reply@shop.test",
            "list-bounces+carol=example.test@lists.test",
            "postmaster%relay@x",
        ];
        for s in junk {
            assert!(junk_sender(s), "{s}");
        }
        for s in ["bob@x.test", "postmasters@x", "owner@x", "requester@x", ""] {
            assert!(!junk_sender(s), "{s}");
        }
        let m = "From owner-team@lists.test Thu Nov 26 12:00:00 2026\nTo: carol@example.test\n\n";
        assert_eq!(
            run(m),
            Err(Skip::JunkSender("owner-team@lists.test".into()))
        );
    }

    #[test]
    fn never_to_automatic_mail() {
        let with = |extra: &str| run(&OK.replacen("Subject: hi\n", &format!("{extra}\n"), 1));
        assert!(matches!(
            with("Auto-Submitted: auto-replied"),
            Err(Skip::AutoSubmitted(_))
        ));
        assert!(matches!(
            with("Auto-Submitted: Auto-Generated (cron)"),
            Err(Skip::AutoSubmitted(_))
        ));
        assert_eq!(with("Auto-Submitted: no"), Ok("bob@client.test".into()));
        assert_eq!(
            with("Auto-Submitted: No (a person)"),
            Ok("bob@client.test".into())
        );
        for p in ["bulk", "List", "junk", " BULK"] {
            assert!(
                matches!(with(&format!("Precedence:{p}")), Err(Skip::Precedence(_))),
                "{p}"
            );
        }
        assert_eq!(
            with("Precedence: first-class"),
            Ok("bob@client.test".into())
        );
        for l in [
            "List-Id: Team <team.example.test>",
            "list-unsubscribe: <mailto:x>",
            "List-Post: <mailto:team@example.test>",
            "Mailing-List: contact team-help@x",
        ] {
            assert!(matches!(with(l), Err(Skip::List(_))), "{l}");
        }
        assert_eq!(
            with("Content-Type: Multipart/Report; report-type=delivery-status;\n boundary=x"),
            Err(Skip::Report)
        );
        assert_eq!(
            with("Content-Type: multipart/mixed; boundary=x"),
            Ok("bob@client.test".into())
        );
    }

    #[test]
    fn only_when_the_user_is_an_explicit_recipient() {
        let from = "From bob@client.test Thu Nov 26 12:00:00 2026\n";
        let cases: &[(&str, bool)] = &[
            ("To: team@example.test\n", false),
            ("To: \"carol\" <caroline@example.test>\n", false),
            ("To: derick@x, scarol@x\n", false),
            ("To: team@example.test\nCc: CAROL@Other.test\n", true),
            ("Resent-To: carol@example.test\n", true),
            ("Bcc: carol@example.test\n", true),
            ("To: undisclosed-recipients:;\n", false),
            ("To: t: a@x, carol@example.test;\n", true),
            ("Subject: no recipients at all\n", false),
        ];
        for (fields, want) in cases {
            let got = run(&format!("{from}{fields}\n"));
            assert_eq!(got.is_ok(), *want, "{fields}: {got:?}");
            if !want {
                assert_eq!(got, Err(Skip::NotARecipient));
            }
        }
        let inc = Incoming::parse(format!("{from}To: info@example.test\n\n").as_bytes());
        let s = || envelope_sender(&inc, None, None);
        assert!(decide(&inc, s(), &CAROL).is_err());
        for alias in ["info", "INFO@example.test"] {
            let aliases = [alias.to_string()];
            let me = Me {
                aliases: &aliases,
                ..CAROL
            };
            assert!(decide(&inc, s(), &me).is_ok(), "{alias}");
        }
        let aliases = ["info@other.test".to_string()];
        let me = Me {
            aliases: &aliases,
            ..CAROL
        };
        assert!(decide(&inc, s(), &me).is_err());
        let me = Me {
            check_recipient: false,
            ..CAROL
        };
        assert!(decide(&inc, s(), &me).is_ok(), "-j");
    }

    #[test]
    fn the_header_parse_stops_at_the_body() {
        let inc = Incoming::parse(b"Subject: a\n\tb\nX: 1\n\nTo: carol@x\n");
        assert_eq!(inc.fields.len(), 2);
        assert_eq!(inc.get("subject").unwrap().unfolded(), b"a b");
        assert!(inc.get("To").is_none());
    }
}
