//! In-memory hosts for scale tests, the way ZStack's simulator stands in for KVM hosts: each
//! simulated host has its own facts, domain list and storage figures, and nothing touches the
//! machine running it. Never used by production or the demo.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::MutexGuard;

use proto::agent::v1 as pb;

use crate::backend::BackendError;
use crate::backend::HostBackend;
use crate::backend::OpError;
use crate::backend::StopMode;
use crate::backend::StorageSpec;
use crate::backend::VolumeRequest;
use crate::domain_xml;
use crate::volumes;

/// Simulated disk size of every primary storage of a simulated host.
const STORAGE_TOTAL: u64 = 10 << 40;

/// The virtual size of every image a simulated root volume is backed by (there is no image
/// file to ask).
pub const SIMULATED_IMAGE_SIZE: u64 = 1 << 30;

/// What a fresh qcow2 overlay occupies on disk, for simulated volumes' actual size.
const EMPTY_QCOW2_BYTES: u64 = 196_608;

/// The first VNC port QEMU's autoport hands out.
const FIRST_VNC_PORT: u32 = 5900;

/// One simulated host.
#[derive(Debug)]
pub struct SimulatedBackend {
    name: String,
    state: Mutex<SimState>,
}

#[derive(Debug, Default)]
struct SimState {
    /// Every domain, sorted by uuid, like libvirt's list.
    domains: Vec<pb::Domain>,
    /// The disk files of the domains this backend started, by VM uuid.
    disks: BTreeMap<String, Vec<String>>,
    /// Volume files by path.
    volumes: BTreeMap<String, pb::VolumeFile>,
    /// The backing file of each snapshot-made file (a volume's overlay, a snapshot's file),
    /// by path.
    backing: BTreeMap<String, String>,
}

/// The MACs of a spec's NICs in device order, lowercase, as libvirt's XML shows them.
fn nic_macs(spec: &pb::VmSpec) -> Vec<String> {
    let mut nics: Vec<&pb::NicSpec> = spec.nics.iter().collect();
    nics.sort_by_key(|n| n.device_id);
    nics.iter().map(|n| n.mac.to_ascii_lowercase()).collect()
}

impl SimState {
    fn domain_mut(&mut self, vm: &str) -> Result<&mut pb::Domain, OpError> {
        self.domains
            .iter_mut()
            .find(|d| d.name == vm)
            .ok_or_else(|| OpError::NotFound(format!("VM {vm} is not on this host")))
    }

    /// The domain's disk list changed: its record follows.
    fn set_disks(&mut self, vm: &str, files: Vec<String>) -> Result<pb::Domain, OpError> {
        let d = self.domain_mut(vm)?;
        d.disk_files.clone_from(&files);
        let d = d.clone();
        self.disks.insert(vm.to_string(), files);
        Ok(d)
    }

    /// The chain of `path`, the file first.
    fn chain(&self, path: &str) -> Vec<String> {
        let mut out = vec![path.to_string()];
        while let Some(b) = out.last().and_then(|p| self.backing.get(p)) {
            if out.contains(b) {
                break;
            }
            out.push(b.clone());
        }
        out
    }

    fn snapshot_reply(&self, path: &str, snapshot: Option<&str>) -> pb::VolumeSnapshotReply {
        pb::VolumeSnapshotReply {
            snapshot: snapshot.and_then(|s| self.volumes.get(s).cloned()),
            volume: self.volumes.get(path).cloned(),
            backing_chain: self.chain(path),
        }
    }

    fn in_use(&self, path: &str) -> Option<String> {
        self.disks
            .iter()
            .find(|(_, files)| files.iter().any(|f| f == path))
            .map(|(vm, _)| vm.clone())
    }

    fn remove(&mut self, vm: &str) {
        self.domains.retain(|d| d.name != vm);
        self.disks.remove(vm);
    }

    /// The lowest port no domain uses, as QEMU's autoport picks.
    fn free_vnc_port(&self) -> u32 {
        (FIRST_VNC_PORT..)
            .find(|p| self.domains.iter().all(|d| d.vnc_port != *p))
            .unwrap_or(FIRST_VNC_PORT)
    }
}

