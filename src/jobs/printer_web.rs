//! A printer's web server as the jobs use it: uploads and reads (reqwest over HTTP/1.1,
//! no proxy, no redirects followed, bounded in time and size) with the stored web login,
//! over plain TCP or TLS. Printers' certificates are self-signed, so TLS
//! trusts on first use: the first certificate seen at a printer's address is pinned (the
//! SHA-256 of its leaf, kept in the store) and a different one later is refused, naming
//! both fingerprints, until the administrator sets the new one (`updateCredentials`
//! `params.web.certificateSha256`). TLS 1.2 and 1.3 only (rustls): printers that speak
//! nothing newer than TLS 1.0/1.1 are refused with that reason.
//!
//! The login: over TLS, Basic is sent with the first request; over plain HTTP nothing is
//! sent until the printer asks (401), and then Digest (RFC 7616, MD5 or SHA-256, which
//! never puts the password on the wire) when offered, Basic only when it is all the
//! printer speaks.

use crate::store::Store;
use fleet_secret::Secret;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A printer's web-server login.
#[derive(Clone, Debug)]
pub struct Login {
    /// User name.
    pub user: String,
    /// Password.
    pub password: Secret,
}

/// A failure: whether the printer was unreachable (not communicating), and why.
pub type Failure = (bool, String);

/// The store setting holding the certificate fingerprint pinned for a printer's IP.
pub fn pin_key(ip: std::net::IpAddr) -> String {
    format!("printer.tls.{ip}")
}

/// Checks a fingerprint given by the administrator: 64 hex digits (colons allowed).
///
/// # Errors
/// What is wrong with it.
pub fn normalize_pin(s: &str) -> Result<String, String> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(format!(
            "{s:?} is not a SHA-256 fingerprint (64 hex digits)"
        ))
    }
}

/// Accepts the pinned certificate, or any one when none is pinned yet (it is recorded
/// so the caller can pin it once the handshake succeeded). The handshake's signatures are
/// still verified, so the peer must hold the certificate's key.
#[derive(Debug)]
struct TrustOnFirstUse {
    pinned: Option<String>,
    seen: Mutex<Option<String>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for TrustOnFirstUse {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let fp = fleet_protocol::signing::sha256_hex(end_entity.as_ref());
        *self.seen.lock() = Some(fp.clone());
        match &self.pinned {
            Some(p) if *p != fp => Err(rustls::Error::General(
                "the certificate is not the pinned one".into(),
            )),
            _ => Ok(rustls::client::danger::ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Largest printer log read over HTTP.
pub const LOG_MAX: usize = 64 << 20;

/// Time to set up the TCP connection (and the TLS handshake).
const CONNECT: Duration = Duration::from_secs(20);

/// One exchange with a printer's web server.
struct Exchange<'a> {
    store: &'a Store,
    to: SocketAddr,
    tls: bool,
    method: reqwest::Method,
    path: &'a str,
    /// Upload body and file name.
    body: Option<(&'a [u8], Option<&'a str>)>,
    login: Option<Login>,
    /// Whole exchange, answer included.
    deadline: Duration,
    /// Largest answer body kept (the rest is not read).
    max_body: usize,
}

/// The error and its causes in one line (reqwest's own text names only the URL).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cur = c.source();
    }
    text
}

/// Whether the failure is the printer not being there (refused, unreachable, silent).
fn unreachable(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return matches!(
                io.kind(),
                ConnectionRefused | TimedOut | HostUnreachable | NetworkUnreachable
            );
        }
        if c.downcast_ref::<rustls::Error>().is_some() {
            return false;
        }
        cur = c.source();
    }
    e.is_connect() && e.is_timeout()
}

/// The `Authorization` value answering a 401's challenges: Digest when offered, Basic
/// only when it is all the printer speaks; `None` when nothing can answer them.
fn answer(
    challenges: &[String],
    login: &Login,
    method: &reqwest::Method,
    path: &str,
    body: Option<&[u8]>,
) -> Option<String> {
    if let Some(c) = challenges
        .iter()
        .find(|c| c.trim_start().to_ascii_lowercase().starts_with("digest"))
    {
        let mut prompt = digest_auth::parse(c).ok()?;
        let method = digest_auth::HttpMethod::from(method.as_str().to_string());
        let ctx = digest_auth::AuthContext::new_with_method(
            login.user.as_str(),
            login.password.expose(),
            path,
            body,
            method,
        );
        return prompt.respond(&ctx).ok().map(|h| h.to_header_string());
    }
    challenges
        .iter()
        .any(|c| c.trim_start().to_ascii_lowercase().starts_with("basic"))
        .then(|| basic(login))
}

