//! `GET /ui/submissions/{id}`: one submission for review; `POST .../grades` and
//! `POST .../overrides`.
//!
//! Blind review (the tenant's `blind_review`, on unless set to false): until this person
//! (the session's name as rater) has a grade on the submission, the page holds the
//! transcript and the blank rubric form only. The AI's scores, rationale, evidence
//! highlights, flags, recommendation and other people's grades are left out of the HTML
//! altogether, not hidden with CSS, since any of them would anchor the grader. After their
//! grade (or at once with blind review off) the page shows the AI's report beside it, and an
//! override form: an override is one more human grade carrying a reason, stored beside the
//! AI's report, which is never changed.
//!
//! Grades are validated with the API's own checks (`http::human_grades`) and logged with the
//! same audit entries (`human_grade.added`, `report.overridden`); opening a revealed report
//! logs `report.viewed` with `"via": "ui"`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use maud::{html, Markup};

use super::error::{see_other, WebError};
use super::highlight::{self, Span, Target};
use super::layout::{self, csrf_input};
use super::session::Session;
use super::{FormFields, WebState};
use crate::domain::{FlagDef, FlagKind, GradeReport, Recommendation, Scale, Severity};
use crate::http::human_grades::{grade_audit, rubric, validate, HumanGradeRequest};
use crate::store::{AuditEntry, HumanGrade, SubmissionRecord, SubmissionStatus};

/// Longest accepted comment and override reason.
const MAX_TEXT_CHARS: usize = 5_000;

/// A rubric dimension as the page shows it.
struct Dim {
    id: String,
    name: String,
    description: String,
    scale: Scale,
    anchors: BTreeMap<String, String>,
}

/// The rubric of the submission's prompt version: from the registry when it is loaded,
/// else what the report itself says (dimension ids and scales, no flag definitions).
struct RubricView {
    dims: Vec<Dim>,
    flags: Vec<FlagDef>,
}

fn rubric_view(state: &WebState, record: &SubmissionRecord) -> RubricView {
    let app = &state.app;
    let pv = match &record.report {
        Some(r) => app.registry.get(&r.prompt.id, &r.prompt.version),
        None => app.prompt_for(record.stage, record.prompt.as_deref()).ok(),
    };
    if let Some(pv) = pv {
        return RubricView {
            dims: pv
                .file
                .dimensions
                .iter()
                .map(|d| Dim {
                    id: d.id.clone(),
                    name: d.name.clone(),
                    description: d.description.clone(),
                    scale: d.scale,
                    anchors: d.anchors.clone(),
                })
                .collect(),
            flags: pv.file.flags.clone(),
        };
    }
    RubricView {
        dims: record
            .report
            .iter()
            .flat_map(|r| r.scores.iter())
            .map(|s| Dim {
                id: s.dimension.clone(),
                name: s.dimension.clone(),
                description: String::new(),
                scale: s.scale,
                anchors: BTreeMap::new(),
            })
            .collect(),
        flags: Vec::new(),
    }
}

async fn load(
    state: &WebState,
    session: &Session,
    id: &str,
) -> Result<(SubmissionRecord, Vec<HumanGrade>), WebError> {
    let store = &state.app.store;
    let record = store
        .submission(&session.tenant.id, id)
        .await?
        .ok_or_else(|| WebError::NotFound("submission".into()))?;
    let grades = store.human_grades(&session.tenant.id, id).await?;
    Ok((record, grades))
}

/// Whether this person may see the AI's report: blind review off, or they graded.
fn revealed(session: &Session, grades: &[HumanGrade]) -> bool {
    !session.blind() || grades.iter().any(|g| g.rater == session.name)
}

/// `GET /ui/submissions/{id}`.
pub async fn page(
    State(state): State<Arc<WebState>>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    match render_page(&state, &session, &id).await {
        Ok(m) => layout::page("Submission", Some(&session), m).into_response(),
        Err(e) => e.into_page(Some(&session)),
    }
}

