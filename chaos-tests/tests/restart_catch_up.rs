//! (c) Stop a node, write enough to make the leader snapshot and purge its log past the stopped
//! node, restart it from its data dir and check it catches up — through a snapshot — to the
//! same applied index, with every write readable locally.

use std::collections::BTreeMap;
use std::time::Duration;

use chaos_tests::cluster::{Cluster, ClusterOpts};
use chaos_tests::load::verify_acked;
use chaos_tests::long_mode;
use ops::Consistency;

/// Snapshot (and purge) every this many entries; small so the test stays short.
const SNAPSHOT_LOGS: u64 = 50;

#[test]
fn restarted_node_catches_up_through_snapshot_after_log_purge() {
    let opts = ClusterOpts {
        extra_args: vec!["--snapshot-logs".into(), SNAPSHOT_LOGS.to_string()],
        ..Default::default()
    };
    let mut c = Cluster::start(opts).expect("start cluster");
    // Short mode: one clean stop (SIGTERM). Long mode adds kill -9 rounds.
    let rounds: Vec<bool> = if long_mode() {
        vec![true, false, true, false]
    } else {
        vec![true]
    };
    let mut written = BTreeMap::new();
    for (round, clean) in rounds.into_iter().enumerate() {
        let leader = c.wait_leader(Duration::from_secs(20)).expect("leader");
        // Rotate the victim among the followers so each round stops a different node.
        let followers: Vec<u64> = c.ids().into_iter().filter(|id| *id != leader).collect();
        let victim = followers[round % followers.len()];
        let before = c
            .client(victim)
            .status()
            .expect("victim status")
            .applied_index;
        if clean {
            let exited = c.sigterm(victim, Duration::from_secs(15)).expect("SIGTERM");
            assert!(exited, "node {victim} did not exit within 15 s of SIGTERM");
        } else {
            c.kill9(victim).expect("kill -9");
        }
        // Enough entries for several snapshots, so the log the victim needs is surely purged.
        let n = SNAPSHOT_LOGS * 8;
        for i in 0..n {
            let k = format!("c{round}-{i:05}");
            let via = if i % 2 == 0 {
                leader
            } else {
                c.ids()
                    .into_iter()
                    .find(|id| *id != leader && *id != victim)
                    .expect("other")
            };
            c.client(via)
                .put(&k, k.as_bytes(), Some(&k))
                .unwrap_or_else(|e| panic!("write {k} via {via}: {e}"));
            written.insert(k.clone(), k.into_bytes());
        }
        let lst = c.client(leader).status().expect("leader status");
        assert!(
            lst.applied_index >= before + n,
            "leader applied {} < {} + {n}",
            lst.applied_index,
            before
        );
        let snaps_before = count(&c, victim, "received snapshot");
        c.restart(victim).expect("restart");
        c.wait_ready(victim, Duration::from_secs(60))
            .expect("restarted node ready");
        let applied = c
            .wait_converged(Duration::from_secs(60))
            .expect("converged");
        let vst = c.client(victim).status().expect("victim status");
        // `>=`: leader duties (registry heartbeats, sweepers) keep committing entries, so the
        // cluster may have moved on between the convergence check and this read.
        assert!(
            vst.applied_index >= applied,
            "victim applied {} < the cluster's converged index {applied}",
            vst.applied_index
        );
        assert!(
            count(&c, victim, "received snapshot") > snaps_before,
            "node {victim} caught up without installing a snapshot (the log it needed should have been purged)"
        );
        let bad = verify_acked(c.client(victim), &written, Consistency::Stale).expect("read back");
        assert!(
            bad.is_empty(),
            "restarted node {victim} misses writes: {:?}",
            &bad[..bad.len().min(10)]
        );
        eprintln!(
            "round {round} (clean={clean}): node {victim} caught up to {applied} via snapshot"
        );
    }
}

fn count(c: &Cluster, id: u64, needle: &str) -> usize {
    std::fs::read_to_string(&c.node(id).log)
        .map(|t| t.matches(needle).count())
        .unwrap_or(0)
}
