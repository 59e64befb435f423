//! Model routing: which models grade a stage, in which order, and with what protection.
//!
//! A [`Route`] is a cascade: a cheap [`Tier`] graded first, an optional strong tier it
//! escalates to, and the [`EscalationRules`] (evaluated by the judge, which knows judgments).
//! A tier is a chain of [`ModelHandle`]s: the primary, then fallbacks tried when it fails or
//! its circuit breaker is open. Every handle wraps its provider so each request is
//! rate-limited (RPM/TPM token buckets) and counted in the metrics, retries included, and
//! carries the model's breaker. A model used by several routes is one handle: one breaker,
//! one limiter, as the provider sees one model.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::breaker::{Breaker, BreakerSettings, Permit};
use super::ratelimit::{ModelLimits, RateLimiter};
use super::{ChatRequest, ChatResponse, LlmError, ModelConfig, Provider};
use crate::config::{Config, ModelChain, RouteConfig};
use crate::domain::Stage;
use crate::metrics::JudgeMetrics;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("route {route}: no model for the {tier} tier")]
    NoModel { route: String, tier: &'static str },
    #[error("route {route}: unknown model {name:?}")]
    UnknownModel { route: String, name: String },
    #[error("cannot set up model {name:?}: {message}")]
    Provider { name: String, message: String },
}

/// The outcome label of one provider attempt, for metrics.
pub fn outcome_label(result: &Result<ChatResponse, LlmError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(LlmError::RateLimited { .. }) => "rate_limited",
        Err(LlmError::Server { .. }) => "server_error",
        Err(LlmError::Client { .. }) => "client_error",
        Err(LlmError::Timeout(_)) => "timeout",
        Err(LlmError::Transport(_)) => "transport",
        Err(LlmError::BadResponse(_)) => "bad_response",
        Err(LlmError::Exhausted { .. }) => "exhausted",
    }
}

/// Whether a failed call says something about the model's health (and so counts toward its
/// breaker). A request the provider rejects as malformed or too large would fail on any
/// healthy model; counting it would let one bad input open the breaker for everyone.
pub fn is_health_failure(err: &LlmError) -> bool {
    match err {
        LlmError::Client { status, .. } => !matches!(status, 400 | 413 | 422),
        LlmError::Exhausted { last, .. } => is_health_failure(last),
        _ => true,
    }
}

/// Rough token count of a request for the TPM bucket, before the exact usage is known:
/// about four characters per token plus the per-message overhead, plus the whole answer
/// budget, which is how providers charge a request against TPM.
fn estimate_tokens(req: &ChatRequest) -> u64 {
    let chars: usize = req.messages.iter().map(|m| m.content.len() + 16).sum();
    (chars / 4) as u64 + u64::from(req.max_tokens)
}

/// A provider wrapped with the model's rate limiter and the per-request metrics.
struct Metered {
    inner: Arc<dyn Provider>,
    limiter: Option<RateLimiter>,
    metrics: Arc<JudgeMetrics>,
}

#[async_trait]
impl Provider for Metered {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let charged = estimate_tokens(request);
        if let Some(l) = &self.limiter {
            let waited = l.acquire(charged).await;
            self.metrics.ratelimit_wait.observe(waited);
        }
        let started = Instant::now();
        let result = self.inner.complete(request).await;
        self.metrics
            .provider_call(&request.model, outcome_label(&result), started.elapsed());
        if let Some(l) = &self.limiter {
            let used = match &result {
                Ok(r) => r.usage.prompt_tokens + r.usage.completion_tokens,
                // A failed request still counted against the provider's RPM, but its tokens
                // were (almost always) not billed: give them back.
                Err(_) => 0,
            };
            l.settle(charged, used);
        }
        result
    }
}

/// One configured model: its settings, its (metered) provider and its breaker.
pub struct ModelHandle {
    pub config: ModelConfig,
    provider: Metered,
    pub breaker: Breaker,
}

impl ModelHandle {
    pub fn new(
        config: ModelConfig,
        provider: Arc<dyn Provider>,
        limits: ModelLimits,
        breaker: BreakerSettings,
        metrics: Arc<JudgeMetrics>,
    ) -> ModelHandle {
        ModelHandle {
            breaker: Breaker::new(&config.name, breaker, metrics.clone()),
            provider: Metered {
                inner: provider,
                limiter: RateLimiter::new(limits),
                metrics,
            },
            config,
        }
    }

    /// The provider to call: rate-limited and metered per request.
    pub fn provider(&self) -> &dyn Provider {
        &self.provider
    }