async fn render_page(state: &WebState, session: &Session, id: &str) -> Result<Markup, WebError> {
    let (record, grades) = load(state, session, id).await?;
    let show = revealed(session, &grades);
    if let (true, Some(report)) = (show, &record.report) {
        // Every view of a report is logged (who saw which AI assessment, when).
        state
            .app
            .store
            .audit(&AuditEntry {
                tenant_id: session.tenant.id.clone(),
                actor: session.caller().actor(),
                action: "report.viewed".into(),
                subject: Some(record.id.clone()),
                detail: serde_json::json!({"report_id": report.id, "via": "ui", "rater": session.name}),
                at: Utc::now(),
            })
            .await?;
    }
    let rubric = rubric_view(state, &record);
    let transcript = record
        .report
        .as_ref()
        .map(|r| &r.transcript)
        .unwrap_or(&record.submission.transcript);
    let spans = match (&record.report, show) {
        (Some(r), true) => evidence_spans(r),
        _ => Vec::new(),
    };
    let (transcript_html, linked) = highlight::render(transcript, &spans);
    let mine: Vec<&HumanGrade> = grades.iter().filter(|g| g.rater == session.name).collect();
    let short: String = record.id.chars().take(8).collect();
    Ok(html! {
        div.submission-head {
            h1 { "Submission " span.mono title=(record.id) { (short) } }
            dl.meta {
                dt { "Stage" } dd { (record.stage.as_str()) }
                dt { "Status" } dd { span class={ "status " (record.status.as_str()) } { (record.status.as_str()) } }
                dt { "Received" } dd { (record.created_at.format("%Y-%m-%d %H:%M UTC")) }
                @if let Some(ext) = &record.submission.external_id { dt { "External id" } dd { (ext) } }
                @if let Some(r) = &record.report {
                    dt { "Prompt" } dd.mono { (r.prompt.id) "@" (r.prompt.version) }
                } @else if let Some(p) = &record.prompt {
                    dt { "Prompt" } dd.mono { (p) }
                }
            }
        }
        @if let Some(r) = &record.report { (guard(r)) }
        div.review {
            section #transcript-panel {
                h2 { "Transcript" }
                @if let Some(q) = &record.submission.question {
                    p.question { strong { "Question: " } (q) }
                }
                div #transcript { (transcript_html) }
            }
            section #review-panel {
                @match record.status {
                    SubmissionStatus::Graded => {}
                    SubmissionStatus::Dead => {
                        p.notice.warn { "Grading failed: " (record.error.as_deref().unwrap_or("unknown error")) ". You can still grade it yourself." }
                    }
                    other => {
                        p.notice { "The AI has not graded this yet (" (other.as_str()) "). You can grade it now." }
                    }
                }
                @if !show {
                    (grade_form(session, &record.id, &rubric, true))
                } @else {
                    @if mine.is_empty() {
                        (grade_form(session, &record.id, &rubric, false))
                    } @else {
                        (my_grade(&mine, &rubric))
                    }
                    @if let Some(r) = &record.report {
                        (recommendation(r))
                        (ai_scores(r, &rubric, &linked, &mine))
                        (flags(r, &linked))
                        (override_form(session, &record.id, r, &rubric))
                        (overrides(&grades, r))
                        (others(&grades, &session.name))
                    }
                }
            }
        }
    })
}

/// The report's evidence, numbered 1.. across dimensions then flags.
fn evidence_spans(r: &GradeReport) -> Vec<Span> {
    let mut out = Vec::new();
    for s in &r.scores {
        for e in &s.evidence {
            out.push(Span {
                id: out.len() + 1,
                start: e.start,
                end: e.end,
                target: Target::Dimension(s.dimension.clone()),
            });
        }
    }
    for f in &r.flags {
        for e in &f.evidence {
            out.push(Span {
                id: out.len() + 1,
                start: e.start,
                end: e.end,
                target: Target::Flag(f.id.clone()),
            });
        }
    }
    out
}

/// Evidence numbers and quotes per dimension (or flag id).
type EvidenceIndex = BTreeMap<String, Vec<(usize, String)>>;

