//! The moment the product exists for: scan, verify, redeem exactly once.

use chrono::Duration;
use entity::{card, quota_counter, redemption, visit};
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;
use zhuge_card::auth::Role;
use zhuge_card::clock::Clock;

use crate::support::binary::{Service, free_port};
use crate::support::cards::{Issued, id_number};
use crate::support::catalog::{benefit_body, partner_body};
use crate::support::users::Tokens;
use crate::support::{TestApp, assert_problem, json, spawn_app, spawn_with_settings, test_settings};

struct Scene {
    app: TestApp,
    operator: Tokens,
    partner: Uuid,
    benefit: Uuid,
    staff: Tokens,
    other_staff: Tokens,
    holder: Issued,
}

async fn scene_on(app: TestApp, quota: Value, period: &str) -> Scene {
    let operator = app.admin(Role::Operator).await;
    let partner = app.create_partner(&operator.access, partner_body("南阳市中心医院")).await;
    let mut body = benefit_body("专家号优先");
    body["quota"] = quota;
    body["period"] = json!(period);
    body["valid_from"] = json!("2020-01-01T00:00:00Z");
    let benefit = app.create_benefit(&operator.access, partner, body).await;
    let other = app.create_partner(&operator.access, partner_body("另一家单位")).await;
    let staff = app.account(Role::MerchantStaff, Some(partner)).await.1;
    let other_staff = app.account(Role::MerchantStaff, Some(other)).await.1;
    let holder = app.issue_card("holder", "张三明", &id_number(50), "B", "sci_tech").await;
    Scene { app, operator, partner, benefit, staff, other_staff, holder }
}

async fn scene() -> Scene {
    scene_on(spawn_app().await, json!(3), "year").await
}

impl Scene {
    async fn qr(&self) -> String {
        let (status, body) = json(self.app.get_as("/api/v1/me/card/qr", &self.holder.talent.access).await).await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    async fn verify_as(&self, app: &TestApp, staff: &Tokens, qr: &str) -> reqwest::Response {
        app.post_as("/api/v1/merchant/verify", &staff.access, &json!({"qr": qr})).await
    }

    async fn visit(&self) -> (Uuid, Value) {
        let (status, body) = json(self.verify_as(&self.app, &self.staff, &self.qr().await).await).await;
        assert_eq!(status, 200, "{body}");
        (body["visit_id"].as_str().unwrap().parse().unwrap(), body)
    }

    fn redeem_as(
        &self,
        app: &TestApp,
        staff: &Tokens,
        visit: Uuid,
        benefit: Uuid,
        key: &str,
    ) -> impl Future<Output = reqwest::Response> + use<> {
        let req = app
            .auth(Method::POST, "/api/v1/merchant/redemptions", &staff.access)
            .header("idempotency-key", key)
            .json(&json!({"visit_id": visit, "benefit_id": benefit}));
        async move { req.send().await.unwrap() }
    }

    async fn used(&self) -> i64 {
        redemption::Entity::find()
            .filter(redemption::Column::CardId.eq(self.holder.card_id))
            .filter(redemption::Column::Status.eq("completed"))
            .count(&self.app.state.db)
            .await
            .unwrap() as i64
    }
}

#[tokio::test]
async fn scan_verify_redeem_and_a_replayed_qr_is_refused() {
    let s = scene().await;
    let qr = s.qr().await;
    assert!(qr.starts_with("ZG:") && qr.len() <= 150, "{qr}");
    let (status, verified) = json(s.verify_as(&s.app, &s.staff, &qr).await).await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["card"]["holder"], "张*明");
    assert_eq!(verified["card"]["card_no"], s.holder.card_no.as_str());
    assert!(!verified.to_string().contains(&id_number(50)));
    assert_eq!(verified["benefits"][0]["benefit"]["id"], s.benefit.to_string());
    assert_eq!(verified["benefits"][0]["remaining"], 3);
    assert!(verified["benefits"][0]["resets_at"].as_str().unwrap().ends_with("T16:00:00Z"));

    let visit: Uuid = verified["visit_id"].as_str().unwrap().parse().unwrap();
    let (status, r) = json(s.redeem_as(&s.app, &s.staff, visit, s.benefit, "k1").await).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!((r["status"].as_str(), r["card_no"].as_str()), (Some("completed"), Some(s.holder.card_no.as_str())));
    assert_problem(s.verify_as(&s.app, &s.staff, &qr).await, 409, "qr_replayed").await;
    let (_, again) = s.visit().await;
    assert_eq!(again["benefits"][0]["remaining"], 2);

    let (_, mine) = json(s.app.get_as("/api/v1/me/benefits", &s.holder.talent.access).await).await;
    assert_eq!(mine["items"][0]["remaining"], 2);
    let (_, history) = json(s.app.get_as("/api/v1/me/redemptions", &s.holder.talent.access).await).await;
    assert_eq!(history["items"].as_array().unwrap().len(), 1);
    let (_, stats) = json(s.app.get_as("/api/v1/merchant/stats", &s.staff.access).await).await;
    assert_eq!(stats["today"][0]["count"], 1);
    assert_eq!(stats["this_month"][0]["benefit_id"], s.benefit.to_string());
}

