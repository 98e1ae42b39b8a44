//! The leader's side of VMs: the `vm` receiver of the VM flows (`api::families::vm::flows`).
//! Every action is one or a few calls to the host's agent, each idempotent on the agent (a
//! repeated start answers the running domain, a repeated create the existing file), so an
//! indeterminate answer is asked again with the same key and a new leader re-running the step
//! does no harm. The root volume's image comes from its image store through an export URL the
//! host's agent downloads into the primary storage's image cache.

use std::sync::Arc;
use std::time::Duration;

use api::families::vm::evacuate::Evacuation;
use api::families::vm::evacuate::Move;
use api::families::vm::evacuate::Outcome;
use api::families::vm::flows;
use api::families::vm::flows::Spec;
use api::families::vm::flows::Storage;
use api::families::vm::flows::Target;
use api::families::vm::flows::VolumeFile;
use api::families::vm::flows::VolumeFiles;
use api::flow::Vars;
use api::wire::errors::Code;
use api::wire::errors::Refusal;
use futures::future::BoxFuture;
use ha::EffectError;
use ha::ProgressFn;
use proto::agent::v1 as pb;
use serde::Deserialize;

use crate::agent_client::agent_addr;
use crate::agent_client::status_error;
use crate::agent_client::AgentCallError;
use crate::agent_client::AgentTarget;
use crate::agent_client::SharedAgents;
use crate::image_agents::ImageStores;

/// Bound on a domain call (a graceful stop waits for the guest up to its own timeout).
pub(crate) const VM_CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on caching an image and creating a volume (a download of the whole image).
const VOLUME_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long a graceful stop waits for the guest before the domain is destroyed.
const GRACE_SECONDS: u32 = 60;

/// The step's payload (`flows::request`): the flow's vars that concern the agent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    vm_uuid: String,
    #[serde(default, rename = "target")]
    target: Option<Target>,
    #[serde(default, rename = "spec")]
    spec: Option<Spec>,
    #[serde(default, rename = "root_file")]
    root_file: Option<VolumeFile>,
    #[serde(default, rename = "delete")]
    delete: Option<VolumeFiles>,
    #[serde(default)]
    stop_type: Option<String>,
    #[serde(default, rename = "destination")]
    destination: Option<Target>,
    #[serde(default)]
    evacuation: Option<Evacuation>,
}

pub(crate) fn failed(details: String) -> EffectError {
    EffectError::Failed(Refusal::new(Code::OperationFailure, details))
}

pub(crate) fn call_failure(e: AgentCallError, what: &str) -> EffectError {
    match e {
        // Deposed: the step is the next leader's to run.
        AgentCallError::StaleTerm { message, .. } => EffectError::Indeterminate(message),
        AgentCallError::Refused { message, .. } => failed(format!("{what}: {message}")),
        // Every VM call is idempotent on the agent: ask again until the executor gives up.
        AgentCallError::Unreachable { message, .. } => {
            EffectError::Indeterminate(format!("{what}: {message}"))
        }
    }
}

/// Host agents driving VMs.
pub struct VmAgents {
    clients: SharedAgents,
    images: Arc<ImageStores>,
    port: u16,
}

impl VmAgents {
    /// Agents on `port` of each host's management address; images exported by `images`.
    pub fn new(clients: SharedAgents, images: Arc<ImageStores>, port: u16) -> Self {
        Self {
            clients,
            images,
            port,
        }
    }

    pub(crate) fn request<T>(&self, body: T, timeout: Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(body);
        r.set_timeout(timeout);
        r
    }

    pub(crate) fn header(&self, term: u64, t: &Target) -> Option<pb::Header> {
        Some(self.clients.header(term, &t.host_uuid))
    }

    pub(crate) fn client(
        &self,
        t: &Target,
        what: &str,
    ) -> Result<
        (
            proto::agent::v1::agent_client::AgentClient<tonic::transport::Channel>,
            String,
        ),
        EffectError,
    > {
        let addr = agent_addr(&t.management_ip, self.port);
        let c = self
            .clients
            .grpc(&addr)
            .map_err(|e| call_failure(e, what))?;
        Ok((c, addr))
    }

