//! The antiHard affinity rule (no host holding another member; antiSoft is a preference in the
//! ranking, not a filter) and the hard-mode usage strategies' data requirement.

use super::Ctx;
use crate::strategy::Metric;
use crate::view::AffinityPolicy;
use crate::view::HostView;
use crate::view::PlacementView;

pub(super) fn anti_hard<V: PlacementView + ?Sized>(
    ctx: &Ctx<'_, V>,
    host: &HostView,
) -> Result<(), String> {
    let Some(group) = ctx
        .group
        .as_ref()
        .filter(|g| g.policy == AffinityPolicy::AntiHard)
    else {
        return Ok(());
    };
    match group.member_hosts.get(&host.uuid) {
        Some(vm) => Err(format!(
            "holds VM {vm} of {} affinity group {}",
            group.policy.as_str(),
            group.uuid
        )),
        None => Ok(()),
    }
}

pub(super) fn usage_data<V: PlacementView + ?Sized>(
    ctx: &Ctx<'_, V>,
    host: &HostView,
) -> Result<(), String> {
    let Some(metric) = ctx.req.strategy.hard_usage() else {
        return Ok(());
    };
    let usage = ctx.view.host_usage(&host.uuid);
    let (has, what) = match metric {
        Metric::Cpu => (usage.cpu_permille.is_some(), "CPU"),
        Metric::Memory => (usage.memory_permille.is_some(), "memory"),
    };
    if has {
        Ok(())
    } else {
        Err(format!(
            "no {what} usage data in the collection window ({} hard mode)",
            ctx.req.strategy.name()
        ))
    }
}