fn basic(login: &Login) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            login.user,
            login.password.expose()
        ))
    )
}

impl Exchange<'_> {
    /// Runs the exchange (answering one login challenge); returns the status and at most
    /// `max_body` bytes of the answer.
    async fn run(self) -> Result<(u16, Vec<u8>), Failure> {
        let to = self.to;
        let key = pin_key(to.ip());
        let pinned = if self.tls {
            let (s, k) = (self.store.clone(), key.clone());
            tokio::task::spawn_blocking(move || s.setting(&k))
                .await
                .map_err(|e| (false, e.to_string()))?
                .map_err(|e| (false, format!("the store: {e}")))?
        } else {
            None
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(TrustOnFirstUse {
            pinned: pinned.clone(),
            seen: Mutex::new(None),
            provider: provider.clone(),
        });
        // Always our own TLS configuration (ring, the pin), never a process-wide default;
        // a plain-HTTP client is built with it too.
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| (false, format!("TLS set-up: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        let b = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT)
            .timeout(self.deadline)
            .http1_only()
            // Embedded web servers are not all case-insensitive about header names.
            .http1_title_case_headers()
            .user_agent(concat!("fleet-agent/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(config);
        let client = b
            .build()
            .map_err(|e| (false, format!("HTTP set-up: {e}")))?;
        let url = format!(
            "{}://{to}{}",
            if self.tls { "https" } else { "http" },
            self.path
        );
        // Over TLS the login goes with the first request; in the clear only when asked.
        let mut auth = match (&self.login, self.tls) {
            (Some(l), true) => Some(basic(l)),
            _ => None,
        };
        let mut asked = false;
        let resp = loop {
            let mut r = client.request(self.method.clone(), &url);
            if let Some((bytes, name)) = self.body {
                r = r
                    .header("Content-Type", "application/octet-stream")
                    .body(bytes.to_vec());
                if let Some(n) = name {
                    r = r.header(
                        "Content-Disposition",
                        format!(
                            "attachment; filename=\"{}\"",
                            n.replace(['"', '\r', '\n'], "_")
                        ),
                    );
                }
            }
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            let resp = match r.send().await {
                Ok(r) => r,
                Err(e) => return Err(self.failure(&e, pinned.as_deref(), &verifier)),
            };
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED
                && !asked
                && let Some(login) = &self.login
            {
                asked = true;
                let challenges: Vec<String> = resp
                    .headers()
                    .get_all("www-authenticate")
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_string))
                    .collect();
                let next = answer(
                    &challenges,
                    login,
                    &self.method,
                    self.path,
                    self.body.map(|b| b.0),
                );
                if next.is_some() && next != auth {
                    auth = next;
                    continue;
                }
            }
            break resp;
        };
        let seen = verifier.seen.lock().clone();
        if self.tls
            && pinned.is_none()
            && let Some(fp) = seen
        {
            tracing::info!(printer = %to, sha256 = %fp, "Printer web certificate pinned (first use).");
            let s = self.store.clone();
            tokio::task::spawn_blocking(move || s.set_setting(&key, &fp))
                .await
                .ok();
        }
        let status = resp.status().as_u16();
        let mut resp = resp;
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    let room = self.max_body - body.len();
                    body.extend_from_slice(&c[..c.len().min(room)]);
                    if body.len() >= self.max_body {
                        break;
                    }
                }
                Ok(None) => break,
                // What came before a connection closed without ceremony still counts.
                Err(_) if !body.is_empty() => break,
                Err(e) => {
                    return Err((false, format!("{to}: reading the answer: {}", chain(&e))));
                }
            }
        }
        Ok((status, body))
    }

    fn failure(&self, e: &reqwest::Error, pinned: Option<&str>, v: &TrustOnFirstUse) -> Failure {
        let to = self.to;
        let seen = v.seen.lock().clone();
        if let (Some(p), Some(s)) = (pinned, &seen)
            && p != s
        {
            return (
                false,
                format!(
                    "{to}: the printer's certificate changed: SHA-256 {s}, pinned {p}; if the change is expected, give the new fingerprint with updateCredentials params.web.certificateSha256"
                ),
            );
        }
        if e.is_timeout() {
            return if e.is_connect() {
                (
                    true,
                    format!("{to}: no connection within {} s", CONNECT.as_secs()),
                )
            } else {
                (
                    false,
                    format!("{to}: no answer within {} s", self.deadline.as_secs()),
                )
            };
        }
        if unreachable(e) {
            return (true, format!("{to}: {}", chain(e)));
        }
        if self.tls && e.is_connect() {
            return (
                false,
                format!("{to}: TLS: {} (TLS 1.2 or 1.3 is needed)", chain(e)),
            );
        }
        (false, format!("{to}: {}", chain(e)))
    }
}

