//! The vacation reply itself: its header (RFC 3834 3.1) and the user's
//! text from the message file (mta-semantics D.2).
//!
//! Owns the reply's `Subject:` (`Re: ` once, RFC 2047 words kept as they
//! came), `In-Reply-To:`/`References:`, the header fields the message
//! file may set or not, `$SUBJECT`, and the MIME fields for 8-bit text.
//! Pure: it reads no file and no clock (the caller passes the date and
//! the Message-ID) and never includes a byte of the original's body.

use super::decide::{Field, Incoming};

/// Everything a reply is made of.
#[derive(Clone, Debug)]
pub struct Reply<'a> {
    /// The user's address (`login@hostname`, or `-R`): `From:` unless the
    /// message file has one.
    pub from: &'a str,
    /// The sender answered: `To:`.
    pub to: &'a str,
    /// The message answered (its header).
    pub original: &'a Incoming,
    /// The message file: optional header fields, an empty line, the text;
    /// or just the text.
    pub text: &'a [u8],
    /// RFC 5322 date of now.
    pub date: &'a str,
    /// A fresh `<id@host>`.
    pub message_id: &'a str,
}

/// Fields of the message file that the reply sets itself: the addresses,
/// the identity and the RFC 3834 marks must be right whatever the file
/// says (`Cc:`/`Bcc:` would name people the reply never goes to).
const OURS: &[&str] = &[
    "To",
    "Cc",
    "Bcc",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Auto-Submitted",
    "Return-Path",
];

/// The reply: header and text, LF line ends (submission makes them CRLF).
/// The message file's `Subject:` and `From:` win over ours, its other
/// fields are kept but for the ones we set (`To:`, `Date:` ...).
/// `$SUBJECT` anywhere in the file is the original subject (raw in a
/// header field, decoded in the text), as SunOS vacation(1) has it.
pub fn build(r: &Reply<'_>) -> Vec<u8> {
    let raw_subject = r.original.get("Subject").map(|f| clean(&f.unfolded()));
    let decoded = raw_subject.as_deref().map(decode_subject);
    // The message file is read as a message is: the same header rules.
    let (file, body) = Incoming::split(r.text);
    let body_utf8 = std::str::from_utf8(body).is_ok();
    let in_body = match (&decoded, &raw_subject) {
        (Some(d), _) if body_utf8 => d.as_bytes().to_vec(),
        (_, Some(raw)) => raw.clone(),
        _ => b"(no subject)".to_vec(),
    };
    let in_header = raw_subject
        .clone()
        .unwrap_or_else(|| b"(no subject)".to_vec());
    let body = replace(body, b"$SUBJECT", &in_body);

    let mut out: Vec<u8> = Vec::with_capacity(body.len() + 1024);
    // The file's From: and Subject: take the places of ours.
    match file.get("From") {
        Some(f) => file_field(&mut out, f, &in_header),
        None => field(&mut out, "From", r.from.as_bytes()),
    }
    field(&mut out, "To", r.to.as_bytes());
    match file.get("Subject") {
        Some(f) => file_field(&mut out, f, &in_header),
        None => {
            out.extend_from_slice(b"Subject: ");
            out.extend_from_slice(&reply_subject(raw_subject.as_deref()));
            out.push(b'\n');
        }
    }
    field(&mut out, "Date", r.date.as_bytes());
    field(&mut out, "Message-ID", r.message_id.as_bytes());
    let (in_reply_to, references) = thread(r.original);
    if let Some(id) = in_reply_to {
        field(&mut out, "In-Reply-To", id.as_bytes());
    }
    if !references.is_empty() {
        out.extend_from_slice(&fold("References:", &references));
    }
    field(&mut out, "Auto-Submitted", b"auto-replied");
    if file.get("Precedence").is_none() {
        // Not required by RFC 3834, but what older responders check.
        field(&mut out, "Precedence", b"bulk");
    }
    for f in &file.fields {
        let skip = |n: &str| f.name.eq_ignore_ascii_case(n.as_bytes());
        if OURS.iter().any(|o| skip(o)) || skip("From") || skip("Subject") {
            continue;
        }
        file_field(&mut out, f, &in_header);
    }
    if !body.is_ascii() && file.get("Content-Type").is_none() {
        let charset = if body_utf8 { "utf-8" } else { "unknown-8bit" };
        field(&mut out, "MIME-Version", b"1.0");
        field(
            &mut out,
            "Content-Type",
            format!("text/plain; charset={charset}").as_bytes(),
        );
        field(&mut out, "Content-Transfer-Encoding", b"8bit");
    }
    out.push(b'\n');
    out.extend_from_slice(&body);
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

/// A field of the message file, `$SUBJECT` replaced by `subject`; a
/// `Subject:` with 8-bit text in RFC 2047 words.
fn file_field(out: &mut Vec<u8>, f: &Field, subject: &[u8]) {
    let value = replace(&f.value, b"$SUBJECT", subject);
    out.extend_from_slice(&f.name);
    out.push(b':');
    if f.name.eq_ignore_ascii_case(b"Subject") && !value.is_ascii() {
        out.push(b' ');
        out.extend_from_slice(&encode_words(value.trim_ascii()));
    } else {
        out.extend_from_slice(&value);
    }
    out.push(b'\n');
}

fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(&clean(value));
    out.push(b'\n');
}

