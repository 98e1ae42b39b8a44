//! `HostStateAndHypervisorAllocatorFlow` and the cluster/zone state check: only Enabled and
//! Connected hosts in Enabled clusters and zones take new VMs (spec 03 §4, decision: a disabled
//! host keeps its VMs but gets no new ones).

use crate::view::EnableState;
use crate::view::HostState;
use crate::view::HostStatus;
use crate::view::HostView;
use crate::view::PlacementView;

pub(crate) fn host_state(host: &HostView) -> Result<(), String> {
    if host.state != HostState::Enabled {
        return Err(format!("state is {:?}, not Enabled", host.state));
    }
    if host.status != HostStatus::Connected {
        return Err(format!("status is {:?}, not Connected", host.status));
    }
    Ok(())
}

pub(crate) fn cluster_and_zone<V: PlacementView + ?Sized>(
    view: &V,
    host: &HostView,
) -> Result<(), String> {
    match view.cluster(&host.cluster_uuid) {
        Some(c) if c.state == EnableState::Enabled => {}
        Some(_) => return Err(format!("cluster {} is Disabled", host.cluster_uuid)),
        None => return Err(format!("cluster {} not found", host.cluster_uuid)),
    }
    match view.zone(&host.zone_uuid) {
        Some(z) if z.state == EnableState::Enabled => Ok(()),
        Some(_) => Err(format!("zone {} is Disabled", host.zone_uuid)),
        None => Err(format!("zone {} not found", host.zone_uuid)),
    }
}
