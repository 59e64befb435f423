//! Every calibration figure against a published worked example, an independent
//! implementation (scikit-learn / scipy / the `krippendorff` package, run once by hand; the
//! tests themselves are pure Rust), or a value computed by hand in the comment beside it.

use std::collections::{BTreeMap, BTreeSet};

use grader::calibration::{
    adjacent_agreement, bootstrap_ci, calibration_report, dimension_report, exact_agreement,
    flag_agreement, human_ceiling, human_consensus, human_flag_consensus, kendall_tau_b,
    krippendorff_alpha, mae, mean_bias, pairwise, parse_ratings, parse_scale, pearson, per_grader,
    percentile, render_table, rmse, round_half_down, smd, spearman, weighted_kappa, AlphaLevel,
    CalibrationError, ConfusionMatrix, FlagItem, ItemScores, KappaWeights, PairwiseMetrics, Rating,
};
use serde::Deserialize;

const EPS: f64 = 1e-12;

fn close(got: Option<f64>, want: Option<f64>, what: &str) {
    match (got, want) {
        (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{what}: got {g}, want {w}"),
        (None, None) => {}
        _ => panic!("{what}: got {got:?}, want {want:?}"),
    }
}

fn data(name: &str) -> String {
    let path = format!(
        "{}/tests/data/calibration/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

// ------------------------------------------------------------ pairwise figures, data-driven

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    scale: (i64, i64),
    ai: Vec<f64>,
    human: Vec<f64>,
    expected: PairwiseMetrics,
}

/// tests/data/calibration/pairwise_cases.json: expected values from scikit-learn 1.9.1
/// `cohen_kappa_score(human, ai, weights=..., labels=<full scale>)`, scipy 1.17
/// `pearsonr`/`spearmanr`/`kendalltau` and numpy; the generating script sits beside it
/// (pairwise_cases.py).
#[test]
fn pairwise_figures_match_sklearn_and_scipy() {
    let cases: Cases =
        serde_json::from_str(&data("pairwise_cases.json")).expect("valid cases file");
    assert!(cases.cases.len() >= 4);
    for c in &cases.cases {
        let got = pairwise(&c.ai, &c.human, c.scale).expect("valid input");
        assert_eq!(got.n, c.expected.n, "{}: n", c.name);
        for ((name, g), (_, w)) in got.figures().iter().zip(c.expected.figures()) {
            close(*g, w, &format!("{}: {name}", c.name));
        }
        // The single-figure functions agree with `pairwise`.
        let (a, h, s) = (&c.ai, &c.human, c.scale);
        let one = |v: Result<Option<f64>, CalibrationError>| v.expect("valid input");
        close(
            one(weighted_kappa(a, h, s, KappaWeights::Quadratic)),
            c.expected.qwk,
            "qwk fn",
        );
        close(
            one(weighted_kappa(a, h, s, KappaWeights::Linear)),
            c.expected.kappa_linear,
            "linear fn",
        );
        close(
            one(weighted_kappa(a, h, s, KappaWeights::Unweighted)),
            c.expected.kappa,
            "kappa fn",
        );
        close(one(pearson(a, h)), c.expected.pearson, "pearson fn");
        close(one(spearman(a, h)), c.expected.spearman, "spearman fn");
        close(
            one(kendall_tau_b(a, h)),
            c.expected.kendall_tau_b,
            "kendall fn",
        );
        close(one(mae(a, h)), c.expected.mae, "mae fn");
        close(one(rmse(a, h)), c.expected.rmse, "rmse fn");
        close(one(mean_bias(a, h)), c.expected.bias, "bias fn");
        close(one(smd(a, h)), c.expected.smd, "smd fn");
        close(one(exact_agreement(a, h, s)), c.expected.exact, "exact fn");
        close(
            one(adjacent_agreement(a, h, s)),
            c.expected.adjacent,
            "adjacent fn",
        );
    }
}

/// Cohen's kappa, the worked example of Wikipedia's "Cohen's kappa" article: 50 proposals,
/// both readers yes 20, A yes / B no 5, A no / B yes 10, both no 15. p_o = 35/50 = 0.7,
/// p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
/// With two categories every weighting gives the same value.
#[test]
fn cohen_kappa_textbook_two_by_two() {
    let mut m = ConfusionMatrix::new((0, 1)).expect("valid scale");
    // rows: reader B (reference), columns: reader A; 1 = yes
    m.counts = vec![vec![15, 5], vec![10, 20]];
    assert_eq!(m.total(), 50);
    for w in [
        KappaWeights::Unweighted,
        KappaWeights::Linear,
        KappaWeights::Quadratic,
    ] {
        close(m.kappa(w), Some(0.4), "wikipedia kappa");
    }
}

/// Hand computation for the unused-middle-level case (also in the data file): pairs
/// (h, a) = (1,1) (2,2) (5,4) (5,5) (4,5) (2,1) (1,2) (4,4); sum of squared differences 4,
/// so observed mean 0.5. Both marginals are uniform on {1, 2, 4, 5} (mean 3, population
/// variance 2.5), so the chance-expected squared difference is 2 * 2.5 = 5 and
/// QWK = 1 - 0.5 / 5 = 0.9. Treating the observed labels as 1..4 (dropping the unused 3)
/// gives 1 - 0.5 / 2.5 = 0.8: the full scale matters.
#[test]
fn weighted_kappa_uses_the_full_scale() {
    let ai = [1.0, 2.0, 4.0, 5.0, 5.0, 1.0, 2.0, 4.0];
    let human = [1.0, 2.0, 5.0, 5.0, 4.0, 2.0, 1.0, 4.0];
    let q = weighted_kappa(&ai, &human, (1, 5), KappaWeights::Quadratic).expect("valid");
    close(q, Some(0.9), "full-scale qwk");
    let squeezed = |v: &f64| if *v > 3.0 { v - 1.0 } else { *v };
    let ai4: Vec<f64> = ai.iter().map(squeezed).collect();
    let human4: Vec<f64> = human.iter().map(squeezed).collect();
    let q4 = weighted_kappa(&ai4, &human4, (1, 4), KappaWeights::Quadratic).expect("valid");
    close(q4, Some(0.8), "observed-labels qwk");
}

#[test]
fn confusion_matrix_rows_are_human_columns_ai() {
    let m =
        ConfusionMatrix::from_scores(&[1.0, 3.0, 3.0], &[1.0, 2.0, 3.0], (1, 4)).expect("valid");
    assert_eq!(m.labels, vec![1, 2, 3, 4]);
    assert_eq!(
        m.counts,
        vec![
            vec![1, 0, 0, 0],
            vec![0, 0, 1, 0],
            vec![0, 0, 1, 0],
            vec![0, 0, 0, 0]
        ]
    );
}

/// Non-integer scores, negative association, ties on the AI side. scipy 1.17:
/// pearsonr = -0.95065415136527, spearmanr = -0.9851843661437779,
/// kendalltau (tau-b) = -0.9636241116594316.
#[test]
fn correlations_on_non_integer_scores_match_scipy() {
    let x = [2.5, 1.0, 4.0, 3.5, 3.5, 2.0];
    let y = [3.0, 4.0, 1.0, 2.0, 2.0, 4.0];
    close(
        pearson(&x, &y).expect("valid"),
        Some(-0.95065415136527),
        "pearson",
    );
    close(
        spearman(&x, &y).expect("valid"),
        Some(-0.9851843661437779),
        "spearman",
    );
    close(
        kendall_tau_b(&x, &y).expect("valid"),
        Some(-0.9636241116594316),
        "tau-b",
    );
}

/// Hand-computable: y = 2x is perfectly concordant (everything 1); reversed, -1.
#[test]
fn correlations_perfect_association() {
    let x = [1.0, 2.0, 3.0, 4.0];
    let y = [2.0, 4.0, 6.0, 8.0];
    let rev: Vec<f64> = y.iter().rev().copied().collect();
    for f in [pearson, spearman, kendall_tau_b] {
        close(f(&x, &y).expect("valid"), Some(1.0), "perfect");
        close(f(&x, &rev).expect("valid"), Some(-1.0), "reversed");
    }
}

/// Non-integer scores go to the category they round to, halves DOWN: 2.5 -> 2, 3.5 -> 3,
/// 3.6 -> 4; so (2.5 vs 2), (3.5 vs 3) and (3.6 vs 4) agree exactly.
#[test]
fn non_integer_scores_bin_half_down() {
    assert_eq!(round_half_down(2.5), 2.0);
    assert_eq!(round_half_down(3.5), 3.0);
    assert_eq!(round_half_down(3.6), 4.0);
    assert_eq!(round_half_down(-1.5), -2.0);
    assert_eq!(round_half_down(2.0), 2.0);
    let m = pairwise(&[2.5, 3.5, 3.6], &[2.0, 3.0, 4.0], (1, 5)).expect("valid");
    close(m.exact, Some(1.0), "exact after binning");
    // MAE uses the raw values: (0.5 + 0.5 + 0.4) / 3
    close(m.mae, Some(1.4 / 3.0), "raw mae");
}

// ------------------------------------------------------------ Krippendorff's alpha

/// Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section E: 4 coders
/// (A-D) x 12 units with missing values. Published: nominal 0.743, ordinal 0.815,
/// interval 0.849. Cross-checked before writing this test with (a) the `krippendorff`
/// Python package 0.9.0 (0.743421052631579, 0.8153875037548814, 0.8491071428571428) and
/// (b) a separate exact-fraction coincidence-matrix computation (o_ck as in the paper,
/// n_c = 9, 13, 10, 5, 3, n = 40) giving 113/152, 108577/133160 and 951/1120.
#[test]
fn krippendorff_2011_worked_example() {
    let n = None;
    let s = |v: f64| Some(v);
    let coders: [[Option<f64>; 12]; 4] = [
        [
            s(1.),
            s(2.),
            s(3.),
            s(3.),
            s(2.),
            s(1.),
            s(4.),
            s(1.),
            s(2.),
            n,
            n,
            n,
        ],
        [
            s(1.),
            s(2.),
            s(3.),
            s(3.),
            s(2.),
            s(2.),
            s(4.),
            s(1.),
            s(2.),
            s(5.),
            n,
            s(3.),
        ],
        [
            n,
            s(3.),
            s(3.),
            s(3.),
            s(2.),
            s(3.),
            s(4.),
            s(2.),
            s(2.),
            s(5.),
            s(1.),
            n,
        ],
        [
            s(1.),
            s(2.),
            s(3.),
            s(3.),
            s(2.),
            s(4.),
            s(4.),
            s(1.),
            s(2.),
            s(5.),
            s(1.),
            n,
        ],
    ];
    // units x raters
    let units: Vec<Vec<Option<f64>>> = (0..12)
        .map(|u| coders.iter().map(|c| c[u]).collect())
        .collect();
    let nominal = krippendorff_alpha(&units, AlphaLevel::Nominal).expect("defined");
    let ordinal = krippendorff_alpha(&units, AlphaLevel::Ordinal).expect("defined");
    let interval = krippendorff_alpha(&units, AlphaLevel::Interval).expect("defined");
    assert!((nominal - 113.0 / 152.0).abs() < EPS, "nominal {nominal}");
    assert!(
        (ordinal - 108577.0 / 133160.0).abs() < EPS,
        "ordinal {ordinal}"
    );
    assert!(
        (interval - 951.0 / 1120.0).abs() < EPS,
        "interval {interval}"
    );
    assert_eq!(
        format!("{nominal:.3} {ordinal:.3} {interval:.3}"),
        "0.743 0.815 0.849"
    );
}

/// Hand computation, two raters, no missing values, interval metric: units (1,2), (3,3).
/// Pairable values 1, 2, 3, 3 (n = 4). Observed: unit 1 contributes 2 ordered pairs with
/// delta^2 = 1 over (m_u - 1) = 1, so D_o sum = 2; unit 2 contributes 0. Expected: the sum
/// over ordered pairs of pooled values of (v_i - v_j)^2 = 2 * n * SS = 2 * 4 * 2.75 = 22.
/// alpha = 1 - (n - 1) * 2 / 22 = 1 - 6/22 = 8/11.
#[test]
fn krippendorff_interval_by_hand() {
    let units = vec![vec![Some(1.0), Some(2.0)], vec![Some(3.0), Some(3.0)]];
    let a = krippendorff_alpha(&units, AlphaLevel::Interval).expect("defined");
    assert!((a - 8.0 / 11.0).abs() < EPS, "{a}");
}

#[test]
fn krippendorff_undefined_and_unpairable() {
    // every pairable value equal: expected disagreement 0 -> None
    let same = vec![vec![Some(3.0), Some(3.0)], vec![Some(3.0), Some(3.0), None]];
    assert_eq!(krippendorff_alpha(&same, AlphaLevel::Interval), None);
    assert_eq!(krippendorff_alpha(&same, AlphaLevel::Ordinal), None);
    // no unit has two values: nothing is pairable
    let lonely = vec![vec![Some(1.0), None], vec![None, Some(4.0)]];
    assert_eq!(krippendorff_alpha(&lonely, AlphaLevel::Nominal), None);
    assert_eq!(krippendorff_alpha(&[], AlphaLevel::Interval), None);
    // a unit with a single value does not count: adding one changes nothing
    let base = vec![vec![Some(1.0), Some(2.0)], vec![Some(3.0), Some(3.0)]];
    let mut more = base.clone();
    more.push(vec![Some(5.0), None]);
    assert_eq!(
        krippendorff_alpha(&base, AlphaLevel::Ordinal),
        krippendorff_alpha(&more, AlphaLevel::Ordinal)
    );
}

// ------------------------------------------------------------ undefined figures

#[test]
fn undefined_figures_are_none_never_nan() {
    // both raters constant and equal: no variance, kappa 0/0, SMD 0/0
    let m = pairwise(&[3.0; 5], &[3.0; 5], (1, 5)).expect("valid");
    assert_eq!(m.n, 5);
    for name in [
        "qwk",
        "kappa_linear",
        "kappa",
        "spearman",
        "pearson",
        "kendall_tau_b",
        "smd",
    ] {
        let v = m
            .figures()
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| *v);
        assert_eq!(v, None, "{name}");
    }
    assert_eq!(m.mae, Some(0.0));
    assert_eq!(m.exact, Some(1.0));
    // no pairs at all
    let empty = pairwise(&[], &[], (1, 5)).expect("valid");
    assert_eq!(empty, PairwiseMetrics::default());
    // one side constant: correlations undefined, SMD defined
    let one = pairwise(&[3.0, 3.0, 3.0], &[1.0, 2.0, 3.0], (1, 5)).expect("valid");
    assert_eq!(one.pearson, None);
    assert_eq!(one.spearman, None);
    assert_eq!(one.kendall_tau_b, None);
    // s_ai = 0, s_h = 1 -> pooled sqrt(1/2); (3 - 2) / 0.7071 = sqrt(2)
    close(one.smd, Some(2f64.sqrt()), "smd one constant");
    let json = serde_json::to_string(&m).expect("serializes");
    assert!(json.contains("\"qwk\":null"), "{json}");
    assert!(!json.contains("NaN"));
}

#[test]
fn bad_metric_input_is_an_error() {
    assert!(matches!(
        pairwise(&[1.0], &[1.0, 2.0], (1, 5)),
        Err(CalibrationError::LengthMismatch { .. })
    ));
    assert!(matches!(
        pairwise(&[6.0], &[1.0], (1, 5)),
        Err(CalibrationError::OutOfScale { .. })
    ));
    assert!(matches!(
        pairwise(&[f64::NAN], &[1.0], (1, 5)),
        Err(CalibrationError::NonFinite { .. })
    ));
    assert!(matches!(
        pairwise(&[1.0], &[1.0], (5, 1)),
        Err(CalibrationError::InvalidScale { .. })
    ));
}

// ------------------------------------------------------------ bootstrap

fn synthetic(n: usize) -> (Vec<f64>, Vec<f64>) {
    // deterministic, moderately agreeing scores on 1-5
    let human: Vec<f64> = (0..n).map(|i| (1 + (i * 7 + i / 3) % 5) as f64).collect();
    let ai: Vec<f64> = human
        .iter()
        .enumerate()
        .map(|(i, h)| match i % 6 {
            0 => (h + 1.0).min(5.0),
            1 => (h - 1.0).max(1.0),
            3 if *h <= 3.0 => h + 2.0,
            _ => *h,
        })
        .collect();
    (ai, human)
}

#[test]
fn bootstrap_is_deterministic_and_brackets_the_estimate() {
    let (ai, human) = synthetic(300);
    let point = pairwise(&ai, &human, (1, 5)).expect("valid");
    let a = bootstrap_ci(&ai, &human, (1, 5), 500, 7).expect("valid");
    let b = bootstrap_ci(&ai, &human, (1, 5), 500, 7).expect("valid");
    assert_eq!(a, b, "same seed, same intervals");
    let c = bootstrap_ci(&ai, &human, (1, 5), 500, 8).expect("valid");
    assert_ne!(a, c, "another seed, other intervals");
    for (name, v) in point.figures() {
        let v = v.expect("defined on this data");
        let [lo, hi] = a.get(name).unwrap_or_else(|| panic!("{name} has a CI"));
        assert!(lo <= hi, "{name}: {lo} > {hi}");
        assert!(
            lo <= v + EPS && v <= hi + EPS,
            "{name}: {v} outside [{lo}, {hi}]"
        );
        assert!(hi - lo > 0.0, "{name}: degenerate interval on varied data");
    }
}

#[test]
fn bootstrap_edge_cases() {
    // perfect agreement: every resample agrees perfectly
    let x = [1.0, 2.0, 3.0, 4.0, 5.0, 3.0];
    let ci = bootstrap_ci(&x, &x, (1, 5), 200, 1).expect("valid");
    assert_eq!(ci.exact, Some([1.0, 1.0]));
    assert_eq!(ci.mae, Some([0.0, 0.0]));
    // zero resamples and zero items give no intervals
    let none = bootstrap_ci(&x, &x, (1, 5), 0, 1).expect("valid");
    assert_eq!(none.qwk, None);
    let empty = bootstrap_ci(&[], &[], (1, 5), 100, 1).expect("valid");
    assert_eq!(empty.exact, None);
    // constant data: the correlation is undefined in every resample
    let flat = bootstrap_ci(&[2.0; 10], &[2.0; 10], (1, 5), 50, 1).expect("valid");
    assert_eq!(flat.pearson, None);
    assert_eq!(flat.exact, Some([1.0, 1.0]));
}

/// numpy.percentile([1, 2, 3, 4], [2.5, 25, 97.5]) = [1.075, 1.75, 3.925] (linear).
#[test]
fn percentile_is_numpy_linear() {
    let v = [1.0, 2.0, 3.0, 4.0];
    close(percentile(&v, 0.025), Some(1.075), "p2.5");
    close(percentile(&v, 0.25), Some(1.75), "p25");
    close(percentile(&v, 0.975), Some(3.925), "p97.5");
    assert_eq!(percentile(&[], 0.5), None);
    assert_eq!(percentile(&[7.0], 0.9), Some(7.0));
}

// ------------------------------------------------------------ consensus, ceiling, graders

#[test]
fn consensus_is_median_with_halves_down() {
    let cases: [(&[f64], Option<f64>); 8] = [
        (&[2.0, 3.0], Some(2.0)),
        (&[2.0, 4.0], Some(3.0)),
        (&[3.0, 2.0], Some(2.0)),
        (&[1.0, 2.0, 3.0, 4.0], Some(2.0)),
        (&[1.0, 5.0, 2.0], Some(2.0)),
        (&[4.0], Some(4.0)),
        (&[4.0, 5.0, 5.0, 1.0], Some(4.0)),
        (&[], None),
    ];
    for (scores, want) in cases {
        assert_eq!(human_consensus(scores), want, "{scores:?}");
    }
}

fn item(id: &str, ai: Option<f64>, humans: &[(&str, f64)]) -> ItemScores {
    ItemScores {
        item_id: id.to_string(),
        ai,
        humans: humans.iter().map(|(r, s)| (r.to_string(), *s)).collect(),
    }
}

/// Hand computation. Item a: h1 = 2, h2 = 3. Item b: h1 = 4, h2 = 4, h3 = 5. Item c: only
/// h1 (no pair). Unordered pairs: (2,3); (4,4), (4,5), (4,5) -> 4; ordered n = 8.
/// |d| per unordered pair: 1, 0, 1, 1 -> MAE = 3/4; exact = 1/4; adjacent = 1.
/// Both directions are counted, so bias = 0 and SMD = 0.
#[test]
fn human_ceiling_by_hand() {
    let items = [
        item("a", Some(2.0), &[("h1", 2.0), ("h2", 3.0)]),
        item("b", None, &[("h1", 4.0), ("h2", 4.0), ("h3", 5.0)]),
        item("c", Some(1.0), &[("h1", 1.0)]),
    ];
    let c = human_ceiling(&items, (1, 5)).expect("valid");
    assert_eq!((c.items, c.unordered_pairs, c.metrics.n), (2, 4, 8));
    close(c.metrics.mae, Some(0.75), "ceiling mae");
    close(c.metrics.exact, Some(0.25), "ceiling exact");
    close(c.metrics.adjacent, Some(1.0), "ceiling adjacent");
    close(c.metrics.bias, Some(0.0), "ceiling bias");
    close(c.metrics.smd, Some(0.0), "ceiling smd");
    // symmetric table: kappa of the pooled ordered pairs equals kappa with roles swapped
    assert!(c.metrics.qwk.is_some());
}

/// Hand computation. h3 always scores 2 above the others (an outlier grader).
/// Items: (h1, h2, h3, ai) = (1,1,3,1), (2,2,4,2), (3,3,5,3).
/// h3 vs the others' consensus: diffs +2, +2, +2 -> bias +2, MAE 2, exact 0.
/// h1 vs the others (median of h2 and h3, halves down: (1+3)/2 = 2, 3, 4): diffs -1 each.
/// Against the AI: h1 identical (exact 1), h3 bias +2.
#[test]
fn per_grader_exposes_an_outlier() {
    let items = [
        item("a", Some(1.0), &[("h1", 1.0), ("h2", 1.0), ("h3", 3.0)]),
        item("b", Some(2.0), &[("h1", 2.0), ("h2", 2.0), ("h3", 4.0)]),
        item("c", Some(3.0), &[("h1", 3.0), ("h2", 3.0), ("h3", 5.0)]),
    ];
    let g = per_grader(&items, (1, 5)).expect("valid");
    assert_eq!(g.keys().collect::<Vec<_>>(), ["h1", "h2", "h3"]);
    let h3 = &g["h3"];
    assert_eq!(h3.items, 3);
    close(h3.vs_others.bias, Some(2.0), "h3 bias vs others");
    close(h3.vs_others.mae, Some(2.0), "h3 mae vs others");
    close(h3.vs_others.exact, Some(0.0), "h3 exact vs others");
    close(h3.vs_ai.bias, Some(2.0), "h3 bias vs ai");
    let h1 = &g["h1"];
    close(h1.vs_others.bias, Some(-1.0), "h1 bias vs others");
    close(h1.vs_ai.exact, Some(1.0), "h1 exact vs ai");
    close(h1.vs_ai.qwk, Some(1.0), "h1 qwk vs ai");
}

// ------------------------------------------------------------ flags

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Hand computation. Flag "x": items 1-3 both raised (TP 3), item 4 only the AI (FP 1),
/// item 5 only the humans (FN 1): P = 3/4, R = 3/4, F1 = 6/8. Flag "y": only the AI, once:
/// P = 0, R undefined, F1 = 0. Flag "z": only the humans, twice: P undefined, R = 0, F1 = 0.
/// Micro: TP 3, FP 2, FN 3: P = 3/5, R = 1/2, F1 = 6/11.
#[test]
fn flag_precision_recall_f1_by_hand() {
    let items = [
        FlagItem {
            ai: set(&["x"]),
            human: set(&["x"]),
        },
        FlagItem {
            ai: set(&["x"]),
            human: set(&["x", "z"]),
        },
        FlagItem {
            ai: set(&["x", "y"]),
            human: set(&["x"]),
        },
        FlagItem {
            ai: set(&["x"]),
            human: set(&[]),
        },
        FlagItem {
            ai: set(&[]),
            human: set(&["x", "z"]),
        },
        FlagItem::default(),
    ];
    let r = flag_agreement(&items);
    let x = &r.per_flag["x"];
    assert_eq!((x.tp, x.fp, x.fn_), (3, 1, 1));
    close(x.precision, Some(0.75), "x precision");
    close(x.recall, Some(0.75), "x recall");
    close(x.f1, Some(0.75), "x f1");
    let y = &r.per_flag["y"];
    assert_eq!((y.precision, y.recall, y.f1), (Some(0.0), None, Some(0.0)));
    let z = &r.per_flag["z"];
    assert_eq!((z.precision, z.recall, z.f1), (None, Some(0.0), Some(0.0)));
    assert_eq!((r.micro.tp, r.micro.fp, r.micro.fn_), (3, 2, 3));
    close(r.micro.precision, Some(0.6), "micro p");
    close(r.micro.recall, Some(0.5), "micro r");
    close(r.micro.f1, Some(6.0 / 11.0), "micro f1");
    let json = serde_json::to_value(x).expect("serializes");
    assert_eq!(json["fn"], 1);
}

/// A strict majority of graders: 2 of 3 is enough, 1 of 2 is not, 2 of 2 is.
#[test]
fn flag_consensus_is_a_strict_majority() {
    assert_eq!(
        human_flag_consensus(&[set(&["a", "b"]), set(&["a"]), set(&["c"])]),
        set(&["a"])
    );
    assert_eq!(human_flag_consensus(&[set(&["a"]), set(&[])]), set(&[]));
    assert_eq!(
        human_flag_consensus(&[set(&["a"]), set(&["a"])]),
        set(&["a"])
    );
    assert_eq!(human_flag_consensus(&[]), set(&[]));
}

// ------------------------------------------------------------ input

#[test]
fn csv_and_jsonl_give_the_same_ratings() {
    let csv = parse_ratings(&data("ratings.csv")).expect("valid csv");
    let jsonl = parse_ratings(&data("ratings.jsonl")).expect("valid jsonl");
    assert_eq!(csv.ratings, jsonl.ratings);
    assert_eq!(csv.scales, jsonl.scales);
    assert!(csv.ratings.len() > 20);
}

#[test]
fn csv_quoting_blank_lines_and_extra_columns() {
    let text = "\u{feff}Item_ID, dimension ,rater,score,comment\n\n\"a,1\",depth,ai,3,\"said \"\"hi\"\"\nover two lines\"\r\n b ,depth,h1, 4 ,\n";
    let r = parse_ratings(text).expect("valid");
    assert_eq!(r.ratings.len(), 2);
    assert_eq!(r.ratings[0].item_id, "a,1");
    assert_eq!(r.ratings[1].item_id, "b");
    assert_eq!(r.ratings[1].score, 4.0);
    assert_eq!(r.lines, vec![3, 5]);
}

#[test]
fn input_errors_name_the_line() {
    let err = |text: &str| parse_ratings(text).expect_err("should fail").to_string();
    assert_eq!(
        err("item_id,dimension,score\n1,d,3\n"),
        "line 1: the header has no `rater` column (need item_id,dimension,rater,score)"
    );
    assert_eq!(
        err("item_id,dimension,rater,score\n1,d,ai,3\n2,d,ai,three\n"),
        "line 3: `score` value \"three\" is not a finite number"
    );
    assert_eq!(
        err("item_id,dimension,rater,score\n1,d,ai,3\n2,d,,3\n"),
        "line 3: missing `rater`"
    );
    assert_eq!(
        err("item_id,dimension,rater,score\n1,d,ai\n"),
        "line 2: missing `score`"
    );
    assert_eq!(
        err("item_id,dimension,rater,score\n1,d,ai,3\n\n1,d,ai,4\n"),
        "line 4: duplicate rating for item \"1\", dimension \"d\", rater \"ai\" (first given on line 2)"
    );
    assert_eq!(
        err("item_id,dimension,rater,score\n1,d,ai,NaN\n"),
        "line 2: `score` value \"NaN\" is not a finite number"
    );
    assert!(err("item_id,dimension,rater,score\n\"1,d,ai,3\n").starts_with("line 2: malformed CSV"));
    assert_eq!(
        err("item_id,dimension,rater,score,scale_min,scale_max\n1,d,ai,3,1,5\n2,d,ai,3,1,4\n"),
        "line 3: scale 1-4 for dimension \"d\" contradicts 1-5 given on line 2"
    );
    assert_eq!(
        err("item_id,dimension,rater,score,scale_min,scale_max\n1,d,ai,7,1,5\n"),
        "line 2: score 7 is outside the scale 1-5"
    );
    assert_eq!(
        err("{\"item_id\":\"1\",\"dimension\":\"d\",\"rater\":\"ai\",\"score\":3}\n\n{\"item_id\":\"2\",\"dimension\":\"d\",\"rater\":\"ai\"}\n"),
        "line 3: missing `score`"
    );
    assert!(
        err("{\"item_id\":\"1\",\"dimension\":\"d\",\"rater\":\"ai\",\"score\":3}\n{oops\n")
            .starts_with("line 2: invalid JSON")
    );
    assert_eq!(
        err("{\"item_id\":1,\"dimension\":\"d\",\"rater\":\"ai\",\"score\":\"x\"}\n"),
        "line 1: `score` value \"x\" is not a finite number"
    );
    assert_eq!(err(""), "the input holds no ratings");
    assert_eq!(
        err("item_id,dimension,rater,score\n"),
        "the input holds no ratings"
    );
}

#[test]
fn scale_specs() {
    assert_eq!(parse_scale("1-5"), Ok((1, 5)));
    assert_eq!(parse_scale(" 0-4 "), Ok((0, 4)));
    assert_eq!(parse_scale("-2-2"), Ok((-2, 2)));
    assert_eq!(parse_scale("1..4"), Ok((1, 4)));
    for bad in ["5-1", "1", "a-b", "", "1-"] {
        assert!(parse_scale(bad).is_err(), "{bad}");
    }
}

// ------------------------------------------------------------ reports

fn r(item: &str, dim: &str, rater: &str, score: f64) -> Rating {
    Rating {
        item_id: item.to_string(),
        dimension: dim.to_string(),
        rater: rater.to_string(),
        score,
    }
}

/// Hand computation. Consensus of h1/h2 (halves down): a: [3,4] -> 3; b: [2,2] -> 2;
/// c: [4,5] -> 4; d: [2] -> 2; e has no AI score. AI vs consensus pairs: (3,3) (2,2)
/// (5,4) (1,2): n = 4, exact 2/4, adjacent 1, MAE 2/4, bias (0 + 0 + 1 - 1)/4 = 0.
#[test]
fn dimension_report_by_hand() {
    let ratings = vec![
        r("a", "depth", "ai", 3.0),
        r("a", "depth", "h1", 3.0),
        r("a", "depth", "h2", 4.0),
        r("b", "depth", "ai", 2.0),
        r("b", "depth", "h1", 2.0),
        r("b", "depth", "h2", 2.0),
        r("c", "depth", "ai", 5.0),
        r("c", "depth", "h1", 4.0),
        r("c", "depth", "h2", 5.0),
        r("d", "depth", "ai", 1.0),
        r("d", "depth", "h1", 2.0),
        r("e", "depth", "h1", 3.0),
        r("e", "depth", "h2", 3.0),
        r("a", "other", "ai", 1.0),
    ];
    let d = dimension_report(&ratings, "depth", "ai", (1, 5), 200, 42).expect("valid");
    assert_eq!((d.metrics.n, d.items, d.humans), (4, 5, 2));
    close(d.metrics.exact, Some(0.5), "exact");
    close(d.metrics.adjacent, Some(1.0), "adjacent");
    close(d.metrics.mae, Some(0.5), "mae");
    close(d.metrics.bias, Some(0.0), "bias");
    // rows human consensus, columns AI
    assert_eq!(d.confusion.counts[2][2], 1); // (h 3, ai 3)
    assert_eq!(d.confusion.counts[3][4], 1); // (h 4, ai 5)
    assert_eq!(d.confusion.counts[1][0], 1); // (h 2, ai 1)
    assert_eq!(d.confusion.total(), 4);
    // human ceiling: items a, b, c, e have two humans
    assert_eq!(d.human_ceiling.items, 4);
    assert_eq!(d.per_grader.len(), 2);
    // alpha over ai, h1, h2 equals alpha of the explicit units x raters matrix
    let s = Some;
    let units = vec![
        vec![s(3.0), s(3.0), s(4.0)],
        vec![s(2.0), s(2.0), s(2.0)],
        vec![s(5.0), s(4.0), s(5.0)],
        vec![s(1.0), s(2.0), None],
        vec![None, s(3.0), s(3.0)],
    ];
    assert_eq!(
        d.alpha_ordinal,
        krippendorff_alpha(&units, AlphaLevel::Ordinal)
    );
    assert_eq!(
        d.alpha_interval,
        krippendorff_alpha(&units, AlphaLevel::Interval)
    );
    assert!(matches!(
        dimension_report(&ratings, "nope", "ai", (1, 5), 0, 1),
        Err(CalibrationError::UnknownDimension(_))
    ));
}

#[test]
fn calibration_report_from_the_sample_file() {
    let input = parse_ratings(&data("ratings.csv")).expect("valid");
    let rep = calibration_report(&input, "ai", None, 200, 42).expect("valid");
    assert_eq!(
        rep.dimensions.keys().collect::<Vec<_>>(),
        ["depth", "rag_maturity"]
    );
    // rag_maturity declares 1-4 in the file; depth is inferred from the observed scores
    assert_eq!(rep.dimensions["rag_maturity"].scale, (1, 4));
    assert_eq!(rep.dimensions["depth"].scale, (1, 5));
    let again = calibration_report(&input, "ai", None, 200, 42).expect("valid");
    assert_eq!(rep, again, "deterministic");
    // the per-dimension report is the same computed alone
    let alone = dimension_report(&input.ratings, "depth", "ai", (1, 5), 200, 42).expect("valid");
    assert_eq!(rep.dimensions["depth"], alone);
    // JSON shape
    let v = serde_json::to_value(&rep).expect("serializes");
    let d = &v["dimensions"]["depth"];
    for key in [
        "n",
        "qwk",
        "kappa_linear",
        "kappa",
        "alpha_ordinal",
        "alpha_interval",
        "spearman",
        "pearson",
        "kendall_tau_b",
        "mae",
        "rmse",
        "bias",
        "smd",
        "exact",
        "adjacent",
        "ci",
        "human_ceiling",
        "confusion",
        "per_grader",
    ] {
        assert!(d.get(key).is_some(), "missing {key}");
    }
    assert!(d["ci"]["qwk"].as_array().is_some_and(|a| a.len() == 2));
    assert!(d["human_ceiling"]["qwk"].is_number());
    let table = render_table(&rep);
    assert!(table.contains("== depth"));
    assert!(table.contains("qwk"));
}

#[test]
fn calibration_report_errors() {
    let input = parse_ratings(&data("ratings.csv")).expect("valid");
    let e = calibration_report(&input, "gpt", None, 0, 1).expect_err("no such rater");
    assert_eq!(
        e.to_string(),
        "no ratings by the AI rater \"gpt\" (raters seen: ai, h1, h2, h3); pass --ai-rater NAME"
    );
    // --scale narrower than the data: the error names the line
    let e = calibration_report(&input, "ai", Some((1, 3)), 0, 1).expect_err("out of scale");
    assert!(e.to_string().starts_with("line "), "{e}");
    assert!(e.to_string().contains("outside the scale 1-3"), "{e}");
    let only_ai = parse_ratings("item_id,dimension,rater,score\n1,d,ai,3\n").expect("valid");
    assert!(matches!(
        calibration_report(&only_ai, "ai", None, 0, 1),
        Err(CalibrationError::NoHumanRatings(_))
    ));
}

#[test]
fn dimension_without_ai_scores_reports_nulls() {
    let ratings = vec![
        r("a", "d", "h1", 1.0),
        r("a", "d", "h2", 2.0),
        r("b", "x", "ai", 1.0),
    ];
    let d = dimension_report(&ratings, "d", "ai", (1, 3), 100, 1).expect("valid");
    assert_eq!(d.metrics.n, 0);
    assert_eq!(d.metrics.qwk, None);
    assert_eq!(d.ci.qwk, None);
    assert_eq!(d.human_ceiling.metrics.n, 2);
    let json = serde_json::to_string(&d).expect("serializes");
    assert!(!json.contains("NaN"));
    let _: BTreeMap<String, serde_json::Value> = serde_json::from_str(&json).expect("valid json");
}
