//! Tests of `route`, the sendmail-style tables: every file under
//! `fixtures/tables/errors/` has its diagnostics snapshotted (the file's
//! extension says which parser reads it); `fixtures/tables/ok/` is a whole
//! example-like configuration directory that must load cleanly, and the
//! addresses listed in its `addresses` file are resolved and snapshotted;
//! `fixtures/tables/broken/` holds load-time errors that need a directory.
//! The expected behaviour is sendmail's as written in
//! `mta-semantics.md` A.1–A.7 (no sendmail runs on this machine).

use std::path::Path;

use postroom::diag::Diagnostic;
use postroom::route::virtusertable::DomainCheck;
use postroom::route::{
    self, Address, Envelope, Options, Resolution, Resolver, aliases, domains, users, virtusertable,
};

use crate::util::Dir;

/// The domains the error fixtures assume: `example.test` is local,
/// `relay.test` a relay domain.
struct Fixed;

impl DomainCheck for Fixed {
    fn is_local(&self, domain: &[u8]) -> bool {
        domain == b"example.test"
    }
    fn can_forward(&self, domain: &[u8]) -> bool {
        domain == b"relay.test"
    }
}

fn render(diags: &[Diagnostic], src: &[u8]) -> String {
    diags
        .iter()
        .map(|d| d.render(src))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn error_fixtures_give_these_diagnostics() {
    let mut seen = 0;
    insta::glob!("fixtures/tables/errors/*", |path| {
        seen += 1;
        let src = std::fs::read(path).expect("read fixture");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let ext = path.extension().unwrap().to_string_lossy().into_owned();
        let diags = match ext.as_str() {
            "aliases" => aliases::parse(&name, &src).1,
            "include" => aliases::parse_include(&name, &src, false).1,
            "virtusertable" => virtusertable::parse(&name, &src, &Fixed).1,
            "local-host-names" => domains::parse(&name, &src, domains::Matching::Exact).1,
            "users" => users::parse(&name, &src, Path::new("/etc/postroom")).1,
            other => panic!("no parser for fixture extension `{other}`"),
        };
        assert!(!diags.is_empty(), "{name} gives no diagnostic");
        insta::assert_snapshot!(render(&diags, &src));
    });
    assert!(seen > 0, "no fixtures under tests/fixtures/tables/errors");
}

fn fixture_dir(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tables")
        .join(name)
}

fn options() -> Options {
    Options {
        host_name: b"mx.example.test".to_vec(),
        smarthost: false,
        trusted_includes: vec!["lists/trusted.members".into()],
        ..Options::default()
    }
}

#[test]
fn ok_config_loads_cleanly_and_resolves_these_addresses() {
    let dir = fixture_dir("ok");
    let loaded = route::load(&dir, &options());
    assert!(loaded.diagnostics.is_empty(), "{}", loaded.render());
    let config = &loaded.config;
    let users = config.users();
    let resolver = Resolver::new(config, users);
    let list = std::fs::read_to_string(dir.join("addresses")).unwrap();
    let mut out = String::new();
    let mut n = 0;
    for line in list
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        n += 1;
        let addr = Address::parse(line.as_bytes()).unwrap();
        out.push_str(&format!(
            "{line}\n  => {}\n",
            resolver.resolve(&addr).to_string().replace('\n', "\n  ")
        ));
    }
    assert!(n > 20, "the address list is too short");
    // The fixture's include file belongs to whoever checked it out: root
    // (as in CI) makes its programs run as the default user (A.6.2), anyone
    // else as themselves. The snapshot shows the root case.
    if !nix::unistd::getuid().is_root() {
        out = out.replace("as include file owner", "as default user");
    }
    insta::assert_snapshot!(out);
}

#[test]
fn ok_config_envelope_gets_one_copy_per_target() {
    // mta-semantics A.6.3: envelope-wide de-duplication (sendmail); Postfix
    // gave two copies here (section G).
    let loaded = route::load(&fixture_dir("ok"), &options());
    let config = &loaded.config;
    let resolver = Resolver::new(config, config.users());
    let mut env = Envelope::new();
    for rcpt in [
        "bob@example.test",
        "staff@lists.example.test",
        "archive@example.test",
        "sales@example.test",
    ] {
        match resolver.resolve(&Address::parse(rcpt.as_bytes()).unwrap()) {
            Resolution::Local(t) => {
                env.add(t);
            }
            other => panic!("{rcpt}: {other}"),
        }
    }
    let got: Vec<String> = env
        .targets()
        .iter()
        .map(|t| format!("{} <- {}", t, t.original))
        .collect();
    let want = [
        "mailbox bob <- bob@example.test",
        "mailbox alice (sender carol@mx.example.test) <- staff@lists.example.test",
        "forward dave@relay.test (sender carol@mx.example.test) <- staff@lists.example.test",
        "mailbox carol (sender carol@mx.example.test) <- staff@lists.example.test",
        "error \"ghost\": 550 5.1.1 User unknown (sender carol@mx.example.test) <- staff@lists.example.test",
        "file /var/spool/archive/all.mbox as default user <- archive@example.test",
        "pipe \"/usr/bin/logger -t mail\" as default user <- archive@example.test",
    ];
    assert_eq!(got, want);
}

#[test]
fn broken_config_reports_every_problem() {
    // OpenSMTPD style: every error of every file before refusing to start.
    let loaded = route::load(&fixture_dir("broken"), &options());
    assert!(loaded.has_errors());
    insta::assert_snapshot!(loaded.render());
    // A.1: a table set with errors is never swapped in on reload.
    assert!(loaded.clean().is_err());
    assert!(route::load(&fixture_dir("ok"), &options()).clean().is_ok());
}

#[test]
fn missing_directory_is_an_error() {
    let dir = Dir::new("route-missing");
    let loaded = route::load(&dir.join("nope"), &options());
    assert!(loaded.has_errors());
}

#[test]
fn include_files_are_read_at_load_and_owned_by_their_owner() {
    // mta-semantics A.6.2: program members of a trusted include run as the
    // include file's owner; the same member in the aliases file runs as
    // the default user.
    let dir = Dir::new("route-include");
    dir.write("local-host-names", "example.test\n");
    dir.write("aliases", "l: :include:l.members, \"|/bin/cat\"\n");
    dir.write("l.members", "|/bin/true\n");
    let opts = Options {
        host_name: b"mx.example.test".to_vec(),
        trusted_includes: vec!["l.members".into()],
        ..Options::default()
    };
    let loaded = route::load(dir.path(), &opts);
    assert!(loaded.diagnostics.is_empty(), "{}", loaded.render());
    let users = route::VirtualUsers::default();
    let resolver = Resolver::new(&loaded.config, &users);
    let Resolution::Local(t) = resolver.resolve(&Address::parse(b"l@example.test").unwrap()) else {
        panic!("not local");
    };
    let uid = nix::unistd::getuid().as_raw();
    // A.6.2: never as root: a root-owned list runs as the default user.
    let owner = match uid {
        0 => route::RunAs::DefaultUser,
        uid => route::RunAs::Owner {
            uid,
            gid: nix::unistd::getegid().as_raw(),
        },
    };
    let got: Vec<_> = t.iter().map(|t| t.delivery.clone()).collect();
    let want = [
        route::Delivery::Pipe {
            command: b"/bin/true".to_vec(),
            run_as: owner,
        },
        route::Delivery::Pipe {
            command: b"/bin/cat".to_vec(),
            run_as: route::RunAs::DefaultUser,
        },
    ];
    assert_eq!(got, want);
}
