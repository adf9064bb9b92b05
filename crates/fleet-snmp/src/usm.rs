//! SNMPv3 User-based Security Model (RFC 3414, RFC 3826, RFC 7860): key derivation,
//! message authentication and privacy, shared by the client and the simulator's agent side.

use aes::cipher::{AsyncStreamCipher, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use digest::Digest;
use hmac::{Hmac, Mac};
use std::fmt;
use std::str::FromStr;

/// usmStats report OIDs (RFC 3414 §5), used to turn a Report PDU into a distinct error.
pub mod stats {
    /// usmStatsUnsupportedSecLevels.0
    pub const UNSUPPORTED_SEC_LEVELS: &[u32] = &[1, 3, 6, 1, 6, 3, 15, 1, 1, 1, 0];
    /// usmStatsNotInTimeWindows.0
    pub const NOT_IN_TIME_WINDOWS: &[u32] = &[1, 3, 6, 1, 6, 3, 15, 1, 1, 2, 0];
    /// usmStatsUnknownUserNames.0
    pub const UNKNOWN_USER_NAMES: &[u32] = &[1, 3, 6, 1, 6, 3, 15, 1, 1, 3, 0];
    /// usmStatsUnknownEngineIDs.0
    pub const UNKNOWN_ENGINE_IDS: &[u32] = &[1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0];
    /// usmStatsWrongDigests.0
    pub const WRONG_DIGESTS: &[u32] = &[1, 3, 6, 1, 6, 3, 15, 1, 1, 5, 0];
    /// usmStatsDecryptionErrors.0
    pub const DECRYPTION_ERRORS: &[u32] = &[1, 3, 6, 1, 6, 3, 15, 1, 1, 6, 0];
}

/// Authentication protocol (HMAC with the named hash).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthProtocol {
    /// HMAC-MD5-96
    Md5,
    /// HMAC-SHA-96
    Sha1,
    /// HMAC-SHA-224-128
    Sha224,
    /// HMAC-SHA-256-192
    Sha256,
    /// HMAC-SHA-384-256
    Sha384,
    /// HMAC-SHA-512-384
    Sha512,
}

impl AuthProtocol {
    /// Number of MAC octets carried in msgAuthenticationParameters.
    pub fn mac_len(self) -> usize {
        match self {
            AuthProtocol::Md5 | AuthProtocol::Sha1 => 12,
            AuthProtocol::Sha224 => 16,
            AuthProtocol::Sha256 => 24,
            AuthProtocol::Sha384 => 32,
            AuthProtocol::Sha512 => 48,
        }
    }

    fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        fn h<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            AuthProtocol::Md5 => h::<md5::Md5>(parts),
            AuthProtocol::Sha1 => h::<sha1::Sha1>(parts),
            AuthProtocol::Sha224 => h::<sha2::Sha224>(parts),
            AuthProtocol::Sha256 => h::<sha2::Sha256>(parts),
            AuthProtocol::Sha384 => h::<sha2::Sha384>(parts),
            AuthProtocol::Sha512 => h::<sha2::Sha512>(parts),
        }
    }

    /// Turns a password into the master key Ku (RFC 3414 A.2: hash of 1 MiB of the
    /// repeated password). Costly, so callers cache it.
    pub fn password_to_key(self, password: &[u8]) -> Vec<u8> {
        fn h<D: Digest>(password: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            if password.is_empty() {
                return d.finalize().to_vec();
            }
            let mut block = [0u8; 64];
            let mut idx = 0;
            for _ in 0..(1_048_576 / 64) {
                for b in &mut block {
                    *b = password[idx];
                    idx = (idx + 1) % password.len();
                }
                d.update(block);
            }
            d.finalize().to_vec()
        }
        match self {
            AuthProtocol::Md5 => h::<md5::Md5>(password),
            AuthProtocol::Sha1 => h::<sha1::Sha1>(password),
            AuthProtocol::Sha224 => h::<sha2::Sha224>(password),
            AuthProtocol::Sha256 => h::<sha2::Sha256>(password),
            AuthProtocol::Sha384 => h::<sha2::Sha384>(password),
            AuthProtocol::Sha512 => h::<sha2::Sha512>(password),
        }
    }

    /// Localizes a master key to an engine: H(Ku || engineID || Ku).
    pub fn localize(self, ku: &[u8], engine_id: &[u8]) -> Vec<u8> {
        self.hash(&[ku, engine_id, ku])
    }

    /// Computes the truncated HMAC of `msg` with key `kul`.
    pub fn mac(self, kul: &[u8], msg: &[u8]) -> Vec<u8> {
        fn m<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC takes any key length");
            mac.update(msg);
            mac.finalize().into_bytes().to_vec()
        }
        let mut full = match self {
            AuthProtocol::Md5 => m::<Hmac<md5::Md5>>(kul, msg),
            AuthProtocol::Sha1 => m::<Hmac<sha1::Sha1>>(kul, msg),
            AuthProtocol::Sha224 => m::<Hmac<sha2::Sha224>>(kul, msg),
            AuthProtocol::Sha256 => m::<Hmac<sha2::Sha256>>(kul, msg),
            AuthProtocol::Sha384 => m::<Hmac<sha2::Sha384>>(kul, msg),
            AuthProtocol::Sha512 => m::<Hmac<sha2::Sha512>>(kul, msg),
        };
        full.truncate(self.mac_len());
        full
    }
}

