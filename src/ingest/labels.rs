//! Speaker labels at the start of a line (`Interviewer:`, `**Q:**`, `[00:01:02] Jane Doe:`,
//! `Interviewer (Jane):`) and the clock times transcripts carry. Shared by the speaker-labelled,
//! WebVTT and SRT parsers so that the same line means the same speaker in every format.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use regex::Regex;

use crate::domain::Speaker;

/// A role we recognise from its usual names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Interviewer,
    Candidate,
}

impl From<Role> for Speaker {
    fn from(role: Role) -> Speaker {
        match role {
            Role::Interviewer => Speaker::Interviewer,
            Role::Candidate => Speaker::Candidate,
        }
    }
}

/// A speaker label found at the start of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Label<'a> {
    /// The name as written, without markdown, timestamp, parenthetical or colon.
    pub name: String,
    /// Set when the label names a role we know (`Q`, `Recruiter`, `Interviewer (Jane)`).
    pub role: Option<Role>,
    /// What follows the colon on the same line.
    pub rest: &'a str,
    /// A leading `[00:01:02]` timestamp (or a `(00:01:02)` after the name), in milliseconds.
    pub start_ms: Option<u64>,
}

/// Unknown names longer than this many words are taken for prose ("The main point here is:").
const MAX_NAME_WORDS: usize = 4;

static LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        ^\s*
        (?:
            [\[(] (?P<ts1> \d{1,3}:\d{2}(?::\d{2})?(?:[.,]\d{1,3})? ) [\])] \s* (?:[-–—|]\s*)?
          | (?P<ts2> \d{1,3}:\d{2}(?::\d{2})?(?:[.,]\d{1,3})? ) \s+ (?:[-–—|]\s*)?
        )?
        (?: \*\* | __ )?
        (?P<name> \p{L} [\p{L}\p{M}\p{N}\x20.'’\-]{0,39}? )
        \s* (?: \( (?P<paren> [^()\n]{1,40} ) \) )?
        \s* (?: \*\* | __ )? \s* [:：] (?: \*\* | __ )?
        ",
    )
    .expect("the label pattern is a valid regex")
});

/// The raw pieces of a label, as the pattern would capture them, before the name checks.
struct Parts<'a> {
    name: &'a str,
    rest: &'a str,
    clock: Option<&'a str>,
    paren: Option<&'a str>,
}

/// What the byte-level scan of a line concludes.
enum Scan<'a> {
    /// The line certainly does not start with a label.
    NoLabel,
    /// A plain ASCII `Name:` label, with the pieces the pattern would capture.
    Simple(Parts<'a>),
    /// Something the scan does not decide (timestamps, markdown, parentheticals, non-ASCII,
    /// leading whitespace): the pattern decides.
    Unsure,
}

/// Characters of the pattern's name class that are ASCII: letters, digits, space, `.`, `'`, `-`.
fn is_ascii_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b' ' | b'.' | b'\'' | b'-')
}

/// Decides the common lines without the regex, which dominated ingest time (a captures search
/// per line, twice per line with format detection). It must agree exactly with [`LABEL`]; the
/// `fast_scan_agrees_with_the_pattern` test holds it to that.
///
/// A line starting with an ASCII letter can only match with the name starting there. The name
/// class run then ends at the first other byte: a `:` ends a label whose name is the run
/// without its trailing spaces (the lazy name leaves them to `\s*`), if that is at most 40
/// characters; any ASCII byte that the pattern cannot continue with (`,`, `?`, `/`, …) or the
/// end of the line means no label; anything else (`(`, `*`, `_`, a tab, a non-ASCII char) is
/// left to the pattern. A line without any colon never matches.
fn scan(line: &str) -> Scan<'_> {
    let bytes = line.as_bytes();
    if !bytes.contains(&b':') && !line.contains('\u{FF1A}') {
        return Scan::NoLabel;
    }
    if !bytes.first().is_some_and(u8::is_ascii_alphabetic) {
        return Scan::Unsure;
    }
    let run = bytes.iter().position(|&b| !is_ascii_name_byte(b));
    let Some(stop) = run else {
        return Scan::NoLabel;
    };
    match bytes[stop] {
        b':' => {
            let name = line[..stop].trim_end_matches(' ');
            if name.len() > 40 {
                return Scan::NoLabel;
            }
            let after = &line[stop + 1..];
            let rest = after
                .strip_prefix("**")
                .or_else(|| after.strip_prefix("__"))
                .unwrap_or(after);
            Scan::Simple(Parts {
                name,
                rest,
                clock: None,
                paren: None,
            })
        }
        b'(' | b'*' | b'_' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r' => Scan::Unsure,
        b if b >= 0x80 => Scan::Unsure,
        _ => Scan::NoLabel,
    }
}

