//! A NIC's life on one host through the real gRPC service, in process, over mutual TLS, on
//! libvirt's test driver: plugged into a running domain and out again by its MAC; after every
//! step the domain's live XML (its interfaces' MACs) is what the calls said, and repeats
//! answer the same (the leader retries a step whose answer it lost).

mod common;

use common::client;
use common::header;
use common::serve;
use common::HOST;
use common::TERM;
use proto::agent::v1 as pb;
use tonic::Code;

const VM: &str = "0123456789abcdef0123456789abcdef";
const ROOT: &str = "aaaabbbbccccddddeeeeffff00001111";
const MIB: u64 = 1 << 20;
const FIRST: &str = "fa:01:23:45:67:89";
const SECOND: &str = "fa:aa:bb:cc:dd:01";

fn nic(mac: &str, device_id: u32) -> pb::NicSpec {
    pb::NicSpec {
        mac: mac.into(),
        ip: "192.168.1.11".into(),
        l3_network_uuid: "l3".into(),
        bridge: String::new(),
        device_id,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nic_is_plugged_into_a_running_domain_and_out_again() {
    virt::error::clear_error_callback();
    let d = tempfile::tempdir().unwrap();
    let host_xml = d.path().join("host.xml");
    std::fs::write(&host_xml, agent::libvirt::test_host_xml(1, 4, 2, 8192)).unwrap();
    let (addr, ca) = serve(d.path(), &format!("test://{}", host_xml.display())).await;
    let mut c = client(addr, &ca, 1);
    c.attach(pb::AttachRequest {
        header: Some(pb::Header {
            host_uuid: String::new(),
            ..header(TERM).unwrap()
        }),
        host_uuid: HOST.into(),
    })
    .await
    .unwrap();
    let ps = d.path().join("ps");
    c.prepare_primary_storage(pb::PreparePrimaryStorageRequest {
        header: header(TERM),
        primary_storage_uuid: "ps1".into(),
        r#type: "LocalStorage".into(),
        url: ps.to_str().unwrap().into(),
        mount_point: String::new(),
    })
    .await
    .unwrap();
    let root = c
        .create_volume(pb::CreateVolumeRequest {
            header: header(TERM),
            primary_storage_uuid: "ps1".into(),
            volume_uuid: ROOT.into(),
            backing_path: String::new(),
            size_bytes: 32 * MIB,
        })
        .await
        .unwrap()
        .into_inner()
        .file
        .unwrap();
    let attach = |mac: &str, device_id: u32| pb::AttachNicRequest {
        header: header(TERM),
        vm_uuid: VM.into(),
        nic: Some(nic(mac, device_id)),
    };

    // Plugging into a VM the host does not run is NOT_FOUND; a detach there has nothing to do.
    let e = c.attach_nic(attach(SECOND, 1)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let detach = |mac: &str| pb::DetachNicRequest {
        header: header(TERM),
        vm_uuid: VM.into(),
        mac: mac.into(),
    };
    let r = c.detach_nic(detach(SECOND)).await.unwrap().into_inner();
    assert_eq!(r.domain, None);

    let started = c
        .start_vm(pb::StartVmRequest {
            header: header(TERM),
            vm: Some(pb::VmSpec {
                vm_uuid: VM.into(),
                name: "vm".into(),
                cpu_num: 1,
                memory_bytes: 256 * MIB,
                disks: vec![pb::DiskSpec {
                    volume_uuid: ROOT.into(),
                    path: root.path.clone(),
                    format: "qcow2".into(),
                    device_id: 0,
                }],
                nics: vec![nic(FIRST, 0)],
                console_password: String::new(),
                boot_order: vec!["HardDisk".into()],
                iso_path: String::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    assert_eq!(started.nic_macs, vec![FIRST.to_string()]);

    // A bad MAC is refused before libvirt sees it, and the domain keeps its interfaces.
    let e = c
        .attach_nic(attach("01:00:5e:00:00:01", 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Plugged in (the MAC in upper case names the same interface); a repeat is the same.
    for mac in [SECOND.to_string(), SECOND.to_ascii_uppercase()] {
        let dom = c
            .attach_nic(attach(&mac, 1))
            .await
            .unwrap()
            .into_inner()
            .domain
            .unwrap();
        assert_eq!(dom.state, "Running");
        assert_eq!(dom.nic_macs, vec![FIRST.to_string(), SECOND.to_string()]);
        assert_eq!(dom.disk_files, vec![root.path.clone()]);
    }
    let listed = c
        .list_domains(pb::ListDomainsRequest {
            header: header(TERM),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.domains[0].nic_macs,
        vec![FIRST.to_string(), SECOND.to_string()]
    );

    // Unplugged: the domain keeps running with its first NIC only; a repeat is the same.
    for _ in 0..2 {
        let dom = c
            .detach_nic(detach(SECOND))
            .await
            .unwrap()
            .into_inner()
            .domain
            .unwrap();
        assert_eq!(dom.state, "Running");
        assert_eq!(dom.nic_macs, vec![FIRST.to_string()]);
    }

    // A stale leader cannot plug anything.
    let mut stale = attach(SECOND, 1);
    stale.header = header(TERM - 1);
    let e = c.attach_nic(stale).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
}
