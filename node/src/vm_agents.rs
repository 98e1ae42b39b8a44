//! The leader's side of VMs: the `vm` receiver of the VM flows (`api::families::vm::flows`).
//! Every action is one or a few calls to the host's agent, each idempotent on the agent (a
//! repeated start answers the running domain, a repeated create the existing file), so an
//! indeterminate answer is asked again with the same key and a new leader re-running the step
//! does no harm. The root volume's image comes from its image store through an export URL the
//! host's agent downloads into the primary storage's image cache.

use std::sync::Arc;
use std::time::Duration;

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
            let p: Payload = serde_json::from_str(&payload)
                .map_err(|e| failed(format!("bad VM step payload: {e}")))?;
            progress(10);
            let out = match action.as_str() {
                flows::actions::SKIP => Ok(Vars::new()),
                flows::actions::CREATE_ROOT_VOLUME => this.create_root_volume(&p, term).await,
                flows::actions::START => this.start(&p, term).await,
                flows::actions::DELETE_VOLUMES => this.delete_volumes(&p, term).await,
                flows::actions::INSPECT => this.inspect(&p, term).await,
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

    fn vm_spec(&self, p: &Payload) -> Result<pb::VmSpec, EffectError> {
        let spec = self.spec(p)?;
        let mut disks = Vec::new();
        for d in &spec.disks {
            let path = match (&d.path, &p.root_file) {
                (Some(path), _) => path.clone(),
                (None, Some(f)) if d.device_id == 0 => f.path.clone(),
                (None, _) => {
                    return Err(failed(format!(
                        "VM[uuid:{}]: volume[uuid:{}] has no file yet",
                        p.vm_uuid, d.volume_uuid
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
        for d in &spec.disks {
            self.prepare(t, &d.storage, term).await?;
        }
        let vm = self.vm_spec(p)?;
        let what = format!(
            "starting VM[uuid:{}] on host[uuid:{}]",
            p.vm_uuid, t.host_uuid
        );
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
        let t = self.target(p)?;
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
        let state = r
            .domains
            .into_iter()
            .find(|d| d.name == p.vm_uuid)
            .map(|d| d.state)
            .unwrap_or_default();
        Ok(Vars::from([(flows::vars::DOMAIN_STATE.to_string(), state)]))
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
