//! Short mode of the host tracker benchmark (`host-bench` is the long one): 50 simulated hosts
//! added through the API on a 3-node cluster get Connected and the leader's ping rounds at a
//! 1 s interval complete. No timing assertions: CI machines are shared.

use std::net::Ipv4Addr;
use std::time::Duration;

use chaos_tests::host_bench::HostBench;

#[test]
fn fifty_simulated_hosts_get_connected_and_tracked() {
    const N: u32 = 50;
    // Away from 127.1.0.x, where `host-bench` runs by default.
    let base = Ipv4Addr::new(127, 1, 60, 1);
    let mut b = HostBench::start(N, base, 1).expect("start cluster and simulator");
    let took = b.add_hosts(N, 16).expect("add hosts");
    assert_eq!(b.add_errors, 0, "some AddKVMHost calls failed");
    b.await_connected(N as usize, Duration::from_secs(60))
        .expect("all hosts Connected");
    eprintln!("{N} hosts added in {took:?}");
    let s = b.measure(Duration::from_secs(5)).expect("measure");
    eprintln!("{}", s.line(N, 1));
    assert!(s.rounds >= 1, "no ping round completed: {s:?}");
    assert_eq!(s.hosts, u64::from(N), "{s:?}");
    assert!(s.pings_ok > 0, "{s:?}");
    assert_eq!(b.statuses().unwrap().get("Connected"), Some(&(N as usize)));
}
