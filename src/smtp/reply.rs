//! SMTP replies. The one reply type of the crate is [`crate::status::Reply`]
//! (routing builds replies too, and `route` may not depend on `smtp`); it
//! is re-exported here so that SMTP code names it where it lives. This
//! module holds no logic of its own.

pub use crate::status::Reply;
