//! The cryptography every source shares: HMAC-SHA256 over exact bytes, constant-time
//! comparison, and the Standard Webhooks signing scheme (also used to sign our own outgoing
//! result callbacks, see [`sign_standard`]).
//!
//! Every comparison of a computed MAC with a presented one goes through [`ct_eq`]
//! (`subtle::ConstantTimeEq`): no `==` on signatures, no early return on the first differing
//! byte. Presented signatures are *decoded* (hex / base64) and the raw 32-byte MACs compared,
//! so letter case in hex does not matter and nothing is compared as text.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The `whsec_` prefix Standard Webhooks secrets carry.
pub const STANDARD_SECRET_PREFIX: &str = "whsec_";

/// HMAC-SHA256 of the concatenation of `parts` (no separator is added) keyed by `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Lowercase hex HMAC-SHA256, the form Greenhouse, Ashby and Lever send.
pub fn hmac_sha256_hex(key: &[u8], parts: &[&[u8]]) -> String {
    hex::encode(hmac_sha256(key, parts))
}

/// Constant-time equality of two byte strings. Slices of different lengths are unequal (the
/// length is not secret: every MAC here is 32 bytes).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// Whether the hex string `presented` decodes to `expected`, compared in constant time.
/// `None` when `presented` is not hex at all (a malformed signature, not a wrong one).
pub(crate) fn hex_matches(expected: &[u8; 32], presented: &str) -> Option<bool> {
    let bytes = hex::decode(presented.trim()).ok()?;
    Some(ct_eq(expected, &bytes))
}

/// The HMAC key of a Standard Webhooks secret: the base64 decoding of the secret after the
/// `whsec_` prefix (the spec's form). A secret that is not valid base64 is used as its raw
/// UTF-8 bytes instead, the same way when signing and when verifying, so a tenant who set a
/// plain passphrase still gets consistent signatures; [`validate_standard_secret`] tells the
/// admin command whether a secret is in the spec's form.
pub fn standard_key(secret: &str) -> Vec<u8> {
    let body = secret
        .strip_prefix(STANDARD_SECRET_PREFIX)
        .unwrap_or(secret);
    match B64.decode(body.trim()) {
        Ok(key) if !key.is_empty() => key,
        _ => secret.as_bytes().to_vec(),
    }
}

/// Whether `secret` is a Standard Webhooks secret in the spec's form: optional `whsec_`
/// prefix, then base64 of 24 to 64 random bytes. For `grader admin webhook-secret set`.
pub fn validate_standard_secret(secret: &str) -> Result<(), String> {
    let body = secret
        .strip_prefix(STANDARD_SECRET_PREFIX)
        .unwrap_or(secret);
    match B64.decode(body.trim()) {
        Ok(key) if (24..=64).contains(&key.len()) => Ok(()),
        Ok(key) => Err(format!(
            "the secret decodes to {} bytes; Standard Webhooks secrets are 24 to 64 bytes",
            key.len()
        )),
        Err(e) => Err(format!(
            "the secret after `{STANDARD_SECRET_PREFIX}` is not valid base64 ({e})"
        )),
    }
}

/// The raw 32-byte Standard Webhooks MAC of `{id}.{timestamp}.{body}`.
pub(crate) fn standard_mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> [u8; 32] {
    hmac_sha256(
        key,
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    )
}

/// The Standard Webhooks signature of a message: the `v1,<base64>` entry of the
/// `webhook-signature` header, over `{id}.{timestamp}.{body}` with the HMAC-SHA256 key from
/// [`standard_key`]. `timestamp` is unix seconds, the same value sent as `webhook-timestamp`.
/// The result callback sender uses this to sign outgoing reports.
pub fn sign_standard(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = standard_mac(&standard_key(secret), id, &timestamp.to_string(), body);
    format!("v1,{}", B64.encode(mac))
}

/// Whether any `v1,<base64>` entry of a space-separated `webhook-signature` header value matches
/// `expected`. Every entry is compared (no early exit), each in constant time. Entries of other
/// versions (e.g. `v1a,` asymmetric signatures) are skipped. `Err` when the header holds no
/// decodable `v1` entry at all.
pub(crate) fn standard_header_matches(expected: &[u8; 32], header: &str) -> Result<bool, String> {
    let mut seen_v1 = false;
    let mut matched = subtle::Choice::from(0u8);
    for entry in header.split_whitespace() {
        let Some((version, sig)) = entry.split_once(',') else {
            continue;
        };
        if version != "v1" {
            continue;
        }
        let Ok(bytes) = B64.decode(sig) else {
            continue;
        };
        seen_v1 = true;
        matched |= expected.as_slice().ct_eq(bytes.as_slice());
    }
    if seen_v1 {
        Ok(bool::from(matched))
    } else {
        Err("no `v1,<base64>` entry in the webhook-signature header".to_string())
    }
}

/// Lowercase hex SHA-256 of `bytes` (delivery ids derived from a body).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ats_hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            hmac_sha256_hex(b"Jefe", &[b"what do ya want ", b"for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn ats_standard_key_decodes_whsec_and_falls_back() {
        assert_eq!(standard_key("whsec_aGVsbG8="), b"hello");
        assert_eq!(standard_key("aGVsbG8="), b"hello");
        assert_eq!(standard_key("not base64!"), b"not base64!");
        assert!(validate_standard_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(validate_standard_secret("whsec_aGVsbG8=").is_err());
        assert!(validate_standard_secret("whsec_***").is_err());
    }

    #[test]
    fn ats_hex_matches_is_case_insensitive_and_rejects_garbage() {
        let mac = hmac_sha256(b"k", &[b"body"]);
        let hex_lower = hex::encode(mac);
        assert_eq!(hex_matches(&mac, &hex_lower), Some(true));
        assert_eq!(hex_matches(&mac, &hex_lower.to_uppercase()), Some(true));
        assert_eq!(hex_matches(&mac, &hex_lower[..62]), Some(false));
        assert_eq!(hex_matches(&mac, "zz"), None);
    }

    #[test]
    fn ats_standard_header_checks_every_entry() {
        let mac = standard_mac(b"key", "id", "1", b"{}");
        let good = B64.encode(mac);
        let bad = B64.encode([0u8; 32]);
        assert_eq!(
            standard_header_matches(&mac, &format!("v1,{bad} v1,{good}")),
            Ok(true)
        );
        assert_eq!(
            standard_header_matches(&mac, &format!("v1a,{good} v1,{bad}")),
            Ok(false)
        );
        assert!(standard_header_matches(&mac, "v2,abc garbage").is_err());
    }
}