    /// Perform one action of a VM flow.
    pub fn perform(
        self: &Arc<Self>,
        action: &str,
        payload: &str,
        term: u64,
        progress: ProgressFn,
    ) -> BoxFuture<'static, Result<Vars, EffectError>> {
        let this = self.clone();
        let action = action.to_string();
        let payload = payload.to_string();
        Box::pin(async move {
            if let Some(out) = this.volume_action(&action, &payload, term).await {
                progress(100);
                return out;
            }
            if let Some(out) = this.clone_action(&action, &payload, term).await {
                progress(100);
                return out;
            }
            if let Some(out) = this.nic_action(&action, &payload, term).await {
                progress(100);
                return out;
            }
            let p: Payload = serde_json::from_str(&payload)
                .map_err(|e| failed(format!("bad VM step payload: {e}")))?;
            progress(10);
            let out = match action.as_str() {
                flows::actions::SKIP => Ok(Vars::new()),
                flows::actions::CREATE_ROOT_VOLUME => this.create_root_volume(&p, term).await,
                flows::actions::START => this.start(&p, term).await,
                flows::actions::DELETE_VOLUMES => this.delete_volumes(&p, term).await,
                flows::actions::INSPECT => this.inspect(&p, term).await,
                flows::actions::MIGRATE => this.migrate(&p, term).await,
                flows::actions::MIGRATE_ROLLBACK => this.migrate_rollback(&p, term).await,
                flows::actions::EVACUATE => this.evacuate(&p, term).await,
                flows::actions::STOP
                | flows::actions::REBOOT
                | flows::actions::PAUSE
                | flows::actions::RESUME
                | flows::actions::DESTROY => this.domain_call(&action, &p, term).await,
                other => Err(failed(format!("the VM receiver has no action {other:?}"))),
            };
            progress(100);
            out
        })
    }

    fn target<'a>(&self, p: &'a Payload) -> Result<&'a Target, EffectError> {
        p.target
            .as_ref()
            .ok_or_else(|| failed(format!("VM[uuid:{}]: the step names no host", p.vm_uuid)))
    }

    fn spec<'a>(&self, p: &'a Payload) -> Result<&'a Spec, EffectError> {
        p.spec
            .as_ref()
            .ok_or_else(|| failed(format!("VM[uuid:{}]: the step carries no spec", p.vm_uuid)))
    }

    pub(crate) async fn prepare(
        &self,
        t: &Target,
        s: &Storage,
        term: u64,
    ) -> Result<(), EffectError> {
        let what = format!(
            "preparing primary storage[uuid:{}] on host[uuid:{}]",
            s.uuid, t.host_uuid
        );
        let (mut c, addr) = self.client(t, &what)?;
        let r = c
            .prepare_primary_storage(self.request(
                pb::PreparePrimaryStorageRequest {
                    header: self.header(term, t),
                    primary_storage_uuid: s.uuid.clone(),
                    r#type: s.ps_type.clone(),
                    url: s.url.clone(),
                    mount_point: s.mount_path.clone(),
                },
                VM_CALL_TIMEOUT,
            ))
            .await
            .map_err(|st| call_failure(status_error(&addr, st), &what))?
            .into_inner();
        match r.capacity {
            Some(c) if !c.healthy => Err(failed(format!("{what}: {}", c.error))),
            _ => Ok(()),
        }
    }

    /// The image into the storage's cache on the host (from its image store's export), then
    /// the root volume as an overlay of it.
    async fn create_root_volume(&self, p: &Payload, term: u64) -> Result<Vars, EffectError> {
        let t = self.target(p)?;
        let spec = self.spec(p)?;
        let root = spec
            .disks
            .iter()
            .find(|d| d.device_id == 0)
            .ok_or_else(|| failed(format!("VM[uuid:{}] has no root disk", p.vm_uuid)))?;
        let image = spec.image.as_ref().ok_or_else(|| {
            failed(format!(
                "VM[uuid:{}]: the root volume has no image to be made from",
                p.vm_uuid
            ))
        })?;
        self.prepare(t, &root.storage, term).await?;
        let (url, md5) = self
            .images
            .export_url(&image.backup_storage_uuid, &image.image_uuid, term)
            .await?;
        let what = format!(
            "caching image[uuid:{}] on host[uuid:{}]",
            image.image_uuid, t.host_uuid
        );
        let (mut c, addr) = self.client(t, &what)?;
        let cached = c
            .cache_image(self.request(
                pb::CacheImageRequest {
                    header: self.header(term, t),
                    primary_storage_uuid: root.storage.uuid.clone(),
                    image_uuid: image.image_uuid.clone(),
                    source_url: url,
                    md5: image.md5.clone().unwrap_or(md5),
                },
                VOLUME_TIMEOUT,
            ))
            .await
            .map_err(|st| call_failure(status_error(&addr, st), &what))?
            .into_inner()
            .image
            .ok_or_else(|| failed(format!("{what}: the agent answered no file")))?;
        let what = format!(
            "creating root volume[uuid:{}] on host[uuid:{}]",
            root.volume_uuid, t.host_uuid
        );
        let file = c
            .create_volume(self.request(
                pb::CreateVolumeRequest {
                    header: self.header(term, t),
                    primary_storage_uuid: root.storage.uuid.clone(),
                    volume_uuid: root.volume_uuid.clone(),
                    backing_path: cached.path,
                    size_bytes: root.size,
                },
                VOLUME_TIMEOUT,
            ))
            .await
            .map_err(|st| call_failure(status_error(&addr, st), &what))?
            .into_inner()
            .file
            .ok_or_else(|| failed(format!("{what}: the agent answered no file")))?;
        let f = VolumeFile {
            path: file.path,
            virtual_size: file.virtual_size,
            actual_size: file.actual_size,
        };
        let text = serde_json::to_string(&f)
            .map_err(|e| failed(format!("encoding the volume file: {e}")))?;
        Ok(Vars::from([(flows::vars::ROOT_FILE.to_string(), text)]))
    }

    fn vm_spec(
        &self,
        vm_uuid: &str,
        spec: &Spec,
        root_file: Option<&VolumeFile>,
    ) -> Result<pb::VmSpec, EffectError> {
        let mut disks = Vec::new();
        for d in &spec.disks {
            let path = match (&d.path, root_file) {
                (Some(path), _) => path.clone(),
                (None, Some(f)) if d.device_id == 0 => f.path.clone(),
                (None, _) => {
                    return Err(failed(format!(
                        "VM[uuid:{vm_uuid}]: volume[uuid:{}] has no file yet",
                        d.volume_uuid
                    )))
                }
            };
            disks.push(pb::DiskSpec {
                volume_uuid: d.volume_uuid.clone(),
                path,
                format: "qcow2".into(),
                device_id: d.device_id,
            });
        }
        Ok(pb::VmSpec {
            vm_uuid: spec.vm_uuid.clone(),
            name: spec.name.clone(),
            cpu_num: u32::try_from(spec.cpu_num)
                .map_err(|_| failed(format!("{} vCPUs is out of range", spec.cpu_num)))?,
            memory_bytes: spec.memory_size,
            disks,
            nics: spec
                .nics
                .iter()
                .map(|n| pb::NicSpec {
                    mac: n.mac.clone(),
                    ip: n.ip.clone(),
                    l3_network_uuid: n.l3_network_uuid.clone(),
                    bridge: n.bridge.clone(),
                    device_id: n.device_id,
                })
                .collect(),
            console_password: String::new(),
            boot_order: vec!["HardDisk".into()],
            iso_path: String::new(),
        })
    }

    async fn start(&self, p: &Payload, term: u64) -> Result<Vars, EffectError> {
        let t = self.target(p)?;
        let spec = self.spec(p)?;
        self.start_domain(t, &p.vm_uuid, spec, p.root_file.as_ref(), term)
            .await
    }

    /// Define and start the domain of `spec` on `t` (a root disk without a path in the spec
    /// is `root_file`).
    pub(crate) async fn start_domain(
        &self,
        t: &Target,
        vm_uuid: &str,
        spec: &Spec,
        root_file: Option<&VolumeFile>,
        term: u64,
    ) -> Result<Vars, EffectError> {
        for d in &spec.disks {
            self.prepare(t, &d.storage, term).await?;
        }
        let vm = self.vm_spec(vm_uuid, spec, root_file)?;
        let what = format!("starting VM[uuid:{vm_uuid}] on host[uuid:{}]", t.host_uuid);
        let (mut c, addr) = self.client(t, &what)?;
        let d = c
            .start_vm(self.request(
                pb::StartVmRequest {
                    header: self.header(term, t),
                    vm: Some(vm),
                },
                VM_CALL_TIMEOUT,
            ))
            .await
            .map_err(|st| call_failure(status_error(&addr, st), &what))?
            .into_inner()
            .domain;
        match d {
            Some(d) if d.state == "Running" => Ok(Vars::new()),
            Some(d) => Err(failed(format!("{what}: the domain is {}", d.state))),
            None => Err(failed(format!("{what}: the agent has no such domain"))),
        }
    }

    async fn domain_call(&self, action: &str, p: &Payload, term: u64) -> Result<Vars, EffectError> {
        let t = self.target(p)?;
        let what = format!(
            "{action} VM[uuid:{}] on host[uuid:{}]",
            p.vm_uuid, t.host_uuid
        );
        let (mut c, addr) = self.client(t, &what)?;
        let vm = |timeout| {
            self.request(
                pb::VmRequest {
                    header: self.header(term, t),
                    vm_uuid: p.vm_uuid.clone(),
                },
                timeout,
            )
        };
        let r = match action {
            flows::actions::STOP => {
                let grace = p.stop_type.as_deref() != Some("cold");
                c.stop_vm(self.request(
                    pb::StopVmRequest {
                        header: self.header(term, t),
                        vm_uuid: p.vm_uuid.clone(),
                        r#type: if grace { "grace" } else { "cold" }.into(),
                        timeout_seconds: GRACE_SECONDS,
                    },
                    VM_CALL_TIMEOUT,
                ))
                .await
            }
            flows::actions::REBOOT => c.reboot_vm(vm(VM_CALL_TIMEOUT)).await,
            flows::actions::PAUSE => c.pause_vm(vm(VM_CALL_TIMEOUT)).await,
            flows::actions::RESUME => c.resume_vm(vm(VM_CALL_TIMEOUT)).await,
            _ => c.destroy_vm(vm(VM_CALL_TIMEOUT)).await,
        }
        .map_err(|st| call_failure(status_error(&addr, st), &what))?
        .into_inner();
        let state = r.domain.map(|d| d.state);
        let want: &[&str] = match action {
            flows::actions::STOP | flows::actions::DESTROY => &[],
            flows::actions::PAUSE => &["Paused"],
            _ => &["Running"],
        };
        match (&state, want.is_empty()) {
            // Stop and destroy leave no domain.
            (None, true) => Ok(Vars::new()),
            (Some(s), false) if want.contains(&s.as_str()) => Ok(Vars::new()),
            (Some(s), _) => Err(failed(format!("{what}: the domain is {s}"))),
            (None, false) => Err(failed(format!("{what}: the host has no such domain"))),
        }
    }

    /// The VM's domain on the host as the agent lists it now (reconciliation).
    async fn inspect(&self, p: &Payload, term: u64) -> Result<Vars, EffectError> {
        let state = self.domain_state(self.target(p)?, &p.vm_uuid, term).await?;
        Ok(Vars::from([(flows::vars::DOMAIN_STATE.to_string(), state)]))
    }

    /// The state of `vm`'s domain on `t` now, empty when it has none.
    async fn domain_state(&self, t: &Target, vm: &str, term: u64) -> Result<String, EffectError> {
        let what = format!("listing the domains of host[uuid:{}]", t.host_uuid);
        let target = AgentTarget {
            addr: agent_addr(&t.management_ip, self.port),
            host_uuid: t.host_uuid.clone(),
        };
        let r = self
            .clients
            .list_domains(&target, term, VM_CALL_TIMEOUT)
            .await
            .map_err(|e| call_failure(e, &what))?;
        Ok(r.domains
            .into_iter()
            .find(|d| d.name == vm)
            .map(|d| d.state)
            .unwrap_or_default())
    }

    fn destination<'a>(&self, p: &'a Payload) -> Result<&'a Target, EffectError> {
        p.destination.as_ref().ok_or_else(|| {
            failed(format!(
                "VM[uuid:{}]: the migration names no destination",
                p.vm_uuid
            ))
        })
    }

    async fn destroy_on(&self, t: &Target, vm: &str, term: u64) -> Result<(), EffectError> {
        let what = format!("destroying VM[uuid:{vm}] on host[uuid:{}]", t.host_uuid);
        let (mut c, addr) = self.client(t, &what)?;
        c.destroy_vm(self.request(
            pb::VmRequest {
                header: self.header(term, t),
                vm_uuid: vm.to_string(),
            },
            VM_CALL_TIMEOUT,
        ))
        .await
        .map_err(|st| call_failure(status_error(&addr, st), &what))?;
        Ok(())
    }

    /// A failed migration's cleanup while the source still runs the VM: the destination's
    /// definition goes, and the step fails (the flow then rolls back to Running there).
    async fn abandon(&self, p: &Payload, dst: &Target, why: EffectError, term: u64) -> EffectError {
        if let Err(e) = self.destroy_on(dst, &p.vm_uuid, term).await {
            tracing::warn!(vm = %p.vm_uuid, host = %dst.host_uuid, error = ?e, "cannot remove the incoming domain of a failed migration; reconciliation will");
        }
        why
    }

    /// Live migration, in the order that never runs the VM on two hosts: the destination
    /// prepares (QEMU: nothing; the test driver: the domain defined, not started), the source
    /// lets go (QEMU: a peer-to-peer live migration; the test driver: destroyed and undefined),
    /// then the destination's domain is started (a no-op when QEMU's already runs). Each call
    /// is idempotent, and a re-run first asks the source, so a new leader repeating the step
    /// after the source let go goes straight to the destination. Up to the source letting go a
    /// failure leaves the VM running on the source (the step fails); after it, the VM is the
    /// destination's, running or, when it cannot start there, Stopped.
    async fn migrate(&self, p: &Payload, term: u64) -> Result<Vars, EffectError> {
        let src = self.target(p)?;
        let dst = self.destination(p)?;
        let spec = self.spec(p)?;
        for d in &spec.disks {
            self.prepare(dst, &d.storage, term).await?;
        }
        let vm = self.vm_spec(&p.vm_uuid, spec, p.root_file.as_ref())?;
        let on_source = self.domain_state(src, &p.vm_uuid, term).await?;
        if !on_source.is_empty() {
            let what = format!(
                "preparing host[uuid:{}] for the incoming VM[uuid:{}]",
                dst.host_uuid, p.vm_uuid
            );
            let (mut c, addr) = self.client(dst, &what)?;
            if let Err(st) = c
                .prepare_migration(self.request(
                    pb::PrepareMigrationRequest {
                        header: self.header(term, dst),
                        vm: Some(vm.clone()),
                    },
                    VM_CALL_TIMEOUT,
                ))
                .await
            {
                let e = call_failure(status_error(&addr, st), &what);
                if matches!(e, EffectError::Failed(_)) {
                    return Err(self.abandon(p, dst, e, term).await);
                }
                return Err(e);
            }
            let what = format!(
                "migrating VM[uuid:{}] from host[uuid:{}] to host[uuid:{}]",
                p.vm_uuid, src.host_uuid, dst.host_uuid
            );
            let (mut c, addr) = self.client(src, &what)?;
            if let Err(st) = c
                .migrate_vm(self.request(
                    pb::MigrateVmRequest {
                        header: self.header(term, src),
                        vm_uuid: p.vm_uuid.clone(),
                        destination_uri: format!("qemu+tls://{}/system", dst.management_ip),
                    },
                    VOLUME_TIMEOUT,
                ))
                .await
            {
                let e = call_failure(status_error(&addr, st), &what);
                if !matches!(e, EffectError::Failed(_)) {
                    return Err(e);
                }
                // QEMU keeps a VM whose migration failed running on the source.
                if !self.domain_state(src, &p.vm_uuid, term).await?.is_empty() {
                    return Err(self.abandon(p, dst, e, term).await);
                }
            }
        }
        let what = format!(
            "starting the migrated VM[uuid:{}] on host[uuid:{}]",
            p.vm_uuid, dst.host_uuid
        );
        let (mut c, addr) = self.client(dst, &what)?;
        let started = c
            .start_vm(self.request(
                pb::StartVmRequest {
                    header: self.header(term, dst),
                    vm: Some(vm),
                },
                VM_CALL_TIMEOUT,
            ))
            .await
            .map_err(|st| call_failure(status_error(&addr, st), &what));
        let state = match started {
            Ok(r) => r.into_inner().domain.map(|d| d.state).unwrap_or_default(),
            Err(e @ EffectError::Indeterminate(_)) => return Err(e),
            Err(EffectError::Failed(r)) => {
                tracing::warn!(vm = %p.vm_uuid, host = %dst.host_uuid, error = ?r, "the migrated VM does not start on its destination; it is recorded Stopped");
                self.destroy_on(dst, &p.vm_uuid, term).await?;
                String::new()
            }
        };
        Ok(Vars::from([(flows::vars::DOMAIN_STATE.to_string(), state)]))
    }

    /// Host maintenance: the plan's migrations `parallel` at a time, a VM that does not
    /// migrate stopped instead, then the stops (spec 03 §4.3). Every outcome is reported,
    /// none fails the step; an indeterminate one repeats the whole step, each part idempotent.
    async fn evacuate(&self, p: &Payload, term: u64) -> Result<Vars, EffectError> {
        use futures::StreamExt;
        let plan = p
            .evacuation
            .as_ref()
            .ok_or_else(|| failed("the evacuation step carries no plan".into()))?;
        let one = |item: &api::families::vm::evacuate::Item| {
            let item = item.clone();
            let host = plan.host.clone();
            async move {
                let mut sub = Payload {
                    vm_uuid: item.vm_uuid.clone(),
                    target: Some(host),
                    spec: None,
                    root_file: None,
                    delete: None,
                    stop_type: None,
                    destination: None,
                    evacuation: None,
                };
                let mut why = String::new();
                if let Move::Migrate { destination, spec } = &item.action {
                    sub.destination = Some(destination.clone());
                    sub.spec = Some(spec.as_ref().clone());
                    match self.migrate(&sub, term).await {
                        Ok(v) => {
                            let domain_state = v
                                .get(flows::vars::DOMAIN_STATE)
                                .cloned()
                                .unwrap_or_default();
                            return Ok((item.vm_uuid, Outcome::Migrated { domain_state }));
                        }
                        Err(e @ EffectError::Indeterminate(_)) => return Err(e),
                        Err(EffectError::Failed(r)) => why = r.details,
                    }
                }
                match self.domain_call(flows::actions::STOP, &sub, term).await {
                    Ok(_) => Ok((item.vm_uuid, Outcome::Stopped)),
                    Err(e @ EffectError::Indeterminate(_)) => Err(e),
                    Err(EffectError::Failed(r)) => {
                        let reason = if why.is_empty() {
                            r.details
                        } else {
                            format!("{why}; then stopping it: {}", r.details)
                        };
                        Ok((item.vm_uuid, Outcome::Failed { reason }))
                    }
                }
            }
        };
        let parallel = usize::try_from(plan.parallel.max(1)).unwrap_or(2);
        let outcomes: Vec<Result<(String, Outcome), EffectError>> =
            futures::stream::iter(plan.items.iter().map(one))
                .buffer_unordered(parallel)
                .collect()
                .await;
        let mut done = std::collections::BTreeMap::new();
        for o in outcomes {
            let (vm, outcome) = o?;
            done.insert(vm, outcome);
        }
        let text = serde_json::to_string(&done)
            .map_err(|e| failed(format!("encoding the evacuation's outcome: {e}")))?;
        Ok(Vars::from([(flows::vars::EVACUATED.to_string(), text)]))
    }

    /// Undo of a migration whose record could not follow: the destination's domain goes while
    /// the source still has the VM; otherwise the destination's is the only copy, left for
    /// reconciliation.
    async fn migrate_rollback(&self, p: &Payload, term: u64) -> Result<Vars, EffectError> {
        let src = self.target(p)?;
        let dst = self.destination(p)?;
        if !self.domain_state(src, &p.vm_uuid, term).await?.is_empty() {
            self.destroy_on(dst, &p.vm_uuid, term).await?;
        }
        Ok(Vars::new())
    }

    async fn delete_volumes(&self, p: &Payload, term: u64) -> Result<Vars, EffectError> {
        let Some(files) = &p.delete else {
            return Ok(Vars::new());
        };
        let Some(t) = &files.target else {
            if !files.volumes.is_empty() {
                tracing::warn!(vm = %p.vm_uuid, volumes = files.volumes.len(), "volume files without a host to delete them on; left in place");
            }
            return Ok(Vars::new());
        };
        for (storage, volume_uuid) in &files.volumes {
            let what = format!(
                "deleting volume[uuid:{volume_uuid}] on host[uuid:{}]",
                t.host_uuid
            );
            self.prepare(t, storage, term).await?;
            let (mut c, addr) = self.client(t, &what)?;
            c.delete_volume(self.request(
                pb::DeleteVolumeRequest {
                    header: self.header(term, t),
                    primary_storage_uuid: storage.uuid.clone(),
                    volume_uuid: volume_uuid.clone(),
                },
                VM_CALL_TIMEOUT,
            ))
            .await
            .map_err(|st| call_failure(status_error(&addr, st), &what))?;
        }
        Ok(Vars::new())
    }
}
