//! Card applications (申请) and their supporting documents.

pub mod documents;
pub mod dto;
pub mod id_number;
pub mod routes;
pub mod service;
