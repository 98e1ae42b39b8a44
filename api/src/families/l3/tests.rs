//! L3 unit tests.

use serde_json::json;

use super::model::apply;
use super::*;
use crate::net::ip_str;
use crate::resource;
use crate::resource::generic::EnableEvent;
use crate::resource::generic::EnableState;
use crate::testing::ctx;
use crate::testing::make_novlan;
use crate::testing::make_zone;
use crate::testing::normal;
use crate::testing::rename;
use crate::testing::u;
use crate::testing::MemTxn;
use crate::wire::date::java_date;
use crate::ApiError;
use crate::Caller;
use crate::StateTxn;

fn run(t: &mut MemTxn, op: L3Op) -> Result<L3Result, ApiError> {
    apply(t, &ctx(30), &Caller::admin(), op)
}

fn code(r: Result<L3Result, ApiError>) -> &'static str {
    r.unwrap_err().code()
}

fn create_op(n: u32, l2: &str, category: Option<&str>) -> L3Op {
    L3Op::Create {
        uuid: u(n),
        l2_network_uuid: l2.into(),
        name: format!("l3-{n}"),
        description: None,
        l3_type: None,
        category: category.map(str::to_string),
        ip_version: None,
        system: None,
        dns_domain: None,
        enable_ipam: None,
    }
}

fn range_op(n: u32, l3: &str, s: &str, e: &str, mask: &str, gw: Option<&str>) -> L3Op {
    L3Op::AddIpRange {
        uuid: u(n),
        l3_network_uuid: l3.into(),
        name: format!("r-{n}"),
        description: None,
        spec: RangeSpec::Explicit {
            start_ip: s.into(),
            end_ip: e.into(),
            netmask: mask.into(),
            gateway: gw.map(str::to_string),
        },
        ip_range_type: None,
    }
}

fn cidr_op(n: u32, l3: &str, cidr: &str, gw: Option<&str>) -> L3Op {
    L3Op::AddIpRange {
        uuid: u(n),
        l3_network_uuid: l3.into(),
        name: format!("r-{n}"),
        description: None,
        spec: RangeSpec::Cidr {
            cidr: cidr.into(),
            gateway: gw.map(str::to_string),
        },
        ip_range_type: None,
    }
}

fn alloc(t: &mut MemTxn, l3: &str, n: u32, ip: Option<&str>) -> Result<L3Result, ApiError> {
    run(
        t,
        L3Op::AllocateIp {
            l3_network_uuid: l3.into(),
            used_ip_uuid: u(n),
            required_ip: ip.map(str::to_string),
            used_for: "VmNic".into(),
            vm_nic_uuid: None,
        },
    )
}

fn setup() -> (MemTxn, String, String) {
    let mut t = MemTxn::default();
    let z = make_zone(&mut t, 1);
    let l2 = make_novlan(&mut t, 60, &z, "eth0");
    run(&mut t, create_op(100, &l2, None)).unwrap();
    (t, l2, u(100))
}

#[test]
fn manual_range_examples_are_accepted() {
    for (s, e, m, g) in [
        ("172.20.12.2", "172.20.12.255", "255.255.0.0", "172.20.0.1"),
        ("10.108.10.0", "10.108.11.255", "255.0.0.0", "10.0.0.1"),
        (
            "180.169.211.117",
            "180.169.211.118",
            "255.255.255.240",
            "180.169.211.113",
        ),
        (
            "192.168.210.10",
            "192.168.210.20",
            "255.255.240.0",
            "192.168.208.1",
        ),
    ] {
        let (mut t, _, l3) = setup();
        run(&mut t, range_op(110, &l3, s, e, m, Some(g))).unwrap();
    }
    for (cidr, start, end, gw) in [
        (
            "192.168.1.0/24",
            "192.168.1.2",
            "192.168.1.254",
            "192.168.1.1",
        ),
        ("172.31.0.0/18", "172.31.0.2", "172.31.63.254", "172.31.0.1"),
        (
            "192.168.1.1/24",
            "192.168.1.2",
            "192.168.1.254",
            "192.168.1.1",
        ),
        ("172.18.0.10/24", "172.18.0.2", "172.18.0.254", "172.18.0.1"),
    ] {
        let (mut t, _, l3) = setup();
        let L3Result::IpRange(r) = run(&mut t, cidr_op(110, &l3, cidr, None)).unwrap() else {
            panic!()
        };
        let inv = resource::inventory(&r);
        assert_eq!(
            (
                inv["startIp"].as_str(),
                inv["endIp"].as_str(),
                inv["gateway"].as_str()
            ),
            (Some(start), Some(end), Some(gw)),
            "{cidr}"
        );
    }
}

