//! 诸葛英才卡 (Zhuge talent card) backend.

pub mod accounts;
pub mod applications;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod cards;
pub mod catalog;
pub mod classification;
pub mod clock;
pub mod config;
pub mod contract;
pub mod crypto;
pub mod db;
pub mod demo;
pub mod error;
pub mod json_body;
pub mod outbox;
pub mod pagination;
pub mod redemption;
pub mod startup;
pub mod state;
pub mod system;
pub mod telemetry;
pub mod validate;
pub mod web;
pub mod wechat;
