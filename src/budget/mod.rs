//! Cost control: what each grading spent, per tenant, prompt version and model, and the caps
//! that stop spending.
//!
//! The [`UsageLedger`] records one [`UsageRecord`] per model a grading used and answers two
//! questions: how much was spent in a window (for the caps) and the totals per prompt version
//! and model (`grader usage`). [`Budget`] holds the caps from `[budgets]` and decides, before
//! a model is called, whether a grading may spend its worst-case cost. When it may not, the
//! judge grades with the offline judge and says so in the report: a cap never silently drops
//! or degrades work.
//!
//! Caps are checked against the worst case (every prompt token uncached, every answer at its
//! `max_output_tokens`), so a cap is not overshot by one expensive grading. Concurrent
//! gradings each see the spend before the others finish, so a burst can overshoot by at most
//! its concurrency times one grading's cost.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::config::BudgetConfig;

pub mod file;

pub use file::FileLedger;

#[derive(Debug, thiserror::Error)]
#[error("usage ledger: {0}")]
pub struct LedgerError(pub String);

/// What one grading spent on one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub at: DateTime<Utc>,
    pub tenant: String,
    pub stage: String,
    /// `id@version`.
    pub prompt: String,
    pub prompt_sha256: String,
    /// The provider's model id.
    pub model: String,
    /// `cheap`, `strong`, or the model's name for a single-model judge.
    pub tier: String,
    /// Samples this model answered for the grading, including those served from the cache.
    pub samples: u32,
    /// Of those, answered by the response cache (no call, no cost).
    pub cached_samples: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cost_usd: f64,
}

/// Totals of one (prompt version, model) pair.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageSummaryRow {
    pub prompt: String,
    pub model: String,
    /// Gradings that used this model with this prompt version.
    pub gradings: u64,
    pub samples: u64,
    pub cached_samples: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cost_usd: f64,
}

impl UsageSummaryRow {
    fn add(&mut self, r: &UsageRecord) {
        self.gradings += 1;
        self.samples += u64::from(r.samples);
        self.cached_samples += u64::from(r.cached_samples);
        self.prompt_tokens += r.prompt_tokens;
        self.completion_tokens += r.completion_tokens;
        self.cached_tokens += r.cached_tokens;
        self.cost_usd += r.cost_usd;
    }
}

/// Which records a summary covers: `since` and `until` are inclusive bounds on the day.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageFilter {
    pub tenant: Option<String>,
    pub since: Option<NaiveDate>,
    pub until: Option<NaiveDate>,
}

/// Spend in USD in the current day and month, of one tenant and of everyone.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spent {
    pub tenant_day: f64,
    pub tenant_month: f64,
    pub global_day: f64,
    pub global_month: f64,
}

/// Where usage is recorded and summed. The in-memory [`MemoryLedger`] serves a single process
/// (and the tests); [`StoreLedger`] makes caps hold across replicas and restarts.
#[async_trait]
pub trait UsageLedger: Send + Sync {
    async fn record(&self, records: &[UsageRecord]) -> Result<(), LedgerError>;
    /// Spend of `tenant` and of all tenants on `day` and in the month containing it (UTC).
    async fn spent(&self, tenant: &str, day: NaiveDate) -> Result<Spent, LedgerError>;
    /// Totals per (prompt version, model), ordered by prompt then model.
    async fn summary(&self, filter: &UsageFilter) -> Result<Vec<UsageSummaryRow>, LedgerError>;
}

/// Usage aggregated in memory per (day, tenant, prompt, model): bounded by the number of
/// distinct combinations, not by the number of gradings, so a long-running process does not
/// grow with its traffic.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    rows: Mutex<BTreeMap<(NaiveDate, String, String, String), UsageSummaryRow>>,
}

impl MemoryLedger {
    pub fn new() -> MemoryLedger {
        MemoryLedger::default()
    }

    /// Adds records to the totals (what `record` does, callable without a runtime).
    pub fn add(&self, records: &[UsageRecord]) {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        for r in records {
            let key = (
                r.at.date_naive(),
                r.tenant.clone(),
                r.prompt.clone(),
                r.model.clone(),
            );
            let row = rows.entry(key).or_insert_with(|| UsageSummaryRow {
                prompt: r.prompt.clone(),
                model: r.model.clone(),
                ..UsageSummaryRow::default()
            });
            row.add(r);
        }
    }
}

fn same_month(a: NaiveDate, b: NaiveDate) -> bool {
    a.year() == b.year() && a.month() == b.month()
}

#[async_trait]
impl UsageLedger for MemoryLedger {
    async fn record(&self, records: &[UsageRecord]) -> Result<(), LedgerError> {
        self.add(records);
        Ok(())
    }

