//! Personal data at rest, and the audit chain's tamper evidence.

use std::time::{Duration, Instant};

use entity::outbox;
use sea_orm::{ConnectionTrait, EntityTrait};
use serde_json::json;
use zhuge_card::auth::Role;

use crate::support::cards::id_number;
use crate::support::{json, postgres_url, spawn_app, spawn_app_with};

/// Everything the database holds, as bytes: the SQLite files, or a PostgreSQL dump.
pub(crate) fn database_bytes(app: &crate::support::TestApp) -> Vec<u8> {
    match postgres_url() {
        Some(_) => {
            let url = app.state.settings.database_url();
            let out =
                std::process::Command::new("pg_dump").args(["--data-only", "--no-owner", &url]).output().expect("pg_dump is installed");
            assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
            out.stdout
        }
        None => {
            let mut all = Vec::new();
            for entry in std::fs::read_dir(&app.state.settings.data_dir).unwrap() {
                let path = entry.unwrap().path();
                if path.file_name().unwrap().to_string_lossy().starts_with("test.db") {
                    all.extend(std::fs::read(path).unwrap());
                }
            }
            all
        }
    }
}

pub(crate) fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn no_id_number_phone_or_name_in_clear_in_the_database() {
    let app = spawn_app().await;
    let id = id_number(31);
    let issued = app.issue_card("pii", "诸葛孔明", &id, "A", "sci_tech").await;
    let res = app.post_as("/api/v1/auth/wechat/phone", &issued.talent.access, &json!({"code": "phone.13912345678"})).await;
    assert_eq!(res.status(), 200);
    let reviewer = app.admin(Role::Reviewer).await;
    app.get_as(&format!("/api/v1/admin/cards/{}/pii", issued.card_id), &reviewer.access).await;
    // Checkpoint so that SQLite's write-ahead log and main file both hold current data.
    if postgres_url().is_none() {
        app.state.db.execute_unprepared("PRAGMA wal_checkpoint(FULL)").await.unwrap();
    }
    let bytes = database_bytes(&app);
    assert!(bytes.len() > 1000, "the dump is suspiciously small");
    assert!(contains(&bytes, &issued.card_no), "the check itself must find what is in clear");
    for secret in [id.as_str(), &id[..14], "13912345678", "诸葛孔明"] {
        assert!(!contains(&bytes, secret), "{secret} is stored in clear");
    }
}

#[tokio::test]
async fn editing_one_audit_row_is_detected() {
    let app = spawn_app().await;
    let operator = app.admin(Role::Operator).await;
    for name in ["甲", "乙", "丙"] {
        app.create_partner(&operator.access, crate::support::catalog::partner_body(name)).await;
    }
    let (_, ok) = json(app.get_as("/api/v1/admin/audit-log/verify", &operator.access).await).await;
    assert_eq!((ok["intact"].as_bool(), ok["entries"].as_u64(), ok["complete"].as_bool()), (Some(true), Some(4), Some(true)), "{ok}");
    app.state.db.execute_unprepared("UPDATE audit_log SET actor_role = 'super_admin' WHERE seq = 3").await.unwrap();
    let (_, broken) = json(app.get_as("/api/v1/admin/audit-log/verify", &operator.access).await).await;
    assert_eq!((broken["intact"].as_bool(), broken["broken_at"].as_i64()), (Some(false), Some(3)), "{broken}");
    assert_eq!(broken["broken"]["reason"], "entry does not match its keyed hash");
}

#[tokio::test]
async fn deleting_the_newest_audit_row_is_detected() {
    let app = spawn_app().await;
    let operator = app.admin(Role::Operator).await;
    app.create_partner(&operator.access, crate::support::catalog::partner_body("丁")).await;
    app.state.db.execute_unprepared("DELETE FROM audit_log WHERE seq = 2").await.unwrap();
    let (_, broken) = json(app.get_as("/api/v1/admin/audit-log/verify", &operator.access).await).await;
    assert_eq!(broken["intact"], false);
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn notifications_survive_a_restart_and_are_sent_once() {
    // The first instance writes the notification but has no worker: it "stops" before
    // delivering. The next instance delivers it; a third finds nothing left to send.
    let first = spawn_app_with(|s| s.outbox_worker = false).await;
    first.issue_card("notify", "马可", &id_number(32), "B", "youth").await;
    assert!(first.wechat.messages().is_empty());
    let rows = outbox::Entity::find().all(&first.state.db).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "pending");

    let second = first.sibling_with(|s| s.outbox_worker = true).await;
    wait_for("delivery", async || !first.wechat.messages().is_empty()).await;
    let third = first.sibling_with(|s| s.outbox_worker = true).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let messages = first.wechat.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["touser"], "oid_notify");
    assert_eq!(messages[0]["template_id"], "card_issued");
    let row = outbox::Entity::find().one(&first.state.db).await.unwrap().unwrap();
    assert_eq!(row.status, "sent");
    drop((second, third));
}

#[tokio::test]
async fn a_talent_who_did_not_subscribe_is_not_retried() {
    let app = spawn_app().await;
    app.issue_card("unsubscribed-bob", "鲍勃", &id_number(33), "E", "skilled").await;
    wait_for("the outbox to settle", async || {
        outbox::Entity::find().one(&app.state.db).await.unwrap().is_some_and(|r| r.status != "pending")
    })
    .await;
    let row = outbox::Entity::find().one(&app.state.db).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("skipped", 0));
    assert!(app.wechat.messages().is_empty());
}
