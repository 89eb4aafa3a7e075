//! Placeholder: see rc/mod.rs.
