//! The transcript with evidence quotes highlighted. Evidence offsets are characters (Unicode
//! scalar values) into `report.transcript.text`, so the text is cut on char boundaries only.
//! Quotes may overlap (a flag and a dimension often quote the same sentence): the text is
//! split at every span boundary, and each piece is wrapped in one `<mark>` per span covering
//! it, outermost the earliest-starting. A span that crosses another's boundary is thus split
//! into several marks; only its first carries `id="ev-N"`, the link target, and the others
//! carry `data-ev="N"`. maud escapes every piece, so a transcript can never inject markup.

use std::collections::BTreeSet;

use maud::{html, Markup};

use crate::domain::{Speaker, Transcript};

/// What an evidence quote supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Dimension(String),
    Flag(String),
}

/// One evidence quote to highlight: `id` is its number N (`#ev-N`); `start..end` are char
/// offsets into the transcript text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub id: usize,
    pub start: usize,
    pub end: usize,
    pub target: Target,
}

/// The transcript as paragraphs, one per turn with its speaker label (or one block when the
/// turns do not describe the text), and the ids of the spans that were rendered (a quote
/// outside every turn has no mark, so it must not be linked to).
pub fn render(t: &Transcript, spans: &[Span]) -> (Markup, BTreeSet<usize>) {
    // Byte position of every char boundary, so char offsets cut the text safely.
    let bounds: Vec<usize> = t
        .text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(t.text.len()))
        .collect();
    let n = bounds.len() - 1;
    let valid_turns = !t.turns.is_empty()
        && t.turns
            .iter()
            .all(|turn| turn.start <= turn.end && turn.end <= n);
    let blocks: Vec<(Option<&Speaker>, usize, usize)> = if valid_turns {
        t.turns
            .iter()
            .map(|turn| (Some(&turn.speaker), turn.start, turn.end))
            .collect()
    } else {
        vec![(None, 0, n)]
    };
    let spans: Vec<&Span> = spans
        .iter()
        .filter(|s| s.start < s.end && s.start < n)
        .collect();
    let mut rendered = BTreeSet::new();
    let markup = html! {
        @for (speaker, start, end) in &blocks {
            @let body = block(&t.text, &bounds, *start, *end, &spans, &mut rendered);
            @match speaker {
                Some(sp) => {
                    p class={ "turn " (speaker_class(sp)) } {
                        span.speaker { (sp.label()) }
                        " "
                        span.turn-text { (body) }
                    }
                }
                None => { p.turn { span.turn-text { (body) } } }
            }
        }
    };
    (markup, rendered)
}

fn speaker_class(s: &Speaker) -> &'static str {
    match s {
        Speaker::Candidate => "candidate",
        Speaker::Interviewer => "interviewer",
        Speaker::Other(_) => "other",
    }
}

/// The chars `start..end` of `text` with the overlapping spans as nested marks.
fn block(
    text: &str,
    bounds: &[usize],
    start: usize,
    end: usize,
    spans: &[&Span],
    rendered: &mut BTreeSet<usize>,
) -> Markup {
    let n = bounds.len() - 1;
    let end = end.min(n);
    let mut cuts: Vec<usize> = vec![start, end];
    for s in spans {
        for p in [s.start, s.end.min(n)] {
            if p > start && p < end {
                cuts.push(p);
            }
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::new();
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let mut cover: Vec<&Span> = spans
            .iter()
            .copied()
            .filter(|s| s.start < b && s.end > a)
            .collect();
        cover.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end), s.id));
        pieces.push(nest(&text[bounds[a]..bounds[b]], &cover, rendered));
    }
    html! { @for p in pieces { (p) } }
}

