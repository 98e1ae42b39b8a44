//! Volume files on a primary storage of this host: `<storage dir>/volumes/<uuid>.qcow2`,
//! made and measured with `qemu-img`.
//!
//! A root volume is a thin qcow2 overlay of its image in the storage's image cache, a data
//! volume a blank qcow2. A file is created under a temporary name and renamed into place
//! once complete, so whatever is found under a volume's final name is a whole volume: after
//! a crash, a create asked again finds either nothing (and starts over) or the finished file
//! (and answers it).

use std::io::Read as _;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use proto::agent::v1 as pb;

use crate::backend::OpError;

/// qemu-img only reads headers and writes a few clusters here; minutes means a hung NFS
/// server, and the agent must answer rather than wait on it forever.
const QEMU_IMG_TIMEOUT: Duration = Duration::from_secs(120);

/// The directory of volume files under a storage directory.
pub const VOLUMES_DIR: &str = "volumes";

/// The image cache of a storage directory (where `CacheImage` puts images).
pub const IMAGE_CACHE_DIR: &str = "imagecache";

/// Volume uuids become file names: 32 lowercase hex digits (ZStack's form), so no name can
/// climb out of the volumes directory.
pub fn check_volume_uuid(uuid: &str) -> Result<(), OpError> {
    if uuid.len() == 32
        && uuid
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(OpError::Invalid(format!(
            "volume uuid {uuid:?} is not 32 lowercase hex digits"
        )))
    }
}

/// The file of a volume.
pub fn volume_path(storage_dir: &Path, volume_uuid: &str) -> PathBuf {
    storage_dir
        .join(VOLUMES_DIR)
        .join(format!("{volume_uuid}.qcow2"))
}

fn partial_path(storage_dir: &Path, volume_uuid: &str) -> PathBuf {
    storage_dir
        .join(VOLUMES_DIR)
        .join(format!(".{volume_uuid}.qcow2.partial"))
}

/// A root volume's backing file must be an image in this storage's image cache: an overlay
/// of anything else (a host device, another host's file) would hand it to a guest.
/// Lexical; [`create`] also checks where the path really leads.
pub fn check_backing(storage_dir: &Path, backing: &str) -> Result<(), OpError> {
    let p = Path::new(backing);
    let cache = storage_dir.join(IMAGE_CACHE_DIR);
    if !p.is_absolute()
        || p.components().any(|c| c.as_os_str() == "..")
        || !p.starts_with(&cache)
        || backing
            .chars()
            .any(|c| c.is_control() || c == '\'' || c == '"')
    {
        return Err(OpError::Invalid(format!(
            "backing file {backing:?} is not an image in this storage's image cache {}: cache the image there first (CacheImage)",
            cache.display()
        )));
    }
    Ok(())
}

/// What `qemu-img info` says about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuInfo {
    /// "qcow2", "raw", ...
    pub format: String,
    /// Guest-visible size.
    pub virtual_size: u64,
    /// Bytes allocated on disk.
    pub actual_size: u64,
    /// The backing file as recorded in the image, if any.
    pub backing: Option<String>,
}

/// Run qemu-img with `args`, no shell, bounded by [`QEMU_IMG_TIMEOUT`]; its stdout.
fn qemu_img(args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, OpError> {
    let shown = args
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("qemu-img")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            OpError::Failed(format!(
                "cannot run qemu-img (is qemu-utils installed?): {e}"
            ))
        })?;
    // Both pipes are drained while the child runs, so a chatty qemu-img never blocks on a
    // full pipe and looks hung.
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_end(&mut b);
        }
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut b);
        }
        b
    });
    let deadline = Instant::now() + QEMU_IMG_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(OpError::Failed(format!(
                    "qemu-img {shown}: no answer within {} seconds (a hung storage?)",
                    QEMU_IMG_TIMEOUT.as_secs()
                )));
            }
            Err(e) => return Err(OpError::Failed(format!("qemu-img {shown}: {e}"))),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        return Err(OpError::Failed(format!(
            "qemu-img {shown} failed ({status}): {}",
            String::from_utf8_lossy(&stderr).trim()
        )));
    }
    Ok(stdout)
}

/// `qemu-img info` of a file. `-U` (force share): the file may be open in a running VM,
/// whose QEMU holds the write lock; reading the header is safe regardless.
pub fn info(path: &Path) -> Result<QemuInfo, OpError> {
    let out = qemu_img(&[
        "info".as_ref(),
        "-U".as_ref(),
        "--output=json".as_ref(),
        path.as_os_str(),
    ])?;
    let bad = |what: &str| {
        OpError::Failed(format!(
            "qemu-img info {}: {what} in its output",
            path.display()
        ))
    };
    let v: serde_json::Value =
        serde_json::from_slice(&out).map_err(|e| bad(&format!("no JSON ({e})")))?;
    Ok(QemuInfo {
        format: v
            .get("format")
            .and_then(|f| f.as_str())
            .ok_or_else(|| bad("no \"format\""))?
            .to_string(),
        virtual_size: v
            .get("virtual-size")
            .and_then(|s| s.as_u64())
            .ok_or_else(|| bad("no \"virtual-size\""))?,
        actual_size: v.get("actual-size").and_then(|s| s.as_u64()).unwrap_or(0),
        backing: v
            .get("backing-filename")
            .and_then(|b| b.as_str())
            .map(str::to_string),
    })
}

