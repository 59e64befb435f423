//! Inline SVG charts for the calibration dashboard: pure functions from numbers to markup.
//!
//! Why hand-written SVG: the UI ships no JavaScript charting library and loads nothing from a
//! CDN, and a server-rendered chart works without JavaScript, prints, and can be checked by
//! a test that counts its elements. Every chart:
//! - is an `<svg role="img">` with an `aria-label` that states what it shows in words (a
//!   screen reader does not read the drawing) and a `<title>` (the tooltip); each mark has a
//!   `<title>` with its exact figure, so nothing is conveyed by colour alone;
//! - uses presentation attributes (`fill`, `stroke`), never `style=`, so the pages'
//!   Content-Security-Policy (`default-src 'self'`, no inline styles) holds;
//! - escapes every label (maud escapes text and attribute values);
//! - draws an explicit "no data" message for empty input instead of an empty frame.
//!
//! Axis convention shared by the heatmap and the scatter: human score on x (left to right,
//! ascending), AI score on y (bottom to top, ascending), so perfect agreement is the
//! bottom-left to top-right diagonal in both.

use maud::{html, Markup};

use crate::calibration::Pair;

/// Colour-blind-safe palette (Okabe & Ito) for series that must be told apart.
const PALETTE: [&str; 7] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
];
const AI_FILL: &str = "#0072B2";
const HUMAN_FILL: &str = "#E69F00";
const AXIS: &str = "#555555";
const GRID: &str = "#e2e2e2";
const TEXT: &str = "#1a1a1a";
const FONT: &str = "system-ui, sans-serif";
const HEAD_CONFUSION: &str = "Confusion matrix";
const HEAD_SCATTER: &str = "AI vs human, per item";
const HEAD_VERSIONS: &str = "QWK by prompt version";
const HEAD_DISTRIBUTION: &str = "Score distributions";

/// Pixel coordinates with one decimal: enough for a crisp drawing, short markup.
fn px(v: f64) -> String {
    format!("{v:.1}")
}

fn fmt2(v: f64) -> String {
    format!("{v:.2}")
}

/// Height of the visible heading every chart draws above its plot.
const HEADING_H: f64 = 22.0;
/// Charts are at least this tall, so a row of them (inline SVGs, bottom-aligned by
/// default) lines up without any CSS.
const MIN_H: f64 = 280.0;

/// The outer `<svg>` every chart shares: size, accessibility, a visible heading (so a chart
/// is self-explaining even when copied out of the page), class for the page's CSS and the
/// tests' selectors. `w`/`h` are the plot's own size; the heading goes above it.
fn frame(
    class: &str,
    title: &str,
    heading: &str,
    summary: &str,
    w: f64,
    h: f64,
    body: Markup,
) -> Markup {
    let label = format!("{title}. {summary}");
    let total_h = (h + HEADING_H).max(MIN_H);
    html! {
        svg class=(class) xmlns="http://www.w3.org/2000/svg" role="img" aria-label=(label)
            viewBox=(format!("0 0 {w} {total_h}")) width=(w) height=(total_h)
            font-family=(FONT) font-size="11" fill=(TEXT) {
            title { (title) }
            desc { (summary) }
            text class="chart-title" x="4" y="15" font-size="12" font-weight="600" { (heading) }
            g transform=(format!("translate(0 {HEADING_H})")) { (body) }
        }
    }
}

fn empty_message(w: f64, h: f64) -> Markup {
    html! {
        text class="empty" x=(px(w / 2.0)) y=(px(h / 2.0)) text-anchor="middle" fill=(AXIS) {
            "No data yet"
        }
    }
}

/// Linear blend of two RGB colours, `t` in [0, 1].
fn blend(from: (u8, u8, u8), to: (u8, u8, u8), t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * t).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(from.0, to.0),
        mix(from.1, to.1),
        mix(from.2, to.2)
    )
}

