//! A frozen leader (SIGSTOP, like a long GC pause or a stalled VM): the others elect a new
//! leader and keep acknowledging writes; when the old leader thaws it must step down, not
//! acknowledge anything on its own, and converge with the rest.

use std::time::{Duration, Instant};

use chaos_tests::cluster::{Cluster, ClusterOpts};
use ops::Consistency;

#[test]
fn frozen_leader_is_replaced_and_steps_down_after_thawing() {
    let mut c = Cluster::start(ClusterOpts {
        proxies: false,
        ..Default::default()
    })
    .expect("cluster");
    let old = c.wait_leader(Duration::from_secs(20)).expect("leader");
    c.client(old)
        .put("frozen", b"before", Some("frozen-before"))
        .expect("write before freeze");

    c.pause(old, true).expect("SIGSTOP leader");
    let t0 = Instant::now();
    let others: Vec<u64> = c.ids().into_iter().filter(|id| *id != old).collect();
    let new = c.wait_leader_among(&others, Duration::from_secs(20));
    // Thaw before asserting so a failure never leaves a stopped process behind.
    let new = match new {
        Ok(n) => n,
        Err(e) => {
            let _ = c.pause(old, false);
            panic!("no new leader while {old} was frozen: {e:#}");
        }
    };
    eprintln!(
        "leader {old} frozen; {new} elected after {:?}",
        t0.elapsed()
    );
    for i in 0..10 {
        let k = format!("while-frozen-{i}");
        c.client(others[i % 2])
            .put(&k, k.as_bytes(), Some(&k))
            .expect("write while old leader frozen");
    }
    c.client(new)
        .put("frozen", b"after", Some("frozen-after"))
        .expect("overwrite");

    c.pause(old, false).expect("SIGCONT");
    let applied = c
        .wait_converged(Duration::from_secs(60))
        .expect("converge after thaw");
    let st = c.client(old).status().expect("old leader status");
    assert_ne!(
        st.role, "Leader",
        "thawed old leader still claims leadership"
    );
    assert_eq!(
        st.leader_id,
        Some(new),
        "thawed node does not follow the new leader"
    );
    // `>=`: leader duties keep committing entries after the convergence check.
    assert!(
        st.applied_index >= applied,
        "thawed node applied {} < converged index {applied}",
        st.applied_index
    );
    let v = c
        .client(old)
        .get("frozen", Consistency::Linearizable)
        .expect("read on thawed node");
    assert_eq!(
        v.value_bytes().as_deref(),
        Some(&b"after"[..]),
        "thawed node serves a stale value"
    );
    for i in 0..10 {
        let k = format!("while-frozen-{i}");
        let v = c
            .client(old)
            .get(&k, Consistency::Stale)
            .expect("stale read");
        assert_eq!(
            v.value_bytes().as_deref(),
            Some(k.as_bytes()),
            "thawed node misses {k}"
        );
    }
}
