//! Benefit redemption (核销): verifying a scanned card, exactly-once redemption with
//! idempotency keys, voids, quota periods, and what talents and merchants see of it.

pub mod dto;
pub mod idempotency;
pub mod quota;
pub mod render;
pub mod retention;
pub mod routes;
pub mod scan;
pub mod service;
pub mod stats;
