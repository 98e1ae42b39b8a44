//! Replay the linearizability check on a saved register history (a JSON array of
//! `Operation<RegisterInput, RegisterOutput>`, as the chaos tests save for failing runs).
//! Prints one line `verdict=... ops=N tightened=M steps=S` and exits 0 when linearizable,
//! 1 when not, 2 when undecided within the step budget.

use std::collections::HashSet;
use std::process::ExitCode;

use anyhow::Context;
use chaos_tests::linearizability::check;
use chaos_tests::linearizability::tighten_unique_writes;
use chaos_tests::linearizability::Register;
use chaos_tests::linearizability::RegisterOp;
use chaos_tests::linearizability::Verdict;
use clap::Parser;

/// Check a saved register history.
#[derive(Parser)]
struct Args {
    /// The JSON file.
    file: std::path::PathBuf,
    /// Search step budget.
    #[arg(long, default_value_t = 100_000_000)]
    steps: u64,
    /// Search the history as recorded, without dropping/bounding unanswered writes.
    #[arg(long)]
    raw: bool,
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let text =
        std::fs::read(&args.file).with_context(|| format!("read {}", args.file.display()))?;
    let ops: Vec<RegisterOp> = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a register history", args.file.display()))?;
    let searched = if args.raw {
        ops.clone()
    } else {
        tighten_unique_writes(&ops, &HashSet::from([None]))
    };
    let started = std::time::Instant::now();
    let verdict = check(&Register, &searched, args.steps);
    let (name, code) = match &verdict {
        Verdict::Linearizable => ("linearizable", 0),
        Verdict::NotLinearizable { .. } => ("not-linearizable", 1),
        Verdict::Unknown => ("unknown", 2),
    };
    println!(
        "verdict={name} ops={} searched={} unanswered={} ms={}",
        ops.len(),
        searched.len(),
        ops.iter().filter(|o| o.ret.is_none()).count(),
        started.elapsed().as_millis()
    );
    if let Verdict::NotLinearizable { longest } = verdict {
        let lin: HashSet<usize> = longest.into_iter().collect();
        for (i, o) in searched
            .iter()
            .enumerate()
            .filter(|(i, _)| !lin.contains(i))
            .take(5)
        {
            println!("not linearized: #{i} {o:?}");
        }
    }
    Ok(ExitCode::from(code))
}
