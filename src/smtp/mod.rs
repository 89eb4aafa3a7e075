//! The SMTP side of the mail room.
//!
//! Owns the server's protocol, sans I/O: [`proto`] cuts bytes into command
//! lines and messages, [`session`] runs one session's state machine and
//! asks a [`session::Host`] for routing and queueing, [`address`] parses
//! envelope paths, [`reply`] names the crate's one reply type,
//! [`crate::status::Reply`], whose codes come from one
//! [`crate::status::Class`]. None of these opens a socket, a file or a
//! thread, or reads a clock. Beside them, [`settings`] reads the main
//! settings file and [`server`] is the only part with sockets, threads and
//! deadlines. [`client`] is the relay client: blocking sockets, one
//! connection per calling thread, deadlines for every reply (DESIGN.md:
//! smtp may use route, queue, message, status).

pub mod address;
pub mod client;
pub mod proto;
pub mod reply;
pub mod server;
pub mod session;
pub mod settings;
