//! The bias audit (`grader::fairness`, `grader bias-audit`) against a hand-computed example.
//!
//! tests/data/fairness/scores.csv + demographics.csv: 60 items, fields `sex` and `race`.
//! AI scores: 28 items at 0.8, 4 at 0.5, 28 at 0.2. Sorted, the 30th and 31st values are both
//! 0.5, so the median is 0.5 and exactly the 28 items at 0.8 score strictly above it (the
//! four at 0.5 sit ON the median and do not count).
//!
//! The cells (sex / race: items, of which above the median):
//!
//! | sex \ race | asian | black | white | pacific_islander | (empty) | total |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | female     | 8, 3  | 8, 2  | 8, 3  |                  |         | 24, 8  |
//! | male       | 10, 6 | 6, 3  | 10, 8 | 1, 1             | 3, 0    | 30, 18 |
//! | (empty)    | 2, 1  | 2, 1  |       |                  |         | 4, 2   |
//! | "unknown"  |       |       | 2, 0  |                  |         | 2, 0   |
//! | total      | 20,10 | 16, 6 | 20,11 | 1, 1             | 3, 0    | 60, 28 |
//!
//! By sex: female 8/24 = 1/3; male 18/30 = 0.6 (reference); unknown (empty or "unknown")
//! 2/6 = 1/3, no ratio. female ratio = (1/3)/0.6 = 5/9 = 0.5556 < 0.8: flagged.
//!
//! By race: asian 10/20 = 0.5; black 6/16 = 0.375; white 11/20 = 0.55;
//! pacific_islander 1/1 = 1.0 but 1/60 = 1.67% < 2%: small sample, so NOT the reference
//! (its ratio 1.0/0.55 = 1.8182 is reported, never flagged); unknown 0/3. Reference white
//! 0.55: asian 0.5/0.55 = 0.9091 (kept), black 0.375/0.55 = 0.6818 (flagged).
//!
//! Intersectional (sex / race; any unknown part makes the category unknown):
//! female/asian 3/8 = 0.375, female/black 2/8 = 0.25, female/white 3/8 = 0.375,
//! male/asian 6/10 = 0.6, male/black 3/6 = 0.5, male/white 8/10 = 0.8 (reference),
//! male/pacific_islander 1/1 (small), the rest unknown. Ratios against 0.8: 0.46875, 0.3125,
//! 0.46875, 0.75, 0.625, 1.0; the first five flagged; male/pacific_islander 1.25 not flagged.
//!
//! Length bias: length = 500 * ai + 100 for every item, so length vs AI is exactly linear:
//! Pearson 1, Spearman 1. Four items have a human score: (length, human) = (500, 2), (500, 4),
//! (350, 3), (200, 1). Pearson: mean length 387.5, mean human 2.5; sum of products of
//! deviations 375; sums of squares 61875 and 5: r = 375 / sqrt(309375) = 0.674200.
//! Spearman: mid-ranks of length 3.5, 3.5, 2, 1 and of human 2, 4, 3, 1; deviations
//! products sum 3, squares 4.5 and 5: rho = 3 / sqrt(22.5) = 0.632456.

mod support;

use grader::cli::bias::audit_texts;
use grader::fairness::{
    bias_audit, AuditOptions, AuditRow, BiasAudit, CategoryStats, INTERSECTIONAL,
};
use serde_json::Value;
use support::fixtures::{grader_cmd, root};

const EPS: f64 = 1e-12;

fn data(name: &str) -> String {
    std::fs::read_to_string(root().join("tests/data/fairness").join(name)).expect("read data")
}

fn cat<'a>(a: &'a BiasAudit, field: &str, category: &str) -> &'a CategoryStats {
    a.reports
        .iter()
        .find(|r| r.field == field)
        .unwrap_or_else(|| panic!("no report for {field}"))
        .categories
        .iter()
        .find(|c| c.category == category)
        .unwrap_or_else(|| panic!("no category {category} in {field}"))
}

fn close(got: Option<f64>, want: f64) {
    let g = got.expect("a value");
    assert!((g - want).abs() < EPS, "got {g}, want {want}");
}

