//! The production backend: libvirt through the `virt` crate. `test:///default` (or
//! `test:///<file.xml>` describing a host) in tests and the demo, `qemu:///system` on a KVM host.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use proto::agent::v1 as pb;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::domain::DomainState;
use virt::error::ErrorNumber;

use crate::backend::BackendError;
use crate::backend::HostBackend;
use crate::backend::OpError;
use crate::backend::StopMode;
use crate::backend::StorageSpec;
use crate::backend::VolumeRequest;
use crate::domain_xml;
use crate::domain_xml::DomainType;
use crate::storage;
use crate::storage::Mounter;
use crate::volumes;

/// How often a grace stop looks whether the guest has powered off.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);

/// One libvirt connection, reopened after a failure (libvirtd restarted under us).
pub struct LibvirtBackend {
    uri: String,
    conn: Mutex<Option<Connect>>,
    mounter: Box<dyn Mounter>,
}

impl std::fmt::Debug for LibvirtBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibvirtBackend")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

fn version_string(v: u32) -> String {
    format!("{}.{}.{}", v / 1_000_000, (v / 1000) % 1000, v % 1000)
}

/// libvirt's QEMU driver configuration: its `user` and `group` say who QEMU runs as.
const QEMU_CONF: &str = "/etc/libvirt/qemu.conf";
/// Who QEMU runs as when qemu.conf does not say (Debian's build of libvirt).
const DEFAULT_QEMU_USER: &str = "libvirt-qemu";
const DEFAULT_QEMU_GROUP: &str = "libvirt-qemu";
const KVM_DEVICE: &str = "/dev/kvm";

/// A quoted `key = "value"` setting of qemu.conf (comments skipped).
fn qemu_conf_value(conf: &str, key: &str) -> Option<String> {
    conf.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
        })
}

/// A user (or group) of qemu.conf: a name, or `+N` for a numeric id.
fn numeric_id(name: &str) -> Option<u32> {
    name.strip_prefix('+')?.parse().ok()
}

/// uid, primary gid and supplementary groups of `user` (NSS), as libvirt sets them on QEMU.
fn user_ids(user: &str) -> Option<(u32, Vec<u32>)> {
    if let Some(uid) = numeric_id(user) {
        return Some((uid, Vec::new()));
    }
    let name = std::ffi::CString::new(user).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    // SAFETY: the out-parameters are sized as getpwnam_r expects; `buf` outlives `pw`'s use.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut n = groups.len() as libc::c_int;
    // SAFETY: `groups` holds `n` entries; getgrouplist writes at most that many.
    let rc = unsafe { libc::getgrouplist(name.as_ptr(), pw.pw_gid, groups.as_mut_ptr(), &mut n) };
    groups.truncate(if rc < 0 { 0 } else { n.max(0) as usize });
    groups.push(pw.pw_gid);
    Some((pw.pw_uid, groups))
}

fn group_id(group: &str) -> Option<u32> {
    if let Some(gid) = numeric_id(group) {
        return Some(gid);
    }
    let name = std::ffi::CString::new(group).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    // SAFETY: as in `user_ids`, for getgrnam_r.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut gr,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some(gr.gr_gid)
}

/// Whether a file of `mode`, owned by `owner:group`, is readable and writable by `uid`
/// in `groups` (the classic permission bits; root passes them all).
fn rw_allowed(mode: u32, owner: u32, group: u32, uid: u32, groups: &[u32]) -> bool {
    if uid == 0 {
        return true;
    }
    let bits = if uid == owner {
        mode >> 6
    } else if groups.contains(&group) {
        mode >> 3
    } else {
        mode
    };
    bits & 0o6 == 0o6
}

/// Why QEMU cannot use KVM on this host; `None` when it can. libvirt's capabilities list a
/// kvm guest as soon as the module is loaded, whatever /dev/kvm's permissions, and a kvm
/// domain then fails to start ("Could not access KVM kernel module"). So the agent (which
/// runs on the host it drives) looks itself, as QEMU's user from qemu.conf, and VMs fall
/// back to TCG with this reason logged instead of failing.
fn kvm_unusable() -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = match std::fs::metadata(KVM_DEVICE) {
        Ok(m) => m,
        Err(e) => {
            return Some(format!(
                "{KVM_DEVICE}: {e} (no kvm module, or no nested virtualisation)"
            ))
        }
    };
    let conf = std::fs::read_to_string(QEMU_CONF).unwrap_or_default();
    let user = qemu_conf_value(&conf, "user").unwrap_or_else(|| DEFAULT_QEMU_USER.into());
    let group = qemu_conf_value(&conf, "group").unwrap_or_else(|| DEFAULT_QEMU_GROUP.into());
    let Some((uid, mut groups)) = user_ids(&user) else {
        return Some(format!(
            "QEMU's user {user:?} ({QEMU_CONF}) does not exist on this host"
        ));
    };
    groups.extend(group_id(&group));
    let mode = meta.mode() & 0o777;
    if rw_allowed(mode, meta.uid(), meta.gid(), uid, &groups) {
        None
    } else {
        Some(format!(
            "{KVM_DEVICE} (mode {mode:o}, uid {} gid {}) is not readable and writable by QEMU's user {user:?}: \
             give group kvm access as udev does (chgrp kvm {KVM_DEVICE}; chmod 0660 {KVM_DEVICE}) and keep {user:?} in group kvm",
            meta.uid(),
            meta.gid()
        ))
    }
}

/// The distribution fields of `/etc/os-release`: (ID, VERSION_CODENAME, VERSION_ID).
fn os_release() -> (String, String, String) {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (field("ID"), field("VERSION_CODENAME"), field("VERSION_ID"))
}

/// Architecture, CPU model and whether a `kvm` guest type is offered, from the capabilities XML.
fn parse_capabilities(xml: &str) -> Result<(String, String, bool), BackendError> {
    let doc = roxmltree::Document::parse(xml)
        .map_err(|e| BackendError(format!("libvirt capabilities XML: {e}")))?;
    let host_cpu = doc
        .descendants()
        .find(|n| n.has_tag_name("host"))
        .and_then(|h| h.children().find(|n| n.has_tag_name("cpu")));
    let text_of = |tag: &str| {
        host_cpu
            .and_then(|c| c.children().find(|n| n.has_tag_name(tag)))
            .and_then(|n| n.text())
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let kvm = doc
        .descendants()
        .filter(|n| n.has_tag_name("domain"))
        .any(|d| d.attribute("type") == Some("kvm"));
    Ok((text_of("arch"), text_of("model"), kvm))
}

fn state_name(s: DomainState) -> &'static str {
    match s {
        DomainState::Running | DomainState::Blocked => "Running",
        DomainState::Paused => "Paused",
        DomainState::Shutdown => "Stopping",
        DomainState::Shutoff => "Stopped",
        DomainState::Crashed => "Crashed",
        DomainState::PMSuspended => "Suspended",
        DomainState::NoState => "Unknown",
    }
}

