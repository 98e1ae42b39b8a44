//! Linearizability of the replicated key-value registers under faults: concurrent clients
//! write unique values and read linearizably through every node while the leader is killed
//! (and restarted) and, in the next round, partitioned away. The recorded history of each key
//! is checked with the Wing–Gong/Lowe search; writes that timed out count as indeterminate.
//! Prints one summary line per run and the total, e.g. `runs=2 faults=2 ops=... violations=0`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use base64::Engine;
use chaos_tests::cluster::Cluster;
use chaos_tests::cluster::ClusterOpts;
use chaos_tests::linearizability::check;
use chaos_tests::linearizability::tighten_unique_writes;
use chaos_tests::linearizability::Operation;
use chaos_tests::linearizability::Register;
use chaos_tests::linearizability::RegisterInput;
use chaos_tests::linearizability::RegisterOutput;
use chaos_tests::linearizability::Verdict;
use chaos_tests::long_mode;
use chaos_tests::reports;
use ops::Consistency;

const KEYS: [&str; 3] = ["lin-a", "lin-b", "lin-c"];

type Op = Operation<RegisterInput, RegisterOutput>;

/// Run clients against `clients` until `stop`; returns the history per key.
fn workload(
    clients: Vec<ops::NodeClient>,
    run: &str,
    stop: Arc<Mutex<bool>>,
    t0: Instant,
) -> Vec<Vec<Op>> {
    let history: Arc<Mutex<Vec<Vec<Op>>>> = Arc::new(Mutex::new(vec![Vec::new(); KEYS.len()]));
    let threads: Vec<_> = (0..4u64)
        .map(|cid| {
            let (clients, history, stop) = (clients.clone(), history.clone(), stop.clone());
            let run = run.to_string();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !*stop.lock().unwrap() {
                    n += 1;
                    let k = ((cid + n) % KEYS.len() as u64) as usize;
                    let node = &clients[((cid * 7 + n) % clients.len() as u64) as usize];
                    // Fresh keys every run: each history starts from an absent value.
                    let key = format!("{run}-{}", KEYS[k]);
                    let call = t0.elapsed().as_micros() as u64;
                    let op = if n.is_multiple_of(2) {
                        let value = format!("{run}-c{cid}-{n}");
                        let rid = format!("{run}-{cid}-{n}");
                        match node.put(&key, value.as_bytes(), Some(&rid)) {
                            Ok(_) => Operation {
                                client: cid,
                                call,
                                ret: Some(t0.elapsed().as_micros() as u64),
                                input: RegisterInput::Put(value),
                                output: Some(RegisterOutput::Ok),
                            },
                            // No answer: it may or may not have been applied.
                            Err(_) => Operation {
                                client: cid,
                                call,
                                ret: None,
                                input: RegisterInput::Put(value),
                                output: None,
                            },
                        }
                    } else {
                        match node.get(&key, Consistency::Linearizable) {
                            Ok(r) => {
                                let v = r.value.map(|b| {
                                    String::from_utf8(
                                        base64::engine::general_purpose::STANDARD
                                            .decode(b)
                                            .expect("base64"),
                                    )
                                    .expect("utf8")
                                });
                                Operation {
                                    client: cid,
                                    call,
                                    ret: Some(t0.elapsed().as_micros() as u64),
                                    input: RegisterInput::Get,
                                    output: Some(RegisterOutput::Value(v)),
                                }
                            }
                            // A failed read had no effect; nothing to record.
                            Err(_) => continue,
                        }
                    };
                    history.lock().unwrap()[k].push(op);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    Arc::try_unwrap(history)
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_default()
}

/// Save a key's history as JSON for replay with the `check-history` binary; returns its path.
fn save_history(round: usize, key: &str, h: &[Op]) -> String {
    let dir = reports::failure_root().join(format!("linearizable_kv-{}", std::process::id()));
    let path = dir.join(format!("r{round}-{key}.json"));
    let written = std::fs::create_dir_all(&dir).and_then(|_| {
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(h).map_err(std::io::Error::other)?,
        )
    });
    match written {
        Ok(()) => format!(
            "{} (replay: cargo run -p chaos-tests --bin check-history -- {})",
            path.display(),
            path.display()
        ),
        Err(e) => format!("nowhere ({}: {e})", path.display()),
    }
}

#[test]
fn kv_registers_stay_linearizable_under_kill_and_partition() {
    let rounds: usize = if long_mode() { 6 } else { 2 };
    let mut c = Cluster::start(ClusterOpts::default()).expect("start cluster");
    let clients: Vec<_> = c.ids().iter().map(|id| c.client(*id).clone()).collect();
    let t0 = Instant::now();
    let (mut total_ops, mut violations, mut faults) = (0usize, 0usize, 0usize);
    for round in 0..rounds {
        let leader = c.wait_leader(Duration::from_secs(20)).expect("leader");
        let stop = Arc::new(Mutex::new(false));
        let load = {
            let (clients, stop) = (clients.clone(), stop.clone());
            let run = format!("r{round}");
            std::thread::spawn(move || workload(clients, &run, stop, t0))
        };
        std::thread::sleep(Duration::from_millis(1500));
        if round.is_multiple_of(2) {
            c.kill9(leader).expect("kill leader");
            std::thread::sleep(Duration::from_millis(2500));
            c.restart(leader).expect("restart");
        } else {
            c.isolate(leader);
            std::thread::sleep(Duration::from_millis(3000));
            c.heal();
        }
        faults += 1;
        std::thread::sleep(Duration::from_millis(2000));
        *stop.lock().unwrap() = true;
        let history = load.join().expect("workload");
        let ops: usize = history.iter().map(Vec::len).sum();
        let mut bad = 0;
        for (k, h) in history.iter().enumerate() {
            // Writes refused at once by a dead node are unanswered yet never applied; without
            // tightening, dozens of them make the search try every subset (CI once ran out of
            // steps on 212 ops).
            let tight = tighten_unique_writes(h, &HashSet::from([None]));
            let verdict = check(&Register, &tight, 20_000_000);
            if verdict == Verdict::Linearizable {
                continue;
            }
            let saved = save_history(round, KEYS[k], h);
            match verdict {
                Verdict::Unknown => panic!(
                    "no verdict for {} within the step budget ({} ops, {} after tightening); history saved in {saved}",
                    KEYS[k],
                    h.len(),
                    tight.len()
                ),
                _ => {
                    bad += 1;
                    eprintln!(
                        "NOT linearizable: key {} ({} ops); history saved in {saved}\n{verdict:?}",
                        KEYS[k],
                        h.len(),
                    );
                }
            }
        }
        reports::summary(&format!(
            "linearizable_kv run={round} fault={} ops={ops} violations={bad}",
            if round.is_multiple_of(2) {
                "kill9-leader"
            } else {
                "isolate-leader"
            }
        ));
        total_ops += ops;
        violations += bad;
        c.wait_ready(leader, Duration::from_secs(60))
            .expect("old leader back");
    }
    reports::summary(&format!(
        "linearizable_kv total runs={rounds} faults={faults} ops={total_ops} violations={violations}"
    ));
    assert!(total_ops > 50, "the workload barely ran: {total_ops} ops");
    assert_eq!(violations, 0, "linearizability violations");
}
