//! How a primary storage is measured: which hosts are asked, how their answers add up to the
//! storage's status and capacity, and when a new measurement is worth a commit. The leader's
//! storage tracker (`ha::duties::storage_tracker`) and the `ReconnectPrimaryStorage` flow
//! both measure through these rules, so a storage reads the same whichever of them asked.
//!
//! - LocalStorage: each host's own disk, so the figures are the sum over the hosts that
//!   answered healthy.
//! - SharedMountPoint and NFS: one file system every host sees; the first healthy answer is
//!   its figures.
//! - Status: Connected when at least one host reaches it, Disconnected when hosts were asked
//!   and none could; with no host to ask there is nothing to report.
//!
//! The report's `available` is the physical free space; the apply takes the volumes'
//! reservations (`reservation.rs`) from it for the virtual `availableCapacity`.

use serde::Deserialize;
use serde::Serialize;

use super::model::CapacityReport;
use super::model::PrimaryStorage;
use super::model::PsStatus;
use super::model::PsType;
use crate::resource;
use crate::resource::local_storage::LocalHostCapacity;
use crate::ApiError;
use crate::StateTxn;

/// What one host measured: (total bytes, available bytes), or why it cannot reach the storage.
pub type Measured = Result<(u64, u64), String>;

/// A primary storage as one host's agent must prepare and measure it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageOnHost {
    /// Host uuid.
    pub host_uuid: String,
    /// Its management address (the agent listens there).
    pub management_ip: String,
    /// Primary storage uuid.
    pub ps_uuid: String,
    /// "LocalStorage", "SharedMountPoint", "NFS".
    pub ps_type: String,
    /// Directory, or `server:/export` for NFS.
    pub url: String,
    /// Where NFS is mounted (the directory itself otherwise).
    pub mount_point: String,
}

/// The hosts that measure `ps`: every Connected host of every cluster it is attached to, in
/// attach order, then host uuid order. Hosts are read through their kind's inventory (this
/// family does not know the host record).
pub fn hosts_to_ask(
    txn: &dyn StateTxn,
    ps: &PrimaryStorage,
) -> Result<Vec<StorageOnHost>, ApiError> {
    let mut out = Vec::new();
    for cluster in &ps.attached_cluster_uuids {
        for h in resource::refs_where(txn, "Host", "clusterUuid", cluster)? {
            let Some(inv) = resource::inventory_of(txn, "Host", &h.uuid)? else {
                continue;
            };
            if inv["status"] != "Connected" {
                continue;
            }
            out.push(StorageOnHost {
                host_uuid: h.uuid.clone(),
                management_ip: inv["managementIp"].as_str().unwrap_or_default().to_string(),
                ps_uuid: ps.uuid.clone(),
                ps_type: ps.ps_type.as_str().to_string(),
                url: ps.url.clone(),
                mount_point: ps.mount_path.clone(),
            });
        }
    }
    Ok(out)
}

/// The report a storage's answers (host uuid, what it measured) add up to; `None` when no
/// host was asked. A LocalStorage report also carries each healthy host's share.
pub fn report_of(
    ps_type: PsType,
    answers: &[(String, Measured)],
) -> Option<(CapacityReport, PsStatus)> {
    if answers.is_empty() {
        return None;
    }
    let healthy: Vec<(u64, u64)> = answers.iter().filter_map(|(_, a)| a.clone().ok()).collect();
    let Some(first) = healthy.first().copied() else {
        return Some((
            CapacityReport {
                total: 0,
                available: 0,
                total_physical: 0,
                available_physical: 0,
                system_used: 0,
                hosts: Vec::new(),
            },
            PsStatus::Disconnected,
        ));
    };
    let (total, available) = match ps_type {
        PsType::LocalStorage => healthy.iter().fold((0u64, 0u64), |(t, a), (ht, ha)| {
            (t.saturating_add(*ht), a.saturating_add(*ha))
        }),
        PsType::SharedMountPoint | PsType::Nfs => first,
    };
    let available = available.min(total);
    let hosts = match ps_type {
        PsType::LocalStorage => answers
            .iter()
            .filter_map(|(host, a)| a.as_ref().ok().map(|(t, av)| (host, *t, (*av).min(*t))))
            .map(|(host, t, av)| LocalHostCapacity {
                host_uuid: host.clone(),
                total_capacity: t,
                available_capacity: av,
                total_physical_capacity: t,
                available_physical_capacity: av,
            })
            .collect(),
        PsType::SharedMountPoint | PsType::Nfs => Vec::new(),
    };
    Some((
        CapacityReport {
            total,
            available,
            total_physical: total,
            available_physical: available,
            system_used: total - available,
            hosts,
        },
        PsStatus::Connected,
    ))
}

