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
        let mut cfg: Config = match text {
            Some(t) => toml::from_str(t).map_err(|e| ConfigError::Parse {
                path: path.unwrap_or(Path::new("grader.toml")).to_path_buf(),
                message: e.to_string(),
            })?,
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
        if let Some(v) = env("GRADER_WORKERS") {
            self.service.workers = parse("GRADER_WORKERS", v)?;
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
