use super::*;

#[test]
fn the_shipped_default_config_parses() {
    let c = parse("config/fleet-agent.toml", DEFAULT_TOML).unwrap();
    assert_eq!(c.poller.interval, Duration::from_secs(300));
    assert_eq!(c.profiles.len(), 1);
    assert_eq!(c.profiles[0].name, "default");
    assert!(c.printers.is_empty());
    assert_eq!(c.web_listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.stop_timeout, Duration::from_secs(30));
    // The installer's port replaces the file's and survives a re-read.
    let src = Source::new("default", DEFAULT_TOML).with_web_port(Some(8088));
    assert_eq!(
        src.parse().unwrap().web_listen,
        "127.0.0.1:8088".parse().unwrap()
    );
    let doc = serde_json::json!({ "agent": { "log_level": "debug" } });
    let c = src.reread().unwrap().parse_with_cloud(&doc).unwrap();
    assert_eq!(c.web_listen, "127.0.0.1:8088".parse().unwrap());
}

#[test]
fn the_installers_cloud_url_replaces_the_files_checked_like_it() {
    let file = "[cloud]\nurl = \"https://file.example\"\n";
    let url = |src: &Source| src.parse().unwrap().cloud.url;
    let given = |u: &str| Source::new("f", file).with_cloud_url(Some(u.into()));
    assert_eq!(
        url(&given("https://cloud.example")).as_deref(),
        Some("https://cloud.example")
    );
    // CLOUDURL not given: the installer passes "".
    assert_eq!(url(&given("")).as_deref(), Some("https://file.example"));
    assert_eq!(url(&given("  ")).as_deref(), Some("https://file.example"));
    // Kept across a re-read and under the cloud's settings.
    let doc = serde_json::json!({ "agent": { "log_level": "debug" } });
    let c = given("https://cloud.example")
        .reread()
        .unwrap()
        .parse_with_cloud(&doc)
        .unwrap();
    assert_eq!(c.cloud.url.as_deref(), Some("https://cloud.example"));
    // Refused as the file's would be, naming the option.
    let e = given("http://cloud.example").parse().unwrap_err();
    assert_eq!(e.errors[0].path, "--cloud-url (replaces cloud.url)", "{e}");
    assert!(e.errors[0].message.contains("https://"), "{e}");
    let long = format!("https://{}", "a".repeat(2100));
    assert!(given(&long).parse().is_err());
}

#[test]
fn an_empty_file_gets_every_default() {
    let c = parse("empty", "").unwrap();
    assert_eq!(c.profiles[0].name, "default");
    assert_eq!(c.poller.not_communicating_after, 3);
}

#[test]
fn every_problem_is_reported_with_its_key_path() {
    let text = r#"
[agent]
log_level = "loud=="
stop_timeout_secs = 0
[web]
listen = "localhost"
[poller]
interval_secs = 5
max_in_flight = 0
[[snmp_profiles]]
name = "v3"
auth = { type = "v3", user = "", auth_protocol = "sha999", priv_protocol = "aes128", priv_pass = "short" }
[[snmp_profiles]]
name = "v3"
auth = { type = "v2c", community = "public" }
retries = 50
[[printers]]
address = "printer.example"
[[printers]]
address = "192.0.2.1"
profile = "missing"
[[printers]]
address = "192.0.2.1:161"
"#;
    let e = parse("bad.toml", text).unwrap_err();
    let paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "agent.log_level",
        "agent.stop_timeout_secs",
        "web.listen",
        "poller.interval_secs",
        "poller.max_in_flight",
        "snmp_profiles[0].auth.auth_protocol",
        "snmp_profiles[0].auth.priv_pass",
        "snmp_profiles[0].auth.user",
        "snmp_profiles[1].name",
        "snmp_profiles[1].retries",
        "printers[0].address",
        "printers[1].profile",
        "printers[2].address",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
    let shown = e.to_string();
    assert!(shown.starts_with("bad.toml: "));
}

#[test]
fn unknown_keys_and_syntax_errors_name_the_line() {
    let e = parse("x.toml", "[poller]\ninterval_sec = 60\n").unwrap_err();
    assert_eq!(e.errors[0].path, "poller.interval_sec (line 2, column 1)");
    assert!(
        e.errors[0].message.contains("unknown field"),
        "{}",
        e.errors[0].message
    );
    // A wrong type names its key, counted in an array of tables; a broken header has no key.
    let e = parse(
        "x.toml",
        "[[printers]]\naddress = \"10.0.0.1\"\n[[printers]]\naddress = 5\n",
    )
    .unwrap_err();
    assert_eq!(e.errors[0].path, "printers[1].address (line 4, column 11)");
    let e = parse(
        "x.toml",
        "[[snmp_profiles]]\nname = \"a\"\nauth = { type = \"v4\" }\n",
    )
    .unwrap_err();
    assert_eq!(
        e.errors[0].path, "snmp_profiles[0].auth (line 3, column 17)",
        "{:?}",
        e.errors
    );
}

