//! A VM's whole life on one host through the real gRPC service, in process, over mutual TLS,
//! on libvirt's test driver: its root volume on a LocalStorage primary storage (a real qcow2
//! overlay of a cached image), start, pause, resume, reboot, stop, destroy, the volume's
//! deletion, and the refusals (stale term, bad spec, volume in use).

mod common;

use std::path::Path;
use std::process::Command;

use common::client;
use common::header;
use common::serve;
use common::HOST;
use common::TERM;
use proto::agent::v1 as pb;
use proto::agent::v1::agent_client::AgentClient;
use tonic::transport::Channel;
use tonic::Code;

const VM: &str = "0123456789abcdef0123456789abcdef";
const ROOT: &str = "aaaabbbbccccddddeeeeffff00001111";
const IMAGE: &str = "1111222233334444555566667777888a";

fn vm_req(term: u64) -> pb::VmRequest {
    pb::VmRequest {
        header: header(term),
        vm_uuid: VM.into(),
    }
}

fn spec(root_path: &str) -> pb::VmSpec {
    pb::VmSpec {
        vm_uuid: VM.into(),
        name: "web <1> & 'two'".into(),
        cpu_num: 2,
        memory_bytes: 512 << 20,
        disks: vec![pb::DiskSpec {
            volume_uuid: ROOT.into(),
            path: root_path.into(),
            format: "qcow2".into(),
            device_id: 0,
        }],
        nics: vec![pb::NicSpec {
            mac: "52:54:00:12:34:56".into(),
            ip: "10.0.0.10".into(),
            l3_network_uuid: "l3".into(),
            bridge: "br_eth0".into(),
            device_id: 0,
        }],
        console_password: "s3cret".into(),
        boot_order: vec!["HardDisk".into()],
        iso_path: String::new(),
    }
}

async fn domains(c: &mut AgentClient<Channel>) -> (u64, Vec<pb::Domain>) {
    let r = c
        .list_domains(pb::ListDomainsRequest {
            header: header(TERM),
        })
        .await
        .unwrap()
        .into_inner();
    (r.domains_version, r.domains)
}

async fn ping_version(c: &mut AgentClient<Channel>, known: u64) -> (u64, bool) {
    let p = c
        .ping(pb::PingRequest {
            header: header(TERM),
            known_domains_version: known,
        })
        .await
        .unwrap()
        .into_inner();
    (p.domains_version, p.domains_unchanged)
}

