//! Applying for a card, review, and the rules that keep one card per person.

use entity::{application, card, outbox};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use zhuge_card::auth::Role;

use crate::support::cards::{application, id_number};
use crate::support::{assert_problem, json, spawn_app};

#[tokio::test]
async fn apply_review_and_issue() {
    let app = spawn_app().await;
    let talent = app.talent("li").await;
    let id = id_number(1);
    let (status, submitted) = json(app.post_as("/api/v1/me/applications", &talent.access, &application("李文华", &id)).await).await;
    assert_eq!(status, 201, "{submitted}");
    assert_eq!(submitted["status"], "submitted");
    assert_eq!(submitted["real_name"], "李*华");
    assert_eq!(submitted["id_number"], format!("4113**********{}", &id[14..]));
    let app_id = submitted["id"].as_str().unwrap().to_owned();

    let (_, mine) = json(app.get_as("/api/v1/me/applications", &talent.access).await).await;
    assert_eq!(mine["items"][0]["id"], app_id.as_str());

    let reviewer = app.admin(Role::Reviewer).await;
    let (_, queue) = json(app.get_as("/api/v1/admin/applications?status=submitted", &reviewer.access).await).await;
    assert_eq!(queue["items"].as_array().unwrap().len(), 1);
    assert_eq!(queue["items"][0]["real_name"], "李*华");

    let (status, approved) = json(
        app.post_as(
            &format!("/api/v1/admin/applications/{app_id}/approve"),
            &reviewer.access,
            &json!({"tier": "B", "category": "sci_tech", "valid_years": 5}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "approved");
    let card_id = approved["card_id"].as_str().unwrap().to_owned();

    let (status, card) = json(app.get_as("/api/v1/me/card", &talent.access).await).await;
    assert_eq!(status, 200);
    assert_eq!(card["holder_name"], "李文华");
    assert_eq!(card["id_number"], id.as_str());
    assert_eq!(card["holder"], "李*华");
    assert_eq!((card["tier"].as_str(), card["category"].as_str(), card["status"].as_str()), (Some("B"), Some("sci_tech"), Some("active")));
    let card_no = card["card_no"].as_str().unwrap();
    assert!(zhuge_card::cards::number::is_valid(card_no), "{card_no}");
    let year = chrono::Utc::now().with_timezone(&zhuge_card::clock::BEIJING).format("%Y").to_string();
    assert_eq!(card_no, zhuge_card::cards::number::format(year.parse().unwrap(), 1));

    let (_, detail) = json(app.get_as(&format!("/api/v1/admin/cards/{card_id}"), &reviewer.access).await).await;
    assert_eq!(detail["events"][0]["kind"], "issued");
    assert_eq!(detail["holder"], "李*华");
    assert!(detail.get("id_number").is_none());
    // The talent is told, through the outbox.
    let queued = outbox::Entity::find().count(&app.state.db).await.unwrap();
    assert_eq!(queued, 1);
}

#[tokio::test]
async fn identity_rules_and_bad_input() {
    let app = spawn_app().await;
    let talent = app.talent("wang").await;
    let mut bad = id_number(2);
    bad.replace_range(17..18, if bad.ends_with('1') { "2" } else { "1" });
    let body =
        assert_problem(app.post_as("/api/v1/me/applications", &talent.access, &application("王强", &bad)).await, 422, "validation_failed")
            .await;
    assert_eq!((body["errors"][0]["field"].as_str(), body["errors"][0]["code"].as_str()), (Some("id_number"), Some("check_digit")));
    // 30 February.
    let body_no_check = "411302199002301".to_owned() + "23";
    let feb30 = format!("{body_no_check}{}", zhuge_card::cards::number::mod11_2(&body_no_check).unwrap());
    let body = assert_problem(
        app.post_as("/api/v1/me/applications", &talent.access, &application("王强", &feb30)).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["code"], "birth_date");
    let mut missing = application("王", &id_number(2));
    missing["employer"] = json!("");
    let body = assert_problem(app.post_as("/api/v1/me/applications", &talent.access, &missing).await, 422, "validation_failed").await;
    let fields: Vec<&str> = body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["real_name", "employer"]);
    assert_eq!(application::Entity::find().count(&app.state.db).await.unwrap(), 0);

    let first = app.apply(&talent, &application("王强", &id_number(2))).await;
    assert_problem(
        app.post_as("/api/v1/me/applications", &talent.access, &application("王强", &id_number(3))).await,
        409,
        "application_open",
    )
    .await;

    // Someone else cannot see or withdraw it.
    let other = app.talent("zhao").await;
    assert_problem(app.post_as(&format!("/api/v1/me/applications/{first}/withdraw"), &other.access, &json!({})).await, 404, "not_found")
        .await;
    let (status, withdrawn) =
        json(app.post_as(&format!("/api/v1/me/applications/{first}/withdraw"), &talent.access, &json!({})).await).await;
    assert_eq!((status, withdrawn["status"].as_str()), (200, Some("withdrawn")));
    assert_problem(
        app.post_as(&format!("/api/v1/me/applications/{first}/withdraw"), &talent.access, &json!({})).await,
        409,
        "application_decided",
    )
    .await;

    // An ID number holding a live card cannot apply again, whoever applies with it.
    let holder = app.issue_card("holder", "赵敏", &id_number(4), "C", "youth").await;
    let body = assert_problem(
        app.post_as("/api/v1/me/applications", &other.access, &application("赵敏", &id_number(4))).await,
        409,
        "id_number_has_card",
    )
    .await;
    assert!(!body.to_string().contains("holder"));
    assert_problem(
        app.post_as("/api/v1/me/applications", &holder.talent.access, &application("赵敏", &id_number(5))).await,
        409,
        "card_exists",
    )
    .await;
}

#[tokio::test]
async fn decided_applications_stay_decided() {
    let app = spawn_app().await;
    let talent = app.talent("sun").await;
    let id = app.apply(&talent, &application("孙悦", &id_number(6))).await;
    let reviewer = app.admin(Role::Reviewer).await;
    assert_problem(
        app.post_as(&format!("/api/v1/admin/applications/{id}/reject"), &reviewer.access, &json!({"reason": " "})).await,
        422,
        "validation_failed",
    )
    .await;
    let (status, rejected) =
        json(app.post_as(&format!("/api/v1/admin/applications/{id}/reject"), &reviewer.access, &json!({"reason": "材料不全"})).await).await;
    assert_eq!((status, rejected["reason"].as_str()), (200, Some("材料不全")));
    assert_problem(
        app.post_as(&format!("/api/v1/admin/applications/{id}/approve"), &reviewer.access, &json!({"tier": "A", "category": "civil"}))
            .await,
        409,
        "application_decided",
    )
    .await;
    assert_eq!(card::Entity::find().count(&app.state.db).await.unwrap(), 0);
    assert_problem(
        app.post_as(&format!("/api/v1/admin/applications/{id}/approve"), &talent.access, &json!({"tier": "A", "category": "civil"})).await,
        403,
        "forbidden",
    )
    .await;
    // A rejected applicant may apply again.
    app.apply(&talent, &application("孙悦", &id_number(6))).await;
}

#[tokio::test]
async fn two_reviewers_approving_at_once_make_one_card() {
    let app = spawn_app().await;
    let talent = app.talent("race").await;
    let id = app.apply(&talent, &application("钱多多", &id_number(7))).await;
    let r1 = app.admin(Role::Reviewer).await;
    let r2 = app.admin(Role::Reviewer).await;
    let url = format!("/api/v1/admin/applications/{id}/approve");
    let body = json!({"tier": "D", "category": "enterprise"});
    let (a, b) = tokio::join!(app.post_as(&url, &r1.access, &body), app.post_as(&url, &r2.access, &body));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    assert_eq!(card::Entity::find().count(&app.state.db).await.unwrap(), 1);
}

#[tokio::test]
async fn many_approvals_at_once_get_unique_numbers() {
    let app = spawn_app().await;
    let reviewer = app.admin(Role::Reviewer).await;
    let mut ids = Vec::new();
    for n in 0..12u32 {
        let t = app.talent(&format!("p{n}")).await;
        ids.push(app.apply(&t, &application("周八", &id_number(100 + n))).await);
    }
    let body = json!({"tier": "E", "category": "skilled"});
    let results = futures_util::future::join_all(
        ids.iter().map(|id| app.post_as(&format!("/api/v1/admin/applications/{id}/approve"), &reviewer.access, &body)),
    )
    .await;
    assert!(results.iter().all(|r| r.status() == 200));
    let mut numbers: Vec<String> = card::Entity::find().all(&app.state.db).await.unwrap().into_iter().map(|c| c.card_no).collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), 12);
    assert!(numbers.iter().all(|n| zhuge_card::cards::number::is_valid(n)));
    let seqs: Vec<u32> = numbers.iter().map(|n| n[6..13].parse().unwrap()).collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
}

