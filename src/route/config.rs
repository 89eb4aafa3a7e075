//! Loading a configuration directory in the sendmail layout into memory:
//! `local-host-names`, `relay-domains`, `virtusertable`, `aliases`, the
//! `:include:` files the aliases name, `mailertable`, and an optional
//! `users` file.
//!
//! Every problem in every file is collected before the caller decides
//! whether to start (OpenSMTPD: report every config error, then refuse);
//! good lines always load (ripgrep's `Partial`). This is the only part of
//! `route` that opens files; it never writes one. A missing optional file
//! is an empty table.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::{Diagnostic, Severity, Span};
use crate::status::{Class, Reply};

use super::aliases::{self, Aliases, Item, Member};
use super::domains::{self, DomainList, Matching};
use super::lists::{List, ListSpec};
use super::mailertable::{self, MailerTable};
use super::reply;
use super::users::{self, SystemUsers, Users, VirtualUsers};
use super::virtusertable::{self, DomainCheck, VirtUserTable};

/// Whose rights a file or program delivery runs with (A.6.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RunAs {
    /// Listed in the system aliases file: an unprivileged default user
    /// (sendmail `DefaultUser`, Postfix `default_privs`), never root.
    DefaultUser,
    /// Listed in a mailbox user's `.forward`: that user (A.7).
    User {
        /// The user's name.
        name: Vec<u8>,
    },
    /// Listed in an include file: the owner of that file.
    Owner {
        /// The file's owner.
        uid: u32,
        /// The file's group.
        gid: u32,
    },
}

impl fmt::Display for RunAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunAs::DefaultUser => f.write_str("default user"),
            RunAs::User { name } => write!(f, "user {}", String::from_utf8_lossy(name)),
            RunAs::Owner { .. } => f.write_str("include file owner"),
        }
    }
}

/// Settings that do not live in the table files (they come from the main
/// settings file).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The server's own host name: always a local domain (A.2), and the
    /// domain of `owner-` senders and unqualified `postmaster`.
    pub host_name: Vec<u8>,
    /// Whether a smarthost is configured, so forwards may go to any domain;
    /// without one, forwards only go to relay domains (A.5).
    pub smarthost: bool,
    /// Include files whose file and program members are allowed (A.6.2:
    /// off by default, a per-file opt-in). Absolute paths, or relative to
    /// the configuration directory.
    pub trusted_includes: Vec<PathBuf>,
    /// The aliases that are mailing lists (postroom.conf's `list` lines).
    pub lists: Vec<ListSpec>,
    /// postroom.conf as the settings were read from it: the `list` lines'
    /// spans point into it (only to show them in diagnostics; routing
    /// never reads that file, and a reload keeps the lines it started with).
    pub settings_source: Vec<u8>,
}

/// One `:include:` file as loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Include {
    /// Its members.
    pub members: Vec<Member>,
    /// Whose rights its file and program members run with.
    pub run_as: RunAs,
}

/// Every table, in memory.
#[derive(Clone, Debug)]
pub struct Config {
    /// The configuration directory; relative include paths start here.
    pub dir: PathBuf,
    /// The server's host name (lower case).
    pub host_name: Vec<u8>,
    /// Whether forwards may go to any domain (see [`Options::smarthost`]).
    pub smarthost: bool,
    /// `local-host-names`.
    pub local: DomainList,
    /// `relay-domains`.
    pub relay: DomainList,
    /// `virtusertable`.
    pub virtusers: VirtUserTable,
    /// `aliases`.
    pub aliases: Aliases,
    /// Include files by resolved path, or the reply for one that could not
    /// be read.
    pub includes: HashMap<PathBuf, Result<Include, Reply>>,
    /// The `users` file, when there is one.
    pub virtual_users: Option<VirtualUsers>,
    /// `mailertable`: how mail for remote domains leaves (A.8).
    pub mailertable: MailerTable,
    /// The aliases that are mailing lists, by alias name.
    pub lists: HashMap<Vec<u8>, Arc<List>>,
}

