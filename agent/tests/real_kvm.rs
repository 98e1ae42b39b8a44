//! A real VM on `qemu:///system`, driven through the agent's gRPC service as the leader
//! drives it: a LocalStorage primary storage, a boot image this test writes (one boot sector
//! that puts a mark in video memory and halts) cached into it, the root volume as a qcow2
//! overlay of it, StartVm, the domain Running in ListDomains with its VNC console answering
//! RFB, StopVm (the halted guest cannot answer ACPI, so the grace stop ends in a destroy),
//! DestroyVm, nothing left defined, DeleteVolume.
//!
//! KVM when QEMU's user can open /dev/kvm, else TCG; the test says which. It needs root: it
//! starts virtlogd and libvirtd itself when they are not running (there is no systemd on the
//! CI machines) and leaves them running for the next run. Without root it fails, saying so,
//! rather than passing without having booted anything.

mod common;

use std::io::Read as _;
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use std::time::Instant;

use common::client;
use common::header;
use common::serve;
use common::HOST;
use common::TERM;
use proto::agent::v1 as pb;

const URI: &str = "qemu:///system";
const LIBVIRT_SOCK: &str = "/run/libvirt/libvirt-sock";
const VIRTLOGD_SOCK: &str = "/run/libvirt/virtlogd-sock";
/// Set to keep /dev/kvm's permissions as they are (to see the TCG fallback on a KVM host).
const LEAVE_DEV_KVM: &str = "REAL_KVM_LEAVE_DEV_KVM";
/// What the boot sector writes at 0xb8000 (text-mode cell 0): 'Z', white on blue.
const MARK: &str = "0x1f5a";

/// 16-bit real-mode code at 0x7c00: cli; mov ax,0xb800; mov es,ax;
/// mov word [es:0],0x1f5a; hlt; jmp back to the hlt. Halted with interrupts off the vCPU
/// sleeps, so the VM costs no CPU on the shared CI machine.
const BOOT_CODE: [u8; 16] = [
    0xfa, 0xb8, 0x00, 0xb8, 0x8e, 0xc0, 0x26, 0xc7, 0x06, 0x00, 0x00, 0x5a, 0x1f, 0xf4, 0xeb, 0xfd,
];

fn boot_image() -> Vec<u8> {
    let mut img = vec![0u8; 1 << 20];
    img[..BOOT_CODE.len()].copy_from_slice(&BOOT_CODE);
    img[510] = 0x55;
    img[511] = 0xaa;
    img
}

fn virsh(args: &[&str]) -> std::process::Output {
    Command::new("virsh")
        .args(["-c", URI])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run virsh (bash deploy/install-deps.sh installs it): {e}")
        })
}

fn alive(sock: &str) -> bool {
    UnixStream::connect(sock).is_ok()
}