/// Confusion-matrix heatmap. `labels` are the scale's categories in ascending order;
/// `counts[ai][human]` is how many items the AI put in category `labels[ai]` while the
/// human consensus put them in `labels[human]` (missing entries count as 0). Cells darken
/// with the count (sequential blue, relative to the largest cell); the agreement diagonal
/// is outlined; each cell prints its count.
pub fn confusion(title: &str, labels: &[i64], counts: &[Vec<u64>]) -> Markup {
    let k = labels.len();
    let at = |ai: usize, human: usize| -> u64 {
        counts
            .get(ai)
            .and_then(|row| row.get(human))
            .copied()
            .unwrap_or(0)
    };
    let total: u64 = (0..k)
        .flat_map(|a| (0..k).map(move |h| (a, h)))
        .map(|(a, h)| at(a, h))
        .sum();
    let agree: u64 = (0..k).map(|i| at(i, i)).sum();
    let max = (0..k)
        .flat_map(|a| (0..k).map(move |h| (a, h)))
        .map(|(a, h)| at(a, h))
        .max()
        .unwrap_or(0);
    let cell = if k == 0 {
        40.0
    } else {
        (200.0 / k as f64).clamp(24.0, 48.0)
    };
    let (left, top, bottom, right) = (58.0, 8.0, 44.0, 12.0);
    let side = cell * k.max(1) as f64;
    let (w, h) = (left + side + right, top + side + bottom);
    let summary = if total == 0 {
        "No items with both an AI score and a human grade.".to_string()
    } else {
        format!(
            "Rows: AI score, columns: human consensus, {total} items, {agree} on the diagonal \
             (exact agreement)."
        )
    };
    if total == 0 || k == 0 {
        return frame(
            "chart confusion",
            title,
            HEAD_CONFUSION,
            &summary,
            w,
            h,
            empty_message(w, h),
        );
    }
    // AI category i is drawn in row k-1-i so the highest AI score is at the top.
    let y_of = |ai: usize| top + (k - 1 - ai) as f64 * cell;
    let x_of = |human: usize| left + human as f64 * cell;
    let body = html! {
        @for ai in 0..k {
            @for human in 0..k {
                @let n = at(ai, human);
                @let t = if max == 0 { 0.0 } else { n as f64 / max as f64 };
                @let fill = if n == 0 { "#fafafa".to_string() } else { blend((222, 235, 247), (8, 48, 107), t) };
                @let ink = if t > 0.55 { "#ffffff" } else { TEXT };
                @let diag = ai == human;
                g class=(if diag { "cell diagonal" } else { "cell" })
                    data-ai=(labels[ai]) data-human=(labels[human]) data-count=(n) {
                    title { "AI " (labels[ai]) ", human " (labels[human]) ": " (n) " item(s)" }
                    rect x=(px(x_of(human))) y=(px(y_of(ai))) width=(px(cell)) height=(px(cell))
                        fill=(fill) stroke=(if diag { "#333333" } else { "#ffffff" })
                        stroke-width=(if diag { "1.5" } else { "1" }) {}
                    text x=(px(x_of(human) + cell / 2.0)) y=(px(y_of(ai) + cell / 2.0 + 4.0))
                        text-anchor="middle" fill=(ink) { (n) }
                }
            }
        }
        @for i in 0..k {
            text class="tick" x=(px(left - 6.0)) y=(px(y_of(i) + cell / 2.0 + 4.0)) text-anchor="end" { (labels[i]) }
            text class="tick" x=(px(x_of(i) + cell / 2.0)) y=(px(top + side + 14.0)) text-anchor="middle" { (labels[i]) }
        }
        text class="axis-label" x=(px(left + side / 2.0)) y=(px(h - 8.0)) text-anchor="middle" {
            "Human score (consensus)"
        }
        text class="axis-label" x="14" y=(px(top + side / 2.0)) text-anchor="middle"
            transform=(format!("rotate(-90 14 {})", px(top + side / 2.0))) { "AI score" }
    };
    frame(
        "chart confusion",
        title,
        HEAD_CONFUSION,
        &summary,
        w,
        h,
        body,
    )
}