fn file_of(path: &Path, i: &QemuInfo) -> pb::VolumeFile {
    pb::VolumeFile {
        path: path.display().to_string(),
        format: i.format.clone(),
        virtual_size: i.virtual_size,
        actual_size: i.actual_size,
    }
}

fn io<'a>(what: &str, p: &'a Path) -> impl FnOnce(std::io::Error) -> OpError + 'a {
    let what = what.to_string();
    move |e| OpError::Failed(format!("cannot {what} {}: {e}", p.display()))
}

fn sync_dir(dir: &Path) -> Result<(), OpError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync directory", dir))
}

/// Removes the partial file unless the create got to its rename.
struct Partial<'a>(Option<&'a Path>);

impl Drop for Partial<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            if let Err(e) = std::fs::remove_file(p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %p.display(), error = %e, "cannot remove partial volume");
                }
            }
        }
    }
}

/// The existing volume file, if it is the one asked for; a different one under the same uuid
/// is refused rather than answered, so two volumes never silently share a file.
fn existing(path: &Path, backing: Option<&Path>, size: u64) -> Result<pb::VolumeFile, OpError> {
    let i = info(path)?;
    let conflict = |what: String| {
        OpError::WrongState(format!(
            "volume file {} already exists {what}: delete the volume first",
            path.display()
        ))
    };
    if i.format != "qcow2" {
        return Err(conflict(format!("as {}", i.format)));
    }
    let has = i.backing.as_deref().map(Path::new);
    if has != backing {
        return Err(conflict(match has {
            Some(b) => format!("backed by {}", b.display()),
            None => "without a backing file".into(),
        }));
    }
    if i.virtual_size < size {
        return Err(conflict(format!(
            "with {} bytes, less than the {size} asked for",
            i.virtual_size
        )));
    }
    Ok(file_of(path, &i))
}

/// Create volume `uuid` on the storage at `storage_dir`: an overlay of `backing` (an image in
/// the storage's image cache) at least as large as the image, or a blank one of `size`
/// bytes. Idempotent.
pub fn create(
    storage_dir: &Path,
    uuid: &str,
    backing: Option<&str>,
    size: u64,
) -> Result<pb::VolumeFile, OpError> {
    check_volume_uuid(uuid)?;
    if let Some(b) = backing {
        check_backing(storage_dir, b)?;
    } else if size == 0 {
        return Err(OpError::Invalid(format!(
            "data volume {uuid} has no size: a blank volume needs size_bytes"
        )));
    }
    let dir = storage_dir.join(VOLUMES_DIR);
    // Traversable by others: QEMU runs as its own user and opens the file by this path
    // (libvirt hands it the file, not the directory); not listable, so volume names are not
    // exposed to other local users.
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&dir)
            .map_err(io("create", &dir))?;
    }
    let path = volume_path(storage_dir, uuid);
    let backing_path = backing.map(Path::new);
    if path.exists() {
        return existing(&path, backing_path, size);
    }
    let partial = partial_path(storage_dir, uuid);
    let mut args: Vec<std::ffi::OsString> =
        vec!["create".into(), "-q".into(), "-f".into(), "qcow2".into()];
    let virtual_size = match backing_path {
        Some(b) => {
            // Where the name really leads (a symlink out of the cache is refused too).
            let real = std::fs::canonicalize(b).map_err(|e| {
                OpError::WrongState(format!(
                    "backing file {} is not on this host ({e}): cache the image first",
                    b.display()
                ))
            })?;
            let cache_dir = storage_dir.join(IMAGE_CACHE_DIR);
            let cache = std::fs::canonicalize(&cache_dir).map_err(io("resolve", &cache_dir))?;
            if !real.starts_with(&cache) {
                return Err(OpError::Invalid(format!(
                    "backing file {} leads to {}, outside the image cache {}",
                    b.display(),
                    real.display(),
                    cache.display()
                )));
            }
            let image = info(b)?;
            args.extend(["-b".into(), b.into(), "-F".into(), image.format.into()]);
            // Never smaller than the image: the guest would see a disk that cuts off the
            // end of the image's file system.
            size.max(image.virtual_size)
        }
        None => size,
    };
    args.push(partial.clone().into_os_string());
    args.push(virtual_size.to_string().into());
    // A leftover of a crashed create is overwritten by qemu-img; it was never a volume.
    let mut guard = Partial(Some(&partial));
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    qemu_img(&refs)?;
    // A guest's disk is nobody else's to read; libvirt hands the file to QEMU's user when it
    // starts the VM (dynamic ownership).
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))
            .map_err(io("restrict", &partial))?;
    }
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", &partial))?;
    std::fs::rename(&partial, &path).map_err(io("rename into place", &path))?;
    guard.0 = None;
    sync_dir(&dir)?;
    let i = info(&path)?;
    tracing::info!(volume = uuid, path = %path.display(), virtual_size = i.virtual_size, "volume created");
    Ok(file_of(&path, &i))
}

