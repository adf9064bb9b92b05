//! Ed25519 signatures over what the cloud pushes and the agent must not take on trust:
//! printer support libraries and agent updates. A key is named by its id (the first 8
//! bytes of SHA-256 of the public key); the keys an agent trusts are set on its host only.

use base64::Engine;

/// Why a signature was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The key id names none of the trusted keys.
    #[error("signed by a key this agent does not trust (key id {0})")]
    UnknownKey(String),
    /// The signature is not 64 bytes of base64.
    #[error("signature: not 64 bytes of base64")]
    Format,
    /// The signature does not match the bytes (tampered or corrupted).
    #[error("the signature does not match (tampered or corrupted)")]
    Mismatch,
}

/// SHA-256 as lowercase hex (signed manifests, pinned certificates, key ids).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A key's id: the first 8 bytes of SHA-256 of the public key, hex.
pub fn key_id(public: &[u8; 32]) -> String {
    let mut id = sha256_hex(public);
    id.truncate(16);
    id
}

/// Parses a base64 public key.
///
/// # Errors
/// Not 32 bytes of base64, or not a valid point.
pub fn public_key(b64: &str) -> Result<ed25519_dalek::VerifyingKey, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("{b64:?}: not base64: {e}"))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("{b64:?}: an ed25519 public key is 32 bytes"))?;
    ed25519_dalek::VerifyingKey::from_bytes(&arr).map_err(|e| format!("{b64:?}: {e}"))
}

/// Signs `bytes`: the base64 signature and the key's id.
pub fn sign(bytes: &[u8], key: &ed25519_dalek::SigningKey) -> (String, String) {
    use ed25519_dalek::Signer;
    let sig = key.sign(bytes);
    (
        base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
        key_id(key.verifying_key().as_bytes()),
    )
}

/// Checks that `signature` (base64) over `bytes` was made by the trusted key `key_id`
/// (`trusted`: base64 public keys; unparsable ones are skipped, config validation names
/// them).
///
/// # Errors
/// As [`SignatureError`].
pub fn verify(
    bytes: &[u8],
    signature: &str,
    key_id_: &str,
    trusted: &[String],
) -> Result<(), SignatureError> {
    use ed25519_dalek::Verifier;
    let key = trusted
        .iter()
        .filter_map(|k| public_key(k).ok())
        .find(|k| key_id(k.as_bytes()) == key_id_)
        .ok_or_else(|| SignatureError::UnknownKey(key_id_.to_string()))?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| ed25519_dalek::Signature::from_bytes(&b))
        .ok_or(SignatureError::Format)?;
    key.verify(bytes, &sig)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_a_trusted_key_and_the_same_bytes() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let public =
            base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes());
        let (sig, id) = sign(b"payload", &key);
        assert_eq!(
            verify(b"payload", &sig, &id, std::slice::from_ref(&public)),
            Ok(())
        );
        assert_eq!(
            verify(b"payloaD", &sig, &id, std::slice::from_ref(&public)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"payload", &sig, &id, &[]),
            Err(SignatureError::UnknownKey(id.clone()))
        );
        assert_eq!(
            verify(b"payload", "short", &id, &[public]),
            Err(SignatureError::Format)
        );
    }
}
