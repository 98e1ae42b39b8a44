//! The image store's disk side: fetching images from `http://` or `file://` URLs into the
//! directory the image-store role keeps, checking that what arrived is really the image the
//! operator meant, and copying images into a primary storage's image cache.
//!
//! Layout under `root` (e.g. `/var/lib/zstack/imagestore`):
//!
//! ```text
//! root/.partial/<uuid>        a download in flight (or left by a crash / a dropped future)
//! root/.partial/<uuid>.json   its metadata, just before it is committed
//! root/images/<uuid>.<format> the image, exactly the bytes the md5 covers
//! root/images/<uuid>.json     its ImageInfo; written LAST, so it is the commit record
//! ```
//!
//! An image exists only when both `images/` files exist and agree; anything else is debris
//! that the next download of that uuid, [`ImageStore::delete`] or
//! [`ImageStore::cleanup_partials`] removes. Dropping a [`ImageStore::download`] future removes
//! its partial file on the spot (a guard's `Drop`); a crash leaves it for the next download.
//!
//! One `ImageStore` (and its clones) per root per process: the set of uuids being downloaded,
//! which keeps concurrent downloads and `cleanup_partials` off each other's partial files,
//! lives in memory. Across processes — the agents of several hosts sharing one image cache on
//! a shared-mount-point or NFS primary storage — a download holds an exclusive `flock` on
//! `root/.partial/<uuid>.lock` (removed when it is done), so a second agent waits for the first
//! and then finds the image committed instead of writing the same partial file.

use std::collections::HashSet;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

/// A byte step small enough that a multi-GiB image shows movement every few seconds.
const PROGRESS_STEP_BYTES: u64 = 4 << 20;
/// Without a Content-Length (chunked bodies) there is no 1%, so time keeps reports coming.
const PROGRESS_MAX_SILENCE: Duration = Duration::from_secs(1);
/// A server that stops sending without closing would otherwise pin a download forever.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const QEMU_IMG_TIMEOUT: Duration = Duration::from_secs(60);
/// qemu-img probes any file as raw; a "disk" smaller than one sector is an error page or
/// similar, not an image.
const MIN_RAW_BYTES: u64 = 512;
/// Enough of the head to recognise HTML and text, cheap to keep in memory.
const SNIFF_BYTES: usize = 4096;
const WRITE_BUFFER: usize = 1 << 20;
const COPY_CHUNK: usize = 1 << 20;

/// What the management node asks the image store to fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadRequest {
    pub image_uuid: String,
    pub url: String,
    /// Hex md5 of the whole file; compared case-insensitively.
    pub expected_md5: Option<String>,
    /// "qcow2", "raw", "iso", ...: what the operator registered the image as.
    pub format_hint: Option<String>,
}

/// A download's progress; `total_bytes` is unknown for chunked HTTP bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub done_bytes: u64,
    pub total_bytes: Option<u64>,
}

/// An image present in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub uuid: String,
    pub path: PathBuf,
    /// As qemu-img detects it, except that a raw file carrying an ISO 9660 volume descriptor
    /// is "iso" (qemu-img calls ISOs raw; ZStack boots them as CD-ROMs).
    pub format: String,
    /// The guest-visible disk size, from qemu-img.
    pub virtual_size: u64,
    /// The file's length: the bytes the md5 covers. Not qemu-img's "actual-size", which is
    /// the allocation and changes when a sparse file is copied.
    pub actual_size: u64,
    pub md5: String,
}

/// Every failure, worded for the operator: these become ZStack error details.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image uuid {uuid:?}: {reason}")]
    InvalidUuid { uuid: String, reason: &'static str },
    #[error("cannot download {url}: {reason}")]
    UnsupportedUrl { url: String, reason: String },
    #[error("{}", http_status_message(*code, url))]
    HttpStatus { code: u16, url: String },
    #[error("cannot download {url}: {detail}")]
    Network { url: String, detail: String },
    #[error("download of {url} stalled: no data for {secs} seconds")]
    Stalled { url: String, secs: u64 },
    #[error(
        "download of {url} was cut short: the server announced {expected} bytes but sent {got}"
    )]
    Truncated {
        url: String,
        expected: u64,
        got: u64,
    },
    #[error("{url} is not a disk image: {reason}")]
    NotAnImage { url: String, reason: String },
    #[error("md5 mismatch for {url}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url} is a {actual} image, but it was registered as {expected}")]
    FormatMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error(
        "not enough space in {}: {needed} bytes needed, {available} available",
        path.display()
    )]
    NoSpace {
        needed: u64,
        available: u64,
        path: PathBuf,
    },
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("qemu-img info failed on {}: {detail}", path.display())]
    QemuImg { path: PathBuf, detail: String },
    #[error("image {uuid} is already being downloaded")]
    Busy { uuid: String },
    #[error("image {uuid} is already in the image store with different content: {detail}")]
    Conflict { uuid: String, detail: String },
    #[error("image {uuid} is not in the image store at {}", root.display())]
    NotFound { uuid: String, root: PathBuf },
    #[error("cannot export image {uuid} as {format}: {reason}")]
    Unexportable {
        uuid: String,
        format: String,
        reason: String,
    },
    #[error("this agent serves no exports: it runs with --export-port 0")]
    ExportsDisabled,
}

fn http_status_message(code: u16, url: &str) -> String {
    match code {
        404 => format!("image not found: {url} answered HTTP 404 Not Found"),
        401 | 403 => format!("access to {url} denied: HTTP {code}"),
        _ => format!("cannot download {url}: HTTP status {code}"),
    }
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ImageError + 'a {
    move |source| ImageError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// (total, available to unprivileged writers) bytes of the filesystem holding `path`.
fn statvfs(path: &Path) -> std::io::Result<(u64, u64)> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated string; `st` is a plain C struct the call fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok((
        (st.f_blocks as u64).saturating_mul(frsize),
        (st.f_bavail as u64).saturating_mul(frsize),
    ))
}

