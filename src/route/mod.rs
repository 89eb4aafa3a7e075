//! Recipient routing: the sendmail-style tables (`local-host-names`,
//! `relay-domains`, `virtusertable`, `aliases`, `:include:` lists, mailbox
//! users, `mailertable`) and the resolver that turns one recipient address into a
//! decision: refuse it, relay it, or deliver it locally to a de-duplicated
//! list of typed targets (mta-semantics A.1–A.7, E).
//!
//! `route` is pure lookups. It reads table files into memory only in
//! [`config::load`]; resolution reads no file except a mailbox user's
//! `~/.forward` through the [`Users`] backend (A.7), never touches the
//! network or starts a process, and knows nothing of SMTP sessions (it
//! returns [`Reply`] values the SMTP layer sends with the address added).
//! It depends on nothing in the project but the leaves `diag` and `status`.

pub mod aliases;
pub mod config;
pub mod domains;
pub mod lists;
pub mod mailertable;
pub mod mapfile;
pub mod reply;
pub mod table;
pub mod users;
pub mod virtusertable;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

pub use config::{Config, Loaded, Options, RunAs, load};
pub use users::{Forward, SystemUsers, User, Users, VirtualUsers};

use crate::status::{Class, Reply};

use aliases::Item;
use domains::normalize;
use lists::List;
use virtusertable::Rhs;

/// sendmail's `MaxAliasRecursion` default: alias and virtusertable hops
/// allowed per recipient (A.5, A.6.3).
pub const MAX_ALIAS_DEPTH: usize = 10;

/// An address: local part and domain. The domain is kept in lower case
/// without a trailing dot; the local part as given (B.4: local parts are
/// case-sensitive in principle; lookups fold ASCII case where sendmail does).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    /// The local part, unquoted.
    pub local: Vec<u8>,
    /// The domain, lower case, no trailing dot; empty for an unqualified
    /// address.
    pub domain: Vec<u8>,
}

impl Address {
    /// An address with its domain normalized.
    pub fn new(local: &[u8], domain: &[u8]) -> Address {
        Address {
            local: local.to_vec(),
            domain: normalize(domain),
        }
    }

    /// Splits `local@domain` at the last `@`; an address without `@` is
    /// unqualified (empty domain). `None` for an empty local part.
    pub fn parse(s: &[u8]) -> Option<Address> {
        let (local, domain) = match s.iter().rposition(|&b| b == b'@') {
            Some(at) => (&s[..at], &s[at + 1..]),
            None => (s, &b""[..]),
        };
        (!local.is_empty()).then(|| Address::new(local, domain))
    }

    /// `local@domain` as bytes (`local` alone when unqualified).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = self.local.clone();
        if !self.domain.is_empty() {
            v.push(b'@');
            v.extend_from_slice(&self.domain);
        }
        v
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// One final delivery of a locally resolved recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A mailbox user, with the `+detail` of the address (procmail `-a`).
    Mailbox {
        /// The user name, lower case.
        user: Vec<u8>,
        /// The detail after the first `+`, if any (may be empty).
        detail: Option<Vec<u8>>,
    },
    /// Append the message to a file (from an alias or a trusted include).
    File {
        /// The path as written (absolute).
        path: Vec<u8>,
        /// Whose rights the write runs with (A.6.2).
        run_as: RunAs,
    },
    /// Pipe the message to a program.
    Pipe {
        /// The command, without the leading `|`.
        command: Vec<u8>,
        /// Whose rights the program runs with (A.6.2).
        run_as: RunAs,
    },
    /// Send it on to a remote address by SMTP; the envelope sender is
    /// unchanged unless the target's `sender` says otherwise.
    Forward(Address),
    /// A member that cannot be delivered: report it by DSN (A.6.5).
    Error {
        /// The reply that describes the failure.
        reply: Reply,
        /// The member that failed, as written.
        member: Vec<u8>,
    },
}

impl Delivery {
    /// The identity used for de-duplication (A.6.3): kind plus mailbox user
    /// (lower case) and detail, file path, command, or remote address
    /// (domain already lower case, local part as is).
    pub fn key(&self) -> (u8, Vec<u8>) {
        match self {
            Delivery::Mailbox { user, detail } => {
                let mut k = user.to_ascii_lowercase();
                if let Some(d) = detail {
                    k.push(b'+');
                    k.extend_from_slice(d);
                }
                (0, k)
            }
            Delivery::File { path, .. } => (1, path.clone()),
            Delivery::Pipe { command, .. } => (2, command.clone()),
            Delivery::Forward(a) => (3, a.to_bytes()),
            Delivery::Error { reply, member } => {
                let mut k = member.to_ascii_lowercase();
                k.extend_from_slice(reply.to_string().as_bytes());
                (4, k)
            }
        }
    }
}

impl Delivery {
    /// The `deliver` (procmail) arguments for a mailbox delivery, the
    /// caller adding `-f sender` (A.10: sendmail's `FEATURE(local_procmail)`
    /// runs `procmail -Y -a $h -d $u` once per recipient user): `-a detail`
    /// when the address had a `+detail`, then `-d user`. `None` for other
    /// deliveries.
    pub fn deliver_args(&self) -> Option<Vec<Vec<u8>>> {
        let Delivery::Mailbox { user, detail } = self else {
            return None;
        };
        let mut args = Vec::new();
        if let Some(d) = detail {
            args.push(b"-a".to_vec());
            args.push(d.clone());
        }
        args.push(b"-d".to_vec());
        args.push(user.clone());
        Some(args)
    }
}

