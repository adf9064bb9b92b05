//! The agent update document (`updateAgent`): the signed manifest of a new agent binary
//! (which product, version and platform, the file's size and SHA-256) and its package.
//! Whether to install one is the agent's decision (trusted keys, platform, version).

use serde::{Deserialize, Serialize};

/// The product a manifest must name.
pub const PRODUCT: &str = "fleet-agent";

/// What the release signs: which binary, for which platform, and its exact bytes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    /// Always [`PRODUCT`].
    pub product: String,
    /// Dotted numbers (`0.2.0`), compared number by number.
    pub version: String,
    /// `std::env::consts::OS` of the platform it runs on (`linux`).
    pub os: String,
    /// `std::env::consts::ARCH` (`x86_64`, `aarch64`).
    pub arch: String,
    /// The file's size in bytes.
    pub size: u64,
    /// The file's SHA-256, lowercase hex.
    pub sha256: String,
}

/// A signed manifest as the cloud sends it: the manifest's exact JSON text, the ed25519
/// signature over those bytes, and the signing key's id.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Package {
    /// The manifest, as JSON text (the signed bytes).
    pub manifest: String,
    /// Base64 of the signature.
    pub signature: String,
    /// [`crate::signing::key_id`] of the signing key.
    pub key_id: String,
}

/// Dotted numbers (`1.2.3`; a `-suffix` is ignored).
pub fn version_numbers(v: &str) -> Option<Vec<u64>> {
    let core = v.split(['-', '+']).next()?;
    core.split('.')
        .map(|n| n.parse().ok())
        .collect::<Option<Vec<u64>>>()
        .filter(|n| !n.is_empty() && n.len() <= 4)
}

/// Whether `a` is a higher version than `b` (missing numbers count as 0).
pub fn newer(a: &str, b: &str) -> bool {
    let (Some(mut a), Some(mut b)) = (version_numbers(a), version_numbers(b)) else {
        return false;
    };
    let n = a.len().max(b.len());
    a.resize(n, 0);
    b.resize(n, 0);
    a > b
}

/// Signs a manifest (release tooling, the reference cloud's CLI, tests).
pub fn sign(manifest: &Manifest, key: &ed25519_dalek::SigningKey) -> Package {
    let text = serde_json::to_string_pretty(manifest).unwrap_or_default();
    let (signature, key_id) = crate::signing::sign(text.as_bytes(), key);
    Package {
        manifest: text,
        signature,
        key_id,
    }
}

/// The manifest for a file, for the platform this code was built for.
pub fn manifest_for(version: &str, bytes: &[u8]) -> Manifest {
    Manifest {
        product: PRODUCT.into(),
        version: version.into(),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        size: bytes.len() as u64,
        sha256: crate::signing::sha256_hex(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_number_by_number() {
        assert!(newer("0.10.0", "0.9.9"));
        assert!(newer("1.0.0.1", "1"));
        assert!(!newer("1.0", "1.0.0"));
        assert!(!newer("x", "0"));
        assert_eq!(version_numbers("1.2.3-rc1"), Some(vec![1, 2, 3]));
        assert_eq!(version_numbers("1.2.3.4.5"), None);
    }

    #[test]
    fn a_signed_manifest_verifies_with_its_key_only() {
        use base64::Engine;
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let public =
            base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes());
        let m = manifest_for("0.2.0", b"binary");
        let p = sign(&m, &key);
        crate::signing::verify(p.manifest.as_bytes(), &p.signature, &p.key_id, &[public]).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&p.manifest).unwrap(), m);
        assert_eq!(m.size, 6);
    }
}
