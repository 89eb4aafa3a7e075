//! Snapshot tests of the rcfile parser: every `fixtures/rc/ok/*.rc` is
//! parsed and its AST recorded through `Display`; every
//! `fixtures/rc/errors/*.rc` has all its diagnostics (syntax and semantic)
//! rendered. The expected behaviour of each fixture was checked against
//! the real procmail (see the comment at the top of each file).

use postroom::rc::ast::{Action, Item};
use postroom::rc::{check, syntax};

fn render_all(name: &str, src: &[u8]) -> String {
    let (rc, mut diags) = syntax::parse(name, src);
    diags.extend(check::check(name, src, &rc));
    let mut out = String::new();
    for d in &diags {
        out.push_str(&d.render(src));
        out.push('\n');
    }
    out
}

#[test]
fn ok_fixtures_parse_to_these_trees() {
    let mut seen = 0;
    insta::glob!("fixtures/rc/ok/*.rc", |path| {
        seen += 1;
        let src = std::fs::read(path).expect("read fixture");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (rc, diags) = syntax::parse(&name, &src);
        let errors: Vec<_> = diags
            .iter()
            .filter(|d| d.severity == postroom::diag::Severity::Error)
            .map(|d| d.short(&src))
            .collect();
        assert!(errors.is_empty(), "{name} has errors: {errors:#?}");
        insta::assert_snapshot!(rc.to_string());
    });
    assert!(seen > 0, "no fixtures under tests/fixtures/rc/ok");
}

#[test]
fn error_fixtures_give_these_diagnostics() {
    let mut seen = 0;
    insta::glob!("fixtures/rc/errors/*.rc", |path| {
        seen += 1;
        let src = std::fs::read(path).expect("read fixture");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (rc, _) = syntax::parse(&name, &src);
        let rendered = render_all(&name, &src);
        assert!(!rendered.is_empty(), "{name} gives no diagnostic");
        insta::assert_snapshot!(format!("{rendered}---- tree ----\n{rc}"));
    });
    assert!(seen > 0, "no fixtures under tests/fixtures/rc/errors");
}

/// Fixtures where the parser knowingly differs from procmail (see the
/// comment at the top of each).
const KNOWN_DEVIATIONS: &[&str] = &["header_expansion.rc"];

/// The complaints the parser places in the tree, in file order, and the
/// flag complaints procmail makes whenever it reads a recipe: what procmail
/// logs while it reads the file when every block is entered.
fn parse_time_logs(items: &[Item], out: &mut Vec<String>) {
    for item in items {
        match item {
            Item::Invalid { log, .. } | Item::Abort { log, .. } => out.push(log.clone()),
            Item::Recipe(r) => {
                out.extend(r.bad_flags.iter().map(|b| format!("Skipped \"{b}\"")));
                let read_time = check::flag_logs(r).into_iter().filter(|l| !l.only_when_run);
                out.extend(read_time.map(|l| l.log.to_string()));
                match &r.action {
                    Action::Block(body) => parse_time_logs(body, out),
                    Action::Missing => out.push("Missing action".into()),
                    _ => {}
                }
            }
            Item::Assign { .. } => {}
        }
    }
}

/// The same complaints from a real procmail log.
fn procmail_complaints(log: &str) -> Vec<String> {
    const KINDS: &[&str] = &[
        "Skipped \"",
        "Missing action",
        "Incomplete recipe",
        "Unexpected EOL",
        "Closing brace unexpected",
        "Missing closing brace",
        "Extraneous ",
        "Conflicting ",
    ];
    let log = format!("\n{log}");
    log.split("\nprocmail: ")
        .skip(1)
        .map(|rec| {
            // A record runs to the next `procmail:` line or the abstract.
            let end = ["\nFrom ", "\n Subject:", "\n  Folder:"]
                .iter()
                .filter_map(|m| rec.find(m))
                .min()
                .unwrap_or(rec.len());
            rec[..end].trim_end_matches('\n').to_string()
        })
        .filter(|rec| KINDS.iter().any(|k| rec.starts_with(k)))
        .collect()
}

/// Differential check: every fixture's complaints, as placed in the tree,
/// are what the real procmail logs for it (the fixtures are written so
/// that procmail reads them to the end and enters every block it must).
#[test]
fn fixtures_complain_like_procmail() {
    if !crate::util::require_tool("procmail") {
        return;
    }
    let mut seen = 0;
    for dir in ["ok", "errors"] {
        let folder = format!("{}/tests/fixtures/rc/{dir}", env!("CARGO_MANIFEST_DIR"));
        let mut paths: Vec<_> = std::fs::read_dir(&folder)
            .expect("fixture folder")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "rc"))
            .collect();
        paths.sort();
        for path in paths {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if KNOWN_DEVIATIONS.contains(&name.as_str()) {
                continue;
            }
            seen += 1;
            let src = std::fs::read(&path).expect("read fixture");
            let (rc, _) = syntax::parse(&name, &src);
            let mut want = Vec::new();
            parse_time_logs(&rc.items, &mut want);

            let dir = crate::util::Dir::new("rc-syntax");
            dir.write("rc", &src);
            let home = dir.path().to_string_lossy().into_owned();
            let mut child = std::process::Command::new("procmail")
                .current_dir(dir.path())
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("HOME", &home)
                .arg("-m")
                .arg(format!("LOGFILE={home}/log"))
                // Not a file: procmail waits a second after writing a
                // mailbox so that its mtime shows new mail.
                .arg("DEFAULT=/dev/null")
                .arg("./rc")
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("run procmail");
            {
                use std::io::Write as _;
                let mut stdin = child.stdin.take().unwrap();
                stdin.write_all(MESSAGE).expect("write message");
            }
            child.wait().expect("procmail exits");
            let log = String::from_utf8_lossy(&dir.read("log")).into_owned();
            let got = procmail_complaints(&log);
            assert_eq!(want, got, "{name}: tree vs procmail's log:\n{log}");
        }
    }
    assert!(seen > 30, "only {seen} fixtures checked");
}

/// The message the differential check feeds procmail.
const MESSAGE: &[u8] = b"From alice@example.com  Mon Jan  6 10:00:00 2025\n\
From: alice@example.com\n\
Subject: Dinner tonight\n\
To: bob@example.com\n\
\n\
body line\n";