/// Remove volume `uuid`'s file (and any partial one, and its snapshots' files); whether
/// there was a file.
pub fn delete(storage_dir: &Path, uuid: &str) -> Result<bool, OpError> {
    check_volume_uuid(uuid)?;
    let path = volume_path(storage_dir, uuid);
    let remove = |p: &Path| match std::fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io("remove", p)(e)),
    };
    remove(&partial_path(storage_dir, uuid))?;
    let deleted = remove(&path)?;
    let snaps = snapshots_dir(storage_dir, uuid);
    match std::fs::remove_dir_all(&snaps) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("remove", &snaps)(e)),
    }
    if deleted {
        sync_dir(&storage_dir.join(VOLUMES_DIR))?;
        tracing::info!(volume = uuid, path = %path.display(), "volume deleted");
    }
    Ok(deleted)
}

/// The volume file of `uuid`, which must exist.
pub fn existing_file(storage_dir: &Path, uuid: &str) -> Result<(PathBuf, pb::VolumeFile), OpError> {
    check_volume_uuid(uuid)?;
    let path = volume_path(storage_dir, uuid);
    if !path.is_file() {
        return Err(OpError::WrongState(format!(
            "volume {uuid} has no file {} on this host",
            path.display()
        )));
    }
    let i = info(&path)?;
    Ok((path.clone(), file_of(&path, &i)))
}

/// Grow volume `uuid`'s file to `size` bytes offline (`qemu-img resize`); a file already
/// that large is answered as it is, so a repeated resize does nothing, and a file is never
/// shrunk (the guest's file system would lose its end). The caller makes sure no domain
/// uses the file.
pub fn resize(storage_dir: &Path, uuid: &str, size: u64) -> Result<pb::VolumeFile, OpError> {
    let (path, f) = existing_file(storage_dir, uuid)?;
    if f.virtual_size >= size {
        return Ok(f);
    }
    qemu_img(&[
        "resize".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        path.as_os_str(),
        size.to_string().as_ref(),
    ])?;
    std::fs::File::open(&path)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", &path))?;
    let i = info(&path)?;
    tracing::info!(volume = uuid, path = %path.display(), virtual_size = i.virtual_size, "volume resized");
    Ok(file_of(&path, &i))
}

/// The directory of a volume's snapshot files, next to the volume's file; it goes with the
/// volume ([`delete`]), so removing a volume never leaves its snapshots behind.
pub fn snapshots_dir(storage_dir: &Path, volume_uuid: &str) -> PathBuf {
    storage_dir
        .join(VOLUMES_DIR)
        .join(format!("{volume_uuid}.snapshots"))
}

/// The file of snapshot `snapshot_uuid` of a volume.
pub fn snapshot_path(storage_dir: &Path, volume_uuid: &str, snapshot_uuid: &str) -> PathBuf {
    snapshots_dir(storage_dir, volume_uuid).join(format!("{snapshot_uuid}.qcow2"))
}

/// A file's backing chain, the file first (`qemu-img info` hop by hop, bounded so a loop in
/// broken headers cannot hang the agent).
pub fn backing_chain(path: &Path) -> Result<Vec<String>, OpError> {
    let mut out = vec![path.display().to_string()];
    let mut at = path.to_path_buf();
    while let Some(b) = info(&at)?.backing {
        if out.len() > 4096 || out.contains(&b) {
            return Err(OpError::Failed(format!(
                "the backing chain of {} loops or is longer than 4096 files",
                path.display()
            )));
        }
        out.push(b.clone());
        at = PathBuf::from(b);
    }
    Ok(out)
}

