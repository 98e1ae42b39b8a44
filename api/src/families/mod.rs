//! The resource families, one module (or folder) each. A family never names another family's
//! module: it reads other kinds through `resource::lookup` (their indexed fields) and declares
//! its references to them as relations (`resource::relations`). `api/tests/family_isolation.rs`
//! enforces this in CI.

pub mod backup_storage;
pub mod cluster;
pub mod global_config;
pub mod host;
pub mod identity;
pub mod image;
pub mod l2;
pub mod l3;
pub mod management_node;
pub mod offering;
pub mod primary_storage;
pub mod scheduler_job;
pub mod ssh_key_pair;
pub mod tag;
pub mod vm;
pub mod zone;
