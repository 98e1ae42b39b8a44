//! The gRPC service the leader drives (`zstack.agent.v1.Agent`).
//!
//! Every request passes the same gate before it does anything: a header of this cluster and
//! protocol version, a client certificate naming the node the header claims as leader, then the
//! term check (which persists a newer term before the request proceeds). Only then is the host
//! binding checked and the call served. A simulator serves many hosts, one per listening address,
//! selected by the address the caller connected to.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::RwLock;
use std::time::Duration;

use proto::agent::v1 as pb;
use proto::agent::v1::agent_server::Agent;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use crate::backend::BackendError;
use crate::backend::HostBackend;
use crate::backend::OpError;
use crate::backend::StopMode;
use crate::backend::StorageKind;
use crate::backend::StorageSpec;
use crate::backend::VolumeRequest;
use crate::domain_xml;
use crate::durable;
use crate::term::TermError;
use crate::term::TermStore;
use crate::tls::node_of;
use crate::volumes;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    Status::internal(format!("{what}: {e}"))
}

/// A grace stop's wait when the request names none.
const DEFAULT_GRACE_TIMEOUT: Duration = Duration::from_secs(60);

/// One operation at a time per key (a VM, a volume): a start retried by the leader after a
/// timeout must not race the first one (two creates of one domain, or a rollback undefining
/// the domain the other just started).
#[derive(Debug, Default)]
struct KeyedLocks {
    held: Mutex<HashSet<String>>,
    released: Condvar,
}

struct KeyGuard<'a> {
    locks: &'a KeyedLocks,
    key: String,
}

impl KeyedLocks {
    fn lock(&self, key: String) -> KeyGuard<'_> {
        let mut held = lock(&self.held);
        while held.contains(&key) {
            held = self
                .released
                .wait(held)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        held.insert(key.clone());
        KeyGuard { locks: self, key }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        lock(&self.locks.held).remove(&self.key);
        self.locks.released.notify_all();
    }
}

/// A VM or volume refusal or failure as the caller sees it.
fn op_status(e: OpError) -> Status {
    match e {
        OpError::Invalid(m) => Status::invalid_argument(m),
        OpError::NotFound(m) => Status::not_found(m),
        OpError::WrongState(m) => Status::failed_precondition(m),
        OpError::Failed(m) => Status::internal(m),
        OpError::Unavailable(m) => Status::unavailable(m),
    }
}

/// Which host record this agent serves: kept in a file on a real host (so a second cluster
/// record for the same machine is refused after restarts too), in memory for a simulated one.
#[derive(Debug)]
struct Binding {
    file: Option<PathBuf>,
    uuid: Mutex<Option<String>>,
}

impl Binding {
    fn open(file: Option<PathBuf>) -> std::io::Result<Self> {
        let uuid = match &file {
            Some(f) => durable::read(f)?.map(|s| s.trim().to_string()),
            None => None,
        };
        Ok(Self {
            file,
            uuid: Mutex::new(uuid.filter(|u| !u.is_empty())),
        })
    }

    fn bind(&self, host_uuid: &str) -> Result<(), Status> {
        let mut g = lock(&self.uuid);
        match g.as_deref() {
            Some(u) if u == host_uuid => Ok(()),
            Some(u) => Err(Status::failed_precondition(format!(
                "this agent already serves host {u}, not {host_uuid}: delete that host first (or remove the agent's host-uuid file when the record is gone)"
            ))),
            None => {
                if let Some(f) = &self.file {
                    durable::write(f, format!("{host_uuid}\n").as_bytes())
                        .map_err(|e| internal(&format!("writing {}", f.display()), e))?;
                }
                *g = Some(host_uuid.to_string());
                Ok(())
            }
        }
    }

    fn unbind(&self, host_uuid: &str) -> Result<bool, Status> {
        let mut g = lock(&self.uuid);
        if g.as_deref() != Some(host_uuid) {
            return Ok(false);
        }
        if let Some(f) = &self.file {
            match std::fs::remove_file(f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(internal(&format!("removing {}", f.display()), e)),
            }
        }
        *g = None;
        Ok(true)
    }

    fn bound(&self) -> Option<String> {
        lock(&self.uuid).clone()
    }

    fn check(&self, host_uuid: &str) -> Result<(), Status> {
        match lock(&self.uuid).as_deref() {
            Some(u) if u == host_uuid => Ok(()),
            Some(u) => Err(Status::failed_precondition(format!(
                "this agent serves host {u}, not {host_uuid}"
            ))),
            None => Err(Status::failed_precondition(format!(
                "this agent is not attached to host {host_uuid} yet: attach it first"
            ))),
        }
    }
}

/// The domain list as last reported, and its version.
#[derive(Debug)]
struct DomainView {
    version: u64,
    domains: Vec<pb::Domain>,
}

/// One host the process serves.
pub struct HostSlot {
    backend: Arc<dyn HostBackend>,
    binding: Binding,
    storages_file: Option<PathBuf>,
    storages: Mutex<BTreeMap<String, StorageSpec>>,
    view: Mutex<DomainView>,
    /// Per VM and per volume: one operation at a time.
    ops: KeyedLocks,
    /// Starts (read) against volume deletions (write): a volume's file is never removed
    /// between a start's check of it and the domain's definition.
    files: RwLock<()>,
}

