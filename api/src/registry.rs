//! The families, in one list. Each line names a [`Command`] variant and the family module
//! that declares and applies it; the command and response enums, their dispatch, the state
//! tables, the taggable resource types, the relations, the implemented calls and their REST
//! routes are all derived from this list. Adding a family = one module + one line here.
//!
//! Commands and responses are encoded by variant index in the Raft log (and in dedup records
//! and jobs): a new family goes at the END of the list; reordering is a format change
//! (`crate::MODEL_FORMAT`).

use serde::Deserialize;
use serde::Serialize;
use serde_json::Map;
use serde_json::Value;

use crate::family::CallDecl;
use crate::family::Family;
use crate::family::FamilyDecl;
use crate::family::KindDecl;
use crate::family::RestRoute;
use crate::resource::relations::Relation;
use crate::resource::relations::ANY;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateError;
use crate::StateTxn;

/// One family's op and who asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call<Op> {
    /// Who asked (the built-in admin for the node's own and the duties' commands).
    pub caller: Caller,
    /// What.
    pub op: Box<Op>,
}

/// Wrap a family's op into a [`Command`].
pub trait IntoCommand {
    /// The command carrying this op on behalf of `caller`.
    fn command(self, caller: Caller) -> Command;
}

macro_rules! registry {
    ($( $(#[doc = $doc:literal])* $variant:ident => $fam:ty ),* $(,)?) => {
        /// A state change that travels through the Raft log.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub enum Command {
            $( $(#[doc = $doc])* $variant(Call<<$fam as Family>::Op>), )*
        }

        /// What applying a [`Command`] answered.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub enum Response {
            /// The command was refused by a business rule; nothing changed.
            Refused(ApiError),
            $( $(#[doc = $doc])* $variant(<$fam as Family>::Out), )*
        }

        $(
            impl IntoCommand for <$fam as Family>::Op {
                fn command(self, caller: Caller) -> Command {
                    Command::$variant(Call { caller, op: Box::new(self) })
                }
            }
        )*

        impl Command {
            /// Who asked.
            pub fn caller(&self) -> &Caller {
                match self {
                    $( Command::$variant(c) => &c.caller, )*
                }
            }

            /// The command inside any wrappers (a create with its tags, ...).
            pub fn innermost(&self) -> &Command {
                let inner = match self {
                    $( Command::$variant(c) => <$fam as Family>::inner(&c.op), )*
                };
                match inner {
                    Some(c) => c.innermost(),
                    None => self,
                }
            }

            /// The family the command belongs to.
            pub fn family(&self) -> &'static str {
                match self {
                    $( Command::$variant(_) => <$fam as Family>::DECL.name, )*
                }
            }
        }

        impl Response {
            /// Whether the writes made while producing this response should be kept.
            pub fn keeps_writes(&self) -> bool {
                match self {
                    Response::Refused(_) => false,
                    $( Response::$variant(o) => <$fam as Family>::keeps_writes(o), )*
                }
            }

            /// The answer inside any wrappers (the create's answer of a tagged create).
            pub fn innermost(&self) -> &Response {
                let inner = match self {
                    Response::Refused(_) => None,
                    $( Response::$variant(o) => <$fam as Family>::inner_response(o), )*
                };
                match inner {
                    Some(r) => r.innermost(),
                    None => self,
                }
            }

            /// The reply/event fields of this answer (before `success` is appended); a
            /// refusal becomes its wire error.
            pub fn reply(&self) -> Result<Map<String, Value>, Refusal> {
                match self {
                    Response::Refused(e) => Err(crate::plan::refusal_of(e)),
                    $( Response::$variant(o) => crate::family::Reply::reply(o), )*
                }
            }

            /// [`Response::reply`] rendered with the state at hand (`Reply::reply_in`).
            pub fn reply_in(&self, txn: &dyn StateTxn) -> Result<Map<String, Value>, Refusal> {
                match self {
                    Response::Refused(e) => Err(crate::plan::refusal_of(e)),
                    $( Response::$variant(o) => crate::family::Reply::reply_in(o, txn), )*
                }
            }
        }

        fn dispatch(
            txn: &mut dyn StateTxn,
            ctx: &ApplyCtx,
            cmd: Command,
        ) -> Result<Response, ApiError> {
            match cmd {
                $(
                    Command::$variant(c) => (<$fam as Family>::APPLY)(txn, ctx, &c.caller, *c.op)
                        .map(Response::$variant),
                )*
            }
        }

        /// Every family, in registry order.
        pub const FAMILIES: &[&FamilyDecl] = &[ $( &<$fam as Family>::DECL, )* ];
    };
}

registry! {
    /// Generic key-value commands (tests, benchmarks, chaos history).
    Kv => crate::kv::Kv,
    /// Management-node registry changes, proposed by the leader's registry duty.
    ManagementNode => crate::families::management_node::ManagementNodes,
    /// Zone calls.
    Zone => crate::families::zone::Zones,
    /// Global configuration changes.
    GlobalConfig => crate::families::global_config::GlobalConfigs,
    /// Accounts, users and sessions.
    Identity => crate::families::identity::Identities,
    /// Durable async API jobs.
    Job => crate::job::Jobs,
    /// Cluster calls.
    Cluster => crate::families::cluster::Clusters,
    /// Primary-storage calls.
    PrimaryStorage => crate::families::primary_storage::PrimaryStorages,
    /// Backup-storage calls.
    BackupStorage => crate::families::backup_storage::BackupStorages,
    /// Instance- and disk-offering calls.
    Offering => crate::families::offering::Offerings,
    /// Image calls (and the download duty's internal ones).
    Image => crate::families::image::Images,
    /// L2 network and VNI-range calls.
    L2 => crate::families::l2::L2Networks,
    /// L3 network, IP-range, DNS and IPAM calls.
    L3 => crate::families::l3::L3Networks,
    /// System- and user-tag calls, and creates carrying tags.
    Tag => crate::families::tag::Tags,
    /// KVM host calls.
    Host => crate::families::host::Hosts,
    /// The API audit log (the serving nodes' batches, the leader's retention sweeper).
    Audit => crate::audit::Audits,
    /// A leader duty's command, valid only in its own term.
    Leader => crate::leader::Leaders,
    /// An API call's write: session check, command or job, audit record, in one entry.
    Call => crate::call::Calls,
    /// SSH key-pair calls.
    SshKeyPair => crate::families::ssh_key_pair::SshKeyPairs,
    /// VM instance and volume calls.
    Vm => crate::families::vm::Vms,
    /// Scheduled jobs, triggers and their execution history (and the timer duty's commands).
    SchedulerJob => crate::families::scheduler_job::SchedulerJobs,
}

/// Apply one command through its family. `Err` is a storage failure (the replica must stop);
/// a refusal by a business rule is `Ok(Response::Refused(..))` so that every replica records
/// the same answer.
pub fn apply(txn: &mut dyn StateTxn, ctx: &ApplyCtx, cmd: Command) -> Result<Response, StateError> {
    match dispatch(txn, ctx, cmd) {
        Ok(r) => Ok(r),
        Err(ApiError::State(e)) => Err(e),
        Err(refusal) => Ok(Response::Refused(refusal)),
    }
}

/// Tables of the resource layer itself (not of any family).
const CORE_TABLES: &[&str] = &[crate::resource::INDEX_TABLE];

/// Every state table the model uses; the storage layer creates one column family per table.
pub fn tables() -> Vec<&'static str> {
    let mut t: Vec<&'static str> = CORE_TABLES.to_vec();
    for f in FAMILIES {
        for table in f.tables {
            if !t.contains(table) {
                t.push(table);
            }
        }
    }
    t
}

/// Every declared resource kind with its family.
pub fn kinds() -> impl Iterator<Item = &'static KindDecl> {
    FAMILIES.iter().flat_map(|f| f.kinds.iter())
}

/// The declaration of `kind`.
pub fn find_kind(kind: &str) -> Option<&'static KindDecl> {
    kinds().find(|k| k.kind == kind)
}

