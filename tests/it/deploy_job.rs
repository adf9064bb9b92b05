//! File deployment (`deployFile`) against a running agent and a test printer endpoint
//! that records the bytes it receives: by raw TCP 9100 by default, then by HTTP upload
//! with the printer's web login once the support library says so (Digest when the printer
//! asks for it in the clear, Basic inside TLS); size and kind limits are enforced before
//! anything is downloaded or sent.

use base64::Engine;
use fleet_agent::printer::library;
use fleet_protocol::admin::JobView;
use fleet_protocol::jobs::{JobState, Status};
use serde_json::{Value, json};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a fake printer endpoint received: one entry per connection.
type Received = Arc<Mutex<Vec<Vec<u8>>>>;

async fn raw_endpoint(addr: &str) -> Received {
    let got: Received = Arc::default();
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    let g = got.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.ok();
            g.lock().unwrap().push(buf);
        }
    });
    got
}

/// What a test printer's web server asks for before it accepts a request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ask {
    /// Basic with admin / web-pass-55.
    Basic,
    /// Digest (RFC 7616, MD5, qop=auth) with admin / web-pass-55.
    Digest,
}

const WEB_USER: &str = "admin";
const WEB_PASS: &str = "web-pass-55";
const NONCE: &str = "dcd98b7102dd2f0e8b11d0f600bfb0c093";

fn md5_hex(s: &str) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(s.as_bytes()))
}

/// Checks a request's Digest answer the way a printer does.
fn digest_ok(head: &str) -> bool {
    let method = head.split(' ').next().unwrap_or("");
    let Some(line) = head
        .lines()
        .find_map(|l| l.strip_prefix("Authorization: Digest "))
    else {
        return false;
    };
    let mut p = std::collections::HashMap::new();
    for part in line.split(", ") {
        if let Some((k, v)) = part.split_once('=') {
            p.insert(k.trim(), v.trim().trim_matches('"'));
        }
    }
    let get = |k: &str| p.get(k).copied().unwrap_or("");
    let ha1 = md5_hex(&format!("{}:{}:{WEB_PASS}", get("username"), get("realm")));
    let ha2 = md5_hex(&format!("{method}:{}", get("uri")));
    let want = md5_hex(&format!(
        "{ha1}:{}:{}:{}:{}:{ha2}",
        get("nonce"),
        get("nc"),
        get("cnonce"),
        get("qop")
    ));
    get("username") == WEB_USER && get("nonce") == NONCE && get("response") == want
}

/// A web server that keeps every request it accepts (200) and counts the ones it
/// challenged (401) because they lacked the login `ask` names.
async fn http_endpoint(addr: &str, ask: Arc<Mutex<Ask>>) -> (Received, u16, Arc<Mutex<usize>>) {
    let got: Received = Arc::default();
    let challenged = Arc::new(Mutex::new(0));
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (g, c) = (got.clone(), challenged.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let mode = *ask.lock().unwrap();
            let (req, accepted) = serve_one(s, mode).await;
            if accepted {
                g.lock().unwrap().push(req);
            } else {
                *c.lock().unwrap() += 1;
            }
        }
    });
    (got, port, challenged)
}

/// The TLS server identity a test printer shows (swapped to play a replaced certificate).
type Identity = Arc<Mutex<tokio_rustls::TlsAcceptor>>;

/// A certificate and the acceptor serving it, with its SHA-256 (hex).
fn identity() -> (tokio_rustls::TlsAcceptor, String) {
    use rustls::pki_types::pem::PemObject;
    let g = fleet_cloud::tls::generate(&["printer.invalid"]).unwrap();
    let cert = rustls::pki_types::CertificateDer::from_pem_slice(g.cert_pem.as_bytes()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(g.key_pem.as_bytes()).unwrap();
    let fp = fleet_agent::update::sha256_hex(cert.as_ref());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), fp)
}