/// Start `daemon -d` unless its socket answers, then wait for it to.
fn ensure_daemon(daemon: &str, sock: &str) {
    if alive(sock) {
        return;
    }
    eprintln!("real_kvm: starting {daemon} -d");
    let st = Command::new(daemon).arg("-d").status().unwrap_or_else(|e| {
        panic!(
            "cannot run {daemon} (bash deploy/install-deps.sh installs libvirt-daemon-system): {e}"
        )
    });
    // A concurrent run may have won the pid file: then its daemon is the one we wait for.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !alive(sock) {
        assert!(
            Instant::now() < deadline,
            "{daemon} -d ({st}) did not open {sock} within 20 s; see /var/log/libvirt/"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// /dev/kvm as udev leaves it on a normal Debian install (root:kvm 0660; QEMU's user
/// libvirt-qemu is in group kvm). These machines have no udev, so the kernel's root-only
/// 0600 node stays as it is and QEMU could not use it.
fn grant_dev_kvm() {
    let Ok(m) = std::fs::metadata("/dev/kvm") else {
        eprintln!("real_kvm: no /dev/kvm on this host");
        return;
    };
    if std::env::var_os(LEAVE_DEV_KVM).is_some() {
        eprintln!(
            "real_kvm: {LEAVE_DEV_KVM} set: /dev/kvm left at mode {:o}",
            m.mode() & 0o777
        );
        return;
    }
    let kvm_gid = Command::new("getent")
        .args(["group", "kvm"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|l| l.split(':').nth(2)?.trim().parse::<u32>().ok());
    let Some(gid) = kvm_gid else {
        eprintln!("real_kvm: no group kvm: /dev/kvm left as it is");
        return;
    };
    if m.gid() != gid || m.mode() & 0o060 != 0o060 {
        eprintln!("real_kvm: /dev/kvm -> root:kvm 0660 (what udev does)");
        std::os::unix::fs::chown("/dev/kvm", None, Some(gid)).expect("chgrp kvm /dev/kvm");
        std::fs::set_permissions("/dev/kvm", std::fs::Permissions::from_mode(0o660))
            .expect("chmod 0660 /dev/kvm");
    }
}

/// The host as the test needs it: root, virtlogd and libvirtd answering on qemu:///system.
fn setup_host() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "real_kvm boots a VM on {URI} and starts virtlogd/libvirtd when they are not running: \
         it needs root (as .ci/run has); it does not pass without having booted a VM"
    );
    grant_dev_kvm();
    ensure_daemon("virtlogd", VIRTLOGD_SOCK);
    ensure_daemon("libvirtd", LIBVIRT_SOCK);
    let v = virsh(&["version"]);
    assert!(
        v.status.success(),
        "libvirtd runs but virsh -c {URI} version fails: {}",
        String::from_utf8_lossy(&v.stderr)
    );
}

fn random_uuid() -> String {
    (0..32)
        .map(|_| char::from(b"0123456789abcdef"[rand::random_range(0..16usize)]))
        .collect()
}

/// Destroys and undefines the VM if the test ends early, so a failed run leaves no guest.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = virsh(&["destroy", &self.0]);
        let _ = virsh(&["undefine", &self.0]);
    }
}

