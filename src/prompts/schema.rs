//! The JSON schema the judge's output must follow, in the strict form OpenAI structured
//! outputs demand (every object closed with `additionalProperties: false`, every property
//! required), so any OpenAI-compatible server with constrained decoding can enforce it.

use serde_json::{json, Value};

use super::PromptFile;

/// The strict JSON schema of a [`crate::judge::Judgment`] for this prompt: dimension and flag
/// ids are enums of the rubric's ids, so the model cannot invent one. Score ranges differ per
/// dimension and are not expressible per item in strict mode; they are stated in the
/// description and checked by the judge's validation.
pub fn output_schema(pf: &PromptFile) -> Value {
    let dimension_ids: Vec<&str> = pf.dimensions.iter().map(|d| d.id.as_str()).collect();
    let flag_ids: Vec<&str> = pf.flags.iter().map(|f| f.id.as_str()).collect();
    let ranges = pf
        .dimensions
        .iter()
        .map(|d| format!("{} {}-{}", d.id, d.scale.min, d.scale.max))
        .collect::<Vec<_>>()
        .join(", ");

    let mut flag_id = json!({
        "type": "string",
        "description": "Id of a flag defined in the rubric.",
    });
    if flag_ids.is_empty() {
        // An empty enum is rejected by some servers; with no flags defined the list must stay
        // empty, which validation enforces.
        flag_id["description"] = json!("No flags are defined for this prompt; return no flags.");
    } else {
        flag_id["enum"] = json!(flag_ids);
    }

    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["scores", "flags", "summary"],
        "properties": {
            "scores": {
                "type": "array",
                "description": "One entry per rubric dimension.",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["dimension", "score", "rationale", "evidence"],
                    "properties": {
                        "dimension": { "type": "string", "enum": dimension_ids },
                        "score": {
                            "type": "integer",
                            "description": format!("An integer on the dimension's scale: {ranges}."),
                        },
                        "rationale": { "type": "string" },
                        "evidence": {
                            "type": "array",
                            "description": "Verbatim quotes from the candidate content.",
                            "items": { "type": "string" },
                        },
                    },
                },
            },
            "flags": {
                "type": "array",
                "description": "Red and green flags the candidate content shows.",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["id", "evidence"],
                    "properties": {
                        "id": flag_id,
                        "evidence": {
                            "type": "array",
                            "description": "Verbatim quotes from the candidate content.",
                            "items": { "type": "string" },
                        },
                    },
                },
            },
            "summary": { "type": "string" },
        },
    })
}
