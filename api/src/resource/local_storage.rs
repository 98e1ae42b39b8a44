//! What each host's local disk offers to a LocalStorage primary storage (ZStack's
//! `LocalStorageHostRefVO`): the storage's own figures are the sum over its hosts, but a VM's
//! root volume lives on one host's disk, so placement must read the host's share.
//!
//! The primary-storage family owns these rows and writes them with every capacity report of a
//! LocalStorage storage (the whole set replaced, so a host that stopped answering drops out);
//! placement (`families/host/placement.rs`) reads them here, so neither family names the other.
//! Rows of a storage or host that is gone are never read (placement starts from the storages
//! attached to a host's cluster) and vanish with the storage's next report.

use serde::Deserialize;
use serde::Serialize;

use crate::ApiError;
use crate::StateTxn;

/// `<ps uuid>/<host uuid>` → [`LocalHostCapacity`].
pub const TABLE: &str = "local_storage_host";

/// One host's share of a LocalStorage primary storage, bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalHostCapacity {
    /// The host.
    pub host_uuid: String,
    /// Virtual total.
    pub total_capacity: u64,
    /// Virtual available (volumes deflated by the PS ratio once they exist).
    pub available_capacity: u64,
    /// Physical total of the host's directory.
    pub total_physical_capacity: u64,
    /// Physical free space.
    pub available_physical_capacity: u64,
}

fn key(ps_uuid: &str, host_uuid: &str) -> Vec<u8> {
    format!("{ps_uuid}/{host_uuid}").into_bytes()
}

/// A host's share of a storage, if it reported one.
pub fn get(
    txn: &dyn StateTxn,
    ps_uuid: &str,
    host_uuid: &str,
) -> Result<Option<LocalHostCapacity>, ApiError> {
    match txn.get(TABLE, &key(ps_uuid, host_uuid))? {
        None => Ok(None),
        Some(raw) => serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| ApiError::Corrupt {
                what: format!("{TABLE}/{ps_uuid}/{host_uuid}"),
                detail: e.to_string(),
            }),
    }
}

/// Replace every host's share of a storage.
pub fn replace(
    txn: &mut dyn StateTxn,
    ps_uuid: &str,
    hosts: &[LocalHostCapacity],
) -> Result<(), ApiError> {
    let prefix = format!("{ps_uuid}/").into_bytes();
    for (k, _) in txn.scan_prefix(TABLE, &prefix, usize::MAX)? {
        txn.delete(TABLE, &k)?;
    }
    for h in hosts {
        let raw = serde_json::to_vec(h).map_err(|e| ApiError::Corrupt {
            what: format!("{TABLE}/{ps_uuid}/{}", h.host_uuid),
            detail: e.to_string(),
        })?;
        txn.put(TABLE, &key(ps_uuid, &h.host_uuid), raw)?;
    }
    Ok(())
}

/// Write one host's share (its virtual figure moved by a volume reservation).
pub fn put(txn: &mut dyn StateTxn, ps_uuid: &str, h: &LocalHostCapacity) -> Result<(), ApiError> {
    let raw = serde_json::to_vec(h).map_err(|e| ApiError::Corrupt {
        what: format!("{TABLE}/{ps_uuid}/{}", h.host_uuid),
        detail: e.to_string(),
    })?;
    txn.put(TABLE, &key(ps_uuid, &h.host_uuid), raw)?;
    Ok(())
}

/// Every host's share of a storage, in host uuid order.
pub fn of_storage(txn: &dyn StateTxn, ps_uuid: &str) -> Result<Vec<LocalHostCapacity>, ApiError> {
    let prefix = format!("{ps_uuid}/").into_bytes();
    let mut out = Vec::new();
    for (k, raw) in txn.scan_prefix(TABLE, &prefix, usize::MAX)? {
        out.push(serde_json::from_slice(&raw).map_err(|e| ApiError::Corrupt {
            what: format!("{TABLE}/{}", String::from_utf8_lossy(&k)),
            detail: e.to_string(),
        })?);
    }
    Ok(out)
}
