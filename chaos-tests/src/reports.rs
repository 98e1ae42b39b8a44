//! Where chaos tests leave what outlives their captured output: summary lines (printed again at
//! the end of `deploy/test.sh`) and the histories of failing runs, saved for replay.

use std::io::Write;
use std::path::PathBuf;

use crate::cluster::workspace_root;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Print a summary line and append it to `<target>/chaos-reports/summary.txt`, so a run whose
/// test output is captured (`cargo test` without `--nocapture`, as in `.ci/run`) still shows
/// its figures.
pub fn summary(line: &str) {
    println!("{line}");
    let dir = target_dir().join("chaos-reports");
    let appended = std::fs::create_dir_all(&dir).and_then(|_| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("summary.txt"))?;
        writeln!(f, "{line}")
    });
    if let Err(e) = appended {
        eprintln!("chaos: cannot append to {}: {e}", dir.display());
    }
}

/// Directory for the saved material of failing runs: `$CHAOS_FAILURE_DIR`, else
/// `<target>/chaos-failures`.
pub fn failure_root() -> PathBuf {
    if let Some(d) = std::env::var_os("CHAOS_FAILURE_DIR") {
        return PathBuf::from(d);
    }
    target_dir().join("chaos-failures")
}
