//! WebVTT and SRT captions. Both are blocks of cues separated by blank lines; the cue times are
//! kept on the turns so evidence can point to a moment of the recording. Speakers come from
//! WebVTT voice tags (`<v Jane>…</v>`) or a `Name:` prefix on a cue line; a cue that names no
//! speaker continues the previous speaker, as captions split one person's speech into cues.

use std::sync::LazyLock;

use regex::Regex;

use super::build::{Draft, Who};
use super::labels::{format_clock, parse_clock, role_of, split_label, Label, LabelPolicy};
use super::IngestError;

/// One non-blank line with its 1-based line number.
type Line<'a> = (usize, &'a str);

/// A caption cue after parsing its timing and payload, before speakers are resolved.
struct Cue {
    start_ms: u64,
    end_ms: u64,
    /// Payload lines, each split into chunks at voice tags: `(voice, text)`.
    lines: Vec<Vec<(Option<String>, String)>>,
}

/// Which caption format is being parsed; the two differ only in their error messages.
#[derive(Clone, Copy)]
enum Kind {
    Vtt,
    Srt,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Vtt => "vtt",
            Kind::Srt => "srt",
        }
    }

    fn example(self) -> &'static str {
        match self {
            Kind::Vtt => "`00:00:01.000 --> 00:00:04.000`",
            Kind::Srt => "`00:00:01,000 --> 00:00:04,000`",
        }
    }

    fn malformed(self, line: usize, message: String) -> IngestError {
        IngestError::Malformed {
            format: self.name(),
            line,
            message,
        }
    }
}

/// Whether a line is the WebVTT signature: `WEBVTT` alone or followed by a space or tab.
pub(crate) fn is_vtt_header(line: &str) -> bool {
    line.strip_prefix("WEBVTT")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// Whether `text` starts like SRT: a cue number, then a timing line with comma decimals.
pub(crate) fn looks_like_srt(text: &str) -> bool {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let (Some(index), Some(timing)) = (lines.next(), lines.next()) else {
        return false;
    };
    let numbered = !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit());
    let comma_timing = timing
        .split_once("-->")
        .is_some_and(|(l, _)| l.trim().contains(',') && parse_clock(l).is_some());
    numbered && comma_timing
}

/// Groups the non-blank lines into blocks separated by blank lines.
fn blocks(text: &str) -> Vec<Vec<Line<'_>>> {
    let mut out: Vec<Vec<Line<'_>>> = Vec::new();
    let mut current: Vec<Line<'_>> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else {
            current.push((i + 1, line));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Parses WebVTT: the `WEBVTT` header block, then cues; `NOTE`, `STYLE` and `REGION` blocks
/// are skipped, cue identifiers and cue settings ignored.
pub(crate) fn parse_vtt(text: &str) -> Result<Vec<Draft>, IngestError> {
    let kind = Kind::Vtt;
    let blocks = blocks(text);
    let Some((header, rest)) = blocks.split_first() else {
        return Err(kind.malformed(1, "missing the `WEBVTT` header".to_string()));
    };
    let (line_no, first) = header[0];
    if !is_vtt_header(first.trim()) {
        return Err(kind.malformed(
            line_no,
            format!("expected the `WEBVTT` header, found `{}`", excerpt(first)),
        ));
    }
    let mut cues = Vec::new();
    // A cue written straight after the header, without the blank line, is still a cue.
    if let Some(i) = header.iter().position(|(_, l)| l.contains("-->")) {
        cues.push(parse_cue(kind, &header[i..])?);
    }
    for block in rest {
        let first = block[0].1.trim_start();
        let keyword = first.split_whitespace().next().unwrap_or("");
        if matches!(keyword, "NOTE" | "STYLE" | "REGION") {
            continue;
        }
        cues.push(parse_cue(kind, block)?);
    }
    Ok(drafts(cues))
}

/// Parses SRT: numbered cues, each a number line, a timing line and text lines.
pub(crate) fn parse_srt(text: &str) -> Result<Vec<Draft>, IngestError> {
    let cues = blocks(text)
        .iter()
        .map(|block| parse_cue(Kind::Srt, block))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(drafts(cues))
}

