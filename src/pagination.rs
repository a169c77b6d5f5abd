//! Cursor pagination shared by every list: `limit` ≤ 100 and an opaque cursor that encodes
//! the position after the last item returned, so a list has a stable order under inserts.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, FieldError, Text};

pub const DEFAULT_LIMIT: u64 = 20;
pub const MAX_LIMIT: u64 = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    /// Validates the parameters; the cursor decodes into the list's own position type.
    pub fn parse<C: DeserializeOwned>(&self) -> Result<(u64, Option<C>), ApiError> {
        let mut errors = Vec::new();
        let limit = limit(self.limit, DEFAULT_LIMIT, MAX_LIMIT, &mut errors);
        let cursor = cursor(self.cursor.as_deref(), &mut errors);
        if errors.is_empty() { Ok((limit, cursor)) } else { Err(ApiError::validation(errors)) }
    }
}

/// A page size: `default` when absent, else 1–`max` (an error for `limit` otherwise).
pub fn limit(n: Option<i64>, default: u64, max: u64, errors: &mut Vec<FieldError>) -> u64 {
    match n {
        None => default,
        Some(n) if n >= 1 && n.unsigned_abs() <= max => n.unsigned_abs(),
        Some(_) => {
            errors.push(FieldError::new(
                "limit",
                "out_of_range",
                Text::new(format!("limit 须在 1 到 {max} 之间"), format!("limit must be between 1 and {max}")),
            ));
            default
        }
    }
}

/// A cursor as handed out by [`encode`] (an error for `cursor` otherwise).
pub fn cursor<C: DeserializeOwned>(c: Option<&str>, errors: &mut Vec<FieldError>) -> Option<C> {
    let c = c.filter(|c| !c.is_empty())?;
    let decoded = decode(c);
    if decoded.is_none() {
        errors.push(FieldError::new("cursor", "invalid", Text::new("cursor 无效", "cursor is not valid")));
    }
    decoded
}

fn decode<C: DeserializeOwned>(cursor: &str) -> Option<C> {
    let bytes = B64.decode(cursor).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn encode<C: Serialize>(position: &C) -> String {
    B64.encode(serde_json::to_vec(position).unwrap_or_default())
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows (the extra one says whether more exist).
    pub fn from_rows<R, C: Serialize>(mut rows: Vec<R>, limit: u64, position: impl Fn(&R) -> C, view: impl FnMut(R) -> T) -> Self {
        let more = rows.len() as u64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next_cursor = if more { rows.last().map(|r| encode(&position(r))) } else { None };
        Self { items: rows.into_iter().map(view).collect(), next_cursor }
    }

    /// [`Page::from_rows`] with a view that can fail (a stored value the code does not know).
    pub fn try_from_rows<R, C: Serialize, E>(
        rows: Vec<R>,
        limit: u64,
        position: impl Fn(&R) -> C,
        view: impl FnMut(R) -> Result<T, E>,
    ) -> Result<Self, E> {
        let page = Page::from_rows(rows, limit, position, view);
        Ok(Page { items: page.items.into_iter().collect::<Result<_, E>>()?, next_cursor: page.next_cursor })
    }
}
