//! The bias audit itself: scoring rates, impact ratios and the length-bias check (see the
//! module documentation of [`crate::fairness`] for the method and its sources).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use crate::calibration::{pearson, spearman, CalibrationError};

/// The category of an item whose value for a field is missing, empty or "unknown".
pub const UNKNOWN: &str = "unknown";
/// The `field` name of the intersectional report (all fields combined).
pub const INTERSECTIONAL: &str = "intersectional";
/// How intersectional category names join their parts, in field order.
const JOIN: &str = " / ";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FairnessError {
    /// Nothing to audit.
    #[error("the audit has no items")]
    Empty,
    /// A score that is NaN or infinite.
    #[error("item {item}: {field} is not a finite number")]
    NonFinite { item: String, field: &'static str },
    /// The same item twice would count one person twice.
    #[error("item {0} appears twice")]
    DuplicateItem(String),
    /// A threshold outside its range.
    #[error("invalid audit option: {0}")]
    Options(String),
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
}

/// One audited item: its AI score, optionally a human score and the answer's length, and the
/// demographic categories of the person (field -> category; a missing field is `unknown`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    pub item_id: String,
    pub ai_score: f64,
    #[serde(default)]
    pub human_score: Option<f64>,
    /// Words the candidate wrote or said.
    #[serde(default)]
    pub length_words: Option<f64>,
    #[serde(default)]
    pub categories: BTreeMap<String, String>,
}

/// Thresholds of the audit; the defaults are LL144's and the EEOC's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditOptions {
    /// The demographic fields, in the order intersectional names list them; `None`: every
    /// field any row has, sorted by name.
    pub fields: Option<Vec<String>>,
    /// Impact ratios below this are flagged (the four-fifths rule: 0.8).
    pub threshold: f64,
    /// Categories with a share of the sample below this are `small_sample` (LL144: 2%).
    pub small_share: f64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            fields: None,
            threshold: 0.8,
            small_share: 0.02,
        }
    }
}

/// The figures of one category of one field (or one intersectional category).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryStats {
    pub category: String,
    /// Items in the category.
    pub count: usize,
    /// `count` / all items of the audit.
    pub share: f64,
    /// Items scoring strictly above the sample median.
    pub above_median: usize,
    /// `above_median / count`.
    pub scoring_rate: f64,
    /// `scoring_rate` / the field's reference rate; `None` for `unknown` categories and when
    /// the reference rate is 0 (nobody in any eligible category scored above the median).
    pub impact_ratio: Option<f64>,
    /// `impact_ratio < threshold`, for categories eligible for the flag (neither unknown nor
    /// small).
    pub flagged: bool,
    /// Under `small_share` of the sample: reported, not the reference, never flagged.
    pub small_sample: bool,
    /// The category is `unknown` (for an intersectional category: any part of it is).
    pub unknown: bool,
}

/// One field's categories, or the intersectional ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldReport {
    /// The field name, or [`INTERSECTIONAL`].
    pub field: String,
    /// The category with the highest scoring rate among the eligible ones (ties: the first
    /// by name); the denominator of every impact ratio of this field.
    pub reference: Option<String>,
    pub reference_rate: Option<f64>,
    /// Sorted by name, `unknown` categories last.
    pub categories: Vec<CategoryStats>,
}

/// Correlation of answer length with the AI score, and with the human score where people
/// graded. `ai_on_human_items` restricts the AI side to the items people graded, so the two
/// can be compared on the same items.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LengthBias {
    /// Items with a length.
    pub n: usize,
    pub pearson_ai: Option<f64>,
    pub spearman_ai: Option<f64>,
    /// Items with a length and a human score.
    pub n_human: usize,
    pub pearson_human: Option<f64>,
    pub spearman_human: Option<f64>,
    pub pearson_ai_on_human_items: Option<f64>,
    pub spearman_ai_on_human_items: Option<f64>,
}

