//! Wire-level tests of the infrastructure families: every call goes through
//! `calls::plan` (catalogue checks included) → `apply` → `reply_fields`, and every query
//! through `calls::run_query`, as the node does it.

use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use crate::testing::ctx;
use crate::testing::harness::stamp_uuid as uuid;
use crate::testing::harness::Who;
use crate::testing::matrix::Harness;
use crate::wire::errors::Code;
use crate::Caller;

/// A normal account that owns nothing here.
fn other_account() -> Who {
    Who::As(Caller {
        account_uuid: "b".repeat(32),
        user_uuid: "b".repeat(32),
        admin: false,
    })
}

#[test]
fn every_infrastructure_call_through_the_wire() {
    let mut w = Harness::new();
    // A zone and a cluster.
    let (zone, cluster) = w.zone_and_cluster();
    w.admin("UpdateCluster", json!({"uuid": cluster, "name": "c1"}));
    w.change_state("ChangeClusterState", &cluster, "disable");
    w.change_state("ChangeClusterState", &cluster, "enable");
    assert_eq!(w.count_eq("QueryCluster", "name", "c1"), 1);
    w.refuses(
        "CreateCluster",
        json!({"zoneUuid": zone, "name": "c", "hypervisorType": "Xen"}),
        Code::InvalidArgument,
    );
    w.refuses(
        "CreateCluster",
        json!({"zoneUuid": uuid(999), "name": "c", "hypervisorType": "KVM"}),
        Code::ResourceNotFound,
    );
    // Primary storage (a create's systemTags become tags of the new resource).
    let tagged = w.created(
        "AddNfsPrimaryStorage",
        json!({"zoneUuid": zone, "name": "hb", "url": "10.0.0.6:/nfs",
               "systemTags": ["primaryStorage::gateway::cidr::10.1.0.0/24"], "userTags": ["gold"]}),
    );
    assert_eq!(
        w.count(
            "QueryPrimaryStorage",
            json!([{"name":"__systemTag__","op":"like","value":"primaryStorage::gateway::cidr::%"}])
        ),
        1
    );
    assert_eq!(w.count_eq("QueryUserTag", "resourceUuid", &tagged), 1);
    w.refuses(
        "AddNfsPrimaryStorage",
        json!({"zoneUuid": zone, "name": "hb", "url": "10.0.0.7:/nfs", "systemTags": [""]}),
        Code::InvalidArgument,
    );
    w.admin("DeletePrimaryStorage", json!({"uuid": tagged}));
    assert_eq!(
        w.count("QueryUserTag", json!([])),
        0,
        "tags go with the resource"
    );
    // Primary storage.
    let local = w.local_ps(&zone);
    let nfs = w.nfs_ps(&zone);
    let smp = w.created(
        "AddSharedMountPointPrimaryStorage",
        json!({"zoneUuid": zone, "name": "smp", "url": "/mnt/mfs/zstack"}),
    );
    w.admin(
        "UpdatePrimaryStorage",
        json!({"uuid": nfs, "description": "d"}),
    );
    w.change_state("ChangePrimaryStorageState", &smp, "maintain");
    let m = w.admin(
        "AttachPrimaryStorageToCluster",
        json!({"primaryStorageUuid": local, "clusterUuid": cluster}),
    );
    assert_eq!(m["inventory"]["attachedClusterUuids"], json!([cluster]));
    w.admin(
        "AttachPrimaryStorageToCluster",
        json!({"primaryStorageUuid": nfs, "clusterUuid": cluster}),
    );
    w.refuses(
        "AttachPrimaryStorageToCluster",
        json!({"primaryStorageUuid": smp, "clusterUuid": cluster}),
        Code::OperationFailure,
    );
    w.admin(
        "DetachPrimaryStorageFromCluster",
        json!({"primaryStorageUuid": nfs, "clusterUuid": cluster}),
    );
    w.admin("DeletePrimaryStorage", json!({"uuid": nfs}));
    w.refuses(
        "DeletePrimaryStorage",
        json!({"uuid": local}),
        Code::OperationFailure,
    );
    assert_eq!(
        w.count_eq("QueryPrimaryStorage", "attachedClusterUuids", &cluster),
        1
    );
    w.refuses(
        "ChangePrimaryStorageState",
        json!({"uuid": smp, "stateEvent": "explode"}),
        Code::InvalidArgument,
    );
    // Backup storage.
    let bs = w.image_store();
    w.admin(
        "AttachBackupStorageToZone",
        json!({"backupStorageUuid": bs, "zoneUuid": zone}),
    );
    w.admin(
        "DetachBackupStorageFromZone",
        json!({"backupStorageUuid": bs, "zoneUuid": zone}),
    );
    w.admin(
        "AttachBackupStorageToZone",
        json!({"backupStorageUuid": bs, "zoneUuid": zone}),
    );
    w.admin("UpdateBackupStorage", json!({"uuid": bs, "name": "bs1"}));
    w.change_state("ChangeBackupStorageState", &bs, "enable");
    let q = w.admin(
        "QueryImageStoreBackupStorage",
        json!({"conditions": [{"name":"hostname","op":"=","value":"10.0.0.9"}]}),
    );
    assert_eq!(q["inventories"][0]["sshPort"], 22);
    assert!(q["inventories"][0].get("password").is_none());
    let q = w.admin(
        "QueryBackupStorage",
        json!({"conditions": [{"name":"attachedZoneUuids","op":"=","value": zone}]}),
    );
    assert!(q["inventories"][0].get("hostname").is_none());
    // password is mandatory.
    w.refuses(
        "AddImageStoreBackupStorage",
        json!({"name": "bs", "url": "/zstack_bs", "hostname": "10.0.0.9", "username": "root"}),
        Code::InvalidArgument,
    );
    // Offerings.
    let io = w.small_offering();
    w.admin(
        "UpdateInstanceOffering",
        json!({"uuid": io, "description": "d"}),
    );
    w.change_state("ChangeInstanceOfferingState", &io, "disable");
    assert_eq!(w.count_eq("QueryInstanceOffering", "cpuNum", "1"), 1);
    w.admin("DeleteInstanceOffering", json!({"uuid": io}));
    w.refuses(
        "CreateInstanceOffering",
        json!({"name": "x", "cpuNum": 0, "memorySize": 1}),
        Code::InvalidArgument,
    );
    let dof = w.created(
        "CreateDiskOffering",
        json!({"name": "d", "diskSize": 1073741824u64}),
    );
    w.admin("UpdateDiskOffering", json!({"uuid": dof, "name": "d1"}));
    w.change_state("ChangeDiskOfferingState", &dof, "disable");
    assert_eq!(w.count_eq("QueryDiskOffering", "state", "Disabled"), 1);
    w.admin("DeleteDiskOffering", json!({"uuid": dof}));
    w.refuses(
        "CreateDiskOffering",
        json!({"name": "d", "diskSize": 0}),
        Code::InvalidArgument,
    );
    // Images.
    let img = w.ttylinux(&bs);
    w.admin(
        "UpdateImage",
        json!({"uuid": img, "platform": "Linux", "system": "false"}),
    );
    w.change_state("ChangeImageState", &img, "disable");
    w.admin("DeleteImage", json!({"uuid": img}));
    w.admin("RecoverImage", json!({"imageUuid": img}));
    w.admin("DeleteImage", json!({"uuid": img}));
    assert_eq!(w.count_eq("QueryImage", "status", "Deleted"), 1);
    w.admin("ExpungeImage", json!({"imageUuid": img}));
    assert_eq!(w.count("QueryImage", json!([])), 0);
    w.refuses(
        "AddImage",
        json!({"name": "x", "url": "ftp://h/x", "backupStorageUuids": [bs]}),
        Code::InvalidArgument,
    );
    w.refuses("AddImage", json!({"name": "x", "url": "http://h/x", "mediaType": "Floppy", "backupStorageUuids": [bs]}), Code::InvalidArgument);
    // L2.
    let l2 = w.flat_l2(&zone);
    let vlan = w.created(
        "CreateL2VlanNetwork",
        json!({"zoneUuid": zone, "name": "v", "physicalInterface": "eth0", "vlan": 100}),
    );
    w.refuses(
        "CreateL2VlanNetwork",
        json!({"zoneUuid": zone, "name": "v", "physicalInterface": "eth0", "vlan": 4095}),
        Code::InvalidArgument,
    );
    w.admin(
        "AttachL2NetworkToCluster",
        json!({"l2NetworkUuid": l2, "clusterUuid": cluster}),
    );
    w.admin(
        "AttachL2NetworkToCluster",
        json!({"l2NetworkUuid": vlan, "clusterUuid": cluster}),
    );
    w.admin(
        "DetachL2NetworkFromCluster",
        json!({"l2NetworkUuid": vlan, "clusterUuid": cluster}),
    );
    w.admin("UpdateL2Network", json!({"uuid": vlan, "name": "v100"}));
    assert_eq!(w.count_eq("QueryL2VlanNetwork", "vlan", "100"), 1);
    assert_eq!(
        w.count_eq("QueryL2Network", "attachedClusterUuids", &cluster),
        1
    );
    let pool = w.vxlan_pool(&zone);
    w.admin(
        "CreateVniRange",
        json!({"l2NetworkUuid": pool, "name": "r", "startVni": 10, "endVni": 20}),
    );
    let spare = w.created(
        "CreateVniRange",
        json!({"l2NetworkUuid": pool, "name": "r2", "startVni": 30, "endVni": 30}),
    );
    w.admin("DeleteVniRange", json!({"uuid": spare}));
    assert_eq!(w.count("QueryVniRange", json!([])), 1);
    let m = w.admin(
        "AttachL2NetworkToCluster",
        json!({"l2NetworkUuid": pool, "clusterUuid": cluster,
               "systemTags": [format!("l2NetworkUuid::{pool}::clusterUuid::{cluster}::cidr::{{192.168.100.1/24}}")]}),
    );
    assert_eq!(
        m["inventory"]["attachedCidrs"][&cluster],
        json!(["192.168.100.0/24"])
    );
    let vx = w.vxlan(&pool);
    assert_eq!(w.count_eq("QueryL2VxlanNetwork", "vni", "15"), 1);
    assert_eq!(w.count("QueryL2VxlanNetworkPool", json!([])), 1);
    // L3.
    let l3 = w.flat_l3(&l2);
    w.admin(
        "UpdateL3Network",
        json!({"uuid": l3, "dnsDomain": "zstack.org"}),
    );
    w.change_state("ChangeL3NetworkState", &l3, "enable");
    let r1 = w.ip_range_r1(&l3);
    w.admin("UpdateIpRange", json!({"uuid": r1, "name": "range-1"}));
    // overlap.
    w.refuses("AddIpRange", json!({"l3NetworkUuid": l3, "name": "r2", "startIp": "192.168.1.15", "endIp": "192.168.1.30", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}), Code::InvalidArgument);
    let l3b = w.created(
        "CreateL3Network",
        json!({"l2NetworkUuid": vx, "name": "vx-l3"}),
    );
    w.created(
        "AddIpRangeByNetworkCidr",
        json!({"l3NetworkUuid": l3b, "name": "c", "networkCidr": "10.10.0.1/24"}),
    );
    w.admin(
        "AddDnsToL3Network",
        json!({"l3NetworkUuid": l3, "dns": "8.8.8.8"}),
    );
    w.admin(
        "AddDnsToL3Network",
        json!({"l3NetworkUuid": l3, "dns": "1.1.1.1"}),
    );
    w.admin(
        "RemoveDnsFromL3Network",
        json!({"l3NetworkUuid": l3, "dns": "1.1.1.1"}),
    );
    let q = w.admin(
        "QueryL3Network",
        json!({"conditions": [{"name":"ipRanges.startIp","op":"=","value":"192.168.1.10"}]}),
    );
    assert_eq!(q["inventories"][0]["dns"], json!(["8.8.8.8"]));
    assert_eq!(w.count_eq("QueryIpRange", "networkCidr", "10.10.0.0/24"), 1);
    w.admin("DeleteIpRange", json!({"uuid": r1}));
    // Tags, and the tag pseudo-fields of another query.
    let tag = w.flat_tag(&l3);
    assert_ne!(tag, l3, "the tag has its own uuid");
    w.rack_tag(&cluster);
    assert_eq!(w.count_eq("QuerySystemTag", "resourceUuid", &l3), 1);
    assert_eq!(
        w.count(
            "QueryUserTag",
            json!([{"name":"tag","op":"like","value":"rack%"}])
        ),
        1
    );
    assert_eq!(
        w.count_eq("QueryL3Network", "__systemTag__", "networkServices::Flat"),
        1
    );
    assert_eq!(w.count_eq("QueryCluster", "__userTag__", "rack-1"), 1);
    w.admin("DeleteTag", json!({"uuid": tag}));
    w.refuses(
        "CreateUserTag",
        json!({"resourceType": "ClusterVO", "resourceUuid": uuid(998), "tag": "x"}),
        Code::ResourceNotFound,
    );
    // Deletions and the zone cascade.
    w.admin("DeleteL3Network", json!({"uuid": l3b}));
    w.admin("DeleteL2Network", json!({"uuid": vlan}));
    w.admin("DeleteCluster", json!({"uuid": cluster}));
    w.admin("DeleteBackupStorage", json!({"uuid": bs}));
    w.admin("DeleteZone", json!({"uuid": zone}));
    for q in [
        "QueryCluster",
        "QueryPrimaryStorage",
        "QueryBackupStorage",
        "QueryL2Network",
        "QueryL3Network",
        "QueryIpRange",
        "QueryVniRange",
        "QueryUserTag",
    ] {
        assert_eq!(w.count(q, json!([])), 0, "{q} after DeleteZone");
    }
}

