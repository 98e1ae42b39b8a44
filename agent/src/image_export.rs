//! Exported images: a copy of an image store's image placed where the agent's export HTTP
//! server (`export_http`) serves it, under a random 128-bit token that is the capability to
//! download it (plain HTTP, like ZStack's image store export).
//!
//! Layout under the store's root:
//!
//! ```text
//! root/exports/<token>/<file>          what is served: /exports/<bs uuid>/<token>/<file>
//! root/exports/.index/<uuid>.json      the image's export (token, file, format, md5, size);
//!                                      written LAST, so it is the commit record
//! root/exports/.partial/<uuid>/        an export being made (conversion in flight, a crash)
//! ```
//!
//! The file is a hard link to the image when the format is the image's own (no copy of a
//! multi-GiB file, and the image's verified md5 holds for it), a copy where the file system
//! refuses links, or the output of `qemu-img convert` for another format. One export per
//! image: the same format is answered again (a retried call), another one replaces it.
//! Deleting the image ([`ImageStore::delete`] via the service) deletes its export too.

use std::collections::HashSet;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::OnceLock;

use serde::Deserialize;
use serde::Serialize;

use crate::image_store::check_space;
use crate::image_store::io_err;
use crate::image_store::md5_file;
use crate::image_store::remove_if_present;
use crate::image_store::sync_dir;
use crate::image_store::validate_uuid;
use crate::image_store::write_synced;
use crate::image_store::ImageError;
use crate::image_store::ImageInfo;
use crate::image_store::ImageStore;

/// What an image's export is (the `.index` record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportInfo {
    pub image_uuid: String,
    /// 32 lowercase hex digits of a random 128-bit value.
    pub token: String,
    /// The served file's name.
    pub file: String,
    pub format: String,
    pub md5: String,
    pub size: u64,
}

impl ExportInfo {
    /// The URL path it is served under for backup storage `bs`.
    pub fn path(&self, bs: &str) -> String {
        format!("/exports/{bs}/{}/{}", self.token, self.file)
    }
}

fn exports_dir(root: &Path) -> PathBuf {
    root.join("exports")
}

fn index_path(root: &Path, uuid: &str) -> PathBuf {
    exports_dir(root)
        .join(".index")
        .join(format!("{uuid}.json"))
}

fn partial_dir(root: &Path, uuid: &str) -> PathBuf {
    exports_dir(root).join(".partial").join(uuid)
}

/// Whether `token` is one this module makes: exactly 32 lowercase hex digits.
pub fn is_token(token: &str) -> bool {
    token.len() == 32
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `file` is a name this module makes: letters, digits, `.`, `-`, `_`, not starting
/// with a dot (so nothing of `.index`/`.partial` and no `..` is ever served).
pub fn is_file_name(file: &str) -> bool {
    !file.is_empty()
        && file.len() <= 255
        && !file.starts_with('.')
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// The served file's name: the image's name made safe for a URL and a file system (its
/// uuid when nothing is left of it), with the format as extension.
fn file_name(name: &str, uuid: &str, format: &str) -> String {
    let mut base: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    base = base.trim_start_matches('.').to_string();
    if base.trim_matches('_').is_empty() {
        base = uuid.to_string();
    }
    format!("{base}.{format}")
}

/// The file an export URL names, if it exists and is a regular file (not a link, not a
/// directory). `token` and `file` are checked here, whatever the caller checked.
pub fn resolve(root: &Path, token: &str, file: &str) -> Option<PathBuf> {
    if !is_token(token) || !is_file_name(file) {
        return None;
    }
    let p = exports_dir(root).join(token).join(file);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.file_type().is_file() => Some(p),
        _ => None,
    }
}

/// The image's current export, if it is complete.
pub fn current(root: &Path, uuid: &str) -> Result<Option<ExportInfo>, ImageError> {
    validate_uuid(uuid)?;
    let idx = index_path(root, uuid);
    let text = match std::fs::read(&idx) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read export record", &idx)(e)),
    };
    let Ok(info) = serde_json::from_slice::<ExportInfo>(&text) else {
        tracing::warn!(path = %idx.display(), "unreadable export record");
        return Ok(None);
    };
    if info.image_uuid != uuid || resolve(root, &info.token, &info.file).is_none() {
        return Ok(None);
    }
    Ok(Some(info))
}