/// SplitMix64: a tiny, fixed pseudo-random sequence, so the jitter of a chart is the same
/// on every render and in every test (no dependency on an RNG crate's algorithm choice).
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A uniform value in [-0.5, 0.5) from the seed and a stream index.
fn unit(seed: u64, index: u64) -> f64 {
    (splitmix(seed ^ splitmix(index)) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
}

/// AI (y) against human consensus (x), one point per item, over the full `scale`, with the
/// agreement diagonal. Scores are mostly integers, so identical pairs would hide each
/// other: each point is jittered by up to ±0.15 of a scale step on both axes, from `seed`
/// (deterministic: the same data always draws the same picture). Non-finite pairs are
/// skipped.
pub fn scatter(title: &str, scale: (i64, i64), pairs: &[Pair], seed: u64) -> Markup {
    let (lo, hi) = (scale.0 as f64, scale.1.max(scale.0 + 1) as f64);
    let (left, top, bottom, right, plot) = (50.0, 8.0, 44.0, 14.0, 200.0);
    let (w, h) = (left + plot + right, top + plot + bottom);
    let pad = 0.5;
    let sx = |v: f64| left + (v - lo + pad) / (hi - lo + 2.0 * pad) * plot;
    let sy = |v: f64| top + plot - (v - lo + pad) / (hi - lo + 2.0 * pad) * plot;
    let points: Vec<&Pair> = pairs
        .iter()
        .filter(|p| p.ai.is_finite() && p.human.is_finite())
        .collect();
    let exact = points.iter().filter(|p| p.ai == p.human).count();
    let summary = if points.is_empty() {
        "No items with both an AI score and a human grade.".to_string()
    } else {
        format!(
            "{} items; {exact} exactly on the diagonal (AI equals human consensus). Points \
             are jittered slightly so equal pairs stay visible.",
            points.len()
        )
    };
    if points.is_empty() {
        return frame(
            "chart scatter",
            title,
            HEAD_SCATTER,
            &summary,
            w,
            h,
            empty_message(w, h),
        );
    }
    let ticks: Vec<i64> = (scale.0..=scale.1.max(scale.0)).collect();
    let body = html! {
        @for t in &ticks {
            line class="grid" x1=(px(sx(*t as f64))) x2=(px(sx(*t as f64))) y1=(px(top)) y2=(px(top + plot)) stroke=(GRID) {}
            line class="grid" x1=(px(left)) x2=(px(left + plot)) y1=(px(sy(*t as f64))) y2=(px(sy(*t as f64))) stroke=(GRID) {}
            text class="tick" x=(px(sx(*t as f64))) y=(px(top + plot + 14.0)) text-anchor="middle" { (t) }
            text class="tick" x=(px(left - 6.0)) y=(px(sy(*t as f64) + 4.0)) text-anchor="end" { (t) }
        }
        rect x=(px(left)) y=(px(top)) width=(px(plot)) height=(px(plot)) fill="none" stroke=(AXIS) {}
        line class="diagonal" x1=(px(sx(lo - pad))) y1=(px(sy(lo - pad))) x2=(px(sx(hi + pad))) y2=(px(sy(hi + pad)))
            stroke=(AXIS) stroke-dasharray="4 3" {}
        @for (i, p) in points.iter().enumerate() {
            @let jx = unit(seed, 2 * i as u64) * 0.3;
            @let jy = unit(seed, 2 * i as u64 + 1) * 0.3;
            circle class="point" cx=(px(sx(p.human + jx))) cy=(px(sy(p.ai + jy))) r="4"
                fill=(AI_FILL) fill-opacity="0.6" stroke="#ffffff" stroke-width="0.5" {
                title { "AI " (p.ai) ", human " (p.human) }
            }
        }
        text class="axis-label" x=(px(left + plot / 2.0)) y=(px(h - 8.0)) text-anchor="middle" {
            "Human score (consensus)"
        }
        text class="axis-label" x="14" y=(px(top + plot / 2.0)) text-anchor="middle"
            transform=(format!("rotate(-90 14 {})", px(top + plot / 2.0))) { "AI score" }
    };
    frame("chart scatter", title, HEAD_SCATTER, &summary, w, h, body)
}

/// One point of the agreement-over-time chart: a prompt version's QWK against the human
/// consensus on the items graded in one period.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionPoint {
    /// `id@version`
    pub prompt: String,
    /// A label that sorts chronologically (`2026-11`, `2026-W48`).
    pub period: String,
    /// Items (AI score and human consensus) behind the figure.
    pub n: usize,
    /// `None` when undefined (e.g. no variance).
    pub qwk: Option<f64>,
    /// Bootstrap 95% interval.
    pub ci: Option<[f64; 2]>,
}

