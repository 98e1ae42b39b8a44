//! The leader's side of data volumes: the volume actions of the `vm` receiver
//! (`api::families::vm::volume_flows`). Each is one call to the host's agent, idempotent
//! there (a repeated create answers the file, a repeated attach the domain already using the
//! disk, a repeated resize the grown file), so an indeterminate answer is asked again and a
//! new leader re-running the step does no harm.

use api::families::vm::flows::Disk;
use api::families::vm::flows::Target;
use api::families::vm::flows::VolumeFile;
use api::families::vm::snapshot_flows;
use api::families::vm::volume_flows;
use api::flow::Vars;
use ha::EffectError;
use proto::agent::v1 as pb;
use serde::Deserialize;

use crate::agent_client::status_error;
use crate::vm_agents::call_failure;
use crate::vm_agents::failed;
use crate::vm_agents::VmAgents;
use crate::vm_agents::VM_CALL_TIMEOUT;

/// The step's payload (`volume_flows::request`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    #[serde(default)]
    vm_uuid: String,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    disk: Option<Disk>,
    #[serde(default)]
    size: Option<u64>,
}

impl Payload {
    fn target(&self) -> Result<&Target, EffectError> {
        self.target
            .as_ref()
            .ok_or_else(|| failed("the volume step names no host".into()))
    }

    fn disk(&self) -> Result<&Disk, EffectError> {
        self.disk
            .as_ref()
            .ok_or_else(|| failed("the volume step names no disk".into()))
    }

    fn path(&self) -> Result<&str, EffectError> {
        let d = self.disk()?;
        d.path
            .as_deref()
            .ok_or_else(|| failed(format!("volume[uuid:{}] has no file yet", d.volume_uuid)))
    }
}

fn file_vars(file: Option<pb::VolumeFile>, what: &str) -> Result<Vars, EffectError> {
    let f = file.ok_or_else(|| failed(format!("{what}: the agent answered no file")))?;
    let f = VolumeFile {
        path: f.path,
        virtual_size: f.virtual_size,
        actual_size: f.actual_size,
    };
    let text =
        serde_json::to_string(&f).map_err(|e| failed(format!("encoding the volume file: {e}")))?;
    Ok(Vars::from([(
        volume_flows::vars::VOLUME_FILE.to_string(),
        text,
    )]))
}

impl VmAgents {
    /// Perform `action` when it is a volume action (`None` otherwise: a VM action).
    pub(crate) async fn volume_action(
        &self,
        action: &str,
        payload: &str,
        term: u64,
    ) -> Option<Result<Vars, EffectError>> {
        use volume_flows::actions as a;
        if let Some(out) = self.snapshot_action(action, payload, term).await {
            return Some(out);
        }
        if ![
            a::CREATE_DATA_VOLUME,
            a::ATTACH_VOLUME,
            a::DETACH_VOLUME,
            a::RESIZE_VOLUME,
        ]
        .contains(&action)
        {
            return None;
        }
        let p: Payload = match serde_json::from_str(payload) {
            Ok(p) => p,
            Err(e) => return Some(Err(failed(format!("bad volume step payload: {e}")))),
        };
        Some(match action {
            a::CREATE_DATA_VOLUME => self.create_data_volume(&p, term).await,
            a::ATTACH_VOLUME => self.attach_volume(&p, term).await,
            a::DETACH_VOLUME => self.detach_volume(&p, term).await,
            _ => self.resize_volume(&p, term).await,
        })
    }

    async fn create_data_volume(&self, p: &Payload, term: u64) -> Result<Vars, EffectError> {
        let t = p.target()?;
        let d = p.disk()?;
        self.prepare(t, &d.storage, term).await?;
        let what = format!(
            "creating data volume[uuid:{}] on host[uuid:{}]",
            d.volume_uuid, t.host_uuid
        );
        let (mut c, addr) = self.client(t, &what)?;
        let file = c
            .create_volume(self.request(
                pb::CreateVolumeRequest {
                    header: self.header(term, t),
                    primary_storage_uuid: d.storage.uuid.clone(),
                    volume_uuid: d.volume_uuid.clone(),
                    backing_path: String::new(),
                    size_bytes: d.size,
                },
                VM_CALL_TIMEOUT,
            ))
            .await
            .map_err(|st| call_failure(status_error(&addr, st), &what))?
            .into_inner()
            .file;
        file_vars(file, &what)
    }

