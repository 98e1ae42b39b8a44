//! Host tracker benchmark: a 3-node `zsnode` cluster, one `zsagent --simulate` serving the
//! largest host count of the ramp, hosts added through the ZStack API (16 in flight), then at
//! each ramp step the leader measured at the default `host/ping.interval` (60 s, optional) and
//! at 1 s; the ramp stops after the first step with a missed deadline.
//!
//! `cargo run --release -p chaos-tests --bin host-bench [-- --hosts 100,1000,3000]`. Prints one
//! machine-readable line per case (`bench=host_tracking ...`, `bench=host_add ...`,
//! `bench=host_tracking_max ...`).
//!
//! `--vm-creates N [--concurrency 100] --hosts 1000` instead measures VM creates end to end:
//! first on a cluster of `--vm-peer-hosts` (2) simulated hosts, then on one of the largest
//! `--hosts` count, the same N creates by the same clients on each (`bench=vm_create ...` per
//! cluster, `bench=vm_create_ratio ...` comparing them).

use std::net::Ipv4Addr;
use std::time::Duration;
use std::time::Instant;

use anyhow::Result;
use chaos_tests::host_bench::HostBench;
use chaos_tests::vm_bench::CreateRun;
use clap::Parser;

/// Command line of the benchmark.
#[derive(Debug, Parser)]
#[command(
    name = "host-bench",
    about = "host ping tracker: leader CPU, round time, missed deadlines"
)]
struct Args {
    /// Host counts to ramp through, ascending, comma separated.
    #[arg(long, default_value = "100,1000,3000,10000", value_delimiter = ',')]
    hosts: Vec<u32>,
    /// Measuring window at the 1 s interval, in seconds.
    #[arg(long, default_value_t = 30)]
    window_s: u64,
    /// Measuring window at the default 60 s interval, in seconds (0: skip). Two rounds need
    /// more than 120 s.
    #[arg(long, default_value_t = 0)]
    default_window_s: u64,
    /// Concurrent AddKVMHost calls.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// First simulated address.
    #[arg(long, default_value = "127.1.0.1")]
    base_ip: Ipv4Addr,
    /// `host/ping.parallelismDegree` (pings in flight per round; ZStack's default is 100).
    #[arg(long, default_value_t = 100)]
    parallelism: u32,
    /// Keep ramping after a missed deadline.
    #[arg(long)]
    no_stop: bool,
    /// At each step, also measure committed placements (`AllocateHostResource` in the
    /// cluster) for this many seconds at the 60 s ping interval (0: skip).
    #[arg(long, default_value_t = 0)]
    placements_s: u64,
    /// Concurrent placement clients.
    #[arg(long, default_value_t = 32)]
    placement_clients: usize,
    /// Skip the tracker measurement (placements only).
    #[arg(long)]
    no_tracking: bool,
    /// VM creates to measure (0: the host tracker ramp instead).
    #[arg(long, default_value_t = 0)]
    vm_creates: usize,
    /// Concurrent CreateVmInstance clients.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Hosts of the peer cluster the VM creates are compared with (0: no peer).
    #[arg(long, default_value_t = 2)]
    vm_peer_hosts: u32,
    /// Address of the image store's agent (the peer's is the next one).
    #[arg(long, default_value = "127.2.0.1")]
    store_ip: Ipv4Addr,
}

/// One cluster of `hosts` simulated hosts from `base`: added, set up for VMs, one warm-up
/// create (the image's first download into the shared storage's cache), then the batch, every
/// VM checked in its host's domain list.
fn vm_run(a: &Args, hosts: u32, base: Ipv4Addr, store: Ipv4Addr) -> Result<CreateRun> {
    let mut b = HostBench::start(hosts, base, 60)?;
    let took = b.add_hosts(hosts, a.in_flight)?;
    println!(
        "bench=host_add hosts={hosts} added={hosts} secs={:.1} adds_per_s={:.0} errors={}",
        took.as_secs_f64(),
        f64::from(hosts) / took.as_secs_f64().max(1e-9),
        b.add_errors
    );
    b.await_connected(hosts as usize - b.add_errors, Duration::from_secs(300))?;
    let setup = b.setup_vms(store)?;
    let warm = b.create_vms(&setup, "warm", 1, 1)?;
    anyhow::ensure!(warm.ok == 1, "the warm-up create failed: {warm:?}");
    let run = b.create_vms(&setup, "bench", a.vm_creates, a.concurrency)?;
    let domains = b.running_domains(&run)?;
    println!("{} running_domains={domains}", run.line());
    anyhow::ensure!(
        domains == run.ok,
        "{} VMs answered Running but {domains} domains run",
        run.ok
    );
    Ok(run)
}

