//! Call-matrix cases of this family's calls (run by `testing::matrix`).

use serde_json::json;

use crate::testing::matrix::bad_query;
use crate::testing::matrix::eq;
use crate::testing::matrix::missing;
use crate::testing::matrix::no;
use crate::testing::matrix::ok;
use crate::testing::matrix::Case;
use crate::testing::matrix::Ids;
use crate::testing::matrix::Parties;
use crate::wire::errors::Code;

/// The call-matrix cases of this family's calls.
pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
    let Parties {
        admin, stranger, ..
    } = Parties::of(ids);
    let i = ids.clone();
    vec![
        // ---- L3 networks and IP ranges.
        ok(
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
        ),
        no(
            "CreateL3Network",
            &admin,
            json!({"l2NetworkUuid": missing(), "name": "l3b"}),
            Code::ResourceNotFound,
        ),
        ok(
            "UpdateL3Network",
            &admin,
            json!({"uuid": i.l3, "dnsDomain": "zstack.org"}),
            |_, r| assert_eq!(r["inventory"]["dnsDomain"], "zstack.org"),
        ),
        no(
            "UpdateL3Network",
            &admin,
            json!({"uuid": missing(), "name": "x"}),
            Code::ResourceNotFound,
        ),
        ok(
            "ChangeL3NetworkState",
            &admin,
            json!({"uuid": i.l3, "stateEvent": "disable"}),
            |_, r| assert_eq!(r["inventory"]["state"], "Disabled"),
        ),
        no(
            "ChangeL3NetworkState",
            &admin,
            json!({"uuid": i.l3, "stateEvent": "pause"}),
            Code::InvalidArgument,
        ),
        ok("DeleteL3Network", &admin, json!({"uuid": i.l3}), {
            let l3 = i.l3.clone();
            move |h, _| {
                assert_eq!(h.count("QueryL3Network", eq("uuid", &l3)), 0);
                assert_eq!(h.count("QueryIpRange", eq("l3NetworkUuid", &l3)), 0);
                assert_eq!(h.count("QuerySystemTag", eq("resourceUuid", &l3)), 0);
            }
        }),
        no(
            "DeleteL3Network",
            &stranger,
            json!({"uuid": i.l3}),
            Code::PermissionDenied,
        ),
        ok(
            "AddIpRange",
            &admin,
            json!({"l3NetworkUuid": i.l3, "name": "r2", "startIp": "192.168.1.100", "endIp": "192.168.1.110", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}),
            |h, r| {
                assert_eq!(r["inventory"]["startIp"], "192.168.1.100");
                assert_eq!(h.count("QueryIpRange", json!([])), 2);
            },
        ),
        no(
            "AddIpRange",
            &admin,
            json!({"l3NetworkUuid": i.l3, "name": "r2", "startIp": "192.168.1.15", "endIp": "192.168.1.30", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}),
            Code::InvalidArgument,
        ),
        ok(
            "AddIpRangeByNetworkCidr",
            &admin,
            json!({"l3NetworkUuid": i.l3v, "name": "c", "networkCidr": "10.10.0.1/24"}),
            |_, r| assert_eq!(r["inventory"]["networkCidr"], "10.10.0.0/24"),
        ),
        no(
            "AddIpRangeByNetworkCidr",
            &admin,
            json!({"l3NetworkUuid": i.l3v, "name": "c", "networkCidr": "10.10.0.1/33"}),
            Code::InvalidArgument,
        ),
        ok(
            "UpdateIpRange",
            &admin,
            json!({"uuid": i.ip_range, "name": "range-1"}),
            |_, r| assert_eq!(r["inventory"]["name"], "range-1"),
        ),
        no(
            "UpdateIpRange",
            &admin,
            json!({"uuid": missing(), "name": "x"}),
            Code::ResourceNotFound,
        ),
        ok("DeleteIpRange", &admin, json!({"uuid": i.ip_range}), {
            let r = i.ip_range.clone();
            move |h, _| assert_eq!(h.count("QueryIpRange", eq("uuid", &r)), 0)
        }),
        no(
            "DeleteIpRange",
            &stranger,
            json!({"uuid": i.ip_range}),
            Code::PermissionDenied,
        ),
        ok(
            "AddDnsToL3Network",
            &admin,
            json!({"l3NetworkUuid": i.l3, "dns": "1.1.1.1"}),
            |_, r| assert_eq!(r["inventory"]["dns"], json!(["8.8.8.8", "1.1.1.1"])),
        ),
        no(
            "AddDnsToL3Network",
            &admin,
            json!({"l3NetworkUuid": i.l3, "dns": "not-an-ip"}),
            Code::InvalidArgument,
        ),
        ok(
            "RemoveDnsFromL3Network",
            &admin,
            json!({"l3NetworkUuid": i.l3, "dns": "8.8.8.8"}),
            |_, r| assert_eq!(r["inventory"]["dns"], json!([])),
        ),
        no(
            "RemoveDnsFromL3Network",
            &admin,
            json!({"l3NetworkUuid": missing(), "dns": "8.8.8.8"}),
            Code::ResourceNotFound,
        ),
        ok(
            "QueryL3Network",
            &admin,
            json!({"conditions": eq("ipRanges.startIp", "192.168.1.10")}),
            |_, r| assert_eq!(r["inventories"][0]["dns"], json!(["8.8.8.8"])),
        ),
        no("QueryL3Network", &admin, bad_query(), Code::InvalidArgument),
        ok(
            "QueryIpRange",
            &admin,
            json!({"conditions": eq("networkCidr", "192.168.1.0/24")}),
            {
                let r = i.ip_range.clone();
                move |_, q| assert_eq!(q["inventories"][0]["uuid"], r.as_str())
            },
        ),
        no("QueryIpRange", &admin, bad_query(), Code::InvalidArgument),
        ok(
            "GetFreeIp",
            &admin,
            json!({"l3NetworkUuid": i.l3, "limit": 2}),
            |_, r| {
                assert_eq!(r["inventories"][0]["ip"], "192.168.1.10");
                assert_eq!(r["inventories"][1]["ip"], "192.168.1.11");
            },
        ),
        no(
            "GetFreeIp",
            &admin,
            json!({"l3NetworkUuid": missing()}),
            Code::ResourceNotFound,
        ),
        ok(
            "CheckIpAvailability",
            &admin,
            json!({"l3NetworkUuid": i.l3, "ip": "192.168.1.12"}),
            |_, r| assert_eq!(r["available"], true),
        ),
        no(
            "CheckIpAvailability",
            &admin,
            json!({"l3NetworkUuid": i.l3, "ip": "300.1.1.1"}),
            Code::InvalidArgument,
        ),
    ]
}
