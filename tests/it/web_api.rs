//! The local page's JSON API, in process against a real listener on 127.0.0.1 and the
//! reference cloud: sessions and CSRF, the Host check, the login rate limit, activation
//! errors and success, settings, the discovery report and its CSV export, the event
//! stream, and no secret in any response.

use fleet_agent::store::Store;
use fleet_agent::store::secrets::SealKey;
use fleet_agent::web;
use fleet_cloud::Cloud;
use fleet_cloud::db::CloudDb;
use serde_json::{Value, json};
use std::sync::Arc;

const COMMUNITY: &str = "community-secret-4711";
const PROXY_PASSWORD: &str = "proxy-secret-0815";
const AGENT_PASSWORD: &str = "agent-pass-9931";

struct Page {
    base: String,
    http: reqwest::Client,
    cookie: String,
    csrf: String,
    agent: Arc<web::Agent>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
    fn reason(&self) -> String {
        self.json()["reason"].as_str().unwrap_or("").to_string()
    }
}

impl Page {
    async fn start(cloud_url: &str, ca: &str) -> Page {
        fleet_agent::cloud::install_crypto();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca).unwrap();
        // The page listens where its configuration says; once opened to other hosts it
        // moves to another loopback port (tests talk to loopback only).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listen = listener.local_addr().unwrap();
        let remote = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let text = format!(
            "[web]\nlisten = \"{listen}\"\nremote_listen = \"{remote}\"\n\
             [cloud]\nurl = \"{cloud_url}\"\nca_file = \"{}\"\ntimeout_secs = 5\nproxy = {{ type = \"none\" }}\n\
             [[snmp_profiles]]\nname = \"p\"\nauth = {{ type = \"v2c\", community = \"{COMMUNITY}\" }}\n",
            ca_file.display()
        );
        let config = fleet_agent::config::parse("test", &text).unwrap();
        let state = dir.path().join("state");
        let store = Store::open(&state).unwrap();
        let key = SealKey::load_or_create(&state).unwrap();
        let (apply_tx, mut apply_rx) = tokio::sync::mpsc::channel(4);
        // Nothing restarts here: applied configurations are only counted.
        tokio::spawn(async move { while apply_rx.recv().await.is_some() {} });
        let clock = fleet_agent::clock::Clock::system();
        let handles = web::Handles {
            store,
            key,
            state_dir: state,
            link: fleet_agent::cloud::link::Link::new(clock.clone()),
            clock,
            library: Default::default(),
            logs: Default::default(),
        };
        let agent = Arc::new(web::Agent::new(handles, config, apply_tx));
        let base = format!("http://{listen}");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(web::serve(
            listener,
            web::WebState {
                metrics: Arc::new(fleet_agent::telemetry::Metrics::new()),
                agent: Some(agent.clone()),
            },
            async move {
                stopped.await.ok();
            },
        ));
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut p = Page {
            base,
            http,
            cookie: String::new(),
            csrf: String::new(),
            agent,
            _dir: dir,
            _stop: stop,
        };
        p.new_session().await;
        p
    }

    async fn new_session(&mut self) -> Value {
        self.cookie.clear();
        let r = self.call("GET", "/api/session", None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let set = r.headers["set-cookie"].to_str().unwrap().to_string();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        self.cookie = set.split(';').next().unwrap().to_string();
        let j = r.json();
        self.csrf = j["csrf"].as_str().unwrap().to_string();
        j
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.call_with(method, path, body, &[]).await
    }

    async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut b = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if !self.cookie.is_empty() {
            b = b.header("cookie", &self.cookie);
        }
        if method != "GET" && !self.csrf.is_empty() {
            b = b.header("x-csrf-token", &self.csrf);
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        if let Some(j) = body {
            b = b.json(&j);
        }
        let r = b.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        Reply {
            status,
            headers,
            text,
        }
    }
}

async fn reference_cloud() -> (String, String, Cloud, tempfile::TempDir) {
    fleet_agent::cloud::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let db = CloudDb::open(Some(dir.path())).unwrap();
    let cloud = Cloud::new(db, "admin-token-for-tests");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (ca, handle) = fleet_cloud::start(listener, cloud.clone()).await.unwrap();
    std::mem::forget(handle);
    (format!("https://127.0.0.1:{port}"), ca, cloud, dir)
}

