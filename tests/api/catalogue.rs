//! Partners and benefits: administration, validation, the public catalogue and its cache.

use entity::{audit_log, benefit, partner};
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use zhuge_card::auth::Role;

use crate::support::catalog::{benefit_body, partner_body};
use crate::support::{assert_problem, json, spawn_app};

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn operators_create_partners_with_benefits_and_talents_browse_them() {
    let app = spawn_app().await;
    let op = app.admin(Role::Operator).await;
    let p = app.create_partner(&op.access, partner_body("南阳市中心医院")).await;
    let b = app.create_benefit(&op.access, p, benefit_body("就医绿色通道")).await;

    let (status, list) = json(app.get("/api/v1/partners").await).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["name"], "南阳市中心医院");
    assert_eq!(list["items"][0]["district"], "卧龙区");
    assert!(list["items"][0].get("distance_m").is_none());
    assert!(list["next_cursor"].is_null());
    let (status, benefits) = json(app.get(&format!("/api/v1/partners/{p}/benefits")).await).await;
    assert_eq!(status, 200);
    let first = &benefits["items"][0];
    assert_eq!(first["id"], b.to_string());
    assert_eq!(first["tiers"], json!(["A", "B", "C"]));
    assert_eq!(first["categories"], json!([]));
    assert_eq!((first["quota"].clone(), first["period"].clone()), (json!(3), json!("year")));
    assert_eq!(first["valid_from"], "2025-12-31T16:00:00Z");

    let audited =
        audit_log::Entity::find().filter(audit_log::Column::TargetId.eq(p.to_string())).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!((audited.action.as_str(), audited.actor_id), ("partner.create", Some(op.user_id)));
}

