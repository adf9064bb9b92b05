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

/// Serves `app` on `listener` until `shutdown` completes; then open connections get
/// [`STOP_GRACE`] to finish.
///
/// # Errors
/// None today: accept failures (such as running out of descriptors) are waited out.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.connections));
    let hosts = Arc::new(Mutex::new(HashMap::new()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
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
        let app = app.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    app.clone().oneshot(req.map(Body::new))
                },
            );
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_deadline);
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
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
        });
    }
    stop_tx.send(true).ok();
    let all = u32::try_from(limits.connections).unwrap_or(u32::MAX);
    tokio::time::timeout(STOP_GRACE, open.acquire_many(all))
        .await
        .ok();
    Ok(())
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
        tokio::spawn(serve(l, app, limits, async move {
            rx.await.ok();
        }));
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
}
