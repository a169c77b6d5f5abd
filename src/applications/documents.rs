//! Supporting documents: uploaded as `multipart/form-data` (what `wx.uploadFile` sends),
//! typed by their content rather than by what the client claims, size-limited, and served
//! back only to their owner and to reviewers.
//!
//! An ID-card scan is the most sensitive thing the service holds, so a document lives in
//! the database, encrypted like other personal data: its content and the client's
//! filename (which often holds a name or an ID number) are both AEAD ciphertexts. Nothing
//! is kept on an instance's disk, so any instance serves any document. Each talent has
//! limits on count, total size and upload rate, checked under the talent's write lock so
//! that parallel uploads cannot pass them together.

use std::path::PathBuf;
use std::time::Duration;

use actix_multipart::Multipart;
use actix_web::web::Bytes;
use entity::document;
use futures_util::StreamExt;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect, Statement,
};
use uuid::Uuid;

use super::dto::DocumentView;
use crate::crypto::sha256_hex;
use crate::db;
use crate::error::{ApiError, ErrorCode, FieldError, Text};
use crate::state::AppState;

pub const MAX_SIZE: usize = 5 * 1024 * 1024;
/// Documents one talent may hold.
pub const MAX_PER_TALENT: u64 = 20;
/// Bytes one talent's documents may take in all.
pub const MAX_BYTES_PER_TALENT: i64 = 40 * 1024 * 1024;
/// Uploads one talent may make per [`UPLOAD_WINDOW`] (successful or not).
pub const UPLOADS_PER_WINDOW: i64 = 10;
pub const UPLOAD_WINDOW: Duration = Duration::from_secs(10 * 60);

pub const CONTENT_CONTEXT: &str = "documents.content";
pub const FILENAME_CONTEXT: &str = "documents.filename";

/// The type a file really is, from its first bytes.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else {
        None
    }
}

/// Where versions before 2026-11-29 kept document bytes; only [`import_legacy`] reads it.
fn legacy_dir(state: &AppState) -> PathBuf {
    state.settings.data_dir.join("documents")
}

fn view(state: &AppState, d: &document::Model) -> Result<DocumentView, ApiError> {
    let filename = match &d.filename_enc {
        Some(enc) => state.keyring.decrypt(FILENAME_CONTEXT, enc)?,
        None => d.legacy_filename.clone(),
    };
    Ok(DocumentView {
        id: d.id,
        filename,
        content_type: d.content_type.clone(),
        size: d.size,
        sha256: d.sha256.clone(),
        created_at: d.created_at,
    })
}

/// Reads the `file` part of the upload, refusing it as soon as it passes the limit.
async fn read_file(mut form: Multipart) -> Result<(String, Bytes), ApiError> {
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| ApiError::new(ErrorCode::BadRequest).cause(anyhow::anyhow!("multipart: {e}")))?;
        if field.name() != Some("file") {
            continue;
        }
        let filename = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .map(|f| f.chars().filter(|c| !c.is_control() && *c != '/' && *c != '\\').take(200).collect::<String>())
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| "upload".into());
        let mut data = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| ApiError::new(ErrorCode::BadRequest).cause(anyhow::anyhow!("multipart: {e}")))?;
            if data.len() + chunk.len() > MAX_SIZE {
                return Err(ApiError::new(ErrorCode::PayloadTooLarge).detail(Text::new("文件不能超过 5 MiB", "Files are limited to 5 MiB")));
            }
            data.extend_from_slice(&chunk);
        }
        return Ok((filename, Bytes::from(data)));
    }
    Err(ApiError::validation(vec![FieldError::new("file", "required", Text::new("缺少文件", "the `file` part is missing"))]))
}