impl FromStr for AuthProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().replace('-', "").as_str() {
            "md5" => AuthProtocol::Md5,
            "sha" | "sha1" => AuthProtocol::Sha1,
            "sha224" => AuthProtocol::Sha224,
            "sha256" => AuthProtocol::Sha256,
            "sha384" => AuthProtocol::Sha384,
            "sha512" => AuthProtocol::Sha512,
            _ => {
                return Err(format!(
                    "unknown auth protocol {s:?} (md5, sha1, sha224, sha256, sha384, sha512)"
                ));
            }
        })
    }
}

impl fmt::Display for AuthProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthProtocol::Md5 => "MD5",
            AuthProtocol::Sha1 => "SHA-1",
            AuthProtocol::Sha224 => "SHA-224",
            AuthProtocol::Sha256 => "SHA-256",
            AuthProtocol::Sha384 => "SHA-384",
            AuthProtocol::Sha512 => "SHA-512",
        })
    }
}

/// Privacy protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrivProtocol {
    /// CBC-DES (RFC 3414 §8)
    Des,
    /// CFB128-AES-128 (RFC 3826)
    Aes128,
    /// CFB128-AES-192 (key extension needed with short hashes)
    Aes192,
    /// CFB128-AES-256 (key extension needed with short hashes)
    Aes256,
}

impl PrivProtocol {
    fn key_len(self) -> usize {
        match self {
            PrivProtocol::Des | PrivProtocol::Aes128 => 16, // DES: 8 key + 8 pre-IV
            PrivProtocol::Aes192 => 24,
            PrivProtocol::Aes256 => 32,
        }
    }
}

impl FromStr for PrivProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().replace('-', "").as_str() {
            "des" => PrivProtocol::Des,
            "aes" | "aes128" => PrivProtocol::Aes128,
            "aes192" => PrivProtocol::Aes192,
            "aes256" => PrivProtocol::Aes256,
            _ => {
                return Err(format!(
                    "unknown privacy protocol {s:?} (des, aes128, aes192, aes256)"
                ));
            }
        })
    }
}

impl fmt::Display for PrivProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PrivProtocol::Des => "DES",
            PrivProtocol::Aes128 => "AES-128",
            PrivProtocol::Aes192 => "AES-192",
            PrivProtocol::Aes256 => "AES-256",
        })
    }
}

/// How a privacy key shorter than the cipher needs is extended (AES-192/256 with MD5/SHA-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyExtension {
    /// draft-blumenthal-aes-usm-04, what net-snmp uses.
    #[default]
    Blumenthal,
    /// draft-reeder-snmpv3-usm-3desede, used by some Cisco devices.
    Reeder,
}

impl FromStr for KeyExtension {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "blumenthal" => Ok(KeyExtension::Blumenthal),
            "reeder" => Ok(KeyExtension::Reeder),
            _ => Err(format!("unknown key extension {s:?} (blumenthal, reeder)")),
        }
    }
}

/// Keys of one user localized to one authoritative engine.
#[derive(Clone)]
pub struct LocalizedKeys {
    /// Authentication protocol and key, when the user authenticates.
    pub auth: Option<(AuthProtocol, Vec<u8>)>,
    /// Privacy protocol and key, when the user encrypts.
    pub privacy: Option<(PrivProtocol, Vec<u8>)>,
}

impl fmt::Debug for LocalizedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalizedKeys")
            .field("auth", &self.auth.as_ref().map(|a| a.0))
            .field("privacy", &self.privacy.as_ref().map(|p| p.0))
            .finish()
    }
}

/// Master keys (Ku) of one user, derived once from the passwords and localized per engine.
#[derive(Clone)]
pub struct MasterKeys {
    auth: Option<(AuthProtocol, Vec<u8>)>,
    privacy: Option<(PrivProtocol, Vec<u8>)>,
    extension: KeyExtension,
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKeys(<redacted>)")
    }
}

