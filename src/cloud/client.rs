//! The HTTPS client for `docs/protocol.md` (reqwest + rustls): activation, bearer tokens
//! refreshed early, and uploads. HTTP status maps to the action the caller takes.

use fleet_protocol::activation::{
    ActivateRequest, Activated, CLIENT_CREDENTIALS, Token, TokenRequest,
};
use fleet_protocol::heartbeat::{Heartbeat, HeartbeatAnswer};
use fleet_protocol::jobs::{Job, JobResult, Progress, StateAnswer};
use fleet_protocol::upload::{Envelope, ReportStatus, SCHEMA, UploadAnswer};
use fleet_protocol::{Reason, VERSION_HEADER, VERSION_TEXT as PROTOCOL};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Why a cloud call failed; each variant calls for a different action.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// 401: get a new token (or re-activate).
    #[error("cloud: unauthorized ({0})")]
    Unauthorized(String),
    /// 429: back off.
    #[error("cloud: rate limited")]
    RateLimited,
    /// 5xx or network: back off and retry.
    #[error("cloud: temporarily unavailable: {0}")]
    Transient(String),
    /// Another 4xx: drop the message, count it, log the reason.
    #[error("cloud: rejected ({status}): {reason}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The cloud's reason.
        reason: String,
    },
    /// Local configuration problem (bad URL, unreadable CA).
    #[error("cloud: {0}")]
    Config(String),
}

/// Credentials obtained at activation.
pub use crate::store::CloudCredentials as Credentials;

/// A cloud connection.
pub struct CloudClient {
    http: reqwest::Client,
    base: String,
    token: Mutex<Option<(String, Instant)>>,
    /// The cloud takes gzip request bodies: it said so in an `Accept-Encoding` answer
    /// header (RFC 7694 §3). Until then, and after a `415`, bodies go plain, so a cloud
    /// that predates compression keeps working.
    gzip: AtomicBool,
    /// What the uploads put on the wire.
    wire: Mutex<WireStats>,
}

/// Upload requests and their bodies (telemetry only; for `/metrics` and the bench).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireStats {
    /// Upload requests answered (any status).
    pub requests: u64,
    /// Their JSON bodies' size before compression.
    pub json_bytes: u64,
    /// Their bodies' size as sent (compressed when the cloud takes gzip).
    pub body_bytes: u64,
}

/// Bodies smaller than this go plain: gzip's 18-byte frame and the CPU buy nothing on a
/// token request or a small acknowledgement.
pub const COMPRESS_FROM_BYTES: usize = 1024;

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::default(),
    );
    // Writing into a Vec cannot fail.
    e.write_all(data).ok();
    e.finish().unwrap_or_default()
}

/// Whether an answer's `Accept-Encoding` lists gzip.
fn accepts_gzip(h: &reqwest::header::HeaderMap) -> bool {
    h.get_all(reqwest::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|c| {
            let mut parts = c.split(';');
            let name = parts.next().unwrap_or("").trim();
            // `gzip;q=0` refuses it.
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

fn classify(e: reqwest::Error) -> CloudError {
    CloudError::Transient(with_causes(&e))
}

/// reqwest's own message hides the cause (refused, TLS, proxy tunnel, a certificate
/// store that cannot be read): the message with its chain of causes.
fn with_causes(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        let m = c.to_string();
        if !text.contains(&m) {
            text.push_str(": ");
            text.push_str(&m);
        }
        src = c.source();
    }
    text
}

/// The largest document the agent reads from the cloud (settings, a page of jobs).
pub const MAX_DOCUMENT_BYTES: usize = 4 << 20;
/// The largest answer to a request of the agent's (tokens, acknowledgements) or error.
pub const MAX_ANSWER_BYTES: usize = 256 << 10;
/// Jobs read from one answer, at most (the rest come at the next poll).
pub const MAX_JOBS_PER_FETCH: usize = 1000;

/// The jobs answer (`{"jobs": [...]}`) read within a budget: the first
/// [`MAX_JOBS_PER_FETCH`] jobs kept as their JSON text, the rest only counted, so a page of
/// a million tiny jobs costs no more memory than its bytes.
#[derive(serde::Deserialize)]
struct JobsPage {
    #[serde(deserialize_with = "first_jobs")]
    jobs: FirstJobs,
}

struct FirstJobs {
    kept: Vec<Box<serde_json::value::RawValue>>,
    total: usize,
}

fn first_jobs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<FirstJobs, D::Error> {
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = FirstJobs;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of jobs")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<FirstJobs, A::Error> {
            let mut out = FirstJobs {
                kept: Vec::new(),
                total: 0,
            };
            while out.kept.len() < MAX_JOBS_PER_FETCH {
                match seq.next_element()? {
                    Some(j) => out.kept.push(j),
                    None => break,
                }
            }
            out.total = out.kept.len();
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                out.total += 1;
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Visit)
}

/// Reads a body whole, refusing one over `max` bytes before reading past it.
pub(crate) async fn body_of(mut r: reqwest::Response, max: usize) -> Result<Vec<u8>, CloudError> {
    let too_big =
        || CloudError::Transient(format!("the cloud's answer is larger than {max} bytes"));
    if r.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_big());
    }
    let mut out = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(classify)? {
        if out.len() + chunk.len() > max {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Reads a JSON body of at most `max` bytes.
async fn json_of<T: DeserializeOwned>(r: reqwest::Response, max: usize) -> Result<T, CloudError> {
    let bytes = body_of(r, max).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        CloudError::Transient(format!("the cloud's answer is not the expected JSON: {e}"))
    })
}

