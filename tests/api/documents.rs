//! Documents in the database: encrypted, shared by every instance, limited per talent,
//! imported from an earlier version's disk; and master-key rotation while instances serve.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use entity::document;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;
use zhuge_card::auth::Role;
use zhuge_card::crypto::Keyring;
use zhuge_card::crypto::rotation;

use crate::privacy::{contains, database_bytes};
use crate::support::binary::command;
use crate::support::cards::id_number;
use crate::support::catalog::{benefit_body, partner_body};
use crate::support::users::Tokens;
use crate::support::{TestApp, assert_problem, json, postgres_url, spawn_app, spawn_app_with};

async fn upload(app: &TestApp, talent: &Tokens, filename: &str, bytes: Vec<u8>) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()).mime_str("application/pdf").unwrap();
    app.auth(reqwest::Method::POST, "/api/v1/me/documents", &talent.access)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap()
}

/// Every file under `dir`, recursively, as bytes.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

#[tokio::test]
async fn a_document_uploaded_through_one_instance_is_served_by_another_and_is_nowhere_in_clear() {
    // Instances share the master key, as every deployment's do; nothing else.
    let app = spawn_app_with(|s| s.master_key = Some("a-master-key-both-instances-share-123".into())).await;
    let other_dir = tempfile::tempdir().unwrap();
    let b = app.sibling_with(|s| s.data_dir = other_dir.path().to_path_buf()).await;
    let talent = app.talent("docs").await;
    let marker = format!("MARKER-{}", Uuid::new_v4().simple());
    let id = id_number(71);
    let filename = format!("身份证-{id}.pdf");
    let content = format!("%PDF-1.7\n% {marker}\n1 0 obj << /Name ({id}) >> endobj\n").into_bytes();

    let (status, doc) = json(upload(&app, &talent, &filename, content.clone()).await).await;
    assert_eq!(status, 201, "{doc}");
    assert_eq!(doc["filename"], filename.as_str(), "the owner sees the name they gave");
    let doc_id = doc["id"].as_str().unwrap();

    // Instance B, with its own data directory, serves it to the owner and to a reviewer.
    let res = b.get_as(&format!("/api/v1/me/documents/{doc_id}"), &talent.access).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), content.as_slice());
    let reviewer = b.admin(Role::Reviewer).await;
    let res = b.get_as(&format!("/api/v1/admin/documents/{doc_id}"), &reviewer.access).await;
    assert_eq!(res.bytes().await.unwrap().as_ref(), content.as_slice());

    // In the database, encrypted; nothing on either instance's disk.
    let row = document::Entity::find_by_id(doc_id.parse::<Uuid>().unwrap()).one(&app.state.db).await.unwrap().unwrap();
    assert!(row.content_enc.as_ref().is_some_and(|c| !contains(c, &marker)));
    assert_eq!(row.legacy_filename, "");
    assert!(!app.state.settings.data_dir.join("documents").exists() && !other_dir.path().join("documents").exists());
    if postgres_url().is_none() {
        app.state.db.execute_unprepared("PRAGMA wal_checkpoint(FULL)").await.unwrap();
    }
    for dir in [app.state.settings.data_dir.as_path(), other_dir.path()] {
        for (path, bytes) in files_under(dir) {
            for secret in [marker.as_str(), id.as_str()] {
                assert!(!contains(&bytes, secret), "{secret} is in clear in {}", path.display());
            }
        }
    }
    let dump = database_bytes(&app);
    assert!(contains(&dump, doc["sha256"].as_str().unwrap()), "the check itself must find the document's row");
    assert!(!contains(&dump, &marker) && !contains(&dump, &id), "the dump holds the document or its name in clear");
}