pub async fn upload(state: &AppState, owner: Uuid, form: Multipart) -> Result<DocumentView, ApiError> {
    if let Err(retry_after) = crate::auth::ratelimit::hit(&state.cache, &format!("upload:{owner}"), UPLOADS_PER_WINDOW, UPLOAD_WINDOW).await
    {
        return Err(ApiError::new(ErrorCode::TooManyRequests)
            .detail(Text::new("上传过于频繁，请稍后再试", "Too many uploads; try again later"))
            .retry_after(retry_after));
    }
    let (filename, data) = read_file(form).await?;
    let content_type = sniff(&data).ok_or_else(|| {
        ApiError::new(ErrorCode::UnsupportedMediaType)
            .detail(Text::new("仅支持 PDF、JPEG、PNG 文件", "Only PDF, JPEG and PNG files are accepted"))
    })?;
    let size = i64::try_from(data.len()).unwrap_or(i64::MAX);
    let row = document::ActiveModel {
        id: Set(Uuid::now_v7()),
        owner_id: Set(owner),
        legacy_filename: Set(String::new()),
        filename_enc: Set(Some(state.keyring.encrypt(FILENAME_CONTEXT, &filename))),
        content_enc: Set(Some(state.keyring.encrypt_bytes(CONTENT_CONTEXT, &data))),
        content_type: Set(content_type.into()),
        size: Set(size),
        sha256: Set(sha256_hex(&data)),
        created_at: Set(state.clock.now()),
    };
    drop(data);

    let txn = db::begin_write(&state.db).await?;
    // SQLite's BEGIN IMMEDIATE already serialises writers; PostgreSQL locks the talent's
    // row, so that two uploads at once cannot both pass the limits below.
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM users WHERE id = $1 FOR UPDATE",
            [owner.into()],
        ))
        .await?;
    }
    let (count, bytes): (i64, Option<i64>) = document::Entity::find()
        .select_only()
        .column_as(Expr::col(document::Column::Id).count(), "count")
        .column_as(Expr::col(document::Column::Size).sum().cast_as("bigint"), "bytes")
        .filter(document::Column::OwnerId.eq(owner))
        .into_tuple()
        .one(&txn)
        .await?
        .unwrap_or((0, None));
    if u64::try_from(count).unwrap_or(u64::MAX) >= MAX_PER_TALENT {
        return Err(ApiError::new(ErrorCode::DocumentLimitReached)
            .detail(Text::new(format!("每人最多上传 {MAX_PER_TALENT} 个文件"), format!("At most {MAX_PER_TALENT} documents per person"))));
    }
    if bytes.unwrap_or(0) + size > MAX_BYTES_PER_TALENT {
        return Err(ApiError::new(ErrorCode::DocumentLimitReached)
            .detail(Text::new("文件总大小已达上限（40 MiB）", "Your documents may take 40 MiB in all")));
    }
    let stored = row.insert(&txn).await?;
    txn.commit().await?;
    view(state, &stored)
}

/// A document's metadata and bytes, for its owner (`owner = Some`) or a reviewer.
pub async fn fetch(state: &AppState, id: Uuid, owner: Option<Uuid>) -> Result<(DocumentView, Vec<u8>), ApiError> {
    let doc = document::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .filter(|d| owner.is_none_or(|o| o == d.owner_id))
        .ok_or_else(ApiError::not_found)?;
    let Some(content) = &doc.content_enc else {
        // Written by an earlier version and not yet imported by `migrate` (see below).
        return Err(ApiError::new(ErrorCode::ServiceUnavailable)
            .detail(Text::new("文件正在迁移，请稍后再试", "This document is being moved; try again later"))
            .cause(anyhow::anyhow!("document {id} has no content in the database; run `zhuge-card migrate` where its file is")));
    };
    let bytes = state.keyring.decrypt_bytes(CONTENT_CONTEXT, content)?;
    Ok((view(state, &doc)?, bytes))
}

/// Moves documents an earlier version left under `<data dir>/documents/` into the
/// database, encrypting content and filename, then deletes each file. Rows whose file is
/// on another instance's disk are left for that instance. Returns (imported, missing).
pub async fn import_legacy(state: &AppState) -> Result<(usize, usize), ApiError> {
    let pending: Vec<(Uuid, String)> = document::Entity::find()
        .select_only()
        .column(document::Column::Id)
        .column(document::Column::LegacyFilename)
        .filter(document::Column::ContentEnc.is_null())
        .into_tuple()
        .all(&state.db)
        .await?;
    let (mut imported, mut missing) = (0, 0);
    for (id, filename) in pending {
        let path = legacy_dir(state).join(id.to_string());
        let data = match tokio::fs::read(&path).await {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let updated = document::Entity::update_many()
            .col_expr(document::Column::ContentEnc, Expr::value(state.keyring.encrypt_bytes(CONTENT_CONTEXT, &data)))
            .col_expr(document::Column::FilenameEnc, Expr::value(state.keyring.encrypt(FILENAME_CONTEXT, &filename)))
            .col_expr(document::Column::LegacyFilename, Expr::value(""))
            .filter(document::Column::Id.eq(id))
            .filter(document::Column::ContentEnc.is_null())
            .exec(&state.db)
            .await?;
        if updated.rows_affected == 1 {
            imported += 1;
        }
        // In the database now (by this run or another): the clear copy goes.
        tokio::fs::remove_file(&path).await?;
    }
    if imported > 0 || missing > 0 {
        tracing::info!(imported, missing, "documents from the data directory moved into the database");
    }
    Ok((imported, missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_content() {
        assert_eq!(sniff(b"%PDF-1.7 ..."), Some("application/pdf"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0]), Some("image/png"));
        assert_eq!(sniff(b"MZ\x90\x00"), None);
        assert_eq!(sniff(b"<html>"), None);
    }
}