    async fn spent(&self, tenant: &str, day: NaiveDate) -> Result<Spent, LedgerError> {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let mut s = Spent::default();
        for ((d, t, _, _), row) in rows.iter() {
            if !same_month(*d, day) {
                continue;
            }
            s.global_month += row.cost_usd;
            if *d == day {
                s.global_day += row.cost_usd;
            }
            if t == tenant {
                s.tenant_month += row.cost_usd;
                if *d == day {
                    s.tenant_day += row.cost_usd;
                }
            }
        }
        Ok(s)
    }

    async fn summary(&self, filter: &UsageFilter) -> Result<Vec<UsageSummaryRow>, LedgerError> {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: BTreeMap<(String, String), UsageSummaryRow> = BTreeMap::new();
        for ((d, t, p, m), row) in rows.iter() {
            if filter.tenant.as_ref().is_some_and(|ft| ft != t)
                || filter.since.is_some_and(|s| *d < s)
                || filter.until.is_some_and(|u| *d > u)
            {
                continue;
            }
            let o = out
                .entry((p.clone(), m.clone()))
                .or_insert_with(|| UsageSummaryRow {
                    prompt: p.clone(),
                    model: m.clone(),
                    ..UsageSummaryRow::default()
                });
            o.gradings += row.gradings;
            o.samples += row.samples;
            o.cached_samples += row.cached_samples;
            o.prompt_tokens += row.prompt_tokens;
            o.completion_tokens += row.completion_tokens;
            o.cached_tokens += row.cached_tokens;
            o.cost_usd += row.cost_usd;
        }
        Ok(out.into_values().collect())
    }
}

/// The ledger in the store (the `usage` table): every replica records to and reads from the
/// same rows, so caps and `grader usage` hold across replicas and restarts. Only calls the
/// [`Store`](crate::store::Store) trait; the SQL is the store's.
pub struct StoreLedger {
    store: std::sync::Arc<dyn crate::store::Store>,
}

impl StoreLedger {
    pub fn new(store: std::sync::Arc<dyn crate::store::Store>) -> StoreLedger {
        StoreLedger { store }
    }
}

fn ledger_error(e: crate::store::StoreError) -> LedgerError {
    LedgerError(e.to_string())
}

#[async_trait]
impl UsageLedger for StoreLedger {
    async fn record(&self, records: &[UsageRecord]) -> Result<(), LedgerError> {
        self.store.record_usage(records).await.map_err(ledger_error)
    }

    async fn spent(&self, tenant: &str, day: NaiveDate) -> Result<Spent, LedgerError> {
        self.store
            .usage_spent(tenant, day)
            .await
            .map_err(ledger_error)
    }

    async fn summary(&self, filter: &UsageFilter) -> Result<Vec<UsageSummaryRow>, LedgerError> {
        self.store.usage_summary(filter).await.map_err(ledger_error)
    }
}

/// A cap that would be exceeded.
#[derive(Debug, Clone, PartialEq)]
pub struct Exhausted {
    /// `tenant_daily`, `tenant_monthly`, `global_daily` or `global_monthly`.
    pub scope: &'static str,
    pub cap_usd: f64,
    pub spent_usd: f64,
    /// The worst-case cost of the grading that was refused.
    pub needed_usd: f64,
}

impl std::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.scope {
            "tenant_daily" => "the tenant's daily",
            "tenant_monthly" => "the tenant's monthly",
            "global_daily" => "the global daily",
            _ => "the global monthly",
        };
        write!(
            f,
            "{what} budget of ${:.2} is exhausted (${:.4} spent; this grading could cost up to ${:.4})",
            self.cap_usd, self.spent_usd, self.needed_usd
        )
    }
}

/// The caps and the ledger they are checked against.
pub struct Budget {
    caps: BudgetConfig,
    ledger: std::sync::Arc<dyn UsageLedger>,
}

impl Budget {
    pub fn new(caps: BudgetConfig, ledger: std::sync::Arc<dyn UsageLedger>) -> Budget {
        Budget { caps, ledger }
    }

    pub fn caps(&self) -> &BudgetConfig {
        &self.caps
    }

    pub fn ledger(&self) -> &std::sync::Arc<dyn UsageLedger> {
        &self.ledger
    }

    pub fn is_unlimited(&self) -> bool {
        self.caps.is_unlimited()
    }

