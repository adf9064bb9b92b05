//! docs/protocol.md and the reference cloud stay in sync: every route the reference cloud
//! serves is documented, and every endpoint documented outside a "(planned)" section is
//! served (answers something other than 404/405).

use std::collections::BTreeSet;
use std::path::Path;

type Endpoint = (String, String);

/// `{agent_id}` and `{agentId}` name the same placeholder.
fn normalize(path: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    let mut inside = false;
    for c in path.chars() {
        match c {
            '{' => inside = true,
            '}' => inside = false,
            '_' if inside => {
                upper = true;
                continue;
            }
            _ => {}
        }
        if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Endpoints written as "`METHOD /path" in the document, with whether their section is
/// planned.
fn documented() -> Vec<(Endpoint, bool)> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol.md"),
    )
    .unwrap();
    let mut planned = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            planned = h.contains("(planned)");
            continue;
        }
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            let marker = format!("`{method} /");
            let mut rest = line;
            while let Some(i) = rest.find(&marker) {
                let after = &rest[i + method.len() + 2..];
                let path: String = after
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '`' && *c != '?')
                    .collect();
                found.push(((method.to_string(), normalize(&path)), planned));
                rest = &after[path.len()..];
            }
        }
    }
    found
}

/// The routes in the reference cloud's router: `.route("PATH", method(handler))`.
fn served() -> BTreeSet<Endpoint> {
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    // rustfmt may spread a call over lines: read the source without comments and
    // whitespace.
    let flat: String = src
        .lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<String>()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut set = BTreeSet::new();
    for piece in flat.split(".route(\"").skip(1) {
        let end = piece.find('"').unwrap();
        let path = &piece[..end];
        // The method handlers: `post(h)`, chained `.get(h)`, up to a layer or the next
        // router call (`jobs::poll` is not a method: `post(` is).
        let after = piece[end + 1..].trim_start_matches(',');
        for seg in after.split('.') {
            let method: String = seg.chars().take_while(char::is_ascii_alphabetic).collect();
            if !["get", "post", "put", "delete"].contains(&method.as_str()) {
                break;
            }
            set.insert((method.to_uppercase(), normalize(path)));
        }
    }
    assert!(!set.is_empty(), "no routes found in src/lib.rs");
    set
}

#[test]
fn every_route_is_documented() {
    let docs: BTreeSet<Endpoint> = documented()
        .into_iter()
        .filter(|(_, planned)| !planned)
        .map(|(e, _)| e)
        .collect();
    let served = served();
    let undocumented: Vec<_> = served.difference(&docs).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from docs/protocol.md: {undocumented:?}"
    );
    let unserved: Vec<_> = docs.difference(&served).collect();
    assert!(
        unserved.is_empty(),
        "documented as implemented but not routed (mark the section (planned)): {unserved:?}"
    );
}

/// The reference cloud's router over plain HTTP on loopback, and a client for it.
async fn serve_plain() -> (std::net::SocketAddr, reqwest::Client) {
    use fleet_cloud::Cloud;
    use fleet_cloud::db::CloudDb;
    let cloud = Cloud::new(CloudDb::open(None).unwrap(), "admin");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, cloud.router()).await.ok();
    });
    fleet_cloud::install_crypto();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    (addr, http)
}

#[tokio::test]
async fn every_documented_endpoint_answers() {
    let (addr, http) = serve_plain().await;
    let mut checked = 0;
    for ((method, path), planned) in documented() {
        if planned {
            continue;
        }
        let concrete: String = {
            let mut s = String::new();
            let mut inside = false;
            for c in path.chars() {
                match c {
                    '{' => {
                        inside = true;
                        s.push('x');
                    }
                    '}' => inside = false,
                    _ if inside => {}
                    _ => s.push(c),
                }
            }
            s
        };
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = http
            .request(m, format!("http://{addr}{concrete}"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(
            status != 404 && status != 405,
            "{method} {path}: {status} (documented but not served)"
        );
        checked += 1;
    }
    assert!(
        checked >= 5,
        "only {checked} endpoints found in the document"
    );
}

#[tokio::test]
async fn another_protocol_version_gets_426() {
    let (addr, http) = serve_plain().await;
    let send = |version: &'static str| {
        http.post(format!("http://{addr}/v1/activate"))
            .header("Fleet-Agent-Protocol", version)
            .json(&serde_json::json!({ "activationCode": "ABCD-EFGH-JKLM" }))
            .send()
    };
    let r = send("2").await.unwrap();
    assert_eq!(r.status().as_u16(), 426);
    assert_eq!(r.headers()["fleet-agent-protocol"], "1");
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["reason"].as_str().unwrap().contains("speaks 1"), "{v}");
    // Version 1 reaches the handler (an unknown code, not a version problem).
    let r = send("1").await.unwrap();
    assert_ne!(r.status().as_u16(), 426);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("unknown activation code"),
        "{v}"
    );
}
