//! Log append throughput and latency of raft-store versus a plain RocksDB `put` loop with
//! `sync=true`, in the same process, same disk, same value size. Prints one machine-readable
//! line per case and the ratios (ours / plain RocksDB).
//!
//! `cargo bench -p raft-store` (add `-- --quick` for a short run).

use std::time::Duration;
use std::time::Instant;

use openraft::entry::RaftEntry;
use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;
use openraft::type_config::TypeConfigExt;
use raft_store::kv::KvApplier;
use raft_store::kv::KvCommand;
use raft_store::Entry;
use raft_store::LogStore;
use raft_store::Proposal;
use raft_store::TypeConfig;

const VALUE: usize = 256;

struct Stats {
    ops: usize,
    entries: usize,
    elapsed: Duration,
    lat: Vec<Duration>,
}

impl Stats {
    fn pct(&mut self, p: f64) -> f64 {
        self.lat.sort_unstable();
        let i = ((self.lat.len() as f64 - 1.0) * p).round() as usize;
        self.lat[i].as_secs_f64() * 1e6
    }
    fn per_s(&self, n: usize) -> f64 {
        n as f64 / self.elapsed.as_secs_f64()
    }
}

fn entry(index: u64) -> Entry {
    let cmd = KvCommand::Put {
        key: format!("key-{index}"),
        value: vec![(index % 251) as u8; VALUE],
    };
    Entry::new_normal(
        openraft::testing::log_id::<TypeConfig>(1, 1, index),
        Proposal::new(Some(format!("r{index}")), 0, &cmd),
    )
}

/// One append of `batch` entries at a time, each awaited until durable.
async fn raft_store_sequential(
    log: &mut LogStore,
    next: &mut u64,
    batch: usize,
    budget: Duration,
) -> Stats {
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut entries_total = 0;
    while start.elapsed() < budget || lat.len() < 20 {
        let entries: Vec<Entry> = (0..batch as u64).map(|i| entry(*next + i)).collect();
        *next += batch as u64;
        let t = Instant::now();
        let (tx, rx) = TypeConfig::oneshot();
        log.append(entries, IOFlushed::signal(tx))
            .await
            .expect("append");
        rx.await.expect("callback").expect("durable");
        lat.push(t.elapsed());
        entries_total += batch;
    }
    Stats {
        ops: lat.len(),
        entries: entries_total,
        elapsed: start.elapsed(),
        lat,
    }
}

/// Appends issued back to back with up to `depth` awaiting durability, as openraft pipelines
/// them; shows what sharing one WAL sync among queued appends buys.
async fn raft_store_pipelined(
    log: &mut LogStore,
    next: &mut u64,
    depth: usize,
    budget: Duration,
) -> Stats {
    let mut inflight = std::collections::VecDeque::new();
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || lat.len() < 20 {
        while inflight.len() < depth {
            let (tx, rx) = TypeConfig::oneshot();
            log.append([entry(*next)], IOFlushed::signal(tx))
                .await
                .expect("append");
            *next += 1;
            inflight.push_back((Instant::now(), rx));
        }
        let (t, rx) = inflight.pop_front().expect("non-empty");
        rx.await.expect("callback").expect("durable");
        lat.push(t.elapsed());
    }
    for (t, rx) in inflight {
        rx.await.expect("callback").expect("durable");
        lat.push(t.elapsed());
    }
    Stats {
        ops: lat.len(),
        entries: lat.len(),
        elapsed: start.elapsed(),
        lat,
    }
}

/// The peer: a WriteBatch of `batch` puts written with `sync=true`, one at a time.
fn rocksdb_put_sync(db: &rocksdb::DB, next: &mut u64, batch: usize, budget: Duration) -> Stats {
    let mut w = rocksdb::WriteOptions::default();
    w.set_sync(true);
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut entries_total = 0;
    while start.elapsed() < budget || lat.len() < 20 {
        let t = Instant::now();
        let mut b = rocksdb::WriteBatch::default();
        for _ in 0..batch {
            b.put(next.to_be_bytes(), vec![(*next % 251) as u8; VALUE + 40]);
            *next += 1;
        }
        db.write_opt(b, &w).expect("put");
        lat.push(t.elapsed());
        entries_total += batch;
    }
    Stats {
        ops: lat.len(),
        entries: entries_total,
        elapsed: start.elapsed(),
        lat,
    }
}

fn line(store: &str, mode: &str, batch: usize, s: &mut Stats) -> (f64, f64, f64) {
    let (p50, p99) = (s.pct(0.50), s.pct(0.99));
    let per_s = s.per_s(s.ops);
    println!(
        "bench=append store={store} mode={mode} batch={batch} appends={} appends_per_s={per_s:.0} entries_per_s={:.0} p50_us={p50:.0} p99_us={p99:.0}",
        s.ops,
        s.per_s(s.entries),
    );
    (per_s, p50, p99)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = Duration::from_millis(if quick { 300 } else { 3000 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir_in(
        std::env::var("BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").into()),
    )
    .expect("tempdir");
    let (mut log, _sm) =
        raft_store::open(&dir.path().join("store"), KvApplier).expect("open store");
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    let plain = rocksdb::DB::open(&opts, dir.path().join("plain")).expect("open plain rocksdb");
    let (mut next, mut plain_next) = (1u64, 1u64);

    for batch in [1usize, 16, 256] {
        // Interleave the peers in short rounds so a noisy neighbour hits both alike.
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..3 {
            ours.push(rt.block_on(raft_store_sequential(
                &mut log,
                &mut next,
                batch,
                budget / 3,
            )));
            theirs.push(rocksdb_put_sync(&plain, &mut plain_next, batch, budget / 3));
        }
        let merge = |v: Vec<Stats>| {
            v.into_iter().fold(
                Stats {
                    ops: 0,
                    entries: 0,
                    elapsed: Duration::ZERO,
                    lat: vec![],
                },
                |mut a, b| {
                    a.ops += b.ops;
                    a.entries += b.entries;
                    a.elapsed += b.elapsed;
                    a.lat.extend(b.lat);
                    a
                },
            )
        };
        let (o, t) = (
            line("raft-store", "sequential", batch, &mut merge(ours)),
            line("rocksdb-put-sync", "sequential", batch, &mut merge(theirs)),
        );
        println!(
            "bench=append_ratio batch={batch} throughput_ratio={:.2} p50_ratio={:.2} p99_ratio={:.2}",
            o.0 / t.0,
            o.1 / t.1,
            o.2 / t.2
        );
    }
    let mut p = rt.block_on(raft_store_pipelined(&mut log, &mut next, 64, budget));
    let (pipelined, _, _) = line("raft-store", "pipelined-64", 1, &mut p);
    let mut s = rocksdb_put_sync(&plain, &mut plain_next, 1, budget);
    let (seq, _, _) = line("rocksdb-put-sync", "sequential", 1, &mut s);
    println!(
        "bench=append_ratio mode=pipelined-64 batch=1 throughput_ratio={:.2}",
        pipelined / seq
    );
}
