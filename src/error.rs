//! The one error type at the HTTP boundary: RFC 9457 `application/problem+json` with a
//! stable machine `code`, a Chinese `title`/`detail` by default and English ones for
//! `Accept-Language: en`. The cause of an error is logged, never sent.

use std::borrow::Cow;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Text in the two languages the service speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub zh: Cow<'static, str>,
    pub en: Cow<'static, str>,
}

impl Text {
    pub fn new(zh: impl Into<Cow<'static, str>>, en: impl Into<Cow<'static, str>>) -> Self {
        Self { zh: zh.into(), en: en.into() }
    }

    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::Zh => &self.zh,
            Lang::En => &self.en,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    /// Picks the preferred of Chinese and English from an `Accept-Language` header;
    /// Chinese unless English is asked for with a higher weight.
    pub fn negotiate(header: Option<&str>) -> Lang {
        let Some(header) = header else { return Lang::Zh };
        let mut best: Option<(Lang, f32)> = None;
        for part in header.split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = pieces.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
            let lang = if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else if tag == "zh" || tag.starts_with("zh-") || tag == "*" {
                Lang::Zh
            } else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((lang, q));
            }
        }
        best.map_or(Lang::Zh, |(l, _)| l)
    }
}

/// Every problem the API can answer, with its status and stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    MalformedJson,
    ValidationFailed,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    NotAcceptable,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    TooManyRequests,
    Internal,
    ServiceUnavailable,
    // Identity and sessions.
    TokenInvalid,
    TokenExpired,
    SessionRevoked,
    InvalidCredentials,
    AccountLocked,
    AccountDisabled,
    PasswordChangeRequired,
    RefreshTokenInvalid,
    RefreshTokenReused,
    WechatCodeInvalid,
    WechatUserBlocked,
    WechatRateLimited,
    WechatBusy,
    WechatUnavailable,
    UsernameUnavailable,
    // Applications and cards.
    ApplicationOpen,
    ApplicationDecided,
    IdNumberHasCard,
    CardExists,
    CardStateConflict,
    NoCard,
    // Verification and redemption.
    QrInvalid,
    QrExpired,
    QrReplayed,
    CardSuspended,
    CardRevoked,
    CardExpired,
    VisitExpired,
    BenefitUnavailable,
    QuotaExhausted,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    IdempotencyInFlight,
    AlreadyVoided,
    VoidWindowPassed,
    DocumentLimitReached,
    PartnerInactive,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            BadRequest | MalformedJson => StatusCode::BAD_REQUEST,
            ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            Unauthorized => StatusCode::UNAUTHORIZED,
            Forbidden => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Conflict => StatusCode::CONFLICT,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            TokenInvalid | TokenExpired | SessionRevoked | InvalidCredentials | RefreshTokenInvalid | RefreshTokenReused
            | WechatCodeInvalid => StatusCode::UNAUTHORIZED,
            AccountLocked => StatusCode::LOCKED,
            AccountDisabled | PasswordChangeRequired | WechatUserBlocked => StatusCode::FORBIDDEN,
            WechatRateLimited => StatusCode::TOO_MANY_REQUESTS,
            WechatBusy | WechatUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            UsernameUnavailable | ApplicationOpen | ApplicationDecided | IdNumberHasCard | CardExists | CardStateConflict => {
                StatusCode::CONFLICT
            }
            NoCard => StatusCode::NOT_FOUND,
            QrInvalid | IdempotencyKeyRequired => StatusCode::BAD_REQUEST,
            QrExpired | VisitExpired => StatusCode::GONE,
            QrReplayed | CardSuspended | CardRevoked | CardExpired | BenefitUnavailable | QuotaExhausted | IdempotencyInFlight
            | AlreadyVoided | VoidWindowPassed => StatusCode::CONFLICT,
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            DocumentLimitReached => StatusCode::CONFLICT,
            PartnerInactive => StatusCode::FORBIDDEN,
        }
    }

    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadRequest => "bad_request",
            MalformedJson => "malformed_json",
            ValidationFailed => "validation_failed",
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            NotAcceptable => "not_acceptable",
            Conflict => "conflict",
            PayloadTooLarge => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            TooManyRequests => "too_many_requests",
            Internal => "internal_error",
            ServiceUnavailable => "service_unavailable",
            TokenInvalid => "token_invalid",
            TokenExpired => "token_expired",
            SessionRevoked => "session_revoked",
            InvalidCredentials => "invalid_credentials",
            AccountLocked => "account_locked",
            AccountDisabled => "account_disabled",
            PasswordChangeRequired => "password_change_required",
            RefreshTokenInvalid => "refresh_token_invalid",
            RefreshTokenReused => "refresh_token_reused",
            WechatCodeInvalid => "wechat_code_invalid",
            WechatUserBlocked => "wechat_user_blocked",
            WechatRateLimited => "wechat_rate_limited",
            WechatBusy => "wechat_busy",
            WechatUnavailable => "wechat_unavailable",
            UsernameUnavailable => "username_unavailable",
            ApplicationOpen => "application_open",
            ApplicationDecided => "application_decided",
            IdNumberHasCard => "id_number_has_card",
            CardExists => "card_exists",
            CardStateConflict => "card_state_conflict",
            NoCard => "no_card",
            QrInvalid => "qr_invalid",
            QrExpired => "qr_expired",
            QrReplayed => "qr_replayed",
            CardSuspended => "card_suspended",
            CardRevoked => "card_revoked",
            CardExpired => "card_expired",
            VisitExpired => "visit_expired",
            BenefitUnavailable => "benefit_unavailable",
            QuotaExhausted => "quota_exhausted",
            IdempotencyKeyRequired => "idempotency_key_required",
            IdempotencyKeyReused => "idempotency_key_reused",
            IdempotencyInFlight => "idempotency_in_flight",
            AlreadyVoided => "already_voided",
            VoidWindowPassed => "void_window_passed",
            DocumentLimitReached => "document_limit_reached",
            PartnerInactive => "partner_inactive",
        }
    }

    pub fn title(self) -> Text {
        use ErrorCode::*;
        let (zh, en) = match self {
            BadRequest => ("请求无效", "Bad request"),
            MalformedJson => ("请求体不是有效的 JSON", "Malformed JSON body"),
            ValidationFailed => ("请求参数校验失败", "Validation failed"),
            Unauthorized => ("未登录或登录已失效", "Authentication required"),
            Forbidden => ("无权执行此操作", "Forbidden"),
            NotFound => ("资源不存在", "Not found"),
            MethodNotAllowed => ("不支持该请求方法", "Method not allowed"),
            NotAcceptable => ("无法提供所要求的格式", "Not acceptable"),
            Conflict => ("请求与当前状态冲突", "Conflict"),
            PayloadTooLarge => ("请求体过大", "Payload too large"),
            UnsupportedMediaType => ("不支持的内容类型", "Unsupported media type"),
            TooManyRequests => ("请求过于频繁", "Too many requests"),
            Internal => ("服务器内部错误", "Internal server error"),
            ServiceUnavailable => ("服务暂时不可用", "Service unavailable"),
            TokenInvalid => ("访问令牌无效", "Invalid access token"),
            TokenExpired => ("访问令牌已过期", "Access token expired"),
            SessionRevoked => ("登录已失效，请重新登录", "Session revoked; sign in again"),
            InvalidCredentials => ("用户名或密码错误", "Wrong username or password"),
            AccountLocked => ("账号已临时锁定，请稍后再试", "Account temporarily locked"),
            AccountDisabled => ("账号已停用", "Account disabled"),
            PasswordChangeRequired => ("请先修改初始密码", "Change the initial password first"),
            RefreshTokenInvalid => ("刷新令牌无效", "Invalid refresh token"),
            RefreshTokenReused => ("刷新令牌已被使用，会话已注销", "Refresh token reused; the session was revoked"),
            WechatCodeInvalid => ("微信登录凭证无效或已使用", "WeChat code invalid or already used"),
            WechatUserBlocked => ("微信账号存在风险，已被限制登录", "WeChat blocked this user from signing in"),
            WechatRateLimited => ("微信登录过于频繁，请稍后再试", "Too many WeChat sign-ins; try again later"),
            WechatBusy => ("微信服务繁忙，请稍后再试", "WeChat is busy; try again"),
            WechatUnavailable => ("暂时无法连接微信服务", "WeChat is unavailable"),
            UsernameUnavailable => ("该用户名不可用，请换一个", "This username is not available; choose another"),
            ApplicationOpen => ("已有一份待审核的申请", "An application is already open"),
            ApplicationDecided => ("该申请已审核完毕", "The application has already been decided"),
            IdNumberHasCard => ("该身份证号已持有有效的英才卡", "This ID number already holds a live card"),
            CardExists => ("您已持有英才卡", "You already hold a card"),
            CardStateConflict => ("英才卡当前状态不允许此操作", "The card's state does not allow this"),
            NoCard => ("尚未持有英才卡", "No card yet"),
            QrInvalid => ("二维码无效", "Invalid QR code"),
            QrExpired => ("二维码已过期，请刷新", "QR code expired; refresh it"),
            QrReplayed => ("二维码已被使用，请刷新", "QR code already used; refresh it"),
            CardSuspended => ("英才卡已暂停使用", "The card is suspended"),
            CardRevoked => ("英才卡已注销", "The card is revoked"),
            CardExpired => ("英才卡已过期", "The card has expired"),
            VisitExpired => ("核验已超时，请重新扫码", "The visit has expired; scan again"),
            BenefitUnavailable => ("该权益不适用于此卡", "This benefit is not available to this card"),
            QuotaExhausted => ("本期权益次数已用完", "No uses left in this period"),
            IdempotencyKeyRequired => ("缺少 Idempotency-Key 请求头", "The Idempotency-Key header is required"),
            IdempotencyKeyReused => ("Idempotency-Key 已用于不同的请求", "Idempotency-Key reused with a different request"),
            IdempotencyInFlight => ("相同请求正在处理中", "A request with this Idempotency-Key is in progress"),
            AlreadyVoided => ("该核销已撤销", "Already voided"),
            VoidWindowPassed => ("已超过可撤销时限", "Too late to void"),
            DocumentLimitReached => ("已达到上传文件的数量或大小上限", "Document limit reached"),
            PartnerInactive => ("合作单位已停用，不能核验或核销", "This partner is inactive: no verification or redemption"),
        };
        Text::new(zh, en)
    }

    /// The code for an error response that did not come from [`ApiError`]
    /// (the router's 404 and 405, for instance).
    pub fn from_status(status: StatusCode) -> ErrorCode {
        use ErrorCode::*;
        match status.as_u16() {
            401 => Unauthorized,
            403 => Forbidden,
            404 => NotFound,
            405 => MethodNotAllowed,
            406 => NotAcceptable,
            409 => Conflict,
            413 => PayloadTooLarge,
            415 => UnsupportedMediaType,
            422 => ValidationFailed,
            429 => TooManyRequests,
            503 => ServiceUnavailable,
            400..=499 => BadRequest,
            _ => Internal,
        }
    }
}

