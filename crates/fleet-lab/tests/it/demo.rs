//! `fleet-lab demo` end to end: simulated printers, reference cloud over HTTPS, the agent
//! activated with a fresh code, and the cloud's view printed after each interval.

use std::process::Command;

#[test]
fn demo_uploads_every_printer_to_the_reference_cloud() {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fleet-lab"))
        .args([
            "demo",
            "--activate",
            "--printers",
            "3",
            "--rounds",
            "2",
            "--fleet-start",
            "127.42.77.1",
            "--port",
            "17361",
            "--web-port",
            "0",
            "--cloud-port",
            "0",
            "--state-dir",
        ])
        .arg(state.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The cloud holds every simulated printer by the second round, with counters.
    let round2 = stdout
        .split("round 2:")
        .nth(1)
        .unwrap_or_else(|| panic!("no second round in:\n{stdout}"));
    assert!(round2.starts_with(" the cloud holds 3 assets"), "{round2}");
    let rows: Vec<&str> = round2
        .lines()
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), 3, "{round2}");
    for r in rows {
        let cols: Vec<&str> = r.split_whitespace().collect();
        assert!(cols.iter().any(|c| c.starts_with("FA")), "serial in {r}");
        assert!(
            cols.iter().any(|c| c.parse::<u64>().is_ok_and(|n| n > 0)),
            "page count in {r}"
        );
    }
    // The admin token went to an owner-only file, not to the terminal.
    let token = std::fs::read_to_string(state.path().join("cloud-admin-token")).unwrap();
    assert!(token.len() >= 32);
    assert!(!stdout.contains(token.trim()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.path().join("cloud-admin-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
    }
}