/// Make `path` (atomically, through its partial name) a new empty qcow2 overlay of
/// `backing`, as large as the backing file; whatever `path` held before is replaced.
fn make_overlay(storage_dir: &Path, uuid: &str, backing: &Path) -> Result<(), OpError> {
    let path = volume_path(storage_dir, uuid);
    let partial = partial_path(storage_dir, uuid);
    let b = info(backing)?;
    let mut guard = Partial(Some(&partial));
    qemu_img(&[
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        "-b".as_ref(),
        backing.as_os_str(),
        "-F".as_ref(),
        b.format.as_ref(),
        partial.as_os_str(),
        b.virtual_size.to_string().as_ref(),
    ])?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))
            .map_err(io("restrict", &partial))?;
    }
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", &partial))?;
    std::fs::rename(&partial, &path).map_err(io("rename into place", &path))?;
    guard.0 = None;
    sync_dir(&storage_dir.join(VOLUMES_DIR))
}

fn snapshot_reply(
    storage_dir: &Path,
    uuid: &str,
    snapshot: Option<&Path>,
) -> Result<pb::VolumeSnapshotReply, OpError> {
    let (path, volume) = existing_file(storage_dir, uuid)?;
    let snapshot = match snapshot {
        Some(s) => Some(file_of(s, &info(s)?)),
        None => None,
    };
    Ok(pb::VolumeSnapshotReply {
        snapshot,
        volume: Some(volume),
        backing_chain: backing_chain(&path)?,
    })
}

/// Take snapshot `snapshot_uuid` of volume `uuid` offline (no QEMU writes the file): the
/// volume's file is renamed to the snapshot's file, frozen from then on, and a new empty
/// overlay of it takes the volume's name. The rename is the commit point: after it the
/// snapshot exists, and a crash before the overlay is made is finished by asking again.
pub fn snapshot(
    storage_dir: &Path,
    uuid: &str,
    snapshot_uuid: &str,
) -> Result<pb::VolumeSnapshotReply, OpError> {
    check_volume_uuid(uuid)?;
    check_volume_uuid(snapshot_uuid)?;
    let path = volume_path(storage_dir, uuid);
    let snap = snapshot_path(storage_dir, uuid, snapshot_uuid);
    if !snap.exists() {
        if !path.is_file() {
            return Err(OpError::WrongState(format!(
                "volume {uuid} has no file {} on this host to snapshot",
                path.display()
            )));
        }
        let dir = snapshots_dir(storage_dir, uuid);
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(&dir)
                .map_err(io("create", &dir))?;
        }
        std::fs::rename(&path, &snap).map_err(io("freeze", &path))?;
        sync_dir(&dir)?;
        sync_dir(&storage_dir.join(VOLUMES_DIR))?;
    }
    if !path.is_file() {
        make_overlay(storage_dir, uuid, &snap)?;
    }
    let r = snapshot_reply(storage_dir, uuid, Some(&snap))?;
    tracing::info!(
        volume = uuid,
        snapshot = snapshot_uuid,
        "volume snapshot taken"
    );
    Ok(r)
}

/// Revert volume `uuid` to snapshot `snapshot_uuid`: its file becomes a new empty overlay
/// of the snapshot's file. The caller makes sure no domain uses the file.
pub fn revert(
    storage_dir: &Path,
    uuid: &str,
    snapshot_uuid: &str,
) -> Result<pb::VolumeSnapshotReply, OpError> {
    check_volume_uuid(uuid)?;
    check_volume_uuid(snapshot_uuid)?;
    let snap = snapshot_path(storage_dir, uuid, snapshot_uuid);
    if !snap.is_file() {
        return Err(OpError::WrongState(format!(
            "snapshot {snapshot_uuid} of volume {uuid} has no file {} on this host",
            snap.display()
        )));
    }
    make_overlay(storage_dir, uuid, &snap)?;
    let r = snapshot_reply(storage_dir, uuid, Some(&snap))?;
    tracing::info!(volume = uuid, snapshot = snapshot_uuid, "volume reverted");
    Ok(r)
}

/// Whether deleting `snapshots` of volume `uuid` needs its file rebased (its chain passes
/// through one of them).
pub fn delete_needs_rebase(
    storage_dir: &Path,
    uuid: &str,
    snapshots: &[String],
) -> Result<bool, OpError> {
    let path = volume_path(storage_dir, uuid);
    if !path.is_file() {
        return Ok(false);
    }
    let doomed: Vec<String> = snapshots
        .iter()
        .map(|s| snapshot_path(storage_dir, uuid, s).display().to_string())
        .collect();
    Ok(backing_chain(&path)?
        .iter()
        .skip(1)
        .any(|f| doomed.contains(f)))
}

