//! `GET /ui/calibration?stage=`: how far the tenant's graders can trust the AI, per stage x
//! rubric dimension.
//!
//! The figures are the ones `GET /v1/calibration` returns, computed by the same code path
//! (`service::calibration`: which grade counts, each dimension's scale, then
//! `calibration::dimension_report`), so the page and the API can never disagree. Per
//! section: QWK against the human consensus with its bootstrap 95% interval, the human
//! ceiling (the same figure among the humans: the AI cannot be expected to beat it), the
//! bias (AI minus human; positive = the AI is more lenient), and four inline SVG charts
//! (`web::svg`). Below: every grader's agreement with the AI and with the other graders,
//! to spot an outlier grader before blaming the AI.
//!
//! Agreement over time groups the human grades by prompt version and by the ISO week
//! (`2026-W48`) of the human grade when all grades fall within [`WEEKLY_SPAN_DAYS`],
//! else by month (`2026-11`): weekly points on a long history would be too thin to
//! compute a kappa from.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;

use super::svg::{self, VersionPoint};
use super::{layout, Session, WebError, WebState};
use crate::calibration::{self, DimensionReport, GraderAgreement, Pair};
use crate::domain::Stage;
use crate::service::calibration::{self as shared, AI_RATER, DEFAULT_BOOTSTRAP, SEED};
use crate::service::App;
use crate::store::{CalibrationFilter, CalibrationRow, StoreError};

/// Grades spanning at most this many days are grouped by week, longer histories by month.
pub const WEEKLY_SPAN_DAYS: i64 = 120;
/// Bootstrap resamples behind each whisker of the agreement-over-time chart. The headline
/// figures use [`DEFAULT_BOOTSTRAP`] like the API (so page and API agree to the digit); a
/// whisker only has to show roughly how wide an interval is, and there is one per
/// dimension x prompt version x period, so it gets fewer resamples to keep the page fast.
pub const VERSION_BOOTSTRAP: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blocking metrics task panicked or was cancelled.
    #[error("computing the calibration figures failed: {0}")]
    Task(String),
}

/// Everything the page shows, computed once per request.
#[derive(Debug, Clone)]
pub struct DashboardData {
    /// The stage filter in force (`None` = every stage).
    pub stage: Option<Stage>,
    /// Human-grade rows (one per person, submission and dimension) that matched.
    pub rows: usize,
    /// `"week"` or `"month"`: how agreement over time is grouped.
    pub period: &'static str,
    pub sections: Vec<DimensionSection>,
    pub graders: Vec<GraderRow>,
}

/// One stage x dimension.
#[derive(Debug, Clone)]
pub struct DimensionSection {
    pub stage: Stage,
    pub dimension: String,
    /// The rubric's display name, when a prompt version in the registry defines it.
    pub name: Option<String>,
    pub scale: (i64, i64),
    /// The figures, or why they cannot be computed.
    pub report: Result<DimensionReport, String>,
    /// AI score and human consensus per item that has both (the scatter).
    pub pairs: Vec<Pair>,
    /// Per scale category: AI scores on human-graded items, and every person's grade.
    pub ai_counts: Vec<u64>,
    pub human_counts: Vec<u64>,
    pub versions: Vec<VersionPoint>,
}

/// One grader on one stage x dimension.
#[derive(Debug, Clone)]
pub struct GraderRow {
    pub rater: String,
    pub stage: Stage,
    pub dimension: String,
    pub agreement: GraderAgreement,
}

/// Loads the tenant's human grades (optionally of one stage) and computes every figure.
/// The metrics (bootstrap included) run on the blocking pool.
pub async fn load(
    app: &App,
    tenant_id: &str,
    stage: Option<Stage>,
) -> Result<DashboardData, DashboardError> {
    let filter = CalibrationFilter {
        stage,
        ..CalibrationFilter::default()
    };
    let rows = app.store.calibration_rows(tenant_id, &filter).await?;
    let registry = app.registry.clone();
    let n_rows = rows.len();
    let (period, sections, graders) =
        tokio::task::spawn_blocking(move || compute(&registry, &rows))
            .await
            .map_err(|e| DashboardError::Task(e.to_string()))?;
    Ok(DashboardData {
        stage,
        rows: n_rows,
        period,
        sections,
        graders,
    })
}

