//! Supporting documents: uploaded as `multipart/form-data` (what `wx.uploadFile` sends),
//! typed by their content rather than by what the client claims, size-limited, stored
//! under the data directory, and served back only to their owner and to reviewers.

use std::path::PathBuf;

use actix_multipart::Multipart;
use actix_web::web::Bytes;
use entity::document;
use futures_util::StreamExt;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use uuid::Uuid;

use super::dto::DocumentView;
use crate::crypto::sha256_hex;
use crate::error::{ApiError, ErrorCode, FieldError, Text};
use crate::state::AppState;

pub const MAX_SIZE: usize = 5 * 1024 * 1024;

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

fn dir(state: &AppState) -> PathBuf {
    state.settings.data_dir.join("documents")
}

fn view(d: &document::Model) -> DocumentView {
    DocumentView {
        id: d.id,
        filename: d.filename.clone(),
        content_type: d.content_type.clone(),
        size: d.size,
        sha256: d.sha256.clone(),
        created_at: d.created_at,
    }
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
    let (filename, data) = read_file(form).await?;
    let content_type = sniff(&data).ok_or_else(|| {
        ApiError::new(ErrorCode::UnsupportedMediaType)
            .detail(Text::new("仅支持 PDF、JPEG、PNG 文件", "Only PDF, JPEG and PNG files are accepted"))
    })?;
    let id = Uuid::now_v7();
    let dir = dir(state);
    tokio::fs::create_dir_all(&dir).await?;
    // Write then rename, so a crash never leaves a half file under a real id.
    let tmp = dir.join(format!("{id}.part"));
    tokio::fs::write(&tmp, &data).await?;
    tokio::fs::rename(&tmp, dir.join(id.to_string())).await?;
    let stored = document::ActiveModel {
        id: Set(id),
        owner_id: Set(owner),
        filename: Set(filename),
        content_type: Set(content_type.into()),
        size: Set(i64::try_from(data.len()).unwrap_or(i64::MAX)),
        sha256: Set(sha256_hex(&data)),
        created_at: Set(state.clock.now()),
    }
    .insert(&state.db)
    .await?;
    Ok(view(&stored))
}

/// A document's metadata and bytes, for its owner (`owner = Some`) or a reviewer.
pub async fn fetch(state: &AppState, id: Uuid, owner: Option<Uuid>) -> Result<(DocumentView, Vec<u8>), ApiError> {
    let doc = document::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .filter(|d| owner.is_none_or(|o| o == d.owner_id))
        .ok_or_else(ApiError::not_found)?;
    let bytes = tokio::fs::read(dir(state).join(id.to_string())).await?;
    Ok((view(&doc), bytes))
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
