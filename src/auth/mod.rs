//! Identity: who is calling and what they may do. Sign-in (WeChat, password), access
//! tokens, database-backed sessions cached in Redis, roles as extractors.

pub mod account;
pub mod dto;
pub mod extract;
pub mod lockout;
pub mod password;
pub mod ratelimit;
pub mod roles;
pub mod routes;
pub mod service;
pub mod sessions;
pub mod tokens;

pub use extract::{AnyAdmin, Manager, Operator, RequestMeta, Reviewer, Session, Staff, SuperAdmin, Talent};
pub use roles::Role;
