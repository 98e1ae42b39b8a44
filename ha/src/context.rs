//! The leader context: everything a duty may use, bound to ONE leadership term. A duty reads
//! local state, proposes through [`LeaderContext::propose_as_leader`] (never forwarded, and
//! fenced by its term: see `api::leader`), performs side effects through the
//! [`EffectRunner`] seam (agents, downloads; a test receiver), and reads a monotonic clock.
//! When leadership ends the context's token is cancelled and every proposal it makes fails,
//! so a deposed leader's duty can neither commit nor drive anything.

use std::sync::Arc;
use std::time::Instant;

use api::flow::EffectRequest;
use api::flow::Vars;
use api::wire::errors::Refusal;
use api::Command;
use api::Response;
use api::StateTxn;
use tokio_util::sync::CancellationToken;

use crate::BoxFuture;
use crate::DutyError;

/// What the node gives the duties of a term.
pub trait LeaderNode: Send + Sync + 'static {
    /// Call `f` with the local state (applied up to at least the barrier run at establish).
    fn read(&self, f: &mut dyn FnMut(&dyn StateTxn));
    /// Propose on this node only: fails when it is not the leader (no forwarding). The command
    /// is already fenced with its term.
    fn propose_local(
        &self,
        cmd: Command,
        request_id: Option<String>,
    ) -> BoxFuture<'static, Result<Response, DutyError>>;
    /// Wall clock, ms since the Unix epoch (stamped into commands, never read in `apply`).
    fn now_ms(&self) -> u64;
    /// Where side effects go.
    fn effects(&self) -> Arc<dyn EffectRunner>;
}

/// Reports progress within a long side effect (percent).
pub type ProgressFn = Arc<dyn Fn(u8) + Send + Sync>;

/// Why a side effect has no outcome to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EffectError {
    /// The receiver answered that it failed: the step fails (and the flow rolls back).
    Failed(Refusal),
    /// No definite answer (unreachable, timed out, a 5xx): it may or may not have happened, so
    /// it is asked again with the same key rather than assumed either way.
    Indeterminate(String),
}

/// One side effect to perform.
#[derive(Debug, Clone)]
pub struct EffectCall {
    /// The step's idempotency key: a receiver that already performed it answers the same
    /// outcome again instead of doing it twice.
    pub key: String,
    /// The leadership term of the duty asking: a receiver that has seen a higher term refuses
    /// it (the fencing token that keeps a deposed leader from driving anything).
    pub term: u64,
    /// What to do.
    pub request: EffectRequest,
}

/// Performs the side effects of flow steps.
pub trait EffectRunner: Send + Sync + 'static {
    /// Perform `call`; a definite outcome is committed as the step.
    fn perform(&self, call: EffectCall, progress: ProgressFn) -> EffectFuture;
}

/// What performing a side effect answers.
pub type EffectFuture = BoxFuture<'static, Result<Vars, EffectError>>;

/// An [`EffectRunner`] that has no receivers: every effect fails with a clear error.
pub struct NoReceivers;

impl EffectRunner for NoReceivers {
    fn perform(&self, call: EffectCall, _progress: ProgressFn) -> EffectFuture {
        let request = call.request;
        Box::pin(async move {
            Err(EffectError::Failed(Refusal::new(
                api::wire::errors::Code::NotSupported,
                format!(
                    "no receiver '{}' is configured on this management node",
                    request.receiver
                ),
            )))
        })
    }
}

/// One leadership term's context.
pub struct LeaderContext {
    term: u64,
    cancel: CancellationToken,
    node: Arc<dyn LeaderNode>,
    started: Instant,
}

impl LeaderContext {
    /// The context of `term`, cancelled through `cancel` when leadership ends.
    pub fn new(term: u64, cancel: CancellationToken, node: Arc<dyn LeaderNode>) -> Self {
        Self {
            term,
            cancel,
            node,
            started: Instant::now(),
        }
    }

    /// The term the duties run under.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// Fires when leadership of this term ends.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Read local state.
    pub fn read<T>(&self, f: impl FnOnce(&dyn StateTxn) -> T) -> T {
        let mut f = Some(f);
        let mut out = None;
        self.node.read(&mut |view| {
            if let Some(f) = f.take() {
                out = Some(f(view));
            }
        });
        match out {
            Some(v) => v,
            None => panic!("LeaderNode::read did not call back"),
        }
    }

    /// Propose `cmd` as this term's leader: wrapped in the term fence, proposed locally only.
    /// Refused if leadership of this term ended, here or (for a proposal that reaches the log
    /// late) by apply itself.
    pub async fn propose_as_leader(
        &self,
        cmd: Command,
        request_id: Option<String>,
    ) -> Result<Response, DutyError> {
        if self.cancel.is_cancelled() {
            return Err(DutyError(format!(
                "leadership of term {} ended; not proposing",
                self.term
            )));
        }
        let fenced = api::IntoCommand::command(
            api::leader::LeaderOp::Fenced {
                term: self.term,
                command: Box::new(cmd),
            },
            api::Caller::admin(),
        );
        // SEEDED BUG (test builds only): the deposed leader's proposal outlives its term and
        // goes wherever the node's writes go.
        #[cfg(feature = "seeded-bugs")]
        if api::leader::seeded::UNFENCED.load(std::sync::atomic::Ordering::Relaxed) {
            let r = tokio::spawn(self.node.propose_local(fenced, request_id))
                .await
                .map_err(|e| DutyError(e.to_string()))?;
            return r.and_then(unwrap_duty_response);
        }
        // Named in the log line of a failure, so an operator (or a test) can tell which
        // decision of which term did not commit.
        let rid = request_id.clone().unwrap_or_default();
        let resp = tokio::select! {
            r = self.node.propose_local(fenced, request_id) => r,
            _ = self.cancel.cancelled() => {
                Err(DutyError(format!("leadership of term {} ended while proposing", self.term)))
            }
        };
        resp.and_then(unwrap_duty_response).inspect_err(|e| {
            tracing::info!(term = self.term, request_id = %rid, error = %e.0, "duty proposal not committed");
        })
    }

    /// Wall clock, ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.node.now_ms()
    }

    /// Time since the term's duties started (monotonic).
    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Where side effects go.
    pub fn effects(&self) -> Arc<dyn EffectRunner> {
        self.node.effects()
    }
}

/// A duty's answer: the command's own response, a refusal (of the term fence or the family)
/// being the proposal's failure.
fn unwrap_duty_response(resp: Response) -> Result<Response, DutyError> {
    match resp {
        Response::Refused(e) => Err(DutyError(format!("refused: {e}"))),
        Response::Leader(inner) => match *inner {
            Response::Refused(e) => Err(DutyError(format!("refused: {e}"))),
            other => Ok(other),
        },
        other => Ok(other),
    }
}