#[tokio::test]
async fn documents_are_checked_by_content_and_kept_private() {
    let app = spawn_app().await;
    let talent = app.talent("doc").await;
    let upload = |bytes: Vec<u8>, mime: &str| {
        let part = reqwest::multipart::Part::bytes(bytes).file_name("degree.pdf").mime_str(mime).unwrap();
        app.auth(reqwest::Method::POST, "/api/v1/me/documents", &talent.access)
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
    };
    let (status, doc) = json(upload(b"%PDF-1.7\n1 0 obj\n".to_vec(), "application/pdf").await.unwrap()).await;
    assert_eq!(status, 201, "{doc}");
    assert_eq!(doc["content_type"], "application/pdf");
    let doc_id = doc["id"].as_str().unwrap().to_owned();
    // A text file that says it is a PNG.
    assert_problem(upload(b"just text".to_vec(), "image/png").await.unwrap(), 415, "unsupported_media_type").await;
    let mut big = b"%PDF-".to_vec();
    big.resize(5 * 1024 * 1024 + 1, b'x');
    assert_problem(upload(big, "application/pdf").await.unwrap(), 413, "payload_too_large").await;

    let res = app.get_as(&format!("/api/v1/me/documents/{doc_id}"), &talent.access).await;
    assert_eq!(res.headers().get("content-type").unwrap(), "application/pdf");
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"%PDF-1.7\n1 0 obj\n");
    let other = app.talent("nosy").await;
    assert_problem(app.get_as(&format!("/api/v1/me/documents/{doc_id}"), &other.access).await, 404, "not_found").await;
    let reviewer = app.admin(Role::Reviewer).await;
    assert_eq!(app.get_as(&format!("/api/v1/admin/documents/{doc_id}"), &reviewer.access).await.status(), 200);

    // Someone else's document cannot be attached.
    let mut body = application("钱七", &id_number(8));
    body["document_ids"] = json!([doc_id]);
    assert_problem(app.post_as("/api/v1/me/applications", &other.access, &body).await, 422, "validation_failed").await;
    let (status, a) = json(app.post_as("/api/v1/me/applications", &talent.access, &body).await).await;
    assert_eq!((status, a["document_ids"][0].as_str()), (201, Some(doc_id.as_str())));
    let stored =
        application::Entity::find().filter(application::Column::UserId.eq(talent.user_id)).one(&app.state.db).await.unwrap().unwrap();
    assert!(stored.document_ids.contains(&doc_id));
}

