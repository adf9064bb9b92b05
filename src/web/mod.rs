//! The local web listener: the admin's page (activation, status, printers, discovery,
//! what will be sent, settings; static files from `web-ui/` built into the binary), its
//! JSON API under `/api/`, and `/metrics`. Owns who may use it: "localhost only" (peer
//! address and Host header, against DNS rebinding), the agent password and sessions
//! ([`auth`]), CSRF tokens, and the security headers (strict CSP).
//! Takes an already-bound listener and a shutdown future, so tests run it on port 0.

pub mod api;
pub mod auth;

use crate::config::Config;
use crate::store::Store;
use crate::store::secrets::SealKey;
use crate::telemetry::Metrics;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use parking_lot::RwLock;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, watch};

/// What the running components offer the page; replaced by the supervisor at each
/// (re)start of the components.
#[derive(Clone)]
pub struct Live {
    /// The configuration in force.
    pub config: Config,
    /// The poller (refresh buttons), when it runs.
    pub poller: Option<crate::poller::scheduler::PollerHandle>,
    /// "Discover now", when discovery has targets.
    pub discover: Option<mpsc::Sender<crate::discovery::DiscoverRequest>>,
}

/// What the page is given by the supervisor: the state and the process-wide handles.
pub struct Handles {
    /// The store.
    pub store: Store,
    /// Seals the proxy password and the activation's secret.
    pub key: SealKey,
    /// The state directory (a staged update's state).
    pub state_dir: PathBuf,
    /// The agent's clock.
    pub clock: crate::clock::Clock,
    /// The support library in use.
    pub library: crate::printer::library::Handle,
    /// The cloud link's status.
    pub link: crate::cloud::link::Link,
    /// The agent's log.
    pub logs: crate::telemetry::Logs,
}

/// The agent as the page sees it.
pub struct Agent {
    /// The store.
    pub store: Store,
    /// Seals the proxy password.
    pub key: SealKey,
    /// Where the store is (activation writes its credentials there).
    pub state_dir: PathBuf,
    /// The agent's clock.
    pub clock: crate::clock::Clock,
    /// The support library in use.
    pub library: crate::printer::library::Handle,
    /// The cloud link's status.
    pub link: crate::cloud::link::Link,
    /// The agent's log.
    pub logs: crate::telemetry::Logs,
    /// Sessions and login attempts.
    pub sessions: auth::Sessions,
    /// The running components' handles.
    pub live: RwLock<Live>,
    /// Discovery progress (runs scheduled, from jobs, or from the page).
    pub progress: watch::Sender<crate::discovery::Progress>,
    /// Restarts the components with a configuration (after activation, a proxy change).
    pub apply: mpsc::Sender<Box<Config>>,
    /// Set by an activation without "discover now": the next start waits for the schedule.
    pub defer_discovery: AtomicBool,
    /// "Allow localhost access only" (cached from the store).
    pub localhost_only: AtomicBool,
    /// When the agent started (epoch ms).
    pub started_ms: i64,
}

impl Agent {
    /// Builds the page's view of the agent; reads "localhost only" from the store.
    pub fn new(h: Handles, config: Config, apply: mpsc::Sender<Box<Config>>) -> Agent {
        let Handles {
            store,
            key,
            state_dir,
            clock,
            library,
            link,
            logs,
        } = h;
        // Unreadable: the safe side, localhost only.
        let localhost_only = store.localhost_only().unwrap_or(true);
        Agent {
            started_ms: clock.now_ms(),
            store,
            key,
            state_dir,
            clock,
            library,
            link,
            logs,
            sessions: auth::Sessions::default(),
            live: RwLock::new(Live {
                config,
                poller: None,
                discover: None,
            }),
            progress: watch::channel(crate::discovery::Progress {
                finished: true,
                ..Default::default()
            })
            .0,
            apply,
            defer_discovery: AtomicBool::new(false),
            localhost_only: AtomicBool::new(localhost_only),
        }
    }

    /// Reads printers with the library in use, stamped by the agent's clock.
    pub fn reader(&self) -> crate::poller::Reader {
        crate::poller::Reader {
            library: self.library.clone(),
            clock: self.clock.clone(),
            deadline: crate::poller::DEFAULT_READ_DEADLINE,
        }
    }

