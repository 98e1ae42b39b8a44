//! `AttachedL2NetworkAllocatorFlow` (every requested L3's L2 attached to the host's cluster) and
//! `ImageBackupStorageAllocatorFlow` (the image is on a backup storage attached to the zone).

use super::Ctx;
use crate::view::HostView;
use crate::view::PlacementView;

pub(super) fn attached_l2<V: PlacementView + ?Sized>(
    ctx: &Ctx<'_, V>,
    host: &HostView,
) -> Result<(), String> {
    match ctx
        .networks
        .iter()
        .find(|n| !n.clusters.contains(&host.cluster_uuid))
    {
        Some(n) => Err(format!(
            "L2 network {} of L3 network {} is not attached to cluster {}",
            n.l2, n.l3, host.cluster_uuid
        )),
        None => Ok(()),
    }
}

pub(super) fn image_backup_storage<V: PlacementView + ?Sized>(
    ctx: &Ctx<'_, V>,
    host: &HostView,
) -> Result<(), String> {
    match &ctx.image_zones {
        Some((image, zones)) if !zones.contains(&host.zone_uuid) => Err(format!(
            "no usable backup storage holding image {image} is attached to zone {}",
            host.zone_uuid
        )),
        _ => Ok(()),
    }
}