#[tokio::test]
async fn the_review_queue_has_an_exact_count() {
    let app = spawn_app().await;
    let reviewer = app.admin(Role::Reviewer).await;
    let count = |status: &str| {
        let req = app.auth(reqwest::Method::GET, &format!("/api/v1/admin/applications/count?status={status}"), &reviewer.access);
        async move { json(req.send().await.unwrap()).await }
    };
    let (status, none) = count("submitted").await;
    assert_eq!((status, none), (200, json!({"status": "submitted", "count": 0})));

    let mut ids = Vec::new();
    for n in 0..3 {
        let talent = app.talent(&format!("queue{n}")).await;
        ids.push(app.apply(&talent, &application("王小明", &id_number(700 + n))).await);
    }
    let url = format!("/api/v1/admin/applications/{}/approve", ids[0]);
    assert_eq!(app.post_as(&url, &reviewer.access, &json!({"tier": "C", "category": "youth"})).await.status(), 200);

    let (_, submitted) = count("submitted").await;
    let (_, approved) = count("approved").await;
    assert_eq!((submitted["count"].as_u64(), approved["count"].as_u64()), (Some(2), Some(1)));
    let stored = application::Entity::find().filter(application::Column::Status.eq("submitted")).count(&app.state.db).await.unwrap();
    assert_eq!(submitted["count"].as_u64(), Some(stored));

    // Reviewers' business only; the status is required and must be one there is.
    let operator = app.admin(Role::Operator).await;
    assert_problem(app.get_as("/api/v1/admin/applications/count?status=submitted", &operator.access).await, 403, "forbidden").await;
    for query in ["?status=pending", ""] {
        let problem = assert_problem(
            app.get_as(&format!("/api/v1/admin/applications/count{query}"), &reviewer.access).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], "status", "{query}: {problem}");
    }
}
