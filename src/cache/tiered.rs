//! The two-level response cache with single-flight.
//!
//! L1 is an in-process moka cache weighed by bytes (a size bound that means something when
//! judgments vary from 1 to 20 KB) with a TTL; L2 is any [`JudgmentCache`], normally the
//! store's table shared by replicas. A lookup goes L1, then L2, then the caller's computation
//! (the provider call), and concurrent lookups of one key share one computation: moka's
//! `try_get_with` runs the first caller's initializer and parks the others until it finishes.
//! That is what makes 100 identical concurrent gradings cost one call.
//!
//! Only values the caller marks [`Computed::Keep`] are cached. A result the caller does not
//! want cached (invalid output, an answer from a fallback model, a provider error) is still
//! handed to the callers that waited on it ([`Computed::Share`]), so a burst of identical
//! gradings against a failing provider makes one failing call, not N.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::future::Cache;

use super::{CachedJudgment, JudgmentCache, PurgeError};
use crate::metrics::CacheLayer;

/// L1 sizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TieredSettings {
    /// Upper bound of the L1's weighed size: serialized judgment + key + prompt hash bytes.
    pub max_bytes: u64,
    /// Lifetime of an L1 entry after insertion.
    pub ttl: Duration,
}

impl Default for TieredSettings {
    fn default() -> Self {
        TieredSettings {
            max_bytes: 64 * 1024 * 1024,
            ttl: Duration::from_secs(3600),
        }
    }
}

impl From<&crate::config::CacheConfig> for TieredSettings {
    fn from(c: &crate::config::CacheConfig) -> Self {
        TieredSettings {
            max_bytes: c.l1_max_bytes,
            ttl: Duration::from_secs(c.l1_ttl_secs),
        }
    }
}

/// An L1 entry. The prompt hash is kept so a purge by prompt version can find its entries.
#[derive(Debug)]
struct Entry {
    value: CachedJudgment,
    prompt_sha256: String,
    bytes: u32,
}

impl Entry {
    fn new(key: &str, prompt_sha256: &str, value: CachedJudgment) -> Arc<Entry> {
        // The serialized size approximates the heap the judgment's strings occupy; the fixed
        // part covers the Arc, the struct and moka's per-entry bookkeeping.
        let json = serde_json::to_vec(&value).map(|v| v.len()).unwrap_or(0);
        let bytes = json + key.len() + prompt_sha256.len() + 160;
        Arc::new(Entry {
            value,
            prompt_sha256: prompt_sha256.to_string(),
            bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
        })
    }
}

/// What the caller's computation produced.
pub enum Computed<S> {
    /// Cache `value` (L1 and L2); `S` is what the computing caller keeps (its usage, say).
    Keep(CachedJudgment, S),
    /// Do not cache; hand `S` to every caller that waited on this computation.
    Share(S),
}

/// What a waiting caller received from another caller's computation.
pub enum Shared<S> {
    Value(CachedJudgment),
    Uncached(Arc<S>),
}

/// How a lookup was answered.
pub enum Flight<S> {
    /// From a cache layer: no computation.
    Hit {
        value: CachedJudgment,
        layer: CacheLayer,
    },
    /// This caller ran the computation (a miss): its own result.
    Ran(S),
    /// This caller waited on an identical computation already in flight.
    Joined(Shared<S>),
}

/// L1 (moka) in front of an optional L2.
pub struct ResponseCache {
    l1: Cache<String, Arc<Entry>>,
    l2: Option<Arc<dyn JudgmentCache>>,
    settings: TieredSettings,
}

