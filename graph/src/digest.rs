//! The [`Digest`] newtype: `sha256:<64 lowercase hex>`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::str::FromStr;

/// A content digest in OCI form, `sha256:<hex>`. Only sha256 is supported.
///
/// The raw 32 bytes are stored inline (no heap allocation), so cloning,
/// comparing and hashing a digest is cheap; the order is that of the hex
/// strings.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    raw: [u8; 32],
}

/// The 64 lowercase hex digits of a [`Digest`], on the stack. Derefs to
/// `str` and can be joined to a path directly.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex([u8; 64]);

impl std::ops::Deref for Hex {
    type Target = str;
    fn deref(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl AsRef<std::path::Path> for Hex {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&**self)
    }
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl PartialEq<&str> for Hex {
    fn eq(&self, other: &&str) -> bool {
        **self == **other
    }
}

const PREFIX: &str = "sha256:";

/// A string that is not a valid sha256 digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
pub struct DigestError(pub String);

impl Digest {
    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        Self::from_sha256(Sha256::digest(bytes).into())
    }

    /// A digest from a raw 32-byte sha256 value.
    pub fn from_sha256(raw: [u8; 32]) -> Self {
        Self { raw }
    }

    /// The 64 hex digits, without the algorithm prefix.
    pub fn hex(&self) -> Hex {
        let mut hex = [0u8; 64];
        // 32 bytes always fit 64 hex digits.
        let _ = hex::encode_to_slice(self.raw, &mut hex);
        Hex(hex)
    }

    /// `sha256:<hex>` in a stack buffer.
    fn full(&self) -> [u8; 71] {
        let mut out = [0u8; 71];
        out[..7].copy_from_slice(PREFIX.as_bytes());
        out[7..].copy_from_slice(&self.hex().0);
        out
    }

    /// The algorithm name (always `sha256`).
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    /// A short form for progress output: the first 12 hex digits.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix(PREFIX)
            .ok_or_else(|| DigestError(s.to_string()))?;
        // hex also takes upper case; OCI digests are lower case only.
        if hex.len() != 64 || hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(DigestError(s.to_string()));
        }
        let mut raw = [0u8; 32];
        hex::decode_to_slice(hex, &mut raw).map_err(|_| DigestError(s.to_string()))?;
        Ok(Self { raw })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let full = self.full();
        s.serialize_str(std::str::from_utf8(&full).unwrap_or_default())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