    /// The handles of the running components.
    pub fn live(&self) -> Live {
        self.live.read().clone()
    }

    /// Records the handles of freshly started components.
    pub fn set_live(&self, live: Live) {
        *self.live.write() = live;
    }
}

/// What the handlers need.
#[derive(Clone)]
pub struct WebState {
    /// The agent's metrics.
    pub metrics: Arc<Metrics>,
    /// The agent behind the page (`None`: only `/metrics` and `/api/health`).
    pub agent: Option<Arc<Agent>>,
}

/// A JSON error body `{ "reason": ... }` with its status.
pub fn reason(status: StatusCode, why: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "reason": why.into() })),
    )
        .into_response()
}

/// The page's static files, built into the binary.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../../web-ui/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web-ui/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web-ui/style.css"),
    ),
    (
        "/favicon.svg",
        "image/svg+xml",
        include_bytes!("../../web-ui/favicon.svg"),
    ),
];

/// The Content-Security-Policy of every response: nothing but this origin's own files,
/// no inline script or style, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn asset(req: Request) -> Response {
    let path = req.uri().path();
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((_, mime, body)) => ([(header::CONTENT_TYPE, *mime)], *body).into_response(),
        None => reason(StatusCode::NOT_FOUND, format!("no page {path}")),
    }
}

/// Builds the router.
pub fn router(state: WebState) -> Router {
    let mut r = Router::new().route("/metrics", get(metrics)).route(
        "/api/health",
        get(|| async {
            axum::Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
        }),
    );
    for (p, _, _) in ASSETS {
        r = r.route(p, get(asset));
    }
    if let Some(agent) = state.agent.clone() {
        let protected = Router::new()
            .route("/api/status", get(api::status))
            .route("/api/printers", get(api::printers))
            .route("/api/printers/{id}", get(api::printer))
            .route("/api/printers/{id}/refresh", post(api::refresh))
            .route("/api/discovery", get(api::discovery_report))
            .route("/api/discovery.csv", get(api::discovery_csv))
            .route("/api/discovery/run", post(api::discover_now))
            .route("/api/discovery/events", get(api::discovery_events))
            .route("/api/outbox", get(api::outbox))
            .route("/api/settings", get(api::settings))
            .route("/api/settings/proxy", put(api::set_proxy))
            .route("/api/settings/security", put(api::set_security))
            .route("/api/settings/log-level", put(api::set_log_level))
            .route("/api/password", post(api::set_password))
            .route("/api/logs", get(api::logs))
            .route("/api/logout", post(api::logout))
            .route_layer(axum::middleware::from_fn_with_state(
                agent.clone(),
                require_session,
            ))
            .with_state(agent.clone());
        let open = Router::new()
            .route("/api/session", get(api::session))
            .route("/api/login", post(api::login))
            .route("/api/activate", post(api::activate))
            .with_state(agent.clone());
        r = r.merge(protected).merge(open);
    }
    r.fallback(|req: Request| async move {
        reason(
            StatusCode::NOT_FOUND,
            format!("no such page or API: {}", req.uri().path()),
        )
    })
    .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
    .with_state(state)
}

