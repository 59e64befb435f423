//! What is computed in code from the scores, never taken from the model's words: the skill
//! profile against the guide's bar, the RAG maturity level, the overall score and the
//! recommendation. Keeping this here means a prompt cannot talk the product into a "hire".

use std::collections::BTreeMap;

use crate::domain::{
    DimensionScore, FlagKind, LayerLevel, RaisedFlag, Recommendation, Severity, SkillLayer,
    SkillProfile,
};
use crate::prompts::PromptFile;

/// A layer is competent from the middle of its scale (3 on 1-5, 3 on 1-4) and excellent from
/// 4 on either scale; the normalized thresholds below encode exactly that.
const COMPETENT: f64 = 0.5;
const EXCELLENT: f64 = 0.75;

/// The guide's bar (section 2): competent in at least four layers, excellent in at least two.
pub fn skill_profile(prompt: &PromptFile, scores: &[DimensionScore]) -> SkillProfile {
    let mut per_layer: BTreeMap<SkillLayer, Vec<f64>> = BTreeMap::new();
    for d in &prompt.dimensions {
        let (Some(layer), Some(score)) = (
            d.layer,
            scores
                .iter()
                .find(|s| s.dimension == d.id)
                .and_then(|s| s.score),
        ) else {
            continue;
        };
        per_layer
            .entry(layer)
            .or_default()
            .push(d.scale.normalize(score));
    }
    let mut layers = BTreeMap::new();
    let (mut competent, mut excellent) = (0, 0);
    for layer in SkillLayer::ALL {
        let level = match per_layer.get(&layer) {
            None => LayerLevel::NotAssessed,
            Some(v) => {
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                if mean >= EXCELLENT {
                    excellent += 1;
                    competent += 1;
                    LayerLevel::Excellent
                } else if mean >= COMPETENT {
                    competent += 1;
                    LayerLevel::Competent
                } else {
                    LayerLevel::None
                }
            }
        };
        layers.insert(layer, level);
    }
    let assessed = per_layer.len();
    SkillProfile {
        layers,
        competent,
        excellent,
        assessed,
        meets_bar: (assessed >= 4).then_some(competent >= 4 && excellent >= 2),
    }
}

/// The RAG maturity level (1-4) from the dimension(s) whose anchors are the guide's levels;
/// with several, the median rounded down, because a level must be shown, not averaged into.
pub fn rag_maturity(prompt: &PromptFile, scores: &[DimensionScore]) -> Option<u8> {
    let mut v: Vec<f64> = prompt
        .dimensions
        .iter()
        .filter(|d| d.rag_maturity)
        .filter_map(|d| scores.iter().find(|s| s.dimension == d.id)?.score)
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v[(v.len() - 1) / 2];
    Some((mid.floor() as u8).clamp(1, 4))
}

/// Weighted mean of normalized scores over the scored dimensions.
pub fn overall(prompt: &PromptFile, scores: &[DimensionScore]) -> Option<f64> {
    let (mut num, mut den) = (0.0, 0.0);
    for d in &prompt.dimensions {
        if let Some(score) = scores
            .iter()
            .find(|s| s.dimension == d.id)
            .and_then(|s| s.score)
        {
            num += d.weight * d.scale.normalize(score);
            den += d.weight;
        }
    }
    (den > 0.0).then(|| num / den)
}

/// Thresholds on the overall score; a high-severity red flag caps the result at lean-no-hire.
/// Fewer than half the dimensions scored is insufficient evidence.
pub fn recommendation(
    prompt: &PromptFile,
    scores: &[DimensionScore],
    flags: &[RaisedFlag],
) -> Recommendation {
    let scored = scores.iter().filter(|s| s.score.is_some()).count();
    let Some(overall) = overall(prompt, scores) else {
        return Recommendation::InsufficientEvidence;
    };
    if scored * 2 < prompt.dimensions.len() {
        return Recommendation::InsufficientEvidence;
    }
    let rec = if overall >= 0.75 {
        Recommendation::StrongHire
    } else if overall >= 0.55 {
        Recommendation::Hire
    } else if overall >= 0.35 {
        Recommendation::LeanNoHire
    } else {
        Recommendation::NoHire
    };
    let severe_red = flags
        .iter()
        .any(|f| f.kind == FlagKind::Red && f.severity == Severity::High);
    match rec {
        Recommendation::StrongHire | Recommendation::Hire if severe_red => {
            Recommendation::LeanNoHire
        }
        r => r,
    }
}
