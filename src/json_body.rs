//! Every JSON request body this API takes is one JSON object (SPEC §6). serde would also
//! build a struct from an array (`["user","pass"]` signed in), so a body that is some
//! other JSON value is refused here, for every route at once: the [`objects_only`]
//! middleware watches the body of a request that declares JSON as the route's extractor
//! reads it, and fails the read at its end when the body is well-formed JSON but not an
//! object. It keeps a copy, so that a deserialisation error can be told apart too:
//! well-formed JSON the types refuse (`{"status":{}}`: 422 naming `status`) from JSON
//! that is not well-formed (400).
//!
//! The check runs as the body is read, so routing, authentication and the content type
//! are answered first, exactly as before.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::body::MessageBody;
use actix_web::dev::{Decompress, Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpMessage, HttpRequest, web};
use futures_util::Stream;

use crate::error::{FieldError, Text};
use crate::state::AppState;

type BoxedStream = Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>;

/// The body of this request as far as it was read, for error reports.
#[derive(Clone)]
struct Received(Rc<RefCell<BytesMut>>);

/// The read error that says the body was JSON but not an object.
#[derive(Debug, thiserror::Error)]
#[error("the body is not a JSON object")]
struct NotAnObject;

/// See the module docs.
pub async fn objects_only(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    if declares_json(&req) {
        let limit = req.app_data::<web::Data<AppState>>().map_or(65_536, |s| s.settings.json_limit);
        let mut payload: BoxedStream = Box::pin(req.take_payload());
        // Look at the JSON itself, not at its compressed bytes; the extractor then reads
        // it as sent without Content-Encoding.
        if req.headers().contains_key(header::CONTENT_ENCODING) {
            payload = Box::pin(Decompress::from_headers(payload, req.headers()));
            req.headers_mut().remove(header::CONTENT_ENCODING);
        }
        let received = Received(Rc::new(RefCell::new(BytesMut::new())));
        req.extensions_mut().insert(received.clone());
        let watched: BoxedStream = Box::pin(Watched { inner: payload, first: None, ended: false, received, limit });
        req.set_payload(Payload::from(watched));
    }
    next.call(req).await
}

/// The content types the JSON extractor accepts: `application/json` and `…+json`.
fn declares_json(req: &ServiceRequest) -> bool {
    req.mime_type().ok().flatten().is_some_and(|m| m.subtype().as_str() == "json" || m.suffix().is_some_and(|s| s.as_str() == "json"))
}

struct Watched {
    inner: BoxedStream,
    /// The body's first byte that is not white space, once seen.
    first: Option<u8>,
    ended: bool,
    received: Received,
    limit: usize,
}

/// Bytes that start a JSON value other than an object.
fn starts_other_value(b: u8) -> bool {
    matches!(b, b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n')
}

impl Stream for Watched {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let item = match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(item) => item,
            Poll::Pending => return Poll::Pending,
        };
        match &item {
            Some(Ok(chunk)) => {
                if this.first.is_none() {
                    this.first = chunk.iter().copied().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
                }
                let mut received = this.received.0.borrow_mut();
                if received.len() + chunk.len() <= this.limit {
                    received.extend_from_slice(chunk);
                }
            }
            // The end: well-formed JSON that is not an object fails the read. Anything
            // else (an object, or bytes that are no JSON) goes to the parser as it is.
            None => {
                this.ended = true;
                if this.first.is_some_and(starts_other_value) && is_well_formed(&this.received.0.borrow()) {
                    let error = std::io::Error::new(std::io::ErrorKind::InvalidData, NotAnObject);
                    return Poll::Ready(Some(Err(PayloadError::Io(error))));
                }
            }
            Some(Err(_)) => {}
        }
        Poll::Ready(item)
    }
}

/// Whether a body read failed because it was not a JSON object; the field error for it.
pub fn not_an_object(error: &PayloadError) -> Option<FieldError> {
    let PayloadError::Io(e) = error else { return None };
    e.get_ref().filter(|inner| inner.is::<NotAnObject>())?;
    Some(FieldError::new("body", "not_an_object", Text::new("请求体须为 JSON 对象", "the body must be a JSON object")))
}

/// The body the JSON extractor read, when this request's was watched.
pub fn received(req: &HttpRequest) -> Option<Bytes> {
    req.extensions().get::<Received>().map(|r| Bytes::copy_from_slice(&r.0.borrow()))
}

/// Whether `body` is well-formed JSON (whatever its shape).
pub fn is_well_formed(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

/// The member of the top-level object whose value holds the position serde reported
/// (1-based line, byte column), for errors that do not name their field.
pub fn member_at(body: &[u8], line: usize, column: usize) -> Option<String> {
    let line_start = if line <= 1 { 0 } else { body.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(line - 2).map(|(i, _)| i + 1)? };
    let offset = (line_start + column).min(body.len());
    let mut depth = 0usize;
    let mut expecting_key = false;
    let mut member = None;
    let mut i = 0;
    while i < offset {
        match body[i] {
            b'"' => {
                let end = string_end(body, i)?;
                if depth == 1 && expecting_key {
                    member = serde_json::from_slice::<String>(&body[i..=end]).ok();
                    expecting_key = false;
                }
                i = end;
            }
            b'{' | b'[' => {
                depth += 1;
                expecting_key = depth == 1;
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expecting_key = true,
            _ => {}
        }
        i += 1;
    }
    member
}

/// The index of the quote closing the string that opens at `start`.
fn string_end(body: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < body.len() {
        match body[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_member_holding_an_error_is_found() {
        assert_eq!(member_at(br#"{"status":{}}"#, 1, 12).as_deref(), Some("status"));
        assert_eq!(member_at(br#"{"code":1}"#, 1, 9).as_deref(), Some("code"));
        let body = b"{\n  \"a\": [1, {\"b,\\\"\": 2}],\n  \"t\\u00e9\": x\n}";
        assert_eq!(member_at(body, 3, 10).as_deref(), Some("t\u{e9}"));
        assert_eq!(member_at(body, 2, 10).as_deref(), Some("a"));
        assert_eq!(member_at(b"{}", 1, 1), None);
    }

    #[test]
    fn well_formed_is_about_syntax_only() {
        assert!(is_well_formed(br#"{"status":{}}"#));
        assert!(is_well_formed(b"[1]"));
        assert!(!is_well_formed(br#"{"a":}"#));
        assert!(!is_well_formed(b""));
    }
}