#[tokio::test]
async fn sessions_csrf_host_check_and_security_headers() {
    let (url, ca, _cloud, _d) = reference_cloud().await;
    let mut p = Page::start(&url, &ca).await;

    // The page itself and the API carry the strict CSP.
    let r = p.call("GET", "/", None).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("<script src=\"/app.js\""), "{}", r.text);
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!r.text.contains("<script>") && !r.text.contains(" style="));
    let r = p.call("GET", "/api/status", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["x-frame-options"], "DENY");
    // Nothing staged in process (no launcher ran): no update; the built-in library.
    assert_eq!(r.json()["agentUpdate"], Value::Null, "{}", r.text);
    assert!(r.json()["libraryVersion"].as_u64() >= Some(1), "{}", r.text);

    // DNS rebinding: another Host name is refused, every path.
    for path in ["/", "/api/session", "/api/status", "/metrics"] {
        let r = p
            .call_with("GET", path, None, &[("host", "printer-fleet.evil.example")])
            .await;
        assert_eq!(r.status, 403, "{path}");
        assert!(r.reason().contains("Host"), "{}", r.text);
    }
    let port = p.base.rsplit(':').next().unwrap().to_string();
    let r = p
        .call_with(
            "GET",
            "/api/status",
            None,
            &[("host", &format!("localhost:{port}"))],
        )
        .await;
    assert_eq!(r.status, 200);

    // No session, no API.
    let saved = std::mem::take(&mut p.cookie);
    let r = p.call("GET", "/api/status", None).await;
    assert_eq!(r.status, 401);
    p.cookie = saved;

    // A state change needs the session's CSRF token.
    let csrf = std::mem::take(&mut p.csrf);
    let r = p
        .call(
            "PUT",
            "/api/settings/log-level",
            Some(json!({"logLevel": "debug"})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    p.csrf = "0".repeat(64);
    let r = p
        .call(
            "PUT",
            "/api/settings/log-level",
            Some(json!({"logLevel": "debug"})),
        )
        .await;
    assert_eq!(r.status, 403);
    p.csrf = csrf;
    let r = p
        .call(
            "PUT",
            "/api/settings/log-level",
            Some(json!({"logLevel": "loud=="})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.reason().starts_with("logLevel"), "{}", r.text);
    let r = p
        .call(
            "PUT",
            "/api/settings/log-level",
            Some(json!({"logLevel": "info"})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        p.call("GET", "/api/settings", None).await.json()["logLevel"],
        "info"
    );

    // Unknown API: a JSON reason with 404.
    let r = p.call("GET", "/api/nothing", None).await;
    assert_eq!(r.status, 404);
    assert!(!r.reason().is_empty());
}

#[tokio::test]
async fn password_login_and_rate_limit() {
    let (url, ca, _cloud, _d) = reference_cloud().await;
    let mut p = Page::start(&url, &ca).await;
    // No password yet: the page is open (localhost only).
    let s = p.new_session().await;
    assert_eq!(s["authenticated"], true);
    assert_eq!(s["passwordSet"], false);
    let r = p
        .call("POST", "/api/password", Some(json!({"new": "short"})))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.reason().starts_with("new:"), "{}", r.text);
    let r = p
        .call(
            "POST",
            "/api/password",
            Some(json!({"new": AGENT_PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The session that set it goes on under a new cookie and token.
    let set = r.headers["set-cookie"].to_str().unwrap().to_string();
    p.cookie = set.split(';').next().unwrap().to_string();
    p.csrf = r.json()["csrf"].as_str().unwrap().to_string();
    assert_eq!(p.call("GET", "/api/status", None).await.status, 200);
    // Changing it needs the current one.
    let r = p
        .call(
            "POST",
            "/api/password",
            Some(json!({"current": "wrong-one", "new": "another-pass-1"})),
        )
        .await;
    assert_eq!(r.status, 403);

    // A new browser must log in.
    let s = p.new_session().await;
    assert_eq!(s["authenticated"], false);
    assert_eq!(s["passwordSet"], true);
    let r = p.call("GET", "/api/status", None).await;
    assert_eq!(r.status, 401);
    assert!(r.reason().contains("log in"), "{}", r.text);
    let r = p
        .call(
            "POST",
            "/api/login",
            Some(json!({"password": AGENT_PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let set = r.headers["set-cookie"].to_str().unwrap().to_string();
    let fresh = set.split(';').next().unwrap().to_string();
    assert_ne!(fresh, p.cookie, "a new session id at login");
    p.cookie = fresh;
    p.csrf = r.json()["csrf"].as_str().unwrap().to_string();
    assert_eq!(p.call("GET", "/api/status", None).await.status, 200);
    // Logout ends it.
    assert_eq!(p.call("POST", "/api/logout", None).await.status, 204);
    assert_eq!(p.call("GET", "/api/status", None).await.status, 401);

    // Wrong passwords: 401 four times (the last one already counted), then 429 with
    // Retry-After, even for the right password.
    p.new_session().await;
    for _ in 0..fleet_agent::web::auth::LOGIN_FAILURES {
        let r = p
            .call("POST", "/api/login", Some(json!({"password": "guess"})))
            .await;
        assert_eq!(r.status, 401);
        assert_eq!(r.reason(), "wrong password");
    }
    let r = p
        .call(
            "POST",
            "/api/login",
            Some(json!({"password": AGENT_PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.text);
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait > 0 && wait <= 300);
}

#[tokio::test]
async fn activation_errors_success_and_no_secret_in_any_response() {
    let (url, ca, cloud, _d) = reference_cloud().await;
    let (_, code, _) = cloud.create_agent("web test", &json!({})).unwrap();
    let p = Page::start(&url, &ca).await;

    let r = p
        .call("POST", "/api/activate", Some(json!({"code": "ABCD-12"})))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.reason().contains("XXXX-XXXX-XXXX"), "{}", r.text);
    let r = p
        .call(
            "POST",
            "/api/activate",
            Some(json!({"code": "ABCD-1234-EF56"})),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(r.reason().contains("unknown activation code"), "{}", r.text);
    let r = p
        .call(
            "POST",
            "/api/activate",
            Some(json!({"code": code, "proxy": {"host": "", "port": 3128}})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.reason().starts_with("proxy.host"), "{}", r.text);
    // A proxy that does not answer (a closed port on loopback): 502 naming it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().port();
    drop(closed);
    let r = p
        .call(
            "POST",
            "/api/activate",
            Some(json!({"code": code, "proxy": {"host": "127.0.0.1", "port": dead, "user": "u", "password": PROXY_PASSWORD}})),
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(
        r.reason()
            .contains(&format!("through the proxy http://127.0.0.1:{dead}")),
        "{}",
        r.text
    );
    assert!(!r.text.contains(PROXY_PASSWORD));
    assert!(
        !p.call("GET", "/api/session", None).await.json()["activated"]
            .as_bool()
            .unwrap()
    );

    // The configuration names no targets: the page offers the host's own networks (as
    // `local_network` would search them, each at most a /22) with their sizes.
    let n = p.call("GET", "/api/networks", None).await.json();
    assert_eq!(n["searching"], false, "{n}");
    assert_eq!(n["otherTargets"], false, "{n}");
    for net in n["networks"].as_array().unwrap() {
        let cidr = net["network"].as_str().unwrap();
        let prefix: u32 = cidr.split('/').nth(1).unwrap().parse().unwrap();
        assert!(prefix >= 22, "{n}");
        assert_eq!(net["addresses"], (1u64 << (32 - prefix)) - 2, "{n}");
    }

    // The right code, with an agent password and that choice: activated, discovery has
    // something to search (nothing restarts in this harness: no network is probed), the
    // choice is kept for the next start, and this browser stays in.
    let r = p
        .call(
            "POST",
            "/api/activate",
            Some(
                json!({"code": code.to_lowercase(), "password": AGENT_PASSWORD,
                "discoverAfter": false, "searchLocalNetworks": true}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["agentId"].as_str().unwrap().starts_with("agent-"));
    assert_eq!(r.json()["discovery"], "scheduled");
    assert!(p.agent.store.search_local_networks().unwrap());
    let s = p.call("GET", "/api/session", None).await.json();
    assert_eq!(s["activated"], true);
    assert_eq!(s["authenticated"], true);
    // The code works once.
    let r = p
        .call("POST", "/api/activate", Some(json!({"code": code})))
        .await;
    assert_eq!(r.status, 410, "{}", r.text);
    assert!(r.reason().contains("already used"), "{}", r.text);

    // A proxy host no name can be (5,000 characters) is refused with a short reason,
    // and a log level that is not one too.
    let r = p
        .call(
            "PUT",
            "/api/settings/proxy",
            Some(json!({"host": "p".repeat(5000), "port": 3128})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.len() < 300, "bounded: {}", r.text);
    assert!(r.reason().contains("at most 253"), "{}", r.text);
    let r = p
        .call(
            "PUT",
            "/api/settings/log-level",
            Some(json!({"logLevel": "verbose"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.reason().contains("is not a level"), "{}", r.text);

    // A proxy is tried before it is saved: one that does not answer (a closed loopback
    // port) is refused with the reason, nothing saved, unless forced.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().port();
    drop(closed);
    let r = p
        .call(
            "PUT",
            "/api/settings/proxy",
            Some(json!({"host": "127.0.0.1", "port": dead, "user": "svc", "password": PROXY_PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(
        r.reason()
            .contains(&format!("through the proxy 127.0.0.1:{dead}"))
            && r.reason().ends_with("not saved"),
        "{}",
        r.text
    );
    assert!(!r.text.contains(PROXY_PASSWORD));
    assert!(p.call("GET", "/api/settings", None).await.json()["proxy"].is_null());
    // A proxy with a password, set in the settings (forced: this test reaches no network).
    let r = p
        .call(
            "PUT",
            "/api/settings/proxy",
            Some(json!({"host": "proxy.corp.example", "port": 3128, "user": "svc", "password": PROXY_PASSWORD, "force": true})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let s = p.call("GET", "/api/settings", None).await.json();
    assert_eq!(s["proxy"]["host"], "proxy.corp.example");
    assert_eq!(s["proxy"]["passwordSet"], true);
    // Saving again without the password keeps it.
    let r = p
        .call(
            "PUT",
            "/api/settings/proxy",
            Some(json!({"host": "proxy.corp.example", "port": 8080, "user": "svc", "force": true})),
        )
        .await;
    assert_eq!(r.status, 204);
    let s = p.call("GET", "/api/settings", None).await.json();
    assert_eq!(s["proxy"]["port"], 8080);
    assert_eq!(s["proxy"]["passwordSet"], true);
    match fleet_agent::cloud::activation::proxy_in_force(
        &p.agent.store,
        &p.agent.key,
        &p.agent.live().config,
    ) {
        fleet_agent::config::Proxy::Http { url, password, .. } => {
            assert_eq!(url, "http://proxy.corp.example:8080");
            assert_eq!(password.unwrap().expose(), PROXY_PASSWORD);
        }
        other => panic!("{other:?}"),
    }

    // Every GET the page makes, and none shows a secret.
    let mut seen = String::new();
    for path in [
        "/api/session",
        "/api/status",
        "/api/settings",
        "/api/printers",
        "/api/discovery",
        "/api/discovery.csv",
        "/api/outbox",
        "/api/logs",
        "/metrics",
        "/",
        "/app.js",
    ] {
        let r = p.call("GET", path, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        seen.push_str(&r.text);
        for (_, v) in &r.headers {
            seen.push_str(v.to_str().unwrap_or(""));
        }
    }
    for secret in [COMMUNITY, PROXY_PASSWORD, AGENT_PASSWORD, "$argon2id$"] {
        assert!(!seen.contains(secret), "{secret} shown");
    }
    let client_secret = p
        .agent
        .store
        .secret(&p.agent.key, "cloud.client_secret")
        .unwrap()
        .unwrap();
    assert!(!seen.contains(client_secret.expose()));
    // And the proxy password is sealed in the store.
    let raw = p
        .agent
        .store
        .setting("ui.proxy")
        .unwrap()
        .unwrap_or_default();
    assert!(!raw.contains(PROXY_PASSWORD));
}

#[tokio::test]
async fn discovery_report_filter_csv_and_progress_events() {
    let (url, ca, _cloud, _d) = reference_cloud().await;
    let p = Page::start(&url, &ca).await;
    let rows = [
        (
            "192.0.2.1",
            "found",
            json!({"address": "192.0.2.1", "outcome": "found", "device_key": "sn:HP:X1", "new": true, "sources": ["target"]}),
        ),
        (
            "192.0.2.2",
            "noAnswer",
            json!({"address": "192.0.2.2", "outcome": "noAnswer", "sources": ["target"]}),
        ),
        (
            "192.0.2.3",
            "notAPrinter",
            json!({"address": "192.0.2.3", "outcome": "notAPrinter", "sys_descr": "=HYPERLINK(\"x\") switch", "sources": ["target"]}),
        ),
    ];
    let results: Vec<(String, String, String)> = rows
        .iter()
        .map(|(a, o, d)| (a.to_string(), o.to_string(), d.to_string()))
        .collect();
    p.agent.store.save_discovery(1, &[], &results).unwrap();

    let all = p.call("GET", "/api/discovery", None).await.json();
    assert_eq!(all.as_array().unwrap().len(), 3);
    let some = p
        .call("GET", "/api/discovery?outcome=noAnswer", None)
        .await
        .json();
    assert_eq!(some.as_array().unwrap().len(), 1);
    assert_eq!(some[0]["address"], "192.0.2.2");
    let some = p
        .call("GET", "/api/discovery?q=hyperlink", None)
        .await
        .json();
    assert_eq!(some[0]["address"], "192.0.2.3");

    let csv = p.call("GET", "/api/discovery.csv?q=192.0.2", None).await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("discovery-report.csv")
    );
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], "address,name,outcome,detail,profile,sources");
    assert_eq!(lines.len(), 4, "{}", csv.text);
    assert!(
        lines[1].starts_with("\"192.0.2.1\",\"\",\"found\""),
        "{}",
        lines[1]
    );
    // The device in words, not the store's key.
    assert!(lines[1].contains("serial HP:X1"), "{}", lines[1]);
    assert!(!lines[1].contains("sn:"), "{}", lines[1]);
    // A device's text never runs as a spreadsheet formula.
    assert!(
        lines[3].contains("\"'=HYPERLINK(\"\"x\"\") switch\""),
        "{}",
        lines[3]
    );
    let csv = p
        .call("GET", "/api/discovery.csv?outcome=found", None)
        .await;
    assert_eq!(csv.text.lines().count(), 2);

    // "Discover now" without targets says why.
    let r = p.call("POST", "/api/discovery/run", None).await;
    assert_eq!(r.status, 409);
    assert!(r.reason().contains("no targets"), "{}", r.text);

    // The event stream: the current state first, then every change.
    let mut resp = p
        .http
        .get(format!("{}/api/discovery/events", p.base))
        .header("cookie", &p.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let chunk = resp.chunk().await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&chunk).into_owned();
    assert!(text.contains("event: progress"), "{text}");
    assert!(text.contains("\"finished\":true"), "{text}");
    p.agent
        .progress
        .send_replace(fleet_agent::discovery::Progress {
            done: 5,
            total: 10,
            found: 1,
            ..Default::default()
        });
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), resp.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(
        text.contains("\"done\":5") && text.contains("\"total\":10"),
        "{text}"
    );
}

/// The seed's "allow localhost access only", unticked: refused without an agent password;
/// with one, the page moves to `web.remote_listen` and serves HTTPS with the agent's own
/// certificate (the fingerprint the page shows is the one served; cookies `Secure`),
/// plain HTTP staying for this host; ticked again, it moves back and HTTPS is gone.
#[tokio::test]
async fn remote_access_is_https_behind_the_password_and_closes_again() {
    let (url, ca, _cloud, _d) = reference_cloud().await;
    let mut p = Page::start(&url, &ca).await;
    let local = p.agent.live().config.web_listen;
    let remote = p.agent.live().config.web_remote_listen;
    let r = p
        .call(
            "PUT",
            "/api/settings/security",
            Some(json!({"localhostOnly": false})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(
        r.reason().contains("set an agent password first"),
        "{}",
        r.text
    );
    assert!(tokio::net::TcpStream::connect(remote).await.is_err());

    let r = p
        .call(
            "POST",
            "/api/password",
            Some(json!({"new": AGENT_PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let set = r.headers["set-cookie"].to_str().unwrap().to_string();
    p.cookie = set.split(';').next().unwrap().to_string();
    p.csrf = r.json()["csrf"].as_str().unwrap().to_string();
    let r = p
        .call(
            "PUT",
            "/api/settings/security",
            Some(json!({"localhostOnly": false})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let opened = r.json();
    assert_eq!(opened["listen"], remote.to_string(), "{opened}");
    let fingerprint = opened["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(fingerprint.len(), 95, "{fingerprint}");

    // Over HTTPS on the remote address: the certificate served has that fingerprint,
    // and a session cookie set there is Secure.
    let https = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .build()
        .unwrap();
    let r = https
        .get(format!("https://127.0.0.1:{}/api/session", remote.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let der = r
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec))
        .unwrap();
    use sha2::Digest;
    let served: Vec<String> = sha2::Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(served.join(":"), fingerprint);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // The old address is closed; this host keeps plain HTTP on the new one.
    assert!(tokio::net::TcpStream::connect(local).await.is_err());
    p.base = format!("http://{remote}");
    let s = p.call("GET", "/api/settings", None).await.json();
    assert_eq!(s["localhostOnly"], false, "{s}");
    assert_eq!(s["remote"]["fingerprint"], fingerprint.as_str(), "{s}");
    // `fleet-agent status` says it too, from the store.
    let state = p._dir.path().join("state");
    let out = crate::common::run(&["status", "--state-dir", state.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("for other hosts") && text.contains(&fingerprint),
        "{text}"
    );

    // Closed again: back on web.listen, plain HTTP; no HTTPS anywhere.
    let r = p
        .call(
            "PUT",
            "/api/settings/security",
            Some(json!({"localhostOnly": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["listen"], local.to_string());
    p.base = format!("http://{local}");
    let s = p.call("GET", "/api/settings", None).await.json();
    assert!(s["remote"].is_null(), "{s}");
    assert!(tokio::net::TcpStream::connect(remote).await.is_err());
    assert!(
        https
            .get(format!("https://127.0.0.1:{}/api/session", local.port()))
            .send()
            .await
            .is_err(),
        "no TLS once closed"
    );
}

/// The printer list pages, filters and sorts on the agent (the page never loads the
/// whole fleet), counts the whole fleet by state (attention first), and a printer at 1 %
/// ink with an active warning is not "ok"; its page says the same.
#[tokio::test]
async fn the_printer_list_pages_filters_sorts_and_puts_attention_first() {
    use fleet_agent::store::{Health, PollRecord, Success};
    let (url, ca, _cloud, _d) = reference_cloud().await;
    let p = Page::start(&url, &ca).await;
    let store = &p.agent.store;
    let toner = |pct: u64| {
        json!({"description": "Black Toner", "type": "Toner", "color": "Black",
        "percentRemaining": pct, "ext": {"prtMarkerSuppliesClass": 3, "levelState": "known"}})
    };
    let mut polls = Vec::new();
    for i in 1..=120u32 {
        let id = store
            .printer_id(&format!("10.0.{}.{}:161", i / 100, i % 100))
            .unwrap();
        let (health, report) = match i {
            // Answers, but 1 % ink and a warning alert.
            7 => (
                Health::Ok,
                json!({"supplies": [toner(1)], "alerts": [{"status": "WARNING", "issue": "Yellow Ink low"}],
                "device": {"sysLocation": "Floor 3"}, "counters": {"lifetimeCount": 7}}),
            ),
            8 => (
                Health::Ok,
                json!({"supplies": [toner(5)], "alerts": [], "counters": {"lifetimeCount": 8}}),
            ),
            9 => (
                Health::NotCommunicating,
                json!({"supplies": [toner(50)], "alerts": []}),
            ),
            _ => (
                Health::Ok,
                json!({"supplies": [toner(80)], "alerts": [], "counters": {"lifetimeCount": i}}),
            ),
        };
        polls.push(PollRecord {
            printer_id: id,
            at_ms: 1_000 + i64::from(i),
            health,
            reason: (health != Health::Ok).then(|| "no response".to_string()),
            failures: 0,
            success: Some(Success {
                serial: Some(format!("SN{i:04}")),
                manufacturer: Some("Acme".into()),
                model: Some(if i % 2 == 0 { "Even 1" } else { "Odd 2" }.into()),
                report: Some(report.to_string()),
                quirks: None,
                point: None,
            }),
            events: vec![],
        });
    }
    store.save_polls(&polls).unwrap();

    let list = p.call("GET", "/api/printers", None).await.json();
    assert_eq!(list["all"], 120, "{list}");
    assert_eq!(list["total"], 120);
    assert_eq!(
        list["printers"].as_array().unwrap().len(),
        50,
        "one page, not the fleet"
    );
    assert_eq!(list["byState"]["warning"], 1, "{}", list["byState"]);
    assert_eq!(list["byState"]["lowSupply"], 1);
    assert_eq!(list["byState"]["notCommunicating"], 1);
    assert_eq!(list["byState"]["ok"], 117);
    // Attention first: not communicating, then the warning (with its reason), then low.
    let first: Vec<(&str, &str)> = list["printers"].as_array().unwrap()[..3]
        .iter()
        .map(|r| (r["state"].as_str().unwrap(), r["serial"].as_str().unwrap()))
        .collect();
    assert_eq!(
        first,
        [
            ("notCommunicating", "SN0009"),
            ("warning", "SN0007"),
            ("lowSupply", "SN0008")
        ]
    );
    assert_eq!(list["printers"][1]["stateReason"], "Yellow Ink low");
    assert_eq!(list["printers"][2]["lowestSupply"]["percent"], 5);

    // Search (location, serial), one state, sorting, paging.
    let find = |q: &str| {
        let p = &p;
        let q = q.to_string();
        async move {
            p.call("GET", &format!("/api/printers?{q}"), None)
                .await
                .json()
        }
    };
    let r = find("q=floor%203").await;
    assert_eq!(
        (r["total"].as_u64(), r["printers"][0]["serial"].as_str()),
        (Some(1), Some("SN0007"))
    );
    assert_eq!(find("q=sn0100").await["total"], 1);
    assert_eq!(
        find("state=lowSupply").await["printers"][0]["serial"],
        "SN0008"
    );
    let r = find("sort=address&offset=100&limit=10").await;
    let addrs: Vec<&str> = r["printers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["address"].as_str().unwrap())
        .collect();
    assert_eq!(addrs.len(), 10);
    assert_eq!(
        addrs[0], "10.0.1.1:161",
        "numeric order: 10.0.0.99 before 10.0.1.0"
    );
    let r = find("sort=pages&desc=true&limit=1").await;
    assert_eq!(r["printers"][0]["serial"], "SN0120");
    assert_eq!(
        find("limit=100000").await["limit"],
        500,
        "at most 500 rows a page"
    );
    // The printer's own page says the same state.
    let id = list["printers"][1]["id"].as_i64().unwrap();
    let one = p
        .call("GET", &format!("/api/printers/{id}"), None)
        .await
        .json();
    assert_eq!(one["state"], "warning");
    assert_eq!(one["levels"][0]["percent"], 1);
}

/// Trends: one point a day per printer (the last reading of the day), and a run-out date
/// for a supply in steady use, with its basis; none for one that is not used.
#[tokio::test]
async fn a_printer_keeps_a_point_a_day_and_says_when_a_supply_runs_out() {
    use fleet_agent::store::{Health, Point, PollRecord, Success};
    let (url, ca, _cloud, _d) = reference_cloud().await;
    let p = Page::start(&url, &ca).await;
    let store = &p.agent.store;
    let id = store.printer_id("10.0.0.1:161").unwrap();
    let report = json!({"supplies": [
        {"supplyKey": "m:1.1", "description": "Cyan Toner", "color": "Cyan", "percentRemaining": 40,
         "ext": {"prtMarkerSuppliesClass": 3}},
        {"supplyKey": "m:1.2", "description": "Fuser", "percentRemaining": 90,
         "ext": {"prtMarkerSuppliesClass": 3}}]});
    let day_ms = 86_400_000i64;
    let start = 20_000 * day_ms;
    // Ten days, two readings a day (the later one counts), cyan down 2 % a day.
    let mut polls = Vec::new();
    for d in 0..10i64 {
        for (h, extra) in [(8, 1u64), (17, 0)] {
            let cyan = u8::try_from(60 - 2 * d).unwrap();
            polls.push(PollRecord {
                printer_id: id,
                at_ms: start + d * day_ms + h * 3_600_000,
                health: Health::Ok,
                reason: None,
                failures: 0,
                success: Some(Success {
                    serial: Some("S1".into()),
                    manufacturer: None,
                    model: None,
                    report: Some(report.to_string()),
                    quirks: None,
                    point: Some(Point {
                        pages: Some(1000 + 50 * u64::try_from(d).unwrap() + extra),
                        levels: vec![
                            ("m:1.1".into(), Some(cyan + u8::from(extra == 1))),
                            ("m:1.2".into(), Some(90)),
                        ],
                    }),
                }),
                events: vec![],
            });
        }
    }
    store.save_polls(&polls).unwrap();
    let h = p
        .call("GET", &format!("/api/printers/{id}/history"), None)
        .await
        .json();
    let days = h["days"].as_array().unwrap();
    assert_eq!(days.len(), 10, "one point a day: {h}");
    assert_eq!(days[0]["day"], "2024-10-04");
    assert_eq!(days[9]["pages"], 1450, "the day's last reading");
    assert_eq!(days[9]["levels"]["m:1.1"], 42);
    let est = h["estimates"].as_array().unwrap();
    assert_eq!(est.len(), 1, "the fuser is not being used up: {h}");
    assert_eq!(est[0]["name"], "Cyan Toner");
    assert_eq!(est[0]["daysLeft"], 21);
    assert_eq!(est[0]["runsOutOn"], "2024-11-03");
    assert!(
        est[0]["basis"]
            .as_str()
            .unwrap()
            .contains("2.0 % a day over the last 9 days (10 readings)"),
        "{h}"
    );
    assert_eq!(
        p.call("GET", "/api/printers/999/history", None)
            .await
            .status,
        404
    );
}

/// Every API route the page serves is in docs/web-api.md.
#[test]
fn every_route_is_documented() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(root.join("src/web/mod.rs")).unwrap();
    let doc = std::fs::read_to_string(root.join("docs/web-api.md")).unwrap();
    let routes: Vec<&str> = src
        .split(".route(")
        .skip(1)
        .filter_map(|r| r.trim_start().strip_prefix('"')?.split('"').next())
        .filter(|p| p.starts_with("/api/"))
        .collect();
    assert!(routes.len() >= 18, "{routes:?}");
    let missing: Vec<&&str> = routes.iter().filter(|r| !doc.contains(**r)).collect();
    assert!(
        missing.is_empty(),
        "missing from docs/web-api.md: {missing:?}"
    );
}

/// A printer's page says in words how its agent is asked (the remembered quirks, the
/// same text as `poll` and the cloud), and "none" for an ordinary agent.
#[tokio::test]
async fn a_printer_says_how_its_agent_is_asked() {
    let (url, ca, _cloud, _d) = reference_cloud().await;
    let p = Page::start(&url, &ca).await;
    let store = &p.agent.store;
    let plain = store.printer_id("192.0.2.10:161").unwrap();
    let quirky = store.printer_id("192.0.2.11:161").unwrap();
    let q = fleet_snmp::quirks::Quirks {
        no_bulk: true,
        max_values: Some(12),
        ..Default::default()
    };
    store
        .set_quirks(quirky, Some(&serde_json::to_string(&q).unwrap()), 1)
        .unwrap();
    let text = |id: i64| {
        let p = &p;
        async move {
            let r = p.call("GET", &format!("/api/printers/{id}"), None).await;
            assert_eq!(r.status, 200, "{}", r.text);
            r.json()["agentQuirks"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(text(plain).await, "none");
    assert_eq!(
        text(quirky).await,
        "GETNEXT only (GETBULK fails); at most 12 value(s) per response (tooBig above)"
    );
}
