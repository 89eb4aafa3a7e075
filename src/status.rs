//! Delivery outcomes and their classes.
//!
//! An [`Outcome`] is what happened to one message for one recipient. Its
//! [`Class`] is a type, not a number: the sysexits code handed to an MTA, the
//! SMTP reply code and the enhanced status code all come from the same value
//! in [`Outcome::exit_code`] and [`Outcome::smtp`], so a temporary failure can
//! never be reported with a permanent enhanced code. OS errors are mapped to a
//! class in one place, [`Class::of_io`]. This module is a leaf.

use std::fmt;
use std::io;

/// sysexits(3) values, as procmail uses them.
pub mod sysexits {
    /// Success.
    pub const EX_OK: i32 = 0;
    /// Command line usage error.
    pub const EX_USAGE: i32 = 64;
    /// Data format error.
    pub const EX_DATAERR: i32 = 65;
    /// Cannot open input.
    pub const EX_NOINPUT: i32 = 66;
    /// Addressee unknown.
    pub const EX_NOUSER: i32 = 67;
    /// Host name unknown.
    pub const EX_NOHOST: i32 = 68;
    /// Service unavailable (a program could not be run).
    pub const EX_UNAVAILABLE: i32 = 69;
    /// Internal software error.
    pub const EX_SOFTWARE: i32 = 70;
    /// System error (e.g. cannot fork).
    pub const EX_OSERR: i32 = 71;
    /// Critical OS file missing.
    pub const EX_OSFILE: i32 = 72;
    /// Cannot create output file.
    pub const EX_CANTCREAT: i32 = 73;
    /// Input/output error.
    pub const EX_IOERR: i32 = 74;
    /// Temporary failure; the user is invited to retry.
    pub const EX_TEMPFAIL: i32 = 75;
    /// Remote error in protocol.
    pub const EX_PROTOCOL: i32 = 76;
    /// Permission denied.
    pub const EX_NOPERM: i32 = 77;
    /// Configuration error.
    pub const EX_CONFIG: i32 = 78;
}

/// Whether a failure may go away by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Try again later: the MTA keeps the message (exit 75, SMTP 4xx).
    Temp,
    /// Will not get better: bounce (exit 6x/7x, SMTP 5xx).
    Perm,
}

impl Class {
    /// The class of an OS error met while writing a mailbox or running a
    /// program. Only errors that a person must fix by hand and that retrying
    /// cannot cure are permanent; everything else (full disk, quota, locks,
    /// I/O) is temporary, because a bounce loses the mail for good while a
    /// retry costs only time.
    pub fn of_io(err: &io::Error) -> Class {
        match err.raw_os_error() {
            Some(libc::ENAMETOOLONG) | Some(libc::ELOOP) | Some(libc::EFBIG) => Class::Perm,
            _ => Class::Temp,
        }
    }

    /// First digit of the enhanced status code: `4` or `5`.
    fn digit(self) -> u16 {
        match self {
            Class::Temp => 4,
            Class::Perm => 5,
        }
    }
}

/// The result of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The message is in a mailbox (or was handed on).
    Delivered,
    /// It is not; `class` says whether to retry.
    Failed {
        /// Temporary or permanent.
        class: Class,
        /// Enhanced status code without its class digit, e.g. `(2, 2)` for `x.2.2`.
        detail: (u16, u16),
        /// The sysexits code for an MTA that calls us as its local mailer.
        exit: i32,
        /// One lowercase line for the log; never shown to an SMTP client.
        reason: String,
    },
}

impl Outcome {
    /// A temporary failure: exit 75, SMTP 451 4.x.x.
    pub fn temp(detail: (u16, u16), reason: impl Into<String>) -> Outcome {
        Outcome::Failed {
            class: Class::Temp,
            detail,
            exit: sysexits::EX_TEMPFAIL,
            reason: reason.into(),
        }
    }

    /// A permanent failure with the given sysexits code.
    pub fn perm(detail: (u16, u16), exit: i32, reason: impl Into<String>) -> Outcome {
        Outcome::Failed {
            class: Class::Perm,
            detail,
            exit,
            reason: reason.into(),
        }
    }

    /// A failure caused by an OS error while writing `what`.
    pub fn from_io(err: &io::Error, what: &str) -> Outcome {
        let reason = format!("{what}: {err}");
        // RFC 3463: x.2.2 mailbox full, x.3.1 mail system full.
        let detail = match err.raw_os_error() {
            Some(libc::EDQUOT) => (2, 2),
            Some(libc::ENOSPC) => (3, 1),
            _ => (2, 0),
        };
        match Class::of_io(err) {
            Class::Temp => Outcome::temp(detail, reason),
            Class::Perm => Outcome::perm(detail, sysexits::EX_CANTCREAT, reason),
        }
    }

    /// Whether the message is safe.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Delivered)
    }

    /// The process exit status for an MTA.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Delivered => sysexits::EX_OK,
            Outcome::Failed { exit, .. } => *exit,
        }
    }

    /// The SMTP reply code and enhanced status code, both from one class.
    pub fn smtp(&self) -> (u16, String) {
        match self {
            Outcome::Delivered => (250, "2.0.0".to_string()),
            Outcome::Failed { class, detail, .. } => {
                let code = match class {
                    Class::Temp => 451,
                    Class::Perm => 550,
                };
                (code, format!("{}.{}.{}", class.digit(), detail.0, detail.1))
            }
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Delivered => f.write_str("delivered"),
            Outcome::Failed { reason, .. } => f.write_str(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_decides_both_codes() {
        let t = Outcome::temp((2, 2), "mailbox full");
        assert_eq!(t.exit_code(), 75);
        assert_eq!(t.smtp(), (451, "4.2.2".to_string()));
        let p = Outcome::perm((1, 1), sysexits::EX_NOUSER, "no such user");
        assert_eq!(p.exit_code(), 67);
        assert_eq!(p.smtp(), (550, "5.1.1".to_string()));
    }

    #[test]
    fn full_disk_is_temporary() {
        let e = io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(Class::of_io(&e), Class::Temp);
    }
}
