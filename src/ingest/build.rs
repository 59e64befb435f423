//! From parsed drafts to the normalized [`Transcript`]: speaker resolution, text
//! normalization, merging, the turn and candidate checks, and the character offsets that every
//! evidence span refers to. Every format ends here, so the invariants hold for all of them.

use std::collections::HashMap;

use crate::domain::{Format, Speaker, Transcript, Turn};

use super::labels::{assign_names, name_key, Role};
use super::{IngestError, Limits};

/// Who a draft turn belongs to, before names are resolved against the whole document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Who {
    Role(Role),
    /// A name with no known role (`Jane Doe`), resolved by [`assign_names`].
    Name(String),
    /// Text whose speaker the input does not say.
    Unlabelled,
}

/// A turn as a parser found it: raw text, not yet normalized.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    pub who: Who,
    pub text: String,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
}

/// The speaker name used for text the input does not attribute when other text is attributed.
pub(crate) const UNLABELLED: &str = "Unlabelled";

/// Turn text normalization: trimmed, every whitespace run (newlines included) collapsed to one
/// space, and control characters and stray byte-order marks dropped.
///
/// Collapsing newlines keeps the canonical text at exactly one line per turn, so it is
/// unambiguous to read, to show, and to parse again as the speaker-labelled format; evidence
/// matching is whitespace-insensitive anyway, so nothing a judge can quote is lost. The cost
/// is the layout of code or lists inside an answer, which graders read from the original.
pub(crate) fn normalize_text(s: &str) -> String {
    // Kept text is copied in runs, not char by char: a run is printable ASCII with single
    // spaces between, which is most of any transcript and is already normal. Everything else
    // goes one char at a time. On ASCII, `char::is_whitespace` is exactly `\t \n \x0B \x0C
    // \r` and space, and `char::is_control` is below 0x20 and 0x7F.
    let printable = |b: u8| b.wrapping_sub(0x21) < 0x5E;
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() {
            if printable(bytes[i]) {
                i += 1;
            } else if bytes[i] == b' '
                && i > start
                && bytes.get(i + 1).is_some_and(|&b| printable(b))
            {
                i += 2;
            } else {
                break;
            }
        }
        if i > start {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push_str(&s[start..i]);
            continue;
        }
        let b = bytes[i];
        if b < 0x80 {
            if matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r') {
                pending_space = !out.is_empty();
            }
            i += 1;
            continue;
        }
        // `i` is at a char boundary: it only ever advances by whole chars.
        let Some(c) = s[i..].chars().next() else {
            break;
        };
        let len = c.len_utf8();
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else if !c.is_control() && c != '\u{FEFF}' {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push_str(&s[i..i + len]);
        }
        i += len;
    }
    out
}

/// Builds the transcript. `merge` joins consecutive turns of the same speaker (captions cut
/// speech into cues at arbitrary points; a labelled or JSON turn is kept as the input gave it).
pub(crate) fn build(
    format: Format,
    drafts: Vec<Draft>,
    merge: bool,
    limits: &Limits,
) -> Result<Transcript, IngestError> {
    let drafts: Vec<Draft> = drafts
        .into_iter()
        .filter_map(|d| {
            let text = normalize_text(&d.text);
            (!text.is_empty()).then_some(Draft { text, ..d })
        })
        .collect();
    let speakers = resolve(&drafts);

    let turns = if merge && !speakers.is_empty() {
        1 + speakers.windows(2).filter(|w| w[0] != w[1]).count()
    } else {
        speakers.len()
    };
    if turns > limits.max_turns {
        return Err(IngestError::TooManyTurns {
            turns,
            limit: limits.max_turns,
        });
    }

    let mut merged: Vec<(Speaker, Draft)> = Vec::with_capacity(turns);
    for (speaker, draft) in speakers.into_iter().zip(drafts) {
        match merged.last_mut() {
            Some((last, prev)) if merge && *last == speaker => {
                prev.text.push(' ');
                prev.text.push_str(&draft.text);
                prev.end_ms = draft.end_ms.or(prev.end_ms);
                prev.start_ms = prev.start_ms.or(draft.start_ms);
            }
            _ => merged.push((speaker, draft)),
        }
    }

    if !merged.iter().any(|(s, _)| *s == Speaker::Candidate) {
        let mut seen = std::collections::HashSet::new();
        let speakers: Vec<String> = merged
            .iter()
            .map(|(s, _)| s.label().to_string())
            .filter(|label| seen.insert(label.clone()))
            .collect();
        return Err(IngestError::NoCandidateTurns { speakers });
    }

    let mut text = String::with_capacity(
        merged
            .iter()
            .map(|(s, d)| s.label().len() + d.text.len() + 3)
            .sum(),
    );
    let mut pos = 0usize;
    let mut turns = Vec::with_capacity(merged.len());
    for (speaker, draft) in merged {
        let label = speaker.label();
        text.push_str(label);
        text.push_str(": ");
        pos += label.chars().count() + 2;
        let len = draft.text.chars().count();
        text.push_str(&draft.text);
        text.push('\n');
        turns.push(Turn {
            speaker,
            text: draft.text,
            start: pos,
            end: pos + len,
            start_ms: draft.start_ms,
            end_ms: draft.end_ms,
        });
        pos += len + 1;
    }
    Ok(Transcript {
        format,
        text,
        turns,
    })
}

