//! Probes and metrics for the platform that runs the service.

use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db;
use crate::state::AppState;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

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
    pub cache: Dependency,
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
    let (db_up, cache_up) =
        tokio::join!(tokio::time::timeout(PROBE_TIMEOUT, state.db.ping()), tokio::time::timeout(PROBE_TIMEOUT, state.cache.ping()),);
    let db_up = matches!(db_up, Ok(Ok(())));
    let cache_up = matches!(cache_up, Ok(Ok(())));
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
        cache: Dependency { backend: state.cache.backend_name(), status: up(cache_up) },
    };
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

/// Prometheus metrics: requests by route and status, latency, database pool, cache.
#[utoipa::path(tag = "system", responses((status = OK, content_type = "text/plain", body = String)))]
#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let (body, content_type) = crate::telemetry::encode(&state.metrics);
    HttpResponse::Ok().content_type(content_type).body(body)
}