    pub fn permit(&self) -> Permit {
        self.breaker.allow(Instant::now())
    }

    /// Reports a finished call (after retries) to the breaker.
    pub fn record(&self, result: Result<(), &LlmError>) {
        match result {
            Ok(()) => self.breaker.on_success(),
            Err(e) if is_health_failure(e) => self.breaker.on_failure(Instant::now()),
            // The request was at fault, not the model: neither a success nor a failure.
            Err(_) => {}
        }
    }
}

/// One tier of a cascade.
pub struct Tier {
    /// `cheap` or `strong` for routes; the model's name for a single-model judge.
    pub label: String,
    /// Primary first, then fallbacks; never empty.
    pub chain: Vec<Arc<ModelHandle>>,
    pub samples: u32,
}

impl Tier {
    pub fn primary(&self) -> &Arc<ModelHandle> {
        &self.chain[0]
    }
}

/// When the cheap tier's result is not trusted and the strong tier grades instead.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationRules {
    /// Any dimension's cheap samples span at least this many points (0 = off).
    pub spread: u8,
    /// Any dimension's sample agreement below this (with 2+ samples).
    pub below_confidence: Option<f64>,
    /// How many dimensions must disagree (spread or confidence) to escalate; at least 1.
    pub min_dimensions: u32,
    /// Any cheap sample raised a high-severity red flag.
    pub red_flag: bool,
    /// The cheap tier's output was invalid (no valid sample).
    pub invalid: bool,
    /// Prompts longer than this go straight to the strong tier.
    pub above_tokens: Option<u64>,
    /// The stage goes straight to the strong tier.
    pub hard: bool,
}

impl Default for EscalationRules {
    fn default() -> Self {
        EscalationRules {
            spread: 2,
            below_confidence: None,
            min_dimensions: 1,
            red_flag: true,
            invalid: true,
            above_tokens: None,
            hard: false,
        }
    }
}

impl EscalationRules {
    fn from_config(r: &RouteConfig) -> EscalationRules {
        let d = EscalationRules::default();
        EscalationRules {
            spread: r.escalate_spread.unwrap_or(d.spread),
            below_confidence: r.escalate_below_confidence,
            min_dimensions: r.escalate_min_dimensions.unwrap_or(d.min_dimensions).max(1),
            red_flag: r.escalate_on_red_flag.unwrap_or(d.red_flag),
            invalid: r.escalate_on_invalid.unwrap_or(d.invalid),
            above_tokens: r.escalate_above_tokens,
            hard: r.hard.unwrap_or(false),
        }
    }
}

/// A stage's cascade.
pub struct Route {
    pub cheap: Tier,
    pub strong: Option<Tier>,
    pub rules: EscalationRules,
}

/// Routes per stage over a shared pool of model handles.
pub struct Router {
    default: Route,
    stages: BTreeMap<Stage, Route>,
    metrics: Arc<JudgeMetrics>,
}

/// Builds a provider for a configured model (the OpenAI-compatible client in production, a
/// scripted one in tests).
pub type ProviderFactory<'a> = dyn Fn(&ModelConfig) -> Result<Arc<dyn Provider>, String> + 'a;

/// Builds each configured model's handle once, however many routes name it.
struct Pool<'a> {
    cfg: &'a Config,
    make: &'a ProviderFactory<'a>,
    handles: BTreeMap<String, Arc<ModelHandle>>,
    breaker: BreakerSettings,
    metrics: Arc<JudgeMetrics>,
}

impl Pool<'_> {
    fn handle(&mut self, name: &str, route: &str) -> Result<Arc<ModelHandle>, RouteError> {
        if let Some(h) = self.handles.get(name) {
            return Ok(h.clone());
        }
        let model = self
            .cfg
            .model(name)
            .ok_or_else(|| RouteError::UnknownModel {
                route: route.to_string(),
                name: name.to_string(),
            })?;
        let provider = (self.make)(model).map_err(|message| RouteError::Provider {
            name: name.to_string(),
            message,
        })?;
        let h = Arc::new(ModelHandle::new(
            model.clone(),
            provider,
            model.limits(),
            self.breaker,
            self.metrics.clone(),
        ));
        self.handles.insert(name.to_string(), h.clone());
        Ok(h)
    }

    fn chain(&mut self, c: &ModelChain, route: &str) -> Result<Vec<Arc<ModelHandle>>, RouteError> {
        c.names()
            .into_iter()
            .map(|n| self.handle(n, route))
            .collect()
    }

    /// A cascade from its config; the cheap tier defaults to `judge.model`.
    fn route(
        &mut self,
        name: &str,
        r: &RouteConfig,
        judge_model: &str,
    ) -> Result<Route, RouteError> {
        let cheap = match &r.cheap {
            Some(c) => self.chain(c, name)?,
            None => vec![self.handle(judge_model, name)?],
        };
        if cheap.is_empty() {
            return Err(RouteError::NoModel {
                route: name.to_string(),
                tier: "cheap",
            });
        }
        let strong = match &r.strong {
            Some(c) => self.chain(c, name)?,
            None => Vec::new(),
        };
        let samples = self.cfg.judge.samples;
        Ok(Route {
            cheap: Tier {
                label: "cheap".into(),
                chain: cheap,
                samples: r.cheap_samples.unwrap_or(samples).max(1),
            },
            strong: (!strong.is_empty()).then(|| Tier {
                label: "strong".into(),
                chain: strong,
                samples: r.strong_samples.unwrap_or(1).max(1),
            }),
            rules: EscalationRules::from_config(r),
        })
    }
}

