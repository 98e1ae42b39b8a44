//! The leader's side of image stores: the `imagestore` receiver of the image flows
//! (`api::families::image::flows`: download into every backup storage named, progress
//! reported to the job, delete on rollback; `export_flows`: export and unexport a copy) and
//! of `ReconnectBackupStorage` (`api::families::backup_storage::reconnect`), and the backup
//! storage tracker's edge (connect the store's directory and measure it; the reconnect flow
//! asks the same way). Each ImageStore backup storage's agent listens on
//! its `hostname`; the record is read from the local state (the leader's, which holds every
//! committed record the flow's first step created).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use api::families::backup_storage::reconnect as bs_flows;
use api::families::backup_storage::BackupStorage;
use api::families::image::export_flows;
use api::families::image::flows;
use api::flow::Vars;
use api::wire::errors::Code;
use api::wire::errors::Refusal;
use futures::future::BoxFuture;
use futures::StreamExt;
use ha::EffectError;
use ha::ProgressFn;
use proto::agent::v1 as pb;
use serde::Deserialize;

use crate::agent_client::agent_addr;
use crate::agent_client::status_error;
use crate::agent_client::AgentCallError;
use crate::agent_client::SharedAgents;
use crate::node::Sm;
use crate::state_view::StateView;

/// Bound on connecting a store and on each message of a download stream.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Image store agents.
pub struct ImageStores {
    clients: SharedAgents,
    sm: Sm,
    port: u16,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    image_uuid: String,
    // Absent in `delete` requests.
    #[serde(default)]
    url: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    md5: String,
    stores: Vec<flows::Store>,
    // `delete`: stores whose copy stays but whose export goes.
    #[serde(default)]
    unexport: Vec<flows::Store>,
}

/// The payload of `export`/`unexport` (`api::families::image::export_flows`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportPayload {
    image_uuid: String,
    backup_storage_uuid: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    name: String,
}

/// The payload of `connect` (`api::families::backup_storage::reconnect`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectPayload {
    backup_storage_uuid: String,
}

/// Bound on an export: a conversion to raw writes the whole virtual disk.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3600);

fn failed(details: String) -> EffectError {
    EffectError::Failed(Refusal::new(Code::OperationFailure, details))
}

fn call_failure(e: AgentCallError, what: &str) -> EffectError {
    match e {
        AgentCallError::StaleTerm { message, .. } => EffectError::Indeterminate(message),
        AgentCallError::Refused { message, .. } => failed(format!("{what}: {message}")),
        AgentCallError::Unreachable { message, .. } => failed(format!(
            "{what}: the image store does not answer: {message}"
        )),
    }
}

impl ImageStores {
    /// Image store agents on `port`, records read from `sm`.
    pub fn new(clients: SharedAgents, sm: Sm, port: u16) -> Self {
        Self { clients, sm, port }
    }

    fn record(&self, uuid: &str) -> Result<BackupStorage, EffectError> {
        api::resource::load::<BackupStorage>(&StateView(&self.sm), uuid)
            .map_err(|e| EffectError::Indeterminate(format!("reading backup storage {uuid}: {e}")))?
            .map(|(_, b)| b)
            .ok_or_else(|| failed(format!("backup storage[uuid:{uuid}] was deleted")))
    }

    fn header(&self, term: u64) -> Option<pb::Header> {
        Some(self.clients.header(term, ""))
    }

    /// Connect a store's directory; its (total, available).
    pub async fn connect(
        &self,
        uuid: &str,
        hostname: &str,
        url: &str,
        term: u64,
        timeout: Duration,
    ) -> Result<(u64, u64), AgentCallError> {
        let addr = agent_addr(hostname, self.port);
        let mut req = tonic::Request::new(pb::ConnectImageStoreRequest {
            header: self.header(term),
            backup_storage_uuid: uuid.to_string(),
            url: url.to_string(),
        });
        req.set_timeout(timeout);
        let r = self
            .clients
            .grpc(&addr)?
            .connect_image_store(req)
            .await
            .map_err(|s| status_error(&addr, s))?
            .into_inner();
        Ok((r.total_bytes, r.available_bytes))
    }

