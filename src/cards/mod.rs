//! The talent card (诸葛英才卡): numbers, lifecycle, views.

pub mod dto;
pub mod keys;
pub mod number;
pub mod qr;
pub mod routes;
pub mod service;