/// Evidence numbers and quotes of each dimension and each flag, in the same numbering as
/// [`evidence_spans`].
fn evidence_ids(r: &GradeReport) -> (EvidenceIndex, EvidenceIndex) {
    let mut n = 0;
    let mut dims = EvidenceIndex::new();
    let mut flags = EvidenceIndex::new();
    for s in &r.scores {
        for e in &s.evidence {
            n += 1;
            dims.entry(s.dimension.clone())
                .or_default()
                .push((n, e.quote.clone()));
        }
    }
    for f in &r.flags {
        for e in &f.evidence {
            n += 1;
            flags
                .entry(f.id.clone())
                .or_default()
                .push((n, e.quote.clone()));
        }
    }
    (dims, flags)
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn evidence_links(list: Option<&Vec<(usize, String)>>, linked: &BTreeSet<usize>) -> Markup {
    html! {
        @if let Some(list) = list {
            ul.evidence-list {
                @for (n, quote) in list {
                    li {
                        @if linked.contains(n) {
                            a.evidence-link href={ "#ev-" (n) } title=(quote) { "“" (shorten(quote, 70)) "”" }
                        } @else {
                            span.evidence-unlinked title="not located in the transcript" { "“" (shorten(quote, 70)) "”" }
                        }
                    }
                }
            }
        }
    }
}

fn guard(r: &GradeReport) -> Markup {
    html! {
        @if r.guard.pii_redactions > 0 || r.guard.injection_suspected {
            section #guard.notice {
                @if r.guard.injection_suspected {
                    p.warn { strong { "Prompt injection suspected: " } "the transcript contains text that looks like instructions to the AI judge. Treat the AI's assessment with extra care." }
                }
                @if r.guard.pii_redactions > 0 {
                    p { (r.guard.pii_redactions) " personal detail(s) were redacted before grading." }
                }
            }
        } @else {
            section #guard.notice.quiet { p { "No personal details were redacted; no prompt injection suspected." } }
        }
    }
}

/// The blank rubric form: one select per dimension (keyboard: digits pick a level), the
/// rubric's flags as checkboxes, a comment. `blind` names it `#blind-grade`.
fn grade_form(session: &Session, id: &str, rubric: &RubricView, blind: bool) -> Markup {
    let form_id = if blind { "blind-grade" } else { "grade-form" };
    html! {
        section.grade-panel {
            h2 { "Your grade" }
            @if blind {
                p.hint { "Blind review: the AI's scores, flags and evidence appear after you submit your own grade." }
            }
            @if rubric.dims.is_empty() {
                p.empty-state { "The rubric of this submission's prompt version is not available." }
            } @else {
                form id=(form_id) method="post" action={ "/ui/submissions/" (id) "/grades" } {
                    (csrf_input(session))
                    @for d in &rubric.dims {
                        div.dimension-input {
                            label for={ "score-" (d.id) } { (d.name) span.scale { " (" (d.scale.min) "–" (d.scale.max) ")" } }
                            select id={ "score-" (d.id) } name={ "score:" (d.id) } data-dimension=(d.id) {
                                option value="" { "– choose –" }
                                @for level in d.scale.levels() {
                                    option value=(level) {
                                        (level)
                                        @if let Some(a) = d.anchors.get(&level.to_string()) { " — " (shorten(a, 90)) }
                                    }
                                }
                            }
                            @if !d.description.is_empty() || !d.anchors.is_empty() {
                                details.anchors {
                                    summary { "Rubric" }
                                    @if !d.description.is_empty() { p { (d.description) } }
                                    dl {
                                        @for (level, text) in &d.anchors { dt { (level) } dd { (text) } }
                                    }
                                }
                            }
                        }
                    }
                    @if !rubric.flags.is_empty() {
                        fieldset.flags-input {
                            legend { "Flags you see" }
                            @for f in &rubric.flags {
                                div {
                                    input type="checkbox" name="flag" value=(f.id) id={ "flag-" (f.id) };
                                    label for={ "flag-" (f.id) } class={ "flag-label " (kind(f.kind)) } {
                                        (f.label) " (" (kind(f.kind)) ", " (severity(f.severity)) ")"
                                    }
                                }
                            }
                        }
                    }
                    label for="comment" { "Comment (optional)" }
                    textarea #comment name="comment" rows="3" maxlength=(MAX_TEXT_CHARS) {}
                    button #submit-grade type="submit" { "Submit grade" }
                }
            }
        }
    }
}

