//! API keys: `Authorization: Bearer KEY` → sha256 hex of the key → the store's key record and
//! tenant. Only the hash is ever stored or compared; the key itself never leaves this
//! request. Roles are ordered `ingest < grader < admin`; a route states the least role it
//! needs with [`Caller::require`].
//!
//! Lookups are cached in-process for `service.auth_cache_secs` (hits only: a key created a
//! moment ago works at once), so the 202 paths cost one database transaction, not two.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use super::{ApiError, Ctx};
use crate::store::{ApiKeyRecord, Role, Tenant};

/// Cached entries above this count are dropped wholesale (a crude bound against a flood of
/// distinct keys; real keys are few).
const MAX_ENTRIES: usize = 10_000;

/// A small time-to-live map for lookups that are read on every request.
pub struct TtlCache<V> {
    ttl: Duration,
    map: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl: Duration) -> TtlCache<V> {
        TtlCache {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    pub fn insert(&self, key: String, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key, (Instant::now(), value));
    }
}

/// sha256 hex of an API key: what the store keeps and looks keys up by.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The authenticated caller of a request: its key and tenant. Extracting it authenticates the
/// request (401 otherwise); it is also put in the request extensions for later layers.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: ApiKeyRecord,
    pub tenant: Tenant,
}

impl Caller {
    pub fn role(&self) -> Role {
        self.key.role
    }

    /// 403 unless the key's role is at least `needed`.
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if self.key.role >= needed {
            Ok(())
        } else {
            Err(ApiError::forbidden(needed, self.key.role))
        }
    }

    /// The audit log's actor: `key:<key id>` (the id, never the key).
    pub fn actor(&self) -> String {
        format!("key:{}", self.key.id)
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized("missing API key: send `Authorization: Bearer KEY`".into())
    })?;
    let value = value.to_str().map_err(|_| {
        ApiError::Unauthorized("the Authorization header is not printable ASCII".into())
    })?;
    let (scheme, key) = value.trim().split_once(' ').ok_or_else(|| {
        ApiError::Unauthorized("the Authorization header must be `Bearer KEY`".into())
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthorized(
            "the Authorization header must use the Bearer scheme".into(),
        ));
    }
    let key = key.trim();
    if key.is_empty() || key.len() > 512 {
        return Err(ApiError::Unauthorized("invalid API key".into()));
    }
    Ok(key)
}

impl FromRequestParts<Arc<Ctx>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<Ctx>) -> Result<Self, ApiError> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        let hash = key_hash(bearer(parts)?);
        let (key, tenant) = match ctx.keys.get(&hash) {
            Some(hit) => hit,
            None => {
                let found = ctx
                    .app
                    .store
                    .api_key_by_hash(&hash)
                    .await?
                    .ok_or_else(|| ApiError::Unauthorized("invalid API key".into()))?;
                ctx.keys.insert(hash, found.clone());
                found
            }
        };
        let caller = Caller { key, tenant };
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_sha256_hex() {
        assert_eq!(
            key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn ttl_cache_expires_and_zero_disables() {
        let c = TtlCache::new(Duration::from_millis(30));
        c.insert("a".into(), 1);
        assert_eq!(c.get("a"), Some(1));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.get("a"), None);
        let off = TtlCache::new(Duration::ZERO);
        off.insert("a".into(), 1);
        assert_eq!(off.get("a"), None);
    }
}
