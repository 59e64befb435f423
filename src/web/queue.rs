//! `GET /ui/queue`: what needs a person first. Order: injection suspected, red flags,
//! needs review, low confidence, escalated, then the rest; newest first within each. The
//! priority, the filters and the paging are computed in SQL (`Store::review_queue`), so a
//! page is exact however many submissions there are; 25 a page.
//!
//! The queue shows why a submission is up front but never the AI's scores or recommendation:
//! a grader in blind mode must not be anchored before opening it.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::error::WebError;
use super::layout;
use super::session::Session;
use super::WebState;
use crate::domain::Stage;
use crate::store::{QueueFilter, QueueItem, QueueStatus};

/// Rows per page.
pub const PAGE_SIZE: u32 = 25;
/// The furthest page we serve (keeps OFFSET bounded).
const MAX_PAGE: u32 = 10_000;

/// The status filter's choices, in the order shown.
const STATUSES: [(&str, &str); 7] = [
    ("needs_review", "needs review"),
    ("unreviewed", "graded, not reviewed yet"),
    ("reviewed", "reviewed by a person"),
    ("graded", "graded"),
    ("queued", "queued"),
    ("grading", "grading"),
    ("dead", "failed"),
];

#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    #[serde(default)]
    stage: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    page: Option<String>,
}

/// The parsed filters: blank parameters mean "any".
#[derive(Debug, Clone, Default, PartialEq)]
struct Filters {
    stage: Option<Stage>,
    prompt: Option<String>,
    status: Option<QueueStatus>,
    page: u32,
}

fn blank(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn parse(q: &QueueQuery) -> Result<Filters, WebError> {
    let stage = blank(&q.stage)
        .map(|s| s.parse::<Stage>())
        .transpose()
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    let status = blank(&q.status)
        .map(|s| {
            QueueStatus::parse(s).ok_or_else(|| {
                WebError::BadRequest(format!(
                    "unknown status `{s}`; expected one of: {}",
                    STATUSES.map(|(v, _)| v).join(", ")
                ))
            })
        })
        .transpose()?;
    let prompt = blank(&q.prompt).map(str::to_string);
    if prompt.as_ref().is_some_and(|p| p.len() > 200) {
        return Err(WebError::BadRequest("`prompt` is too long".into()));
    }
    let page = match blank(&q.page) {
        None => 1,
        Some(p) => p
            .parse::<u32>()
            .ok()
            .filter(|&n| (1..=MAX_PAGE).contains(&n))
            .ok_or_else(|| {
                WebError::BadRequest(format!("`page` must be a number from 1 to {MAX_PAGE}"))
            })?,
    };
    Ok(Filters {
        stage,
        prompt,
        status,
        page,
    })
}

/// Percent-encodes a query value (everything but unreserved characters).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The queue URL for `f` at `page`, keeping the filters.
fn url(f: &Filters, page: u32) -> String {
    let mut parts = Vec::new();
    if let Some(s) = f.stage {
        parts.push(format!("stage={}", s.as_str()));
    }
    if let Some(p) = &f.prompt {
        parts.push(format!("prompt={}", enc(p)));
    }
    if let Some(s) = f.status {
        parts.push(format!("status={}", s.as_str()));
    }
    if page > 1 {
        parts.push(format!("page={page}"));
    }
    if parts.is_empty() {
        "/ui/queue".to_string()
    } else {
        format!("/ui/queue?{}", parts.join("&"))
    }
}

/// `GET /ui/queue`.
pub async fn page(
    State(state): State<Arc<WebState>>,
    session: Session,
    query: Result<Query<QueueQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return WebError::BadRequest("unreadable query string".into()).into_page(Some(&session));
    };
    match render(&state, &session, &q).await {
        Ok(m) => layout::page("Review queue", Some(&session), m).into_response(),
        Err(e) => e.into_page(Some(&session)),
    }
}

