//! The on-disk shape of one judge prompt version, `prompts/<stage>/<version>.toml`.

use serde::{Deserialize, Serialize};

use crate::domain::{Dimension, FlagDef, Stage};

/// One judge prompt version as authored. Its identity is `id@version` plus the sha256 of the
/// file's exact bytes, so any edit, even to whitespace, is a different prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptFile {
    /// Stable prompt id, by convention the stage name (`system_design`).
    pub id: String,
    /// Version label, e.g. `v1`. Must match the file stem.
    pub version: String,
    pub stage: Stage,
    pub title: String,
    /// What the stage evaluates, in the guide's words; shown to the judge.
    pub description: String,
    pub dimensions: Vec<Dimension>,
    pub flags: Vec<FlagDef>,
    #[serde(default)]
    pub examples: Vec<Example>,
    pub template: Template,
}

/// A few-shot example: an excerpt of candidate content and the judgment JSON it deserves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub input: String,
    /// A judgment in the output schema, as JSON text.
    pub output: String,
}

/// minijinja templates. `system` is static per prompt version (rubric, flags, examples, rules)
/// so providers can cache it as a prefix; only `user` carries the candidate's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub system: String,
    pub user: String,
}
