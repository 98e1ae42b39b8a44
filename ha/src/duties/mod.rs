//! The leader's duties over the cloud model: the job executor (every flow), the admin
//! bootstrap and the sweepers. The management-node registry lives in `crate::registry`.

pub mod backup_storage_tracker;
pub mod executor;
pub mod host_tracker;
pub mod storage_tracker;
pub mod sweepers;
pub mod tracker_metrics;
