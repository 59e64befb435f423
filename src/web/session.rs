//! The review UI's session: a signed cookie, the [`Session`] extractor, and CSRF tokens.
//!
//! A person logs in with a grader- (or admin-) role API key and their name. The cookie
//! `grader_session` then carries, signed with HMAC-SHA256, the key's sha256 (never the key),
//! the name, an expiry and a random CSRF token. Nothing is kept server-side, so any replica
//! that has the same `service.session_secret` accepts it; each request still looks the key up
//! (cached like the API's lookups), so deleting a key ends its sessions within
//! `service.auth_cache_secs`.
//!
//! CSRF: every form carries the session's token in a hidden `csrf_token` field and every POST
//! handler compares it (constant time) before touching anything. The login form has no
//! session yet, so it uses a double-submit cookie (`grader_login_csrf`, set by the login
//! page and compared with the form's field). All cookies are `HttpOnly`, `SameSite=Strict`,
//! `Path=/ui`, and `Secure` when `service.cookie_secure` is on.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::COOKIE;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::error::WebError;
use super::WebState;
use crate::http::auth::{Caller, TtlCache};
use crate::store::{ApiKeyRecord, Role, Tenant};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "grader_session";
/// The login form's double-submit CSRF cookie.
pub const LOGIN_CSRF_COOKIE: &str = "grader_login_csrf";
/// The hidden form field every POST form carries.
pub const CSRF_FIELD: &str = "csrf_token";

/// Longest accepted person name (it becomes the rater of every grade).
pub const MAX_NAME_CHARS: usize = 100;

/// Signs and checks session tokens; holds the per-process or configured secret.
pub struct SessionKeys {
    secret: Vec<u8>,
    ttl: Duration,
    secure: bool,
    /// key hash → (key, tenant), hits only, like the API's cache.
    keys: TtlCache<(ApiKeyRecord, Tenant)>,
}

/// What the cookie carries (signed, not encrypted: nothing in it is secret from its holder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Claims {
    /// sha256 hex of the API key.
    k: String,
    /// The person's name.
    n: String,
    /// Expiry, Unix seconds.
    e: i64,
    /// CSRF token.
    c: String,
}

/// A random URL-safe token of 32 bytes.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Constant-time equality of two tokens (length is not secret).
pub fn tokens_match(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl SessionKeys {
    /// `secret`: the configured `service.session_secret`, else a random one for this process.
    pub fn new(
        secret: Option<&str>,
        ttl: Duration,
        secure: bool,
        cache_ttl: Duration,
    ) -> SessionKeys {
        let secret = match secret {
            Some(s) => s.as_bytes().to_vec(),
            None => {
                let mut bytes = vec![0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                bytes
            }
        };
        SessionKeys {
            secret,
            ttl,
            secure,
            keys: TtlCache::new(cache_ttl),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
    }

    /// A signed token for `claims`: `base64url(json).base64url(hmac)`.
    fn sign(&self, claims: &Claims) -> String {
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let body = URL_SAFE_NO_PAD.encode(json);
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{body}.{sig}")
    }

    /// The claims of a token whose signature is ours and that has not expired.
    fn verify(&self, token: &str, now: i64) -> Option<Claims> {
        let (body, sig) = token.split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&sig).ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        (claims.e > now).then_some(claims)
    }

    /// A new session's cookie value and its CSRF token.
    pub fn issue(&self, key_hash: &str, name: &str) -> (String, String) {
        let csrf = random_token();
        let exp = chrono::Utc::now().timestamp() + self.ttl.as_secs() as i64;
        let token = self.sign(&Claims {
            k: key_hash.to_string(),
            n: name.to_string(),
            e: exp,
            c: csrf.clone(),
        });
        (token, csrf)
    }

    /// `Set-Cookie` value for `name=value` with our attributes; `max_age` 0 deletes it.
    pub fn cookie(&self, name: &str, value: &str, max_age: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
    }

    /// The session cookie for a fresh login.
    pub fn session_cookie(&self, token: &str) -> String {
        self.cookie(SESSION_COOKIE, token, self.ttl.as_secs())
    }
}

/// The value of cookie `name` in the request's `Cookie` header(s).
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}

/// A logged-in person: the tenant and key they logged in with, their name (the rater of
/// their grades), and the session's CSRF token for the forms they are shown.
#[derive(Debug, Clone)]
pub struct Session {
    pub tenant: Tenant,
    pub key: ApiKeyRecord,
    pub name: String,
    pub csrf: String,
}

impl Session {
    /// The API's view of this person's key, for the audit helpers shared with `http`.
    pub fn caller(&self) -> Caller {
        Caller {
            key: self.key.clone(),
            tenant: self.tenant.clone(),
        }
    }

    /// Blind review is on unless the tenant turned it off (`blind_review = false`).
    pub fn blind(&self) -> bool {
        self.tenant.settings.blind_review != Some(false)
    }

    /// 403 unless the form's `csrf_token` is this session's.
    pub fn check_csrf(&self, fields: &[(String, String)]) -> Result<(), WebError> {
        let sent = fields
            .iter()
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        if tokens_match(sent, &self.csrf) {
            Ok(())
        } else {
            Err(WebError::Csrf)
        }
    }
}

/// Looks up a key by its hash through the session cache; `None` for an unknown key.
pub async fn lookup_key(
    state: &WebState,
    hash: &str,
) -> Result<Option<(ApiKeyRecord, Tenant)>, WebError> {
    if let Some(hit) = state.sessions.keys.get(hash) {
        return Ok(Some(hit));
    }
    let found = state.app.store.api_key_by_hash(hash).await?;
    if let Some(f) = &found {
        state.sessions.keys.insert(hash.to_string(), f.clone());
    }
    Ok(found)
}

/// The least role that may use the review UI.
pub const UI_ROLE: Role = Role::Grader;

impl FromRequestParts<Arc<WebState>> for Session {
    /// Any failure sends the browser to the login page (303).
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<WebState>,
    ) -> Result<Self, WebError> {
        if let Some(s) = parts.extensions.get::<Session>() {
            return Ok(s.clone());
        }
        let token = cookie_value(&parts.headers, SESSION_COOKIE).ok_or(WebError::LoginRequired)?;
        let claims = state
            .sessions
            .verify(&token, chrono::Utc::now().timestamp())
            .ok_or(WebError::LoginRequired)?;
        let (key, tenant) = lookup_key(state, &claims.k)
            .await?
            .ok_or(WebError::LoginRequired)?;
        if key.role < UI_ROLE {
            return Err(WebError::LoginRequired);
        }
        let session = Session {
            tenant,
            key,
            name: claims.n,
            csrf: claims.c,
        };
        parts.extensions.insert(session.clone());
        Ok(session)
    }
}

