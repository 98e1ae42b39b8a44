//! Where the VM may go at all: `DesignatedHostAllocatorFlow` (requested zone, cluster, host),
//! `AvoidHostAllocatorFlow` (excluded hosts), the LocalStorage root-volume rule, and the
//! `MaxInstancePerHost` limit; plus the validation of contradictory scopes.

use super::Ctx;
use crate::error::BadRequest;
use crate::request::PlacementRequest;
use crate::strategy::AllocatorStrategy;
use crate::view::HostView;
use crate::view::PlacementView;

/// Refuse unknown or contradictory scopes before any host is looked at.
pub(super) fn validate<V: PlacementView + ?Sized>(
    view: &V,
    req: &PlacementRequest,
) -> Result<(), BadRequest> {
    let unknown = |kind: &'static str, uuid: &str| BadRequest::UnknownResource {
        kind,
        uuid: uuid.to_string(),
    };
    if let Some(zone) = &req.zone_uuid {
        view.zone(zone).ok_or_else(|| unknown("Zone", zone))?;
    }
    if let Some(cluster_uuid) = &req.cluster_uuid {
        let cluster = view
            .cluster(cluster_uuid)
            .ok_or_else(|| unknown("Cluster", cluster_uuid))?;
        if let Some(zone) = req.zone_uuid.as_ref().filter(|z| **z != cluster.zone_uuid) {
            return Err(BadRequest::ClusterOutsideZone {
                cluster: cluster.uuid,
                cluster_zone: cluster.zone_uuid,
                zone: zone.clone(),
            });
        }
    }
    if let Some(root_host) = &req.root_volume_host_uuid {
        view.host(root_host)
            .ok_or_else(|| unknown("Host", root_host))?;
    }
    let Some(host_uuid) = &req.host_uuid else {
        return Ok(());
    };
    let host = view
        .host(host_uuid)
        .ok_or_else(|| unknown("Host", host_uuid))?;
    if let Some(zone) = req.zone_uuid.as_ref().filter(|z| **z != host.zone_uuid) {
        return Err(BadRequest::HostOutsideZone {
            host: host.uuid,
            host_zone: host.zone_uuid,
            zone: zone.clone(),
        });
    }
    if let Some(cluster) = req
        .cluster_uuid
        .as_ref()
        .filter(|c| **c != host.cluster_uuid)
    {
        return Err(BadRequest::HostOutsideCluster {
            host: host.uuid,
            host_cluster: host.cluster_uuid,
            cluster: cluster.clone(),
        });
    }
    if req.excluded_host_uuids.contains(&host.uuid) {
        return Err(BadRequest::HostExcluded { host: host.uuid });
    }
    if let Some(root_host) = req
        .root_volume_host_uuid
        .as_ref()
        .filter(|r| **r != host.uuid)
    {
        return Err(BadRequest::HostNotRootVolumeHost {
            host: host.uuid,
            root_volume_host: root_host.clone(),
        });
    }
    Ok(())
}

pub(super) fn designated<V: PlacementView + ?Sized>(
    ctx: &Ctx<'_, V>,
    host: &HostView,
) -> Result<(), String> {
    let req = ctx.req;
    if let Some(h) = req.host_uuid.as_ref().filter(|h| **h != host.uuid) {
        return Err(format!("not the designated host {h}"));
    }
    if let Some(c) = req
        .cluster_uuid
        .as_ref()
        .filter(|c| **c != host.cluster_uuid)
    {
        return Err(format!("not in the requested cluster {c}"));
    }
    if let Some(z) = req.zone_uuid.as_ref().filter(|z| **z != host.zone_uuid) {
        return Err(format!("not in the requested zone {z}"));
    }
    Ok(())
}

pub(super) fn avoid<V: PlacementView + ?Sized>(
    ctx: &Ctx<'_, V>,
    host: &HostView,
) -> Result<(), String> {
    if ctx.excluded.contains(&host.uuid) {
        return Err("excluded (the VM's current or failed host)".to_string());
    }
    Ok(())
}

pub(super) fn local_storage<V: PlacementView + ?Sized>(
    ctx: &Ctx<'_, V>,
    host: &HostView,
) -> Result<(), String> {
    match &ctx.req.root_volume_host_uuid {
        Some(root) if *root != host.uuid => Err(format!(
            "the root volume lives on the local storage of host {root}"
        )),
        _ => Ok(()),
    }
}

pub(super) fn max_instance<V: PlacementView + ?Sized>(
    ctx: &Ctx<'_, V>,
    host: &HostView,
) -> Result<(), String> {
    match ctx.req.strategy {
        AllocatorStrategy::MaxInstancePerHost(max) if host.vm_count >= max => Err(format!(
            "runs {} VMs, maxInstancePerHost is {max}",
            host.vm_count
        )),
        _ => Ok(()),
    }
}
