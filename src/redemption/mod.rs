//! Benefit redemption: quota periods now; verification and exactly-once redemption follow.

pub mod period;
