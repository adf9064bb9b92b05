//! Get-Printer-Attributes over HTTP (RFC 8010 §4: a POST of `application/ipp`).

use crate::codec::{self, Response};
use std::time::Duration;

/// The most bytes read from a printer's answer. A full Get-Printer-Attributes with
/// media databases runs to ~100 KiB; the attributes the agent asks for are a few KiB.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Why a Get-Printer-Attributes failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The printer URI is not `ipp://` or `http://` (IPPS is not supported yet).
    #[error("unsupported printer URI {0:?} (expected ipp://host[:port]/path)")]
    Uri(String),
    /// No answer in time.
    #[error("no IPP answer within {0:?}")]
    Timeout(Duration),
    /// Connection or HTTP failure.
    #[error("IPP request failed: {0}")]
    Transport(String),
    /// The HTTP status was not 200.
    #[error("IPP printer answered HTTP {0}")]
    Http(u16),
    /// The answer was larger than [`MAX_RESPONSE_BYTES`].
    #[error("IPP answer larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    /// The answer could not be decoded.
    #[error(transparent)]
    Decode(#[from] codec::DecodeError),
    /// The printer refused the operation (IPP status code).
    #[error("IPP status 0x{0:04x}")]
    Status(u16),
}

/// Maps `ipp://host[:port]/path` to the HTTP URL it is reached at (port 631 by default,
/// RFC 3510), keeping the IPP URI for the request's `printer-uri`.
pub fn http_url(printer_uri: &str) -> Result<String, Error> {
    let rest = printer_uri
        .strip_prefix("ipp://")
        .or_else(|| printer_uri.strip_prefix("http://"))
        .ok_or_else(|| Error::Uri(printer_uri.to_string()))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() || authority.contains('@') {
        return Err(Error::Uri(printer_uri.to_string()));
    }
    // An authority with a port: "host:port" or "[v6]:port"; without one, add 631.
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    };
    let path = if path.is_empty() { "/ipp/print" } else { path };
    Ok(if has_port {
        format!("http://{authority}{path}")
    } else {
        format!("http://{authority}:631{path}")
    })
}

/// Asks a printer for `requested` attributes (all when empty), within `deadline`,
/// reading at most [`MAX_RESPONSE_BYTES`].
pub async fn get_printer_attributes(
    http: &reqwest::Client,
    printer_uri: &str,
    requested: &[&str],
    deadline: Duration,
) -> Result<Response, Error> {
    let url = http_url(printer_uri)?;
    let ipp_uri = match printer_uri.strip_prefix("http://") {
        Some(rest) => format!("ipp://{rest}"),
        None => printer_uri.to_string(),
    };
    let id = request_id();
    let body = codec::get_printer_attributes_request(id, &ipp_uri, requested);
    let exchange = async {
        let mut resp = http
            .post(&url)
            .header("Content-Type", "application/ipp")
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Transport(error_chain(&e)))?;
        if resp.status().as_u16() != 200 {
            return Err(Error::Http(resp.status().as_u16()));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(Error::TooLarge);
        }
        let mut buf = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| Error::Transport(error_chain(&e)))?
        {
            if buf.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(Error::TooLarge);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    let bytes = tokio::time::timeout(deadline, exchange)
        .await
        .map_err(|_| Error::Timeout(deadline))??;
    let r = codec::decode(&bytes)?;
    if !r.is_success() {
        return Err(Error::Status(r.status));
    }
    Ok(r)
}

/// A request id: any value works for one request per connection; one that changes
/// lets a capture tell requests apart.
fn request_id() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos());
    n.max(1)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_uris_map_to_http_urls_on_631_by_default() {
        assert_eq!(
            http_url("ipp://10.0.0.5/ipp/print").unwrap(),
            "http://10.0.0.5:631/ipp/print"
        );
        assert_eq!(
            http_url("ipp://p.local:8631/ipp/print").unwrap(),
            "http://p.local:8631/ipp/print"
        );
        assert_eq!(http_url("ipp://[::1]/x").unwrap(), "http://[::1]:631/x");
        assert_eq!(http_url("ipp://[::1]:9/x").unwrap(), "http://[::1]:9/x");
        assert_eq!(http_url("ipp://h").unwrap(), "http://h:631/ipp/print");
        assert!(matches!(http_url("ipps://h/ipp/print"), Err(Error::Uri(_))));
        assert!(matches!(http_url("ipp://user@h/"), Err(Error::Uri(_))));
        assert!(matches!(http_url("ipp:///x"), Err(Error::Uri(_))));
    }

    /// A one-shot HTTP server on loopback answering `body` with `status`.
    async fn serve(status: &'static str, body: Vec<u8>, delay: Duration) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = vec![0u8; 4096];
            // What the client sent is not checked here (the codec's tests do); reading
            // it lets the client finish sending before the answer.
            let _got = s.read(&mut req).await.unwrap_or(0);
            tokio::time::sleep(delay).await;
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).await.ok();
            s.write_all(&body).await.ok();
        });
        format!("ipp://{addr}/ipp/print")
    }

    #[tokio::test]
    async fn answers_errors_sizes_and_deadlines() {
        rustls::crypto::ring::default_provider()
            .install_default()
            .ok();
        let http = reqwest::Client::builder().build().unwrap();
        let d = Duration::from_secs(5);
        let ok = [
            2, 0, 0, 0, 0, 0, 0, 1, 1, 4, 0x44, 0, 1, b'k', 0, 1, b'v', 3,
        ];
        let r = get_printer_attributes(
            &http,
            &serve("200 OK", ok.to_vec(), Duration::ZERO).await,
            &[],
            d,
        )
        .await
        .unwrap();
        assert_eq!(r.printer("k")[0].to_string(), "v");
        let e = get_printer_attributes(
            &http,
            &serve("404 Not Found", vec![], Duration::ZERO).await,
            &[],
            d,
        )
        .await;
        assert!(matches!(e, Err(Error::Http(404))), "{e:?}");
        let refused = [2, 0, 0x04, 0x00, 0, 0, 0, 1, 1, 3];
        let e = get_printer_attributes(
            &http,
            &serve("200 OK", refused.to_vec(), Duration::ZERO).await,
            &[],
            d,
        )
        .await;
        assert!(matches!(e, Err(Error::Status(0x0400))), "{e:?}");
        let big = vec![0u8; MAX_RESPONSE_BYTES + 1];
        let e = get_printer_attributes(&http, &serve("200 OK", big, Duration::ZERO).await, &[], d)
            .await;
        assert!(matches!(e, Err(Error::TooLarge)), "{e:?}");
        let e = get_printer_attributes(
            &http,
            &serve("200 OK", b"garbage".to_vec(), Duration::ZERO).await,
            &[],
            d,
        )
        .await;
        assert!(matches!(e, Err(Error::Decode(_))), "{e:?}");
        let slow = serve("200 OK", ok.to_vec(), Duration::from_secs(30)).await;
        let e = get_printer_attributes(&http, &slow, &[], Duration::from_millis(200)).await;
        assert!(matches!(e, Err(Error::Timeout(_))), "{e:?}");
    }
}
