//! (b) Partition the leader away from both followers (through the fault proxies): the old
//! leader's side stops acknowledging writes and serving linearizable reads, the majority
//! elects a new leader and goes on; after healing every node converges.

use std::time::{Duration, Instant};

use chaos_tests::cluster::{Cluster, ClusterOpts, ADMIN_TOKEN};
use chaos_tests::long_mode;
use ops::{Auth, Consistency, NodeClient, Timeouts};

fn short_client(c: &NodeClient) -> NodeClient {
    // The node promises a 503 within ~5 s without quorum; 12 s leaves room for a slow box.
    NodeClient::with_auth(
        c.base(),
        Timeouts {
            connect: Duration::from_secs(1),
            request: Duration::from_secs(12),
        },
        Auth::token(ADMIN_TOKEN),
    )
    .expect("client")
}

#[test]
fn isolated_leader_stops_acknowledging_and_majority_goes_on() {
    let rounds = if long_mode() { 4 } else { 1 };
    let mut c = Cluster::start(ClusterOpts::default()).expect("start cluster");
    for round in 0..rounds {
        let old = c.wait_leader(Duration::from_secs(20)).expect("leader");
        let old_term = c.client(old).status().expect("status").term;
        let key = format!("p{round}");
        c.client(old)
            .put(&key, b"before", Some(&format!("{key}-before")))
            .expect("write before partition");

        c.isolate(old);
        let t0 = Instant::now();
        let majority: Vec<u64> = c.ids().into_iter().filter(|id| *id != old).collect();
        let new = c
            .wait_leader_among(&majority, Duration::from_secs(20))
            .expect("majority elects a leader");
        eprintln!(
            "round {round}: isolated {old}; majority elected {new} in {:?}",
            t0.elapsed()
        );
        assert_ne!(new, old);
        let new_term = c.client(new).status().expect("status").term;
        assert!(
            new_term > old_term,
            "new leader's term {new_term} not above {old_term}"
        );

        // The majority acknowledges writes, through the leader and through the other follower.
        let mut written = Vec::new();
        for (i, id) in majority.iter().cycle().take(20).enumerate() {
            let k = format!("{key}-maj-{i}");
            c.client(*id)
                .put(&k, k.as_bytes(), Some(&k))
                .unwrap_or_else(|e| panic!("majority write via {id}: {e}"));
            written.push(k);
        }
        c.client(new)
            .put(&key, b"after", Some(&format!("{key}-after")))
            .expect("majority overwrite");

        // The minority must not acknowledge anything.
        let oc = short_client(c.client(old));
        for i in 0..3 {
            let k = format!("{key}-min-{i}");
            let t = Instant::now();
            let r = oc.put(&k, b"minority", Some(&k));
            assert!(
                r.is_err(),
                "isolated old leader {old} acknowledged write {k}: {r:?}"
            );
            let e = r.unwrap_err();
            // Unavailable or timed out, never a refusal for another reason (a test that is
            // refused for its credentials proves nothing about the partition).
            assert!(
                e.status().is_none_or(|s| s >= 500),
                "minority write {i} refused for the wrong reason: {e}"
            );
            eprintln!("minority write {i}: refused after {:?}: {e}", t.elapsed());
        }
        // ...nor serve a stale value as linearizable.
        match oc.get(&key, Consistency::Linearizable) {
            Err(e) => {
                assert!(e.status().is_none_or(|s| s >= 500), "{e}");
                eprintln!("minority linearizable read refused: {e}")
            }
            Ok(r) => panic!(
                "isolated node {old} served a linearizable read while partitioned: {:?}",
                r.value_bytes()
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
            ),
        }
        // A stale read is allowed and must show the old value (the new one cannot have reached it).
        let stale = oc
            .get(&key, Consistency::Stale)
            .expect("stale read on minority");
        assert_eq!(
            stale.value_bytes().as_deref(),
            Some(&b"before"[..]),
            "minority saw a value it cannot have"
        );
        assert!(
            c.links.refused.load(std::sync::atomic::Ordering::Relaxed) > 0,
            "the proxy refused nothing: no partition?"
        );

        c.heal();
        let applied = c
            .wait_converged(Duration::from_secs(60))
            .expect("converge after heal");
        for id in c.ids() {
            let v = c
                .client(id)
                .get(&key, Consistency::Linearizable)
                .expect("read after heal");
            assert_eq!(
                v.value_bytes().as_deref(),
                Some(&b"after"[..]),
                "node {id} after heal"
            );
            for k in &written {
                let v = c
                    .client(id)
                    .get(k, Consistency::Stale)
                    .expect("stale read after heal");
                assert_eq!(
                    v.value_bytes().as_deref(),
                    Some(k.as_bytes()),
                    "node {id} misses {k}"
                );
            }
        }
        eprintln!("round {round}: healed; all nodes applied {applied}");
    }
    assert_eq!(
        c.links
            .unidentified
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "proxy could not attribute some connections"
    );
}
