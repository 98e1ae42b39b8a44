//! Reconciliation of a host's domains with the VM records (spec 02 §3.1, issue 20): the
//! leader reads the domain list of each connected host and compares it with what the state
//! says that host runs. The rules, applied only to VMs in a stable state and with no job in
//! flight (a VM's own operation decides while it runs):
//!
//! 1. A VM recorded Running or Paused on the host, with no running or paused domain there, is
//!    marked Stopped and its host capacity released (the host lost it: crash, reboot, an
//!    operator's `virsh destroy`). HA (issue 13) restarts NeverStop VMs from there.
//! 2. A VM recorded Running whose domain is Paused (or the reverse), or a VM recorded Unknown
//!    whose domain runs on its host again, takes the domain's state.
//! 3. A domain named by a VM uuid that runs on the host while the state says the VM must not
//!    run there (Stopped, Destroyed, on another host, or no record at all) is destroyed:
//!    one VM never runs on two hosts, and no domain runs without a VM record.
//! 4. Domains whose name is not a VM uuid belong to somebody else and are left alone.
//!
//! A Migrating VM is not in a stable state: its domain on the source and the incoming one on
//! the destination are the migration's, never "a domain running where it must not".
//!
//! Every action is a job on the VM's chain (flow `vm.reconcile`) that first checks the VM is
//! still as observed, so it never races the VM's own operations, and that reads the domain
//! again on the host before changing the record.

use serde::Deserialize;
use serde::Serialize;

use super::model::VmInstance;
use super::model::VmState;
use crate::resource;
use crate::ApiError;
use crate::StateTxn;

/// A domain as the host's agent lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// libvirt name (a VM's uuid for domains the cloud made).
    pub name: String,
    /// "Running", "Paused", "Stopped", ...
    pub state: String,
}

/// What reconciliation does about one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Rule 1: the VM is not on its host any more.
    MarkStopped {
        /// VM.
        vm_uuid: String,
    },
    /// Rule 2: the record takes the domain's state.
    SyncState {
        /// VM.
        vm_uuid: String,
        /// The domain's state.
        to: VmState,
    },
    /// Rule 3: a domain that must not run on this host.
    DestroyDomain {
        /// VM uuid (the domain's name).
        vm_uuid: String,
    },
}

impl Action {
    /// The VM acted on.
    pub fn vm_uuid(&self) -> &str {
        match self {
            Action::MarkStopped { vm_uuid }
            | Action::SyncState { vm_uuid, .. }
            | Action::DestroyDomain { vm_uuid } => vm_uuid,
        }
    }
}