impl Router {
    /// One model for every stage, no escalation: what `Judge::with_model` grades with.
    pub fn single(
        model: ModelConfig,
        provider: Arc<dyn Provider>,
        samples: u32,
        limits: ModelLimits,
        breaker: BreakerSettings,
        metrics: Arc<JudgeMetrics>,
    ) -> Router {
        let label = model.name.clone();
        let handle = Arc::new(ModelHandle::new(
            model,
            provider,
            limits,
            breaker,
            metrics.clone(),
        ));
        Router {
            default: Route {
                cheap: Tier {
                    label,
                    chain: vec![handle],
                    samples: samples.max(1),
                },
                strong: None,
                rules: EscalationRules {
                    spread: 0,
                    red_flag: false,
                    invalid: false,
                    ..EscalationRules::default()
                },
            },
            stages: BTreeMap::new(),
            metrics,
        }
    }

    /// The routes of `cfg.routes` (or, when there are none, the single `judge.model`), each
    /// model built once by `make`. `None` when no model is configured at all (offline).
    pub fn from_config(
        cfg: &Config,
        make: &ProviderFactory<'_>,
        metrics: Arc<JudgeMetrics>,
    ) -> Result<Option<Router>, RouteError> {
        let Some(judge_model) = cfg.judge_model() else {
            return Ok(None);
        };
        let mut pool = Pool {
            cfg,
            make,
            handles: BTreeMap::new(),
            breaker: BreakerSettings {
                failures: cfg.breaker.failures,
                cooldown: std::time::Duration::from_secs(cfg.breaker.cooldown_secs),
            },
            metrics: metrics.clone(),
        };
        let Some(default_cfg) = cfg.route_for("default") else {
            let h = pool.handle(&judge_model.name, "judge.model")?;
            return Ok(Some(Router {
                default: Route {
                    cheap: Tier {
                        label: judge_model.name.clone(),
                        chain: vec![h],
                        samples: cfg.judge.samples.max(1),
                    },
                    strong: None,
                    rules: EscalationRules {
                        spread: 0,
                        red_flag: false,
                        invalid: false,
                        ..EscalationRules::default()
                    },
                },
                stages: BTreeMap::new(),
                metrics,
            }));
        };
        let default = pool.route("default", &default_cfg, &judge_model.name)?;
        let mut stages = BTreeMap::new();
        for stage in Stage::ALL {
            if cfg.routes.contains_key(stage.as_str()) {
                if let Some(r) = cfg.route_for(stage.as_str()) {
                    stages.insert(stage, pool.route(stage.as_str(), &r, &judge_model.name)?);
                }
            }
        }
        Ok(Some(Router {
            default,
            stages,
            metrics,
        }))
    }

    pub fn route(&self, stage: Stage) -> &Route {
        self.stages.get(&stage).unwrap_or(&self.default)
    }

    /// The route stages without their own use.
    pub fn default_route(&self) -> &Route {
        &self.default
    }

    pub fn metrics(&self) -> &Arc<JudgeMetrics> {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_faults_do_not_count_against_the_model() {
        let client = |status| LlmError::Client {
            status,
            message: String::new(),
        };
        assert!(!is_health_failure(&client(400)));
        assert!(is_health_failure(&client(401)));
        assert!(is_health_failure(&LlmError::Exhausted {
            attempts: 4,
            last: Box::new(LlmError::Server {
                status: 503,
                message: String::new()
            })
        }));
        assert!(!is_health_failure(&LlmError::Exhausted {
            attempts: 1,
            last: Box::new(client(413))
        }));
    }
}
