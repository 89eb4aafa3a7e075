//! `deliver`: procmail's command line, postroom's delivery.
//!
//! All the work is in `postroom::deliver::run`; this only turns its status
//! into the exit code an MTA reads.
fn main() {
    let inv = postroom::cli::parse_deliver(std::env::args_os().collect());
    std::process::exit(postroom::deliver::run(inv));
}
