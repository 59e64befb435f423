//! What a call cost, from the provider's reported usage and the configured price table.

use super::{Prices, TokenUsage};

const PER_MILLION: f64 = 1_000_000.0;

/// Cost of one call in USD.
///
/// OpenAI reports `cached_tokens` as a *subset* of `prompt_tokens`, so the cached part is
/// billed at `cached_input_per_mtok` and only the rest at `input_per_mtok`. A cached count
/// larger than the prompt (a misbehaving server) is clamped rather than producing a negative
/// uncached count. Prices are taken literally: a `cached_input_per_mtok` left at its default
/// of 0 bills cached tokens at 0, which is right for local models and must be set for paid
/// ones.
pub fn cost_usd(prices: &Prices, usage: &TokenUsage) -> f64 {
    let cached = usage.cached_tokens.min(usage.prompt_tokens);
    let uncached = usage.prompt_tokens - cached;
    (uncached as f64 * prices.input_per_mtok
        + cached as f64 * prices.cached_input_per_mtok
        + usage.completion_tokens as f64 * prices.output_per_mtok)
        / PER_MILLION
}

/// Upper bound on a call's cost before it is made: every prompt token uncached and the answer
/// using its whole `max_output_tokens`. For routing and budget decisions.
pub fn max_cost_usd(prices: &Prices, prompt_tokens: u64, max_output_tokens: u32) -> f64 {
    cost_usd(
        prices,
        &TokenUsage {
            prompt_tokens,
            completion_tokens: u64::from(max_output_tokens),
            cached_tokens: 0,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// gpt-4o-mini list prices: $0.15 in, $0.075 cached in, $0.60 out per million.
    const MINI: Prices = Prices {
        input_per_mtok: 0.15,
        cached_input_per_mtok: 0.075,
        output_per_mtok: 0.60,
    };

    fn usage(prompt: u64, completion: u64, cached: u64) -> TokenUsage {
        TokenUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: cached,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn uncached_call() {
        // 10,000 * 0.15/1e6 = 0.0015; 1,000 * 0.60/1e6 = 0.0006
        assert!(close(cost_usd(&MINI, &usage(10_000, 1_000, 0)), 0.0021));
    }

    #[test]
    fn cached_tokens_are_a_subset_of_the_prompt() {
        // 6,000 uncached * 0.15/1e6 = 0.0009; 4,000 cached * 0.075/1e6 = 0.0003;
        // 1,000 out * 0.60/1e6 = 0.0006 -> 0.0018 (not 0.0024: cached are not billed twice)
        assert!(close(cost_usd(&MINI, &usage(10_000, 1_000, 4_000)), 0.0018));
    }

    #[test]
    fn cached_count_above_prompt_is_clamped() {
        // all 1,000 prompt tokens cached: 1,000 * 0.075/1e6 = 0.000075
        assert!(close(cost_usd(&MINI, &usage(1_000, 0, 5_000)), 0.000075));
    }

    #[test]
    fn zero_usage_and_free_models_cost_nothing() {
        assert_eq!(cost_usd(&MINI, &TokenUsage::default()), 0.0);
        assert_eq!(cost_usd(&Prices::default(), &usage(10_000, 1_000, 10)), 0.0);
    }

    #[test]
    fn max_cost_assumes_no_cache_and_a_full_answer() {
        // 126,000 * 0.15/1e6 = 0.0189; 2,000 * 0.60/1e6 = 0.0012
        assert!(close(max_cost_usd(&MINI, 126_000, 2_000), 0.0201));
    }
}
