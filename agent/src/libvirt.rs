//! The production backend: libvirt through the `virt` crate. `test:///default` (or
//! `test:///<file.xml>` describing a host) in tests and the demo, `qemu:///system` on a KVM host.

use std::path::Path;
use std::sync::Mutex;

use proto::agent::v1 as pb;
use virt::connect::Connect;
use virt::domain::DomainState;

use crate::backend::BackendError;
use crate::backend::HostBackend;
use crate::backend::StorageSpec;
use crate::storage;
use crate::storage::Mounter;

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

    fn with<T>(
        &self,
        f: impl Fn(&Connect) -> Result<T, virt::error::Error>,
    ) -> Result<T, BackendError> {
        let mut g = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // One retry over a fresh connection: a libvirtd restart breaks the old one.
        for attempt in 0..2 {
            if g.is_none() {
                let c = Connect::open(Some(&self.uri))
                    .map_err(|e| BackendError(format!("cannot open libvirt {}: {e}", self.uri)))?;
                *g = Some(c);
            }
            let Some(c) = g.as_ref() else { continue };
            match f(c) {
                Ok(v) => return Ok(v),
                Err(e) if attempt == 0 && !c.is_alive().unwrap_or(false) => {
                    tracing::warn!(uri = %self.uri, error = %e, "libvirt connection lost; reopening");
                    *g = None;
                }
                Err(e) => return Err(BackendError(format!("libvirt {}: {e}", self.uri))),
            }
        }
        Err(BackendError(format!("libvirt {} keeps failing", self.uri)))
    }
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
        } else if kvm_guest && Path::new("/dev/kvm").exists() {
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
                let info = d.info()?;
                out.push(pb::Domain {
                    name: d.name()?,
                    uuid: d.uuid_string()?,
                    state: state_name(info.state.unwrap_or(DomainState::NoState)).into(),
                    vcpus: info.nr_virt_cpu,
                    memory_bytes: info.max_mem.saturating_mul(1024),
                });
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

    #[test]
    fn an_unknown_uri_is_a_clear_error() {
        let e = LibvirtBackend::open("nosuch:///x", Box::new(SystemMounter)).unwrap_err();
        assert!(e.0.contains("cannot open libvirt nosuch:///x"), "{e}");
    }
}