/// `Option<Session>`: pages that also show to a person who is not logged in (error pages).
impl axum::extract::OptionalFromRequestParts<Arc<WebState>> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<WebState>,
    ) -> Result<Option<Self>, std::convert::Infallible> {
        Ok(
            <Session as FromRequestParts<Arc<WebState>>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> SessionKeys {
        SessionKeys::new(Some(secret), Duration::from_secs(60), false, Duration::ZERO)
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering_other_keys_and_expiry() {
        let k = keys("0123456789abcdef0123456789abcdef");
        let (token, csrf) = k.issue("hash", "Ada Lovelace");
        let now = chrono::Utc::now().timestamp();
        let claims = k.verify(&token, now).expect("valid token");
        assert_eq!(claims.k, "hash");
        assert_eq!(claims.n, "Ada Lovelace");
        assert_eq!(claims.c, csrf);
        // Expired: the same token checked after its expiry.
        assert!(k.verify(&token, now + 61).is_none());
        // Another secret does not accept it.
        assert!(keys("another-secret-another-secret-xx")
            .verify(&token, now)
            .is_none());
        // A changed name with the old signature is refused.
        let (_, sig) = token.split_once('.').unwrap();
        let forged_body = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                k: "hash".into(),
                n: "Mallory".into(),
                e: now + 60,
                c: csrf.clone(),
            })
            .unwrap(),
        );
        assert!(k.verify(&format!("{forged_body}.{sig}"), now).is_none());
        assert!(k.verify("garbage", now).is_none());
        assert!(k.verify("a.b", now).is_none());
    }

    #[test]
    fn cookies_are_parsed_and_built_with_attributes() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1; grader_session=tok.sig".parse().unwrap());
        h.append(COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie_value(&h, SESSION_COOKIE).as_deref(), Some("tok.sig"));
        assert_eq!(cookie_value(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie_value(&h, "c"), None);
        let c = keys("0123456789abcdef0123456789abcdef").session_cookie("v");
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/ui"));
        assert!(!c.contains("Secure"));
        let secure = SessionKeys::new(None, Duration::from_secs(5), true, Duration::ZERO);
        assert!(secure.session_cookie("v").ends_with("; Secure"));
    }

    #[test]
    fn token_comparison_needs_equal_nonempty_tokens() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("", ""));
        assert!(!tokens_match("ab", "abc"));
    }
}
