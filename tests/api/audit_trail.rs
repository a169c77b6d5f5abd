//! The audit trail cannot be rewritten without the key (issue: security findings): the
//! chain is keyed, redemptions and verifications are in it, and editing, deleting or
//! inserting any of them is found by `GET /admin/audit-log/verify`.

use chrono::{Duration, Utc};
use entity::{audit_head, audit_log, redemption, visit};
use reqwest::Method;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zhuge_card::auth::Role;
use zhuge_card::clock::Clock;

use crate::support::cards::{Issued, id_number};
use crate::support::catalog::{benefit_body, partner_body};
use crate::support::users::Tokens;
use crate::support::{TestApp, json, spawn_with_settings, test_settings};

struct Desk {
    app: TestApp,
    clock: Clock,
    operator: Tokens,
    partner: Uuid,
    benefit: Uuid,
    staff: Tokens,
    holder: Issued,
}

async fn desk() -> Desk {
    let (settings, db) = test_settings().await;
    let clock = Clock::manual(Utc::now());
    let app = spawn_with_settings(settings, db, clock.clone()).await;
    let operator = app.admin(Role::Operator).await;
    let partner = app.create_partner(&operator.access, partner_body("南阳市第一人民医院")).await;
    let mut body = benefit_body("专家号优先");
    body["quota"] = json!(10);
    body["period"] = json!("year");
    body["valid_from"] = json!("2020-01-01T00:00:00Z");
    let benefit = app.create_benefit(&operator.access, partner, body).await;
    let staff = app.account(Role::MerchantStaff, Some(partner)).await.1;
    let holder = app.issue_card("audited", "李四", &id_number(61), "C", "youth").await;
    Desk { app, clock, operator, partner, benefit, staff, holder }
}

impl Desk {
    /// Verifies a fresh QR: the verification's JSON.
    async fn verify(&self) -> Value {
        let (_, qr) = json(self.app.get_as("/api/v1/me/card/qr", &self.holder.talent.access).await).await;
        let (status, visit) =
            json(self.app.post_as("/api/v1/merchant/verify", &self.staff.access, &json!({"qr": qr["token"]})).await).await;
        assert_eq!(status, 200, "{visit}");
        visit
    }

    /// Verifies a fresh QR and redeems the benefit once: the redemption's JSON.
    async fn redeem(&self) -> Value {
        let visit = self.verify().await;
        let res = self
            .app
            .auth(Method::POST, "/api/v1/merchant/redemptions", &self.staff.access)
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&json!({"visit_id": visit["visit_id"], "benefit_id": self.benefit}))
            .send()
            .await
            .unwrap();
        let (status, body) = json(res).await;
        assert_eq!(status, 201, "{body}");
        body
    }

    async fn check(&self) -> Value {
        let (status, body) = json(self.app.get_as("/api/v1/admin/audit-log/verify", &self.operator.access).await).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn assert_intact(&self) -> Value {
        let check = self.check().await;
        assert_eq!(check["intact"], true, "{check}");
        check
    }

    async fn redemption_row(&self, id: &Value) -> redemption::Model {
        let id: Uuid = id.as_str().unwrap().parse().unwrap();
        redemption::Entity::find_by_id(id).one(&self.app.state.db).await.unwrap().unwrap()
    }
}

/// What someone with write access to the database but without the key can do: edit an
/// entry, then recompute its link and every later one with plain SHA-256 (the scheme the
/// chain used before it was keyed) and move the head to match.
async fn rechain_with_sha256(app: &TestApp, from_seq: i64) {
    let entries = audit_log::Entity::find().order_by_asc(audit_log::Column::Seq).all(&app.state.db).await.unwrap();
    let mut prev = "0".repeat(64);
    for e in entries {
        if e.seq < from_seq {
            prev = e.hash;
            continue;
        }
        let fields = [
            prev.clone(),
            e.seq.to_string(),
            e.id.to_string(),
            e.actor_id.map(|a| a.to_string()).unwrap_or_default(),
            e.actor_role.clone(),
            e.action.clone(),
            e.target_type.clone(),
            e.target_id.clone(),
            // serde_json sorts object keys (no `preserve_order`), as the canonical form does.
            e.before.as_ref().map(Value::to_string).unwrap_or_default(),
            e.after.as_ref().map(Value::to_string).unwrap_or_default(),
            e.ip.clone().unwrap_or_default(),
            e.request_id.clone().unwrap_or_default(),
            e.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        ];
        let mut hasher = Sha256::new();
        for f in fields {
            hasher.update((f.len() as u64).to_be_bytes());
            hasher.update(f.as_bytes());
        }
        let hash = hex::encode(hasher.finalize());
        audit_log::Entity::update_many()
            .col_expr(audit_log::Column::PrevHash, Expr::value(prev.clone()))
            .col_expr(audit_log::Column::Hash, Expr::value(hash.clone()))
            .filter(audit_log::Column::Seq.eq(e.seq))
            .exec(&app.state.db)
            .await
            .unwrap();
        audit_head::Entity::update_many()
            .col_expr(audit_head::Column::Seq, Expr::value(e.seq))
            .col_expr(audit_head::Column::Hash, Expr::value(hash.clone()))
            .exec(&app.state.db)
            .await
            .unwrap();
        prev = hash;
    }
}

