//! The `fleet-cloud` binary: serve with a generated CA, create an agent, list agents and
//! assets through the admin API, refuse a wrong admin token with the cloud's reason, set
//! settings from a file, queue and list jobs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fleet-cloud"))
        .args(args)
        .env_remove("FLEET_CLOUD_ADMIN_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn serve_create_agent_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let ca_s = ca.to_str().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_fleet-cloud"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-token",
            "t0ken-admin",
            "--ca-out",
            ca_s,
            "--state-dir",
        ])
        .arg(dir.path().join("db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let admin = ["--url", &url, "--ca", ca_s, "--admin-token", "t0ken-admin"];
    let (ok, out, err) = cli(&[&["create-agent", "--name", "branch office"][..], &admin].concat());
    assert!(ok, "{err}");
    let code = out
        .split_whitespace()
        .skip_while(|w| *w != "code")
        .nth(1)
        .unwrap_or_else(|| panic!("no code in {out:?}"));
    assert_eq!(code.len(), 14, "{out}");
    assert_eq!(code.matches('-').count(), 2, "{out}");

    let (ok, out, err) = cli(&[&["agents"][..], &admin].concat());
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let agents = v["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{out}");
    assert_eq!(agents[0]["name"], "branch office");
    assert_eq!(agents[0]["activated"], false);
    assert!(agents[0]["lastHeartbeat"].is_null());

    let (ok, out, err) = cli(&[&["assets"][..], &admin].concat());
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["totalElements"], 0, "{out}");

    let (ok, _, err) = cli(&[
        "agents",
        "--url",
        &url,
        "--ca",
        ca_s,
        "--admin-token",
        "wrong",
    ]);
    assert!(!ok);
    assert!(
        err.contains("401") && err.contains("admin token required"),
        "{err}"
    );
    assert!(!err.contains("t0ken-admin"));

    // Settings from a file (a JSON error names file:line:column) and jobs.
    let agent_id = agents[0]["agentId"].as_str().unwrap().to_string();
    let settings = dir.path().join("settings.json");
    std::fs::write(
        &settings,
        "{\n  \"poller\": { \"interval_secs\": 120 }\n}\n",
    )
    .unwrap();
    let s = settings.to_str().unwrap();
    let (ok, out, err) = cli(&[&["settings", &agent_id, s][..], &admin].concat());
    assert!(ok, "{err}");
    assert!(out.contains("etag"), "{out}");
    std::fs::write(&settings, "{\n  \"poller\": ,\n}\n").unwrap();
    let (ok, _, err) = cli(&[&["settings", &agent_id, s][..], &admin].concat());
    assert!(!ok);
    assert!(err.contains("settings.json:2:"), "{err}");
    let (ok, out, err) = cli(&[
        &[
            "job",
            &agent_id,
            "--type",
            "refreshPrinter",
            "--serial",
            "X1",
        ][..],
        &admin,
    ]
    .concat());
    assert!(ok, "{err}");
    let job: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(job["state"], "pending");
    assert_eq!(job["printer"]["serialNumber"], "X1");
    let (ok, out, err) = cli(&[&["jobs"][..], &admin].concat());
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["jobs"][0]["jobId"], job["jobId"]);
    let (ok, _, err) = cli(&[&["job", "agent-nope", "--type", "refresh"][..], &admin].concat());
    assert!(!ok);
    assert!(
        err.contains("404") && err.contains("no such agent"),
        "{err}"
    );

    // A job on the calendar, and the cloud's reason for a bad one.
    let weekly = [
        "job",
        &agent_id,
        "--type",
        "refresh",
        "--repeat",
        "weekly",
        "--days",
        "mon,thu",
        "--at",
        "02:30",
        "--time-zone",
        "Europe/Paris",
        "--start-date",
        "2030-01-01",
    ];
    let (ok, out, err) = cli(&[&weekly[..], &admin].concat());
    assert!(ok, "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        s["recurrence"]["days"],
        serde_json::json!(["mon", "thu"]),
        "{out}"
    );
    assert_eq!(
        s["nextAt"], 1_893_634_200_000i64,
        "Thursday 3 January 2030, 02:30 in Paris"
    );
    let (ok, out, _) = cli(&[&["schedules"][..], &admin].concat());
    assert!(ok);
    assert!(out.contains(s["scheduleId"].as_str().unwrap()), "{out}");
    let (ok, _, err) = cli(&[
        &[
            "job", &agent_id, "--type", "refresh", "--repeat", "daily", "--at", "26:00",
        ][..],
        &admin,
    ]
    .concat());
    assert!(!ok);
    assert!(err.contains("recurrence.time:"), "{err}");

    // A new code for the agent; the one it replaces is refused.
    let (ok, out, err) = cli(&[&["activation-code", &agent_id][..], &admin].concat());
    assert!(ok, "{err}");
    assert!(out.contains(&agent_id) && !out.contains(code), "{out}");
    let sid = s["scheduleId"].as_str().unwrap();
    let (ok, out, err) = cli(&[&["unschedule", sid][..], &admin].concat());
    assert!(ok && out.contains("ended"), "{err}");
    let (ok, _, err) = cli(&[&["unschedule", sid][..], &admin].concat());
    assert!(!ok && err.contains("no such schedule"), "{err}");

    server.kill().ok();
    server.wait().ok();
}