fn only_vm(list: &[pb::Domain]) -> &pb::Domain {
    assert_eq!(list.len(), 1, "{list:?}");
    &list[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_lives_its_whole_life_on_the_test_driver() {
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

    // A LocalStorage primary storage, and an image cached into it from a file.
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
    let src = d.path().join("src.qcow2");
    assert!(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&src)
        .arg("32M")
        .status()
        .unwrap()
        .success());
    let image = c
        .cache_image(pb::CacheImageRequest {
            header: header(TERM),
            primary_storage_uuid: "ps1".into(),
            image_uuid: IMAGE.into(),
            source_url: format!("file://{}", src.display()),
            md5: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();

    // The root volume: a thin overlay of the cached image, as large as the image.
    let create = |size_bytes: u64| pb::CreateVolumeRequest {
        header: header(TERM),
        primary_storage_uuid: "ps1".into(),
        volume_uuid: ROOT.into(),
        backing_path: image.path.clone(),
        size_bytes,
    };
    let root = c
        .create_volume(create(0))
        .await
        .unwrap()
        .into_inner()
        .file
        .unwrap();
    let root_path = ps.join("volumes").join(format!("{ROOT}.qcow2"));
    assert_eq!(root.path, root_path.to_str().unwrap());
    assert_eq!(
        (root.format.as_str(), root.virtual_size),
        ("qcow2", 32 << 20)
    );
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&root_path)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["backing-filename"], image.path.as_str());
    assert_eq!(
        c.create_volume(create(0))
            .await
            .unwrap()
            .into_inner()
            .file
            .unwrap(),
        root,
        "a repeated create answers the same file"
    );
    let e = c
        .create_volume(pb::CreateVolumeRequest {
            primary_storage_uuid: "ps-unknown".into(),
            ..create(0)
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("not prepared on this host"), "{e:?}");
    let e = c
        .create_volume(pb::CreateVolumeRequest {
            volume_uuid: "../../etc/passwd".into(),
            ..create(0)
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    let (v0, before) = domains(&mut c).await;
    assert!(before.is_empty(), "{before:?}");
    let (pv0, _) = ping_version(&mut c, 0).await;

    // A bad spec is refused before libvirt sees it: nothing gets defined.
    for (bad, want) in [
        (
            pb::VmSpec {
                memory_bytes: 1 << 20,
                ..spec(&root.path)
            },
            "minimum",
        ),
        (
            pb::VmSpec {
                disks: vec![],
                ..spec(&root.path)
            },
            "no disk",
        ),
        (
            pb::VmSpec {
                nics: vec![pb::NicSpec {
                    mac: "zz:54:00:12:34:56".into(),
                    ..Default::default()
                }],
                ..spec(&root.path)
            },
            "MAC",
        ),
    ] {
        let e = c
            .start_vm(pb::StartVmRequest {
                header: header(TERM),
                vm: Some(bad),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(want), "{e:?} lacks {want}");
    }
    let missing = ps.join("volumes/0000000000000000000000000000dead.qcow2");
    let e = c
        .start_vm(pb::StartVmRequest {
            header: header(TERM),
            vm: Some(spec(missing.to_str().unwrap())),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("not on this host"), "{e:?}");
    let (v, after) = domains(&mut c).await;
    assert!(after.is_empty(), "refused starts defined {after:?}");
    assert_eq!(v, v0);

    // Start: running, with the spec's size, named by the VM.
    let start = || pb::StartVmRequest {
        header: header(TERM),
        vm: Some(spec(&root.path)),
    };
    let started = c
        .start_vm(start())
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    assert_eq!(started.name, VM);
    assert_eq!(started.uuid, "01234567-89ab-cdef-0123-456789abcdef");
    assert_eq!(started.state, "Running");
    assert_eq!(started.vcpus, 2);
    assert_eq!(started.memory_bytes, 512 << 20);
    // The test driver never assigns an autoport (its live XML keeps port='-1').
    assert_eq!(started.vnc_port, 0);
    let (v1, list) = domains(&mut c).await;
    assert_eq!(only_vm(&list), &started);
    assert_ne!(v1, v0, "a started VM moves the domain version");
    let (pv1, unchanged) = ping_version(&mut c, pv0).await;
    assert!(!unchanged && pv1 != pv0, "the next ping sees the start");

    // A repeated start answers the running domain as it is.
    let again = c
        .start_vm(start())
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    assert_eq!(again, started);
    assert_eq!(domains(&mut c).await.0, v1);

    // The volume is in use now.
    let delete = || pb::DeleteVolumeRequest {
        header: header(TERM),
        primary_storage_uuid: "ps1".into(),
        volume_uuid: ROOT.into(),
    };
    let e = c.delete_volume(delete()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("in use by domain"), "{e:?}");
    assert!(root_path.is_file());

    // Pause, pause again, a refused reboot while paused, resume, resume again, reboot.
    let state = |r: pb::VmStateReply| r.domain.map(|d| d.state).unwrap_or_default();
    assert_eq!(
        state(c.pause_vm(vm_req(TERM)).await.unwrap().into_inner()),
        "Paused"
    );
    assert_eq!(only_vm(&domains(&mut c).await.1).state, "Paused");
    assert_eq!(
        state(c.pause_vm(vm_req(TERM)).await.unwrap().into_inner()),
        "Paused"
    );
    let e = c.reboot_vm(vm_req(TERM)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("resume it"), "{e:?}");
    assert_eq!(
        state(c.resume_vm(vm_req(TERM)).await.unwrap().into_inner()),
        "Running"
    );
    assert_eq!(only_vm(&domains(&mut c).await.1).state, "Running");
    assert_eq!(
        state(c.resume_vm(vm_req(TERM)).await.unwrap().into_inner()),
        "Running"
    );
    assert_eq!(
        state(c.reboot_vm(vm_req(TERM)).await.unwrap().into_inner()),
        "Running"
    );
    assert_eq!(only_vm(&domains(&mut c).await.1).state, "Running");

    // A deposed leader cannot stop it.
    let e = c
        .stop_vm(pb::StopVmRequest {
            header: header(TERM - 1),
            vm_uuid: VM.into(),
            r#type: "cold".into(),
            timeout_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().starts_with("stale leader term"), "{e:?}");
    assert_eq!(only_vm(&domains(&mut c).await.1).state, "Running");
    let e = c.destroy_vm(vm_req(TERM - 1)).await.unwrap_err();
    assert!(e.message().starts_with("stale leader term"), "{e:?}");
    let e = c
        .stop_vm(pb::StopVmRequest {
            header: header(TERM),
            vm_uuid: VM.into(),
            r#type: "hard".into(),
            timeout_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Grace stop: gone from the list (undefined, not just shut off); repeated, still absent.
    let (pv2, _) = ping_version(&mut c, 0).await;
    let stop = || pb::StopVmRequest {
        header: header(TERM),
        vm_uuid: VM.into(),
        r#type: "grace".into(),
        timeout_seconds: 5,
    };
    assert_eq!(c.stop_vm(stop()).await.unwrap().into_inner().domain, None);
    assert!(domains(&mut c).await.1.is_empty());
    let (pv3, unchanged) = ping_version(&mut c, pv2).await;
    assert!(!unchanged && pv3 != pv2, "the next ping sees the stop");
    assert_eq!(c.stop_vm(stop()).await.unwrap().into_inner().domain, None);
    let e = c.pause_vm(vm_req(TERM)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    // Start again, then destroy: gone; destroying again answers the same.
    let d2 = c
        .start_vm(start())
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    assert_eq!(d2.state, "Running");
    assert_eq!(only_vm(&domains(&mut c).await.1).name, VM);
    assert_eq!(
        c.destroy_vm(vm_req(TERM))
            .await
            .unwrap()
            .into_inner()
            .domain,
        None
    );
    assert!(domains(&mut c).await.1.is_empty());
    assert_eq!(
        c.destroy_vm(vm_req(TERM))
            .await
            .unwrap()
            .into_inner()
            .domain,
        None
    );

    // No domain uses the volume any more: it goes, once.
    assert!(
        c.delete_volume(delete())
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    assert!(!root_path.exists());
    assert!(
        !c.delete_volume(delete())
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    // The image it was backed by stays in the cache.
    assert!(Path::new(&image.path).is_file());
}
