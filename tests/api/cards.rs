//! The card lifecycle, each change an event and an audit entry.

use chrono::Duration;
use sea_orm::EntityTrait;
use serde_json::json;
use zhuge_card::auth::Role;
use zhuge_card::clock::Clock;

use crate::support::cards::{application, id_number};
use crate::support::{assert_problem, json, spawn_app, spawn_with_settings, test_settings};

#[tokio::test]
async fn suspend_resume_revoke_renew_change() {
    let app = spawn_app().await;
    let issued = app.issue_card("life", "陈立", &id_number(20), "C", "social").await;
    let reviewer = app.admin(Role::Reviewer).await;
    let op = |action: &str, body: serde_json::Value| {
        app.post_as(&format!("/api/v1/admin/cards/{}/{action}", issued.card_id), &reviewer.access, &body)
    };
    let reason = json!({"reason": "核查中"});

    let (status, c) = json(op("suspend", reason.clone()).await).await;
    assert_eq!((status, c["status"].as_str()), (200, Some("suspended")));
    assert_problem(op("suspend", reason.clone()).await, 409, "card_state_conflict").await;
    assert_eq!(json(app.get_as("/api/v1/me/card", &issued.talent.access).await).await.1["status"], "suspended");
    let (_, c) = json(op("resume", reason.clone()).await).await;
    assert_eq!(c["status"], "active");
    let before = c["valid_until"].as_str().unwrap().to_owned();
    let (_, c) = json(op("renew", json!({"reason": "续期", "valid_years": 2})).await).await;
    assert!(c["valid_until"].as_str().unwrap() > before.as_str());
    assert_problem(op("renew", json!({"reason": "续期", "valid_years": 11})).await, 422, "validation_failed").await;
    let res = app
        .auth(reqwest::Method::PATCH, &format!("/api/v1/admin/cards/{}", issued.card_id), &reviewer.access)
        .json(&json!({"tier": "A", "reason": "晋升"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(res).await.1["tier"], "A");
    assert_problem(op("suspend", json!({"reason": ""})).await, 422, "validation_failed").await;
    let (_, c) = json(op("revoke", json!({"reason": "离开南阳"})).await).await;
    assert_eq!(c["status"], "revoked");
    assert_problem(op("resume", reason.clone()).await, 409, "card_state_conflict").await;
    assert_problem(op("suspend", reason.clone()).await, 409, "card_state_conflict").await;

    let kinds: Vec<String> = c["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["issued", "suspended", "resumed", "renewed", "changed", "revoked"]);
    assert_eq!(c["events"][5]["reason"], "离开南阳");
    assert_eq!(c["events"][5]["actor_id"], reviewer.user_id.to_string());
    let (_, log) =
        json(app.get_as(&format!("/api/v1/admin/audit-log?target_id={}", issued.card_id), &app.admin(Role::Operator).await.access).await)
            .await;
    let actions: Vec<&str> = log["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["card.revoke", "card.change", "card.renew", "card.resume", "card.suspend", "card.issue"]);

    // Revoked: the person may apply again.
    assert_problem(app.get_as("/api/v1/me/card", &issued.talent.access).await, 404, "no_card").await;
    app.apply(&issued.talent, &application("陈立", &id_number(20))).await;
}

#[tokio::test]
async fn search_and_the_audited_pii_view() {
    let app = spawn_app().await;
    let a = app.issue_card("s1", "欧阳娜娜", &id_number(21), "A", "civil").await;
    app.issue_card("s2", "张三", &id_number(22), "E", "rural").await;
    let reviewer = app.admin(Role::Reviewer).await;
    let get = |q: &str| app.get_as(&format!("/api/v1/admin/cards?{q}"), &reviewer.access);
    let (_, by_no) = json(get(&format!("card_no={}", a.card_no)).await).await;
    assert_eq!(by_no["items"][0]["holder"], "欧**娜");
    let (_, by_name) = json(get("name=%E6%AC%A7%E9%98%B3%E5%A8%9C%E5%A8%9C").await).await;
    assert_eq!(by_name["items"].as_array().unwrap().len(), 1);
    let (_, by_tier) = json(get("tier=E").await).await;
    assert_eq!(by_tier["items"][0]["holder"], "张*");
    let (_, active) = json(get("status=active").await).await;
    assert_eq!(active["items"].as_array().unwrap().len(), 2);
    assert_problem(get("status=lost").await, 422, "validation_failed").await;

    let (status, pii) = json(app.get_as(&format!("/api/v1/admin/cards/{}/pii", a.card_id), &reviewer.access).await).await;
    assert_eq!(status, 200);
    assert_eq!((pii["holder_name"].as_str(), pii["id_number"].as_str()), (Some("欧阳娜娜"), Some(id_number(21).as_str())));
    assert_eq!(pii["phone"], serde_json::Value::Null, "no phone bound yet");
    let res = app.post_as("/api/v1/auth/wechat/phone", &a.talent.access, &serde_json::json!({"code": "phone.13812345678"})).await;
    assert_eq!(res.status(), 200);
    let (_, pii) = json(app.get_as(&format!("/api/v1/admin/cards/{}/pii", a.card_id), &reviewer.access).await).await;
    assert_eq!(pii["phone"], "13812345678", "the reveal shows the bound phone in full");
    let operator = app.admin(Role::Operator).await;
    let (_, log) = json(app.get_as("/api/v1/admin/audit-log?action=card.pii_view", &operator.access).await).await;
    assert_eq!(log["items"].as_array().unwrap().len(), 2, "each reveal is audited: {log}");
    assert_eq!(log["items"][0]["actor_id"], reviewer.user_id.to_string());
    assert_eq!(log["items"][0]["target_id"], a.card_id.to_string());
    // Talents and operators do not manage cards.
    assert_problem(app.get_as("/api/v1/admin/cards", &a.talent.access).await, 403, "forbidden").await;
    assert_problem(app.get_as(&format!("/api/v1/admin/cards/{}/pii", a.card_id), &operator.access).await, 403, "forbidden").await;
}

#[tokio::test]
async fn expiry_is_derived_from_valid_until_in_beijing_time() {
    let (settings, db) = test_settings().await;
    // 10:00 Beijing on 27 Nov 2026.
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00+08:00").unwrap().to_utc();
    let clock = Clock::manual(start);
    let app = spawn_with_settings(settings, db, clock.clone()).await;
    let issued = app.issue_card("exp", "刘一", &id_number(23), "B", "youth").await;
    let (_, card) = json(app.get_as("/api/v1/me/card", &issued.talent.access).await).await;
    assert_eq!(card["valid_until"], "2029-11-27T16:00:00Z"); // 00:00 on 28 Nov 2029, Beijing
    // One second before midnight in Beijing it is still valid; at midnight it has expired.
    clock.set(chrono::DateTime::parse_from_rfc3339("2029-11-27T23:59:59+08:00").unwrap().to_utc());
    let t = app.talent("exp").await;
    assert_eq!(json(app.get_as("/api/v1/me/card", &t.access).await).await.1["status"], "active");
    clock.advance(Duration::seconds(1));
    assert_eq!(json(app.get_as("/api/v1/me/card", &t.access).await).await.1["status"], "expired");
}

#[tokio::test]
async fn validity_by_tier_and_the_void_window_come_from_the_settings() {
    let (mut settings, db) = test_settings().await;
    settings.card_valid_years = "A=5,E=1".parse().unwrap();
    settings.void_window_secs = 600;
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00+08:00").unwrap().to_utc();
    let clock = Clock::manual(start);
    let app = spawn_with_settings(settings, db, clock.clone()).await;

    // Approved without `valid_years`: the tier's configured validity.
    let top = app.issue_card("top", "刘二", &id_number(24), "A", "sci_tech").await;
    let young = app.issue_card("young", "刘三", &id_number(25), "E", "youth").await;
    let (_, card) = json(app.get_as("/api/v1/me/card", &top.talent.access).await).await;
    assert_eq!(card["valid_until"], "2031-11-27T16:00:00Z");
    let (_, card) = json(app.get_as("/api/v1/me/card", &young.talent.access).await).await;
    assert_eq!(card["valid_until"], "2027-11-27T16:00:00Z");
    // Renewed without `valid_years`: one more year for tier E.
    let reviewer = app.admin(Role::Reviewer).await;
    let url = format!("/api/v1/admin/cards/{}/renew", young.card_id);
    let (status, detail) = json(app.post_as(&url, &reviewer.access, &json!({"reason": "续期"})).await).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["valid_until"], "2028-11-27T16:00:00Z");
    let stored = entity::card::Entity::find_by_id(young.card_id).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!(stored.valid_until.to_rfc3339(), "2028-11-27T16:00:00+00:00");

    // Voids: ten minutes, not a day.
    let operator = app.admin(Role::Operator).await;
    let partner = app.create_partner(&operator.access, crate::support::catalog::partner_body("书屋")).await;
    let mut body = crate::support::catalog::benefit_body("借阅");
    body["valid_from"] = json!("2020-01-01T00:00:00Z");
    body["tiers"] = json!(["A", "E"]);
    let benefit = app.create_benefit(&operator.access, partner, body).await;
    let staff = app.account(Role::MerchantStaff, Some(partner)).await.1;
    let mut redeemed = Vec::new();
    for (i, holder) in [&top, &young].into_iter().enumerate() {
        let (_, qr) = json(app.get_as("/api/v1/me/card/qr", &holder.talent.access).await).await;
        let (_, visit) = json(app.post_as("/api/v1/merchant/verify", &staff.access, &json!({"qr": qr["token"]})).await).await;
        let res = app
            .auth(reqwest::Method::POST, "/api/v1/merchant/redemptions", &staff.access)
            .header("idempotency-key", format!("w{i}"))
            .json(&json!({"visit_id": visit["visit_id"], "benefit_id": benefit}))
            .send()
            .await
            .unwrap();
        let (status, r) = json(res).await;
        assert_eq!(status, 201, "{r}");
        redeemed.push(r["id"].as_str().unwrap().to_owned());
    }
    let void = |id: &str, access: &str| app.post_as(&format!("/api/v1/merchant/redemptions/{id}/void"), access, &json!({"reason": "取消"}));
    clock.advance(Duration::minutes(9));
    assert_eq!(void(&redeemed[0], &staff.access).await.status(), 200);
    clock.advance(Duration::minutes(2));
    let fresh = staff.renewed(&app, Role::MerchantStaff);
    assert_problem(void(&redeemed[1], &fresh).await, 409, "void_window_passed").await;
    let row = entity::redemption::Entity::find_by_id(redeemed[1].parse::<uuid::Uuid>().unwrap()).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!(row.status, "completed");
}
