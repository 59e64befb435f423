//! Ingest: every transcript format from sample files in `tests/data/ingest/`, auto-detection,
//! each error kind and its message, the limits, and the offsets invariant that evidence
//! relies on (a turn's `start..end` in the canonical text is exactly the turn's text).

use std::path::PathBuf;

use grader::domain::{Format, Speaker, Transcript};
use grader::ingest::{self, detect, format_from_name, parse, written_answer, IngestError, Limits};
use grader::judge::evidence::EvidenceIndex;

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/ingest")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn other(name: &str) -> Speaker {
    Speaker::Other(name.to_string())
}

use Speaker::{Candidate as C, Interviewer as I};

/// (speaker, text, start_ms, end_ms)
type ExpectedTurn = (Speaker, &'static str, Option<u64>, Option<u64>);

struct Case {
    file: &'static str,
    format: Format,
    turns: Vec<ExpectedTurn>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            file: "speaker_basic.txt",
            format: Format::Speaker,
            turns: vec![
                (I, "Walk me through your RAG system.", None, None),
                (
                    C,
                    "Sure. We chunk documents by heading, then embed them with a bi-encoder. \
                     We re-rank the top 50 with a cross-encoder.",
                    None,
                    None,
                ),
                (I, "How do you evaluate it?", None, None),
                (C, "A golden set of 200 questions, run in CI.", None, None),
            ],
        },
        Case {
            file: "speaker_qa.txt",
            format: Format::Speaker,
            turns: vec![
                (
                    I,
                    "Would you fine-tune for factual QA over our docs?",
                    None,
                    None,
                ),
                // `Note:` occurs once and a candidate exists, so it is prose, not a speaker.
                (
                    C,
                    "No. I would start with RAG. Note: fine-tuning teaches style, not facts.",
                    None,
                    None,
                ),
                (I, "Why?", None, None),
                (
                    C,
                    "Facts change; the index can be rebuilt nightly.",
                    None,
                    None,
                ),
            ],
        },
        Case {
            file: "speaker_names_timestamps.md",
            format: Format::Speaker,
            turns: vec![
                (other("Unlabelled"), "# Interview — 2024-05-02", None, None),
                (
                    I,
                    "Thanks for joining. Tell me about guardrails.",
                    Some(5_000),
                    None,
                ),
                (
                    C,
                    "We validate outputs against a JSON schema and run an injection classifier \
                     on inputs.",
                    Some(12_000),
                    None,
                ),
                (I, "And cost?", Some(62_500), None),
                (
                    C,
                    "Route easy queries to a small model.",
                    Some(69_000),
                    None,
                ),
            ],
        },
        Case {
            file: "speaker_paren.txt",
            format: Format::Speaker,
            turns: vec![
                (I, "What would you monitor in production?", None, None),
                (
                    C,
                    "Latency, cost per request, and groundedness.",
                    None,
                    None,
                ),
                (I, "We have five minutes left.", None, None),
                (
                    C,
                    "Then one more point: I'd alert on refusal spikes.",
                    None,
                    None,
                ),
            ],
        },
        Case {
            file: "speaker_fill_role.txt",
            format: Format::Speaker,
            turns: vec![
                (I, "What is your chunking strategy?", None, None),
                (
                    C,
                    "Recursive splitting at 512 tokens with 10% overlap.",
                    None,
                    None,
                ),
            ],
        },
        Case {
            file: "speaker_unicode.txt",
            format: Format::Speaker,
            turns: vec![
                (I, "¿Cómo evalúas el sistema?", None, None),
                (
                    C,
                    "Con un conjunto dorado — 漢字も大丈夫 🚀 café.",
                    None,
                    None,
                ),
                (I, "Merci, José.", None, None),
                (C, "De nada 👩\u{200D}💻.", None, None),
            ],
        },
        Case {
            file: "plain.txt",
            format: Format::Text,
            turns: vec![(
                C,
                "I would build the retrieval layer first. Note: hybrid search (BM25 + dense) \
                 with a cross-encoder re-ranker beats either alone. Then I'd add evaluation.",
                None,
                None,
            )],
        },
        Case {
            file: "vtt_voices.vtt",
            format: Format::Vtt,
            turns: vec![
                (I, "How would you cut latency?", Some(1_000), Some(4_500)),
                (
                    C,
                    "First, cache embeddings and stream tokens to the client.",
                    Some(5_000),
                    Some(11_250),
                ),
                (I, "Good & cost?", Some(12_000), Some(13_000)),
                (C, "Route by difficulty.", Some(13_500), Some(16_000)),
            ],
        },
        Case {
            file: "vtt_zoom.vtt",
            format: Format::Vtt,
            turns: vec![
                (
                    I,
                    "Let's start with your portfolio.",
                    Some(500),
                    Some(3_000),
                ),
                (
                    C,
                    "I built a support bot that answers from our docs with citations.",
                    Some(3_500),
                    Some(9_000),
                ),
                (I, "What broke first?", Some(9_500), Some(11_000)),
                (
                    C,
                    "Chunking. Tables were split mid-row.",
                    Some(11_500),
                    Some(14_000),
                ),
            ],
        },
        Case {
            file: "srt_basic.srt",
            format: Format::Srt,
            turns: vec![
                (I, "What is your eval strategy?", Some(1_000), Some(3_000)),
                (
                    C,
                    "Automated evals on a golden set, plus LLM-as-judge with human calibration.",
                    Some(3_500),
                    Some(8_000),
                ),
                (I, "Thanks.", Some(8_500), Some(10_000)),
            ],
        },
        Case {
            file: "srt_no_speakers.srt",
            format: Format::Srt,
            turns: vec![(
                C,
                "We never tested it automatically; it seemed good when we tried it manually.",
                Some(2_000),
                Some(6_900),
            )],
        },
        Case {
            file: "turns.json",
            format: Format::Json,
            turns: vec![
                (I, "Describe your fine-tuning decision path.", Some(0), None),
                (
                    C,
                    "Prompting first, then RAG, then LoRA, QLoRA, and only then a full fine-tune.",
                    Some(4_250),
                    Some(12_000),
                ),
                (I, "When would you pick QLoRA?", Some(12_500), None),
                (C, "When GPU memory is the constraint.", Some(13_000), None),
            ],
        },
        Case {
            file: "turns_wrapped.json",
            format: Format::Json,
            turns: vec![
                (I, "How do you defend against prompt injection?", None, None),
                (
                    C,
                    "Separate instructions from data, and filter tool outputs.",
                    None,
                    None,
                ),
            ],
        },
    ]
}

