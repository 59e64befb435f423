//! The grader review UI under `/ui`: server-rendered HTML (maud), plain forms, no build
//! step and nothing loaded from elsewhere (the stylesheet and a small keyboard-shortcut
//! script are compiled into the binary). Every page works without JavaScript.
//!
//! | route | page |
//! | --- | --- |
//! | `GET /ui/login`, `POST /ui/login`, `POST /ui/logout` | [`login`]: a grader key and the person's name → signed session cookie |
//! | `GET /ui/queue?stage=&prompt=&status=&page=` | [`queue`]: what needs a person first, 25 a page |
//! | `GET /ui/submissions/{id}` | [`submission`]: transcript; blind grade form, then the AI's scores with highlighted evidence |
//! | `POST /ui/submissions/{id}/grades` | the person's grade (a human grade, rater = their name) |
//! | `POST /ui/submissions/{id}/overrides` | an override of one dimension with a reason, beside the AI's original |
//! | `GET /ui/calibration?stage=` | the calibration dashboard (`dashboard`) |
//! | `GET /ui/static/app.css`, `/ui/static/app.js` | assets |
//!
//! Like `http`, this module knows axum and no SQL. Its responses carry a strict
//! Content-Security-Policy (`default-src 'self'`): no inline `<script>`, no `<style>`
//! elements, no `style="..."` attributes and no inline event handlers — style with classes in
//! `static/app.css`, and in SVG with presentation attributes (`fill="#..."`), which the policy
//! allows.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;

use crate::service::App;

pub mod dashboard;
pub mod error;
pub mod highlight;
pub mod layout;
pub mod login;
pub mod queue;
pub mod session;
pub mod submission;
pub mod svg;

pub use error::WebError;
pub use session::Session;

/// The UI's router state.
pub struct WebState {
    pub app: Arc<App>,
    pub sessions: session::SessionKeys,
}

/// The review UI over `app`, to be merged into the API's router.
pub fn router(app: Arc<App>) -> Router {
    let svc = &app.config.service;
    let sessions = session::SessionKeys::new(
        svc.session_secret.as_deref(),
        Duration::from_secs(svc.session_ttl_secs.max(60)),
        svc.cookie_secure,
        Duration::from_secs(svc.auth_cache_secs),
    );
    let state = Arc::new(WebState { app, sessions });
    Router::new()
        .route("/ui", get(home))
        .route("/ui/", get(home))
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/logout", post(login::logout))
        .route("/ui/queue", get(queue::page))
        .route("/ui/submissions/{id}", get(submission::page))
        .route("/ui/submissions/{id}/grades", post(submission::grade))
        .route(
            "/ui/submissions/{id}/overrides",
            post(submission::override_score),
        )
        .route("/ui/calibration", get(dashboard::page))
        .route("/ui/static/app.css", get(css))
        .route("/ui/static/app.js", get(js))
        .route("/ui/{*rest}", any(not_found))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

async fn home() -> Response {
    error::see_other("/ui/queue")
}

async fn not_found(session: Option<Session>) -> Response {
    WebError::NotFound("page".into()).into_page(session.as_ref())
}

const APP_CSS: &str = include_str!("static/app.css");
const APP_JS: &str = include_str!("static/app.js");

async fn css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

async fn js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// The CSP and framing headers on every `/ui` response; pages are not cached (they show
/// a person's session and, after grading, the AI's scores).
async fn security_headers(req: Request<Body>, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The fields of a URL-encoded form, in order, repeated names kept (`flag=a&flag=b`).
pub struct FormFields(pub Vec<(String, String)>);

impl FormFields {
    /// The first value of `name`, trimmed; `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Every non-blank value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for FormFields {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &S) -> Result<Self, WebError> {
        axum::Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map(|axum::Form(v)| FormFields(v))
            .map_err(|r| WebError::BadRequest(format!("unreadable form: {}", r.body_text())))
    }
}