impl SimulatedBackend {
    /// Simulated host `name` (its address, so facts tell hosts apart).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            state: Mutex::new(SimState::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Put a domain on the host (what `virsh define; virsh start` would do), for tests of the
    /// leader's view of domain changes.
    pub fn set_domain(&self, d: pb::Domain) {
        let mut g = self.state();
        g.domains.retain(|x| x.uuid != d.uuid);
        g.domains.push(d);
        g.domains.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    }
}

impl HostBackend for SimulatedBackend {
    fn facts(&self) -> Result<pb::HostFacts, BackendError> {
        Ok(pb::HostFacts {
            hostname: format!("sim-{}", self.name),
            architecture: "x86_64".into(),
            cpu_model: "Simulated CPU".into(),
            cpu_threads: 32,
            cpu_sockets: 2,
            cpu_cores_per_socket: 8,
            cpu_threads_per_core: 2,
            cpu_mhz: 2400,
            memory_bytes: 128 << 30,
            hypervisor_type: "SIMULATED".into(),
            hypervisor_version: env!("CARGO_PKG_VERSION").into(),
            libvirt_version: String::new(),
            virtualization: "simulated".into(),
            os_distribution: "simulated".into(),
            os_release: String::new(),
            os_version: String::new(),
            libvirt_uri: String::new(),
        })
    }

    fn domains(&self) -> Result<Vec<pb::Domain>, BackendError> {
        Ok(self.state().domains.clone())
    }

    fn prepare_storage(&self, s: &StorageSpec) -> Result<(), BackendError> {
        if !s.dir().starts_with('/') {
            return Err(BackendError(format!(
                "{:?} must be an absolute path",
                s.dir()
            )));
        }
        Ok(())
    }

    fn storage_capacity(&self, s: &StorageSpec) -> pb::StorageCapacity {
        pb::StorageCapacity {
            primary_storage_uuid: s.uuid.clone(),
            total_bytes: STORAGE_TOTAL,
            available_bytes: STORAGE_TOTAL / 10 * 8,
            healthy: true,
            error: String::new(),
        }
    }

    fn start_vm(&self, spec: &pb::VmSpec) -> Result<pb::Domain, OpError> {
        domain_xml::validate(spec).map_err(|e| OpError::Invalid(e.to_string()))?;
        let vm = spec.vm_uuid.as_str();
        let mut g = self.state();
        if let Some(d) = g.domains.iter_mut().find(|d| d.name == vm) {
            // A definition an incoming migration left starts; a live domain answers as it is.
            if d.state == "Stopped" {
                d.state = "Running".into();
            }
            return Ok(d.clone());
        }
        // As on a real host: a disk must be a volume this host created.
        if let Some(d) = spec.disks.iter().find(|d| !g.volumes.contains_key(&d.path)) {
            return Err(OpError::WrongState(format!(
                "VM {vm}: the file {} of its volume {} is not on this host: create or cache it first",
                d.path, d.volume_uuid
            )));
        }
        let d = pb::Domain {
            name: vm.to_string(),
            uuid: domain_xml::libvirt_uuid(vm),
            state: "Running".into(),
            vcpus: spec.cpu_num,
            memory_bytes: spec.memory_bytes.div_ceil(1024) * 1024,
            vnc_port: g.free_vnc_port(),
            disk_files: spec.disks.iter().map(|d| d.path.clone()).collect(),
            nic_macs: nic_macs(spec),
        };
        g.disks.insert(
            vm.to_string(),
            spec.disks.iter().map(|d| d.path.clone()).collect(),
        );
        g.domains.push(d.clone());
        g.domains.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        Ok(d)
    }

    fn prepare_migration(&self, spec: &pb::VmSpec) -> Result<Option<pb::Domain>, OpError> {
        domain_xml::validate(spec).map_err(|e| OpError::Invalid(e.to_string()))?;
        let vm = spec.vm_uuid.as_str();
        let mut g = self.state();
        if let Some(d) = g.domains.iter().find(|d| d.name == vm) {
            return Ok(Some(d.clone()));
        }
        // Shared storage: the disks were made by another simulated host; this one takes them.
        for d in &spec.disks {
            g.volumes
                .entry(d.path.clone())
                .or_insert_with(|| pb::VolumeFile {
                    path: d.path.clone(),
                    ..Default::default()
                });
        }
        let d = pb::Domain {
            name: vm.to_string(),
            uuid: domain_xml::libvirt_uuid(vm),
            state: "Stopped".into(),
            vcpus: spec.cpu_num,
            memory_bytes: spec.memory_bytes.div_ceil(1024) * 1024,
            vnc_port: 0,
            disk_files: spec.disks.iter().map(|d| d.path.clone()).collect(),
            nic_macs: nic_macs(spec),
        };
        g.disks.insert(
            vm.to_string(),
            spec.disks.iter().map(|d| d.path.clone()).collect(),
        );
        g.domains.push(d.clone());
        g.domains.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        Ok(Some(d))
    }