fn nest(piece: &str, cover: &[&Span], rendered: &mut BTreeSet<usize>) -> Markup {
    let Some((outer, rest)) = cover.split_first() else {
        return html! { (piece) };
    };
    let first = rendered.insert(outer.id);
    let inner = nest(piece, rest, rendered);
    let (dimension, flag) = match &outer.target {
        Target::Dimension(d) => (Some(d.as_str()), None),
        Target::Flag(f) => (None, Some(f.as_str())),
    };
    let title = match &outer.target {
        Target::Dimension(d) => format!("evidence {} for {d}", outer.id),
        Target::Flag(f) => format!("evidence {} for flag {f}", outer.id),
    };
    html! {
        @if first {
            mark.evidence id={ "ev-" (outer.id) } data-dimension=[dimension] data-flag=[flag] title=(title) { (inner) }
        } @else {
            mark.evidence data-ev=(outer.id) data-dimension=[dimension] data-flag=[flag] title=(title) { (inner) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Format, Turn};

    fn transcript(turns: &[(Speaker, &str)]) -> Transcript {
        let mut text = String::new();
        let mut out = Vec::new();
        for (sp, t) in turns {
            text.push_str(sp.label());
            text.push_str(": ");
            let start = text.chars().count();
            text.push_str(t);
            let end = text.chars().count();
            text.push('\n');
            out.push(Turn {
                speaker: sp.clone(),
                text: t.to_string(),
                start,
                end,
                start_ms: None,
                end_ms: None,
            });
        }
        Transcript {
            format: Format::Speaker,
            text,
            turns: out,
        }
    }

    fn dim(id: usize, start: usize, end: usize) -> Span {
        Span {
            id,
            start,
            end,
            target: Target::Dimension("d".into()),
        }
    }

    #[test]
    fn marks_cut_on_char_boundaries_and_escape_text() {
        // "Candidate: " is 11 chars; "é" and "🙂" are multi-byte.
        let t = transcript(&[(Speaker::Candidate, "café <b>🙂</b> ok")]);
        // Chars 11..15 = "café"; 16..24 = "<b>🙂</b>" (the emoji is one char).
        let (m, ids) = render(&t, &[dim(1, 11, 15), dim(2, 16, 24)]);
        let html = m.into_string();
        assert!(
            html.contains(r#"<mark class="evidence" id="ev-1" data-dimension="d" title="evidence 1 for d">café</mark>"#),
            "{html}"
        );
        assert!(html.contains("&lt;b&gt;🙂&lt;/b&gt;</mark>"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains(r#"<span class="speaker">Candidate</span>"#));
        assert_eq!(ids, BTreeSet::from([1, 2]));
    }

    #[test]
    fn overlapping_spans_nest_and_split_with_one_id_each() {
        let t = transcript(&[(Speaker::Candidate, "abcdefghij")]);
        // Text offsets: the turn starts at char 11. A = "abcdef", B = "defghi" (overlap "def").
        let a = dim(1, 11, 17);
        let b = Span {
            id: 2,
            start: 14,
            end: 20,
            target: Target::Flag("f".into()),
        };
        let (m, ids) = render(&t, &[a, b]);
        let html = m.into_string();
        assert_eq!(html.matches(r#"id="ev-1""#).count(), 1, "{html}");
        assert_eq!(html.matches(r#"id="ev-2""#).count(), 1, "{html}");
        // "def" sits inside both: A outside, B (first piece, with its id) inside.
        assert!(
            html.contains(r#"data-dimension="d" title="evidence 1 for d"><mark class="evidence" id="ev-2" data-flag="f" title="evidence 2 for flag f">def</mark></mark>"#),
            "{html}"
        );
        // B's remainder "ghi" is a continuation mark without an id.
        assert!(
            html.contains(r#"<mark class="evidence" data-ev="2" data-flag="f" title="evidence 2 for flag f">ghi</mark>"#),
            "{html}"
        );
        // Every char of the turn appears exactly once, in order.
        let stripped = strip_tags(&html);
        assert!(stripped.contains("Candidate abcdefghij"), "{stripped}");
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn spans_outside_turns_are_not_rendered_and_bad_offsets_are_ignored() {
        let t = transcript(&[
            (Speaker::Interviewer, "Why?"),
            (Speaker::Candidate, "Because."),
        ]);
        // 0..9 is "Interviewer" label text, outside every turn's text; 500.. is past the end.
        let (m, ids) = render(&t, &[dim(1, 0, 9), dim(2, 500, 510), dim(3, 5, 5)]);
        let html = m.into_string();
        assert!(ids.is_empty(), "{ids:?}");
        assert!(!html.contains("<mark"), "{html}");
        assert!(html.contains(r#"<p class="turn interviewer">"#));
        assert!(html.contains(r#"<p class="turn candidate">"#));
    }

    #[test]
    fn a_span_across_two_turns_keeps_its_id_on_the_first_piece() {
        let t = transcript(&[(Speaker::Candidate, "one"), (Speaker::Candidate, "two")]);
        // Turn 1 = 11..14, turn 2 = 26..29 ("Candidate: one\nCandidate: two").
        let (m, ids) = render(&t, &[dim(1, 12, 28)]);
        let html = m.into_string();
        assert_eq!(html.matches(r#"id="ev-1""#).count(), 1);
        assert_eq!(html.matches(r#"data-ev="1""#).count(), 1);
        assert_eq!(ids, BTreeSet::from([1]));
    }

    #[test]
    fn text_without_usable_turns_is_one_block() {
        let t = Transcript {
            format: Format::Text,
            text: "plain answer".into(),
            turns: vec![],
        };
        let (m, ids) = render(&t, &[dim(1, 6, 12)]);
        let html = m.into_string();
        assert!(
            html.contains(r#"id="ev-1""#) && html.contains(">answer</mark>"),
            "{html}"
        );
        assert_eq!(ids.len(), 1);
    }

    fn strip_tags(s: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in s.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                _ if !in_tag => out.push(c),
                _ => {}
            }
        }
        out
    }
}
