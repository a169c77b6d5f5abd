//! The catalogue of partners (合作单位) and the benefits (权益) they grant.

pub mod cache;
pub mod dto;
pub mod eligibility;
pub mod period;
pub mod routes;
pub mod service;
