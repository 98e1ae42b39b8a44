//! The image store role and the host's image cache, behind the same gate as every agent call
//! (`service::AgentService::admit`): image stores the leader connected (one directory per
//! backup storage, remembered in `<data>/imagestores.json`), downloads streamed back as
//! progress, deletions, and copying an image into a primary storage's image cache.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use proto::agent::v1 as pb;
use tonic::Status;

use crate::durable;
use crate::image_store::DownloadRequest;
use crate::image_store::ImageError;
use crate::image_store::ImageInfo;
use crate::image_store::ImageStore;

/// The image stores of this agent.
#[derive(Debug)]
pub struct ImageStores {
    file: Option<PathBuf>,
    stores: Mutex<BTreeMap<String, String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An image error as the caller sees it: the operator's input (URL, checksum, format, space)
/// is a definite refusal; a busy uuid or a local failure may succeed when asked again.
pub fn status_of(e: ImageError) -> Status {
    let msg = e.to_string();
    match e {
        ImageError::Busy { .. } => Status::unavailable(msg),
        ImageError::Io { .. } | ImageError::QemuImg { .. } => Status::internal(msg),
        ImageError::InvalidUuid { .. } | ImageError::UnsupportedUrl { .. } => {
            Status::invalid_argument(msg)
        }
        ImageError::NotFound { .. } => Status::not_found(msg),
        ImageError::Unexportable { .. } => Status::invalid_argument(msg),
        _ => Status::failed_precondition(msg),
    }
}

/// The wire form of an image file.
pub fn file_of(i: &ImageInfo) -> pb::ImageFile {
    pb::ImageFile {
        path: i.path.display().to_string(),
        format: i.format.clone(),
        virtual_size: i.virtual_size,
        actual_size: i.actual_size,
        md5: i.md5.clone(),
    }
}

impl ImageStores {
    /// Stores kept only in memory (the simulator, tests).
    pub fn in_memory() -> Self {
        Self {
            file: None,
            stores: Mutex::new(BTreeMap::new()),
        }
    }

    /// Stores remembered in `file` (`None`: in memory, the simulator).
    pub fn open(file: Option<PathBuf>) -> std::io::Result<Self> {
        let stores = match &file {
            Some(f) => match durable::read(f)? {
                Some(s) => serde_json::from_str(&s).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {e}", f.display()),
                    )
                })?,
                None => BTreeMap::new(),
            },
            None => BTreeMap::new(),
        };
        Ok(Self {
            file,
            stores: Mutex::new(stores),
        })
    }

    /// Make `url` the store of backup storage `bs`; answers its capacity.
    pub fn connect(&self, bs: &str, url: &str) -> Result<(u64, u64), Status> {
        if bs.is_empty() {
            return Err(Status::invalid_argument("no backup storage uuid"));
        }
        let path = std::path::Path::new(url);
        if !path.is_absolute() || path.components().any(|c| c.as_os_str() == "..") {
            return Err(Status::invalid_argument(format!(
                "image store url {url:?} must be an absolute path without \"..\""
            )));
        }
        std::fs::create_dir_all(path)
            .map_err(|e| Status::failed_precondition(format!("cannot create {url}: {e}")))?;
        let mut g = lock(&self.stores);
        if g.get(bs).map(String::as_str) != Some(url) {
            let mut next = g.clone();
            next.insert(bs.to_string(), url.to_string());
            if let Some(f) = &self.file {
                let json = serde_json::to_vec_pretty(&next)
                    .map_err(|e| Status::internal(format!("encoding image stores: {e}")))?;
                durable::write(f, &json)
                    .map_err(|e| Status::internal(format!("writing {}: {e}", f.display())))?;
            }
            *g = next;
        }
        drop(g);
        let (total, available) = crate::storage::statvfs(path).map_err(Status::unavailable)?;
        Ok((total, available))
    }

    /// The directory of backup storage `bs`, if it is connected here.
    pub fn root_of(&self, bs: &str) -> Option<PathBuf> {
        lock(&self.stores).get(bs).map(PathBuf::from)
    }

    /// Forget backup storage `bs` (its files stay); whether it was known, and how many
    /// stores remain.
    pub fn disconnect(&self, bs: &str) -> Result<(bool, usize), Status> {
        let mut g = lock(&self.stores);
        if !g.contains_key(bs) {
            return Ok((false, g.len()));
        }
        let mut next = g.clone();
        next.remove(bs);
        if let Some(f) = &self.file {
            let json = serde_json::to_vec_pretty(&next)
                .map_err(|e| Status::internal(format!("encoding image stores: {e}")))?;
            durable::write(f, &json)
                .map_err(|e| Status::internal(format!("writing {}: {e}", f.display())))?;
        }
        *g = next;
        Ok((true, g.len()))
    }

    /// The store of backup storage `bs`.
    pub fn store(&self, bs: &str) -> Result<ImageStore, Status> {
        lock(&self.stores)
            .get(bs)
            .map(ImageStore::new)
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "backup storage {bs} is not connected to this agent: connect it first"
                ))
            })
    }
}

/// Run a download, sending progress on `tx`; stops (dropping the partial file) when the
/// caller goes away.
pub async fn download(
    store: ImageStore,
    req: DownloadRequest,
    tx: tokio::sync::mpsc::Sender<Result<pb::DownloadProgress, Status>>,
) {
    let progress_tx = tx.clone();
    let work = store.download(req, move |p| {
        // Dropped when the channel is full: the next report supersedes it.
        let _ = progress_tx.try_send(Ok(pb::DownloadProgress {
            done_bytes: p.done_bytes,
            total_bytes: p.total_bytes.unwrap_or(0),
            finished: false,
            image: None,
        }));
    });
    let outcome = tokio::select! {
        r = work => r,
        () = tx.closed() => return,
    };
    let last = match outcome {
        Ok(info) => Ok(pb::DownloadProgress {
            done_bytes: info.actual_size,
            total_bytes: info.actual_size,
            finished: true,
            image: Some(file_of(&info)),
        }),
        Err(e) => Err(status_of(e)),
    };
    let _ = tx.send(last).await;
}

/// The image cache of a primary storage directory.
pub fn cache_of(ps_dir: &str) -> ImageStore {
    ImageStore::new(std::path::Path::new(ps_dir).join("imagecache"))
}

/// Shared handle.
pub type SharedImageStores = Arc<ImageStores>;