fn summary(t: &Transcript) -> Vec<(Speaker, String, Option<u64>, Option<u64>)> {
    t.turns
        .iter()
        .map(|t| (t.speaker.clone(), t.text.clone(), t.start_ms, t.end_ms))
        .collect()
}

fn expected(case: &Case) -> Vec<(Speaker, String, Option<u64>, Option<u64>)> {
    case.turns
        .iter()
        .map(|(s, t, a, b)| (s.clone(), t.to_string(), *a, *b))
        .collect()
}

/// The invariant every evidence offset relies on, plus the canonical text's shape.
fn assert_offsets(t: &Transcript, what: &str) {
    let mut canonical = String::new();
    for turn in &t.turns {
        let span: String = t
            .text
            .chars()
            .skip(turn.start)
            .take(turn.end - turn.start)
            .collect();
        assert_eq!(span, turn.text, "{what}: span of turn {:?}", turn.text);
        let label: String = t
            .text
            .chars()
            .skip(turn.start - turn.speaker.label().chars().count() - 2)
            .take(turn.speaker.label().chars().count() + 2)
            .collect();
        assert_eq!(label, format!("{}: ", turn.speaker.label()), "{what}");
        assert_eq!(turn.text, turn.text.trim(), "{what}: turn text is trimmed");
        assert!(
            !turn.text.contains('\n') && !turn.text.contains("  ") && !turn.text.is_empty(),
            "{what}: turn text is one non-empty line with single spaces: {:?}",
            turn.text
        );
        canonical.push_str(&format!("{}: {}\n", turn.speaker.label(), turn.text));
    }
    assert_eq!(t.text, canonical, "{what}: canonical text");
}