/// Remove the files of `snapshots` of volume `uuid`. A volume file backed by one of them is
/// first rebased onto the nearest file of its chain that stays (safe mode copies the data
/// the removed files held), so the guest's disk is the same before and after. A snapshot
/// file that stays but is backed by one that goes is refused: the caller deletes a
/// snapshot together with its descendants. The caller makes sure no QEMU writes the file.
pub fn delete_snapshots(
    storage_dir: &Path,
    uuid: &str,
    snapshots: &[String],
) -> Result<pb::VolumeSnapshotReply, OpError> {
    check_volume_uuid(uuid)?;
    for s in snapshots {
        check_volume_uuid(s)?;
    }
    let doomed: Vec<PathBuf> = snapshots
        .iter()
        .map(|s| snapshot_path(storage_dir, uuid, s))
        .collect();
    let shown: Vec<String> = doomed.iter().map(|p| p.display().to_string()).collect();
    let dir = snapshots_dir(storage_dir, uuid);
    if dir.is_dir() {
        for e in std::fs::read_dir(&dir).map_err(io("list", &dir))? {
            let p = e.map_err(io("list", &dir))?.path();
            if p.extension().is_none_or(|x| x != "qcow2") || doomed.contains(&p) {
                continue;
            }
            if let Some(b) = info(&p)?.backing {
                if shown.contains(&b) {
                    return Err(OpError::WrongState(format!(
                        "snapshot file {} is backed by {b}, which is to be deleted: delete its descendants with it",
                        p.display()
                    )));
                }
            }
        }
    }
    let path = volume_path(storage_dir, uuid);
    if path.is_file() {
        let chain = backing_chain(&path)?;
        if chain.iter().skip(1).any(|f| shown.contains(f)) {
            let base = chain.iter().skip(1).find(|f| !shown.contains(f));
            let mut args: Vec<std::ffi::OsString> = vec![
                "rebase".into(),
                "-q".into(),
                "-f".into(),
                "qcow2".into(),
                "-b".into(),
                base.cloned().unwrap_or_default().into(),
            ];
            if let Some(b) = base {
                args.extend(["-F".into(), info(Path::new(b))?.format.into()]);
            }
            args.push(path.clone().into_os_string());
            let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            qemu_img(&refs)?;
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io("sync", &path))?;
        }
    }
    let mut removed = false;
    for p in &doomed {
        match std::fs::remove_file(p) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", p)(e)),
        }
    }
    if removed {
        sync_dir(&dir)?;
    }
    tracing::info!(
        volume = uuid,
        snapshots = snapshots.len(),
        "volume snapshots deleted"
    );
    if !path.is_file() {
        return Ok(pb::VolumeSnapshotReply::default());
    }
    snapshot_reply(storage_dir, uuid, None)
}

/// Make volume `uuid` on the storage at `dir` a full copy of volume `source` of the storage at
/// `source_dir` (`qemu-img convert`: the source's backing chain collapsed into one standalone
/// qcow2 of the same virtual size, so the copy outlives the source and its image). The
/// caller makes sure nothing writes the source meanwhile (a clone copies a quiescent disk:
/// no domain uses it). Written under a temporary name and renamed, like [`create`], so a
/// repeat finds the finished copy and answers it.
pub fn copy(
    source_dir: &Path,
    source: &str,
    dir: &Path,
    uuid: &str,
) -> Result<pb::VolumeFile, OpError> {
    check_volume_uuid(uuid)?;
    if source == uuid && same_file(source_dir, dir) {
        return Err(OpError::Invalid(format!(
            "volume {uuid} cannot be a copy of itself"
        )));
    }
    let path = volume_path(dir, uuid);
    if path.exists() {
        let (_, src) = existing_file(source_dir, source)?;
        return existing(&path, None, src.virtual_size);
    }
    let (src_path, src) = existing_file(source_dir, source)?;
    let vdir = dir.join(VOLUMES_DIR);
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&vdir)
            .map_err(io("create", &vdir))?;
    }
    let partial = partial_path(dir, uuid);
    let mut guard = Partial(Some(&partial));
    qemu_img(&[
        "convert".as_ref(),
        "-q".as_ref(),
        "-O".as_ref(),
        "qcow2".as_ref(),
        src_path.as_os_str(),
        partial.as_os_str(),
    ])?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))
            .map_err(io("restrict", &partial))?;
    }
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", &partial))?;
    std::fs::rename(&partial, &path).map_err(io("rename into place", &path))?;
    guard.0 = None;
    sync_dir(&vdir)?;
    let i = info(&path)?;
    tracing::info!(volume = uuid, source, path = %path.display(), virtual_size = i.virtual_size, "volume copied");
    if i.virtual_size != src.virtual_size {
        return Err(OpError::Failed(format!(
            "the copy {} of volume {source} has {} bytes, the source {}",
            path.display(),
            i.virtual_size,
            src.virtual_size
        )));
    }
    Ok(file_of(&path, &i))
}