fn kind(k: FlagKind) -> &'static str {
    match k {
        FlagKind::Red => "red",
        FlagKind::Green => "green",
    }
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
    }
}

fn recommendation_label(r: Recommendation) -> &'static str {
    match r {
        Recommendation::StrongHire => "strong hire",
        Recommendation::Hire => "hire",
        Recommendation::LeanNoHire => "lean no hire",
        Recommendation::NoHire => "no hire",
        Recommendation::InsufficientEvidence => "insufficient evidence",
    }
}

fn my_grade(mine: &[&HumanGrade], rubric: &RubricView) -> Markup {
    let first = mine
        .iter()
        .find(|g| g.override_reason.is_none())
        .or(mine.first());
    html! {
        section #my-grade {
            h2 { "Your grade" }
            @if let Some(g) = first {
                table.grades {
                    tbody {
                        @for d in &rubric.dims {
                            @if let Some(s) = g.scores.get(&d.id) {
                                tr data-dimension=(d.id) { th { (d.name) } td { (s) " / " (d.scale.max) } }
                            }
                        }
                    }
                }
                @if !g.flags.is_empty() { p { "Flags: " (g.flags.join(", ")) } }
                @if let Some(c) = &g.comment { p.comment { (c) } }
                p.hint { "Submitted " (g.created_at.format("%Y-%m-%d %H:%M UTC")) ". To change a score, override it below with a reason." }
            }
        }
    }
}

fn recommendation(r: &GradeReport) -> Markup {
    html! {
        section #recommendation {
            h2 { "AI recommendation " span.badge.advisory { "advisory" } }
            p.rec { (recommendation_label(r.recommendation)) }
            @if let Some(o) = r.overall { p { "Overall " (format!("{:.0}%", o * 100.0)) } }
            @if let Some(m) = r.rag_maturity { p { "RAG maturity level " (m) } }
            @if r.needs_review {
                p.warn { "The judge asks for a person's review:" }
                ul { @for reason in &r.review_reasons { li { (reason) } } }
            }
            @if let Some(u) = &r.unscored_reason { p.warn { "Unscored: " (u) } }
            p.notice-text { (r.notice) }
        }
    }
}

fn ai_scores(
    r: &GradeReport,
    rubric: &RubricView,
    linked: &BTreeSet<usize>,
    mine: &[&HumanGrade],
) -> Markup {
    let (ev, _) = evidence_ids(r);
    let name = |id: &str| {
        rubric
            .dims
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let my = mine
        .iter()
        .find(|g| g.override_reason.is_none())
        .or(mine.first());
    html! {
        section #ai-scores-section {
            h2 { "AI scores" }
            table #ai-scores {
                thead {
                    tr {
                        th.c-dim { "Dimension" } th.c-ai { "AI" } th.c-you { "You" } th.c-why { "Rationale and evidence" }
                    }
                }
                tbody {
                    @for s in &r.scores {
                        tr.ai-score data-dimension=(s.dimension) {
                            th {
                                (name(&s.dimension))
                                div.provenance {
                                    span.mono.model { (r.judge.model) } " (" (r.judge.tier) ")" br;
                                    span.mono.prompt-version { (r.prompt.id) "@" (r.prompt.version) }
                                    @if !s.samples.is_empty() { br; "samples " (s.samples.iter().map(u8::to_string).collect::<Vec<_>>().join(", ")) }
                                }
                            }
                            td.score {
                                @if let Some(v) = s.score { (v) " / " (s.scale.max) } @else { span.warn { "unscored" } }
                                div.confidence title="agreement of the judge's samples" { "confidence " (format!("{:.0}%", s.confidence * 100.0)) }
                                @if let Some(c) = s.calibrated { div.hint title="through the tenant's calibration map" { "calibrated " (format!("{c:.1}")) } }
                            }
                            td.mine { @if let Some(v) = my.and_then(|g| g.scores.get(&s.dimension)) { (v) } @else { "—" } }
                            td.rationale {
                                p { (s.rationale) }
                                (evidence_links(ev.get(&s.dimension), linked))
                            }
                        }
                    }
                }
            }
            @if r.dropped_quotes > 0 {
                p.hint { (r.dropped_quotes) " quote(s) the judge gave were not found in the transcript and were dropped." }
            }
        }
    }
}