#[tokio::test]
async fn bad_partner_and_benefit_input_is_refused_with_field_errors() {
    let app = spawn_app().await;
    let op = app.admin(Role::Operator).await;
    let mut bad = partner_body("x");
    bad["category"] = json!("casino");
    assert_problem(app.post_as("/api/v1/admin/partners", &op.access, &bad).await, 422, "validation_failed").await;
    let mut bad = partner_body("x");
    bad["district"] = json!("朝阳区");
    assert_problem(app.post_as("/api/v1/admin/partners", &op.access, &bad).await, 422, "validation_failed").await;
    let mut bad = partner_body(&"长".repeat(101));
    bad["lat"] = json!(91.0);
    bad["lng"] = json!(-181.0);
    let body = assert_problem(app.post_as("/api/v1/admin/partners", &op.access, &bad).await, 422, "validation_failed").await;
    let fields: Vec<&str> = body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["name", "lat", "lng"]);
    let body =
        assert_problem(app.post_as("/api/v1/admin/partners", &op.access, &json!({"name": "only a name"})).await, 422, "validation_failed")
            .await;
    assert!(body["errors"].as_array().unwrap().len() >= 4);
    assert_eq!(partner::Entity::find().count(&app.state.db).await.unwrap(), 0);

    let p = app.create_partner(&op.access, partner_body("卧龙岗")).await;
    let url = format!("/api/v1/admin/partners/{p}/benefits");
    let cases = [
        (json!({"tiers": []}), "tiers"),
        (json!({"tiers": ["F"]}), "tiers"),
        (json!({"quota": 0}), "quota"),
        (json!({"quota": -1}), "quota"),
        (json!({"period": "decade"}), "period"),
        (json!({"quota": 2, "period": "unlimited"}), "quota"),
        (json!({"quota": null, "period": "month"}), "quota"),
        (json!({"valid_until": "2025-06-01T00:00:00+08:00"}), "valid_until"),
        (json!({"title": ""}), "title"),
    ];
    for (change, field) in cases {
        let mut body = benefit_body("bad");
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let problem = assert_problem(app.post_as(&url, &op.access, &body).await, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field, "{change}: {problem}");
    }
    assert_eq!(benefit::Entity::find().count(&app.state.db).await.unwrap(), 0);
    let mut unlimited = benefit_body("免费停车");
    unlimited["period"] = json!("unlimited");
    unlimited.as_object_mut().unwrap().remove("quota");
    app.create_benefit(&op.access, p, unlimited).await;
    assert_problem(
        app.post_as(&format!("/api/v1/admin/partners/{}/benefits", uuid::Uuid::now_v7()), &op.access, &benefit_body("x")).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn only_operators_manage_the_catalogue() {
    let app = spawn_app().await;
    let talent = app.talent("t").await;
    let reviewer = app.admin(Role::Reviewer).await;
    for token in [&talent.access, &reviewer.access] {
        assert_problem(app.post_as("/api/v1/admin/partners", token, &partner_body("x")).await, 403, "forbidden").await;
    }
    assert_problem(app.post_json("/api/v1/admin/partners", &partner_body("x")).await, 401, "unauthorized").await;
    let root = app.admin(Role::SuperAdmin).await;
    app.create_partner(&root.access, partner_body("超级管理员也可以")).await;
}

#[tokio::test]
async fn filters_search_and_pagination() {
    let app = spawn_app().await;
    let op = app.admin(Role::Operator).await;
    let hospital = app.create_partner(&op.access, partner_body("南阳市第一人民医院")).await;
    let mut school = partner_body("南阳市第十五小学");
    school["category"] = json!("school");
    school["district"] = json!("宛城区");
    school["description"] = json!("人才子女入学");
    let school = app.create_partner(&op.access, school).await;
    let mut scenic = partner_body("Wolonggang Scenic Area");
    scenic["category"] = json!("scenic");
    scenic["district"] = json!("卧龙区");
    let scenic = app.create_partner(&op.access, scenic).await;
    let mut for_e = benefit_body("门票免费");
    for_e["tiers"] = json!(["E"]);
    app.create_benefit(&op.access, scenic, for_e).await;
    app.create_benefit(&op.access, hospital, benefit_body("体检")).await;

    let get = |q: &str| app.get(&format!("/api/v1/partners?{q}"));
    let (_, page) = json(get("category=school").await).await;
    assert_eq!(ids(&page), [school.to_string()]);
    let (_, page) = json(get("district=%E5%8D%A7%E9%BE%99%E5%8C%BA").await).await;
    assert_eq!(ids(&page), [hospital.to_string(), scenic.to_string()]);
    let (_, page) = json(get("q=%E5%85%A5%E5%AD%A6").await).await; // 入学, in a description
    assert_eq!(ids(&page), [school.to_string()]);
    let (_, page) = json(get("q=wolong").await).await; // case-insensitive Latin
    assert_eq!(ids(&page), [scenic.to_string()]);
    let (_, page) = json(get("q=100%25").await).await; // a literal %, not a wildcard
    assert!(ids(&page).is_empty());
    let (_, page) = json(get("tier=E").await).await;
    assert_eq!(ids(&page), [scenic.to_string()]);
    let (_, page) = json(get("tier=A").await).await;
    assert_eq!(ids(&page), [hospital.to_string()]);

    let (_, first) = json(get("limit=2").await).await;
    assert_eq!(ids(&first).len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = json(get(&format!("limit=2&cursor={cursor}")).await).await;
    assert_eq!(ids(&second), [scenic.to_string()]);
    assert!(second["next_cursor"].is_null());

    assert_problem(get("limit=101").await, 422, "validation_failed").await;
    assert_problem(get("cursor=garbage").await, 422, "validation_failed").await;
    assert_problem(get("category=casino").await, 422, "validation_failed").await;
    assert_problem(get("tier=Z").await, 422, "validation_failed").await;
    assert_problem(get("near=91,112").await, 422, "validation_failed").await;
    assert_problem(get("near=abc").await, 422, "validation_failed").await;
    assert_problem(get(&format!("q={}", "长".repeat(51))).await, 422, "validation_failed").await;

    let (_, benefits) = json(app.get("/api/v1/benefits?tier=E").await).await;
    assert_eq!(benefits["items"].as_array().unwrap().len(), 1);
    let (_, benefits) = json(app.get("/api/v1/benefits?partner_category=hospital").await).await;
    assert_eq!(benefits["items"][0]["title"], "体检");
}

#[tokio::test]
async fn near_sorts_by_distance_and_pages_by_it() {
    let app = spawn_app().await;
    let op = app.admin(Role::Operator).await;
    // Along a line east of the point, 1 km apart, created out of order.
    let mut made = Vec::new();
    for km in [3.0, 1.0, 4.0, 2.0] {
        let mut body = partner_body(&format!("{km} km"));
        body["lat"] = json!(33.0);
        body["lng"] = json!(112.5 + km / (111.32 * 33.0f64.to_radians().cos()));
        made.push((km, app.create_partner(&op.access, body).await));
    }
    let (_, page) = json(app.get("/api/v1/partners?near=33.0,112.5&limit=3").await).await;
    let names: Vec<&str> = page["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["1 km", "2 km", "3 km"]);
    let d = page["items"][0]["distance_m"].as_u64().unwrap();
    assert!((990..=1010).contains(&d), "{d}");
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = json(app.get(&format!("/api/v1/partners?near=33.0,112.5&limit=3&cursor={cursor}")).await).await;
    let names: Vec<&str> = rest["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["4 km"]);
}

#[tokio::test]
async fn inactive_partners_leave_the_catalogue_but_keep_their_history() {
    let app = spawn_app().await;
    let op = app.admin(Role::Operator).await;
    let p = app.create_partner(&op.access, partner_body("将关闭的书屋")).await;
    let b = app.create_benefit(&op.access, p, benefit_body("借书")).await;
    // Warm the public cache, then change the catalogue: the next request sees the change.
    assert_eq!(ids(&json(app.get("/api/v1/partners").await).await.1).len(), 1);
    let res = app.auth(Method::DELETE, &format!("/api/v1/admin/partners/{p}"), &op.access).send().await.unwrap();
    assert_eq!(json(res).await.1["status"], "inactive");
    assert!(ids(&json(app.get("/api/v1/partners").await).await.1).is_empty());
    assert_problem(app.get(&format!("/api/v1/partners/{p}")).await, 404, "not_found").await;
    assert!(json(app.get("/api/v1/benefits").await).await.1["items"].as_array().unwrap().is_empty());
    // Still there for operators.
    let (status, kept) = json(app.get_as(&format!("/api/v1/admin/partners/{p}/benefits/{b}"), &op.access).await).await;
    assert_eq!((status, kept["title"].as_str()), (200, Some("借书")));
    let (_, all) = json(app.get_as("/api/v1/admin/partners?status=inactive", &op.access).await).await;
    assert_eq!(ids(&all), [p.to_string()]);
}

#[tokio::test]
async fn a_catalogue_change_on_one_instance_is_seen_by_the_next_request_on_another() {
    let url = match crate::support::redis_url() {
        Some(url) => url,
        None if crate::support::redis_server::available() => String::new(),
        None => return,
    };
    let own = url.is_empty().then(crate::support::redis_server::RedisServer::start);
    let url = own.as_ref().map_or(url, crate::support::redis_server::RedisServer::url);
    let a = crate::support::spawn_app_with(|s| s.redis_url = Some(url.into())).await;
    let b = a.sibling().await;
    let op = a.admin(Role::Operator).await;
    let p = a.create_partner(&op.access, partner_body("原名")).await;
    assert_eq!(json(b.get(&format!("/api/v1/partners/{p}")).await).await.1["name"], "原名");
    let res =
        a.auth(Method::PATCH, &format!("/api/v1/admin/partners/{p}"), &op.access).json(&json!({"name": "新名"})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(json(b.get(&format!("/api/v1/partners/{p}")).await).await.1["name"], "新名");
}

#[tokio::test]
async fn benefit_changes_are_validated_against_the_stored_benefit() {
    let app = spawn_app().await;
    let op = app.admin(Role::Operator).await;
    let p = app.create_partner(&op.access, partner_body("p")).await;
    let b = app.create_benefit(&op.access, p, benefit_body("b")).await;
    let url = format!("/api/v1/admin/partners/{p}/benefits/{b}");
    let patch = |body: Value| app.auth(Method::PATCH, &url, &op.access).json(&body).send();
    assert_problem(patch(json!({"valid_until": "2025-01-01T00:00:00Z"})).await.unwrap(), 422, "validation_failed").await;
    let (status, body) = json(patch(json!({"period": "unlimited"})).await.unwrap()).await;
    assert_eq!((status, body["quota"].clone()), (200, Value::Null));
    let (status, body) = json(patch(json!({"period": "month", "quota": 2, "categories": ["youth", "sci_tech"]})).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body["categories"], json!(["sci_tech", "youth"]));

    // An end date is set, kept when the field is absent, and removed with null.
    let stored = || async { benefit::Entity::find_by_id(b).one(&app.state.db).await.unwrap().unwrap().valid_until };
    let (status, body) = json(patch(json!({"valid_until": "2099-01-01T00:00:00+08:00"})).await.unwrap()).await;
    assert_eq!((status, body["valid_until"].as_str()), (200, Some("2098-12-31T16:00:00Z")), "{body}");
    let (status, body) = json(patch(json!({"title": "b2"})).await.unwrap()).await;
    assert_eq!((status, body["valid_until"].as_str()), (200, Some("2098-12-31T16:00:00Z")), "{body}");
    assert!(stored().await.is_some());
    let (status, body) = json(patch(json!({"valid_until": null})).await.unwrap()).await;
    assert_eq!((status, body["valid_until"].clone()), (200, Value::Null), "{body}");
    assert_eq!(stored().await, None);
    assert_problem(patch(json!({"valid_until": "soon"})).await.unwrap(), 422, "validation_failed").await;
    assert_eq!(stored().await, None);

    let other = app.create_partner(&op.access, partner_body("other")).await;
    let wrong = format!("/api/v1/admin/partners/{other}/benefits/{b}");
    assert_problem(app.get_as(&wrong, &op.access).await, 404, "not_found").await;
}
