//! A data volume's life on one host through the real gRPC service, in process, over mutual
//! TLS, on libvirt's test driver: a blank qcow2 made on a LocalStorage primary storage, plugged
//! into a running domain and out again, grown live and offline, deleted; after every step the
//! file (`qemu-img info`) and the domain's XML (its disk files) are what the calls said.

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
const ROOT: &str = "aaaabbbbccccddddeeeeffff00001111";
const DATA: &str = "aaaabbbbccccddddeeeeffff00002222";
const MIB: u64 = 1 << 20;

/// (virtual size, backing file) of a file.
fn qemu_info(path: &str) -> (u64, Option<String>) {
    let out = Command::new("qemu-img")
        .args(["info", "-U", "--output=json", path])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["virtual-size"].as_u64().unwrap(),
        v["backing-filename"].as_str().map(str::to_string),
    )
}

fn disk(path: &str, device_id: u32) -> pb::DiskSpec {
    pb::DiskSpec {
        volume_uuid: DATA.into(),
        path: path.into(),
        format: "qcow2".into(),
        device_id,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_volume_is_made_plugged_grown_unplugged_and_deleted() {
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
    let blank = |uuid: &str, size_bytes: u64| pb::CreateVolumeRequest {
        header: header(TERM),
        primary_storage_uuid: "ps1".into(),
        volume_uuid: uuid.into(),
        backing_path: String::new(),
        size_bytes,
    };
    let root = c
        .create_volume(blank(ROOT, 32 * MIB))
        .await
        .unwrap()
        .into_inner()
        .file
        .unwrap();
    let data = c
        .create_volume(blank(DATA, 64 * MIB))
        .await
        .unwrap()
        .into_inner()
        .file
        .unwrap();
    assert_eq!(qemu_info(&data.path), (64 * MIB, None));

    // Plugging into a VM the host does not run is NOT_FOUND.
    let attach = |device_id: u32| pb::AttachVolumeRequest {
        header: header(TERM),
        vm_uuid: VM.into(),
        disk: Some(disk(&data.path, device_id)),
    };
    let e = c.attach_volume(attach(1)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    c.start_vm(pb::StartVmRequest {
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
            nics: Vec::new(),
            console_password: String::new(),
            boot_order: vec!["HardDisk".into()],
            iso_path: String::new(),
        }),
    })
    .await
    .unwrap();

    // Plugged in: the running domain has the disk; a repeat answers the same.
    for _ in 0..2 {
        let dom = c
            .attach_volume(attach(1))
            .await
            .unwrap()
            .into_inner()
            .domain
            .unwrap();
        assert_eq!(dom.state, "Running");
        assert_eq!(dom.disk_files, vec![root.path.clone(), data.path.clone()]);
    }
    // Deleting a plugged volume is refused, and the file stays.
    let del = pb::DeleteVolumeRequest {
        header: header(TERM),
        primary_storage_uuid: "ps1".into(),
        volume_uuid: DATA.into(),
    };
    let e = c.delete_volume(del.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    // Offline resize of a file a domain uses is refused; through the domain it grows.
    let resize = |size_bytes: u64, vm: &str| pb::ResizeVolumeRequest {
        header: header(TERM),
        primary_storage_uuid: "ps1".into(),
        volume_uuid: DATA.into(),
        size_bytes,
        vm_uuid: vm.into(),
    };
    let e = c.resize_volume(resize(128 * MIB, "")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert_eq!(qemu_info(&data.path).0, 64 * MIB);
    let f = c
        .resize_volume(resize(128 * MIB, VM))
        .await
        .unwrap()
        .into_inner()
        .file
        .unwrap();
    assert_eq!(f.virtual_size, 128 * MIB);
    assert_eq!(qemu_info(&data.path), (128 * MIB, None));
    // Never shrunk: a smaller size answers the file as it is.
    let f = c
        .resize_volume(resize(64 * MIB, VM))
        .await
        .unwrap()
        .into_inner()
        .file
        .unwrap();
    assert_eq!(f.virtual_size, 128 * MIB);

    // Unplugged: the domain keeps running with its root disk only; a repeat is the same.
    let detach = pb::DetachVolumeRequest {
        header: header(TERM),
        vm_uuid: VM.into(),
        volume_uuid: DATA.into(),
        path: data.path.clone(),
    };
    for _ in 0..2 {
        let dom = c
            .detach_volume(detach.clone())
            .await
            .unwrap()
            .into_inner()
            .domain
            .unwrap();
        assert_eq!(dom.state, "Running");
        assert_eq!(dom.disk_files, vec![root.path.clone()]);
    }
    // Offline now: resized as a file, then deleted.
    let f = c
        .resize_volume(resize(192 * MIB, ""))
        .await
        .unwrap()
        .into_inner()
        .file
        .unwrap();
    assert_eq!(f.virtual_size, 192 * MIB);
    assert_eq!(qemu_info(&data.path), (192 * MIB, None));
    assert!(
        c.delete_volume(del.clone())
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    assert!(!std::path::Path::new(&data.path).exists());
    // A deleted file cannot be plugged in.
    let e = c.attach_volume(attach(1)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // A stale term is refused before anything happens.
    let stale = pb::DetachVolumeRequest {
        header: header(TERM - 1),
        ..detach
    };
    let e = c.detach_volume(stale).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
}
