//! The SMTP side of the mail room.
//!
//! Owns the server's protocol, sans I/O: [`proto`] cuts bytes into command
//! lines and messages, [`session`] runs one session's state machine and
//! asks a [`session::Host`] for routing and queueing, [`address`] parses
//! envelope paths, [`reply`] names the crate's one reply type,
//! [`crate::status::Reply`], whose codes come from one
//! [`crate::status::Class`]. Nothing here opens a socket, a file or a
//! thread, or reads a clock; the server loop and the relay client will
//! live beside these (DESIGN.md: smtp may use route, queue, message,
//! status).

pub mod address;
pub mod proto;
pub mod reply;
pub mod session;
