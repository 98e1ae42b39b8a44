//! The committed re-check of placements: races lost cleanly, replays harmless, releases exact —
//! also when placements are computed on stale views and commands are re-proposed after a
//! leader change.

use proptest::prelude::*;
use serde_json::json;

use super::placement::StateView;
use super::reservation;
use super::*;
use crate::registry::IntoCommand;
use crate::resource;
use crate::testing::matrix::Harness;
use crate::testing::MemTxn;
use crate::wire::errors::Code;
use crate::Caller;
use crate::Command;
use crate::Response;

const G: u64 = 1 << 30;

fn reserve(uuid: &str, host: &str, cpu: u64, mem: u64) -> Command {
    HostOp::Reserve {
        uuid: uuid.into(),
        host_uuid: host.into(),
        cpu_num: cpu,
        memory_size: mem,
    }
    .command(Caller::admin())
}

fn release(uuid: &str) -> Command {
    HostOp::Release { uuid: uuid.into() }.command(Caller::admin())
}

fn host(t: &MemTxn, uuid: &str) -> Host {
    resource::require::<Host>(t, uuid).expect("host").1
}

/// Give a host other figures, as its agent would report them.
fn resize(t: &mut MemTxn, uuid: &str, threads: u64, memory: u64) {
    let (owner, mut h) = resource::require::<Host>(t, uuid).expect("host");
    h.cpu_num = threads;
    h.total_cpu_capacity = threads * 10;
    h.total_memory_capacity = memory;
    h.available_cpu_capacity = h.total_cpu_capacity - h.allocated_cpu;
    h.available_memory_capacity = memory - h.allocated_memory;
    resource::save(t, &owner, &h).expect("save");
}

fn world(hosts: usize) -> (Harness, Vec<String>) {
    let mut w = Harness::new();
    let (_, c) = w.zone_and_cluster();
    let uuids = (0..hosts)
        .map(|k| {
            w.created(
                "AddKVMHost",
                json!({"clusterUuid": c, "name": format!("h{k}"), "managementIp": format!("10.0.9.{k}"),
                       "username": "root", "password": "pw"}),
            )
        })
        .collect();
    (w, uuids)
}

fn refused_code(r: &Response) -> Option<Code> {
    match r.innermost() {
        Response::Refused(e) => Some(crate::plan::refusal_of(e).code),
        _ => None,
    }
}

#[test]
fn of_two_placements_on_a_host_that_fits_one_the_second_is_refused_and_writes_nothing() {
    let (mut w, hosts) = world(1);
    // 16 GiB − 1 GiB reserved: one 10 GiB VM fits, two do not.
    let a = reserve(&"a".repeat(32), &hosts[0], 2, 10 * G);
    let b = reserve(&"b".repeat(32), &hosts[0], 2, 10 * G);
    assert_eq!(refused_code(&w.apply(a)), None);
    let before = w.t.tables.clone();
    let r = w.apply(b);
    assert_eq!(refused_code(&r), Some(Code::NoAvailableHost));
    let Response::Refused(e) = r.innermost() else {
        panic!()
    };
    assert_eq!(
        crate::plan::refusal_of(e).details,
        format!("host {}: not enough memory: need 10G, free 5G", hosts[0])
    );
    // The state machine discards a refused command's writes; the harness does the same, and
    // the apply itself must not have left anything for it to discard that matters.
    assert_eq!(w.t.tables, before);
    let h = host(&w.t, &hosts[0]);
    assert_eq!(
        (h.allocated_cpu, h.allocated_memory, h.reservation_count),
        (2, 10 * G, 1)
    );
    assert_eq!(h.available_memory_capacity, 6 * G);
}

#[test]
fn a_replayed_reservation_is_answered_again_and_takes_nothing_more() {
    let (mut w, hosts) = world(1);
    let u = "c".repeat(32);
    w.apply(reserve(&u, &hosts[0], 4, 2 * G));
    let once = host(&w.t, &hosts[0]);
    let r = w.apply(reserve(&u, &hosts[0], 4, 2 * G));
    assert_eq!(refused_code(&r), None);
    let h = host(&w.t, &hosts[0]);
    assert_eq!(
        (h.allocated_cpu, h.allocated_memory),
        (once.allocated_cpu, once.allocated_memory)
    );
    // The same uuid asking for something else is a conflict, not a second reservation.
    let r = w.apply(reserve(&u, &hosts[0], 8, 2 * G));
    assert_eq!(refused_code(&r), Some(Code::OperationFailure));
}