impl std::fmt::Debug for HostSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSlot")
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

impl HostSlot {
    /// A host whose binding and storages live in `data_dir` (`None`: in memory).
    pub fn new(backend: Arc<dyn HostBackend>, data_dir: Option<PathBuf>) -> std::io::Result<Self> {
        let storages_file = data_dir.as_ref().map(|d| d.join("storages.json"));
        let storages = match &storages_file {
            Some(f) => match durable::read(f)? {
                Some(s) => serde_json::from_str::<Vec<StorageSpec>>(&s)
                    .map_err(|e| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{}: {e}", f.display()),
                        )
                    })?
                    .into_iter()
                    .map(|s| (s.uuid.clone(), s))
                    .collect(),
                None => BTreeMap::new(),
            },
            None => BTreeMap::new(),
        };
        // Versions restart from a random base on every start, so a version the leader holds from
        // an earlier run of this agent never matches by accident.
        let version = (u64::from(rand::random::<u32>()) << 32) | 1;
        Ok(Self {
            backend,
            binding: Binding::open(data_dir.map(|d| d.join("host-uuid")))?,
            storages_file,
            storages: Mutex::new(storages),
            view: Mutex::new(DomainView {
                version,
                domains: Vec::new(),
            }),
            ops: KeyedLocks::default(),
            files: RwLock::new(()),
        })
    }

    /// The backend (tests put domains on simulated hosts through it).
    pub fn backend(&self) -> &Arc<dyn HostBackend> {
        &self.backend
    }

    /// Re-list domains; the version moves when anything changed.
    fn refresh(&self) -> Result<(u64, Vec<pb::Domain>), BackendError> {
        let now = self.backend.domains()?;
        let mut v = lock(&self.view);
        if now != v.domains {
            v.version += 1;
            v.domains = now;
        }
        Ok((v.version, v.domains.clone()))
    }

    /// Run a VM operation under its VM's lock, then re-list the domains so the version a
    /// ping reports has moved past the change already.
    fn vm_op<T>(
        &self,
        vm: &str,
        starts: bool,
        f: impl FnOnce(&dyn HostBackend) -> Result<T, OpError>,
    ) -> Result<T, OpError> {
        let _vm = self.ops.lock(format!("vm/{vm}"));
        let out = {
            let _files = starts.then(|| {
                self.files
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            });
            f(self.backend.as_ref())
        };
        if let Err(e) = self.refresh() {
            tracing::warn!(vm, error = %e, "cannot list domains after a VM operation");
        }
        out
    }

    /// Run a volume operation under its volume's lock; a deletion also excludes starts.
    fn volume_op<T>(
        &self,
        volume: &str,
        deletes: bool,
        f: impl FnOnce(&dyn HostBackend) -> Result<T, OpError>,
    ) -> Result<T, OpError> {
        let _volume = self.ops.lock(format!("volume/{volume}"));
        let _files = deletes.then(|| {
            self.files
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        });
        f(self.backend.as_ref())
    }

    /// A primary storage prepared on this host.
    fn storage(&self, uuid: &str) -> Result<StorageSpec, Status> {
        lock(&self.storages).get(uuid).cloned().ok_or_else(|| {
            Status::failed_precondition(format!(
                "primary storage {uuid} is not prepared on this host: prepare it first (PreparePrimaryStorage)"
            ))
        })
    }

    fn capacities(&self) -> Vec<pb::StorageCapacity> {
        let specs: Vec<StorageSpec> = lock(&self.storages).values().cloned().collect();
        specs
            .iter()
            .map(|s| self.backend.storage_capacity(s))
            .collect()
    }

    fn remember(&self, s: StorageSpec) -> Result<(), Status> {
        let mut g = lock(&self.storages);
        if g.get(&s.uuid) == Some(&s) {
            return Ok(());
        }
        let mut next = g.clone();
        next.insert(s.uuid.clone(), s);
        if let Some(f) = &self.storages_file {
            let json = serde_json::to_vec_pretty(&next.values().collect::<Vec<_>>())
                .map_err(|e| internal("encoding storages", e))?;
            durable::write(f, &json)
                .map_err(|e| internal(&format!("writing {}", f.display()), e))?;
        }
        *g = next;
        Ok(())
    }
}

/// The hosts of this process.
#[derive(Debug)]
pub enum Hosts {
    /// A real agent: one host, whatever address the caller used.
    Single(Arc<HostSlot>),
    /// A simulator: one host per listening address.
    ByAddress(HashMap<IpAddr, Arc<HostSlot>>),
}

/// The service.
#[derive(Debug, Clone)]
pub struct AgentService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cluster_id: String,
    boot_id: String,
    term: TermStore,
    hosts: Hosts,
    images: crate::image_service::SharedImageStores,
    /// The export HTTP server's port; `None`: no exports are served.
    export_port: Option<u16>,
}

/// The host a request names, which must be the one this slot is bound to.
fn bound_host(slot: &HostSlot, header: Option<&pb::Header>) -> Result<String, Status> {
    let host_uuid = header.map(|h| h.host_uuid.clone()).unwrap_or_default();
    slot.binding.check(&host_uuid)?;
    Ok(host_uuid)
}

