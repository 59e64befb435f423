//! One typed configuration: `grader.toml` (or `--config FILE`, or `GRADER_CONFIG`) with
//! environment overrides on top, so a container can be configured by env alone and a
//! developer by a file. Nothing else in the crate reads the environment for settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::llm::ModelConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for environment variable {var}={value:?}: {message}")]
    Env {
        var: String,
        value: String,
        message: String,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Input-size limits applied before anything is parsed or sent anywhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Maximum transcript length in characters.
    pub max_chars: usize,
    pub max_turns: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_chars: 200_000,
            max_turns: 5_000,
        }
    }
}

/// How the judge samples and when it asks for a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeConfig {
    /// Name of the `[[models]]` entry to grade with; default: the first one.
    pub model: Option<String>,
    /// Independent samples per grading, aggregated per dimension by the median.
    pub samples: u32,
    /// Sampling temperature. With several samples a temperature above 0 makes them differ.
    pub temperature: f32,
    /// Base seed; sample `i` uses `seed + i` so samples are reproducible yet distinct.
    pub seed: Option<i64>,
    /// Repair retries after malformed or invalid output, per sample.
    pub max_repairs: u32,
    /// Below this confidence (agreement of samples) a grading needs review.
    pub min_confidence: f64,
    /// Retry delays for provider errors (milliseconds).
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// The longest Retry-After we are willing to honour (seconds).
    pub max_retry_after_secs: u64,
    /// Provider calls one judge has in flight at once; a grading takes one per sample its
    /// route sends at once and holds them for its whole run. More wait their turn, so a burst
    /// of synchronous gradings queues instead of holding a request body and a connection
    /// each (256 keeps 1,000 in-flight gradings under 100 MB; see BENCHMARKS.md). 0 = no limit.
    pub max_in_flight: usize,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            model: None,
            samples: 1,
            temperature: 0.0,
            seed: Some(7),
            max_repairs: 1,
            min_confidence: 0.6,
            retry_base_ms: 500,
            retry_max_ms: 20_000,
            max_retry_after_secs: 60,
            max_in_flight: 256,
        }
    }
}

/// Per-stage settings, keyed by stage name in `[stages.<stage>]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StageConfig {
    /// Pin a prompt version (`system_design@v1`); default: the latest published one.
    pub prompt: Option<String>,
}

