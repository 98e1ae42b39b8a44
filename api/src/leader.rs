//! Term fencing of the leader's duties. A duty proposes its commands wrapped in
//! [`LeaderOp::Fenced`] with the term it was started in; apply refuses one whose term is not
//! the term of the log entry carrying it. A leader deposed while a duty's proposal was in
//! flight (partitioned away, then forwarded or re-proposed under a new leader) can therefore
//! never commit a duty's decision: only the leader of the entry's own term made it.

use serde::Deserialize;
use serde::Serialize;

use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Command;
use crate::Response;
use crate::StateTxn;

/// A duty's command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaderOp {
    /// `command`, valid only in an entry of term `term`.
    Fenced {
        /// The term of the leadership the duty runs under.
        term: u64,
        /// What the duty decided.
        command: Box<Command>,
    },
}

/// The refusal of a deposed leader's duty command.
pub fn deposed(term: u64, entry_term: u64) -> ApiError {
    ApiError::Refused(Refusal::new(
        Code::ManagementNodeUnavailable,
        format!(
            "a leader duty of term {term} proposed this, but it reached the log in term \
             {entry_term}: that leader was deposed, so its decision is refused"
        ),
    ))
}

pub(crate) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: LeaderOp,
) -> Result<Box<Response>, ApiError> {
    caller.require_admin("leader duties")?;
    let LeaderOp::Fenced { term, command } = op;
    // SEEDED BUG (test builds only): a deposed leader's duty commits.
    #[cfg(feature = "seeded-bugs")]
    let fenced = term != ctx.term && !seeded::UNFENCED.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(feature = "seeded-bugs"))]
    let fenced = term != ctx.term;
    if fenced {
        return Err(deposed(term, ctx.term));
    }
    Ok(Box::new(crate::registry::apply(txn, ctx, *command)?))
}

/// DELIBERATE BUG switch for the checkers' self-tests (`zsnode-seeded` only).
#[cfg(feature = "seeded-bugs")]
pub mod seeded {
    /// When set, duty commands of another term are applied instead of refused.
    pub static UNFENCED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
}

/// The leader family: fenced duty commands.
pub struct Leaders;

impl crate::family::Reply for Box<Response> {
    fn reply(&self) -> crate::family::ReplyFields {
        Response::reply(self)
    }
}

impl crate::family::Family for Leaders {
    type Op = LeaderOp;
    type Out = Box<Response>;
    const DECL: crate::family::FamilyDecl = crate::family::FamilyDecl::internal("leader", &[]);
    const APPLY: crate::family::ApplyFn<Self> = apply;

    fn keeps_writes(out: &Box<Response>) -> bool {
        out.keeps_writes()
    }

    fn inner(op: &LeaderOp) -> Option<&Command> {
        let LeaderOp::Fenced { command, .. } = op;
        Some(command)
    }

    fn inner_response(out: &Box<Response>) -> Option<&Response> {
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::families::zone::ZoneOp;
    use crate::testing::MemTxn;
    use crate::IntoCommand;

    fn fenced(term: u64) -> Command {
        LeaderOp::Fenced {
            term,
            command: Box::new(
                ZoneOp::Create {
                    uuid: "a".repeat(32),
                    name: "z".into(),
                    description: None,
                    is_default: false,
                }
                .command(Caller::admin()),
            ),
        }
        .command(Caller::admin())
    }

    fn at_term(term: u64) -> ApplyCtx {
        ApplyCtx {
            index: 5,
            term,
            proposed_at_ms: 5_000,
        }
    }

    #[test]
    fn a_duty_command_commits_only_in_its_own_term() {
        let mut t = MemTxn::default();
        let r = crate::apply(&mut t, &at_term(7), fenced(6)).unwrap();
        let Response::Refused(e) = &r else {
            panic!("{r:?}")
        };
        assert_eq!(e.code(), "SYS.1012");
        assert!(e.to_string().contains("term 6") && e.to_string().contains("term 7"));
        assert!(!r.keeps_writes(), "a refused duty command writes nothing");
        let r = crate::apply(&mut t, &at_term(6), fenced(6)).unwrap();
        assert!(r.keeps_writes() && r.reply().unwrap().contains_key("inventory"));
        assert!(matches!(r.innermost(), Response::Zone(_)));
    }
}