type Computed = (&'static str, Vec<DimensionSection>, Vec<GraderRow>);

/// The pure part of [`load`]: rows in, sections and grader rows out.
pub fn compute(registry: &crate::prompts::Registry, rows: &[CalibrationRow]) -> Computed {
    let period = period_kind(rows);
    let mut by_stage: BTreeMap<Stage, Vec<CalibrationRow>> = BTreeMap::new();
    for r in rows {
        by_stage.entry(r.stage).or_default().push(r.clone());
    }
    let mut sections = Vec::new();
    let mut graders = Vec::new();
    for (stage, rows) in &by_stage {
        let ratings = shared::ratings(rows);
        let scales = shared::scales(registry, rows, &ratings);
        let reports = shared::dimension_reports(&ratings, &scales, DEFAULT_BOOTSTRAP, SEED);
        let versions = versions_by_period(rows, &scales, period);
        for (dimension, report) in reports {
            let scale = scales.get(&dimension).copied().unwrap_or((0, 0));
            let pairs = consensus_pairs(&ratings, &dimension);
            let ai_counts = counts(pairs.iter().map(|p| p.ai), scale);
            let human_counts = counts(
                ratings
                    .iter()
                    .filter(|r| r.dimension == dimension && r.rater != AI_RATER)
                    .map(|r| r.score),
                scale,
            );
            if let Ok(rep) = &report {
                for (rater, agreement) in &rep.per_grader {
                    graders.push(GraderRow {
                        rater: rater.clone(),
                        stage: *stage,
                        dimension: dimension.clone(),
                        agreement: *agreement,
                    });
                }
            }
            sections.push(DimensionSection {
                stage: *stage,
                name: dimension_name(registry, rows, &dimension),
                scale,
                report: report.map_err(|e| e.to_string()),
                pairs,
                ai_counts,
                human_counts,
                versions: versions.get(&dimension).cloned().unwrap_or_default(),
                dimension,
            });
        }
    }
    graders.sort_by(|a, b| {
        (a.rater.as_str(), a.stage, a.dimension.as_str()).cmp(&(
            b.rater.as_str(),
            b.stage,
            b.dimension.as_str(),
        ))
    });
    (period, sections, graders)
}

fn period_kind(rows: &[CalibrationRow]) -> &'static str {
    let first = rows.iter().map(|r| r.graded_at).min();
    let last = rows.iter().map(|r| r.graded_at).max();
    match (first, last) {
        (Some(a), Some(b)) if (b - a).num_days() > WEEKLY_SPAN_DAYS => "month",
        _ => "week",
    }
}

fn period_label(t: DateTime<Utc>, kind: &str) -> String {
    if kind == "month" {
        t.format("%Y-%m").to_string()
    } else {
        t.format("%G-W%V").to_string()
    }
}

/// QWK per dimension x prompt version x period, on that group's grades (each person's
/// latest within the group), over the dimension's full scale.
fn versions_by_period(
    rows: &[CalibrationRow],
    scales: &BTreeMap<String, (i64, i64)>,
    period: &str,
) -> BTreeMap<String, Vec<VersionPoint>> {
    let mut groups: BTreeMap<(String, String), Vec<CalibrationRow>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((r.prompt.clone(), period_label(r.graded_at, period)))
            .or_default()
            .push(r.clone());
    }
    let mut out: BTreeMap<String, Vec<VersionPoint>> = BTreeMap::new();
    for ((prompt, period), group) in groups {
        let ratings = shared::ratings(&group);
        let mut dims: Vec<&str> = ratings.iter().map(|r| r.dimension.as_str()).collect();
        dims.sort_unstable();
        dims.dedup();
        for dim in dims {
            let Some(&scale) = scales.get(dim) else {
                continue;
            };
            let Ok(rep) = calibration::dimension_report(
                &ratings,
                dim,
                AI_RATER,
                scale,
                VERSION_BOOTSTRAP,
                SEED,
            ) else {
                continue;
            };
            if rep.metrics.n == 0 {
                continue;
            }
            out.entry(dim.to_string()).or_default().push(VersionPoint {
                prompt: prompt.clone(),
                period: period.clone(),
                n: rep.metrics.n,
                qwk: rep.metrics.qwk,
                ci: rep.ci.qwk,
            });
        }
    }
    out
}