pub(crate) fn check_space(dir: &Path, needed: u64) -> Result<(), ImageError> {
    let (_, available) = statvfs(dir).map_err(io_err("check free space in", dir))?;
    if available < needed {
        return Err(ImageError::NoSpace {
            needed,
            available,
            path: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// Uuids become file names, so nothing that could climb out of the store is accepted.
pub(crate) fn validate_uuid(uuid: &str) -> Result<(), ImageError> {
    let bad = |reason| {
        Err(ImageError::InvalidUuid {
            uuid: uuid.to_string(),
            reason,
        })
    };
    if uuid.is_empty() || uuid.len() > 64 {
        return bad("must be 1 to 64 characters");
    }
    if !uuid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return bad("only letters, digits, '-' and '_' are allowed");
    }
    Ok(())
}

fn looks_like_html(head: &[u8]) -> bool {
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let head = &head[start..];
    let prefix = |p: &[u8]| head.len() >= p.len() && head[..p.len()].eq_ignore_ascii_case(p);
    prefix(b"<!doctype") || prefix(b"<html")
}

/// Disk images start with boot sectors, headers or zeros; a NUL-free valid UTF-8 head is an
/// error message, a README or a listing.
fn looks_like_text(head: &[u8]) -> bool {
    if head.is_empty() || head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        // A multi-byte character cut by the sniff window is still text.
        Err(e) => e.error_len().is_none(),
    }
}

fn md5_eq(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// fsync a directory so a rename into it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", dir))
}

/// Removes a file when dropped unless disarmed: the "nothing half-created" rule, including
/// when the future owning it is dropped.
struct RemoveOnDrop {
    path: Option<PathBuf>,
}

impl RemoveOnDrop {
    fn new(path: PathBuf) -> Self {
        Self { path: Some(path) }
    }
    fn disarm(&mut self) {
        self.path = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %p.display(), error = %e, "cannot remove partial file");
                }
            }
        }
    }
}

/// Marks a uuid as being downloaded so concurrent requests and `cleanup_partials` leave its
/// partial file alone.
/// A download's lock across processes: the lock file is removed, then the lock released.
struct SharedLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

struct InFlight {
    set: Arc<Mutex<HashSet<String>>>,
    uuid: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.uuid);
        }
    }
}

/// Where the bytes come from.
enum Source {
    Http(reqwest::Response),
    File(tokio::fs::File),
}

/// The image store directory of one agent.
#[derive(Debug, Clone)]
pub struct ImageStore {
    pub root: PathBuf,
    in_flight: Arc<Mutex<HashSet<String>>>,
}