/// One invalid field of a request.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: Cow<'static, str>,
    pub code: &'static str,
    pub message: Text,
}

impl FieldError {
    pub fn new(field: impl Into<Cow<'static, str>>, code: &'static str, message: Text) -> Self {
        Self { field: field.into(), code, message }
    }
}

/// An error answered to a client. Build it from a code, add what the client may know,
/// and attach the cause for the logs.
pub struct ApiError {
    code: ErrorCode,
    detail: Option<Text>,
    errors: Vec<FieldError>,
    retry_after: Option<u64>,
    cause: Option<anyhow::Error>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> Self {
        Self { code, detail: None, errors: Vec::new(), retry_after: None, cause: None }
    }

    pub fn detail(mut self, detail: Text) -> Self {
        self.detail = Some(detail);
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn cause(mut self, cause: impl Into<anyhow::Error>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self { errors, ..Self::new(ErrorCode::ValidationFailed) }
    }

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound)
    }

    /// A failure of ours; the client learns nothing about it but the request id.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::new(ErrorCode::Internal).cause(cause)
    }

    /// A stored status, tier, category, period or role the code does not know: a data
    /// error of ours, logged and answered 500. Never a default, which could let through
    /// what the database meant to refuse.
    pub fn unknown_stored(column: &'static str, value: &str) -> Self {
        Self::internal(anyhow::anyhow!("unknown value {value:?} in {column}"))
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn field_errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// The status and body this error answers with, in `lang`.
    pub fn render(&self, lang: Lang) -> (StatusCode, Vec<u8>) {
        (self.code.status(), self.problem().to_json(lang))
    }

    fn problem(&self) -> Problem {
        Problem {
            status: self.code.status(),
            code: self.code.as_str(),
            title: self.code.title(),
            detail: self.detail.clone().unwrap_or_else(|| self.code.title()),
            errors: self.errors.clone(),
        }
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError").field("code", &self.code.as_str()).field("cause", &self.cause).finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code.as_str())?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause:#}")?;
        }
        Ok(())
    }
}