async fn render(state: &WebState, session: &Session, q: &QueueQuery) -> Result<Markup, WebError> {
    let f = parse(q)?;
    let filter = QueueFilter {
        stage: f.stage,
        prompt: f.prompt.clone(),
        status: f.status,
        rater: Some(session.name.clone()),
        low_confidence: state.app.config.judge.min_confidence,
    };
    let offset = (f.page - 1) * PAGE_SIZE;
    let mut items = state
        .app
        .store
        .review_queue(&session.tenant.id, &filter, PAGE_SIZE + 1, offset)
        .await?;
    let more = items.len() > PAGE_SIZE as usize;
    items.truncate(PAGE_SIZE as usize);
    let filtered = f.stage.is_some() || f.prompt.is_some() || f.status.is_some();
    let prompts: Vec<String> = state.app.registry.list().iter().map(|p| p.key()).collect();
    Ok(html! {
        h1 { "Review queue" }
        p.hint {
            "First what needs a person: suspected prompt injection, red flags, reviews the judge asked for, low confidence, escalations; then the rest, newest first."
            @if session.blind() { " Blind review is on: the AI's scores appear after you submit your own." }
        }
        form #filters method="get" action="/ui/queue" {
            label for="f-stage" { "Stage" }
            select #f-stage name="stage" {
                option value="" { "any" }
                @for s in Stage::ALL {
                    option value=(s.as_str()) selected[f.stage == Some(s)] { (s.as_str()) }
                }
            }
            label for="f-prompt" { "Prompt version" }
            select #f-prompt name="prompt" {
                option value="" { "any" }
                @for p in &prompts {
                    option value=(p) selected[f.prompt.as_deref() == Some(p.as_str())] { (p) }
                }
                @if let Some(p) = f.prompt.as_ref().filter(|p| !prompts.contains(p)) {
                    option value=(p) selected { (p) }
                }
            }
            label for="f-status" { "Status" }
            select #f-status name="status" {
                option value="" { "any" }
                @for (v, label) in STATUSES {
                    option value=(v) selected[f.status.map(|s| s.as_str()) == Some(v)] { (label) }
                }
            }
            button type="submit" { "Filter" }
            @if filtered { a.clear href="/ui/queue" { "Clear filters" } }
        }
        @if items.is_empty() {
            p.empty-state {
                @if f.page > 1 { "No more submissions on this page. " a href=(url(&f, 1)) { "Back to the first page" } }
                @else if filtered { "No submissions match these filters." }
                @else { "Nothing to review yet: submissions appear here as they arrive." }
            }
        } @else {
            table #queue {
                thead {
                    tr {
                        th { "Why first" }
                        th { "Submission" }
                        th { "Stage" }
                        th { "Prompt" }
                        th { "Status" }
                        th { "Received" }
                        th { "Human grades" }
                    }
                }
                tbody {
                    @for it in &items { (row(it)) }
                }
            }
        }
        nav.pager {
            @if f.page > 1 { a.page-prev href=(url(&f, f.page - 1)) rel="prev" { "← Previous" } }
            span.page-no { "Page " (f.page) }
            @if more { a.page-next href=(url(&f, f.page + 1)) rel="next" { "Next →" } }
        }
    })
}

/// Why a row is where it is, as short labels.
fn reasons(it: &QueueItem) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if it.injection_suspected {
        out.push(("injection", "injection suspected".to_string()));
    }
    if it.red_flags > 0 {
        let s = if it.red_flags == 1 { "" } else { "s" };
        out.push(("red", format!("{} red flag{s}", it.red_flags)));
    }
    if it.needs_review {
        out.push(("needs", "needs review".to_string()));
    }
    if it.low_confidence {
        out.push(("lowconf", "low confidence".to_string()));
    }
    if it.escalated {
        out.push(("escalated", "escalated".to_string()));
    }
    out
}

fn row(it: &QueueItem) -> Markup {
    let short: String = it.id.chars().take(8).collect();
    html! {
        tr.queue-row data-id=(it.id) data-priority=(it.priority) {
            td.reasons {
                @for (class, label) in reasons(it) { span class={ "badge " (class) } { (label) } }
            }
            td { a.open-submission href={ "/ui/submissions/" (it.id) } title=(it.id) { (short) "…" } }
            td { (it.stage.as_str()) }
            td { (it.prompt.as_deref().unwrap_or("—")) }
            td { span class={ "status " (it.status.as_str()) } { (it.status.as_str()) } }
            td { time datetime=(it.created_at.to_rfc3339()) { (it.created_at.format("%Y-%m-%d %H:%M UTC")) } }
            td {
                (it.human_grades)
                @if it.graded_by_rater { " " span.badge.mine { "you graded" } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(stage: &str, prompt: &str, status: &str, page: &str) -> QueueQuery {
        let s = |v: &str| Some(v.to_string());
        QueueQuery {
            stage: s(stage),
            prompt: s(prompt),
            status: s(status),
            page: s(page),
        }
    }

    #[test]
    fn blank_parameters_are_any_and_bad_ones_are_400() {
        assert_eq!(
            parse(&q("", " ", "", "")).unwrap(),
            Filters {
                page: 1,
                ..Default::default()
            }
        );
        let f = parse(&q("system_design", "system_design@v1", "needs_review", "3")).unwrap();
        assert_eq!(f.stage, Some(Stage::SystemDesign));
        assert_eq!(f.status, Some(QueueStatus::NeedsReview));
        assert_eq!(f.page, 3);
        for bad in [
            q("nope", "", "", ""),
            q("", "", "done", ""),
            q("", "", "", "0"),
            q("", "", "", "x"),
        ] {
            assert!(
                matches!(parse(&bad), Err(WebError::BadRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn urls_keep_filters_and_encode_values() {
        let f = parse(&q("hands_on", "a b&c@v1", "graded", "2")).unwrap();
        assert_eq!(
            url(&f, 3),
            "/ui/queue?stage=hands_on&prompt=a%20b%26c%40v1&status=graded&page=3"
        );
        assert_eq!(url(&Filters::default(), 1), "/ui/queue");
    }
}
