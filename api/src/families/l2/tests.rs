//! L2 unit tests.

use serde_json::json;
use serde_json::Value;

use super::model::apply;
use super::*;
use crate::resource;
use crate::testing::ctx;
use crate::testing::l2_common as common;
use crate::testing::make_cluster;
use crate::testing::make_novlan;
use crate::testing::make_zone;
use crate::testing::normal;
use crate::testing::rename;
use crate::testing::u;
use crate::testing::MemTxn;
use crate::wire::date::java_date;
use crate::ApiError;
use crate::Caller;

fn run(t: &mut MemTxn, op: L2Op) -> Result<L2Result, ApiError> {
    apply(t, &ctx(20), &Caller::admin(), op)
}

fn code(r: Result<L2Result, ApiError>) -> &'static str {
    r.unwrap_err().code()
}

fn attach_op(l2: &str, c: &str, cidr: Option<&str>) -> L2Op {
    L2Op::Attach {
        uuid: l2.into(),
        cluster_uuid: c.into(),
        vtep_cidr: cidr.map(str::to_string),
    }
}

fn attach(t: &mut MemTxn, l2: &str, c: &str, cidr: Option<&str>) -> Result<L2Result, ApiError> {
    run(t, attach_op(l2, c, cidr))
}

#[test]
fn novlan_vlan_shapes_attach_detach() {
    let mut t = MemTxn::default();
    let z = make_zone(&mut t, 1);
    let c = make_cluster(&mut t, 10, &z);
    let r = run(&mut t, L2Op::CreateNoVlan(common(60, &z, "eth0"))).unwrap();
    assert_eq!(
        serde_json::to_string(&r.inventory().unwrap()).unwrap(),
        format!(
            r#"{{"uuid":"{}","name":"l2-60","zoneUuid":"{z}","physicalInterface":"eth0","type":"L2NoVlanNetwork","vSwitchType":"LinuxBridge","virtualNetworkId":0,"isolated":false,"createDate":"{d}","lastOpDate":"{d}","attachedClusterUuids":[]}}"#,
            u(60),
            d = java_date(20_000)
        )
    );
    let r = run(
        &mut t,
        L2Op::CreateVlan {
            common: common(61, &z, "eth0"),
            vlan: 100,
        },
    )
    .unwrap();
    let inv = r.inventory().unwrap();
    assert_eq!(inv.as_object().unwrap().keys().next().unwrap(), "vlan");
    assert_eq!(inv["virtualNetworkId"], 100);
    attach(&mut t, &u(60), &c, None).unwrap();
    let L2Result::L2(l2) = attach(&mut t, &u(61), &c, None).unwrap() else {
        panic!()
    };
    assert_eq!(l2.attached_cluster_uuids, vec![c.clone()]);
    let before = t.tables.clone();
    assert_eq!(code(attach(&mut t, &u(61), &c, None)), "SYS.1006", "twice");
    assert_eq!(t.tables, before);
    run(
        &mut t,
        L2Op::Update {
            uuid: u(61),
            rename: rename(Some("vlan100"), Some("d")),
        },
    )
    .unwrap();
    run(
        &mut t,
        L2Op::Detach {
            uuid: u(61),
            cluster_uuid: c.clone(),
        },
    )
    .unwrap();
    assert_eq!(
        code(run(
            &mut t,
            L2Op::Detach {
                uuid: u(61),
                cluster_uuid: c.clone()
            }
        )),
        "SYS.1006"
    );
    // Cluster deletion forgets the attachment; zone deletion deletes the L2s.
    crate::testing::delete_cluster(&mut t, 21, &c);
    let L2Result::L2(l2) = run(
        &mut t,
        L2Op::Update {
            uuid: u(60),
            rename: rename(None, None),
        },
    )
    .unwrap() else {
        panic!()
    };
    assert!(l2.attached_cluster_uuids.is_empty());
    crate::testing::delete_zone(&mut t, 22, &z);
    assert!(resource::list::<L2Network>(&t).unwrap().is_empty());
}

