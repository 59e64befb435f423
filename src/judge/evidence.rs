//! Finding a judge's evidence quote in the normalized transcript.
//!
//! Models paraphrase the surface of a quote even when they quote faithfully: they change case,
//! re-flow whitespace, swap straight and curly quotes, and add or drop an ellipsis at the ends.
//! None of that makes a quote fabricated, so the match ignores exactly those differences and
//! nothing else: the words must still occur in the same order, contiguously. The span returned
//! always covers the *original* transcript characters so the UI can highlight them and
//! [`crate::domain::Transcript::turn_at`] can map them to a cue time.

/// A quote must have at least this many non-space characters: shorter ones ("a", "ok") occur
/// almost anywhere and would "verify" whatever a model made up.
const MIN_QUOTE_CHARS: usize = 3;

/// A transcript folded once for matching, so dozens of quotes against a 200,000-character
/// transcript cost one pass over it plus one linear substring search per quote.
#[derive(Debug, Clone)]
pub struct EvidenceIndex {
    /// The folded text: lower case, whitespace runs as one space, quote marks and dashes
    /// unified, invisible characters dropped.
    folded: String,
    /// Byte offset in `folded` where each folded character starts (ascending). Empty for an
    /// ASCII haystack, whose folded text is ASCII too: there character k starts at byte k.
    starts: Vec<usize>,
    /// For each folded character, the character index in the original haystack it came from.
    origin: Vec<usize>,
}

impl EvidenceIndex {
    /// Folds `haystack` once. Offsets reported later are character (Unicode scalar) offsets
    /// into `haystack`, the same unit as [`crate::domain::Turn::start`].
    pub fn new(haystack: &str) -> Self {
        if haystack.is_ascii() {
            return Self::new_ascii(haystack.as_bytes());
        }
        Self::new_unicode(haystack)
    }

    /// The general folding, one character at a time.
    fn new_unicode(haystack: &str) -> Self {
        let mut index = EvidenceIndex {
            folded: String::with_capacity(haystack.len()),
            starts: Vec::with_capacity(haystack.len()),
            origin: Vec::with_capacity(haystack.len()),
        };
        let mut pending_space: Option<usize> = None;
        for (i, c) in haystack.chars().enumerate() {
            if c.is_whitespace() {
                if pending_space.is_none() && !index.folded.is_empty() {
                    pending_space = Some(i);
                }
                continue;
            }
            if is_invisible(c) {
                continue;
            }
            if let Some(at) = pending_space.take() {
                index.push(' ', at);
            }
            fold_char(c, |f| index.push(f, i));
        }
        index
    }

    /// [`EvidenceIndex::new`] for the common all-ASCII transcript: the same folding (ASCII
    /// lower case, a backtick as an apostrophe, whitespace runs as one space) byte by byte,
    /// with character offsets equal to byte offsets, and no `starts` table to build.
    fn new_ascii(haystack: &[u8]) -> Self {
        let mut folded = Vec::with_capacity(haystack.len());
        let mut origin = Vec::with_capacity(haystack.len());
        let mut pending_space: Option<usize> = None;
        for (i, &b) in haystack.iter().enumerate() {
            // `char::is_whitespace` on ASCII: space and \t \n \x0B \x0C \r.
            if matches!(b, b' ' | b'\t'..=b'\r') {
                if pending_space.is_none() && !folded.is_empty() {
                    pending_space = Some(i);
                }
                continue;
            }
            if let Some(at) = pending_space.take() {
                folded.push(b' ');
                origin.push(at);
            }
            folded.push(if b == b'`' {
                b'\''
            } else {
                b.to_ascii_lowercase()
            });
            origin.push(i);
        }
        EvidenceIndex {
            // ASCII in, ASCII out: always valid UTF-8.
            folded: String::from_utf8(folded).unwrap_or_default(),
            starts: Vec::new(),
            origin,
        }
    }

    /// The folded character starting at byte `at` of `folded`, if one does.
    fn char_at(&self, at: usize) -> Option<usize> {
        if self.starts.is_empty() {
            return (at < self.folded.len()).then_some(at);
        }
        self.starts.binary_search(&at).ok()
    }

    /// The last folded character starting before byte `end`.
    fn last_char_before(&self, end: usize) -> Option<usize> {
        if self.starts.is_empty() {
            return end.min(self.folded.len()).checked_sub(1);
        }
        self.starts.partition_point(|&s| s < end).checked_sub(1)
    }