impl Config {
    /// An empty configuration for host `host_name` (tables are then filled
    /// in by hand, e.g. in tests).
    pub fn new(dir: impl Into<PathBuf>, host_name: &[u8]) -> Config {
        Config {
            dir: dir.into(),
            host_name: domains::normalize(host_name),
            smarthost: false,
            local: DomainList::new(Matching::Exact),
            relay: DomainList::new(Matching::Subdomains),
            virtusers: VirtUserTable::default(),
            aliases: Aliases::default(),
            includes: HashMap::new(),
            virtual_users: None,
            mailertable: MailerTable::new(),
            lists: HashMap::new(),
        }
    }

    /// Whether `domain` (normalized) is local: listed, or our host name (A.2).
    pub fn is_local(&self, domain: &[u8]) -> bool {
        domain == self.host_name.as_slice() || self.local.matches(domain)
    }

    /// Whether mail for the non-local `domain` can be sent on: a relay
    /// domain, or any domain with a smarthost (A.5).
    pub fn can_forward(&self, domain: &[u8]) -> bool {
        self.smarthost || self.relay.matches(domain)
    }

    /// The path an `:include:` names: absolute as written, relative from
    /// the configuration directory (see the report: sendmail's base is its
    /// working directory, the queue; ours is the directory of the tables).
    pub fn include_path(&self, written: &[u8]) -> PathBuf {
        self.dir.join(OsStr::from_bytes(written))
    }

    /// The loaded include file `written`, or the reply for its member.
    pub fn include(&self, written: &[u8]) -> Result<&Include, Reply> {
        let path = self.include_path(written);
        match self.includes.get(&path) {
            Some(Ok(inc)) => Ok(inc),
            Some(Err(reply)) => Err(reply.clone()),
            None => Err(reply::cannot_open(Class::Perm, &path.to_string_lossy())),
        }
    }

    /// The user backend: the `users` file when present, else passwd.
    pub fn users(&self) -> &dyn Users {
        match &self.virtual_users {
            Some(v) => v,
            None => &SystemUsers,
        }
    }
}

struct Check<'a> {
    config: &'a Config,
}

impl DomainCheck for Check<'_> {
    fn is_local(&self, domain: &[u8]) -> bool {
        self.config.is_local(domain)
    }
    fn can_forward(&self, domain: &[u8]) -> bool {
        self.config.can_forward(domain)
    }
}

/// A loaded configuration with every diagnostic and the text of every file
/// read (to render the diagnostics).
#[derive(Debug)]
pub struct Loaded {
    /// The tables (good lines only).
    pub config: Config,
    /// Every problem found, file by file.
    pub diagnostics: Vec<Diagnostic>,
    /// File name as shown in diagnostics → its bytes.
    pub sources: HashMap<String, Vec<u8>>,
}

impl Loaded {
    /// Whether any diagnostic is an error (a checker refuses to start).
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// The configuration when no diagnostic is an error, else `self` back:
    /// a reload swaps in only a whole, clean table set (A.1: never half a
    /// table; the running one stays and the errors are logged).
    pub fn clean(self) -> Result<Config, Box<Loaded>> {
        if self.has_errors() {
            Err(Box::new(self))
        } else {
            Ok(self.config)
        }
    }

