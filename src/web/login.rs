//! Logging in and out. The person gives a grader- or admin-role API key and their name; the
//! name becomes the rater of every grade they enter, so calibration can tell graders apart
//! even when a team shares one key. The key is hashed at once and never stored or echoed.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use maud::{html, Markup};

use super::error::{see_other, WebError};
use super::layout;
use super::session::{
    cookie_value, lookup_key, random_token, tokens_match, Session, CSRF_FIELD, LOGIN_CSRF_COOKIE,
    MAX_NAME_CHARS, SESSION_COOKIE, UI_ROLE,
};
use super::{FormFields, WebState};
use crate::http::auth::key_hash;
use crate::store::AuditEntry;

/// `GET /ui/login`.
pub async fn form(State(state): State<Arc<WebState>>) -> Response {
    login_page(&state, StatusCode::OK, None, "")
}

/// The login page with a fresh double-submit CSRF token (cookie + hidden field).
fn login_page(state: &WebState, status: StatusCode, error: Option<&str>, name: &str) -> Response {
    let token = random_token();
    let body: Markup = html! {
        section.login {
            h1 { "Log in to review" }
            p.hint {
                "Use a grader or admin API key of your team (" code { "grader admin key create --role grader" }
                "). Your name is recorded as the rater of the grades you enter."
            }
            @if let Some(e) = error {
                p.error-message role="alert" { (e) }
            }
            form #login method="post" action="/ui/login" {
                input type="hidden" name=(CSRF_FIELD) value=(token);
                label for="name" { "Your name" }
                input #name type="text" name="name" value=(name) required maxlength=(MAX_NAME_CHARS) autocomplete="name" autofocus;
                label for="key" { "API key" }
                input #key type="password" name="key" required autocomplete="off";
                button #login-submit type="submit" { "Log in" }
            }
        }
    };
    let mut resp = (status, layout::page("Log in", None, body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&state.sessions.cookie(LOGIN_CSRF_COOKIE, &token, 3600)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /ui/login`: 303 to the queue with the session cookie, or the form again with what
/// went wrong (401 unknown key, 403 a key below the grader role, 422 a missing name).
pub async fn submit(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    fields: FormFields,
) -> Response {
    let cookie = cookie_value(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if !tokens_match(fields.get(CSRF_FIELD).unwrap_or(""), &cookie) {
        return WebError::Csrf.into_page(None);
    }
    let name = fields.get("name").unwrap_or("").to_string();
    let key = fields.get("key").unwrap_or("");
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return login_page(
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(&format!(
                "Enter your name (1 to {MAX_NAME_CHARS} characters): it is recorded as the rater of your grades."
            )),
            &name,
        );
    }
    if key.is_empty() || key.len() > 512 {
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("Enter an API key."),
            &name,
        );
    }
    let hash = key_hash(key);
    let found = match lookup_key(&state, &hash).await {
        Ok(f) => f,
        Err(e) => return e.into_page(None),
    };
    let Some((record, tenant)) = found else {
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("That API key is not valid."),
            &name,
        );
    };
    if record.role < UI_ROLE {
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            Some(&format!(
                "That key has the {} role; the review UI needs a grader or admin key.",
                record.role.as_str()
            )),
            &name,
        );
    }
    let audit = AuditEntry {
        tenant_id: tenant.id.clone(),
        actor: format!("key:{}", record.id),
        action: "session.started".into(),
        subject: None,
        detail: serde_json::json!({"via": "ui", "name": name}),
        at: Utc::now(),
    };
    if let Err(e) = state.app.store.audit(&audit).await {
        return WebError::from(e).into_page(None);
    }
    let (token, _csrf) = state.sessions.issue(&hash, &name);
    let mut resp = see_other("/ui/queue");
    for cookie in [
        state.sessions.session_cookie(&token),
        state.sessions.cookie(LOGIN_CSRF_COOKIE, "", 0),
    ] {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// `POST /ui/logout`: clears the cookie (CSRF-checked, so another site cannot log a person
/// out), then 303 to the login page.
pub async fn logout(
    State(state): State<Arc<WebState>>,
    session: Session,
    fields: FormFields,
) -> Response {
    if let Err(e) = session.check_csrf(&fields.0) {
        return e.into_page(Some(&session));
    }
    let mut resp = see_other("/ui/login");
    if let Ok(v) = HeaderValue::from_str(&state.sessions.cookie(SESSION_COOKIE, "", 0)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}
