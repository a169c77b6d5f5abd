//! 诸葛英才卡 (Zhuge talent card) backend.

pub mod cache;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod startup;
pub mod state;
pub mod system;
pub mod telemetry;
