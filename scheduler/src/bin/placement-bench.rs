//! In-process placement throughput, one thread: the indexed pipeline and the full-scan pipeline
//! (ZStack's shape) as its peer, on the same views, for 1k, 10k and 50k hosts with 10 VMs each.
//! Each placement is allocate + the in-memory reservation apply + the index refresh.
//! Prints one machine-readable line per run: `bench=placement pipeline=… hosts=N …`.

use std::time::Duration;
use std::time::Instant;

use scheduler::capacity::Allocated;
use scheduler::capacity::HostCapacity;
use scheduler::capacity::PsCapacity;
use scheduler::view::*;
use scheduler::*;

const G: u64 = 1 << 30;
const VMS_PER_HOST: u32 = 10;
const HOSTS_PER_CLUSTER: usize = 100;
const BUDGET: Duration = Duration::from_secs(2);

fn build(hosts: usize) -> InMemoryView {
    let mut v = InMemoryView::default();
    v.zones.insert(
        "zone".into(),
        ZoneView {
            uuid: "zone".into(),
            state: EnableState::Enabled,
        },
    );
    let clusters = hosts.div_ceil(HOSTS_PER_CLUSTER);
    let cluster_uuids: Vec<String> = (0..clusters).map(|c| format!("cluster-{c:04}")).collect();
    for c in &cluster_uuids {
        v.clusters.insert(
            c.clone(),
            ClusterView {
                uuid: c.clone(),
                zone_uuid: "zone".into(),
                state: EnableState::Enabled,
            },
        );
        v.add_primary_storage(PrimaryStorageView {
            uuid: format!("nfs-{c}"),
            ps_type: PsType::Nfs,
            enabled: true,
            connected: true,
            capacity: PsCapacity {
                total: 1 << 50,
                available: 1 << 50,
                total_physical: 1 << 50,
                available_physical: 1 << 50,
            },
            attached_cluster_uuids: vec![c.clone()],
        });
    }
    v.l2_networks.insert(
        "l2".into(),
        L2View {
            uuid: "l2".into(),
            attached_cluster_uuids: cluster_uuids.clone(),
        },
    );
    v.l3_networks.insert(
        "l3".into(),
        L3View {
            uuid: "l3".into(),
            l2_network_uuid: "l2".into(),
        },
    );
    for i in 0..hosts {
        let uuid = format!("host-{i:06}");
        // 10 VMs of 2 vCPUs / 4G already on every host; sizes vary a little per host.
        let extra = (i % 5) as u64;
        v.hosts.insert(
            uuid.clone(),
            HostView {
                uuid,
                zone_uuid: "zone".into(),
                cluster_uuid: cluster_uuids[i / HOSTS_PER_CLUSTER].clone(),
                state: HostState::Enabled,
                status: HostStatus::Connected,
                capacity: HostCapacity {
                    cpu_threads: 32,
                    total_memory: 256 * G,
                    reserved_memory: G,
                },
                allocated: Allocated {
                    cpu: 20 + extra,
                    memory: (40 + extra) * G,
                },
                vm_count: VMS_PER_HOST,
            },
        );
    }
    v
}

fn request(n: u64) -> PlacementRequest {
    let mut r = match PlacementRequest::new(format!("bench-vm-{n}"), 2, 4 << 30) {
        Ok(r) => r,
        Err(e) => panic!("bench request: {e}"),
    };
    r.zone_uuid = Some("zone".into());
    r.l3_network_uuids = vec!["l3".into()];
    r.root_volume_size = Some(20 * G);
    r.seed = n;
    r
}

/// Place until `max` placements or the time budget; returns (placements, elapsed).
fn run(hosts: usize, indexed: bool, max: u64) -> Result<(u64, Duration), String> {
    let mut v = build(hosts);
    let mut index = if indexed {
        HostIndex::build(&v)
    } else {
        HostIndex::default()
    };
    let start = Instant::now();
    let mut n = 0;
    while n < max && start.elapsed() < BUDGET {
        let r = request(n);
        let res = if indexed {
            allocate(&v, &index, &r)
        } else {
            allocate_scan(&v, &r)
        }
        .map_err(|e| format!("placement {n}: {e}"))?;
        v.reserve(&res).map_err(|e| format!("reserve {n}: {e}"))?;
        if indexed {
            index.refresh(&v, &res.host_uuid);
        }
        n += 1;
    }
    Ok((n, start.elapsed()))
}

fn line(pipeline: &str, hosts: usize, (n, t): (u64, Duration)) -> f64 {
    let per_s = n as f64 / t.as_secs_f64();
    let ns = t.as_nanos() as f64 / n.max(1) as f64;
    println!(
        "bench=placement pipeline={pipeline} hosts={hosts} vms_per_host={VMS_PER_HOST} placements={n} placements_per_s={per_s:.0} ns_per_placement={ns:.0}"
    );
    per_s
}

fn main() {
    for hosts in [1_000, 10_000, 50_000] {
        let indexed = match run(hosts, true, 50_000) {
            Ok(r) => line("indexed", hosts, r),
            Err(e) => {
                eprintln!("bench=placement pipeline=indexed hosts={hosts} error={e:?}");
                std::process::exit(1);
            }
        };
        let scan = match run(hosts, false, 5_000) {
            Ok(r) => line("scan", hosts, r),
            Err(e) => {
                eprintln!("bench=placement pipeline=scan hosts={hosts} error={e:?}");
                std::process::exit(1);
            }
        };
        println!(
            "bench=placement_ratio hosts={hosts} indexed_over_scan={:.1}",
            indexed / scan
        );
    }
}