#[test]
fn a_release_returns_exactly_what_was_taken_once_even_after_the_ratio_changed() {
    let (mut w, hosts) = world(1);
    w.admin(
        "UpdateGlobalConfig",
        json!({"category": "mevoco", "name": "overProvisioning.memory", "value": "2"}),
    );
    let u = "d".repeat(32);
    w.apply(reserve(&u, &hosts[0], 3, 8 * G));
    let h = host(&w.t, &hosts[0]);
    assert_eq!(h.allocated_memory, 4 * G, "8G at ratio 2 costs 4G");
    w.admin(
        "UpdateGlobalConfig",
        json!({"category": "mevoco", "name": "overProvisioning.memory", "value": "1"}),
    );
    assert_eq!(refused_code(&w.apply(release(&u))), None);
    let h = host(&w.t, &hosts[0]);
    assert_eq!(
        (h.allocated_cpu, h.allocated_memory, h.reservation_count),
        (0, 0, 0)
    );
    assert_eq!(h.available_memory_capacity, 16 * G);
    // Released twice: nothing changes.
    let before = w.t.tables.clone();
    assert_eq!(refused_code(&w.apply(release(&u))), None);
    assert_eq!(w.t.tables, before);
}

#[test]
fn a_host_not_enabled_and_connected_takes_nothing_and_its_deletion_drops_its_ledger() {
    let (mut w, hosts) = world(1);
    w.admin(
        "ChangeHostState",
        json!({"uuid": hosts[0], "stateEvent": "disable"}),
    );
    let r = w.apply(reserve(&"e".repeat(32), &hosts[0], 1, G));
    assert_eq!(refused_code(&r), Some(Code::NoAvailableHost));
    w.admin(
        "ChangeHostState",
        json!({"uuid": hosts[0], "stateEvent": "enable"}),
    );
    w.apply(reserve(&"e".repeat(32), &hosts[0], 1, G));
    assert_eq!(reservation::on_host(&w.t, &hosts[0]).unwrap().len(), 1);
    w.admin(
        "ChangeHostState",
        json!({"uuid": hosts[0], "stateEvent": "maintain"}),
    );
    w.admin("DeleteHost", json!({"uuid": hosts[0]}));
    assert!(reservation::on_host(&w.t, &hosts[0]).unwrap().is_empty());
    assert!(reservation::get(&w.t, &"e".repeat(32)).unwrap().is_none());
}

#[test]
fn new_facts_keep_the_reservations() {
    let (mut w, hosts) = world(1);
    w.apply(reserve(&"f".repeat(32), &hosts[0], 5, 3 * G));
    let facts = HostFacts {
        cpu_threads: 16,
        cpu_sockets: 2,
        memory_bytes: 32 * G,
        architecture: "x86_64".into(),
        os_distribution: "debian".into(),
        os_release: "bookworm".into(),
        os_version: "12".into(),
    };
    w.apply(
        HostOp::Track {
            uuid: hosts[0].clone(),
            status: HostStatus::Connected,
            facts: Some(facts),
        }
        .command(Caller::admin()),
    );
    let h = host(&w.t, &hosts[0]);
    assert_eq!(h.available_cpu_capacity, 160 - 5);
    assert_eq!(h.available_memory_capacity, 29 * G);
}