/// QWK by prompt version over time: periods on x (in label order), QWK on y, one colour per
/// prompt version (legend with text labels), whiskers for the 95% interval, points of a
/// version joined in time order. Points whose QWK is undefined are not drawn; the
/// description counts them.
pub fn versions(title: &str, points: &[VersionPoint]) -> Markup {
    let mut periods: Vec<&str> = points.iter().map(|p| p.period.as_str()).collect();
    periods.sort_unstable();
    periods.dedup();
    let mut prompts: Vec<&str> = points.iter().map(|p| p.prompt.as_str()).collect();
    prompts.sort_unstable();
    prompts.dedup();
    let defined: Vec<&VersionPoint> = points
        .iter()
        .filter(|p| p.qwk.is_some_and(f64::is_finite))
        .collect();
    let undefined = points.len() - defined.len();
    let (left, top, right, plot_h) = (44.0, 8.0, 12.0, 180.0);
    let slot = (220.0 / periods.len().max(1) as f64).clamp(48.0, 110.0);
    let plot_w = slot * periods.len().max(1) as f64;
    let legend_rows = prompts.len().max(1) as f64;
    let bottom = 40.0 + 16.0 * legend_rows;
    let (w, h) = (left + plot_w + right, top + plot_h + bottom);
    let summary = if defined.is_empty() {
        "No prompt version has a defined QWK yet.".to_string()
    } else {
        let mut s = format!(
            "QWK of {} prompt version(s) over {} period(s), with 95% intervals.",
            prompts.len(),
            periods.len()
        );
        if undefined > 0 {
            s.push_str(&format!(
                " {undefined} period(s) with an undefined QWK not drawn."
            ));
        }
        s
    };
    if defined.is_empty() {
        return frame(
            "chart versions",
            title,
            HEAD_VERSIONS,
            &summary,
            w,
            h,
            empty_message(w, h),
        );
    }
    // y range: 0..1 unless a figure or interval goes below 0 (QWK can be negative).
    let lowest = defined
        .iter()
        .flat_map(|p| [p.qwk.unwrap_or(0.0), p.ci.map_or(0.0, |c| c[0])])
        .fold(0.0_f64, f64::min);
    let y_lo = (lowest * 5.0).floor() / 5.0;
    let y_lo = y_lo.max(-1.0);
    let sy = |v: f64| top + plot_h - (v.clamp(y_lo, 1.0) - y_lo) / (1.0 - y_lo) * plot_h;
    let colour = |prompt: &str| {
        let i = prompts.iter().position(|p| *p == prompt).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    // Versions side by side within a period's slot so their whiskers do not overlap.
    let sx = |period: &str, prompt: &str| {
        let pi = periods.iter().position(|p| *p == period).unwrap_or(0) as f64;
        let vi = prompts.iter().position(|p| *p == prompt).unwrap_or(0) as f64;
        let m = prompts.len() as f64;
        let dodge = if m > 1.0 {
            (vi - (m - 1.0) / 2.0) * (slot * 0.5 / m)
        } else {
            0.0
        };
        left + (pi + 0.5) * slot + dodge
    };
    let mut grid = Vec::new();
    let mut g = y_lo;
    while g <= 1.0 + 1e-9 {
        grid.push(g);
        g += 0.2;
    }
    let series: Vec<(&str, String)> = prompts
        .iter()
        .map(|prompt| {
            let mut pts: Vec<&&VersionPoint> =
                defined.iter().filter(|p| p.prompt == *prompt).collect();
            pts.sort_by(|a, b| a.period.cmp(&b.period));
            let path = pts
                .iter()
                .map(|p| {
                    format!(
                        "{},{}",
                        px(sx(&p.period, prompt)),
                        px(sy(p.qwk.unwrap_or(0.0)))
                    )
                })
                .collect::<Vec<_>>()
                .join(" ");
            (*prompt, path)
        })
        .collect();
    let body = html! {
        @for v in &grid {
            line class="grid" x1=(px(left)) x2=(px(left + plot_w)) y1=(px(sy(*v))) y2=(px(sy(*v)))
                stroke=(if v.abs() < 1e-9 { AXIS } else { GRID }) {}
            text class="tick" x=(px(left - 6.0)) y=(px(sy(*v) + 4.0)) text-anchor="end" { (format!("{v:.1}")) }
        }
        @for (i, period) in periods.iter().enumerate() {
            text class="tick" x=(px(left + (i as f64 + 0.5) * slot)) y=(px(top + plot_h + 14.0)) text-anchor="middle" { (period) }
        }
        @for (prompt, path) in &series {
            polyline class="series" points=(path) fill="none" stroke=(colour(prompt)) stroke-width="1.5" {}
        }
        @for p in &defined {
            @let x = sx(&p.period, &p.prompt);
            @let q = p.qwk.unwrap_or(0.0);
            g class="version-point" data-prompt=(p.prompt) data-period=(p.period) {
                title {
                    (p.prompt) ", " (p.period) ": QWK " (fmt2(q))
                    @if let Some(ci) = p.ci { " [" (fmt2(ci[0])) ", " (fmt2(ci[1])) "]" }
                    ", n = " (p.n)
                }
                @if let Some(ci) = p.ci {
                    line class="whisker" x1=(px(x)) x2=(px(x)) y1=(px(sy(ci[0]))) y2=(px(sy(ci[1])))
                        stroke=(colour(&p.prompt)) stroke-width="1.5" {}
                    line x1=(px(x - 4.0)) x2=(px(x + 4.0)) y1=(px(sy(ci[0]))) y2=(px(sy(ci[0]))) stroke=(colour(&p.prompt)) {}
                    line x1=(px(x - 4.0)) x2=(px(x + 4.0)) y1=(px(sy(ci[1]))) y2=(px(sy(ci[1]))) stroke=(colour(&p.prompt)) {}
                }
                circle cx=(px(x)) cy=(px(sy(q))) r="4" fill=(colour(&p.prompt)) {}
            }
        }
        text class="axis-label" x="12" y=(px(top + plot_h / 2.0)) text-anchor="middle"
            transform=(format!("rotate(-90 12 {})", px(top + plot_h / 2.0))) { "QWK (AI vs humans)" }
        @for (i, prompt) in prompts.iter().enumerate() {
            @let y = top + plot_h + 34.0 + 16.0 * i as f64;
            g class="legend" {
                rect x=(px(left)) y=(px(y - 9.0)) width="10" height="10" fill=(colour(prompt)) {}
                text x=(px(left + 16.0)) y=(px(y)) { (prompt) }
            }
        }
    };
    frame("chart versions", title, HEAD_VERSIONS, &summary, w, h, body)
}

/// Score distributions, grouped bars per scale category: the AI's scores beside the human
/// grades. `ai[i]` and `human[i]` count scores in category `labels[i]` (missing = 0). Each
/// bar prints its count; a legend names the two series in text.
pub fn distribution(title: &str, labels: &[i64], ai: &[u64], human: &[u64]) -> Markup {
    let get = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    let k = labels.len();
    let ai_total: u64 = (0..k).map(|i| get(ai, i)).sum();
    let human_total: u64 = (0..k).map(|i| get(human, i)).sum();
    let max = (0..k)
        .map(|i| get(ai, i).max(get(human, i)))
        .max()
        .unwrap_or(0);
    let (left, top, bottom, right, plot_h) = (40.0, 14.0, 58.0, 12.0, 180.0);
    let group = if k == 0 {
        48.0
    } else {
        (220.0 / k as f64).clamp(30.0, 56.0)
    };
    let plot_w = group * k.max(1) as f64;
    let (w, h) = (left + plot_w + right, top + plot_h + bottom);
    let summary = if max == 0 || k == 0 {
        "No scores yet.".to_string()
    } else {
        let parts: Vec<String> = (0..k)
            .map(|i| format!("{}: AI {}, human {}", labels[i], get(ai, i), get(human, i)))
            .collect();
        format!(
            "{ai_total} AI scores and {human_total} human grades per score: {}.",
            parts.join("; ")
        )
    };
    if max == 0 || k == 0 {
        return frame(
            "chart distribution",
            title,
            HEAD_DISTRIBUTION,
            &summary,
            w,
            h,
            empty_message(w, h),
        );
    }
    let bar = group * 0.36;
    let sy = |v: u64| top + plot_h - v as f64 / max as f64 * plot_h;
    let body = html! {
        line x1=(px(left)) x2=(px(left + plot_w)) y1=(px(top + plot_h)) y2=(px(top + plot_h)) stroke=(AXIS) {}
        @for i in 0..k {
            @let x0 = left + i as f64 * group + group * 0.14;
            @for (series, counts, fill, dx) in [("ai", ai, AI_FILL, 0.0), ("human", human, HUMAN_FILL, bar)] {
                @let n = get(counts, i);
                g class=(format!("bar {series}")) data-score=(labels[i]) data-count=(n) {
                    title { (if series == "ai" { "AI" } else { "Human" }) " scores of " (labels[i]) ": " (n) }
                    rect x=(px(x0 + dx)) y=(px(sy(n))) width=(px(bar - 1.0)) height=(px(top + plot_h - sy(n)))
                        fill=(fill) {}
                    text x=(px(x0 + dx + bar / 2.0)) y=(px(sy(n) - 3.0)) text-anchor="middle" font-size="10" { (n) }
                }
            }
            text class="tick" x=(px(left + (i as f64 + 0.5) * group)) y=(px(top + plot_h + 14.0)) text-anchor="middle" { (labels[i]) }
        }
        text class="axis-label" x=(px(left + plot_w / 2.0)) y=(px(top + plot_h + 30.0)) text-anchor="middle" { "Score" }
        g class="legend" {
            rect x=(px(left)) y=(px(h - 19.0)) width="10" height="10" fill=(AI_FILL) {}
            text x=(px(left + 14.0)) y=(px(h - 10.0)) { "AI (" (ai_total) ")" }
            rect x=(px(left + 90.0)) y=(px(h - 19.0)) width="10" height="10" fill=(HUMAN_FILL) {}
            text x=(px(left + 104.0)) y=(px(h - 10.0)) { "Human (" (human_total) ")" }
        }
    };
    frame(
        "chart distribution",
        title,
        HEAD_DISTRIBUTION,
        &summary,
        w,
        h,
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    fn pair(ai: f64, human: f64) -> Pair {
        Pair {
            item: String::new(),
            ai,
            human,
        }
    }

    #[test]
    fn confusion_draws_k_by_k_cells_with_counts_and_outlines_the_diagonal() {
        let labels = [1, 2, 3];
        let counts = vec![vec![2, 1, 0], vec![0, 3, 0], vec![0, 0, 4]];
        let s = confusion("Retrieval", &labels, &counts).into_string();
        assert!(s.starts_with("<svg class=\"chart confusion\""), "{s}");
        assert_eq!(count(&s, "<g class=\"cell"), 9);
        assert_eq!(count(&s, "<g class=\"cell diagonal\""), 3);
        assert!(s.contains("data-ai=\"1\" data-human=\"2\" data-count=\"1\""));
        assert!(s.contains("AI 3, human 3: 4 item(s)"));
        // 10 items, 9 of them on the diagonal.
        assert!(s.contains("10 items, 9 on the diagonal"), "{s}");
        assert!(s.contains("role=\"img\"") && s.contains("<title>Retrieval</title>"));
        // The fullest cell is the darkest colour of the scale, an empty one is near white.
        assert!(s.contains("fill=\"#08306b\""));
        assert!(s.contains("fill=\"#fafafa\""));
        assert!(!s.contains("style="), "no inline styles (CSP)");
    }

    #[test]
    fn confusion_tolerates_ragged_input_and_renders_empty_state() {
        let s = confusion("x", &[1, 2], &[vec![1]]).into_string();
        assert_eq!(count(&s, "<g class=\"cell"), 4);
        let e = confusion("x", &[1, 2, 3], &[]).into_string();
        assert_eq!(count(&e, "<g class=\"cell"), 0);
        assert!(e.contains("class=\"empty\"") && e.contains("No data yet"));
        let none = confusion("x", &[], &[]).into_string();
        assert!(none.contains("No data yet"));
    }

    #[test]
    fn labels_are_escaped() {
        let evil = "<script>alert(\"x\")</script>&";
        let outputs = [
            confusion(evil, &[1, 2], &[vec![1, 0], vec![0, 1]]).into_string(),
            scatter(evil, (1, 4), &[pair(1.0, 2.0)], 1).into_string(),
            versions(
                evil,
                &[VersionPoint {
                    prompt: evil.to_string(),
                    period: evil.to_string(),
                    n: 3,
                    qwk: Some(0.5),
                    ci: None,
                }],
            )
            .into_string(),
            distribution(evil, &[1], &[1], &[1]).into_string(),
        ];
        for s in outputs {
            assert!(!s.contains("<script>"), "{s}");
            assert!(s.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;"));
        }
    }

    #[test]
    fn scatter_has_one_point_per_finite_pair_a_diagonal_and_seeded_jitter() {
        let pairs = [
            pair(1.0, 1.0),
            pair(1.0, 1.0),
            pair(3.0, 2.0),
            pair(f64::NAN, 2.0),
        ];
        let a = scatter("s", (1, 4), &pairs, 42).into_string();
        assert_eq!(count(&a, "<circle class=\"point\""), 3);
        assert_eq!(count(&a, "class=\"diagonal\""), 1);
        assert!(a.contains("3 items; 2 exactly on the diagonal"));
        // Same seed, same picture; another seed moves the points.
        assert_eq!(a, scatter("s", (1, 4), &pairs, 42).into_string());
        assert_ne!(a, scatter("s", (1, 4), &pairs, 43).into_string());
        // The two identical pairs do not land on the same pixel.
        let centres: Vec<&str> = a
            .split("<circle class=\"point\" ")
            .skip(1)
            .map(|c| c.split(" r=").next().unwrap_or_default())
            .collect();
        assert_ne!(centres[0], centres[1]);
        let e = scatter("s", (1, 4), &[], 1).into_string();
        assert_eq!(count(&e, "<circle"), 0);
        assert!(e.contains("No data yet"));
    }

    #[test]
    fn jitter_stays_within_a_third_of_a_step() {
        for i in 0..1000 {
            let u = unit(7, i);
            assert!((-0.5..0.5).contains(&u), "{u}");
        }
    }

    #[test]
    fn versions_draw_defined_points_with_whiskers_and_a_legend_per_prompt() {
        let p = |prompt: &str, period: &str, qwk: Option<f64>, ci: Option<[f64; 2]>| VersionPoint {
            prompt: prompt.to_string(),
            period: period.to_string(),
            n: 10,
            qwk,
            ci,
        };
        let pts = [
            p("sd@v1", "2026-10", Some(0.4), Some([0.1, 0.7])),
            p("sd@v1", "2026-11", Some(0.6), Some([0.3, 0.8])),
            p("sd@v2", "2026-11", Some(0.8), None),
            p("sd@v2", "2026-12", None, None),
        ];
        let s = versions("v", &pts).into_string();
        assert_eq!(count(&s, "<g class=\"version-point\""), 3);
        assert_eq!(count(&s, "class=\"whisker\""), 2);
        assert_eq!(count(&s, "<polyline class=\"series\""), 2);
        assert_eq!(count(&s, "<g class=\"legend\""), 2);
        assert!(s.contains("1 period(s) with an undefined QWK not drawn"));
        assert!(s.contains("sd@v1, 2026-10: QWK 0.40 [0.10, 0.70], n = 10"));
        // Three period labels on the x axis, in order.
        let a = s.find(">2026-10<").unwrap_or(usize::MAX);
        let b = s.find(">2026-11<").unwrap_or(usize::MAX);
        let c = s.find(">2026-12<").unwrap_or(usize::MAX);
        assert!(a < b && b < c && c != usize::MAX);
        // The y axis stays 0..1 when nothing is negative.
        assert!(s.contains(">0.0<") && s.contains(">1.0<") && !s.contains(">-0.2<"));
        let neg =
            versions("v", &[p("a@1", "2026-01", Some(-0.3), Some([-0.5, 0.1]))]).into_string();
        assert!(neg.contains(">-0.6<"), "{neg}");
        let e = versions("v", &[p("a@1", "2026-01", None, None)]).into_string();
        assert!(e.contains("No data yet"));
        assert_eq!(count(&e, "version-point"), 0);
    }

    #[test]
    fn distribution_draws_two_bars_per_score_with_counts() {
        let s = distribution("d", &[1, 2, 3, 4], &[0, 2, 5, 1], &[1, 3, 3, 1]).into_string();
        assert_eq!(count(&s, "<g class=\"bar ai\""), 4);
        assert_eq!(count(&s, "<g class=\"bar human\""), 4);
        assert!(s.contains("data-score=\"3\" data-count=\"5\""));
        assert!(s.contains("8 AI scores and 8 human grades"));
        assert!(s.contains("AI (8)") && s.contains("Human (8)"));
        // The tallest bar (5) spans the whole plot height: 180 px.
        assert!(s.contains("height=\"180.0\""), "{s}");
        let e = distribution("d", &[1, 2], &[0, 0], &[]).into_string();
        assert_eq!(count(&e, "class=\"bar"), 0);
        assert!(e.contains("No data yet"));
    }
}
