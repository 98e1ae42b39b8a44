//! (a) kill -9 the leader under a concurrent write load; every acknowledged write must be
//! readable afterwards from every node, both stale (after catch-up) and linearizable.

use std::time::Duration;

use chaos_tests::cluster::{Cluster, ClusterOpts};
use chaos_tests::load::{verify_acked, WriteLoad};
use chaos_tests::long_mode;
use ops::Consistency;

#[test]
fn kill_leader_under_write_load_loses_no_acknowledged_write() {
    let rounds = if long_mode() { 5 } else { 1 };
    let mut c = Cluster::start(ClusterOpts::default()).expect("start cluster");
    let clients: Vec<_> = c.ids().iter().map(|id| c.client(*id).clone()).collect();
    let mut all_acked = std::collections::BTreeMap::new();
    for round in 0..rounds {
        let leader = c
            .wait_leader(Duration::from_secs(20))
            .expect("leader before kill");
        let load = WriteLoad::start(&format!("r{round}"), clients.clone(), 6);
        assert!(
            load.wait_more_acks(300, Duration::from_secs(60)),
            "load made no progress before the kill"
        );
        c.kill9(leader).expect("kill -9 leader");
        eprintln!(
            "round {round}: killed leader {leader} after {} acks",
            load.acked()
        );
        let survivors: Vec<u64> = c.ids().into_iter().filter(|id| *id != leader).collect();
        let new_leader = c
            .wait_leader_among(&survivors, Duration::from_secs(20))
            .expect("new leader after kill");
        assert_ne!(new_leader, leader);
        // The load must go on through the survivors.
        assert!(
            load.wait_more_acks(300, Duration::from_secs(60)),
            "no writes acknowledged after the leader was killed"
        );
        let report = load.stop();
        eprintln!(
            "round {round}: acked={} failed_attempts={} abandoned={} duplicates={}",
            report.acked.len(),
            report.failed_attempts,
            report.abandoned,
            report.duplicates
        );
        assert!(
            report.double_applied.is_empty(),
            "writes applied twice despite request ids: {:?}",
            report.double_applied
        );
        all_acked.extend(report.acked);
        c.restart(leader).expect("restart killed node");
        c.wait_ready(leader, Duration::from_secs(60))
            .expect("restarted node ready");
    }
    c.wait_converged(Duration::from_secs(60))
        .expect("cluster converges after restarts");
    assert!(
        all_acked.len() >= 500,
        "too few acknowledged writes to mean anything: {}",
        all_acked.len()
    );
    // Read everything back from every node, stale and linearizable, in parallel.
    let checks: Vec<_> = c
        .ids()
        .into_iter()
        .flat_map(|id| [(id, Consistency::Stale), (id, Consistency::Linearizable)])
        .map(|(id, cons)| {
            let (client, acked) = (c.client(id).clone(), all_acked.clone());
            std::thread::spawn(move || (id, cons, verify_acked(&client, &acked, cons)))
        })
        .collect();
    for h in checks {
        let (id, cons, res) = h.join().expect("verifier thread");
        let bad = res.expect("read back");
        assert!(
            bad.is_empty(),
            "node {id} ({cons:?}) lost or changed {} of {} acknowledged writes; first: {:?}",
            bad.len(),
            all_acked.len(),
            &bad[..bad.len().min(10)]
        );
    }
    let applied: Vec<_> = c
        .statuses()
        .into_iter()
        .map(|(id, s)| (id, s.expect("status").applied_index))
        .collect();
    assert!(
        applied.windows(2).all(|w| w[0].1 == w[1].1),
        "applied indexes differ: {applied:?}"
    );
    eprintln!(
        "verified {} acknowledged writes on {} nodes; applied {:?}",
        all_acked.len(),
        c.ids().len(),
        applied
    );
}