    /// Have the agent at `hostname` forget backup storage `uuid` (the files stay); its answer
    /// says what else that agent serves.
    pub async fn disconnect(
        &self,
        uuid: &str,
        hostname: &str,
        term: u64,
        timeout: Duration,
    ) -> Result<pb::DisconnectImageStoreReply, AgentCallError> {
        let addr = agent_addr(hostname, self.port);
        let mut req = tonic::Request::new(pb::DisconnectImageStoreRequest {
            header: self.header(term),
            backup_storage_uuid: uuid.to_string(),
        });
        req.set_timeout(timeout);
        Ok(self
            .clients
            .grpc(&addr)?
            .disconnect_image_store(req)
            .await
            .map_err(|s| status_error(&addr, s))?
            .into_inner())
    }

    /// Perform `download` or `delete`.
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
            fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, EffectError> {
                serde_json::from_str(text)
                    .map_err(|e| failed(format!("bad image store step payload: {e}")))
            }
            match action.as_str() {
                flows::DOWNLOAD => this.download(decode(&payload)?, term, progress).await,
                flows::DELETE => this.delete(decode(&payload)?, term).await,
                bs_flows::CONNECT => this.reconnect(decode(&payload)?, term).await,
                export_flows::EXPORT_ACTION => this.export(decode(&payload)?, term).await,
                export_flows::UNEXPORT_ACTION => this.unexport(decode(&payload)?, term).await,
                other => Err(failed(format!(
                    "the image store receiver has no action {other:?}"
                ))),
            }
        })
    }

    async fn download(
        &self,
        p: Payload,
        term: u64,
        progress: ProgressFn,
    ) -> Result<Vars, EffectError> {
        let n = p.stores.len().max(1) as u64;
        let mut stored = BTreeMap::new();
        for (i, s) in p.stores.iter().enumerate() {
            let bs = self.record(&s.backup_storage_uuid)?;
            let what = format!(
                "downloading {} into backup storage[uuid:{}] at {}",
                p.url, bs.uuid, bs.hostname
            );
            self.connect(&bs.uuid, &bs.hostname, &bs.url, term, CALL_TIMEOUT)
                .await
                .map_err(|e| call_failure(e, &what))?;
            let addr = agent_addr(&bs.hostname, self.port);
            let req = tonic::Request::new(pb::DownloadImageRequest {
                header: self.header(term),
                backup_storage_uuid: bs.uuid.clone(),
                image_uuid: p.image_uuid.clone(),
                url: p.url.clone(),
                md5: p.md5.clone(),
                format: p.format.clone(),
            });
            let mut stream = self
                .clients
                .grpc(&addr)
                .map_err(|e| call_failure(e, &what))?
                .download_image(req)
                .await
                .map_err(|s| call_failure(status_error(&addr, s), &what))?
                .into_inner();
            let mut file = None;
            loop {
                let next = tokio::time::timeout(CALL_TIMEOUT * 4, stream.next()).await;
                let m = match next {
                    Err(_) => {
                        return Err(EffectError::Indeterminate(format!(
                            "{what}: no progress for {:?}",
                            CALL_TIMEOUT * 4
                        )))
                    }
                    Ok(None) => break,
                    Ok(Some(Err(s))) => {
                        return Err(match status_error(&addr, s) {
                            // The stream broke (agent or network): the next attempt resumes
                            // from nothing, the agent having dropped the partial file.
                            AgentCallError::Unreachable { message, .. } => {
                                EffectError::Indeterminate(format!("{what}: {message}"))
                            }
                            e => call_failure(e, &what),
                        });
                    }
                    Ok(Some(Ok(m))) => m,
                };
                if m.finished {
                    file = m.image;
                    break;
                }
                if let Some(pct) = m.done_bytes.saturating_mul(100).checked_div(m.total_bytes) {
                    // Up to 99: the step is done only when its outcome is committed.
                    let overall = ((i as u64 * 100 + pct.min(100)) / n).min(99);
                    progress(overall as u8);
                }
            }
            let f = file.ok_or_else(|| {
                EffectError::Indeterminate(format!("{what}: the stream ended without the image"))
            })?;
            stored.insert(
                bs.uuid.clone(),
                flows::Stored {
                    path: f.path,
                    format: f.format,
                    virtual_size: f.virtual_size,
                    actual_size: f.actual_size,
                    md5: f.md5,
                },
            );
        }
        let text = serde_json::to_string(&stored)
            .map_err(|e| failed(format!("encoding the download results: {e}")))?;
        Ok(Vars::from([(flows::STORED.to_string(), text)]))
    }

    async fn delete(&self, p: Payload, term: u64) -> Result<Vars, EffectError> {
        for s in &p.stores {
            let bs = match self.record(&s.backup_storage_uuid) {
                Ok(b) => b,
                // The store is gone with its files.
                Err(EffectError::Failed(_)) => continue,
                Err(e) => return Err(e),
            };
            let addr = agent_addr(&bs.hostname, self.port);
            let mut req = tonic::Request::new(pb::DeleteImageRequest {
                header: self.header(term),
                backup_storage_uuid: bs.uuid.clone(),
                image_uuid: p.image_uuid.clone(),
            });
            req.set_timeout(CALL_TIMEOUT);
            let r = match self.clients.grpc(&addr) {
                Ok(mut c) => c
                    .delete_image(req)
                    .await
                    .map_err(|s| status_error(&addr, s)),
                Err(e) => Err(e),
            };
            match r {
                Ok(_) => {}
                Err(AgentCallError::StaleTerm { message, .. }) => {
                    return Err(EffectError::Indeterminate(message))
                }
                // A store that cannot be reached keeps the file; it is named so the operator
                // can remove it (the rollback must not hang on a dead store).
                Err(e) => {
                    tracing::warn!(bs = %bs.uuid, image = %p.image_uuid, error = %e, "image file not removed during rollback")
                }
            }
        }
        // Copies kept in the recycle bin stop being served.
        for s in &p.unexport {
            let bs = match self.record(&s.backup_storage_uuid) {
                Ok(b) => b,
                Err(EffectError::Failed(_)) => continue,
                Err(e) => return Err(e),
            };
            match self.delete_export(&bs, &p.image_uuid, term).await {
                Ok(_) => {}
                Err(AgentCallError::StaleTerm { message, .. }) => {
                    return Err(EffectError::Indeterminate(message))
                }
                Err(e) => {
                    tracing::warn!(bs = %bs.uuid, image = %p.image_uuid, error = %e, "export of a deleted image not removed; delete it with DeleteExportedImageFromBackupStorage once the store is back")
                }
            }
        }
        Ok(Vars::new())
    }

    /// `DeleteExportedImage` on the store's agent; whether there was an export.
    async fn delete_export(
        &self,
        bs: &BackupStorage,
        image_uuid: &str,
        term: u64,
    ) -> Result<bool, AgentCallError> {
        let addr = agent_addr(&bs.hostname, self.port);
        let mut req = tonic::Request::new(pb::DeleteExportedImageRequest {
            header: self.header(term),
            backup_storage_uuid: bs.uuid.clone(),
            image_uuid: image_uuid.to_string(),
        });
        req.set_timeout(CALL_TIMEOUT);
        Ok(self
            .clients
            .grpc(&addr)?
            .delete_exported_image(req)
            .await
            .map_err(|s| status_error(&addr, s))?
            .into_inner()
            .deleted)
    }

    /// The reconnect flow's `connect`: the store's answer, or why there is none, for the
    /// flow to decide (a deposed leader's attempt is the next leader's to make).
    async fn reconnect(&self, p: ConnectPayload, term: u64) -> Result<Vars, EffectError> {
        let bs = self.record(&p.backup_storage_uuid)?;
        let answer = match self
            .connect(&bs.uuid, &bs.hostname, &bs.url, term, CALL_TIMEOUT)
            .await
        {
            Ok((total, available)) => bs_flows::StoreAnswer {
                total,
                available,
                error: None,
            },
            Err(AgentCallError::StaleTerm { message, .. }) => {
                return Err(EffectError::Indeterminate(message))
            }
            Err(AgentCallError::Unreachable { addr, message }) => bs_flows::StoreAnswer {
                total: 0,
                available: 0,
                error: Some(format!(
                    "the image store agent at {addr} does not answer: {message}"
                )),
            },
            Err(AgentCallError::Refused { addr, message }) => bs_flows::StoreAnswer {
                total: 0,
                available: 0,
                error: Some(format!(
                    "the image store agent at {addr} refused: {message}"
                )),
            },
        };
        let text = serde_json::to_string(&answer)
            .map_err(|e| failed(format!("encoding the image store's answer: {e}")))?;
        Ok(Vars::from([(bs_flows::vars::ANSWER.to_string(), text)]))
    }

    /// The export flow's `export`: the store's agent places the file; the URL is the agent's
    /// export port on the store's hostname (the address the leader reaches it at).
    async fn export(&self, p: ExportPayload, term: u64) -> Result<Vars, EffectError> {
        let bs = self.record(&p.backup_storage_uuid)?;
        let what = format!(
            "exporting image[uuid:{}] from backup storage[uuid:{}] at {}",
            p.image_uuid, bs.uuid, bs.hostname
        );
        // Idempotent; makes sure the agent knows the store's directory.
        self.connect(&bs.uuid, &bs.hostname, &bs.url, term, CALL_TIMEOUT)
            .await
            .map_err(|e| call_failure(e, &what))?;
        let addr = agent_addr(&bs.hostname, self.port);
        let mut req = tonic::Request::new(pb::ExportImageRequest {
            header: self.header(term),
            backup_storage_uuid: bs.uuid.clone(),
            image_uuid: p.image_uuid.clone(),
            format: p.format,
            name: p.name,
        });
        req.set_timeout(EXPORT_TIMEOUT);
        let r = self
            .clients
            .grpc(&addr)
            .map_err(|e| call_failure(e, &what))?
            .export_image(req)
            .await
            .map_err(|s| call_failure(status_error(&addr, s), &what))?
            .into_inner();
        let port = u16::try_from(r.http_port)
            .map_err(|_| failed(format!("{what}: the agent answered port {}", r.http_port)))?;
        let e = export_flows::Exported {
            url: format!("http://{}{}", agent_addr(&bs.hostname, port), r.path),
            md5: r.md5,
        };
        let text =
            serde_json::to_string(&e).map_err(|e| failed(format!("encoding the export: {e}")))?;
        Ok(Vars::from([(export_flows::EXPORTED.to_string(), text)]))
    }

    /// A URL a host's agent downloads the image from (an export of the store's copy as it
    /// is stored, made if there is none yet), and its md5: how a root volume's image reaches
    /// the host's image cache.
    pub async fn export_url(
        &self,
        backup_storage_uuid: &str,
        image_uuid: &str,
        term: u64,
    ) -> Result<(String, String), EffectError> {
        let vars = self
            .export(
                ExportPayload {
                    image_uuid: image_uuid.to_string(),
                    backup_storage_uuid: backup_storage_uuid.to_string(),
                    format: String::new(),
                    name: image_uuid.to_string(),
                },
                term,
            )
            .await?;
        let text = vars
            .get(export_flows::EXPORTED)
            .ok_or_else(|| failed("the export answered no URL".into()))?;
        let e: export_flows::Exported =
            serde_json::from_str(text).map_err(|e| failed(format!("undecodable export: {e}")))?;
        Ok((e.url, e.md5))
    }

    /// The export flows' `unexport`: the file goes; a store that cannot be asked fails the
    /// step, so the URL stays recorded while it may still be served.
    async fn unexport(&self, p: ExportPayload, term: u64) -> Result<Vars, EffectError> {
        let bs = match self.record(&p.backup_storage_uuid) {
            Ok(b) => b,
            // The store is gone with its files.
            Err(EffectError::Failed(_)) => return Ok(Vars::new()),
            Err(e) => return Err(e),
        };
        let what = format!(
            "removing the export of image[uuid:{}] from backup storage[uuid:{}] at {}",
            p.image_uuid, bs.uuid, bs.hostname
        );
        self.delete_export(&bs, &p.image_uuid, term)
            .await
            .map_err(|e| call_failure(e, &what))?;
        Ok(Vars::new())
    }
}

/// The backup storage tracker's edge.
pub struct TrackerImageStores(pub Arc<ImageStores>);

impl ha::duties::backup_storage_tracker::ImageStoreAgents for TrackerImageStores {
    fn connect(
        &self,
        uuid: &str,
        hostname: &str,
        url: &str,
        term: u64,
        timeout: Duration,
    ) -> ha::BoxFuture<'static, Result<(u64, u64), String>> {
        let s = self.0.clone();
        let (uuid, hostname, url) = (uuid.to_string(), hostname.to_string(), url.to_string());
        Box::pin(async move {
            s.connect(&uuid, &hostname, &url, term, timeout)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