#[tokio::test]
async fn an_entry_rewritten_and_rechained_with_sha256_is_found() {
    let d = desk().await;
    d.assert_intact().await;
    // The finding: a reviewer's view of a card's personal data becomes a suspension by
    // the command line, from no address.
    let reviewer = d.app.admin(Role::Reviewer).await;
    let res = d.app.get_as(&format!("/api/v1/admin/cards/{}/pii", d.holder.card_id), &reviewer.access).await;
    assert_eq!(res.status(), 200);
    let view = audit_log::Entity::find().filter(audit_log::Column::Action.eq("card.pii_view")).one(&d.app.state.db).await.unwrap().unwrap();
    audit_log::Entity::update_many()
        .col_expr(audit_log::Column::Action, Expr::value("card.suspend"))
        .col_expr(audit_log::Column::ActorRole, Expr::value("cli"))
        .col_expr(audit_log::Column::ActorId, Expr::value(Option::<Uuid>::None))
        .col_expr(audit_log::Column::Ip, Expr::value(Option::<String>::None))
        .filter(audit_log::Column::Seq.eq(view.seq))
        .exec(&d.app.state.db)
        .await
        .unwrap();
    rechain_with_sha256(&d.app, view.seq).await;
    let check = d.check().await;
    assert_eq!((check["intact"].as_bool(), check["broken_at"].as_i64()), (Some(false), Some(view.seq)), "{check}");
    assert_eq!(check["broken"]["reason"], "entry does not match its keyed hash");
}