    fn push(&mut self, c: char, origin: usize) {
        self.starts.push(self.folded.len());
        self.origin.push(origin);
        self.folded.push(c);
    }

    /// The character span `(start, end)` (end exclusive) of the first occurrence of `quote`,
    /// or `None` when it does not occur or is too short to be evidence of anything.
    pub fn locate(&self, quote: &str) -> Option<(usize, usize)> {
        let needle = fold_quote(quote);
        if needle.chars().filter(|c| *c != ' ').count() < MIN_QUOTE_CHARS {
            return None;
        }
        let at = self.folded.find(&needle)?;
        let first = self.char_at(at)?;
        let last = self.last_char_before(at + needle.len())?;
        Some((*self.origin.get(first)?, *self.origin.get(last)? + 1))
    }
}

/// Convenience for a single quote; build an [`EvidenceIndex`] when checking several.
pub fn locate(haystack: &str, quote: &str) -> Option<(usize, usize)> {
    EvidenceIndex::new(haystack).locate(quote)
}

/// Folds a quote like the haystack, then drops the punctuation and quote marks models add or
/// drop at a quote's ends (`"...`, `…`, a closing `.`), which say nothing about its content.
fn fold_quote(quote: &str) -> String {
    let mut out = String::with_capacity(quote.len());
    let mut pending_space = false;
    for c in quote.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if is_invisible(c) {
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        fold_char(c, |f| out.push(f));
    }
    out.trim_matches(|c: char| c == ' ' || ".,;:!?\"'-".contains(c))
        .to_string()
}

/// Characters that render as nothing and that copy-paste or a model may add or lose.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'
    )
}

