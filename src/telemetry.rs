//! Logs, request ids and Prometheus metrics.
//!
//! One middleware wraps every request: it gives the request an id (kept from an incoming
//! `X-Request-Id` when that is sane), runs the request inside a span carrying that id so
//! every log line has it, turns any error response into problem+json in the client's
//! language, and records the request in the metrics. Metric labels are bounded: the route
//! is the matched pattern (`unmatched` for every path no route took) and the method one of
//! HTTP's own (`other` for the rest), so no client can add series.

use std::time::Instant;

use actix_web::HttpMessage;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use sea_orm::DatabaseConnection;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;
use crate::error::{Lang, PROBLEM_JSON, Problem};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Installs the global subscriber. `RUST_LOG` overrides the default level.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true).with_current_span(true).with_span_list(false))
            .try_init(),
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer()).try_init(),
    };
    // A second init (tests, tools) keeps the first subscriber; nothing to do.
    drop(result);
}

/// The request id, available to handlers through request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    db_pool_size: IntGauge,
    db_pool_idle: IntGauge,
    db: DatabaseConnection,
}

impl Metrics {
    pub fn new(db: DatabaseConnection) -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("zhuge".into()), None)?;
        let requests = IntCounterVec::new(Opts::new("http_requests_total", "HTTP requests answered"), &["method", "route", "status"])?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "Time to answer an HTTP request")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["method", "route", "status"],
        )?;
        let db_pool_size = IntGauge::new("db_pool_connections", "Open database connections")?;
        let db_pool_idle = IntGauge::new("db_pool_idle_connections", "Idle database connections")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(db_pool_size.clone()))?;
        registry.register(Box::new(db_pool_idle.clone()))?;
        Ok(Self { registry, requests, latency, db_pool_size, db_pool_idle, db })
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(seconds);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let (size, idle) = pool_stats(&self.db);
        self.db_pool_size.set(size);
        self.db_pool_idle.set(idle);
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
    }
}

fn pool_stats(db: &DatabaseConnection) -> (i64, i64) {
    use sea_orm::DbBackend;
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let p = db.get_postgres_connection_pool();
            (i64::from(p.size()), i64::try_from(p.num_idle()).unwrap_or(i64::MAX))
        }
        DbBackend::Sqlite => {
            let p = db.get_sqlite_connection_pool();
            (i64::from(p.size()), i64::try_from(p.num_idle()).unwrap_or(i64::MAX))
        }
        _ => (0, 0),
    }
}

fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

/// The route label of a request no route took (any path, any method).
const UNMATCHED: &str = "unmatched";

/// The method label: the methods HTTP defines, and `other` for anything a client invents.
/// A label value per invented method would let anyone grow `/metrics` without bound.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN.iter().find(|(m, _)| m == method).map_or("other", |(_, label)| label)
}

/// The outermost middleware; see the module docs.
pub async fn observe(req: ServiceRequest, next: Next<impl MessageBody + 'static>) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    let lang = Lang::negotiate(req.headers().get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()));
    let metrics = req.app_data::<actix_web::web::Data<crate::state::AppState>>().map(|s| s.metrics.clone());
    let method = method_label(req.method());
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(lang);
    // No clone of the request may live across the call: the router needs it unshared.
    let res = async { next.call(req).await }.instrument(span.clone()).await;
    let mut res = match res {
        Ok(res) => res.map_into_boxed_body(),
        Err(e) => {
            // Inner middleware errors are rare (our handlers answer with responses); actix
            // renders these itself.
            span.in_scope(|| tracing::warn!(error = %e, "middleware error"));
            return Err(e);
        }
    };
    let status = res.status();
    if status.is_client_error() || status.is_server_error() {
        res = as_problem(res, lang);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }

    let route = res.request().match_pattern().unwrap_or_else(|| UNMATCHED.to_owned());
    let elapsed = started.elapsed();
    if let Some(m) = metrics {
        m.observe(method, &route, status.as_u16(), elapsed.as_secs_f64());
    }
    span.in_scope(|| {
        let ms = elapsed.as_secs_f64() * 1e3;
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), route = %route, latency_ms = ms, "request answered");
        } else {
            tracing::info!(status = status.as_u16(), route = %route, latency_ms = ms, "request answered");
        }
    });
    Ok(res)
}

/// Makes sure an error response is problem+json in the client's language, whatever
/// produced it (our handlers, an extractor, or the router's own 404/405).
fn as_problem(res: ServiceResponse<BoxBody>, lang: Lang) -> ServiceResponse<BoxBody> {
    let existing = res.response().extensions().get::<Problem>().cloned();
    let is_json = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(PROBLEM_JSON.as_bytes()) || v.starts_with(b"application/json")
    });
    let problem = match existing {
        // Rendered in Chinese already.
        Some(_) if lang == Lang::Zh => return res,
        Some(p) => p,
        // A handler's own JSON answer (a 503 readiness report, say) stands as it is.
        None if is_json => return res,
        None => Problem::for_status(res.status()),
    };
    let body = problem.to_json(lang);
    res.map_body(|head, _| {
        head.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        head.headers_mut().remove(header::CONTENT_LENGTH);
        BoxBody::new(body)
    })
}

/// Encodes the metrics for `/metrics`.
pub fn encode(metrics: &Metrics) -> (Vec<u8>, String) {
    (metrics.render(), TextEncoder::new().format_type().to_owned())
}
