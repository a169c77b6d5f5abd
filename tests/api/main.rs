//! HTTP-level tests against the real application. See `tests/support` for the harness.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod admin_users;
mod applications;
mod attacks;
mod audit_trail;
mod cache_contract;
mod cards;
mod catalogue;
mod circuit_breaker;
mod cli;
mod crash;
mod demo;
mod deploy;
mod documents;
mod errors;
mod integrity;
mod model;
mod openapi;
mod privacy;
mod redemption;
mod redis_loss;
mod redis_outage;
mod redis_sessions;
mod scale;
mod sessions;
mod staff;
mod system;
mod web;
mod wechat;
