//! The reference cloud (`fleet-cloud`): the server side of `docs/protocol.md`, used by the
//! tests, the demo and integrators. It creates agent instances with single-use activation
//! codes (72 h), exchanges codes for client credentials, issues bearer tokens, accepts
//! uploads (snapshots and merge-patch deltas applied in sequence, resync otherwise, each
//! message id counted once), queues jobs, and serves assembled printers shaped like the
//! seed's API. Every document is a `fleet_protocol` type.
//!
//! # Modules
//! - this file: the server state ([`Cloud`]), its router and the TLS listener.
//! - [`agent_api`]: what agents call: activation, token, uploads, heartbeat, settings.
//! - [`admin`]: the administration API: agent instances, settings, assets.
//! - [`jobs`]: the job queue, both sides: long-poll, ack, progress, result, files,
//!   admin creation, stop, schedules.
//! - [`calendar`]: when a calendar schedule next runs, in its time zone.
//! - [`db`]: the database (the only SQL here) and its migrations.
//! - [`tls`]: the generated CA and server certificate.
//! - [`cli`]: the `fleet-cloud` command line.
//! - [`testing`]: the cloud on loopback with typed admin calls, for the agent's and this
//!   crate's tests.

pub mod admin;
pub mod agent_api;
pub mod calendar;
pub mod cli;
pub mod db;
pub mod jobs;
pub mod testing;
pub mod tls;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use db::CloudDb;
use fleet_protocol::{Reason, VERSION_HEADER, VERSION_TEXT};
use std::net::SocketAddr;
use std::sync::Arc;

/// Activation codes stay valid this long (the seed: 72 h).
pub const CODE_VALIDITY_MS: i64 = 72 * 3600 * 1000;
/// Bearer token lifetime (the seed's API: 7200 s).
pub const TOKEN_SECS: i64 = 7200;
/// How often agents are asked to send a heartbeat.
pub const HEARTBEAT_SECS: u64 = 60;

/// The wall clock, epoch ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Server state.
#[derive(Clone)]
pub struct Cloud {
    db: CloudDb,
    admin_token: Arc<str>,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    heartbeat_secs: u64,
    /// Wakes long-polls when a job is queued.
    jobs_queued: Arc<tokio::sync::Notify>,
    /// Request bodies may be gzip (`Content-Encoding`), and answers say so
    /// (`Accept-Encoding: gzip`, RFC 7694). Off: a cloud that predates compression.
    gzip: bool,
    /// Test hooks for uploads: a delay before answering, and what arrived.
    uploads: Arc<UploadHooks>,
}

/// The most upload envelopes [`Cloud::uploads_seen`] remembers (the oldest go first).
pub const UPLOADS_SEEN_MAX: usize = 10_000;

/// Test hooks on the upload route.
#[derive(Default)]
struct UploadHooks {
    /// Milliseconds between applying an upload and answering it.
    answer_delay_ms: std::sync::atomic::AtomicU64,
    seen: parking_lot::Mutex<std::collections::VecDeque<UploadSeen>>,
}

/// One upload request as the cloud received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadSeen {
    /// The envelope's message id (the idempotency key).
    pub message_id: String,
    /// Reports it carried.
    pub reports: usize,
    /// First time this id arrived (else every report was answered `duplicate`).
    pub first: bool,
    /// The body arrived gzip-compressed.
    pub gzip: bool,
}

/// The largest request body once decompressed (4 MiB; the refusal names it): as large as a settings document, and far
/// above a batch of uploads (512 KiB of JSON), so a small compressed body cannot unfold
/// into gigabytes.
pub const MAX_DECODED_BYTES: usize = 4 << 20;

/// An error answer: the status and `{ "reason": ... }`.
fn reason(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(Reason::new(text))).into_response()
}