fn defined_domains() -> String {
    let o = virsh(&["list", "--all", "--name"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_vm_boots_on_qemu_system_answers_vnc_and_goes_away() {
    virt::error::clear_error_callback();
    setup_host();
    let vm = random_uuid();
    let root_uuid = random_uuid();
    let image_uuid = random_uuid();
    let _cleanup = Cleanup(vm.clone());

    let d = tempfile::tempdir().unwrap();
    // QEMU runs as libvirt-qemu and opens the disks by path: the temp dir (0700) must be
    // traversable, as any primary storage's parent directories must be.
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let (addr, ca) = serve(d.path(), URI).await;
    let mut c = client(addr, &ca, 1);
    let facts = c
        .attach(pb::AttachRequest {
            header: Some(pb::Header {
                host_uuid: String::new(),
                ..header(TERM).unwrap()
            }),
            host_uuid: HOST.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .facts
        .unwrap();
    let accel = if facts.virtualization == "kvm" {
        "KVM"
    } else {
        "TCG (no usable /dev/kvm: emulated, slower)"
    };
    eprintln!(
        "real_kvm: {} {} on libvirt {}: accelerator {accel}",
        facts.hypervisor_type, facts.hypervisor_version, facts.libvirt_version
    );

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
    let src = d.path().join("boot.raw");
    std::fs::write(&src, boot_image()).unwrap();
    let image = c
        .cache_image(pb::CacheImageRequest {
            header: header(TERM),
            primary_storage_uuid: "ps1".into(),
            image_uuid: image_uuid.clone(),
            source_url: format!("file://{}", src.display()),
            md5: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();
    let root = c
        .create_volume(pb::CreateVolumeRequest {
            header: header(TERM),
            primary_storage_uuid: "ps1".into(),
            volume_uuid: root_uuid.clone(),
            backing_path: image.path.clone(),
            size_bytes: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .file
        .unwrap();

    let spec = pb::VmSpec {
        vm_uuid: vm.clone(),
        name: "real-kvm test".into(),
        cpu_num: 1,
        memory_bytes: 32 << 20,
        disks: vec![pb::DiskSpec {
            volume_uuid: root_uuid.clone(),
            path: root.path.clone(),
            format: root.format.clone(),
            device_id: 0,
        }],
        nics: vec![],
        console_password: "s3cret".into(),
        boot_order: vec!["HardDisk".into()],
        iso_path: String::new(),
    };
    let t0 = Instant::now();
    let started = c
        .start_vm(pb::StartVmRequest {
            header: header(TERM),
            vm: Some(spec),
        })
        .await
        .unwrap_or_else(|e| panic!("StartVm on {URI}: {e:?}"))
        .into_inner()
        .domain
        .unwrap();
    let to_running = t0.elapsed();
    assert_eq!(started.state, "Running", "{started:?}");
    assert!(started.vnc_port > 0, "no VNC port: {started:?}");

    // The domain type libvirt runs it under agrees with what the host reported.
    let xml = virsh(&["dumpxml", &vm]);
    let xml = String::from_utf8_lossy(&xml.stdout);
    let want = if facts.virtualization == "kvm" {
        "kvm"
    } else {
        "qemu"
    };
    assert!(
        xml.contains(&format!("<domain type='{want}'")),
        "wanted a {want} domain: {xml}"
    );

    // Through the API: Running, with the same VNC port.
    let listed = c
        .list_domains(pb::ListDomainsRequest {
            header: header(TERM),
        })
        .await
        .unwrap()
        .into_inner()
        .domains;
    let ours = listed
        .iter()
        .find(|x| x.name == vm)
        .unwrap_or_else(|| panic!("{vm} not in {listed:?}"));
    assert_eq!(ours.state, "Running");
    assert_eq!(ours.vnc_port, started.vnc_port);

    // QEMU's VNC server answers with its RFB banner (the password is asked for after it).
    let mut s = TcpStream::connect(("127.0.0.1", started.vnc_port as u16))
        .unwrap_or_else(|e| panic!("VNC port {}: {e}", started.vnc_port));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut banner = [0u8; 12];
    s.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"RFB 003.008\n");
    drop(s);

    // The guest really ran: the firmware booted the volume and the boot sector left its mark.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let o = virsh(&["qemu-monitor-command", "--hmp", &vm, "xp /1hx 0xb8000"]);
        if String::from_utf8_lossy(&o.stdout).contains(MARK) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the boot sector did not run within 120 s: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let to_guest_code = t0.elapsed();
    eprintln!(
        "real_kvm: {accel}: StartVm answered Running after {} ms, the guest's boot sector ran after {} ms, VNC on port {}",
        to_running.as_millis(),
        to_guest_code.as_millis(),
        started.vnc_port
    );

    // A grace stop: the halted guest ignores the ACPI button, so after 2 s it is destroyed.
    let t1 = Instant::now();
    let stopped = c
        .stop_vm(pb::StopVmRequest {
            header: header(TERM),
            vm_uuid: vm.clone(),
            r#type: "grace".into(),
            timeout_seconds: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stopped.domain, None);
    eprintln!(
        "real_kvm: grace stop (then destroy) took {} ms",
        t1.elapsed().as_millis()
    );
    assert_eq!(
        c.destroy_vm(pb::VmRequest {
            header: header(TERM),
            vm_uuid: vm.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .domain,
        None
    );
    let listed = c
        .list_domains(pb::ListDomainsRequest {
            header: header(TERM),
        })
        .await
        .unwrap()
        .into_inner()
        .domains;
    assert!(listed.iter().all(|x| x.name != vm), "{listed:?}");
    assert!(
        !defined_domains().contains(&vm),
        "virsh list --all still has {vm}"
    );

    assert!(
        c.delete_volume(pb::DeleteVolumeRequest {
            header: header(TERM),
            primary_storage_uuid: "ps1".into(),
            volume_uuid: root_uuid.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .deleted
    );
    assert!(!Path::new(&root.path).exists());
}
