//! Certificates for the reference cloud: a private CA and a leaf for localhost /
//! 127.0.0.1 (webpki refuses a self-signed CA used as an end entity, so two are needed),
//! generated with rcgen. Agents trust the CA through their extra-CA setting. With a
//! state directory the CA is kept (`ca.pem`, `ca-key.pem`, owner-only), so agents keep
//! trusting the cloud across its restarts; the leaf is made afresh at each start.

use std::path::Path;

/// A generated CA and server certificate, PEM.
pub struct Generated {
    /// CA certificate (give it to agents as their extra CA).
    pub ca_pem: String,
    /// Server certificate chain.
    pub cert_pem: String,
    /// Server private key.
    pub key_pem: String,
}

/// Generates a CA and a server certificate for `names` (DNS names or IP addresses).
///
/// # Errors
/// When rcgen fails.
pub fn generate(names: &[&str]) -> Result<Generated, rcgen::Error> {
    let ca_key = rcgen::KeyPair::generate()?;
    let ca = ca_params()?.self_signed(&ca_key)?;
    leaf(names, ca.pem(), ca_key)
}

/// The CA's parameters: always the same, so a kept key re-creates the same issuer.
fn ca_params() -> Result<rcgen::CertificateParams, rcgen::Error> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "fleet-cloud reference CA");
    Ok(ca_params)
}

/// The CA kept in `dir` (made and saved on first use) and a fresh leaf for `names`.
///
/// # Errors
/// When the files cannot be read or written, or hold something else.
pub fn kept(dir: &Path, names: &[&str]) -> anyhow::Result<Generated> {
    use anyhow::Context;
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    if cert_path.exists() || key_path.exists() {
        let read = |p: &Path| {
            std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))
        };
        let (ca_pem, key_pem) = (read(&cert_path)?, read(&key_path)?);
        let ca_key = rcgen::KeyPair::from_pem(&key_pem)
            .with_context(|| format!("{}: not a PEM private key", key_path.display()))?;
        return Ok(leaf(names, ca_pem, ca_key)?);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_pem = ca_params()?.self_signed(&ca_key)?.pem();
    fleet_secret::owner_only::write(
        &key_path,
        ca_key.serialize_pem().as_bytes(),
        fleet_secret::owner_only::Existing::Refuse,
    )
    .with_context(|| format!("{}: cannot write", key_path.display()))?;
    std::fs::write(&cert_path, &ca_pem)
        .with_context(|| format!("{}: cannot write", cert_path.display()))?;
    Ok(leaf(names, ca_pem, ca_key)?)
}

fn leaf(names: &[&str], ca_pem: String, ca_key: rcgen::KeyPair) -> Result<Generated, rcgen::Error> {
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    let key = rcgen::KeyPair::generate()?;
    let issuer = rcgen::Issuer::new(ca_params()?, ca_key);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Generated {
        ca_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;

    /// The finding: the reference cloud made a new CA at every start, so agents that
    /// trusted it stopped trusting the restarted cloud.
    #[test]
    fn the_ca_is_kept_across_restarts_and_still_signs_the_leaf() {
        let dir = tempfile::tempdir().unwrap();
        let first = kept(dir.path(), &["localhost", "127.0.0.1"]).unwrap();
        let second = kept(dir.path(), &["localhost", "127.0.0.2"]).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_ne!(first.key_pem, second.key_pem, "a fresh leaf key");
        // The second leaf chains to the kept CA.
        let roots = {
            let mut r = rustls::RootCertStore::empty();
            let der = rustls::pki_types::CertificateDer::from_pem_slice(second.ca_pem.as_bytes())
                .unwrap();
            r.add(der).unwrap();
            std::sync::Arc::new(r)
        };
        crate::install_crypto();
        let verifier = rustls::client::WebPkiServerVerifier::builder(roots)
            .build()
            .unwrap();
        let leaf =
            rustls::pki_types::CertificateDer::from_pem_slice(second.cert_pem.as_bytes()).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], rustls::pki_types::UnixTime::now())
            .expect("the new leaf verifies against the kept CA");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ca-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
