//! The WeChat server API client (`../shared/WECHAT.md`): code2Session for login, the
//! stable access token (cached once for all instances), and the phone number API.
//! Calls go only to the configured base URL, with timeouts and bounded retries.

pub mod standin;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cache::Cache;
use crate::config::WechatSettings;
use crate::error::{ApiError, ErrorCode, FieldError, Text};

const TOKEN_KEY: &str = "wx:access_token";
/// WeChat keeps an old token valid 5 minutes past a refresh; refresh that much early.
const TOKEN_EARLY: u64 = 300;
const BUSY_RETRIES: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum WechatError {
    #[error("the code is invalid or already used (errcode {0})")]
    CodeInvalid(i64),
    #[error("WeChat blocked this user (40226)")]
    UserBlocked,
    #[error("WeChat rate limit (45011)")]
    RateLimited,
    #[error("WeChat is busy (-1)")]
    Busy,
    #[error("WeChat configuration error (errcode {0}): check appid, secret and IP whitelist")]
    Config(i64),
    #[error("WeChat unavailable: {0}")]
    Unavailable(String),
    #[error("the user has not subscribed to this message (43101)")]
    NotSubscribed,
    #[error("the phone number is watermarked for another mini-program")]
    OtherApp,
}

impl From<WechatError> for ApiError {
    fn from(e: WechatError) -> Self {
        let api = match &e {
            WechatError::CodeInvalid(_) | WechatError::OtherApp => ApiError::new(ErrorCode::WechatCodeInvalid),
            WechatError::UserBlocked => ApiError::new(ErrorCode::WechatUserBlocked),
            WechatError::RateLimited => ApiError::new(ErrorCode::WechatRateLimited).retry_after(60),
            WechatError::Busy => ApiError::new(ErrorCode::WechatBusy).retry_after(1),
            WechatError::Config(_) => {
                tracing::error!(error = %e, "WeChat rejected our configuration");
                ApiError::new(ErrorCode::WechatUnavailable).retry_after(60)
            }
            WechatError::Unavailable(_) | WechatError::NotSubscribed => ApiError::new(ErrorCode::WechatUnavailable).retry_after(5),
        };
        api.cause(e)
    }
}

/// What code2Session tells us about a user.
pub struct WxSession {
    pub openid: String,
    pub unionid: Option<String>,
    pub session_key: SecretString,
}

pub struct WechatClient {
    http: reqwest::Client,
    base: String,
    appid: String,
    secret: SecretString,
    cache: Cache,
    /// One token fetch at a time per instance.
    token_fetch: tokio::sync::Mutex<()>,
}

fn errcode(v: &Value) -> i64 {
    v.get("errcode").and_then(Value::as_i64).unwrap_or(0)
}