/// Whether a pipe command needs `/bin/sh -c` (A.10: only when it has shell
/// metacharacters, as Postfix does; otherwise it is split at blanks and run
/// directly).
pub fn needs_shell(command: &[u8]) -> bool {
    command
        .iter()
        .any(|b| b"!\"#$%&'()*;<>?[\\]`{|}~\n\r".contains(b))
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            Delivery::Mailbox { user, detail: None } => write!(f, "mailbox {}", s(user)),
            Delivery::Mailbox {
                user,
                detail: Some(d),
            } => write!(f, "mailbox {} detail {:?}", s(user), s(d)),
            Delivery::File { path, run_as } => write!(f, "file {} as {run_as}", s(path)),
            Delivery::Pipe { command, run_as } => write!(f, "pipe {:?} as {run_as}", s(command)),
            Delivery::Forward(a) => write!(f, "forward {a}"),
            Delivery::Error { reply, member } => write!(f, "error {:?}: {reply}", s(member)),
        }
    }
}

/// A delivery with the recipient it came from and its envelope sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// What to do.
    pub delivery: Delivery,
    /// The recipient as the client gave it (for ORCPT, X-Original-To and
    /// DSNs, A.6.3).
    pub original: Address,
    /// The envelope sender to use instead of the message's, set when the
    /// target came through a list with an `owner-` alias (A.6.4, E).
    pub sender: Option<Vec<u8>>,
    /// The mailing list the target was reached through (the innermost
    /// one, as with the sender), whose fields its copy carries (E).
    pub list: Option<Arc<List>>,
}

/// What an expansion passes down to the members of an alias: the envelope
/// sender an `owner-` alias set and the list a `list` setting made of it.
#[derive(Clone, Debug, Default)]
struct Via {
    sender: Option<Vec<u8>>,
    list: Option<Arc<List>>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.delivery)?;
        if let Some(s) = &self.sender {
            write!(f, " (sender {})", String::from_utf8_lossy(s))?;
        }
        if let Some(l) = &self.list {
            write!(f, " (list {})", String::from_utf8_lossy(&l.id))?;
        }
        Ok(())
    }
}

/// What to do with one recipient (A.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// A local domain and a known recipient: accept (250) and deliver to
    /// these targets. Some may be [`Delivery::Error`]s, which are reported
    /// by DSN after acceptance (A.6.5).
    Local(Vec<Target>),
    /// A relay domain: accept (250 2.1.5) and queue for the domain's
    /// primary server (A.4 rule 7).
    Relay(Address),
    /// Refuse at RCPT time with this reply.
    Refused(Reply),
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolution::Local(targets) => {
                write!(f, "local")?;
                for t in targets {
                    write!(f, "\n  {t}")?;
                }
                Ok(())
            }
            Resolution::Relay(a) => write!(f, "relay {a}"),
            Resolution::Refused(r) => write!(f, "refused {r}"),
        }
    }
}

/// Whether a local part is a routing, program, file or include form that
/// must never be honoured from SMTP (A.4 rule 5, F.2, F.8).
pub fn is_routing_form(local: &[u8]) -> bool {
    local.iter().any(|&b| matches!(b, b'%' | b'!' | b'@'))
        || local.starts_with(b"|")
        || local.starts_with(b"/")
        || local.starts_with(b"\\")
        || (local.len() >= 9 && local[..9].eq_ignore_ascii_case(b":include:"))
}

/// Splits `user+detail` at the first `+`.
fn split_detail(name: &[u8]) -> (&[u8], Option<&[u8]>) {
    match name.iter().position(|&b| b == b'+') {
        Some(p) => (&name[..p], Some(&name[p + 1..])),
        None => (name, None),
    }
}

/// The outcome of following the virtusertable from an address.
enum Chain {
    /// Continue with aliases for this local name, at this depth.
    Name(Vec<u8>, usize),
    /// A remote forward.
    Forward(Address),
}

/// Answers routing questions against one [`Config`] and a user backend.
pub struct Resolver<'a> {
    config: &'a Config,
    users: &'a dyn Users,
}

/// The state of one recipient's expansion: the targets so far and what has
/// been seen.
struct Expansion<'r, 'a> {
    r: &'r Resolver<'a>,
    original: Address,
    seen: HashSet<(u8, Vec<u8>)>,
    out: Vec<Target>,
}