/// Resolves every draft's speaker against the whole document (see [`assign_names`]). A
/// document that attributes nothing is the candidate's, as plain text is; unattributed text
/// in an otherwise attributed document is named [`UNLABELLED`] and never graded.
fn resolve(drafts: &[Draft]) -> Vec<Speaker> {
    let (mut has_i, mut has_c) = (false, false);
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    for d in drafts {
        match &d.who {
            Who::Role(Role::Interviewer) => has_i = true,
            Who::Role(Role::Candidate) => has_c = true,
            Who::Name(n) => {
                index.entry(name_key(n)).or_insert_with(|| {
                    names.push(n.clone());
                    names.len() - 1
                });
            }
            Who::Unlabelled => {}
        }
    }
    let assigned = assign_names(has_i, has_c, &names);
    let nothing_attributed = drafts.iter().all(|d| d.who == Who::Unlabelled);
    drafts
        .iter()
        .map(|d| match &d.who {
            Who::Role(r) => Speaker::from(*r),
            Who::Name(n) => index
                .get(&name_key(n))
                .and_then(|&i| assigned.get(i).cloned())
                .unwrap_or_else(|| Speaker::Other(n.clone())),
            Who::Unlabelled if nothing_attributed => Speaker::Candidate,
            Who::Unlabelled => Speaker::Other(UNLABELLED.to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The char-by-char definition that [`normalize_text`]'s run copying must reproduce.
    fn reference(s: &str) -> String {
        let mut out = String::new();
        let mut pending_space = false;
        for c in s.chars() {
            if c.is_whitespace() {
                pending_space = !out.is_empty();
                continue;
            }
            if c.is_control() || c == '\u{FEFF}' {
                continue;
            }
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
        out
    }

    #[test]
    fn normalize_table() {
        let cases: &[(&str, &str)] = &[
            ("  hello   world  ", "hello world"),
            ("a\tb\nc\r\nd\u{B}e\u{C}f", "a b c d e f"),
            ("a\u{1}b \u{7F} c", "ab c"),
            ("\u{FEFF}x\u{FEFF}y", "xy"),
            ("a\u{A0}\u{3000}b\u{85}c", "a b c"),
            ("a \u{1} b", "a b"),
            ("é  中\u{2003}x", "é 中 x"),
            ("\u{9F}z", "z"),
            ("", ""),
            (" \t\n", ""),
            ("x ", "x"),
            (" a b  c d", "a b c d"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_text(input), *want, "input {input:?}");
            assert_eq!(normalize_text(input), reference(input), "input {input:?}");
        }
        // Every pair and triple of interesting chars agrees with the definition.
        let alphabet = [
            "a", "Z", " ", "  ", "\t", "\n", "\r", "\u{1}", "\u{7F}", "é", "\u{A0}", "\u{85}",
            "\u{FEFF}", "\u{2003}", "中", "~", "!",
        ];
        for x in alphabet {
            for y in alphabet {
                for z in alphabet {
                    let s = format!("{x}{y}{z}{x}");
                    assert_eq!(normalize_text(&s), reference(&s), "input {s:?}");
                }
            }
        }
    }
}