impl LibvirtBackend {
    /// A backend speaking to `uri`; connects on first use. Fails when libvirt refuses the URI.
    pub fn open(uri: &str, mounter: Box<dyn Mounter>) -> Result<Self, BackendError> {
        let b = Self {
            uri: uri.to_string(),
            conn: Mutex::new(None),
            mounter,
        };
        b.with(|_| Ok(()))?;
        Ok(b)
    }

    /// Run `f` on the connection, opening it first if needed. One retry over a fresh
    /// connection: a libvirtd restart breaks the old one.
    fn call<T>(&self, f: impl Fn(&Connect) -> Result<T, Fail>) -> Result<T, CallError> {
        let mut g = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for attempt in 0..2 {
            if g.is_none() {
                let c = Connect::open(Some(&self.uri)).map_err(|e| {
                    CallError::Connect(format!("cannot open libvirt {}: {e}", self.uri))
                })?;
                *g = Some(c);
            }
            let Some(c) = g.as_ref() else { continue };
            match f(c) {
                Ok(v) => return Ok(v),
                Err(Fail::Libvirt(e)) if attempt == 0 && !c.is_alive().unwrap_or(false) => {
                    tracing::warn!(uri = %self.uri, error = %e, "libvirt connection lost; reopening");
                    *g = None;
                }
                Err(Fail::Libvirt(e)) => return Err(CallError::Libvirt(e)),
                Err(Fail::Op(e)) => return Err(CallError::Op(e)),
            }
        }
        Err(CallError::Connect(format!(
            "libvirt {} keeps failing",
            self.uri
        )))
    }

    fn with<T>(
        &self,
        f: impl Fn(&Connect) -> Result<T, virt::error::Error>,
    ) -> Result<T, BackendError> {
        self.call(|c| f(c).map_err(Fail::Libvirt))
            .map_err(|e| match e {
                CallError::Connect(m) => BackendError(m),
                CallError::Libvirt(e) => BackendError(format!("libvirt {}: {e}", self.uri)),
                CallError::Op(e) => BackendError(e.to_string()),
            })
    }

    /// A call about VM `vm`, its failure classified for the caller.
    fn vm<T>(&self, vm: &str, f: impl Fn(&Connect) -> Result<T, Fail>) -> Result<T, OpError> {
        self.call(f).map_err(|e| match e {
            CallError::Connect(m) => OpError::Unavailable(m),
            CallError::Op(e) => e,
            CallError::Libvirt(e) => match e.code().unwrap_or(ErrorNumber::InternalError) {
                ErrorNumber::NoDomain => OpError::NotFound(format!("VM {vm} is not on this host")),
                // libvirt's "not valid in this state": the domain changed under us.
                ErrorNumber::OperationInvalid => {
                    OpError::WrongState(format!("VM {vm}: {}", e.message()))
                }
                _ => OpError::Failed(format!("libvirt {} refused VM {vm}: {e}", self.uri)),
            },
        })
    }

    /// The domain type VMs get here: the test driver's own, KVM when the host offers it
    /// (capabilities list a kvm guest and QEMU's user can open /dev/kvm), else QEMU's
    /// emulation (TCG), logged with the reason: a VM emulated is many times slower.
    fn domain_type(&self) -> Result<DomainType, OpError> {
        if self.uri.starts_with("test:") {
            return Ok(DomainType::Test);
        }
        let caps = self.with(|c| c.capabilities())?;
        let (_, _, kvm_guest) = parse_capabilities(&caps)?;
        let why = if kvm_guest {
            kvm_unusable()
        } else {
            Some(format!("libvirt {} offers no kvm guest", self.uri))
        };
        Ok(match why {
            None => DomainType::Kvm,
            Some(reason) => {
                tracing::warn!(uri = %self.uri, %reason, "KVM is not usable: VMs run emulated (TCG)");
                DomainType::Qemu
            }
        })
    }

    /// Whether VM `vm` has a domain, and whether it is active, with its state.
    fn state_of(&self, vm: &str) -> Result<Option<(bool, DomainState)>, OpError> {
        self.vm(vm, |c| match lookup(c, vm)? {
            None => Ok(None),
            Some(d) => Ok(Some((
                d.is_active()?,
                d.state()?.0.unwrap_or(DomainState::NoState),
            ))),
        })
    }

    /// Pull the power cord of VM `vm` if it runs (a domain that stopped meanwhile is fine).
    fn destroy_if_active(&self, vm: &str) -> Result<(), OpError> {
        self.vm(vm, |c| {
            if let Some(d) = lookup(c, vm)? {
                if d.is_active()? {
                    ignore_not_running(d.destroy())?;
                }
            }
            Ok(())
        })
    }

    /// Remove VM `vm`'s definition once it no longer runs, so the domain list is exactly the
    /// VMs this host runs. libvirt snapshot metadata and a managed-save image would block the
    /// undefine; the cluster keeps neither (its snapshots are its own volume files).
    fn undefine(&self, vm: &str) -> Result<(), OpError> {
        self.vm(vm, |c| {
            let Some(d) = lookup(c, vm)? else {
                return Ok(());
            };
            if d.is_active()? {
                return Err(Fail::Op(OpError::WrongState(format!(
                    "VM {vm} is still running after it was destroyed"
                ))));
            }
            if d.is_persistent()? {
                d.undefine_flags(
                    virt::sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                        | virt::sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
                )?;
            }
            Ok(())
        })
    }

