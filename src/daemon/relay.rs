//! The road out of a running server: [`crate::runner::Relay`] over the
//! mailertable and [`crate::smtp::client`].
//!
//! Owns the outbound connections: one destination's idle connection is
//! kept for [`IDLE`] after a transaction and reused by the next one (a
//! backlog goes out over one connection), and a destination that could
//! not be reached is left alone for the retry schedule's shortest backoff:
//! the other entries queued for it are deferred at once with the same
//! reason instead of each waiting for its own connection timeout (Postfix:
//! "delivery temporarily suspended").
//!
//! It never decides what an answer means for the queue (the runner records
//! it) and never routes local mail.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::queue::entry::{Attempt, Failure};
use crate::route::mailertable::{self, HostSpec, Route};
use crate::runner::{Relay, from_reply};
use crate::smtp::client::{self, Connection, OutParams, Timeouts};
use crate::smtp::server::Tables;
use crate::status::Class;

/// How long an idle connection is kept for the next message: well under
/// the 5 minutes a server waits for a command (RFC 5321 §4.5.3.2.7).
pub const IDLE: Duration = Duration::from_secs(30);

/// A destination: host, port, EHLO or HELO.
type Dest = (String, u16, bool);

/// The SMTP relay of a running server.
pub struct SmtpRelay {
    tables: Tables,
    smart_host: Option<HostSpec>,
    timeouts: Timeouts,
    helo: String,
    /// How long an unreachable destination is left alone.
    pause: Duration,
    idle: Mutex<HashMap<Dest, (Connection, Instant)>>,
    down: Mutex<HashMap<Dest, (Instant, Failure)>>,
}

impl SmtpRelay {
    /// A relay routing with the mailertable of `tables` (as reloaded) and
    /// `smart_host`, greeting as `helo`; an unreachable destination is
    /// paused for `pause`.
    pub fn new(
        tables: Tables,
        smart_host: Option<HostSpec>,
        timeouts: Timeouts,
        helo: String,
        pause: Duration,
    ) -> SmtpRelay {
        SmtpRelay {
            tables,
            smart_host,
            timeouts,
            helo,
            pause,
            idle: Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
        }
    }

    /// The kept connection to `dest`, if it is still fresh; closes the
    /// ones kept too long.
    fn take_idle(&self, dest: &Dest) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        for (_, (c, _)) in idle.extract_if(|_, (_, since)| since.elapsed() > IDLE) {
            c.quit();
        }
        idle.remove(dest)
            .map(|(c, _)| c)
            .filter(Connection::is_usable)
    }

    /// Forgets every pause: the next message tries its destination again
    /// (a flush).
    pub fn resume_all(&self) {
        self.down.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Why `dest` is paused, if it is.
    fn paused(&self, dest: &Dest) -> Option<Failure> {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        match down.get(dest) {
            Some((until, f)) if Instant::now() < *until => Some(f.clone()),
            Some(_) => {
                down.remove(dest);
                None
            }
            None => None,
        }
    }

    fn pause(&self, dest: &Dest, f: &Failure) {
        let mut f = f.clone();
        if !f.diagnostic.contains("(delivery to this host paused)") {
            f.diagnostic.push_str(" (delivery to this host paused)");
        }
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dest.clone(), (Instant::now() + self.pause, f));
    }
}

/// Whether a failure of a whole transaction pauses the destination: any
/// temporary one (no connection, lost, timed out, garbage, a 421 or 4xx to
/// the greeting or MAIL). Per-recipient 4xx answers never do.
fn unreachable(f: &Failure) -> bool {
    f.class == Class::Temp
}

impl Relay for SmtpRelay {
    fn send(
        &self,
        domain: &[u8],
        sender: &str,
        rcpts: &[&str],
        params: &str,
        message: &[u8],
    ) -> Vec<Attempt> {
        let all = |f: Failure| vec![Attempt::Failed(f); rcpts.len()];
        let config = self.tables.current();
        let route =
            mailertable::outbound_route(domain, &config.mailertable, self.smart_host.as_ref());
        let dest = match route {
            Err(reply) => return all(from_reply(&reply)),
            Ok(Route::Smtp {
                host, port, esmtp, ..
            }) => (host, port, esmtp),
            Ok(other) => {
                // `local:` entries are routed as local mail before this.
                return all(Failure {
                    class: Class::Temp,
                    detail: (3, 0),
                    diagnostic: format!("x-postroom; {other:?} is not a relay route"),
                    remote: None,
                });
            }
        };
        if let Some(f) = self.paused(&dest) {
            return all(f);
        }
        let mut conn = match self.take_idle(&dest) {
            Some(c) => c,
            None => match client::connect(&dest.0, dest.1, &self.helo, dest.2, &self.timeouts) {
                Ok(c) => c,
                Err(f) => {
                    if unreachable(&f) {
                        self.pause(&dest, &f);
                    }
                    return all(f);
                }
            },
        };
        let rcpts: Vec<String> = rcpts.iter().map(|r| r.to_string()).collect();
        let result = conn.send(sender, &rcpts, &OutParams::from_envelope(params), message);
        if conn.is_usable() {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(dest, (conn, Instant::now()));
        } else if let Err(f) = &result
            && unreachable(f)
        {
            self.pause(&dest, f);
        }
        result.unwrap_or_else(all)
    }
}

impl Drop for SmtpRelay {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        for (_, (c, _)) in idle {
            c.quit();
        }
    }
}