#[tokio::test]
async fn a_redemption_and_the_verification_before_it_are_in_the_audit_log() {
    let d = desk().await;
    let done = d.redeem().await;
    let (status, page) =
        json(d.app.get_as(&format!("/api/v1/admin/audit-log?source=redemptions&partner_id={}", d.partner), &d.operator.access).await).await;
    assert_eq!(status, 200, "{page}");
    let entry = &page["items"][0];
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(entry["action"], "redemption.create");
    assert_eq!(entry["target_id"], done["id"]);
    assert_eq!(entry["actor_id"], json!(d.staff.user_id));
    assert_eq!(entry["after"]["partner_id"], json!(d.partner));
    assert_eq!(entry["after"]["card_id"], json!(d.holder.card_id));
    assert_eq!(entry["after"]["benefit_id"], json!(d.benefit));
    assert_eq!(entry["ip"], "127.0.0.1");
    assert_eq!(entry["created_at"], done["created_at"]);
    assert_eq!(entry["seq"], Value::Null);

    let (_, page) =
        json(d.app.get_as(&format!("/api/v1/admin/audit-log?source=verifications&card_id={}", d.holder.card_id), &d.operator.access).await)
            .await;
    let entry = &page["items"][0];
    assert_eq!((entry["action"].as_str(), entry["actor_id"].clone()), (Some("card.verify"), json!(d.staff.user_id)), "{page}");
    assert_eq!(entry["after"]["partner_id"], json!(d.partner));
    assert_eq!(entry["ip"], "127.0.0.1");
    // What the database holds: the row's tag and address.
    let row = d.redemption_row(&done["id"]).await;
    assert_eq!((row.ip.as_deref(), row.tag.len()), (Some("127.0.0.1"), 64));
    // A merchant cannot read the trail.
    let res = d.app.get_as("/api/v1/admin/audit-log?source=redemptions", &d.staff.access).await;
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn an_edited_deleted_or_inserted_redemption_is_found_before_and_after_it_is_anchored() {
    let d = desk().await;
    let first = d.redeem().await;
    let second = d.redeem().await;
    let db = &d.app.state.db;

    // Not anchored yet: the rows' own tags give an edit away.
    let row = d.redemption_row(&first["id"]).await;
    let set_tier = |tier: &'static str, id: Uuid| {
        redemption::Entity::update_many()
            .col_expr(redemption::Column::Tier, Expr::value(tier))
            .filter(redemption::Column::Id.eq(id))
            .exec(db)
    };
    set_tier("A", row.id).await.unwrap();
    let check = d.check().await;
    assert_eq!((check["intact"].as_bool(), check["broken"]["row_id"].as_str()), (Some(false), first["id"].as_str()), "{check}");
    assert_eq!(check["broken"]["source"], "redemptions");
    set_tier("C", row.id).await.unwrap();
    // A row made up without the key cannot carry a valid tag.
    let forged = redemption::Model { id: Uuid::now_v7(), tag: "0".repeat(64), ..row.clone() };
    forged.clone().into_active_model().reset_all().insert(db).await.unwrap();
    let check = d.check().await;
    assert_eq!(check["broken"]["row_id"].as_str(), Some(forged.id.to_string().as_str()), "{check}");
    redemption::Entity::delete_by_id(forged.id).exec(db).await.unwrap();
    d.assert_intact().await;

    // A minute on, a check anchors both rows in the chain.
    d.clock.advance(Duration::seconds(90));
    let check = d.assert_intact().await;
    assert!(check["rows"].as_u64().unwrap() >= 4, "two redemptions and two visits: {check}");
    let anchors = audit_log::Entity::find().filter(audit_log::Column::Action.eq("audit.anchor")).all(db).await.unwrap();
    assert_eq!(anchors.iter().map(|a| a.target_type.as_str()).collect::<Vec<_>>(), ["redemptions", "visits"]);
    let anchor = anchors[0].seq;

    // Edited (even with a tag recomputed by someone who has no key): the window no longer
    // matches its anchor.
    set_tier("A", row.id).await.unwrap();
    let check = d.check().await;
    assert_eq!((check["intact"].as_bool(), check["broken_at"].as_i64()), (Some(false), Some(anchor)), "{check}");
    assert!(check["broken"]["reason"].as_str().unwrap().contains("rows changed since anchored"), "{check}");
    set_tier("C", row.id).await.unwrap();
    d.assert_intact().await;
    // Deleted.
    let kept = d.redemption_row(&second["id"]).await;
    redemption::Entity::delete_by_id(kept.id).exec(db).await.unwrap();
    let check = d.check().await;
    assert_eq!(check["broken_at"].as_i64(), Some(anchor), "{check}");
    assert!(check["broken"]["reason"].as_str().unwrap().contains("1 rows, anchored 2"), "{check}");
    kept.clone().into_active_model().reset_all().insert(db).await.unwrap();
    d.assert_intact().await;
    // Inserted into the anchored window, with a copy of a genuine row's tag.
    let copy = redemption::Model { id: Uuid::now_v7(), created_at: kept.created_at, ..kept.clone() };
    copy.into_active_model().reset_all().insert(db).await.unwrap();
    let check = d.check().await;
    assert_eq!(check["broken_at"].as_i64(), Some(anchor), "{check}");
}

