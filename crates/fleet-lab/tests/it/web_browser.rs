//! The local page in a real browser (headless Chromium driven over WebDriver): a new
//! user runs the demo, opens the page, activates the agent against the reference cloud
//! with an agent password, watches the discovery run finish, opens a printer, sees what
//! was sent, sets and clears a proxy, logs out and in again, and the page fits 360 px.
//! Screenshots of every page go to `target/web-ui-screenshots/` (or
//! `FLEET_AGENT_SCREENSHOTS`). Chromium is started with a dead proxy for every
//! non-loopback address, so it reaches nothing but this machine.
#![cfg(unix)]

use fantoccini::{Client, Locator};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Duration;

const PASSWORD: &str = "agent-pass-2026";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process in its own process group, killed with the whole group (chromedriver
/// leaves Chromium behind otherwise when a test fails).
struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status()
            .ok();
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn own_group(c: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    c.process_group(0)
}

fn shots_dir() -> PathBuf {
    let d = std::env::var_os("FLEET_AGENT_SCREENSHOTS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/web-ui-screenshots"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Keeps a screenshot of the page as it is, after checking its layout: the document no
/// wider than the window (nothing scrolls sideways; what may scroll does so inside its own
/// box), and no element with the `hidden` attribute shown.
async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let path = shots_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
    let wide = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1 ? '' : \
             document.documentElement.scrollWidth + ' > ' + window.innerWidth + ': ' + \
             [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.scroll')) \
             .slice(0, 8).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)).join('; ');",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(wide, json!(""), "{name}: the page scrolls sideways");
    let shown = c
        .execute(
            "return [...document.querySelectorAll('[hidden]')].filter(e => e.getClientRects().length > 0) \
             .map(e => e.tagName + '#' + e.id).join('; ');",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(shown, json!(""), "{name}: elements marked hidden are shown");
}

/// Polls a JavaScript expression until it is truthy.
async fn wait_js(c: &Client, expr: &str, what: &str, secs: u64) {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let v = c
            .execute(&format!("return !!({expr});"), vec![])
            .await
            .unwrap();
        if v == json!(true) {
            return;
        }
        if tokio::time::Instant::now() > end {
            let text = c
                .execute("return document.body.innerText;", vec![])
                .await
                .unwrap();
            panic!(
                "{what}: not within {secs} s; the page says:\n{}",
                text.as_str().unwrap_or("")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn go(c: &Client, hash: &str) {
    c.execute(&format!("location.hash = '{hash}';"), vec![])
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (Debian chromium, chromium-driver); .ci/run runs it"]
async fn a_new_user_activates_and_uses_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let (web, cloud, snmp) = (free_port(), free_port(), free_port());
    let mut demo = Kill(
        own_group(&mut std::process::Command::new(env!(
            "CARGO_BIN_EXE_fleet-lab"
        )))
        .args(["demo", "--printers", "6", "--fleet-start", "127.46.0.1"])
        .args(["--port", &snmp.to_string()])
        .args(["--web-port", &web.to_string()])
        .args(["--cloud-port", &cloud.to_string()])
        .arg("--state-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap(),
    );
    let mut lines = BufReader::new(demo.0.stdout.take().unwrap()).lines();
    let mut code = None;
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(rest) = line.split("activation code ").nth(1) {
            code = rest.split_whitespace().next().map(str::to_string);
            break;
        }
    }
    let code = code.expect("the demo prints an activation code");
    // The demo goes on printing the cloud's view: keep its pipe drained.
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});

    let driver_port = free_port();
    let _driver = Kill(
        own_group(&mut std::process::Command::new("chromedriver"))
            .arg(format!("--port={driver_port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver (Debian chromium-driver)"),
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps",
                "--disable-domain-reliability", "--disable-client-side-phishing-detection",
                "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>;localhost;127.0.0.1",
            ]
        }),
    );
    let mut c = None;
    for _ in 0..50 {
        match fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(caps.clone())
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        {
            Ok(client) => {
                c = Some(client);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let c = c.expect("a WebDriver session");
    let base = format!("http://localhost:{web}/");

    // The demo prints the code before its agent listens.
    let t = tokio::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", web)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the demo's page never listened"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 1. Activation: the first thing a new user sees.
    c.goto(&base).await.unwrap();
    wait_js(
        &c,
        "!document.getElementById('view-activate').hidden",
        "the activation form",
        20,
    )
    .await;
    shot(&c, "01-activation").await;
    // Before activation, what will be sent (everything waits) is reachable, not a redirect.
    go(&c, "#outbox").await;
    wait_js(
        &c,
        "!document.getElementById('view-outbox').hidden",
        "what will be sent before activation",
        20,
    )
    .await;
    go(&c, "#activate").await;
    wait_js(
        &c,
        "!document.getElementById('view-activate').hidden",
        "the activation form again",
        20,
    )
    .await;
    // The demo's configuration names its fleet's range: the host's own networks are not
    // offered (they are only when nothing else is searched).
    wait_js(
        &c,
        "document.getElementById('act-networks-text').textContent.includes('configuration names') && document.getElementById('act-networks').hidden",
        "the discovery targets said",
        10,
    )
    .await;
    // A mistyped code is refused with the reason.
    fill(&c, "#act-code", "ABCD-1234-XYZ!").await;
    c.execute(
        "document.getElementById('act-code').removeAttribute('pattern');",
        vec![],
    )
    .await
    .unwrap();
    click(&c, "#act-submit").await;
    wait_js(
        &c,
        "!document.getElementById('activate-error').hidden",
        "the typing-mistake error",
        10,
    )
    .await;
    assert!(text(&c, "#activate-error").await.contains("XXXX-XXXX-XXXX"));
    shot(&c, "02-activation-error").await;
    fill(&c, "#act-code", &code).await;
    fill(&c, "#act-password", PASSWORD).await;
    fill(&c, "#act-password2", PASSWORD).await;
    click(&c, "#act-submit").await;

    // 2. Discovery: the run started by the activation finishes; the report lists the six.
    wait_js(
        &c,
        "location.hash === '#discovery' && !document.getElementById('view-discovery').hidden",
        "the discovery page after activation",
        30,
    )
    .await;
    assert!(text(&c, "#notice").await.contains("Activated as agent-"));
    wait_js(&c, "document.querySelectorAll('#report-table tbody .badge.found').length === 6 && document.getElementById('discovery-state').textContent.startsWith('Last run finished at')", "six printers found", 60).await;
    // Devices named in words, not by the store's keys.
    wait_js(&c, "document.getElementById('report-table').textContent.includes('serial FA') && !document.getElementById('report-table').textContent.includes('sn:')", "devices named by serial", 10).await;
    // "Discover now" runs again and the progress comes back to idle with the same result.
    click(&c, "#discover-now").await;
    wait_js(&c, "document.getElementById('discovery-figures').textContent.includes('6 of 6 addresses, 6 printer(s) found') && document.getElementById('discovery-state').textContent.startsWith('Finished just now')", "a second run's progress, said to be over just now", 60).await;
    // Filter and export.
    fill(&c, "#report-filter", "127.46.0.3").await;
    wait_js(
        &c,
        "document.querySelectorAll('#report-table tbody tr').length === 1",
        "the filtered report",
        10,
    )
    .await;
    let href = c
        .execute(
            "return document.getElementById('report-csv').getAttribute('href');",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(href, json!("/api/discovery.csv?q=127.46.0.3"));
    shot(&c, "03-discovery").await;

    // 3. Printers: six rows; open one for its supplies with raw values and its alerts.
    go(&c, "#printers").await;
    wait_js(
        &c,
        "document.querySelectorAll('#printers-table tbody tr').length === 6",
        "six printers",
        30,
    )
    .await;
    wait_js(&c, "[...document.querySelectorAll('#printers-table tbody tr')].every(r => !r.textContent.includes('Not read yet'))", "every printer polled", 30).await;
    // Attention first: the states of the whole fleet add up to its six printers, and
    // every row draws its supplies as bars.
    wait_js(
        &c,
        "[...document.querySelectorAll('#printers-summary strong')].reduce((a, s) => a + Number(s.textContent), 0) === 6 && [...document.querySelectorAll('#printers-table tbody tr')].every(r => r.querySelector('.meter'))",
        "the fleet summary and supply bars",
        10,
    )
    .await;
    // A printer has its own page (#printer/ID), with its levels drawn.
    click(&c, "#printers-table tbody tr:first-child td:nth-child(2) a").await;
    wait_js(&c, "/^#printer\\/\\d+$/.test(location.hash) && !document.getElementById('view-printer').hidden && document.querySelectorAll('#printer-detail tbody tr').length > 0 && document.querySelectorAll('#printer-detail .supply-bars .meter').length > 0", "the printer's page", 20).await;
    let detail = text(&c, "#printer-detail").await;
    assert!(
        detail.contains("Supplies") && detail.contains("Raw level"),
        "{detail}"
    );
    // Its trends: one point so far (the demo has run for seconds), said in words.
    wait_js(&c, "document.getElementById('printer-trends').textContent.includes('one point a day') && document.getElementById('printer-trends').textContent.includes('No run-out date yet')", "the trends card", 10).await;
    shot(&c, "04-printer-page").await;
    // The demo's printers are healthy: their agents need nothing special.
    wait_js(
        &c,
        "[...document.querySelectorAll('#printer-detail dt')].some(dt => dt.textContent === 'Agent quirks' && dt.nextElementSibling.textContent === 'none')",
        "the agent-quirks row saying none",
        5,
    )
    .await;
    // Its usage counters, folded until asked for, stay open across the page's refresh.
    click(&c, "#printer-detail details.meters summary").await;
    wait_js(
        &c,
        "[...document.querySelectorAll('#printer-detail details.meters[open] tbody tr')].some(tr => tr.textContent.includes('printer-mib.prtMarkerLifeCount') && tr.textContent.includes('1.3.6.1.2.1.43.10.2.1.4.'))",
        "the meters table with the life count",
        10,
    )
    .await;
    shot(&c, "04b-printer-meters").await;
    // The page redraws every 5 s.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    wait_js(
        &c,
        "document.querySelector('#printer-detail details.meters[open]') && !document.querySelector('#printer-detail details.report[open]')",
        "the meters still open after a refresh, the JSON still closed",
        12,
    )
    .await;
    // The browser's back button returns to the list.
    c.back().await.unwrap();
    wait_js(
        &c,
        "location.hash === '#printers' && !document.getElementById('view-printers').hidden",
        "the list after back",
        10,
    )
    .await;
    click(&c, "#printers-table tbody tr:first-child button").await;
    wait_js(
        &c,
        "document.getElementById('notice').textContent.includes('refreshed')",
        "the refresh button",
        60,
    )
    .await;
    shot(&c, "04-printers").await;

    // 4. What will be sent: the queue drained to the cloud; the last message is shown.
    go(&c, "#outbox").await;
    wait_js(
        &c,
        "document.querySelectorAll('#outbox-last details').length === 1",
        "the last sent message",
        60,
    )
    .await;
    click(&c, "#outbox-last summary").await;
    let last = text(&c, "#outbox-last").await;
    assert!(last.contains("\"serialNumber\""), "{last}");
    shot(&c, "05-outbox").await;

    // 5. Status: activated and connected.
    go(&c, "#status").await;
    wait_js(
        &c,
        "document.getElementById('status-cards').textContent.includes('connected')",
        "the cloud link",
        60,
    )
    .await;
    let status = text(&c, "#status-cards").await;
    assert!(
        status.contains("activated") && status.contains("agent-"),
        "{status}"
    );
    shot(&c, "06-status").await;

    // 6. Settings: a proxy with a password is saved (shown as set, never echoed), then
    //    the file's setting comes back.
    go(&c, "#settings").await;
    wait_js(&c, "!document.getElementById('view-settings').hidden && document.getElementById('proxy-source').textContent.length > 0", "the settings", 20).await;
    // A proxy that does not answer (a closed loopback port) is tried, refused next to the
    // form, and saved only with "Save anyway".
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    fill(&c, "#proxy-host", "127.0.0.1").await;
    fill(&c, "#proxy-port", &dead.to_string()).await;
    fill(&c, "#proxy-user", "svc-fleet").await;
    fill(&c, "#proxy-password", "proxy-pass-77").await;
    click(&c, "#proxy-form button[type=submit]").await;
    wait_js(
        &c,
        "!document.getElementById('proxy-error').hidden && document.getElementById('proxy-error').textContent.includes('not saved') && !document.getElementById('proxy-force').hidden",
        "the untried proxy refused next to its form",
        30,
    )
    .await;
    click(&c, "#proxy-force").await;
    wait_js(
        &c,
        "document.getElementById('proxy-ok').textContent.includes('Proxy saved') && document.getElementById('proxy-error').hidden",
        "the proxy saved anyway",
        20,
    )
    .await;
    wait_js(
        &c,
        "document.getElementById('proxy-password').placeholder.includes('set')",
        "the proxy password shown as set",
        20,
    )
    .await;
    let html = c.source().await.unwrap();
    assert!(!html.contains("proxy-pass-77"));
    shot(&c, "07-settings").await;
    click(&c, "#proxy-clear").await;
    wait_js(
        &c,
        "document.getElementById('proxy-ok').textContent.includes('configuration file')",
        "the cleared proxy",
        20,
    )
    .await;

    // 7. Log out, a wrong password, the right one.
    click(&c, "#logout").await;
    wait_js(
        &c,
        "!document.getElementById('view-login').hidden",
        "the login form",
        20,
    )
    .await;
    fill(&c, "#login-password", "not-the-password").await;
    click(&c, "#login-form button").await;
    wait_js(
        &c,
        "!document.getElementById('login-error').hidden",
        "the wrong-password error",
        20,
    )
    .await;
    assert_eq!(text(&c, "#login-error").await, "wrong password");
    shot(&c, "08-login").await;
    fill(&c, "#login-password", PASSWORD).await;
    click(&c, "#login-form button").await;
    // Back where the user was (the settings), with the menu.
    wait_js(&c, "!document.getElementById('view-settings').hidden && !document.getElementById('nav').hidden", "the page after login", 20).await;

    // 8. A 360 px wide window: nothing wider than the screen.
    c.set_window_size(360, 800).await.unwrap();
    go(&c, "#printers").await;
    wait_js(
        &c,
        "document.querySelectorAll('#printers-table tbody tr').length === 6",
        "the printers at 360 px",
        20,
    )
    .await;
    shot(&c, "09-printers-360px").await;
    let wide = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1 ? '' : \
             [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.scroll')) \
             .slice(0, 8).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)).join('; ');",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(wide, json!(""), "the page scrolls sideways at 360 px");
    go(&c, "#status").await;
    wait_js(
        &c,
        "document.getElementById('status-cards').children.length > 0",
        "the status at 360 px",
        20,
    )
    .await;
    shot(&c, "10-status-360px").await;
    for (hash, view, name) in [
        ("#discovery", "view-discovery", "11-discovery-360px"),
        ("#outbox", "view-outbox", "12-outbox-360px"),
        ("#settings", "view-settings", "13-settings-360px"),
        ("#printer/1", "view-printer", "14-printer-page-360px"),
    ] {
        go(&c, hash).await;
        wait_js(
            &c,
            &format!("!document.getElementById('{view}').hidden"),
            name,
            20,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        shot(&c, name).await;
    }

    c.close().await.ok();
}