/// Removes the image's export (record first: once it is gone nothing is exported, whatever
/// is left), its token directory and any half-made export; false when there was none.
pub fn remove(root: &Path, uuid: &str) -> Result<bool, ImageError> {
    validate_uuid(uuid)?;
    let idx = index_path(root, uuid);
    let old = std::fs::read(&idx)
        .ok()
        .and_then(|t| serde_json::from_slice::<ExportInfo>(&t).ok());
    let removed = remove_if_present(&idx)?;
    if let Some(old) = old.filter(|o| is_token(&o.token)) {
        remove_tree(&exports_dir(root).join(&old.token))?;
    }
    if !in_flight().contains(&partial_dir(root, uuid)) {
        remove_tree(&partial_dir(root, uuid))?;
    }
    Ok(removed)
}

fn remove_tree(dir: &Path) -> Result<(), ImageError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", dir)(e)),
    }
}

/// Exports being made in this process, by staging directory: a second export of the image
/// waits for the running one, and `remove` leaves a running one alone.
fn in_flight_set() -> &'static Mutex<HashSet<PathBuf>> {
    static SET: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    SET.get_or_init(Mutex::default)
}

fn in_flight() -> std::sync::MutexGuard<'static, HashSet<PathBuf>> {
    in_flight_set()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A staging directory claimed by one export until dropped.
struct Claim(PathBuf);

impl Drop for Claim {
    fn drop(&mut self) {
        in_flight().remove(&self.0);
    }
}

/// How long an export waits for another export of the same image to finish before it answers
/// busy. Concurrent VM creates from one image each ask for its export: the later ones wait
/// and then answer the export the first one made (the caller's RPC deadline bounds the wait
/// too).
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(1800);

