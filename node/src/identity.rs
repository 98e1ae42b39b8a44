//! The data directory's identity file: which node and cluster the directory belongs to. A node
//! id is never reused, so a config naming another id or cluster is refused.

use std::io::Write;
use std::path::Path;

use serde::Deserialize;
use serde::Serialize;

use crate::error::StartError;

const FILE: &str = "node-identity.json";

/// Identity recorded in the data directory at first start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Raft node id.
    pub node_id: u64,
    /// Cluster id.
    pub cluster_id: String,
    /// The node's stable uuid (32 hex chars), ZStack's management node uuid.
    pub uuid: String,
}

/// Read the identity of `dir`, creating it for a fresh directory; refuse a mismatch.
pub fn load_or_create(dir: &Path, node_id: u64, cluster_id: &str) -> Result<Identity, StartError> {
    let err = |reason: String| StartError::DataDir {
        path: dir.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(format!("create: {e}")))?;
    let path = dir.join(FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| err(format!("read {FILE}: {e}")))?;
        let id: Identity =
            serde_json::from_str(&text).map_err(|e| err(format!("parse {FILE}: {e}")))?;
        if id.node_id != node_id {
            return Err(err(format!(
                "belongs to node {}, configured node id is {node_id} (node ids are never reused; use a fresh data dir)",
                id.node_id
            )));
        }
        if id.cluster_id != cluster_id {
            return Err(err(format!(
                "belongs to cluster {:?}, configured cluster id is {cluster_id:?}",
                id.cluster_id
            )));
        }
        return Ok(id);
    }
    // A directory with Raft data but no identity was not created by zsnode: do not adopt it.
    if dir.join("raft").exists() {
        return Err(err(format!(
            "has Raft data but no {FILE}; refusing to adopt it"
        )));
    }
    let id = Identity {
        node_id,
        cluster_id: cluster_id.to_string(),
        uuid: format!("{:032x}", rand::random::<u128>()),
    };
    let tmp = dir.join(format!("{FILE}.tmp"));
    let body = serde_json::to_vec_pretty(&id).map_err(|e| err(format!("encode identity: {e}")))?;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| err(format!("write {FILE}: {e}")))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_verified() {
        let td = tempfile::tempdir().unwrap();
        let a = load_or_create(td.path(), 1, "c").unwrap();
        assert_eq!(a.uuid.len(), 32);
        assert_eq!(load_or_create(td.path(), 1, "c").unwrap(), a);
        let e = load_or_create(td.path(), 2, "c").unwrap_err().to_string();
        assert!(e.contains("belongs to node 1"), "{e}");
        let e = load_or_create(td.path(), 1, "other")
            .unwrap_err()
            .to_string();
        assert!(e.contains("belongs to cluster"), "{e}");
    }
}