impl ImageStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            in_flight: Arc::default(),
        }
    }

    fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    fn partial_dir(&self) -> PathBuf {
        self.root.join(".partial")
    }

    fn meta_path(&self, uuid: &str) -> PathBuf {
        self.images_dir().join(format!("{uuid}.json"))
    }

    fn ensure_dirs(&self) -> Result<(), ImageError> {
        for d in [self.images_dir(), self.partial_dir()] {
            std::fs::create_dir_all(&d).map_err(io_err("create directory", &d))?;
        }
        Ok(())
    }

    /// The image file of a present image.
    pub fn path_of(&self, image_uuid: &str) -> Result<Option<PathBuf>, ImageError> {
        Ok(self.info(image_uuid)?.map(|i| i.path))
    }

    /// The image if it is fully present (metadata and a data file of the recorded length).
    pub fn info(&self, image_uuid: &str) -> Result<Option<ImageInfo>, ImageError> {
        validate_uuid(image_uuid)?;
        let meta = self.meta_path(image_uuid);
        let text = match std::fs::read(&meta) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read image metadata", &meta)(e)),
        };
        let mut info: ImageInfo = match serde_json::from_slice(&text) {
            Ok(i) => i,
            Err(e) => {
                // A torn metadata file means the image never committed.
                tracing::warn!(path = %meta.display(), error = %e, "unreadable image metadata");
                return Ok(None);
            }
        };
        if info.uuid != image_uuid || validate_format(&info.format).is_err() {
            return Ok(None);
        }
        // The root may have moved since the metadata was written.
        info.path = self
            .images_dir()
            .join(format!("{image_uuid}.{}", info.format));
        match std::fs::metadata(&info.path) {
            Ok(m) if m.is_file() && m.len() == info.actual_size => Ok(Some(info)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("stat image", &info.path)(e)),
        }
    }

    /// Removes every file of the image (data, metadata, partials); false if there was none.
    pub fn delete(&self, image_uuid: &str) -> Result<bool, ImageError> {
        validate_uuid(image_uuid)?;
        let mut removed = false;
        // Metadata first: once it is gone the image no longer exists, whatever else remains.
        let meta = self.meta_path(image_uuid);
        removed |= remove_if_present(&meta)?;
        removed |= self.remove_strays(image_uuid)?;
        if !self.is_in_flight(image_uuid) {
            for p in [
                self.partial_dir().join(image_uuid),
                self.partial_dir().join(format!("{image_uuid}.json")),
            ] {
                remove_if_present(&p)?;
            }
        }
        Ok(removed)
    }

    /// `images/<uuid>.*` files: data without committed metadata is debris.
    fn remove_strays(&self, uuid: &str) -> Result<bool, ImageError> {
        let dir = self.images_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        let prefix = format!("{uuid}.");
        let mut removed = false;
        for entry in entries {
            let entry = entry.map_err(io_err("list", &dir))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(&prefix) {
                removed |= remove_if_present(&entry.path())?;
            }
        }
        Ok(removed)
    }

    /// Wait for the exclusive lock of `uuid`'s download in this store's directory, whichever
    /// process holds it. The holder removes the lock file before it lets go, so a waiter that
    /// wakes on a file no longer at the path takes the lock again on the new one: the
    /// directory keeps no lock files once downloads are done.
    async fn lock_across_processes(&self, uuid: &str) -> Result<SharedLock, ImageError> {
        let path = self.partial_dir().join(format!("{uuid}.lock"));
        loop {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io_err("open lock", &path))?;
            let locking = file.try_clone().map_err(io_err("open lock", &path))?;
            let p = path.clone();
            tokio::task::spawn_blocking(move || {
                use std::os::fd::AsRawFd;
                // SAFETY: flock on a descriptor this closure owns; no memory is shared.
                if unsafe { libc::flock(locking.as_raw_fd(), libc::LOCK_EX) } == 0 {
                    Ok(())
                } else {
                    Err(io_err("lock", &p)(std::io::Error::last_os_error()))
                }
            })
            .await
            .map_err(|e| io_err("lock", &path)(std::io::Error::other(e.to_string())))??;
            use std::os::unix::fs::MetadataExt;
            let held = file.metadata().map_err(io_err("stat lock", &path))?;
            match std::fs::metadata(&path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(SharedLock { path, _file: file })
                }
                // The previous holder removed it: take the lock on the file there now.
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("stat lock", &path)(e)),
            }
        }
    }

    fn is_in_flight(&self, uuid: &str) -> bool {
        self.in_flight
            .lock()
            .map(|s| s.contains(uuid))
            .unwrap_or(true)
    }

    /// Removes partial files no download in this process is writing (left by a crash or a
    /// cancelled download); returns how many were removed.
    pub fn cleanup_partials(&self) -> Result<usize, ImageError> {
        let dir = self.partial_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        let mut n = 0;
        for entry in entries {
            let entry = entry.map_err(io_err("list", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Another process may hold it: removing it would let a third take a new one.
            if name.ends_with(".lock") {
                continue;
            }
            let uuid = name.strip_suffix(".json").unwrap_or(&name);
            if !self.is_in_flight(uuid) && remove_if_present(&entry.path())? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// (total, available) bytes of the filesystem holding the store; (0, 0) if it cannot be
    /// read, which callers report as a store with no room.
    pub fn capacity(&self) -> (u64, u64) {
        match statvfs(&self.root) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(root = %self.root.display(), error = %e, "statvfs failed");
                (0, 0)
            }
        }
    }

    /// Fetches `req.url` into the store, verified; returns the present image's info without
    /// refetching when the uuid is already here with matching checksum and format.
    pub async fn download(
        &self,
        req: DownloadRequest,
        progress: impl Fn(Progress) + Send,
    ) -> Result<ImageInfo, ImageError> {
        validate_uuid(&req.image_uuid)?;
        let uuid = req.image_uuid.as_str();
        let url = req.url.as_str();
        self.ensure_dirs()?;
        let _in_flight = {
            let mut set = self
                .in_flight
                .lock()
                .map_err(|_| ImageError::Busy { uuid: uuid.into() })?;
            if !set.insert(uuid.to_string()) {
                return Err(ImageError::Busy { uuid: uuid.into() });
            }
            InFlight {
                set: self.in_flight.clone(),
                uuid: uuid.to_string(),
            }
        };

        if let Some(info) = self.info(uuid)? {
            return check_existing(info, &req);
        }
        let _shared = self.lock_across_processes(uuid).await?;
        if let Some(info) = self.info(uuid)? {
            return check_existing(info, &req);
        }
        // Leftovers of a crash or of a cancelled download of this uuid.
        self.remove_strays(uuid)?;
        let partial = self.partial_dir().join(uuid);
        let partial_meta = self.partial_dir().join(format!("{uuid}.json"));
        remove_if_present(&partial)?;
        remove_if_present(&partial_meta)?;

        let (source, total) = open_source(url).await?;
        if let Some(len) = total {
            check_space(&self.root, len)?;
        }

        let mut guard = RemoveOnDrop::new(partial.clone());
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .await
            .map_err(io_err("create", &partial))?;
        let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut md5 = Md5::new();
        let mut head: Vec<u8> = Vec::with_capacity(SNIFF_BYTES);
        let mut done: u64 = 0;
        let step = match total {
            Some(t) => (t / 100).clamp(1, PROGRESS_STEP_BYTES),
            None => PROGRESS_STEP_BYTES,
        };
        let mut last_bytes = 0u64;
        let mut last_time = Instant::now();
        progress(Progress {
            done_bytes: 0,
            total_bytes: total,
        });

        let no_space = |done: u64, root: &Path| ImageError::NoSpace {
            needed: total.unwrap_or(done).max(done),
            available: statvfs(root).map(|c| c.1).unwrap_or(0),
            path: root.to_path_buf(),
        };
        let mut chunks = into_chunks(source);
        loop {
            let next = tokio::time::timeout(STALL_TIMEOUT, chunks.next())
                .await
                .map_err(|_| ImageError::Stalled {
                    url: url.into(),
                    secs: STALL_TIMEOUT.as_secs(),
                })?;
            let chunk = match next {
                None => break,
                Some(Ok(c)) => c,
                Some(Err(ChunkError::Http(e))) => {
                    return Err(match total {
                        Some(expected) if done < expected => ImageError::Truncated {
                            url: url.into(),
                            expected,
                            got: done,
                        },
                        _ => network_error(url, &e),
                    });
                }
                Some(Err(ChunkError::File(e))) => {
                    return Err(ImageError::Io {
                        op: "read",
                        path: file_path_of(url).unwrap_or_default(),
                        source: e,
                    });
                }
            };
            if head.len() < SNIFF_BYTES {
                let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
                // Refuse an error page before writing megabytes of it.
                if head.len() >= 16 && looks_like_html(&head) {
                    return Err(not_an_image(url, "the URL returned an HTML page"));
                }
            }
            md5.update(&chunk);
            if let Err(e) = out.write_all(&chunk).await {
                return Err(if is_no_space(&e) {
                    no_space(done + chunk.len() as u64, &self.root)
                } else {
                    io_err("write", &partial)(e)
                });
            }
            done += chunk.len() as u64;
            if done - last_bytes >= step || last_time.elapsed() >= PROGRESS_MAX_SILENCE {
                progress(Progress {
                    done_bytes: done,
                    total_bytes: total,
                });
                last_bytes = done;
                last_time = Instant::now();
            }
        }
        if let Err(e) = async {
            out.flush().await?;
            out.get_ref().sync_all().await
        }
        .await
        {
            return Err(if is_no_space(&e) {
                no_space(done, &self.root)
            } else {
                io_err("write", &partial)(e)
            });
        }
        drop(out);
        if last_bytes != done || done == 0 {
            progress(Progress {
                done_bytes: done,
                total_bytes: total,
            });
        }

        if let Some(expected) = total {
            if done < expected {
                return Err(ImageError::Truncated {
                    url: url.into(),
                    expected,
                    got: done,
                });
            }
        }
        if looks_like_html(&head) {
            return Err(not_an_image(url, "the URL returned an HTML page"));
        }
        let actual_md5 = hex::encode(md5.finalize());
        if let Some(expected) = &req.expected_md5 {
            if !md5_eq(expected, &actual_md5) {
                return Err(ImageError::ChecksumMismatch {
                    url: url.into(),
                    expected: expected.trim().to_ascii_lowercase(),
                    actual: actual_md5,
                });
            }
        }

        let probe = qemu_img_info(&partial).await?;
        if probe.backing.is_some() {
            return Err(not_an_image(
                url,
                "it is a qcow2 overlay with a backing file; a downloaded image must be self-contained",
            ));
        }
        let mut format = probe.format;
        if format == "raw" {
            if done < MIN_RAW_BYTES {
                return Err(not_an_image(
                    url,
                    &format!("only {done} bytes, smaller than one disk sector"),
                ));
            }
            if looks_like_text(&head) {
                return Err(not_an_image(url, "the file is text"));
            }
            if is_iso9660(&partial) {
                format = "iso".into();
            }
        }
        validate_format(&format).map_err(|_| ImageError::QemuImg {
            path: partial.clone(),
            detail: format!("unexpected format name {format:?}"),
        })?;
        if let Some(hint) = &req.format_hint {
            if !hint.trim().eq_ignore_ascii_case(&format) {
                return Err(ImageError::FormatMismatch {
                    url: url.into(),
                    expected: hint.trim().to_ascii_lowercase(),
                    actual: format,
                });
            }
        }

        let final_path = self.images_dir().join(format!("{uuid}.{format}"));
        let info = ImageInfo {
            uuid: uuid.into(),
            path: final_path.clone(),
            format,
            virtual_size: probe.virtual_size,
            actual_size: done,
            md5: actual_md5,
        };
        // Metadata is written beside the partial and renamed last, so a crash never leaves
        // a committed record for data that is not in place.
        let mut meta_guard = RemoveOnDrop::new(partial_meta.clone());
        let meta_json = serde_json::to_vec_pretty(&info).map_err(|e| ImageError::Io {
            op: "encode metadata for",
            path: partial_meta.clone(),
            source: std::io::Error::other(e),
        })?;
        write_synced(&partial_meta, &meta_json)?;
        std::fs::rename(&partial, &final_path).map_err(io_err("move image into", &final_path))?;
        guard.disarm();
        let meta = self.meta_path(uuid);
        if let Err(e) = std::fs::rename(&partial_meta, &meta) {
            let _ = std::fs::remove_file(&final_path);
            return Err(io_err("commit image metadata", &meta)(e));
        }
        meta_guard.disarm();
        sync_dir(&self.images_dir())?;
        tracing::info!(uuid, url, format = %info.format, bytes = done, "image downloaded");
        Ok(info)
    }

    /// Copies an image into a primary storage's image cache as `cache_dir/<uuid>.<format>`,
    /// verified by md5; a present, intact copy is returned as is.
    pub async fn copy_to_cache(
        &self,
        image_uuid: &str,
        cache_dir: &Path,
    ) -> Result<PathBuf, ImageError> {
        let info = self.info(image_uuid)?.ok_or_else(|| ImageError::NotFound {
            uuid: image_uuid.into(),
            root: self.root.clone(),
        })?;
        let dir = cache_dir.to_path_buf();
        // All of it runs on one blocking thread: a dropped future then still ends with either
        // a complete, verified file or nothing, never a rename racing a cleanup.
        tokio::task::spawn_blocking(move || copy_verified(&info, &dir))
            .await
            .map_err(|e| ImageError::Io {
                op: "copy image into (worker failed)",
                path: cache_dir.to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })?
    }
}

fn check_existing(info: ImageInfo, req: &DownloadRequest) -> Result<ImageInfo, ImageError> {
    if let Some(expected) = &req.expected_md5 {
        if !md5_eq(expected, &info.md5) {
            return Err(ImageError::Conflict {
                uuid: info.uuid.clone(),
                detail: format!(
                    "its md5 is {}, the request expects {}",
                    info.md5,
                    expected.trim()
                ),
            });
        }
    }
    if let Some(hint) = &req.format_hint {
        if !hint.trim().eq_ignore_ascii_case(&info.format) {
            return Err(ImageError::FormatMismatch {
                url: req.url.clone(),
                expected: hint.trim().to_ascii_lowercase(),
                actual: info.format,
            });
        }
    }
    Ok(info)
}

fn not_an_image(url: &str, reason: &str) -> ImageError {
    ImageError::NotAnImage {
        url: url.into(),
        reason: reason.into(),
    }
}

/// reqwest's Display hides the cause ("error sending request"); operators need the chain.
fn network_error(url: &str, e: &(dyn std::error::Error + 'static)) -> ImageError {
    let mut detail = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        cur = s.source();
    }
    ImageError::Network {
        url: url.into(),
        detail,
    }
}

fn file_path_of(url: &str) -> Option<PathBuf> {
    reqwest::Url::parse(url).ok()?.to_file_path().ok()
}

async fn open_source(url: &str) -> Result<(Source, Option<u64>), ImageError> {
    let unsupported = |reason: &str| ImageError::UnsupportedUrl {
        url: url.into(),
        reason: reason.into(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| unsupported(&format!("bad URL: {e}")))?;
    match parsed.scheme() {
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|_| unsupported("a file URL must be file:///absolute/path"))?;
            let f = tokio::fs::File::open(&path)
                .await
                .map_err(io_err("open", &path))?;
            let m = f.metadata().await.map_err(io_err("stat", &path))?;
            if !m.is_file() {
                return Err(unsupported("the path is not a regular file"));
            }
            Ok((Source::File(f), Some(m.len())))
        }
        "http" => {
            let client = reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .build()
                .map_err(|e| network_error(url, &e))?;
            let resp = client
                .get(parsed)
                .send()
                .await
                .map_err(|e| network_error(url, &e))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(ImageError::HttpStatus {
                    code: status.as_u16(),
                    url: url.into(),
                });
            }
            let html = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    let v = v.trim().to_ascii_lowercase();
                    v.starts_with("text/html") || v.starts_with("application/xhtml")
                })
                .unwrap_or(false);
            if html {
                return Err(not_an_image(url, "the URL returned an HTML page"));
            }
            let total = resp.content_length();
            Ok((Source::Http(resp), total))
        }
        // This build trusts no CA roots (reqwest with manual roots and none configured), so
        // every https handshake would fail with an opaque certificate error.
        "https" => Err(unsupported(
            "https is not supported by this agent (no trusted CA roots are configured); \
             serve the image over http:// or copy it to the host and use file://",
        )),
        other => Err(unsupported(&format!(
            "scheme {other:?} is not supported; use http:// or file://"
        ))),
    }
}