#[test]
fn hand_computed_example_matches_exactly() {
    let out = audit_texts(&data("scores.csv"), &data("demographics.csv"), "overall").unwrap();
    assert_eq!(out.without_demographics, 0);
    assert_eq!(out.without_scores, 1, "x99 has demographics but no score");
    let a = &out.audit;
    assert_eq!(a.n, 60);
    assert_eq!(a.median, 0.5);
    assert_eq!(a.above_median, 28, "items ON the median are not above it");
    assert_eq!(a.fields, vec!["sex".to_string(), "race".to_string()]);

    // --- sex
    let sex = &a.reports[0];
    assert_eq!(sex.field, "sex");
    assert_eq!(sex.reference.as_deref(), Some("male"));
    close(sex.reference_rate, 0.6);
    let f = cat(a, "sex", "female");
    assert_eq!((f.count, f.above_median), (24, 8));
    assert!((f.scoring_rate - 1.0 / 3.0).abs() < EPS);
    close(f.impact_ratio, 5.0 / 9.0);
    assert!(f.flagged && !f.small_sample && !f.unknown);
    let m = cat(a, "sex", "male");
    assert_eq!((m.count, m.above_median), (30, 18));
    close(m.impact_ratio, 1.0);
    assert!(!m.flagged);
    // Empty cells and the literal "unknown" are one category, counted, with no ratio.
    let u = cat(a, "sex", "unknown");
    assert_eq!((u.count, u.above_median), (6, 2));
    assert!(u.unknown && u.impact_ratio.is_none() && !u.flagged);
    assert_eq!(
        sex.categories.last().map(|c| c.category.as_str()),
        Some("unknown"),
        "unknown is listed last"
    );

    // --- race
    let race = &a.reports[1];
    assert_eq!(
        race.reference.as_deref(),
        Some("white"),
        "a small category is never the reference"
    );
    close(race.reference_rate, 0.55);
    let asian = cat(a, "race", "asian");
    assert_eq!((asian.count, asian.above_median), (20, 10));
    close(asian.impact_ratio, 0.5 / 0.55);
    assert!(!asian.flagged);
    let black = cat(a, "race", "black");
    assert_eq!((black.count, black.above_median), (16, 6));
    close(black.impact_ratio, 0.375 / 0.55);
    assert!(black.flagged);
    let pi = cat(a, "race", "pacific_islander");
    assert_eq!((pi.count, pi.above_median), (1, 1));
    assert!(pi.small_sample, "1/60 = 1.67% < 2%");
    assert!((pi.share - 1.0 / 60.0).abs() < EPS);
    close(pi.impact_ratio, 1.0 / 0.55);
    assert!(!pi.flagged);
    let ru = cat(a, "race", "unknown");
    assert_eq!((ru.count, ru.above_median), (3, 0));
    assert!(ru.impact_ratio.is_none());

    // --- intersectional
    let x = a.reports.last().unwrap();
    assert_eq!(x.field, INTERSECTIONAL);
    assert_eq!(x.reference.as_deref(), Some("male / white"));
    close(x.reference_rate, 0.8);
    for (name, count, above, ratio, flagged) in [
        ("female / asian", 8, 3, 0.46875, true),
        ("female / black", 8, 2, 0.3125, true),
        ("female / white", 8, 3, 0.46875, true),
        ("male / asian", 10, 6, 0.75, true),
        ("male / black", 6, 3, 0.625, true),
        ("male / white", 10, 8, 1.0, false),
        ("male / pacific_islander", 1, 1, 1.25, false),
    ] {
        let c = cat(a, INTERSECTIONAL, name);
        assert_eq!((c.count, c.above_median), (count, above), "{name}");
        close(c.impact_ratio, ratio);
        assert_eq!(c.flagged, flagged, "{name}");
        assert!(!c.unknown, "{name}");
    }
    for name in [
        "male / unknown",
        "unknown / asian",
        "unknown / black",
        "unknown / white",
    ] {
        let c = cat(a, INTERSECTIONAL, name);
        assert!(
            c.unknown && c.impact_ratio.is_none() && !c.flagged,
            "{name}"
        );
    }
    assert_eq!(cat(a, INTERSECTIONAL, "male / unknown").count, 3);
    assert_eq!(cat(a, INTERSECTIONAL, "unknown / white").count, 2);
    assert!(cat(a, INTERSECTIONAL, "male / pacific_islander").small_sample);

    // Every flag, and only those.
    assert_eq!(a.flagged.len(), 1 + 1 + 5, "{:?}", a.flagged);
    assert!(
        a.flagged.contains(&"sex: female (0.556)".to_string()),
        "{:?}",
        a.flagged
    );

    // --- length bias
    let l = &a.length;
    assert_eq!((l.n, l.n_human), (60, 4));
    close(l.pearson_ai, 1.0);
    close(l.spearman_ai, 1.0);
    close(l.pearson_human, 375.0 / 309_375f64.sqrt());
    close(l.spearman_human, 3.0 / 22.5f64.sqrt());
    close(l.pearson_ai_on_human_items, 1.0);
    close(l.spearman_ai_on_human_items, 1.0);
}