impl<'a> Resolver<'a> {
    /// A resolver for `config`, finding mailbox users in `users`.
    pub fn new(config: &'a Config, users: &'a dyn Users) -> Resolver<'a> {
        Resolver { config, users }
    }

    /// The tables it resolves with.
    pub fn config(&self) -> &'a Config {
        self.config
    }

    /// Classifies one recipient and, for a local one, expands it (A.4).
    ///
    /// The address is expected to be syntax-checked by the SMTP layer and
    /// unquoted; a source route already stripped. An empty domain means an
    /// unqualified address.
    pub fn resolve(&self, rcpt: &Address) -> Resolution {
        let mut local = rcpt.local.clone();
        let mut domain = normalize(&rcpt.domain);
        // A.4 rule 3: unqualified `postmaster` (any case) is ours; any
        // other unqualified address is refused.
        if domain.is_empty() {
            if !local.eq_ignore_ascii_case(b"postmaster") {
                return Resolution::Refused(reply::unqualified());
            }
            local = b"postmaster".to_vec();
            domain = self.config.host_name.clone();
        }
        // A.2: address literals are never local; refused as relay attempts.
        if domain.starts_with(b"[") {
            return Resolution::Refused(reply::relay_denied());
        }
        let is_local = self.config.is_local(&domain);
        let is_relay = !is_local && self.config.relay.matches(&domain);
        if !is_local && !is_relay {
            return Resolution::Refused(reply::relay_denied());
        }
        if is_routing_form(&local) {
            return Resolution::Refused(reply::routing_form());
        }
        let addr = Address { local, domain };
        if is_relay {
            // A.8: a mailertable `error:` entry refuses at RCPT time.
            if let Some(mailertable::Route::Error(reply)) =
                self.config.mailertable.route_for(&addr.domain)
            {
                return Resolution::Refused(reply.clone());
            }
            return Resolution::Relay(addr);
        }
        let mut ex = Expansion {
            r: self,
            original: addr.clone(),
            seen: HashSet::new(),
            out: Vec::new(),
        };
        // A.5: virtusertable results (errors, loops) are RCPT-time replies.
        match self.virtual_chain(&addr, 0) {
            Err(reply) => Resolution::Refused(reply),
            Ok(Chain::Forward(a)) => {
                ex.push(Delivery::Forward(a), &Via::default());
                Resolution::Local(ex.out)
            }
            Ok(Chain::Name(_, depth)) if depth > MAX_ALIAS_DEPTH => {
                Resolution::Refused(reply::alias_loop(depth, MAX_ALIAS_DEPTH))
            }
            Ok(Chain::Name(name, depth)) => {
                // A.4 rule 6 / A.6.5: only an unknown name is refused here.
                if ex.name(&name, depth, &mut Vec::new(), &Via::default()) {
                    Resolution::Local(ex.out)
                } else {
                    Resolution::Refused(reply::user_unknown())
                }
            }
        }
    }

    /// Follows the virtusertable from `addr` (domain local) until a local
    /// name, a remote forward or an error (A.5). Each hop adds one to the
    /// depth; past [`MAX_ALIAS_DEPTH`] the loop is broken.
    fn virtual_chain(&self, addr: &Address, depth: usize) -> Result<Chain, Reply> {
        let mut a = addr.clone();
        let mut depth = depth;
        loop {
            if depth > MAX_ALIAS_DEPTH {
                return Err(reply::alias_loop(depth, MAX_ALIAS_DEPTH));
            }
            let Some(hit) = self.config.virtusers.lookup(&a.local, &a.domain) else {
                // A.5: no match continues with the original local part.
                return Ok(Chain::Name(a.local, depth));
            };
            match hit.rhs {
                Rhs::Error(reply) => return Err(reply),
                Rhs::Local(name) => return Ok(Chain::Name(name, depth + 1)),
                Rhs::Address(b) if self.config.is_local(&b.domain) => {
                    a = b;
                    depth += 1;
                }
                Rhs::Address(b) if self.config.can_forward(&b.domain) => {
                    return Ok(Chain::Forward(b));
                }
                Rhs::Address(_) => return Err(reply::no_route()),
            }
        }
    }

    /// The envelope sender for the members of alias `key` (A.6.4, sendmail
    /// rule): the `owner-` alias's value when it is one plain address (no
    /// `,` `:` `/` `|` `"` or blank), else `owner-NAME` itself, qualified with
    /// the host name. For names starting with `owner-`, `owner-owner` is the
    /// owner. `None` without an owner alias.
    fn owner_sender(&self, key: &[u8]) -> Option<Vec<u8>> {
        let owner_key = if key.starts_with(b"owner-") {
            b"owner-owner".to_vec()
        } else {
            [&b"owner-"[..], key].concat()
        };
        if owner_key == key {
            return None;
        }
        let owner = self.config.aliases.get(&owner_key)?;
        let plain = !owner.value.iter().any(|&b| b",:/|\" \t".contains(&b));
        // sendmail parses the plain value as an address, which drops the
        // quoting backslash of `\user`.
        let mut sender = if plain {
            owner
                .value
                .strip_prefix(b"\\")
                .unwrap_or(&owner.value)
                .to_vec()
        } else {
            owner_key
        };
        if !sender.contains(&b'@') {
            sender.push(b'@');
            sender.extend_from_slice(&self.config.host_name);
        }
        Some(sender)
    }
}

impl Expansion<'_, '_> {
    /// Adds a target unless an equal one is there (A.6.3).
    fn push(&mut self, delivery: Delivery, via: &Via) {
        if self.seen.insert(delivery.key()) {
            self.out.push(Target {
                delivery,
                original: self.original.clone(),
                sender: via.sender.clone(),
                list: via.list.clone(),
            });
        }
    }