#[test]
fn every_sample_parses_to_the_expected_turns_with_and_without_detection() {
    let limits = Limits::default();
    for case in cases() {
        let input = data(case.file);
        let detected =
            parse(&input, None, &limits).unwrap_or_else(|e| panic!("{}: {e}", case.file));
        assert_eq!(
            detected.format, case.format,
            "{}: detected format",
            case.file
        );
        assert_eq!(summary(&detected), expected(&case), "{}", case.file);
        assert_offsets(&detected, case.file);

        let declared = parse(&input, Some(case.format), &limits)
            .unwrap_or_else(|e| panic!("{} (declared): {e}", case.file));
        assert_eq!(declared, detected, "{}: declared = detected", case.file);
    }
}

#[test]
fn crlf_and_bom_do_not_change_the_transcript() {
    let limits = Limits::default();
    for case in cases() {
        let input = data(case.file);
        let plain = parse(&input, None, &limits).expect("parses");
        let text = String::from_utf8(input).expect("samples are UTF-8");
        let mut crlf = b"\xEF\xBB\xBF".to_vec();
        crlf.extend_from_slice(text.replace('\n', "\r\n").as_bytes());
        let variant = parse(&crlf, None, &limits)
            .unwrap_or_else(|e| panic!("{} with BOM and CRLF: {e}", case.file));
        assert_eq!(variant, plain, "{}", case.file);
    }
}

#[test]
fn canonical_text_parses_back_to_the_same_turns() {
    // One line per turn makes the canonical text itself a speaker-labelled transcript.
    let limits = Limits::default();
    for case in cases() {
        let t = parse(&data(case.file), None, &limits).expect("parses");
        if t.turns
            .iter()
            .any(|t| matches!(t.speaker, Speaker::Other(_)))
        {
            continue;
        }
        let again = parse(t.text.as_bytes(), Some(Format::Speaker), &limits)
            .unwrap_or_else(|e| panic!("{}: {e}", case.file));
        assert_eq!(again.text, t.text, "{}", case.file);
    }
}

#[test]
fn offsets_are_characters_for_non_ascii_text() {
    let t = parse(&data("speaker_unicode.txt"), None, &Limits::default()).expect("parses");
    let cafe_turn = &t.turns[1];
    // In bytes this turn starts later than in characters: ¿, ó, ú before it are 2 bytes each.
    let byte_start = t.text.find("Con un").expect("present");
    assert!(byte_start > cafe_turn.start);
    let prefix: String = t.text.chars().take(cafe_turn.start).collect();
    assert_eq!(
        prefix,
        "Interviewer: ¿Cómo evalúas el sistema?\nCandidate: "
    );
}

#[test]
fn evidence_found_in_the_transcript_maps_to_its_turn_and_cue_time() {
    let t = parse(&data("vtt_zoom.vtt"), None, &Limits::default()).expect("parses");
    let index = EvidenceIndex::new(&t.text);
    // The quote spans two caption cues that were merged into one turn.
    let (start, end) = index.locate("support bot that answers").expect("found");
    let turn = t.turn_at(start).expect("inside a turn");
    assert_eq!(turn.speaker, Speaker::Candidate);
    assert_eq!(turn.start_ms, Some(3_500));
    assert!(turn.start <= start && end <= turn.end);
    assert_eq!(index.locate("support bot that fixes"), None);
}

#[test]
fn detection_of_inline_texts() {
    let cases: &[(&str, Format)] = &[
        ("WEBVTT\n\n00:01.000 --> 00:02.000\nhi\n", Format::Vtt),
        ("\n\nWEBVTT\n", Format::Vtt),
        ("WEBVTTX\nnot a header\n", Format::Text),
        ("1\n00:00:01,000 --> 00:00:02,000\nhi\n", Format::Srt),
        // Numbered cues with dot decimals are not SRT; the label rules then see no dialogue.
        ("1\n00:00:01.000 --> 00:00:02.000\nhi\n", Format::Text),
        (
            "[{\"speaker\": \"Candidate\", \"text\": \"hi\"}]",
            Format::Json,
        ),
        ("{\"turns\": []}", Format::Json),
        ("{\"answer\": \"not turns\"}", Format::Text),
        ("[this is prose in brackets]", Format::Text),
        ("Interviewer: q\nCandidate: a\n", Format::Speaker),
        ("Q: q\nA: a\n", Format::Speaker),
        ("Jane: hi\nBob: hello\nJane: so\n", Format::Speaker),
        // Two names, neither recurring: not enough to call it a dialogue.
        ("Jane: hi\nBob: hello\n", Format::Text),
        // One recurring name is a heading style, not a dialogue.
        ("Note: one\nmore prose\nNote: two\n", Format::Text),
        ("Candidate: only one labelled line\nand prose", Format::Text),
        ("Just an answer about RAG.", Format::Text),
    ];
    for (text, want) in cases {
        assert_eq!(detect(text), *want, "text {text:?}");
    }
}