/// Per item of `dimension`: the AI's score and the human consensus (median, halves down),
/// for items that have both.
fn consensus_pairs(ratings: &[calibration::Rating], dimension: &str) -> Vec<Pair> {
    let mut items: BTreeMap<&str, (Option<f64>, Vec<f64>)> = BTreeMap::new();
    for r in ratings.iter().filter(|r| r.dimension == dimension) {
        let e = items.entry(&r.item_id).or_default();
        if r.rater == AI_RATER {
            e.0 = Some(r.score);
        } else {
            e.1.push(r.score);
        }
    }
    items
        .into_iter()
        .filter_map(|(item, (ai, humans))| {
            Some(Pair {
                item: item.to_string(),
                ai: ai?,
                human: calibration::human_consensus(&humans)?,
            })
        })
        .collect()
}

/// Scores counted per scale category (fractional scores round half down, like the
/// kappas); scores outside the scale are left out.
fn counts(scores: impl Iterator<Item = f64>, scale: (i64, i64)) -> Vec<u64> {
    let k = usize::try_from(scale.1 - scale.0 + 1).unwrap_or(0);
    let mut out = vec![0; k];
    for s in scores.filter(|s| s.is_finite()) {
        let c = calibration::round_half_down(s) as i64 - scale.0;
        if let Some(slot) = usize::try_from(c).ok().and_then(|i| out.get_mut(i)) {
            *slot += 1;
        }
    }
    out
}

fn dimension_name(
    registry: &crate::prompts::Registry,
    rows: &[CalibrationRow],
    dimension: &str,
) -> Option<String> {
    rows.iter().find_map(|r| {
        let (id, version) = r.prompt.split_once('@')?;
        let pv = registry.get(id, version)?;
        pv.file
            .dimensions
            .iter()
            .find(|d| d.id == dimension)
            .map(|d| d.name.clone())
    })
}

fn num(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "–".to_string(), |x| format!("{x:.2}"))
}

fn signed(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "–".to_string(), |x| format!("{x:+.2}"))
}

fn pct(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "–".to_string(), |x| format!("{:.0}%", x * 100.0))
}

fn ci(v: Option<[f64; 2]>) -> String {
    v.map_or_else(String::new, |[lo, hi]| format!("[{lo:.2}, {hi:.2}]"))
}

/// The stage selector (a GET form: works without JavaScript).
fn stage_filter(current: Option<Stage>) -> Markup {
    html! {
        form #stage-filter method="get" action="/ui/calibration" {
            label for="stage" { "Stage " }
            select #stage name="stage" {
                option value="" selected[current.is_none()] { "All stages" }
                @for s in Stage::ALL {
                    option value=(s.as_str()) selected[current == Some(s)] { (s.as_str()) }
                }
            }
            " "
            button type="submit" { "Show" }
        }
    }
}

