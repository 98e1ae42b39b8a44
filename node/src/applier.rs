//! The raft-store [`Applier`] that runs the `api` crate's deterministic `apply`.

use std::sync::Arc;

use raft_store::Applier;
use raft_store::ApplyContext;
use raft_store::StoreError;
use raft_store::Txn;
use tokio::sync::Notify;

/// Applies `api::Command`s to the state tables.
#[derive(Debug, Clone, Default)]
pub struct ModelApplier {
    /// Signalled whenever an async job is accepted, on every replica: the leader's job
    /// executor then runs a job submitted through a follower at once instead of at its next
    /// poll.
    jobs_submitted: Arc<Notify>,
}

impl ModelApplier {
    /// The signal raised when an applied entry accepts an async job.
    pub fn jobs_submitted(&self) -> Arc<Notify> {
        self.jobs_submitted.clone()
    }
}

/// Adapts raft-store's transaction to `api::StateTxn`, keeping the first storage error so it can
/// be returned with its full context instead of a flattened string.
struct TxnAdapter<'t, 'db> {
    txn: &'t mut Txn<'db>,
    failure: Option<StoreError>,
}

impl TxnAdapter<'_, '_> {
    fn keep<T>(&mut self, r: Result<T, StoreError>) -> Result<T, api::StateError> {
        r.map_err(|e| {
            let msg = e.to_string();
            self.failure.get_or_insert(e);
            api::StateError(msg)
        })
    }
}

impl api::StateTxn for TxnAdapter<'_, '_> {
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, api::StateError> {
        // `get` takes &self, so it cannot record the error; `apply` maps it back below.
        self.txn
            .get(table, key)
            .map_err(|e| api::StateError(e.to_string()))
    }

    fn put(&mut self, table: &str, key: &[u8], value: Vec<u8>) -> Result<(), api::StateError> {
        let r = self.txn.put(table, key, value);
        self.keep(r)
    }

    fn delete(&mut self, table: &str, key: &[u8]) -> Result<(), api::StateError> {
        let r = self.txn.delete(table, key);
        self.keep(r)
    }

    fn scan_prefix(
        &self,
        table: &str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, api::StateError> {
        self.txn
            .scan_prefix(table, prefix, limit)
            .map_err(|e| api::StateError(e.to_string()))
    }
}

impl Applier for ModelApplier {
    type Command = api::Command;
    type Response = api::Response;

    fn tables(&self) -> Vec<&'static str> {
        api::tables()
    }

    fn format(&self) -> &'static str {
        api::MODEL_FORMAT
    }

    fn apply(
        &self,
        txn: &mut Txn<'_>,
        ctx: &ApplyContext,
        cmd: api::Command,
    ) -> Result<api::Response, StoreError> {
        let actx = api::ApplyCtx {
            index: ctx.index,
            term: ctx.term,
            proposed_at_ms: ctx.proposed_at_ms,
        };
        let mut adapter = TxnAdapter { txn, failure: None };
        match api::apply(&mut adapter, &actx, cmd) {
            Ok(r) => {
                let accepted = match &r {
                    api::Response::Job(api::job::JobResult::Job(j))
                    | api::Response::Call(api::call::CallOutcome::Accepted(j)) => {
                        j.state == api::job::JobState::Processing
                    }
                    _ => false,
                };
                if accepted {
                    self.jobs_submitted.notify_waiters();
                }
                Ok(r)
            }
            Err(e) => Err(adapter
                .failure
                .take()
                .unwrap_or_else(|| StoreError::Corrupt {
                    path: std::path::PathBuf::from("<state>"),
                    what: format!("state read while applying entry {}", ctx.index),
                    detail: e.0,
                })),
        }
    }

    fn keep_writes(&self, response: &api::Response) -> bool {
        response.keeps_writes()
    }
}