#[test]
fn format_names() {
    for (name, want) in [
        ("text", Format::Text),
        ("speaker", Format::Speaker),
        ("vtt", Format::Vtt),
        ("WebVTT", Format::Vtt),
        ("srt", Format::Srt),
        (" json ", Format::Json),
    ] {
        assert_eq!(format_from_name(name), Ok(want), "{name}");
    }
    let err = format_from_name("docx").expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "unknown transcript format `docx`; expected one of: text, speaker, vtt, webvtt, srt, json"
    );
    assert_eq!(err.code(), "unknown_format");
}

/// Checks an error's variant (by code) and its full message.
fn assert_err(result: Result<Transcript, IngestError>, code: &str, message: &str, what: &str) {
    let err = result.expect_err(what);
    assert_eq!(
        (err.code(), err.to_string().as_str()),
        (code, message),
        "{what}"
    );
}

#[test]
fn input_errors_in_check_order() {
    let limits = Limits::default();
    let cases: Vec<(&str, Vec<u8>, &str, String)> = vec![
        (
            "nothing",
            b"".to_vec(),
            "empty_input",
            "transcript is empty".into(),
        ),
        (
            "whitespace",
            b" \n\t\r\n ".to_vec(),
            "empty_input",
            "transcript is empty".into(),
        ),
        (
            "BOM only",
            b"\xEF\xBB\xBF\n".to_vec(),
            "empty_input",
            "transcript is empty".into(),
        ),
        (
            "unicode whitespace",
            "\u{3000}\u{00A0}\n".as_bytes().to_vec(),
            "empty_input",
            "transcript is empty".into(),
        ),
        (
            "NUL bytes",
            b"PK\x03\x04\x00\x00 zip".to_vec(),
            "binary_input",
            "input looks binary (contains NUL bytes)".into(),
        ),
        (
            "UTF-16",
            b"\xFF\xFEh\x00i\x00".to_vec(),
            "binary_input",
            "input looks binary (contains NUL bytes; it looks like UTF-16, save it as UTF-8)"
                .into(),
        ),
        (
            "control characters",
            b"\x01\x02\x03\x04abcdef".to_vec(),
            "binary_input",
            "input looks binary (40% of the first 10 bytes are control characters)".into(),
        ),
        (
            "Latin-1",
            b"Candidate: caf\xE9 is good".to_vec(),
            "not_utf8",
            "input is not valid UTF-8 at byte 14".into(),
        ),
        (
            "Latin-1 after a BOM: the offset counts the BOM",
            b"\xEF\xBB\xBFCandidate: caf\xE9 is good".to_vec(),
            "not_utf8",
            "input is not valid UTF-8 at byte 17".into(),
        ),
        (
            "binary wins over not-UTF-8",
            b"\xE9\x00".to_vec(),
            "binary_input",
            "input looks binary (contains NUL bytes)".into(),
        ),
    ];
    for (what, input, code, message) in cases {
        assert_err(parse(&input, None, &limits), code, &message, what);
    }
    // A few stray escape codes are not binary.
    let mostly_text = b"Candidate: colours \x1b[1mbold\x1b[0m are fine in a long enough answer.";
    let t = parse(mostly_text, None, &limits).expect("tolerated");
    assert!(
        !t.text.contains('\x1b'),
        "control characters are dropped: {:?}",
        t.text
    );
}

#[test]
fn size_limit_counts_characters_and_is_inclusive() {
    let limits = Limits::default();
    let at_limit = "a".repeat(200_000);
    assert!(parse(at_limit.as_bytes(), None, &limits).is_ok());
    let over = "a".repeat(200_001);
    assert_err(
        parse(over.as_bytes(), None, &limits),
        "input_too_large",
        "transcript has 200001 characters; the limit is 200000",
        "default limit",
    );
    // 11 characters but 22 bytes: the limit is in characters.
    let small = Limits {
        max_chars: 11,
        ..Limits::default()
    };
    assert!(parse("é".repeat(11).as_bytes(), None, &small).is_ok());
    assert_err(
        parse("é".repeat(12).as_bytes(), None, &small),
        "input_too_large",
        "transcript has 12 characters; the limit is 11",
        "custom limit",
    );
}