#[test]
fn vxlan_pool_ranges_and_networks() {
    let mut t = MemTxn::default();
    let z = make_zone(&mut t, 1);
    let c = make_cluster(&mut t, 10, &z);
    let mut pc = common(70, &z, "eth1");
    pc.physical_interface = None;
    run(&mut t, L2Op::CreatePool(pc)).unwrap();
    let range = |n: u32, s: i64, e: i64| L2Op::CreateVniRange {
        uuid: u(n),
        l2_network_uuid: u(70),
        name: "r".into(),
        description: None,
        start_vni: s,
        end_vni: e,
    };
    let r = run(&mut t, range(71, 100, 103)).unwrap();
    assert_eq!(r.inventory().unwrap()["startVni"], 100);
    let before = t.tables.clone();
    assert_eq!(
        code(run(&mut t, range(72, 103, 200))),
        "SYS.1007",
        "overlap"
    );
    assert_eq!(code(run(&mut t, range(72, 0, 5))), "SYS.1007", "vni 0");
    assert_eq!(
        code(run(&mut t, range(72, 9, 5))),
        "SYS.1007",
        "start > end"
    );
    assert_eq!(
        code(run(&mut t, range(72, 1, 16_777_215))),
        "SYS.1007",
        "reserved"
    );
    assert_eq!(
        code(attach(&mut t, &u(70), &c, None)),
        "SYS.1007",
        "no cidr"
    );
    assert_eq!(
        code(attach(&mut t, &u(70), &c, Some("10.0.0.1/40"))),
        "SYS.1007"
    );
    assert_eq!(t.tables, before);
    let L2Result::L2(pool) = attach(&mut t, &u(70), &c, Some("192.168.29.1/24")).unwrap() else {
        panic!()
    };
    assert_eq!(
        resource::inventory(&pool)["attachedCidrs"],
        json!({ c.clone(): ["192.168.29.0/24"] })
    );
    let vx = |n: u32, vni: Option<i64>| L2Op::CreateVxlan {
        common: L2Common {
            physical_interface: None,
            zone_uuid: None,
            ..common(n, &z, "x")
        },
        pool_uuid: u(70),
        vni,
    };
    let L2Result::L2(v1) = apply(&mut t, &ctx(23), &normal(), vx(80, Some(101))).unwrap() else {
        panic!()
    };
    assert_eq!(v1.attached_cluster_uuids, vec![c.clone()]);
    let inv = resource::inventory(&v1);
    assert_eq!(
        (inv["vni"].clone(), inv["poolUuid"].clone()),
        (json!(101), json!(u(70)))
    );
    let before = t.tables.clone();
    assert_eq!(code(run(&mut t, vx(81, Some(101)))), "SYS.1007", "used");
    assert_eq!(
        code(run(&mut t, vx(81, Some(500)))),
        "SYS.1007",
        "not in range"
    );
    assert_eq!(
        code(run(
            &mut t,
            L2Op::CreateVxlan {
                common: common(81, &z, "x"),
                pool_uuid: u(60),
                vni: None
            }
        )),
        "SYS.1003"
    );
    assert_eq!(
        code(attach(&mut t, &u(80), &c, None)),
        "SYS.1006",
        "vxlan attach"
    );
    assert_eq!(
        code(run(&mut t, L2Op::DeleteVniRange { uuid: u(71) })),
        "SYS.1006",
        "range in use"
    );
    assert_eq!(t.tables, before);
    // Automatic VNIs fill the rest of the range, then run out.
    let mut got = vec![101];
    for n in 81..84 {
        let L2Result::L2(v) = run(&mut t, vx(n, None)).unwrap() else {
            panic!()
        };
        let L2Kind::Vxlan { vni, .. } = v.kind else {
            panic!()
        };
        got.push(vni);
    }
    got.sort();
    assert_eq!(got, vec![100, 101, 102, 103]);
    assert_eq!(code(run(&mut t, vx(84, None))), "SYS.1006", "exhausted");
    // Query views select by kind.
    let q = |c: Value| {
        let mut m = serde_json::Map::new();
        m.insert("conditions".into(), c);
        crate::query::parse_query("APIQueryL2NetworkMsg", &m).unwrap()
    };
    let count = |t: &MemTxn, w: L2Query, c: Value| {
        query(t, w, &q(c), &Caller::admin())
            .unwrap()
            .inventories
            .unwrap()
            .len()
    };
    assert_eq!(count(&t, L2Query::Vxlan, json!([])), 4);
    assert_eq!(count(&t, L2Query::Pool, json!([])), 1);
    assert_eq!(count(&t, L2Query::All, json!([])), 5);
    assert_eq!(count(&t, L2Query::VniRange, json!([])), 1);
    assert_eq!(
        count(
            &t,
            L2Query::Vxlan,
            json!([{"name":"vni","op":">","value":"101"}])
        ),
        2
    );
    let all = query(&t, L2Query::All, &q(json!([])), &Caller::admin()).unwrap();
    assert!(all
        .inventories
        .unwrap()
        .iter()
        .all(|i| i.get("vni").is_none()));
    // A normal account deletes its own VXLAN network but not the pool.
    assert_eq!(
        code(apply(
            &mut t,
            &ctx(24),
            &normal(),
            L2Op::Delete { uuid: u(70) }
        )),
        "ID.1002"
    );
    assert_eq!(
        code(apply(
            &mut t,
            &ctx(24),
            &normal(),
            L2Op::Delete { uuid: u(81) }
        )),
        "ID.1002"
    );
    apply(&mut t, &ctx(24), &normal(), L2Op::Delete { uuid: u(80) }).unwrap();
    // Deleting the pool deletes its networks and ranges.
    run(&mut t, L2Op::Delete { uuid: u(70) }).unwrap();
    assert!(resource::list::<L2Network>(&t).unwrap().is_empty());
    assert!(resource::list::<VniRange>(&t).unwrap().is_empty());
}

