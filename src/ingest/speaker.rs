//! Speaker-labelled text: `Interviewer: …` / `Candidate: …` lines and their many spellings
//! (see [`super::labels`]). A line without an accepted label continues the previous turn.

use std::collections::HashMap;

use super::build::{Draft, Who};
use super::labels::{name_key, split_label, Label, LabelPolicy};
use super::IngestError;

/// Whether `text` reads as a labelled dialogue: at least two labelled lines, and either a
/// known role among them or at least two distinct names of which one recurs. A single
/// recurring `Note:` in an essay is not a dialogue; `Jane: … Bob: … Jane: …` is.
pub(crate) fn looks_like(text: &str) -> bool {
    // Names are only counted while no known role has been seen: once one has, the answer
    // depends on the number of labels alone, and it is settled at the second label.
    let mut counts: HashMap<String, usize> = HashMap::new();
    let (mut labelled, mut known) = (0usize, false);
    for label in text.lines().filter_map(split_label) {
        labelled += 1;
        known |= label.role.is_some();
        if known {
            if labelled >= 2 {
                return true;
            }
        } else {
            *counts.entry(name_key(&label.name)).or_insert(0) += 1;
        }
    }
    labelled >= 2 && (known || (counts.len() >= 2 && counts.values().any(|&n| n >= 2)))
}

/// Parses speaker-labelled text into drafts. Continuation lines join the current turn (the
/// newline becomes a space in normalization); lines before the first label become an
/// unlabelled turn rather than being dropped, so nothing the input said is lost.
pub(crate) fn parse(text: &str) -> Result<Vec<Draft>, IngestError> {
    let lines: Vec<(&str, Option<Label<'_>>)> = text.lines().map(|l| (l, split_label(l))).collect();
    let policy = LabelPolicy::new(lines.iter().filter_map(|(_, l)| l.as_ref()), &[]);

    let mut drafts: Vec<Draft> = Vec::new();
    let mut any_label = false;
    for (line, label) in &lines {
        match label.as_ref().filter(|l| policy.accepts(l)) {
            Some(label) => {
                any_label = true;
                drafts.push(Draft {
                    who: label
                        .role
                        .map_or_else(|| Who::Name(label.name.clone()), Who::Role),
                    text: label.rest.to_string(),
                    start_ms: label.start_ms,
                    end_ms: None,
                });
            }
            None => match drafts.last_mut() {
                Some(d) => {
                    d.text.push('\n');
                    d.text.push_str(line);
                }
                None => drafts.push(Draft {
                    who: Who::Unlabelled,
                    text: line.to_string(),
                    start_ms: None,
                    end_ms: None,
                }),
            },
        }
    }
    if !any_label {
        return Err(IngestError::Malformed {
            format: "speaker",
            line: 1,
            message: "no speaker labels found; expected lines like `Interviewer: …` and \
                      `Candidate: …`"
                .to_string(),
        });
    }
    Ok(drafts)
}