fn is_vm_uuid(name: &str) -> bool {
    name.len() == 32
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn live(state: &str) -> Option<VmState> {
    match state {
        "Running" => Some(VmState::Running),
        "Paused" => Some(VmState::Paused),
        _ => None,
    }
}

/// The rules above, as a pure function: `records` holds every VM recorded on `host_uuid` and
/// every VM a domain of the host is named after (absent: no record); `busy` says whether a
/// VM has a job in flight.
pub fn plan(
    host_uuid: &str,
    records: &[VmInstance],
    domains: &[Domain],
    busy: &dyn Fn(&str) -> bool,
) -> Vec<Action> {
    let mut out = Vec::new();
    let stable = |v: &VmInstance| {
        matches!(
            v.state,
            VmState::Running
                | VmState::Paused
                | VmState::Unknown
                | VmState::Stopped
                | VmState::Destroyed
                | VmState::Created
                | VmState::Error
        )
    };
    for v in records {
        if busy(&v.uuid) || !stable(v) {
            continue;
        }
        let here = v.host_uuid.as_deref() == Some(host_uuid);
        let dom = domains
            .iter()
            .find(|d| d.name == v.uuid)
            .and_then(|d| live(&d.state));
        match (here, v.state, dom) {
            (true, VmState::Running | VmState::Paused, None) => out.push(Action::MarkStopped {
                vm_uuid: v.uuid.clone(),
            }),
            (true, VmState::Running | VmState::Paused | VmState::Unknown, Some(d))
                if d != v.state =>
            {
                out.push(Action::SyncState {
                    vm_uuid: v.uuid.clone(),
                    to: d,
                })
            }
            (false, _, Some(_)) => out.push(Action::DestroyDomain {
                vm_uuid: v.uuid.clone(),
            }),
            (
                true,
                VmState::Stopped | VmState::Destroyed | VmState::Created | VmState::Error,
                Some(_),
            ) => out.push(Action::DestroyDomain {
                vm_uuid: v.uuid.clone(),
            }),
            _ => {}
        }
    }
    for d in domains {
        if is_vm_uuid(&d.name)
            && live(&d.state).is_some()
            && !records.iter().any(|v| v.uuid == d.name)
            && !busy(&d.name)
        {
            out.push(Action::DestroyDomain {
                vm_uuid: d.name.clone(),
            });
        }
    }
    out
}

/// [`plan`] on the state: the records of `host_uuid` and of its domains, jobs read from the
/// job table.
pub fn plan_for_host(
    txn: &dyn StateTxn,
    host_uuid: &str,
    domains: &[Domain],
) -> Result<Vec<Action>, ApiError> {
    let mut records: Vec<VmInstance> = resource::find::<VmInstance>(txn, "hostUuid", host_uuid)?
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    for d in domains {
        if is_vm_uuid(&d.name) && !records.iter().any(|v| v.uuid == d.name) {
            if let Some((_, v)) = resource::load::<VmInstance>(txn, &d.name)? {
                records.push(v);
            }
        }
    }
    let mut busy = std::collections::BTreeSet::new();
    let names = records
        .iter()
        .map(|v| v.uuid.as_str())
        .chain(domains.iter().map(|d| d.name.as_str()));
    for u in names {
        if crate::job::chain_busy(txn, u)? {
            busy.insert(u.to_string());
        }
    }
    Ok(plan(host_uuid, &records, domains, &|u| busy.contains(u)))
}

/// What a reconcile job checks is unchanged before it acts: the VM's state and host
/// (`absent`: no record). A VM that went anywhere meanwhile, even back to the same state on
/// another host, is left alone.
pub fn observed(vm: Option<&VmInstance>) -> String {
    match vm {
        None => "absent".into(),
        Some(v) => format!(
            "{}@{}",
            v.state.name(),
            v.host_uuid.as_deref().unwrap_or("-")
        ),
    }
}

/// The job that carries out `action` on `host` (`vm.reconcile`), as the leader submits it at
/// `now_ms`; `observed` is [`observed`] of the VM when planned.
pub fn submission(
    action: &Action,
    target: &super::flows::Target,
    observed: String,
    now_ms: u64,
) -> Result<crate::job::Submission, ApiError> {
    let mut vars = crate::flow::Vars::new();
    vars.insert(super::flows::vars::VM.into(), action.vm_uuid().to_string());
    vars.insert(super::flows::vars::ACTION.into(), json(action)?);
    vars.insert(super::flows::vars::TARGET.into(), json(target)?);
    vars.insert(super::flows::vars::OBSERVED.into(), observed);
    Ok(crate::job::Submission {
        uuid: crate::params::derive_uuid(
            &format!(
                "{}-reconcile-{}-{now_ms}",
                action.vm_uuid(),
                target.host_uuid
            ),
            0,
        ),
        api_name: "ReconcileVmInstance".into(),
        reply_class: "org.zstack.header.vm.APIUpdateVmInstanceEvent".into(),
        chain: action.vm_uuid().to_string(),
        flow: crate::job::FlowSpec::Named {
            flow: super::flows::RECONCILE.to_string(),
            vars,
        },
    })
}

fn json<T: Serialize>(v: &T) -> Result<String, ApiError> {
    serde_json::to_string(v)
        .map_err(|e| crate::validate::invalid_arg(format!("reconcile var: {e}")))
}

/// Everything the leader submits for one host's domain list at `now_ms`.
pub fn jobs_for_host(
    txn: &dyn StateTxn,
    target: &super::flows::Target,
    domains: &[Domain],
    now_ms: u64,
) -> Result<Vec<crate::job::Submission>, ApiError> {
    let mut out = Vec::new();
    for a in plan_for_host(txn, &target.host_uuid, domains)? {
        let vm = resource::load::<VmInstance>(txn, a.vm_uuid())?.map(|(_, v)| v);
        out.push(submission(&a, target, observed(vm.as_ref()), now_ms)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::families::vm::model::VmInstance;

    fn vm(n: u8, state: VmState, host: Option<&str>) -> VmInstance {
        VmInstance {
            uuid: format!("{n:032x}"),
            name: format!("vm{n}"),
            description: None,
            zone_uuid: None,
            cluster_uuid: None,
            host_uuid: host.map(str::to_string),
            last_host_uuid: None,
            instance_offering_uuid: None,
            image_uuid: None,
            root_volume_uuid: format!("{:032x}", 200 + u32::from(n)),
            default_l3_network_uuid: None,
            platform: "Linux".into(),
            cpu_num: 1,
            memory_size: 1 << 30,
            allocator_strategy: None,
            state,
            vm_nics: Vec::new(),
            deleted_at: None,
            create_date: 0,
            last_op_date: 0,
        }
    }

    fn dom(n: u8, state: &str) -> Domain {
        Domain {
            name: format!("{n:032x}"),
            state: state.into(),
        }
    }

    fn idle(_: &str) -> bool {
        false
    }

    const H: &str = "h1";

    #[test]
    fn a_running_vm_without_its_domain_is_stopped() {
        let a = plan(H, &[vm(1, VmState::Running, Some(H))], &[], &idle);
        assert_eq!(
            a,
            vec![Action::MarkStopped {
                vm_uuid: vm(1, VmState::Running, None).uuid
            }]
        );
        // A domain that exists but is shut off does not count as running.
        let a = plan(
            H,
            &[vm(1, VmState::Paused, Some(H))],
            &[dom(1, "Stopped")],
            &idle,
        );
        assert!(matches!(a[0], Action::MarkStopped { .. }), "{a:?}");
    }

    #[test]
    fn states_follow_the_domain() {
        let a = plan(
            H,
            &[vm(1, VmState::Running, Some(H))],
            &[dom(1, "Paused")],
            &idle,
        );
        assert_eq!(a.len(), 1);
        assert!(matches!(
            a[0],
            Action::SyncState {
                to: VmState::Paused,
                ..
            }
        ));
        let a = plan(
            H,
            &[vm(1, VmState::Unknown, Some(H))],
            &[dom(1, "Running")],
            &idle,
        );
        assert!(matches!(
            a[0],
            Action::SyncState {
                to: VmState::Running,
                ..
            }
        ));
        // In agreement: nothing.
        assert!(plan(
            H,
            &[vm(1, VmState::Running, Some(H))],
            &[dom(1, "Running")],
            &idle
        )
        .is_empty());
        // Unknown without a domain: left to the host tracker / HA, not guessed here.
        assert!(plan(H, &[vm(1, VmState::Unknown, Some(H))], &[], &idle).is_empty());
    }

    #[test]
    fn a_migrating_vm_is_left_to_its_migration_on_both_hosts() {
        // The source (its recorded host) and the destination (another host, where the
        // incoming domain is defined or already running) both see it mid-way.
        for (host, doms) in [
            (H, vec![dom(1, "Running")]),
            (H, vec![]),
            ("h2", vec![dom(1, "Stopped")]),
            ("h2", vec![dom(1, "Running")]),
        ] {
            let a = plan(host, &[vm(1, VmState::Migrating, Some(H))], &doms, &idle);
            assert!(a.is_empty(), "{host} {doms:?}: {a:?}");
        }
    }

    #[test]
    fn domains_that_must_not_run_here_are_destroyed() {
        for v in [
            vm(1, VmState::Stopped, None),
            vm(1, VmState::Destroyed, None),
            vm(1, VmState::Running, Some("h2")),
            vm(1, VmState::Stopped, Some(H)),
        ] {
            let a = plan(H, std::slice::from_ref(&v), &[dom(1, "Running")], &idle);
            assert_eq!(
                a,
                vec![Action::DestroyDomain {
                    vm_uuid: v.uuid.clone()
                }],
                "{v:?}"
            );
        }
        // No record at all, named like a VM: destroyed; named otherwise: not ours.
        let a = plan(H, &[], &[dom(9, "Running")], &idle);
        assert!(matches!(a[0], Action::DestroyDomain { .. }));
        let foreign = Domain {
            name: "test".into(),
            state: "Running".into(),
        };
        assert!(plan(H, &[], &[foreign], &idle).is_empty());
    }

    #[test]
    fn vms_in_flight_or_in_transition_are_left_to_their_operation() {
        let busy = |_: &str| true;
        assert!(plan(H, &[vm(1, VmState::Running, Some(H))], &[], &busy).is_empty());
        assert!(plan(H, &[], &[dom(9, "Running")], &busy).is_empty());
        for s in [
            VmState::Starting,
            VmState::Stopping,
            VmState::Rebooting,
            VmState::Migrating,
            VmState::Destroying,
        ] {
            assert!(
                plan(H, &[vm(1, s, Some(H))], &[], &idle).is_empty(),
                "{s:?}"
            );
            assert!(
                plan(H, &[vm(1, s, Some("h2"))], &[dom(1, "Running")], &idle).is_empty(),
                "{s:?}"
            );
        }
    }
}
