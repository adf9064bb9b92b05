//! `page open`: finds the running agent's local page and opens it in the browser. The
//! Windows installer's "Open Fleet Agent in the browser" and its shortcuts run it: the
//! page may have moved to a fallback port (another program on 80), which only the running
//! agent knows, so the ports are asked in order and the first one whose `/api/health`
//! answers as Fleet Agent wins. Another program on a port (an unrelated web server, or one
//! that accepts and never answers) is passed over.

use super::exit::{self, Exit};
use super::{PortList, load_source};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// `page open` options.
#[derive(Args, Debug)]
pub struct PageArgs {
    /// The agent's configuration file, as given to `run` (default: as for `run`); only
    /// its `web.listen` port is read, and only without `--web-port`.
    #[arg(long, env = "FLEET_AGENT_CONFIG", hide_env_values = true)]
    pub config: Option<PathBuf>,
    /// The page's port as given to `run` (replaces `web.listen`'s port; the installer's
    /// PORT).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub web_port: Option<u16>,
    /// The ports the page moves to when its own is taken, as given to `run` (the
    /// installer's PORTFALLBACK).
    #[arg(long, value_name = "PORTS", value_parser = super::parse_ports, default_value = "")]
    pub web_port_fallback: PortList,
    /// How long to wait for the page to answer (the service may still be starting),
    /// in seconds; at most 600.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub wait_secs: u64,
    /// Print the page's address without opening a browser.
    #[arg(long)]
    pub no_browser: bool,
}

/// What one port's `/api/health` said (bounded: the answer is read up to 4 KiB).
#[derive(serde::Deserialize)]
struct Health {
    status: String,
    version: String,
}

const HEALTH_BYTES: usize = 4096;
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The ports the page may be on, in the order the agent tries them: its own, then the
/// fallbacks, each once.
/// With `--web-port` the configuration is not read: the installer's shortcuts give it,
/// and the configuration (in the service's state directory) is for administrators only.
fn candidate_ports(a: &PageArgs) -> Result<Vec<u16>, Exit> {
    let own = match a.web_port {
        Some(p) => p,
        None => {
            let c = load_source(a.config.as_ref())?
                .parse()
                .map_err(Exit::from)?;
            c.web_listen.port()
        }
    };
    let mut ports = vec![own];
    for &p in &a.web_port_fallback.0 {
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    Ok(ports)
}

/// Whether a Fleet Agent page answers on `port` of this computer; its version if so.
async fn probe(client: &reqwest::Client, port: u16, timeout: Duration) -> Option<String> {
    let resp = client
        .get(format!("http://127.0.0.1:{port}/api/health"))
        .timeout(timeout)
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body = crate::cloud::client::body_of(resp, HEALTH_BYTES)
        .await
        .ok()?;
    let h: Health = serde_json::from_slice(&body).ok()?;
    (h.status == "ok").then_some(h.version)
}

/// The first port of `ports` where a Fleet Agent page answers, asked again every half
/// second until `wait` has passed.
async fn find_page(ports: &[u16], wait: Duration) -> Option<(u16, String)> {
    crate::cloud::install_crypto();
    let client = reqwest::Client::builder().no_proxy().build().ok()?;
    let deadline = Instant::now() + wait;
    loop {
        for &p in ports {
            // The last round stays within the wait (give or take a quarter second).
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = PROBE_TIMEOUT.min(left.max(Duration::from_millis(250)));
            if let Some(v) = probe(&client, p, timeout).await {
                return Some((p, v));
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn list(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `page open`.
///
/// # Errors
/// No page answered in time (exit 3), or the browser could not be started (exit 1; the
/// address is printed first).
pub async fn open(a: PageArgs) -> Result<(), Exit> {
    let ports = candidate_ports(&a)?;
    eprintln!(
        "Looking for Fleet Agent's page on this computer (port {})...",
        list(&ports)
    );
    let Some((port, version)) = find_page(&ports, Duration::from_secs(a.wait_secs)).await else {
        return Err(Exit::new(
            exit::NO_RESPONSE,
            format!(
                "no Fleet Agent page answered on localhost port {} within {} s: is the agent running? \
                 (Windows: `sc query FleetAgent`, its log in %ProgramData%\\FleetAgent\\logs; \
                 Linux: `systemctl status fleet-agent`)",
                list(&ports),
                a.wait_secs
            ),
        ));
    };
    let url = format!("http://localhost:{port}/");
    println!("Fleet Agent {version}: {url}");
    if a.no_browser {
        return Ok(());
    }
    opener::open_browser(&url).map_err(|e| {
        Exit::new(
            exit::FAILURE,
            format!("could not start a browser for {url}: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server on a free port of 127.0.0.1 answering every request with `answer`
    /// (`None`: accepts and never answers).
    async fn server(answer: Option<&'static str>) -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut s, _)) = l.accept().await {
                match answer {
                    Some(a) => {
                        // The request's head, then the answer.
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.ends_with(b"\r\n\r\n") {
                            match s.read(&mut buf).await {
                                Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                                _ => break,
                            }
                        }
                        s.write_all(a.as_bytes()).await.ok();
                    }
                    None => held.push(s),
                }
            }
        });
        port
    }

    fn http(status: &str, body: &str) -> &'static str {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .leak()
    }

    #[tokio::test]
    async fn the_first_port_answering_as_fleet_agent_wins_over_other_programs() {
        let silent = server(None).await;
        let other = server(Some(http("404 Not Found", "no such page"))).await;
        let lookalike = server(Some(http("200 OK", r#"{"status":"ok"}"#))).await;
        let agent = server(Some(http("200 OK", r#"{"status":"ok","version":"9.8.7"}"#))).await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let found = find_page(
            &[closed, silent, other, lookalike, agent],
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(found, Some((agent, "9.8.7".to_owned())));
        // Nothing of ours anywhere: none, once the wait is over.
        let none = find_page(&[closed, other, lookalike], Duration::ZERO).await;
        assert_eq!(none, None);
    }

    #[tokio::test]
    async fn an_oversized_health_answer_is_not_read_whole() {
        let big = format!(r#"{{"status":"ok","version":"{}"}}"#, "9".repeat(5000));
        let port = server(Some(http("200 OK", &big))).await;
        assert_eq!(find_page(&[port], Duration::ZERO).await, None);
    }

    #[tokio::test]
    async fn the_real_page_router_is_recognised() {
        let app = crate::web::router(crate::web::WebState {
            metrics: std::sync::Arc::new(crate::telemetry::Metrics::new()),
            agent: None,
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(l, app).await });
        assert_eq!(
            find_page(&[port], Duration::from_secs(5)).await,
            Some((port, env!("CARGO_PKG_VERSION").to_owned()))
        );
    }

    #[test]
    fn ports_are_the_pages_own_then_the_fallbacks_once_each() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "fleet-agent",
            "page",
            "open",
            "--web-port",
            "80",
            "--web-port-fallback",
            "8080,80,8088",
            "--no-browser",
        ])
        .unwrap();
        let crate::cli::Command::Page(PageCommand::Open(a)) = cli.command else {
            panic!("not page open");
        };
        assert!(a.no_browser);
        assert_eq!(a.wait_secs, 60);
        assert_eq!(candidate_ports(&a).unwrap(), vec![80, 8080, 8088]);
        assert!(
            crate::cli::Cli::try_parse_from(["fleet-agent", "page", "open", "--wait-secs", "601"])
                .is_err()
        );
    }
}

/// `page` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum PageCommand {
    /// Find the running agent's local page (its port, else the first fallback port where
    /// it answers) and open it in the browser.
    Open(PageArgs),
}