/// A JSON request body of type `T`; one that does not fit is answered `400` with
/// `{ "reason" }` naming the problem (as every other error), not axum's plain text.
pub struct Doc<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Doc<T> {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        // The `content_coding` layer let only identity or (when on) gzip through.
        let gzip = req
            .headers()
            .get(axum::http::header::CONTENT_ENCODING)
            .is_some_and(|v| {
                let v = String::from_utf8_lossy(v.as_bytes())
                    .trim()
                    .to_ascii_lowercase();
                v == "gzip" || v == "x-gzip"
            });
        if !gzip {
            return match axum::Json::<T>::from_request(req, state).await {
                Ok(axum::Json(v)) => Ok(Doc(v)),
                Err(e) => Err(reason(StatusCode::BAD_REQUEST, &e.body_text())),
            };
        }
        let json_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if !json_type {
            return Err(reason(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected request with `Content-Type: application/json`",
            ));
        }
        // The compressed body is bounded by the route's body limit, the unfolded one here.
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let json = gunzip(&body).map_err(IntoResponse::into_response)?;
        serde_json::from_slice(&json).map(Doc).map_err(|e| {
            reason(
                StatusCode::BAD_REQUEST,
                &format!("Failed to deserialize the JSON body into the target type: {e}"),
            )
        })
    }
}

/// A request refused before any work: its status and reason.
struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        reason(self.0, self.1)
    }
}

/// The answer when the database failed.
fn unavailable() -> Response {
    reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable")
}

/// SHA-256 of a secret as stored (client secrets, tokens are never kept in clear).
fn hash(secret: &str) -> String {
    fleet_protocol::signing::sha256_hex(secret.as_bytes())
}

/// The strong entity tag of a settings document.
pub fn etag(settings: &str) -> String {
    format!("\"{}\"", &hash(settings)[..16])
}

impl Cloud {
    /// Creates the server state; admin calls need `admin_token`.
    pub fn new(db: CloudDb, admin_token: &str) -> Self {
        Cloud {
            db,
            admin_token: admin_token.into(),
            clock: Arc::new(now_ms),
            heartbeat_secs: HEARTBEAT_SECS,
            jobs_queued: Arc::new(tokio::sync::Notify::new()),
            gzip: true,
            uploads: Arc::default(),
        }
    }

    /// Asks agents for a heartbeat this often (tests use the agent's 10 s minimum).
    #[must_use]
    pub fn with_heartbeat_secs(mut self, secs: u64) -> Self {
        self.heartbeat_secs = secs;
        self
    }

    /// Refuses compressed request bodies (`415`) and does not offer compression: a cloud
    /// that predates it, for the agent's negotiation tests.
    #[must_use]
    pub fn without_gzip(mut self) -> Self {
        self.gzip = false;
        self
    }

    /// Waits `ms` after applying an upload before answering it (tests kill the agent in
    /// between); applies to clones too.
    pub fn set_upload_answer_delay_ms(&self, ms: u64) {
        self.uploads
            .answer_delay_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// The upload requests received, oldest first (at most [`UPLOADS_SEEN_MAX`]).
    pub fn uploads_seen(&self) -> Vec<UploadSeen> {
        self.uploads.seen.lock().iter().cloned().collect()
    }

    fn upload_seen(&self, u: UploadSeen) {
        let mut seen = self.uploads.seen.lock();
        if seen.len() >= UPLOADS_SEEN_MAX {
            seen.pop_front();
        }
        seen.push_back(u);
    }

    fn upload_answer_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.uploads
                .answer_delay_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Uses another clock (tests expire codes and jobs).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Fn() -> i64 + Send + Sync>) -> Self {
        self.clock = clock;
        self
    }

    /// The database (tests and the admin CLI read assets from it).
    pub fn db(&self) -> &CloudDb {
        &self.db
    }

