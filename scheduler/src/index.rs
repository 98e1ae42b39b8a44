//! Sub-linear placement: the eligible hosts (Enabled, Connected, in Enabled clusters and zones)
//! kept in ordered sets per scope (all, zone, cluster), one per strategy measure — VM count,
//! CPU usage, memory usage — keyed `(measure, rotation, uuid)`, and one by free capacity
//! `(free memory, free vCPUs, uuid)`. A request walks its strategy's set from the seeded
//! rotation point and stops at the first host passing every filter: that host is the best rank,
//! so most requests touch a handful of hosts. The free-capacity set answers "does anything fit
//! at all" in O(log n), and bounds the fallback when the walk meets many full hosts.
//!
//! The index mirrors the view: call [`HostIndex::refresh`] for a host after each reservation,
//! release, state or usage change, and rebuild after a cluster/zone state or ratio change.

use std::collections::BTreeSet;
use std::collections::HashMap;

use crate::capacity::Limits;
use crate::config::AllocatorConfig;
use crate::filter::state;
use crate::filter::Ctx;
use crate::strategy::rotation;
use crate::strategy::AllocatorStrategy;
use crate::strategy::Metric;
use crate::strategy::Rank;
use crate::strategy::NO_DATA_CLASS;
use crate::view::HostView;
use crate::view::PlacementView;

/// `(measure, rotation, uuid)`.
type Key = (u64, u64, String);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    All,
    Zone(String),
    Cluster(String),
}

#[derive(Debug, Default)]
struct Orderings {
    by_vm: BTreeSet<Key>,
    by_cpu: BTreeSet<Key>,
    by_mem: BTreeSet<Key>,
    /// `(free deflated memory, free vCPUs, uuid)`.
    by_free: BTreeSet<(u64, u64, String)>,
}

#[derive(Debug, Clone)]
struct Entry {
    zone: String,
    cluster: String,
    rot: u64,
    vm: u64,
    cpu: u64,
    mem: u64,
    free_mem: u64,
    free_cpu: u64,
}

/// Hosts visited in strategy order before switching to the free-capacity range.
const WALK_LIMIT: usize = 256;

/// The placement index over a view's eligible hosts.
#[derive(Debug, Default)]
pub struct HostIndex {
    config: AllocatorConfig,
    entries: HashMap<String, Entry>,
    scopes: HashMap<Scope, Orderings>,
}

enum Step {
    Next,
    Stop,
}

impl HostIndex {
    /// Index every host of `view`.
    pub fn build<V: PlacementView + ?Sized>(view: &V) -> HostIndex {
        let mut index = HostIndex {
            config: view.config(),
            ..HostIndex::default()
        };
        for uuid in view.host_uuids() {
            index.refresh(view, &uuid);
        }
        index
    }

    /// Eligible hosts indexed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no host is eligible.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Re-read one host from `view` (after a reservation, release, state or usage change).
    pub fn refresh<V: PlacementView + ?Sized>(&mut self, view: &V, host_uuid: &str) {
        if let Some(old) = self.entries.remove(host_uuid) {
            for scope in scopes(&old) {
                if let Some(o) = self.scopes.get_mut(&scope) {
                    o.by_vm.remove(&(old.vm, old.rot, host_uuid.to_string()));
                    o.by_cpu.remove(&(old.cpu, old.rot, host_uuid.to_string()));
                    o.by_mem.remove(&(old.mem, old.rot, host_uuid.to_string()));
                    o.by_free
                        .remove(&(old.free_mem, old.free_cpu, host_uuid.to_string()));
                }
            }
        }
        let Some(host) = view.host(host_uuid) else {
            return;
        };
        if state::host_state(&host).is_err() || state::cluster_and_zone(view, &host).is_err() {
            return;
        }
        let free = Limits::of(host.capacity, &self.config).free(host.allocated);
        let usage = view.host_usage(host_uuid);
        let entry = Entry {
            rot: rotation(host_uuid),
            vm: u64::from(host.vm_count),
            cpu: usage.cpu_permille.map_or(NO_DATA_CLASS, u64::from),
            mem: usage.memory_permille.map_or(NO_DATA_CLASS, u64::from),
            free_mem: free.memory,
            free_cpu: free.cpu,
            zone: host.zone_uuid,
            cluster: host.cluster_uuid,
        };
        for scope in scopes(&entry) {
            let o = self.scopes.entry(scope).or_default();
            o.by_vm.insert((entry.vm, entry.rot, host_uuid.to_string()));
            o.by_cpu
                .insert((entry.cpu, entry.rot, host_uuid.to_string()));
            o.by_mem
                .insert((entry.mem, entry.rot, host_uuid.to_string()));
            o.by_free
                .insert((entry.free_mem, entry.free_cpu, host_uuid.to_string()));
        }
        self.entries.insert(host_uuid.to_string(), entry);
    }