#[test]
fn refusals_leave_state_unchanged() {
    let mut t = MemTxn::default();
    let z = make_zone(&mut t, 1);
    let z2 = make_zone(&mut t, 2);
    let c2 = make_cluster(&mut t, 11, &z2);
    make_novlan(&mut t, 60, &z, "eth0");
    run(
        &mut t,
        L2Op::CreateVlan {
            common: common(61, &z, "eth0"),
            vlan: 10,
        },
    )
    .unwrap();
    let before = t.tables.clone();
    let vlan = |vlan| L2Op::CreateVlan {
        common: common(62, &z, "eth0"),
        vlan,
    };
    let mut no_nic = common(62, &z, "x");
    no_nic.physical_interface = None;
    let mut ovs = common(62, &z, "eth5");
    ovs.v_switch_type = Some("OvsDpdk".into());
    for (op, want, why) in [
        (
            L2Op::CreateNoVlan(common(62, &z, "eth0")),
            "SYS.1007",
            "same nic",
        ),
        (vlan(10), "SYS.1007", "same nic + vlan"),
        (vlan(0), "SYS.1007", "vlan 0"),
        (vlan(4095), "SYS.1007", "vlan 4095"),
        (L2Op::CreateNoVlan(no_nic), "SYS.1007", "no nic"),
        (
            L2Op::CreateNoVlan(common(62, &z, "bad nic")),
            "SYS.1007",
            "bad nic",
        ),
        (L2Op::CreateNoVlan(ovs), "SYS.1007", "vSwitch type"),
        (
            L2Op::CreateNoVlan(common(62, &u(99), "eth5")),
            "SYS.1003",
            "no zone",
        ),
        (
            L2Op::CreateNoVlan(common(60, &z, "eth5")),
            "SYS.1007",
            "dup",
        ),
        (attach_op(&u(60), &c2, None), "SYS.1007", "zone"),
        (attach_op(&u(60), &u(98), None), "SYS.1003", "no cluster"),
        (
            L2Op::Update {
                uuid: u(99),
                rename: rename(None, None),
            },
            "SYS.1003",
            "no L2",
        ),
        (
            L2Op::CreateVniRange {
                uuid: u(90),
                l2_network_uuid: u(60),
                name: "r".into(),
                description: None,
                start_vni: 1,
                end_vni: 2,
            },
            "SYS.1007",
            "not a pool",
        ),
    ] {
        assert_eq!(code(run(&mut t, op)), want, "{why}");
    }
    for op in [
        L2Op::CreateNoVlan(common(63, &z, "eth9")),
        L2Op::Delete { uuid: u(60) },
        L2Op::Attach {
            uuid: u(60),
            cluster_uuid: c2.clone(),
            vtep_cidr: None,
        },
        L2Op::Update {
            uuid: u(60),
            rename: rename(Some("x"), None),
        },
    ] {
        assert_eq!(code(apply(&mut t, &ctx(21), &normal(), op)), "ID.1002");
    }
    assert_eq!(t.tables, before);
}
