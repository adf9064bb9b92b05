//! The local web listener: the admin's page (activation, status, printers, discovery,
//! what will be sent, settings; static files from `web-ui/` built into the binary), its
//! JSON API under `/api/`, and `/metrics`. Owns who may use it: "localhost only" (peer
//! address and Host header, against DNS rebinding), the agent password and sessions
//! ([`auth`]), CSRF tokens, and the security headers (strict CSP).
//! Takes an already-bound listener and a shutdown future, so tests run it on port 0.

pub mod api;
pub mod auth;
pub mod listener;
pub mod tls;

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
use std::sync::atomic::AtomicBool;
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
    /// This computer's name (the Host check, once other hosts are allowed).
    pub host_name: Option<String>,
    /// The printer list's summaries, kept until the printer's next poll (parsing every
    /// report at each refresh of a 10,000-printer list would cost seconds).
    pub summaries:
        parking_lot::Mutex<std::collections::HashMap<i64, (SummaryKey, api::summary::Summary)>>,
    /// Moves the listener (remote access on or off).
    pub rebind: mpsc::Sender<listener::Rebind>,
    /// The other end, taken by [`serve`].
    rebind_rx: parking_lot::Mutex<Option<mpsc::Receiver<listener::Rebind>>>,
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
        let (rebind, rebind_rx) = mpsc::channel(1);
        Agent {
            summaries: parking_lot::Mutex::new(std::collections::HashMap::new()),
            rebind,
            rebind_rx: parking_lot::Mutex::new(Some(rebind_rx)),
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
            host_name: this_host_name(),
        }
    }

    /// Whether the page is open to other hosts: "localhost only" turned off, which the
    /// page allows only once an agent password is set (checked again here: a store
    /// whose password was removed by hand closes it).
    pub fn remote_wanted(&self) -> bool {
        !self
            .localhost_only
            .load(std::sync::atomic::Ordering::Relaxed)
            && self.store.page_password().ok().flatten().is_some()
    }

    /// The TLS configuration for other hosts, from the page's kept certificate (made on
    /// first use).
    ///
    /// # Errors
    /// When the certificate cannot be had.
    pub fn page_tls(&self) -> Result<(Arc<rustls::ServerConfig>, String), tls::TlsError> {
        let mut names = vec!["localhost".to_string()];
        names.extend(self.host_name.clone());
        names.extend(self.live.read().config.web_allowed_hosts.iter().cloned());
        let cert = tls::PageCert::load_or_create(&self.store, &self.key, &names)?;
        Ok((cert.server_config()?, cert.fingerprint()))
    }

    /// The names the page answers to besides loopback names and addresses: this
    /// computer's name and `web.allowed_hosts`.
    pub fn host_names(&self) -> Vec<String> {
        let mut names = self.live.read().config.web_allowed_hosts.clone();
        names.extend(self.host_name.clone());
        names
    }

    /// Reads printers with the library in use, stamped by the agent's clock.
    pub fn reader(&self) -> crate::poller::Reader {
        crate::poller::Reader::new(self.library.clone(), self.clock.clone())
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

/// What a cached printer summary was computed from: last reading, last attempt, health.
pub type SummaryKey = (Option<i64>, Option<i64>, &'static str);

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
            .route("/api/printers/{id}/history", get(api::history))
            .route("/api/discovery", get(api::discovery_report))
            .route("/api/discovery.csv", get(api::discovery_csv))
            .route("/api/discovery/run", post(api::discover_now))
            .route("/api/networks", get(api::networks))
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

/// A Host header split strictly: `name[:port]` or `[v6][:port]`, the port 1-65535, the
/// name made of letters, digits, `-` and `.` only. `None` for anything else
/// (`[::1]evil.example`, `a b`, an unbracketed IPv6 address, an empty name).
pub fn parse_host(host: &str) -> Option<&str> {
    fn port_ok(p: &str) -> bool {
        !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok_and(|n| n > 0)
    }
    if host.len() > 260 {
        return None;
    }
    if let Some(rest) = host.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        ip.parse::<std::net::Ipv6Addr>().ok()?;
        return match after.strip_prefix(':') {
            None if after.is_empty() => Some(ip),
            Some(p) if port_ok(p) => Some(ip),
            _ => None,
        };
    }
    let name = match host.split_once(':') {
        Some((n, p)) if port_ok(p) => n,
        Some(_) => return None,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    (!name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
    .then_some(name)
}

/// Whether a Host header names this machine's loopback (`localhost`, `127.x.y.z`,
/// `[::1]`, with or without a port); anything else may be a DNS-rebinding attack.
pub fn loopback_host(host: &str) -> bool {
    parse_host(host).is_some_and(loopback_name)
}

fn loopback_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether the page answers to this Host header. Always: loopback names. When other
/// hosts are allowed too: any IP address (DNS rebinding needs a name), this computer's
/// name, and the names of `web.allowed_hosts`.
pub fn host_allowed(host: &str, localhost_only: bool, names: &[String]) -> bool {
    parse_host(host).is_some_and(|name| {
        loopback_name(name)
            || !localhost_only
                && (name.parse::<IpAddr>().is_ok()
                    || names.iter().any(|n| n.eq_ignore_ascii_case(name)))
    })
}

/// This computer's name, as a browser on the LAN would type it (lower case).
pub fn this_host_name() -> Option<String> {
    #[cfg(unix)]
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok());
    #[cfg(windows)]
    let name = std::env::var("COMPUTERNAME").ok();
    #[cfg(not(any(unix, windows)))]
    let name: Option<String> = None;
    let name = name?.trim().to_ascii_lowercase();
    parse_host(&name).is_some_and(|n| n == name).then_some(name)
}

fn peer_is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// Every request: exactly one acceptable Host header (always, against DNS rebinding),
/// "localhost only" (the peer), the body read whole within its budget and deadline, then
/// the security headers.
async fn guard(State(s): State<WebState>, req: Request, next: Next) -> Response {
    // Other hosts only once remote access is on (which needs the agent password), and
    // only over TLS: never the password or a session in the clear, whatever the listener.
    let localhost_only = s.agent.as_ref().is_none_or(|a| !a.remote_wanted());
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = peer.filter(|ip| !peer_is_loopback(*ip)) {
        let tls = req
            .extensions()
            .get::<listener::Transport>()
            .is_some_and(|t| t.tls);
        if localhost_only {
            tracing::debug!(peer = %ip, "Refused a request from another host (localhost only).");
            return with_headers(reason(
                StatusCode::FORBIDDEN,
                "this page accepts connections from this computer only (setting: allow localhost access only)",
            ));
        }
        if !tls {
            return with_headers(reason(
                StatusCode::FORBIDDEN,
                "other computers reach this page over HTTPS only",
            ));
        }
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let (host, extra) = (hosts.next(), hosts.next());
    let host = host.and_then(|h| h.to_str().ok()).unwrap_or("");
    if extra.is_some() {
        return with_headers(reason(StatusCode::BAD_REQUEST, "more than one Host header"));
    }
    let names = match &s.agent {
        Some(a) if !localhost_only => a.host_names(),
        _ => Vec::new(),
    };
    let authority_ok = req
        .uri()
        .authority()
        .is_none_or(|a| a.as_str().eq_ignore_ascii_case(host));
    if !authority_ok || !host_allowed(host, localhost_only, &names) {
        let shown: String = host.chars().take(80).collect();
        let why = if localhost_only {
            format!(
                "the Host header {shown:?} is not this computer; open http://localhost/ instead"
            )
        } else {
            format!(
                "the Host header {shown:?} is not a name of this agent; add it to web.allowed_hosts or use the address"
            )
        };
        return with_headers(reason(StatusCode::FORBIDDEN, why));
    }
    let req = match listener::read_body(req).await {
        Ok(req) => req,
        Err(resp) => return with_headers(resp),
    };
    let api = req.uri().path().starts_with("/api/");
    let tls = req
        .extensions()
        .get::<listener::Transport>()
        .is_some_and(|t| t.tls);
    let mut resp = next.run(req).await;
    if api {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if tls {
        // A session cookie set over HTTPS is never sent back in the clear.
        let cookies: Vec<HeaderValue> = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .cloned()
            .collect();
        resp.headers_mut().remove(header::SET_COOKIE);
        for c in cookies {
            let v = format!("{}; Secure", c.to_str().unwrap_or_default());
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
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

/// Serves until `shutdown` completes, within the listener's limits ([`listener`]).
///
/// # Errors
/// When the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: WebState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (keep, mut rebind) = mpsc::channel(1);
    let mut tls = None;
    if let Some(agent) = &state.agent {
        if let Some(rx) = agent.rebind_rx.lock().take() {
            rebind = rx;
        }
        if agent.remote_wanted() {
            let a = agent.clone();
            match tokio::task::spawn_blocking(move || a.page_tls()).await {
                Ok(Ok((config, fingerprint))) => {
                    tracing::info!(listen = %listener.local_addr()?, fingerprint = %fingerprint, "Local page open to other hosts over HTTPS.");
                    tls = Some(config);
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "Local page: no certificate for remote access; other hosts are not served.");
                }
                Err(_) => {}
            }
        }
    }
    let r = listener::serve(
        listener,
        router(state),
        listener::Limits::default(),
        tls,
        rebind,
        peer_is_loopback,
        shutdown,
    )
    .await;
    drop(keep);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    /// Another host's request (the peer address as the listener reports it) is refused
    /// while "localhost only" is on, and served once it is turned off; the Host check
    /// stays on (the finding: turning "localhost only" off let DNS rebinding through).
    #[tokio::test]
    async fn other_hosts_are_refused_until_allowed() {
        use tower::ServiceExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = SealKey::load_or_create(dir.path()).unwrap();
        let config =
            crate::config::parse("t", "[web]\nallowed_hosts = [\"agent.corp.example\"]").unwrap();
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
                .extension(listener::Transport { tls: true })
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
        let r = router(state.clone())
            .oneshot(ask([127, 0, 0, 1], "rebind.evil.example:8080"))
            .await;
        assert_eq!(status(r.unwrap()), StatusCode::FORBIDDEN);
        // Turned off without an agent password (a store from before that rule): still
        // this computer only.
        agent.localhost_only.store(false, Ordering::Relaxed);
        let r = router(state.clone())
            .oneshot(ask([192, 0, 2, 7], "192.0.2.1:8080"))
            .await;
        assert_eq!(status(r.unwrap()), StatusCode::FORBIDDEN);
        agent
            .store
            .set_page_password(&auth::hash_password("agent-pass-1").unwrap())
            .unwrap();
        // Plain HTTP from another host: refused even so.
        let mut plain = ask([192, 0, 2, 7], "192.0.2.1:8080");
        plain
            .extensions_mut()
            .insert(listener::Transport { tls: false });
        assert_eq!(
            status(router(state.clone()).oneshot(plain).await.unwrap()),
            StatusCode::FORBIDDEN
        );
        for (host, want) in [
            ("agent.corp.example:8080", StatusCode::OK),
            ("192.0.2.1:8080", StatusCode::OK),
            ("localhost:8080", StatusCode::OK),
            ("rebind.evil.example:8080", StatusCode::FORBIDDEN),
            ("[::1]evil.example", StatusCode::FORBIDDEN),
        ] {
            let r = router(state.clone())
                .oneshot(ask([192, 0, 2, 7], host))
                .await;
            assert_eq!(status(r.unwrap()), want, "{host}");
            let r = router(state.clone())
                .oneshot(ask([127, 0, 0, 1], host))
                .await;
            assert_eq!(status(r.unwrap()), want, "{host} from loopback");
        }
        let mut twice = ask([127, 0, 0, 1], "localhost");
        twice
            .headers_mut()
            .append(header::HOST, HeaderValue::from_static("evil.example"));
        let r = router(state.clone()).oneshot(twice).await;
        assert_eq!(status(r.unwrap()), StatusCode::BAD_REQUEST);
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
            "[::1]evil.example",
            "[::1]:80evil",
            "[::1]:",
            "localhost:",
            "localhost:0",
            "localhost:65536",
            "localhost:80:80",
            "local host",
            "localhost\r\nX: y",
            "::1",
        ] {
            assert!(!loopback_host(bad), "{bad}");
        }
        let names = ["print-agent.corp.example".to_string()];
        for (host, local_only, ok) in [
            ("localhost:8080", true, true),
            ("192.0.2.5:8080", true, false),
            ("192.0.2.5:8080", false, true),
            ("[2001:db8::5]:8080", false, true),
            ("print-agent.corp.example:8080", false, true),
            ("PRINT-AGENT.corp.example.", false, true),
            ("print-agent.corp.example", true, false),
            ("rebind.evil.example", false, false),
            ("print-agent.corp.example.evil.example", false, false),
        ] {
            assert_eq!(
                host_allowed(host, local_only, &names),
                ok,
                "{host} {local_only}"
            );
        }
        assert!(peer_is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!peer_is_loopback("::ffff:192.0.2.1".parse().unwrap()));
    }
}
