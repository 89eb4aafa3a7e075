//! Command-line parsing and exit-code mapping for the binaries; nothing else.