#[test]
fn normal_accounts_are_refused_infrastructure_calls() {
    let mut w = Harness::new();
    let zone = w.created("CreateZone", json!({"name": "z"}));
    let normal = other_account();
    for (name, body) in [
        (
            "CreateCluster",
            json!({"zoneUuid": zone, "name": "c", "hypervisorType": "KVM"}),
        ),
        (
            "AddLocalPrimaryStorage",
            json!({"zoneUuid": zone, "name": "l", "url": "/ps"}),
        ),
        (
            "AddImageStoreBackupStorage",
            json!({"name": "b", "url": "/bs", "hostname": "h", "username": "root", "password": "p"}),
        ),
        (
            "CreateInstanceOffering",
            json!({"name": "s", "cpuNum": 1, "memorySize": 1}),
        ),
        ("CreateDiskOffering", json!({"name": "s", "diskSize": 1})),
        (
            "CreateL2NoVlanNetwork",
            json!({"zoneUuid": zone, "name": "n", "physicalInterface": "eth0"}),
        ),
        (
            "CreateUserTag",
            json!({"resourceType": "ZoneVO", "resourceUuid": zone, "tag": "t"}),
        ),
    ] {
        let e = w.refused(&normal, name, body);
        assert_eq!(e.code, Code::PermissionDenied, "{name}");
    }
    // What a normal account may not see, it does not get from queries.
    w.created(
        "CreateCluster",
        json!({"zoneUuid": zone, "name": "c", "hypervisorType": "KVM"}),
    );
    let q = w
        .send(&normal, "QueryCluster", json!({"conditions": []}))
        .unwrap();
    assert_eq!(q["inventories"], json!([]));
}