    fn migrate_vm(&self, vm: &str, _destination_uri: &str) -> Result<(), OpError> {
        self.state().remove(vm);
        Ok(())
    }

    fn stop_vm(&self, vm: &str, _mode: StopMode) -> Result<(), OpError> {
        // A simulated guest powers off at the first press of the button.
        self.state().remove(vm);
        Ok(())
    }

    fn reboot_vm(&self, vm: &str) -> Result<pb::Domain, OpError> {
        let mut g = self.state();
        let d = g.domain_mut(vm)?;
        if d.state != "Running" {
            return Err(OpError::WrongState(format!(
                "VM {vm} is {}: only a running VM reboots",
                d.state
            )));
        }
        Ok(d.clone())
    }

    fn pause_vm(&self, vm: &str) -> Result<pb::Domain, OpError> {
        let mut g = self.state();
        let d = g.domain_mut(vm)?;
        match d.state.as_str() {
            "Running" | "Paused" => d.state = "Paused".into(),
            other => {
                return Err(OpError::WrongState(format!(
                    "VM {vm} is {other}: only a running VM pauses"
                )))
            }
        }
        Ok(d.clone())
    }

    fn resume_vm(&self, vm: &str) -> Result<pb::Domain, OpError> {
        let mut g = self.state();
        let d = g.domain_mut(vm)?;
        match d.state.as_str() {
            "Running" | "Paused" => d.state = "Running".into(),
            other => {
                return Err(OpError::WrongState(format!(
                    "VM {vm} is {other}: only a paused VM resumes"
                )))
            }
        }
        Ok(d.clone())
    }

    fn destroy_vm(&self, vm: &str) -> Result<(), OpError> {
        self.state().remove(vm);
        Ok(())
    }

    fn create_volume(&self, s: &StorageSpec, v: &VolumeRequest) -> Result<pb::VolumeFile, OpError> {
        volumes::check_volume_uuid(&v.volume_uuid)?;
        let dir = Path::new(s.dir());
        let virtual_size = match &v.backing {
            Some(b) => {
                volumes::check_backing(dir, b)?;
                v.size_bytes.max(SIMULATED_IMAGE_SIZE)
            }
            None if v.size_bytes == 0 => {
                return Err(OpError::Invalid(format!(
                    "data volume {} has no size: a blank volume needs size_bytes",
                    v.volume_uuid
                )))
            }
            None => v.size_bytes,
        };
        let path = volumes::volume_path(dir, &v.volume_uuid)
            .display()
            .to_string();
        let mut g = self.state();
        let f = g.volumes.entry(path.clone()).or_insert(pb::VolumeFile {
            path,
            format: "qcow2".into(),
            virtual_size,
            actual_size: EMPTY_QCOW2_BYTES,
        });
        Ok(f.clone())
    }

    fn clone_volume(
        &self,
        src: &StorageSpec,
        source: &str,
        dst: &StorageSpec,
        uuid: &str,
    ) -> Result<pb::VolumeFile, OpError> {
        volumes::check_volume_uuid(source)?;
        volumes::check_volume_uuid(uuid)?;
        let from = volumes::volume_path(Path::new(src.dir()), source)
            .display()
            .to_string();
        let path = volumes::volume_path(Path::new(dst.dir()), uuid)
            .display()
            .to_string();
        if from == path {
            return Err(OpError::Invalid(format!(
                "volume {uuid} cannot be a copy of itself"
            )));
        }
        let mut g = self.state();
        if let Some((vm, _)) = g.disks.iter().find(|(_, files)| files.contains(&from)) {
            return Err(OpError::WrongState(format!(
                "volume {source} ({from}) is in use by domain {vm}: a clone copies a quiescent disk, stop the VM first"
            )));
        }
        let Some(s) = g.volumes.get(&from).cloned() else {
            return Err(OpError::WrongState(format!(
                "volume {source} has no file {from} on this host"
            )));
        };
        let f = g.volumes.entry(path.clone()).or_insert(pb::VolumeFile {
            path,
            format: "qcow2".into(),
            virtual_size: s.virtual_size,
            actual_size: s.actual_size,
        });
        Ok(f.clone())
    }

