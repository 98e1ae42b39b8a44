//! The leader's side of `CloneVmInstance`: the clone actions of the `vm` receiver
//! (`api::families::vm::clone`). For each placed clone, on its host: the source's and the
//! clone's storages prepared, the agent's `CloneVolume` (idempotent: a repeat answers the
//! finished copy), then the domain started when asked. A clone the host refuses is cleaned up
//! there at once (domain destroyed, file deleted) and reported failed, so the others go on;
//! an unreachable host or a deposed leader fails the whole step indeterminately, and the
//! re-run finds the finished copies and running domains.

use api::families::vm::clone::actions;
use api::families::vm::clone::vars;
use api::families::vm::clone::ClonePlan;
use api::families::vm::clone::Cloned;
use api::families::vm::flows::Spec;
use api::families::vm::flows::Storage;
use api::families::vm::flows::Target;
use api::families::vm::flows::VolumeFile;
use api::flow::Vars;
use ha::EffectError;
use proto::agent::v1 as pb;
use serde::Deserialize;

use crate::agent_client::status_error;
use crate::vm_agents::call_failure;
use crate::vm_agents::failed;
use crate::vm_agents::VmAgents;
use crate::vm_agents::VM_CALL_TIMEOUT;

/// Bound on one copy (`qemu-img convert` of the whole disk).
const CLONE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// The step's payload (`clone::clone_request`).
#[derive(Debug, Deserialize)]
struct Payload {
    clones: Vec<ClonePlan>,
    #[serde(default)]
    start: bool,
}

/// One placed clone, as the host needs it.
struct Placed<'a> {
    uuid: &'a str,
    target: &'a Target,
    spec: &'a Spec,
    source: &'a (Storage, String),
}

fn placed(p: &ClonePlan) -> Result<Placed<'_>, EffectError> {
    match (&p.target, &p.spec, &p.source) {
        (Some(target), Some(spec), Some(source)) => Ok(Placed {
            uuid: &p.uuid,
            target,
            spec,
            source,
        }),
        _ => Err(failed(format!(
            "clone VM[uuid:{}] was not placed; it has no host to be copied on",
            p.uuid
        ))),
    }
}

fn root_storage(spec: &Spec) -> Result<(&Storage, &str), EffectError> {
    spec.disks
        .iter()
        .find(|d| d.device_id == 0)
        .map(|d| (&d.storage, d.volume_uuid.as_str()))
        .ok_or_else(|| failed(format!("clone VM[uuid:{}] has no root disk", spec.vm_uuid)))
}

impl VmAgents {
    /// Perform `action` when it is a clone action (`None` otherwise).
    pub(crate) async fn clone_action(
        &self,
        action: &str,
        payload: &str,
        term: u64,
    ) -> Option<Result<Vars, EffectError>> {
        if ![actions::CLONE_VOLUMES, actions::UNCLONE].contains(&action) {
            return None;
        }
        let p: Payload = match serde_json::from_str(payload) {
            Ok(p) => p,
            Err(e) => return Some(Err(failed(format!("bad clone step payload: {e}")))),
        };
        Some(if action == actions::CLONE_VOLUMES {
            self.clone_volumes(&p, term).await
        } else {
            self.unclone(&p, term).await
        })
    }

    async fn clone_volumes(&self, p: &Payload, term: u64) -> Result<Vars, EffectError> {
        let mut out = Vec::new();
        for plan in &p.clones {
            let done = match self.clone_one(plan, p.start, term).await {
                Ok(file) => Cloned {
                    uuid: plan.uuid.clone(),
                    file: Some(file),
                    error: None,
                },
                Err(EffectError::Failed(r)) => {
                    // The host refused this clone: nothing of it stays there.
                    if let Ok(c) = placed(plan) {
                        self.remove_clone(&c, term).await?;
                    }
                    Cloned {
                        uuid: plan.uuid.clone(),
                        file: None,
                        error: Some(r.details),
                    }
                }
                Err(e) => return Err(e),
            };
            out.push(done);
        }
        let text =
            serde_json::to_string(&out).map_err(|e| failed(format!("encoding the clones: {e}")))?;
        Ok(Vars::from([(vars::CLONED.to_string(), text)]))
    }

    async fn clone_one(
        &self,
        plan: &ClonePlan,
        start: bool,
        term: u64,
    ) -> Result<VolumeFile, EffectError> {
        let c = placed(plan)?;
        let t = c.target;
        let (storage, volume_uuid) = root_storage(c.spec)?;
        let (source_storage, source_volume) = c.source;
        self.prepare(t, source_storage, term).await?;
        if storage.uuid != source_storage.uuid {
            self.prepare(t, storage, term).await?;
        }
        let what = format!(
            "cloning volume[uuid:{source_volume}] into volume[uuid:{volume_uuid}] of VM[uuid:{}] on host[uuid:{}]",
            c.uuid, t.host_uuid
        );
        let (mut client, addr) = self.client(t, &what)?;
        let file = client
            .clone_volume(self.request(
                pb::CloneVolumeRequest {
                    header: self.header(term, t),
                    source_primary_storage_uuid: source_storage.uuid.clone(),
                    source_volume_uuid: source_volume.clone(),
                    primary_storage_uuid: storage.uuid.clone(),
                    volume_uuid: volume_uuid.to_string(),
                },
                CLONE_TIMEOUT,
            ))
            .await
            .map_err(|st| call_failure(status_error(&addr, st), &what))?
            .into_inner()
            .file
            .ok_or_else(|| failed(format!("{what}: the agent answered no file")))?;
        let file = VolumeFile {
            path: file.path,
            virtual_size: file.virtual_size,
            actual_size: file.actual_size,
        };
        if start {
            self.start_domain(t, c.uuid, c.spec, Some(&file), term)
                .await?;
        }
        Ok(file)
    }

    /// The clone's domain destroyed and its file deleted on its host (both idempotent).
    async fn remove_clone(&self, c: &Placed<'_>, term: u64) -> Result<(), EffectError> {
        let t = c.target;
        let (storage, volume_uuid) = root_storage(c.spec)?;
        let what = format!(
            "removing clone VM[uuid:{}] from host[uuid:{}]",
            c.uuid, t.host_uuid
        );
        let (mut client, addr) = self.client(t, &what)?;
        client
            .destroy_vm(self.request(
                pb::VmRequest {
                    header: self.header(term, t),
                    vm_uuid: c.uuid.to_string(),
                },
                VM_CALL_TIMEOUT,
            ))
            .await
            .map_err(|st| call_failure(status_error(&addr, st), &what))?;
        client
            .delete_volume(self.request(
                pb::DeleteVolumeRequest {
                    header: self.header(term, t),
                    primary_storage_uuid: storage.uuid.clone(),
                    volume_uuid: volume_uuid.to_string(),
                },
                VM_CALL_TIMEOUT,
            ))
            .await
            .map_err(|st| call_failure(status_error(&addr, st), &what))?;
        Ok(())
    }

    /// Undo of `clone-volumes`: every placed clone gone from its host.
    async fn unclone(&self, p: &Payload, term: u64) -> Result<Vars, EffectError> {
        for plan in &p.clones {
            if let Ok(c) = placed(plan) {
                self.remove_clone(&c, term).await?;
            }
        }
        Ok(Vars::new())
    }
}