    async fn attach_volume(&self, p: &Payload, term: u64) -> Result<Vars, EffectError> {
        let t = p.target()?;
        let d = p.disk()?;
        let what = format!(
            "attaching volume[uuid:{}] to VM[uuid:{}] on host[uuid:{}]",
            d.volume_uuid, p.vm_uuid, t.host_uuid
        );
        let (mut c, addr) = self.client(t, &what)?;
        let domain = c
            .attach_volume(self.request(
                pb::AttachVolumeRequest {
                    header: self.header(term, t),
                    vm_uuid: p.vm_uuid.clone(),
                    disk: Some(pb::DiskSpec {
                        volume_uuid: d.volume_uuid.clone(),
                        path: p.path()?.to_string(),
                        format: "qcow2".into(),
                        device_id: d.device_id,
                    }),
                },
                VM_CALL_TIMEOUT,
            ))
            .await
            .map_err(|st| call_failure(status_error(&addr, st), &what))?
            .into_inner()
            .domain;
        match domain {
            Some(dom)
                if dom
                    .disk_files
                    .iter()
                    .any(|f| f == p.path().unwrap_or_default()) =>
            {
                Ok(Vars::new())
            }
            Some(_) => Err(failed(format!("{what}: the domain does not show the disk"))),
            None => Err(failed(format!("{what}: the host has no such domain"))),
        }
    }

    async fn detach_volume(&self, p: &Payload, term: u64) -> Result<Vars, EffectError> {
        let t = p.target()?;
        let d = p.disk()?;
        let what = format!(
            "detaching volume[uuid:{}] from VM[uuid:{}] on host[uuid:{}]",
            d.volume_uuid, p.vm_uuid, t.host_uuid
        );
        let (mut c, addr) = self.client(t, &what)?;
        let domain = c
            .detach_volume(self.request(
                pb::DetachVolumeRequest {
                    header: self.header(term, t),
                    vm_uuid: p.vm_uuid.clone(),
                    volume_uuid: d.volume_uuid.clone(),
                    path: p.path()?.to_string(),
                },
                VM_CALL_TIMEOUT,
            ))
            .await
            .map_err(|st| call_failure(status_error(&addr, st), &what))?
            .into_inner()
            .domain;
        // No domain (the VM stopped meanwhile) holds no disk either.
        match domain {
            Some(dom)
                if dom
                    .disk_files
                    .iter()
                    .any(|f| f == p.path().unwrap_or_default()) =>
            {
                Err(failed(format!("{what}: the domain still shows the disk")))
            }
            _ => Ok(Vars::new()),
        }
    }

    async fn resize_volume(&self, p: &Payload, term: u64) -> Result<Vars, EffectError> {
        let t = p.target()?;
        let d = p.disk()?;
        let size = p
            .size
            .ok_or_else(|| failed(format!("resizing volume[uuid:{}]: no size", d.volume_uuid)))?;
        self.prepare(t, &d.storage, term).await?;
        let what = format!(
            "resizing volume[uuid:{}] to {size} bytes on host[uuid:{}]",
            d.volume_uuid, t.host_uuid
        );
        let (mut c, addr) = self.client(t, &what)?;
        let file = c
            .resize_volume(self.request(
                pb::ResizeVolumeRequest {
                    header: self.header(term, t),
                    primary_storage_uuid: d.storage.uuid.clone(),
                    volume_uuid: d.volume_uuid.clone(),
                    size_bytes: size,
                    vm_uuid: p.vm_uuid.clone(),
                },
                VM_CALL_TIMEOUT,
            ))
            .await
            .map_err(|st| call_failure(status_error(&addr, st), &what))?
            .into_inner()
            .file;
        file_vars(file, &what)
    }
}

/// A snapshot step's payload (`snapshot_flows::request`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotPayload {
    #[serde(default)]
    vm_uuid: String,
    target: Target,
    storage: api::families::vm::flows::Storage,
    volume_uuid: String,
    snapshot_uuids: Vec<String>,
}