/// One character's folded form: typographic quotes, dashes and the ellipsis become their ASCII
/// spelling (models emit either), everything else its full lower case.
fn fold_char(c: char, mut emit: impl FnMut(char)) {
    match c {
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '\u{00B4}' | '`' => {
            emit('\'')
        }
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' | '\u{00AB}'
        | '\u{00BB}' => emit('"'),
        '\u{2010}'..='\u{2015}' | '\u{2212}' => emit('-'),
        // Full case folding, not just lower case: an upper-cased quote spells ß as SS.
        '\u{00DF}' | '\u{1E9E}' => {
            emit('s');
            emit('s');
        }
        '\u{2026}' => {
            emit('.');
            emit('.');
            emit('.');
        }
        _ => c.to_lowercase().for_each(emit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ASCII fast path folds exactly like the general one: same folded text, same origins,
    /// same spans (only the `starts` table is left implicit).
    #[test]
    fn ascii_fast_path_matches_the_general_folding() {
        let haystacks = [
            "Candidate: We Use `BM25`\tand\x0B\x0Cre-ranking.\r\n  Interviewer: OK\n",
            "   leading spaces, then TEXT   and trailing   \n\n",
            "",
            "x",
        ];
        let quotes = [
            "we use 'bm25' and re-ranking",
            "text and",
            "interviewer: ok",
            "x",
        ];
        for h in haystacks {
            let fast = EvidenceIndex::new_ascii(h.as_bytes());
            let general = EvidenceIndex::new_unicode(h);
            assert!(fast.starts.is_empty(), "{h:?}");
            assert_eq!(fast.folded, general.folded, "{h:?}");
            assert_eq!(fast.origin, general.origin, "{h:?}");
            for q in quotes {
                assert_eq!(fast.locate(q), general.locate(q), "{h:?} / {q:?}");
            }
        }
        assert_eq!(
            EvidenceIndex::new(haystacks[0]).locate("we use 'bm25' and re-ranking"),
            Some((11, 40))
        );
    }

    /// The original characters a span covers, so every case checks the span, not just Some.
    fn covered(haystack: &str, span: (usize, usize)) -> String {
        haystack
            .chars()
            .skip(span.0)
            .take(span.1 - span.0)
            .collect()
    }

    struct Case {
        name: &'static str,
        haystack: &'static str,
        quote: &'static str,
        /// The original text the span must cover, or None when the quote must not be found.
        expect: Option<&'static str>,
    }

    const CASES: &[Case] = &[
        Case {
            name: "exact",
            haystack: "Candidate: we use hybrid search with re-ranking.\n",
            quote: "hybrid search with re-ranking",
            expect: Some("hybrid search with re-ranking"),
        },
        Case {
            name: "case differs",
            haystack: "Candidate: We Tested It Manually and it seemed good\n",
            quote: "we tested it manually",
            expect: Some("We Tested It Manually"),
        },
        Case {
            name: "whitespace and newlines differ on both sides",
            haystack: "Candidate: chunk   by\nheadings,\t then embed\n",
            quote: "  chunk by headings,\n then   embed ",
            expect: Some("chunk   by\nheadings,\t then embed"),
        },
        Case {
            name: "curly apostrophe in haystack, straight in quote",
            haystack: "Candidate: we didn\u{2019}t evaluate it\n",
            quote: "we didn't evaluate it",
            expect: Some("we didn\u{2019}t evaluate it"),
        },
        Case {
            name: "straight quotes in haystack, curly in quote",
            haystack: "Candidate: we call it \"golden set\" testing\n",
            quote: "call it \u{201C}golden set\u{201D} testing",
            expect: Some("call it \"golden set\" testing"),
        },
        Case {
            name: "ellipsis and wrapping quote marks at the ends",
            haystack: "Candidate: we tested it manually and it seemed good.\n",
            quote: "\"\u{2026}tested it manually...\"",
            expect: Some("tested it manually"),
        },
        Case {
            name: "em dash versus hyphen",
            haystack: "Candidate: retrieval \u{2014} then re-ranking\n",
            quote: "retrieval - then re-ranking",
            expect: Some("retrieval \u{2014} then re-ranking"),
        },
        Case {
            name: "sharp s against its upper-case spelling",
            haystack: "Candidate: an der Straße gebaut\n",
            quote: "AN DER STRASSE",
            expect: Some("an der Straße"),
        },
        Case {
            name: "first occurrence wins",
            haystack: "Candidate: use BM25. Interviewer: why BM25?\n",
            quote: "bm25",
            expect: Some("BM25"),
        },
        Case {
            name: "not present",
            haystack: "Candidate: we use pgvector\n",
            quote: "we use Pinecone",
            expect: None,
        },
        Case {
            name: "fabricated: same words, different sequence",
            haystack: "Candidate: we evaluate offline with a golden set and monitor drift online\n",
            quote: "we monitor the golden set online",
            expect: None,
        },
        Case {
            name: "too short after trimming",
            haystack: "Candidate: ok ok ok\n",
            quote: "\"ok\"...",
            expect: None,
        },
        Case {
            name: "empty quote",
            haystack: "Candidate: anything\n",
            quote: "   ",
            expect: None,
        },
    ];

    #[test]
    fn table_of_quotes() {
        for case in CASES {
            let got = locate(case.haystack, case.quote).map(|span| covered(case.haystack, span));
            assert_eq!(got.as_deref(), case.expect, "case `{}`", case.name);
        }
    }

    #[test]
    fn offsets_are_characters_not_bytes() {
        let hay = "Interviewer: ¿Qué pasó? 漢字\nCandidate: café 🚀 déployé en prod\n";
        let (s, e) = locate(hay, "CAFÉ 🚀 DÉPLOYÉ").expect("found");
        let prefix: String = hay.chars().take(s).collect();
        assert_eq!(prefix, "Interviewer: ¿Qué pasó? 漢字\nCandidate: ");
        assert_eq!(covered(hay, (s, e)), "café 🚀 déployé");
        assert_ne!(
            hay.find("café"),
            Some(s),
            "byte and char offsets differ here"
        );
    }

    #[test]
    fn index_answers_many_quotes_on_a_large_transcript() {
        let mut hay = String::new();
        for i in 0..4000 {
            hay.push_str(&format!(
                "Candidate: line {i} about retrieval and chunking\n"
            ));
        }
        hay.push_str("Candidate: the needle is a hybrid BM25 plus dense retriever\n");
        assert!(hay.chars().count() > 190_000);
        let index = EvidenceIndex::new(&hay);
        for _ in 0..50 {
            let span = index.locate("Hybrid BM25 plus dense").expect("found");
            assert_eq!(covered(&hay, span), "hybrid BM25 plus dense");
            assert_eq!(index.locate("hybrid BM25 plus sparse"), None);
        }
    }

    #[test]
    fn span_ends_after_a_multi_char_fold() {
        // `…` folds to three characters; a quote ending inside the transcript's `…` must still
        // cover the whole original character.
        let hay = "Candidate: it depends\u{2026} on latency\n";
        let span = locate(hay, "it depends... on").expect("found");
        assert_eq!(covered(hay, span), "it depends\u{2026} on");
    }
}
