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

/// This node's data key, from its credentials directory (written by `pki` when the node
/// founded the cluster or joined it: every member holds the same key).
pub fn load(data_dir: &Path) -> Result<DataKey, StartError> {
    let path = key_path(data_dir);
    Ok(DataKey::load(&path)?)
}

/// A new data key file's content, for a node founding a cluster.
pub fn new_key_file() -> Vec<u8> {
    DataKey::generate().file_line().as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_file_loads_and_a_missing_one_is_named() {
        let td = tempfile::tempdir().unwrap();
        let e = load(td.path()).unwrap_err().to_string();
        assert!(e.contains("data.key"), "{e}");
        let path = key_path(td.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &new_key_file()))
            .unwrap();
        assert_eq!(load(td.path()).unwrap().id().len(), 8);
    }
}