#[test]
fn a_single_field_has_no_intersectional_report_and_missing_fields_are_unknown() {
    let rows: Vec<AuditRow> = (0..4)
        .map(|i| AuditRow {
            item_id: format!("i{i}"),
            ai_score: f64::from(i),
            human_score: None,
            length_words: None,
            categories: if i == 3 {
                Default::default()
            } else {
                [("sex".to_string(), if i < 2 { "a" } else { "b" }.to_string())].into()
            },
        })
        .collect();
    let a = bias_audit(&rows, &AuditOptions::default()).unwrap();
    // Scores 0,1,2,3: median 1.5; above: i2 (b) and i3 (unknown).
    assert_eq!(a.reports.len(), 1);
    assert_eq!(a.median, 1.5);
    assert_eq!(cat(&a, "sex", "a").scoring_rate, 0.0);
    assert_eq!(cat(&a, "sex", "b").scoring_rate, 1.0);
    assert_eq!(cat(&a, "sex", "unknown").count, 1);
    assert_eq!(a.length.n, 0);
    assert!(a.length.pearson_ai.is_none());
}

#[test]
fn the_dimension_column_selects_the_field_audited() {
    let scores = "{\"item_id\":\"a\",\"dimension\":\"overall\",\"ai_score\":0.9}\n\
                  {\"item_id\":\"a\",\"dimension\":\"chunking\",\"ai_score\":1}\n\
                  {\"item_id\":\"b\",\"dimension\":\"overall\",\"ai_score\":0.1}\n\
                  {\"item_id\":\"b\",\"dimension\":\"chunking\",\"ai_score\":4}\n\
                  {\"item_id\":\"c\",\"dimension\":\"chunking\",\"ai_score\":\"2\"}\n";
    let demo = "item_id,group\na,x\nb,y\nc,y\n";
    let overall = audit_texts(scores, demo, "overall").unwrap();
    assert_eq!(overall.audit.n, 2);
    assert_eq!(overall.audit.median, 0.5);
    assert_eq!(cat(&overall.audit, "group", "x").above_median, 1);
    assert_eq!(overall.without_scores, 1, "c has no overall score");
    let chunking = audit_texts(scores, demo, "chunking").unwrap();
    assert_eq!(chunking.audit.n, 3);
    assert_eq!(chunking.audit.median, 2.0);
    // Only b (4) is above 2: group y has 1 of 2, x 0 of 1.
    assert_eq!(cat(&chunking.audit, "group", "y").scoring_rate, 0.5);
    assert_eq!(cat(&chunking.audit, "group", "x").impact_ratio, Some(0.0));
    assert!(audit_texts(scores, demo, "nonesuch").is_err());
}

#[test]
fn malformed_files_are_errors_that_name_the_problem() {
    let demo = "item_id,sex\na,f\n";
    for (scores, needle) in [
        ("item,ai_score\na,1\n", "item_id"),
        ("item_id,score\na,1\n", "ai_score"),
        ("item_id,ai_score\na,high\n", "not a number"),
        ("item_id,ai_score\na,1\na,2\n", "twice"),
        ("", "empty"),
    ] {
        let err = format!("{:#}", audit_texts(scores, demo, "overall").unwrap_err());
        assert!(err.contains(needle), "{scores:?}: {err}");
    }
    let err = format!(
        "{:#}",
        audit_texts("item_id,ai_score\na,1\n", "item_id\na\n", "overall").unwrap_err()
    );
    assert!(err.contains("no demographic field"), "{err}");
}

#[tokio::test]
async fn cli_prints_a_table_and_json() {
    let dir = root().join("tests/data/fairness");
    let mut cmd = grader_cmd();
    cmd.args(["bias-audit", "--scores"])
        .arg(dir.join("scores.csv"))
        .arg("--demographics")
        .arg(dir.join("demographics.csv"))
        .arg("--json");
    let out = support::fixtures::run(cmd).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["audit"]["n"], 60);
    assert_eq!(v["audit"]["median"], 0.5);
    assert_eq!(v["audit"]["reports"][0]["reference"], "male");
    assert_eq!(v["without_scores"], 1);

    let mut cmd = grader_cmd();
    cmd.args(["bias-audit", "--scores"])
        .arg(dir.join("scores.csv"))
        .arg("--demographics")
        .arg(dir.join("demographics.csv"));
    let out = support::fixtures::run(cmd).await;
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("60 items, median AI score 0.5000, 28 above the median"),
        "{text}"
    );
    assert!(text.contains("FLAGGED"), "{text}");
    assert!(text.contains("small sample: not flagged"), "{text}");
    assert!(text.contains("unknown: not in the ratio"), "{text}");
    assert!(
        text.contains("1 demographics row(s) had no score"),
        "{text}"
    );

    let mut cmd = grader_cmd();
    cmd.args([
        "bias-audit",
        "--scores",
        "/nonexistent.csv",
        "--demographics",
    ])
    .arg(dir.join("demographics.csv"));
    let out = support::fixtures::run(cmd).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.csv"));
}