impl MasterKeys {
    /// Derives master keys from passwords (the expensive 1 MiB hashing, done once per user).
    pub fn derive(
        auth: Option<(AuthProtocol, &[u8])>,
        privacy: Option<(PrivProtocol, &[u8])>,
        extension: KeyExtension,
    ) -> Self {
        let auth_ku = auth.map(|(p, pw)| (p, p.password_to_key(pw)));
        // Privacy keys are derived with the authentication hash (RFC 3414 §2.6).
        let priv_ku = match (auth, privacy) {
            (Some((ap, _)), Some((pp, pw))) => Some((pp, ap.password_to_key(pw))),
            _ => None,
        };
        MasterKeys {
            auth: auth_ku,
            privacy: priv_ku,
            extension,
        }
    }

    /// Localizes the keys to `engine_id`.
    pub fn localize(&self, engine_id: &[u8]) -> LocalizedKeys {
        let auth = self
            .auth
            .as_ref()
            .map(|(p, ku)| (*p, p.localize(ku, engine_id)));
        let privacy = match (&self.auth, &self.privacy) {
            (Some((ap, _)), Some((pp, ku))) => {
                let mut kul = ap.localize(ku, engine_id);
                let need = pp.key_len();
                while kul.len() < need {
                    let more = match self.extension {
                        KeyExtension::Blumenthal => ap.hash(&[&kul]),
                        KeyExtension::Reeder => ap.localize(&ap.password_to_key(&kul), engine_id),
                    };
                    let take = (need - kul.len()).min(more.len());
                    kul.extend_from_slice(&more[..take]);
                }
                Some((*pp, kul))
            }
            _ => None,
        };
        LocalizedKeys { auth, privacy }
    }
}

type DesCbcEnc = cbc::Encryptor<des::Des>;
type DesCbcDec = cbc::Decryptor<des::Des>;

/// Encrypts a scoped PDU; returns (ciphertext, msgPrivacyParameters).
///
/// `salt` must never repeat for one key: callers pass a per-process counter.
pub fn encrypt(
    proto: PrivProtocol,
    key: &[u8],
    boots: u32,
    time: u32,
    salt: u64,
    plain: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    match proto {
        PrivProtocol::Des => {
            let mut params = [0u8; 8];
            params[..4].copy_from_slice(&boots.to_be_bytes());
            params[4..].copy_from_slice(&(salt as u32).to_be_bytes());
            let mut iv = [0u8; 8];
            for i in 0..8 {
                iv[i] = key[8 + i] ^ params[i];
            }
            let mut buf = plain.to_vec();
            let padded = buf.len().div_ceil(8) * 8;
            buf.resize(padded, 0);
            let mut enc = DesCbcEnc::new_from_slices(&key[..8], &iv).expect("DES key is 8 bytes");
            for block in buf.chunks_exact_mut(8) {
                enc.encrypt_block_mut(block.into());
            }
            (buf, params.to_vec())
        }
        PrivProtocol::Aes128 | PrivProtocol::Aes192 | PrivProtocol::Aes256 => {
            let params = salt.to_be_bytes();
            let iv = aes_iv(boots, time, &params);
            let mut buf = plain.to_vec();
            aes_cfb(proto, key, &iv, &mut buf, true);
            (buf, params.to_vec())
        }
    }
}

/// Decrypts an encrypted scoped PDU.
///
/// # Errors
/// Returns a message when the privacy parameters or ciphertext length are invalid.
pub fn decrypt(
    proto: PrivProtocol,
    key: &[u8],
    boots: u32,
    time: u32,
    params: &[u8],
    cipher: &[u8],
) -> Result<Vec<u8>, &'static str> {
    if params.len() != 8 {
        return Err("privacy parameters are not 8 octets");
    }
    match proto {
        PrivProtocol::Des => {
            if !cipher.len().is_multiple_of(8) {
                return Err("DES ciphertext is not a multiple of 8 octets");
            }
            let mut iv = [0u8; 8];
            for i in 0..8 {
                iv[i] = key[8 + i] ^ params[i];
            }
            let mut buf = cipher.to_vec();
            let mut dec = DesCbcDec::new_from_slices(&key[..8], &iv).expect("DES key is 8 bytes");
            for block in buf.chunks_exact_mut(8) {
                dec.decrypt_block_mut(block.into());
            }
            Ok(buf)
        }
        _ => {
            let iv = aes_iv(boots, time, params);
            let mut buf = cipher.to_vec();
            aes_cfb(proto, key, &iv, &mut buf, false);
            Ok(buf)
        }
    }
}

