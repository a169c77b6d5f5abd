//! sea-orm entities. Database rows only: they are never serialised to clients.

pub mod application;
pub mod audit_head;
pub mod audit_log;
pub mod benefit;
pub mod card;
pub mod card_event;
pub mod document;
pub mod outbox;
pub mod partner;
pub mod refresh_token;
pub mod session;
pub mod user;
