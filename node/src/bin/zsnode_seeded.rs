//! `zsnode-seeded`: `zsnode` built with the `seeded-bugs` feature (see `node::seeded`), for the
//! chaos checkers' self-tests only. Same entry point as `zsnode`.

#[path = "../main.rs"]
mod zsnode_main;

fn main() -> std::process::ExitCode {
    zsnode_main::main()
}