/// One cue block: an optional identifier (the SRT cue number), the timing line, the payload.
fn parse_cue(kind: Kind, block: &[Line<'_>]) -> Result<Cue, IngestError> {
    let timing_at = if block[0].1.contains("-->") {
        0
    } else if block.len() > 1 && block[1].1.contains("-->") {
        1
    } else {
        // After a cue number the timing line is what is missing; otherwise the block itself
        // is not a cue.
        let numbered = block.len() > 1 && is_number(block[0].1);
        let (line, text) = if numbered { block[1] } else { block[0] };
        let what = match kind {
            Kind::Vtt => "a cue timing line",
            Kind::Srt if numbered => "a timing line after the cue number",
            Kind::Srt => "a cue number and a timing line",
        };
        return Err(kind.malformed(
            line,
            format!(
                "expected {what} like {}, found `{}`",
                kind.example(),
                excerpt(text)
            ),
        ));
    };
    let (line_no, timing) = block[timing_at];
    let (start_ms, end_ms) = parse_timing(timing).ok_or_else(|| {
        kind.malformed(
            line_no,
            format!(
                "invalid cue timing `{}`; expected {}",
                excerpt(timing),
                kind.example()
            ),
        )
    })?;
    if end_ms < start_ms {
        return Err(kind.malformed(
            line_no,
            format!(
                "cue ends at {} before it starts at {}",
                format_clock(end_ms),
                format_clock(start_ms)
            ),
        ));
    }
    let lines = block[timing_at + 1..]
        .iter()
        .map(|(_, l)| split_payload(l))
        .collect();
    Ok(Cue {
        start_ms,
        end_ms,
        lines,
    })
}

fn is_number(s: &str) -> bool {
    let s = s.trim();
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `start --> end [settings]`, either decimal mark, hours optional.
fn parse_timing(line: &str) -> Option<(u64, u64)> {
    let (left, right) = line.split_once("-->")?;
    let start = parse_clock(left.trim())?;
    let end = parse_clock(right.split_whitespace().next()?)?;
    Some((start, end))
}

/// Markup inside a cue: WebVTT tags (`<v Jane>`, `<c.loud>`, `<i>`, `<00:00:01.000>`), the
/// HTML-ish tags SRT files carry (`<font color="…">`), and ASS overrides (`{\an8}`).
static TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"</?[A-Za-z0-9][^<>]*>|\{\\[^{}]*\}").expect("the tag pattern is a valid regex")
});

/// A voice tag's speaker: `<v Jane Doe>` or `<v.loud Jane>`.
static VOICE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^<v(?:\.[^\s>]*)?\s+([^>]+)>$").expect("the voice pattern is a valid regex")
});

/// Splits one payload line at voice tags into `(voice, text)` chunks, dropping other markup
/// and decoding the entities captions use.
fn split_payload(line: &str) -> Vec<(Option<String>, String)> {
    let mut chunks: Vec<(Option<String>, String)> = vec![(None, String::new())];
    let mut last = 0;
    for m in TAG.find_iter(line) {
        if let Some(chunk) = chunks.last_mut() {
            chunk.1.push_str(&line[last..m.start()]);
        }
        last = m.end();
        if let Some(voice) = VOICE.captures(m.as_str()).and_then(|c| c.get(1)) {
            chunks.push((Some(voice.as_str().trim().to_string()), String::new()));
        }
    }
    if let Some(chunk) = chunks.last_mut() {
        chunk.1.push_str(&line[last..]);
    }
    if chunks.len() > 1 && chunks[0].1.trim().is_empty() {
        chunks.remove(0);
    }
    for chunk in &mut chunks {
        chunk.1 = decode_entities(&chunk.1);
    }
    chunks
}