/// `grader serve`: workers, leases, request limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Grading workers per process.
    pub workers: usize,
    /// How long a worker holds a job before another may take it over.
    pub lease_secs: u64,
    /// Attempts before a job is dead-lettered.
    pub max_attempts: u32,
    /// Idle poll interval of a worker when the queue is empty.
    pub poll_interval_ms: u64,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Per-request timeout for synchronous routes.
    pub request_timeout_secs: u64,
    /// On shutdown, how long in-flight gradings may finish before their jobs are released.
    pub shutdown_grace_secs: u64,
    /// Accepted age of a signed webhook delivery (replay window).
    pub webhook_tolerance_secs: u64,
    /// Attempts to deliver a report to a tenant's callback URL.
    pub callback_max_attempts: u32,
    /// First retry delay of a failed grading (milliseconds); doubles per attempt, with jitter,
    /// so a provider outage is not hammered by every queued job at once.
    pub retry_base_ms: u64,
    /// Cap on the grading retry delay (milliseconds).
    pub retry_max_ms: u64,
    /// First retry delay of a failed callback delivery (milliseconds); doubles per attempt.
    pub callback_retry_base_ms: u64,
    /// Cap on the callback retry delay (milliseconds).
    pub callback_retry_max_ms: u64,
    /// Timeout of one callback POST, so a hanging receiver cannot hold a delivery forever.
    pub callback_timeout_secs: u64,
    /// How long an API key lookup or a webhook secret is cached in-process. Keeps the hot
    /// 202 paths at one database transaction per request; a rotated secret or a new key takes
    /// effect within this many seconds (a new key immediately: only hits are cached).
    pub auth_cache_secs: u64,
    /// Requests per minute per API key (`http::ratelimit`); 0 = off (the default). The token
    /// bucket holds one minute's worth, so a key may burst up to this many at once. Counted
    /// in-process: N replicas allow N times the rate.
    pub rate_limit_per_minute: u32,
    /// Per-role overrides of `rate_limit_per_minute` (`ingest`, `grader`, `admin`); 0 turns
    /// the limit off for that role.
    pub rate_limit_roles: BTreeMap<String, u32>,
    /// Deliveries per minute per webhook endpoint (tenant name + source); 0 = off.
    pub webhook_rate_limit_per_minute: u32,
    /// Key that signs the review UI's session cookies (HMAC-SHA256). Unset: a random key per
    /// process, so sessions end on restart and each replica signs its own; set it (for
    /// example through `GRADER_SESSION_SECRET` from a Secret) when replicas share traffic.
    /// At least 32 characters.
    pub session_secret: Option<String>,
    /// How long a review UI login lasts.
    pub session_ttl_secs: u64,
    /// Mark the session cookie `Secure` (sent over HTTPS only). Leave on behind TLS; off only
    /// for plain-HTTP development on localhost.
    pub cookie_secure: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            workers: 2,
            lease_secs: 300,
            max_attempts: 5,
            poll_interval_ms: 250,
            body_limit_bytes: 2 * 1024 * 1024,
            request_timeout_secs: 120,
            shutdown_grace_secs: 30,
            webhook_tolerance_secs: 300,
            callback_max_attempts: 6,
            retry_base_ms: 5_000,
            retry_max_ms: 600_000,
            callback_retry_base_ms: 1_000,
            callback_retry_max_ms: 300_000,
            callback_timeout_secs: 10,
            auth_cache_secs: 30,
            rate_limit_per_minute: 0,
            rate_limit_roles: BTreeMap::new(),
            webhook_rate_limit_per_minute: 0,
            session_secret: None,
            session_ttl_secs: 12 * 3600,
            cookie_secure: false,
        }
    }
}

/// `grader eval`: the regression gates and how the eval runs. Every gate is per stage and
/// dimension, and each threshold can be overridden on the command line for one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Gate: quadratic-weighted kappa of the AI against the human consensus at least this.
    pub min_qwk: f64,
    /// Gate: the AI's QWK at most this far below the human-human QWK (skipped when no item
    /// has two human graders).
    pub max_gap_to_human: f64,
    /// Gate: |standardized mean difference| of the AI against the consensus at most this
    /// (Williamson, Xi & Breyer 2012).
    pub max_abs_smd: f64,
    /// Items graded at once (bounded so a provider's rate limit is not hammered).
    pub concurrency: usize,
    /// Bootstrap resamples for the 95% intervals and the paired baseline comparison.
    pub bootstrap: usize,
    /// Seed of every resampling (bootstrap, cross-validation folds), so reruns match.
    pub seed: u64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            min_qwk: 0.70,
            max_gap_to_human: 0.10,
            max_abs_smd: 0.15,
            concurrency: 4,
            bootstrap: 1000,
            seed: 42,
        }
    }
}

/// One model name, or a chain: the primary first, then the fallbacks tried in order when it
/// fails (after its retries) or its circuit breaker is open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModelChain {
    One(String),
    Chain(Vec<String>),
}