#[test]
fn ipp_is_auto_by_default_off_on_request_and_nothing_else() {
    use crate::config::IppUse;
    assert_eq!(parse("x.toml", "").unwrap().discovery.ipp, IppUse::Auto);
    let c = parse("x.toml", "[discovery]\nipp = \"off\"\n").unwrap();
    assert_eq!(c.discovery.ipp, IppUse::Off);
    let e = parse("x.toml", "[discovery]\nipp = \"sometimes\"\n").unwrap_err();
    assert_eq!(e.errors[0].path, "discovery.ipp (line 2, column 7)", "{e}");
    assert!(
        e.errors[0].message.contains("`auto`"),
        "{}",
        e.errors[0].message
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let text = r#"
[[snmp_profiles]]
name = "c"
auth = { type = "v2c", community = "s3cret-community" }
[[snmp_profiles]]
name = "u"
auth = { type = "v3", user = "ops", auth_protocol = "sha256", auth_pass = "auth-s3cret", priv_protocol = "aes128", priv_pass = "priv-s3cret" }
[cloud]
proxy = { type = "http", url = "http://proxy.example:3128", user = "ops", password = "proxy-s3cret" }
"#;
    let c = parse("s.toml", text).unwrap();
    let dbg = format!("{c:?}");
    for s in [
        "s3cret-community",
        "auth-s3cret",
        "priv-s3cret",
        "proxy-s3cret",
    ] {
        assert!(!dbg.contains(s), "{s} leaked: {dbg}");
    }
    assert!(dbg.contains("ops"));
}

#[test]
fn discovery_settings_are_validated_with_key_paths() {
    let text = r#"
[discovery]
include = ["192.0.2.0/24", "bad..entry"]
exclude = ["10.0.0.0/33"]
interval_secs = 5
profiles = ["nope"]
"#;
    let e = parse("d.toml", text).unwrap_err();
    let paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "discovery.include[1]",
        "discovery.exclude[0]",
        "discovery.interval_secs",
        "discovery.profiles[0]",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
    let c = parse("ok.toml", "[discovery]\ninclude = [\"192.0.2.0/24\"]\n").unwrap();
    assert!(c.discovery.enabled());
    assert_eq!(c.discovery.network_delay_us, 250);
    let e = parse("big.toml", "[discovery]\ninclude = [\"10.0.0.0/8\"]\n").unwrap_err();
    assert_eq!(e.errors[0].path, "discovery.include");
    assert!(!parse("x", "").unwrap().discovery.enabled());
}

#[test]
fn proxy_settings_are_validated() {
    assert_eq!(parse("x", "").unwrap().cloud.proxy, Proxy::System);
    let c = parse("n", "[cloud]\nproxy = { type = \"none\" }\n").unwrap();
    assert_eq!(c.cloud.proxy, Proxy::None);
    for (text, path, words) in [
        (
            "[cloud]\nproxy = { type = \"http\", url = \"proxy:3128\" }\n",
            "cloud.proxy.url",
            "http://",
        ),
        (
            "[cloud]\nproxy = { type = \"http\", url = \"http://u:p@proxy:3128\" }\n",
            "cloud.proxy.url",
            "cloud.proxy.user",
        ),
        (
            "[cloud]\nproxy = { type = \"http\", url = \"http://proxy:3128\", password = \"x\" }\n",
            "cloud.proxy.password",
            "needs",
        ),
    ] {
        let e = parse("p.toml", text).unwrap_err();
        assert_eq!(e.errors.len(), 1, "{e}");
        assert_eq!(e.errors[0].path, path, "{e}");
        assert!(e.to_string().contains(words), "{e}");
    }
    let e = parse(
        "p.toml",
        "[cloud]\nproxy = { type = \"http\", url = \"http://p:3128\", no_proxy = [\"a.example\", \"10.0.0.0/8\", \"a, b\"] }\n",
    )
    .unwrap_err();
    assert_eq!(e.errors.len(), 1, "{e}");
    assert_eq!(e.errors[0].path, "cloud.proxy.no_proxy[2]", "{e}");
    let e = parse("p.toml", "[cloud]\nproxy = { type = \"socks\" }\n").unwrap_err();
    assert!(
        e.to_string().contains("line 2") && e.to_string().contains("socks"),
        "{e}"
    );
}

#[test]
fn cloud_settings_lay_over_the_file_and_are_validated_whole() {
    let file = Source::new(
        "site.toml",
        "[web]\nlisten = \"127.0.0.1:9999\"\n[poller]\ninterval_secs = 600\ndeadline_secs = 30\n\
         [[snmp_profiles]]\nname = \"site\"\nauth = { type = \"v2c\", community = \"local\" }\n",
    );
    let c = file
        .parse_with_cloud(&serde_json::json!({
            "poller": { "interval_secs": 120, "deadline_secs": null },
            "discovery": { "include": ["192.0.2.0/30"], "network_delay_us": 500, "profiles": ["office"] },
            "snmp_profiles": [ { "name": "office", "auth": { "type": "v2c", "community": "c" }, "timeout_ms": 800 } ],
            "agent": { "log_level": "debug" },
            "cloud": { "timeout_secs": 12 }
        }))
        .unwrap();
    assert_eq!(c.poller.interval, Duration::from_secs(120), "cloud wins");
    assert_eq!(
        c.poller.deadline,
        Duration::from_secs(60),
        "null restores the default"
    );
    assert_eq!(
        c.web_listen,
        "127.0.0.1:9999".parse().unwrap(),
        "host keys stay"
    );
    assert_eq!(c.profiles.len(), 1, "arrays replace");
    assert_eq!(c.profiles[0].name, "office");
    assert_eq!(c.discovery.network_delay_us, 500);
    assert_eq!(c.discovery.profiles, vec![0]);
    assert_eq!(c.log_level, "debug");
    assert_eq!(c.cloud.timeout, Duration::from_secs(12));
    // An empty document is the file alone.
    let alone = file.parse_with_cloud(&serde_json::json!({})).unwrap();
    assert_eq!(alone.poller.interval, Duration::from_secs(600));
}

#[test]
fn cloud_settings_cannot_touch_host_keys_and_bad_values_name_their_path() {
    let file = Source::new("site.toml", "");
    let e = file
        .parse_with_cloud(&serde_json::json!({
            "web": { "listen": "0.0.0.0:80" },
            "cloud": { "url": "https://evil.example", "timeout_secs": 5 },
            "discovery": { "import": ["/etc/passwd"] }
        }))
        .unwrap_err();
    assert!(e.source.starts_with("cloud settings over site.toml"), "{e}");
    let mut paths: Vec<&str> = e.errors.iter().map(|x| x.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["cloud.url", "discovery.import", "web"], "{e}");

    let e = file
        .parse_with_cloud(&serde_json::json!({ "poller": { "interval_secs": 5 }, "discovery": { "include": ["not an address!"] } }))
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("poller.interval_secs"), "{text}");
    assert!(text.contains("discovery.include"), "{text}");
    let e = file
        .parse_with_cloud(&serde_json::json!({ "poller": { "interval_secs": "soon" } }))
        .unwrap_err();
    assert!(e.to_string().contains("interval_secs"), "{e}");
    assert!(file.parse_with_cloud(&serde_json::json!([1])).is_err());
}