/// Reads a stored enum value with `parse`; see [`ApiError::unknown_stored`].
pub fn stored<T>(column: &'static str, value: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T, ApiError> {
    parse(value).ok_or_else(|| ApiError::unknown_stored(column, value))
}

/// Failures of ours that a request can meet; each becomes a 500 with the cause logged.
macro_rules! internal_errors {
    ($($t:ty),+) => {$(
        impl From<$t> for ApiError {
            fn from(e: $t) -> Self {
                ApiError::internal(e)
            }
        }
    )+};
}

internal_errors!(anyhow::Error, crate::crypto::CryptoError, tokio::task::JoinError, std::io::Error, serde_json::Error);

/// A database failure is ours (500), except when the database is only too busy: the pool
/// had no connection in time, or a statement ran past its timeout. That is a 503 worth
/// retrying, not a broken service.
impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        ApiError::answering(&e).cause(e)
    }
}

impl ApiError {
    /// What a database failure answers, without its cause: for one failure that answers
    /// several requests (a batch of scans), each given the cause as text.
    pub fn answering(e: &sea_orm::DbErr) -> Self {
        if crate::db::is_overload(e) {
            ApiError::new(ErrorCode::ServiceUnavailable).retry_after(1)
        } else {
            ApiError::new(ErrorCode::Internal)
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        if self.code.status().is_server_error() {
            tracing::error!(code = self.code.as_str(), cause = ?self.cause.as_ref().map(|c| format!("{c:#}")), "request failed");
        } else if let Some(cause) = &self.cause {
            tracing::debug!(code = self.code.as_str(), cause = %format!("{cause:#}"), "request refused");
        }
        let mut res = self.problem().response(Lang::Zh);
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}

/// A rendered-once problem, kept on the response so that the language can be chosen
/// by the middleware that sees the request.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: Text,
    pub detail: Text,
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn for_status(status: StatusCode) -> Self {
        let code = ErrorCode::from_status(status);
        Self { status, code: code.as_str(), title: code.title(), detail: code.title(), errors: Vec::new() }
    }

    pub fn body(&self, lang: Lang) -> ProblemBody<'_> {
        ProblemBody {
            kind: format!("urn:zhuge-card:problem:{}", self.code),
            title: self.title.get(lang),
            status: self.status.as_u16(),
            detail: self.detail.get(lang),
            code: self.code,
            errors: (!self.errors.is_empty()).then(|| {
                self.errors.iter().map(|e| FieldErrorBody { field: &e.field, code: e.code, message: e.message.get(lang) }).collect()
            }),
        }
    }

