//! Builders for partners and benefits, through the admin API.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use uuid::Uuid;

use super::{TestApp, json};

pub fn partner_body(name: &str) -> Value {
    json!({
        "name": name,
        "category": "hospital",
        "district": "卧龙区",
        "address": "南阳市卧龙区工业路 312 号",
        "lat": 32.99,
        "lng": 112.53,
        "phone": "0377-63200000",
        "opening_hours": "08:00-17:30",
        "description": "三级甲等综合医院，人才就医绿色通道"
    })
}

pub fn benefit_body(title: &str) -> Value {
    json!({
        "title": title,
        "description": "持卡人才优先挂号、优先就诊",
        "tiers": ["A", "B", "C"],
        "quota": 3,
        "period": "year",
        "valid_from": "2026-01-01T00:00:00+08:00",
        "offline_ok": false
    })
}

impl TestApp {
    pub async fn create_partner(&self, operator: &str, body: Value) -> Uuid {
        let (status, p) = json(self.post_as("/api/v1/admin/partners", operator, &body).await).await;
        assert_eq!(status, 201, "{p}");
        p["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn create_benefit(&self, operator: &str, partner: Uuid, body: Value) -> Uuid {
        let (status, b) = json(self.post_as(&format!("/api/v1/admin/partners/{partner}/benefits"), operator, &body).await).await;
        assert_eq!(status, 201, "{b}");
        b["id"].as_str().unwrap().parse().unwrap()
    }
}