    /// May `tenant` spend up to `needed_usd` now? The first cap that would be exceeded, if
    /// any. A ledger that cannot be read allows the grading (with a warning): a database
    /// hiccup should not turn every grading into an offline one; the next check sees the
    /// spend again.
    pub async fn check(
        &self,
        tenant: &str,
        now: DateTime<Utc>,
        needed_usd: f64,
    ) -> Option<Exhausted> {
        if self.caps.is_unlimited() {
            return None;
        }
        let spent = match self.ledger.spent(tenant, now.date_naive()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(tenant, error = %e, "cannot read spend; budget not enforced for this grading");
                return None;
            }
        };
        let own = self.caps.tenants.get(tenant);
        let checks = [
            (
                "tenant_daily",
                own.and_then(|t| t.daily_usd).or(self.caps.tenant_daily_usd),
                spent.tenant_day,
            ),
            (
                "tenant_monthly",
                own.and_then(|t| t.monthly_usd)
                    .or(self.caps.tenant_monthly_usd),
                spent.tenant_month,
            ),
            ("global_daily", self.caps.global_daily_usd, spent.global_day),
            (
                "global_monthly",
                self.caps.global_monthly_usd,
                spent.global_month,
            ),
        ];
        checks.into_iter().find_map(|(scope, cap, spent)| {
            let cap = cap?;
            (spent + needed_usd > cap).then_some(Exhausted {
                scope,
                cap_usd: cap,
                spent_usd: spent,
                needed_usd,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TenantBudget;
    use std::sync::Arc;

    fn record(at: &str, tenant: &str, model: &str, cost: f64) -> UsageRecord {
        UsageRecord {
            at: at.parse().unwrap(),
            tenant: tenant.into(),
            stage: "system_design".into(),
            prompt: "system_design@v1".into(),
            prompt_sha256: "abc".into(),
            model: model.into(),
            tier: "cheap".into(),
            samples: 3,
            cached_samples: 1,
            prompt_tokens: 1000,
            completion_tokens: 100,
            cached_tokens: 0,
            cost_usd: cost,
        }
    }

    #[tokio::test]
    async fn spend_is_summed_per_day_month_and_tenant() {
        let l = MemoryLedger::new();
        l.record(&[
            record("2026-11-28T10:00:00Z", "a", "mini", 1.0),
            record("2026-11-29T10:00:00Z", "a", "mini", 2.0),
            record("2026-11-29T11:00:00Z", "b", "big", 4.0),
            record("2026-10-31T23:00:00Z", "a", "mini", 8.0),
        ])
        .await
        .unwrap();
        let s = l
            .spent("a", NaiveDate::from_ymd_opt(2026, 11, 29).unwrap())
            .await
            .unwrap();
        assert_eq!(
            s,
            Spent {
                tenant_day: 2.0,
                tenant_month: 3.0,
                global_day: 6.0,
                global_month: 7.0
            }
        );
        let rows = l.summary(&UsageFilter::default()).await.unwrap();
        assert_eq!(rows.len(), 2);
        let mini = rows.iter().find(|r| r.model == "mini").unwrap();
        assert_eq!((mini.gradings, mini.samples, mini.cost_usd), (3, 9, 11.0));
        let only_b = l
            .summary(&UsageFilter {
                tenant: Some("b".into()),
                ..UsageFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(only_b.len(), 1);
    }

    #[tokio::test]
    async fn the_first_cap_that_would_be_exceeded_is_named() {
        let l = Arc::new(MemoryLedger::new());
        l.record(&[record("2026-11-29T10:00:00Z", "a", "mini", 4.0)])
            .await
            .unwrap();
        let mut caps = BudgetConfig {
            tenant_daily_usd: Some(5.0),
            ..BudgetConfig::default()
        };
        let now: DateTime<Utc> = "2026-11-29T12:00:00Z".parse().unwrap();
        let b = Budget::new(caps.clone(), l.clone());
        assert!(b.check("a", now, 0.5).await.is_none());
        let e = b.check("a", now, 1.5).await.unwrap();
        assert_eq!(e.scope, "tenant_daily");
        assert!(e.to_string().contains("daily budget of $5.00"), "{e}");
        assert!(b.check("other", now, 1.5).await.is_none(), "per tenant");
        // A tenant's own cap wins over the default.
        caps.tenants.insert(
            "a".into(),
            TenantBudget {
                daily_usd: Some(50.0),
                monthly_usd: None,
            },
        );
        caps.global_monthly_usd = Some(4.2);
        let b = Budget::new(caps, l);
        assert_eq!(
            b.check("a", now, 1.5).await.unwrap().scope,
            "global_monthly"
        );
        // The next day starts a new daily window.
        let tomorrow: DateTime<Utc> = "2026-11-30T00:00:01Z".parse().unwrap();
        assert!(b.check("a", tomorrow, 0.1).await.is_none());
        assert_eq!(
            b.check("a", tomorrow, 0.3).await.unwrap().scope,
            "global_monthly"
        );
    }
}
