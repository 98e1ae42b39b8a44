//! openraft's own storage test suite against raft-store.

use openraft::testing::log::StoreBuilder;
use openraft::testing::log::Suite;
use openraft::type_config::TypeConfigExt;
use openraft::StorageError;
use raft_store::kv::KvApplier;
use raft_store::LogStore;
use raft_store::StateMachineStore;
use raft_store::TypeConfig;
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<KvApplier>, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachineStore<KvApplier>), StorageError<TypeConfig>> {
        let td = TempDir::new().map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        let (log, sm) = raft_store::open(td.path(), KvApplier).map_err(|e| {
            StorageError::read(TypeConfig::err_from_error(&std::io::Error::from(e)))
        })?;
        Ok((td, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    TypeConfig::run(async {
        Suite::test_all(Builder).await.unwrap();
    });
}
