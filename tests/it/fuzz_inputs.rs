//! Stable-toolchain stand-in for the agent's cargo-fuzz targets: the same bodies
//! (`fuzz/src/lib.rs`, included here) over seeds of each input kind and random
//! mutations of them. None may panic; what a parser accepts stays within its bounds.

#[path = "../../fuzz/src/lib.rs"]
mod bodies;

/// Random edits of `seed`: flips, inserts, deletions, duplicated slices, cuts.
fn mutate(seed: &[u8], rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.usize(1..8) {
        let at = rng.usize(0..=v.len());
        match rng.u8(0..5) {
            0 if !v.is_empty() => {
                let i = rng.usize(0..v.len());
                v[i] ^= 1 << rng.u8(0..8);
            }
            1 => v.insert(
                at,
                *b"0123456789:/.-,\n\"[]{}=-#x"
                    .get(rng.usize(0..26))
                    .unwrap_or(&b'9'),
            ),
            2 if at < v.len() => {
                v.remove(at);
            }
            3 if !v.is_empty() => {
                let a = rng.usize(0..v.len());
                let b = rng.usize(a..v.len().min(a + 64) + 1).min(v.len());
                let piece = v[a..b].to_vec();
                let at = rng.usize(0..=v.len());
                v.splice(at..at, piece);
            }
            _ => v.truncate(at),
        }
    }
    v
}

fn run(name: &str, body: fn(&[u8]), seeds: &[Vec<u8>], rounds: usize) {
    let mut rng = fastrand::Rng::with_seed(0x5eed ^ name.len() as u64);
    for s in seeds {
        body(s);
    }
    for _ in 0..rounds {
        let seed = &seeds[rng.usize(0..seeds.len())];
        body(&mutate(seed, &mut rng));
    }
    let mut noise = vec![0u8; 512];
    for _ in 0..rounds / 4 {
        let n = rng.usize(0..noise.len());
        rng.fill(&mut noise[..n]);
        body(&noise[..n]);
    }
}

#[test]
fn configuration_files() {
    let shipped = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/fleet-agent.toml"
    ))
    .unwrap();
    let seeds = vec![
        shipped,
        b"[discovery]\ninclude = [\"192.0.2.0/30\", \"::/0\"]\nmax_addresses = 16\n".to_vec(),
        b"[[snmp_profiles]]\nname = \"v3\"\nversion = \"v3\"\nuser = \"u\"\nauth_protocol = \"sha256\"\nauth_passphrase = \"12345678\"\n[[printers]]\naddress = \"192.0.2.1\"\nprofile = \"v3\"\n".to_vec(),
        b"[poller]\ninterval_secs = 9223372036854775807\n".to_vec(),
    ];
    run("config", bodies::config, &seeds, 3000);
}

#[test]
fn import_files_and_target_specs() {
    let seeds = vec![
        b"192.0.2.1\n192.0.2.10-192.0.2.20\n10.0.0.0/30,printer.example\n".to_vec(),
        b"address,comment\n\"192.0.2.7\",\"lab\"\n2001:db8::/126\n".to_vec(),
        b"::/0\n0.0.0.0/0\n".to_vec(),
    ];
    run("import", bodies::import, &seeds, 3000);
    let specs: Vec<Vec<u8>> = [
        "192.0.2.1",
        "192.0.2.1-192.0.2.9",
        "2001:db8::1-2001:db8::ff",
        "10.0.0.0/29",
        "::/0",
        "printer.example",
        "192.0.2.9-192.0.2.1",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    run("target_spec", bodies::target_spec, &specs, 5000);
}

#[test]
fn signed_libraries_and_update_manifests() {
    let mut lib = fleet_agent::printer::library::builtin();
    lib.version += 1;
    let seeds = vec![serde_json::to_vec_pretty(&lib).unwrap()];
    run("library", bodies::library, &seeds, 1500);
    let manifest = format!(
        r#"{{"product":"fleet-agent","version":"9.9.9","os":"{}","arch":"{}","size":4,"sha256":"{}"}}"#,
        std::env::consts::OS,
        std::env::consts::ARCH,
        "a".repeat(64)
    );
    run(
        "update_manifest",
        bodies::update_manifest,
        &[manifest.into_bytes()],
        1500,
    );
}

#[test]
fn job_documents() {
    let seeds: Vec<Vec<u8>> = [
        r#"{"jobId":"j-1","type":"reboot","printer":{"serialNumber":"CNB1"}}"#,
        r#"{"jobId":"j-2","type":"panelMessage","params":{"message":"hello","durationSecs":60},"printer":{"address":"192.0.2.1"}}"#,
        r#"{"jobId":"j-3","type":"deployFile","params":{"files":[{"file":"a.zip","size":10}]},"printer":{"address":"192.0.2.1"}}"#,
        r#"{"jobId":"j-4","type":"discover","params":{"include":["192.0.2.0/30"]},"notAfter":99}"#,
        r#"{"jobId":"j-5","type":"updateCredentials","params":{"snmp":{"version":"v2c","community":"x"}}}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    run("job", bodies::job, &seeds, 5000);
}

#[test]
fn ipp_answers() {
    // A printer group as ippeveprinter writes it, and a request (also a valid message).
    let mut answer = vec![2, 0, 0, 0, 0, 0, 0, 1, 1, 4];
    let mut attr = |tag: u8, name: &str, value: &[u8]| {
        answer.push(tag);
        answer.extend_from_slice(&(name.len() as u16).to_be_bytes());
        answer.extend_from_slice(name.as_bytes());
        answer.extend_from_slice(&(value.len() as u16).to_be_bytes());
        answer.extend_from_slice(value);
    };
    attr(0x41, "printer-device-id", b"MFG:Acme;MDL:Laser 9000;SN:X1;");
    attr(0x23, "printer-state", &3i32.to_be_bytes());
    attr(0x44, "printer-state-reasons", b"toner-low-warning");
    attr(0x44, "", b"media-jam-error");
    attr(0x30, "printer-supply", b"index=1;class=supplyThatIsConsumed;type=toner;unit=percent;maxcapacity=100;level=75;colorantname=black;");
    attr(0x41, "printer-supply-description", b"Black Toner");
    attr(0x34, "media-col-default", b"");
    attr(0x4A, "", b"media-source");
    attr(0x44, "", b"tray-1");
    attr(0x37, "", b"");
    answer.push(3);
    let request = fleet_ipp::codec::get_printer_attributes_request(
        1,
        "ipp://p/ipp/print",
        &["printer-supply"],
    );
    assert!(
        fleet_ipp::codec::decode(&answer).is_ok(),
        "the seed is a valid answer"
    );
    run(
        "ipp_response",
        bodies::ipp_response,
        &[answer, request],
        5000,
    );
}