/// Line ends and other control characters out of a value we copy into a
/// header field (no header injection from a sender's Subject or address).
fn clean(v: &[u8]) -> Vec<u8> {
    v.iter()
        .map(|&b| {
            if (b < b' ' && b != b'\t') || b == 0x7f {
                b' '
            } else {
                b
            }
        })
        .collect()
}

/// The subject decoded from RFC 2047 words (mail-parser), for the `Re:`
/// test and the text.
fn decode_subject(raw: &[u8]) -> String {
    let mut m = b"Subject: ".to_vec();
    m.extend_from_slice(raw);
    m.extend_from_slice(b"\n\n");
    mail_parser::MessageParser::default()
        .parse(&m)
        .and_then(|p| p.subject().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(raw).into_owned())
}

/// `Re: ` and the original subject as it came (an RFC 2047 word keeps
/// its charset and encoding), unless it already starts with `Re:` once
/// decoded; `Re: (no subject)` when it had none.
pub fn reply_subject(raw: Option<&[u8]>) -> Vec<u8> {
    let raw = raw.map(<[u8]>::trim_ascii).filter(|r| !r.is_empty());
    let Some(raw) = raw else {
        return b"Re: (no subject)".to_vec();
    };
    let decoded = decode_subject(raw);
    let head = decoded.trim_start().get(..3).unwrap_or("");
    if head.eq_ignore_ascii_case("re:") {
        return raw.to_vec();
    }
    let mut s = b"Re: ".to_vec();
    s.extend_from_slice(raw);
    s
}

/// `In-Reply-To:` (the original's Message-ID) and `References:` (the
/// original's References, else its single In-Reply-To id, then its
/// Message-ID: RFC 5322 3.6.4).
pub fn thread(original: &Incoming) -> (Option<String>, Vec<String>) {
    let ids = |name: &str| {
        original
            .get(name)
            .map(|f| msg_ids(&f.unfolded()))
            .unwrap_or_default()
    };
    let own = ids("Message-ID").into_iter().next();
    let mut refs = ids("References");
    if refs.is_empty() {
        let irt = ids("In-Reply-To");
        if irt.len() == 1 {
            refs = irt;
        }
    }
    if let Some(id) = &own
        && refs.last() != Some(id)
    {
        refs.push(id.clone());
    }
    (own, refs)
}

/// The `<...>` message ids in a field's value (no blanks or controls
/// inside), comments and stray text skipped.
fn msg_ids(v: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = v;
    while let Some(l) = rest.iter().position(|&b| b == b'<') {
        let after = &rest[l + 1..];
        let Some(r) = after.iter().position(|&b| b == b'>') else {
            break;
        };
        let id = &after[..r];
        if !id.is_empty() && id.iter().all(|&b| b > b' ' && b < 0x7f && b != b'<') {
            out.push(format!("<{}>", String::from_utf8_lossy(id)));
        }
        rest = &after[r + 1..];
    }
    out
}

/// `Name: a b c` folded before an item that would pass 78 columns.
fn fold(name: &str, items: &[String]) -> Vec<u8> {
    let mut out = name.to_string();
    let mut col = out.len();
    for it in items {
        if col + 1 + it.len() > 78 && col > name.len() {
            out.push_str("\n ");
            col = 1;
        } else {
            out.push(' ');
            col += 1;
        }
        out.push_str(it);
        col += it.len();
    }
    out.push('\n');
    out.into_bytes()
}