/// Run `f` on the slot, off the async workers when the backend blocks.
async fn on_slot<T: Send + 'static>(
    slot: &Arc<HostSlot>,
    f: impl FnOnce(&HostSlot) -> T + Send + 'static,
) -> Result<T, Status> {
    if slot.backend.blocking() {
        let s = slot.clone();
        tokio::task::spawn_blocking(move || f(&s))
            .await
            .map_err(|e| internal("agent task", e))
    } else {
        Ok(f(slot))
    }
}

fn backend_status(e: BackendError) -> Status {
    Status::unavailable(e.0)
}

impl AgentService {
    /// A service for `cluster_id` keeping its term in `term` and serving `hosts`.
    pub fn new(cluster_id: &str, term: TermStore, hosts: Hosts) -> Self {
        Self {
            inner: Arc::new(Inner {
                cluster_id: cluster_id.to_string(),
                boot_id: format!("{:032x}", rand::random::<u128>()),
                term,
                hosts,
                images: Arc::new(crate::image_service::ImageStores::in_memory()),
                export_port: None,
            }),
        }
    }

    /// With the image stores kept in `<data_dir>/imagestores.json`.
    pub fn with_image_stores(mut self, data_dir: &std::path::Path) -> std::io::Result<Self> {
        let stores =
            crate::image_service::ImageStores::open(Some(data_dir.join("imagestores.json")))?;
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.images = Arc::new(stores),
            None => return Err(std::io::Error::other("the service is already shared")),
        }
        Ok(self)
    }

    /// With exports served on `port` (by `export_http`, which the caller runs).
    pub fn with_export_port(mut self, port: u16) -> std::io::Result<Self> {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.export_port = Some(port),
            None => return Err(std::io::Error::other("the service is already shared")),
        }
        Ok(self)
    }

    /// The image stores (the export HTTP server serves from them).
    pub fn image_stores(&self) -> crate::image_service::SharedImageStores {
        self.inner.images.clone()
    }

    /// This process's boot id.
    pub fn boot_id(&self) -> &str {
        &self.inner.boot_id
    }

    /// The gate every request passes: who is calling, with which term, about which host slot.
    fn admit<T>(
        &self,
        req: &Request<T>,
        header: Option<&pb::Header>,
    ) -> Result<(Arc<HostSlot>, u64), Status> {
        let h = header.ok_or_else(|| Status::invalid_argument("request has no header"))?;
        if h.protocol_version != proto::agent::PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "caller speaks agent protocol version {}, this agent speaks {}: upgrade the older side",
                h.protocol_version,
                proto::agent::PROTOCOL_VERSION
            )));
        }
        if h.cluster_id != self.inner.cluster_id {
            return Err(Status::permission_denied(format!(
                "this agent belongs to cluster {:?}, not {:?}",
                self.inner.cluster_id, h.cluster_id
            )));
        }
        let certs = req.peer_certs().ok_or_else(|| {
            Status::unauthenticated("no client certificate: the agent needs mutual TLS with a management node's certificate")
        })?;
        let cert = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("empty client certificate chain"))?;
        let (cluster, node) = node_of(cert).map_err(Status::unauthenticated)?;
        if cluster != self.inner.cluster_id {
            return Err(Status::permission_denied(format!(
                "client certificate is for cluster {cluster:?}, not {:?}",
                self.inner.cluster_id
            )));
        }
        if node != h.leader_id {
            return Err(Status::permission_denied(format!(
                "client certificate names node {node}, but the request claims leader {}",
                h.leader_id
            )));
        }
        let slot = match &self.inner.hosts {
            Hosts::Single(s) => s.clone(),
            Hosts::ByAddress(m) => {
                let ip = req
                    .local_addr()
                    .map(|a| a.ip())
                    .ok_or_else(|| internal("simulator", "no local address on the connection"))?;
                m.get(&ip)
                    .cloned()
                    .ok_or_else(|| Status::not_found(format!("no simulated host at {ip}")))?
            }
        };
        let term = self.inner.term.observe(h.term).map_err(|e| match e {
            TermError::Stale { .. } => Status::failed_precondition(e.to_string()),
            other => Status::unavailable(other.to_string()),
        })?;
        Ok((slot, term))
    }
}

/// The VM uuid of a request, checked before it names a domain.
fn vm_uuid_of(uuid: &str) -> Result<(), Status> {
    domain_xml::check_vm_uuid(uuid).map_err(Status::invalid_argument)
}

