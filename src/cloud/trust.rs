//! Which servers the cloud client trusts: the platform's roots (its verifier: the Windows
//! certificate store, the system's on Linux), and an extra CA from `cloud.ca_file`
//! besides them.
//!
//! Why not reqwest's own `add_root_certificate`: with the platform verifier it builds, on
//! Windows, a certificate chain engine with an exclusive root store, which Wine refuses
//! ("Invalid parameter") and which old Windows builds lack. Checking the extra CA with
//! rustls's own WebPKI verifier first, then the platform's, trusts the same servers
//! everywhere and needs nothing of the platform for the extra CA.

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;

/// The TLS configuration of the cloud client: the platform's roots, and `extra_ca` (PEM,
/// one or more certificates) besides them.
///
/// # Errors
/// A PEM without a certificate, a certificate the verifier cannot use, or a platform
/// verifier that cannot be set up; the text says which.
pub fn client_config(extra_ca: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier(extra_ca, &provider)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn verifier(
    extra_ca: Option<&[u8]>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let platform = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| format!("the platform's certificate verifier: {e}"))?;
    Ok(match extra_ca {
        None => Arc::new(platform),
        Some(pem) => Arc::new(ExtraFirst {
            extra: extra_verifier(pem, provider)?,
            platform: Arc::new(platform),
        }),
    })
}

fn extra_verifier(
    pem: &[u8],
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("extra CA: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("extra CA: not a usable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("extra CA: no certificate in the PEM".into());
    }
    let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("extra CA: {e}"))?;
    Ok(v)
}

/// A server is trusted when it chains to the extra CA, else when the platform trusts it.
#[derive(Debug)]
struct ExtraFirst {
    extra: Arc<dyn ServerCertVerifier>,
    platform: Arc<dyn ServerCertVerifier>,
}

impl ServerCertVerifier for ExtraFirst {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let extra = self.extra.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let Err(extra) = extra else { return extra };
        match self.platform.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => Ok(v),
            // A certificate from the extra CA that fails (expired, another name) says
            // more than the platform's "unknown issuer".
            Err(platform) => Err(
                if matches!(
                    extra,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
                ) {
                    platform
                } else {
                    extra
                },
            ),
        }
    }

    // The handshake's signatures: the same check whichever verifier took the chain.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.extra.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.extra.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.extra.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA and a server certificate it signed for `name`.
    fn ca_and_server(name: &str) -> (String, CertificateDer<'static>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (ca_cert.pem(), server.der().clone())
    }

    fn check(extra_ca: Option<&str>) -> Arc<dyn ServerCertVerifier> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        verifier(extra_ca.map(str::as_bytes), &provider).unwrap()
    }

    fn verify(
        v: &Arc<dyn ServerCertVerifier>,
        cert: &CertificateDer<'_>,
        name: &str,
    ) -> Result<(), rustls::Error> {
        v.verify_server_cert(
            cert,
            &[],
            &ServerName::try_from(name.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
    }

    #[test]
    fn the_extra_ca_is_trusted_besides_the_platform_and_nothing_else_is() {
        let (ca, server) = ca_and_server("cloud.test");
        let (_, stranger) = ca_and_server("cloud.test");
        let with_ca = check(Some(&ca));
        assert_eq!(verify(&with_ca, &server, "cloud.test"), Ok(()));
        // Another CA's certificate: neither the extra CA nor the platform knows it.
        let e = verify(&with_ca, &stranger, "cloud.test").unwrap_err();
        assert!(matches!(e, rustls::Error::InvalidCertificate(_)), "{e:?}");
        // The extra CA's certificate for another name: the extra CA's own error.
        let e = verify(&with_ca, &server, "other.test").unwrap_err();
        assert!(
            matches!(
                e,
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{e:?}"
        );
        // Without the extra CA, its server is not trusted.
        assert!(verify(&check(None), &server, "cloud.test").is_err());
        let config = client_config(Some(ca.as_bytes())).unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn a_pem_without_a_certificate_is_refused_with_the_reason() {
        assert_eq!(
            client_config(Some(b"not a certificate")).unwrap_err(),
            "extra CA: no certificate in the PEM"
        );
    }
}
