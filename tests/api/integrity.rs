//! Rules that must hold whatever the data or the timing: stored states only take values
//! the code knows (and unknown ones fail closed), card and application transitions under
//! races, and a deactivated partner's desk closes.

use entity::{card, redemption, visit};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use zhuge_card::accounts::dto::AccountStatus;
use zhuge_card::applications::dto::ApplicationStatus;
use zhuge_card::auth::Role;
use zhuge_card::catalog::dto::{District, PartnerCategory, Status};
use zhuge_card::catalog::period::Period;
use zhuge_card::classification::{Category, Tier};

use crate::support::cards::{application, id_number};
use crate::support::catalog::{benefit_body, partner_body};
use crate::support::{TestApp, assert_problem, json, postgres_url, spawn_app};

fn allowed(table: &str, column: &str) -> Vec<String> {
    let (_, _, values) = migration::STATE_CHECKS.iter().find(|(t, c, _)| *t == table && *c == column).unwrap();
    values.iter().map(|v| (*v).to_owned()).collect()
}

fn names<T: Copy>(all: &[T], f: impl Fn(T) -> String) -> Vec<String> {
    all.iter().map(|v| f(*v)).collect()
}

#[test]
fn the_database_checks_list_exactly_the_values_the_code_knows() {
    assert_eq!(allowed("users", "role"), names(&Role::ALL, |r| r.as_str().into()));
    assert_eq!(allowed("users", "status"), names(&AccountStatus::ALL, |s| s.as_str().into()));
    assert_eq!(allowed("applications", "status"), names(&ApplicationStatus::ALL, |s| s.as_str().into()));
    for (table, column) in [("applications", "claimed_tier"), ("cards", "tier")] {
        assert_eq!(allowed(table, column), names(&Tier::ALL, |t| t.letter().to_string()));
    }
    for table in ["applications", "cards"] {
        assert_eq!(allowed(table, "category"), names(&Category::ALL, |c| c.as_str().into()));
    }
    for table in ["partners", "benefits"] {
        assert_eq!(allowed(table, "status"), names(Status::ALL, |s| s.as_str().into()));
    }
    assert_eq!(allowed("partners", "category"), names(PartnerCategory::ALL, |c| c.as_str().into()));
    assert_eq!(allowed("partners", "district"), names(District::ALL, |d| d.as_str().into()));
    assert_eq!(allowed("benefits", "period"), names(&Period::ALL, |p| p.as_str().into()));
    // Card statuses as stored (`expired` is derived from `valid_until`, never stored).
    assert_eq!(allowed("cards", "status"), ["active", "suspended", "revoked"]);
    assert_eq!(allowed("redemptions", "status"), ["completed", "voided"]);
}

/// Drops the database's check on `table.column`, as a bug elsewhere or a manual edit
/// might have bypassed it.
async fn drop_check(app: &TestApp, table: &str, column: &str) {
    let statements = match postgres_url() {
        Some(_) => vec![format!("ALTER TABLE {table} DROP CONSTRAINT chk_{table}_{column}")],
        None => vec![format!("DROP TRIGGER chk_{table}_{column}_update"), format!("DROP TRIGGER chk_{table}_{column}_insert")],
    };
    for sql in statements {
        app.state.db.execute_unprepared(&sql).await.unwrap();
    }
}

struct Desk {
    partner: uuid::Uuid,
    benefit: uuid::Uuid,
    staff: crate::support::users::Tokens,
    operator: crate::support::users::Tokens,
}

async fn desk(app: &TestApp, name: &str) -> Desk {
    let operator = app.admin(Role::Operator).await;
    let partner = app.create_partner(&operator.access, partner_body(name)).await;
    let mut body = benefit_body("体检");
    body["quota"] = json!(5);
    body["valid_from"] = json!("2020-01-01T00:00:00Z");
    let benefit = app.create_benefit(&operator.access, partner, body).await;
    let staff = app.account(Role::MerchantStaff, Some(partner)).await.1;
    Desk { partner, benefit, staff, operator }
}

async fn qr(app: &TestApp, talent: &crate::support::users::Tokens) -> serde_json::Value {
    let (status, qr) = json(app.get_as("/api/v1/me/card/qr", &talent.access).await).await;
    assert_eq!(status, 200, "{qr}");
    qr["token"].clone()
}

