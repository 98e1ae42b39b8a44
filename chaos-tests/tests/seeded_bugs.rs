//! The checkers catch deliberately broken nodes (`zsnode-seeded`, feature `seeded-bugs` of the
//! node crate, bug chosen by `ZSNODE_SEEDED_BUG`):
//! - `stale-read`: linearizable reads skip the read-index barrier. One follower is isolated
//!   while the clients keep writing through the others and reading through every node; its
//!   stale answers must show up as linearizability violations.
//! - `drop-acked-write`: a fraction of mutating calls is acknowledged without being committed;
//!   "no acknowledged write lost" must flag it under plain load.
//! - `unfenced-duty` (deposed leaders' duties not fenced by their term) is caught by
//!   `flow_engine.rs::an_unfenced_duty_is_caught`, beside the partitioned-leader scenario it
//!   breaks, which needs that test's side-effect receiver.
//!
//! A control runs the stale-read scenario with the clean `zsnode` and must report nothing.
//! Each test prints `seeded=<bug> ops=.. violations=.. lost=.. duplicates=..`.

use std::path::PathBuf;
use std::time::Duration;

use chaos_tests::checkers::check;
use chaos_tests::checkers::CheckReport;
use chaos_tests::cluster::seeded_zsnode_bin;
use chaos_tests::cluster::Cluster;
use chaos_tests::cluster::ClusterOpts;
use chaos_tests::workload::Workload;
use chaos_tests::workload::WorkloadOpts;

fn run(name: &str, bin: Option<PathBuf>, bug: Option<&str>, isolate: bool) -> CheckReport {
    // One cluster at a time: parallel clusters on two cores starve each other's elections and
    // race for ports.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = Cluster::start(ClusterOpts {
        bin,
        env: bug
            .map(|b| vec![("ZSNODE_SEEDED_BUG".to_string(), b.to_string())])
            .unwrap_or_default(),
        ..ClusterOpts::default()
    })
    .expect("start cluster");
    let leader = c.wait_leader(Duration::from_secs(20)).expect("leader");
    let endpoints = c.endpoints();
    let w = Workload::start(
        endpoints.clone(),
        WorkloadOpts {
            clients: 6,
            seed: 0x5eed,
            op_timeout: Duration::from_secs(4),
            run_id: format!("{name}-{}", std::process::id()),
        },
    )
    .expect("start workload");
    std::thread::sleep(Duration::from_millis(1500));
    if isolate {
        let follower = c.ids().into_iter().find(|i| *i != leader).unwrap();
        c.isolate(follower);
        std::thread::sleep(Duration::from_secs(8));
        c.heal();
        std::thread::sleep(Duration::from_secs(2));
    } else {
        std::thread::sleep(Duration::from_secs(8));
    }
    let history = w.stop();
    let path = c.dir().join(format!("{name}-history.json"));
    history.save(&path).expect("save history");
    c.wait_converged(Duration::from_secs(60)).expect("converge");
    let report = check(&history, &endpoints).expect("check");
    println!(
        "seeded={} ops={} violations={} lost={} duplicates={} (history {})",
        bug.unwrap_or("none"),
        report.ops,
        report.violations,
        report.lost,
        report.duplicates,
        path.display()
    );
    for d in report.details.iter().take(10) {
        println!("  {d}");
    }
    assert!(report.ops > 30, "the workload barely ran: {report:?}");
    report
}

#[test]
fn stale_reads_are_caught() {
    let bin = seeded_zsnode_bin().expect("zsnode-seeded");
    let r = run("stale", Some(bin), Some("stale-read"), true);
    assert!(r.violations > 0, "stale reads went unnoticed: {r:#?}");
}

#[test]
fn dropped_acknowledged_writes_are_caught() {
    let bin = seeded_zsnode_bin().expect("zsnode-seeded");
    let r = run("drop", Some(bin), Some("drop-acked-write"), false);
    assert!(r.lost > 0, "dropped writes went unnoticed: {r:#?}");
}

#[test]
fn clean_binary_passes_the_same_scenario() {
    let r = run("control", None, None, true);
    assert_eq!(
        (r.violations, r.lost, r.duplicates),
        (0, 0, 0),
        "false positives on a correct cluster: {r:#?}"
    );
}
