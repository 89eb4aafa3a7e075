//! Writing one message into one folder, with locking.
//!
//! Folders are mbox files, Maildir, MH and plain directories, written
//! exactly as procmail writes them. This module knows nothing of recipes.
