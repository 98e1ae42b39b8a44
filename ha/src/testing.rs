//! An in-memory [`LeaderNode`] for the duties' tests: real `api::apply` over an in-memory
//! state, a simulated clock, proposals counted, leadership switchable.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;

use api::mem::MemTxn;
use api::ApplyCtx;
use api::Command;
use api::Response;
use api::StateTxn;

use crate::context::EffectRunner;
use crate::context::LeaderNode;
use crate::context::NoReceivers;
use crate::BoxFuture;
use crate::DutyError;

/// The in-memory node.
pub struct MemNode {
    /// The replicated state.
    pub state: Mutex<MemTxn>,
    /// Term of the entries proposals land in.
    pub term: AtomicU64,
    /// Last log index.
    pub index: AtomicU64,
    /// Simulated wall clock, ms; advanced by `clock_step` on every read.
    pub clock: AtomicU64,
    /// How much every clock read advances it.
    pub clock_step: u64,
    /// Proposals applied.
    pub proposals: AtomicU64,
    /// Whether this node is leader (proposals fail otherwise).
    pub leader: AtomicBool,
    /// Where side effects go.
    pub effects: Arc<dyn EffectRunner>,
}

impl MemNode {
    /// A leader at term 1 with an empty state.
    pub fn new(effects: Arc<dyn EffectRunner>) -> Self {
        Self {
            state: Mutex::new(MemTxn::default()),
            term: AtomicU64::new(1),
            index: AtomicU64::new(0),
            clock: AtomicU64::new(1_000_000),
            clock_step: 10,
            proposals: AtomicU64::new(0),
            leader: AtomicBool::new(true),
            effects,
        }
    }

    /// Apply `cmd` at the next index of the current term.
    pub fn apply(&self, cmd: Command) -> Response {
        let ctx = ApplyCtx {
            index: self.index.fetch_add(1, Ordering::SeqCst) + 1,
            term: self.term.load(Ordering::SeqCst),
            proposed_at_ms: self.clock.load(Ordering::SeqCst),
        };
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let before = st.clone();
        let resp = api::apply(&mut *st, &ctx, cmd).expect("in-memory state cannot fail");
        if !resp.keeps_writes() {
            *st = before;
        }
        resp
    }
}

impl LeaderNode for MemNode {
    fn read(&self, f: &mut dyn FnMut(&dyn StateTxn)) {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&*st)
    }

    fn propose_local(
        &self,
        cmd: Command,
        _request_id: Option<String>,
    ) -> BoxFuture<'static, Result<Response, DutyError>> {
        let r = if self.leader.load(Ordering::SeqCst) {
            self.proposals.fetch_add(1, Ordering::SeqCst);
            Ok(self.apply(cmd))
        } else {
            Err(DutyError("not the leader".into()))
        };
        Box::pin(async move { r })
    }

    fn now_ms(&self) -> u64 {
        self.clock.fetch_add(self.clock_step, Ordering::SeqCst)
    }

    fn effects(&self) -> Arc<dyn EffectRunner> {
        self.effects.clone()
    }
}

/// A node with nothing in it (supervisor tests).
pub fn node() -> Arc<dyn LeaderNode> {
    Arc::new(MemNode::new(Arc::new(NoReceivers)))
}
