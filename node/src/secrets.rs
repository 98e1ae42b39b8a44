//! Where this node's data key comes from. The key seals the secrets the API accepts (host and
//! backup-storage passwords, `api::secret`) and lives outside the replicated state, in
//! `<data_dir>/pki/data.key` (mode 0600). Every member must hold the same key: a secret sealed
//! by one node is opened by whichever node later needs it.

use std::path::Path;
use std::path::PathBuf;

use api::secret::DataKey;

use crate::error::StartError;

/// The key file of a data directory.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("pki").join("data.key")
}

/// This node's data key: the file in the data directory, or a new key for a new directory.
///
/// JOIN FLOW: this is the one place the cluster's join flow replaces. Until it lands, a node
/// with a fresh data dir and no key file makes its own key, so members of a multi-node
/// cluster hold the same key only when it was placed in each data dir before the first start
/// (what the join will do: the joining node receives the key and writes this file before it
/// starts serving). A data dir that already holds Raft data but no key is refused: a new key
/// could not open what the old one sealed.
pub fn load_or_create(data_dir: &Path) -> Result<DataKey, StartError> {
    let path = key_path(data_dir);
    let key = if path.exists() {
        DataKey::load(&path)?
    } else if data_dir.join("raft").exists() {
        return Err(StartError::DataDir {
            path: data_dir.to_path_buf(),
            reason: format!(
                "has Raft data but no data key at {}; restore that file (a new key cannot open the secrets the old one sealed)",
                path.display()
            ),
        });
    } else {
        let key = DataKey::load_or_create(&path)?;
        tracing::info!(key_id = key.id(), path = %path.display(), "created a data key");
        key
    };
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded_and_never_recreated_under_raft_data() {
        let td = tempfile::tempdir().unwrap();
        let k = load_or_create(td.path()).unwrap();
        assert_eq!(load_or_create(td.path()).unwrap().id(), k.id());
        std::fs::create_dir(td.path().join("raft")).unwrap();
        assert_eq!(load_or_create(td.path()).unwrap().id(), k.id());
        std::fs::remove_file(key_path(td.path())).unwrap();
        let e = load_or_create(td.path()).unwrap_err().to_string();
        assert!(e.contains("no data key") && e.contains("data.key"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_stops_the_start() {
        use std::os::unix::fs::PermissionsExt;
        let td = tempfile::tempdir().unwrap();
        load_or_create(td.path()).unwrap();
        let path = key_path(td.path());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(td.path()).unwrap_err().to_string();
        assert!(
            e.contains("0644") && e.contains(&path.display().to_string()),
            "{e}"
        );
    }
}