#[tokio::test]
async fn fifty_concurrent_redemptions_of_a_quota_of_three_succeed_three_times() {
    let s = scene().await;
    // Two instances behind a "load balancer" when the backends are shared (PostgreSQL or
    // the SQLite file, and Redis when configured).
    let sibling = s.app.sibling().await;
    let (visit, _) = s.visit().await;
    let attempts = (0..50).map(|i| {
        let app = if i % 2 == 0 { &s.app } else { &sibling };
        s.redeem_as(app, &s.staff, visit, s.benefit, &format!("attempt-{i}"))
    });
    let results = futures_util::future::join_all(attempts).await;
    let mut created = 0;
    let mut exhausted = 0;
    for r in results {
        match r.status().as_u16() {
            201 => created += 1,
            409 => {
                assert_eq!(json(r).await.1["code"], "quota_exhausted");
                exhausted += 1;
            }
            other => panic!("unexpected {other}: {}", r.text().await.unwrap()),
        }
    }
    assert_eq!((created, exhausted), (3, 47));
    assert_eq!(s.used().await, 3);
    let counter = quota_counter::Entity::find()
        .filter(quota_counter::Column::CardId.eq(s.holder.card_id))
        .one(&s.app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counter.used, 3);
}

#[tokio::test]
async fn the_same_qr_verified_concurrently_on_two_instances_opens_one_visit() {
    let s = scene().await;
    let sibling = s.app.sibling().await;
    let qr = s.qr().await;
    let results =
        futures_util::future::join_all((0..10).map(|i| s.verify_as(if i % 2 == 0 { &s.app } else { &sibling }, &s.staff, &qr))).await;
    let ok = results.iter().filter(|r| r.status() == 200).count();
    assert_eq!(ok, 1);
    for r in results.into_iter().filter(|r| r.status() != 200) {
        assert_problem(r, 409, "qr_replayed").await;
    }
}

/// Three cards' tokens, each sent twelve times at once to `base`: each token opens one visit
/// between its copies, stored with its card at the staff member's partner, and nothing else
/// is stored. On PostgreSQL scans waiting at one moment are written in one statement, so
/// copies of one token meet inside a statement as well as across statements.
async fn scan_together(s: &Scene, base: &str) {
    let mut holders = vec![s.holder.card_id];
    let mut tokens = vec![s.qr().await];
    for (n, name) in [(51, "李四光"), (52, "王五岳")] {
        let other = s.app.issue_card(&format!("holder{n}"), name, &id_number(n), "C", "sci_tech").await;
        let (status, body) = json(s.app.get_as("/api/v1/me/card/qr", &other.talent.access).await).await;
        assert_eq!(status, 200, "{body}");
        holders.push(other.card_id);
        tokens.push(body["token"].as_str().unwrap().to_owned());
    }
    // Enough that batches form in the real binary too: with 5 copies a naive batch (any row
    // opened counts as opened for all) passed there; with 12 it fails in both tests.
    const COPIES: usize = 12;
    let sent: Vec<(usize, &String)> = tokens.iter().enumerate().flat_map(|(i, t)| std::iter::repeat_n((i, t), COPIES)).collect();
    let url = format!("{base}/api/v1/merchant/verify");
    let results = futures_util::future::join_all(
        sent.iter().map(|(_, t)| s.app.client.post(&url).bearer_auth(&s.staff.access).json(&json!({"qr": t})).send()),
    )
    .await;
    let mut opened = vec![Vec::new(); tokens.len()];
    for ((i, _), r) in sent.iter().zip(results) {
        let r = r.unwrap();
        match r.status().as_u16() {
            200 => opened[*i].push(json(r).await.1["visit_id"].as_str().unwrap().parse::<Uuid>().unwrap()),
            _ => drop(assert_problem(r, 409, "qr_replayed").await),
        }
    }
    for (i, visits) in opened.iter().enumerate() {
        assert_eq!(visits.len(), 1, "token {i} opened {visits:?}");
        let stored = visit::Entity::find_by_id(visits[0]).one(&s.app.state.db).await.unwrap().expect("the visit the desk was shown");
        assert_eq!((stored.card_id, stored.partner_id), (holders[i], s.partner));
    }
    assert_eq!(visit::Entity::find().count(&s.app.state.db).await.unwrap(), tokens.len() as u64);
}

#[tokio::test]
async fn scans_that_arrive_together_open_one_visit_per_token() {
    let s = scene().await;
    scan_together(&s, &s.app.address).await;
}