/// The pieces of a label by the pattern.
fn parts_by_pattern(line: &str) -> Option<Parts<'_>> {
    let caps = LABEL.captures(line)?;
    Some(Parts {
        name: caps.name("name")?.as_str(),
        // The text after the label is sliced, not captured: a trailing `.*$` group made every
        // match scan the whole line, which dominated ingest time on long turns.
        rest: caps.get(0).map_or("", |m| &line[m.end()..]),
        clock: caps
            .name("ts1")
            .or_else(|| caps.name("ts2"))
            .map(|m| m.as_str()),
        paren: caps.name("paren").map(|m| m.as_str()),
    })
}

/// Splits a speaker label off the start of `line`, or `None` when the line does not start with
/// one. Known role names are matched case-insensitively; any other name must look like a name
/// (starts with a capital or an uncased letter, at most four words, followed by a space) so
/// that prose such as `https://…` or `and then: …` is not taken for a speaker.
pub(crate) fn split_label(line: &str) -> Option<Label<'_>> {
    let parts = match scan(line) {
        Scan::NoLabel => return None,
        Scan::Simple(parts) => parts,
        Scan::Unsure => parts_by_pattern(line)?,
    };
    label_from(parts)
}

fn label_from(parts: Parts<'_>) -> Option<Label<'_>> {
    let mut name = collapse(parts.name);
    let kept = name.trim_end_matches(['-', ' ']).len();
    name.truncate(kept);
    let rest = parts.rest;
    let mut start_ms = parts.clock.and_then(parse_clock);
    let mut role = role_of(&name);
    if let Some(paren) = parts.paren.map(str::trim) {
        match parse_clock(paren) {
            Some(ms) => start_ms = start_ms.or(Some(ms)),
            // `Jane (Interviewer):` names the role in the parenthetical.
            None => role = role.or_else(|| role_of(paren)),
        }
    }
    if role.is_none() {
        let first = name.chars().next()?;
        let words = name.split(' ').count();
        let spaced = rest.is_empty() || rest.starts_with(char::is_whitespace);
        if first.is_lowercase() || words > MAX_NAME_WORDS || !spaced {
            return None;
        }
    }
    Some(Label {
        name,
        role,
        rest,
        start_ms,
    })
}

/// The role a label names, if it is one of the usual names. A trailing number (`Interviewer 2`,
/// `Q1`) does not change the role.
pub(crate) fn role_of(name: &str) -> Option<Role> {
    let base = name
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_digit() || c == '#' || c.is_whitespace());
    // Every role name is ASCII, so an ASCII name compares without the lowercased copy; only
    // other names pay for Unicode lowercasing (which can turn non-ASCII into ASCII: `K`).
    const ROLES: [(&str, Role); 13] = [
        ("interviewer", Role::Interviewer),
        ("recruiter", Role::Interviewer),
        ("q", Role::Interviewer),
        ("question", Role::Interviewer),
        ("host", Role::Interviewer),
        ("hiring manager", Role::Interviewer),
        ("panelist", Role::Interviewer),
        ("moderator", Role::Interviewer),
        ("candidate", Role::Candidate),
        ("interviewee", Role::Candidate),
        ("a", Role::Candidate),
        ("answer", Role::Candidate),
        ("applicant", Role::Candidate),
    ];
    if base.is_ascii() {
        return ROLES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(base))
            .map(|&(_, r)| r);
    }
    match base.to_lowercase().as_str() {
        "interviewer" | "recruiter" | "q" | "question" | "host" | "hiring manager" | "panelist"
        | "moderator" => Some(Role::Interviewer),
        "candidate" | "interviewee" | "a" | "answer" | "applicant" => Some(Role::Candidate),
        _ => None,
    }
}

