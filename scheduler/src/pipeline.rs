//! The allocator: filters, then the strategy's rank, then the [`Reservation`] to propose.
//! [`allocate_scan`] is ZStack's shape — every host through each filter in turn, so when none
//! survives the error names the filter that removed the last candidates. [`allocate`] reaches
//! the same host through the [`HostIndex`] and falls back to the scan only to explain a failure.

use crate::capacity::Reservation;
use crate::error::AllocationError;
use crate::error::NoHostAvailable;
use crate::error::Rejection;
use crate::filter::Ctx;
use crate::filter::FilterName;
use crate::filter::CHAIN;
use crate::index::HostIndex;
use crate::request::PlacementRequest;
use crate::view::HostView;
use crate::view::PlacementView;

/// Place by scanning every host (the reference, the explanation of failures, the bench's peer).
pub fn allocate_scan<V: PlacementView + ?Sized>(
    view: &V,
    req: &PlacementRequest,
) -> Result<Reservation, AllocationError> {
    let ctx = Ctx::prepare(view, req)?;
    scan(&ctx)
}

fn scan<V: PlacementView + ?Sized>(ctx: &Ctx<'_, V>) -> Result<Reservation, AllocationError> {
    // The best survivor without sorting them all: the scan is the benchmark's peer.
    let best = survivors(ctx)?
        .into_iter()
        .min_by_key(|h| ctx.rank(h))
        .ok_or(NoHostAvailable {
            filter: CHAIN[0],
            removed: 0,
            last: None,
        })?;
    finish(ctx, best)
}

/// Every host through each filter in turn; the survivors in view order.
fn survivors<V: PlacementView + ?Sized>(
    ctx: &Ctx<'_, V>,
) -> Result<Vec<HostView>, AllocationError> {
    let mut candidates: Vec<HostView> = ctx
        .view
        .host_uuids()
        .iter()
        .filter_map(|u| ctx.view.host(u))
        .collect();
    if candidates.is_empty() {
        return Err(NoHostAvailable {
            filter: CHAIN[0],
            removed: 0,
            last: None,
        }
        .into());
    }
    for filter in CHAIN {
        if !ctx.applies(filter) {
            continue;
        }
        let before = candidates.len();
        let mut last = None;
        candidates.retain(|h| match ctx.check(filter, h) {
            Ok(()) => true,
            Err(reason) => {
                last = Some(Rejection {
                    host_uuid: h.uuid.clone(),
                    reason,
                });
                false
            }
        });
        if candidates.is_empty() {
            return Err(NoHostAvailable {
                filter,
                removed: before,
                last,
            }
            .into());
        }
    }
    Ok(candidates)
}

/// Every host a VM could be placed on, best-ranked first, without choosing one: ZStack's
/// dry run behind `GetCandidateZonesClustersHostsForCreatingVm`. Fails as [`allocate_scan`]
/// does when none survives.
pub fn candidates<V: PlacementView + ?Sized>(
    view: &V,
    req: &PlacementRequest,
) -> Result<Vec<HostView>, AllocationError> {
    let ctx = Ctx::prepare(view, req)?;
    let mut hosts = survivors(&ctx)?;
    hosts.sort_by_key(|h| ctx.rank(h));
    Ok(hosts)
}

/// Place through the index: the designated (or root-volume) host is checked alone; otherwise
/// the index walk finds the best-ranked host without scanning; a failure is explained by the
/// full scan, so its error is the scan's.
pub fn allocate<V: PlacementView + ?Sized>(
    view: &V,
    index: &HostIndex,
    req: &PlacementRequest,
) -> Result<Reservation, AllocationError> {
    let ctx = Ctx::prepare(view, req)?;
    if let Some(only) = req
        .host_uuid
        .as_ref()
        .or(req.root_volume_host_uuid.as_ref())
    {
        return place_one(&ctx, only);
    }
    match index.find(&ctx) {
        Some(host) => finish(&ctx, host),
        None => scan(&ctx),
    }
}

fn place_one<V: PlacementView + ?Sized>(
    ctx: &Ctx<'_, V>,
    uuid: &str,
) -> Result<Reservation, AllocationError> {
    let host = ctx.view.host(uuid).ok_or(NoHostAvailable {
        filter: FilterName::DesignatedHost,
        removed: 0,
        last: None,
    })?;
    match ctx.check_all(&host) {
        Ok(()) => finish(ctx, host),
        Err((filter, reason)) => Err(NoHostAvailable {
            filter,
            removed: 1,
            last: Some(Rejection {
                host_uuid: host.uuid,
                reason,
            }),
        }
        .into()),
    }
}

fn finish<V: PlacementView + ?Sized>(
    ctx: &Ctx<'_, V>,
    host: HostView,
) -> Result<Reservation, AllocationError> {
    let volume = ctx.volume_charge(&host).map_err(|reason| NoHostAvailable {
        filter: FilterName::HostPrimaryStorage,
        removed: 1,
        last: Some(Rejection {
            host_uuid: host.uuid.clone(),
            reason,
        }),
    })?;
    Ok(Reservation {
        vm_uuid: ctx.req.vm_uuid.clone(),
        host_uuid: host.uuid,
        charge: ctx.charge,
        volume,
    })
}
