//! `zsagent` command line.

fn main() {}