impl AgentService {
    /// A VM call that answers the domain after it: admitted (term fencing before anything
    /// else, so a deposed leader learns that first), for the bound host, then `prepare` reads
    /// the VM uuid and the operation out of the request, run off the async workers under the
    /// VM's lock.
    async fn vm_call<T, O>(
        &self,
        call: &'static str,
        req: Request<T>,
        header: impl Fn(&T) -> Option<&pb::Header> + Send,
        prepare: impl FnOnce(&T) -> Result<(String, O), Status> + Send,
    ) -> Result<Response<pb::VmStateReply>, Status>
    where
        T: Send,
        O: FnOnce(&dyn HostBackend, &str) -> Result<Option<pb::Domain>, OpError> + Send + 'static,
    {
        let (slot, term) = self.admit(&req, header(req.get_ref()))?;
        bound_host(&slot, header(req.get_ref()))?;
        let (vm, op) = prepare(req.get_ref())?;
        drop(req);
        vm_uuid_of(&vm)?;
        let domain = on_slot(&slot, move |s| s.vm_op(&vm, false, |b| op(b, &vm)))
            .await?
            .map_err(|e| {
                tracing::warn!(term, call, error = %e, "VM call refused");
                op_status(e)
            })?;
        Ok(Response::new(pb::VmStateReply { domain }))
    }
}

#[tonic::async_trait]
impl Agent for AgentService {
    async fn create_volume(
        &self,
        req: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::CreateVolumeReply>, Status> {
        let (slot, _) = self.admit(&req, req.get_ref().header.as_ref())?;
        let r = req.into_inner();
        bound_host(&slot, r.header.as_ref())?;
        volumes::check_volume_uuid(&r.volume_uuid).map_err(op_status)?;
        let storage = slot.storage(&r.primary_storage_uuid)?;
        let v = VolumeRequest {
            volume_uuid: r.volume_uuid,
            backing: (!r.backing_path.is_empty()).then_some(r.backing_path),
            size_bytes: r.size_bytes,
        };
        let file = on_slot(&slot, move |s| {
            s.volume_op(&v.volume_uuid, false, |b| b.create_volume(&storage, &v))
        })
        .await?
        .map_err(op_status)?;
        Ok(Response::new(pb::CreateVolumeReply { file: Some(file) }))
    }

    async fn delete_volume(
        &self,
        req: Request<pb::DeleteVolumeRequest>,
    ) -> Result<Response<pb::DeleteVolumeReply>, Status> {
        let (slot, _) = self.admit(&req, req.get_ref().header.as_ref())?;
        let r = req.into_inner();
        bound_host(&slot, r.header.as_ref())?;
        volumes::check_volume_uuid(&r.volume_uuid).map_err(op_status)?;
        let storage = slot.storage(&r.primary_storage_uuid)?;
        let uuid = r.volume_uuid;
        let deleted = on_slot(&slot, move |s| {
            s.volume_op(&uuid, true, |b| b.delete_volume(&storage, &uuid))
        })
        .await?
        .map_err(op_status)?;
        Ok(Response::new(pb::DeleteVolumeReply { deleted }))
    }

    async fn start_vm(
        &self,
        req: Request<pb::StartVmRequest>,
    ) -> Result<Response<pb::VmStateReply>, Status> {
        let (slot, term) = self.admit(&req, req.get_ref().header.as_ref())?;
        let r = req.into_inner();
        bound_host(&slot, r.header.as_ref())?;
        let spec =
            r.vm.ok_or_else(|| Status::invalid_argument("StartVm carries no VM spec"))?;
        // Refused here, before the VM's lock or libvirt: a bad spec changes nothing.
        domain_xml::validate(&spec).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let domain = on_slot(&slot, move |s| {
            s.vm_op(&spec.vm_uuid, true, |b| b.start_vm(&spec))
        })
        .await?
        .map_err(|e| {
            tracing::warn!(term, error = %e, "StartVm refused");
            op_status(e)
        })?;
        Ok(Response::new(pb::VmStateReply {
            domain: Some(domain),
        }))
    }

    async fn prepare_migration(
        &self,
        req: Request<pb::PrepareMigrationRequest>,
    ) -> Result<Response<pb::VmStateReply>, Status> {
        let (slot, term) = self.admit(&req, req.get_ref().header.as_ref())?;
        let r = req.into_inner();
        bound_host(&slot, r.header.as_ref())?;
        let spec =
            r.vm.ok_or_else(|| Status::invalid_argument("PrepareMigration carries no VM spec"))?;
        domain_xml::validate(&spec).map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Under the files lock like a start: a volume is not deleted under an incoming VM.
        let domain = on_slot(&slot, move |s| {
            s.vm_op(&spec.vm_uuid, true, |b| b.prepare_migration(&spec))
        })
        .await?
        .map_err(|e| {
            tracing::warn!(term, error = %e, "PrepareMigration refused");
            op_status(e)
        })?;
        Ok(Response::new(pb::VmStateReply { domain }))
    }

    async fn migrate_vm(
        &self,
        req: Request<pb::MigrateVmRequest>,
    ) -> Result<Response<pb::VmStateReply>, Status> {
        self.vm_call(
            "MigrateVm",
            req,
            |r| r.header.as_ref(),
            |r| {
                let uri = r.destination_uri.clone();
                Ok((r.vm_uuid.clone(), move |b: &dyn HostBackend, vm: &str| {
                    b.migrate_vm(vm, &uri).map(|()| None)
                }))
            },
        )
        .await
    }

    async fn stop_vm(
        &self,
        req: Request<pb::StopVmRequest>,
    ) -> Result<Response<pb::VmStateReply>, Status> {
        self.vm_call(
            "StopVm",
            req,
            |r| r.header.as_ref(),
            |r| {
                let mode = match r.r#type.as_str() {
                    "" | "grace" => StopMode::Grace(match r.timeout_seconds {
                        0 => DEFAULT_GRACE_TIMEOUT,
                        t => Duration::from_secs(u64::from(t)),
                    }),
                    "cold" => StopMode::Cold,
                    other => {
                        return Err(Status::invalid_argument(format!(
                            "stop type {other:?} is not \"grace\" or \"cold\""
                        )))
                    }
                };
                Ok((r.vm_uuid.clone(), move |b: &dyn HostBackend, vm: &str| {
                    b.stop_vm(vm, mode).map(|()| None)
                }))
            },
        )
        .await
    }

