//! The local listener's own accept loop, because `axum::serve` has no limits: at most
//! [`Limits::connections`] open connections (and [`Limits::per_host`] from one other
//! host), a deadline on each request's header (which also closes idle keep-alive
//! connections), and each request's body read whole within a size and a deadline before
//! a handler sees it. A connection over the cap gets a bare 503 and is closed, so a
//! flood of idle sockets cannot take the page or the agent's descriptors.

use super::reason;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

/// The largest request body (the page sends small JSON forms).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Time a request's body may take to arrive.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// Time open connections get to finish once the agent stops (the discovery event stream
/// never finishes by itself).
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// The listener's limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections, at most (well under a default 1,024-descriptor limit).
    pub connections: usize,
    /// Open connections from one other host (loopback peers share the whole cap).
    pub per_host: usize,
    /// Time a request's header may take, counted from the connection's start or the end
    /// of the previous response.
    pub header_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections: 256,
            per_host: 32,
            header_deadline: Duration::from_secs(10),
        }
    }
}

/// Open connections per other host.
type Hosts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One connection's place under the caps, given back when the connection ends.
struct Slot {
    _permit: OwnedSemaphorePermit,
    host: Option<(IpAddr, Hosts)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((ip, hosts)) = &self.host {
            let mut m = hosts.lock();
            if let Some(n) = m.get_mut(ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(ip);
                }
            }
        }
    }
}

fn take_slot(open: &Arc<Semaphore>, hosts: &Hosts, peer: IpAddr, limits: &Limits) -> Option<Slot> {
    let permit = open.clone().try_acquire_owned().ok()?;
    if peer.is_loopback() || peer.to_canonical().is_loopback() {
        return Some(Slot {
            _permit: permit,
            host: None,
        });
    }
    let mut m = hosts.lock();
    let n = m.entry(peer).or_default();
    if *n >= limits.per_host {
        return None;
    }
    *n += 1;
    Some(Slot {
        _permit: permit,
        host: Some((peer, hosts.clone())),
    })
}

/// A change of where and how the page listens (remote access on or off): bind `addr`
/// (dropping the old listener first when the port is the same), serve TLS with `tls`
/// besides plain HTTP for this host; `done` gets the address bound, or why not (the old
/// listener is then bound again).
pub struct Rebind {
    /// Where to listen.
    pub addr: SocketAddr,
    /// TLS for other hosts (`None`: plain HTTP only).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The outcome.
    pub done: tokio::sync::oneshot::Sender<Result<SocketAddr, String>>,
}

/// How a connection reached the page (an extension on each request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transport {
    /// Over TLS.
    pub tls: bool,
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Serves `app` on `listener` until `shutdown` completes; then open connections get
/// [`STOP_GRACE`] to finish. With `tls`, a connection that starts a TLS handshake is
/// served over TLS, and plain HTTP from other hosts is redirected to HTTPS on the same
/// port (`plain_ok` says which peers may stay plain: this host); `rebind` moves the
/// listener.
///
/// # Errors
/// When the listener cannot be bound again after a failed move.
pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    limits: Limits,
    mut tls: Option<Arc<rustls::ServerConfig>>,
    mut rebind: tokio::sync::mpsc::Receiver<Rebind>,
    plain_ok: fn(IpAddr) -> bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.connections));
    let hosts = Arc::new(Mutex::new(HashMap::new()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let redirect = Router::new().fallback(to_https);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            Some(r) = rebind.recv() => {
                let (moved, outcome) = move_listener(listener, r.addr).await?;
                listener = moved;
                if outcome.is_ok() {
                    tls = r.tls;
                }
                r.done.send(outcome).ok();
                continue;
            }
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // EMFILE and the like: give the open connections time to close.
                    tracing::debug!(error = %e, "Local page: accept failed.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = take_slot(&open, &hosts, peer.ip(), &limits) else {
            tracing::debug!(peer = %peer, "Local page: too many connections; refused one.");
            // Best effort, never waits: the client learns why instead of hanging.
            stream
                .try_write(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .ok();
            continue;
        };
        let (app, redirect, tls) = (app.clone(), redirect.clone(), tls.clone());
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Some(tls) = tls else {
                serve_conn(stream, app, peer, Transport { tls: false }, limits, stop).await;
                return;
            };
            // The first byte says which: a TLS handshake, or plain HTTP.
            let mut first = [0u8; 1];
            let Ok(Ok(1)) =
                tokio::time::timeout(limits.header_deadline, stream.peek(&mut first)).await
            else {
                return;
            };
            if first[0] == TLS_HANDSHAKE {
                let accept = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
                match tokio::time::timeout(limits.header_deadline, accept).await {
                    Ok(Ok(s)) => {
                        serve_conn(s, app, peer, Transport { tls: true }, limits, stop).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %peer, error = %e, "Local page: TLS handshake failed.")
                    }
                    Err(_) => tracing::debug!(peer = %peer, "Local page: TLS handshake too slow."),
                }
            } else if plain_ok(peer.ip()) {
                serve_conn(stream, app, peer, Transport { tls: false }, limits, stop).await;
            } else {
                serve_conn(
                    stream,
                    redirect,
                    peer,
                    Transport { tls: false },
                    limits,
                    stop,
                )
                .await;
            }
        });
    }
    stop_tx.send(true).ok();
    let all = u32::try_from(limits.connections).unwrap_or(u32::MAX);
    tokio::time::timeout(STOP_GRACE, open.acquire_many(all))
        .await
        .ok();
    Ok(())
}