    pub fn to_json(&self, lang: Lang) -> Vec<u8> {
        // Serialising these plain strings cannot fail; an empty body is the safe fallback.
        serde_json::to_vec(&self.body(lang)).unwrap_or_default()
    }

    pub fn response(self, lang: Lang) -> HttpResponse {
        let body = self.to_json(lang);
        let mut res = HttpResponse::build(self.status).insert_header((header::CONTENT_TYPE, PROBLEM_JSON)).body(body);
        res.extensions_mut().insert(self);
        res
    }
}

/// Wire shape of a problem (RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemBody<'a> {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    #[schema(rename = "type", example = "urn:zhuge-card:problem:not_found")]
    pub kind: String,
    #[schema(example = "资源不存在")]
    pub title: &'a str,
    #[schema(example = 404)]
    pub status: u16,
    pub detail: &'a str,
    /// Stable machine-readable code.
    #[schema(example = "not_found")]
    pub code: &'a str,
    /// Per-field errors, only for `validation_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldErrorBody<'a>>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FieldError)]
pub struct FieldErrorBody<'a> {
    pub field: &'a str,
    pub code: &'a str,
    pub message: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_is_the_default_language() {
        assert_eq!(Lang::negotiate(None), Lang::Zh);
        assert_eq!(Lang::negotiate(Some("fr-FR")), Lang::Zh);
        assert_eq!(Lang::negotiate(Some("zh-CN,zh;q=0.9,en;q=0.8")), Lang::Zh);
    }

    #[test]
    fn english_when_preferred() {
        assert_eq!(Lang::negotiate(Some("en")), Lang::En);
        assert_eq!(Lang::negotiate(Some("en-US,en;q=0.9")), Lang::En);
        assert_eq!(Lang::negotiate(Some("zh;q=0.5, en;q=0.8")), Lang::En);
        assert_eq!(Lang::negotiate(Some("fr, en;q=0.1")), Lang::En);
    }

    #[test]
    fn problem_body_has_the_rfc_9457_members() {
        let problem = ApiError::validation(vec![FieldError::new("name", "required", Text::new("必填", "required"))]).problem();
        let body: serde_json::Value = serde_json::from_slice(&problem.to_json(Lang::En)).unwrap_or_default();
        assert_eq!(body["status"], 422);
        assert_eq!(body["code"], "validation_failed");
        assert_eq!(body["title"], "Validation failed");
        assert_eq!(body["errors"][0]["field"], "name");
        assert_eq!(body["errors"][0]["message"], "required");
    }
}