    /// The domains, defined or running, whose disks use the file `path`.
    fn users_of(&self, path: &Path) -> Result<Vec<String>, OpError> {
        // Every domain, defined or running: a definition still pointing at the file would
        // start a VM on a missing disk.
        let files = self.with(|c| {
            let mut out = Vec::new();
            for d in c.list_all_domains(0)? {
                let xml = match d.xml_desc(0) {
                    Ok(x) => x,
                    Err(e) if e.code().is_known_and(|n| n == ErrorNumber::NoDomain) => continue,
                    Err(e) => return Err(e),
                };
                out.push((d.name()?, xml));
            }
            Ok(out)
        })?;
        let mut users = Vec::new();
        for (name, xml) in files {
            let disks = domain_xml::disk_files(&xml).map_err(OpError::Failed)?;
            if disks.iter().any(|f| volumes::same_file(Path::new(f), path)) {
                users.push(name);
            }
        }
        Ok(users)
    }

    /// A call on the domain of `vm`, which must exist.
    fn on_domain(
        &self,
        vm: &str,
        f: impl Fn(&Domain, DomainState) -> Result<(), Fail>,
    ) -> Result<pb::Domain, OpError> {
        self.vm(vm, |c| {
            let d = lookup(c, vm)?.ok_or_else(|| {
                Fail::Op(OpError::NotFound(format!("VM {vm} is not on this host")))
            })?;
            let state = d.state()?.0.unwrap_or(DomainState::NoState);
            f(&d, state)?;
            Ok(domain_of(&d)?)
        })
    }
}

/// What a closure given to [`LibvirtBackend::call`] failed on.
enum Fail {
    /// A libvirt call (retried once when the connection died).
    Libvirt(virt::error::Error),
    /// A refusal of ours.
    Op(OpError),
}

impl From<virt::error::Error> for Fail {
    fn from(e: virt::error::Error) -> Self {
        Fail::Libvirt(e)
    }
}

enum CallError {
    Connect(String),
    Libvirt(virt::error::Error),
    Op(OpError),
}

/// The domain of VM `vm`: found by its libvirt uuid (unique, unlike names across
/// drivers), and refused when it carries another name: a domain this agent did not make.
fn lookup(c: &Connect, vm: &str) -> Result<Option<Domain>, Fail> {
    let d = match c.lookup_domain_by_uuid_string(&domain_xml::libvirt_uuid(vm)) {
        Ok(d) => d,
        Err(e) if e.code().is_known_and(|n| n == ErrorNumber::NoDomain) => return Ok(None),
        Err(e) => return Err(Fail::Libvirt(e)),
    };
    let name = d.name()?;
    if name != vm {
        return Err(Fail::Op(OpError::WrongState(format!(
            "domain {name:?} holds the uuid of VM {vm} but was not created by this agent: remove it (virsh undefine {name})"
        ))));
    }
    Ok(Some(d))
}

/// Every file of the VM's spec on this host, named here rather than in libvirt's "cannot open
/// file" from deep inside QEMU.
fn files_present(spec: &pb::VmSpec) -> Result<(), OpError> {
    let vm = spec.vm_uuid.as_str();
    for (what, p) in spec
        .disks
        .iter()
        .map(|d| (format!("volume {}", d.volume_uuid), &d.path))
        .chain((!spec.iso_path.is_empty()).then(|| ("ISO".to_string(), &spec.iso_path)))
    {
        if !Path::new(p).is_file() {
            return Err(OpError::WrongState(format!(
                "VM {vm}: the file {p} of its {what} is not on this host: create or cache it first"
            )));
        }
    }
    Ok(())
}

