//! Smoke run of the query benchmark (`benches/query`) on a few thousand records: every query
//! through the engine and through a 3-node cluster's HTTP API must return the right rows. No
//! timing is asserted.

#[path = "../benches/query/harness.rs"]
mod harness;
#[path = "../benches/query/vms.rs"]
mod vms;

use std::time::Duration;

#[test]
fn query_bench_smoke_returns_the_right_rows() {
    let dir = tempfile::tempdir().unwrap();
    let lines = harness::run(&harness::Config {
        records: 600,
        case_time: Duration::ZERO,
        min_ops: 2,
        load_clients: 16,
        clients: vec![1, 4],
        engine: true,
        cluster: true,
        dir: dir.path().to_path_buf(),
    });
    assert!(lines
        .iter()
        .any(|l| l.contains("level=engine") && l.contains("case=uuid ")));
    assert!(lines
        .iter()
        .any(|l| l.contains("level=cluster") && l.contains("mode=linearizable")));
}

#[test]
fn vm_query_bench_smoke_returns_the_right_rows() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vms::run(&vms::Config {
        records: 700,
        case_time: Duration::ZERO,
        min_ops: 2,
        clients: vec![1, 4],
        dir: dir.path().to_path_buf(),
    });
    for case in ["page", "count", "name_infix", "nic_ip", "nic_ip_prefix"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("case={case} clients=4"))),
            "{case} ran"
        );
    }
}