/// The whole audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BiasAudit {
    /// Items audited.
    pub n: usize,
    /// Median AI score of all items (mean of the two middle ones for an even count).
    pub median: f64,
    /// Items scoring strictly above the median.
    pub above_median: usize,
    pub fields: Vec<String>,
    pub threshold: f64,
    pub small_share: f64,
    /// One report per field in `fields` order, then the intersectional one (when there are
    /// at least two fields).
    pub reports: Vec<FieldReport>,
    pub length: LengthBias,
    /// `field: category (ratio)` of every flagged category, for a one-line verdict.
    pub flagged: Vec<String>,
}

/// A category value as audited: trimmed; missing, empty or "unknown" (any case) is
/// [`UNKNOWN`].
pub fn normalize_category(value: Option<&str>) -> String {
    match value.map(str::trim) {
        None => UNKNOWN.to_string(),
        Some(v) if v.is_empty() || v.eq_ignore_ascii_case(UNKNOWN) => UNKNOWN.to_string(),
        Some(v) => v.to_string(),
    }
}

/// The median of `v` (mean of the two middle values for an even count); `None` when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    })
}

/// Runs the audit over `rows`.
pub fn bias_audit(rows: &[AuditRow], opts: &AuditOptions) -> Result<BiasAudit, FairnessError> {
    if rows.is_empty() {
        return Err(FairnessError::Empty);
    }
    if !(opts.threshold > 0.0 && opts.threshold <= 1.0) {
        return Err(FairnessError::Options(format!(
            "threshold must be in (0, 1], got {}",
            opts.threshold
        )));
    }
    if !(0.0..1.0).contains(&opts.small_share) {
        return Err(FairnessError::Options(format!(
            "small_share must be in [0, 1), got {}",
            opts.small_share
        )));
    }
    let mut seen = HashSet::new();
    for r in rows {
        if !seen.insert(r.item_id.as_str()) {
            return Err(FairnessError::DuplicateItem(r.item_id.clone()));
        }
        let bad = |field| FairnessError::NonFinite {
            item: r.item_id.clone(),
            field,
        };
        if !r.ai_score.is_finite() {
            return Err(bad("ai_score"));
        }
        if r.human_score.is_some_and(|h| !h.is_finite()) {
            return Err(bad("human_score"));
        }
        if r.length_words.is_some_and(|l| !l.is_finite()) {
            return Err(bad("length_words"));
        }
    }
    let fields: Vec<String> = match &opts.fields {
        Some(f) => f.clone(),
        None => rows
            .iter()
            .flat_map(|r| r.categories.keys().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let scores: Vec<f64> = rows.iter().map(|r| r.ai_score).collect();
    let median = median(&scores).ok_or(FairnessError::Empty)?;
    let above: Vec<bool> = scores.iter().map(|&s| s > median).collect();
    let n = rows.len();

    let mut reports = Vec::new();
    for field in &fields {
        let labels: Vec<(String, bool)> = rows
            .iter()
            .map(|r| {
                let c = normalize_category(r.categories.get(field).map(String::as_str));
                let unknown = c == UNKNOWN;
                (c, unknown)
            })
            .collect();
        reports.push(field_report(field, &labels, &above, opts));
    }
    if fields.len() >= 2 {
        let labels: Vec<(String, bool)> = rows
            .iter()
            .map(|r| {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|f| normalize_category(r.categories.get(f).map(String::as_str)))
                    .collect();
                let unknown = parts.iter().any(|p| p == UNKNOWN);
                (parts.join(JOIN), unknown)
            })
            .collect();
        reports.push(field_report(INTERSECTIONAL, &labels, &above, opts));
    }
    let flagged = reports
        .iter()
        .flat_map(|rep| {
            rep.categories.iter().filter(|c| c.flagged).map(move |c| {
                format!(
                    "{}: {} ({:.3})",
                    rep.field,
                    c.category,
                    c.impact_ratio.unwrap_or(0.0)
                )
            })
        })
        .collect();
    Ok(BiasAudit {
        n,
        median,
        above_median: above.iter().filter(|&&a| a).count(),
        fields,
        threshold: opts.threshold,
        small_share: opts.small_share,
        reports,
        length: length_bias(rows)?,
        flagged,
    })
}

/// The report of one field from each item's (category, unknown) label.
fn field_report(
    field: &str,
    labels: &[(String, bool)],
    above: &[bool],
    opts: &AuditOptions,
) -> FieldReport {
    let n = labels.len();
    // category -> (count, above, unknown)
    let mut tally: BTreeMap<&str, (usize, usize, bool)> = BTreeMap::new();
    for ((cat, unknown), &up) in labels.iter().zip(above) {
        let e = tally.entry(cat.as_str()).or_insert((0, 0, *unknown));
        e.0 += 1;
        e.1 += usize::from(up);
    }
    let mut categories: Vec<CategoryStats> = tally
        .into_iter()
        .map(|(cat, (count, up, unknown))| {
            let share = count as f64 / n as f64;
            CategoryStats {
                category: cat.to_string(),
                count,
                share,
                above_median: up,
                scoring_rate: up as f64 / count as f64,
                impact_ratio: None,
                flagged: false,
                small_sample: share < opts.small_share,
                unknown,
            }
        })
        .collect();
    // Unknown last; otherwise by name (the BTreeMap order).
    categories.sort_by_key(|c| c.unknown);
    let eligible = |c: &CategoryStats| !c.unknown && !c.small_sample;
    let mut reference: Option<(&str, f64)> = None;
    for c in categories.iter().filter(|c| eligible(c)) {
        if reference.is_none_or(|(_, r)| c.scoring_rate > r) {
            reference = Some((c.category.as_str(), c.scoring_rate));
        }
    }
    let reference = reference.map(|(c, r)| (c.to_string(), r));
    if let Some((_, rate)) = &reference {
        let rate = *rate;
        for c in categories.iter_mut().filter(|c| !c.unknown) {
            if rate > 0.0 {
                let ratio = c.scoring_rate / rate;
                c.impact_ratio = Some(ratio);
                c.flagged = !c.small_sample && ratio < opts.threshold;
            }
        }
    }
    FieldReport {
        field: field.to_string(),
        reference_rate: reference.as_ref().map(|(_, r)| *r),
        reference: reference.map(|(c, _)| c),
        categories,
    }
}

fn length_bias(rows: &[AuditRow]) -> Result<LengthBias, FairnessError> {
    let with_len: Vec<&AuditRow> = rows.iter().filter(|r| r.length_words.is_some()).collect();
    let len = |rs: &[&AuditRow]| -> Vec<f64> {
        rs.iter().map(|r| r.length_words.unwrap_or(0.0)).collect()
    };
    let ai = |rs: &[&AuditRow]| -> Vec<f64> { rs.iter().map(|r| r.ai_score).collect() };
    let mut out = LengthBias {
        n: with_len.len(),
        ..Default::default()
    };
    if with_len.len() >= 2 {
        let (l, a) = (len(&with_len), ai(&with_len));
        out.pearson_ai = pearson(&l, &a)?;
        out.spearman_ai = spearman(&l, &a)?;
    }
    let both: Vec<&AuditRow> = with_len
        .iter()
        .copied()
        .filter(|r| r.human_score.is_some())
        .collect();
    out.n_human = both.len();
    if both.len() >= 2 {
        let l = len(&both);
        let h: Vec<f64> = both.iter().map(|r| r.human_score.unwrap_or(0.0)).collect();
        let a = ai(&both);
        out.pearson_human = pearson(&l, &h)?;
        out.spearman_human = spearman(&l, &h)?;
        out.pearson_ai_on_human_items = pearson(&l, &a)?;
        out.spearman_ai_on_human_items = spearman(&l, &a)?;
    }
    Ok(out)
}

/// A plain-text table of the audit, for `grader bias-audit` without `--json`.
pub fn render_table(a: &BiasAudit) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Bias audit: {} items, median AI score {:.4}, {} above the median",
        a.n, a.median, a.above_median
    );
    let _ = writeln!(
        o,
        "Scoring rate = share of a category scoring strictly above the median; impact ratio = \
         rate / highest eligible rate; flagged below {} (four-fifths rule); small = under {:.0}% of the sample.",
        a.threshold,
        a.small_share * 100.0
    );
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    for rep in &a.reports {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{} (reference: {})",
            rep.field,
            rep.reference.as_deref().unwrap_or("none")
        );
        let width = rep
            .categories
            .iter()
            .map(|c| c.category.chars().count())
            .max()
            .unwrap_or(8)
            .max(8);
        let _ = writeln!(
            o,
            "  {:<width$}  {:>6}  {:>6}  {:>6}  {:>6}  {:>6}  note",
            "category", "count", "share", "above", "rate", "ratio"
        );
        for c in &rep.categories {
            let note = if c.unknown {
                "unknown: not in the ratio"
            } else if c.small_sample {
                "small sample: not flagged"
            } else if c.flagged {
                "FLAGGED"
            } else {
                ""
            };
            let _ = writeln!(
                o,
                "  {:<width$}  {:>6}  {:>6.3}  {:>6}  {:>6.3}  {:>6}  {note}",
                c.category,
                c.count,
                c.share,
                c.above_median,
                c.scoring_rate,
                opt(c.impact_ratio)
            );
        }
    }
    let l = &a.length;
    let _ = writeln!(o);
    let _ = writeln!(o, "Length bias (answer length in words vs score):");
    let _ = writeln!(
        o,
        "  AI score:    n={:<5} pearson {}  spearman {}",
        l.n,
        opt(l.pearson_ai),
        opt(l.spearman_ai)
    );
    let _ = writeln!(
        o,
        "  human score: n={:<5} pearson {}  spearman {}  (AI on the same items: pearson {}  spearman {})",
        l.n_human,
        opt(l.pearson_human),
        opt(l.spearman_human),
        opt(l.pearson_ai_on_human_items),
        opt(l.spearman_ai_on_human_items)
    );
    let _ = writeln!(o);
    if a.flagged.is_empty() {
        let _ = writeln!(o, "No category below the {} impact ratio.", a.threshold);
    } else {
        let _ = writeln!(o, "Flagged: {}", a.flagged.join("; "));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, score: f64, cats: &[(&str, &str)]) -> AuditRow {
        AuditRow {
            item_id: id.to_string(),
            ai_score: score,
            human_score: None,
            length_words: None,
            categories: cats
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn median_odd_even_and_unknown_normalization() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(normalize_category(None), UNKNOWN);
        assert_eq!(normalize_category(Some("  ")), UNKNOWN);
        assert_eq!(normalize_category(Some("Unknown")), UNKNOWN);
        assert_eq!(normalize_category(Some(" female ")), "female");
    }

    #[test]
    fn strictly_above_the_median_and_zero_reference() {
        // Scores 1,2,2,3: median 2; only the 3 is above.
        let rows = vec![
            row("a", 1.0, &[("g", "x")]),
            row("b", 2.0, &[("g", "x")]),
            row("c", 2.0, &[("g", "y")]),
            row("d", 3.0, &[("g", "y")]),
        ];
        let a = bias_audit(&rows, &AuditOptions::default()).unwrap();
        assert_eq!(a.median, 2.0);
        assert_eq!(a.above_median, 1);
        let g = &a.reports[0];
        assert_eq!(g.reference.as_deref(), Some("y"));
        assert_eq!(g.categories[0].impact_ratio, Some(0.0));
        assert!(g.categories[0].flagged);
        // All equal: nobody above the median, so no ratio at all.
        let flat: Vec<AuditRow> = (0..4)
            .map(|i| row(&i.to_string(), 1.0, &[("g", if i < 2 { "x" } else { "y" })]))
            .collect();
        let a = bias_audit(&flat, &AuditOptions::default()).unwrap();
        assert!(a.reports[0]
            .categories
            .iter()
            .all(|c| c.impact_ratio.is_none() && !c.flagged));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(
            bias_audit(&[], &AuditOptions::default()),
            Err(FairnessError::Empty)
        );
        let dup = vec![row("a", 1.0, &[]), row("a", 2.0, &[])];
        assert!(matches!(
            bias_audit(&dup, &AuditOptions::default()),
            Err(FairnessError::DuplicateItem(_))
        ));
        let nan = vec![row("a", f64::NAN, &[])];
        assert!(matches!(
            bias_audit(&nan, &AuditOptions::default()),
            Err(FairnessError::NonFinite { .. })
        ));
    }
}