/// The declaration of `kind`, which must be declared (a family naming an unknown kind is a
/// programming error that `every_named_kind_is_declared` catches).
pub fn kind(kind: &str) -> &'static KindDecl {
    match find_kind(kind) {
        Some(k) => k,
        None => panic!("resource kind {kind} is not declared by any family"),
    }
}

/// The table of `kind`.
pub fn table_of(kind: &str) -> &'static str {
    self::kind(kind).table
}

/// The kind a tag's `resourceType` (`ZoneVO`, `KVMHostVO`, ...) names.
pub fn kind_of_vo(vo: &str) -> Option<&'static KindDecl> {
    kinds().find(|k| k.vo_types.contains(&vo))
}

/// Every resource type tags may name, in registry order.
pub fn vo_types() -> impl Iterator<Item = &'static str> {
    kinds().flat_map(|k| k.vo_types.iter().copied())
}

/// Every relation whose parent is `kind` (or any kind), with the child kind declaring it.
pub fn relations_to(
    kind: &str,
) -> impl Iterator<Item = (&'static KindDecl, &'static Relation)> + '_ {
    kinds().flat_map(move |k| {
        k.relations
            .iter()
            .filter(move |r| r.parent == kind || r.parent == ANY)
            .map(move |r| (k, r))
    })
}

/// Every implemented call, in registry order.
pub fn calls() -> impl Iterator<Item = &'static CallDecl> {
    FAMILIES.iter().flat_map(|f| f.calls.iter())
}