#[tokio::test]
async fn uploads_are_limited_per_talent_by_rate_count_and_size() {
    let app = spawn_app().await;
    let pdf = || b"%PDF-1.7\n%%EOF\n".to_vec();

    // Rate: ten in ten minutes, then 429 with Retry-After, and nothing stored.
    let eager = app.talent("eager").await;
    for _ in 0..10 {
        assert_eq!(upload(&app, &eager, "a.pdf", pdf()).await.status(), 201);
    }
    let res = upload(&app, &eager, "a.pdf", pdf()).await;
    assert!(res.headers().get("retry-after").is_some());
    assert_problem(res, 429, "too_many_requests").await;
    let held = |owner: Uuid| document::Entity::find().filter(document::Column::OwnerId.eq(owner)).count(&app.state.db);
    assert_eq!(held(eager.user_id).await.unwrap(), 10);
    // Another talent is not affected.
    let calm = app.talent("calm").await;
    assert_eq!(upload(&app, &calm, "b.pdf", pdf()).await.status(), 201);

    // Count: twenty documents at most.
    let hoarder = app.talent("hoarder").await;
    let stored = |owner: Uuid, size: i64| document::ActiveModel {
        id: Set(Uuid::now_v7()),
        owner_id: Set(owner),
        legacy_filename: Set(String::new()),
        filename_enc: Set(Some(app.state.keyring.encrypt("documents.filename", "x.pdf"))),
        content_enc: Set(Some(app.state.keyring.encrypt_bytes("documents.content", b"%PDF-"))),
        content_type: Set("application/pdf".into()),
        size: Set(size),
        sha256: Set("0".repeat(64)),
        created_at: Set(app.state.clock.now()),
    };
    for _ in 0..20 {
        stored(hoarder.user_id, 1000).insert(&app.state.db).await.unwrap();
    }
    let res = upload(&app, &hoarder, "c.pdf", pdf()).await;
    let body = assert_problem(res, 409, "document_limit_reached").await;
    assert!(body["detail"].as_str().unwrap().contains("20"));
    assert_eq!(held(hoarder.user_id).await.unwrap(), 20);

    // Size: 40 MiB in all.
    let big = app.talent("big").await;
    stored(big.user_id, 40 * 1024 * 1024 - 10).insert(&app.state.db).await.unwrap();
    assert_problem(upload(&app, &big, "d.pdf", pdf()).await, 409, "document_limit_reached").await;
    assert_eq!(held(big.user_id).await.unwrap(), 1);
}

#[tokio::test]
async fn parallel_uploads_cannot_pass_the_count_limit_together() {
    let app = spawn_app().await;
    let talent = app.talent("racer").await;
    for _ in 0..18 {
        document::ActiveModel {
            id: Set(Uuid::now_v7()),
            owner_id: Set(talent.user_id),
            legacy_filename: Set(String::new()),
            filename_enc: Set(None),
            content_enc: Set(Some(app.state.keyring.encrypt_bytes("documents.content", b"%PDF-"))),
            content_type: Set("application/pdf".into()),
            size: Set(10),
            sha256: Set("0".repeat(64)),
            created_at: Set(app.state.clock.now()),
        }
        .insert(&app.state.db)
        .await
        .unwrap();
    }
    let results = futures_util::future::join_all((0..6).map(|_| upload(&app, &talent, "p.pdf", b"%PDF-1.7\n".to_vec()))).await;
    let created = results.iter().filter(|r| r.status() == 201).count();
    assert_eq!(created, 2, "{:?}", results.iter().map(|r| r.status()).collect::<Vec<_>>());
    let held = document::Entity::find().filter(document::Column::OwnerId.eq(talent.user_id)).count(&app.state.db).await.unwrap();
    assert_eq!(held, 20);
}

#[tokio::test]
async fn migrate_moves_documents_an_earlier_version_left_on_disk_into_the_database() {
    let app = spawn_app().await;
    let talent = app.talent("legacy").await;
    let id = Uuid::now_v7();
    let legacy_name = format!("学位证-{}.pdf", id_number(72));
    let content = b"%PDF-1.4\n% written by an earlier version\n".to_vec();
    document::ActiveModel {
        id: Set(id),
        owner_id: Set(talent.user_id),
        legacy_filename: Set(legacy_name.clone()),
        filename_enc: Set(None),
        content_enc: Set(None),
        content_type: Set("application/pdf".into()),
        size: Set(content.len() as i64),
        sha256: Set(zhuge_card::crypto::sha256_hex(&content)),
        created_at: Set(app.state.clock.now()),
    }
    .insert(&app.state.db)
    .await
    .unwrap();
    let dir = app.state.settings.data_dir.join("documents");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(id.to_string()), &content).unwrap();
    // Until it is imported, it is reported unavailable, not served from disk.
    assert_problem(app.get_as(&format!("/api/v1/me/documents/{id}"), &talent.access).await, 503, "service_unavailable").await;

    let out = command()
        .env("DATABASE_URL", app.state.settings.database_url())
        .env("ZHUGE_DATA_DIR", &app.state.settings.data_dir)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("documents moved into the database: 1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!dir.join(id.to_string()).exists(), "the clear copy stays on disk");

    let res = app.get_as(&format!("/api/v1/me/documents/{id}"), &talent.access).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), content.as_slice());
    let row = document::Entity::find_by_id(id).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!(row.legacy_filename, "");
    assert_eq!(app.state.keyring.decrypt("documents.filename", row.filename_enc.as_deref().unwrap()).unwrap(), legacy_name);
}

