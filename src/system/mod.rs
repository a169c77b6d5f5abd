//! Probes and metrics for the platform that runs the service.

use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::cache::{CacheError, ClusterHealth};
use crate::db;
use crate::state::AppState;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `/readyz` waits for Redis (or the cluster's own report) before saying `down`.
const CACHE_PROBE_TIMEOUT: Duration = Duration::from_millis(250);

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` when the database answers; `unavailable` when it does not; `draining`
    /// after SIGTERM, while in-flight requests finish.
    #[schema(example = "ready")]
    pub status: &'static str,
    pub database: Dependency,
    pub cache: CacheReadiness,
}

#[derive(Serialize, ToSchema)]
pub struct CacheReadiness {
    /// `memory` or `redis`.
    #[schema(example = "redis")]
    pub backend: &'static str,
    /// `up` or `down`. A cluster is `up` when every master answers.
    #[schema(example = "up")]
    pub status: &'static str,
    /// The circuit breaker around Redis: `closed` (Redis is used) or `open` (after a few
    /// failures in a row Redis is not asked; a background probe closes it when Redis answers).
    #[schema(example = "closed")]
    pub circuit: &'static str,
    /// Present when the cache is a Redis Cluster (several seed URLs in `REDIS_URL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterReadiness>,
}

#[derive(Serialize, ToSchema)]
pub struct ClusterReadiness {
    /// `ok` when every master answers and reports `cluster_state:ok`; `fail` otherwise;
    /// `unknown` when the masters could not be asked.
    #[schema(example = "ok")]
    pub state: String,
    /// Masters serving slots, as the cluster counts them (`cluster_size`).
    #[schema(example = 3)]
    pub size: u32,
    /// Masters that answered `CLUSTER INFO`.
    #[schema(example = 3)]
    pub masters_answering: usize,
    /// Hash slots served, the lowest any master reports (16384 when whole).
    #[schema(example = 16384)]
    pub slots_ok: u32,
    /// Nodes the cluster knows of.
    #[schema(example = 3)]
    pub known_nodes: u32,
}

#[derive(Serialize, ToSchema)]
pub struct Dependency {
    /// `sqlite`, `postgres`, `memory` or `redis`.
    #[schema(example = "postgres")]
    pub backend: &'static str,
    /// `up` or `down`.
    #[schema(example = "up")]
    pub status: &'static str,
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}

/// Liveness: the process is up and serving.
#[utoipa::path(tag = "system", responses((status = OK, body = Health)))]
#[get("/healthz")]
async fn healthz() -> web::Json<Health> {
    web::Json(Health { status: "ok" })
}

/// Readiness: the database answers and the instance is not shutting down. The cache is
/// reported but never makes the service unready, since it is only a cache.
#[utoipa::path(
    tag = "system",
    responses(
        (status = OK, body = Readiness),
        (status = SERVICE_UNAVAILABLE, description = "The database does not answer, or the instance is draining after SIGTERM", body = Readiness),
    )
)]
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    // The cache is only reported, so it must not make the answer slow: a load balancer
    // whose check times out takes every instance out while Redis hangs. With the breaker
    // open Redis is not asked at all.
    // Read once: the breaker may close while this runs.
    let circuit_open = state.cache.circuit_open();
    let cache = async {
        if circuit_open {
            return None;
        }
        // A cluster's health (CLUSTER INFO from every master) also says whether it
        // answers; a standalone server is pinged.
        let probe = async {
            match state.cache.cluster_health().await {
                Some(health) => {
                    let up = health.as_ref().is_ok_and(|h| h.state == "ok");
                    (up, Some(health))
                }
                None => (state.cache.ping().await.is_ok(), None),
            }
        };
        tokio::time::timeout(CACHE_PROBE_TIMEOUT, probe).await.ok()
    };
    let (db_up, cache) = tokio::join!(tokio::time::timeout(PROBE_TIMEOUT, state.db.ping()), cache);
    let db_up = matches!(db_up, Ok(Ok(())));
    let (cache_up, cluster) = cache.unwrap_or((false, None));
    let up = |ok: bool| if ok { "up" } else { "down" };
    let draining = state.is_draining();
    let ready = db_up && !draining;
    let body = Readiness {
        status: if draining {
            "draining"
        } else if db_up {
            "ready"
        } else {
            "unavailable"
        },
        database: Dependency { backend: db::backend_name(&state.db), status: up(db_up) },
        cache: CacheReadiness {
            backend: state.cache.backend_name(),
            status: up(cache_up),
            circuit: if circuit_open { "open" } else { "closed" },
            cluster: cluster_readiness(state.cache.is_cluster(), cluster),
        },
    };
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

fn cluster_readiness(is_cluster: bool, health: Option<Result<ClusterHealth, CacheError>>) -> Option<ClusterReadiness> {
    if !is_cluster {
        return None;
    }
    Some(match health {
        Some(Ok(h)) => ClusterReadiness {
            state: h.state,
            size: h.size,
            masters_answering: h.masters_answering,
            slots_ok: h.slots_ok,
            known_nodes: h.known_nodes,
        },
        _ => ClusterReadiness { state: "unknown".to_owned(), size: 0, masters_answering: 0, slots_ok: 0, known_nodes: 0 },
    })
}

/// Prometheus metrics: requests by route and status, latency, database pool, cache.
#[utoipa::path(tag = "system", responses((status = OK, content_type = "text/plain", body = String)))]
#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let (body, content_type) = crate::telemetry::encode(&state.metrics);
    HttpResponse::Ok().content_type(content_type).body(body)
}
