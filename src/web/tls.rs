//! The page's own certificate for remote access: self-signed, generated with rcgen the
//! first time remote access is turned on and kept in the store (the private key sealed),
//! so its SHA-256 fingerprint stays the same across restarts and an admin can check it
//! against the browser's warning (the page and `fleet-agent status` show it).

use crate::store::secrets::SealKey;
use crate::store::{Store, StoreError};
use fleet_secret::Secret;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// Store setting: the certificate (DER, hex).
const CERT: &str = "ui.tls_cert";
/// Sealed store secret: its private key (PKCS#8 DER, hex).
const KEY: &str = "ui.tls_key";

/// Why the certificate could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// rcgen or rustls refused.
    #[error("certificate: {0}")]
    Certificate(String),
}

/// The page's certificate and key.
pub struct PageCert {
    cert: Vec<u8>,
    key: Secret,
}

impl PageCert {
    /// The one kept in the store, else a new one for `names` (this computer's name,
    /// `localhost`, addresses), stored.
    ///
    /// # Errors
    /// On store failure or when generation fails.
    pub fn load_or_create(
        store: &Store,
        seal: &SealKey,
        names: &[String],
    ) -> Result<PageCert, TlsError> {
        if let (Some(cert), Some(key)) = (store.setting(CERT)?, store.secret(seal, KEY)?)
            && let Ok(cert) = hex::decode(cert)
        {
            return Ok(PageCert { cert, key });
        }
        let mut params = rcgen::CertificateParams::new(names.to_vec())
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Fleet Agent local page");
        let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Certificate(e.to_string()))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        let page = PageCert {
            cert: cert.der().to_vec(),
            key: Secret::new(hex::encode(key.serialize_der())),
        };
        store.set_secret(seal, KEY, &page.key)?;
        store.set_setting(CERT, &hex::encode(&page.cert))?;
        Ok(page)
    }

    /// SHA-256 of the certificate, as browsers show it (`AB:CD:…`).
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.cert)
    }

    /// A rustls server configuration serving it (HTTP/1.1).
    ///
    /// # Errors
    /// When rustls refuses the key.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        crate::cloud::install_crypto();
        let key = hex::decode(self.key.expose())
            .map_err(|e| TlsError::Certificate(format!("stored key: {e}")))?;
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.cert.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The fingerprint of the certificate kept in the store, if one was made (no key needed:
/// `fleet-agent status` reads it).
///
/// # Errors
/// On store failure.
pub fn stored_fingerprint(store: &Store) -> Result<Option<String>, StoreError> {
    Ok(store
        .setting(CERT)?
        .and_then(|c| hex::decode(c).ok())
        .map(|c| fingerprint_of(&c)))
}

fn fingerprint_of(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let seal = SealKey::for_store(&store, dir.path()).unwrap();
        assert_eq!(stored_fingerprint(&store).unwrap(), None);
        let names = vec!["localhost".to_string(), "print-srv".to_string()];
        let a = PageCert::load_or_create(&store, &seal, &names).unwrap();
        let b = PageCert::load_or_create(&store, &seal, &names).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(stored_fingerprint(&store).unwrap(), Some(a.fingerprint()));
        assert_eq!(a.fingerprint().len(), 32 * 3 - 1);
        a.server_config().unwrap();
        // The private key is sealed: not in the store file in the clear.
        let key_hex = a.key.expose().to_string();
        drop((a, b, store));
        for f in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(f.unwrap().path()).unwrap();
            assert!(!bytes.windows(64).any(|w| w == &key_hex.as_bytes()[..64]));
        }
    }
}