    fn delete_volume(&self, s: &StorageSpec, volume_uuid: &str) -> Result<bool, OpError> {
        volumes::check_volume_uuid(volume_uuid)?;
        let path = volumes::volume_path(Path::new(s.dir()), volume_uuid)
            .display()
            .to_string();
        let mut g = self.state();
        if let Some((vm, _)) = g.disks.iter().find(|(_, files)| files.contains(&path)) {
            return Err(OpError::WrongState(format!(
                "volume {volume_uuid} ({path}) is in use by domain {vm}: stop the VM first"
            )));
        }
        let snaps = format!(
            "{}/",
            volumes::snapshots_dir(Path::new(s.dir()), volume_uuid).display()
        );
        g.volumes.retain(|p, _| !p.starts_with(&snaps));
        g.backing
            .retain(|p, _| !p.starts_with(&snaps) && p != &path);
        Ok(g.volumes.remove(&path).is_some())
    }

    fn snapshot_volume(
        &self,
        s: &StorageSpec,
        volume_uuid: &str,
        snapshot_uuid: &str,
        _vm: Option<&str>,
    ) -> Result<pb::VolumeSnapshotReply, OpError> {
        volumes::check_volume_uuid(volume_uuid)?;
        volumes::check_volume_uuid(snapshot_uuid)?;
        let dir = Path::new(s.dir());
        let path = volumes::volume_path(dir, volume_uuid).display().to_string();
        let snap = volumes::snapshot_path(dir, volume_uuid, snapshot_uuid)
            .display()
            .to_string();
        let mut g = self.state();
        if !g.volumes.contains_key(&snap) {
            let mut frozen = g.volumes.get(&path).cloned().ok_or_else(|| {
                OpError::WrongState(format!(
                    "volume {volume_uuid} has no file {path} on this host to snapshot"
                ))
            })?;
            frozen.path.clone_from(&snap);
            let top = pb::VolumeFile {
                path: path.clone(),
                format: "qcow2".into(),
                virtual_size: frozen.virtual_size,
                actual_size: EMPTY_QCOW2_BYTES,
            };
            if let Some(b) = g.backing.remove(&path) {
                g.backing.insert(snap.clone(), b);
            }
            g.volumes.insert(snap.clone(), frozen);
            g.volumes.insert(path.clone(), top);
            g.backing.insert(path.clone(), snap.clone());
        }
        Ok(g.snapshot_reply(&path, Some(&snap)))
    }

    fn revert_volume(
        &self,
        s: &StorageSpec,
        volume_uuid: &str,
        snapshot_uuid: &str,
    ) -> Result<pb::VolumeSnapshotReply, OpError> {
        volumes::check_volume_uuid(volume_uuid)?;
        volumes::check_volume_uuid(snapshot_uuid)?;
        let dir = Path::new(s.dir());
        let path = volumes::volume_path(dir, volume_uuid).display().to_string();
        let snap = volumes::snapshot_path(dir, volume_uuid, snapshot_uuid)
            .display()
            .to_string();
        let mut g = self.state();
        if let Some(vm) = g.in_use(&path) {
            return Err(OpError::WrongState(format!(
                "volume {volume_uuid} ({path}) is in use by domain {vm}: stop the VM before reverting it"
            )));
        }
        let size = g
            .volumes
            .get(&snap)
            .map(|f| f.virtual_size)
            .ok_or_else(|| {
                OpError::WrongState(format!(
                "snapshot {snapshot_uuid} of volume {volume_uuid} has no file {snap} on this host"
            ))
            })?;
        g.volumes.insert(
            path.clone(),
            pb::VolumeFile {
                path: path.clone(),
                format: "qcow2".into(),
                virtual_size: size,
                actual_size: EMPTY_QCOW2_BYTES,
            },
        );
        g.backing.insert(path.clone(), snap.clone());
        Ok(g.snapshot_reply(&path, Some(&snap)))
    }