#[tokio::test]
async fn the_real_binary_writes_scans_that_arrive_together_once_per_token() {
    // The writer that batches scans starts inside an HTTP worker's runtime: this is the
    // binary an operator runs, configured only by the variables the README documents.
    let s = scene().await;
    let data_dir = s.app.state.settings.data_dir.clone();
    let env = [
        ("DATABASE_URL", s.app.state.settings.database_url()),
        ("ZHUGE_DATA_DIR", data_dir.display().to_string()),
        ("ZHUGE_WORKERS", "2".to_owned()),
        ("ZHUGE_OUTBOX_WORKER", "false".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let mut service = Service::start(&env, free_port(), &data_dir.join("scans.log"));
    service.wait_ready(&s.app.client).await;
    scan_together(&s, &service.base).await;
}

#[tokio::test]
async fn windows_tampering_keys_and_card_state() {
    let (settings, db) = test_settings().await;
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00+08:00").unwrap().to_utc();
    let clock = Clock::manual(start);
    let s = scene_on(spawn_with_settings(settings, db, clock.clone()).await, json!(3), "year").await;

    // One window old: accepted. Two windows old: expired.
    let qr = s.qr().await;
    clock.advance(Duration::seconds(30));
    assert_eq!(s.verify_as(&s.app, &s.staff, &qr).await.status(), 200);
    let qr = s.qr().await;
    clock.advance(Duration::seconds(60));
    assert_problem(s.verify_as(&s.app, &s.staff, &qr).await, 410, "qr_expired").await;

    // A flipped bit.
    let qr = s.qr().await;
    let mut bytes = base45::decode(&qr[3..]).unwrap();
    bytes[7] ^= 0x01;
    assert_problem(s.verify_as(&s.app, &s.staff, &format!("ZG:{}", base45::encode(&bytes))).await, 400, "qr_invalid").await;
    // Signed by a key the service does not know.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    let forged = zhuge_card::cards::qr::mint([0xde, 0xad, 0xbe, 0xef], &stranger, s.holder.card_id, clock.now());
    assert_problem(s.verify_as(&s.app, &s.staff, &forged).await, 400, "qr_invalid").await;
    assert_problem(s.verify_as(&s.app, &s.staff, "not a token").await, 400, "qr_invalid").await;

    // Suspended after the token was issued.
    let qr = s.qr().await;
    let reviewer = s.app.admin(Role::Reviewer).await;
    s.app.post_as(&format!("/api/v1/admin/cards/{}/suspend", s.holder.card_id), &reviewer.access, &json!({"reason": "核查"})).await;
    assert_problem(s.verify_as(&s.app, &s.staff, &qr).await, 409, "card_suspended").await;
    assert_problem(s.app.get_as("/api/v1/me/card/qr", &s.holder.talent.access).await, 409, "card_suspended").await;
    // The offline feed carries the change.
    let (_, feed) = json(s.app.get("/api/v1/cards/revocations?since=0").await).await;
    assert_eq!(feed["items"][0]["card_ref"], s.holder.card_id.to_string());
    assert_eq!(feed["items"][0]["status"], "suspended");
    let since = feed["next_since"].as_i64().unwrap();
    let (_, empty) = json(s.app.get(&format!("/api/v1/cards/revocations?since={since}")).await).await;
    assert!(empty["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_rotated_key_keeps_verifying_its_tokens_and_both_are_published() {
    let s = scene().await;
    let before = s.qr().await;
    let root = s.app.admin(Role::SuperAdmin).await;
    let (status, rotated) = json(s.app.post_as("/api/v1/admin/keys/rotate", &root.access, &json!({})).await).await;
    assert_eq!(status, 200);
    let (_, jwks) = json(s.app.get("/.well-known/jwks.json").await).await;
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids.len(), 2);
    assert!(kids.contains(&rotated["kid"].as_str().unwrap()));
    assert_eq!((jwks["keys"][0]["kty"].as_str(), jwks["keys"][0]["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
    assert_eq!(s.verify_as(&s.app, &s.staff, &before).await.status(), 200);
    let after = s.qr().await;
    assert_eq!(&hex::encode(&base45::decode(&after[3..]).unwrap()[1..5]), rotated["kid"].as_str().unwrap());
    assert_eq!(s.verify_as(&s.app, &s.staff, &after).await.status(), 200);
    assert_problem(s.app.post_as("/api/v1/admin/keys/rotate", &s.operator.access, &json!({})).await, 403, "forbidden").await;
}

#[tokio::test]
async fn staff_of_one_partner_never_touch_another_partners_redemptions() {
    let s = scene().await;
    let (visit, _) = s.visit().await;
    assert_problem(s.redeem_as(&s.app, &s.other_staff, visit, s.benefit, "x1").await, 403, "forbidden").await;
    let (_, r) = json(s.redeem_as(&s.app, &s.staff, visit, s.benefit, "x2").await).await;
    let id = r["id"].as_str().unwrap();
    assert_problem(
        s.app.post_as(&format!("/api/v1/merchant/redemptions/{id}/void"), &s.other_staff.access, &json!({"reason": "误操作"})).await,
        403,
        "forbidden",
    )
    .await;
    let (_, theirs) = json(s.app.get_as("/api/v1/merchant/redemptions", &s.other_staff.access).await).await;
    assert!(theirs["items"].as_array().unwrap().is_empty());
    let (_, ours) = json(s.app.get_as("/api/v1/merchant/redemptions", &s.staff.access).await).await;
    assert_eq!(ours["items"][0]["id"], id);
    // A visit opened by the other partner cannot be used for this partner's benefit either.
    let (status, v) = json(s.verify_as(&s.app, &s.other_staff, &s.qr().await).await).await;
    assert_eq!(status, 200);
    assert!(v["benefits"].as_array().unwrap().is_empty(), "the other partner offers nothing: {v}");
    let their_visit: Uuid = v["visit_id"].as_str().unwrap().parse().unwrap();
    assert_problem(s.redeem_as(&s.app, &s.other_staff, their_visit, s.benefit, "x3").await, 403, "forbidden").await;
    assert_eq!(s.used().await, 1);
    let talent = &s.holder.talent;
    assert_problem(s.app.post_as("/api/v1/merchant/verify", &talent.access, &json!({"qr": "x"})).await, 403, "forbidden").await;
}

#[tokio::test]
async fn a_yearly_benefit_resets_at_midnight_beijing_time() {
    let (settings, db) = test_settings().await;
    let clock = Clock::manual(chrono::DateTime::parse_from_rfc3339("2026-12-31T23:59:00+08:00").unwrap().to_utc());
    let s = scene_on(spawn_with_settings(settings, db, clock.clone()).await, json!(1), "year").await;
    clock.set(chrono::DateTime::parse_from_rfc3339("2026-12-31T23:59:59+08:00").unwrap().to_utc());
    let (visit, _) = s.visit().await;
    assert_eq!(s.redeem_as(&s.app, &s.staff, visit, s.benefit, "y1").await.status(), 201);
    assert_problem(s.redeem_as(&s.app, &s.staff, visit, s.benefit, "y2").await, 409, "quota_exhausted").await;
    clock.set(chrono::DateTime::parse_from_rfc3339("2027-01-01T00:00:00+08:00").unwrap().to_utc());
    let (visit, body) = s.visit().await;
    assert_eq!(body["benefits"][0]["remaining"], 1);
    assert_eq!(body["benefits"][0]["resets_at"], "2027-12-31T16:00:00Z");
    assert_eq!(s.redeem_as(&s.app, &s.staff, visit, s.benefit, "y3").await.status(), 201);
}

#[tokio::test]
async fn a_void_restores_one_use_once_and_only_within_the_window() {
    let (settings, db) = test_settings().await;
    let clock = Clock::manual(chrono::DateTime::parse_from_rfc3339("2026-06-01T09:00:00+08:00").unwrap().to_utc());
    let s = scene_on(spawn_with_settings(settings, db, clock.clone()).await, json!(2), "month").await;
    let (visit, _) = s.visit().await;
    let (_, first) = json(s.redeem_as(&s.app, &s.staff, visit, s.benefit, "v1").await).await;
    let (_, second) = json(s.redeem_as(&s.app, &s.staff, visit, s.benefit, "v2").await).await;
    assert_problem(s.redeem_as(&s.app, &s.staff, visit, s.benefit, "v3").await, 409, "quota_exhausted").await;
    let void = |id: &Value| {
        s.app.post_as(
            &format!("/api/v1/merchant/redemptions/{}/void", id.as_str().unwrap()),
            &s.staff.access,
            &json!({"reason": "顾客取消"}),
        )
    };
    let (status, voided) = json(void(&first["id"]).await).await;
    assert_eq!((status, voided["status"].as_str(), voided["void_reason"].as_str()), (200, Some("voided"), Some("顾客取消")));
    assert_problem(void(&first["id"]).await, 409, "already_voided").await;
    let (_, v) = s.visit().await;
    assert_eq!(v["benefits"][0]["remaining"], 1);
    assert_eq!(s.used().await, 1);
    clock.advance(Duration::hours(25));
    // The staff member's session lives on; the 15-minute access token does not.
    let fresh = s.staff.renewed(&s.app, Role::MerchantStaff);
    let late = s.app.post_as(
        &format!("/api/v1/merchant/redemptions/{}/void", second["id"].as_str().unwrap()),
        &fresh,
        &json!({"reason": "顾客取消"}),
    );
    assert_problem(late.await, 409, "void_window_passed").await;
    assert_eq!(s.used().await, 1);
}

#[tokio::test]
async fn idempotency_keys_replay_refuse_and_require() {
    let s = scene().await;
    let (visit, _) = s.visit().await;
    let first = s.redeem_as(&s.app, &s.staff, visit, s.benefit, "same-key").await;
    let (status, body) = (first.status(), first.bytes().await.unwrap());
    assert_eq!(status, 201);
    let replay = s.redeem_as(&s.app, &s.staff, visit, s.benefit, "same-key").await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(replay.bytes().await.unwrap(), body);
    assert_eq!(s.used().await, 1);

    let other_benefit = s.app.create_benefit(&s.operator.access, s.partner, benefit_body("体检")).await;
    assert_problem(s.redeem_as(&s.app, &s.staff, visit, other_benefit, "same-key").await, 422, "idempotency_key_reused").await;
    let res = s.app.post_as("/api/v1/merchant/redemptions", &s.staff.access, &json!({"visit_id": visit, "benefit_id": s.benefit})).await;
    assert_problem(res, 400, "idempotency_key_required").await;
    let long = "k".repeat(256);
    assert_problem(s.redeem_as(&s.app, &s.staff, visit, s.benefit, &long).await, 400, "idempotency_key_required").await;

    // An error is replayed too: the same key does not run again.
    for i in 0..2 {
        s.redeem_as(&s.app, &s.staff, visit, s.benefit, &format!("fill-{i}")).await;
    }
    let refused = s.redeem_as(&s.app, &s.staff, visit, s.benefit, "late").await;
    assert_eq!(refused.status(), 409);
    let refused_body = refused.bytes().await.unwrap();
    let again = s.redeem_as(&s.app, &s.staff, visit, s.benefit, "late").await;
    assert_eq!((again.status().as_u16(), again.bytes().await.unwrap()), (409, refused_body));
    assert_eq!(s.used().await, 3);
}

#[tokio::test]
async fn qr_images_are_real_images_of_a_small_code() {
    let s = scene().await;
    let png = s.app.get_as("/api/v1/me/card/qr.png", &s.holder.talent.access).await;
    assert_eq!(png.headers().get("content-type").unwrap(), "image/png");
    assert!(png.bytes().await.unwrap().starts_with(&[0x89, b'P', b'N', b'G']));
    let svg = s.app.get_as("/api/v1/me/card/qr.svg", &s.holder.talent.access).await;
    assert_eq!(svg.headers().get("content-type").unwrap(), "image/svg+xml");
    assert!(svg.text().await.unwrap().contains("<svg"));
    let version = zhuge_card::redemption::render::version(&s.qr().await).unwrap();
    assert!(version <= 7, "QR version {version}");
    let (_, qr) = json(s.app.get_as("/api/v1/me/card/qr", &s.holder.talent.access).await).await;
    assert!((1..=30).contains(&qr["refresh_in"].as_i64().unwrap()));
    let talentless = s.app.talent("nocard").await;
    assert_problem(s.app.get_as("/api/v1/me/card/qr", &talentless.access).await, 404, "no_card").await;
}

#[tokio::test]
async fn admin_statistics_group_by_day_partner_benefit_and_tier_in_json_and_csv() {
    let s = scene().await;
    let (visit, _) = s.visit().await;
    assert_eq!(s.redeem_as(&s.app, &s.staff, visit, s.benefit, "st1").await.status(), 201);
    let operator = s.app.admin(Role::Operator).await;
    let (status, stats) = json(s.app.get_as("/api/v1/admin/stats", &operator.access).await).await;
    assert_eq!(status, 200);
    let row = &stats["rows"][0];
    assert_eq!(
        (row["partner_id"].as_str(), row["tier"].as_str(), row["count"].as_i64()),
        (Some(s.partner.to_string().as_str()), Some("B"), Some(1))
    );
    let csv = s.app.auth(Method::GET, "/api/v1/admin/stats", &operator.access).header("accept", "text/csv").send().await.unwrap();
    assert!(csv.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    assert!(text.starts_with("day,partner_id,benefit_id,tier,count\n"));
    assert!(text.contains(&format!(",{},{},B,1", s.partner, s.benefit)));
    assert_problem(s.app.get_as("/api/v1/admin/stats?from=2025-12-30&to=2026-12-31", &operator.access).await, 422, "validation_failed")
        .await;
    assert_problem(s.app.get_as("/api/v1/admin/stats", &s.staff.access).await, 403, "forbidden").await;
}

#[tokio::test]
async fn a_benefit_withdrawn_after_the_scan_is_refused_and_an_unknown_one_is_not_found() {
    let s = scene().await;
    // The scan reads (and this instance keeps) the partner's benefits.
    let (visit, verified) = s.visit().await;
    assert_eq!(verified["benefits"][0]["benefit"]["id"], s.benefit.to_string());
    assert_problem(s.redeem_as(&s.app, &s.staff, visit, Uuid::now_v7(), "w1").await, 404, "not_found").await;
    let withdrawn = s
        .app
        .auth(Method::DELETE, &format!("/api/v1/admin/partners/{}/benefits/{}", s.partner, s.benefit), &s.operator.access)
        .send()
        .await
        .unwrap();
    assert_eq!(withdrawn.status(), 200);
    assert_problem(s.redeem_as(&s.app, &s.staff, visit, s.benefit, "w2").await, 409, "benefit_unavailable").await;
    assert_eq!(s.used().await, 0);
    let counters =
        quota_counter::Entity::find().filter(quota_counter::Column::CardId.eq(s.holder.card_id)).count(&s.app.state.db).await.unwrap();
    assert_eq!(counters, 0, "a refused redemption takes no use");
    let (_, next) = s.visit().await;
    assert!(next["benefits"].as_array().unwrap().is_empty(), "a withdrawn benefit is no longer offered: {next}");
}

#[tokio::test]
async fn an_unlimited_benefit_is_redeemed_every_time_without_a_counter() {
    let s = scene_on(spawn_app().await, Value::Null, "unlimited").await;
    let (visit, verified) = s.visit().await;
    assert_eq!(verified["benefits"][0]["remaining"], Value::Null);
    let mut answered = Vec::new();
    for key in ["u1", "u2", "u3"] {
        let (status, body) = json(s.redeem_as(&s.app, &s.staff, visit, s.benefit, key).await).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["status"], "completed");
        answered.push(body);
    }
    // What the response said is what a later read shows.
    let (_, listed) = json(s.app.get_as("/api/v1/merchant/redemptions", &s.staff.access).await).await;
    for body in &answered {
        let stored = listed["items"].as_array().unwrap().iter().find(|r| r["id"] == body["id"]).expect("listed");
        assert_eq!(stored["created_at"], body["created_at"]);
    }
    assert_eq!(s.used().await, 3);
    let counters =
        quota_counter::Entity::find().filter(quota_counter::Column::CardId.eq(s.holder.card_id)).count(&s.app.state.db).await.unwrap();
    assert_eq!(counters, 0);
    // A replayed key returns the first response and records nothing more.
    let (status, again) = json(s.redeem_as(&s.app, &s.staff, visit, s.benefit, "u1").await).await;
    assert_eq!(status, 201);
    assert_eq!(s.used().await, 3, "{again}");
}

#[tokio::test]
async fn an_expired_or_revoked_card_fails_with_its_own_code_and_opens_no_visit() {
    // The active-card rule is applied by the scan itself (in SQL on PostgreSQL); the codes
    // come from the card's state. Both must agree, or a refused scan would leave a visit.
    let s = scene().await;
    let visits = || visit::Entity::find().filter(visit::Column::CardId.eq(s.holder.card_id)).count(&s.app.state.db);
    let set = |column: card::Column, value: sea_orm::Value| {
        card::Entity::update_many()
            .col_expr(column, sea_orm::sea_query::Expr::value(value))
            .filter(card::Column::Id.eq(s.holder.card_id))
            .exec(&s.app.state.db)
    };
    let qr = s.qr().await;
    set(card::Column::ValidUntil, chrono::Utc::now().checked_sub_signed(Duration::seconds(1)).unwrap().into()).await.unwrap();
    assert_problem(s.verify_as(&s.app, &s.staff, &qr).await, 409, "card_expired").await;
    assert_eq!(visits().await.unwrap(), 0);

    set(card::Column::ValidUntil, chrono::Utc::now().checked_add_signed(Duration::days(365)).unwrap().into()).await.unwrap();
    set(card::Column::Status, "revoked".into()).await.unwrap();
    assert_problem(s.verify_as(&s.app, &s.staff, &qr).await, 409, "card_revoked").await;
    assert_eq!(visits().await.unwrap(), 0);

    // The same token, once the card is active again, opens its visit: refusals did not
    // consume it.
    set(card::Column::Status, "active".into()).await.unwrap();
    let (status, body) = json(s.verify_as(&s.app, &s.staff, &qr).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(visits().await.unwrap(), 1);
}

/// A request that stalls past its idempotency lease loses the key to the client's retry;
/// when it finally finishes, it must change nothing (the retry already redeemed).
#[tokio::test]
async fn a_request_whose_idempotency_claim_was_taken_over_changes_nothing() {
    use zhuge_card::redemption::{dto::RedeemRequest, idempotency, service};
    let s = scene_on(crate::support::spawn_app_with(|c| c.idempotency_lease_secs = 1).await, json!(3), "year").await;
    let (visit, _) = s.visit().await;
    let state = &s.app.state;
    let staff = entity::user::Entity::find_by_id(s.staff.user_id).one(&state.db).await.unwrap().unwrap();
    let origin = zhuge_card::auth::sessions::Origin { ip: None, user_agent: None };
    let (session, _) =
        zhuge_card::auth::sessions::open(&state.db, &state.keyring, &staff, Role::MerchantStaff, &origin, state.clock.now()).await.unwrap();
    // The same body the HTTP handler hashes, so that the retry matches the claim.
    let request = RedeemRequest { visit_id: visit, benefit_id: s.benefit };
    let hash = zhuge_card::crypto::sha256_hex(&serde_json::to_vec(&request).unwrap());

    let (session, benefit) = (&session, s.benefit);
    let stalled = idempotency::idempotent(state, staff.id, "fenced", &hash, zhuge_card::error::Lang::Zh, |claim| async move {
        tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
        service::redeem(state, session, None, &claim, visit, benefit).await
    });
    let retry = async {
        tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
        s.redeem_as(&s.app, &s.staff, visit, s.benefit, "fenced").await
    };
    let (stalled, retry) = tokio::join!(stalled, retry);
    let (status, body) = json(retry).await;
    assert_eq!(status, 201, "the retry took the key over and redeemed: {body}");
    let lost = stalled.err().map(|e| e.code().as_str());
    assert_eq!(lost, Some("idempotency_in_flight"), "the stalled request must not redeem as well");
    // One redemption, one use, and the key answers the retry's response.
    assert_eq!(s.used().await, 1);
    let counter = quota_counter::Entity::find().filter(quota_counter::Column::CardId.eq(s.holder.card_id)).one(&state.db).await.unwrap();
    assert_eq!(counter.map(|c| c.used), Some(1));
    let replay = s.redeem_as(&s.app, &s.staff, visit, s.benefit, "fenced").await;
    assert_eq!(replay.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    let (_, again) = json(replay).await;
    assert_eq!(again["id"], body["id"]);
}

#[tokio::test]
async fn the_revocation_feed_pages_by_version_until_more_is_false() {
    let s = scene().await;
    let reviewer = s.app.admin(Role::Reviewer).await;
    let mut suspended = vec![s.holder.card_id];
    for n in 0..2 {
        suspended.push(s.app.issue_card(&format!("feed{n}"), "李四海", &id_number(60 + n), "C", "sci_tech").await.card_id);
    }
    for card in &suspended {
        let path = format!("/api/v1/admin/cards/{card}/suspend");
        assert_eq!(s.app.post_as(&path, &reviewer.access, &json!({"reason": "核查"})).await.status(), 200);
    }

    let (mut since, mut seen, mut pages) = (0, Vec::new(), 0);
    loop {
        let (status, feed) = json(s.app.get(&format!("/api/v1/cards/revocations?since={since}&limit=2")).await).await;
        assert_eq!(status, 200, "{feed}");
        let items = feed["items"].as_array().unwrap();
        assert!(items.len() <= 2, "{feed}");
        seen.extend(items.iter().map(|i| i["card_ref"].as_str().unwrap().parse::<Uuid>().unwrap()));
        since = feed["next_since"].as_i64().unwrap();
        pages += 1;
        if !feed["more"].as_bool().unwrap() {
            break;
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(seen, suspended, "each change once, in order");
    // The default page holds them all; bad limits are refused, not clamped.
    let (_, feed) = json(s.app.get("/api/v1/cards/revocations?since=0").await).await;
    assert_eq!((feed["items"].as_array().unwrap().len(), feed["more"].as_bool()), (3, Some(false)));
    for bad in ["0", "1001", "x"] {
        let status = s.app.get(&format!("/api/v1/cards/revocations?limit={bad}")).await.status();
        assert!(status == 422 || status == 400, "limit={bad}: {status}");
    }
}

#[tokio::test]
async fn the_desk_list_filters_by_staff_and_beijing_dates_and_pages_by_time() {
    let (settings, db) = test_settings().await;
    let clock = Clock::manual(chrono::DateTime::parse_from_rfc3339("2026-12-01T23:56:00+08:00").unwrap().to_utc());
    let s = scene_on(spawn_with_settings(settings, db, clock.clone()).await, json!(10), "year").await;
    let manager = s.app.account(Role::MerchantManager, Some(s.partner)).await.1;

    // Two at the staff member's desk either side of midnight in Beijing (both on 1 December
    // in UTC), one at the manager's just after.
    let (visit, _) = s.visit().await;
    let (status, first) = json(s.redeem_as(&s.app, &s.staff, visit, s.benefit, "d1").await).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["benefit_title"], "专家号优先");
    clock.set(chrono::DateTime::parse_from_rfc3339("2026-12-02T00:01:00+08:00").unwrap().to_utc());
    let (visit, _) = s.visit().await;
    let (_, second) = json(s.redeem_as(&s.app, &s.staff, visit, s.benefit, "d2").await).await;
    clock.advance(Duration::minutes(2));
    let (status, verified) = json(s.verify_as(&s.app, &manager, &s.qr().await).await).await;
    assert_eq!(status, 200, "{verified}");
    let visit: Uuid = verified["visit_id"].as_str().unwrap().parse().unwrap();
    let (_, third) = json(s.redeem_as(&s.app, &manager, visit, s.benefit, "d3").await).await;

    let list = |who: &Tokens, query: &str| {
        let req = s.app.auth(Method::GET, &format!("/api/v1/merchant/redemptions{query}"), &who.access);
        async move { json(req.send().await.unwrap()).await }
    };
    let ids = |page: &Value| page["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let id = |r: &Value| r["id"].as_str().unwrap().to_owned();

    let (status, mine) = list(&s.staff, "?staff=mine").await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(ids(&mine), [id(&second), id(&first)]);
    assert_eq!(mine["items"][0]["benefit_title"], "专家号优先");
    assert_eq!(mine["items"][0]["card_no"], s.holder.card_no.as_str());
    let (_, today) = list(&s.staff, "?staff=mine&from=2026-12-02&to=2026-12-02").await;
    assert_eq!(ids(&today), [id(&second)], "Beijing dates, not UTC ones");
    let (_, yesterday) = list(&s.staff, "?staff=mine&to=2026-12-01").await;
    assert_eq!(ids(&yesterday), [id(&first)]);
    let (_, desk) = list(&s.staff, "?from=2026-12-02").await;
    assert_eq!(ids(&desk), [id(&third), id(&second)], "no staff filter: the partner's");
    let (_, by_id) = list(&s.staff, &format!("?staff={}", s.staff.user_id)).await;
    assert_eq!(ids(&by_id), ids(&mine));

    // Staff name only themselves; a manager names anyone at the partner.
    let refused = assert_problem(list_raw(&s, &s.staff, &format!("?staff={}", manager.user_id)).await, 403, "forbidden").await;
    assert!(refused["detail"].as_str().is_some(), "{refused}");
    let (status, theirs) = list(&manager, &format!("?staff={}&from=2026-12-01&to=2026-12-02", s.staff.user_id)).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&theirs), ids(&mine));
    let (_, own) = list(&manager, "?staff=mine").await;
    assert_eq!(ids(&own), [id(&third)]);
    let (_, elsewhere) = list(&s.other_staff, "").await;
    assert_eq!(ids(&elsewhere), Vec::<String>::new(), "another partner's desk sees none of these");

    // Bad filters are 422 naming the parameter, never 500.
    for (query, field) in [
        ("?staff=someone", "staff"),
        ("?staff=", "staff"),
        ("?staff=%20mine", "staff"),
        ("?from=2026-12-03&to=2026-12-02", "from"),
        ("?from=2026-13-01", "from"),
        ("?to=yesterday", "to"),
        ("?cursor=nonsense", "cursor"),
        ("?limit=0", "limit"),
    ] {
        let problem = assert_problem(list_raw(&s, &s.staff, query).await, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }

    // A page at a time, newest first, each row once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = list(&manager, &format!("?limit=1{cursor}")).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, [id(&third), id(&second), id(&first)]);

    // What the lists say is what the database holds.
    let stored = redemption::Entity::find()
        .filter(redemption::Column::PartnerId.eq(s.partner))
        .filter(redemption::Column::StaffId.eq(s.staff.user_id))
        .all(&s.app.state.db)
        .await
        .unwrap();
    let mut stored: Vec<String> = stored.iter().map(|r| r.id.to_string()).collect();
    stored.sort();
    let mut listed = ids(&mine);
    listed.sort();
    assert_eq!(stored, listed);

    // The talent's own history names the benefit too, and so does a void.
    let (_, history) = json(s.app.get_as("/api/v1/me/redemptions", &s.holder.talent.access).await).await;
    assert_eq!(history["items"].as_array().unwrap().len(), 3);
    assert!(history["items"].as_array().unwrap().iter().all(|r| r["benefit_title"] == "专家号优先"), "{history}");
    let (status, voided) = json(
        s.app.post_as(&format!("/api/v1/merchant/redemptions/{}/void", id(&third)), &manager.access, &json!({"reason": "录入错误"})).await,
    )
    .await;
    assert_eq!(status, 200, "{voided}");
    assert_eq!((voided["status"].as_str(), voided["benefit_title"].as_str()), (Some("voided"), Some("专家号优先")));
}

async fn list_raw(s: &Scene, who: &Tokens, query: &str) -> reqwest::Response {
    s.app.get_as(&format!("/api/v1/merchant/redemptions{query}"), &who.access).await
}

/// On PostgreSQL at city scale, the desk list reads along an index: one staff member's
/// rows along `(partner_id, staff_id, created_at)`, the partner's along
/// `(partner_id, created_at)`, never a scan of every redemption.
#[tokio::test]
async fn the_desk_list_reads_along_an_index() {
    use sea_orm::{ConnectionTrait, DbBackend, QuerySelect, QueryTrait, Statement};
    use zhuge_card::redemption::service::{PartnerRedemptions, StaffScope};
    if crate::support::postgres_url().is_none() {
        eprintln!("skipped: query plans are checked on PostgreSQL (TEST_DATABASE_URL)");
        return;
    }
    let app = spawn_app().await;
    let db = &app.state.db;
    // 200 partners, 4 staff each, 40 000 redemptions over half a day.
    db.execute_unprepared(
        "INSERT INTO redemptions (id, card_id, benefit_id, partner_id, staff_id, visit_id, period_key, tier, day, status, created_at, tag)
         SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(),
           ('00000000-0000-0000-0000-' || lpad(to_hex(n % 200), 12, '0'))::uuid,
           ('00000000-0000-0000-0001-' || lpad(to_hex(n % 800), 12, '0'))::uuid,
           gen_random_uuid(), 'y2026', 'B', '2026-12-01', 'completed', timestamptz '2026-12-01 00:00+08' + n * interval '1 second', ''
         FROM generate_series(1, 40000) n",
    )
    .await
    .unwrap();
    db.execute_unprepared("ANALYZE redemptions").await.unwrap();
    let partner: Uuid = "00000000-0000-0000-0000-000000000007".parse().unwrap();
    let staff: Uuid = "00000000-0000-0000-0001-000000000007".parse().unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    let plan = |list: PartnerRedemptions| async move {
        let stmt = list.query(partner, None).limit(101).build(DbBackend::Postgres);
        let explain = Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("EXPLAIN {}", stmt.sql),
            stmt.values.map(|v| v.0).unwrap_or_default(),
        );
        let rows = db.query_all_raw(explain).await.unwrap();
        rows.iter().map(|r| r.try_get::<String>("", "QUERY PLAN").unwrap()).collect::<Vec<_>>().join("\n")
    };
    let today = |staff| PartnerRedemptions {
        benefit: None,
        staff,
        start: Some(zhuge_card::clock::beijing_midnight(day)),
        end: Some(zhuge_card::clock::beijing_midnight(day.succ_opt().unwrap())),
    };
    let mine = plan(today(StaffScope::One(staff))).await;
    assert!(mine.contains("idx_redemptions_partner_staff_created") && !mine.contains("Seq Scan"), "{mine}");
    let partners = plan(today(StaffScope::Partner)).await;
    assert!(partners.contains("idx_redemptions_partner_created") && !partners.contains("Seq Scan"), "{partners}");
}
