//! Call-matrix cases of this family's calls (run by `testing::matrix`).

use serde_json::json;

use crate::testing::matrix::bad_query;
use crate::testing::matrix::eq;
use crate::testing::matrix::missing;
use crate::testing::matrix::ok;
use crate::testing::matrix::refusals;
use crate::testing::matrix::Case;
use crate::testing::matrix::Ids;
use crate::testing::matrix::Parties;

/// The call-matrix cases of this family's calls.
pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
    let Parties {
        admin, stranger, ..
    } = Parties::of(ids);
    let i = ids.clone();
    let mut m = Vec::new();
    // ---- L3 networks and IP ranges.
    m.push(ok(
        "CreateL3Network",
        &admin,
        json!({"l2NetworkUuid": i.vlan, "name": "l3b"}),
        {
            let vlan = i.vlan.clone();
            move |h, r| {
                assert_eq!(r["inventory"]["l2NetworkUuid"], vlan.as_str());
                assert_eq!(h.count("QueryL3Network", eq("l2NetworkUuid", &vlan)), 2);
            }
        },
    ));
    m.extend(refusals! {
        "CreateL3Network", admin, json!({"l2NetworkUuid": missing(), "name": "l3b"}) => ResourceNotFound;
    });
    m.push(ok(
        "UpdateL3Network",
        &admin,
        json!({"uuid": i.l3, "dnsDomain": "zstack.org"}),
        |_, r| assert_eq!(r["inventory"]["dnsDomain"], "zstack.org"),
    ));
    m.extend(refusals! {
        "UpdateL3Network", admin, json!({"uuid": missing(), "name": "x"}) => ResourceNotFound;
    });
    m.push(ok(
        "ChangeL3NetworkState",
        &admin,
        json!({"uuid": i.l3, "stateEvent": "disable"}),
        |_, r| assert_eq!(r["inventory"]["state"], "Disabled"),
    ));
    m.extend(refusals! {
        "ChangeL3NetworkState", admin, json!({"uuid": i.l3, "stateEvent": "pause"}) => InvalidArgument;
    });
    m.push(ok("DeleteL3Network", &admin, json!({"uuid": i.l3}), {
        let l3 = i.l3.clone();
        move |h, _| {
            assert_eq!(h.count("QueryL3Network", eq("uuid", &l3)), 0);
            assert_eq!(h.count("QueryIpRange", eq("l3NetworkUuid", &l3)), 0);
            assert_eq!(h.count("QuerySystemTag", eq("resourceUuid", &l3)), 0);
        }
    }));
    m.extend(refusals! {
        "DeleteL3Network", stranger, json!({"uuid": i.l3}) => PermissionDenied;
    });
    m.push(ok(
            "AddIpRange",
            &admin,
            json!({"l3NetworkUuid": i.l3, "name": "r2", "startIp": "192.168.1.100", "endIp": "192.168.1.110", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}),
            |h, r| {
                assert_eq!(r["inventory"]["startIp"], "192.168.1.100");
                assert_eq!(h.count("QueryIpRange", json!([])), 2);
            },
        ));
    m.extend(refusals! {
        "AddIpRange", admin, json!({"l3NetworkUuid": i.l3, "name": "r2", "startIp": "192.168.1.15", "endIp": "192.168.1.30", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}) => InvalidArgument;
    });
    m.push(ok(
        "AddIpRangeByNetworkCidr",
        &admin,
        json!({"l3NetworkUuid": i.l3v, "name": "c", "networkCidr": "10.10.0.1/24"}),
        |_, r| assert_eq!(r["inventory"]["networkCidr"], "10.10.0.0/24"),
    ));
    m.extend(refusals! {
        "AddIpRangeByNetworkCidr", admin, json!({"l3NetworkUuid": i.l3v, "name": "c", "networkCidr": "10.10.0.1/33"}) => InvalidArgument;
    });
    m.push(ok(
        "UpdateIpRange",
        &admin,
        json!({"uuid": i.ip_range, "name": "range-1"}),
        |_, r| assert_eq!(r["inventory"]["name"], "range-1"),
    ));
    m.extend(refusals! {
        "UpdateIpRange", admin, json!({"uuid": missing(), "name": "x"}) => ResourceNotFound;
    });
    m.push(ok("DeleteIpRange", &admin, json!({"uuid": i.ip_range}), {
        let r = i.ip_range.clone();
        move |h, _| assert_eq!(h.count("QueryIpRange", eq("uuid", &r)), 0)
    }));
    m.extend(refusals! {
        "DeleteIpRange", stranger, json!({"uuid": i.ip_range}) => PermissionDenied;
    });
    m.push(ok(
        "AddDnsToL3Network",
        &admin,
        json!({"l3NetworkUuid": i.l3, "dns": "1.1.1.1"}),
        |_, r| assert_eq!(r["inventory"]["dns"], json!(["8.8.8.8", "1.1.1.1"])),
    ));
    m.extend(refusals! {
        "AddDnsToL3Network", admin, json!({"l3NetworkUuid": i.l3, "dns": "not-an-ip"}) => InvalidArgument;
    });
    m.push(ok(
        "RemoveDnsFromL3Network",
        &admin,
        json!({"l3NetworkUuid": i.l3, "dns": "8.8.8.8"}),
        |_, r| assert_eq!(r["inventory"]["dns"], json!([])),
    ));
    m.extend(refusals! {
        "RemoveDnsFromL3Network", admin, json!({"l3NetworkUuid": missing(), "dns": "8.8.8.8"}) => ResourceNotFound;
    });
    m.push(ok(
        "QueryL3Network",
        &admin,
        json!({"conditions": eq("ipRanges.startIp", "192.168.1.10")}),
        |_, r| assert_eq!(r["inventories"][0]["dns"], json!(["8.8.8.8"])),
    ));
    m.extend(refusals! {
        "QueryL3Network", admin, bad_query() => InvalidArgument;
    });
    m.push(ok(
        "QueryIpRange",
        &admin,
        json!({"conditions": eq("networkCidr", "192.168.1.0/24")}),
        {
            let r = i.ip_range.clone();
            move |_, q| assert_eq!(q["inventories"][0]["uuid"], r.as_str())
        },
    ));
    m.extend(refusals! {
        "QueryIpRange", admin, bad_query() => InvalidArgument;
    });
    m.push(ok(
        "GetFreeIp",
        &admin,
        json!({"l3NetworkUuid": i.l3, "limit": 2}),
        |_, r| {
            assert_eq!(r["inventories"][0]["ip"], "192.168.1.10");
            assert_eq!(r["inventories"][1]["ip"], "192.168.1.11");
        },
    ));
    m.extend(refusals! {
        "GetFreeIp", admin, json!({"l3NetworkUuid": missing()}) => ResourceNotFound;
    });
    m.push(ok(
        "CheckIpAvailability",
        &admin,
        json!({"l3NetworkUuid": i.l3, "ip": "192.168.1.12"}),
        |_, r| assert_eq!(r["available"], true),
    ));
    m.extend(refusals! {
        "CheckIpAvailability", admin, json!({"l3NetworkUuid": i.l3, "ip": "300.1.1.1"}) => InvalidArgument;
    });
    m
}