fn flags(r: &GradeReport, linked: &BTreeSet<usize>) -> Markup {
    let (_, ev) = evidence_ids(r);
    html! {
        section #flags-section {
            h2 { "Flags raised by the AI" }
            @if r.flags.is_empty() {
                p.empty-state { "No flags raised." }
            } @else {
                ul #flags {
                    @for f in &r.flags {
                        li class={ "flag " (kind(f.kind)) } data-flag=(f.id) {
                            span.flag-kind { (kind(f.kind)) }
                            " " strong { (f.label) }
                            " " span.severity { "severity " (severity(f.severity)) }
                            (evidence_links(ev.get(&f.id), linked))
                        }
                    }
                }
            }
        }
    }
}

fn override_form(session: &Session, id: &str, r: &GradeReport, rubric: &RubricView) -> Markup {
    let lo = rubric.dims.iter().map(|d| d.scale.min).min().unwrap_or(1);
    let hi = rubric.dims.iter().map(|d| d.scale.max).max().unwrap_or(5);
    html! {
        section.override-panel {
            h2 { "Override an AI score" }
            p.hint { "Your override is stored beside the AI's score with your reason; the AI's report is never changed." }
            form #override method="post" action={ "/ui/submissions/" (id) "/overrides" } {
                (csrf_input(session))
                label for="override-dimension" { "Dimension" }
                select #override-dimension name="dimension" required {
                    @for d in &rubric.dims {
                        option value=(d.id) {
                            (d.name)
                            @if let Some(v) = r.scores.iter().find(|s| s.dimension == d.id).and_then(|s| s.score) { " (AI: " (v) ")" }
                        }
                    }
                }
                label for="override-score" { "Your score" }
                select #override-score name="score" required {
                    option value="" { "– choose –" }
                    @for level in lo..=hi { option value=(level) { (level) } }
                }
                label for="override-reason" { "Reason (required)" }
                textarea #override-reason name="reason" rows="3" required maxlength=(MAX_TEXT_CHARS) {}
                button #submit-override type="submit" { "Save override" }
            }
        }
    }
}