#[tokio::test]
async fn unknown_stored_values_are_refused_by_the_database_and_fail_closed_when_present() {
    let app = spawn_app().await;
    let d = desk(&app, "体检中心").await;
    let holder = app.issue_card("typo", "李四", &id_number(91), "C", "social").await;
    let db = &app.state.db;
    let card_no = &holder.card_no;
    let set_status = |value: &str| {
        let sql = format!("UPDATE cards SET status = '{value}' WHERE card_no = '{card_no}'");
        async move { db.execute_unprepared(&sql).await }
    };
    // The database refuses a status the code does not know …
    assert!(set_status("activ").await.is_err(), "the database accepted an unknown card status");
    let bad_period = || {
        entity::benefit::Entity::update_many()
            .col_expr(entity::benefit::Column::Period, sea_orm::sea_query::Expr::value("fortnight"))
            .filter(entity::benefit::Column::Id.eq(d.benefit))
            .exec(&app.state.db)
    };
    assert!(bad_period().await.is_err(), "the database accepted an unknown period");

    // … and where one got in all the same, the service answers 500, never a usable card.
    drop_check(&app, "cards", "status").await;
    set_status("activ").await.unwrap();
    assert_problem(app.get_as("/api/v1/me/card", &holder.talent.access).await, 500, "internal_error").await;
    let res = app.get_as("/api/v1/me/card/qr", &holder.talent.access).await;
    assert_problem(res, 500, "internal_error").await;
    set_status("active").await.unwrap();

    // A benefit whose period the code does not know is not offered as unlimited.
    let token = qr(&app, &holder.talent).await;
    drop_check(&app, "benefits", "period").await;
    assert_eq!(bad_period().await.unwrap().rows_affected, 1);
    // Every instance reads it afresh after an admin write; here, a new catalogue version.
    app.state.cache.delete("catalog:version").await.unwrap();
    let res = app.post_as("/api/v1/merchant/verify", &d.staff.access, &json!({"qr": token})).await;
    assert_problem(res, 500, "internal_error").await;
    let visits = visit::Entity::find().filter(visit::Column::PartnerId.eq(d.partner)).count(&app.state.db).await.unwrap();
    assert_eq!(visits, 0, "a failed verification must not consume the token");
}

#[tokio::test]
async fn resume_and_revoke_racing_never_bring_a_revoked_card_back() {
    let app = spawn_app().await;
    let reviewer = app.admin(Role::Reviewer).await;
    for round in 0..12 {
        let holder = app.issue_card(&format!("race{round}"), "王五", &id_number(100 + round), "D", "youth").await;
        let url = |op: &str| format!("/api/v1/admin/cards/{}/{op}", holder.card_id);
        let (status, _) = json(app.post_as(&url("suspend"), &reviewer.access, &json!({"reason": "核查"})).await).await;
        assert_eq!(status, 200);
        let (resume, revoke) = tokio::join!(
            app.post_as(&url("resume"), &reviewer.access, &json!({"reason": "核查完毕"})),
            app.post_as(&url("revoke"), &reviewer.access, &json!({"reason": "离开南阳"})),
        );
        let (resume, revoke) = (resume.status().as_u16(), revoke.status().as_u16());
        let stored = card::Entity::find_by_id(holder.card_id).one(&app.state.db).await.unwrap().unwrap();
        assert_eq!(revoke, 200, "revoking a suspended or active card always succeeds (round {round})");
        assert_eq!(stored.status, "revoked", "round {round}: resume {resume}, revoke {revoke}, card ended {}", stored.status);
        assert!(resume == 200 || resume == 409, "round {round}: resume answered {resume}");
        // The event history tells the same story as the row.
        let (_, detail) = json(app.get_as(&format!("/api/v1/admin/cards/{}", holder.card_id), &reviewer.access).await).await;
        let last = detail["events"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["kind"], "revoked", "round {round}: {detail}");
    }
}

#[tokio::test]
async fn approve_and_withdraw_racing_give_one_outcome() {
    let app = spawn_app().await;
    let reviewer = app.admin(Role::Reviewer).await;
    for round in 0..10 {
        let talent = app.talent(&format!("aw{round}")).await;
        let id = app.apply(&talent, &application("赵六", &id_number(200 + round))).await;
        let (approve, withdraw) = tokio::join!(
            app.post_as(&format!("/api/v1/admin/applications/{id}/approve"), &reviewer.access, &json!({"tier": "E", "category": "youth"})),
            app.post_as(&format!("/api/v1/me/applications/{id}/withdraw"), &talent.access, &json!({})),
        );
        let (approve, withdraw) = (approve.status().as_u16(), withdraw.status().as_u16());
        let cards = card::Entity::find().filter(card::Column::UserId.eq(talent.user_id)).count(&app.state.db).await.unwrap();
        let stored = entity::application::Entity::find_by_id(id).one(&app.state.db).await.unwrap().unwrap();
        match (approve, withdraw) {
            (200, 409) => assert_eq!((stored.status.as_str(), cards), ("approved", 1), "round {round}"),
            (409, 200) => assert_eq!((stored.status.as_str(), cards), ("withdrawn", 0), "round {round}"),
            other => panic!("round {round}: both or neither succeeded: {other:?}, stored {}, {cards} cards", stored.status),
        }
    }
}