    async fn reboot_vm(
        &self,
        req: Request<pb::VmRequest>,
    ) -> Result<Response<pb::VmStateReply>, Status> {
        self.vm_call(
            "RebootVm",
            req,
            |r| r.header.as_ref(),
            |r| {
                Ok((r.vm_uuid.clone(), |b: &dyn HostBackend, vm: &str| {
                    b.reboot_vm(vm).map(Some)
                }))
            },
        )
        .await
    }

    async fn pause_vm(
        &self,
        req: Request<pb::VmRequest>,
    ) -> Result<Response<pb::VmStateReply>, Status> {
        self.vm_call(
            "PauseVm",
            req,
            |r| r.header.as_ref(),
            |r| {
                Ok((r.vm_uuid.clone(), |b: &dyn HostBackend, vm: &str| {
                    b.pause_vm(vm).map(Some)
                }))
            },
        )
        .await
    }

    async fn resume_vm(
        &self,
        req: Request<pb::VmRequest>,
    ) -> Result<Response<pb::VmStateReply>, Status> {
        self.vm_call(
            "ResumeVm",
            req,
            |r| r.header.as_ref(),
            |r| {
                Ok((r.vm_uuid.clone(), |b: &dyn HostBackend, vm: &str| {
                    b.resume_vm(vm).map(Some)
                }))
            },
        )
        .await
    }

    async fn destroy_vm(
        &self,
        req: Request<pb::VmRequest>,
    ) -> Result<Response<pb::VmStateReply>, Status> {
        self.vm_call(
            "DestroyVm",
            req,
            |r| r.header.as_ref(),
            |r| {
                Ok((r.vm_uuid.clone(), |b: &dyn HostBackend, vm: &str| {
                    b.destroy_vm(vm).map(|()| None)
                }))
            },
        )
        .await
    }