/// Whether two paths name the same file (by what they resolve to when both exist).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOL: &str = "0123456789abcdef0123456789abcdef";

    /// A storage directory with a 64 MiB qcow2 image in its cache.
    fn storage() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join(IMAGE_CACHE_DIR).join("images");
        std::fs::create_dir_all(&cache).unwrap();
        let img = cache.join("img1.qcow2");
        let st = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&img)
            .arg("64M")
            .status()
            .unwrap();
        assert!(st.success());
        (d, img)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_root_volume_is_an_overlay_at_least_as_large_as_its_image() {
        let (d, img) = storage();
        let img_s = img.to_str().unwrap();
        let f = create(d.path(), VOL, Some(img_s), 0).unwrap();
        let path = volume_path(d.path(), VOL);
        assert_eq!(f.path, path.to_str().unwrap());
        assert_eq!(f.format, "qcow2");
        assert_eq!(f.virtual_size, 64 << 20);
        assert!(f.actual_size > 0 && f.actual_size < 4 << 20, "thin: {f:?}");
        let i = info(&path).unwrap();
        assert_eq!(i.backing.as_deref(), Some(img_s));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        // Asked smaller than the image: still the image's size.
        let vol2 = "1123456789abcdef0123456789abcdef";
        assert_eq!(
            create(d.path(), vol2, Some(img_s), 1 << 20)
                .unwrap()
                .virtual_size,
            64 << 20
        );
        let vol3 = "2123456789abcdef0123456789abcdef";
        assert_eq!(
            create(d.path(), vol3, Some(img_s), 1 << 30)
                .unwrap()
                .virtual_size,
            1 << 30
        );
        // Only finished files, no partials.
        assert_eq!(
            names(&d.path().join(VOLUMES_DIR)),
            [
                format!("{VOL}.qcow2"),
                format!("{vol2}.qcow2"),
                format!("{vol3}.qcow2")
            ]
        );
    }

    #[test]
    fn create_is_idempotent_and_refuses_another_volume_under_the_same_uuid() {
        let (d, img) = storage();
        let img_s = img.to_str().unwrap();
        let a = create(d.path(), VOL, Some(img_s), 0).unwrap();
        let b = create(d.path(), VOL, Some(img_s), 0).unwrap();
        assert_eq!(a, b);
        let e = create(d.path(), VOL, None, 1 << 20).unwrap_err();
        assert!(
            matches!(&e, OpError::WrongState(m) if m.contains("already exists backed by")),
            "{e:?}"
        );
        let e = create(d.path(), VOL, Some(img_s), 1 << 30).unwrap_err();
        assert!(
            matches!(&e, OpError::WrongState(m) if m.contains("less than")),
            "{e:?}"
        );
    }

    #[test]
    fn a_blank_data_volume_has_the_size_asked_for() {
        let (d, _) = storage();
        let f = create(d.path(), VOL, None, 3 << 30).unwrap();
        assert_eq!(f.virtual_size, 3 << 30);
        assert_eq!(info(Path::new(&f.path)).unwrap().backing, None);
        let e = create(d.path(), "1123456789abcdef0123456789abcdef", None, 0).unwrap_err();
        assert!(
            matches!(&e, OpError::Invalid(m) if m.contains("no size")),
            "{e:?}"
        );
    }

    #[test]
    fn bad_uuids_and_backing_files_outside_the_cache_are_refused() {
        let (d, img) = storage();
        for bad in [
            "../../etc/passwd",
            "",
            "0123456789ABCDEF0123456789ABCDEF",
            "x/y",
        ] {
            let e = create(d.path(), bad, None, 1 << 20).unwrap_err();
            assert!(
                matches!(&e, OpError::Invalid(m) if m.contains("32 lowercase hex")),
                "{e:?}"
            );
            assert!(matches!(delete(d.path(), bad), Err(OpError::Invalid(_))));
        }
        let outside = d.path().join("elsewhere.qcow2");
        std::fs::copy(&img, &outside).unwrap();
        let e = create(d.path(), VOL, Some(outside.to_str().unwrap()), 0).unwrap_err();
        assert!(
            matches!(&e, OpError::Invalid(m) if m.contains("image cache")),
            "{e:?}"
        );
        let dotted = format!("{}/imagecache/../elsewhere.qcow2", d.path().display());
        assert!(matches!(
            create(d.path(), VOL, Some(&dotted), 0),
            Err(OpError::Invalid(_))
        ));
        // A link inside the cache that leads out of it.
        let link = d.path().join("imagecache/images/link.qcow2");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let e = create(d.path(), VOL, Some(link.to_str().unwrap()), 0).unwrap_err();
        assert!(
            matches!(&e, OpError::Invalid(m) if m.contains("outside the image cache")),
            "{e:?}"
        );
        let missing = d.path().join("imagecache/images/nope.qcow2");
        let e = create(d.path(), VOL, Some(missing.to_str().unwrap()), 0).unwrap_err();
        assert!(
            matches!(&e, OpError::WrongState(m) if m.contains("not on this host")),
            "{e:?}"
        );
        assert!(!volume_path(d.path(), VOL).exists());
    }

    #[test]
    fn a_failed_create_leaves_no_file_and_a_partial_one_is_not_a_volume() {
        let (d, img) = storage();
        // A backing file qemu-img cannot read: the create fails, nothing stays behind.
        let broken = d.path().join("imagecache/images/broken.qcow2");
        std::fs::write(&broken, b"QFI\xfbnot really a qcow2 header").unwrap();
        let e = create(d.path(), VOL, Some(broken.to_str().unwrap()), 0).unwrap_err();
        assert!(
            matches!(&e, OpError::Failed(m) if m.contains("qemu-img")),
            "{e:?}"
        );
        assert!(names(&d.path().join(VOLUMES_DIR)).is_empty());
        // A crash's leftover under the partial name is replaced by a whole volume.
        std::fs::write(partial_path(d.path(), VOL), b"torn").unwrap();
        let f = create(d.path(), VOL, Some(img.to_str().unwrap()), 0).unwrap();
        assert_eq!(f.virtual_size, 64 << 20);
        assert_eq!(names(&d.path().join(VOLUMES_DIR)), [format!("{VOL}.qcow2")]);
    }

    #[test]
    fn resize_grows_only_and_is_idempotent() {
        let (d, _) = storage();
        let dir = d.path().to_path_buf();
        let uuid = "0123456789abcdef0123456789abcde1";
        create(&dir, uuid, None, 64 << 20).unwrap();
        let f = resize(&dir, uuid, 128 << 20).unwrap();
        assert_eq!(f.virtual_size, 128 << 20);
        assert_eq!(
            info(&volume_path(&dir, uuid)).unwrap().virtual_size,
            128 << 20
        );
        // Asked again, or asked for less: the file stays as it is.
        assert_eq!(
            resize(&dir, uuid, 128 << 20).unwrap().virtual_size,
            128 << 20
        );
        assert_eq!(
            resize(&dir, uuid, 32 << 20).unwrap().virtual_size,
            128 << 20
        );
        let missing = "0123456789abcdef0123456789abcde2";
        assert!(matches!(
            resize(&dir, missing, 1 << 30),
            Err(OpError::WrongState(_))
        ));
    }

    /// Write `byte` at `offset` of a qcow2 file through qemu-io, as a guest would.
    fn write_at(path: &Path, offset: u64, byte: u8) {
        let st = Command::new("qemu-io")
            .args(["-f", "qcow2", "-c"])
            .arg(format!("write -P {byte} {offset} 64k"))
            .arg(path)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// The byte at `offset` the guest reads.
    fn read_at(path: &Path, offset: u64, byte: u8) -> bool {
        Command::new("qemu-io")
            .args(["-f", "qcow2", "-c"])
            .arg(format!("read -P {byte} {offset} 64k"))
            .arg(path)
            .output()
            .map(|o| o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("mismatch"))
            .unwrap()
    }

    #[test]
    fn snapshots_form_an_external_chain_and_revert_and_delete_keep_the_guests_data() {
        let (d, img) = storage();
        let dir = d.path();
        let img_s = img.to_str().unwrap().to_string();
        let (s1, s2) = (
            "a123456789abcdef0123456789abcdef",
            "b123456789abcdef0123456789abcdef",
        );
        create(dir, VOL, Some(&img_s), 0).unwrap();
        let top = volume_path(dir, VOL);
        write_at(&top, 0, 1);
        let r = snapshot(dir, VOL, s1).unwrap();
        let p1 = snapshot_path(dir, VOL, s1).display().to_string();
        assert_eq!(r.snapshot.as_ref().unwrap().path, p1);
        assert_eq!(
            r.backing_chain,
            [top.display().to_string(), p1.clone(), img_s.clone()]
        );
        // Asked again: the same answer, no new file.
        assert_eq!(snapshot(dir, VOL, s1).unwrap(), r);
        write_at(&top, 0, 2);
        let r = snapshot(dir, VOL, s2).unwrap();
        let p2 = snapshot_path(dir, VOL, s2).display().to_string();
        assert_eq!(
            r.backing_chain,
            [
                top.display().to_string(),
                p2.clone(),
                p1.clone(),
                img_s.clone()
            ]
        );
        assert_eq!(backing_chain(&top).unwrap(), r.backing_chain);
        write_at(&top, 0, 3);
        // Revert to s1: the guest sees what it wrote before s1, the chain skips s2.
        let r = revert(dir, VOL, s1).unwrap();
        assert_eq!(
            r.backing_chain,
            [top.display().to_string(), p1.clone(), img_s.clone()]
        );
        assert!(read_at(&top, 0, 1));
        // s1 cannot go without its descendant s2, which is backed by it.
        let e = delete_snapshots(dir, VOL, &[s1.to_string()]).unwrap_err();
        assert!(
            matches!(&e, OpError::WrongState(m) if m.contains("descendants")),
            "{e:?}"
        );
        // s1 with its descendant: the volume is rebased onto the image, data kept.
        let r = delete_snapshots(dir, VOL, &[s1.to_string(), s2.to_string()]).unwrap();
        assert_eq!(r.backing_chain, [top.display().to_string(), img_s.clone()]);
        assert!(read_at(&top, 0, 1));
        assert!(!Path::new(&p1).exists() && !Path::new(&p2).exists());
        // Idempotent.
        delete_snapshots(dir, VOL, &[s1.to_string(), s2.to_string()]).unwrap();
        // A reverted-to snapshot missing its file is refused.
        assert!(matches!(revert(dir, VOL, s1), Err(OpError::WrongState(_))));
    }

    #[test]
    fn a_data_volume_snapshot_deleted_flattens_it_and_a_deleted_volume_takes_its_snapshots() {
        let (d, _) = storage();
        let dir = d.path();
        let s1 = "a123456789abcdef0123456789abcdef";
        create(dir, VOL, None, 64 << 20).unwrap();
        let top = volume_path(dir, VOL);
        write_at(&top, 1 << 20, 7);
        snapshot(dir, VOL, s1).unwrap();
        let r = delete_snapshots(dir, VOL, &[s1.to_string()]).unwrap();
        assert_eq!(r.backing_chain, [top.display().to_string()]);
        assert!(read_at(&top, 1 << 20, 7));
        snapshot(dir, VOL, s1).unwrap();
        assert!(snapshots_dir(dir, VOL).is_dir());
        assert!(delete(dir, VOL).unwrap());
        assert!(!snapshots_dir(dir, VOL).exists());
        assert!(matches!(
            snapshot(dir, VOL, s1),
            Err(OpError::WrongState(_))
        ));
    }

    #[test]
    fn a_copy_is_a_standalone_qcow2_with_the_sources_content_and_size() {
        // An image with data in it: a raw file of a pattern, converted to qcow2.
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join(IMAGE_CACHE_DIR);
        std::fs::create_dir_all(&cache).unwrap();
        let raw = d.path().join("img.raw");
        let mut bytes = vec![0u8; 8 << 20];
        for (k, b) in bytes.iter_mut().enumerate() {
            *b = u8::try_from(k % 251).unwrap();
        }
        std::fs::write(&raw, &bytes).unwrap();
        let img = cache.join("img.qcow2");
        let st = Command::new("qemu-img")
            .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&img)
            .status()
            .unwrap();
        assert!(st.success());
        let root = create(d.path(), VOL, Some(img.to_str().unwrap()), 16 << 20).unwrap();
        assert_eq!(root.virtual_size, 16 << 20);
        // Onto another storage of the host.
        let other = tempfile::tempdir().unwrap();
        let clone = "2123456789abcdef0123456789abcdef";
        let f = copy(d.path(), VOL, other.path(), clone).unwrap();
        let path = volume_path(other.path(), clone);
        assert_eq!(f.path, path.to_str().unwrap());
        assert_eq!(f.virtual_size, 16 << 20);
        let i = info(&path).unwrap();
        assert_eq!(i.format, "qcow2");
        assert_eq!(
            i.backing, None,
            "standalone: the image's chain is collapsed"
        );
        let same = Command::new("qemu-img")
            .arg("compare")
            .arg("-q")
            .arg(volume_path(d.path(), VOL))
            .arg(&path)
            .status()
            .unwrap();
        assert!(same.success(), "the copy has the source's content");
        // A repeat answers the copy; no partial file is left.
        assert_eq!(copy(d.path(), VOL, other.path(), clone).unwrap(), f);
        assert_eq!(
            names(&other.path().join(VOLUMES_DIR)),
            vec![format!("{clone}.qcow2")]
        );
        // No source: nothing made.
        let e = copy(
            d.path(),
            "3123456789abcdef0123456789abcdef",
            other.path(),
            "4123456789abcdef0123456789abcdef",
        )
        .unwrap_err();
        assert!(matches!(e, OpError::WrongState(_)), "{e:?}");
        assert!(!volume_path(other.path(), "4123456789abcdef0123456789abcdef").exists());
        assert!(matches!(
            copy(d.path(), VOL, d.path(), VOL).unwrap_err(),
            OpError::Invalid(_)
        ));
    }

    #[test]
    fn delete_is_idempotent() {
        let (d, _) = storage();
        create(d.path(), VOL, None, 1 << 20).unwrap();
        assert!(delete(d.path(), VOL).unwrap());
        assert!(!volume_path(d.path(), VOL).exists());
        assert!(!delete(d.path(), VOL).unwrap());
    }
}
