//! A clone's root volume through the real gRPC service on libvirt's test driver: copied from
//! the source's file onto another primary storage of the host while the source is quiescent,
//! refused while a domain uses the source; the copy a standalone qcow2 of the source's size.

mod common;

use std::process::Command;

use common::client;
use common::header;
use common::serve;
use common::HOST;
use common::TERM;
use proto::agent::v1 as pb;
use tonic::Code;

const VM: &str = "0123456789abcdef0123456789abcdef";
const SOURCE: &str = "aaaabbbbccccddddeeeeffff00001111";
const CLONE: &str = "aaaabbbbccccddddeeeeffff00003333";
const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread")]
async fn a_quiescent_volume_is_copied_onto_another_storage() {
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
    for ps in ["ps1", "ps2"] {
        c.prepare_primary_storage(pb::PreparePrimaryStorageRequest {
            header: header(TERM),
            primary_storage_uuid: ps.into(),
            r#type: "LocalStorage".into(),
            url: d.path().join(ps).to_str().unwrap().into(),
            mount_point: String::new(),
        })
        .await
        .unwrap();
    }
    let source = c
        .create_volume(pb::CreateVolumeRequest {
            header: header(TERM),
            primary_storage_uuid: "ps1".into(),
            volume_uuid: SOURCE.into(),
            backing_path: String::new(),
            size_bytes: 48 * MIB,
        })
        .await
        .unwrap()
        .into_inner()
        .file
        .unwrap();
    let clone = pb::CloneVolumeRequest {
        header: header(TERM),
        source_primary_storage_uuid: "ps1".into(),
        source_volume_uuid: SOURCE.into(),
        primary_storage_uuid: "ps2".into(),
        volume_uuid: CLONE.into(),
    };

    // While a domain runs on the source, no copy is made.
    c.start_vm(pb::StartVmRequest {
        header: header(TERM),
        vm: Some(pb::VmSpec {
            vm_uuid: VM.into(),
            name: "vm".into(),
            cpu_num: 1,
            memory_bytes: 256 * MIB,
            disks: vec![pb::DiskSpec {
                volume_uuid: SOURCE.into(),
                path: source.path.clone(),
                format: "qcow2".into(),
                device_id: 0,
            }],
            nics: Vec::new(),
            console_password: String::new(),
            boot_order: vec!["HardDisk".into()],
            iso_path: String::new(),
        }),
    })
    .await
    .unwrap();
    let e = c.clone_volume(clone.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let copy_path = d.path().join("ps2/volumes").join(format!("{CLONE}.qcow2"));
    assert!(!copy_path.exists());

    // Stopped: copied; a repeat answers the same file.
    c.stop_vm(pb::StopVmRequest {
        header: header(TERM),
        vm_uuid: VM.into(),
        r#type: "cold".into(),
        timeout_seconds: 0,
    })
    .await
    .unwrap();
    for _ in 0..2 {
        let f = c
            .clone_volume(clone.clone())
            .await
            .unwrap()
            .into_inner()
            .file
            .unwrap();
        assert_eq!(f.path, copy_path.to_str().unwrap());
        assert_eq!(f.virtual_size, 48 * MIB);
    }
    let out = Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(&copy_path)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["virtual-size"], 48 * MIB);
    assert_eq!(v["format"], "qcow2");
    assert!(v.get("backing-filename").is_none(), "{v}");
    // A storage the host never prepared is refused.
    let mut bad = clone.clone();
    bad.primary_storage_uuid = "ps9".into();
    let e = c.clone_volume(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
}
