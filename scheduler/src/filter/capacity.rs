//! `HostCapacityAllocatorFlow` (CPU and memory through [`crate::capacity::fits`]) and
//! `HostPrimaryStorageAllocatorFlow` (a PS of the host's cluster takes the new root volume).

use super::Ctx;
use crate::capacity::fits;
use crate::capacity::ps_fits;
use crate::capacity::Limits;
use crate::capacity::VolumeCharge;
use crate::units::Size;
use crate::view::HostView;
use crate::view::PlacementView;
use crate::view::PsType;

pub(super) fn host_capacity<V: PlacementView + ?Sized>(
    ctx: &Ctx<'_, V>,
    host: &HostView,
) -> Result<(), String> {
    let limits = Limits::of(host.capacity, &ctx.config);
    fits(limits, host.allocated, ctx.charge).map_err(|s| s.to_string())
}

/// Pick the PS for the new root volume on `host`: the requested one, else a LocalStorage one
/// with the most room (spec 02 §5.4: without a choice the VM goes to local storage), else the
/// shared one with the most room. [I] "most room" instead of upstream's random NFS pick, so a
/// placement is a function of the view and the seed only.
pub(super) fn primary_storage<V: PlacementView + ?Sized>(
    ctx: &Ctx<'_, V>,
    host: &HostView,
) -> Result<VolumeCharge, String> {
    let size = ctx.req.root_volume_size.unwrap_or(0);
    let storages = ctx.view.cluster_primary_storages(&host.cluster_uuid);
    if let Some(wanted) = &ctx.req.primary_storage_uuid {
        if !storages.iter().any(|ps| ps.uuid == *wanted) {
            return Err(format!(
                "requested primary storage {wanted} is not attached to cluster {}",
                host.cluster_uuid
            ));
        }
    }
    let mut reasons = Vec::new();
    let mut best: Option<((bool, u64), VolumeCharge)> = None;
    for ps in &storages {
        if ctx
            .req
            .primary_storage_uuid
            .as_ref()
            .is_some_and(|w| *w != ps.uuid)
        {
            continue;
        }
        if !ps.enabled || !ps.connected {
            reasons.push(format!("ps {}: not Enabled and Connected", ps.uuid));
            continue;
        }
        let local = ps.ps_type == PsType::LocalStorage;
        let cap = if local {
            match ctx.view.local_storage_host_capacity(&ps.uuid, &host.uuid) {
                Some(cap) => cap,
                None => {
                    reasons.push(format!("ps {}: no local storage on this host", ps.uuid));
                    continue;
                }
            }
        } else {
            ps.capacity
        };
        match ps_fits(cap, size, &ctx.config) {
            Err(e) => reasons.push(format!("ps {}: {e}", ps.uuid)),
            Ok(bytes) => {
                let key = (local, cap.available);
                if best.as_ref().is_none_or(|(k, _)| key > *k) {
                    best = Some((
                        key,
                        VolumeCharge {
                            primary_storage_uuid: ps.uuid.clone(),
                            local_host_uuid: local.then(|| host.uuid.clone()),
                            bytes,
                        },
                    ));
                }
            }
        }
    }
    match best {
        Some((_, charge)) => Ok(charge),
        None if reasons.is_empty() => Err(format!(
            "no primary storage attached to cluster {}",
            host.cluster_uuid
        )),
        None => Err(format!(
            "no primary storage can hold the {} root volume: {}",
            Size(size),
            reasons.join("; ")
        )),
    }
}
