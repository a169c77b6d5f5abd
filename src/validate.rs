//! Small helpers for collecting field errors into one `validation_failed` problem.

use crate::error::{ApiError, FieldError, Text};

/// A required, bounded string field.
pub fn required(field: &'static str, value: &str, max: usize, errors: &mut Vec<FieldError>) {
    if value.trim().is_empty() {
        errors.push(FieldError::new(field, "required", Text::new("不能为空", "must not be empty")));
    } else if value.chars().count() > max {
        errors.push(FieldError::new(field, "too_long", Text::new(format!("最多 {max} 个字符"), format!("at most {max} characters"))));
    }
}

pub fn check(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() { Ok(()) } else { Err(ApiError::validation(errors)) }
}

/// Deserializes a field that a `PATCH` may leave out (`None`: no change), set to `null`
/// (`Some(None)`: clear it) or set (`Some(Some(v))`). Use with `#[serde(default)]`.
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}