fn overrides(grades: &[HumanGrade], r: &GradeReport) -> Markup {
    let list: Vec<&HumanGrade> = grades
        .iter()
        .filter(|g| g.override_reason.is_some())
        .collect();
    html! {
        section #overrides-section {
            h2 { "Overrides" }
            @if list.is_empty() {
                p.empty-state { "No overrides yet." }
            } @else {
                ul #overrides {
                    @for g in list {
                        @for (dim, score) in &g.scores {
                            li.override data-dimension=(dim) {
                                strong { (g.rater) } " set " span.mono { (dim) } " to " strong { (score) }
                                @if let Some(ai) = r.scores.iter().find(|s| &s.dimension == dim).and_then(|s| s.score) {
                                    " (AI: " (ai) ", unchanged)"
                                }
                                " — " q { (g.override_reason.as_deref().unwrap_or("")) }
                                " " span.hint { (g.created_at.format("%Y-%m-%d %H:%M UTC")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn others(grades: &[HumanGrade], me: &str) -> Markup {
    let list: Vec<&HumanGrade> = grades
        .iter()
        .filter(|g| g.rater != me && g.override_reason.is_none())
        .collect();
    html! {
        @if !list.is_empty() {
            section #other-grades {
                h2 { "Other graders" }
                ul {
                    @for g in list {
                        li {
                            strong { (g.rater) } ": "
                            (g.scores.iter().map(|(d, s)| format!("{d} {s}")).collect::<Vec<_>>().join(", "))
                        }
                    }
                }
            }
        }
    }
}

/// `POST /ui/submissions/{id}/grades`: the person's own grade, once; then 303 back to the
/// page, where the AI's report is now revealed.
pub async fn grade(
    State(state): State<Arc<WebState>>,
    session: Session,
    Path(id): Path<String>,
    fields: FormFields,
) -> Response {
    match store_grade(&state, &session, &id, &fields).await {
        Ok(()) => see_other(&format!("/ui/submissions/{id}#review-panel")),
        Err(e) => e.into_page(Some(&session)),
    }
}

async fn store_grade(
    state: &WebState,
    session: &Session,
    id: &str,
    fields: &FormFields,
) -> Result<(), WebError> {
    session.check_csrf(&fields.0)?;
    let (record, grades) = load(state, session, id).await?;
    if grades.iter().any(|g| g.rater == session.name) {
        return Err(WebError::Invalid(
            "You have already graded this submission; to change a score, use an override with a reason.".into(),
        ));
    }
    let mut scores = BTreeMap::new();
    for (name, value) in &fields.0 {
        let Some(dim) = name.strip_prefix("score:") else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let score: f64 = value.parse().map_err(|_| {
            WebError::BadRequest(format!("the score for `{dim}` is not a number: {value:?}"))
        })?;
        scores.insert(dim.to_string(), score);
    }
    let comment = fields.get("comment").map(str::to_string);
    if comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_TEXT_CHARS)
    {
        return Err(WebError::Invalid(format!(
            "The comment is longer than {MAX_TEXT_CHARS} characters."
        )));
    }
    let req = HumanGradeRequest {
        rater: Some(session.name.clone()),
        scores,
        flags: fields.all("flag"),
        override_reason: None,
        comment,
    };
    save(state, session, &record, req).await
}

/// Validates `req` against the submission's rubric (the API's checks), stores it as a human
/// grade and logs it like the API does.
async fn save(
    state: &WebState,
    session: &Session,
    record: &SubmissionRecord,
    req: HumanGradeRequest,
) -> Result<(), WebError> {
    let rubric = rubric(&state.app, record)?;
    validate(&req, &rubric)?;
    let grade = HumanGrade {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: session.tenant.id.clone(),
        submission_id: record.id.clone(),
        rater: session.name.clone(),
        scores: req.scores,
        flags: req.flags,
        override_reason: req.override_reason,
        comment: req.comment,
        created_at: Utc::now(),
    };
    let store = &state.app.store;
    store.add_human_grade(&grade).await?;
    let mut entry = grade_audit(&session.caller(), &grade, &rubric.prompt, None, Utc::now());
    entry.detail["via"] = serde_json::Value::from("ui");
    store.audit(&entry).await?;
    Ok(())
}

/// `POST /ui/submissions/{id}/overrides`: one dimension, a score and a required reason, after
/// the person's own grade in blind mode; then 303 back to the page.
pub async fn override_score(
    State(state): State<Arc<WebState>>,
    session: Session,
    Path(id): Path<String>,
    fields: FormFields,
) -> Response {
    match store_override(&state, &session, &id, &fields).await {
        Ok(()) => see_other(&format!("/ui/submissions/{id}#overrides-section")),
        Err(e) => e.into_page(Some(&session)),
    }
}

async fn store_override(
    state: &WebState,
    session: &Session,
    id: &str,
    fields: &FormFields,
) -> Result<(), WebError> {
    session.check_csrf(&fields.0)?;
    let (record, grades) = load(state, session, id).await?;
    if record.report.is_none() {
        return Err(WebError::Invalid(
            "The AI has not graded this submission yet: there is no score to override.".into(),
        ));
    }
    if !revealed(session, &grades) {
        return Err(WebError::Invalid(
            "Blind review: submit your own grade before overriding the AI's.".into(),
        ));
    }
    let dimension = fields
        .get("dimension")
        .ok_or_else(|| WebError::Invalid("Choose the dimension to override.".into()))?;
    let score: f64 = fields
        .get("score")
        .ok_or_else(|| WebError::Invalid("Choose your score.".into()))?
        .parse()
        .map_err(|_| WebError::BadRequest("the score is not a number".into()))?;
    let reason = fields
        .get("reason")
        .ok_or_else(|| WebError::Invalid("An override needs a reason.".into()))?;
    if reason.chars().count() > MAX_TEXT_CHARS {
        return Err(WebError::Invalid(format!(
            "The reason is longer than {MAX_TEXT_CHARS} characters."
        )));
    }
    let req = HumanGradeRequest {
        rater: Some(session.name.clone()),
        scores: BTreeMap::from([(dimension.to_string(), score)]),
        flags: Vec::new(),
        override_reason: Some(reason.to_string()),
        comment: None,
    };
    save(state, session, &record, req).await
}