    /// The best host for `ctx`'s request, or `None` (the caller explains with a full scan).
    pub(crate) fn find<V: PlacementView + ?Sized>(&self, ctx: &Ctx<'_, V>) -> Option<HostView> {
        let req = ctx.req;
        let scope = match (&req.cluster_uuid, &req.zone_uuid) {
            (Some(c), _) => Scope::Cluster(c.clone()),
            (None, Some(z)) => Scope::Zone(z.clone()),
            (None, None) => Scope::All,
        };
        let ord = self.scopes.get(&scope)?;
        let (need_mem, need_cpu) = (ctx.charge.memory, ctx.charge.cpu);
        // Nothing in scope has the memory: fail without walking.
        if ord.by_free.last().is_none_or(|k| k.0 < need_mem) {
            return None;
        }
        let consider = |uuid: &str| -> Option<(Rank, HostView)> {
            let host = ctx.view.host(uuid)?;
            ctx.check_all(&host).ok()?;
            Some((ctx.rank(&host), host))
        };
        let mut best: Option<(Rank, HostView)> = None;
        let offer = |c: Option<(Rank, HostView)>, best: &mut Option<(Rank, HostView)>| {
            if let Some(c) = c {
                if best.as_ref().is_none_or(|b| c.0 < b.0) {
                    *best = Some(c);
                }
            }
        };
        // The soft preferences are few hosts: rank them directly.
        let last = (req.strategy == AllocatorStrategy::LastHostPreferred)
            .then_some(req.last_host_uuid.as_deref())
            .flatten();
        if let Some(last) = last {
            offer(consider(last), &mut best);
        }
        if let Some(g) = &ctx.group {
            for h in g.member_hosts.keys().filter(|h| ctx.soft_member(h)) {
                offer(consider(h), &mut best);
            }
        }
        let set = match req.strategy.usage_metric() {
            None => &ord.by_vm,
            Some(Metric::Cpu) => &ord.by_cpu,
            Some(Metric::Memory) => &ord.by_mem,
        };
        let stop_class = match req.strategy {
            AllocatorStrategy::MaxInstancePerHost(max) => u64::from(max),
            _ if req.strategy.hard_usage().is_some() => NO_DATA_CLASS,
            _ => u64::MAX,
        };
        let mut visited = 0usize;
        let mut found = None;
        let mut overflow = false;
        walk(set, ctx.spin, |(class, _, uuid)| {
            if *class >= stop_class && stop_class != u64::MAX {
                return Step::Stop;
            }
            if Some(uuid.as_str()) == last || ctx.soft_member(uuid) {
                return Step::Next;
            }
            visited += 1;
            if visited > WALK_LIMIT {
                overflow = true;
                return Step::Stop;
            }
            if let Some(e) = self.entries.get(uuid) {
                if e.free_mem < need_mem || e.free_cpu < need_cpu {
                    return Step::Next;
                }
            }
            match consider(uuid) {
                Some(c) => {
                    found = Some(c);
                    Step::Stop
                }
                None => Step::Next,
            }
        });
        if overflow {
            // Many full or filtered hosts rank first: rank only those with the room instead.
            for (_, free_cpu, uuid) in ord.by_free.range((need_mem, 0, String::new())..) {
                if *free_cpu >= need_cpu {
                    offer(consider(uuid), &mut best);
                }
            }
            return best.map(|b| b.1);
        }
        offer(found, &mut best);
        best.map(|b| b.1)
    }
}

fn scopes(e: &Entry) -> [Scope; 3] {
    [
        Scope::All,
        Scope::Zone(e.zone.clone()),
        Scope::Cluster(e.cluster.clone()),
    ]
}

/// Visit `set` class by class, each class from the first rotation ≥ `spin`, wrapping: the order
/// of `Rank { class, spin: rotation − spin }`.
fn walk(set: &BTreeSet<Key>, spin: u64, mut visit: impl FnMut(&Key) -> Step) {
    let Some(first) = set.first() else { return };
    let mut class = first.0;
    loop {
        let mut next_class = None;
        for k in set.range((class, spin, String::new())..) {
            if k.0 != class {
                next_class = Some(k.0);
                break;
            }
            if let Step::Stop = visit(k) {
                return;
            }
        }
        for k in set.range((class, 0, String::new())..) {
            if k.0 != class || k.1 >= spin {
                break;
            }
            if let Step::Stop = visit(k) {
                return;
            }
        }
        match next_class {
            Some(c) => class = c,
            None => return,
        }
    }
}