/// The character references caption files use; anything else is left as written.
fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let decoded = rest.find(';').filter(|&j| j <= 10).and_then(|j| {
            let name = &rest[1..j];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                "lrm" | "rlm" => None,
                _ => {
                    let code = match name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => name.strip_prefix('#').and_then(|d| d.parse().ok()),
                    };
                    return code.and_then(char::from_u32).map(|c| (Some(c), j));
                }
            };
            Some((c, j))
        });
        match decoded {
            Some((c, j)) => {
                if let Some(c) = c {
                    out.push(c);
                }
                rest = &rest[j + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Turns cues into drafts. A `Name:` prefix on a cue line starts a new speaker only where the
/// [`LabelPolicy`] accepts it, so a caption that happens to read "Note: …" stays text.
fn drafts(cues: Vec<Cue>) -> Vec<Draft> {
    let voices: Vec<String> = cues
        .iter()
        .flat_map(|c| c.lines.iter().flatten())
        .filter_map(|(v, _)| v.clone())
        .collect();
    let line_labels: Vec<Vec<Option<Label<'_>>>> = cues
        .iter()
        .map(|cue| {
            cue.lines
                .iter()
                .map(|chunks| match chunks.first() {
                    Some((None, text)) => split_label(text),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let policy = LabelPolicy::new(line_labels.iter().flatten().flatten(), &voices);

    let mut out: Vec<Draft> = Vec::new();
    let mut current = Who::Unlabelled;
    for (cue, labels) in cues.iter().zip(&line_labels) {
        let mut in_cue = false;
        for (chunks, label) in cue.lines.iter().zip(labels) {
            for (i, (voice, text)) in chunks.iter().enumerate() {
                let (who, text) = match (voice, label) {
                    (Some(v), _) => (Some(who_of(v)), text.as_str()),
                    (None, Some(l)) if i == 0 && policy.accepts(l) => (
                        Some(l.role.map_or_else(|| Who::Name(l.name.clone()), Who::Role)),
                        l.rest,
                    ),
                    _ => (None, text.as_str()),
                };
                match (who, out.last_mut()) {
                    (None, Some(d)) if in_cue => {
                        d.text.push('\n');
                        d.text.push_str(text);
                    }
                    (who, _) => {
                        if let Some(w) = who {
                            current = w;
                        }
                        in_cue = true;
                        out.push(Draft {
                            who: current.clone(),
                            text: text.to_string(),
                            start_ms: Some(cue.start_ms),
                            end_ms: Some(cue.end_ms),
                        });
                    }
                }
            }
        }
    }
    out
}

fn who_of(voice: &str) -> Who {
    role_of(voice).map_or_else(|| Who::Name(voice.to_string()), Who::Role)
}

/// The start of a line for an error message, so a huge line does not flood the message.
fn excerpt(line: &str) -> String {
    let line = line.trim();
    match line.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_voice_tags_and_markup() {
        type Chunks = &'static [(Option<&'static str>, &'static str)];
        let cases: &[(&str, Chunks)] = &[
            ("<v Jane>Hello</v>", &[(Some("Jane"), "Hello")]),
            (
                "<v.loud Jane Doe>Hi <i>there</i>",
                &[(Some("Jane Doe"), "Hi there")],
            ),
            (
                "<v Bob>Yes.</v> <v Alice>No.</v>",
                &[(Some("Bob"), "Yes. "), (Some("Alice"), "No.")],
            ),
            (
                "plain <c.yellow>text</c> &amp; more",
                &[(None, "plain text & more")],
            ),
            (
                "{\\an8}<font color=\"red\">x &lt; y</font>",
                &[(None, "x < y")],
            ),
            ("a<00:00:01.000>b &#233;&#x4E2D;", &[(None, "ab é中")]),
            ("AT&T; R&D", &[(None, "AT&T; R&D")]),
        ];
        for (line, want) in cases {
            let got = split_payload(line);
            let got: Vec<(Option<&str>, &str)> = got
                .iter()
                .map(|(v, t)| (v.as_deref(), t.as_str()))
                .collect();
            assert_eq!(got, *want, "line {line:?}");
        }
    }
}
