//! A concurrent write load that records every acknowledged write, and the checker that reads
//! them all back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use ops::{Consistency, NodeClient, OpsError};

/// What the load observed.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// key → value of every write a node acknowledged (2xx).
    pub acked: BTreeMap<String, Vec<u8>>,
    /// Attempts that failed (connection errors, 503s, timeouts).
    pub failed_attempts: u64,
    /// Writes abandoned after all retries (outcome unknown: may or may not be applied).
    pub abandoned: u64,
    /// Acknowledgements flagged as duplicates (a retry of an applied request id).
    pub duplicates: u64,
    /// Acknowledged writes of a fresh, unique key that reported a previous value: the same
    /// write was applied twice (request-id dedup failed). Must stay empty.
    pub double_applied: Vec<String>,
}

/// A running load; [`WriteLoad::stop`] joins the threads and returns the report.
pub struct WriteLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    report: Arc<Mutex<LoadReport>>,
    acks: Arc<AtomicU64>,
}

impl WriteLoad {
    /// Start `threads` writers cycling over `clients`. Each key is written once (with retries
    /// under the same request id, so a retried write that was in fact applied is deduplicated).
    pub fn start(prefix: &str, clients: Vec<NodeClient>, threads: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let acks = Arc::new(AtomicU64::new(0));
        let handles = (0..threads)
            .map(|t| {
                let (stop, report, acks, clients) =
                    (stop.clone(), report.clone(), acks.clone(), clients.clone());
                let prefix = prefix.to_string();
                std::thread::spawn(move || writer(&prefix, t, &clients, &stop, &report, &acks))
            })
            .collect();
        WriteLoad {
            stop,
            threads: handles,
            report,
            acks,
        }
    }

    /// Writes acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acks.load(Ordering::Relaxed)
    }

    /// Wait until at least `n` more writes were acknowledged since the call, or `timeout`.
    pub fn wait_more_acks(&self, n: u64, timeout: Duration) -> bool {
        let start = self.acked();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.acked() >= start + n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Stop the writers and return what they saw.
    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        std::mem::take(&mut *self.report.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn writer(
    prefix: &str,
    t: usize,
    clients: &[NodeClient],
    stop: &AtomicBool,
    report: &Mutex<LoadReport>,
    acks: &AtomicU64,
) {
    let mut node = t % clients.len().max(1);
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let key = format!("{prefix}-t{t}-{seq:06}");
        let value = format!("v-{key}").into_bytes();
        let rid = format!("rid-{key}");
        let mut done = false;
        for _attempt in 0..20 {
            let c = &clients[node];
            match c.put(&key, &value, Some(&rid)) {
                Ok(r) => {
                    let mut rep = report.lock().unwrap_or_else(|p| p.into_inner());
                    rep.acked.insert(key.clone(), value.clone());
                    if r.duplicate {
                        rep.duplicates += 1;
                    } else if r.previous.is_some() {
                        rep.double_applied.push(key.clone());
                    }
                    acks.fetch_add(1, Ordering::Relaxed);
                    done = true;
                    break;
                }
                Err(e) => {
                    report
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .failed_attempts += 1;
                    // Move on to another node; a dead one refuses connections at once.
                    node = (node + 1) % clients.len();
                    if !matches!(e, OpsError::Unreachable { .. }) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
        }
        if !done {
            report.lock().unwrap_or_else(|p| p.into_inner()).abandoned += 1;
        }
        // Rotate writers across nodes so both the leader and forwarding followers are exercised.
        node = (node + 1) % clients.len();
    }
}

/// Read every acknowledged key from `client` with `consistency` and return the mismatches
/// (`key: expected … got …`). Transient errors are retried a few times.
pub fn verify_acked(
    client: &NodeClient,
    acked: &BTreeMap<String, Vec<u8>>,
    consistency: Consistency,
) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    for (k, v) in acked {
        let mut last = None;
        let mut got = None;
        for _ in 0..5 {
            match client.get(k, consistency) {
                Ok(r) => {
                    got = Some(r.value_bytes());
                    break;
                }
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        match got {
            Some(Some(val)) if &val == v => {}
            Some(other) => bad.push(format!(
                "{k}: expected {:?}, got {:?}",
                String::from_utf8_lossy(v),
                other.map(|o| String::from_utf8_lossy(&o).into_owned())
            )),
            None => bail!(
                "reading {k} from {} failed repeatedly: {:?}",
                client.base(),
                last
            ),
        }
    }
    Ok(bad)
}