/// The implemented call named `name`.
pub fn call(name: &str) -> Option<&'static CallDecl> {
    calls().find(|c| c.name == name)
}

/// The classes of the reply fields of call `name` (its own declaration, else its family's);
/// empty for an unknown call.
pub fn replies(name: &str) -> crate::family::Replies {
    FAMILIES
        .iter()
        .find_map(|f| {
            f.calls
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.replies.unwrap_or(f.replies))
        })
        .unwrap_or(&[])
}

/// Every REST route with its call.
pub fn routes() -> impl Iterator<Item = (&'static CallDecl, &'static RestRoute)> {
    calls().flat_map(|c| c.routes.iter().map(move |r| (c, r)))
}

/// The flow named `name`.
pub fn flow(name: &str) -> Option<&'static crate::flow::FlowDef> {
    FAMILIES
        .iter()
        .flat_map(|f| f.flows.iter())
        .find(|fl| fl.name == name)
}

/// Run service `name` of whichever family offers it (a flow step reaching into another
/// family's state, [`crate::family::ServiceDecl`]).
pub fn serve(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    name: &str,
    input: &Value,
) -> Result<Value, ApiError> {
    let service = FAMILIES
        .iter()
        .flat_map(|f| f.services.iter())
        .find(|s| s.name == name)
        .ok_or_else(|| crate::validate::invalid_arg(format!("no family offers service {name}")))?;
    (service.run)(txn, ctx, caller, input)
}

/// [`serve`] for a read (a sync call's `Plan::Read`): the service sees the state through a
/// view that refuses every write, so only services that read (`host.candidates`) answer.
pub fn serve_read(
    txn: &dyn StateTxn,
    caller: &Caller,
    name: &str,
    input: &Value,
) -> Result<Value, ApiError> {
    struct ReadOnly<'a>(&'a dyn StateTxn);
    impl StateTxn for ReadOnly<'_> {
        fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, crate::StateError> {
            self.0.get(table, key)
        }
        fn put(&mut self, table: &str, _: &[u8], _: Vec<u8>) -> Result<(), crate::StateError> {
            Err(crate::StateError(format!(
                "a read cannot write table {table}"
            )))
        }
        fn delete(&mut self, table: &str, _: &[u8]) -> Result<(), crate::StateError> {
            Err(crate::StateError(format!(
                "a read cannot write table {table}"
            )))
        }
        fn scan_prefix(
            &self,
            table: &str,
            prefix: &[u8],
            limit: usize,
        ) -> Result<Vec<crate::Pair>, crate::StateError> {
            self.0.scan_prefix(table, prefix, limit)
        }
    }
    let ctx = ApplyCtx {
        index: 0,
        term: 0,
        proposed_at_ms: 0,
    };
    serve(&mut ReadOnly(txn), &ctx, caller, name, input)
}

/// A service's input decoded into the offering family's type (a bad input is the calling
/// family's bug, answered as an invalid argument naming the service).
pub fn service_input<T: serde::de::DeserializeOwned>(
    service: &str,
    input: &Value,
) -> Result<T, ApiError> {
    T::deserialize(input)
        .map_err(|e| crate::validate::invalid_arg(format!("service {service}: bad input: {e}")))
}

/// A service's output as JSON.
pub fn service_output<T: Serialize>(service: &str, out: &T) -> Result<Value, ApiError> {
    serde_json::to_value(out)
        .map_err(|e| crate::validate::invalid_arg(format!("service {service}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_unique_and_name_their_family() {
        let mut seen = std::collections::BTreeSet::new();
        for f in FAMILIES {
            for s in f.services {
                assert!(seen.insert(s.name), "service {} offered twice", s.name);
                assert!(
                    s.name.starts_with(&format!("{}.", f.name)),
                    "service {} of family {} must be named {}.<verb>",
                    s.name,
                    f.name,
                    f.name
                );
            }
        }
    }

    #[test]
    fn every_related_kind_is_declared_and_names_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for k in kinds() {
            assert!(seen.insert(k.kind), "kind {} declared twice", k.kind);
            for r in k.relations {
                assert!(
                    r.parent == ANY || find_kind(r.parent).is_some(),
                    "{} names undeclared parent {}",
                    k.kind,
                    r.parent
                );
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for c in calls() {
            assert!(names.insert(c.name), "call {} declared twice", c.name);
            assert!(
                crate::catalogue::catalogue().by_name(c.name).is_some(),
                "{} is not in the catalogue",
                c.name
            );
        }
        let mut vos = std::collections::BTreeSet::new();
        for vo in vo_types() {
            assert!(vos.insert(vo), "resource type {vo} named by two kinds");
        }
    }
}
