//! Primary storage on a real host: directories the agent creates, NFS exports it mounts, and
//! capacity measured with `statvfs`.

use std::ffi::CString;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::process::Command;

use proto::agent::v1 as pb;

use crate::backend::BackendError;
use crate::backend::StorageKind;
use crate::backend::StorageSpec;

/// Total and available bytes of the file system holding `dir`.
pub fn statvfs(dir: &Path) -> Result<(u64, u64), String> {
    let c = CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{} contains a NUL byte", dir.display()))?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(format!(
            "statvfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    let frag = st.f_frsize as u64;
    Ok((st.f_blocks as u64 * frag, st.f_bavail as u64 * frag))
}

/// Mounting NFS exports: the real `mount` command in production, a fake at the edge in tests
/// where no NFS server can run.
pub trait Mounter: Send + Sync {
    /// Whether something is mounted at `mount_point`.
    fn is_mounted(&self, mount_point: &Path) -> bool;
    /// Mount `export` (`server:/path`) at `mount_point`.
    fn mount_nfs(&self, export: &str, mount_point: &Path) -> Result<(), String>;
}

/// `mount -t nfs` and `/proc/self/mountinfo`.
#[derive(Debug, Default)]
pub struct SystemMounter;

impl Mounter for SystemMounter {
    fn is_mounted(&self, mount_point: &Path) -> bool {
        let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return false;
        };
        let want = mount_point.to_string_lossy();
        info.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .any(|m| m == want)
    }

    fn mount_nfs(&self, export: &str, mount_point: &Path) -> Result<(), String> {
        let out = Command::new("mount")
            .args(["-t", "nfs", "-o", "soft,timeo=50,retrans=2", export])
            .arg(mount_point)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "mount -t nfs {export} {} failed: {}",
                mount_point.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

fn absolute(what: &str, p: &str) -> Result<(), BackendError> {
    let path = Path::new(p);
    if !path.is_absolute() || path.components().any(|c| c.as_os_str() == "..") {
        return Err(BackendError(format!(
            "{what} {p:?} must be an absolute path without \"..\""
        )));
    }
    Ok(())
}

/// Create (or check) the storage's directory, mounting NFS first.
pub fn prepare(s: &StorageSpec, mounter: &dyn Mounter) -> Result<(), BackendError> {
    match s.kind {
        StorageKind::LocalStorage | StorageKind::SharedMountPoint => absolute("url", &s.url)?,
        StorageKind::Nfs => {
            absolute("mount point", &s.mount_point)?;
            if !s.url.contains(":/") {
                return Err(BackendError(format!(
                    "NFS url {:?} must be server:/export",
                    s.url
                )));
            }
        }
    }
    let dir = Path::new(s.dir());
    // 0711, not 0700: libvirt starts QEMU as its own unprivileged user (libvirt-qemu on
    // Debian) and hands it volume paths under this directory, so QEMU must be able to
    // traverse it; nobody else can list it, and the volume files themselves stay 0600 until
    // libvirt gives them to QEMU's user (dynamic ownership).
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)
        .map_err(|e| BackendError(format!("cannot create {}: {e}", dir.display())))?;
    if s.kind != StorageKind::Nfs {
        traversable(dir)?;
    }
    if s.kind == StorageKind::Nfs && !mounter.is_mounted(dir) {
        mounter.mount_nfs(&s.url, dir).map_err(BackendError)?;
    }
    let probe = dir.join(".zstack-write-test");
    std::fs::write(&probe, b"ok")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| BackendError(format!("{} is not writable: {e}", dir.display())))?;
    Ok(())
}