fn aes_iv(boots: u32, time: u32, salt: &[u8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&boots.to_be_bytes());
    iv[4..8].copy_from_slice(&time.to_be_bytes());
    iv[8..].copy_from_slice(&salt[..8]);
    iv
}

fn aes_cfb(proto: PrivProtocol, key: &[u8], iv: &[u8; 16], buf: &mut [u8], enc: bool) {
    macro_rules! run {
        ($aes:ty, $n:expr) => {{
            if enc {
                cfb_mode::Encryptor::<$aes>::new_from_slices(&key[..$n], iv)
                    .expect("AES key length")
                    .encrypt(buf)
            } else {
                cfb_mode::Decryptor::<$aes>::new_from_slices(&key[..$n], iv)
                    .expect("AES key length")
                    .decrypt(buf)
            }
        }};
    }
    match proto {
        PrivProtocol::Aes128 => run!(aes::Aes128, 16),
        PrivProtocol::Aes192 => run!(aes::Aes192, 24),
        PrivProtocol::Aes256 => run!(aes::Aes256, 32),
        PrivProtocol::Des => unreachable!("DES uses CBC"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        ::hex::decode(s).unwrap()
    }

    // RFC 3414 A.3.1 / A.3.2 test vectors: password "maplesyrup", engine 000000000000000000000002.
    #[test]
    fn rfc3414_key_localization_vectors() {
        let engine = hex("000000000000000000000002");
        let ku = AuthProtocol::Md5.password_to_key(b"maplesyrup");
        assert_eq!(ku, hex("9faf3283884e92834ebc9847d8edd963"));
        assert_eq!(
            AuthProtocol::Md5.localize(&ku, &engine),
            hex("526f5eed9fcce26f8964c2930787d82b")
        );
        let ku = AuthProtocol::Sha1.password_to_key(b"maplesyrup");
        assert_eq!(ku, hex("9fb5cc0381497b3793528939ff788d5d79145211"));
        assert_eq!(
            AuthProtocol::Sha1.localize(&ku, &engine),
            hex("6695febc9288e36282235fc7151f128497b38f3f")
        );
    }

    #[test]
    fn privacy_round_trips_for_every_cipher() {
        let plain = b"scoped pdu bytes of odd length!".to_vec();
        for (ap, pp) in [
            (AuthProtocol::Md5, PrivProtocol::Des),
            (AuthProtocol::Sha1, PrivProtocol::Aes128),
            (AuthProtocol::Sha1, PrivProtocol::Aes256),
            (AuthProtocol::Sha256, PrivProtocol::Aes192),
            (AuthProtocol::Sha512, PrivProtocol::Aes256),
        ] {
            for ext in [KeyExtension::Blumenthal, KeyExtension::Reeder] {
                let mk =
                    MasterKeys::derive(Some((ap, b"authpass123")), Some((pp, b"privpass123")), ext);
                let keys = mk.localize(b"\x80\x00\x1f\x88\x04engine");
                let (_, k) = keys.privacy.clone().unwrap();
                assert!(k.len() >= pp.key_len());
                let (c, params) = encrypt(pp, &k, 3, 1234, 99, &plain);
                assert_ne!(&c[..plain.len()], &plain[..]);
                let back = decrypt(pp, &k, 3, 1234, &params, &c).unwrap();
                assert_eq!(&back[..plain.len()], &plain[..]);
            }
        }
    }

    #[test]
    fn key_extension_methods_differ() {
        let b = MasterKeys::derive(
            Some((AuthProtocol::Sha1, b"a1234567")),
            Some((PrivProtocol::Aes256, b"p1234567")),
            KeyExtension::Blumenthal,
        )
        .localize(b"eng");
        let r = MasterKeys::derive(
            Some((AuthProtocol::Sha1, b"a1234567")),
            Some((PrivProtocol::Aes256, b"p1234567")),
            KeyExtension::Reeder,
        )
        .localize(b"eng");
        let (bk, rk) = (b.privacy.unwrap().1, r.privacy.unwrap().1);
        assert_eq!(bk[..20], rk[..20]);
        assert_ne!(bk[20..], rk[20..]);
    }

    #[test]
    fn mac_lengths_follow_rfc7860() {
        for (p, n) in [
            (AuthProtocol::Md5, 12),
            (AuthProtocol::Sha256, 24),
            (AuthProtocol::Sha512, 48),
        ] {
            assert_eq!(p.mac(b"k", b"msg").len(), n);
        }
    }
}