#[test]
fn free_ip_and_ip_availability_through_the_wire() {
    let mut w = Harness::new();
    let zone = w.created("CreateZone", json!({"name": "z"}));
    let l2 = w.created(
        "CreateL2NoVlanNetwork",
        json!({"zoneUuid": zone, "name": "n", "physicalInterface": "eth0"}),
    );
    let l3 = w.created(
        "CreateL3Network",
        json!({"l2NetworkUuid": l2, "name": "flat"}),
    );
    let r1 = w.created(
        "AddIpRange",
        json!({"l3NetworkUuid": l3, "name": "r1", "startIp": "192.168.1.10", "endIp": "192.168.1.13", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}),
    );
    let r2 = w.created(
        "AddIpRange",
        json!({"l3NetworkUuid": l3, "name": "r2", "startIp": "192.168.1.100", "endIp": "192.168.1.101", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}),
    );
    // 192.168.1.11 is taken (an internal allocation, as a VM NIC would do).
    let alloc = crate::IntoCommand::command(
        crate::families::l3::L3Op::AllocateIp {
            l3_network_uuid: l3.clone(),
            used_ip_uuid: uuid(900),
            required_ip: Some("192.168.1.11".into()),
            used_for: "VmNic".into(),
            vm_nic_uuid: None,
        },
        Caller::admin(),
    );
    crate::apply(&mut w.t, &ctx(900), alloc).unwrap();
    let ips = |m: &Map<String, Value>| -> Vec<String> {
        m["inventories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["ip"].as_str().unwrap().to_string())
            .collect()
    };
    let all = w.admin("GetFreeIp", json!({"l3NetworkUuid": l3}));
    assert_eq!(
        ips(&all),
        [
            "192.168.1.10",
            "192.168.1.12",
            "192.168.1.13",
            "192.168.1.100",
            "192.168.1.101"
        ]
    );
    assert_eq!(
        all["inventories"][0],
        json!({"ipRangeUuid": r1, "ip": "192.168.1.10", "netmask": "255.255.255.0", "gateway": "192.168.1.1"})
    );
    let page = w.admin(
        "GetFreeIp",
        json!({"l3NetworkUuid": l3, "start": "192.168.1.11", "limit": 2}),
    );
    assert_eq!(ips(&page), ["192.168.1.12", "192.168.1.13"]);
    let by_range = w.admin("GetFreeIp", json!({"ipRangeUuid": r2, "limit": "10"}));
    assert_eq!(ips(&by_range), ["192.168.1.100", "192.168.1.101"]);
    let check = |w: &mut Harness, ip: &str, extra: Value| {
        let mut body = json!({"l3NetworkUuid": l3, "ip": ip});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        w.admin("CheckIpAvailability", body)
    };
    assert_eq!(check(&mut w, "192.168.1.12", json!({}))["available"], true);
    let used = check(&mut w, "192.168.1.11", json!({}));
    assert_eq!(used["available"], false);
    assert_eq!(used["reason"], "ip[192.168.1.11] is in use");
    assert_eq!(check(&mut w, "192.168.1.50", json!({}))["available"], false);
    assert_eq!(
        check(&mut w, "192.168.1.50", json!({"ipRangeCheck": false}))["available"],
        true
    );
    // Refusals, each with its exact code and no state change.
    for (name, body, code) in [
        ("GetFreeIp", json!({}), Code::InvalidArgument),
        (
            "GetFreeIp",
            json!({"l3NetworkUuid": l3, "limit": 0}),
            Code::InvalidArgument,
        ),
        (
            "GetFreeIp",
            json!({"l3NetworkUuid": l3, "start": "192.168.1"}),
            Code::InvalidArgument,
        ),
        (
            "GetFreeIp",
            json!({"l3NetworkUuid": uuid(777)}),
            Code::ResourceNotFound,
        ),
        (
            "GetFreeIp",
            json!({"l3NetworkUuid": uuid(777), "ipRangeUuid": r1}),
            Code::InvalidArgument,
        ),
        (
            "GetFreeIp",
            json!({"l3NetworkUuid": l3, "ipVersion": "6"}),
            Code::NotSupported,
        ),
        (
            "CheckIpAvailability",
            json!({"l3NetworkUuid": l3, "ip": "300.1.1.1"}),
            Code::InvalidArgument,
        ),
        (
            "CheckIpAvailability",
            json!({"l3NetworkUuid": l3}),
            Code::InvalidArgument,
        ),
        (
            "CheckIpAvailability",
            json!({"l3NetworkUuid": uuid(777), "ip": "192.168.1.12"}),
            Code::ResourceNotFound,
        ),
        (
            "CheckIpAvailability",
            json!({"l3NetworkUuid": l3, "ip": "192.168.1.12", "arpCheck": true}),
            Code::NotSupported,
        ),
    ] {
        assert_eq!(w.admin_refused(name, body.clone()), code, "{name} {body}");
    }
    // Another account's private L3 is not readable.
    let normal = other_account();
    for (name, body) in [
        ("GetFreeIp", json!({"l3NetworkUuid": l3})),
        (
            "CheckIpAvailability",
            json!({"l3NetworkUuid": l3, "ip": "192.168.1.12"}),
        ),
    ] {
        let e = w.send(&normal, name, body).expect_err(name);
        assert_eq!(e.code, Code::PermissionDenied, "{name}");
    }
}

mod determinism {
    //! Random sequences of infrastructure commands: two fresh state machines end byte-identical,
    //! and every refused command leaves the state exactly as it found it (no partial writes,
    //! even without the node's write rollback).

    use proptest::prelude::*;

    use crate::families::backup_storage::BackupStorageOp;
    use crate::families::cluster::ClusterOp;
    use crate::families::image::ImageOp;
    use crate::families::l2::L2Common;
    use crate::families::l2::L2Op;
    use crate::families::l3::L3Op;
    use crate::families::l3::RangeSpec;
    use crate::families::offering::OfferingOp;
    use crate::families::primary_storage::PrimaryStorageOp;
    use crate::families::primary_storage::PsType;
    use crate::families::tag::TagOp;
    use crate::families::zone::ZoneOp;
    use crate::testing::ctx;
    use crate::testing::MemTxn;
    use crate::Caller;
    use crate::Command;
    use crate::IntoCommand;
    use crate::Response;

    fn u(kind: u32, i: u32) -> String {
        format!("{:08x}{:024x}", kind, i)
    }

    fn command(op: u8, a: u32, b: u32, c: u32) -> Command {
        let admin = Caller::admin();
        let caller = if c == 3 {
            Caller {
                account_uuid: "e".repeat(32),
                user_uuid: "e".repeat(32),
                admin: false,
            }
        } else {
            admin
        };
        let (z, cl, ps, bs, img, l2, l3) = (1, 2, 3, 4, 5, 6, 7);
        let l2c = |i: u32| L2Common {
            uuid: u(l2, i),
            name: format!("l2-{i}"),
            description: None,
            zone_uuid: Some(u(z, b)),
            physical_interface: Some(format!("eth{c}")),
            v_switch_type: None,
        };
        macro_rules! cmd {
            ($variant:ident, $op:expr) => {
                $op.command(caller)
            };
        }
        // Ops 24.. repeat the creating and attaching ones, so that sequences build real topologies.
        const MORE: [u8; 16] = [0, 2, 4, 5, 8, 9, 12, 14, 16, 18, 19, 20, 20, 5, 16, 19];
        let op = if op >= 24 {
            MORE[(op as usize - 24) % MORE.len()]
        } else {
            op
        };
        // Deletions only one time in four, else the create they undo.
        let op = match (op, c) {
            (1 | 3 | 7 | 10 | 13 | 17 | 23, 1..) => op - 1,
            _ => op,
        };
        match op {
            0 => ZoneOp::Create {
                uuid: u(z, a),
                name: format!("z{a}"),
                description: None,
                is_default: b == 0,
            }
            .command(caller),
            1 => ZoneOp::Delete { uuid: u(z, a) }.command(caller),
            2 => {
                let tagged_by = caller.clone();
                let create = cmd!(
                    Cluster,
                    ClusterOp::Create {
                        uuid: u(cl, a),
                        zone_uuid: u(z, b),
                        name: format!("c{a}"),
                        description: None,
                        hypervisor_type: if c == 2 { "Xen".into() } else { "KVM".into() },
                        cluster_type: None,
                        architecture: None,
                    }
                );
                // Half the creates carry tags (a create call's systemTags/userTags).
                if a == 1 {
                    crate::families::tag::TagOp::Tagged {
                        command: Box::new(create),
                        resource_type: "ClusterVO".into(),
                        tags: vec![
                            (true, "host::reservedMemory::1G".into()),
                            (false, "rack".into()),
                        ],
                    }
                    .command(tagged_by)
                } else {
                    create
                }
            }
            3 => cmd!(Cluster, ClusterOp::Delete { uuid: u(cl, a) }),
            4 => cmd!(
                PrimaryStorage,
                PrimaryStorageOp::Add {
                    uuid: u(ps, a),
                    ps_type: [PsType::LocalStorage, PsType::Nfs, PsType::SharedMountPoint]
                        [c as usize % 3],
                    zone_uuid: u(z, b),
                    name: "ps".into(),
                    url: if c % 3 == 1 {
                        format!("h:/p{a}")
                    } else {
                        format!("/p{}", a % 2)
                    },
                    description: None,
                }
            ),
            5 => cmd!(
                PrimaryStorage,
                PrimaryStorageOp::Attach {
                    uuid: u(ps, a),
                    cluster_uuid: u(cl, b),
                }
            ),
            6 => cmd!(
                PrimaryStorage,
                PrimaryStorageOp::Detach {
                    uuid: u(ps, a),
                    cluster_uuid: u(cl, b),
                }
            ),
            7 => cmd!(PrimaryStorage, PrimaryStorageOp::Delete { uuid: u(ps, a) }),
            8 => cmd!(
                BackupStorage,
                BackupStorageOp::AddImageStore {
                    uuid: u(bs, a),
                    name: "bs".into(),
                    description: None,
                    url: "/bs".into(),
                    hostname: format!("10.0.0.{b}"),
                    username: "root".into(),
                    // Sealed once: both runs must see the very same commands.
                    password: {
                        static PW: std::sync::OnceLock<crate::secret::Sealed> =
                            std::sync::OnceLock::new();
                        PW.get_or_init(|| crate::testing::sealed("p")).clone()
                    },
                    ssh_port: i64::from(c) * 30_000,
                }
            ),
            9 => cmd!(
                BackupStorage,
                BackupStorageOp::AttachToZone {
                    uuid: u(bs, a),
                    zone_uuid: u(z, b),
                }
            ),
            10 => cmd!(BackupStorage, BackupStorageOp::Delete { uuid: u(bs, a) }),
            11 => cmd!(
                Offering,
                OfferingOp::CreateInstance {
                    uuid: u(8, a),
                    name: "o".into(),
                    description: None,
                    cpu_num: i64::from(b),
                    memory_size: i64::from(c) << 20,
                    reserved_memory_size: None,
                    allocator_strategy: None,
                    sort_key: None,
                    offering_type: None,
                }
            ),
            12 => cmd!(
                Image,
                ImageOp::Add {
                    uuid: u(img, a),
                    name: "i".into(),
                    description: None,
                    url: "http://h/i.qcow2".into(),
                    media_type: None,
                    guest_os_type: None,
                    format: None,
                    platform: None,
                    architecture: None,
                    system: false,
                    virtio: None,
                    backup_storage_uuids: vec![u(bs, b)],
                }
            ),
            13 => cmd!(
                Image,
                ImageOp::Delete {
                    uuid: u(img, a),
                    backup_storage_uuids: vec![],
                }
            ),
            14 => cmd!(L2, L2Op::CreateNoVlan(l2c(a))),
            15 => cmd!(
                L2,
                L2Op::CreateVlan {
                    common: l2c(a),
                    vlan: i64::from(b) * 2000,
                }
            ),
            16 => cmd!(
                L2,
                L2Op::Attach {
                    uuid: u(l2, a),
                    cluster_uuid: u(cl, b),
                    vtep_cidr: None,
                }
            ),
            17 => cmd!(L2, L2Op::Delete { uuid: u(l2, a) }),
            18 => cmd!(
                L3,
                L3Op::Create {
                    uuid: u(l3, a),
                    l2_network_uuid: u(l2, b),
                    name: "l3".into(),
                    description: None,
                    l3_type: None,
                    category: if c == 2 { Some("System".into()) } else { None },
                    ip_version: None,
                    system: None,
                    dns_domain: None,
                    enable_ipam: None,
                }
            ),
            19 => cmd!(
                L3,
                L3Op::AddIpRange {
                    uuid: u(9, a * 4 + b),
                    l3_network_uuid: u(l3, a),
                    name: "r".into(),
                    description: None,
                    spec: RangeSpec::Cidr {
                        cidr: format!("10.{b}.0.0/{}", 28 + c),
                        gateway: None,
                    },
                    ip_range_type: None,
                }
            ),
            20 => cmd!(
                L3,
                L3Op::AllocateIp {
                    l3_network_uuid: u(l3, a),
                    used_ip_uuid: u(10, b * 4 + c),
                    required_ip: (c == 1).then(|| format!("10.{b}.0.3")),
                    used_for: "VmNic".into(),
                    vm_nic_uuid: None,
                }
            ),
            21 => cmd!(
                L3,
                L3Op::ReleaseIp {
                    l3_network_uuid: u(l3, a),
                    ip: format!("10.{b}.0.{}", c + 2),
                }
            ),
            22 => cmd!(
                Tag,
                TagOp::Create {
                    uuid: u(11, a * 4 + b),
                    system: c.is_multiple_of(2),
                    resource_type: ["ZoneVO", "ClusterVO", "L3NetworkVO", "ImageVO"][b as usize]
                        .into(),
                    resource_uuid: [u(z, a), u(cl, a), u(l3, a), u(img, a)][b as usize].clone(),
                    tag: format!("t{c}"),
                }
            ),
            _ => cmd!(L3, L3Op::Delete { uuid: u(l3, a) }),
        }
    }

    fn run(ops: &[(u8, u32, u32, u32)]) -> (MemTxn, Vec<Response>) {
        let mut t = MemTxn::default();
        let mut out = Vec::new();
        for (i, (op, a, b, c)) in ops.iter().enumerate() {
            let before = t.tables.clone();
            let r = crate::apply(&mut t, &ctx(i as u64 + 1), command(*op, *a, *b, *c)).unwrap();
            if !r.keeps_writes() {
                assert_eq!(t.tables, before, "refused op {op} wrote state: {r:?}");
            }
            out.push(r);
        }
        (t, out)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn same_commands_same_state(ops in prop::collection::vec((0u8..40, 0u32..2, 0u32..2, 0u32..4), 1..80)) {
            let (t1, r1) = run(&ops);
            let (t2, r2) = run(&ops);
            prop_assert_eq!(r1, r2);
            prop_assert!(t1.tables == t2.tables);
        }
    }
}
