//! A local stand-in for WeChat's servers, following `../shared/WECHAT.md`: same paths,
//! JSON fields and error codes. Tests and demo mode point the real client at it.
//!
//! Login codes (`wx.login`) choose the behaviour; each is single-use (a second use is
//! 40163):
//! - `NAME` or `NAME.anything` → success, openid `oid_NAME` (`+union` in it adds a unionid)
//! - `invalid…` → 40029, `blocked…` → 40226, `ratelimited…` → 45011, `busy…` → -1 every
//!   time, `busyonce…` → -1 on the first call then success, `slow…` → answers after 10 s,
//!   `garbage…` → a body that is not JSON
//!
//! Phone codes: `phone.DIGITS` → that number; `phone-otherapp.DIGITS` → a watermark of
//! another appid; anything else → 40029. Access tokens last `token_ttl` seconds, and
//! [`StandIn::expire_tokens`] makes every issued token answer 42001.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

pub struct StandIn {
    appid: String,
    secret: String,
    token_ttl: u64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    used_codes: HashSet<String>,
    busy_seen: HashSet<String>,
    tokens: HashMap<String, bool>,
    token_calls: u32,
    login_calls: u32,
    phone_calls: u32,
    messages: Vec<Value>,
}

impl StandIn {
    pub fn new(appid: &str, secret: &str) -> Arc<Self> {
        Arc::new(Self { appid: appid.into(), secret: secret.into(), token_ttl: 7200, inner: Mutex::default() })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every access token issued so far answers 42001 from now on.
    pub fn expire_tokens(&self) {
        for valid in self.inner().tokens.values_mut() {
            *valid = false;
        }
    }

    pub fn token_calls(&self) -> u32 {
        self.inner().token_calls
    }

    pub fn login_calls(&self) -> u32 {
        self.inner().login_calls
    }

    pub fn phone_calls(&self) -> u32 {
        self.inner().phone_calls
    }

    /// Subscribe messages received, in order.
    pub fn messages(&self) -> Vec<Value> {
        self.inner().messages.clone()
    }

    /// Mounts the endpoints at the root of a scope or app.
    pub fn configure(self: &Arc<Self>, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::from(self.clone()))
            .route("/sns/jscode2session", web::get().to(jscode2session))
            .route("/cgi-bin/stable_token", web::post().to(stable_token))
            .route("/wxa/business/getuserphonenumber", web::post().to(phone_number))
            .route("/cgi-bin/message/subscribe/send", web::post().to(subscribe_send));
    }

    fn check_token(&self, token: Option<&str>) -> Result<(), i64> {
        match token.and_then(|t| self.inner().tokens.get(t).copied()) {
            Some(true) => Ok(()),
            Some(false) => Err(42001),
            None => Err(40001),
        }
    }
}

fn err(code: i64, msg: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({"errcode": code, "errmsg": msg}))
}

#[derive(Deserialize)]
struct LoginQuery {
    appid: String,
    secret: String,
    js_code: String,
    grant_type: String,
}

async fn jscode2session(s: web::Data<StandIn>, q: web::Query<LoginQuery>) -> HttpResponse {
    s.inner().login_calls += 1;
    if q.grant_type != "authorization_code" {
        return err(40002, "invalid grant_type");
    }
    if q.appid != s.appid {
        return err(40013, "invalid appid");
    }
    if q.secret != s.secret {
        return err(40125, "invalid appsecret");
    }
    let code = q.js_code.as_str();
    if code.starts_with("invalid") {
        return err(40029, "invalid code");
    }
    // A busy answer does not consume the code.
    if code.starts_with("busyonce") && s.inner().busy_seen.insert(code.to_owned()) {
        return err(-1, "system error");
    }
    if code.starts_with("busy") && !code.starts_with("busyonce") {
        return err(-1, "system error");
    }
    if !s.inner().used_codes.insert(code.to_owned()) {
        return err(40163, "code been used");
    }
    if code.starts_with("blocked") {
        return err(40226, "high risk user");
    }
    if code.starts_with("ratelimited") {
        return err(45011, "api minute-quota reach limit");
    }
    if code.starts_with("slow") {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    if code.starts_with("garbage") {
        return HttpResponse::Ok().content_type("text/html").body("<html>502 Bad Gateway</html>");
    }
    let name = code.split('.').next().unwrap_or(code);
    let mut body = json!({
        "openid": format!("oid_{}", name.replace("+union", "")),
        "session_key": crate::crypto::random_token(16),
    });
    if name.contains("+union") {
        body["unionid"] = json!(format!("uid_{}", name.replace("+union", "")));
    }
    HttpResponse::Ok().json(body)
}

#[derive(Deserialize)]
struct TokenBody {
    grant_type: String,
    appid: String,
    secret: String,
}

async fn stable_token(s: web::Data<StandIn>, body: web::Json<TokenBody>) -> HttpResponse {
    if body.grant_type != "client_credential" {
        return err(40002, "invalid grant_type");
    }
    if body.appid != s.appid {
        return err(40013, "invalid appid");
    }
    if body.secret != s.secret {
        return err(40125, "invalid appsecret");
    }
    let mut inner = s.inner();
    inner.token_calls += 1;
    let token = format!("tok_{}_{}", inner.token_calls, crate::crypto::random_token(8));
    inner.tokens.insert(token.clone(), true);
    HttpResponse::Ok().json(json!({"access_token": token, "expires_in": s.token_ttl}))
}

#[derive(Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

async fn phone_number(s: web::Data<StandIn>, q: web::Query<TokenQuery>, body: web::Bytes) -> HttpResponse {
    s.inner().phone_calls += 1;
    if let Err(code) = s.check_token(q.access_token.as_deref()) {
        return err(code, "access_token invalid or expired");
    }
    let Some(code) = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_owned))
    else {
        return err(47001, "data format error");
    };
    if !s.inner().used_codes.insert(code.clone()) {
        return err(40029, "invalid code");
    }
    let (appid, digits) = match code.split_once('.') {
        Some(("phone", d)) => (s.appid.clone(), d.to_owned()),
        Some(("phone-otherapp", d)) => ("wx_other_app".to_owned(), d.to_owned()),
        _ => return err(40029, "invalid code"),
    };
    HttpResponse::Ok().json(json!({
        "errcode": 0,
        "errmsg": "ok",
        "phone_info": {
            "phoneNumber": format!("+86{digits}"),
            "purePhoneNumber": digits,
            "countryCode": "86",
            "watermark": {"timestamp": chrono::Utc::now().timestamp(), "appid": appid}
        }
    }))
}

async fn subscribe_send(s: web::Data<StandIn>, q: web::Query<TokenQuery>, body: web::Bytes) -> HttpResponse {
    if let Err(code) = s.check_token(q.access_token.as_deref()) {
        return err(code, "access_token invalid or expired");
    }
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else { return err(47001, "data format error") };
    let touser = msg.get("touser").and_then(Value::as_str).unwrap_or_default();
    if touser.is_empty() {
        return err(40003, "invalid openid");
    }
    if touser.contains("unsubscribed") {
        return err(43101, "user refuse to accept the msg");
    }
    s.inner().messages.push(msg);
    err(0, "ok")
}
