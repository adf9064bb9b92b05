use super::health::*;
use super::launcher::*;
use super::staging::*;
use super::*;
use base64::Engine;
use std::path::Path;

fn key() -> (ed25519_dalek::SigningKey, Vec<String>) {
    let k = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let public = base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes());
    (k, vec![public])
}

#[test]
fn versions_compare_number_by_number() {
    assert!(newer("0.10.0", "0.9.9"));
    assert!(newer("1.0", "0.99.99"));
    assert!(newer("0.1.1", "0.1.0-dev"));
    assert!(!newer("0.1.0", "0.1"));
    assert!(!newer("0.1.0", "0.2.0"));
    assert!(!newer("x", "0.1.0"));
}

#[test]
fn manifests_are_checked_after_their_signature() {
    let (k, trusted) = key();
    let m = manifest_for("9.0.0", b"binary");
    let p = sign(&m, &k);
    assert_eq!(verify(&p, &trusted), Ok(m.clone()));
    assert_eq!(verify(&p, &[]), Err(UpdateError::NoKeys));
    let mut tampered = p.clone();
    tampered.manifest = tampered.manifest.replace("9.0.0", "9.0.1");
    assert!(matches!(
        verify(&tampered, &trusted),
        Err(UpdateError::Signature(SignatureError::Mismatch))
    ));
    let other = sign(
        &Manifest {
            os: "plan9".into(),
            ..m.clone()
        },
        &k,
    );
    assert!(matches!(
        verify(&other, &trusted),
        Err(UpdateError::Platform { .. })
    ));
    let pre = sign(
        &Manifest {
            version: "9.0.0-rc1".into(),
            ..m.clone()
        },
        &k,
    );
    assert!(matches!(
        verify(&pre, &trusted),
        Err(UpdateError::Manifest(_))
    ));
    assert_eq!(check_file(&m, b"binary"), Ok(()));
    assert!(
        check_file(&m, b"binarY")
            .unwrap_err()
            .to_string()
            .contains("SHA-256")
    );
    assert!(
        check_file(&m, b"bin")
            .unwrap_err()
            .to_string()
            .contains("3 bytes")
    );
}

fn staged(dir: &Path, version: &str, bytes: &[u8], job: &str) -> Staged {
    let (k, _) = key();
    let m = manifest_for(version, bytes);
    stage(dir, sign(&m, &k), &m, bytes, job, 30).unwrap();
    state(dir).unwrap()
}

#[test]
fn a_trial_starts_once_then_rolls_back_to_the_version_before_it() {
    let d = tempfile::tempdir().unwrap();
    let (_, trusted) = key();
    let mut s = staged(d.path(), "9.0.0", b"v9", "job-1");
    s.phase = Phase::Active;
    s.job_id = None;
    save(d.path(), Some(&s)).unwrap();
    let t = staged(d.path(), "10.0.0", b"v10", "job-2");
    assert_eq!(
        t.previous.as_deref().map(Staged::version).as_deref(),
        Some("9.0.0")
    );

    // First start: verified, counted, started.
    let (step, next, report) = decide(d.path(), "0.1.0", &trusted, t);
    assert_eq!(
        step,
        Step::Exec(dir(d.path()).join("fleet-agent-10.0.0"), "10.0.0".into())
    );
    assert_eq!(next.as_ref().map(|n| n.attempts), Some(1));
    assert!(report.is_none());
    // Started again without confirming: back to 9.0.0, with the job's report.
    let (step, next, report) = decide(d.path(), "0.1.0", &trusted, next.unwrap());
    assert_eq!(step, Step::Own);
    assert_eq!(next.as_ref().map(Staged::version).as_deref(), Some("9.0.0"));
    let r = report.unwrap();
    assert_eq!(r.job_id, "job-2");
    assert!(
        r.text
            .starts_with("rolled back to version 9.0.0: version 10.0.0 stopped"),
        "{}",
        r.text
    );
    // 9.0.0 is active and intact: started.
    let (step, _, _) = decide(d.path(), "0.1.0", &trusted, next.unwrap());
    assert!(matches!(step, Step::Exec(_, v) if v == "9.0.0"));
}

#[test]
fn altered_files_untrusted_keys_and_newer_installs_are_never_started() {
    let d = tempfile::tempdir().unwrap();
    let (_, trusted) = key();
    let t = staged(d.path(), "9.0.0", b"v9", "job-1");
    std::fs::write(dir(d.path()).join(&t.file), b"v9 with a payload").unwrap();
    let (step, next, report) = decide(d.path(), "0.1.0", &trusted, t.clone());
    assert_eq!(step, Step::Own);
    assert!(next.is_none());
    assert!(
        report
            .unwrap()
            .text
            .contains("failed its check before it started")
    );
    // Untrusted now (the host removed the key).
    let (step, _, report) = decide(d.path(), "0.1.0", &[], t.clone());
    assert_eq!(step, Step::Own);
    assert!(report.unwrap().text.contains("cloud.update_keys"));
    // The installed package caught up with an active update: it is retired.
    let mut a = t;
    a.phase = Phase::Active;
    let (step, next, _) = decide(d.path(), "9.0.0", &trusted, a);
    assert_eq!(step, Step::Own);
    assert!(next.is_none());
}

#[test]
fn an_unhealthy_trial_is_rolled_back_with_its_reason_and_reported() {
    let d = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(d.path()).unwrap();
    store.job_accept("job-7", "updateAgent", "{}", 1).unwrap();
    store.job_start("job-7").unwrap();
    let t = staged(d.path(), "9.0.0", b"v9", "job-7");
    assert_eq!(pending_job(d.path()).as_deref(), Some("job-7"));
    assert!(matches!(
        confirm_or_fail(d.path(), &store, t, Err("no answer".into()), 5),
        Confirmed::No
    ));
    // The launcher at the next start: installed version, report left for the store.
    assert_eq!(launch(d.path(), &key().1, &[]), Launch::Installed);
    assert!(state(d.path()).is_none());
    assert!(!dir(d.path()).join("fleet-agent-9.0.0").exists());
    settle(d.path(), &store, 6);
    let j = store.recent_jobs(5).unwrap();
    let r = j.iter().find(|j| j.job_id == "job-7").unwrap();
    assert!(
        matches!(r.state, crate::store::jobs::JobState::Done),
        "{:?}",
        r.state
    );
    assert!(!dir(d.path()).join("report.json").exists());
}

/// The finding: the launcher deleted a file named in its state file without checking the
/// name (`../../x` deleted a file outside the state directory).
#[test]
fn a_state_file_naming_a_path_is_ignored_and_nothing_outside_is_deleted() {
    let d = tempfile::tempdir().unwrap();
    let (_, trusted) = key();
    let mut s = staged(d.path(), "9.0.0", b"v9", "job-1");
    let victim = d.path().join("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    s.file = "../victim".into();
    // Written as a tampered file would be (save() does not check).
    save(d.path(), Some(&s)).unwrap();
    assert!(state(d.path()).is_none(), "refused");
    assert_eq!(launch(d.path(), &trusted, &[]), Launch::Installed);
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    let mut ok = staged(d.path(), "9.0.0", b"v9", "job-1");
    ok.previous = Some(Box::new(Staged {
        file: "/etc/passwd".into(),
        ..ok.clone()
    }));
    save(d.path(), Some(&ok)).unwrap();
    assert!(
        state(d.path()).is_none(),
        "a previous version's file is checked too"
    );
}