/// `text` with every `pat` replaced.
fn replace(text: &[u8], pat: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(pat) {
            out.extend_from_slice(with);
            i += pat.len();
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

/// RFC 2047 `B` words (UTF-8; bytes that are not are taken as Latin-1)
/// for a header value, folded between words; 39 bytes a word keep a
/// `Subject:` line within 78 columns.
fn encode_words(v: &[u8]) -> Vec<u8> {
    let s = match std::str::from_utf8(v) {
        Ok(s) => s.to_string(),
        Err(_) => v.iter().map(|&b| char::from(b)).collect(),
    };
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in s.chars() {
        if chunk.len() + c.len_utf8() > 39 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    let encoded: Vec<String> = words
        .iter()
        .map(|w| format!("=?utf-8?B?{}?=", base64(w.as_bytes())))
        .collect();
    encoded.join("\n ").into_bytes()
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(char::from(T[(n >> shift) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(raw: &str) -> String {
        String::from_utf8(reply_subject(Some(raw.as_bytes()))).unwrap()
    }

    #[test]
    fn re_is_added_once_and_encoded_words_stay_encoded() {
        assert_eq!(subject("lunch?"), "Re: lunch?");
        assert_eq!(subject("Re: lunch?"), "Re: lunch?");
        assert_eq!(subject("RE:lunch"), "RE:lunch");
        assert_eq!(subject("Reply hazy"), "Re: Reply hazy");
        // "Café" in Q encoding: kept as is, Re: in front.
        assert_eq!(
            subject("=?utf-8?q?Caf=C3=A9?="),
            "Re: =?utf-8?q?Caf=C3=A9?="
        );
        // "Re: Café" encoded whole: already a reply once decoded.
        assert_eq!(
            subject("=?iso-8859-1?q?Re=3A_Caf=E9?="),
            "=?iso-8859-1?q?Re=3A_Caf=E9?="
        );
        assert_eq!(subject("=?utf-8?B?UmU6IGhp?="), "=?utf-8?B?UmU6IGhp?=");
        assert_eq!(
            String::from_utf8(reply_subject(None)).unwrap(),
            "Re: (no subject)"
        );
        assert_eq!(
            String::from_utf8(reply_subject(Some(b"  "))).unwrap(),
            "Re: (no subject)"
        );
    }

    #[test]
    fn references_are_the_original_ones_then_its_message_id() {
        let inc = Incoming::parse(
            b"Message-ID: <m3@x.test>\nReferences: <m1@x.test> (first)\n <m2@x.test>\n\n",
        );
        assert_eq!(
            thread(&inc),
            (
                Some("<m3@x.test>".into()),
                vec![
                    "<m1@x.test>".into(),
                    "<m2@x.test>".into(),
                    "<m3@x.test>".into()
                ]
            )
        );
        let inc = Incoming::parse(b"Message-Id: <m2@x>\nIn-Reply-To: <m1@x>\n\n");
        assert_eq!(thread(&inc).1, ["<m1@x>", "<m2@x>"]);
        let inc = Incoming::parse(b"In-Reply-To: <a@x> <b@x>\n\n");
        assert_eq!(thread(&inc), (None, vec![]));
        let inc = Incoming::parse(b"Message-ID: no brackets\n\n");
        assert_eq!(thread(&inc), (None, vec![]));
        let long: Vec<String> = (0..6)
            .map(|i| format!("<{i}-long-id-1234567890@x.test>"))
            .collect();
        let f = String::from_utf8(fold("References:", &long)).unwrap();
        assert!(f.lines().all(|l| l.len() <= 78), "{f}");
        assert_eq!(f.lines().count(), 3, "{f}");
        assert!(f.lines().skip(1).all(|l| l.starts_with(' ')), "{f}");
    }

    fn reply(original: &str, text: &str) -> String {
        let inc = Incoming::parse(original.as_bytes());
        let r = Reply {
            from: "carol@mx.example.test",
            to: "bob@client.test",
            original: &inc,
            text: text.as_bytes(),
            date: "Thu, 26 Nov 2026 12:00:00 +0000",
            message_id: "<v1@mx.example.test>",
        };
        String::from_utf8(build(&r)).unwrap()
    }

    #[test]
    fn a_plain_text_file_gets_the_whole_header() {
        let got = reply(
            "From bob@client.test Thu Nov 26 12:00:00 2026\nSubject: lunch?\nMessage-ID: <m1@client.test>\n\nsecret body\n",
            "I am away until Monday.\n",
        );
        assert_eq!(
            got,
            "From: carol@mx.example.test\nTo: bob@client.test\nSubject: Re: lunch?\n\
             Date: Thu, 26 Nov 2026 12:00:00 +0000\nMessage-ID: <v1@mx.example.test>\n\
             In-Reply-To: <m1@client.test>\nReferences: <m1@client.test>\n\
             Auto-Submitted: auto-replied\nPrecedence: bulk\n\nI am away until Monday.\n"
        );
        assert!(!got.contains("secret"));
    }

    #[test]
    fn the_file_header_may_set_subject_and_from_but_not_ours() {
        let got = reply(
            "Subject: =?utf-8?q?Caf=C3=A9?=\n\n",
            "From: Carol C <carol@example.test>\nSubject: Away: $SUBJECT\nTo: evil@x\nAuto-Submitted: no\nReply-To: desk@example.test\n\nAbout \"$SUBJECT\": back Monday.\n",
        );
        // The file's From: and Subject: stand where ours would.
        assert!(
            got.starts_with(
                "From: Carol C <carol@example.test>\nTo: bob@client.test\n\
                 Subject: Away: =?utf-8?q?Caf=C3=A9?=\nDate: "
            ),
            "{got}"
        );
        assert!(got.contains("\nAuto-Submitted: auto-replied\n"), "{got}");
        assert!(
            !got.contains("evil") && !got.contains("Auto-Submitted: no"),
            "{got}"
        );
        assert!(got.contains("\nReply-To: desk@example.test\n"), "{got}");
        assert_eq!(got.matches("Subject:").count(), 1, "{got}");
        // In the text the subject is decoded, so the text is 8-bit UTF-8.
        assert!(got.ends_with("\n\nAbout \"Café\": back Monday.\n"), "{got}");
        assert!(
            got.contains("\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n"),
            "{got}"
        );
    }

    #[test]
    fn eight_bit_subjects_in_the_file_are_encoded_and_headers_cannot_be_injected() {
        let got = reply(
            "Subject: hi\nMessage-ID: <a@b>\n\n",
            "Subject: Abwesenheitsnotiz für die ganze Woche bis einschließlich Freitag\n\nNur Text.\n",
        );
        let subj: Vec<&str> = got
            .lines()
            .skip_while(|l| !l.starts_with("Subject:"))
            .take_while(|l| l.starts_with("Subject:") || l.starts_with(' '))
            .collect();
        assert!(subj.len() >= 2, "{got}");
        assert!(subj.iter().all(|l| l.is_ascii() && l.len() <= 78), "{got}");
        let decoded = decode_subject(subj.join("\n").strip_prefix("Subject:").unwrap().as_bytes());
        assert_eq!(
            decoded,
            "Abwesenheitsnotiz für die ganze Woche bis einschließlich Freitag"
        );
        assert!(!got.contains("MIME-Version"), "ASCII text: {got}");
        // A sender's CR/LF never starts a field of ours.
        let inc = Incoming::parse(b"Subject: a\n\n");
        let r = Reply {
            from: "c@x",
            to: "bob@x\nBcc: victim@y",
            original: &inc,
            text: b"t\n",
            date: "d",
            message_id: "<i@x>",
        };
        let got = String::from_utf8(build(&r)).unwrap();
        assert!(got.contains("\nTo: bob@x Bcc: victim@y\n"), "{got}");
    }

    #[test]
    fn a_file_without_a_header_or_with_a_from_line_is_text() {
        // A blank in the name: not a field, so all of it is text.
        let (f, body) = Incoming::split(b"Dear sender: I am away.\nBack soon.\n");
        assert!(f.fields.is_empty());
        assert_eq!(body, b"Dear sender: I am away.\nBack soon.\n");
        let (f, body) = Incoming::split(b"I am away.\n\nBye\n");
        assert!(f.fields.is_empty());
        assert_eq!(body, b"I am away.\n\nBye\n");
        let (f, body) =
            Incoming::split(b"From x Thu Nov 26 12:00:00 2026\r\nSubject: s\r\n\r\nT\r\n");
        let want = Field {
            name: b"Subject".to_vec(),
            value: b" s".to_vec(),
        };
        assert_eq!(f.fields, [want]);
        assert_eq!(body, b"T\r\n");
        let (f, body) = Incoming::split(b"\nleading empty line\n");
        assert!(f.fields.is_empty());
        assert_eq!(body, b"\nleading empty line\n");
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
    }
}