    fn error(&mut self, reply: Reply, member: &[u8], via: &Via) {
        let member = member.to_vec();
        self.push(Delivery::Error { reply, member }, via);
    }

    /// Delivers to the mailbox user `name` (`user+detail`) without aliasing;
    /// false when there is no such user. With `use_forward`, the user's
    /// `.forward` replaces the mailbox (A.7); inside it, the user's own name
    /// is a self reference and means the mailbox.
    fn mailbox(
        &mut self,
        name: &[u8],
        depth: usize,
        ancestors: &mut Vec<Vec<u8>>,
        via: &Via,
        use_forward: bool,
    ) -> bool {
        let (user, detail) = split_detail(name);
        let Some(u) = self.r.users.lookup(user) else {
            return false;
        };
        // A NUL cannot be in an alias name, so this marker never collides.
        let marker = [&b"\0forward:"[..], &u.name].concat();
        if use_forward && !ancestors.contains(&marker) {
            match self.r.users.forward(&u, detail) {
                Forward::Found { path, src } => {
                    let (members, _) = aliases::parse_include(&path.to_string_lossy(), &src, true);
                    // A.7: an empty .forward means normal delivery.
                    if !members.is_empty() {
                        ancestors.push(marker);
                        let run_as = RunAs::User {
                            name: u.name.clone(),
                        };
                        for m in &members {
                            self.item(&m.item, depth + 1, ancestors, via, run_as.clone());
                        }
                        ancestors.pop();
                        return true;
                    }
                }
                Forward::Defer { path } => {
                    self.error(
                        reply::cannot_open(Class::Temp, &path.to_string_lossy()),
                        name,
                        via,
                    );
                    return true;
                }
                Forward::None | Forward::Unsafe { .. } => {}
            }
        }
        let detail = detail.map(<[u8]>::to_vec);
        self.push(
            Delivery::Mailbox {
                user: u.name,
                detail,
            },
            via,
        );
        true
    }

    /// Expands a local name (A.6.3, A.6.6): aliases `user+detail`,
    /// `user+*`, `user` in that order, else the mailbox user. A name that is
    /// an alias being expanded above this one is a self reference and goes
    /// to the mailbox. False when the name is neither alias nor user.
    fn name(&mut self, name: &[u8], depth: usize, ancestors: &mut Vec<Vec<u8>>, via: &Via) -> bool {
        if depth > MAX_ALIAS_DEPTH {
            self.error(reply::alias_loop(depth, MAX_ALIAS_DEPTH), name, via);
            return true;
        }
        let lname = name.to_ascii_lowercase();
        let (user, detail) = split_detail(&lname);
        let mut keys = vec![lname.clone()];
        if detail.is_some() {
            keys.push([user, b"+*"].concat());
            keys.push(user.to_vec());
        }
        for key in keys {
            if ancestors.contains(&key) {
                // A.6.3: the self entry means the local mailbox of that name.
                if !self.mailbox(name, depth, ancestors, via, true) {
                    self.error(reply::user_unknown(), name, via);
                }
                return true;
            }
            let Some(alias) = self.r.config.aliases.get(&key) else {
                continue;
            };
            let via = Via {
                sender: self.r.owner_sender(&key).or_else(|| via.sender.clone()),
                list: self
                    .r
                    .config
                    .lists
                    .get(&key)
                    .cloned()
                    .or_else(|| via.list.clone()),
            };
            ancestors.push(key);
            for m in &alias.members {
                self.item(&m.item, depth + 1, ancestors, &via, RunAs::DefaultUser);
            }
            ancestors.pop();
            return true;
        }
        if self.mailbox(name, depth, ancestors, via, true) {
            return true;
        }
        // E: `NAME-request` with neither an alias nor a user of its own, for
        // an alias NAME that has an owner (a list, by sendmail's convention),
        // reaches the owner, as the `List-Help:` fields promise.
        if let Some(list) = lname.strip_suffix(b"-request")
            && self.r.config.aliases.get(list).is_some()
        {
            let owner = [&b"owner-"[..], list].concat();
            if self.r.config.aliases.get(&owner).is_some() {
                return self.name(&owner, depth + 1, ancestors, via);
            }
        }
        false
    }