/// The same web server over TLS (a printer's self-signed HTTPS).
async fn https_endpoint(addr: &str, id: Identity) -> (Received, u16) {
    let got: Received = Arc::default();
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    let port = l.local_addr().unwrap().port();
    let g = got.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = id.lock().unwrap().clone();
            // A refused handshake (the agent's pin) records nothing.
            if let Ok(tls) = acceptor.accept(s).await {
                let (req, accepted) = serve_one(tls, Ask::Basic).await;
                if accepted {
                    g.lock().unwrap().push(req);
                }
            }
        }
    });
    (got, port)
}

/// Reads one request (headers, then Content-Length bytes) and answers it: 401 with a
/// challenge when it lacks the login `ask` names, else 200. Returns it and whether it was
/// accepted.
async fn serve_one<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    ask: Ask,
) -> (Vec<u8>, bool) {
    let mut req = Vec::new();
    let mut buf = [0u8; 65536];
    let mut end = 0;
    loop {
        let n = s.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
        if let Some(e) = req.windows(4).position(|w| w == b"\r\n\r\n") {
            end = e;
            let head = String::from_utf8_lossy(&req[..e]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if req.len() >= e + 4 + len {
                break;
            }
        }
    }
    let head = String::from_utf8_lossy(&req[..end]).to_string();
    let basic = format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{WEB_USER}:{WEB_PASS}"))
    );
    let accepted = match ask {
        Ask::Basic => head.lines().any(|l| l == basic),
        Ask::Digest => digest_ok(&head),
    };
    let answer: Vec<u8> = if !accepted {
        let challenge = match ask {
            Ask::Digest => format!(
                "Digest realm=\"printer@example\", qop=\"auth\", nonce=\"{NONCE}\", algorithm=MD5"
            ),
            _ => "Basic realm=\"printer\"".to_string(),
        };
        format!(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes()
    } else if req.starts_with(b"GET ") {
        // A printer log.
        b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\nConnection: close\r\n\r\nEVENT 1\nEVENT 2 jam\n"
            .to_vec()
    } else {
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
    };
    s.write_all(&answer).await.ok();
    s.shutdown().await.ok();
    (req, accepted)
}

/// Writes the agent's configuration (one printer at `printer`, read with `community`; the
/// support library key when given), starts the agent with its log in `dir/agent.log`, and
/// waits until the printer's first reading reached the cloud. Returns the agent, its
/// configuration file and the printer's serial.
async fn agent_with_printer(
    dir: &std::path::Path,
    cloud: &crate::common::cloud::TestCloud,
    printer: &str,
    community: &str,
    library_key: Option<&str>,
) -> (crate::common::agent::InProcess, std::path::PathBuf, String) {
    let keys = library_key.map_or_else(String::new, |k| format!("library_keys = [\"{k}\"]\n"));
    let conf = dir.join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n[poller]\ninterval_secs = 10\n\
             [cloud]\nurl = \"{}\"\nca_file = \"{}\"\n{keys}\
             [[snmp_profiles]]\nname = \"default\"\nauth = {{ type = \"v2c\", community = \"{community}\" }}\n\
             [[printers]]\naddress = \"{printer}\"\n",
            dir.join("state").display(),
            cloud.url,
            cloud.ca_file.display()
        ),
    )
    .unwrap();
    let log = dir.join("agent.log");
    let agent = crate::common::agent::InProcess::start(&conf, Some(&log));
    let mut serial = String::new();
    for _ in 0..200 {
        if let Some(a) = cloud.db.assets().unwrap().first() {
            serial = a.serial.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !serial.is_empty(),
        "the printer was polled and uploaded; agent log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    (agent, conf, serial)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_reach_the_printer_by_raw_9100_and_http_within_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cloud = crate::common::cloud::start(dir.path(), &state).await;

    let snmp_port = 20000 + (std::process::id() % 20000) as u16;
    let ip = Ipv4Addr::new(127, 96, (std::process::id() % 200) as u8, 1);
    let sim = crate::common::synthetic_printers(1, 5, 0.0, ip, snmp_port, "public").await;
    let raw = raw_endpoint(&format!("{ip}:9100")).await;
    let ask = Arc::new(Mutex::new(Ask::Digest));
    let (web, web_port, challenged) = http_endpoint(&format!("{ip}:0"), ask.clone()).await;

    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let public = base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes());
    let (_agent, _, serial) = agent_with_printer(
        dir.path(),
        &cloud,
        &format!("{ip}:{snmp_port}"),
        "public",
        Some(&public),
    )
    .await;

    let run = |body: Value| {
        let cloud = &cloud;
        async move { cloud.outcome(&cloud.submit(&body).await, 30).await }
    };
    let text = |j: &JobView| crate::common::cloud::message(j).to_string();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let printer = json!({ "serialNumber": serial });

    // A settings bundle by raw TCP 9100 (the built-in library's way for Lexmark).
    let bundle: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let j = run(json!({ "type": "deployFile", "printer": printer,
        "params": { "file": "site.zip" }, "files": { "site.zip": b64(&bundle) } }))
    .await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    assert!(
        text(&j).contains("200000 bytes") && text(&j).contains("raw TCP 9100"),
        "{j:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        raw.lock().unwrap().as_slice(),
        std::slice::from_ref(&bundle)
    );

    // Refused before anything is downloaded or sent: too large, firmware, wrong kind.
    let j = run(json!({ "type": "deployFile", "printer": printer,
        "params": { "file": "big.zip", "size": 40u64 << 20 }, "files": { "big.zip": b64(b"x") } }))
    .await;
    assert_eq!(j.state, JobState::Failed);
    assert!(text(&j).contains("may have 33554432 at most"), "{j:?}");
    let j = run(json!({ "type": "deployFile", "printer": printer,
        "params": { "file": "fw.fls", "kind": "firmware" }, "files": { "fw.fls": b64(b"x") } }))
    .await;
    assert!(
        text(&j).contains("firmware flash files are not accepted"),
        "{j:?}"
    );
    let j = run(json!({ "type": "deployFile", "printer": printer,
        "params": { "file": "notes.txt" }, "files": { "notes.txt": b64(b"x") } }))
    .await;
    assert!(text(&j).starts_with("params.file"), "{j:?}");
    assert_eq!(
        raw.lock().unwrap().len(),
        1,
        "nothing more reached the printer"
    );

    // The support library moves this vendor's uploads to its web server; the web
    // credentials come from updateCredentials.
    let mut lib = library::builtin();
    lib.version = 2;
    for v in lib.vendors.iter_mut().filter(|v| v.enterprise == 641) {
        // Instead of the built-in raw 9100 way (firmware goes the way files go).
        v.actions
            .retain(|a| a.action != "deployFile" && a.action != "firmwareUpdate");
        v.actions.push(library::Action {
            action: "deployFile".into(),
            transport: "http".into(),
            port: Some(web_port),
            path: Some("/cgi-bin/upload".into()),
        });
        v.actions.push(library::Action {
            action: "log:eventLog".into(),
            transport: "http".into(),
            port: Some(web_port),
            path: Some("/logs/event.txt".into()),
        });
    }
    let j =
        run(json!({ "type": "updateLibrary", "params": { "package": library::sign(&lib, &key) } }))
            .await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    // No web credentials yet: the printer's web server refuses the upload, and the printer
    // (still answering SNMP) needs credentials, on the cloud's per-printer status too.
    let j = run(json!({ "type": "deployFile", "printer": printer,
        "params": { "file": "first.fls" }, "files": { "first.fls": b64(b"FLS") } }))
    .await;
    assert_eq!(j.state, JobState::Failed, "{j:?}");
    assert!(
        text(&j).contains("refused the credentials (HTTP 401)"),
        "{j:?}"
    );
    let communication = |want: &'static str| {
        let cloud = &cloud;
        async move {
            for _ in 0..300 {
                let agents = cloud.agents().await;
                if let Some(p) = agents.agents.first().and_then(|a| a.printers.first())
                    && serde_json::to_value(p.communication).unwrap() == want
                {
                    return p.clone();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the cloud never showed {want}: {:?}", cloud.agents().await);
        }
    };
    let status = communication("needsCredentials").await;
    assert!(
        status
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("web server refused"),
        "{status:?}"
    );
    *challenged.lock().unwrap() = 0;
    let j = run(json!({ "type": "updateCredentials", "printer": printer,
        "params": { "web": { "user": "admin", "password": "web-pass-55" } } }))
    .await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    assert_eq!(
        j.params["web"]["password"], "<set>",
        "the admin view hides it"
    );
    // New credentials: back to ok until the printer refuses them.
    communication("ok").await;
    let app: Vec<u8> = b"FLS\x00".iter().copied().cycle().take(70_000).collect();
    let j = run(json!({ "type": "deployFile", "printer": printer,
        "params": { "file": "scan.fls" }, "files": { "scan.fls": b64(&app) } }))
    .await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    assert!(text(&j).contains("HTTP upload to /cgi-bin/upload"), "{j:?}");
    let reqs = web.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    let end = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&req[..end]);
    assert!(head.starts_with("POST /cgi-bin/upload HTTP/1.1"), "{head}");
    // In the clear the password is never sent: the printer asked, the agent answered
    // its Digest challenge (checked by the server), no Basic anywhere.
    assert_eq!(
        *challenged.lock().unwrap(),
        1,
        "one challenge, then accepted"
    );
    assert!(
        head.contains("Authorization: Digest username=\"admin\""),
        "{head}"
    );
    assert!(
        !head.contains("web-pass-55") && !head.contains("Basic"),
        "{head}"
    );
    assert!(head.contains("filename=\"scan.fls\""), "{head}");
    assert_eq!(&req[end + 4..], app.as_slice());
    assert_eq!(raw.lock().unwrap().len(), 1, "not sent by raw 9100 as well");

    // A firmware update waits for its window, then goes the way files go for this vendor.
    let t = tokio::time::Instant::now();
    let start_at = fleet_agent::clock::Clock::system().now_ms() + 1_500;
    let j = run(json!({ "type": "firmwareUpdate", "printer": printer,
        "params": { "file": "fw-1.2.bin", "startAt": start_at }, "files": { "fw-1.2.bin": b64(b"FIRMWARE") } }))
    .await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(1_400),
        "sent before its window"
    );
    assert!(web.lock().unwrap().last().unwrap().ends_with(b"FIRMWARE"));

    // A configuration: firmware first, then apps, then settings, whatever the order given.
    let before = web.lock().unwrap().len();
    let j = run(json!({ "type": "deployConfiguration", "printer": printer,
        "params": { "items": [
            { "file": "a.zip" }, { "file": "b.ucf" }, { "file": "app2.fls" },
            { "file": "fw-2.bin", "kind": "firmware" } ] },
        "files": { "a.zip": b64(b"SETTINGS-A"), "b.ucf": b64(b"SETTINGS-B"),
                   "app2.fls": b64(b"APP-2"), "fw-2.bin": b64(b"FW-2") } }))
    .await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    let bodies: Vec<Vec<u8>> = web.lock().unwrap()[before..]
        .iter()
        .map(|r| {
            let end = r.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            r[end + 4..].to_vec()
        })
        .collect();
    assert_eq!(
        bodies,
        [&b"FW-2"[..], b"APP-2", b"SETTINGS-A", b"SETTINGS-B"],
        "the seed's order"
    );
    // One bad item: nothing is sent.
    let j = run(json!({ "type": "deployConfiguration", "printer": printer,
        "params": { "items": [ { "file": "ok.zip" }, { "file": "readme.txt" } ] },
        "files": { "ok.zip": b64(b"x") } }))
    .await;
    assert_eq!(j.state, JobState::Failed);
    assert!(text(&j).starts_with("params.items[1].file"), "{j:?}");
    assert_eq!(web.lock().unwrap().len(), before + 4);

    // Printer logs: a kind the library names is read from the web server and uploaded;
    // one it does not name is "not supported".
    let j =
        run(json!({ "type": "printerLogs", "printer": printer, "params": { "kind": "eventLog" } }))
            .await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    let file = crate::common::cloud::result(&j).files[0].name.clone();
    assert!(file.ends_with("-eventLog.log.gz"), "{j:?}");
    let gz = cloud.job_file(j.job_id.as_str(), &file).await;
    let mut log = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut log).unwrap();
    assert_eq!(log, "EVENT 1\nEVENT 2 jam\n");
    let last = web.lock().unwrap().last().unwrap().clone();
    let head = String::from_utf8_lossy(&last);
    assert!(head.starts_with("GET /logs/event.txt"), "{head}");
    assert!(digest_ok(&head), "{head}");
    let j =
        run(json!({ "type": "printerLogs", "printer": printer, "params": { "kind": "jamLog" } }))
            .await;
    assert_eq!(
        crate::common::cloud::result(&j).status,
        Status::NotSupported,
        "{j:?}"
    );

    // HTTPS with the printer's self-signed certificate: pinned at first use; a different
    // certificate later is refused naming both fingerprints until the administrator gives
    // the new one.
    let (first, first_fp) = identity();
    let id: Identity = Arc::new(Mutex::new(first));
    let (secure, tls_port) = https_endpoint(&format!("{ip}:0"), id.clone()).await;
    lib.version = 3;
    for v in lib.vendors.iter_mut().filter(|v| v.enterprise == 641) {
        for a in v.actions.iter_mut() {
            a.transport = "https".into();
            a.port = Some(tls_port);
        }
    }
    let j =
        run(json!({ "type": "updateLibrary", "params": { "package": library::sign(&lib, &key) } }))
            .await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    let j = run(json!({ "type": "deployFile", "printer": printer,
        "params": { "file": "tls.zip" }, "files": { "tls.zip": b64(b"OVER-TLS") } }))
    .await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    assert!(
        text(&j).contains("HTTPS upload to /cgi-bin/upload"),
        "{j:?}"
    );
    let req = secure.lock().unwrap().last().unwrap().clone();
    assert!(req.ends_with(b"OVER-TLS"));
    let basic = b64(format!("{WEB_USER}:{WEB_PASS}").as_bytes());
    assert!(
        String::from_utf8_lossy(&req).contains(&format!("Authorization: Basic {basic}")),
        "Basic goes with the first request inside TLS"
    );
    let j =
        run(json!({ "type": "printerLogs", "printer": printer, "params": { "kind": "eventLog" } }))
            .await;
    assert_eq!(j.state, JobState::Completed, "logs over HTTPS too: {j:?}");
    let (second, second_fp) = identity();
    *id.lock().unwrap() = second;
    let j = run(json!({ "type": "deployFile", "printer": printer,
        "params": { "file": "tls2.zip" }, "files": { "tls2.zip": b64(b"SECOND") } }))
    .await;
    assert_eq!(j.state, JobState::Failed, "{j:?}");
    let t = crate::common::cloud::result(&j).printers[0]
        .message
        .clone()
        .unwrap_or_default();
    let t = if t.is_empty() { text(&j) } else { t };
    assert!(t.contains("certificate changed"), "{j:?}");
    assert!(t.contains(&first_fp) && t.contains(&second_fp), "{j:?}");
    assert_eq!(
        secure.lock().unwrap().len(),
        2,
        "nothing sent to the new certificate"
    );
    let j = run(json!({ "type": "updateCredentials", "printer": printer,
        "params": { "web": { "certificateSha256": second_fp } } }))
    .await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    let j = run(json!({ "type": "deployFile", "printer": printer,
        "params": { "file": "tls2.zip" }, "files": { "tls2.zip": b64(b"SECOND") } }))
    .await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    assert!(secure.lock().unwrap().last().unwrap().ends_with(b"SECOND"));

    // A reboot goes the way the library names for the vendor: here its web server's
    // reboot page instead of SNMP's prtGeneralReset, on a printer that speaks Basic only
    // (the agent sends it once asked).
    *ask.lock().unwrap() = Ask::Basic;
    lib.version = 4;
    for v in lib.vendors.iter_mut().filter(|v| v.enterprise == 641) {
        v.actions.retain(|a| a.action != "reboot");
        v.actions.insert(
            0,
            library::Action {
                action: "reboot".into(),
                transport: "http".into(),
                port: Some(web_port),
                path: Some("/cgi-bin/reboot".into()),
            },
        );
    }
    let j =
        run(json!({ "type": "updateLibrary", "params": { "package": library::sign(&lib, &key) } }))
            .await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    let j = run(json!({ "type": "reboot", "printer": printer })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    assert!(
        text(&j).contains("reboot requested over HTTP (/cgi-bin/reboot)"),
        "{j:?}"
    );
    let last = web.lock().unwrap().last().unwrap().clone();
    let head = String::from_utf8_lossy(&last);
    assert!(head.starts_with("POST /cgi-bin/reboot HTTP/1.1"), "{head}");
    assert!(
        head.contains(&format!("Authorization: Basic {basic}")),
        "{head}"
    );

    // Another printer takes the address (another serial): its web server is not sent the
    // credentials set for this one, and the job says why.
    sim.stop().await;
    // (The second printer of a fleet starting one address lower: another serial number.)
    let o = ip.octets();
    let below = Ipv4Addr::new(o[0], o[1], o[2], o[3] - 1);
    let _other = crate::common::synthetic_printers(2, 6, 0.0, below, snmp_port, "public").await;
    let before = web.lock().unwrap().len();
    let j = run(json!({ "type": "reboot", "printer": { "address": format!("{ip}:{snmp_port}") } }))
        .await;
    assert_eq!(j.state, JobState::Failed, "{j:?}");
    let why = format!("{:?}", crate::common::cloud::result(&j));
    assert!(
        why.contains("now reports serial") && why.contains("were not sent"),
        "{why}"
    );
    assert_eq!(
        web.lock().unwrap().len(),
        before,
        "nothing reached its web server"
    );
}

