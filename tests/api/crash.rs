//! SIGKILL while clients redeem: every success a client saw survives, and retrying with
//! the same Idempotency-Key never counts twice. Runs the real binary against the test's
//! database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entity::{quota_counter, redemption};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use zhuge_card::auth::Role;

use crate::support::binary::{Service, free_port};
use crate::support::cards::id_number;
use crate::support::catalog::{benefit_body, partner_body};
use crate::support::{json, spawn_app};

fn start(db_url: &str, data_dir: &std::path::Path, port: u16) -> Service {
    let env = [
        ("DATABASE_URL", db_url.to_owned()),
        ("ZHUGE_DATA_DIR", data_dir.display().to_string()),
        ("ZHUGE_IDEMPOTENCY_LEASE_SECS", "1".into()),
        ("ZHUGE_OUTBOX_WORKER", "false".into()),
        ("RUST_LOG", "error".into()),
        ("ZHUGE_LOG_FORMAT", "text".into()),
    ];
    Service::start(&env, port, &data_dir.join("service.log"))
}

#[tokio::test]
async fn sigkill_loses_no_seen_success_and_retries_never_double_count() {
    let app = spawn_app().await;
    let operator = app.admin(Role::Operator).await;
    let partner = app.create_partner(&operator.access, partner_body("急诊中心")).await;
    let mut body = benefit_body("急诊绿色通道");
    body["quota"] = json!(10_000);
    body["valid_from"] = json!("2020-01-01T00:00:00Z");
    let benefit = app.create_benefit(&operator.access, partner, body).await;
    let staff = app.account(Role::MerchantStaff, Some(partner)).await.1;
    let holder = app.issue_card("crash", "王五", &id_number(60), "C", "social").await;
    let (_, qr) = json(app.get_as("/api/v1/me/card/qr", &holder.talent.access).await).await;
    let (_, visit) = json(app.post_as("/api/v1/merchant/verify", &staff.access, &json!({"qr": qr["token"]})).await).await;
    let visit = visit["visit_id"].as_str().unwrap().to_owned();

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let db_url = app.state.settings.database_url();
    let data_dir = app.state.settings.data_dir.clone();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut service = start(&db_url, &data_dir, port);
    service.wait_ready(&client).await;

    let request = |key: String| {
        client
            .post(format!("{base}/api/v1/merchant/redemptions"))
            .bearer_auth(&staff.access)
            .header("idempotency-key", key)
            .json(&json!({"visit_id": visit, "benefit_id": benefit}))
            .send()
    };
    // Eight clients redeem as fast as they can; the service is killed under them.
    let seen: Arc<Mutex<HashMap<String, Option<Vec<u8>>>>> = Arc::default();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let seen = seen.clone();
            let request = &request;
            let log = data_dir.join("service.log");
            async move {
                for i in 0.. {
                    let key = format!("w{w}-{i}");
                    seen.lock().unwrap().insert(key.clone(), None);
                    match request(key.clone()).await {
                        Ok(res) if res.status() == 201 => {
                            let body = res.bytes().await.map(|b| b.to_vec()).ok();
                            seen.lock().unwrap().insert(key, body);
                        }
                        Ok(res) => {
                            let status = res.status();
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            let log = std::fs::read_to_string(&log).unwrap_or_default();
                            panic!("unexpected {status}: {}\nservice log:\n{log}", res.text().await.unwrap_or_default());
                        }
                        Err(_) => break,
                    }
                }
            }
        })
        .collect();
    let killer = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        service.child.kill().unwrap();
        service.child.wait().unwrap();
    };
    tokio::join!(futures_util::future::join_all(workers), killer);

    let seen = seen.lock().unwrap().clone();
    let succeeded: Vec<(&String, &Vec<u8>)> = seen.iter().filter_map(|(k, b)| b.as_ref().map(|b| (k, b))).collect();
    assert!(succeeded.len() >= 5, "too few redemptions before the kill ({}) for the test to mean much", succeeded.len());
    for (_, body) in &succeeded {
        let id: uuid::Uuid = serde_json::from_slice::<serde_json::Value>(body).unwrap()["id"].as_str().unwrap().parse().unwrap();
        let row = redemption::Entity::find_by_id(id).one(&app.state.db).await.unwrap();
        assert!(row.is_some_and(|r| r.status == "completed"), "a redemption the client saw succeed is gone");
    }

    let mut service = start(&db_url, &data_dir, port);
    service.wait_ready(&client).await;
    for (key, first) in &seen {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let res = request(key.clone()).await.unwrap();
            match res.status().as_u16() {
                201 => {
                    let body = res.bytes().await.unwrap().to_vec();
                    if let Some(first) = first {
                        assert_eq!(&body, first, "a replay must repeat the first answer");
                    }
                    break;
                }
                // A request that was in flight at the kill: its claim lapses in a second.
                409 => {
                    assert!(Instant::now() < deadline, "key {key} stayed in flight");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                other => panic!("unexpected {other} for {key}"),
            }
        }
    }
    drop(service);

    let rows = redemption::Entity::find().filter(redemption::Column::CardId.eq(holder.card_id)).count(&app.state.db).await.unwrap();
    assert_eq!(rows, seen.len() as u64, "one redemption per key, no more");
    let counter =
        quota_counter::Entity::find().filter(quota_counter::Column::CardId.eq(holder.card_id)).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!(counter.used as u64, rows);
}