#[tokio::test]
async fn a_void_undone_in_the_database_is_found() {
    let d = desk().await;
    let done = d.redeem().await;
    let res = d
        .app
        .post_as(
            &format!("/api/v1/merchant/redemptions/{}/void", done["id"].as_str().unwrap()),
            &d.staff.access,
            &json!({"reason": "顾客取消"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    d.clock.advance(Duration::seconds(90));
    d.assert_intact().await;
    let id: Uuid = done["id"].as_str().unwrap().parse().unwrap();
    redemption::Entity::update_many()
        .col_expr(redemption::Column::Status, Expr::value("completed"))
        .filter(redemption::Column::Id.eq(id))
        .exec(&d.app.state.db)
        .await
        .unwrap();
    let check = d.check().await;
    assert_eq!(check["intact"], false, "{check}");
    assert_eq!(check["broken"]["reason"], "the voided redemption is missing or not voided");
    // And a void made in the database, with no void recorded, is found too.
    let other = d.redeem().await;
    d.clock.advance(Duration::seconds(90));
    let other: Uuid = other["id"].as_str().unwrap().parse().unwrap();
    redemption::Entity::update_many()
        .col_expr(redemption::Column::Status, Expr::value("voided"))
        .filter(redemption::Column::Id.is_in([id, other]))
        .exec(&d.app.state.db)
        .await
        .unwrap();
    let check = d.check().await;
    assert_eq!(
        (check["broken"]["row_id"].as_str(), check["broken"]["reason"].as_str()),
        (Some(other.to_string().as_str()), Some("voided, but no void is recorded")),
        "{check}"
    );
}

#[tokio::test]
async fn a_deleted_verification_is_found_once_anchored() {
    let d = desk().await;
    let shown = d.verify().await;
    d.verify().await;
    d.clock.advance(Duration::seconds(90));
    d.assert_intact().await;
    let id: Uuid = shown["visit_id"].as_str().unwrap().parse().unwrap();
    visit::Entity::delete_by_id(id).exec(&d.app.state.db).await.unwrap();
    let check = d.check().await;
    assert_eq!((check["intact"].as_bool(), check["broken"]["source"].as_str()), (Some(false), Some("visits")), "{check}");
    assert!(check["broken"]["reason"].as_str().unwrap().contains("1 rows, anchored 2"), "{check}");
}

#[tokio::test]
async fn verification_streams_in_parts_from_a_checkpoint() {
    let d = desk().await;
    for name in ["甲", "乙", "丙", "丁"] {
        d.app.create_partner(&d.operator.access, partner_body(name)).await;
    }
    let whole = d.assert_intact().await;
    let total = whole["entries"].as_u64().unwrap();
    let (_, part) = json(d.app.get_as("/api/v1/admin/audit-log/verify?max_entries=3", &d.operator.access).await).await;
    assert_eq!(
        (part["intact"].as_bool(), part["complete"].as_bool(), part["entries"].as_u64()),
        (Some(true), Some(false), Some(3)),
        "{part}"
    );
    let (seq, hash) = (part["checkpoint"]["seq"].as_i64().unwrap(), part["checkpoint"]["hash"].as_str().unwrap());
    assert_eq!(seq, 3);
    let (_, rest) =
        json(d.app.get_as(&format!("/api/v1/admin/audit-log/verify?from_seq={seq}&from_hash={hash}"), &d.operator.access).await).await;
    assert_eq!((rest["complete"].as_bool(), rest["entries"].as_u64()), (Some(true), Some(total - 3)), "{rest}");
    assert_eq!(rest["checkpoint"], whole["checkpoint"]);
    // A checkpoint that is not the chain's: the next entry does not link to it.
    let (_, wrong) = json(
        d.app.get_as(&format!("/api/v1/admin/audit-log/verify?from_seq={seq}&from_hash={}", "a".repeat(64)), &d.operator.access).await,
    )
    .await;
    assert_eq!((wrong["intact"].as_bool(), wrong["broken_at"].as_i64()), (Some(false), Some(4)), "{wrong}");
    // A checkpoint past any entry (schemathesis sent the largest seq there is): no link.
    let (status, past) = json(
        d.app
            .get_as(&format!("/api/v1/admin/audit-log/verify?from_seq={}&from_hash={}", i64::MAX, "0".repeat(64)), &d.operator.access)
            .await,
    )
    .await;
    assert_eq!((status, past["intact"].as_bool()), (200, Some(false)), "{past}");
    // Half a checkpoint, or a budget of nothing: a clear error.
    for query in [format!("from_seq={seq}"), "max_entries=0".to_owned(), format!("from_seq={seq}&from_hash=zz")] {
        let res = d.app.get_as(&format!("/api/v1/admin/audit-log/verify?{query}"), &d.operator.access).await;
        assert_eq!(res.status(), 422, "{query}");
    }
}

#[tokio::test]
async fn a_chain_written_before_it_was_keyed_is_taken_over_when_intact() {
    let d = desk().await;
    d.redeem().await;
    // As an earlier release left it: SHA-256 links.
    rechain_with_sha256(&d.app, 1).await;
    assert_eq!(d.check().await["intact"], false);
    // The next start re-keys it (and records that it did).
    let next = d.app.sibling().await;
    let (_, check) = json(next.get_as("/api/v1/admin/audit-log/verify", &d.operator.access).await).await;
    assert_eq!(check["intact"], true, "{check}");
    let rekey = audit_log::Entity::find().filter(audit_log::Column::Action.eq("audit.rekey")).one(&d.app.state.db).await.unwrap();
    assert!(rekey.is_some());
}
