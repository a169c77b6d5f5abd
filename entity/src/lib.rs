//! sea-orm entities. Database rows only: they are never serialised to clients.

pub mod application;
pub mod audit_head;
pub mod audit_log;
pub mod benefit;
pub mod card;
pub mod card_event;
pub mod document;
pub mod idempotency_key;
pub mod login_failure;
pub mod outbox;
pub mod partner;
pub mod quota_counter;
pub mod redemption;
pub mod refresh_token;
pub mod session;
pub mod signing_key;
pub mod user;
pub mod visit;
