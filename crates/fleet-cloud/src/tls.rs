//! Certificates for the reference cloud: a private CA and a leaf for localhost /
//! 127.0.0.1 (webpki refuses a self-signed CA used as an end entity, so two are needed),
//! generated with rcgen. Agents trust the CA through their extra-CA setting.

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
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "fleet-cloud reference CA");
    let ca_key = rcgen::KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    let key = rcgen::KeyPair::generate()?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Generated {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