/// Columns whose name ends in `_enc`, as `table.column`, read from the database itself.
async fn encrypted_columns(app: &TestApp) -> Vec<String> {
    let sql = match postgres_url() {
        Some(_) => {
            "SELECT table_name || '.' || column_name AS c FROM information_schema.columns WHERE table_schema = 'public' AND column_name LIKE '%\\_enc' ESCAPE '\\'"
        }
        None => {
            "SELECT m.name || '.' || p.name AS c FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table' AND p.name LIKE '%\\_enc' ESCAPE '\\'"
        }
    };
    let rows = app.state.db.query_all_raw(sea_orm::Statement::from_string(app.state.db.get_database_backend(), sql)).await.unwrap();
    let mut out: Vec<String> = rows.iter().map(|r| r.try_get::<String>("", "c").unwrap()).collect();
    out.sort();
    out
}

#[tokio::test]
async fn the_master_key_rotates_while_an_instance_serves_and_the_old_key_can_then_go() {
    let (k1, k2) = ("first-master-key-first-master-key-11", "second-master-key-second-master-key-2");
    let app = spawn_app_with(|s| s.master_key = Some(k1.into())).await;

    // Data under K1: a card with its application, a bound phone, a document, a signing key.
    let id = id_number(73);
    let issued = app.issue_card("rotation", "欧阳明", &id, "B", "sci_tech").await;
    let res = app.post_as("/api/v1/auth/wechat/phone", &issued.talent.access, &json!({"code": "phone.13912345678"})).await;
    assert_eq!(res.status(), 200);
    let content = b"%PDF-1.7\n% the scan of an ID card\n".to_vec();
    let (_, doc) = json(upload(&app, &issued.talent, "id.pdf", content.clone()).await).await;
    let doc_id = doc["id"].as_str().unwrap().to_owned();
    let operator = app.admin(Role::Operator).await;
    let partner = app.create_partner(&operator.access, partner_body("人才之家")).await;
    let mut benefit = benefit_body("咨询");
    benefit["valid_from"] = json!("2020-01-01T00:00:00Z");
    app.create_benefit(&operator.access, partner, benefit).await;
    for n in 0..6 {
        app.issue_card(&format!("more{n}"), "张三", &id_number(80 + n), "E", "youth").await;
    }

    // An instance restarted with K2 current and K1 previous serves throughout the rotation.
    let serving = app
        .sibling_with(|s| {
            s.master_key = Some(k2.into());
            s.master_keys_previous = vec![k1.into()];
        })
        .await;
    let reviewer = serving.admin(Role::Reviewer).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (found, missed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let search = format!("{}/api/v1/admin/cards?id_number={id}", serving.address);
    let lookups = {
        let (client, access, stop, found, missed) =
            (serving.client.clone(), reviewer.access.clone(), stop.clone(), found.clone(), missed.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let page: serde_json::Value = client.get(&search).bearer_auth(&access).send().await.unwrap().json().await.unwrap();
                if page["items"].as_array().is_some_and(|i| i.len() == 1) {
                    found.fetch_add(1, Ordering::SeqCst)
                } else {
                    missed.fetch_add(1, Ordering::SeqCst)
                };
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let rotate = |extra: &[&str]| {
        let out = command()
            .env("DATABASE_URL", app.state.settings.database_url())
            .env("ZHUGE_DATA_DIR", tempfile::tempdir().unwrap().path())
            .env("ZHUGE_MASTER_KEY", k2)
            .env("ZHUGE_MASTER_KEYS_PREVIOUS", k1)
            .args(["rotate-master-key", "--batch-size", "2"])
            .args(extra)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let k2_only = Keyring::new(k2, &[]);
    let stale = || async { rotation::rotate(&app.state.db, &k2_only, 100, Some(0)).await.unwrap().stale() };
    assert!(stale().await > 8, "the data was not written under K1");
    // Stopped part-way: some rows moved, others not yet.
    let (ok, out) = rotate(&["--max-batches", "3"]);
    assert!(ok && out.contains("stopped after 3 batches"), "{out}");
    assert!(stale().await > 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Resumed: the rest moves.
    let (ok, out) = rotate(&[]);
    assert!(ok && out.contains("everything is under key"), "{out}");
    assert_eq!(stale().await, 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    lookups.await.unwrap();
    assert!(found.load(Ordering::SeqCst) > 5, "too few lookups during the rotation");
    assert_eq!(missed.load(Ordering::SeqCst), 0, "a search by ID number missed during the rotation");
    // The rotation itself is in the audit log.
    let audit = entity::audit_log::Entity::find()
        .filter(entity::audit_log::Column::Action.eq("master_key.rotate"))
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(audit, 2);
    // No ciphertext column escapes the rotation.
    let mut sealed = rotation::sealed_columns();
    sealed.sort();
    assert_eq!(encrypted_columns(&app).await, sealed);

    // K1 is gone: an instance with K2 alone reads, finds and signs everything.
    let fresh = app
        .sibling_with(|s| {
            s.master_key = Some(k2.into());
            s.master_keys_previous = vec![];
        })
        .await;
    let reviewer = fresh.admin(Role::Reviewer).await;
    let (status, pii) = json(fresh.get_as(&format!("/api/v1/admin/cards/{}/pii", issued.card_id), &reviewer.access).await).await;
    assert_eq!(status, 200, "{pii}");
    assert_eq!((pii["id_number"].as_str(), pii["holder_name"].as_str()), (Some(id.as_str()), Some("欧阳明")));
    let (_, page) = json(fresh.get_as(&format!("/api/v1/admin/cards?id_number={id}"), &reviewer.access).await).await;
    assert_eq!(page["items"][0]["card_no"], issued.card_no.as_str());
    let (_, page) = json(fresh.get_as("/api/v1/admin/cards?name=欧阳明", &reviewer.access).await).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (status, application) =
        json(fresh.get_as(&format!("/api/v1/admin/applications/{}", issued.application_id), &reviewer.access).await).await;
    assert_eq!(status, 200, "{application}");
    let res = fresh.get_as(&format!("/api/v1/admin/documents/{doc_id}"), &reviewer.access).await;
    assert_eq!(res.bytes().await.unwrap().as_ref(), content.as_slice());
    // The same person signs in again (tokens signed with K1 are no longer accepted) …
    let talent = fresh.talent("rotation").await;
    assert_eq!(talent.user_id, issued.talent.user_id);
    assert_problem(fresh.get_as("/api/v1/me", &issued.talent.access).await, 401, "token_invalid").await;
    let (_, me) = json(fresh.get_as("/api/v1/me", &talent.access).await).await;
    assert_eq!(me["phone"], "139****5678");
    // … and their card's QR, signed by a key that K2 now wraps, verifies at the partner.
    let (_, qr) = json(fresh.get_as("/api/v1/me/card/qr", &talent.access).await).await;
    let staff = fresh.account(Role::MerchantStaff, Some(partner)).await.1;
    let (status, visit) = json(fresh.post_as("/api/v1/merchant/verify", &staff.access, &json!({"qr": qr["token"]})).await).await;
    assert_eq!(status, 200, "{visit}");
    assert_eq!(visit["card"]["card_no"], issued.card_no.as_str());
    // The audit trail was re-keyed with everything else: K2 alone verifies all of it.
    let operator = fresh.admin(Role::Operator).await;
    let (_, check) = json(fresh.get_as("/api/v1/admin/audit-log/verify", &operator.access).await).await;
    assert_eq!(check["intact"], true, "{check}");
    assert!(check["entries"].as_u64().unwrap() > 10, "{check}");
}

/// During a rotation an older card still holds its ID-number hash under the previous key,
/// so the unique index alone cannot see a second card for the same person.
#[tokio::test]
async fn a_person_gets_no_second_card_while_their_first_is_indexed_under_the_previous_key() {
    let (k1, k2) = ("first-master-key-first-master-key-11", "second-master-key-second-master-key-2");
    let app = spawn_app_with(|s| s.master_key = Some(k1.into())).await;
    let id = id_number(77);
    let (a, b) = (app.talent("twin-a").await, app.talent("twin-b").await);
    let first = app.apply(&a, &crate::support::cards::application("郑一", &id)).await;
    let second = app.apply(&b, &crate::support::cards::application("郑一", &id)).await;
    let reviewer = app.admin(Role::Reviewer).await;
    async fn approve(app: &TestApp, id: Uuid, access: String) -> reqwest::Response {
        app.post_as(&format!("/api/v1/admin/applications/{id}/approve"), &access, &json!({"tier": "D", "category": "youth"})).await
    }
    assert_eq!(approve(&app, first, reviewer.access.clone()).await.status(), 200);

    let rotated = app
        .sibling_with(|s| {
            s.master_key = Some(k2.into());
            s.master_keys_previous = vec![k1.into()];
        })
        .await;
    let reviewer = rotated.admin(Role::Reviewer).await;
    assert_problem(approve(&rotated, second, reviewer.access.clone()).await, 409, "id_number_has_card").await;
    let live = entity::card::Entity::find().filter(entity::card::Column::Status.ne("revoked")).count(&app.state.db).await.unwrap();
    assert_eq!(live, 1);
    // And the rotation then completes.
    let out = command()
        .env("DATABASE_URL", app.state.settings.database_url())
        .env("ZHUGE_DATA_DIR", tempfile::tempdir().unwrap().path())
        .env("ZHUGE_MASTER_KEY", k2)
        .env("ZHUGE_MASTER_KEYS_PREVIOUS", k1)
        .arg("rotate-master-key")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