impl WechatClient {
    pub fn new(settings: &WechatSettings, cache: Cache) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_millis(settings.timeout_ms.max(100)))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            base: settings.base_url.trim_end_matches('/').to_owned(),
            appid: settings.appid.clone(),
            secret: settings.secret.clone().unwrap_or_else(|| SecretString::from("")),
            cache,
            token_fetch: tokio::sync::Mutex::new(()),
        })
    }

    async fn read_json(res: Result<reqwest::Response, reqwest::Error>) -> Result<Value, WechatError> {
        let res = res.map_err(|e| WechatError::Unavailable(if e.is_timeout() { "timed out".into() } else { "unreachable".into() }))?;
        if !res.status().is_success() {
            return Err(WechatError::Unavailable(format!("HTTP {}", res.status().as_u16())));
        }
        let bytes = res.bytes().await.map_err(|_| WechatError::Unavailable("response cut short".into()))?;
        serde_json::from_slice(&bytes).map_err(|_| WechatError::Unavailable("malformed response".into()))
    }

    /// Exchanges a `wx.login` code for the user's openid. `-1` is retried a bounded
    /// number of times; nothing else is (a code is single-use).
    pub async fn code2session(&self, code: &str) -> Result<WxSession, WechatError> {
        let url = format!("{}/sns/jscode2session", self.base);
        let mut attempt = 0;
        loop {
            let res = self
                .http
                .get(&url)
                .query(&[
                    ("appid", self.appid.as_str()),
                    ("secret", self.secret.expose_secret()),
                    ("js_code", code),
                    ("grant_type", "authorization_code"),
                ])
                .send()
                .await;
            let v = Self::read_json(res).await?;
            match errcode(&v) {
                0 => {}
                -1 if attempt < BUSY_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                    continue;
                }
                -1 => return Err(WechatError::Busy),
                c @ (40029 | 40163) => return Err(WechatError::CodeInvalid(c)),
                45011 => return Err(WechatError::RateLimited),
                40226 => return Err(WechatError::UserBlocked),
                c @ (40013 | 40125 | 40164) => return Err(WechatError::Config(c)),
                c => return Err(WechatError::Unavailable(format!("errcode {c}"))),
            }
            #[derive(Deserialize)]
            struct Ok {
                openid: String,
                session_key: String,
                unionid: Option<String>,
            }
            let ok: Ok = serde_json::from_value(v).map_err(|_| WechatError::Unavailable("malformed response".into()))?;
            if ok.openid.is_empty() || ok.openid.len() > 128 {
                return Err(WechatError::Unavailable("malformed openid".into()));
            }
            return Ok(WxSession {
                openid: ok.openid,
                unionid: ok.unionid.filter(|u| !u.is_empty() && u.len() <= 128),
                session_key: SecretString::from(ok.session_key),
            });
        }
    }

    /// The server-to-server access token: from the shared cache when it holds one,
    /// otherwise fetched once (per instance at a time) and shared.
    pub async fn access_token(&self) -> Result<String, WechatError> {
        if let Some(token) = self.cached_token().await {
            return Ok(token);
        }
        let _guard = self.token_fetch.lock().await;
        if let Some(token) = self.cached_token().await {
            return Ok(token);
        }
        let res = self
            .http
            .post(format!("{}/cgi-bin/stable_token", self.base))
            .json(&json!({
                "grant_type": "client_credential",
                "appid": self.appid,
                "secret": self.secret.expose_secret(),
                "force_refresh": false,
            }))
            .send()
            .await;
        let v = Self::read_json(res).await?;
        match errcode(&v) {
            0 => {}
            -1 => return Err(WechatError::Busy),
            c @ (40013 | 40125 | 40164) => return Err(WechatError::Config(c)),
            c => return Err(WechatError::Unavailable(format!("errcode {c}"))),
        }
        let token = v.get("access_token").and_then(Value::as_str).filter(|t| !t.is_empty());
        let Some(token) = token.map(str::to_owned) else {
            return Err(WechatError::Unavailable("no access_token".into()));
        };
        let expires_in = v.get("expires_in").and_then(Value::as_u64).unwrap_or(7200);
        let ttl = Duration::from_secs(expires_in.saturating_sub(TOKEN_EARLY).max(30));
        if self.cache.set(TOKEN_KEY, token.as_bytes(), ttl).await.is_err() {
            self.cache.local().set(TOKEN_KEY, token.as_bytes(), ttl);
        }
        Ok(token)
    }

    async fn cached_token(&self) -> Option<String> {
        let bytes = match self.cache.get(TOKEN_KEY).await {
            Ok(found) => found,
            Err(_) => self.cache.local().get(TOKEN_KEY),
        };
        bytes.and_then(|b| String::from_utf8(b).ok())
    }

    async fn forget_token(&self) {
        drop(self.cache.delete(TOKEN_KEY).await);
        self.cache.local().delete(TOKEN_KEY);
    }

    /// The phone number behind a code from the mini-program's phone button.
    pub async fn phone_number(&self, code: &str, openid: &str) -> Result<String, WechatError> {
        let mut refreshed = false;
        loop {
            let token = self.access_token().await?;
            let res = self
                .http
                .post(format!("{}/wxa/business/getuserphonenumber", self.base))
                .query(&[("access_token", token.as_str())])
                .json(&json!({ "code": code, "openid": openid }))
                .send()
                .await;
            let v = Self::read_json(res).await?;
            match errcode(&v) {
                0 => return self.phone_from(&v),
                40001 | 42001 if !refreshed => {
                    // Invalid or expired token: refresh once, retry once.
                    refreshed = true;
                    self.forget_token().await;
                }
                -1 => return Err(WechatError::Busy),
                c @ 40029 => return Err(WechatError::CodeInvalid(c)),
                45011 => return Err(WechatError::RateLimited),
                c => return Err(WechatError::Unavailable(format!("errcode {c}"))),
            }
        }
    }

    /// Sends a subscribe message; `payload` carries `touser`, `page` and `data`.
    pub async fn send_subscribe(&self, payload: &Value, template_id: &str) -> Result<(), WechatError> {
        let body = json!({
            "touser": payload.get("touser"),
            "template_id": template_id,
            "page": payload.get("page"),
            "data": payload.get("data"),
            "miniprogram_state": "formal",
            "lang": "zh_CN",
        });
        let mut refreshed = false;
        loop {
            let token = self.access_token().await?;
            let res = self
                .http
                .post(format!("{}/cgi-bin/message/subscribe/send", self.base))
                .query(&[("access_token", token.as_str())])
                .json(&body)
                .send()
                .await;
            match errcode(&Self::read_json(res).await?) {
                0 => return Ok(()),
                40001 | 42001 if !refreshed => {
                    refreshed = true;
                    self.forget_token().await;
                }
                43101 => return Err(WechatError::NotSubscribed),
                -1 => return Err(WechatError::Busy),
                c => return Err(WechatError::Unavailable(format!("errcode {c}"))),
            }
        }
    }

    fn phone_from(&self, v: &Value) -> Result<String, WechatError> {
        let info = v.get("phone_info").ok_or_else(|| WechatError::Unavailable("no phone_info".into()))?;
        let appid = info.pointer("/watermark/appid").and_then(Value::as_str);
        if appid != Some(self.appid.as_str()) {
            // The client sent a code from another mini-program: its mistake, not WeChat's.
            return Err(WechatError::OtherApp);
        }
        let phone = info.get("purePhoneNumber").and_then(Value::as_str).unwrap_or_default();
        if phone.is_empty() || phone.len() > 20 || !phone.bytes().all(|b| b.is_ascii_digit()) {
            return Err(WechatError::Unavailable("malformed phone number".into()));
        }
        Ok(phone.to_owned())
    }
}

/// The problem for a phone code WeChat refused, or one made for another mini-program: a
/// bad `code` field (422), not a lost session and not an outage.
pub fn phone_code_problem(e: WechatError) -> ApiError {
    let (code, text) = match e {
        WechatError::CodeInvalid(_) => ("invalid", Text::new("手机号授权码无效或已使用", "The phone code is invalid or already used")),
        WechatError::OtherApp => {
            ("other_app", Text::new("手机号授权码不属于本小程序", "The phone code was issued to another mini-program"))
        }
        other => return other.into(),
    };
    ApiError::validation(vec![FieldError::new("code", code, text)]).cause(e)
}
