//! A printer's web server as the jobs use it: HTTP/1.1 uploads and reads with the stored
//! web credentials, over plain TCP or TLS. Printers' certificates are self-signed, so TLS
//! trusts on first use: the first certificate seen at a printer's address is pinned (the
//! SHA-256 of its leaf, kept in the store) and a different one later is refused, naming
//! both fingerprints, until the administrator sets the new one (`updateCredentials`
//! `params.web.certificateSha256`). TLS 1.2 and 1.3 only (rustls): printers that speak
//! nothing newer than TLS 1.0/1.1 are refused with that reason.

use crate::store::Store;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A connection to the printer, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

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

/// Connects to the printer's web server (TLS when `tls`, pinning the certificate on first
/// use).
async fn connect(store: &Store, to: SocketAddr, tls: bool) -> Result<Box<dyn Io>, Failure> {
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect(to),
    )
    .await
    .map_err(|_| (true, format!("{to}: no connection within 10 s")))?
    .map_err(|e| (true, format!("{to}: {e}")))?;
    if !tls {
        return Ok(Box::new(tcp));
    }
    let key = pin_key(to.ip());
    let pinned = {
        let (s, k) = (store.clone(), key.clone());
        tokio::task::spawn_blocking(move || s.setting(&k))
            .await
            .map_err(|e| (false, e.to_string()))?
            .map_err(|e| (false, format!("the store: {e}")))?
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(TrustOnFirstUse {
        pinned: pinned.clone(),
        seen: Mutex::new(None),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| (false, format!("TLS set-up: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::IpAddress(to.ip().into());
    let handshake = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| (true, format!("{to}: no TLS handshake within 20 s")))?;
    let seen = verifier.seen.lock().clone();
    match handshake {
        Ok(stream) => {
            if pinned.is_none()
                && let Some(fp) = seen
            {
                tracing::info!(printer = %to, sha256 = %fp, "Printer web certificate pinned (first use).");
                let s = store.clone();
                tokio::task::spawn_blocking(move || s.set_setting(&key, &fp))
                    .await
                    .ok();
            }
            Ok(Box::new(stream))
        }
        Err(e) => Err((
            false,
            match (pinned, seen) {
                (Some(p), Some(s)) if p != s => format!(
                    "{to}: the printer's certificate changed: SHA-256 {s}, pinned {p}; if the change is expected, give the new fingerprint with updateCredentials params.web.certificateSha256"
                ),
                _ => format!("{to}: TLS: {e} (TLS 1.2 or 1.3 is needed)"),
            },
        )),
    }
}

fn basic(web: Option<&(String, String)>) -> String {
    use base64::Engine;
    web.map(|(user, pass)| {
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    })
    .unwrap_or_default()
}

/// POSTs bytes to the printer's web server (HTTP/1.1, basic authentication with the
/// stored web credentials), as the file `name` when given; returns the status code.
pub async fn send(
    store: &Store,
    to: SocketAddr,
    tls: bool,
    path: &str,
    name: Option<&str>,
    bytes: &[u8],
    web: Option<(String, String)>,
) -> Result<u16, Failure> {
    let mut s = connect(store, to, tls).await?;
    let disposition = name
        .map(|n| format!("Content-Disposition: attachment; filename=\"{n}\"\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {to}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n{disposition}Connection: close\r\nUser-Agent: fleet-agent/{}\r\n{}\r\n",
        bytes.len(),
        env!("CARGO_PKG_VERSION"),
        basic(web.as_ref())
    );
    let answer = tokio::time::timeout(std::time::Duration::from_secs(600), async {
        s.write_all(head.as_bytes()).await?;
        s.write_all(bytes).await?;
        s.flush().await?;
        let mut buf = vec![0u8; 1024];
        let mut got = Vec::new();
        while !got.windows(2).any(|w| w == b"\r\n") {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(got)
    })
    .await
    .map_err(|_| (false, format!("{to}: no answer within 10 minutes")))?
    .map_err(|e| (false, format!("{to}: {e}")))?;
    let line = String::from_utf8_lossy(&answer);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| (false, format!("{to}: not an HTTP answer")))
}

/// Largest printer log read over HTTP.
pub const LOG_MAX: usize = 64 << 20;

/// GETs a path from the printer's web server with the stored web credentials; returns
/// the status and body (at most [`LOG_MAX`] bytes).
pub async fn get(
    store: &Store,
    to: SocketAddr,
    tls: bool,
    path: &str,
    web: Option<(String, String)>,
) -> Result<(u16, Vec<u8>), Failure> {
    let mut s = connect(store, to, tls).await?;
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\nUser-Agent: fleet-agent/{}\r\n{}\r\n",
        env!("CARGO_PKG_VERSION"),
        basic(web.as_ref())
    );
    let raw = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        s.write_all(head.as_bytes()).await?;
        s.flush().await?;
        let mut out = Vec::new();
        // A server that closes without TLS close_notify still sent a whole answer.
        match (&mut s)
            .take(LOG_MAX as u64 + 65_536)
            .read_to_end(&mut out)
            .await
        {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
            r => {
                r?;
            }
        }
        Ok::<_, std::io::Error>(out)
    })
    .await
    .map_err(|_| (false, format!("{to}: no answer within 2 minutes")))?
    .map_err(|e| (false, format!("{to}: {e}")))?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| (false, format!("{to}: not an HTTP answer")))?;
    let status = String::from_utf8_lossy(&raw[..end])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| (false, format!("{to}: not an HTTP answer")))?;
    Ok((
        status,
        raw[end + 4..].iter().copied().take(LOG_MAX).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