impl ModelChain {
    pub fn names(&self) -> Vec<&str> {
        match self {
            ModelChain::One(n) => vec![n.as_str()],
            ModelChain::Chain(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// A cascade route, `[routes.default]` or `[routes.<stage>]`: grade with the cheap tier first
/// and escalate to the strong tier when a rule fires. A stage's route inherits every field it
/// leaves out from `default`; a field left out everywhere takes the default named below.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// The cheap tier's model (or chain); default: `judge.model`, else the first `[[models]]`.
    pub cheap: Option<ModelChain>,
    /// The strong tier's model (or chain); none = no escalation (rules only add review reasons).
    pub strong: Option<ModelChain>,
    /// Samples of the cheap tier (default `judge.samples`). Disagreement needs at least 2, and
    /// a temperature above 0 to mean anything.
    pub cheap_samples: Option<u32>,
    /// Samples of the strong tier (default 1).
    pub strong_samples: Option<u32>,
    /// Escalate when the cheap samples of any dimension span at least this many points
    /// (max - min; default 2; 0 disables).
    pub escalate_spread: Option<u8>,
    /// Escalate when any dimension's sample agreement (confidence) is below this (default:
    /// off). Only with 2 or more samples: one sample carries no agreement information.
    pub escalate_below_confidence: Option<f64>,
    /// How many dimensions must disagree (by `escalate_spread` or
    /// `escalate_below_confidence`) before the grading escalates (default 1: any). With many
    /// dimensions, one noisy dimension out of seven says little about the whole grading.
    pub escalate_min_dimensions: Option<u32>,
    /// Escalate when any cheap sample raises a high-severity red flag (default true).
    pub escalate_on_red_flag: Option<bool>,
    /// Escalate when the cheap tier's output was invalid (unscored) (default true).
    pub escalate_on_invalid: Option<bool>,
    /// Send prompts longer than this many tokens straight to the strong tier (default: off).
    pub escalate_above_tokens: Option<u64>,
    /// Mark the stage hard: straight to the strong tier (default false).
    pub hard: Option<bool>,
}

impl RouteConfig {
    /// `self` with every unset field taken from `base`.
    pub fn over(&self, base: &RouteConfig) -> RouteConfig {
        RouteConfig {
            cheap: self.cheap.clone().or_else(|| base.cheap.clone()),
            strong: self.strong.clone().or_else(|| base.strong.clone()),
            cheap_samples: self.cheap_samples.or(base.cheap_samples),
            strong_samples: self.strong_samples.or(base.strong_samples),
            escalate_spread: self.escalate_spread.or(base.escalate_spread),
            escalate_below_confidence: self
                .escalate_below_confidence
                .or(base.escalate_below_confidence),
            escalate_min_dimensions: self
                .escalate_min_dimensions
                .or(base.escalate_min_dimensions),
            escalate_on_red_flag: self.escalate_on_red_flag.or(base.escalate_on_red_flag),
            escalate_on_invalid: self.escalate_on_invalid.or(base.escalate_on_invalid),
            escalate_above_tokens: self.escalate_above_tokens.or(base.escalate_above_tokens),
            hard: self.hard.or(base.hard),
        }
    }
}

/// The response cache: L1 in-process (moka, weighed by bytes) in front of the store's L2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Serve identical model calls from the cache and coalesce concurrent ones (default true).
    pub enabled: bool,
    /// Upper bound of the L1's size in bytes (serialized judgments plus keys).
    pub l1_max_bytes: u64,
    /// How long an L1 entry lives. The L2 keeps entries until purged: a key changes whenever
    /// anything that could change the answer changes, so an old entry is never wrong.
    pub l1_ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            l1_max_bytes: 64 * 1024 * 1024,
            l1_ttl_secs: 3600,
        }
    }
}

/// The circuit breaker every model gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failed calls (after retries) that open a model's breaker; 0 disables.
    pub failures: u32,
    /// Seconds an open breaker refuses calls before a half-open probe.
    pub cooldown_secs: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            cooldown_secs: 30,
        }
    }
}

/// One tenant's own caps, overriding `budgets.tenant_*` (`[budgets.tenants."<tenant id>"]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantBudget {
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
}

/// Spending caps in USD per UTC day and calendar month, for all tenants together (`global_*`)
/// and for each tenant (`tenant_*`, or its own entry under `tenants`). When one is exhausted,
/// gradings fall back to the offline judge with `needs_review` and the reason. None = no cap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    pub global_daily_usd: Option<f64>,
    pub global_monthly_usd: Option<f64>,
    pub tenant_daily_usd: Option<f64>,
    pub tenant_monthly_usd: Option<f64>,
    pub tenants: BTreeMap<String, TenantBudget>,
    /// A JSON-lines file where every grading's usage is appended (read by `grader usage` and
    /// by the caps across `grader grade` runs). None = usage kept in memory per process.
    pub ledger_path: Option<PathBuf>,
}