impl ResponseCache {
    pub fn new(settings: TieredSettings, l2: Option<Arc<dyn JudgmentCache>>) -> ResponseCache {
        let l1 = Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|_k: &String, v: &Arc<Entry>| v.bytes)
            .time_to_live(settings.ttl)
            .support_invalidation_closures()
            .build();
        ResponseCache { l1, l2, settings }
    }

    pub fn settings(&self) -> TieredSettings {
        self.settings
    }

    pub fn has_l2(&self) -> bool {
        self.l2.is_some()
    }

    pub fn l2(&self) -> Option<&Arc<dyn JudgmentCache>> {
        self.l2.as_ref()
    }

    /// The same L1 settings over a different L2.
    pub fn with_l2(&self, l2: Arc<dyn JudgmentCache>) -> ResponseCache {
        ResponseCache::new(self.settings, Some(l2))
    }

    /// L1, then L2 (an L2 hit is copied into L1). No single-flight: for fallback models,
    /// whose calls are rare enough not to need it.
    pub async fn get(
        &self,
        key: &str,
        prompt_sha256: &str,
    ) -> Option<(CachedJudgment, CacheLayer)> {
        if let Some(e) = self.l1.get(key).await {
            return Some((e.value.clone(), CacheLayer::L1));
        }
        let l2 = self.l2.as_ref()?;
        let value = l2.get(key).await?;
        self.l1
            .insert(
                key.to_string(),
                Entry::new(key, prompt_sha256, value.clone()),
            )
            .await;
        Some((value, CacheLayer::L2))
    }

    /// Stores in both layers.
    pub async fn put(&self, key: &str, prompt_sha256: &str, value: &CachedJudgment) {
        if let Some(l2) = &self.l2 {
            l2.put(key, prompt_sha256, value).await;
        }
        self.l1
            .insert(
                key.to_string(),
                Entry::new(key, prompt_sha256, value.clone()),
            )
            .await;
    }

    /// L1, then L2, then `compute`, with concurrent callers of one key sharing one `compute`.
    ///
    /// A waiter is told it [`Flight::Joined`]; the caller whose initializer ran gets its own
    /// `S` back ([`Flight::Ran`]). If the running caller is cancelled, moka lets a waiter run
    /// its own `compute` instead, so no one waits on a computation that will never finish.
    pub async fn single_flight<S, F>(&self, key: &str, prompt_sha256: &str, compute: F) -> Flight<S>
    where
        S: Clone + Send + Sync + 'static,
        F: Future<Output = Computed<S>>,
    {
        if let Some(e) = self.l1.get(key).await {
            return Flight::Hit {
                value: e.value.clone(),
                layer: CacheLayer::L1,
            };
        }
        let ran: Mutex<Option<S>> = Mutex::new(None);
        let from_l2 = AtomicBool::new(false);
        let result = self
            .l1
            .try_get_with(key.to_string(), async {
                if let Some(l2) = &self.l2 {
                    if let Some(value) = l2.get(key).await {
                        from_l2.store(true, Ordering::Relaxed);
                        return Ok(Entry::new(key, prompt_sha256, value));
                    }
                }
                match compute.await {
                    Computed::Keep(value, own) => {
                        if let Some(l2) = &self.l2 {
                            l2.put(key, prompt_sha256, &value).await;
                        }
                        *ran.lock().unwrap_or_else(|p| p.into_inner()) = Some(own);
                        Ok(Entry::new(key, prompt_sha256, value))
                    }
                    Computed::Share(shared) => {
                        *ran.lock().unwrap_or_else(|p| p.into_inner()) = Some(shared.clone());
                        Err(shared)
                    }
                }
            })
            .await;
        if let Some(own) = ran.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Flight::Ran(own);
        }
        match result {
            Ok(e) if from_l2.load(Ordering::Relaxed) => Flight::Hit {
                value: e.value.clone(),
                layer: CacheLayer::L2,
            },
            Ok(e) => Flight::Joined(Shared::Value(e.value.clone())),
            Err(shared) => Flight::Joined(Shared::Uncached(shared)),
        }
    }

    /// Drops one prompt version's entries from L1 and L2; returns how many L2 rows went (L1
    /// entries are invalidated lazily by moka and not counted). Other replicas' L1s keep
    /// theirs until their TTL: a purge is for reclaiming space or forcing a re-grade, and a
    /// new prompt version never hits an old entry anyway.
    pub async fn purge_prompt(&self, prompt_sha256: &str) -> Result<u64, PurgeError> {
        let sha = prompt_sha256.to_string();
        self.l1
            .invalidate_entries_if(move |_, e| e.prompt_sha256 == sha)
            .map_err(|e| PurgeError(e.to_string()))?;
        match &self.l2 {
            Some(l2) => l2.purge_prompt(prompt_sha256).await,
            None => Ok(0),
        }
    }

    /// (entries, weighed bytes) of the L1, after pending maintenance.
    pub async fn l1_usage(&self) -> (u64, u64) {
        self.l1.run_pending_tasks().await;
        (self.l1.entry_count(), self.l1.weighted_size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::Judgment;
    use std::sync::atomic::AtomicU32;

    fn value(summary: &str) -> CachedJudgment {
        CachedJudgment {
            judgment: Judgment {
                scores: vec![],
                flags: vec![],
                summary: summary.into(),
            },
            model: "m".into(),
            repairs: 0,
        }
    }

    #[tokio::test]
    async fn concurrent_lookups_share_one_computation() {
        let cache = Arc::new(ResponseCache::new(TieredSettings::default(), None));
        let calls = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let cache = cache.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                let flight = cache
                    .single_flight("k", "sha", async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Computed::Keep(value("v"), 7u32)
                    })
                    .await;
                match flight {
                    Flight::Ran(n) => ("ran", n),
                    Flight::Joined(Shared::Value(v)) => ("joined", v.judgment.summary.len() as u32),
                    Flight::Joined(Shared::Uncached(_)) => ("uncached", 0),
                    Flight::Hit { .. } => ("hit", 0),
                }
            }));
        }
        let mut ran = 0;
        for t in tasks {
            let (how, n) = t.await.unwrap();
            assert_ne!(how, "uncached");
            if how == "ran" {
                assert_eq!(n, 7);
                ran += 1;
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(ran, 1);
        assert!(matches!(
            cache
                .single_flight("k", "sha", async { Computed::Share(0u32) })
                .await,
            Flight::Hit {
                layer: CacheLayer::L1,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn shared_results_are_not_cached() {
        let cache = ResponseCache::new(TieredSettings::default(), None);
        let f = cache
            .single_flight("k", "sha", async { Computed::Share("bad".to_string()) })
            .await;
        assert!(matches!(f, Flight::Ran(ref s) if s == "bad"));
        let f = cache
            .single_flight("k", "sha", async { Computed::Share("again".to_string()) })
            .await;
        assert!(
            matches!(f, Flight::Ran(ref s) if s == "again"),
            "recomputed"
        );
    }

    #[tokio::test]
    async fn the_l1_is_bounded_by_bytes_and_purged_by_prompt() {
        let cache = ResponseCache::new(
            TieredSettings {
                max_bytes: 20_000,
                ttl: Duration::from_secs(60),
            },
            None,
        );
        let big = "x".repeat(1_000);
        for i in 0..100 {
            let sha = if i % 2 == 0 { "even" } else { "odd" };
            cache.put(&format!("k{i}"), sha, &value(&big)).await;
        }
        let (entries, bytes) = cache.l1_usage().await;
        assert!(bytes <= 20_000, "{bytes}");
        assert!(entries < 100 && entries > 0, "{entries}");
        // Purge, in a cache with room (a full one may refuse newcomers: TinyLFU admission).
        let cache = ResponseCache::new(TieredSettings::default(), None);
        cache.put("keep", "odd", &value("x")).await;
        cache.put("drop", "even", &value("x")).await;
        cache.purge_prompt("even").await.unwrap();
        cache.l1_usage().await;
        assert!(cache.get("drop", "even").await.is_none());
        assert!(cache.get("keep", "odd").await.is_some());
    }
}
