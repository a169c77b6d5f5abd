//! Password accounts: admins (managed by super admins) and, through the catalogue,
//! merchant staff. Creating, disabling, re-roling and resetting accounts; each write is
//! audited, and anything that changes what an account may do revokes its sessions.

pub mod dto;
pub mod routes;
pub mod service;
pub mod staff;