/// One stage x dimension: the headline figures as a one-row table (readable with the
/// shared table styles alone), then the four charts side by side (inline SVGs flow in a
/// row at 1280 px and wrap when narrower; no layout CSS needed).
fn section(s: &DimensionSection, period: &str) -> Markup {
    let title = s.name.clone().unwrap_or_else(|| s.dimension.clone());
    html! {
        section.dimension data-dimension=(s.dimension) data-stage=(s.stage.as_str()) {
            h2 { (title) " " span.hint { (s.stage.as_str()) " · " code { (s.dimension) } } }
            @match &s.report {
                Err(e) => p.notice { "Cannot compute agreement yet: " (e) },
                Ok(r) => {
                    table.figures {
                        thead {
                            tr {
                                th scope="col" { abbr title="Quadratic-weighted Cohen's kappa of the AI against the human consensus; 1 = perfect, 0 = chance" { "QWK" } " (95% CI)" }
                                th scope="col" { "Human ceiling (QWK among graders)" }
                                th scope="col" { abbr title="Mean of AI minus human; positive means the AI scores higher" { "Bias" } " (95% CI)" }
                                th scope="col" { "Items (n)" }
                                th scope="col" { "Exact / adjacent" }
                                th scope="col" { "MAE (95% CI)" }
                            }
                        }
                        tbody {
                            tr {
                                td.qwk { strong.value { (num(r.metrics.qwk)) } " " span.ci.hint { (ci(r.ci.qwk)) } }
                                td.ceiling {
                                    @if r.human_ceiling.items == 0 {
                                        span.value { "–" } " " span.hint { "needs items graded by two people" }
                                    } @else {
                                        strong.value { (num(r.human_ceiling.metrics.qwk)) } " "
                                        span.hint { "on " (r.human_ceiling.items) " item(s)" }
                                    }
                                }
                                td.bias { strong.value { (signed(r.metrics.bias)) } " " span.ci.hint { (ci(r.ci.bias)) } }
                                td.items { strong.value.n { (r.metrics.n) } " " span.hint { (r.humans) " grader(s)" } }
                                td.exact { (pct(r.metrics.exact)) " / " (pct(r.metrics.adjacent)) }
                                td.mae { (num(r.metrics.mae)) " " span.ci.hint { (ci(r.ci.mae)) } }
                            }
                        }
                    }
                    @if r.metrics.n < 30 {
                        p.small-sample.hint { "Few items (" (r.metrics.n) "): intervals are wide and the figures move with every new grade." }
                    }
                }
            }
            div.charts {
                (confusion_chart(s, &title))
                " "
                (svg::scatter(&format!("{title}: AI vs human consensus, one point per item"), s.scale, &s.pairs, SEED))
                " "
                (svg::versions(&format!("{title}: QWK by prompt version per {period} of the human grade"), &s.versions))
                " "
                (svg::distribution(
                    &format!("{title}: score distributions, AI vs human"),
                    &(s.scale.0..=s.scale.1).collect::<Vec<_>>(),
                    &s.ai_counts,
                    &s.human_counts,
                ))
            }
        }
    }
}

/// The report's matrix is `counts[human][ai]`; the chart wants AI rows, human columns.
fn confusion_chart(s: &DimensionSection, title: &str) -> Markup {
    let title = format!("{title}: confusion matrix, AI vs human consensus");
    match &s.report {
        Ok(r) => {
            let m = &r.confusion;
            let k = m.labels.len();
            let transposed: Vec<Vec<u64>> = (0..k)
                .map(|ai| {
                    (0..k)
                        .map(|h| {
                            m.counts
                                .get(h)
                                .and_then(|row| row.get(ai))
                                .copied()
                                .unwrap_or(0)
                        })
                        .collect()
                })
                .collect();
            svg::confusion(&title, &m.labels, &transposed)
        }
        Err(_) => svg::confusion(&title, &[], &[]),
    }
}

fn grader_table(rows: &[GraderRow]) -> Markup {
    html! {
        table #grader-agreement {
            caption { "Each grader against the AI and against the other graders (the consensus of the others). A grader far from the others is worth a conversation before the AI is blamed." }
            thead {
                tr {
                    th scope="col" { "Grader" }
                    th scope="col" { "Stage" }
                    th scope="col" { "Dimension" }
                    th scope="col" { "n (vs AI)" }
                    th scope="col" { "QWK vs AI" }
                    th scope="col" { "Exact vs AI" }
                    th scope="col" { "MAE vs AI" }
                    th scope="col" { "Bias vs AI" }
                    th scope="col" { "QWK vs others" }
                }
            }
            tbody {
                @for g in rows {
                    tr.grader-row data-rater=(g.rater) data-dimension=(g.dimension) {
                        th scope="row" { (g.rater) }
                        td { (g.stage.as_str()) }
                        td { code { (g.dimension) } }
                        td.n { (g.agreement.vs_ai.n) }
                        td.qwk { (num(g.agreement.vs_ai.qwk)) }
                        td.exact { (pct(g.agreement.vs_ai.exact)) }
                        td.mae { (num(g.agreement.vs_ai.mae)) }
                        td.bias { (signed(g.agreement.vs_ai.bias)) }
                        td.others { (num(g.agreement.vs_others.qwk)) " " small { "(n " (g.agreement.vs_others.n) ")" } }
                    }
                }
            }
        }
    }
}