async fn metrics(State(s): State<WebState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

/// Whether a Host header names this machine's loopback (`localhost`, `127.x.y.z`,
/// `[::1]`, with or without a port); anything else may be a DNS-rebinding attack.
pub fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else {
        host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn peer_is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// Every request: "localhost only" (peer and Host), then the security headers.
async fn guard(State(s): State<WebState>, req: Request, next: Next) -> Response {
    let localhost_only = s
        .agent
        .as_ref()
        .is_none_or(|a| a.localhost_only.load(Ordering::Relaxed));
    if localhost_only {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if let Some(ip) = peer.filter(|ip| !peer_is_loopback(*ip)) {
            tracing::debug!(peer = %ip, "Refused a request from another host (localhost only).");
            return with_headers(reason(
                StatusCode::FORBIDDEN,
                "this page accepts connections from this computer only (setting: allow localhost access only)",
            ));
        }
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !loopback_host(host) {
            return with_headers(reason(
                StatusCode::FORBIDDEN,
                format!(
                    "the Host header {host:?} is not this computer; open http://localhost/ instead"
                ),
            ));
        }
    }
    let api = req.uri().path().starts_with("/api/");
    let mut resp = next.run(req).await;
    if api {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    with_headers(resp)
}

fn with_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// The session behind the request's cookie, if any.
pub fn session_of(agent: &Agent, headers: &HeaderMap) -> Option<(String, auth::Session)> {
    let id = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .find_map(|h| auth::cookie(h, auth::COOKIE))?;
    agent.sessions.get(id).map(|s| (id.to_string(), s))
}

/// Whether the agent password is set.
pub fn password_set(agent: &Agent) -> bool {
    agent.store.page_password().ok().flatten().is_some()
}

/// Protected routes: a session that logged in (or any session while no password is
/// set), and on every state-changing request the session's CSRF token in
/// `X-CSRF-Token`.
async fn require_session(State(agent): State<Arc<Agent>>, req: Request, next: Next) -> Response {
    let Some((_, s)) = session_of(&agent, req.headers()) else {
        return reason(StatusCode::UNAUTHORIZED, "no session: load the page again");
    };
    if !s.authenticated && password_set(&agent) {
        return reason(StatusCode::UNAUTHORIZED, "log in with the agent password");
    }
    if req.method() != Method::GET && !csrf_ok(&s, req.headers()) {
        return reason(
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token (X-CSRF-Token)",
        );
    }
    next.run(req).await
}

/// Whether the request carries the session's CSRF token.
pub fn csrf_ok(s: &auth::Session, headers: &HeaderMap) -> bool {
    headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| auth::same(t, &s.csrf))
}

/// Serves until `shutdown` completes (the peer address reaches the handlers for the
/// "localhost only" check).
///
/// # Errors
/// When the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: WebState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another host's request (the peer address as the listener reports it) is refused
    /// while "localhost only" is on, and served once it is turned off.
    #[tokio::test]
    async fn other_hosts_are_refused_until_allowed() {
        use tower::ServiceExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = SealKey::load_or_create(dir.path()).unwrap();
        let config = crate::config::parse("t", "").unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let clock = crate::clock::Clock::system();
        let handles = Handles {
            store,
            key,
            state_dir: dir.path().into(),
            link: crate::cloud::link::Link::new(clock.clone()),
            clock,
            library: Default::default(),
            logs: Default::default(),
        };
        let agent = Arc::new(Agent::new(handles, config, tx));
        let state = WebState {
            metrics: Arc::new(Metrics::new()),
            agent: Some(agent.clone()),
        };
        let ask = |peer: [u8; 4], host: &str| {
            axum::http::Request::builder()
                .uri("/api/session")
                .header(header::HOST, host)
                .extension(ConnectInfo(SocketAddr::from((peer, 40000))))
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let status = |r: Response| r.status();
        let r = router(state.clone())
            .oneshot(ask([192, 0, 2, 7], "localhost"))
            .await;
        assert_eq!(status(r.unwrap()), StatusCode::FORBIDDEN);
        let r = router(state.clone())
            .oneshot(ask([127, 0, 0, 1], "localhost:8080"))
            .await;
        assert_eq!(status(r.unwrap()), StatusCode::OK);
        agent.localhost_only.store(false, Ordering::Relaxed);
        let r = router(state.clone())
            .oneshot(ask([192, 0, 2, 7], "agent.corp.example:8080"))
            .await;
        assert_eq!(status(r.unwrap()), StatusCode::OK);
    }

    #[test]
    fn only_loopback_host_headers_pass() {
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST",
            "127.0.0.1",
            "127.0.0.1:80",
            "127.1.2.3:9",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "192.0.2.1",
            "[2001:db8::1]:80",
            "127.0.0.1.evil.example",
        ] {
            assert!(!loopback_host(bad), "{bad}");
        }
        assert!(peer_is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!peer_is_loopback("::ffff:192.0.2.1".parse().unwrap()));
    }
}