/// Firmware updates waiting for their window hold no job slot (five wait while a refresh
/// runs at once), and an agent restarted during the wait re-arms them: each flash file is
/// sent once its window opens, none is reported interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_windows_hold_no_job_slot_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cloud = crate::common::cloud::start(dir.path(), &state).await;
    let snmp_port = 20000 + (std::process::id() % 20000) as u16;
    let ip = Ipv4Addr::new(127, 97, (std::process::id() % 200) as u8, 1);
    let _sim = crate::common::synthetic_printers(1, 5, 0.0, ip, snmp_port, "public").await;
    let raw = raw_endpoint(&format!("{ip}:9100")).await;
    let (agent, conf, serial) = agent_with_printer(
        dir.path(),
        &cloud,
        &format!("{ip}:{snmp_port}"),
        "public",
        None,
    )
    .await;
    let log = dir.path().join("agent.log");
    let printer = json!({ "serialNumber": serial });
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);

    // Five updates (more than the 4 job slots), their window 8 s ahead.
    let start_at = fleet_agent::clock::Clock::system().now_ms() + 8_000;
    let mut ids = Vec::new();
    for i in 0..5 {
        let name = format!("fw-{i}.bin");
        ids.push(
            cloud
                .submit(&json!({ "type": "firmwareUpdate", "printer": printer,
                    "params": { "file": name, "startAt": start_at },
                    "files": { name.clone(): b64(format!("FIRMWARE-{i}").as_bytes()) } }))
                .await,
        );
    }
    // A sixth whose window closes 1 s after it opens, while the agent is stopped.
    let closing = cloud
        .submit(&json!({ "type": "firmwareUpdate", "printer": printer,
            "notAfter": start_at + 1_000,
            "params": { "file": "fw-x.bin", "startAt": start_at },
            "files": { "fw-x.bin": b64(b"FIRMWARE-X") } }))
        .await;
    for id in ids.iter().chain([&closing]) {
        let mut j = cloud.job(id).await;
        for _ in 0..100 {
            if j.progress
                .as_ref()
                .is_some_and(|p| p.text.starts_with("waiting for its window"))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            j = cloud.job(id).await;
        }
        assert_eq!(j.state, JobState::InProgress, "{j:?}");
        assert!(j.progress.is_some(), "{j:?}");
    }
    // A refresh now runs at once: the waiting updates hold no slot.
    let t = tokio::time::Instant::now();
    let refresh = cloud.submit(&json!({ "type": "refresh" })).await;
    let j = cloud.outcome(&refresh, 5).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    println!(
        "refresh with five firmware updates waiting: {:?}",
        t.elapsed()
    );
    assert!(
        raw.lock().unwrap().is_empty(),
        "nothing sent before the window"
    );

    // Stopped during the wait (the orderly way, as a service stop does) and started
    // again 2 s after the windows opened: late by 2 s, the five still run; the sixth's
    // window closed meanwhile, so it does not.
    agent.stop();
    let now = fleet_agent::clock::Clock::system().now_ms();
    tokio::time::sleep(Duration::from_millis(
        u64::try_from(start_at + 2_000 - now).unwrap_or(0),
    ))
    .await;
    let _agent = crate::common::agent::InProcess::start(&conf, Some(&log));
    let j = cloud.outcome(&closing, 40).await;
    assert_eq!(j.state, JobState::Failed, "{j:?}");
    assert!(
        crate::common::cloud::message(&j)
            .starts_with("its window passed while the agent was stopped"),
        "{j:?}"
    );
    for id in &ids {
        let j = cloud.outcome(id, 40).await;
        assert_eq!(j.state, JobState::Completed, "{j:?}");
        assert!(
            fleet_agent::clock::Clock::system().now_ms() >= start_at,
            "finished before its window"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got: Vec<Vec<u8>> = raw.lock().unwrap().clone();
    got.sort();
    let want: Vec<Vec<u8>> = (0..5)
        .map(|i| format!("FIRMWARE-{i}").into_bytes())
        .collect();
    assert_eq!(got, want, "each flash file sent once");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("re-armed after a restart")
            && !text.contains("interrupted by an agent restart"),
        "{text}"
    );
}