    /// Expands one alias or include member at `depth`.
    fn item(
        &mut self,
        item: &Item,
        depth: usize,
        ancestors: &mut Vec<Vec<u8>>,
        via: &Via,
        run_as: RunAs,
    ) {
        if depth > MAX_ALIAS_DEPTH {
            self.error(
                reply::alias_loop(depth, MAX_ALIAS_DEPTH),
                &item_text(item),
                via,
            );
            return;
        }
        match item {
            Item::Name(n) => {
                if !self.name(n, depth, ancestors, via) {
                    self.error(reply::user_unknown(), n, via);
                }
            }
            Item::NoAlias(n) => {
                if !self.mailbox(n, depth, ancestors, via, false) {
                    self.error(reply::user_unknown(), n, via);
                }
            }
            Item::Address(a) if self.r.config.is_local(&a.domain) => {
                match self.r.virtual_chain(a, depth) {
                    Err(reply) => self.error(reply, &a.to_bytes(), via),
                    Ok(Chain::Forward(b)) => self.push(Delivery::Forward(b), via),
                    Ok(Chain::Name(n, d)) => {
                        if !self.name(&n, d, ancestors, via) {
                            self.error(reply::user_unknown(), &a.to_bytes(), via);
                        }
                    }
                }
            }
            Item::Address(a) if self.r.config.can_forward(&a.domain) => {
                self.push(Delivery::Forward(a.clone()), via);
            }
            Item::Address(a) => self.error(reply::no_route(), &a.to_bytes(), via),
            Item::File(path) => self.push(
                Delivery::File {
                    path: path.clone(),
                    run_as,
                },
                via,
            ),
            Item::Pipe(command) => self.push(
                Delivery::Pipe {
                    command: command.clone(),
                    run_as,
                },
                via,
            ),
            Item::Include(path) => match self.r.config.include(path) {
                Ok(inc) => {
                    for m in &inc.members {
                        self.item(&m.item, depth + 1, ancestors, via, inc.run_as.clone());
                    }
                }
                Err(reply) => self.error(reply, &item_text(item), via),
            },
            Item::Refused(reply) => self.error(reply.clone(), &item_text(item), via),
        }
    }
}

/// A member as text, for error targets.
fn item_text(item: &Item) -> Vec<u8> {
    match item {
        Item::Name(n) => n.clone(),
        Item::NoAlias(n) => [&b"\\"[..], n].concat(),
        Item::Address(a) => a.to_bytes(),
        Item::File(p) => p.clone(),
        Item::Pipe(c) => [&b"|"[..], c].concat(),
        Item::Include(p) => [&b":include:"[..], p].concat(),
        Item::Refused(_) => b"(bad member)".to_vec(),
    }
}

/// The targets of a whole envelope, de-duplicated across its recipients as
/// sendmail does with one send list per envelope (A.6.3: `a` and an alias
/// containing `a` give one copy; the first target kept wins).
#[derive(Debug, Default)]
pub struct Envelope {
    seen: HashSet<(u8, Vec<u8>)>,
    targets: Vec<Target>,
}

impl Envelope {
    /// An empty envelope.
    pub fn new() -> Envelope {
        Envelope::default()
    }

    /// Adds one recipient's targets; returns how many were new.
    pub fn add(&mut self, targets: impl IntoIterator<Item = Target>) -> usize {
        let before = self.targets.len();
        for t in targets {
            if self.seen.insert(t.delivery.key()) {
                self.targets.push(t);
            }
        }
        self.targets.len() - before
    }

    /// The targets so far, in order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::config::Include;
    use crate::route::domains::{DomainList, Matching};
    use crate::route::virtusertable::VirtUserTable;
    use std::path::PathBuf;

    const ALIASES: &str = "\
postmaster: alice
dup: alice, alice, bob, ALICE
alice: alice, bob
plain: \\alice
team: carol, ghost
loop1: loop2
loop2: loop1
selfish: selfish, carol
list: carol, bob, /var/mail/list.archive, \"|/usr/bin/archive list\"
owner-list: \\dave
list2: carol, bob
owner-list2: carol, dave
owner-owner: dave
list-request: carol
plus+special: carol
plus: bob
wild+*: carol
wild: bob
far: bob@relay.test, eve@nowhere.test
via: info@example.test
members: :include:lists/members
broken: :include:/no/such/file
d0: d1
d1: d2
d2: d3
d3: d4
d4: d5
d5: d6
d6: d7
d7: d8
d8: d9
d9: carol
e0: d0
ownerless-dup: bob, dup
";

    const VIRTUSERTABLE: &str = "\
info@example.test sales@other.test
sales@other.test list
gone@example.test error:nouser 550 No such user here
busy@example.test error:4.2.1:450 Mailbox busy
l1@example.test l2@example.test
l2@example.test l1@example.test
@other.test %1%3@relay.test
fwd@example.test someone@relay.test
";

    fn config() -> Config {
        let mut c = Config::new("/etc/postroom", b"MX.example.test");
        c.local = DomainList::from_names(Matching::Exact, ["example.test", "other.test"]);
        c.relay = DomainList::from_names(Matching::Subdomains, ["relay.test"]);
        let (vt, d) = mapfile::parse("virtusertable", VIRTUSERTABLE.as_bytes());
        assert!(d.is_empty(), "{d:?}");
        c.virtusers = VirtUserTable::new(vt.table());
        let (a, d) = aliases::parse("aliases", ALIASES.as_bytes());
        assert!(d.is_empty(), "{d:?}");
        c.aliases = a;
        let (members, _) = aliases::parse_include("lists/members", b"alice\nbob, dave\n", false);
        let inc = Include {
            members,
            run_as: RunAs::Owner { uid: 1, gid: 1 },
        };
        c.includes
            .insert(PathBuf::from("/etc/postroom/lists/members"), Ok(inc));
        c.includes.insert(
            PathBuf::from("/no/such/file"),
            Err(reply::cannot_open(Class::Perm, "/no/such/file")),
        );
        c
    }

