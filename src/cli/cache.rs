//! `grader cache purge --prompt ID@VERSION [--db URL]`: deletes one prompt version's cached
//! model answers from the persistent response cache (the store's `response_cache`, L2).
//!
//! A purge is rarely needed for correctness (every key includes the prompt version's sha256,
//! so a new version never hits an old answer); it reclaims space and forces re-grading of a
//! version after, say, a provider incident. Running services keep their in-process L1 copies
//! until `cache.l1_ttl_secs` passes.

use std::path::Path;

use anyhow::{anyhow, Context};
use clap::Subcommand;

use crate::config::Config;
use crate::prompts::{self, Registry};

#[derive(Debug, Subcommand)]
pub enum CacheCmd {
    /// Delete the cached answers of one prompt version.
    Purge {
        /// The prompt version, `ID@VERSION`, resolved in the prompts directory.
        #[arg(long, value_name = "ID@VERSION", required_unless_present = "sha256")]
        prompt: Option<String>,
        /// A prompt version's sha256 instead (e.g. of a file no longer in the directory).
        #[arg(long, value_name = "HEX", conflicts_with = "prompt")]
        sha256: Option<String>,
        /// Database holding the cache (default: the configured `database_url`).
        #[arg(long, value_name = "URL")]
        db: Option<String>,
    },
}

pub fn run(config: Option<&Path>, cmd: &CacheCmd) -> anyhow::Result<i32> {
    let cfg = Config::load(config)?;
    match cmd {
        CacheCmd::Purge { prompt, sha256, db } => {
            let (label, sha) = match (prompt, sha256) {
                (Some(r), _) => {
                    let registry = Registry::load(&cfg.prompts_dir).with_context(|| {
                        format!("loading prompts from {}", cfg.prompts_dir.display())
                    })?;
                    let (id, version) = prompts::parse_ref(r)?;
                    let version = version
                        .ok_or_else(|| anyhow!("--prompt needs an explicit version: ID@VERSION"))?;
                    let pv = registry.get(&id, &version).ok_or_else(|| {
                        anyhow!("no prompt version `{r}` in the prompts directory")
                    })?;
                    (pv.key(), pv.sha256.clone())
                }
                (None, Some(h)) => {
                    let h = h.trim().to_ascii_lowercase();
                    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(anyhow!("--sha256 must be 64 hex digits"));
                    }
                    (h.clone(), h)
                }
                (None, None) => return Err(anyhow!("give --prompt ID@VERSION or --sha256 HEX")),
            };
            let url = db.as_deref().unwrap_or(&cfg.database_url);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let purged = runtime.block_on(async {
                let store = crate::store::open(url).await.with_context(|| {
                    format!("opening the database {}", crate::store::redact_url(url))
                })?;
                store
                    .cache_purge_prompt(&sha)
                    .await
                    .context("purging the response cache")
            })?;
            println!(
                "purged {purged} cached answer{} of {label} (sha256 {})",
                if purged == 1 { "" } else { "s" },
                &sha[..12.min(sha.len())]
            );
            Ok(0)
        }
    }
}
