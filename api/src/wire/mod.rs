//! ZStack's wire protocol: the RPC envelope, error objects and Java-8 dates.

pub mod date;
pub mod envelope;
pub mod errors;
