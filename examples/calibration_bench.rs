//! Times the calibration metrics: every pairwise figure plus 1,000 bootstrap resamples over
//! 100,000 (AI, human) pairs, and a full `dimension_report` (AI + 2 humans per item:
//! consensus, alphas, human ceiling, per-grader, bootstrap) over 100,000 items.
//!
//!     cargo run --release --example calibration_bench [PAIRS] [RESAMPLES]
//!
//! The data are synthetic, seeded, on a 1-5 scale with realistic disagreement.

use std::time::Instant;

use grader::calibration::{bootstrap_ci, dimension_report, pairwise, Rating};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn noisy(rng: &mut StdRng, base: i64) -> f64 {
    let step = match rng.random_range(0..10) {
        0 => -1,
        1 => 1,
        2 if rng.random_bool(0.3) => 2,
        _ => 0,
    };
    (base + step).clamp(1, 5) as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let resamples: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let mut rng = StdRng::seed_from_u64(2024);
    let truth: Vec<i64> = (0..n).map(|_| rng.random_range(1..=5)).collect();
    let human: Vec<f64> = truth.iter().map(|&t| noisy(&mut rng, t)).collect();
    let ai: Vec<f64> = truth.iter().map(|&t| noisy(&mut rng, t)).collect();
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    println!("{n} pairs, {resamples} resamples, {threads} threads");

    let t = Instant::now();
    let m = pairwise(&ai, &human, (1, 5)).expect("valid synthetic data");
    let ci = bootstrap_ci(&ai, &human, (1, 5), resamples, 42).expect("valid synthetic data");
    let pair_time = t.elapsed();
    println!(
        "pairwise + bootstrap: {:.3} s  (qwk {:.4} [{:.4}, {:.4}])",
        pair_time.as_secs_f64(),
        m.qwk.unwrap_or(f64::NAN),
        ci.qwk.map_or(f64::NAN, |c| c[0]),
        ci.qwk.map_or(f64::NAN, |c| c[1]),
    );

    let human2: Vec<f64> = truth.iter().map(|&t| noisy(&mut rng, t)).collect();
    let mut ratings = Vec::with_capacity(3 * n);
    for i in 0..n {
        let item = format!("i{i}");
        for (rater, s) in [("ai", ai[i]), ("h1", human[i]), ("h2", human2[i])] {
            ratings.push(Rating {
                item_id: item.clone(),
                dimension: "d".to_string(),
                rater: rater.to_string(),
                score: s,
            });
        }
    }
    let t = Instant::now();
    let d =
        dimension_report(&ratings, "d", "ai", (1, 5), resamples, 42).expect("valid synthetic data");
    let report_time = t.elapsed();
    println!(
        "dimension_report ({} ratings): {:.3} s  (qwk {:.4}, alpha_ordinal {:.4}, ceiling qwk {:.4})",
        ratings.len(),
        report_time.as_secs_f64(),
        d.metrics.qwk.unwrap_or(f64::NAN),
        d.alpha_ordinal.unwrap_or(f64::NAN),
        d.human_ceiling.metrics.qwk.unwrap_or(f64::NAN),
    );
}
