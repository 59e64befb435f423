//! `POST /v1/webhooks/{tenant}/{source}`: ATS deliveries (greenhouse, lever, ashby, standard).
//!
//! The tenant is named in the path (the sender cannot send our API key); the secret for
//! (tenant, source) comes from the store. `ingest::ats::receive` verifies the signature over
//! the raw bytes first, then the signed timestamp, then maps the payload. Then:
//!
//! * ping / test event → 200 `{"ok": true, "ping": true}`, nothing stored;
//! * a submission → stored with its job under the sender's delivery id → 202 `{"id", ...}`;
//!   a redelivery of the same id → 202 with the same id (graded once);
//! * bad or missing signature → 401; a signed timestamp outside
//!   `service.webhook_tolerance_secs` (a replay or a long-delayed retry) → 401
//!   `stale_delivery`;
//! * unknown tenant **or** no secret configured for the source → 404
//!   `webhook_not_configured`, the same answer for both so the endpoint does not reveal which
//!   tenant names exist; unknown source → 404 `unknown_source`.
//!
//! Auth errors never echo anything from the body.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::extract::{ApiPath, RawBody};
use super::submissions::{sha256_hex, storable, Accepted};
use super::{ApiError, Ctx};
use crate::ingest::ats::{self, Delivery, Source};
use crate::ingest::Limits;
use crate::store::{NewSubmission, Tenant};

/// The answer to a ping or test event.
#[derive(Debug, Serialize, ToSchema)]
pub struct PingResponse {
    pub ok: bool,
    pub ping: bool,
}

/// The tenant and its secret for `source`, cached on hits.
async fn secret_for(
    ctx: &Ctx,
    tenant_name: &str,
    source: Source,
) -> Result<(Tenant, String), ApiError> {
    let cache_key = format!("{tenant_name}\u{0}{}", source.as_str());
    if let Some(hit) = ctx.webhooks.get(&cache_key) {
        return Ok(hit);
    }
    let store = &ctx.app.store;
    let tenant = store
        .tenant_by_name(tenant_name)
        .await?
        .ok_or(ApiError::WebhookNotConfigured)?;
    let secret = store
        .webhook_secret(&tenant.id, source.as_str())
        .await?
        .filter(|s| !s.trim().is_empty())
        .ok_or(ApiError::WebhookNotConfigured)?;
    ctx.webhooks
        .insert(cache_key, (tenant.clone(), secret.clone()));
    Ok((tenant, secret))
}

/// Receive an ATS webhook delivery.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{tenant}/{source}",
    tag = "webhooks",
    params(
        ("tenant" = String, Path, description = "Tenant name"),
        ("source" = String, Path, description = "greenhouse, lever, ashby or standard"),
    ),
    request_body(content = Object, description = "The sender's payload, verified over its raw bytes"),
    responses(
        (status = 200, description = "Ping or test event", body = PingResponse),
        (status = 202, description = "Stored with its job (after the commit); a redelivery answers the same id", body = Accepted),
        (status = 400, description = "Not JSON or not the sender's envelope", body = ErrorBody),
        (status = 401, description = "Missing or invalid signature, stale or future timestamp", body = ErrorBody),
        (status = 404, description = "Unknown source, or no webhook configured for this tenant and source", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "Authentic but not gradable (no transcript, link only, unknown stage or prompt)", body = ErrorBody),
    )
)]
pub async fn receive(
    State(ctx): State<Arc<Ctx>>,
    ApiPath((tenant_name, source)): ApiPath<(String, String)>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let source: Source = source.parse()?;
    let (tenant, secret) = secret_for(&ctx, &tenant_name, source).await?;
    let app = &ctx.app;
    let limits = Limits {
        max_chars: app.config.limits.max_chars,
        max_turns: app.config.limits.max_turns,
    };
    let lookup = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let delivery = ats::receive(
        source,
        &lookup,
        &body,
        &secret,
        Utc::now(),
        Duration::from_secs(app.config.service.webhook_tolerance_secs),
        &limits,
    )?;
    let (delivery_id, incoming) = match delivery {
        Delivery::Ping { .. } => {
            return Ok((
                StatusCode::OK,
                Json(PingResponse {
                    ok: true,
                    ping: true,
                }),
            )
                .into_response())
        }
        Delivery::Submission {
            delivery_id,
            submission,
        } => (delivery_id, submission),
    };
    let requested = incoming
        .prompt
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    let pinned = match &requested {
        Some(r) => Some(
            app.prompt_for(incoming.stage, Some(r))
                .map_err(ApiError::UnknownPrompt)?
                .key(),
        ),
        None => {
            app.prompt_for(incoming.stage, None)
                .map_err(|message| ApiError::Unavailable {
                    code: "prompt_unavailable",
                    message,
                })?;
            None
        }
    };
    let new = NewSubmission {
        tenant_id: tenant.id.clone(),
        submission: storable(
            incoming.into_submission(tenant.id.clone()),
            &tenant.settings,
        )?,
        source: source.as_str().to_string(),
        delivery_id: Some(delivery_id),
        prompt: pinned,
        input_sha256: sha256_hex(&body),
    };
    let (record, created) = app.store.enqueue(new).await?;
    app.metrics.record_enqueued(source.as_str(), created);
    Ok(Accepted::response(&record, created))
}