    fn delete_volume_snapshots(
        &self,
        s: &StorageSpec,
        volume_uuid: &str,
        snapshot_uuids: &[String],
    ) -> Result<pb::VolumeSnapshotReply, OpError> {
        volumes::check_volume_uuid(volume_uuid)?;
        let dir = Path::new(s.dir());
        let path = volumes::volume_path(dir, volume_uuid).display().to_string();
        let mut doomed = Vec::new();
        for u in snapshot_uuids {
            volumes::check_volume_uuid(u)?;
            doomed.push(
                volumes::snapshot_path(dir, volume_uuid, u)
                    .display()
                    .to_string(),
            );
        }
        let mut g = self.state();
        if let Some((f, b)) = g
            .backing
            .iter()
            .find(|(f, b)| *f != &path && !doomed.contains(f) && doomed.contains(b))
        {
            return Err(OpError::WrongState(format!(
                "snapshot file {f} is backed by {b}, which is to be deleted: delete its descendants with it"
            )));
        }
        let chain = g.chain(&path);
        if chain.iter().skip(1).any(|f| doomed.contains(f)) {
            match chain.iter().skip(1).find(|f| !doomed.contains(f)).cloned() {
                Some(base) => g.backing.insert(path.clone(), base),
                None => g.backing.remove(&path),
            };
        }
        for d in &doomed {
            g.volumes.remove(d);
            g.backing.remove(d);
        }
        Ok(g.snapshot_reply(&path, None))
    }

    fn attach_disk(&self, vm: &str, disk: &pb::DiskSpec) -> Result<pb::Domain, OpError> {
        let mut g = self.state();
        let mut files = g.domain_mut(vm)?.disk_files.clone();
        if files.contains(&disk.path) {
            return g.domain_mut(vm).cloned();
        }
        if !g.volumes.contains_key(&disk.path) {
            return Err(OpError::WrongState(format!(
                "VM {vm}: the file {} of volume {} is not on this host: create it first",
                disk.path, disk.volume_uuid
            )));
        }
        files.push(disk.path.clone());
        g.set_disks(vm, files)
    }

    fn detach_disk(&self, vm: &str, path: &str) -> Result<Option<pb::Domain>, OpError> {
        let mut g = self.state();
        let Ok(d) = g.domain_mut(vm) else {
            return Ok(None);
        };
        let mut files = d.disk_files.clone();
        files.retain(|f| f != path);
        g.set_disks(vm, files).map(Some)
    }

    fn attach_nic(&self, vm: &str, nic: &pb::NicSpec) -> Result<pb::Domain, OpError> {
        // The same element a real host plugs in, so a bad MAC or bridge fails the same way.
        domain_xml::nic_xml(nic).map_err(OpError::Invalid)?;
        let mut g = self.state();
        let d = g.domain_mut(vm)?;
        let mac = nic.mac.to_ascii_lowercase();
        if !d.nic_macs.contains(&mac) {
            d.nic_macs.push(mac);
        }
        Ok(d.clone())
    }

    fn detach_nic(&self, vm: &str, mac: &str) -> Result<Option<pb::Domain>, OpError> {
        let mut g = self.state();
        let Ok(d) = g.domain_mut(vm) else {
            return Ok(None);
        };
        let mac = mac.to_ascii_lowercase();
        d.nic_macs.retain(|m| *m != mac);
        Ok(Some(d.clone()))
    }

    fn resize_volume(
        &self,
        s: &StorageSpec,
        volume_uuid: &str,
        size_bytes: u64,
        vm: Option<&str>,
    ) -> Result<pb::VolumeFile, OpError> {
        volumes::check_volume_uuid(volume_uuid)?;
        let path = volumes::volume_path(Path::new(s.dir()), volume_uuid)
            .display()
            .to_string();
        let mut g = self.state();
        let user = g
            .disks
            .iter()
            .find(|(_, files)| files.contains(&path))
            .map(|(vm, _)| vm.clone());
        if let Some(u) = &user {
            if vm != Some(u.as_str()) {
                return Err(OpError::WrongState(format!(
                    "volume {volume_uuid} ({path}) is in use by domain {u}: resize it through that VM"
                )));
            }
        }
        let f = g.volumes.get_mut(&path).ok_or_else(|| {
            OpError::WrongState(format!("volume {volume_uuid} ({path}) is not on this host"))
        })?;
        f.virtual_size = f.virtual_size.max(size_bytes);
        Ok(f.clone())
    }

