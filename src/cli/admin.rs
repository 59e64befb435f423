//! `grader admin`: tenants, API keys, webhook secrets and tenant settings, straight against
//! the configured database (`GRADER_DATABASE_URL`). Every action writes an audit entry with
//! the actor `admin-cli`; secrets and keys never appear in the audit log.
//!
//! API keys are `gk_` + 32 base62 characters (about 190 bits) from a CSPRNG seeded by the
//! operating system. The key is printed once, alone on stdout (so a script can capture it);
//! only its sha256 is stored, so a lost key is replaced, never recovered.
//!
//! A secret argument may be `-` to read it from standard input, keeping it out of the shell
//! history and the process list.

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use chrono::Utc;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::config::Config;
use crate::http::auth::key_hash;
use crate::ingest::ats::{self, Source};
use crate::store::{self, AuditEntry, Role, Store, Tenant};

const ACTOR: &str = "admin-cli";
const KEY_PREFIX: &str = "gk_";
const KEY_CHARS: usize = 32;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Debug, clap::Subcommand)]
pub enum AdminCmd {
    /// Create tenants and change their settings.
    Tenant {
        #[command(subcommand)]
        cmd: TenantCmd,
    },
    /// Create API keys.
    Key {
        #[command(subcommand)]
        cmd: KeyCmd,
    },
    /// Set the secret an ATS signs a tenant's webhooks with.
    #[command(name = "webhook-secret")]
    WebhookSecret {
        #[command(subcommand)]
        cmd: WebhookSecretCmd,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TenantCmd {
    /// Create a tenant.
    Create {
        /// Tenant name, used in webhook URLs: letters, digits, `-`, `_`, `.`.
        name: String,
    },
    /// Change a tenant's settings; options not given are left as they are.
    Set {
        #[arg(long)]
        tenant: String,
        /// Where finished reports are POSTed (Standard Webhooks signed); `none` removes it.
        #[arg(long, value_name = "URL")]
        callback_url: Option<String>,
        /// `whsec_<base64>` secret that signs callbacks, or `-` to read it from stdin.
        #[arg(long, value_name = "SECRET")]
        callback_secret: Option<String>,
        /// Graders see AI scores only after submitting their own.
        #[arg(long, value_name = "BOOL")]
        blind_review: Option<bool>,
        /// Human-oversight stop switch: every grading needs a person's review.
        #[arg(long, value_name = "BOOL")]
        review_everything: Option<bool>,
        /// Keep the original (unredacted) transcript.
        #[arg(long, value_name = "BOOL")]
        keep_original: Option<bool>,
    },
    /// Show a tenant's id and settings (secrets masked).
    Show { name: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum KeyCmd {
    /// Create an API key; it is printed once and stored only as its sha256.
    Create {
        #[arg(long)]
        tenant: String,
        /// ingest (post work, read it), grader (also human grades, calibration) or admin.
        #[arg(long)]
        role: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum WebhookSecretCmd {
    /// Set (or replace) the secret for one source.
    Set {
        #[arg(long)]
        tenant: String,
        /// greenhouse, lever, ashby or standard.
        #[arg(long)]
        source: String,
        /// The shared secret (`whsec_...` for standard), or `-` to read it from stdin.
        secret: String,
    },
}

pub fn run(config: Option<&Path>, cmd: &AdminCmd) -> anyhow::Result<i32> {
    let cfg = Config::load(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let store = store::open(&cfg.database_url).await.with_context(|| {
            format!(
                "opening the database {}",
                store::redact_url(&cfg.database_url)
            )
        })?;
        execute(store.as_ref(), cmd).await
    })
}

/// A new API key: `gk_` + 32 base62 characters from an OS-seeded CSPRNG.
pub fn generate_key() -> String {
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let mut key = String::with_capacity(KEY_PREFIX.len() + KEY_CHARS);
    key.push_str(KEY_PREFIX);
    for _ in 0..KEY_CHARS {
        key.push(char::from(BASE62[rng.random_range(0..BASE62.len())]));
    }
    key
}

fn read_secret(arg: &str) -> anyhow::Result<String> {
    let s = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the secret from standard input")?;
        s
    } else {
        arg.to_string()
    };
    let s = s.trim().to_string();
    if s.is_empty() {
        bail!("the secret is empty");
    }
    Ok(s)
}

fn valid_tenant_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

async fn tenant(store: &dyn Store, name: &str) -> anyhow::Result<Tenant> {
    store.tenant_by_name(name).await?.ok_or_else(|| {
        anyhow!("no tenant named {name:?}; create it with `grader admin tenant create {name}`")
    })
}

async fn audit(
    store: &dyn Store,
    tenant: &Tenant,
    action: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    store
        .audit(&AuditEntry {
            tenant_id: tenant.id.clone(),
            actor: ACTOR.to_string(),
            action: action.to_string(),
            subject: Some(tenant.id.clone()),
            detail,
            at: Utc::now(),
        })
        .await
        .context("writing the audit entry")
}

fn mask(secret: &Option<String>) -> serde_json::Value {
    match secret {
        Some(_) => json!("(set)"),
        None => serde_json::Value::Null,
    }
}

/// Runs one admin command against `store` (also used by tests without a process).
pub async fn execute(store: &dyn Store, cmd: &AdminCmd) -> anyhow::Result<i32> {
    match cmd {
        AdminCmd::Tenant {
            cmd: TenantCmd::Create { name },
        } => {
            if !valid_tenant_name(name) {
                bail!("invalid tenant name {name:?}: use 1-64 letters, digits, `-`, `_` or `.` (it appears in webhook URLs)");
            }
            let t = store.create_tenant(name).await?;
            audit(store, &t, "tenant.created", json!({"name": t.name})).await?;
            println!("{}", t.id);
            eprintln!("created tenant {} ({})", t.name, t.id);
        }
        AdminCmd::Tenant {
            cmd:
                TenantCmd::Set {
                    tenant: name,
                    callback_url,
                    callback_secret,
                    blind_review,
                    review_everything,
                    keep_original,
                },
        } => {
            let t = tenant(store, name).await?;
            let mut s = t.settings.clone();
            if let Some(url) = callback_url {
                if url == "none" || url.is_empty() {
                    s.callback_url = None;
                } else {
                    let ok = (url.starts_with("https://") || url.starts_with("http://"))
                        && url.len() > "http://".len();
                    if !ok {
                        bail!("--callback-url must be an http:// or https:// URL, got {url:?}");
                    }
                    s.callback_url = Some(url.clone());
                }
            }
            if let Some(secret) = callback_secret {
                let secret = read_secret(secret)?;
                ats::validate_standard_secret(&secret)
                    .map_err(|e| anyhow!("invalid --callback-secret: {e}"))?;
                s.callback_secret = Some(secret);
            }
            if s.callback_url.is_some() && s.callback_secret.is_none() {
                bail!("a callback URL needs --callback-secret whsec_... (reports are signed)");
            }
            if let Some(v) = blind_review {
                s.blind_review = Some(*v);
            }
            if let Some(v) = review_everything {
                s.review_everything = Some(*v);
            }
            if let Some(v) = keep_original {
                s.keep_original = Some(*v);
            }
            store.update_tenant_settings(&t.id, &s).await?;
            audit(
                store,
                &t,
                "tenant.settings_updated",
                json!({
                    "callback_url": s.callback_url,
                    "callback_secret": mask(&s.callback_secret),
                    "blind_review": s.blind_review,
                    "review_everything": s.review_everything,
                    "keep_original": s.keep_original,
                }),
            )
            .await?;
            eprintln!("updated settings of tenant {}", t.name);
        }
        AdminCmd::Tenant {
            cmd: TenantCmd::Show { name },
        } => {
            let t = tenant(store, name).await?;
            let out = json!({
                "id": t.id,
                "name": t.name,
                "created_at": t.created_at,
                "settings": {
                    "callback_url": t.settings.callback_url,
                    "callback_secret": mask(&t.settings.callback_secret),
                    "blind_review": t.settings.blind_review,
                    "review_everything": t.settings.review_everything,
                    "keep_original": t.settings.keep_original,
                }
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        AdminCmd::Key {
            cmd: KeyCmd::Create { tenant: name, role },
        } => {
            let role = Role::parse(role.trim()).ok_or_else(|| {
                anyhow!("unknown role {role:?}; expected ingest, grader or admin")
            })?;
            let t = tenant(store, name).await?;
            let key = generate_key();
            let prefix: String = key.chars().take(KEY_PREFIX.len() + 6).collect();
            let record = store
                .create_api_key(&t.id, role, &key_hash(&key), &prefix)
                .await?;
            audit(
                store,
                &t,
                "api_key.created",
                json!({"key_id": record.id, "role": role.as_str(), "prefix": prefix}),
            )
            .await?;
            println!("{key}");
            eprintln!(
                "created {} key {} for tenant {}; it is shown only this once",
                role.as_str(),
                record.id,
                t.name
            );
        }
        AdminCmd::WebhookSecret {
            cmd:
                WebhookSecretCmd::Set {
                    tenant: name,
                    source,
                    secret,
                },
        } => {
            let source: Source = source.parse().map_err(|e: ats::AtsError| anyhow!("{e}"))?;
            let secret = read_secret(secret)?;
            if source == Source::Standard {
                ats::validate_standard_secret(&secret)
                    .map_err(|e| anyhow!("invalid Standard Webhooks secret: {e}"))?;
            }
            let t = tenant(store, name).await?;
            store
                .set_webhook_secret(&t.id, source.as_str(), &secret)
                .await?;
            audit(
                store,
                &t,
                "webhook_secret.set",
                json!({"source": source.as_str()}),
            )
            .await?;
            eprintln!(
                "set the {} webhook secret of tenant {}; deliveries go to /v1/webhooks/{}/{}",
                source.as_str(),
                t.name,
                t.name,
                source.as_str()
            );
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_base62_and_distinct() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 32);
        assert!(a.starts_with("gk_"));
        assert!(a[3..].bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn tenant_names_are_url_safe() {
        assert!(valid_tenant_name("acme-corp_1.eu"));
        assert!(!valid_tenant_name("acme corp"));
        assert!(!valid_tenant_name(""));
        assert!(!valid_tenant_name("a/b"));
    }
}
