//! `fleet-lab simulate`'s exits: an unreadable recording directory is 66, nothing to serve
//! a usage error (2); a served fleet prints where each printer answers.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn lab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fleet-lab"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn unreadable_input_and_nothing_to_serve_exit_with_their_codes() {
    let out = lab(&["simulate", "--data-dir", "/nonexistent/dir"]);
    assert_eq!(out.status.code(), Some(66));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--data-dir /nonexistent/dir"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = lab(&["simulate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to serve"));
}

#[test]
fn a_synthetic_fleet_says_where_it_answers() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleet-lab"))
        .args([
            "simulate",
            "--synthetic",
            "2",
            "--fleet-start",
            "127.71.0.1",
            "--port",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    child.kill().ok();
    child.wait().ok();
    assert!(
        line.starts_with("listening on 2 addresses from 127.71.0.1:"),
        "{line:?}"
    );
}
