//! Random hosts and VM sizes, reservations and releases in random order (with ratio changes in
//! between, as a leader change may apply a config change between a reserve and its release):
//! "allocated ≤ capacity × ratio − reserved" always holds, every release returns exactly what
//! was taken, and the indexed pipeline picks the same host as the full scan.

use std::collections::BTreeMap;

use proptest::prelude::*;
use scheduler::capacity::Allocated;
use scheduler::capacity::HostCapacity;
use scheduler::capacity::Limits;
use scheduler::config::Ratio;
use scheduler::view::ClusterView;
use scheduler::view::EnableState;
use scheduler::view::HostState;
use scheduler::view::HostStatus;
use scheduler::view::HostView;
use scheduler::view::ZoneView;
use scheduler::*;

const M: u64 = 1 << 20;

#[derive(Debug, Clone)]
enum Op {
    Place {
        cpu: i64,
        mem_m: u64,
        seed: u64,
    },
    Release {
        pick: usize,
    },
    /// Place on a random host, bypassing the filters: the apply must still refuse overbooking.
    Force {
        host: usize,
        cpu: i64,
        mem_m: u64,
    },
    MemRatio {
        hundredths: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1i64..16, 64u64..8192, any::<u64>()).prop_map(|(cpu, mem_m, seed)| Op::Place { cpu, mem_m, seed }),
        2 => any::<usize>().prop_map(|pick| Op::Release { pick }),
        1 => (any::<usize>(), 1i64..64, 64u64..32768).prop_map(|(host, cpu, mem_m)| Op::Force { host, cpu, mem_m }),
        1 => (100u32..400).prop_map(|hundredths| Op::MemRatio { hundredths }),
    ]
}

fn view(hosts: &[(u64, u64, u64, u32)]) -> InMemoryView {
    let mut v = InMemoryView::default();
    v.zones.insert(
        "z".into(),
        ZoneView {
            uuid: "z".into(),
            state: EnableState::Enabled,
        },
    );
    v.clusters.insert(
        "c".into(),
        ClusterView {
            uuid: "c".into(),
            zone_uuid: "z".into(),
            state: EnableState::Enabled,
        },
    );
    for (i, (threads, mem_g, reserved_m, vm_count)) in hosts.iter().enumerate() {
        let uuid = format!("h{i:03}");
        v.hosts.insert(
            uuid.clone(),
            HostView {
                uuid,
                zone_uuid: "z".into(),
                cluster_uuid: "c".into(),
                state: HostState::Enabled,
                status: HostStatus::Connected,
                capacity: HostCapacity {
                    cpu_threads: *threads,
                    total_memory: mem_g << 30,
                    reserved_memory: reserved_m * M,
                },
                allocated: Allocated::default(),
                vm_count: *vm_count,
            },
        );
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn never_overbooked_and_releases_are_exact(
        hosts in prop::collection::vec((1u64..32, 1u64..64, 0u64..2048, 0u32..4), 1..12),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let mut v = view(&hosts);
        let mut index = HostIndex::build(&v);
        let initial: BTreeMap<String, Allocated> = v.hosts.iter().map(|(k, h)| (k.clone(), h.allocated)).collect();
        let mut held: Vec<Reservation> = Vec::new();
        let mut n = 0u64;
        for op in ops {
            n += 1;
            match op {
                Op::Place { cpu, mem_m, seed } => {
                    let mut r = PlacementRequest::new(format!("vm{n}"), cpu, (mem_m * M) as i64).unwrap();
                    r.seed = seed;
                    let indexed = allocate(&v, &index, &r);
                    let scanned = allocate_scan(&v, &r);
                    prop_assert_eq!(&indexed, &scanned, "indexed and scanned pipelines disagree");
                    if let Ok(res) = indexed {
                        v.reserve(&res).unwrap();
                        index.refresh(&v, &res.host_uuid);
                        held.push(res);
                    }
                }
                Op::Release { pick } if !held.is_empty() => {
                    let res = held.swap_remove(pick % held.len());
                    let before = v.hosts[&res.host_uuid].allocated;
                    v.release(&res).unwrap();
                    let after = v.hosts[&res.host_uuid].allocated;
                    prop_assert_eq!(before.cpu - after.cpu, res.charge.cpu);
                    prop_assert_eq!(before.memory - after.memory, res.charge.memory);
                    prop_assert!(v.release(&res).is_err(), "released twice");
                    index.refresh(&v, &res.host_uuid);
                }
                Op::Release { .. } => {}
                Op::Force { host, cpu, mem_m } => {
                    let uuid = format!("h{:03}", host % hosts.len());
                    let spec = request::vm_spec(cpu, (mem_m * M) as i64).unwrap();
                    let res = Reservation {
                        vm_uuid: format!("vm{n}"),
                        host_uuid: uuid.clone(),
                        charge: capacity::Charge::of(spec, &v.config),
                        volume: None,
                    };
                    let h = &v.hosts[&uuid];
                    let fits = fits(Limits::of(h.capacity, &v.config), h.allocated, res.charge).is_ok();
                    prop_assert_eq!(v.reserve(&res).is_ok(), fits, "the apply takes exactly what fits");
                    if fits {
                        index.refresh(&v, &uuid);
                        held.push(res);
                    }
                }
                Op::MemRatio { hundredths } => {
                    v.config.memory_over_provisioning = Ratio::from_hundredths(hundredths).unwrap();
                    // A ratio change rebuilds the index (its free figures depend on the ratio).
                    index = HostIndex::build(&v);
                }
            }
            // The invariant, in deflated terms: Σ round(mem / ratio at placement) ≤ total − reserved,
            // and vCPUs ≤ threads × ratio. Ratio changes only affect new placements.
            for h in v.hosts.values() {
                let limits = Limits::of(h.capacity, &v.config);
                prop_assert!(h.allocated.cpu <= limits.cpu, "cpu overbooked on {}", h.uuid);
                prop_assert!(h.allocated.memory <= limits.memory, "memory overbooked on {}", h.uuid);
            }
        }
        for res in held.drain(..) {
            v.release(&res).unwrap();
        }
        let end: BTreeMap<String, Allocated> = v.hosts.iter().map(|(k, h)| (k.clone(), h.allocated)).collect();
        prop_assert_eq!(end, initial, "every release returned exactly what was taken");
    }
}

/// Many full hosts rank first (fewest VMs but no room): the walk gives up after its limit and
/// ranks the hosts with room from the free-capacity set; the answer stays the scan's.
#[test]
fn walk_fallback_agrees_with_the_scan() {
    let hosts: Vec<(u64, u64, u64, u32)> = (0..600)
        .map(|i| (4, 16, 1024, if i < 400 { 0 } else { 1 + i % 7 }))
        .collect();
    let mut v = view(&hosts);
    for (i, h) in v.hosts.values_mut().enumerate() {
        if i < 400 {
            h.allocated.memory = 15 << 30;
        }
    }
    let index = HostIndex::build(&v);
    for seed in 0..50 {
        let mut r = PlacementRequest::new(format!("vm{seed}"), 1, 1 << 30).unwrap();
        r.seed = seed;
        let indexed = allocate(&v, &index, &r).unwrap();
        assert_eq!(Ok(&indexed), allocate_scan(&v, &r).as_ref());
        assert_eq!(v.hosts[&indexed.host_uuid].vm_count, 1);
    }
}