#[test]
fn l3_shape_dns_ranges_and_ipam() {
    let (mut t, l2, l3) = setup();
    let L3Result::IpRange(r) = run(
        &mut t,
        range_op(
            110,
            &l3,
            "192.168.0.10",
            "192.168.0.12",
            "255.255.255.0",
            Some("192.168.0.1"),
        ),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        serde_json::to_string(&resource::inventory(&r)).unwrap(),
        format!(
            r#"{{"uuid":"{}","l3NetworkUuid":"{l3}","name":"r-110","startIp":"192.168.0.10","endIp":"192.168.0.12","netmask":"255.255.255.0","gateway":"192.168.0.1","networkCidr":"192.168.0.0/24","ipVersion":4,"prefixLen":24,"ipRangeType":"Normal","createDate":"{d}","lastOpDate":"{d}"}}"#,
            u(110),
            d = java_date(30_000)
        )
    );
    run(
        &mut t,
        L3Op::AddDns {
            l3_network_uuid: l3.clone(),
            dns: "8.8.8.8".into(),
        },
    )
    .unwrap();
    let L3Result::L3(net) = run(
        &mut t,
        L3Op::AddDns {
            l3_network_uuid: l3.clone(),
            dns: "114.114.114.114".into(),
        },
    )
    .unwrap() else {
        panic!()
    };
    let inv = resource::inventory(&net);
    let keys = crate::testing::keys(&inv);
    assert_eq!(
        keys,
        [
            "uuid",
            "name",
            "type",
            "zoneUuid",
            "l2NetworkUuid",
            "state",
            "system",
            "category",
            "ipVersion",
            "enableIPAM",
            "isolated",
            "createDate",
            "lastOpDate",
            "dns",
            "ipRanges",
            "networkServices",
            "hostRoute",
            "reservedIpRanges"
        ]
    );
    assert_eq!(inv["dns"], json!(["8.8.8.8", "114.114.114.114"]));
    assert_eq!(inv["ipRanges"][0]["startIp"], "192.168.0.10");
    assert_eq!(inv["l2NetworkUuid"], json!(l2));
    let L3Result::L3(net) = run(
        &mut t,
        L3Op::RemoveDns {
            l3_network_uuid: l3.clone(),
            dns: "8.8.8.8".into(),
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(net.dns, vec!["114.114.114.114"]);
    // IPAM: static, lowest free, exhaustion, release.
    let L3Result::UsedIp(s) = alloc(&mut t, &l3, 200, Some("192.168.0.11")).unwrap() else {
        panic!()
    };
    assert_eq!(s.inventory()["ipInLong"], 3_232_235_531u32);
    let mut got = vec![];
    for n in 201..203 {
        let L3Result::UsedIp(x) = alloc(&mut t, &l3, n, None).unwrap() else {
            panic!()
        };
        got.push(ip_str(x.ip));
    }
    assert_eq!(got, ["192.168.0.10", "192.168.0.12"]);
    let before = t.tables.clone();
    assert_eq!(code(alloc(&mut t, &l3, 203, None)), "L3.1000", "exhausted");
    assert_eq!(
        code(alloc(&mut t, &l3, 203, Some("192.168.0.11"))),
        "L3.1000",
        "used"
    );
    assert_eq!(
        code(alloc(&mut t, &l3, 203, Some("192.168.0.99"))),
        "L3.1000",
        "not in range"
    );
    assert_eq!(t.tables, before);
    run(
        &mut t,
        L3Op::ReleaseIp {
            l3_network_uuid: l3.clone(),
            ip: "192.168.0.11".into(),
        },
    )
    .unwrap();
    let L3Result::UsedIp(x) = alloc(&mut t, &l3, 203, None).unwrap() else {
        panic!()
    };
    assert_eq!(ip_str(x.ip), "192.168.0.11");
    let (free, total, used) = free_ips(&t, &l3, 5).unwrap();
    assert_eq!((free, total, used), (vec![], 3, 3));
    run(
        &mut t,
        L3Op::ReleaseIp {
            l3_network_uuid: l3.clone(),
            ip: "192.168.0.12".into(),
        },
    )
    .unwrap();
    let (free, _, used) = free_ips(&t, &l3, 5).unwrap();
    assert_eq!((free, used), (vec!["192.168.0.12".to_string()], 2));
    alloc(&mut t, &l3, 204, Some("192.168.0.12")).unwrap();
    // Permissive delete of a range in use is refused; Enforcing releases.
    let before = t.tables.clone();
    assert_eq!(
        code(run(
            &mut t,
            L3Op::DeleteIpRange {
                uuid: u(110),
                enforcing: false
            }
        )),
        "SYS.1006"
    );
    assert_eq!(t.tables, before);
    run(
        &mut t,
        L3Op::DeleteIpRange {
            uuid: u(110),
            enforcing: true,
        },
    )
    .unwrap();
    assert!(used_ips(&t, &l3).unwrap().is_empty());
    assert!(resource::list::<IpRange>(&t).unwrap().is_empty());
    assert!(resource::require::<L3Network>(&t, &l3)
        .unwrap()
        .1
        .ip_ranges
        .is_empty());
}

#[test]
fn lowest_free_skips_used_addresses() {
    let r = |s: u32, e: u32| IpRange {
        uuid: String::new(),
        l3_network_uuid: String::new(),
        name: String::new(),
        description: None,
        start_ip: s,
        end_ip: e,
        prefix_len: 24,
        gateway: 1,
        create_date: 0,
        last_op_date: 0,
    };
    let ranges = [r(20, 22), r(10, 12)];
    assert_eq!(lowest_free(&ranges, &[]), Some((1, 10)));
    assert_eq!(lowest_free(&ranges, &[10, 11]), Some((1, 12)));
    assert_eq!(lowest_free(&ranges, &[10, 11, 12, 20]), Some((0, 21)));
    assert_eq!(lowest_free(&ranges, &[10, 11, 12, 20, 21, 22]), None);
    assert_eq!(lowest_free(&[r(5, u32::MAX)], &[5]), Some((0, 6)));
}

#[test]
fn update_state_delete_and_l2_cascade() {
    let (mut t, l2, l3) = setup();
    run(&mut t, cidr_op(110, &l3, "10.0.0.0/24", None)).unwrap();
    alloc(&mut t, &l3, 200, None).unwrap();
    let L3Result::L3(n) = run(
        &mut t,
        L3Op::Update {
            uuid: l3.clone(),
            rename: rename(Some("pub"), Some("d")),
            dns_domain: Some("zstack.org".into()),
            category: Some("Public".into()),
            system: None,
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!((n.category.as_str(), n.name.as_str()), ("Public", "pub"));
    let L3Result::L3(n) = run(
        &mut t,
        L3Op::ChangeState {
            uuid: l3.clone(),
            event: EnableEvent::Disable,
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(n.state, EnableState::Disabled);
    let L3Result::IpRange(r) = run(
        &mut t,
        L3Op::UpdateIpRange {
            uuid: u(110),
            rename: rename(Some("renamed"), None),
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(r.name, "renamed");
    assert_eq!(
        resource::require::<L3Network>(&t, &l3).unwrap().1.ip_ranges[0].name,
        "renamed"
    );
    run(&mut t, create_op(101, &l2, None)).unwrap();
    run(&mut t, L3Op::Delete { uuid: u(101) }).unwrap();
    assert!(resource::load::<L3Network>(&t, &u(101)).unwrap().is_none());
    crate::testing::delete_l2(&mut t, 31, &l2);
    assert!(resource::list::<L3Network>(&t).unwrap().is_empty());
    assert!(resource::list::<IpRange>(&t).unwrap().is_empty());
    assert!(t.scan_prefix(USED_IP_TABLE, b"", 10).unwrap().is_empty());
}

#[test]
fn refusals_leave_state_unchanged() {
    let (mut t, l2, l3) = setup();
    run(
        &mut t,
        range_op(
            110,
            &l3,
            "10.0.0.10",
            "10.0.0.20",
            "255.255.255.0",
            Some("10.0.0.1"),
        ),
    )
    .unwrap();
    run(&mut t, create_op(101, &l2, None)).unwrap();
    let before = t.tables.clone();
    let bad_ranges = [
        ("10.0.0.30", "10.0.0.25", "255.255.255.0", Some("10.0.0.1")), // start > end
        ("10.0.0.30", "10.0.0.40", "255.255.255.0", None),             // no gateway
        ("10.0.0.30", "10.0.0.40", "255.0.255.0", Some("10.0.0.1")),   // bad mask
        ("10.0.0.30", "10.0.0.40", "0.0.0.0", Some("10.0.0.1")),       // zero mask
        ("10.0.0.30", "10.0.0.40", "255.255.255.0", Some("10.0.0.35")), // gateway inside
        ("10.0.0.30", "10.0.0.40", "255.255.255.0", Some("10.0.1.1")), // gateway outside subnet
        ("10.0.0.0", "10.0.0.40", "255.255.255.0", Some("10.0.0.1")),  // network address
        ("10.0.0.30", "10.0.0.255", "255.255.255.0", Some("10.0.0.1")), // broadcast
        ("10.0.0.30", "10.0.1.40", "255.255.255.0", Some("10.0.0.1")), // end in another subnet
        (
            "224.0.0.10",
            "224.0.0.20",
            "255.255.255.0",
            Some("224.0.0.1"),
        ), // multicast
        (
            "169.254.1.10",
            "169.254.1.20",
            "255.255.255.0",
            Some("169.254.1.1"),
        ), // link-local
        ("10.0.0.x", "10.0.0.20", "255.255.255.0", Some("10.0.0.1")),  // not an address
    ];
    for (s, e, m, g) in bad_ranges {
        assert_eq!(
            code(run(&mut t, range_op(111, &l3, s, e, m, g))),
            "SYS.1007",
            "{s}-{e}/{m} gw {g:?}"
        );
    }
    let mut v6 = create_op(102, &l2, None);
    if let L3Op::Create { ip_version, .. } = &mut v6 {
        *ip_version = Some("6".into());
    }
    let dns = |d: &str| L3Op::AddDns {
        l3_network_uuid: l3.clone(),
        dns: d.into(),
    };
    let mask = "255.255.255.0";
    let other = u(101);
    for (op, want, why) in [
        // Same L3: another subnet or gateway; other L3 on the same L2: overlap.
        (
            range_op(111, &l3, "10.0.1.10", "10.0.1.20", mask, Some("10.0.1.1")),
            "SYS.1007",
            "another subnet",
        ),
        (
            range_op(111, &l3, "10.0.0.30", "10.0.0.40", mask, Some("10.0.0.2")),
            "SYS.1007",
            "another gateway",
        ),
        (
            range_op(
                111,
                &other,
                "10.0.0.15",
                "10.0.0.40",
                mask,
                Some("10.0.0.1"),
            ),
            "SYS.1007",
            "overlap on the L2",
        ),
        (
            range_op(110, &l3, "10.0.0.30", "10.0.0.40", mask, Some("10.0.0.1")),
            "SYS.1007",
            "dup",
        ),
        (cidr_op(111, &other, "10.9.0.0/31", None), "SYS.1007", "/31"),
        (
            cidr_op(111, &other, "10.9.0.0/24", Some("10.9.0.7")),
            "SYS.1007",
            "gateway in the range",
        ),
        (cidr_op(111, &other, "10.9.0.0/33", None), "SYS.1007", "/33"),
        (
            range_op(111, &u(99), "10.9.0.2", "10.9.0.3", mask, Some("10.9.0.1")),
            "SYS.1003",
            "no L3",
        ),
        // Create.
        (create_op(102, &u(99), None), "SYS.1003", "no L2"),
        (create_op(102, &l2, Some("Weird")), "SYS.1007", "category"),
        (create_op(102, &l2, Some("System")), "SYS.1006", "shared L2"),
        (v6, "SYS.1007", "IPv6"),
        (create_op(100, &l2, None), "SYS.1007", "dup"),
        // DNS.
        (dns("not-an-ip"), "SYS.1007", "not an address"),
        (
            L3Op::RemoveDns {
                l3_network_uuid: u(99),
                dns: "1.1.1.1".into(),
            },
            "SYS.1003",
            "no L3",
        ),
        (
            L3Op::Update {
                uuid: l3.clone(),
                rename: rename(None, None),
                dns_domain: None,
                category: Some("System".into()),
                system: None,
            },
            "SYS.1006",
            "to System",
        ),
        (
            L3Op::ChangeState {
                uuid: u(99),
                event: EnableEvent::Enable,
            },
            "SYS.1003",
            "no L3",
        ),
        (
            L3Op::UpdateIpRange {
                uuid: u(99),
                rename: rename(None, None),
            },
            "SYS.1003",
            "no range",
        ),
    ] {
        assert_eq!(code(run(&mut t, op)), want, "{why}");
    }
    // Normal accounts cannot touch the admin's L3 or build on its L2.
    for op in [
        create_op(103, &l2, None),
        L3Op::Delete { uuid: l3.clone() },
        dns("1.1.1.1"),
        L3Op::DeleteIpRange {
            uuid: u(110),
            enforcing: true,
        },
        range_op(
            112,
            &l3,
            "10.0.0.30",
            "10.0.0.40",
            "255.255.255.0",
            Some("10.0.0.1"),
        ),
    ] {
        assert_eq!(code(apply(&mut t, &ctx(31), &normal(), op)), "ID.1002");
    }
    assert_eq!(t.tables, before);
    run(&mut t, dns("1.1.1.1")).unwrap();
    let before = t.tables.clone();
    assert_eq!(
        code(run(&mut t, dns("1.1.1.1"))),
        "SYS.1007",
        "duplicate dns"
    );
    assert_eq!(t.tables, before);
}

#[test]
fn system_l3_needs_dedicated_l2() {
    let mut t = MemTxn::default();
    let z = make_zone(&mut t, 1);
    let l2 = make_novlan(&mut t, 60, &z, "eth0");
    run(&mut t, create_op(100, &l2, Some("System"))).unwrap();
    assert!(
        resource::require::<L3Network>(&t, &u(100))
            .unwrap()
            .1
            .system
    );
    assert_eq!(code(run(&mut t, create_op(101, &l2, None))), "SYS.1006");
}