fn snapshot_vars(r: pb::VolumeSnapshotReply) -> Result<Vars, EffectError> {
    let file = |f: pb::VolumeFile| VolumeFile {
        path: f.path,
        virtual_size: f.virtual_size,
        actual_size: f.actual_size,
    };
    let files = snapshot_flows::SnapshotFiles {
        snapshot: r.snapshot.map(file),
        volume: r.volume.map(file),
        chain: r.backing_chain,
    };
    let text = serde_json::to_string(&files)
        .map_err(|e| failed(format!("encoding the snapshot files: {e}")))?;
    Ok(Vars::from([(
        snapshot_flows::vars::FILES.to_string(),
        text,
    )]))
}

impl VmAgents {
    /// Perform `action` when it is a snapshot action (`None` otherwise). Each is one agent
    /// call, idempotent there by the snapshot's uuid (a repeated snapshot answers the file
    /// made, a repeated revert makes the same empty overlay, a repeated delete skips the
    /// files gone), so an indeterminate answer is asked again.
    async fn snapshot_action(
        &self,
        action: &str,
        payload: &str,
        term: u64,
    ) -> Option<Result<Vars, EffectError>> {
        use snapshot_flows::actions as a;
        if ![a::CREATE_SNAPSHOT, a::REVERT_SNAPSHOT, a::DELETE_SNAPSHOTS].contains(&action) {
            return None;
        }
        let p: SnapshotPayload = match serde_json::from_str(payload) {
            Ok(p) => p,
            Err(e) => return Some(Err(failed(format!("bad snapshot step payload: {e}")))),
        };
        Some(self.snapshot_call(action, &p, term).await)
    }

    async fn snapshot_call(
        &self,
        action: &str,
        p: &SnapshotPayload,
        term: u64,
    ) -> Result<Vars, EffectError> {
        use snapshot_flows::actions as a;
        let t = &p.target;
        self.prepare(t, &p.storage, term).await?;
        let first = p.snapshot_uuids.first().cloned().unwrap_or_default();
        let what = match action {
            a::CREATE_SNAPSHOT => format!(
                "taking snapshot[uuid:{first}] of volume[uuid:{}]",
                p.volume_uuid
            ),
            a::REVERT_SNAPSHOT => format!(
                "reverting volume[uuid:{}] to snapshot[uuid:{first}]",
                p.volume_uuid
            ),
            _ => format!(
                "deleting {} snapshot file(s) of volume[uuid:{}]",
                p.snapshot_uuids.len(),
                p.volume_uuid
            ),
        };
        let what = format!("{what} on host[uuid:{}]", t.host_uuid);
        let (mut c, addr) = self.client(t, &what)?;
        let header = self.header(term, t);
        let ps = p.storage.uuid.clone();
        let reply = match action {
            a::CREATE_SNAPSHOT => {
                c.create_volume_snapshot(self.request(
                    pb::CreateVolumeSnapshotRequest {
                        header,
                        primary_storage_uuid: ps,
                        volume_uuid: p.volume_uuid.clone(),
                        snapshot_uuid: first,
                        vm_uuid: p.vm_uuid.clone(),
                    },
                    VM_CALL_TIMEOUT,
                ))
                .await
            }
            a::REVERT_SNAPSHOT => {
                c.revert_volume_snapshot(self.request(
                    pb::RevertVolumeSnapshotRequest {
                        header,
                        primary_storage_uuid: ps,
                        volume_uuid: p.volume_uuid.clone(),
                        snapshot_uuid: first,
                    },
                    VM_CALL_TIMEOUT,
                ))
                .await
            }
            _ => {
                c.delete_volume_snapshots(self.request(
                    pb::DeleteVolumeSnapshotsRequest {
                        header,
                        primary_storage_uuid: ps,
                        volume_uuid: p.volume_uuid.clone(),
                        snapshot_uuids: p.snapshot_uuids.clone(),
                    },
                    VM_CALL_TIMEOUT,
                ))
                .await
            }
        }
        .map_err(|st| call_failure(status_error(&addr, st), &what))?
        .into_inner();
        snapshot_vars(reply)
    }
}