/// `library-key` and `library-sign` make a package the agent's verification accepts.
#[test]
fn library_key_and_sign_make_a_verifiable_package() {
    let d = tempfile::tempdir().unwrap();
    let key = d.path().join("library.key");
    let (ok, public, err) = cli(&["library-key", "--out", key.to_str().unwrap()]);
    assert!(ok, "{err}");
    let public = public.trim().to_string();
    assert_eq!(public.len(), 44, "{public}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(!std::fs::read_to_string(&key).unwrap().contains(&public));
    // A library as `fleet-agent library default` prints one (version 1), signed as 7.
    let library = d.path().join("library.json");
    std::fs::write(
        &library,
        r#"{ "version": 1,
             "vendors": [ { "name": "Lexmark", "enterprise": 641,
                            "serial": ["1.3.6.1.4.1.641.2.1.2.1.6.1"] } ],
             "brands": [ { "prefix": "utax", "name": "UTAX", "oem": true } ] }"#,
    )
    .unwrap();
    let out = d.path().join("pkg.json");
    let (ok, said, err) = cli(&[
        "library-sign",
        "--key",
        key.to_str().unwrap(),
        "--library",
        library.to_str().unwrap(),
        "--version",
        "7",
        "--job",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(said.contains("version 7"), "{said}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let params: fleet_protocol::jobs::LibraryParams = serde_json::from_value(doc).unwrap();
    let lib = fleet_protocol::library::verify(&params.package, &[public]).unwrap();
    assert_eq!(lib.version, 7);
    assert_eq!(lib.vendor(641).unwrap().name, "Lexmark");
    // A library file with a problem is refused with its place.
    let bad = d.path().join("bad.json");
    std::fs::write(&bad, r#"{"version": 0, "vendors": [], "brands": []}"#).unwrap();
    let (ok, _, err) = cli(&[
        "library-sign",
        "--key",
        key.to_str().unwrap(),
        "--library",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("version: must be at least 1"), "{err}");
}

/// `signing-key` and `update-sign` make the params of an `updateAgent` job: a manifest
/// the agent's verification accepts, naming the file's size and SHA-256.
#[test]
fn update_sign_makes_verifiable_job_params() {
    let d = tempfile::tempdir().unwrap();
    let key = d.path().join("update.key");
    let (ok, public, err) = cli(&["signing-key", "--out", key.to_str().unwrap()]);
    assert!(ok, "{err}");
    let public = public.trim().to_string();
    let bin = d.path().join("fleet-agent");
    std::fs::write(&bin, b"a new agent build").unwrap();
    let out = d.path().join("params.json");
    let (ok, said, err) = cli(&[
        "update-sign",
        "--key",
        key.to_str().unwrap(),
        "--file",
        bin.to_str().unwrap(),
        "--version",
        "2.3.4",
        "--health-secs",
        "300",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(said.contains("as version 2.3.4"), "{said}");
    let params: fleet_protocol::jobs::UpdateParams =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(params.file, "fleet-agent");
    assert_eq!(params.health_secs, Some(300));
    let pkg = &params.package;
    fleet_protocol::signing::verify(
        pkg.manifest.as_bytes(),
        &pkg.signature,
        &pkg.key_id,
        &[public],
    )
    .unwrap();
    let m: fleet_protocol::update::Manifest = serde_json::from_str(&pkg.manifest).unwrap();
    assert_eq!(m.version, "2.3.4");
    assert_eq!(
        (m.os.as_str(), m.arch.as_str()),
        (std::env::consts::OS, std::env::consts::ARCH)
    );
    assert_eq!(m.size, 17);
    assert_eq!(
        m.sha256,
        fleet_protocol::signing::sha256_hex(b"a new agent build")
    );
    // Not a version the agent can compare.
    let (ok, _, err) = cli(&[
        "update-sign",
        "--key",
        key.to_str().unwrap(),
        "--file",
        bin.to_str().unwrap(),
        "--version",
        "2.0-beta",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("--version \"2.0-beta\""), "{err}");
}