    async fn attach(
        &self,
        req: Request<pb::AttachRequest>,
    ) -> Result<Response<pb::AttachReply>, Status> {
        let (slot, term) = self.admit(&req, req.get_ref().header.as_ref())?;
        let host_uuid = req.get_ref().host_uuid.clone();
        if host_uuid.is_empty() {
            return Err(Status::invalid_argument("attach names no host uuid"));
        }
        slot.binding.bind(&host_uuid)?;
        let facts = on_slot(&slot, |s| s.backend.facts())
            .await?
            .map_err(backend_status)?;
        tracing::info!(host = %host_uuid, term, "attached");
        Ok(Response::new(pb::AttachReply {
            facts: Some(facts),
            boot_id: self.inner.boot_id.clone(),
            term,
            agent_version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    type DownloadImageStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<pb::DownloadProgress, Status>> + Send + 'static>,
    >;

    async fn connect_image_store(
        &self,
        req: Request<pb::ConnectImageStoreRequest>,
    ) -> Result<Response<pb::ImageStoreCapacity>, Status> {
        self.admit(&req, req.get_ref().header.as_ref())?;
        let r = req.into_inner();
        let images = self.inner.images.clone();
        let (total, available) =
            tokio::task::spawn_blocking(move || images.connect(&r.backup_storage_uuid, &r.url))
                .await
                .map_err(|e| internal("agent task", e))??;
        Ok(Response::new(pb::ImageStoreCapacity {
            total_bytes: total,
            available_bytes: available,
        }))
    }

    async fn disconnect_image_store(
        &self,
        req: Request<pb::DisconnectImageStoreRequest>,
    ) -> Result<Response<pb::DisconnectImageStoreReply>, Status> {
        let (slot, term) = self.admit(&req, req.get_ref().header.as_ref())?;
        let bs = req.into_inner().backup_storage_uuid;
        if bs.is_empty() {
            return Err(Status::invalid_argument("no backup storage uuid"));
        }
        let images = self.inner.images.clone();
        let b = bs.clone();
        let (was_connected, left) = tokio::task::spawn_blocking(move || images.disconnect(&b))
            .await
            .map_err(|e| internal("agent task", e))??;
        tracing::info!(bs = %bs, term, was_connected, image_stores = left, "image store disconnected");
        Ok(Response::new(pb::DisconnectImageStoreReply {
            was_connected,
            image_stores: u32::try_from(left).unwrap_or(u32::MAX),
            host_uuid: slot.binding.bound().unwrap_or_default(),
        }))
    }

    async fn download_image(
        &self,
        req: Request<pb::DownloadImageRequest>,
    ) -> Result<Response<Self::DownloadImageStream>, Status> {
        self.admit(&req, req.get_ref().header.as_ref())?;
        let r = req.into_inner();
        let store = self.inner.images.store(&r.backup_storage_uuid)?;
        let dl = crate::image_store::DownloadRequest {
            image_uuid: r.image_uuid,
            url: r.url,
            expected_md5: (!r.md5.is_empty()).then_some(r.md5),
            format_hint: (!r.format.is_empty()).then_some(r.format),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(crate::image_service::download(store, dl, tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn delete_image(
        &self,
        req: Request<pb::DeleteImageRequest>,
    ) -> Result<Response<pb::DeleteImageReply>, Status> {
        self.admit(&req, req.get_ref().header.as_ref())?;
        let r = req.into_inner();
        let store = self.inner.images.store(&r.backup_storage_uuid)?;
        let deleted = tokio::task::spawn_blocking(move || {
            // Its export first: a deleted image is never served.
            crate::image_export::remove(&store.root, &r.image_uuid)?;
            store.delete(&r.image_uuid)
        })
        .await
        .map_err(|e| internal("agent task", e))?
        .map_err(crate::image_service::status_of)?;
        Ok(Response::new(pb::DeleteImageReply { deleted }))
    }

    async fn export_image(
        &self,
        req: Request<pb::ExportImageRequest>,
    ) -> Result<Response<pb::ExportImageReply>, Status> {
        self.admit(&req, req.get_ref().header.as_ref())?;
        let Some(http_port) = self.inner.export_port else {
            return Err(crate::image_service::status_of(
                crate::image_store::ImageError::ExportsDisabled,
            ));
        };
        let r = req.into_inner();
        let store = self.inner.images.store(&r.backup_storage_uuid)?;
        let format = (!r.format.is_empty()).then_some(r.format.as_str());
        let e = crate::image_export::export(&store, &r.image_uuid, format, &r.name)
            .await
            .map_err(crate::image_service::status_of)?;
        Ok(Response::new(pb::ExportImageReply {
            path: e.path(&r.backup_storage_uuid),
            http_port: u32::from(http_port),
            md5: e.md5,
            size: e.size,
            format: e.format,
        }))
    }

    async fn delete_exported_image(
        &self,
        req: Request<pb::DeleteExportedImageRequest>,
    ) -> Result<Response<pb::DeleteExportedImageReply>, Status> {
        self.admit(&req, req.get_ref().header.as_ref())?;
        let r = req.into_inner();
        let store = self.inner.images.store(&r.backup_storage_uuid)?;
        let deleted = tokio::task::spawn_blocking(move || {
            crate::image_export::remove(&store.root, &r.image_uuid)
        })
        .await
        .map_err(|e| internal("agent task", e))?
        .map_err(crate::image_service::status_of)?;
        Ok(Response::new(pb::DeleteExportedImageReply { deleted }))
    }

    async fn cache_image(
        &self,
        req: Request<pb::CacheImageRequest>,
    ) -> Result<Response<pb::CacheImageReply>, Status> {
        let (slot, _) = self.admit(&req, req.get_ref().header.as_ref())?;
        let r = req.into_inner();
        bound_host(&slot, r.header.as_ref())?;
        let storage = slot.storage(&r.primary_storage_uuid)?;
        let cache = crate::image_service::cache_of(storage.dir());
        let info = cache
            .download(
                crate::image_store::DownloadRequest {
                    image_uuid: r.image_uuid,
                    url: r.source_url,
                    expected_md5: (!r.md5.is_empty()).then_some(r.md5),
                    format_hint: None,
                },
                |_| {},
            )
            .await
            .map_err(crate::image_service::status_of)?;
        Ok(Response::new(pb::CacheImageReply {
            image: Some(crate::image_service::file_of(&info)),
        }))
    }

    async fn detach(
        &self,
        req: Request<pb::DetachRequest>,
    ) -> Result<Response<pb::DetachReply>, Status> {
        let (slot, term) = self.admit(&req, req.get_ref().header.as_ref())?;
        let host_uuid = &req.get_ref().host_uuid;
        let was_attached = slot.binding.unbind(host_uuid)?;
        tracing::info!(host = %host_uuid, term, was_attached, "detached");
        Ok(Response::new(pb::DetachReply { was_attached }))
    }

    async fn ping(&self, req: Request<pb::PingRequest>) -> Result<Response<pb::PingReply>, Status> {
        let (slot, term) = self.admit(&req, req.get_ref().header.as_ref())?;
        let host_uuid = bound_host(&slot, req.get_ref().header.as_ref())?;
        let known = req.get_ref().known_domains_version;
        let (listed, storages) = on_slot(&slot, |s| (s.refresh(), s.capacities())).await?;
        let (version, domains) = listed.map_err(backend_status)?;
        let unchanged = known == version;
        Ok(Response::new(pb::PingReply {
            host_uuid,
            boot_id: self.inner.boot_id.clone(),
            term,
            domains_version: version,
            domains: if unchanged { Vec::new() } else { domains },
            domains_unchanged: unchanged,
            storages,
        }))
    }

    async fn list_domains(
        &self,
        req: Request<pb::ListDomainsRequest>,
    ) -> Result<Response<pb::ListDomainsReply>, Status> {
        let (slot, _) = self.admit(&req, req.get_ref().header.as_ref())?;
        bound_host(&slot, req.get_ref().header.as_ref())?;
        let (version, domains) = on_slot(&slot, |s| s.refresh())
            .await?
            .map_err(backend_status)?;
        Ok(Response::new(pb::ListDomainsReply {
            domains_version: version,
            domains,
        }))
    }

    async fn prepare_primary_storage(
        &self,
        req: Request<pb::PreparePrimaryStorageRequest>,
    ) -> Result<Response<pb::PreparePrimaryStorageReply>, Status> {
        let (slot, _) = self.admit(&req, req.get_ref().header.as_ref())?;
        let r = req.get_ref();
        bound_host(&slot, r.header.as_ref())?;
        let kind = StorageKind::parse(&r.r#type).ok_or_else(|| {
            Status::invalid_argument(format!(
                "primary storage type {:?} is not one this agent prepares (LocalStorage, SharedMountPoint, NFS)",
                r.r#type
            ))
        })?;
        if r.primary_storage_uuid.is_empty() {
            return Err(Status::invalid_argument("no primary storage uuid"));
        }
        let spec = StorageSpec {
            uuid: r.primary_storage_uuid.clone(),
            kind,
            url: r.url.clone(),
            mount_point: if kind == StorageKind::Nfs {
                r.mount_point.clone()
            } else {
                r.url.clone()
            },
        };
        let s2 = spec.clone();
        // Prepared once; afterwards only measured. Re-creating a directory that vanished would
        // hide a lost disk or an unmounted shared file system behind an empty local directory
        // (hosts writing to different places), so a vanished one stays unhealthy until the
        // operator restores it.
        let known = lock(&slot.storages).get(&spec.uuid) == Some(&spec);
        let (prepared, cap) = on_slot(&slot, move |s| {
            let p = if known {
                Ok(())
            } else {
                s.backend.prepare_storage(&s2)
            };
            let c = s.backend.storage_capacity(&s2);
            (p, c)
        })
        .await?;
        prepared.map_err(|e| Status::failed_precondition(e.0))?;
        slot.remember(spec)?;
        Ok(Response::new(pb::PreparePrimaryStorageReply {
            capacity: Some(cap),
        }))
    }
    async fn attach_volume(
        &self,
        req: Request<pb::AttachVolumeRequest>,
    ) -> Result<Response<pb::VmStateReply>, Status> {
        self.vm_call(
            "AttachVolume",
            req,
            |r| r.header.as_ref(),
            |r| {
                let disk = r
                    .disk
                    .clone()
                    .ok_or_else(|| Status::invalid_argument("attach names no disk"))?;
                volumes::check_volume_uuid(&disk.volume_uuid).map_err(op_status)?;
                Ok((r.vm_uuid.clone(), move |b: &dyn HostBackend, vm: &str| {
                    b.attach_disk(vm, &disk).map(Some)
                }))
            },
        )
        .await
    }

    async fn detach_volume(
        &self,
        req: Request<pb::DetachVolumeRequest>,
    ) -> Result<Response<pb::VmStateReply>, Status> {
        self.vm_call(
            "DetachVolume",
            req,
            |r| r.header.as_ref(),
            |r| {
                if r.path.is_empty() {
                    return Err(Status::invalid_argument("detach names no file"));
                }
                let path = r.path.clone();
                Ok((r.vm_uuid.clone(), move |b: &dyn HostBackend, vm: &str| {
                    b.detach_disk(vm, &path)
                }))
            },
        )
        .await
    }

    async fn clone_volume(
        &self,
        req: Request<pb::CloneVolumeRequest>,
    ) -> Result<Response<pb::CreateVolumeReply>, Status> {
        let (slot, _) = self.admit(&req, req.get_ref().header.as_ref())?;
        let r = req.into_inner();
        bound_host(&slot, r.header.as_ref())?;
        volumes::check_volume_uuid(&r.volume_uuid).map_err(op_status)?;
        volumes::check_volume_uuid(&r.source_volume_uuid).map_err(op_status)?;
        let src = slot.storage(&r.source_primary_storage_uuid)?;
        let dst = slot.storage(&r.primary_storage_uuid)?;
        let (source, uuid) = (r.source_volume_uuid, r.volume_uuid);
        // Serialised on the copy's uuid like a create; the file lock keeps a delete of the
        // source (or a start using it) from racing the copy.
        let file = on_slot(&slot, move |s| {
            s.volume_op(&uuid, true, |b| b.clone_volume(&src, &source, &dst, &uuid))
        })
        .await?
        .map_err(op_status)?;
        Ok(Response::new(pb::CreateVolumeReply { file: Some(file) }))
    }

    async fn attach_nic(
        &self,
        req: Request<pb::AttachNicRequest>,
    ) -> Result<Response<pb::VmStateReply>, Status> {
        self.vm_call(
            "AttachNic",
            req,
            |r| r.header.as_ref(),
            |r| {
                let nic = r
                    .nic
                    .clone()
                    .ok_or_else(|| Status::invalid_argument("attach names no NIC"))?;
                Ok((r.vm_uuid.clone(), move |b: &dyn HostBackend, vm: &str| {
                    b.attach_nic(vm, &nic).map(Some)
                }))
            },
        )
        .await
    }

    async fn detach_nic(
        &self,
        req: Request<pb::DetachNicRequest>,
    ) -> Result<Response<pb::VmStateReply>, Status> {
        self.vm_call(
            "DetachNic",
            req,
            |r| r.header.as_ref(),
            |r| {
                if r.mac.is_empty() {
                    return Err(Status::invalid_argument("detach names no MAC"));
                }
                let mac = r.mac.clone();
                Ok((r.vm_uuid.clone(), move |b: &dyn HostBackend, vm: &str| {
                    b.detach_nic(vm, &mac)
                }))
            },
        )
        .await
    }

    async fn resize_volume(
        &self,
        req: Request<pb::ResizeVolumeRequest>,
    ) -> Result<Response<pb::ResizeVolumeReply>, Status> {
        let (slot, _) = self.admit(&req, req.get_ref().header.as_ref())?;
        let r = req.into_inner();
        bound_host(&slot, r.header.as_ref())?;
        volumes::check_volume_uuid(&r.volume_uuid).map_err(op_status)?;
        if r.size_bytes == 0 {
            return Err(Status::invalid_argument("resize names no size"));
        }
        let vm = (!r.vm_uuid.is_empty()).then_some(r.vm_uuid);
        if let Some(v) = &vm {
            vm_uuid_of(v)?;
        }
        let storage = slot.storage(&r.primary_storage_uuid)?;
        let uuid = r.volume_uuid;
        let size = r.size_bytes;
        let file = on_slot(&slot, move |s| {
            s.volume_op(&uuid, true, |b| {
                b.resize_volume(&storage, &uuid, size, vm.as_deref())
            })
        })
        .await?
        .map_err(op_status)?;
        Ok(Response::new(pb::ResizeVolumeReply { file: Some(file) }))
    }

    async fn create_volume_snapshot(
        &self,
        req: Request<pb::CreateVolumeSnapshotRequest>,
    ) -> Result<Response<pb::VolumeSnapshotReply>, Status> {
        let (slot, _) = self.admit(&req, req.get_ref().header.as_ref())?;
        let r = req.into_inner();
        bound_host(&slot, r.header.as_ref())?;
        volumes::check_volume_uuid(&r.volume_uuid).map_err(op_status)?;
        volumes::check_volume_uuid(&r.snapshot_uuid).map_err(op_status)?;
        let vm = (!r.vm_uuid.is_empty()).then_some(r.vm_uuid);
        if let Some(v) = &vm {
            vm_uuid_of(v)?;
        }
        let storage = slot.storage(&r.primary_storage_uuid)?;
        let (uuid, snap) = (r.volume_uuid, r.snapshot_uuid);
        // Under the files lock too: a VM start never opens the volume between the freeze and
        // the new overlay.
        let reply = on_slot(&slot, move |s| {
            s.volume_op(&uuid, true, |b| {
                b.snapshot_volume(&storage, &uuid, &snap, vm.as_deref())
            })
        })
        .await?
        .map_err(op_status)?;
        Ok(Response::new(reply))
    }

    async fn revert_volume_snapshot(
        &self,
        req: Request<pb::RevertVolumeSnapshotRequest>,
    ) -> Result<Response<pb::VolumeSnapshotReply>, Status> {
        let (slot, _) = self.admit(&req, req.get_ref().header.as_ref())?;
        let r = req.into_inner();
        bound_host(&slot, r.header.as_ref())?;
        volumes::check_volume_uuid(&r.volume_uuid).map_err(op_status)?;
        volumes::check_volume_uuid(&r.snapshot_uuid).map_err(op_status)?;
        let storage = slot.storage(&r.primary_storage_uuid)?;
        let (uuid, snap) = (r.volume_uuid, r.snapshot_uuid);
        let reply = on_slot(&slot, move |s| {
            s.volume_op(&uuid, true, |b| b.revert_volume(&storage, &uuid, &snap))
        })
        .await?
        .map_err(op_status)?;
        Ok(Response::new(reply))
    }

    async fn delete_volume_snapshots(
        &self,
        req: Request<pb::DeleteVolumeSnapshotsRequest>,
    ) -> Result<Response<pb::VolumeSnapshotReply>, Status> {
        let (slot, _) = self.admit(&req, req.get_ref().header.as_ref())?;
        let r = req.into_inner();
        bound_host(&slot, r.header.as_ref())?;
        volumes::check_volume_uuid(&r.volume_uuid).map_err(op_status)?;
        for s in &r.snapshot_uuids {
            volumes::check_volume_uuid(s).map_err(op_status)?;
        }
        let storage = slot.storage(&r.primary_storage_uuid)?;
        let (uuid, snaps) = (r.volume_uuid, r.snapshot_uuids);
        let reply = on_slot(&slot, move |s| {
            s.volume_op(&uuid, true, |b| {
                b.delete_volume_snapshots(&storage, &uuid, &snaps)
            })
        })
        .await?
        .map_err(op_status)?;
        Ok(Response::new(reply))
    }
}