    fn blocking(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::StorageKind;

    const VM: &str = "0123456789abcdef0123456789abcdef";
    const VOL: &str = "aaaabbbbccccddddeeeeffff00001111";

    fn storage() -> StorageSpec {
        StorageSpec {
            uuid: "ps1".into(),
            kind: StorageKind::LocalStorage,
            url: "/sim/ps1".into(),
            mount_point: "/sim/ps1".into(),
        }
    }

    fn spec(disk: &str) -> pb::VmSpec {
        pb::VmSpec {
            vm_uuid: VM.into(),
            name: "vm".into(),
            cpu_num: 2,
            memory_bytes: 1 << 30,
            disks: vec![pb::DiskSpec {
                volume_uuid: VOL.into(),
                path: disk.into(),
                format: "qcow2".into(),
                device_id: 0,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_simulated_vm_lives_through_the_same_states_as_a_real_one() {
        let b = SimulatedBackend::new("10.0.0.1");
        let s = storage();
        let f = b
            .create_volume(
                &s,
                &VolumeRequest {
                    volume_uuid: VOL.into(),
                    backing: Some("/sim/ps1/imagecache/images/img.qcow2".into()),
                    size_bytes: 0,
                },
            )
            .unwrap();
        assert_eq!(f.virtual_size, SIMULATED_IMAGE_SIZE);
        assert_eq!(f.path, format!("/sim/ps1/volumes/{VOL}.qcow2"));
        let e = b
            .start_vm(&spec("/sim/ps1/volumes/other.qcow2"))
            .unwrap_err();
        assert!(matches!(e, OpError::WrongState(_)), "{e:?}");
        let d = b.start_vm(&spec(&f.path)).unwrap();
        assert_eq!((d.state.as_str(), d.vnc_port), ("Running", FIRST_VNC_PORT));
        assert_eq!(d.uuid, "01234567-89ab-cdef-0123-456789abcdef");
        assert_eq!(b.start_vm(&spec(&f.path)).unwrap(), d);
        assert_eq!(b.pause_vm(VM).unwrap().state, "Paused");
        assert_eq!(b.pause_vm(VM).unwrap().state, "Paused");
        assert!(matches!(b.reboot_vm(VM), Err(OpError::WrongState(_))));
        assert_eq!(b.resume_vm(VM).unwrap().state, "Running");
        assert_eq!(b.reboot_vm(VM).unwrap().state, "Running");
        let e = b.delete_volume(&s, VOL).unwrap_err();
        assert!(
            matches!(&e, OpError::WrongState(m) if m.contains("in use")),
            "{e:?}"
        );
        b.stop_vm(VM, StopMode::Cold).unwrap();
        b.stop_vm(VM, StopMode::Cold).unwrap();
        assert!(b.domains().unwrap().is_empty());
        assert!(matches!(b.pause_vm(VM), Err(OpError::NotFound(_))));
        b.start_vm(&spec(&f.path)).unwrap();
        b.destroy_vm(VM).unwrap();
        b.destroy_vm(VM).unwrap();
        assert!(b.domains().unwrap().is_empty());
        assert!(b.delete_volume(&s, VOL).unwrap());
        assert!(!b.delete_volume(&s, VOL).unwrap());
    }

    #[test]
    fn a_simulated_migration_defines_then_hands_over() {
        let (source, destination) = (
            SimulatedBackend::new("10.0.0.1"),
            SimulatedBackend::new("10.0.0.2"),
        );
        let f = source
            .create_volume(
                &storage(),
                &VolumeRequest {
                    volume_uuid: VOL.into(),
                    backing: Some("/sim/ps1/imagecache/images/img.qcow2".into()),
                    size_bytes: 0,
                },
            )
            .unwrap();
        source.start_vm(&spec(&f.path)).unwrap();
        let incoming = destination
            .prepare_migration(&spec(&f.path))
            .unwrap()
            .unwrap();
        assert_eq!(incoming.state, "Stopped", "defined, not running");
        source.migrate_vm(VM, "qemu+tls://10.0.0.2/system").unwrap();
        assert!(source.domains().unwrap().is_empty());
        assert_eq!(
            destination.start_vm(&spec(&f.path)).unwrap().state,
            "Running"
        );
        // Repeated by a new leader: nothing changes.
        assert_eq!(
            destination
                .prepare_migration(&spec(&f.path))
                .unwrap()
                .unwrap()
                .state,
            "Running"
        );
        source.migrate_vm(VM, "").unwrap();
        assert_eq!(destination.domains().unwrap().len(), 1);
    }

    #[test]
    fn a_simulated_data_volume_plugs_in_grows_and_unplugs_like_a_real_one() {
        let b = SimulatedBackend::new("10.0.0.1");
        let s = storage();
        let blank = |uuid: &str, size_bytes| VolumeRequest {
            volume_uuid: uuid.into(),
            backing: None,
            size_bytes,
        };
        let root = b.create_volume(&s, &blank(VOL, 1 << 30)).unwrap();
        let data_uuid = "aaaabbbbccccddddeeeeffff00002222";
        let data = b.create_volume(&s, &blank(data_uuid, 64 << 20)).unwrap();
        let disk = pb::DiskSpec {
            volume_uuid: data_uuid.into(),
            path: data.path.clone(),
            format: "qcow2".into(),
            device_id: 1,
        };
        assert!(matches!(
            b.attach_disk(VM, &disk),
            Err(OpError::NotFound(_))
        ));
        b.start_vm(&spec(&root.path)).unwrap();
        for _ in 0..2 {
            let d = b.attach_disk(VM, &disk).unwrap();
            assert_eq!(d.disk_files, vec![root.path.clone(), data.path.clone()]);
        }
        // In use: neither deleted nor resized behind the VM's back; through it, it grows.
        assert!(matches!(
            b.delete_volume(&s, data_uuid),
            Err(OpError::WrongState(_))
        ));
        assert!(matches!(
            b.resize_volume(&s, data_uuid, 128 << 20, None),
            Err(OpError::WrongState(_))
        ));
        let f = b.resize_volume(&s, data_uuid, 128 << 20, Some(VM)).unwrap();
        assert_eq!(f.virtual_size, 128 << 20);
        assert_eq!(
            b.resize_volume(&s, data_uuid, 1 << 20, Some(VM))
                .unwrap()
                .virtual_size,
            128 << 20
        );
        for _ in 0..2 {
            let d = b.detach_disk(VM, &data.path).unwrap().unwrap();
            assert_eq!(d.disk_files, vec![root.path.clone()]);
        }
        assert!(b.delete_volume(&s, data_uuid).unwrap());
        b.destroy_vm(VM).unwrap();
        assert_eq!(b.detach_disk(VM, &data.path).unwrap(), None);
    }

    #[test]
    fn simulated_snapshots_keep_the_same_chain_as_real_files() {
        let b = SimulatedBackend::new("10.0.0.1");
        let s = storage();
        let top = b
            .create_volume(
                &s,
                &VolumeRequest {
                    volume_uuid: VOL.into(),
                    backing: None,
                    size_bytes: 1 << 30,
                },
            )
            .unwrap()
            .path;
        let (s1, s2) = (
            "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
            "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2",
        );
        let p1 = format!("/sim/ps1/volumes/{VOL}.snapshots/{s1}.qcow2");
        let p2 = format!("/sim/ps1/volumes/{VOL}.snapshots/{s2}.qcow2");
        let r = b.snapshot_volume(&s, VOL, s1, None).unwrap();
        assert_eq!(r.backing_chain, [top.clone(), p1.clone()]);
        assert_eq!(b.snapshot_volume(&s, VOL, s1, None).unwrap(), r);
        let r = b.snapshot_volume(&s, VOL, s2, None).unwrap();
        assert_eq!(r.backing_chain, [top.clone(), p2.clone(), p1.clone()]);
        let r = b.revert_volume(&s, VOL, s1).unwrap();
        assert_eq!(r.backing_chain, [top.clone(), p1.clone()]);
        assert!(matches!(
            b.delete_volume_snapshots(&s, VOL, &[s1.to_string()]),
            Err(OpError::WrongState(_))
        ));
        let r = b
            .delete_volume_snapshots(&s, VOL, &[s1.to_string(), s2.to_string()])
            .unwrap();
        assert_eq!(r.backing_chain, vec![top.clone()]);
        b.snapshot_volume(&s, VOL, s1, None).unwrap();
        b.start_vm(&spec(&top)).unwrap();
        assert!(matches!(
            b.revert_volume(&s, VOL, s1),
            Err(OpError::WrongState(_))
        ));
        b.destroy_vm(VM).unwrap();
        assert!(b.delete_volume(&s, VOL).unwrap());
        assert!(matches!(
            b.revert_volume(&s, VOL, s1),
            Err(OpError::WrongState(_))
        ));
    }
}