impl BudgetConfig {
    pub fn is_unlimited(&self) -> bool {
        self.global_daily_usd.is_none()
            && self.global_monthly_usd.is_none()
            && self.tenant_daily_usd.is_none()
            && self.tenant_monthly_usd.is_none()
            && self
                .tenants
                .values()
                .all(|t| t.daily_usd.is_none() && t.monthly_usd.is_none())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub addr: String,
    pub database_url: String,
    pub prompts_dir: PathBuf,
    pub limits: LimitsConfig,
    pub judge: JudgeConfig,
    pub models: Vec<ModelConfig>,
    pub stages: BTreeMap<String, StageConfig>,
    pub service: ServiceConfig,
    pub eval: EvalConfig,
    /// Cascade routes: `default` and per stage.
    pub routes: BTreeMap<String, RouteConfig>,
    pub cache: CacheConfig,
    pub breaker: BreakerConfig,
    pub budgets: BudgetConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: "127.0.0.1:8080".into(),
            database_url: "sqlite://grader.db".into(),
            prompts_dir: PathBuf::from("prompts"),
            limits: LimitsConfig::default(),
            judge: JudgeConfig::default(),
            models: Vec::new(),
            stages: BTreeMap::new(),
            service: ServiceConfig::default(),
            eval: EvalConfig::default(),
            routes: BTreeMap::new(),
            cache: CacheConfig::default(),
            breaker: BreakerConfig::default(),
            budgets: BudgetConfig::default(),
        }
    }
}

/// The model used when no `[[models]]` are configured but `OPENAI_API_KEY` or
/// `OPENAI_BASE_URL` is set: zero configuration for the common case.
const IMPLICIT_MODEL: &str = "gpt-4o-mini";