    /// Builds the router.
    pub fn router(self) -> Router {
        Router::new()
            .route("/v1/activate", post(agent_api::activate))
            .route("/v1/oauth/token", post(agent_api::token))
            .route("/v1/agents/{agent_id}/uploads", post(agent_api::upload))
            .route(
                "/v1/agents/{agent_id}/heartbeat",
                post(agent_api::heartbeat),
            )
            .route("/v1/agents/{agent_id}/config", get(agent_api::config))
            .route("/admin/v1/agents", post(admin::create_agent))
            .route("/admin/v1/agents", get(admin::agents))
            .route(
                "/admin/v1/agents/{agent_id}/activation-code",
                post(admin::new_activation_code),
            )
            .route("/admin/v1/agents/{agent_id}/settings", put(admin::settings))
            .route("/v1/agents/{agent_id}/jobs", get(jobs::poll))
            .route("/v1/agents/{agent_id}/jobs/{job_id}/ack", post(jobs::ack))
            .route(
                "/v1/agents/{agent_id}/jobs/{job_id}/progress",
                post(jobs::progress),
            )
            .route(
                "/v1/agents/{agent_id}/jobs/{job_id}/result",
                post(jobs::result),
            )
            // Attached files travel as base64 in the JSON body (up to 50 MB each).
            .route(
                "/admin/v1/agents/{agent_id}/jobs",
                post(jobs::admin_create).layer(axum::extract::DefaultBodyLimit::max(
                    jobs::MAX_FILE_BYTES * 2,
                )),
            )
            .route("/admin/v1/jobs", get(jobs::admin_list))
            .route("/admin/v1/schedules", get(jobs::admin_schedules))
            .route(
                "/admin/v1/schedules/{schedule_id}",
                delete(jobs::admin_unschedule),
            )
            .route(
                "/v1/agents/{agent_id}/jobs/{job_id}/files/{name}",
                post(jobs::upload_file)
                    .get(jobs::download_input)
                    .layer(axum::extract::DefaultBodyLimit::max(jobs::MAX_FILE_BYTES)),
            )
            .route(
                "/admin/v1/jobs/{job_id}/files/{name}",
                get(jobs::download_file),
            )
            .route("/admin/v1/jobs/{job_id}/stop", post(jobs::admin_stop))
            .route("/v1.0/assets", get(admin::assets))
            .layer(axum::middleware::from_fn_with_state(
                self.gzip,
                content_coding,
            ))
            .layer(axum::middleware::from_fn(protocol_version))
            .with_state(self)
    }

    /// The agent a request's bearer token belongs to, when it is the one in the path.
    fn agent_for(&self, headers: &HeaderMap, agent_id: &str) -> Result<String, Refused> {
        let Some(agent) = self.bearer(headers) else {
            return Err(Refused(
                StatusCode::UNAUTHORIZED,
                "missing or expired token",
            ));
        };
        if agent != agent_id {
            return Err(Refused(StatusCode::FORBIDDEN, "token of another agent"));
        }
        Ok(agent)
    }

    fn bearer(&self, headers: &HeaderMap) -> Option<String> {
        let v = headers.get("authorization")?.to_str().ok()?;
        let t = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))?;
        self.db
            .agent_by_token(&hash(t), (self.clock)())
            .ok()
            .flatten()
    }

    /// `Ok` for the admin token, else the `401` answer.
    fn admin(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given.is_some_and(|t| t == &*self.admin_token) {
            Ok(())
        } else {
            Err(Refused(StatusCode::UNAUTHORIZED, "admin token required"))
        }
    }
}

/// Refuses requests that announce another protocol version (426, with the version spoken);
/// requests without the header (curl, integrators' scripts) are served as version 1.
async fn protocol_version(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match req.headers().get(VERSION_HEADER) {
        Some(v) if v.as_bytes() != VERSION_TEXT.as_bytes() => {
            let mut r = reason(
                StatusCode::UPGRADE_REQUIRED,
                &format!(
                    "protocol {} is not spoken here; this cloud speaks {VERSION_TEXT}",
                    String::from_utf8_lossy(v.as_bytes())
                ),
            );
            r.headers_mut().insert(
                VERSION_HEADER,
                axum::http::HeaderValue::from_static(VERSION_TEXT),
            );
            r
        }
        _ => next.run(req).await,
    }
}

