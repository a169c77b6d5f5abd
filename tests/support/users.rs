//! Builders for accounts and signed-in clients.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use uuid::Uuid;
use zhuge_card::accounts::service::{NewAccount, create};
use zhuge_card::audit::Actor;
use zhuge_card::auth::Role;

use super::{TestApp, json};

pub const PASSWORD: &str = "Nanyang-2026-secure";

#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub user_id: Uuid,
}

impl Tokens {
    /// A new access token for the same session, issued at the app's current time (for
    /// tests that move the clock past the token's 15 minutes).
    pub fn renewed(&self, app: &TestApp, role: Role) -> String {
        use base64::Engine;
        let payload = self.access.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        let sid: Uuid = claims["sid"].as_str().unwrap().parse().unwrap();
        app.state.tokens.issue(self.user_id, sid, role, app.state.clock.now())
    }
}

impl TestApp {
    pub fn auth(&self, method: Method, path: &str, access: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(access)
    }

    pub fn get_as(&self, path: &str, access: &str) -> impl Future<Output = Response> + use<'_> {
        let req = self.auth(Method::GET, path, access);
        async move { req.send().await.unwrap() }
    }

    pub fn post_as(&self, path: &str, access: &str, body: &Value) -> impl Future<Output = Response> + use<'_> {
        let req = self.auth(Method::POST, path, access).json(body);
        async move { req.send().await.unwrap() }
    }

    async fn tokens_from(&self, res: Response) -> Tokens {
        let (status, body) = json(res).await;
        assert_eq!(status, 200, "sign-in failed: {body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        let access = body["access_token"].as_str().unwrap().to_owned();
        let refresh = body["refresh_token"].as_str().unwrap().to_owned();
        let (_, me) = json(self.get_as("/api/v1/me", &access).await).await;
        let user_id = me["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or_default();
        Tokens { access, refresh, user_id }
    }

    pub async fn wechat_login_raw(&self, code: &str) -> Response {
        self.post_json("/api/v1/auth/wechat/login", &json!({ "code": code })).await
    }

    /// Signs in a talent through the WeChat stand-in; the same name is the same person.
    pub async fn talent(&self, name: &str) -> Tokens {
        let res = self.wechat_login_raw(&format!("{name}.{}", Uuid::new_v4().simple())).await;
        self.tokens_from(res).await
    }

    pub async fn password_login(&self, username: &str, password: &str) -> Response {
        self.post_json("/api/v1/auth/password/login", &json!({ "username": username, "password": password })).await
    }

    /// Creates a password account directly (as the CLI would) and signs it in.
    pub async fn account(&self, role: Role, partner_id: Option<Uuid>) -> (String, Tokens) {
        let username = format!("{}.{}", role.as_str().replace('_', "-"), &Uuid::new_v4().simple().to_string()[..8]);
        let new = NewAccount { username: &username, password: PASSWORD, role, partner_id, must_change_password: false };
        let now = self.state.clock.now();
        create(&self.state.db, &self.state.keyring, &Actor::cli(), new, now).await.unwrap();
        let tokens = self.tokens_from(self.password_login(&username, PASSWORD).await).await;
        (username, tokens)
    }

    pub async fn admin(&self, role: Role) -> Tokens {
        self.account(role, None).await.1
    }
}