async fn error_of(r: reqwest::Response) -> CloudError {
    let status = r.status().as_u16();
    let reason: String = json_of::<Reason>(r, MAX_ANSWER_BYTES)
        .await
        .map(|r| r.reason)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(500)
        .collect();
    match status {
        401 => CloudError::Unauthorized(reason),
        429 => CloudError::RateLimited,
        s if s >= 500 => CloudError::Transient(format!("HTTP {s} {reason}")),
        s => CloudError::Rejected { status: s, reason },
    }
}

impl CloudClient {
    /// Creates a client for `base_url` (https only), trusting the platform roots plus
    /// `extra_ca` (PEM). Certificate verification is never turned off.
    ///
    /// # Errors
    /// On a non-https URL or an unreadable CA.
    pub fn new(
        base_url: &str,
        extra_ca: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<CloudClient, CloudError> {
        Self::with_proxy(base_url, extra_ca, timeout, &crate::config::Proxy::System)
    }

    /// Like [`CloudClient::new`], reaching the cloud the way `proxy` says.
    ///
    /// # Errors
    /// On a non-https URL, an unreadable CA or an unusable proxy URL.
    pub fn with_proxy(
        base_url: &str,
        extra_ca: Option<&[u8]>,
        timeout: Duration,
        proxy: &crate::config::Proxy,
    ) -> Result<CloudClient, CloudError> {
        super::install_crypto();
        if !base_url.starts_with("https://") {
            return Err(CloudError::Config(format!(
                "{base_url}: the cloud URL must start with https://"
            )));
        }
        let tls = super::trust::client_config(extra_ca).map_err(CloudError::Config)?;
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("fleet-agent/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(tls);
        match proxy {
            crate::config::Proxy::System => {}
            crate::config::Proxy::None => b = b.no_proxy(),
            crate::config::Proxy::Http {
                url,
                user,
                password,
                no_proxy,
            } => {
                let mut p = reqwest::Proxy::all(url)
                    .map_err(|e| CloudError::Config(format!("cloud.proxy.url {url:?}: {e}")))?;
                if let Some(u) = user {
                    p = p.basic_auth(u, password.as_ref().map_or("", |s| s.expose()));
                }
                if !no_proxy.is_empty() {
                    p = p.no_proxy(reqwest::NoProxy::from_string(&no_proxy.join(",")));
                }
                b = b.proxy(p);
            }
        }
        let http = b.build().map_err(|e| {
            CloudError::Config(format!(
                "cannot set up HTTPS to the cloud: {}",
                with_causes(&e)
            ))
        })?;
        Ok(CloudClient {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            token: Mutex::new(None),
            gzip: AtomicBool::new(false),
            wire: Mutex::new(WireStats::default()),
        })
    }

    /// Whether the cloud answers at all through this client's proxy (any HTTP answer
    /// counts: a tried proxy, before it is saved).
    ///
    /// # Errors
    /// The transport's error (refused, timed out, a proxy that refused the tunnel).
    pub async fn reach(&self) -> Result<(), CloudError> {
        self.http
            .get(format!("{}/api/health", self.base))
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }

    /// Exchanges an activation code for credentials.
    ///
    /// # Errors
    /// Rejected (with the cloud's reason: malformed, unknown, expired, used) or transient.
    pub async fn activate(&self, code: &str) -> Result<Credentials, CloudError> {
        let a: Activated = self
            .post(
                "/v1/activate",
                None,
                None,
                &ActivateRequest {
                    activation_code: code.to_string(),
                    agent_version: env!("CARGO_PKG_VERSION").into(),
                    hostname: None,
                    os: Some(format!(
                        "{}-{}",
                        std::env::consts::OS,
                        std::env::consts::ARCH
                    )),
                },
            )
            .await?;
        Ok(Credentials {
            agent_id: a.agent_id,
            client_id: a.client_id,
            client_secret: a.client_secret,
        })
    }

    /// Forgets the cached token (after a 401).
    pub fn invalidate_token(&self) {
        *self.token.lock() = None;
    }

    async fn bearer(&self, creds: &Credentials) -> Result<String, CloudError> {
        if let Some((t, until)) = self.token.lock().clone()
            && Instant::now() < until
        {
            return Ok(t);
        }
        let v: Token = self
            .post(
                "/v1/oauth/token",
                None,
                None,
                &TokenRequest {
                    grant_type: CLIENT_CREDENTIALS.into(),
                    client_id: creds.client_id.clone(),
                    client_secret: creds.client_secret.clone(),
                },
            )
            .await?;
        let t = v.access_token.expose().to_string();
        // Refresh at 80 % of the lifetime, which the cloud says: a day at most, so neither
        // the product nor the instant can overflow whatever number it sends.
        let life = v.expires_in.clamp(1, 86_400);
        let until = Instant::now() + Duration::from_secs(life * 8 / 10);
        *self.token.lock() = Some((t.clone(), until));
        Ok(t)
    }

    /// Uploads one envelope with `reports`; returns each report's status.
    ///
    /// # Errors
    /// As [`CloudError`].
    pub async fn upload<R: Serialize>(
        &self,
        creds: &Credentials,
        message_id: &str,
        reports: Vec<R>,
        takeover: bool,
        sent_at: i64,
    ) -> Result<Vec<ReportStatus>, CloudError> {
        let token = self.bearer(creds).await?;
        let body = Envelope {
            schema_version: SCHEMA.into(),
            message_id: message_id.into(),
            agent_id: creds.agent_id.clone(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            sent_at,
            takeover,
            reports,
        };
        let json = serde_json::to_vec(&body)
            .map_err(|e| CloudError::Config(format!("upload not serialisable: {e}")))?;
        let path = format!("/v1/agents/{}/uploads", creds.agent_id);
        let (r, sent) = self
            .send_json(&path, Some(&token), Some(message_id), json)
            .await?;
        {
            let mut w = self.wire.lock();
            w.requests += 1;
            w.json_bytes += sent.0 as u64;
            w.body_bytes += sent.1 as u64;
        }
        if !r.status().is_success() {
            return Err(error_of(r).await);
        }
        let v: UploadAnswer = json_of(r, MAX_ANSWER_BYTES).await?;
        Ok(v.results.into_iter().map(|r| r.status).collect())
    }

    /// What the uploads have put on the wire so far.
    pub fn wire_stats(&self) -> WireStats {
        *self.wire.lock()
    }

    /// Whether request bodies are compressed now (the cloud said it takes gzip).
    pub fn compresses(&self) -> bool {
        self.gzip.load(Ordering::Relaxed)
    }

    /// Sends a heartbeat; returns the cloud's answer (`jobsWaiting`, `nextHeartbeatSecs`).
    ///
    /// # Errors
    /// As [`CloudError`].
    pub async fn heartbeat(
        &self,
        creds: &Credentials,
        body: &Heartbeat,
    ) -> Result<HeartbeatAnswer, CloudError> {
        let token = self.bearer(creds).await?;
        self.post(
            &format!("/v1/agents/{}/heartbeat", creds.agent_id),
            Some(&token),
            None,
            body,
        )
        .await
    }

    /// Fetches the instance settings unless `etag` is still current: `None` on 304,
    /// else the new entity tag and document.
    ///
    /// # Errors
    /// As [`CloudError`]; a body that is not a JSON object is `Rejected`.
    pub async fn config(
        &self,
        creds: &Credentials,
        etag: Option<&str>,
    ) -> Result<Option<(String, Value)>, CloudError> {
        let token = self.bearer(creds).await?;
        let mut req = self
            .http
            .get(format!("{}/v1/agents/{}/config", self.base, creds.agent_id))
            .header(VERSION_HEADER, PROTOCOL)
            .bearer_auth(token);
        if let Some(t) = etag {
            req = req.header("If-None-Match", t);
        }
        let r = req.send().await.map_err(classify)?;
        if r.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(error_of(r).await);
        }
        let tag = r
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            // A tag is stored and sent back: a long one is no tag.
            .filter(|t| t.len() <= 256)
            .unwrap_or("")
            .to_string();
        let v: Value = json_of(r, MAX_DOCUMENT_BYTES).await?;
        Ok(Some((tag, v)))
    }

    /// Long-polls for pending jobs, waiting up to `wait` for one.
    ///
    /// # Errors
    /// As [`CloudError`].
    pub async fn jobs(&self, creds: &Credentials, wait: Duration) -> Result<Vec<Job>, CloudError> {
        let token = self.bearer(creds).await?;
        let r = self
            .http
            .get(format!(
                "{}/v1/agents/{}/jobs?waitSecs={}",
                self.base,
                creds.agent_id,
                wait.as_secs()
            ))
            .header(VERSION_HEADER, PROTOCOL)
            .bearer_auth(token)
            // The cloud holds the request open: allow for that beyond the usual timeout.
            .timeout(wait + Duration::from_secs(15))
            .send()
            .await
            .map_err(classify)?;
        if !r.status().is_success() {
            return Err(error_of(r).await);
        }
        // Each job is read on its own: one the agent cannot read never hides the others.
        let page: JobsPage = json_of(r, MAX_DOCUMENT_BYTES).await?;
        let FirstJobs { kept, total } = page.jobs;
        if total > MAX_JOBS_PER_FETCH {
            tracing::warn!(
                jobs = total,
                "The cloud sent more jobs than the agent takes at once; the first {MAX_JOBS_PER_FETCH} are read."
            );
        }
        Ok(kept
            .into_iter()
            .filter_map(|j| {
                serde_json::from_str::<Job>(j.get())
                    .map_err(
                        |e| tracing::warn!(error = %e, "A job the agent cannot read was ignored."),
                    )
                    .ok()
            })
            .collect())
    }

    /// Acknowledges a job (pending → inProgress).
    ///
    /// # Errors
    /// As [`CloudError`]; a job that was stopped or expired is `Rejected` with 409.
    pub async fn job_ack(&self, creds: &Credentials, job_id: &str) -> Result<(), CloudError> {
        self.job_post::<_, StateAnswer>(creds, job_id, "ack", &serde_json::Map::new())
            .await
            .map(drop)
    }

    /// Reports a job's progress.
    ///
    /// # Errors
    /// As [`CloudError`]; a job not in progress is `Rejected` with 409.
    pub async fn job_progress(
        &self,
        creds: &Credentials,
        job_id: &str,
        progress: &Progress,
    ) -> Result<(), CloudError> {
        self.job_post::<_, StateAnswer>(creds, job_id, "progress", progress)
            .await
            .map(drop)
    }

    /// Posts a job's result.
    ///
    /// # Errors
    /// As [`CloudError`]; a job no longer in progress is `Rejected` with 409.
    pub async fn job_result(
        &self,
        creds: &Credentials,
        job_id: &str,
        result: &JobResult,
    ) -> Result<(), CloudError> {
        self.job_post::<_, StateAnswer>(creds, job_id, "result", result)
            .await
            .map(drop)
    }

    async fn job_post<B: Serialize, A: DeserializeOwned>(
        &self,
        creds: &Credentials,
        job_id: &str,
        what: &str,
        body: &B,
    ) -> Result<A, CloudError> {
        let token = self.bearer(creds).await?;
        self.post(
            &format!("/v1/agents/{}/jobs/{job_id}/{what}", creds.agent_id),
            Some(&token),
            None,
            body,
        )
        .await
    }

    /// Uploads a file for a job in progress (`name`: letters, digits, `.`, `-`, `_`).
    ///
    /// # Errors
    /// As [`CloudError`].
    pub async fn job_file(
        &self,
        creds: &Credentials,
        job_id: &str,
        name: &str,
        body: Vec<u8>,
    ) -> Result<(), CloudError> {
        let token = self.bearer(creds).await?;
        let r = self
            .http
            .post(format!(
                "{}/v1/agents/{}/jobs/{job_id}/files/{name}",
                self.base, creds.agent_id
            ))
            .header(VERSION_HEADER, PROTOCOL)
            .header(reqwest::header::CONTENT_TYPE, "application/gzip")
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .map_err(classify)?;
        if !r.status().is_success() {
            return Err(error_of(r).await);
        }
        Ok(())
    }

    /// Downloads a file the cloud attached to a job in progress, refusing one larger than
    /// `max_bytes` before it is read whole.
    ///
    /// # Errors
    /// As [`CloudError`]; a file over the limit is `Rejected` with status 413.
    pub async fn job_input(
        &self,
        creds: &Credentials,
        job_id: &str,
        name: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, CloudError> {
        let token = self.bearer(creds).await?;
        let mut r = self
            .http
            .get(format!(
                "{}/v1/agents/{}/jobs/{job_id}/files/{name}",
                self.base, creds.agent_id
            ))
            .header(VERSION_HEADER, PROTOCOL)
            .bearer_auth(token)
            .send()
            .await
            .map_err(classify)?;
        if !r.status().is_success() {
            return Err(error_of(r).await);
        }
        let too_big = |n: u64| CloudError::Rejected {
            status: 413,
            reason: format!("{name} is larger than {max_bytes} bytes ({n} bytes or more)"),
        };
        if let Some(n) = r.content_length().filter(|n| *n > max_bytes) {
            return Err(too_big(n));
        }
        let mut out = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(classify)? {
            out.extend_from_slice(&chunk);
            if out.len() as u64 > max_bytes {
                return Err(too_big(out.len() as u64));
            }
        }
        Ok(out)
    }

    /// POSTs `body` to `path` with the protocol header (and the bearer token and
    /// idempotency key when given); a non-2xx answer becomes the matching [`CloudError`].
    async fn post<B: Serialize, A: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&str>,
        idempotency_key: Option<&str>,
        body: &B,
    ) -> Result<A, CloudError> {
        let json = serde_json::to_vec(body)
            .map_err(|e| CloudError::Config(format!("request not serialisable: {e}")))?;
        let (r, _) = self.send_json(path, token, idempotency_key, json).await?;
        if !r.status().is_success() {
            return Err(error_of(r).await);
        }
        json_of(r, MAX_ANSWER_BYTES).await
    }

    /// POSTs a JSON body, gzip-compressed when the cloud takes it and the body is worth
    /// it; a `415` to a compressed body turns compression off and sends it again plain.
    /// Returns the answer and the body's size (JSON, as sent).
    async fn send_json(
        &self,
        path: &str,
        token: Option<&str>,
        idempotency_key: Option<&str>,
        json: Vec<u8>,
    ) -> Result<(reqwest::Response, (usize, usize)), CloudError> {
        let mut compress = json.len() >= COMPRESS_FROM_BYTES && self.gzip.load(Ordering::Relaxed);
        loop {
            let body = if compress { gzip(&json) } else { json.clone() };
            let sent = (json.len(), body.len());
            let mut req = self
                .http
                .post(format!("{}{path}", self.base))
                .header(VERSION_HEADER, PROTOCOL)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
            if compress {
                req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
            }
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(k) = idempotency_key {
                req = req.header("Idempotency-Key", k);
            }
            let r = req.send().await.map_err(classify)?;
            if accepts_gzip(r.headers()) {
                self.gzip.store(true, Ordering::Relaxed);
            }
            if compress && r.status() == reqwest::StatusCode::UNSUPPORTED_MEDIA_TYPE {
                // A cloud that no longer takes gzip (or a proxy in the way that does not):
                // plain from now on. The request was refused whole, so resending under the
                // same idempotency key counts it once.
                tracing::info!("The cloud refused a gzip body (415): sending plain from now on.");
                self.gzip.store(false, Ordering::Relaxed);
                compress = false;
                continue;
            }
            return Ok((r, sent));
        }
    }
}
