//! A hostile cloud (or whatever answers at its address): documents larger than the agent
//! reads, endless or announced as gigabytes, and a page of 100,000 jobs. The agent's
//! client must stop reading at its budget (4 MiB for documents, 1,000 jobs per fetch)
//! with an error that says so, without taking the rest of the stream in.

use fleet_agent::cloud::client::{
    CloudClient, Credentials, MAX_DOCUMENT_BYTES, MAX_JOBS_PER_FETCH,
};
use fleet_secret::Secret;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Set in the byte count once a write failed because the client closed the connection.
const CLOSED: u64 = 1 << 63;

/// How the hostile server answers the settings document.
#[derive(Clone, Copy)]
enum Document {
    /// Chunked, never ending.
    Endless,
    /// `Content-Length` of 5 GB, then a trickle.
    Announced,
}

/// Serves over TLS on loopback; returns its URL, the CA to trust and the count of body
/// bytes written for documents.
async fn hostile(doc: Document) -> (String, String, Arc<AtomicU64>) {
    use rustls::pki_types::pem::PemObject;
    let g = fleet_cloud::tls::generate(&["localhost", "127.0.0.1"]).unwrap();
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(g.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(g.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let written = Arc::new(AtomicU64::new(0));
    let count = written.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut b = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                if line.contains("/v1/oauth/token") {
                    let body = r#"{"access_token":"t","token_type":"bearer","expires_in":3600,"created_at":0}"#;
                    // One request per connection: the client must not reuse this one (it
                    // would race the server's drop: "connection closed before message
                    // completed").
                    let r = format!(
                        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    s.write_all(r.as_bytes()).await.ok();
                    s.flush().await.ok();
                    s.shutdown().await.ok();
                } else if line.contains("/jobs") {
                    // 100,000 valid jobs in 3.9 MB: within the byte budget, far over the count.
                    let jobs: Vec<String> = (0..100_000)
                        .map(|i| format!(r#"{{"jobId":"j{i}","type":"refresh"}}"#))
                        .collect();
                    let body = format!(r#"{{"jobs":[{}]}}"#, jobs.join(","));
                    assert!(body.len() < MAX_DOCUMENT_BYTES);
                    let r = format!(
                        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    s.write_all(r.as_bytes()).await.ok();
                    s.write_all(body.as_bytes()).await.ok();
                    // TLS buffers: flush and close properly, or a loaded machine drops
                    // the tail with the stream ("connection closed before message
                    // completed").
                    s.flush().await.ok();
                    s.shutdown().await.ok();
                } else if line.contains("/config") {
                    let chunk = "[0,".repeat(10_000);
                    match doc {
                        Document::Endless => {
                            let head = "HTTP/1.1 200 OK\r\nETag: \"x\"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                            if s.write_all(head.as_bytes()).await.is_err() {
                                return;
                            }
                            let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                            while s.write_all(framed.as_bytes()).await.is_ok() {
                                count.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                            }
                            // The client closed the connection (one that merely
                            // stopped reading would leave the write waiting).
                            count.fetch_or(CLOSED, Ordering::Relaxed);
                        }
                        Document::Announced => {
                            let head = "HTTP/1.1 200 OK\r\nETag: \"x\"\r\nContent-Type: application/json\r\nContent-Length: 5000000000\r\n\r\n";
                            if s.write_all(head.as_bytes()).await.is_err() {
                                return;
                            }
                            while s.write_all(chunk.as_bytes()).await.is_ok() {
                                count.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
                s.shutdown().await.ok();
            });
        }
    });
    (url, g.ca_pem, written)
}

fn creds() -> Credentials {
    Credentials {
        agent_id: "a1".into(),
        client_id: "c1".into(),
        client_secret: Secret::new("s".to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_past_the_budget_are_refused_without_reading_them_whole() {
    for doc in [Document::Endless, Document::Announced] {
        let (url, ca, written) = hostile(doc).await;
        let client = CloudClient::new(&url, Some(ca.as_bytes()), Duration::from_secs(20)).unwrap();
        let t = Instant::now();
        let e = client.config(&creds(), None).await.unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("larger than {MAX_DOCUMENT_BYTES} bytes")),
            "{e}"
        );
        assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
        // The client stopped taking the stream: what the server could write stops growing
        // (beyond the budget, only what the sockets' buffers held).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sent = written.load(Ordering::Relaxed) & !CLOSED;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = written.load(Ordering::Relaxed);
        assert_eq!(now & !CLOSED, sent, "the stream stopped");
        if let Document::Endless = doc {
            assert!(
                now & CLOSED != 0,
                "the client closed the connection rather than leave it open"
            );
        }
        match doc {
            Document::Endless => assert!(
                sent > MAX_DOCUMENT_BYTES as u64 && sent < (MAX_DOCUMENT_BYTES as u64) + (32 << 20),
                "{sent} bytes written"
            ),
            // Refused on the announced length, before its body.
            Document::Announced => assert!(sent < 1 << 20, "{sent} bytes written"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_a_hundred_thousand_jobs_yields_the_first_thousand() {
    let (url, ca, _) = hostile(Document::Endless).await;
    let client = CloudClient::new(&url, Some(ca.as_bytes()), Duration::from_secs(20)).unwrap();
    let jobs = client.jobs(&creds(), Duration::from_secs(1)).await.unwrap();
    assert_eq!(jobs.len(), MAX_JOBS_PER_FETCH);
    assert_eq!(jobs[0].job_id, "j0");
    assert_eq!(
        jobs[MAX_JOBS_PER_FETCH - 1].job_id,
        format!("j{}", MAX_JOBS_PER_FETCH - 1)
    );
}
