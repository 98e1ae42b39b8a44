//! Multi-process chaos tests of the management cluster: a harness that runs real `zsnode`
//! processes (kill -9, SIGTERM, restart from data dir), a fault-injecting TCP proxy for
//! node-to-node traffic, a recorded write load, a linearizability checker for recorded histories,
//! and the etcd peer used by the benchmark.

pub mod checkers;
pub mod cluster;
pub mod etcd;
pub mod host_bench;
pub mod linearizability;
pub mod load;
pub mod nemesis;
pub mod proxy;
pub mod reports;
pub mod topology;
pub mod vm_bench;
pub mod workload;
pub mod zstack_client;

/// True when `CHAOS_LONG=1` asks for the long mode (more rounds).
pub fn long_mode() -> bool {
    std::env::var("CHAOS_LONG")
        .map(|v| v == "1" || v.eq_ignore_ascii_case("true"))
        .unwrap_or(false)
}