#[test]
fn turn_limit_counts_turns_after_merging() {
    let two = Limits {
        max_turns: 2,
        ..Limits::default()
    };
    let speaker = b"Interviewer: a\nCandidate: b\nInterviewer: c\n";
    assert_err(
        parse(speaker, None, &two),
        "too_many_turns",
        "transcript has 3 turns; the limit is 2",
        "speaker",
    );
    // Five SRT cues of one speaker merge into one turn, well within a limit of 1.
    let one = Limits {
        max_turns: 1,
        ..Limits::default()
    };
    let srt: String = (1..=5)
        .map(|i| format!("{i}\n00:00:0{i},000 --> 00:00:0{i},500\nCANDIDATE: part {i}\n\n"))
        .collect();
    let t = parse(srt.as_bytes(), None, &one).expect("merged to one turn");
    assert_eq!(t.turns.len(), 1);
    assert_eq!(t.turns[0].text, "part 1 part 2 part 3 part 4 part 5");
    assert_eq!(
        (t.turns[0].start_ms, t.turns[0].end_ms),
        (Some(1_000), Some(5_500))
    );
}

#[test]
fn malformed_inputs_name_the_format_line_and_problem() {
    let limits = Limits::default();
    let cases: &[(&str, Option<Format>, &str)] = &[
        (
            "bad_vtt_timing.vtt",
            None,
            "malformed vtt transcript at line 3: invalid cue timing `00:00:01.000 --> \
             00:00:xx.000`; expected `00:00:01.000 --> 00:00:04.000`",
        ),
        (
            "bad_vtt_no_timing.vtt",
            None,
            "malformed vtt transcript at line 8: expected a cue timing line like \
             `00:00:01.000 --> 00:00:04.000`, found `<v Candidate>This cue lost its timing line`",
        ),
        (
            "bad_vtt_backwards.vtt",
            None,
            "malformed vtt transcript at line 3: cue ends at 00:00:02.000 before it starts at \
             00:00:05.000",
        ),
        (
            "bad_srt_missing_timing.srt",
            None,
            "malformed srt transcript at line 6: expected a timing line after the cue number \
             like `00:00:01,000 --> 00:00:04,000`, found `CANDIDATE: no timing line`",
        ),
        (
            "bad_json_missing_text.json",
            Some(Format::Json),
            "malformed json transcript at line 4: missing field `text` (or `content`) (column 14)",
        ),
        (
            "bad_json_syntax.json",
            Some(Format::Json),
            "malformed json transcript at line 3: key must be a string (column 46)",
        ),
        (
            "bad_json_time.json",
            None,
            "malformed json transcript at line 2: time -3 is negative (column 56)",
        ),
        (
            "plain.txt",
            Some(Format::Vtt),
            "malformed vtt transcript at line 1: expected the `WEBVTT` header, found `I would \
             build the retrieval layer first.`",
        ),
        (
            "plain.txt",
            Some(Format::Srt),
            "malformed srt transcript at line 1: expected a cue number and a timing line like \
             `00:00:01,000 --> 00:00:04,000`, found `I would build the retrieval layer first.`",
        ),
        (
            "bad_speaker_no_labels.txt",
            Some(Format::Speaker),
            "malformed speaker transcript at line 1: no speaker labels found; expected lines \
             like `Interviewer: …` and `Candidate: …`",
        ),
        (
            "speaker_basic.txt",
            Some(Format::Json),
            "malformed json transcript at line 1: expected value (column 1)",
        ),
    ];
    for (file, format, message) in cases {
        assert_err(
            parse(&data(file), *format, &limits),
            "malformed_transcript",
            message,
            file,
        );
    }
}