/// The page's main content (the layout with navigation is added by the handler).
pub fn render(data: &DashboardData) -> Markup {
    html! {
        h1 { "Calibration" }
        p.lede {
            "How closely the AI's scores agree with your graders', per stage and rubric dimension. "
            "QWK is 1 for perfect agreement and 0 for chance; the human ceiling is how well your graders agree with each other. "
            "Intervals are bootstrap 95% intervals (" (DEFAULT_BOOTSTRAP) " resamples). The AI's scores are advisory."
        }
        (stage_filter(data.stage))
        @if data.rows == 0 {
            div.empty-state {
                p { strong { "No human grades yet" } @if let Some(s) = data.stage { " for " (s.as_str()) } "." }
                p { "Grade submissions from the " a href="/ui/queue" { "review queue" } "; agreement appears here as soon as a person has graded a submission the AI graded." }
            }
        } @else {
            p.summary { (data.rows) " human grade row(s) (one per person, submission and dimension). Agreement by prompt version is grouped per " (data.period) " of the human grade." }
            @for s in &data.sections {
                (section(s, data.period))
            }
            h2 #graders { "Grader agreement" }
            @if data.graders.is_empty() {
                p.empty-state { "No grader figures yet." }
            } @else {
                (grader_table(&data.graders))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct DashboardQuery {
    /// A stage id; absent or blank = every stage.
    pub stage: Option<String>,
}

/// `GET /ui/calibration?stage=`: the dashboard of the session's tenant.
pub async fn page(
    State(state): State<Arc<WebState>>,
    session: Session,
    query: Result<Query<DashboardQuery>, QueryRejection>,
) -> Response {
    let stage = match query {
        Err(e) => {
            return WebError::BadRequest(format!("unreadable query: {}", e.body_text()))
                .into_page(Some(&session))
        }
        Ok(Query(q)) => match q.stage.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => match s.parse::<Stage>() {
                Ok(stage) => Some(stage),
                Err(e) => return WebError::Invalid(e.to_string()).into_page(Some(&session)),
            },
        },
    };
    match load(&state.app, &session.tenant.id, stage).await {
        Ok(data) => layout::page("Calibration", Some(&session), render(&data)).into_response(),
        Err(DashboardError::Store(e)) => WebError::Store(e).into_page(Some(&session)),
        Err(e @ DashboardError::Task(_)) => {
            tracing::error!("calibration dashboard: {e}");
            let body = html! {
                section.error-page {
                    h1 { "Server error" }
                    p.error-message { "The calibration figures could not be computed; this has been logged. Please try again." }
                }
            };
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                layout::page("Server error", Some(&session), body),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn row(sub: &str, rater: &str, human: f64, ai: Option<f64>, day: u32) -> CalibrationRow {
        CalibrationRow {
            submission_id: sub.to_string(),
            stage: Stage::SystemDesign,
            prompt: "nope@v1".to_string(),
            model: "offline".to_string(),
            dimension: "retrieval".to_string(),
            rater: rater.to_string(),
            human,
            ai,
            graded_at: Utc
                .with_ymd_and_hms(2026, 11, day, 12, 0, 0)
                .single()
                .unwrap_or_else(Utc::now),
        }
    }

    fn empty_registry() -> crate::prompts::Registry {
        match crate::prompts::Registry::from_versions(Vec::new(), BTreeMap::new()) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn counts_round_half_down_and_skip_out_of_scale() {
        assert_eq!(
            counts([1.0, 1.5, 2.5, 3.0, 9.0, f64::NAN].into_iter(), (1, 3)),
            vec![2, 1, 1]
        );
        assert_eq!(counts(std::iter::empty(), (1, 4)), vec![0, 0, 0, 0]);
    }

    #[test]
    fn compute_builds_one_section_per_dimension_with_pairs_counts_and_graders() {
        let rows = [
            row("s1", "kim", 1.0, Some(1.0), 2),
            row("s1", "lee", 2.0, Some(1.0), 3),
            row("s2", "kim", 3.0, Some(2.0), 3),
            row("s3", "kim", 2.0, Some(2.0), 20),
        ];
        let (period, sections, graders) = compute(&empty_registry(), &rows);
        assert_eq!(period, "week");
        assert_eq!(sections.len(), 1);
        let s = &sections[0];
        assert_eq!(s.scale, (1, 3));
        // s1: consensus of {1, 2} = 1.5 -> half down 1; s2: 3; s3: 2.
        let pairs: Vec<(f64, f64)> = s.pairs.iter().map(|p| (p.ai, p.human)).collect();
        assert_eq!(pairs, vec![(1.0, 1.0), (2.0, 3.0), (2.0, 2.0)]);
        assert_eq!(s.ai_counts, vec![1, 2, 0]);
        // Every person's grade: kim 1, lee 2, kim 3, kim 2.
        assert_eq!(s.human_counts, vec![1, 2, 1]);
        let r = s.report.as_ref().map_err(|e| e.clone());
        assert_eq!(r.map(|r| r.metrics.n), Ok(3));
        // Two ISO weeks: 2026-11-02/03 (W45) and 2026-11-20 (W47).
        let periods: Vec<&str> = s.versions.iter().map(|v| v.period.as_str()).collect();
        assert_eq!(periods, vec!["2026-W45", "2026-W47"]);
        assert_eq!(s.versions[0].n, 2);
        let raters: Vec<&str> = graders.iter().map(|g| g.rater.as_str()).collect();
        assert_eq!(raters, vec!["kim", "lee"]);
        assert_eq!(graders[0].agreement.vs_ai.n, 3);
        // kim vs AI: |1-1| + |3-2| + |2-2| = 1 over 3 items.
        let mae = graders[0].agreement.vs_ai.mae.unwrap_or(f64::NAN);
        assert!((mae - 1.0 / 3.0).abs() < 1e-12, "{mae}");
    }

    #[test]
    fn long_histories_group_by_month() {
        let mut rows = vec![row("s1", "kim", 1.0, Some(1.0), 2)];
        let mut late = row("s2", "kim", 2.0, Some(2.0), 2);
        late.graded_at = Utc
            .with_ymd_and_hms(2027, 6, 1, 0, 0, 0)
            .single()
            .unwrap_or_else(Utc::now);
        rows.push(late);
        let (period, sections, _) = compute(&empty_registry(), &rows);
        assert_eq!(period, "month");
        let periods: Vec<&str> = sections[0]
            .versions
            .iter()
            .map(|v| v.period.as_str())
            .collect();
        // One item per month: n = 1, still a point (QWK undefined is allowed).
        assert_eq!(periods, vec!["2026-11", "2027-06"]);
    }

    #[test]
    fn render_shows_empty_state_without_grades_and_sections_with_them() {
        let empty = DashboardData {
            stage: Some(Stage::HandsOn),
            rows: 0,
            period: "week",
            sections: Vec::new(),
            graders: Vec::new(),
        };
        let html = render(&empty).into_string();
        assert!(html.contains("class=\"empty-state\""));
        assert!(html.contains("No human grades yet"));
        assert!(!html.contains("grader-agreement"));
        assert!(html.contains("<option value=\"hands_on\" selected>"));

        let rows = [
            row("s1", "<b>kim</b>", 1.0, Some(1.0), 2),
            row("s2", "<b>kim</b>", 3.0, Some(2.0), 3),
        ];
        let (period, sections, graders) = compute(&empty_registry(), &rows);
        let data = DashboardData {
            stage: None,
            rows: rows.len(),
            period,
            sections,
            graders,
        };
        let html = render(&data).into_string();
        assert_eq!(html.matches("<section class=\"dimension\"").count(), 1);
        assert!(html.contains("data-dimension=\"retrieval\""));
        for class in ["confusion", "scatter", "versions", "distribution"] {
            assert!(
                html.contains(&format!("<svg class=\"chart {class}\"")),
                "{class}"
            );
        }
        assert_eq!(html.matches("<circle class=\"point\"").count(), 2);
        assert!(html.contains("<table id=\"grader-agreement\">"));
        assert_eq!(html.matches("<tr class=\"grader-row\"").count(), 1);
        assert!(html.contains("&lt;b&gt;kim&lt;/b&gt;") && !html.contains("<b>kim"));
        assert!(!html.contains("class=\"empty-state\""));
    }
}