    /// All diagnostics rendered rustc-style, in order.
    pub fn render(&self) -> String {
        let empty = Vec::new();
        self.diagnostics
            .iter()
            .map(|d| d.render(self.sources.get(&d.file).unwrap_or(&empty)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The span of the first line of a class file whose first word is `name`.
fn line_of(src: &[u8], name: &[u8]) -> Span {
    for (off, line) in super::mapfile::lines(src) {
        let word: Vec<u8> = line
            .iter()
            .copied()
            .skip_while(|&b| b == b' ' || b == b'\t')
            .take_while(|&b| b != b' ' && b != b'\t')
            .collect();
        if domains::normalize(&word) == name {
            let start = line.len()
                - line
                    .iter()
                    .skip_while(|&&b| b == b' ' || b == b'\t')
                    .count();
            return Span::new(off + start, off + start + word.len());
        }
    }
    Span::default()
}

/// A short lowercase reason for an OS error.
fn reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::IsADirectory => "is a directory".to_string(),
        _ => e.to_string(),
    }
}

/// The name to show for `path`: relative to `dir` when inside it.
fn shown(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Reads the configuration directory `dir` (A.1–A.6). Missing files are
/// empty tables; an unreadable file or directory is an error diagnostic.
pub fn load(dir: &Path, opts: &Options) -> Loaded {
    let mut config = Config::new(dir, &opts.host_name);
    config.smarthost = opts.smarthost;
    let mut diags = Vec::new();
    let mut sources = HashMap::new();
    let mut read = |name: &str, diags: &mut Vec<Diagnostic>| -> Option<Vec<u8>> {
        match std::fs::read(dir.join(name)) {
            Ok(src) => {
                sources.insert(name.to_string(), src.clone());
                Some(src)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                diags.push(Diagnostic::error(
                    name,
                    Span::default(),
                    format!("cannot read {name}: {}", reason(&e)),
                ));
                None
            }
        }
    };
    if !dir.is_dir() {
        diags.push(Diagnostic::error(
            dir.to_string_lossy(),
            Span::default(),
            "configuration directory does not exist",
        ));
    }
    if let Some(src) = read("local-host-names", &mut diags) {
        let (list, d) = domains::parse("local-host-names", &src, Matching::Exact);
        config.local = list;
        diags.extend(d);
    }
    if let Some(src) = read("relay-domains", &mut diags) {
        let (list, d) = domains::parse("relay-domains", &src, Matching::Subdomains);
        diags.extend(d);
        // A.2: a domain in both lists is local.
        for name in list.names() {
            if config.is_local(name) {
                diags.push(Diagnostic::warning(
                    "relay-domains",
                    line_of(&src, name),
                    format!(
                        "`{}` is also a local domain and is treated as local",
                        String::from_utf8_lossy(name)
                    ),
                ));
            }
        }
        config.relay = list;
    }
    let virtusers = read("virtusertable", &mut diags).map(|src| {
        let (vt, d) = virtusertable::parse("virtusertable", &src, &Check { config: &config });
        diags.extend(d);
        vt
    });
    if let Some(vt) = virtusers {
        config.virtusers = vt;
    }
    let aliases_src = read("aliases", &mut diags);
    if let Some(src) = &aliases_src {
        let (mut a, d) = aliases::parse("aliases", src);
        diags.extend(d);
        check_forwards("aliases", &config, &mut a, &mut diags);
        config.aliases = a;
    }
    if let Some(src) = read("users", &mut diags) {
        let (u, d) = users::parse("users", &src, dir);
        diags.extend(d);
        config.virtual_users = Some(u);
    }
    if let Some(src) = read("mailertable", &mut diags) {
        let is_local = |d: &[u8]| config.is_local(d);
        let (t, d) = mailertable::parse_with("mailertable", &src, &is_local);
        diags.extend(d);
        config.mailertable = t;
    }
    if !opts.lists.is_empty() {
        sources.insert(
            super::lists::SETTINGS_FILE.to_string(),
            opts.settings_source.clone(),
        );
        load_lists(&mut config, &opts.lists, &mut diags);
    }
    load_includes(&mut config, opts, &mut diags, &mut sources);
    Loaded {
        config,
        diagnostics: diags,
        sources,
    }
}

/// Makes the [`List`] of each `list` setting whose alias exists in a
/// local domain; the others are errors at their postroom.conf line.
fn load_lists(config: &mut Config, specs: &[ListSpec], diags: &mut Vec<Diagnostic>) {
    let file = super::lists::SETTINGS_FILE;
    for spec in specs {
        let name = String::from_utf8_lossy(&spec.name);
        if config.aliases.get(&spec.name).is_none() {
            diags.push(
                Diagnostic::error(file, spec.span, format!("list `{name}` is not an alias"))
                    .with_note("a list is an alias, usually `NAME: :include:FILE`, in aliases"),
            );
            continue;
        }
        if !config.is_local(&spec.domain) {
            diags.push(Diagnostic::error(
                file,
                spec.span,
                format!(
                    "`{}` is not a local domain, so posts to list `{name}` could not reach it",
                    String::from_utf8_lossy(&spec.domain)
                ),
            ));
            continue;
        }
        let has = |prefix: &[u8], suffix: &[u8]| {
            config
                .aliases
                .get(&[prefix, &spec.name, suffix].concat())
                .is_some()
        };
        let owner = has(b"owner-", b"");
        // `NAME-request` without an alias of its own reaches the owner.
        let request = owner || has(b"", b"-request");
        config
            .lists
            .insert(spec.name.clone(), Arc::new(List::new(spec, request, owner)));
    }
}

/// Forwards to domains with no route are configuration errors (A.5); the
/// member stays and fails by DSN.
fn check_forwards(file: &str, config: &Config, aliases: &mut Aliases, diags: &mut Vec<Diagnostic>) {
    let mut changed = Vec::new();
    for alias in aliases.iter() {
        let mut a = alias.clone();
        let mut any = false;
        for m in &mut a.members {
            check_member(file, config, m, diags, &mut any);
        }
        if any {
            changed.push(a);
        }
    }
    for a in changed {
        aliases.insert(a);
    }
}

fn check_member(
    file: &str,
    config: &Config,
    m: &mut Member,
    diags: &mut Vec<Diagnostic>,
    changed: &mut bool,
) {
    if let Item::Address(a) = &m.item
        && !config.is_local(&a.domain)
        && !config.can_forward(&a.domain)
    {
        diags.push(
            Diagnostic::error(
                file,
                m.span,
                format!(
                    "no route for forwarding to `{}`",
                    String::from_utf8_lossy(&a.domain)
                ),
            )
            .with_note("forwards need a relay domain or a smarthost"),
        );
        m.item = Item::Refused(reply::no_route());
        *changed = true;
    }
}

/// Reads every include file named by an alias or by another include file.
fn load_includes(
    config: &mut Config,
    opts: &Options,
    diags: &mut Vec<Diagnostic>,
    sources: &mut HashMap<String, Vec<u8>>,
) {
    let trusted: HashSet<PathBuf> = opts
        .trusted_includes
        .iter()
        .map(|p| config.dir.join(p))
        .collect();
    // (path as written, file that names it, where)
    let mut todo: Vec<(Vec<u8>, String, Span)> = Vec::new();
    let named = |members: &[Member], file: &str, todo: &mut Vec<(Vec<u8>, String, Span)>| {
        for m in members {
            if let Item::Include(p) = &m.item {
                todo.push((p.clone(), file.to_string(), m.span));
            }
        }
    };
    let mut all: Vec<&aliases::Alias> = config.aliases.iter().collect();
    all.sort_by_key(|a| a.line);
    for a in all {
        named(&a.members, "aliases", &mut todo);
    }
    todo.reverse();
    while let Some((written, from, span)) = todo.pop() {
        let path = config.include_path(&written);
        if config.includes.contains_key(&path) {
            continue;
        }
        let name = shown(&config.dir, &path);
        let result = match std::fs::read(&path).and_then(|src| Ok((std::fs::metadata(&path)?, src)))
        {
            Ok((meta, src)) => {
                let mut trust = trusted.contains(&path);
                // A.6.2: sendmail refuses files and programs named by an
                // unsafe controlling file; a writable list is one.
                if trust && meta.mode() & 0o022 != 0 {
                    diags.push(Diagnostic::warning(
                        &from,
                        span,
                        format!(
                            "include file `{name}` is group or world writable, so it is not trusted"
                        ),
                    ));
                    trust = false;
                }
                let (mut members, d) = aliases::parse_include(&name, &src, trust);
                diags.extend(d);
                for m in &mut members {
                    let mut changed = false;
                    check_member(&name, config, m, diags, &mut changed);
                }
                let mut more = Vec::new();
                named(&members, &name, &mut more);
                more.reverse();
                todo.extend(more);
                sources.insert(name.clone(), src);
                // A.6.2: never as root; a root-owned list runs as the
                // default user, like the aliases file itself.
                let run_as = match meta.uid() {
                    0 => RunAs::DefaultUser,
                    uid => RunAs::Owner {
                        uid,
                        gid: meta.gid(),
                    },
                };
                Ok(Include { members, run_as })
            }
            Err(e) => {
                diags.push(Diagnostic::error(
                    &from,
                    span,
                    format!("cannot read include file `{name}`: {}", reason(&e)),
                ));
                Err(reply::cannot_open(Class::of_open(&e), &name))
            }
        };
        config.includes.insert(path, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_open_errors_defer() {
        // A.6.2: transient errors defer (451 4.2.4), others bounce (550 5.2.4).
        let cases = [
            (libc::EIO, "451 4.2.4 Cannot open x"),
            (libc::EAGAIN, "451 4.2.4 Cannot open x"),
            (libc::ENOENT, "550 5.2.4 Cannot open x"),
            (libc::EACCES, "550 5.2.4 Cannot open x"),
        ];
        for (errno, want) in cases {
            let got = reply::cannot_open(Class::of_open(&io::Error::from_raw_os_error(errno)), "x")
                .to_string();
            assert_eq!(got, want, "errno {errno}");
        }
    }

    #[test]
    fn lists_must_be_aliases_in_a_local_domain() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("aliases"),
            "team: alice\nowner-team: bob\nops: carol\nops-request: dave\nfar: x\n",
        )
        .unwrap();
        let conf = "list = team@mx.example.test\nlist = ops@mx.example.test\nlist = ghost@mx.example.test\nlist = far@elsewhere.test\n";
        let lists = conf
            .lines()
            .scan(0, |at, line| {
                let span = Span::new(*at, *at + line.len());
                *at += line.len() + 1;
                Some(ListSpec::parse(&line["list = ".len()..], span).unwrap())
            })
            .collect();
        let opts = Options {
            host_name: b"mx.example.test".to_vec(),
            lists,
            settings_source: conf.as_bytes().to_vec(),
            ..Options::default()
        };
        let loaded = load(dir.path(), &opts);
        let got: Vec<String> = loaded
            .diagnostics
            .iter()
            .map(|d| {
                let (l, _) = d.span.line_col(conf.as_bytes());
                format!("{}:{l}: {}", d.file, d.message)
            })
            .collect();
        assert_eq!(
            got,
            [
                "postroom.conf:3: list `ghost` is not an alias",
                "postroom.conf:4: `elsewhere.test` is not a local domain, so posts to list `far` could not reach it"
            ]
        );
        let mut names: Vec<&[u8]> = loaded.config.lists.keys().map(|k| &k[..]).collect();
        names.sort();
        assert_eq!(names, [&b"ops"[..], b"team"]);
        // ops has a -request alias but no owner; team an owner (and so a
        // request address through it).
        let fields =
            |n: &[u8]| String::from_utf8_lossy(&loaded.config.lists[n].fields).into_owned();
        assert!(fields(b"ops").contains("List-Help:") && !fields(b"ops").contains("List-Owner:"));
        assert!(fields(b"team").contains("List-Help:") && fields(b"team").contains("List-Owner:"));
        assert!(
            loaded.render().contains("list = ghost@mx.example.test"),
            "{}",
            loaded.render()
        );
    }

    #[test]
    fn missing_files_are_empty_tables() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            host_name: b"mx.example.test".to_vec(),
            ..Options::default()
        };
        let loaded = load(dir.path(), &opts);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        assert!(loaded.config.is_local(b"mx.example.test"));
        assert!(loaded.config.aliases.is_empty());
        assert!(loaded.config.virtual_users.is_none());
    }
}
