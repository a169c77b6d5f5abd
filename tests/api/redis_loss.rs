//! Losing what Redis holds (FLUSHALL, a dead node) costs nothing that matters: nobody is
//! signed out, a revoked session stays out, a used QR stays used, a redemption retried
//! with its Idempotency-Key is not doubled, and a lockout stays locked, because each of
//! those is decided by the database. Run on a standalone Redis and on a 3-master cluster.

use entity::redemption;
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;
use zhuge_card::auth::Role;

use crate::support::cards::id_number;
use crate::support::catalog::{benefit_body, partner_body};
use crate::support::redis_server::{self, RedisCluster, RedisServer};
use crate::support::{TestApp, assert_problem, json, spawn_app_with};

/// A Redis of the test's own: one server, or a cluster.
pub enum OwnRedis {
    Server(RedisServer),
    Cluster(RedisCluster),
}

impl OwnRedis {
    pub fn url(&self) -> String {
        match self {
            Self::Server(s) => s.url(),
            Self::Cluster(c) => c.url(),
        }
    }

    pub fn flush_all(&self) {
        match self {
            Self::Server(s) => {
                let out = std::process::Command::new("redis-cli").args(["-p", &s.port.to_string(), "FLUSHALL"]).output().unwrap();
                assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
            }
            Self::Cluster(c) => c.flush_all(),
        }
    }
}

async fn login_from(app: &TestApp, address: &str, username: &str, password: &str) -> reqwest::Response {
    app.request(Method::POST, "/api/v1/auth/password/login")
        .header("x-forwarded-for", address)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn flush_loses_nothing_that_matters(redis: OwnRedis) {
    let url = redis.url();
    let a = spawn_app_with(|s| {
        s.redis_url = Some(url.into());
        s.trust_proxy = true;
    })
    .await;
    let b = a.sibling().await;
    let c = a.sibling().await;

    let operator = a.admin(Role::Operator).await;
    let partner = a.create_partner(&operator.access, partner_body("南阳市中心医院")).await;
    let mut body = benefit_body("专家号优先");
    body["valid_from"] = json!("2020-01-01T00:00:00Z");
    let benefit = a.create_benefit(&operator.access, partner, body).await;
    let (_, staff) = a.account(Role::MerchantStaff, Some(partner)).await;
    let holder = a.issue_card("holder", "张三明", &id_number(61), "B", "sci_tech").await;
    let alice = a.talent("alice").await;
    let bob = b.talent("bob").await;
    let (admin, _) = a.account(Role::SuperAdmin, None).await;

    // Before the loss: every instance has the sessions cached; bob signs out through A.
    for app in [&a, &b, &c] {
        assert_eq!(app.get_as("/api/v1/me", &alice.access).await.status(), 200);
        assert_eq!(app.get_as("/api/v1/me", &bob.access).await.status(), 200);
    }
    assert_eq!(a.auth(Method::POST, "/api/v1/auth/logout", &bob.access).send().await.unwrap().status(), 204);
    for app in [&b, &c] {
        assert_problem(app.get_as("/api/v1/me", &bob.access).await, 401, "session_revoked").await;
    }
    // A QR verified once, and a redemption made with an Idempotency-Key.
    let (_, qr) = json(a.get_as("/api/v1/me/card/qr", &holder.talent.access).await).await;
    let qr = qr["token"].as_str().unwrap().to_owned();
    let (status, verified) = json(a.post_as("/api/v1/merchant/verify", &staff.access, &json!({"qr": qr})).await).await;
    assert_eq!(status, 200, "{verified}");
    let visit: Uuid = verified["visit_id"].as_str().unwrap().parse().unwrap();
    let redeem = |app: &TestApp| {
        app.auth(Method::POST, "/api/v1/merchant/redemptions", &staff.access)
            .header("idempotency-key", "loss-1")
            .json(&json!({"visit_id": visit, "benefit_id": benefit}))
            .send()
    };
    let (status, first) = json(redeem(&a).await.unwrap()).await;
    assert_eq!(status, 201, "{first}");
    // Five wrong passwords for the admin, spread over the three instances, lock the name.
    let address = "198.51.100.7";
    for (i, app) in [&a, &b, &c, &a, &b].into_iter().enumerate() {
        assert_problem(login_from(app, address, &admin, &format!("Wrong-password-{i}")).await, 401, "invalid_credentials").await;
    }
    assert_problem(login_from(&c, address, &admin, crate::support::users::PASSWORD).await, 423, "account_locked").await;

    redis.flush_all();

    for app in [&a, &b, &c] {
        // Nobody is signed out, and the signed-out stay out.
        assert_eq!(app.get_as("/api/v1/me", &alice.access).await.status(), 200);
        assert_problem(app.get_as("/api/v1/me", &bob.access).await, 401, "session_revoked").await;
        // The used QR stays used.
        assert_problem(app.post_as("/api/v1/merchant/verify", &staff.access, &json!({"qr": qr})).await, 409, "qr_replayed").await;
        // The retried redemption answers as the first did, and is not made twice.
        let (status, again) = json(redeem(app).await.unwrap()).await;
        assert_eq!((status, &again["id"]), (201, &first["id"]), "{again}");
        // The lockout holds.
        assert_problem(login_from(app, address, &admin, crate::support::users::PASSWORD).await, 423, "account_locked").await;
    }
    let made = redemption::Entity::find().filter(redemption::Column::CardId.eq(holder.card_id)).count(&a.state.db).await.unwrap();
    assert_eq!(made, 1);
    // And the three instances go on using the emptied Redis.
    let (_, ready) = json(c.get("/readyz").await).await;
    assert_eq!(ready["cache"]["status"], "up", "{ready}");
    assert_eq!(a.state.cache.get("sess:none").await.unwrap(), None);
}

#[tokio::test]
async fn flushall_on_a_standalone_redis_loses_nothing_that_matters() {
    if !redis_server::available() {
        return;
    }
    flush_loses_nothing_that_matters(OwnRedis::Server(RedisServer::start())).await;
}

#[tokio::test]
async fn flushall_on_every_node_of_a_cluster_loses_nothing_that_matters() {
    if !redis_server::available() {
        return;
    }
    flush_loses_nothing_that_matters(OwnRedis::Cluster(RedisCluster::start())).await;
}
