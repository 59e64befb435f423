//! The review UI's errors, answered as HTML pages (the API's JSON errors would be of no use
//! to a person in a browser). Statuses follow the API's one mapping: an [`ApiError`] keeps
//! its status, and storage failures are logged and answered generically.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout;
use super::session::Session;
use crate::http::ApiError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No valid session: 303 to the login page.
    #[error("please log in")]
    LoginRequired,
    /// A POST without this session's CSRF token (403); nothing was stored.
    #[error("CSRF token missing or invalid")]
    Csrf,
    /// 404: unknown here, or another tenant's (the same page for both).
    #[error("{0} not found")]
    NotFound(String),
    /// A malformed query or form (400).
    #[error("{0}")]
    BadRequest(String),
    /// A well-formed form that cannot be accepted (422), e.g. a score off the scale.
    #[error("{0}")]
    Invalid(String),
    /// A check shared with the API (grade validation) failed.
    #[error("{0}")]
    Api(#[from] ApiError),
    /// 500; logged in full, answered generically.
    #[error("storage error")]
    Store(#[from] StoreError),
}

impl WebError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::LoginRequired => StatusCode::SEE_OTHER,
            WebError::Csrf => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            WebError::Api(e) => e.status(),
            WebError::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            WebError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the person is told.
    fn message(&self) -> String {
        match self {
            WebError::Api(ApiError::Store(_)) | WebError::Store(_) => {
                "Something went wrong on our side; it has been logged. Please try again.".into()
            }
            other => other.to_string(),
        }
    }

    fn title(&self) -> &'static str {
        match self {
            WebError::LoginRequired => "Log in",
            WebError::Csrf => "Forbidden",
            WebError::NotFound(_) => "Not found",
            WebError::BadRequest(_) => "Bad request",
            WebError::Invalid(_) => "Cannot accept this",
            WebError::Api(_) | WebError::Store(_) => match self.status().as_u16() {
                404 => "Not found",
                s if s >= 500 => "Server error",
                _ => "Cannot accept this",
            },
        }
    }

    /// The error page, with the navigation of `session` when the person is logged in.
    pub fn into_page(self, session: Option<&Session>) -> Response {
        if let WebError::LoginRequired = self {
            return see_other("/ui/login");
        }
        let status = self.status();
        if status.is_server_error() {
            tracing::error!("review UI: {self:?}");
        }
        let body = html! {
            section.error-page {
                h1 { (self.title()) }
                p.error-message { (self.message()) }
                p { a href="/ui/queue" { "Back to the review queue" } }
            }
        };
        (status, layout::page(self.title(), session, body)).into_response()
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        self.into_page(None)
    }
}

/// A 303 See Other to `location` (after a POST, or to the login page).
pub fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}