/// Let others traverse (not list) an existing storage directory: one made 0700 by an older
/// agent, or by hand, would make every VM start fail deep inside QEMU with "Permission
/// denied" on its disk. Not for NFS: the export's own permissions rule there.
fn traversable(dir: &Path) -> Result<(), BackendError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(dir)
        .map_err(|e| BackendError(format!("cannot stat {}: {e}", dir.display())))?;
    let mode = meta.permissions().mode();
    if mode & 0o011 != 0o011 {
        std::fs::set_permissions(
            dir,
            std::fs::Permissions::from_mode((mode & 0o7777) | 0o011),
        )
        .map_err(|e| {
            BackendError(format!(
                "cannot make {} traversable for QEMU (chmod go+x): {e}",
                dir.display()
            ))
        })?;
    }
    Ok(())
}

/// The storage's capacity now.
pub fn capacity(s: &StorageSpec) -> pb::StorageCapacity {
    let dir = Path::new(s.dir());
    let measured = if s.kind == StorageKind::Nfs && !SystemMounter.is_mounted(dir) {
        Err(format!("{} ({}) is not mounted", dir.display(), s.url))
    } else if dir.is_dir() {
        statvfs(dir)
    } else {
        Err(format!("{} is gone", dir.display()))
    };
    match measured {
        Ok((total, available)) => pb::StorageCapacity {
            primary_storage_uuid: s.uuid.clone(),
            total_bytes: total,
            available_bytes: available,
            healthy: true,
            error: String::new(),
        },
        Err(error) => pb::StorageCapacity {
            primary_storage_uuid: s.uuid.clone(),
            healthy: false,
            error,
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoNfs;
    impl Mounter for NoNfs {
        fn is_mounted(&self, _: &Path) -> bool {
            false
        }
        fn mount_nfs(&self, export: &str, _: &Path) -> Result<(), String> {
            Err(format!("mount.nfs: {export}: Connection refused"))
        }
    }

    fn spec(kind: StorageKind, url: &str, mp: &str) -> StorageSpec {
        StorageSpec {
            uuid: "ps1".into(),
            kind,
            url: url.into(),
            mount_point: mp.into(),
        }
    }

    #[test]
    fn local_storage_is_a_directory_with_the_file_systems_capacity() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("ps/local");
        let s = spec(StorageKind::LocalStorage, dir.to_str().unwrap(), "");
        prepare(&s, &NoNfs).unwrap();
        prepare(&s, &NoNfs).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode(&dir),
            0o711,
            "QEMU's user traverses it, nobody lists it"
        );
        // One an older agent made 0700 is opened up to traversal, nothing more.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        prepare(&s, &NoNfs).unwrap();
        assert_eq!(mode(&dir), 0o711);
        let c = capacity(&s);
        let (total, _) = statvfs(d.path()).unwrap();
        assert!(c.healthy, "{c:?}");
        assert_eq!(c.total_bytes, total);
        assert!(c.available_bytes > 0 && c.available_bytes <= c.total_bytes);
        std::fs::remove_dir_all(&dir).unwrap();
        let c = capacity(&s);
        assert!(!c.healthy && c.error.contains("is gone"), "{c:?}");
    }

    #[test]
    fn bad_urls_and_failed_mounts_are_clear_errors() {
        let e = prepare(&spec(StorageKind::LocalStorage, "rel/dir", ""), &NoNfs).unwrap_err();
        assert!(e.0.contains("absolute"), "{e}");
        let e = prepare(&spec(StorageKind::LocalStorage, "/a/../etc", ""), &NoNfs).unwrap_err();
        assert!(e.0.contains(".."), "{e}");
        let d = tempfile::tempdir().unwrap();
        let mp = d.path().join("nfs");
        let e = prepare(
            &spec(StorageKind::Nfs, "127.0.0.1:/export", mp.to_str().unwrap()),
            &NoNfs,
        )
        .unwrap_err();
        assert!(e.0.contains("Connection refused"), "{e}");
        let e = prepare(
            &spec(StorageKind::Nfs, "nocolon", mp.to_str().unwrap()),
            &NoNfs,
        )
        .unwrap_err();
        assert!(e.0.contains("server:/export"), "{e}");
    }
}
