//! The two web clients the binary serves: the admin console at `/console/` and the
//! merchant scanner at `/scan/`, with their shared code and vendored libraries under
//! `/assets/`. They are plain ES modules (no build step, no Node.js) built only on the
//! public `/api/v1`; the files are compiled into the binary from `web/`.
//!
//! Every page and asset is served with a strict Content-Security-Policy (scripts and
//! styles only from this origin, no inline script, nothing may frame the pages), and with
//! HSTS when the request came over TLS (through a trusted proxy that says so).

use std::io::Write;
use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

use crate::state::AppState;

/// One embedded file: its URL path, its media type and its bytes.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! assets {
    ($(($path:literal, $type:literal)),* $(,)?) => {
        /// Every file under `web/` (a test checks that none is left out).
        pub const ASSETS: &[Asset] = &[
            $(Asset { path: $path, content_type: $type, bytes: include_bytes!(concat!("../../web/", $path)) }),*
        ];
    };
}

assets![
    ("console/index.html", "text/html; charset=utf-8"),
    ("console/console.js", "text/javascript; charset=utf-8"),
    ("console/console.css", "text/css; charset=utf-8"),
    ("scan/index.html", "text/html; charset=utf-8"),
    ("scan/scan.js", "text/javascript; charset=utf-8"),
    ("scan/scan.css", "text/css; charset=utf-8"),
    ("assets/api.js", "text/javascript; charset=utf-8"),
    ("assets/i18n.js", "text/javascript; charset=utf-8"),
    ("assets/ui.js", "text/javascript; charset=utf-8"),
    ("assets/base.css", "text/css; charset=utf-8"),
    ("assets/favicon.svg", "image/svg+xml"),
    ("assets/vendor/jsqr-1.4.0/jsQR.js", "text/javascript; charset=utf-8"),
    ("assets/vendor/jsqr-1.4.0/LICENSE", "text/plain; charset=utf-8"),
    ("assets/vendor/uplot-1.6.32/uPlot.esm.js", "text/javascript; charset=utf-8"),
    ("assets/vendor/uplot-1.6.32/uPlot.min.css", "text/css; charset=utf-8"),
    ("assets/vendor/uplot-1.6.32/LICENSE", "text/plain; charset=utf-8"),
    ("assets/vendor/README.md", "text/plain; charset=utf-8"),
];

/// The policy every page and asset is served with.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
     media-src 'self' blob: mediastream:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// What is served for an asset, worked out once per process: its gzip form and its
/// validator (the files only change with the binary).
struct Prepared {
    gzip: Vec<u8>,
    etag: String,
}

static PREPARED: LazyLock<Vec<Prepared>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            // Writing to a Vec cannot fail; an empty body would only cost compression.
            let gzip = gz.write_all(a.bytes).and_then(|()| gz.finish()).unwrap_or_default();
            let etag = format!("\"{}\"", hex::encode(&Sha256::digest(a.bytes)[..12]));
            Prepared { gzip, etag }
        })
        .collect()
});

/// Registers the pages (outside the OpenAPI route table: they are not API).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::redirect("/console", "/console/"))
        .service(web::redirect("/scan", "/scan/"))
        .service(web::resource("/console/").get(console_index))
        .service(web::resource("/scan/").get(scan_index))
        .service(web::resource("/{dir:console|scan|assets}/{file:.+}").get(file));
}

async fn console_index(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    serve(&req, &state, "console/index.html")
}

async fn scan_index(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    serve(&req, &state, "scan/index.html")
}

async fn file(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (dir, file) = path.into_inner();
    serve(&req, &state, &format!("{dir}/{file}"))
}

fn serve(req: &HttpRequest, state: &AppState, path: &str) -> HttpResponse {
    use actix_web::ResponseError;
    let Some(index) = ASSETS.iter().position(|a| a.path == path) else {
        return crate::error::ApiError::not_found().error_response();
    };
    let (asset, prepared) = (&ASSETS[index], &PREPARED[index]);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == prepared.etag || t.trim() == "*"));
    let mut res = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    // X-Frame-Options, Referrer-Policy and nosniff come with every response (startup).
    res.insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header(("cross-origin-opener-policy", "same-origin"))
        .insert_header(("permissions-policy", "camera=(self), microphone=(), geolocation=()"))
        .insert_header((header::ETAG, prepared.etag.clone()))
        .insert_header((header::VARY, "accept-encoding"))
        // Vendored files carry their version in their path; pages and our own code change
        // with the binary, so they are revalidated (a 304 when unchanged).
        .insert_header((
            header::CACHE_CONTROL,
            if asset.path.starts_with("assets/vendor/") { "public, max-age=31536000, immutable" } else { "no-cache" },
        ));
    if over_tls(req, state) {
        res.insert_header((header::STRICT_TRANSPORT_SECURITY, "max-age=31536000; includeSubDomains"));
    }
    if fresh {
        return res.finish();
    }
    res.content_type(asset.content_type);
    let gzip_ok = req.headers().get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("gzip"));
    if gzip_ok && !prepared.gzip.is_empty() {
        res.insert_header((header::CONTENT_ENCODING, "gzip")).body(prepared.gzip.as_slice())
    } else {
        res.body(asset.bytes)
    }
}

/// The service itself speaks plain HTTP; TLS ends at the proxy in front of it. Only a
/// trusted proxy's `X-Forwarded-Proto` says the browser used HTTPS.
fn over_tls(req: &HttpRequest, state: &AppState) -> bool {
    state.settings.trust_proxy
        && req.headers().get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn files(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, base, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_file_under_web_is_embedded() {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut on_disk = Vec::new();
        files(&base, &base, &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "web/ and the ASSETS table differ");
    }

    #[test]
    fn no_inline_script_or_style_in_pages() {
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".html")) {
            let text = std::str::from_utf8(asset.bytes).unwrap();
            for script in text.split("<script").skip(1) {
                let tag = script.split('>').next().unwrap();
                assert!(tag.contains("src="), "{}: inline script", asset.path);
            }
            assert!(!text.contains("<style"), "{}: inline style", asset.path);
            assert!(!text.contains(" style="), "{}: style attribute", asset.path);
            let handler = text.split_whitespace().any(|w| {
                w.starts_with("on")
                    && w.contains('=')
                    && w[2..].split('=').next().is_some_and(|n| n.chars().all(|c| c.is_ascii_lowercase()))
            });
            assert!(!handler, "{}: inline event handler", asset.path);
        }
    }
}