/// POSTs bytes to the printer's web server with its stored login, as the file `name`
/// when given; returns the status code.
pub async fn send(
    store: &Store,
    to: SocketAddr,
    tls: bool,
    path: &str,
    name: Option<&str>,
    bytes: &[u8],
    login: Option<Login>,
) -> Result<u16, Failure> {
    Exchange {
        store,
        to,
        tls,
        method: reqwest::Method::POST,
        path,
        body: Some((bytes, name)),
        login,
        deadline: Duration::from_secs(600),
        max_body: 64 << 10,
    }
    .run()
    .await
    .map(|(status, _)| status)
}

/// GETs a path from the printer's web server with its stored login; returns the status
/// and body (at most [`LOG_MAX`] bytes).
pub async fn get(
    store: &Store,
    to: SocketAddr,
    tls: bool,
    path: &str,
    login: Option<Login>,
) -> Result<(u16, Vec<u8>), Failure> {
    Exchange {
        store,
        to,
        tls,
        method: reqwest::Method::GET,
        path,
        body: None,
        login,
        deadline: Duration::from_secs(120),
        max_body: LOG_MAX,
    }
    .run()
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A printer web server: asks for Digest with SHA-256 on the first request, then
    /// answers the second in chunks; returns the two request heads.
    async fn chunked_printer() -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut heads = Vec::new();
            for answer in [
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"p\"\r\nWWW-Authenticate: Digest realm=\"p\", qop=\"auth\", algorithm=SHA-256, nonce=\"n1\"\r\nContent-Length: 0\r\n\r\n",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n6\r\nEVENT \r\n8\r\n1 jammed\r\n0\r\n\r\n",
            ] {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                heads.push(String::from_utf8_lossy(&got).to_string());
                s.write_all(answer.as_bytes()).await.unwrap();
                s.shutdown().await.ok();
            }
            heads
        });
        (addr, task)
    }

    #[tokio::test]
    async fn digest_is_preferred_over_basic_and_chunked_answers_are_read_whole_and_bounded() {
        let store = Store::open_in_memory().unwrap();
        let login = Login {
            user: "admin".into(),
            password: Secret::new("web-pass-55"),
        };
        let (addr, heads) = chunked_printer().await;
        let (status, body) = get(&store, addr, false, "/log", Some(login.clone()))
            .await
            .unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"EVENT 1 jammed"[..]));
        let heads = heads.await.unwrap();
        assert!(
            !heads[0].contains("Authorization"),
            "nothing sent before asked: {}",
            heads[0]
        );
        assert!(
            heads[1].contains("Authorization: Digest username=\"admin\"")
                && heads[1].contains("algorithm=SHA-256")
                && !heads[1].contains("web-pass-55"),
            "{}",
            heads[1]
        );
        // The same answer with a 10-byte budget: cut there, not read further.
        let (addr, _heads) = chunked_printer().await;
        let (_, body) = Exchange {
            store: &store,
            to: addr,
            tls: false,
            method: reqwest::Method::GET,
            path: "/log",
            body: None,
            login: Some(login),
            deadline: Duration::from_secs(10),
            max_body: 10,
        }
        .run()
        .await
        .unwrap();
        assert_eq!(body, b"EVENT 1 ja");
    }

    #[tokio::test]
    async fn a_closed_port_is_not_communicating_and_named() {
        let store = Store::open_in_memory().unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (unreachable, why) = get(&store, closed, false, "/", None).await.unwrap_err();
        assert!(unreachable, "{why}");
        assert!(why.starts_with(&closed.to_string()), "{why}");
    }

    #[test]
    fn fingerprints_are_64_hex_digits_with_optional_colons() {
        let hex = "AB".repeat(32);
        assert_eq!(normalize_pin(&hex), Ok("ab".repeat(32)));
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(normalize_pin(&colons), Ok("ab".repeat(32)));
        assert!(normalize_pin("abcd").is_err());
        assert!(normalize_pin(&"zz".repeat(32)).is_err());
    }
}