    fn users() -> VirtualUsers {
        VirtualUsers::with_names(["alice", "bob", "carol", "dave", "plain"])
    }

    fn resolve(addr: &str) -> String {
        let c = config();
        let u = users();
        let a = Address::parse(addr.as_bytes()).unwrap();
        Resolver::new(&c, &u).resolve(&a).to_string()
    }

    /// Runs a table of (address, want) cases; `want` is the Display form.
    fn check(cases: &[(&str, &str)]) {
        for &(addr, want) in cases {
            let got = resolve(addr);
            assert_eq!(got, want, "resolving {addr}");
        }
    }

    #[test]
    fn classification() {
        // A.4 rules 3, 5, 6, 7, 8 and A.2 (host name local, literals refused).
        check(&[
            ("x@elsewhere.test", "refused 554 5.7.1 Relay access denied"),
            ("x@[192.0.2.1]", "refused 554 5.7.1 Relay access denied"),
            ("x@relay.test", "relay x@relay.test"),
            ("X@Sub.Relay.Test.", "relay X@sub.relay.test"),
            ("x@xrelay.test", "refused 554 5.7.1 Relay access denied"),
            (
                "x@sub.example.test",
                "refused 554 5.7.1 Relay access denied",
            ),
            ("postmaster", "local\n  mailbox alice\n  mailbox bob"),
            ("PostMaster", "local\n  mailbox alice\n  mailbox bob"),
            (
                "bob",
                "refused 501 5.1.3 Recipient address must be fully qualified",
            ),
            ("nobody@example.test", "refused 550 5.1.1 User unknown"),
            ("bob@EXAMPLE.test.", "local\n  mailbox bob"),
            ("bob@mx.example.test", "local\n  mailbox bob"),
        ]);
    }

    #[test]
    fn routing_forms_are_refused() {
        // A.4 rule 5 and F.2/F.8: percent hack, bang path, quoted `@`,
        // program, file, include and backslash forms, for local and relay
        // domains alike; foreign domains are plain relay denials.
        let routing = "refused 550 5.7.1 Routing, program and file addresses are not accepted";
        check(&[
            ("u%fd.test@example.test", routing),
            ("fd.test!u@example.test", routing),
            ("u@fd.test@example.test", routing),
            ("|/bin/true@example.test", routing),
            ("/etc/passwd@example.test", routing),
            (":include:/etc/x@example.test", routing),
            ("\\bob@example.test", routing),
            ("u%fd.test@relay.test", routing),
            (
                "u%fd.test@elsewhere.test",
                "refused 554 5.7.1 Relay access denied",
            ),
        ]);
    }

    #[test]
    fn virtusertable_results() {
        // A.5: local name, local address (resolved again), remote forward,
        // error forms at RCPT time, and the hop limit.
        check(&[
            (
                "info@example.test",
                "local\n  mailbox carol (sender dave@mx.example.test)\n  mailbox bob (sender dave@mx.example.test)\n  file /var/mail/list.archive as default user (sender dave@mx.example.test)\n  pipe \"/usr/bin/archive list\" as default user (sender dave@mx.example.test)",
            ),
            ("x+y@other.test", "local\n  forward x+y@relay.test"),
            ("fwd@example.test", "local\n  forward someone@relay.test"),
            ("gone@example.test", "refused 550 5.1.1 No such user here"),
            ("busy@example.test", "refused 450 4.2.1 Mailbox busy"),
            (
                "l1@example.test",
                "refused 554 5.4.6 aliasing/forwarding loop broken (11 aliases deep; 10 max)",
            ),
        ]);
    }

    #[test]
    fn plussed_users() {
        // A.6.6: aliases `user+detail`, `user+*`, `user`; a mailbox user
        // takes `user+anything` with the detail for `-a`.
        check(&[
            ("plus+special@example.test", "local\n  mailbox carol"),
            ("plus+foo@example.test", "local\n  mailbox bob"),
            ("wild+x@example.test", "local\n  mailbox carol"),
            ("wild+@example.test", "local\n  mailbox carol"),
            ("wild@example.test", "local\n  mailbox bob"),
            (
                "bob+Tag@example.test",
                "local\n  mailbox bob detail \"Tag\"",
            ),
            ("bob+@example.test", "local\n  mailbox bob detail \"\""),
            ("ghost+x@example.test", "refused 550 5.1.1 User unknown"),
        ]);
    }

    #[test]
    fn expansion_rules() {
        // A.6.2 `\user`; A.6.3 self references, duplicates, loops, depth;
        // A.6.5 member errors do not refuse a valid alias.
        check(&[
            ("dup@example.test", "local\n  mailbox alice\n  mailbox bob"),
            (
                "alice@example.test",
                "local\n  mailbox alice\n  mailbox bob",
            ),
            ("plain@example.test", "local\n  mailbox alice"),
            (
                "team@example.test",
                "local\n  mailbox carol\n  error \"ghost\": 550 5.1.1 User unknown",
            ),
            (
                "loop1@example.test",
                "local\n  error \"loop1\": 550 5.1.1 User unknown",
            ),
            (
                "selfish@example.test",
                "local\n  error \"selfish\": 550 5.1.1 User unknown\n  mailbox carol",
            ),
            ("d0@example.test", "local\n  mailbox carol"),
            (
                "e0@example.test",
                "local\n  error \"carol\": 554 5.4.6 aliasing/forwarding loop broken (11 aliases deep; 10 max)",
            ),
            (
                "via@example.test",
                "local\n  mailbox carol (sender dave@mx.example.test)\n  mailbox bob (sender dave@mx.example.test)\n  file /var/mail/list.archive as default user (sender dave@mx.example.test)\n  pipe \"/usr/bin/archive list\" as default user (sender dave@mx.example.test)",
            ),
            (
                "far@example.test",
                "local\n  forward bob@relay.test\n  error \"eve@nowhere.test\": 554 5.3.5 No route to forward domain",
            ),
        ]);
    }