fn vm_mode(a: &Args) -> Result<()> {
    let max = a.hosts.iter().copied().max().unwrap_or(0);
    println!(
        "bench=env cores={} mode=vm_create hosts={max} peer_hosts={} creates={} concurrency={}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        a.vm_peer_hosts,
        a.vm_creates,
        a.concurrency
    );
    // The peer on its own addresses and cluster, torn down before the large one starts, so
    // the two never share the cores.
    let peer = if a.vm_peer_hosts > 0 {
        let base = Ipv4Addr::from(u32::from(a.base_ip) + max + 256);
        let store = Ipv4Addr::from(u32::from(a.store_ip) + 1);
        Some(vm_run(a, a.vm_peer_hosts, base, store)?)
    } else {
        None
    };
    let run = vm_run(a, max, a.base_ip, a.store_ip)?;
    if let Some(p) = peer {
        println!(
            "bench=vm_create_ratio hosts={max} peer_hosts={} creates_per_s={:.1} peer_creates_per_s={:.1} ratio={:.3} p50_ratio={:.3}",
            p.hosts,
            run.creates_per_s(),
            p.creates_per_s(),
            run.creates_per_s() / p.creates_per_s().max(1e-9),
            run.p50_ms / p.p50_ms.max(1e-9)
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let a = Args::parse();
    if a.vm_creates > 0 {
        return vm_mode(&a);
    }
    let started = Instant::now();
    let max = a.hosts.iter().copied().max().unwrap_or(0);
    println!(
        "bench=env cores={} hosts={:?} parallelism={} window_s={} default_window_s={}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        a.hosts,
        a.parallelism,
        a.window_s,
        a.default_window_s
    );
    // Adding happens at the default interval so the tracker's rounds do not compete with the
    // adds more than they would in production.
    let mut b = HostBench::start(max, a.base_ip, 60)?;
    b.set_config("host", "ping.parallelismDegree", &a.parallelism.to_string())?;
    let mut best = None;
    for &n in &a.hosts {
        b.set_interval(60)?;
        let had = b.added;
        let took = b.add_hosts(n, a.in_flight)?;
        println!(
            "bench=host_add hosts={n} added={} secs={:.1} adds_per_s={:.0} errors={}",
            n - had,
            took.as_secs_f64(),
            f64::from(n - had) / took.as_secs_f64().max(1e-9),
            b.add_errors
        );
        b.await_connected(n as usize - b.add_errors, Duration::from_secs(300))?;
        if a.default_window_s > 0 {
            let s = b.measure(Duration::from_secs(a.default_window_s))?;
            println!("{}", s.line(n, 60));
        }
        if a.placements_s > 0 {
            let (rate, ok, failed) =
                b.place(Duration::from_secs(a.placements_s), a.placement_clients)?;
            println!(
                "bench=placement hosts={n} clients={} secs={} placements_per_s={rate:.1} ok={ok} failed={failed}",
                a.placement_clients, a.placements_s
            );
        }
        if a.no_tracking {
            continue;
        }
        b.set_interval(1)?;
        // Let the sleeping tracker notice the new interval and finish a round at it.
        std::thread::sleep(Duration::from_secs(3));
        let s = b.measure(Duration::from_secs(a.window_s))?;
        println!("{}", s.line(n, 1));
        if s.missed_deadlines == 0 && s.pings_missed == 0 && s.rounds > 0 {
            best = Some(n);
        } else if !a.no_stop {
            break;
        }
    }
    println!(
        "bench=host_tracking_max interval_s=1 hosts={} secs={}",
        best.map_or("none".into(), |n| n.to_string()),
        started.elapsed().as_secs()
    );
    Ok(())
}
