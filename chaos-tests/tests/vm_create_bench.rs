//! Short mode of the VM create benchmark (`host-bench --vm-creates` is the long one): 50
//! simulated hosts added through the API, storage, image store, network and offering set up,
//! 20 creates by 10 concurrent clients answer Running (but for the known export race below),
//! and every Running VM is a running domain on the simulated host the API placed it on. No timing assertions: CI machines are shared.

use std::net::Ipv4Addr;
use std::time::Duration;

use chaos_tests::host_bench::HostBench;

#[test]
fn twenty_creates_on_fifty_simulated_hosts_run_on_their_hosts() {
    const HOSTS: u32 = 50;
    const CREATES: usize = 20;
    // Away from host-bench's 127.1.0.x and host_tracking's 127.1.60.x.
    let base = Ipv4Addr::new(127, 1, 70, 1);
    let mut b = HostBench::start(HOSTS, base, 60).expect("start cluster and simulator");
    b.add_hosts(HOSTS, 16).expect("add hosts");
    assert_eq!(b.add_errors, 0, "some AddKVMHost calls failed");
    b.await_connected(HOSTS as usize, Duration::from_secs(120))
        .expect("all hosts Connected");
    let setup = b
        .setup_vms(Ipv4Addr::new(127, 2, 70, 1))
        .expect("storage, image, network, offering");
    let run = b
        .create_vms(&setup, "ci", CREATES, 10)
        .expect("creates measured");
    eprintln!("{}", run.line());
    // Known bug (docs/benchmarks.md, issue 20 at 1,000 hosts): concurrent creates of one image
    // ask its store for the same export at once and the store refuses the second while the
    // first runs (`ImageError::Busy`), failing the create instead of waiting. Those and
    // nothing else may fail until the leader waits out a busy export.
    let busy = |f: &String| f.contains("is already being downloaded");
    assert!(run.failures.iter().all(busy), "{:?}", run.failures);
    assert_eq!(run.errors, run.failures.len(), "{run:?}");
    assert_eq!(run.ok + run.errors, CREATES, "{run:?}");
    assert!(run.ok >= CREATES / 2, "{run:?}");
    assert!(run.hosts_used > 1, "every VM on one host: {run:?}");
    assert!(
        run.leader_moved || run.entries_per_create >= 1.0,
        "creates committed nothing: {run:?}"
    );
    assert_eq!(
        b.running_domains(&run).expect("domain lists"),
        run.ok,
        "a VM the API calls Running has no running domain on its host"
    );
}