#[test]
fn no_candidate_turns() {
    let limits = Limits::default();
    assert_err(
        parse(&data("speaker_three_names.txt"), None, &limits),
        "no_candidate_turns",
        "transcript has no candidate turns (speakers found: Interviewer, Jane, Bob); label \
         the candidate's lines `Candidate:`",
        "three names",
    );
    assert_err(
        parse(
            b"Interviewer: anyone there?\nInterviewer: hello?\n",
            None,
            &limits,
        ),
        "no_candidate_turns",
        "transcript has no candidate turns (speakers found: Interviewer); label the \
         candidate's lines `Candidate:`",
        "interviewer only",
    );
    // Declared as labelled, the essay's one `Note:` is the only label there is.
    assert_err(
        parse(&data("plain.txt"), Some(Format::Speaker), &limits),
        "no_candidate_turns",
        "transcript has no candidate turns (speakers found: Unlabelled, Note); label the \
         candidate's lines `Candidate:`",
        "essay declared as labelled",
    );
    assert_err(
        parse(b"WEBVTT\n\nNOTE nothing was said\n", None, &limits),
        "no_candidate_turns",
        "transcript has no candidate turns (it has no turns at all)",
        "no cues",
    );
    assert_err(
        parse(b"[]", None, &limits),
        "no_candidate_turns",
        "transcript has no candidate turns (it has no turns at all)",
        "empty JSON list",
    );
    // Labels with nothing after them are no turns either.
    assert_err(
        parse(
            b"Interviewer: q\nCandidate:\nInterviewer: q2\nCandidate:   \n",
            None,
            &limits,
        ),
        "no_candidate_turns",
        "transcript has no candidate turns (speakers found: Interviewer); label the \
         candidate's lines `Candidate:`",
        "empty candidate turns",
    );
}

#[test]
fn json_speaker_numbers_nulls_and_empty_texts() {
    let input = br#"[
        {"speaker": 0, "text": "Question one?", "start": "1.5"},
        {"speaker": 1, "text": "  ", "start": 2},
        {"speaker": 1, "text": "Answer one.", "start": 3, "end": 4.0004},
        {"speaker": null, "text": "[inaudible]"}
    ]"#;
    let t = parse(input, None, &Limits::default()).expect("parses");
    assert_eq!(
        summary(&t),
        vec![
            (I, "Question one?".to_string(), Some(1_500), None),
            (C, "Answer one.".to_string(), Some(3_000), Some(4_000)),
            (other("Unlabelled"), "[inaudible]".to_string(), None, None),
        ]
    );
    assert_offsets(&t, "json numbers");
}

#[test]
fn written_answers() {
    let limits = Limits::default();
    let t = written_answer(
        "\u{FEFF}  I'd use hybrid search.\n\n  Then re-rank with a cross-encoder.  ",
        &limits,
    )
    .expect("parses");
    assert_eq!(t.format, Format::WrittenAnswer);
    assert_eq!(
        summary(&t),
        vec![(
            C,
            "I'd use hybrid search. Then re-rank with a cross-encoder.".to_string(),
            None,
            None
        )]
    );
    assert_eq!(
        t.text,
        "Candidate: I'd use hybrid search. Then re-rank with a cross-encoder.\n"
    );
    assert_offsets(&t, "written answer");
    // A written answer is never re-interpreted as a labelled transcript.
    let labelled = written_answer("Interviewer: not really\nCandidate: mine", &limits).expect("ok");
    assert_eq!(labelled.turns.len(), 1);
    assert_eq!(labelled.turns[0].speaker, Speaker::Candidate);

    let small = Limits {
        max_chars: 5,
        ..Limits::default()
    };
    assert_err(
        written_answer(" \n ", &limits),
        "empty_input",
        "transcript is empty",
        "empty",
    );
    assert_err(
        written_answer("abc\0def", &limits),
        "binary_input",
        "input looks binary (contains NUL bytes)",
        "NUL",
    );
    assert_err(
        written_answer("abcdef", &small),
        "input_too_large",
        "transcript has 6 characters; the limit is 5",
        "large",
    );
}

#[test]
fn limits_default_and_deserialize_partially() {
    assert_eq!(
        Limits::default(),
        Limits {
            max_chars: 200_000,
            max_turns: 5_000
        }
    );
    let partial: Limits = serde_json::from_str(r#"{"max_chars": 1000}"#).expect("valid");
    assert_eq!((partial.max_chars, partial.max_turns), (1000, 5_000));
    assert!(serde_json::from_str::<Limits>(r#"{"max_char": 1}"#).is_err());
    // The module path is part of the public API used by the CLI and HTTP layers.
    let _ = ingest::parse;
}