/// Whether a report is news: a status change, or figures moved by more than 0.1 % of the total
/// (free space on a live file system moves all the time; every byte is not worth a commit).
pub fn is_news(p: &PrimaryStorage, r: &CapacityReport, status: PsStatus) -> bool {
    if p.status != status || p.total_physical_capacity != r.total_physical {
        return true;
    }
    let slack = (r.total_physical / 1000).max(1 << 20);
    p.available_physical_capacity.abs_diff(r.available_physical) > slack
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::matrix::Harness;
    use crate::testing::u;

    #[test]
    fn local_storage_adds_up_hosts_and_shared_storage_is_one_file_system() {
        let answers = vec![
            (u(7), Ok((100, 40))),
            (u(8), Err("gone".into())),
            (u(9), Ok((200, 50))),
        ];
        let (r, s) = report_of(PsType::LocalStorage, &answers).unwrap();
        assert_eq!(
            (r.total, r.available, r.system_used, s),
            (300, 90, 210, PsStatus::Connected)
        );
        // Each healthy host's share, for placement on local disks.
        let shares: Vec<_> = r
            .hosts
            .iter()
            .map(|h| (h.host_uuid.clone(), h.total_capacity, h.available_capacity))
            .collect();
        assert_eq!(shares, vec![(u(7), 100, 40), (u(9), 200, 50)]);
        let (r, _) = report_of(PsType::SharedMountPoint, &answers).unwrap();
        assert_eq!((r.total, r.available, r.hosts.len()), (100, 40, 0));
        let (_, s) = report_of(PsType::Nfs, &[(u(7), Err("mount failed".into()))]).unwrap();
        assert_eq!(s, PsStatus::Disconnected);
        assert!(
            report_of(PsType::Nfs, &[]).is_none(),
            "no host asked: no news"
        );
        // An agent reporting more free than total space is capped, never underflows.
        let (r, _) = report_of(PsType::Nfs, &[(u(7), Ok((10, 20)))]).unwrap();
        assert_eq!((r.total, r.available, r.system_used), (10, 10, 0));
    }

    fn ps(status: PsStatus, total: u64, available: u64) -> PrimaryStorage {
        PrimaryStorage {
            uuid: u(1),
            zone_uuid: u(2),
            name: "ps".into(),
            url: "/ps".into(),
            description: None,
            total_capacity: total,
            available_capacity: available,
            total_physical_capacity: total,
            available_physical_capacity: available,
            system_used_capacity: total - available,
            ps_type: PsType::LocalStorage,
            state: super::super::model::PsState::Enabled,
            status,
            mount_path: "/ps".into(),
            create_date: 0,
            last_op_date: 0,
            attached_cluster_uuids: Vec::new(),
        }
    }

    #[test]
    fn small_moves_of_free_space_are_not_news() {
        let gib = 1u64 << 30;
        let p = ps(PsStatus::Connected, 100 * gib, 50 * gib);
        let (r, s) = report_of(
            PsType::LocalStorage,
            &[(u(7), Ok((100 * gib, 50 * gib + 1000)))],
        )
        .unwrap();
        assert!(!is_news(&p, &r, s), "1000 bytes of 100 GiB");
        let (r, s) = report_of(PsType::LocalStorage, &[(u(7), Ok((100 * gib, 49 * gib)))]).unwrap();
        assert!(is_news(&p, &r, s), "1 GiB moved: more than 0.1 %");
        let (r, s) = report_of(PsType::LocalStorage, &[(u(7), Err("gone".into()))]).unwrap();
        assert!(is_news(&p, &r, s), "a status change");
        let p = ps(PsStatus::Connecting, 100 * gib, 50 * gib);
        let (r, s) = report_of(PsType::LocalStorage, &[(u(7), Ok((100 * gib, 50 * gib)))]).unwrap();
        assert!(is_news(&p, &r, s), "Connecting → Connected");
    }

    #[test]
    fn only_connected_hosts_of_attached_clusters_are_asked() {
        let mut w = Harness::new();
        let (z, c) = w.zone_and_cluster();
        let other = w.created(
            "CreateCluster",
            json!({"zoneUuid": z, "name": "c2", "hypervisorType": "KVM"}),
        );
        let host = |w: &mut Harness, cluster: &str, ip: &str| {
            w.created(
                "AddKVMHost",
                json!({"clusterUuid": cluster, "name": ip, "managementIp": ip,
                       "username": "root", "password": "p"}),
            )
        };
        let h1 = host(&mut w, &c, "10.0.0.1");
        let h2 = host(&mut w, &c, "10.0.0.2");
        host(&mut w, &other, "10.0.0.3");
        // h2 drops off: it is not asked.
        crate::testing::track_host(&mut w.t, &h2, false);
        let ps = w.created(
            "AddLocalPrimaryStorage",
            json!({"zoneUuid": z, "name": "l", "url": "/l"}),
        );
        w.admin(
            "AttachPrimaryStorageToCluster",
            json!({"primaryStorageUuid": ps, "clusterUuid": c}),
        );
        let p = resource::require::<PrimaryStorage>(&w.t, &ps).unwrap().1;
        let asked = hosts_to_ask(&w.t, &p).unwrap();
        assert_eq!(
            asked
                .iter()
                .map(|s| (s.host_uuid.as_str(), s.management_ip.as_str()))
                .collect::<Vec<_>>(),
            vec![(h1.as_str(), "10.0.0.1")]
        );
        assert_eq!(
            (asked[0].ps_type.as_str(), asked[0].url.as_str()),
            ("LocalStorage", "/l")
        );
    }
}