impl Config {
    /// Loads `explicit` (must exist), else `$GRADER_CONFIG`, else `./grader.toml` if present,
    /// else defaults; then applies the process environment.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => env("GRADER_CONFIG")
                .map(PathBuf::from)
                .or_else(|| Some(PathBuf::from("grader.toml")).filter(|p| p.exists())),
        };
        let text = match &path {
            Some(p) => Some(
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?,
            ),
            None => None,
        };
        Config::from_sources(path.as_deref(), text.as_deref(), &env)
    }

    /// Pure constructor for tests: file text (if any) plus an environment lookup.
    pub fn from_sources(
        path: Option<&Path>,
        text: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: path.unwrap_or(Path::new("grader.toml")).to_path_buf(),
            message,
        };
        let mut cfg: Config = match text {
            Some(t) => toml::from_str(t).map_err(|e| parse_error(e.to_string()))?,
            None => Config::default(),
        };
        cfg.apply_env(env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(var: &str, value: String) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse::<T>().map_err(|e| ConfigError::Env {
                var: var.into(),
                value: value.clone(),
                message: e.to_string(),
            })
        }
        if let Some(v) = env("GRADER_ADDR") {
            self.addr = v;
        }
        if let Some(v) = env("GRADER_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = env("GRADER_PROMPTS_DIR") {
            self.prompts_dir = PathBuf::from(v);
        }
        if let Some(v) = env("GRADER_MAX_CHARS") {
            self.limits.max_chars = parse("GRADER_MAX_CHARS", v)?;
        }
        if let Some(v) = env("GRADER_SESSION_SECRET") {
            self.service.session_secret = Some(v);
        }
        if let Some(v) = env("GRADER_WORKERS") {
            self.service.workers = parse("GRADER_WORKERS", v)?;
        }
        if let Some(v) = env("GRADER_RATE_LIMIT_PER_MINUTE") {
            self.service.rate_limit_per_minute = parse("GRADER_RATE_LIMIT_PER_MINUTE", v)?;
        }
        if let Some(v) = env("GRADER_SAMPLES") {
            self.judge.samples = parse("GRADER_SAMPLES", v)?;
        }
        if let Some(v) = env("GRADER_TEMPERATURE") {
            self.judge.temperature = parse("GRADER_TEMPERATURE", v)?;
        }
        let base_url = env("OPENAI_BASE_URL");
        let has_key = env("OPENAI_API_KEY").is_some();
        if self.models.is_empty() && (base_url.is_some() || has_key) {
            let model = env("GRADER_MODEL").unwrap_or_else(|| IMPLICIT_MODEL.to_string());
            self.models.push(ModelConfig {
                name: "default".into(),
                model,
                base_url: base_url.clone(),
                api_key_env: None,
                prices: Default::default(),
                context_window: 128_000,
                max_output_tokens: 2_000,
                tokenizer: None,
                timeout_secs: 60,
                max_retries: 3,
                rpm: None,
                tpm: None,
            });
        } else if let Some(m) = env("GRADER_MODEL") {
            // Choose among configured models by name.
            self.judge.model = Some(m);
        }
        // OPENAI_BASE_URL fills in models that did not set their own endpoint.
        if let Some(url) = base_url {
            for m in self.models.iter_mut().filter(|m| m.base_url.is_none()) {
                m.base_url = Some(url.clone());
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.judge.samples == 0 || self.judge.samples > 15 {
            return Err(ConfigError::Invalid(format!(
                "judge.samples must be between 1 and 15, got {}",
                self.judge.samples
            )));
        }
        if !(0.0..=2.0).contains(&self.judge.temperature) {
            return Err(ConfigError::Invalid(format!(
                "judge.temperature must be between 0 and 2, got {}",
                self.judge.temperature
            )));
        }
        if self.limits.max_chars == 0 {
            return Err(ConfigError::Invalid("limits.max_chars must be > 0".into()));
        }
        if self
            .service
            .session_secret
            .as_ref()
            .is_some_and(|k| k.chars().count() < 32)
        {
            return Err(ConfigError::Invalid(
                "service.session_secret must be at least 32 characters".into(),
            ));
        }
        for stage in self.stages.keys() {
            stage
                .parse::<crate::domain::Stage>()
                .map_err(|e| ConfigError::Invalid(format!("[stages.{stage}]: {e}")))?;
        }
        if let Some(name) = &self.judge.model {
            if !self.models.iter().any(|m| &m.name == name) {
                return Err(ConfigError::Invalid(format!(
                    "judge.model = {name:?} names no [[models]] entry (have: {})",
                    self.models
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        for role in self.service.rate_limit_roles.keys() {
            if crate::store::Role::parse(role).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "[service.rate_limit_roles]: unknown role {role:?} (use ingest, grader or admin)"
                )));
            }
        }
        if self.eval.concurrency == 0 {
            return Err(ConfigError::Invalid("eval.concurrency must be >= 1".into()));
        }
        for (name, v) in [
            ("eval.min_qwk", self.eval.min_qwk),
            ("eval.max_gap_to_human", self.eval.max_gap_to_human),
            ("eval.max_abs_smd", self.eval.max_abs_smd),
        ] {
            if !v.is_finite() {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be a finite number"
                )));
            }
        }
        self.validate_routing()?;
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.models {
            if !seen.insert(&m.name) {
                return Err(ConfigError::Invalid(format!(
                    "two [[models]] entries are named {:?}",
                    m.name
                )));
            }
        }
        Ok(())
    }

    /// The model the judge grades with, or `None` for the offline judge.
    pub fn judge_model(&self) -> Option<&ModelConfig> {
        match &self.judge.model {
            Some(name) => self.models.iter().find(|m| &m.name == name),
            None => self.models.first(),
        }
    }

    /// The `[[models]]` entry named `name`.
    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The route a stage grades with: its own `[routes.<stage>]` over `[routes.default]`.
    /// `None` when no routes are configured (the single `judge.model` grades everything).
    pub fn route_for(&self, stage: &str) -> Option<RouteConfig> {
        if self.routes.is_empty() {
            return None;
        }
        let default = self.routes.get("default").cloned().unwrap_or_default();
        Some(match self.routes.get(stage) {
            Some(r) => r.over(&default),
            None => default,
        })
    }

    fn validate_routing(&self) -> Result<(), ConfigError> {
        let known = |name: &str, at: &str| -> Result<(), ConfigError> {
            if self.model(name).is_some() {
                return Ok(());
            }
            Err(ConfigError::Invalid(format!(
                "{at} names model {name:?}, but no [[models]] entry has that name (have: {})",
                self.models
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        };
        for (key, route) in &self.routes {
            if key != "default" {
                key.parse::<crate::domain::Stage>().map_err(|e| {
                    ConfigError::Invalid(format!("[routes.{key}]: {e} (or `default`)"))
                })?;
            }
            for (tier, chain) in [("cheap", &route.cheap), ("strong", &route.strong)] {
                if let Some(chain) = chain {
                    if chain.names().is_empty() {
                        return Err(ConfigError::Invalid(format!(
                            "[routes.{key}] {tier} is an empty list"
                        )));
                    }
                    for n in chain.names() {
                        known(n, &format!("[routes.{key}] {tier}"))?;
                    }
                }
            }
            for (field, v) in [
                ("cheap_samples", route.cheap_samples),
                ("strong_samples", route.strong_samples),
            ] {
                if let Some(v) = v {
                    if v == 0 || v > 15 {
                        return Err(ConfigError::Invalid(format!(
                            "[routes.{key}] {field} must be between 1 and 15, got {v}"
                        )));
                    }
                }
            }
            if let Some(c) = route.escalate_below_confidence {
                if !(0.0..=1.0).contains(&c) {
                    return Err(ConfigError::Invalid(format!(
                        "[routes.{key}] escalate_below_confidence must be between 0 and 1, got {c}"
                    )));
                }
            }
        }
        if !self.routes.is_empty() && self.models.is_empty() {
            return Err(ConfigError::Invalid(
                "[routes] are configured but there are no [[models]]".into(),
            ));
        }
        for m in &self.models {
            if m.rpm == Some(0) || m.tpm == Some(0) {
                return Err(ConfigError::Invalid(format!(
                    "[[models]] {:?}: rpm and tpm must be positive (omit them for no limit)",
                    m.name
                )));
            }
        }
        if self.cache.enabled && self.cache.l1_max_bytes == 0 {
            return Err(ConfigError::Invalid(
                "cache.l1_max_bytes must be > 0 (or set cache.enabled = false)".into(),
            ));
        }
        let b = &self.budgets;
        let mut caps = vec![
            ("budgets.global_daily_usd".to_string(), b.global_daily_usd),
            (
                "budgets.global_monthly_usd".to_string(),
                b.global_monthly_usd,
            ),
            ("budgets.tenant_daily_usd".to_string(), b.tenant_daily_usd),
            (
                "budgets.tenant_monthly_usd".to_string(),
                b.tenant_monthly_usd,
            ),
        ];
        for (t, tb) in &b.tenants {
            caps.push((format!("budgets.tenants.{t}.daily_usd"), tb.daily_usd));
            caps.push((format!("budgets.tenants.{t}.monthly_usd"), tb.monthly_usd));
        }
        for (name, cap) in caps {
            if let Some(v) = cap {
                if !v.is_finite() || v < 0.0 {
                    return Err(ConfigError::Invalid(format!(
                        "{name} must be a non-negative number of USD, got {v}"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_are_embedded_and_offline() {
        let c = Config::from_sources(None, None, &env_of(&[])).unwrap();
        assert_eq!(c.database_url, "sqlite://grader.db");
        assert_eq!(c.addr, "127.0.0.1:8080");
        assert!(c.judge_model().is_none(), "no key, no URL: offline judge");
    }

    #[test]
    fn base_url_alone_configures_an_implicit_model() {
        let env = env_of(&[
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
            ("GRADER_MODEL", "llama3"),
        ]);
        let c = Config::from_sources(None, None, &env).unwrap();
        let m = c.judge_model().unwrap();
        assert_eq!(m.model, "llama3");
        assert_eq!(m.base_url.as_deref(), Some("http://127.0.0.1:9/v1"));
    }

    #[test]
    fn env_overrides_file_and_bad_values_are_named() {
        let text = "addr = \"0.0.0.0:1\"\n[judge]\nsamples = 3\n";
        let c = Config::from_sources(None, Some(text), &env_of(&[("GRADER_ADDR", "1.2.3.4:5")]))
            .unwrap();
        assert_eq!(c.addr, "1.2.3.4:5");
        assert_eq!(c.judge.samples, 3);
        let err = Config::from_sources(None, None, &env_of(&[("GRADER_SAMPLES", "many")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("GRADER_SAMPLES"), "{err}");
    }

    #[test]
    fn routes_budgets_and_model_limits_parse_and_are_checked() {
        let text = r#"
[[models]]
name = "mini"
model = "gpt-4o-mini"
rpm = 500
tpm = 200000

[[models]]
name = "big"
model = "gpt-4o"

[[models]]
name = "big-b"
model = "gpt-4o"
base_url = "http://127.0.0.1:9/v1"

[routes.default]
cheap = "mini"
strong = ["big", "big-b"]
cheap_samples = 3

[routes.system_design]
hard = true

[budgets]
tenant_daily_usd = 5.0
[budgets.tenants.acme]
monthly_usd = 100.0
"#;
        let c = Config::from_sources(None, Some(text), &env_of(&[])).unwrap();
        assert_eq!(
            c.model("mini").unwrap().limits(),
            crate::llm::ratelimit::ModelLimits {
                rpm: Some(500),
                tpm: Some(200_000)
            }
        );
        assert_eq!(c.model("mini").unwrap().model, "gpt-4o-mini");
        let r = c.route_for("system_design").unwrap();
        assert_eq!(r.hard, Some(true));
        assert_eq!(r.cheap_samples, Some(3), "inherited from default");
        assert_eq!(r.strong.unwrap().names(), vec!["big", "big-b"]);
        assert_eq!(c.route_for("hands_on").unwrap().hard, None);
        assert_eq!(c.budgets.tenants["acme"].monthly_usd, Some(100.0));
        assert!(!c.budgets.is_unlimited());

        let bad = text.replace("strong = [\"big\", \"big-b\"]", "strong = \"huge\"");
        let err = Config::from_sources(None, Some(&bad), &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("huge"), "{err}");
        let bad = text.replace("rpm = 500", "rpm = -1");
        let err = Config::from_sources(None, Some(&bad), &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rpm"), "{err}");
        let bad = text.replace("[routes.system_design]", "[routes.design]");
        let err = Config::from_sources(None, Some(&bad), &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("design"), "{err}");
        let bad = text.replace("tenant_daily_usd = 5.0", "tenant_daily_usd = -5.0");
        assert!(Config::from_sources(None, Some(&bad), &env_of(&[])).is_err());
    }

    #[test]
    fn unknown_keys_and_stages_are_rejected() {
        let err = Config::from_sources(None, Some("adr = \"x\""), &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("adr"), "{err}");
        let err = Config::from_sources(None, Some("[stages.design]\n"), &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("design"), "{err}");
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// The shipped example must stay a valid configuration as the config grows.
    #[test]
    fn the_example_config_parses_and_validates() {
        let text = include_str!("../grader.example.toml");
        let c = Config::from_sources(Some(Path::new("grader.example.toml")), Some(text), &|_| {
            None
        })
        .unwrap();
        assert_eq!(c.judge_model().unwrap().name, "cheap");
        assert_eq!(c.models.len(), 2);
        assert_eq!(c.route_for("system_design").unwrap().hard, Some(true));
    }
}
