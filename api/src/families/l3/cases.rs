//! Call-matrix cases of this family's calls (run by `testing::matrix`).

use serde_json::json;

use crate::testing::matrix::bad_query;
use crate::testing::matrix::eq;
use crate::testing::matrix::first;
use crate::testing::matrix::gone;
use crate::testing::matrix::inv;
use crate::testing::matrix::missing;
use crate::testing::matrix::ok;
use crate::testing::matrix::rows;
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
    m.extend(rows! {
        "CreateL3Network", admin, json!({"l2NetworkUuid": missing(), "name": "l3b"}) => ResourceNotFound;
        "UpdateL3Network", admin, json!({"uuid": i.l3, "dnsDomain": "zstack.org"}) => ok(inv("dnsDomain", "zstack.org"));
        "UpdateL3Network", admin, json!({"uuid": missing(), "name": "x"}) => ResourceNotFound;
        "ChangeL3NetworkState", admin, json!({"uuid": i.l3, "stateEvent": "disable"}) => ok(inv("state", "Disabled"));
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
    m.extend(rows! {
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
    m.extend(rows! {
        "AddIpRange", admin, json!({"l3NetworkUuid": i.l3, "name": "r2", "startIp": "192.168.1.15", "endIp": "192.168.1.30", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}) => InvalidArgument;
        "AddIpRangeByNetworkCidr", admin, json!({"l3NetworkUuid": i.l3v, "name": "c", "networkCidr": "10.10.0.1/24"}) => ok(inv("networkCidr", "10.10.0.0/24"));
        "AddIpRangeByNetworkCidr", admin, json!({"l3NetworkUuid": i.l3v, "name": "c", "networkCidr": "10.10.0.1/33"}) => InvalidArgument;
        "UpdateIpRange", admin, json!({"uuid": i.ip_range, "name": "range-1"}) => ok(inv("name", "range-1"));
        "UpdateIpRange", admin, json!({"uuid": missing(), "name": "x"}) => ResourceNotFound;
        "DeleteIpRange", admin, json!({"uuid": i.ip_range}) => ok(gone("QueryIpRange", &i.ip_range));
        "DeleteIpRange", stranger, json!({"uuid": i.ip_range}) => PermissionDenied;
        "AddDnsToL3Network", admin, json!({"l3NetworkUuid": i.l3, "dns": "1.1.1.1"}) => ok(inv("dns", json!(["8.8.8.8", "1.1.1.1"])));
        "AddDnsToL3Network", admin, json!({"l3NetworkUuid": i.l3, "dns": "not-an-ip"}) => InvalidArgument;
        "RemoveDnsFromL3Network", admin, json!({"l3NetworkUuid": i.l3, "dns": "8.8.8.8"}) => ok(inv("dns", json!([])));
        "RemoveDnsFromL3Network", admin, json!({"l3NetworkUuid": missing(), "dns": "8.8.8.8"}) => ResourceNotFound;
        "QueryL3Network", admin, json!({"conditions": eq("ipRanges.startIp", "192.168.1.10")}) => ok(first("dns", json!(["8.8.8.8"])));
        "QueryL3Network", admin, bad_query() => InvalidArgument;
        "QueryIpRange", admin, json!({"conditions": eq("networkCidr", "192.168.1.0/24")}) => ok(first("uuid", i.ip_range.as_str()));
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
    m.extend(rows! {
        "GetFreeIp", admin, json!({"l3NetworkUuid": missing()}) => ResourceNotFound;
    });
    m.push(ok(
        "CheckIpAvailability",
        &admin,
        json!({"l3NetworkUuid": i.l3, "ip": "192.168.1.12"}),
        |_, r| assert_eq!(r["available"], true),
    ));
    m.extend(rows! {
        "CheckIpAvailability", admin, json!({"l3NetworkUuid": i.l3, "ip": "300.1.1.1"}) => InvalidArgument;
    });
    m
}