/// Files go to a printer only where the support library names a way for its vendor: the
/// built-in library sends Lexmark's formats to Lexmark printers (the other tests), and a
/// printer of another vendor (an HP here) gets `notSupported` with the reason before
/// anything is downloaded or sent: its port 9100 receives nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_not_sent_to_a_vendor_the_library_names_no_way_for() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cloud = crate::common::cloud::start(dir.path(), &state).await;
    let ip = Ipv4Addr::new(127, 98, (std::process::id() % 200) as u8, 1);
    let fixtures = crate::common::own_fixtures();
    let sim = crate::common::simulate(&[
        "--data-dir",
        fixtures.to_str().unwrap(),
        "--listen",
        &format!("{ip}:0"),
    ]);
    let printer_addr = sim.addrs[0];
    let raw = raw_endpoint(&format!("{ip}:9100")).await;
    let (_agent, _, serial) = agent_with_printer(
        dir.path(),
        &cloud,
        &printer_addr.to_string(),
        "acme-mono-v1",
        None,
    )
    .await;
    let printer = json!({ "serialNumber": serial });
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    for (body, action) in [
        (
            json!({ "type": "deployFile", "printer": printer,
                "params": { "file": "site.zip" }, "files": { "site.zip": b64(b"SETTINGS") } }),
            "deployFile",
        ),
        (
            json!({ "type": "firmwareUpdate", "printer": printer,
                "params": { "file": "fw.bin" }, "files": { "fw.bin": b64(b"FIRMWARE") } }),
            "firmwareUpdate",
        ),
        (
            json!({ "type": "deployConfiguration", "printer": printer,
                "params": { "items": [ { "file": "a.zip" } ] }, "files": { "a.zip": b64(b"A") } }),
            "deployFile",
        ),
    ] {
        let j = cloud.outcome(&cloud.submit(&body).await, 30).await;
        assert_eq!(j.state, JobState::Failed, "{j:?}");
        let r = crate::common::cloud::result(&j);
        assert_eq!(r.status, Status::NotSupported, "{j:?}");
        let text = crate::common::cloud::message(&j);
        assert!(
            text.contains(&format!("names no way to send files ({action})"))
                && text.contains("enterprise 11")
                && text.contains("nothing was downloaded or sent"),
            "{text}"
        );
        assert_eq!(r.printers[0].status, Status::NotSupported);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(raw.lock().unwrap().is_empty(), "nothing reached port 9100");
}
