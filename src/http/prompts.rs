//! `GET /v1/prompts`: the judge prompt versions this process grades with, and their identity
//! (the sha256 of the file's bytes, which every report carries).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::ErrorBody;
use super::{ApiError, Ctx};
use crate::store::Role;

#[derive(Debug, Serialize, ToSchema)]
pub struct PromptInfo {
    #[schema(example = "system_design")]
    pub id: String,
    #[schema(example = "v1")]
    pub version: String,
    pub stage: String,
    pub title: String,
    /// sha256 hex of the prompt file's bytes.
    pub sha256: String,
    /// In the lock file: immutable.
    pub published: bool,
    /// What a submission of this stage is graded with when it names no prompt.
    pub default_for_stage: bool,
}

/// The prompt registry.
#[utoipa::path(
    get,
    path = "/v1/prompts",
    tag = "prompts",
    responses(
        (status = 200, body = Vec<PromptInfo>),
        (status = 401, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
) -> Result<Json<Vec<PromptInfo>>, ApiError> {
    caller.require(Role::Ingest)?;
    let app = &ctx.app;
    Ok(Json(
        app.registry
            .list()
            .iter()
            .map(|pv| PromptInfo {
                id: pv.file.id.clone(),
                version: pv.file.version.clone(),
                stage: pv.file.stage.to_string(),
                title: pv.file.title.clone(),
                sha256: pv.sha256.clone(),
                published: pv.published,
                default_for_stage: app
                    .prompt_for(pv.file.stage, None)
                    .is_ok_and(|d| d.key() == pv.key()),
            })
            .collect(),
    ))
}