enum ChunkError {
    Http(reqwest::Error),
    File(std::io::Error),
}

type ChunkStream = futures::stream::BoxStream<'static, Result<bytes::Bytes, ChunkError>>;

fn into_chunks(source: Source) -> ChunkStream {
    match source {
        Source::Http(resp) => resp
            .bytes_stream()
            .map(|r| r.map_err(ChunkError::Http))
            .boxed(),
        Source::File(f) => futures::stream::unfold(Some(f), |f| async move {
            let mut f = f?;
            let mut buf = vec![0u8; COPY_CHUNK];
            match tokio::io::AsyncReadExt::read(&mut f, &mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), Some(f)))
                }
                Err(e) => Some((Err(ChunkError::File(e)), None)),
            }
        })
        .boxed(),
    }
}

/// What qemu-img reports about a file.
struct Probe {
    format: String,
    virtual_size: u64,
    backing: Option<String>,
}

async fn qemu_img_info(path: &Path) -> Result<Probe, ImageError> {
    let fail = |detail: String| ImageError::QemuImg {
        path: path.to_path_buf(),
        detail,
    };
    let run = tokio::process::Command::new("qemu-img")
        .arg("info")
        .arg("--output=json")
        .arg(path)
        .kill_on_drop(true)
        .output();
    // The file is untrusted input; a pathological header must not wedge the download.
    let out = tokio::time::timeout(QEMU_IMG_TIMEOUT, run)
        .await
        .map_err(|_| {
            fail(format!(
                "no answer within {} seconds",
                QEMU_IMG_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| {
            fail(format!(
                "cannot run qemu-img (is qemu-utils installed?): {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(fail(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| fail(format!("unparseable output: {e}")))?;
    let format = v
        .get("format")
        .and_then(|f| f.as_str())
        .ok_or_else(|| fail("no \"format\" in its output".into()))?
        .to_string();
    let virtual_size = v
        .get("virtual-size")
        .and_then(|s| s.as_u64())
        .ok_or_else(|| fail("no \"virtual-size\" in its output".into()))?;
    let backing = v
        .get("backing-filename")
        .and_then(|b| b.as_str())
        .map(str::to_string);
    Ok(Probe {
        format,
        virtual_size,
        backing,
    })
}

/// The primary volume descriptor's "CD001" at sector 16 (2048-byte sectors) marks ISO 9660.
fn is_iso9660(path: &Path) -> bool {
    let mut magic = [0u8; 5];
    std::fs::File::open(path)
        .and_then(|f| f.read_exact_at(&mut magic, 16 * 2048 + 1))
        .map(|_| &magic == b"CD001")
        .unwrap_or(false)
}

/// Formats become file extensions.
pub(crate) fn validate_format(format: &str) -> Result<(), ()> {
    if !format.is_empty() && format.len() <= 16 && format.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        Ok(())
    } else {
        Err(())
    }
}

pub(crate) fn remove_if_present(path: &Path) -> Result<bool, ImageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

pub(crate) fn write_synced(path: &Path, data: &[u8]) -> Result<(), ImageError> {
    let mut f = std::fs::File::create(path).map_err(io_err("create", path))?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(|e| {
        if is_no_space(&e) {
            let dir = path.parent().unwrap_or(path);
            ImageError::NoSpace {
                needed: data.len() as u64,
                available: statvfs(dir).map(|c| c.1).unwrap_or(0),
                path: dir.to_path_buf(),
            }
        } else {
            io_err("write", path)(e)
        }
    })
}

/// md5 and length of a file.
pub(crate) fn md5_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hex::encode(md5.finalize()), len))
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

fn copy_verified(info: &ImageInfo, cache_dir: &Path) -> Result<PathBuf, ImageError> {
    std::fs::create_dir_all(cache_dir).map_err(io_err("create directory", cache_dir))?;
    let dest = cache_dir.join(format!("{}.{}", info.uuid, info.format));
    match md5_file(&dest) {
        Ok((md5, len)) if len == info.actual_size && md5_eq(&md5, &info.md5) => return Ok(dest),
        Ok(_) => tracing::warn!(path = %dest.display(), "cached image differs; copying again"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("read cached image", &dest)(e)),
    }
    check_space(cache_dir, info.actual_size)?;
    // Unique per copy so two copies of one image into one cache cannot share a temp file.
    let tmp = cache_dir.join(format!(
        ".{}.{}.{}-{}.tmp",
        info.uuid,
        info.format,
        std::process::id(),
        TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let mut guard = RemoveOnDrop::new(tmp.clone());
    let map_write = |e: std::io::Error| {
        if is_no_space(&e) {
            ImageError::NoSpace {
                needed: info.actual_size,
                available: statvfs(cache_dir).map(|c| c.1).unwrap_or(0),
                path: cache_dir.to_path_buf(),
            }
        } else {
            io_err("write", &tmp)(e)
        }
    };
    let mut src = std::fs::File::open(&info.path).map_err(io_err("open", &info.path))?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut len = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(io_err("read", &info.path))?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(map_write)?;
        len += n as u64;
    }
    out.sync_all().map_err(map_write)?;
    drop(out);
    // Verify what landed on the cache's disk, not what was read: that is what VMs boot.
    let (written_md5, written_len) = md5_file(&tmp).map_err(io_err("read back", &tmp))?;
    let read_md5 = hex::encode(md5.finalize());
    if !md5_eq(&read_md5, &info.md5) || !md5_eq(&written_md5, &info.md5) {
        return Err(ImageError::ChecksumMismatch {
            url: dest.display().to_string(),
            expected: info.md5.clone(),
            actual: if md5_eq(&read_md5, &info.md5) {
                written_md5
            } else {
                read_md5
            },
        });
    }
    if len != info.actual_size || written_len != info.actual_size {
        return Err(ImageError::Truncated {
            url: dest.display().to_string(),
            expected: info.actual_size,
            got: written_len.min(len),
        });
    }
    std::fs::rename(&tmp, &dest).map_err(io_err("move copy into", &dest))?;
    guard.disarm();
    sync_dir(cache_dir)?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    const MIB: u64 = 1 << 20;

    #[derive(Clone)]
    enum Route {
        Full {
            ctype: &'static str,
            body: Vec<u8>,
        },
        Status(u16),
        /// Announces `declared` bytes, sends `body`, closes.
        Short {
            declared: u64,
            body: Vec<u8>,
        },
        Chunked {
            body: Vec<u8>,
            chunk: usize,
            delay: Duration,
        },
    }

    struct Server {
        base: String,
        hits: Arc<Mutex<HashMap<String, usize>>>,
    }

    impl Server {
        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }
        fn hits(&self, path: &str) -> usize {
            self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
        }
    }

    /// A hand-rolled HTTP/1.1 server: the truncated and lying-header cases need control over
    /// the wire that a framework would (rightly) refuse to give.
    async fn serve(routes: HashMap<&'static str, Route>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let routes = Arc::new(routes);
        let h = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let routes = routes.clone();
                let hits = h.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&req).into_owned();
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                    let route = routes
                        .get(path.as_str())
                        .cloned()
                        .unwrap_or(Route::Status(404));
                    let _ = respond(&mut sock, route).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Server { base, hits }
    }

    async fn respond(sock: &mut tokio::net::TcpStream, route: Route) -> std::io::Result<()> {
        match route {
            Route::Full { ctype, body } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                sock.write_all(head.as_bytes()).await?;
                sock.write_all(&body).await
            }
            Route::Status(code) => {
                let body = "no such thing";
                let head = format!(
                    "HTTP/1.1 {code} Whatever\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                sock.write_all(head.as_bytes()).await
            }
            Route::Short { declared, body } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
                );
                sock.write_all(head.as_bytes()).await?;
                sock.write_all(&body).await
            }
            Route::Chunked { body, chunk, delay } => {
                sock.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                )
                .await?;
                for c in body.chunks(chunk) {
                    sock.write_all(format!("{:x}\r\n", c.len()).as_bytes())
                        .await?;
                    sock.write_all(c).await?;
                    sock.write_all(b"\r\n").await?;
                    sock.flush().await?;
                    tokio::time::sleep(delay).await;
                }
                sock.write_all(b"0\r\n\r\n").await
            }
        }
    }

    fn qcow2_bytes(dir: &Path) -> Vec<u8> {
        let p = dir.join("x.qcow2");
        let st = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&p)
            .arg("64M")
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::read(p).unwrap()
    }

    /// A raw disk: an MBR signature, some data further in, zeros elsewhere.
    fn raw_bytes(len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        v[510] = 0x55;
        v[511] = 0xaa;
        for (i, b) in v[4096..8192].iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        v
    }

    fn md5_of(b: &[u8]) -> String {
        hex::encode(Md5::digest(b))
    }

    fn qemu_virtual_size(bytes: &[u8], dir: &Path) -> u64 {
        let p = dir.join("probe");
        std::fs::write(&p, bytes).unwrap();
        let out = std::process::Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&p)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["virtual-size"].as_u64().unwrap()
    }

    fn req(uuid: &str, url: String) -> DownloadRequest {
        DownloadRequest {
            image_uuid: uuid.into(),
            url,
            expected_md5: None,
            format_hint: None,
        }
    }

    /// Every file under the store (ignoring the directories themselves).
    fn files_under(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out
    }

    fn assert_empty(store: &ImageStore) {
        let left = files_under(&store.root);
        assert!(left.is_empty(), "files left behind: {left:?}");
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        work: PathBuf,
        store: ImageStore,
        server: Server,
        qcow2: Vec<u8>,
        raw: Vec<u8>,
        slow: Vec<u8>,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let qcow2 = qcow2_bytes(&work);
        let raw = raw_bytes(2 * MIB as usize);
        let slow = raw_bytes(13 * MIB as usize);
        let octet = "application/octet-stream";
        let mut text = Vec::new();
        while text.len() < 3000 {
            text.extend_from_slice(b"Index of /images\nubuntu.qcow2  2024-01-01  1.2G\n");
        }
        let mut routes = HashMap::new();
        routes.insert(
            "/x.qcow2",
            Route::Full {
                ctype: octet,
                body: qcow2.clone(),
            },
        );
        routes.insert(
            "/x.raw",
            Route::Full {
                ctype: octet,
                body: raw.clone(),
            },
        );
        routes.insert("/forbidden", Route::Status(403));
        routes.insert(
            "/page.html",
            Route::Full {
                ctype: "text/html; charset=utf-8",
                body: b"<!DOCTYPE html><html><body>login</body></html>".to_vec(),
            },
        );
        let mut sneaky = b"\n  <HTML><head><title>Portal</title></head>".to_vec();
        sneaky.resize(5000, b' ');
        routes.insert(
            "/sneaky",
            Route::Full {
                ctype: octet,
                body: sneaky,
            },
        );
        routes.insert(
            "/text",
            Route::Full {
                ctype: octet,
                body: text,
            },
        );
        routes.insert(
            "/tiny",
            Route::Full {
                ctype: octet,
                body: vec![0, 1, 2, 3, 0, 200, 17, 9],
            },
        );
        routes.insert(
            "/truncated",
            Route::Short {
                declared: raw.len() as u64,
                body: raw[..raw.len() / 2].to_vec(),
            },
        );
        routes.insert(
            "/huge",
            Route::Short {
                declared: 1 << 50,
                body: raw[..4096].to_vec(),
            },
        );
        routes.insert(
            "/slow",
            Route::Chunked {
                body: slow.clone(),
                chunk: MIB as usize,
                delay: Duration::from_millis(5),
            },
        );
        routes.insert(
            "/crawl",
            Route::Chunked {
                body: slow.clone(),
                chunk: MIB as usize,
                delay: Duration::from_millis(300),
            },
        );
        let server = serve(routes).await;
        let store = ImageStore::new(dir.path().join("store"));
        Fixture {
            _dir: dir,
            work,
            store,
            server,
            qcow2,
            raw,
            slow,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_sharing_a_cache_download_an_image_once() {
        let f = fixture().await;
        // Two stores on one root stand for two agents (two processes) on shared storage:
        // they share no in-memory state, only the directory.
        let a = ImageStore::new(f.store.root.clone());
        let b = ImageStore::new(f.store.root.clone());
        let r = req("img-shared", f.server.url("/x.qcow2"));
        let (x, y) = tokio::join!(a.download(r.clone(), |_| {}), b.download(r, |_| {}));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x, y);
        assert_eq!(std::fs::read(&x.path).unwrap(), f.qcow2);
        assert_eq!(f.server.hits("/x.qcow2"), 1, "downloaded once");
        assert!(
            files_under(&f.store.partial_dir()).is_empty(),
            "no partial or lock file left"
        );
    }

    #[tokio::test]
    async fn qcow2_download_is_verified_idempotent_copied_and_deleted() {
        let f = fixture().await;
        let mut r = req("img-1", f.server.url("/x.qcow2"));
        r.expected_md5 = Some(md5_of(&f.qcow2).to_ascii_uppercase());
        r.format_hint = Some("qcow2".into());
        let info = f.store.download(r.clone(), |_| {}).await.unwrap();
        assert_eq!(info.format, "qcow2");
        assert_eq!(info.virtual_size, 64 * MIB);
        assert_eq!(info.virtual_size, qemu_virtual_size(&f.qcow2, &f.work));
        assert_eq!(info.actual_size, f.qcow2.len() as u64);
        assert_eq!(info.md5, md5_of(&f.qcow2));
        assert_eq!(info.path, f.store.root.join("images/img-1.qcow2"));
        assert_eq!(std::fs::read(&info.path).unwrap(), f.qcow2);
        assert_eq!(f.store.info("img-1").unwrap(), Some(info.clone()));
        assert_eq!(f.store.path_of("img-1").unwrap(), Some(info.path.clone()));
        assert!(files_under(&f.store.partial_dir()).is_empty());

        // Already present: answered from disk, the server is not asked again.
        let again = f.store.download(r.clone(), |_| {}).await.unwrap();
        assert_eq!(again, info);
        assert_eq!(f.server.hits("/x.qcow2"), 1);
        // Same uuid, different content: refused rather than silently kept.
        let mut other = r.clone();
        other.expected_md5 = Some(md5_of(b"something else"));
        assert!(matches!(
            f.store.download(other, |_| {}).await,
            Err(ImageError::Conflict { .. })
        ));

        let cache = f.work.join("ps/imagecache");
        let cached = f.store.copy_to_cache("img-1", &cache).await.unwrap();
        assert_eq!(cached, cache.join("img-1.qcow2"));
        assert_eq!(std::fs::read(&cached).unwrap(), f.qcow2);
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let first = inode(&cached);
        assert_eq!(
            f.store.copy_to_cache("img-1", &cache).await.unwrap(),
            cached
        );
        assert_eq!(
            inode(&cached),
            first,
            "an intact cached copy is not rewritten"
        );
        // A damaged cached copy is replaced.
        std::fs::write(&cached, b"garbage").unwrap();
        f.store.copy_to_cache("img-1", &cache).await.unwrap();
        assert_eq!(std::fs::read(&cached).unwrap(), f.qcow2);
        assert_eq!(
            std::fs::read_dir(&cache).unwrap().count(),
            1,
            "no temp files left"
        );

        assert!(f.store.delete("img-1").unwrap());
        assert_eq!(f.store.info("img-1").unwrap(), None);
        assert!(!info.path.exists());
        assert!(!f.store.delete("img-1").unwrap());
        assert_empty(&f.store);
        assert!(matches!(
            f.store.copy_to_cache("img-1", &cache).await,
            Err(ImageError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn raw_over_http_and_file_url() {
        let f = fixture().await;
        let info = f
            .store
            .download(req("raw-http", f.server.url("/x.raw")), |_| {})
            .await
            .unwrap();
        assert_eq!(info.format, "raw");
        assert_eq!(info.virtual_size, 2 * MIB);
        assert_eq!(info.md5, md5_of(&f.raw));

        let src = f.work.join("local image.raw");
        std::fs::write(&src, &f.raw).unwrap();
        let url = reqwest::Url::from_file_path(&src).unwrap().to_string();
        let mut r = req("raw-file", url);
        r.format_hint = Some("RAW".into());
        r.expected_md5 = Some(md5_of(&f.raw));
        let info = f.store.download(r, |_| {}).await.unwrap();
        assert_eq!(info.format, "raw");
        assert_eq!(info.path, f.store.root.join("images/raw-file.raw"));
        assert_eq!(std::fs::read(&info.path).unwrap(), f.raw);

        // qemu-img calls an ISO raw; the volume descriptor makes it "iso".
        let mut iso = raw_bytes(64 * 1024);
        iso[16 * 2048..16 * 2048 + 6].copy_from_slice(b"\x01CD001");
        let iso_src = f.work.join("cd.iso");
        std::fs::write(&iso_src, &iso).unwrap();
        let url = reqwest::Url::from_file_path(&iso_src).unwrap().to_string();
        let mut r = req("iso", url.clone());
        r.format_hint = Some("iso".into());
        let info = f.store.download(r, |_| {}).await.unwrap();
        assert_eq!(info.format, "iso");
        assert_eq!(info.path, f.store.root.join("images/iso.iso"));
        let mut r = req("iso-as-qcow2", url);
        r.format_hint = Some("qcow2".into());
        assert!(matches!(
            f.store.download(r, |_| {}).await,
            Err(ImageError::FormatMismatch { .. })
        ));

        let missing = req("raw-missing", "file:///nonexistent/image.raw".into());
        let e = f.store.download(missing, |_| {}).await.unwrap_err();
        assert!(e.to_string().contains("/nonexistent/image.raw"), "{e}");
        assert_eq!(f.store.info("raw-missing").unwrap(), None);
    }

    #[tokio::test]
    async fn rejected_downloads_leave_nothing() {
        let f = fixture().await;
        let s = &f.store;
        let dl = |uuid: &str, path: &str| s.download(req(uuid, f.server.url(path)), |_| {});

        let mut r = req("bad-md5", f.server.url("/x.qcow2"));
        r.expected_md5 = Some("0123456789abcdef0123456789abcdef".into());
        match s.download(r, |_| {}).await {
            Err(ImageError::ChecksumMismatch {
                expected, actual, ..
            }) => {
                assert_eq!(expected, "0123456789abcdef0123456789abcdef");
                assert_eq!(actual, md5_of(&f.qcow2));
            }
            other => panic!("{other:?}"),
        }

        let mut r = req("bad-format", f.server.url("/x.raw"));
        r.format_hint = Some("qcow2".into());
        match s.download(r, |_| {}).await {
            Err(e @ ImageError::FormatMismatch { .. }) => {
                assert_eq!(
                    e.to_string(),
                    format!(
                        "{} is a raw image, but it was registered as qcow2",
                        f.server.url("/x.raw")
                    )
                );
            }
            other => panic!("{other:?}"),
        }

        match dl("nf", "/missing").await {
            Err(e @ ImageError::HttpStatus { code: 404, .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("not found") && msg.contains("/missing"),
                    "{msg}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            dl("forbidden", "/forbidden").await,
            Err(ImageError::HttpStatus { code: 403, .. })
        ));

        for path in ["/page.html", "/sneaky"] {
            match dl("html", path).await {
                Err(ImageError::NotAnImage { reason, .. }) => {
                    assert!(reason.contains("HTML"), "{reason}")
                }
                other => panic!("{path}: {other:?}"),
            }
        }
        for path in ["/text", "/tiny"] {
            assert!(
                matches!(dl("junk", path).await, Err(ImageError::NotAnImage { .. })),
                "{path}"
            );
        }

        match dl("short", "/truncated").await {
            Err(ImageError::Truncated { expected, got, .. }) => {
                assert_eq!(expected, f.raw.len() as u64);
                assert!(got < expected);
            }
            other => panic!("{other:?}"),
        }

        match dl("huge", "/huge").await {
            Err(e @ ImageError::NoSpace { .. }) => {
                let ImageError::NoSpace {
                    needed,
                    available,
                    path,
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!(*needed, 1 << 50);
                assert!(available < needed);
                assert_eq!(path, &s.root);
                assert!(e.to_string().contains("not enough space"), "{e}");
            }
            other => panic!("{other:?}"),
        }

        let https = s
            .download(req("tls", "https://example.com/x.qcow2".into()), |_| {})
            .await;
        assert!(
            matches!(https, Err(ImageError::UnsupportedUrl { .. })),
            "{https:?}"
        );
        let ftp = s
            .download(req("ftp", "ftp://example.com/x.qcow2".into()), |_| {})
            .await;
        assert!(
            matches!(ftp, Err(ImageError::UnsupportedUrl { .. })),
            "{ftp:?}"
        );
        let refused = s
            .download(req("refused", "http://127.0.0.1:1/x".into()), |_| {})
            .await;
        assert!(
            matches!(refused, Err(ImageError::Network { .. })),
            "{refused:?}"
        );
        let evil = s
            .download(req("../../etc", f.server.url("/x.raw")), |_| {})
            .await;
        assert!(
            matches!(evil, Err(ImageError::InvalidUuid { .. })),
            "{evil:?}"
        );

        assert_empty(s);
    }

    #[tokio::test]
    async fn chunked_download_reports_progress() {
        let f = fixture().await;
        let seen = Mutex::new(Vec::new());
        let info = f
            .store
            .download(req("slow", f.server.url("/slow")), |p| {
                seen.lock().unwrap().push(p)
            })
            .await
            .unwrap();
        assert_eq!(info.actual_size, f.slow.len() as u64);
        let seen = seen.into_inner().unwrap();
        let mut distinct: Vec<u64> = seen.iter().map(|p| p.done_bytes).collect();
        distinct.dedup();
        assert!(distinct.len() >= 3, "{seen:?}");
        assert!(distinct.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(*distinct.last().unwrap(), f.slow.len() as u64);
        assert!(seen.iter().all(|p| p.total_bytes.is_none()));
    }

    #[tokio::test]
    async fn dropped_download_leaves_nothing_and_partials_are_cleaned() {
        let f = fixture().await;
        let started = Arc::new(AtomicUsize::new(0));
        let s2 = started.clone();
        let fut = f
            .store
            .download(req("cancel", f.server.url("/crawl")), move |p| {
                if p.done_bytes > 0 {
                    s2.fetch_add(1, Ordering::SeqCst);
                }
            });
        let _ = tokio::time::timeout(Duration::from_millis(1500), fut).await;
        assert!(started.load(Ordering::SeqCst) > 0, "the download had begun");
        assert_empty(&f.store);

        // A crash's leftover is removed by cleanup_partials and by the next download.
        std::fs::write(f.store.partial_dir().join("crashed"), b"half").unwrap();
        assert_eq!(f.store.cleanup_partials().unwrap(), 1);
        std::fs::write(f.store.partial_dir().join("again"), b"half").unwrap();
        std::fs::write(f.store.images_dir().join("again.qcow2"), b"uncommitted").unwrap();
        assert_eq!(f.store.info("again").unwrap(), None);
        let info = f
            .store
            .download(req("again", f.server.url("/x.raw")), |_| {})
            .await
            .unwrap();
        assert_eq!(info.format, "raw");
        assert_eq!(
            files_under(&f.store.root).len(),
            2,
            "{:?}",
            files_under(&f.store.root)
        );
    }

    #[tokio::test]
    async fn concurrent_download_of_one_uuid_is_refused() {
        let f = fixture().await;
        let a = f.store.download(req("dup", f.server.url("/slow")), |_| {});
        let b = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            f.store
                .download(req("dup", f.server.url("/slow")), |_| {})
                .await
        };
        let (a, b) = tokio::join!(a, b);
        assert!(a.is_ok(), "{a:?}");
        assert!(matches!(b, Err(ImageError::Busy { .. })), "{b:?}");
    }

    #[test]
    fn download_future_is_send() {
        fn assert_send<T: Send>(_: T) {}
        let store = ImageStore::new("/nonexistent");
        assert_send(store.download(req("x", "http://127.0.0.1:1/".into()), |_| {}));
    }

    #[test]
    fn capacity_reads_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let (total, avail) = ImageStore::new(dir.path()).capacity();
        assert!(total > 0 && avail <= total);
        assert_eq!(ImageStore::new("/nonexistent/store").capacity(), (0, 0));
    }

    /// A real full disk needs a tiny tmpfs, so only as root (CI containers without
    /// CAP_SYS_ADMIN skip it; the statvfs pre-check is covered by the 1 PiB header).
    #[tokio::test]
    async fn disk_full_during_write_is_no_space() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: not root");
            return;
        }
        let f = fixture().await;
        let mnt = f.work.join("tiny");
        std::fs::create_dir_all(&mnt).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&mnt)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("skipped: cannot mount a tmpfs");
            return;
        }
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(&self.0).status();
            }
        }
        let _unmount = Unmount(mnt.clone());
        let store = ImageStore::new(&mnt);
        // Chunked: no Content-Length, so only the write itself can discover the full disk.
        match store
            .download(req("full", f.server.url("/slow")), |_| {})
            .await
        {
            Err(ImageError::NoSpace { path, .. }) => assert_eq!(path, mnt),
            other => panic!("{other:?}"),
        }
        assert_empty(&store);
        // With a length, the pre-check refuses before writing anything.
        match store
            .download(req("full", f.server.url("/x.raw")), |_| {})
            .await
        {
            Err(ImageError::NoSpace { needed, .. }) => assert_eq!(needed, f.raw.len() as u64),
            other => panic!("{other:?}"),
        }
        assert_empty(&store);
    }
}