    #[test]
    fn owners_set_the_envelope_sender() {
        // A.6.4 (sendmail rule): a plain owner value is the sender, else
        // `owner-NAME@host`; `owner-owner` owns owner aliases; `-request`
        // is an ordinary alias.
        check(&[
            (
                "list2@example.test",
                "local\n  mailbox carol (sender owner-list2@mx.example.test)\n  mailbox bob (sender owner-list2@mx.example.test)",
            ),
            (
                "owner-list@example.test",
                "local\n  mailbox dave (sender dave@mx.example.test)",
            ),
            (
                "owner-list2@example.test",
                "local\n  mailbox carol (sender dave@mx.example.test)\n  mailbox dave (sender dave@mx.example.test)",
            ),
            ("list-request@example.test", "local\n  mailbox carol"),
        ]);
    }

    #[test]
    fn lists_mark_their_targets_and_request_reaches_the_owner() {
        // E: the targets under a `list` alias carry it (the innermost list,
        // as with the sender); `NAME-request` with no alias or user of its
        // own goes to `owner-NAME`; without an owner it stays unknown.
        let mut c = config();
        let spec =
            lists::ListSpec::parse("list2@example.test", crate::diag::Span::default()).unwrap();
        c.lists
            .insert(b"list2".to_vec(), Arc::new(List::new(&spec, true, true)));
        let u = users();
        let r = Resolver::new(&c, &u);
        let resolve = |a: &str| {
            r.resolve(&Address::parse(a.as_bytes()).unwrap())
                .to_string()
        };
        assert_eq!(
            resolve("list2@example.test"),
            "local\n  mailbox carol (sender owner-list2@mx.example.test) (list list2.example.test)\n  mailbox bob (sender owner-list2@mx.example.test) (list list2.example.test)"
        );
        assert_eq!(
            resolve("list2-request@example.test"),
            "local\n  mailbox carol (sender dave@mx.example.test)\n  mailbox dave (sender dave@mx.example.test)"
        );
        // `list-request` has an alias of its own; `team` has no owner.
        assert_eq!(
            resolve("list-request@example.test"),
            "local\n  mailbox carol"
        );
        assert_eq!(
            resolve("team-request@example.test"),
            "refused 550 5.1.1 User unknown"
        );
        // Unlisted aliases' targets carry no list.
        assert_eq!(resolve("plain@example.test"), "local\n  mailbox alice");
    }

    #[test]
    fn include_lists() {
        // A.6.2: relative include paths start at the config directory; the
        // members expand like alias members; an unreadable file fails that
        // member with 550 5.2.4 (the RCPT is still accepted, A.6.5).
        check(&[
            (
                "members@example.test",
                "local\n  mailbox alice\n  mailbox bob\n  mailbox dave",
            ),
            (
                "broken@example.test",
                "local\n  error \":include:/no/such/file\": 550 5.2.4 Cannot open /no/such/file",
            ),
        ]);
    }

    #[test]
    fn envelope_deduplicates_across_recipients() {
        // A.6.3 and section G: `a` plus an alias containing `a` is one copy
        // (sendmail), where Postfix gives two.
        let c = config();
        let u = users();
        let r = Resolver::new(&c, &u);
        let mut env = Envelope::new();
        for rcpt in [
            "bob@example.test",
            "dup@example.test",
            "ownerless-dup@example.test",
        ] {
            let Resolution::Local(t) = r.resolve(&Address::parse(rcpt.as_bytes()).unwrap()) else {
                panic!("{rcpt} not local");
            };
            env.add(t);
        }
        let got: Vec<String> = env
            .targets()
            .iter()
            .map(|t| format!("{} <- {}", t.delivery, t.original))
            .collect();
        assert_eq!(
            got,
            [
                "mailbox bob <- bob@example.test",
                "mailbox alice <- dup@example.test"
            ]
        );
    }

    #[test]
    fn smarthost_allows_any_forward() {
        // A.5: forwards need a route; a smarthost is one for every domain.
        let mut c = config();
        c.smarthost = true;
        let u = users();
        let a = Address::parse(b"far@example.test").unwrap();
        let got = Resolver::new(&c, &u).resolve(&a).to_string();
        assert_eq!(
            got,
            "local\n  forward bob@relay.test\n  forward eve@nowhere.test"
        );
    }

