//! One recipient's delivery: find and trust the rcfile, drop privileges,
//! run the recipes with real effects, apply procmail's fallbacks.

pub mod proc;
pub mod user;