#[tokio::test]
async fn a_deactivated_partners_staff_can_no_longer_verify_redeem_or_void_and_its_visits_close() {
    let app = spawn_app().await;
    let d = desk(&app, "南阳市第一人民医院").await;
    let holder = app.issue_card("desk", "钱七", &id_number(92), "B", "sci_tech").await;
    // Before: a visit open, one redemption made.
    let (_, visit) =
        json(app.post_as("/api/v1/merchant/verify", &d.staff.access, &json!({"qr": qr(&app, &holder.talent).await})).await).await;
    let visit_id = visit["visit_id"].as_str().unwrap().to_owned();
    let redeem = |key: &str| {
        app.auth(reqwest::Method::POST, "/api/v1/merchant/redemptions", &d.staff.access)
            .header("idempotency-key", key)
            .json(&json!({"visit_id": visit_id, "benefit_id": d.benefit}))
            .send()
    };
    let (status, first) = json(redeem("before").await.unwrap()).await;
    assert_eq!(status, 201, "{first}");

    let (status, _) =
        json(app.auth(reqwest::Method::DELETE, &format!("/api/v1/admin/partners/{}", d.partner), &d.operator.access).send().await.unwrap())
            .await;
    assert_eq!(status, 200);
    let open = visit::Entity::find()
        .filter(visit::Column::PartnerId.eq(d.partner))
        .filter(visit::Column::ExpiresAt.gt(app.state.clock.now()))
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(open, 0, "the partner's open visits stay open");

    // Redeem on the open visit, verify a fresh token, void the earlier redemption: all 403.
    assert_problem(redeem("after").await.unwrap(), 403, "partner_inactive").await;
    let token = qr(&app, &holder.talent).await;
    assert_problem(app.post_as("/api/v1/merchant/verify", &d.staff.access, &json!({"qr": token})).await, 403, "partner_inactive").await;
    let void = format!("/api/v1/merchant/redemptions/{}/void", first["id"].as_str().unwrap());
    assert_problem(app.post_as(&void, &d.staff.access, &json!({"reason": "误操作"})).await, 403, "partner_inactive").await;
    // Nothing changed: one redemption, still completed; the refused token was not consumed.
    let rows = redemption::Entity::find().filter(redemption::Column::PartnerId.eq(d.partner)).all(&app.state.db).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "completed");
    // Another instance (its own catalogue cache) agrees.
    let other = app.sibling().await;
    assert_problem(other.post_as("/api/v1/merchant/verify", &d.staff.access, &json!({"qr": token})).await, 403, "partner_inactive").await;

    // Re-activated, the desk works again, and the same token (never consumed) verifies.
    let res = app
        .auth(reqwest::Method::PATCH, &format!("/api/v1/admin/partners/{}", d.partner), &d.operator.access)
        .json(&json!({"status": "active"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // (The same instance: without Redis, instances do not share the catalogue version.)
    let (status, body) = json(app.post_as("/api/v1/merchant/verify", &d.staff.access, &json!({"qr": token})).await).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_disabled_talent_is_signed_out_and_their_card_stops_verifying_until_re_enabled() {
    let app = spawn_app().await;
    let d = desk(&app, "人才公寓").await;
    let holder = app.issue_card("gone", "孙八", &id_number(93), "C", "enterprise").await;
    let other = app.issue_card("stays", "周九", &id_number(94), "C", "enterprise").await;
    let reviewer = app.admin(Role::Reviewer).await;
    let token = qr(&app, &holder.talent).await;
    // `PATCH /admin/talents/{id}` with a status and a reason.
    let set = |talent: uuid::Uuid, status: &'static str, access: String, reason: &'static str| {
        app.auth(reqwest::Method::PATCH, &format!("/api/v1/admin/talents/{talent}"), &access)
            .json(&json!({"status": status, "reason": reason}))
            .send()
    };

    // Only reviewers (and super admins) may; a reason is required; talents only.
    let operator = app.admin(Role::Operator).await;
    let (who, r) = (holder.talent.user_id, reviewer.access.clone());
    let reason = "身份信息存疑";
    assert_problem(set(who, "disabled", operator.access.clone(), reason).await.unwrap(), 403, "forbidden").await;
    assert_problem(set(who, "disabled", r.clone(), " ").await.unwrap(), 422, "validation_failed").await;
    assert_problem(set(d.staff.user_id, "disabled", r.clone(), reason).await.unwrap(), 404, "not_found").await;

    let (status, account) = json(set(who, "disabled", r.clone(), reason).await.unwrap()).await;
    assert_eq!((status, account["status"].as_str()), (200, Some("disabled")), "{account}");
    // Signed out at once, and cannot sign in again.
    assert_problem(app.get_as("/api/v1/me", &holder.talent.access).await, 401, "session_revoked").await;
    assert_problem(app.wechat_login_raw(&format!("gone.{}", uuid::Uuid::new_v4().simple())).await, 403, "account_disabled").await;
    // A token shown before is refused, and the offline feed lists the card.
    assert_problem(app.post_as("/api/v1/merchant/verify", &d.staff.access, &json!({"qr": token})).await, 409, "card_suspended").await;
    let (_, feed) = json(app.get("/api/v1/cards/revocations?since=0").await).await;
    assert!(feed.to_string().contains(&holder.card_id.to_string()), "{feed}");
    let stored = card::Entity::find_by_id(holder.card_id).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!(stored.status, "suspended");
    let user = entity::user::Entity::find_by_id(holder.talent.user_id).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!(user.status, "disabled");
    // Others are untouched.
    assert!(qr(&app, &other.talent).await.is_string());

    // A renewal while the account is disabled does not hide why the card was suspended.
    let renew = format!("/api/v1/admin/cards/{}/renew", holder.card_id);
    assert_eq!(app.post_as(&renew, &reviewer.access, &json!({"reason": "续期"})).await.status(), 200);
    // Re-enabled: the card the disable suspended is active again.
    assert_eq!(set(who, "active", r.clone(), "核实无误").await.unwrap().status(), 200);
    let stored = card::Entity::find_by_id(holder.card_id).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!(stored.status, "active");
    let talent = app.talent("gone").await;
    let (status, body) = json(app.post_as("/api/v1/merchant/verify", &d.staff.access, &json!({"qr": qr(&app, &talent).await})).await).await;
    assert_eq!(status, 200, "{body}");

    // A card a reviewer suspended stays suspended when the account comes back.
    let suspend = format!("/api/v1/admin/cards/{}/suspend", other.card_id);
    assert_eq!(app.post_as(&suspend, &reviewer.access, &json!({"reason": "待核查"})).await.status(), 200);
    assert_eq!(set(other.talent.user_id, "disabled", r.clone(), reason).await.unwrap().status(), 200);
    assert_eq!(set(other.talent.user_id, "active", r.clone(), reason).await.unwrap().status(), 200);
    let stored = card::Entity::find_by_id(other.card_id).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!(stored.status, "suspended");
    let actions = entity::audit_log::Entity::find()
        .filter(entity::audit_log::Column::Action.is_in(["talent.disable", "talent.enable"]))
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(actions, 4);
}

#[tokio::test]
async fn the_card_status_rule_and_its_sql_condition_agree_for_every_status() {
    use zhuge_card::cards::dto::CardStatus;
    let app = spawn_app().await;
    let reviewer = app.admin(Role::Reviewer).await;
    let mut ids = Vec::new();
    for (n, op) in ["", "suspend", "revoke", "expire", "expire-suspend"].into_iter().enumerate() {
        let holder = app.issue_card(&format!("rule{n}"), "吴十", &id_number(300 + n as u32), "E", "youth").await;
        if op.starts_with("expire") {
            card::Entity::update_many()
                .col_expr(card::Column::ValidUntil, sea_orm::sea_query::Expr::value(app.state.clock.now() - chrono::Duration::seconds(1)))
                .filter(card::Column::Id.eq(holder.card_id))
                .exec(&app.state.db)
                .await
                .unwrap();
        }
        if let Some(op) = ["suspend", "revoke"].into_iter().find(|o| op.ends_with(o)) {
            let url = format!("/api/v1/admin/cards/{}/{op}", holder.card_id);
            assert_eq!(app.post_as(&url, &reviewer.access, &json!({"reason": "规则"})).await.status(), 200);
        }
        ids.push(holder.card_id);
    }
    let now = app.state.clock.now();
    let cards = card::Entity::find().filter(card::Column::Id.is_in(ids.clone())).all(&app.state.db).await.unwrap();
    let mut seen = std::collections::HashSet::new();
    for status in [CardStatus::Active, CardStatus::Expired, CardStatus::Suspended, CardStatus::Revoked] {
        let mut by_rule: Vec<_> = cards.iter().filter(|c| CardStatus::of(c, now).unwrap() == status).map(|c| c.id).collect();
        let mut by_sql: Vec<_> = card::Entity::find()
            .filter(card::Column::Id.is_in(ids.clone()))
            .filter(status.condition(now))
            .all(&app.state.db)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        by_rule.sort();
        by_sql.sort();
        assert_eq!(by_rule, by_sql, "{status:?}");
        seen.extend(by_rule);
    }
    assert_eq!(seen.len(), ids.len(), "every card has exactly one status");
}
