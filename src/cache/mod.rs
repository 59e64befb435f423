//! The response cache: validated judgments keyed by everything that produced them, so a
//! rerun (an eval in CI, a redelivered webhook, a restart) pays nothing when nothing changed.
//!
//! The key covers the prompt version's sha256 (so any prompt edit misses), the model, every
//! sampling parameter, the sample index, and the normalized (later: redacted) input. Only
//! judgments that passed validation are stored: a cached answer is always a usable one.
//!
//! Layers: [`ResponseCache`] (in `tiered`) is the in-process L1 (moka, weighed by bytes, with
//! single-flight so N concurrent identical calls make one) in front of an L2
//! [`JudgmentCache`], normally [`StoreCache`] over the store's `response_cache` table.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::Store;

pub mod tiered;

pub use tiered::{Computed, Flight, ResponseCache, Shared, TieredSettings};

/// Everything about one model call that can change its answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheKeyParts<'a> {
    pub prompt_sha256: &'a str,
    pub model: &'a str,
    pub temperature: f32,
    pub seed: Option<i64>,
    pub max_tokens: u32,
    pub sample_index: u32,
    pub question: Option<&'a str>,
    pub transcript: &'a str,
}

impl CacheKeyParts<'_> {
    /// sha256 over a canonical JSON encoding: unambiguous (no delimiter games between fields)
    /// and stable across releases as long as the field list is.
    ///
    /// The JSON is streamed into the hash rather than built first: the transcript is most of
    /// it, and a grading would otherwise hold a second escaped copy of it just to hash it.
    pub fn key(&self) -> String {
        let mut h = HashWriter(Sha256::new());
        h.0.update(b"grader-cache-v1\n");
        // Serializing these fields cannot fail, and the writer never fails.
        let _ = serde_json::to_writer(&mut h, self);
        hex::encode(h.0.finalize())
    }
}

/// Feeds written bytes to a sha256.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A cached, validated judgment with what the provider reported when it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedJudgment {
    pub judgment: crate::judge::Judgment,
    pub model: String,
    pub repairs: u32,
}

/// A purge that could not be done (the L2's store failed).
#[derive(Debug, thiserror::Error)]
#[error("cannot purge the response cache: {0}")]
pub struct PurgeError(pub String);

/// A layer of the response cache. `get` and `put` never fail a grading: a broken cache is a
/// miss (implementations log). Purging is an operator action, so its failure is reported.
#[async_trait]
pub trait JudgmentCache: Send + Sync {
    async fn get(&self, key: &str) -> Option<CachedJudgment>;
    async fn put(&self, key: &str, prompt_sha256: &str, value: &CachedJudgment);
    /// Deletes every entry of one prompt version (by its sha256); returns how many. The
    /// default suits caches that cannot enumerate by prompt (they only ever miss on a new
    /// version anyway, since the sha256 is part of every key).
    async fn purge_prompt(&self, _prompt_sha256: &str) -> Result<u64, PurgeError> {
        Ok(0)
    }
}

/// L2: the store's content-addressed `response_cache` table, shared by every replica.
/// Cache errors are logged and treated as misses: a cache must never fail a grading.
pub struct StoreCache {
    store: Arc<dyn Store>,
}

impl StoreCache {
    pub fn new(store: Arc<dyn Store>) -> StoreCache {
        StoreCache { store }
    }
}

#[async_trait]
impl JudgmentCache for StoreCache {
    async fn get(&self, key: &str) -> Option<CachedJudgment> {
        match self.store.cache_get(key).await {
            Ok(Some(text)) => serde_json::from_str(&text)
                .map_err(|e| tracing::warn!(key, error = %e, "unreadable cache entry ignored"))
                .ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(key, error = %e, "cache read failed; treating as a miss");
                None
            }
        }
    }

    async fn put(&self, key: &str, prompt_sha256: &str, value: &CachedJudgment) {
        let Ok(text) = serde_json::to_string(value) else {
            return;
        };
        if let Err(e) = self
            .store
            .cache_put(key, prompt_sha256, &value.model, &text)
            .await
        {
            tracing::warn!(key, error = %e, "cache write failed");
        }
    }

    async fn purge_prompt(&self, prompt_sha256: &str) -> Result<u64, PurgeError> {
        self.store
            .cache_purge_prompt(prompt_sha256)
            .await
            .map_err(|e| PurgeError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> CacheKeyParts<'static> {
        CacheKeyParts {
            prompt_sha256: "abc",
            model: "m",
            temperature: 0.0,
            seed: Some(1),
            max_tokens: 100,
            sample_index: 0,
            question: None,
            transcript: "Candidate: hi\n",
        }
    }

    /// Streaming the JSON into the hash must give the key the stored L2 rows were written
    /// under: sha256 of the prefix and the whole canonical JSON.
    #[test]
    fn streamed_key_equals_hash_of_the_canonical_json() {
        let p = parts();
        let mut h = Sha256::new();
        h.update(b"grader-cache-v1\n");
        h.update(serde_json::to_vec(&p).expect("json"));
        assert_eq!(p.key(), hex::encode(h.finalize()));
    }

    #[test]
    fn every_part_changes_the_key() {
        let base = parts().key();
        assert_eq!(base, parts().key(), "deterministic");
        let variants = [
            CacheKeyParts {
                prompt_sha256: "abd",
                ..parts()
            },
            CacheKeyParts {
                model: "n",
                ..parts()
            },
            CacheKeyParts {
                temperature: 0.5,
                ..parts()
            },
            CacheKeyParts {
                seed: Some(2),
                ..parts()
            },
            CacheKeyParts {
                max_tokens: 101,
                ..parts()
            },
            CacheKeyParts {
                sample_index: 1,
                ..parts()
            },
            CacheKeyParts {
                question: Some("q"),
                ..parts()
            },
            CacheKeyParts {
                transcript: "Candidate: hi!\n",
                ..parts()
            },
        ];
        for v in variants {
            assert_ne!(v.key(), base, "{v:?}");
        }
    }
}