/// The key that identifies a speaker name: `Jane` and `JANE` are the same person.
pub(crate) fn name_key(name: &str) -> String {
    collapse(name).to_lowercase()
}

/// Trims and collapses whitespace runs to one space.
pub(crate) fn collapse(s: &str) -> String {
    // Names are nearly always collapsed already (ASCII, single spaces inside); copy those.
    let b = s.as_bytes();
    let plain = s.is_ascii()
        && !b
            .iter()
            .any(|&c| matches!(c, b'\t' | b'\n' | 0x0B | 0x0C | b'\r'))
        && !b.windows(2).any(|w| w == b"  ")
        && !s.starts_with(' ')
        && !s.ends_with(' ');
    if plain {
        return s.to_string();
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses `HH:MM:SS(.mmm)` or `MM:SS(.mmm)` (a comma works as the decimal mark too, as in SRT)
/// into milliseconds. `None` for anything else, including minutes or seconds ≥ 60 where the
/// hours are given.
pub(crate) fn parse_clock(s: &str) -> Option<u64> {
    let s = s.trim();
    let (main, frac) = match s.find(['.', ',']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let parts: Vec<&str> = main.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    let mut nums = Vec::with_capacity(3);
    for (i, p) in parts.iter().enumerate() {
        let max_len = if i == 0 { 9 } else { 2 };
        if p.is_empty() || p.len() > max_len || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        nums.push(p.parse::<u64>().ok()?);
    }
    let (h, m, sec) = match nums.as_slice() {
        [h, m, s] if *m < 60 => (*h, *m, *s),
        [m, s] => (0, *m, *s),
        _ => return None,
    };
    if sec >= 60 {
        return None;
    }
    let ms = match frac {
        None => 0,
        Some(f) if (1..=3).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{f:0<3}").parse::<u64>().ok()?
        }
        Some(_) => return None,
    };
    h.checked_mul(60)?
        .checked_add(m)?
        .checked_mul(60)?
        .checked_add(sec)?
        .checked_mul(1000)?
        .checked_add(ms)
}

/// Formats milliseconds as `HH:MM:SS.mmm` for error messages.
pub(crate) fn format_clock(ms: u64) -> String {
    let (s, ms) = (ms / 1000, ms % 1000);
    format!("{:02}:{:02}:{:02}.{ms:03}", s / 3600, s / 60 % 60, s % 60)
}

/// Decides which `Name:` prefixes are speaker labels and which are prose that happens to start
/// with a capitalised word and a colon ("Note: …" inside an answer).
///
/// Known roles are always labels. An unknown name is a label when it recurs: real speakers
/// speak more than once. When that leaves no candidate (e.g. `Interviewer:` and `Jane:`, each
/// once), every name is accepted, because a transcript without its candidate is useless and
/// the names are then the best evidence of who is who.
pub(crate) struct LabelPolicy {
    accept_all: bool,
    recurring: HashSet<String>,
}

impl LabelPolicy {
    /// `labels` are all candidate labels of the document in order; `certain` are names known to
    /// be speakers for other reasons (WebVTT voice tags).
    pub(crate) fn new<'l>(
        labels: impl IntoIterator<Item = &'l Label<'l>>,
        certain: &[String],
    ) -> LabelPolicy {
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let (mut has_i, mut has_c) = (false, false);
        for label in labels {
            match label.role {
                Some(Role::Interviewer) => has_i = true,
                Some(Role::Candidate) => has_c = true,
                None => {
                    let key = name_key(&label.name);
                    let n = counts.entry(key.clone()).or_insert(0);
                    if *n == 0 {
                        order.push(key);
                    }
                    *n += 1;
                }
            }
        }
        for name in certain {
            match role_of(name) {
                Some(Role::Interviewer) => has_i = true,
                Some(Role::Candidate) => has_c = true,
                None => {
                    let key = name_key(name);
                    if !counts.contains_key(&key) {
                        order.push(key.clone());
                    }
                    *counts.entry(key).or_insert(0) += 2;
                }
            }
        }
        let recurring: Vec<String> = order
            .into_iter()
            .filter(|k| counts.get(k).copied().unwrap_or(0) >= 2)
            .collect();
        let yields_candidate =
            has_c || assign_names(has_i, has_c, &recurring).contains(&Speaker::Candidate);
        LabelPolicy {
            accept_all: !yields_candidate,
            recurring: recurring.into_iter().collect(),
        }
    }

    pub(crate) fn accepts(&self, label: &Label<'_>) -> bool {
        label.role.is_some() || self.accept_all || self.recurring.contains(&name_key(&label.name))
    }
}

/// Which speaker each unknown name (in order of first appearance) becomes. Two unknown names
/// and no known role is the common "Jane Doe: / Raj Patel:" transcript: the first to speak
/// is the interviewer, who opens an interview. One unknown name beside a known role fills the
/// missing role. Anything else stays a named [`Speaker::Other`].
pub(crate) fn assign_names(
    has_interviewer: bool,
    has_candidate: bool,
    names: &[String],
) -> Vec<Speaker> {
    match (has_interviewer, has_candidate, names.len()) {
        (false, false, 2) => vec![Speaker::Interviewer, Speaker::Candidate],
        (true, false, 1) => vec![Speaker::Candidate],
        (false, true, 1) => vec![Speaker::Interviewer],
        _ => names.iter().map(|n| Speaker::Other(n.clone())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_table() {
        // (line, Some((name, role, rest, start_ms)) or None)
        type Expect = Option<(&'static str, Option<Role>, &'static str, Option<u64>)>;
        let cases: &[(&str, Expect)] = &[
            (
                "Interviewer: hi",
                Some(("Interviewer", Some(Role::Interviewer), " hi", None)),
            ),
            (
                "candidate:hello",
                Some(("candidate", Some(Role::Candidate), "hello", None)),
            ),
            (
                "Q: why?",
                Some(("Q", Some(Role::Interviewer), " why?", None)),
            ),
            (
                "A: because",
                Some(("A", Some(Role::Candidate), " because", None)),
            ),
            (
                "Interviewer (Jane): go",
                Some(("Interviewer", Some(Role::Interviewer), " go", None)),
            ),
            (
                "Jane (Recruiter): go",
                Some(("Jane", Some(Role::Interviewer), " go", None)),
            ),
            ("Jane Doe: hi", Some(("Jane Doe", None, " hi", None))),
            (
                "**Interviewer:** hi",
                Some(("Interviewer", Some(Role::Interviewer), " hi", None)),
            ),
            ("**Jane Doe**: hi", Some(("Jane Doe", None, " hi", None))),
            (
                "[00:01:02] Candidate: x",
                Some(("Candidate", Some(Role::Candidate), " x", Some(62_000))),
            ),
            (
                "(01:02.5) Jane: x",
                Some(("Jane", None, " x", Some(62_500))),
            ),
            (
                "00:00:07 - José Núñez: x",
                Some(("José Núñez", None, " x", Some(7_000))),
            ),
            (
                "Jane Doe (00:00:03): x",
                Some(("Jane Doe", None, " x", Some(3_000))),
            ),
            (
                "Interviewer 2: x",
                Some(("Interviewer 2", Some(Role::Interviewer), " x", None)),
            ),
            ("李雷: 你好", Some(("李雷", None, " 你好", None))),
            ("https://example.com is down", None),
            ("and then: we shipped", None),
            ("The main point I want to make: x", None),
            ("Meeting at 10:30 went well", None),
            ("no label here", None),
        ];
        for (line, want) in cases {
            let got = split_label(line).map(|l| (l.name, l.role, l.rest, l.start_ms));
            let want = want.map(|(n, r, rest, ms)| (n.to_string(), r, rest, ms));
            assert_eq!(got, want, "line {line:?}");
        }
    }

    /// The byte-level scan must give exactly what the pattern alone gives, on every line.
    #[test]
    fn fast_scan_agrees_with_the_pattern() {
        fn by_pattern(line: &str) -> Option<Label<'_>> {
            parts_by_pattern(line).and_then(label_from)
        }
        let starts = [
            "",
            " ",
            "\t",
            "**",
            "__",
            "[00:01] ",
            "00:00:07 - ",
            "(01:02.5) ",
            "7 ",
            "-",
            "\u{FEFF}",
        ];
        let names = [
            "Interviewer",
            "candidate",
            "Q",
            "A",
            "A1",
            "Q#",
            "Interviewer 2",
            "Hiring Manager",
            "HIRING  MANAGER",
            "Jane",
            "Jane Doe",
            "Jane  Doe",
            "Jane -",
            "Jane - ",
            "Dr. Smith",
            "O'Neil",
            "O’Brien",
            "Ann-Marie",
            "a.b",
            "and then",
            "The main point I want to make",
            "Alice Bob Carol Dave",
            "Alice Bob Carol Dave Eve",
            "Ünal",
            "ünal",
            "李雷",
            "\u{212A}andidate",
            "Abcdefghijabcdefghijabcdefghijabcdefghij",
            "Abcdefghijabcdefghijabcdefghijabcdefghijk",
            "https",
            "Meeting at 10",
            "Inter*viewer",
            "Bob,",
            "Bob?",
            "Bob/",
            "Bob\u{1}",
        ];
        let seps = [
            ":",
            " :",
            "   :",
            "\t:",
            "\u{A0}:",
            "\u{3000}:",
            "：",
            " (Jane):",
            "(Recruiter):",
            " (00:00:03):",
            "**:",
            "__:",
            ":**",
            ":__",
            "::",
            "\r:",
            "\u{B}:",
            "\u{85}:",
            "",
            " ",
        ];
        let rests = [
            "",
            " hi",
            "hi",
            " a: b",
            "\u{A0}x",
            " (x): y",
            "30 went well",
        ];
        let mut n = 0;
        for start in starts {
            for name in names {
                for sep in seps {
                    for rest in rests {
                        let line = format!("{start}{name}{sep}{rest}");
                        assert_eq!(split_label(&line), by_pattern(&line), "line {line:?}");
                        n += 1;
                    }
                }
            }
        }
        assert!(n > 10_000);
    }

    #[test]
    fn clocks_table() {
        let cases: &[(&str, Option<u64>)] = &[
            ("00:01:02.500", Some(62_500)),
            ("00:01:02,5", Some(62_500)),
            ("01:02", Some(62_000)),
            ("1:00:00", Some(3_600_000)),
            ("100:00:00.000", Some(360_000_000)),
            ("00:60:00", None),
            ("00:00:60", None),
            ("00:01", Some(1_000)),
            ("1.5", None),
            ("00:01:02.5000", None),
            ("aa:bb", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_clock(s), *want, "clock {s:?}");
        }
        assert_eq!(format_clock(3_723_004), "01:02:03.004");
    }

    #[test]
    fn name_assignment_rules() {
        let two = vec!["jane".to_string(), "raj".to_string()];
        assert_eq!(
            assign_names(false, false, &two),
            vec![Speaker::Interviewer, Speaker::Candidate]
        );
        assert_eq!(
            assign_names(true, false, &two),
            vec![Speaker::Other("jane".into()), Speaker::Other("raj".into())]
        );
        assert_eq!(
            assign_names(true, false, &two[..1]),
            vec![Speaker::Candidate]
        );
        assert_eq!(
            assign_names(false, true, &two[..1]),
            vec![Speaker::Interviewer]
        );
    }
}