async fn claim(dir: &Path, uuid: &str) -> Result<Claim, ImageError> {
    let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
    loop {
        if in_flight().insert(dir.to_path_buf()) {
            return Ok(Claim(dir.to_path_buf()));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ImageError::Busy { uuid: uuid.into() });
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Export image `uuid` of `store` as `format` (`None`: as stored), named after `name`.
pub async fn export(
    store: &ImageStore,
    uuid: &str,
    format: Option<&str>,
    name: &str,
) -> Result<ExportInfo, ImageError> {
    validate_uuid(uuid)?;
    let root = store.root.clone();
    let info = store.info(uuid)?.ok_or_else(|| ImageError::NotFound {
        uuid: uuid.into(),
        root: root.clone(),
    })?;
    let format = match format.map(str::trim).filter(|f| !f.is_empty()) {
        None => info.format.clone(),
        Some(f) if f == info.format => f.to_string(),
        Some(f @ ("raw" | "qcow2")) if matches!(info.format.as_str(), "raw" | "qcow2") => {
            f.to_string()
        }
        Some(f) => {
            return Err(ImageError::Unexportable {
                uuid: uuid.into(),
                format: f.into(),
                reason: format!(
                    "a {} image can be exported as it is, or between raw and qcow2 only",
                    info.format
                ),
            })
        }
    };
    let staging = partial_dir(&root, uuid);
    let _claim = claim(&staging, uuid).await?;
    if let Some(cur) = current(&root, uuid)? {
        if cur.format == format {
            return Ok(cur);
        }
    }
    // Another format replaces the export; a crash's leftovers go too.
    remove(&root, uuid)?;
    let file = file_name(name, uuid, &format);
    let token = format!("{:032x}", rand::random::<u128>());
    let name_for = name.to_string();
    let made = if format == info.format {
        link_or_copy(&info, &staging, &file).await?
    } else {
        convert(&info, &staging, &file, &format).await?
    };
    let (md5, size) = made;
    let export = ExportInfo {
        image_uuid: uuid.into(),
        token: token.clone(),
        file: file.clone(),
        format,
        md5,
        size,
    };
    let root2 = root.clone();
    let export2 = export.clone();
    tokio::task::spawn_blocking(move || commit(&root2, &staging, &export2))
        .await
        .map_err(|e| ImageError::Io {
            op: "commit export (worker failed)",
            path: root.clone(),
            source: std::io::Error::other(e.to_string()),
        })??;
    tracing::info!(image = uuid, name = %name_for, file = %export.file, format = %export.format, "image exported");
    Ok(export)
}

/// Staging → `exports/<token>`, then the record; a crash in between leaves a token directory
/// no record names, which the next export or delete of the image does not reach but which
/// is never served under a URL anyone was told.
fn commit(root: &Path, staging: &Path, e: &ExportInfo) -> Result<(), ImageError> {
    let served = exports_dir(root).join(&e.token);
    std::fs::rename(staging, &served).map_err(io_err("publish export", &served))?;
    sync_dir(&exports_dir(root))?;
    let idx = index_path(root, &e.image_uuid);
    let dir = idx.parent().unwrap_or(root).to_path_buf();
    std::fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
    let tmp = dir.join(format!(".{}.tmp", e.image_uuid));
    let json = serde_json::to_vec_pretty(e).map_err(|err| ImageError::Io {
        op: "encode export record",
        path: idx.clone(),
        source: std::io::Error::other(err),
    })?;
    write_synced(&tmp, &json)?;
    std::fs::rename(&tmp, &idx).map_err(io_err("commit export record", &idx))?;
    sync_dir(&dir)
}

fn fresh_staging(staging: &Path) -> Result<(), ImageError> {
    remove_tree(staging)?;
    std::fs::create_dir_all(staging).map_err(io_err("create directory", staging))
}

/// The image itself under the export name: a hard link, or a verified copy.
async fn link_or_copy(
    info: &ImageInfo,
    staging: &Path,
    file: &str,
) -> Result<(String, u64), ImageError> {
    let (src, dst, staging) = (info.path.clone(), staging.join(file), staging.to_path_buf());
    let (md5, size) = (info.md5.clone(), info.actual_size);
    let run = move || -> Result<(String, u64), ImageError> {
        fresh_staging(&staging)?;
        if std::fs::hard_link(&src, &dst).is_ok() {
            // The same inode: the md5 the download verified is this file's.
            return Ok((md5, size));
        }
        check_space(&staging, size)?;
        std::fs::copy(&src, &dst).map_err(io_err("copy image to", &dst))?;
        let (got, len) = md5_file(&dst).map_err(io_err("read back", &dst))?;
        if got != md5 || len != size {
            return Err(ImageError::ChecksumMismatch {
                url: dst.display().to_string(),
                expected: md5,
                actual: got,
            });
        }
        Ok((got, len))
    };
    tokio::task::spawn_blocking(run)
        .await
        .map_err(|e| ImageError::Io {
            op: "export (worker failed)",
            path: info.path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
}

/// The image converted to `format` with `qemu-img convert` (killed if the call goes away).
async fn convert(
    info: &ImageInfo,
    staging: &Path,
    file: &str,
    format: &str,
) -> Result<(String, u64), ImageError> {
    fresh_staging(staging)?;
    // A raw file is the whole virtual disk; qcow2 is at most about the source's size.
    let needed = if format == "raw" {
        info.virtual_size
    } else {
        info.actual_size
    };
    check_space(staging, needed)?;
    let dst = staging.join(file);
    let out = tokio::process::Command::new("qemu-img")
        .args(["convert", "-f", &info.format, "-O", format])
        .arg(&info.path)
        .arg(&dst)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| ImageError::QemuImg {
            path: info.path.clone(),
            detail: format!("cannot run qemu-img (is qemu-utils installed?): {e}"),
        })?;
    if !out.status.success() {
        return Err(ImageError::QemuImg {
            path: info.path.clone(),
            detail: format!(
                "convert to {format} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    tokio::task::spawn_blocking(move || {
        std::fs::File::open(&dst)
            .and_then(|f| f.sync_all())
            .map_err(io_err("sync", &dst))?;
        md5_file(&dst).map_err(io_err("read back", &dst))
    })
    .await
    .map_err(|e| ImageError::Io {
        op: "export (worker failed)",
        path: info.path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use md5::Digest;

    use super::*;
    use crate::image_store::DownloadRequest;

    /// A raw disk of 1 MiB: an MBR signature and some data.
    fn raw_disk() -> Vec<u8> {
        let mut v = vec![0u8; 1 << 20];
        v[510] = 0x55;
        v[511] = 0xaa;
        for (i, b) in v[4096..65536].iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        v
    }

    /// A store holding image `img` (raw) downloaded from a file URL.
    async fn store_with_image(dir: &Path) -> (ImageStore, Vec<u8>) {
        let src = dir.join("src.raw");
        let bytes = raw_disk();
        std::fs::write(&src, &bytes).unwrap();
        let store = ImageStore::new(dir.join("store"));
        store
            .download(
                DownloadRequest {
                    image_uuid: "img".into(),
                    url: format!("file://{}", src.display()),
                    expected_md5: None,
                    format_hint: Some("raw".into()),
                },
                |_| {},
            )
            .await
            .unwrap();
        (store, bytes)
    }

    #[tokio::test]
    async fn export_links_the_image_is_idempotent_converts_and_is_removed() {
        let td = tempfile::tempdir().unwrap();
        let (store, bytes) = store_with_image(td.path()).await;
        let e = export(&store, "img", None, "My Image/1").await.unwrap();
        assert!(is_token(&e.token), "{e:?}");
        assert_eq!(e.file, "My_Image_1.raw");
        assert_eq!(e.format, "raw");
        assert_eq!(e.md5, hex::encode(md5::Md5::digest(&bytes)));
        assert_eq!(e.size, bytes.len() as u64);
        let served = resolve(&store.root, &e.token, &e.file).expect("served");
        let image = store.info("img").unwrap().unwrap().path;
        assert_eq!(
            std::fs::metadata(&served).unwrap().ino(),
            std::fs::metadata(&image).unwrap().ino(),
            "the same format is a hard link, not a copy"
        );
        assert_eq!(
            e.path("bs1"),
            format!("/exports/bs1/{}/My_Image_1.raw", e.token)
        );
        // A retry answers the same export.
        assert_eq!(
            export(&store, "img", Some("raw"), "other").await.unwrap(),
            e
        );
        assert_eq!(current(&store.root, "img").unwrap(), Some(e.clone()));

        // Another format replaces it: qemu-img's qcow2 of the same disk.
        let q = export(&store, "img", Some("qcow2"), "My Image/1")
            .await
            .unwrap();
        assert_ne!(q.token, e.token);
        assert_eq!(q.file, "My_Image_1.qcow2");
        assert!(
            resolve(&store.root, &e.token, &e.file).is_none(),
            "old export gone"
        );
        let qpath = resolve(&store.root, &q.token, &q.file).unwrap();
        let (md5, len) = md5_file(&qpath).unwrap();
        assert_eq!((md5, len), (q.md5.clone(), q.size));
        let out = std::process::Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "qcow2"])
            .arg(&image)
            .arg(&qpath)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");

        // Deleting it leaves nothing of it, and is idempotent.
        assert!(remove(&store.root, "img").unwrap());
        assert!(resolve(&store.root, &q.token, &q.file).is_none());
        assert_eq!(current(&store.root, "img").unwrap(), None);
        assert!(!remove(&store.root, "img").unwrap());
        let left: Vec<_> = std::fs::read_dir(exports_dir(&store.root))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        // The image itself is untouched.
        assert_eq!(std::fs::read(&image).unwrap(), bytes);
    }

    #[tokio::test]
    async fn an_export_waits_for_one_in_flight_instead_of_failing() {
        let td = tempfile::tempdir().unwrap();
        let (store, _) = store_with_image(td.path()).await;
        let held = claim(&partial_dir(&store.root, "img"), "img")
            .await
            .unwrap();
        let waiting = export(&store, "img", None, "x");
        tokio::pin!(waiting);
        // It cannot finish while the other export holds the image.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), &mut waiting)
                .await
                .is_err()
        );
        drop(held);
        let e = waiting.await.unwrap();
        assert_eq!(current(&store.root, "img").unwrap(), Some(e));
    }

    #[tokio::test]
    async fn refusals_export_nothing() {
        let td = tempfile::tempdir().unwrap();
        let (store, _) = store_with_image(td.path()).await;
        assert!(matches!(
            export(&store, "nothing", None, "x").await,
            Err(ImageError::NotFound { .. })
        ));
        assert!(matches!(
            export(&store, "img", Some("vmdk"), "x").await,
            Err(ImageError::Unexportable { .. })
        ));
        assert!(matches!(
            export(&store, "../img", None, "x").await,
            Err(ImageError::InvalidUuid { .. })
        ));
        assert_eq!(current(&store.root, "img").unwrap(), None);
    }

    #[test]
    fn only_made_names_resolve() {
        let td = tempfile::tempdir().unwrap();
        let token = "0123456789abcdef0123456789abcdef";
        let dir = exports_dir(td.path()).join(token);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.qcow2"), b"x").unwrap();
        std::fs::write(dir.join(".hidden"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link.raw")).unwrap();
        assert!(resolve(td.path(), token, "a.qcow2").is_some());
        for (t, f) in [
            (token, ".hidden"),
            (token, "link.raw"),
            (token, ".."),
            (token, "a/../a.qcow2"),
            ("0123456789ABCDEF0123456789ABCDEF", "a.qcow2"),
            ("..", "a.qcow2"),
            (".index", "img.json"),
            ("0123456789abcdef0123456789abcde", "a.qcow2"),
        ] {
            assert!(resolve(td.path(), t, f).is_none(), "{t}/{f}");
        }
        assert_eq!(file_name("..", "u1", "raw"), "u1.raw");
        assert_eq!(file_name("", "u1", "raw"), "u1.raw");
        assert_eq!(file_name("ttylinux", "u1", "qcow2"), "ttylinux.qcow2");
    }
}
