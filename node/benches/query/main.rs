//! `QueryImage` lookups by uuid and by `name like` on N records, engine level and through a
//! 3-node cluster's HTTP API, local vs linearizable reads. See `harness.rs`.
//!
//! `cargo bench -p node --bench query` (100 000 records). Environment: `QUERY_BENCH_RECORDS`
//! (record count), `QUERY_BENCH_SECS` (minimum seconds per case, default 3),
//! `QUERY_BENCH_LEVELS` (`engine`, `cluster` or `engine,cluster`, the default),
//! `QUERY_BENCH_CLIENTS` (default `1,16`), `BENCH_DIR` (where data dirs go).

mod harness;
mod vms;

use std::time::Duration;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let levels = std::env::var("QUERY_BENCH_LEVELS").unwrap_or_else(|_| "engine,cluster".into());
    let clients = std::env::var("QUERY_BENCH_CLIENTS").unwrap_or_else(|_| "1,16".into());
    let cfg = harness::Config {
        records: env_or("QUERY_BENCH_RECORDS", 100_000),
        case_time: Duration::from_secs_f64(env_or("QUERY_BENCH_SECS", 3.0)),
        min_ops: 5,
        load_clients: env_or("QUERY_BENCH_LOAD_CLIENTS", 64),
        clients: clients
            .split(',')
            .filter_map(|c| c.trim().parse().ok())
            .collect(),
        engine: levels.contains("engine"),
        cluster: levels.contains("cluster"),
        dir: std::env::var("BENCH_DIR")
            .unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").into())
            .into(),
    };
    let started = std::time::Instant::now();
    // `QUERY_BENCH_KIND=vm`: `QueryVmInstance` (see `vms.rs`); clients default to `1,64`.
    if std::env::var("QUERY_BENCH_KIND").as_deref() == Ok("vm") {
        let clients = std::env::var("QUERY_BENCH_CLIENTS").unwrap_or_else(|_| "1,64".into());
        vms::run(&vms::Config {
            records: cfg.records,
            case_time: cfg.case_time,
            min_ops: 2,
            clients: clients
                .split(',')
                .filter_map(|c| c.trim().parse().ok())
                .collect(),
            dir: cfg.dir.clone(),
        });
        println!("bench=done secs={:.0}", started.elapsed().as_secs_f64());
        return;
    }
    harness::run(&cfg);
    println!("bench=done secs={:.0}", started.elapsed().as_secs_f64());
}
