//! Offering unit tests.

use super::model::apply;
use super::*;
use crate::resource;
use crate::resource::generic::EnableEvent;
use crate::resource::generic::EnableState;
use crate::resource::generic::Rename;
use crate::testing::ctx;
use crate::testing::normal;
use crate::testing::u;
use crate::testing::MemTxn;
use crate::wire::date::java_date;

fn run(t: &mut MemTxn, op: OfferingOp) -> Result<OfferingResult, ApiError> {
    apply(t, &ctx(8), &Caller::admin(), op)
}

fn inst(n: u32, cpu: i64, mem: i64) -> OfferingOp {
    OfferingOp::CreateInstance {
        uuid: u(n),
        name: format!("io-{n}"),
        description: None,
        cpu_num: cpu,
        memory_size: mem,
        reserved_memory_size: None,
        allocator_strategy: None,
        sort_key: None,
        offering_type: None,
    }
}

fn disk(n: u32, size: i64) -> OfferingOp {
    OfferingOp::CreateDisk {
        uuid: u(n),
        name: format!("do-{n}"),
        description: Some("d".into()),
        disk_size: size,
        sort_key: None,
        allocation_strategy: None,
    }
}

fn code(r: Result<OfferingResult, ApiError>) -> &'static str {
    r.unwrap_err().code()
}

#[test]
fn instance_offering_lifecycle_and_shape() {
    let mut t = MemTxn::default();
    let r = run(&mut t, inst(40, 2, 2 << 30)).unwrap();
    assert_eq!(
        serde_json::to_string(&r.inventory().unwrap()).unwrap(),
        format!(
            r#"{{"uuid":"{}","name":"io-40","cpuNum":2,"cpuSpeed":0,"memorySize":2147483648,"reservedMemorySize":0,"type":"UserVm","allocatorStrategy":"LeastVmPreferredHostAllocatorStrategy","sortKey":0,"createDate":"{d}","lastOpDate":"{d}","state":"Enabled"}}"#,
            u(40),
            d = java_date(8000)
        )
    );
    let OfferingResult::Instance(o) = run(
        &mut t,
        OfferingOp::UpdateInstance {
            uuid: u(40),
            rename: Rename {
                name: Some("small".into()),
                description: Some("d".into()),
            },
            allocator_strategy: Some("MinimumCPUUsageHostAllocatorStrategy".into()),
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(o.allocator_strategy, "MinimumCPUUsageHostAllocatorStrategy");
    let OfferingResult::Instance(o) = run(
        &mut t,
        OfferingOp::ChangeState {
            disk: false,
            uuid: u(40),
            event: EnableEvent::Disable,
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(o.state, EnableState::Disabled);
    assert_eq!(
        run(
            &mut t,
            OfferingOp::Delete {
                disk: false,
                uuid: u(40)
            }
        )
        .unwrap(),
        OfferingResult::Deleted
    );
    assert!(resource::list::<InstanceOffering>(&t).unwrap().is_empty());
}

#[test]
fn disk_offering_lifecycle_and_shape() {
    let mut t = MemTxn::default();
    let r = run(&mut t, disk(41, 10 << 30)).unwrap();
    assert_eq!(
        serde_json::to_string(&r.inventory().unwrap()).unwrap(),
        format!(
            r#"{{"uuid":"{}","name":"do-41","description":"d","diskSize":10737418240,"sortKey":0,"state":"Enabled","type":"zstack","createDate":"{d}","lastOpDate":"{d}"}}"#,
            u(41),
            d = java_date(8000)
        )
    );
    run(
        &mut t,
        OfferingOp::UpdateDisk {
            uuid: u(41),
            rename: Rename {
                name: Some("big".into()),
                description: None,
            },
        },
    )
    .unwrap();
    let OfferingResult::Disk(o) = run(
        &mut t,
        OfferingOp::ChangeState {
            disk: true,
            uuid: u(41),
            event: EnableEvent::Disable,
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!((o.state, o.name.as_str()), (EnableState::Disabled, "big"));
    run(
        &mut t,
        OfferingOp::Delete {
            disk: true,
            uuid: u(41),
        },
    )
    .unwrap();
    assert!(resource::list::<DiskOffering>(&t).unwrap().is_empty());
}

#[test]
fn refusals_leave_state_unchanged() {
    let mut t = MemTxn::default();
    run(&mut t, inst(40, 1, 1 << 20)).unwrap();
    run(&mut t, disk(41, 1 << 20)).unwrap();
    let before = t.tables.clone();
    // `inst(42, 1, 1 << 20)` with one field changed.
    let with = |change: fn(&mut OfferingOp)| {
        let mut op = inst(42, 1, 1 << 20);
        change(&mut op);
        op
    };
    for (op, want, why) in [
        (inst(42, 0, 1 << 20), "SYS.1007", "no cpu"),
        (inst(42, 1025, 1 << 20), "SYS.1007", "too many cpus"),
        (inst(42, 1, 0), "SYS.1007", "no memory"),
        (inst(40, 1, 1), "SYS.1007", "dup uuid"),
        (
            with(|op| {
                if let OfferingOp::CreateInstance {
                    allocator_strategy, ..
                } = op
                {
                    *allocator_strategy = Some("Whatever".into());
                }
            }),
            "SYS.1007",
            "allocator strategy",
        ),
        (
            with(|op| {
                if let OfferingOp::CreateInstance {
                    reserved_memory_size,
                    ..
                } = op
                {
                    *reserved_memory_size = Some(2 << 20);
                }
            }),
            "SYS.1007",
            "reserved beyond memory",
        ),
        (
            OfferingOp::UpdateInstance {
                uuid: u(40),
                rename: Rename::default(),
                allocator_strategy: Some("x".into()),
            },
            "SYS.1007",
            "update's allocator strategy",
        ),
        (
            OfferingOp::UpdateInstance {
                uuid: u(99),
                rename: Rename::default(),
                allocator_strategy: None,
            },
            "SYS.1003",
            "no instance offering",
        ),
        (disk(43, 0), "SYS.1007", "disk size 0"),
        (disk(43, -5), "SYS.1007", "negative disk size"),
        (
            OfferingOp::UpdateDisk {
                uuid: u(99),
                rename: Rename::default(),
            },
            "SYS.1003",
            "no disk offering",
        ),
    ] {
        assert_eq!(code(run(&mut t, op)), want, "{why}");
    }
    for disk in [false, true] {
        assert_eq!(
            code(run(
                &mut t,
                OfferingOp::ChangeState {
                    disk,
                    uuid: u(99),
                    event: EnableEvent::Enable
                }
            )),
            "SYS.1003"
        );
        assert_eq!(
            code(apply(
                &mut t,
                &ctx(9),
                &normal(),
                OfferingOp::Delete { disk, uuid: u(40) }
            )),
            "ID.1002"
        );
    }
    assert_eq!(
        code(apply(&mut t, &ctx(9), &normal(), inst(44, 1, 1))),
        "ID.1002"
    );
    assert_eq!(t.tables, before);
}