#[derive(Debug, Clone)]
enum Step {
    /// Place a VM on the view of `lag` steps ago (a follower behind the leader).
    Place { cpu: u64, mem_g: u64, lag: usize },
    /// Release the `k`-th live reservation (modulo).
    Release { k: usize },
    /// A leader change: the last `n` commands are proposed again by the new leader.
    Reelect { n: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u64..=8, 1u64..=6, 0usize..4).prop_map(|(cpu, mem_g, lag)| Step::Place { cpu, mem_g, lag }),
        2 => (0usize..64).prop_map(|k| Step::Release { k }),
        1 => (1usize..4).prop_map(|n| Step::Reelect { n }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// "allocated ≤ capacity × ratio − reserved" after every committed entry, and every
    /// release returns exactly what its reservation took.
    #[test]
    fn never_overbooked_and_releases_are_exact(
        sizes in prop::collection::vec((1u64..=4, 2u64..=12), 1..4),
        steps in prop::collection::vec(step(), 1..60),
    ) {
        let (mut w, hosts) = world(sizes.len());
        for (h, (threads, mem_g)) in hosts.iter().zip(&sizes) {
            resize(&mut w.t, h, *threads, *mem_g * G);
        }
        let mut history: Vec<MemTxn> = vec![MemTxn { tables: w.t.tables.clone() }];
        let mut log: Vec<Command> = Vec::new();
        let mut live: Vec<(String, String, u64, u64)> = Vec::new();
        let mut n = 0u32;
        for s in steps {
            let mut commands = Vec::new();
            match s {
                Step::Place { cpu, mem_g, lag } => {
                    n += 1;
                    let uuid = format!("{n:032x}");
                    let stale = &history[history.len().saturating_sub(1 + lag)];
                    let view = StateView::load(stale).unwrap();
                    let req = scheduler::PlacementRequest::new(uuid.clone(), cpu as i64, (mem_g * G) as i64).unwrap();
                    if let Ok(p) = scheduler::allocate_scan(&view, &req) {
                        commands.push(reserve(&uuid, &p.host_uuid, cpu, mem_g * G));
                    }
                }
                Step::Release { k } => {
                    if !live.is_empty() {
                        let (uuid, ..) = live[k % live.len()].clone();
                        commands.push(release(&uuid));
                    }
                }
                Step::Reelect { n } => {
                    let from = log.len().saturating_sub(n);
                    commands.extend(log[from..].iter().cloned());
                }
            }
            for c in commands {
                let before: Vec<Host> = hosts.iter().map(|h| host(&w.t, h)).collect();
                let r = w.apply(c.clone());
                let ok = refused_code(&r).is_none();
                if let (true, Command::Host(op)) = (ok, &c) {
                    match &*op.op {
                        HostOp::Reserve { uuid, host_uuid, cpu_num, memory_size }
                            if !live.iter().any(|l| &l.0 == uuid) =>
                        {
                            live.push((uuid.clone(), host_uuid.clone(), *cpu_num, *memory_size));
                        }
                        HostOp::Release { uuid } if live.iter().any(|l| &l.0 == uuid) => {
                            let k = live.iter().position(|l| &l.0 == uuid).unwrap();
                            let (_, h, cpu, mem) = live.remove(k);
                            let i = hosts.iter().position(|x| *x == h).unwrap();
                            let after = host(&w.t, &h);
                            prop_assert_eq!(before[i].allocated_cpu - after.allocated_cpu, cpu);
                            prop_assert_eq!(before[i].allocated_memory - after.allocated_memory, mem);
                        }
                        _ => {}
                    }
                }
                log.push(c);
                for (i, h) in hosts.iter().enumerate() {
                    let now = host(&w.t, h);
                    let (threads, mem_g) = sizes[i];
                    prop_assert!(now.allocated_cpu <= threads * 10, "cpu {} > {}", now.allocated_cpu, threads * 10);
                    prop_assert!(now.allocated_memory <= mem_g * G - G, "memory {} > {}", now.allocated_memory, mem_g * G - G);
                    // The counters are the ledger's sum.
                    let held: Vec<_> = live.iter().filter(|l| &l.1 == h).collect();
                    prop_assert_eq!(now.allocated_cpu, held.iter().map(|l| l.2).sum::<u64>());
                    prop_assert_eq!(now.allocated_memory, held.iter().map(|l| l.3).sum::<u64>());
                    prop_assert_eq!(now.reservation_count as usize, held.len());
                    prop_assert_eq!(reservation::on_host(&w.t, h).unwrap().len(), held.len());
                }
                history.push(MemTxn { tables: w.t.tables.clone() });
            }
        }
    }
}

#[test]
fn reserved_memory_is_looked_up_host_then_cluster_then_zone_then_kvm_default() {
    let (mut w, hosts) = world(1);
    let h = host(&w.t, &hosts[0]);
    let tag = |w: &mut Harness, vo: &str, uuid: &str, tag: &str| {
        w.admin(
            "CreateSystemTag",
            json!({"resourceType": vo, "resourceUuid": uuid, "tag": tag}),
        );
    };
    // 16 GiB host: the largest VM that fits is total − reserved.
    let fits = |w: &mut Harness, n: &mut u32, mem: u64| {
        *n += 1;
        let u = format!("{:032x}", 0xf17 + *n);
        let ok = refused_code(&w.apply(reserve(&u, &hosts[0], 1, mem))).is_none();
        if ok {
            w.apply(release(&u));
        }
        ok
    };
    let mut n = 0;
    assert!(
        fits(&mut w, &mut n, 15 * G) && !fits(&mut w, &mut n, 15 * G + 1),
        "kvm/reservedMemory 1G"
    );
    tag(&mut w, "ZoneVO", &h.zone_uuid, "host::reservedMemory::4G");
    assert!(
        fits(&mut w, &mut n, 12 * G) && !fits(&mut w, &mut n, 12 * G + 1),
        "zone 4G"
    );
    tag(
        &mut w,
        "ClusterVO",
        &h.cluster_uuid,
        "host::reservedMemory::2G",
    );
    assert!(
        fits(&mut w, &mut n, 14 * G) && !fits(&mut w, &mut n, 14 * G + 1),
        "cluster 2G"
    );
    tag(&mut w, "HostVO", &hosts[0], "reservedMemory::8G");
    assert!(
        fits(&mut w, &mut n, 8 * G) && !fits(&mut w, &mut n, 8 * G + 1),
        "host 8G"
    );
    w.admin(
        "UpdateGlobalConfig",
        json!({"category": "hostAllocator", "name": "reservedCapacity.hostLevel", "value": "false"}),
    );
    assert!(
        fits(&mut w, &mut n, 14 * G) && !fits(&mut w, &mut n, 14 * G + 1),
        "host level off → cluster 2G"
    );
    // GetCpuMemoryCapacity subtracts the same figure.
    let cap = w.admin("GetCpuMemoryCapacity", json!({"hostUuids": [hosts[0]]}));
    assert_eq!(cap["availableMemory"], 14 * G);
}
