//! `zsctl`: operator CLI of the ZStack management cluster.

use std::io::Write;

use clap::Parser;

fn main() {
    let cli = ops::cli::Cli::parse();
    match ops::cli::run(&cli) {
        Ok(out) => {
            // A closed pipe (e.g. `| head`) is not worth a panic.
            let _ = std::io::stdout().write_all(out.stdout.as_bytes());
            std::process::exit(out.code);
        }
        Err(e) => {
            if cli.json {
                let j = serde_json::json!({ "error": e.to_string() });
                let _ = writeln!(std::io::stdout(), "{j}");
            }
            let _ = writeln!(std::io::stderr(), "zsctl: error: {e}");
            std::process::exit(match e {
                ops::OpsError::Usage(_) => 2,
                _ => 1,
            });
        }
    }
}