/// A destroy or shutdown of a domain that stopped meanwhile has nothing left to do.
fn ignore_not_running(r: Result<(), virt::error::Error>) -> Result<(), virt::error::Error> {
    match r {
        Err(e)
            if e.code()
                .is_known_and(|n| n == ErrorNumber::OperationInvalid) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// The wire form of a domain; the VNC port from its live XML while it is active.
fn domain_of(d: &Domain) -> Result<pb::Domain, virt::error::Error> {
    let info = d.info()?;
    let (vnc_port, disk_files, nic_macs) = if d.is_active()? {
        let xml = d.xml_desc(0)?;
        (
            domain_xml::vnc_port(&xml),
            domain_xml::disk_files(&xml).unwrap_or_default(),
            domain_xml::nic_macs(&xml).unwrap_or_default(),
        )
    } else {
        (0, Vec::new(), Vec::new())
    };
    Ok(pb::Domain {
        name: d.name()?,
        uuid: d.uuid_string()?,
        state: state_name(info.state.unwrap_or(DomainState::NoState)).into(),
        vcpus: info.nr_virt_cpu,
        memory_bytes: info.max_mem.saturating_mul(1024),
        vnc_port,
        disk_files,
        nic_macs,
    })
}

/// libvirt's "this driver cannot": the test driver has no device hotplug or block resize.
fn unsupported(e: &virt::error::Error) -> bool {
    e.code().is_known_and(|n| n == ErrorNumber::NoSupport)
}

/// The test driver's stand-in for a hotplug: its domains run no guest, so redefining the
/// domain with `xml` and starting it again changes nothing a guest could see, and the live
/// XML then shows the device as a real hotplug would.
fn redefine_running(c: &Connect, d: &Domain, xml: &str) -> Result<Domain, virt::error::Error> {
    ignore_not_running(d.destroy())?;
    let d = c.define_domain_xml(xml)?;
    d.create()?;
    Ok(d)
}

impl HostBackend for LibvirtBackend {
    fn facts(&self) -> Result<pb::HostFacts, BackendError> {
        let (info, hostname, lib, hyp, hyp_type, caps) = self.with(|c| {
            Ok((
                c.node_info()?,
                c.hostname()?,
                c.lib_version()?,
                c.hyp_version()?,
                c.driver_type()?,
                c.capabilities()?,
            ))
        })?;
        let (arch, model, kvm_guest) = parse_capabilities(&caps)?;
        let virtualization = if self.uri.starts_with("test:") {
            "test"
        } else if kvm_guest && kvm_unusable().is_none() {
            "kvm"
        } else {
            "none"
        };
        let (dist, release, version) = os_release();
        Ok(pb::HostFacts {
            hostname,
            architecture: if arch.is_empty() {
                info.model.clone()
            } else {
                arch
            },
            cpu_model: if model.is_empty() { info.model } else { model },
            cpu_threads: info.cpus,
            cpu_sockets: info.sockets * info.nodes.max(1),
            cpu_cores_per_socket: info.cores,
            cpu_threads_per_core: info.threads,
            cpu_mhz: info.mhz,
            memory_bytes: info.memory.saturating_mul(1024),
            hypervisor_type: hyp_type,
            hypervisor_version: version_string(hyp),
            libvirt_version: version_string(lib),
            virtualization: virtualization.into(),
            os_distribution: dist,
            os_release: release,
            os_version: version,
            libvirt_uri: self.uri.clone(),
        })
    }

    fn domains(&self) -> Result<Vec<pb::Domain>, BackendError> {
        self.with(|c| {
            let mut out = Vec::new();
            for d in c.list_all_domains(0)? {
                match domain_of(&d) {
                    Ok(x) => out.push(x),
                    // Undefined by someone else (virsh) between the listing and the look.
                    Err(e) if e.code().is_known_and(|n| n == ErrorNumber::NoDomain) => {}
                    Err(e) => return Err(e),
                }
            }
            out.sort_by(|a, b| a.uuid.cmp(&b.uuid));
            Ok(out)
        })
    }

    fn prepare_storage(&self, s: &StorageSpec) -> Result<(), BackendError> {
        storage::prepare(s, self.mounter.as_ref())
    }

    fn storage_capacity(&self, s: &StorageSpec) -> pb::StorageCapacity {
        storage::capacity(s)
    }

    fn start_vm(&self, spec: &pb::VmSpec) -> Result<pb::Domain, OpError> {
        let vm = spec.vm_uuid.as_str();
        let xml = domain_xml::build(spec, self.domain_type()?)
            .map_err(|e| OpError::Invalid(e.to_string()))?;
        let running = self.vm(vm, |c| match lookup(c, vm)? {
            Some(d) if d.is_active()? => Ok(Some(domain_of(&d)?)),
            _ => Ok(None),
        })?;
        if let Some(d) = running {
            // A repeated start: the VM runs (or is paused) as the first start left it.
            return Ok(d);
        }
        files_present(spec)?;
        let d = self.vm(vm, |c| {
            // Defining again replaces a stale definition (a stopped domain left behind).
            let d = c.define_domain_xml(&xml)?;
            if let Err(e) = d.create() {
                // Not left defined: the domain list is exactly the VMs this host runs.
                if !d.is_active().unwrap_or(true) {
                    if let Err(u) = d.undefine() {
                        tracing::warn!(vm, error = %u, "cannot undefine the domain of a failed start");
                    }
                }
                return Err(Fail::Libvirt(e));
            }
            Ok(domain_of(&d)?)
        })?;
        tracing::info!(vm, name = %spec.name, "VM started");
        Ok(d)
    }

    fn prepare_migration(&self, spec: &pb::VmSpec) -> Result<Option<pb::Domain>, OpError> {
        let vm = spec.vm_uuid.as_str();
        let domain_type = self.domain_type()?;
        let xml =
            domain_xml::build(spec, domain_type).map_err(|e| OpError::Invalid(e.to_string()))?;
        let active = self.vm(vm, |c| match lookup(c, vm)? {
            Some(d) if d.is_active()? => Ok(Some(domain_of(&d)?)),
            _ => Ok(None),
        })?;
        if active.is_some() {
            // Asked again after the migration finished (a new leader re-running the step).
            return Ok(active);
        }
        // Only shared storage migrates live: the disks must be the same files here.
        files_present(spec)?;
        if domain_type != DomainType::Test {
            // libvirt's peer-to-peer migration defines and starts the incoming domain (paused
            // until the memory is copied) on its own.
            return Ok(None);
        }
        // The test driver can neither migrate nor start paused: defined but not running here
        // until the source's domain is gone, so the VM never runs on two hosts.
        let d = self.vm(vm, |c| Ok(domain_of(&c.define_domain_xml(&xml)?)?))?;
        tracing::info!(vm, "incoming VM defined");
        Ok(Some(d))
    }

    fn migrate_vm(&self, vm: &str, destination_uri: &str) -> Result<(), OpError> {
        let Some((active, _)) = self.state_of(vm)? else {
            return Ok(());
        };
        if self.domain_type()? == DomainType::Test {
            // Nothing to carry over: the destination already holds the definition.
            self.destroy_if_active(vm)?;
            self.undefine(vm)?;
            tracing::info!(vm, "VM handed over to the destination");
            return Ok(());
        }
        if !active {
            return Err(OpError::WrongState(format!(
                "VM {vm} is not running on this host: only a running VM migrates live"
            )));
        }
        if destination_uri.is_empty() {
            return Err(OpError::Invalid(format!(
                "VM {vm}: a live migration needs the destination's libvirt URI"
            )));
        }
        let flags = virt::sys::VIR_MIGRATE_LIVE
            | virt::sys::VIR_MIGRATE_PEER2PEER
            | virt::sys::VIR_MIGRATE_PERSIST_DEST
            | virt::sys::VIR_MIGRATE_UNDEFINE_SOURCE
            | virt::sys::VIR_MIGRATE_AUTO_CONVERGE;
        // libvirt pauses the incoming domain on the destination until the memory is copied and
        // stops this one before resuming it there; a failure leaves it running here.
        // Over a connection of its own: a migration takes as long as copying the memory, and
        // pings and other VMs' calls go on over the shared one meanwhile.
        let own = Connect::open(Some(&self.uri))
            .map_err(|e| OpError::Unavailable(format!("cannot open libvirt {}: {e}", self.uri)))?;
        let migrated = match lookup(&own, vm) {
            Ok(Some(d)) => d
                .migrate_to_uri(destination_uri, flags, None, 0)
                .map_err(|e| {
                    OpError::Failed(format!(
                        "libvirt {} could not migrate VM {vm} to {destination_uri}: {e}",
                        self.uri
                    ))
                }),
            Ok(None) => Ok(()),
            Err(Fail::Op(e)) => Err(e),
            Err(Fail::Libvirt(e)) => Err(OpError::Failed(format!(
                "libvirt {} refused VM {vm}: {e}",
                self.uri
            ))),
        };
        drop(own);
        migrated?;
        self.undefine(vm)?;
        tracing::info!(vm, destination_uri, "VM migrated");
        Ok(())
    }

    fn stop_vm(&self, vm: &str, mode: StopMode) -> Result<(), OpError> {
        let Some((active, state)) = self.state_of(vm)? else {
            return Ok(());
        };
        if active {
            match mode {
                // A paused guest cannot see the power button; waiting would only delay
                // the destroy.
                StopMode::Grace(timeout) if state != DomainState::Paused => {
                    self.vm(vm, |c| {
                        if let Some(d) = lookup(c, vm)? {
                            // No guest agent channel is configured, so QEMU presses the
                            // ACPI power button. (The test driver takes no shutdown flags.)
                            ignore_not_running(d.shutdown())?;
                        }
                        Ok(())
                    })?;
                    // Polled one call at a time: the connection is not held while the guest
                    // takes its time, so pings and other VMs' calls go on meanwhile.
                    let deadline = Instant::now() + timeout;
                    loop {
                        match self.state_of(vm)? {
                            Some((true, _)) if Instant::now() < deadline => {
                                std::thread::sleep(SHUTDOWN_POLL);
                            }
                            Some((true, _)) => {
                                tracing::warn!(
                                    vm,
                                    timeout_s = timeout.as_secs(),
                                    "guest did not power off in time; destroying it"
                                );
                                self.destroy_if_active(vm)?;
                                break;
                            }
                            _ => break,
                        }
                    }
                }
                _ => self.destroy_if_active(vm)?,
            }
        }
        self.undefine(vm)?;
        tracing::info!(vm, ?mode, "VM stopped");
        Ok(())
    }

    fn reboot_vm(&self, vm: &str) -> Result<pb::Domain, OpError> {
        self.on_domain(vm, |d, state| match state {
            DomainState::Running | DomainState::Blocked => {
                d.reboot(virt::sys::VIR_DOMAIN_REBOOT_DEFAULT)?;
                Ok(())
            }
            // QEMU would queue the ACPI request for a frozen guest that cannot answer it.
            DomainState::Paused => Err(Fail::Op(OpError::WrongState(format!(
                "VM {vm} is paused: resume it before rebooting"
            )))),
            other => Err(Fail::Op(OpError::WrongState(format!(
                "VM {vm} is {}: only a running VM reboots",
                state_name(other)
            )))),
        })
    }

    fn pause_vm(&self, vm: &str) -> Result<pb::Domain, OpError> {
        self.on_domain(vm, |d, state| match state {
            DomainState::Paused => Ok(()),
            DomainState::Running | DomainState::Blocked => Ok(d.suspend()?),
            other => Err(Fail::Op(OpError::WrongState(format!(
                "VM {vm} is {}: only a running VM pauses",
                state_name(other)
            )))),
        })
    }

    fn resume_vm(&self, vm: &str) -> Result<pb::Domain, OpError> {
        self.on_domain(vm, |d, state| match state {
            DomainState::Running | DomainState::Blocked => Ok(()),
            DomainState::Paused => Ok(d.resume()?),
            other => Err(Fail::Op(OpError::WrongState(format!(
                "VM {vm} is {}: only a paused VM resumes",
                state_name(other)
            )))),
        })
    }

    fn destroy_vm(&self, vm: &str) -> Result<(), OpError> {
        if self.state_of(vm)?.is_none() {
            return Ok(());
        }
        self.destroy_if_active(vm)?;
        self.undefine(vm)?;
        tracing::info!(vm, "VM destroyed");
        Ok(())
    }

    fn create_volume(&self, s: &StorageSpec, v: &VolumeRequest) -> Result<pb::VolumeFile, OpError> {
        volumes::create(
            Path::new(s.dir()),
            &v.volume_uuid,
            v.backing.as_deref(),
            v.size_bytes,
        )
    }

    fn attach_disk(&self, vm: &str, disk: &pb::DiskSpec) -> Result<pb::Domain, OpError> {
        let element = domain_xml::disk_xml(disk).map_err(OpError::Invalid)?;
        if !Path::new(&disk.path).is_file() {
            return Err(OpError::WrongState(format!(
                "VM {vm}: the file {} of volume {} is not on this host: create it first",
                disk.path, disk.volume_uuid
            )));
        }
        let test = self.domain_type()? == DomainType::Test;
        let d = self.vm(vm, |c| {
            let d = lookup(c, vm)?.ok_or_else(|| {
                Fail::Op(OpError::NotFound(format!("VM {vm} is not on this host")))
            })?;
            let xml = d.xml_desc(0)?;
            if domain_xml::disk_target(&xml, &disk.path)
                .map_err(|e| Fail::Op(OpError::Failed(e)))?
                .is_some()
            {
                // A repeated attach: the disk is in already.
                return Ok(domain_of(&d)?);
            }
            let flags = virt::sys::VIR_DOMAIN_AFFECT_LIVE | virt::sys::VIR_DOMAIN_AFFECT_CONFIG;
            match d.attach_device_flags(&element, flags) {
                Ok(()) => Ok(domain_of(&d)?),
                Err(e) if unsupported(&e) && test => {
                    let inactive = d.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)?;
                    let next = domain_xml::with_disk(&inactive, &element)
                        .map_err(|e| Fail::Op(OpError::Failed(e)))?;
                    Ok(domain_of(&redefine_running(c, &d, &next)?)?)
                }
                Err(e) => Err(Fail::Libvirt(e)),
            }
        })?;
        tracing::info!(vm, volume = %disk.volume_uuid, device = disk.device_id, "volume attached");
        Ok(d)
    }

    fn detach_disk(&self, vm: &str, path: &str) -> Result<Option<pb::Domain>, OpError> {
        let test = self.domain_type()? == DomainType::Test;
        let d = self.vm(vm, |c| {
            let Some(d) = lookup(c, vm)? else {
                return Ok(None);
            };
            let xml = d.xml_desc(0)?;
            let Some(target) =
                domain_xml::disk_target(&xml, path).map_err(|e| Fail::Op(OpError::Failed(e)))?
            else {
                return Ok(Some(domain_of(&d)?));
            };
            // libvirt finds the disk by its target; the rest must match what it has.
            let element = format!(
                "<disk type='file' device='disk'><source file='{}'/><target dev='{}' bus='virtio'/></disk>",
                domain_xml::escape(path),
                domain_xml::escape(&target)
            );
            let flags = virt::sys::VIR_DOMAIN_AFFECT_LIVE | virt::sys::VIR_DOMAIN_AFFECT_CONFIG;
            match d.detach_device_flags(&element, flags) {
                Ok(()) => Ok(Some(domain_of(&d)?)),
                Err(e) if unsupported(&e) && test => {
                    let inactive = d.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)?;
                    let next = domain_xml::without_disk(&inactive, path)
                        .map_err(|e| Fail::Op(OpError::Failed(e)))?;
                    Ok(Some(domain_of(&redefine_running(c, &d, &next)?)?))
                }
                Err(e) => Err(Fail::Libvirt(e)),
            }
        })?;
        tracing::info!(vm, path, "volume detached");
        Ok(d)
    }

    fn attach_nic(&self, vm: &str, nic: &pb::NicSpec) -> Result<pb::Domain, OpError> {
        let element = domain_xml::nic_xml(nic).map_err(OpError::Invalid)?;
        let test = self.domain_type()? == DomainType::Test;
        let d = self.vm(vm, |c| {
            let d = lookup(c, vm)?.ok_or_else(|| {
                Fail::Op(OpError::NotFound(format!("VM {vm} is not on this host")))
            })?;
            let xml = d.xml_desc(0)?;
            if domain_xml::interface_xml(&xml, &nic.mac)
                .map_err(|e| Fail::Op(OpError::Failed(e)))?
                .is_some()
            {
                // A repeated attach: the interface is in already.
                return Ok(domain_of(&d)?);
            }
            let flags = virt::sys::VIR_DOMAIN_AFFECT_LIVE | virt::sys::VIR_DOMAIN_AFFECT_CONFIG;
            match d.attach_device_flags(&element, flags) {
                Ok(()) => Ok(domain_of(&d)?),
                Err(e) if unsupported(&e) && test => {
                    let inactive = d.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)?;
                    let next = domain_xml::with_disk(&inactive, &element)
                        .map_err(|e| Fail::Op(OpError::Failed(e)))?;
                    Ok(domain_of(&redefine_running(c, &d, &next)?)?)
                }
                Err(e) => Err(Fail::Libvirt(e)),
            }
        })?;
        tracing::info!(vm, mac = %nic.mac, bridge = %nic.bridge, "nic attached");
        Ok(d)
    }

    fn detach_nic(&self, vm: &str, mac: &str) -> Result<Option<pb::Domain>, OpError> {
        let test = self.domain_type()? == DomainType::Test;
        let d = self.vm(vm, |c| {
            let Some(d) = lookup(c, vm)? else {
                return Ok(None);
            };
            let xml = d.xml_desc(0)?;
            let Some(element) =
                domain_xml::interface_xml(&xml, mac).map_err(|e| Fail::Op(OpError::Failed(e)))?
            else {
                return Ok(Some(domain_of(&d)?));
            };
            let flags = virt::sys::VIR_DOMAIN_AFFECT_LIVE | virt::sys::VIR_DOMAIN_AFFECT_CONFIG;
            match d.detach_device_flags(&element, flags) {
                Ok(()) => Ok(Some(domain_of(&d)?)),
                Err(e) if unsupported(&e) && test => {
                    let inactive = d.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)?;
                    let next = domain_xml::without_nic(&inactive, mac)
                        .map_err(|e| Fail::Op(OpError::Failed(e)))?;
                    Ok(Some(domain_of(&redefine_running(c, &d, &next)?)?))
                }
                Err(e) => Err(Fail::Libvirt(e)),
            }
        })?;
        tracing::info!(vm, mac, "nic detached");
        Ok(d)
    }

    fn resize_volume(
        &self,
        s: &StorageSpec,
        volume_uuid: &str,
        size_bytes: u64,
        vm: Option<&str>,
    ) -> Result<pb::VolumeFile, OpError> {
        let dir = Path::new(s.dir());
        let (path, f) = volumes::existing_file(dir, volume_uuid)?;
        if f.virtual_size >= size_bytes {
            return Ok(f);
        }
        let users = self.users_of(&path)?;
        let Some(vm) = vm else {
            if !users.is_empty() {
                return Err(OpError::WrongState(format!(
                    "volume {volume_uuid} ({}) is in use by domain {}: resize it through the VM",
                    path.display(),
                    users.join(", ")
                )));
            }
            return volumes::resize(dir, volume_uuid, size_bytes);
        };
        if !users.iter().any(|u| u == vm) {
            // The VM stopped meanwhile: nothing holds the file open.
            return volumes::resize(dir, volume_uuid, size_bytes);
        }
        let test = self.domain_type()? == DomainType::Test;
        let shown = path.display().to_string();
        let offline = self.vm(vm, |c| {
            let d = lookup(c, vm)?.ok_or_else(|| {
                Fail::Op(OpError::NotFound(format!("VM {vm} is not on this host")))
            })?;
            match d.block_resize(&shown, size_bytes, virt::sys::VIR_DOMAIN_BLOCK_RESIZE_BYTES) {
                Ok(()) => Ok(false),
                // No QEMU holds the test driver's files: the file itself is grown.
                Err(e) if unsupported(&e) && test => Ok(true),
                Err(e) => Err(Fail::Libvirt(e)),
            }
        })?;
        if offline {
            return volumes::resize(dir, volume_uuid, size_bytes);
        }
        let (_, f) = volumes::existing_file(dir, volume_uuid)?;
        tracing::info!(
            vm,
            volume = volume_uuid,
            virtual_size = f.virtual_size,
            "volume resized live"
        );
        Ok(f)
    }

    fn snapshot_volume(
        &self,
        s: &StorageSpec,
        volume_uuid: &str,
        snapshot_uuid: &str,
        _vm: Option<&str>,
    ) -> Result<pb::VolumeSnapshotReply, OpError> {
        let dir = Path::new(s.dir());
        volumes::check_volume_uuid(snapshot_uuid)?;
        if volumes::snapshot_path(dir, volume_uuid, snapshot_uuid).is_file() {
            return volumes::snapshot(dir, volume_uuid, snapshot_uuid);
        }
        // A QEMU process writing the file would keep writing the frozen one after the
        // rename: its live snapshot needs blockdev-snapshot, not built yet.
        let writers = self.volume_writers(s, volume_uuid)?;
        if !writers.is_empty() {
            return Err(OpError::WrongState(format!(
                "volume {volume_uuid} is in use by the running domain {}: a live snapshot under QEMU is not supported yet, stop the VM first",
                writers.join(", ")
            )));
        }
        volumes::snapshot(dir, volume_uuid, snapshot_uuid)
    }

    fn revert_volume(
        &self,
        s: &StorageSpec,
        volume_uuid: &str,
        snapshot_uuid: &str,
    ) -> Result<pb::VolumeSnapshotReply, OpError> {
        volumes::check_volume_uuid(volume_uuid)?;
        let path = volumes::volume_path(Path::new(s.dir()), volume_uuid);
        let users = self.users_of(&path)?;
        if !users.is_empty() {
            return Err(OpError::WrongState(format!(
                "volume {volume_uuid} ({}) is in use by domain {}: stop the VM before reverting it",
                path.display(),
                users.join(", ")
            )));
        }
        volumes::revert(Path::new(s.dir()), volume_uuid, snapshot_uuid)
    }

    fn delete_volume_snapshots(
        &self,
        s: &StorageSpec,
        volume_uuid: &str,
        snapshot_uuids: &[String],
    ) -> Result<pb::VolumeSnapshotReply, OpError> {
        let dir = Path::new(s.dir());
        volumes::check_volume_uuid(volume_uuid)?;
        if volumes::delete_needs_rebase(dir, volume_uuid, snapshot_uuids)? {
            let writers = self.volume_writers(s, volume_uuid)?;
            if !writers.is_empty() {
                return Err(OpError::WrongState(format!(
                    "volume {volume_uuid} is backed by a snapshot to delete and in use by the running domain {}: stop the VM first",
                    writers.join(", ")
                )));
            }
        }
        volumes::delete_snapshots(dir, volume_uuid, snapshot_uuids)
    }

    fn clone_volume(
        &self,
        src: &StorageSpec,
        source: &str,
        dst: &StorageSpec,
        uuid: &str,
    ) -> Result<pb::VolumeFile, OpError> {
        volumes::check_volume_uuid(source)?;
        let path = volumes::volume_path(Path::new(src.dir()), source);
        let users = self.users_of(&path)?;
        if !users.is_empty() {
            return Err(OpError::WrongState(format!(
                "volume {source} ({}) is in use by domain {}: a clone copies a quiescent disk, stop the VM first",
                path.display(),
                users.join(", ")
            )));
        }
        volumes::copy(Path::new(src.dir()), source, Path::new(dst.dir()), uuid)
    }

    fn delete_volume(&self, s: &StorageSpec, volume_uuid: &str) -> Result<bool, OpError> {
        volumes::check_volume_uuid(volume_uuid)?;
        let path = volumes::volume_path(Path::new(s.dir()), volume_uuid);
        let users = self.users_of(&path)?;
        if !users.is_empty() {
            return Err(OpError::WrongState(format!(
                "volume {volume_uuid} ({}) is in use by domain {}: stop the VM first",
                path.display(),
                users.join(", ")
            )));
        }
        volumes::delete(Path::new(s.dir()), volume_uuid)
    }
}