/// Binds `addr` instead of `listener` (dropped first: the same port cannot be bound
/// twice); on failure binds the old address again. Returns the listener in use and the
/// outcome.
async fn move_listener(
    listener: TcpListener,
    addr: SocketAddr,
) -> std::io::Result<(TcpListener, Result<SocketAddr, String>)> {
    let old = listener.local_addr()?;
    if old == addr {
        return Ok((listener, Ok(old)));
    }
    drop(listener);
    match TcpListener::bind(addr).await {
        Ok(l) => {
            let at = l.local_addr()?;
            Ok((l, Ok(at)))
        }
        Err(e) => {
            let why = format!("cannot listen on {addr}: {e}");
            // Back where it was; another process may grab the port in between: tried for
            // a few seconds before the page gives up (said in the log).
            let mut last = None;
            for _ in 0..30 {
                match TcpListener::bind(old).await {
                    Ok(l) => return Ok((l, Err(why))),
                    Err(e) => last = Some(e),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let e = last.unwrap_or_else(|| std::io::Error::other("bind failed"));
            tracing::error!(listen = %old, error = %e, "Local page: cannot listen again where it was; the page is down until the agent restarts.");
            Err(e)
        }
    }
}

/// Plain HTTP from another host once remote access is on: to the same place over HTTPS.
async fn to_https(req: Request) -> Response {
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| super::parse_host(h).is_some());
    match host {
        Some(h) => {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            Response::builder()
                .status(StatusCode::PERMANENT_REDIRECT)
                .header(axum::http::header::LOCATION, format!("https://{h}{path}"))
                .body(Body::empty())
                .unwrap_or_default()
        }
        None => reason(
            StatusCode::BAD_REQUEST,
            "this page is served over HTTPS to other hosts",
        ),
    }
}

/// Serves one connection until it ends, or gracefully once the listener stops.
async fn serve_conn<I>(
    io: I,
    app: Router,
    peer: SocketAddr,
    transport: Transport,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
        req.extensions_mut().insert(transport);
        app.clone().oneshot(req.map(Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_deadline);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::trace!(peer = %peer, error = %e, "Local page: connection ended.");
                }
                break;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Reads a request's body whole, at most [`MAX_BODY_BYTES`] within [`BODY_DEADLINE`], so
/// no handler waits on a slow or endless body.
///
/// # Errors
/// The answer to send instead (413, 408 or 400).
pub async fn read_body(req: Request) -> Result<Request, Response> {
    let (parts, body) = req.into_parts();
    let hint = axum::body::HttpBody::size_hint(&body);
    if hint.lower() > MAX_BODY_BYTES as u64 {
        return Err(reason(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than {} KiB",
                MAX_BODY_BYTES / 1024
            ),
        ));
    }
    if hint.upper() == Some(0) {
        return Ok(Request::from_parts(parts, Body::empty()));
    }
    match tokio::time::timeout(BODY_DEADLINE, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Ok(Err(_)) => Err(reason(
            StatusCode::BAD_REQUEST,
            format!(
                "the request body could not be read (cut short, or larger than {} KiB)",
                MAX_BODY_BYTES / 1024
            ),
        )),
        Err(_) => Err(reason(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                BODY_DEADLINE.as_secs()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: Limits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let app = Router::new()
            .route("/", axum::routing::get(|| async { "hello" }))
            .route(
                "/echo",
                axum::routing::post(
                    |body: axum::body::Bytes| async move { body.len().to_string() },
                ),
            )
            .layer(axum::middleware::from_fn(
                |req: Request, next: axum::middleware::Next| async move {
                    match read_body(req).await {
                        Ok(req) => next.run(req).await,
                        Err(resp) => resp,
                    }
                },
            ));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (_keep, rebind) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let _keep = _keep;
            serve(l, app, limits, None, rebind, |_| true, async move {
                rx.await.ok();
            })
            .await
        });
        (addr, tx)
    }

    async fn answer(s: &mut tokio::net::TcpStream) -> String {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf))
            .await
            .ok();
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// The finding: 1,100 idle connections took the page down at a 1,024-descriptor limit.
    #[tokio::test]
    async fn idle_connections_are_closed_and_the_cap_answers_503() {
        let limits = Limits {
            connections: 8,
            per_host: 2,
            header_deadline: Duration::from_millis(400),
        };
        let (addr, _stop) = start(limits).await;
        let mut idle = Vec::new();
        for _ in 0..8 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut over = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(answer(&mut over).await.starts_with("HTTP/1.1 503"));
        // The header deadline closes the idle ones, and the page answers again.
        for s in &mut idle {
            let mut b = [0u8; 1];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
                .await
                .expect("closed by the header deadline");
            assert!(n.map_or(true, |n| n == 0 || b[0] == b'H'));
        }
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let a = answer(&mut s).await;
        assert!(a.starts_with("HTTP/1.1 200") && a.ends_with("hello"), "{a}");
    }

    #[tokio::test]
    async fn slow_and_large_bodies_are_refused() {
        let (addr, _stop) = start(Limits::default()).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let big = MAX_BODY_BYTES + 1;
        s.write_all(
            format!("POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: {big}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        assert!(answer(&mut s).await.starts_with("HTTP/1.1 413"));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let chunk = format!("{:x}\r\n{}\r\n", 40_000, "a".repeat(40_000));
        s.write_all(chunk.as_bytes()).await.ok();
        s.write_all(chunk.as_bytes()).await.ok();
        let a = answer(&mut s).await;
        assert!(a.starts_with("HTTP/1.1 400"), "{a}");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\nab")
            .await
            .unwrap();
        let t = tokio::time::Instant::now();
        let a = answer(&mut s).await;
        assert!(a.starts_with("HTTP/1.1 408"), "{a}");
        assert!(t.elapsed() >= BODY_DEADLINE - Duration::from_millis(500));
    }

    #[test]
    fn one_other_host_gets_its_share_only() {
        let limits = Limits {
            connections: 4,
            per_host: 2,
            header_deadline: Duration::from_secs(1),
        };
        let open = Arc::new(Semaphore::new(limits.connections));
        let hosts = Arc::new(Mutex::new(HashMap::new()));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = take_slot(&open, &hosts, a, &limits).unwrap();
        let _a2 = take_slot(&open, &hosts, a, &limits).unwrap();
        assert!(take_slot(&open, &hosts, a, &limits).is_none());
        let _b1 = take_slot(&open, &hosts, b, &limits).unwrap();
        drop(a1);
        let _a3 = take_slot(&open, &hosts, a, &limits).unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let _l = take_slot(&open, &hosts, lo, &limits).unwrap();
        assert!(
            take_slot(&open, &hosts, lo, &limits).is_none(),
            "the whole cap is used"
        );
    }

    /// Once open to other hosts: a TLS handshake is served over TLS on the same port,
    /// plain HTTP from a peer that may not stay plain is sent to HTTPS, and the listener
    /// moves (and refuses a move it cannot make, keeping its address).
    #[tokio::test]
    async fn tls_and_plain_share_the_port_and_the_listener_moves() {
        crate::cloud::install_crypto();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(der.clone())],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let app = Router::new().route(
            "/",
            axum::routing::get(|req: Request| async move {
                let tls = req.extensions().get::<Transport>().is_some_and(|t| t.tls);
                format!("tls={tls}")
            }),
        );
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (rebind_tx, rebind) = tokio::sync::mpsc::channel(1);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(
            l,
            app,
            Limits::default(),
            Some(Arc::new(config)),
            rebind,
            |_| false,
            async move {
                stopped.await.ok();
            },
        ));
        // Plain HTTP from a peer that must use TLS: to the same place over HTTPS.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"GET /x?y=1 HTTP/1.1\r\nHost: agent.example:8080\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let a = answer(&mut s).await;
        assert!(a.starts_with("HTTP/1.1 308"), "{a}");
        assert!(
            a.contains("location: https://agent.example:8080/x?y=1"),
            "{a}"
        );
        // Over TLS, the certificate served is the one given.
        let http = reqwest::Client::builder()
            .no_proxy()
            .danger_accept_invalid_certs(true)
            .tls_info(true)
            .build()
            .unwrap();
        let r = http
            .get(format!("https://localhost:{}/", addr.port()))
            .send()
            .await
            .unwrap();
        let info = r.extensions().get::<reqwest::tls::TlsInfo>().cloned();
        assert_eq!(r.text().await.unwrap(), "tls=true");
        assert_eq!(info.unwrap().peer_certificate(), Some(&der[..]));

        // A move to an address in use is refused, the listener stays where it was.
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (done, outcome) = tokio::sync::oneshot::channel();
        rebind_tx
            .send(Rebind {
                addr: busy.local_addr().unwrap(),
                tls: None,
                done,
            })
            .await
            .ok();
        let why = outcome.await.unwrap().unwrap_err();
        assert!(why.contains("cannot listen on"), "{why}");
        assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
        // A move to a free address, plain HTTP only: the old one is closed.
        let free = {
            let f = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            f.local_addr().unwrap()
        };
        let (done, outcome) = tokio::sync::oneshot::channel();
        rebind_tx
            .send(Rebind {
                addr: free,
                tls: None,
                done,
            })
            .await
            .ok();
        assert_eq!(outcome.await.unwrap(), Ok(free));
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        let mut s = tokio::net::TcpStream::connect(free).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(answer(&mut s).await.ends_with("tls=false"));
        stop.send(()).ok();
    }
}