/// Request bodies' content coding (RFC 9110 §8.4, RFC 7694): with `gzip` on, a gzip body
/// goes through (the [`Doc`] extractor unfolds it) and every answer says
/// `Accept-Encoding: gzip`; any other coding, or gzip with it off, is `415` naming what is
/// accepted.
async fn content_coding(
    axum::extract::State(gzip): axum::extract::State<bool>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let accepted = if gzip { "gzip" } else { "identity" };
    let coding = req
        .headers()
        .get(axum::http::header::CONTENT_ENCODING)
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .to_ascii_lowercase()
        });
    let ok = match coding.as_deref() {
        None | Some("" | "identity") => true,
        Some("gzip" | "x-gzip") => gzip,
        Some(_) => false,
    };
    let mut r = if ok {
        next.run(req).await
    } else {
        reason(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!(
                "request bodies in {} are not accepted here; send {accepted}",
                coding.unwrap_or_default()
            ),
        )
    };
    r.headers_mut().insert(
        axum::http::header::ACCEPT_ENCODING,
        axum::http::HeaderValue::from_static(accepted),
    );
    r
}

/// Unfolds a gzip body, refusing one that grows past [`MAX_DECODED_BYTES`].
fn gunzip(body: &[u8]) -> Result<Vec<u8>, Refused> {
    use std::io::Read;
    let mut out = Vec::new();
    let limit = MAX_DECODED_BYTES as u64 + 1;
    match flate2::read::MultiGzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
    {
        Ok(_) if out.len() > MAX_DECODED_BYTES => Err(Refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body unfolds to more than 4 MiB (4194304 bytes)",
        )),
        Ok(_) => Ok(out),
        Err(_) => Err(Refused(
            StatusCode::BAD_REQUEST,
            "the gzip body cannot be read (corrupt or truncated)",
        )),
    }
}

/// Installs the ring crypto provider for rustls once (the process must choose one).
pub fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        rustls::crypto::ring::default_provider()
            .install_default()
            .ok();
    });
}

/// Starts the reference cloud on `listener` with a generated certificate; returns the CA
/// PEM and a handle that stops it.
///
/// # Errors
/// When certificates cannot be generated or the listener is unusable.
pub async fn start(
    listener: std::net::TcpListener,
    cloud: Cloud,
) -> anyhow::Result<(String, axum_server::Handle<SocketAddr>)> {
    start_in(listener, cloud, None).await
}

/// As [`start`]; with `tls_dir`, the CA is kept there across restarts ([`tls::kept`]).
///
/// # Errors
/// When certificates cannot be generated, read or saved, or the listener is unusable.
pub async fn start_in(
    listener: std::net::TcpListener,
    cloud: Cloud,
    tls_dir: Option<&std::path::Path>,
) -> anyhow::Result<(String, axum_server::Handle<SocketAddr>)> {
    let ip = listener.local_addr()?.ip().to_string();
    let g = match tls_dir {
        Some(d) => tls::kept(d, &["localhost", &ip])?,
        None => tls::generate(&["localhost", &ip])?,
    };
    let handle = start_with(listener, cloud, &g).await?;
    Ok((g.ca_pem, handle))
}

/// Starts the reference cloud with a given certificate (a restart that agents must
/// still trust, as after an outage).
///
/// # Errors
/// When the certificate or the listener is unusable.
pub async fn start_with(
    listener: std::net::TcpListener,
    cloud: Cloud,
    g: &tls::Generated,
) -> anyhow::Result<axum_server::Handle<SocketAddr>> {
    install_crypto();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
        g.cert_pem.clone().into_bytes(),
        g.key_pem.clone().into_bytes(),
    )
    .await?;
    let handle = axum_server::Handle::new();
    listener.set_nonblocking(true)?;
    let server = axum_server::from_tcp_rustls(listener, config)?.handle(handle.clone());
    tokio::spawn(async move {
        if let Err(e) = server.serve(cloud.router().into_make_service()).await {
            tracing::error!(error = %e, "Reference cloud stopped.");
        }
    });
    Ok(handle)
}