    #[test]
    fn mailertable_error_refuses_a_relay_domain_at_rcpt() {
        // A.8: `error:` entries refuse at RCPT time; other routes relay.
        let mut c = config();
        let gone = mailertable::parse_rhs(b"error:5.1.2:550 Host gone").unwrap();
        c.mailertable.insert(b"relay.test", gone);
        let u = users();
        let resolve = |a: &str| {
            let a = Address::parse(a.as_bytes()).unwrap();
            Resolver::new(&c, &u).resolve(&a).to_string()
        };
        assert_eq!(resolve("bob@relay.test"), "refused 550 5.1.2 Host gone");
        let ok = mailertable::parse_rhs(b"esmtp:[primary.test]").unwrap();
        c.mailertable = mailertable::MailerTable::new();
        c.mailertable.insert(b".", ok);
        let a = Address::parse(b"bob@relay.test").unwrap();
        let got = Resolver::new(&c, &u).resolve(&a).to_string();
        assert_eq!(got, "relay bob@relay.test");
    }

    #[test]
    fn forward_files() {
        use std::os::unix::fs::PermissionsExt;
        // A.7: a mailbox user's .forward (or .forward+detail) replaces the
        // mailbox; `\user` and the user's own plain name mean the mailbox;
        // programs run as the user; an empty file means normal delivery;
        // `\user` from an alias skips the .forward.
        let dir = tempfile::tempdir().unwrap();
        let mut users = VirtualUsers::default();
        let forwards = [
            (
                "alice",
                ".forward",
                "\\alice, \"|/usr/bin/vacation alice\", bob\n",
            ),
            ("carol", ".forward", "# mine\ncarol, dave\n"),
            ("dave", ".forward", "# nothing\n"),
            ("bob", ".forward+tag", "carol\n"),
        ];
        for (name, file, text) in forwards {
            let home = dir.path().join(name);
            std::fs::create_dir(&home).unwrap();
            std::fs::write(home.join(file), text).unwrap();
            // Not group writable whatever the umask (A.7 safety checks).
            std::fs::set_permissions(home.join(file), std::fs::Permissions::from_mode(0o644))
                .unwrap();
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
            users.insert(User {
                name: name.as_bytes().to_vec(),
                home,
                mailbox: None,
                uid: None,
            });
        }
        let c = config();
        let r = Resolver::new(&c, &users);
        let cases = [
            (
                "alice@example.test",
                "local\n  mailbox alice\n  pipe \"/usr/bin/vacation alice\" as user alice\n  mailbox bob",
            ),
            (
                "carol@example.test",
                "local\n  mailbox carol\n  mailbox dave",
            ),
            ("dave@example.test", "local\n  mailbox dave"),
            (
                "bob+tag@example.test",
                "local\n  mailbox carol\n  mailbox dave",
            ),
            (
                "bob+other@example.test",
                "local\n  mailbox bob detail \"other\"",
            ),
            ("plain@example.test", "local\n  mailbox alice"),
        ];
        for (addr, want) in cases {
            let got = r
                .resolve(&Address::parse(addr.as_bytes()).unwrap())
                .to_string();
            assert_eq!(got, want, "resolving {addr}");
        }
    }

    #[test]
    fn deliver_arguments() {
        // A.10: one `deliver -a detail -d user` per mailbox user.
        let args = |d: Delivery| {
            d.deliver_args().map(|a| {
                a.into_iter()
                    .map(|x| String::from_utf8(x).unwrap())
                    .collect::<Vec<_>>()
            })
        };
        let plain = Delivery::Mailbox {
            user: b"bob".to_vec(),
            detail: None,
        };
        assert_eq!(args(plain), Some(vec!["-d".to_string(), "bob".to_string()]));
        let tagged = Delivery::Mailbox {
            user: b"bob".to_vec(),
            detail: Some(b"Tag".to_vec()),
        };
        let want = ["-a", "Tag", "-d", "bob"].map(String::from).to_vec();
        assert_eq!(args(tagged), Some(want));
        assert_eq!(args(Delivery::Forward(Address::new(b"a", b"b.test"))), None);
    }

    #[test]
    fn shell_only_for_metacharacters() {
        // A.10: programs via /bin/sh -c only with shell metacharacters.
        let cases: &[(&[u8], bool)] = &[
            (b"/usr/bin/vacation alice", false),
            (b"/usr/bin/prog -x --y=z", false),
            (b"/usr/bin/prog > /tmp/x", true),
            (b"prog $HOME", true),
            (b"a; b", true),
            (b"a | b", true),
            (b"echo 'x'", true),
        ];
        for &(cmd, want) in cases {
            assert_eq!(needs_shell(cmd), want, "{}", String::from_utf8_lossy(cmd));
        }
    }

    #[test]
    fn routing_form_detection() {
        let cases: &[(&[u8], bool)] = &[
            (b"bob", false),
            (b"bob+x", false),
            (b"a.b-c", false),
            (b"u%d", true),
            (b"d!u", true),
            (b"u@d", true),
            (b"|cmd", true),
            (b"/file", true),
            (b":INCLUDE:x", true),
            (b"\\bob", true),
        ];
        for &(local, want) in cases {
            assert_eq!(
                is_routing_form(local),
                want,
                "{}",
                String::from_utf8_lossy(local)
            );
        }
    }
}