#[test]
fn a_source_never_prints_its_text() {
    let s = Source::new(
        "x",
        "[[snmp_profiles]]\nname = \"a\"\nauth = { type = \"v2c\", community = \"hunter2\" }\n",
    );
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[test]
fn upload_thresholds_are_configurable_within_the_seed_rule() {
    let c = parse(
        "u",
        "[upload]\nsnapshot_interval_secs = 3600\nsupply_drop_min_percent = 5\n",
    )
    .unwrap();
    assert_eq!(c.upload.heartbeat_ms, 3_600_000);
    assert_eq!(c.upload.min_percent_drop, 5);
    let d = parse("u", "").unwrap();
    assert_eq!(
        d.upload.heartbeat_ms, 86_400_000,
        "the seed's 24 h by default"
    );
    assert_eq!(d.upload.min_percent_drop, 1, "any decrease by default");
    let e = parse(
        "u",
        "[upload]\nsnapshot_interval_secs = 172800\nsupply_drop_min_percent = 0\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("upload.snapshot_interval_secs"), "{e}");
    assert!(e.contains("upload.supply_drop_min_percent"), "{e}");
    let cloud = Source::new("u", "")
        .parse_with_cloud(&serde_json::json!({ "upload": { "supply_drop_min_percent": 10 } }))
        .unwrap();
    assert_eq!(cloud.upload.min_percent_drop, 10, "the cloud may set it");
}

#[test]
fn every_number_key_has_an_upper_bound() {
    // Issue 18: `poller.interval_secs = i64::MAX` validated, then overflowed an Instant.
    let huge = "9223372036854775807";
    let text = format!(
        r#"
[agent]
stop_timeout_secs = {huge}
[poller]
interval_secs = {huge}
backoff_max_secs = {huge}
not_communicating_after = 4294967295
max_pages_per_minute = {huge}
max_in_flight = {huge}
[[snmp_profiles]]
name = "a"
auth = {{ type = "v2c", community = "public" }}
timeout_ms = {huge}
retries = 4294967295
max_repetitions = 4294967295
[discovery]
interval_secs = {huge}
network_delay_us = {huge}
max_in_flight = {huge}
max_addresses = {huge}
mdns_secs = {huge}
[cloud]
timeout_secs = {huge}
outbox_max_bytes = {huge}
"#
    );
    let e = parse("huge.toml", &text).unwrap_err();
    let paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "agent.stop_timeout_secs",
        "poller.interval_secs",
        "poller.backoff_max_secs",
        "poller.not_communicating_after",
        "poller.max_pages_per_minute",
        "poller.max_in_flight",
        "snmp_profiles[0].timeout_ms",
        "snmp_profiles[0].retries",
        "snmp_profiles[0].max_repetitions",
        "discovery.interval_secs",
        "discovery.network_delay_us",
        "discovery.max_in_flight",
        "discovery.max_addresses",
        "discovery.mdns_secs",
        "cloud.timeout_secs",
        "cloud.outbox_max_bytes",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
    assert!(e.to_string().contains("out of range"), "{e}");
}

#[test]
fn the_whole_ipv6_space_is_refused_from_the_file_and_the_cloud() {
    // Issue 18: `::/0` plus one address wrapped the u128 sum to 0 and passed the cap.
    let e = parse(
        "v6.toml",
        "[discovery]\ninclude = [\"::/0\", \"192.0.2.1\"]\n",
    )
    .unwrap_err();
    assert_eq!(e.errors[0].path, "discovery.include", "{e}");
    assert!(e.to_string().contains("more than the cap"), "{e}");
    let src = Source::new("agent.toml", "");
    let doc = serde_json::json!({ "discovery": { "include": ["::/0", "192.0.2.1"] } });
    let e = src.parse_with_cloud(&doc).unwrap_err();
    assert!(e.to_string().contains("discovery.include"), "{e}");
    let doc = serde_json::json!({ "poller": { "interval_secs": 9_223_372_036_854_775_807u64 } });
    let e = src.parse_with_cloud(&doc).unwrap_err();
    assert!(e.to_string().contains("poller.interval_secs"), "{e}");
}

#[test]
fn long_texts_and_lists_are_refused_without_echoing_them() {
    let long = "x".repeat(60_000);
    let text = format!(
        r#"
[agent]
log_level = "{long}"
[[printers]]
address = "{long}"
[discovery]
include = ["{long}"]
[cloud]
proxy = {{ type = "http", url = "http://{long}" }}
"#
    );
    let e = parse("long.toml", &text).unwrap_err();
    let paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "agent.log_level",
        "printers[0].address",
        "discovery.include[0]",
        "cloud.proxy.url",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
    // The report names the problem; it does not repeat 60 KB four times.
    assert!(e.to_string().len() < 2000, "{} bytes", e.to_string().len());
}

/// A syntax error no longer hides the rest: every line the TOML reader trips on is
/// reported (a broken section header with its keys), in file order, then the semantic
/// problems with their key paths.
#[test]
fn one_run_reports_every_syntax_error_and_then_the_rest() {
    let text = "[agent]\nstop_timeout_secs = = 3\n\n[poller]\ninterval_secs = 1\ncolour = \"blue\"\n\
                deadline_secs = \"sixty\"\n\n[discovery\ninclude = [\"10.0.0.0/24\"]\n\n\
                [[printers]]\naddress = \"nowhere\"\n";
    let e = parse("bad.toml", text).unwrap_err();
    let paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "agent.stop_timeout_secs (line 2, column 21)",
            "poller.colour (line 6, column 1)",
            "poller.deadline_secs (line 7, column 17)",
            "line 9, column 11",
            "poller.interval_secs",
            "printers[0].address",
        ],
        "{e}"
    );
    assert!(
        e.errors[1].message.contains("unknown field `colour`"),
        "{e}"
    );
}
