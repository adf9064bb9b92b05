//! Secrets of the agent and the reference cloud, kept out of sight.
//!
//! # Modules
//! - this file: [`Secret`], a string that never shows in `Debug`, `Display` or serialized
//!   output; [`random_bytes`] and [`random_token`] from the OS's cryptographic source.
//! - [`owner_only`]: files and directories readable by the running account only (mode
//!   0600/0700 on Unix, an ACL without inherited entries on Windows), and the one writer
//!   for such files.
//! - [`machine_bound`]: key files wrapped with DPAPI (machine scope) on Windows, so a
//!   copied state directory does not carry its key to another host.

pub mod machine_bound;
pub mod owner_only;

use std::fmt;

/// A secret value (community, v3 pass phrase, token, password). Read it with
/// [`Secret::expose`]; every other way of printing it yields `<redacted>`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// Returns the secret text; call only where the value must really be used.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Tells whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Fills `buf` from the operating system's cryptographic random source (keys, nonces,
/// tokens, activation codes: never a fast non-cryptographic generator).
///
/// # Panics
/// When the OS has no random source at all (nothing safe can be done without one).
pub fn random_bytes(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random source is unavailable");
}

/// `n` × 64 random bits as lowercase hex (tokens, identifiers, activation codes).
pub fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n * 8];
    random_bytes(&mut b);
    hex::encode(b)
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Serde helpers that write the value itself, for the one place it must travel: the wire
/// document sent to the party the secret belongs to (`#[serde(with = "…::exposed")]`).
/// `Debug`, `Display` and every other serialization still print `<redacted>`.
pub mod exposed {
    use super::Secret;

    /// Writes the secret's value.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: serde::Serializer>(v: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.expose())
    }

    /// Reads a secret (as `Secret`'s own `Deserialize`).
    ///
    /// # Errors
    /// Not a string.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        serde::Deserialize::deserialize(d)
    }

    /// The same for an optional secret.
    pub mod option {
        use super::Secret;

        /// Writes the value, or `null`.
        ///
        /// # Errors
        /// The serializer's.
        pub fn serialize<S: serde::Serializer>(
            v: &Option<Secret>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match v {
                Some(x) => s.serialize_some(x.expose()),
                None => s.serialize_none(),
            }
        }

        /// Reads an optional secret.
        ///
        /// # Errors
        /// Not a string or null.
        pub fn deserialize<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Secret>, D::Error> {
            serde::Deserialize::deserialize(d)
        }
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("hunter2-community");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert_eq!(s.expose(), "hunter2-community");
    }

    #[test]
    fn exposed_writes_the_value_only_where_asked() {
        #[derive(serde::Serialize, Debug)]
        struct Wire {
            #[serde(with = "crate::exposed")]
            token: Secret,
            #[serde(with = "crate::exposed::option")]
            pass: Option<Secret>,
            other: Secret,
        }
        let w = Wire {
            token: Secret::new("t0k"),
            pass: Some(Secret::new("p4ss")),
            other: Secret::new("hidden"),
        };
        assert_eq!(
            serde_json::to_string(&w).unwrap(),
            r#"{"token":"t0k","pass":"p4ss","other":"<redacted>"}"#
        );
        let d = format!("{w:?}");
        assert!(!d.contains("t0k") && !d.contains("p4ss"), "{d}");
    }

    #[test]
    fn tokens_are_hex_and_differ() {
        let (a, b) = (random_token(2), random_token(2));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