impl LibvirtBackend {
    /// Who holds the volume's file, and whether a QEMU process (not the test driver, whose
    /// domains open no file) may be writing it.
    fn volume_writers(&self, s: &StorageSpec, volume_uuid: &str) -> Result<Vec<String>, OpError> {
        volumes::check_volume_uuid(volume_uuid)?;
        let path = volumes::volume_path(Path::new(s.dir()), volume_uuid);
        let users = self.users_of(&path)?;
        if users.is_empty() || self.domain_type()? == DomainType::Test {
            return Ok(Vec::new());
        }
        Ok(users)
    }
}

/// A libvirt test-driver host description (`test:///<file>`): a host with these CPUs and
/// this memory, for tests and the demo.
pub fn test_host_xml(sockets: u32, cores: u32, threads: u32, memory_mib: u64) -> String {
    let cpus = sockets * cores * threads;
    let kib = memory_mib * 1024;
    format!(
        "<node>\n  <cpu>\n    <mhz>2400</mhz>\n    <model>x86_64</model>\n    <active>{cpus}</active>\n    \
         <nodes>1</nodes>\n    <sockets>{sockets}</sockets>\n    <cores>{cores}</cores>\n    \
         <threads>{threads}</threads>\n  </cpu>\n  <memory>{kib}</memory>\n</node>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SystemMounter;

    #[test]
    fn the_default_test_driver_reports_its_host() {
        let b = LibvirtBackend::open("test:///default", Box::new(SystemMounter)).unwrap();
        let f = b.facts().unwrap();
        assert_eq!(f.virtualization, "test");
        assert_eq!(f.hypervisor_type, "TEST");
        assert!(f.cpu_threads > 0 && f.memory_bytes > 0, "{f:?}");
        assert_eq!(f.architecture, "i686");
        assert!(f.libvirt_version.starts_with("9."), "{}", f.libvirt_version);
        let d = b.domains().unwrap();
        assert_eq!(d.len(), 1, "the default test driver has one domain: {d:?}");
        assert_eq!(d[0].name, "test");
        assert_eq!(d[0].state, "Running");
    }

    #[test]
    fn a_test_host_file_sets_cpus_and_memory() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("host.xml");
        std::fs::write(&p, test_host_xml(2, 4, 2, 8192)).unwrap();
        let uri = format!("test://{}", p.display());
        let b = LibvirtBackend::open(&uri, Box::new(SystemMounter)).unwrap();
        let f = b.facts().unwrap();
        assert_eq!(f.cpu_threads, 16);
        assert_eq!(f.cpu_sockets, 2);
        assert_eq!(f.cpu_cores_per_socket, 4);
        assert_eq!(f.cpu_threads_per_core, 2);
        assert_eq!(f.memory_bytes, 8192 * 1024 * 1024);
        assert!(b.domains().unwrap().is_empty());
    }

    const VM: &str = "0123456789abcdef0123456789abcdef";

    fn test_host(dir: &Path) -> LibvirtBackend {
        // The lookups of absent domains are expected; libvirt would print each one.
        virt::error::clear_error_callback();
        let p = dir.join("host.xml");
        std::fs::write(&p, test_host_xml(1, 2, 1, 4096)).unwrap();
        LibvirtBackend::open(&format!("test://{}", p.display()), Box::new(SystemMounter)).unwrap()
    }

    fn vm_spec(disk: &Path) -> pb::VmSpec {
        pb::VmSpec {
            vm_uuid: VM.into(),
            name: "db's <primary>".into(),
            cpu_num: 1,
            memory_bytes: 256 << 20,
            disks: vec![pb::DiskSpec {
                volume_uuid: "aaaabbbbccccddddeeeeffff00001111".into(),
                path: disk.to_str().unwrap().into(),
                format: "qcow2".into(),
                device_id: 0,
            }],
            console_password: "pw'1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn libvirt_keeps_the_domain_as_built_and_forgets_it_when_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let b = test_host(dir.path());
        let disk = dir.path().join("root.qcow2");
        std::fs::write(&disk, b"").unwrap();
        let d = b.start_vm(&vm_spec(&disk)).unwrap();
        assert_eq!((d.name.as_str(), d.state.as_str()), (VM, "Running"));
        let xml = b
            .with(|c| {
                c.lookup_domain_by_name(VM)?
                    .xml_desc(virt::sys::VIR_DOMAIN_XML_SECURE)
            })
            .unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.attribute("type"), Some("test"));
        let find = |tag: &str| {
            root.descendants()
                .find(|n| n.has_tag_name(tag))
                .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        };
        assert_eq!(find("title").text(), Some("db's <primary>"));
        assert_eq!(find("graphics").attribute("passwd"), Some("pw'1"));
        assert!(find("features").children().any(|n| n.has_tag_name("acpi")));
        assert_eq!(
            domain_xml::disk_files(&xml).unwrap(),
            [disk.to_str().unwrap()]
        );
        b.stop_vm(VM, StopMode::Grace(Duration::from_secs(2)))
            .unwrap();
        assert!(b.domains().unwrap().is_empty(), "stopped means undefined");
        b.stop_vm(VM, StopMode::Cold).unwrap();
        b.destroy_vm(VM).unwrap();
    }

    #[test]
    fn a_missing_disk_or_a_foreign_domain_with_the_vms_uuid_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = test_host(dir.path());
        let e = b
            .start_vm(&vm_spec(&dir.path().join("missing.qcow2")))
            .unwrap_err();
        assert!(
            matches!(&e, OpError::WrongState(m) if m.contains("not on this host")),
            "{e:?}"
        );
        assert!(b.domains().unwrap().is_empty(), "nothing defined");
        let foreign = format!(
            "<domain type='test'><name>foreign</name><uuid>{}</uuid><memory>65536</memory>\
             <os><type>hvm</type></os></domain>",
            domain_xml::libvirt_uuid(VM)
        );
        b.with(|c| c.define_domain_xml(&foreign).map(|_| ()))
            .unwrap();
        let disk = dir.path().join("root.qcow2");
        std::fs::write(&disk, b"").unwrap();
        for e in [
            b.start_vm(&vm_spec(&disk)).unwrap_err(),
            b.pause_vm(VM).unwrap_err(),
            b.destroy_vm(VM).unwrap_err(),
        ] {
            assert!(
                matches!(&e, OpError::WrongState(m) if m.contains("\"foreign\" holds the uuid")),
                "{e:?}"
            );
        }
        assert_eq!(
            b.domains().unwrap().len(),
            1,
            "the foreign domain is left alone"
        );
    }

    #[test]
    fn a_migration_between_test_hosts_never_runs_the_vm_twice_and_repeats_harmlessly() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let (source, destination) = (test_host(&a), test_host(&b));
        let disk = dir.path().join("shared.qcow2");
        std::fs::write(&disk, b"").unwrap();
        let spec = vm_spec(&disk);
        source.start_vm(&spec).unwrap();
        let states = |h: &LibvirtBackend| -> Vec<String> {
            h.domains().unwrap().into_iter().map(|d| d.state).collect()
        };
        let incoming = destination.prepare_migration(&spec).unwrap().unwrap();
        assert_eq!(incoming.state, "Stopped", "defined, not running");
        assert_eq!(states(&source), ["Running"]);
        source.migrate_vm(VM, "qemu+tls://b/system").unwrap();
        assert!(
            source.domains().unwrap().is_empty(),
            "undefined on the source"
        );
        assert_eq!(destination.start_vm(&spec).unwrap().state, "Running");
        // A new leader re-running every call of the step changes nothing.
        assert_eq!(
            destination.prepare_migration(&spec).unwrap().unwrap().state,
            "Running"
        );
        source.migrate_vm(VM, "qemu+tls://b/system").unwrap();
        assert_eq!(destination.start_vm(&spec).unwrap().state, "Running");
        assert_eq!(states(&destination), ["Running"]);
        assert!(source.domains().unwrap().is_empty());
        // Disks the destination cannot see (local storage) define nothing there.
        let c = dir.path().join("c");
        std::fs::create_dir_all(&c).unwrap();
        let third = test_host(&c);
        let e = third
            .prepare_migration(&vm_spec(&dir.path().join("local-only.qcow2")))
            .unwrap_err();
        assert!(
            matches!(&e, OpError::WrongState(m) if m.contains("not on this host")),
            "{e:?}"
        );
        assert!(third.domains().unwrap().is_empty());
    }

    #[test]
    fn an_unknown_uri_is_a_clear_error() {
        let e = LibvirtBackend::open("nosuch:///x", Box::new(SystemMounter)).unwrap_err();
        assert!(e.0.contains("cannot open libvirt nosuch:///x"), "{e}");
    }

    #[test]
    fn qemus_user_comes_from_qemu_conf_and_kvm_needs_read_and_write() {
        let conf = "# user = \"qemu\"\n#group = \"x\"\nuser = \"+0\"\n  group=\"kvm\"\n";
        assert_eq!(qemu_conf_value(conf, "user").as_deref(), Some("+0"));
        assert_eq!(qemu_conf_value(conf, "group").as_deref(), Some("kvm"));
        assert_eq!(qemu_conf_value("#user = \"root\"\n", "user"), None);
        assert_eq!(numeric_id("+64055"), Some(64055));
        assert_eq!(
            numeric_id("64055"),
            None,
            "a bare number is a user name to libvirt"
        );
        assert_eq!(user_ids("root").map(|(u, _)| u), Some(0));
        assert_eq!(group_id("root"), Some(0));
        // /dev/kvm as the kernel makes it without udev, and as udev leaves it.
        let (qemu, kvm) = (64055, 109);
        assert!(!rw_allowed(0o600, 0, 0, qemu, &[kvm]));
        assert!(rw_allowed(0o660, 0, kvm, qemu, &[kvm]));
        assert!(
            !rw_allowed(0o640, 0, kvm, qemu, &[kvm]),
            "read-only is not enough"
        );
        assert!(!rw_allowed(0o660, 0, kvm, qemu, &[]), "not in group kvm");
        assert!(rw_allowed(0o666, 0, 0, qemu, &[]));
        assert!(rw_allowed(0o600, 0, 0, 0, &[]), "QEMU as root");
    }
}
