//! `llm::bpe` (the compact count-only BPE behind `llm::tokens`) against tiktoken-rs: the
//! counts must be identical, for both encodings, on every input we can find.
//!
//! Inputs: every file under `examples/transcripts/`, every file under `tests/data/` and
//! `golden/` read as text plus every string value inside their JSON / JSONL, hand-picked
//! edge cases, and a few thousand strings from a fixed-seed generator.
//!
//! The `#[ignore]`d tests at the end only print measurements (RSS, throughput); run each
//! alone, in release, so one encoding's tables do not sit in another's figure:
//!
//! ```text
//! cargo test --release --test tokens -- --ignored --nocapture --exact rss_bpe_o200k_base
//! cargo test --release --test tokens -- --ignored --nocapture throughput
//! ```

use std::path::{Path, PathBuf};

use grader::llm::bpe::Bpe;
use grader::llm::tokens::{count_tokens, Encoding};
use tiktoken_rs::CoreBPE;

fn encodings() -> [(&'static str, &'static Bpe, &'static CoreBPE, Encoding); 2] {
    [
        (
            "o200k_base",
            Bpe::o200k_base(),
            tiktoken_rs::o200k_base_singleton(),
            Encoding::O200kBase,
        ),
        (
            "cl100k_base",
            Bpe::cl100k_base(),
            tiktoken_rs::cl100k_base_singleton(),
            Encoding::Cl100kBase,
        ),
    ]
}

fn shorten(text: &str) -> String {
    if text.len() <= 300 {
        return format!("{text:?}");
    }
    let mut cut = 300;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{:?}… ({} bytes)", &text[..cut], text.len())
}

/// Compares every input in both encodings; panics with the first difference. Returns the
/// number of (input, encoding) pairs compared.
fn assert_same_counts<S: AsRef<str>>(what: &str, inputs: &[(String, S)]) -> usize {
    let mut compared = 0;
    for (label, text) in inputs {
        let text = text.as_ref();
        for (name, bpe, tiktoken, encoding) in encodings() {
            let expected = tiktoken.encode_ordinary(text).len();
            let ours = bpe.count(text);
            assert_eq!(
                ours,
                expected,
                "{what}: {name} counts differ on {label}: llm::bpe {ours}, tiktoken-rs {expected}; input {}",
                shorten(text)
            );
            assert_eq!(count_tokens(encoding, text), expected, "{what}: {label}");
            compared += 1;
        }
    }
    eprintln!("{what}: {compared} (input, encoding) pairs identical");
    compared
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn json_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| json_strings(v, out)),
        _ => {}
    }
}

/// Whole files as text, and for JSON / JSONL files every string value too (decoded, so
/// escaped newlines and unicode are real characters).
fn texts_of_files(dirs: &[&str]) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in dirs {
        files_under(&root.join(dir), &mut files);
    }
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // not UTF-8: not something we would count
        };
        let label = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let mut strings = Vec::new();
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => {
                if let Ok(value) = serde_json::from_str(&text) {
                    json_strings(&value, &mut strings);
                }
            }
            Some("jsonl") => {
                for line in text.lines() {
                    if let Ok(value) = serde_json::from_str(line) {
                        json_strings(&value, &mut strings);
                    }
                }
            }
            _ => {}
        }
        for (i, s) in strings.into_iter().enumerate() {
            out.push((format!("{label} string #{i}"), s));
        }
        out.push((label, text));
    }
    out
}

#[test]
fn transcripts_match_tiktoken() {
    let inputs = texts_of_files(&["examples/transcripts"]);
    assert!(inputs.len() >= 5, "expected the shipped transcripts");
    assert_same_counts("examples/transcripts", &inputs);
}

#[test]
fn test_data_and_golden_sets_match_tiktoken() {
    let inputs = texts_of_files(&["tests/data", "golden"]);
    assert!(inputs.len() > 100, "found only {} texts", inputs.len());
    assert_same_counts("tests/data + golden", &inputs);
}

/// Deterministic pseudo-random base64 (no padding, no line breaks).
fn base64_blob(len: usize, rng: &mut XorShift) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..len).map(|_| ALPHABET[rng.below(64)] as char).collect()
}

#[test]
fn edge_cases_match_tiktoken() {
    let mut rng = XorShift(0x5eed_1234_abcd_ef01);
    let lowercase: String = (0..10_000)
        .map(|_| (b'a' + rng.below(26) as u8) as char)
        .collect();
    let cases: Vec<String> = vec![
        String::new(),
        " ".into(),
        " ".repeat(50_000),
        " ".repeat(50_000) + "x",
        "\t".repeat(5_000) + "\n",
        "\n".repeat(10_000),
        "\r\n\r\n".into(),
        "a\r\n\r\n  b \n\n\n  ".into(),
        "😀".into(),
        "👨‍👩‍👧‍👦 👍🏽 🏳️‍🌈 ❤️‍🔥 🇫🇷🇯🇵".into(),
        "😀".repeat(2_000),
        "漢字かなカナ한국어 中文分词测试，没有空格的句子。".into(),
        "مرحبا بالعالم، هذا اختبار للعد".into(),
        "שלום עולם".into(),
        "e\u{301}te\u{301} n\u{303}o a\u{308}\u{304}\u{30c} Z\u{351}\u{34b}\u{34d}a\u{35b}l\u{33a}g".into(),
        "Привет, мир! Ελληνικά. ไทย हिन्दी".into(),
        base64_blob(20_000, &mut rng),
        format!("data:image/png;base64,{}==", base64_blob(20_000, &mut rng)),
        lowercase,
        "fn main() {\n\tlet x = 1;\n\t\tif x > 0 {\n\t\t\tprintln!(\"{x}\");\n\t\t}\n}\n".into(),
        "def f(x):\n    return x**2  # square\n\n\n".into(),
        "1234567".into(),
        "12345678901234567890 3.14159 1,000,000 ٣٤٥ ४५६".into(),
        "I'LL don't WE'VE you're SHE'S it's they'd I'M".into(),
        "<|endoftext|>".into(),
        "<|endoftext|><|fim_prefix|><|endofprompt|><|im_start|>".into(),
        "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
            .into(),
        "-".repeat(3_000),
        "=".repeat(99),
        "=".repeat(100),
        "=".repeat(101),
        "a".repeat(99),
        "a".repeat(100),
        "a".repeat(101),
        "https://example.com/a/b/c?d=e&f=g#h path/to/file.rs:12:34".into(),
        "\u{a0}\u{2003}\u{3000}\u{feff}\u{200b}x\u{85}y\u{2028}z".into(),
        "\u{0}\u{1}\u{7f}\u{fffd}".into(),
    ];
    let inputs: Vec<(String, String)> = cases
        .into_iter()
        .enumerate()
        .map(|(i, s)| (format!("edge case #{i}"), s))
        .collect();
    assert_same_counts("edge cases", &inputs);
}

/// xorshift64: a fixed-seed generator, so a failure reproduces.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

fn random_text(rng: &mut XorShift) -> String {
    #[rustfmt::skip]
    const WORDS: &[&str] = &[
        "the", "The", "THE", "token", "Tokenizer", "latency", "p99", "GPU", "kv-cache",
        "don't", "I'LL", "we've", "it's", "SHE'D", "naïve", "café", "Straße", "日本語", "中文",
        "한국어", "العربية", "עברית", "Ελληνικά", "русский", "हिन्दी", "ไทย", "e\u{301}",
        "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "x86_64", "snake_case", "camelCase", "HTTPServer", "<|endoftext|>",
    ];
    #[rustfmt::skip]
    const SPACES: &[&str] = &[
        " ", "  ", "    ", "\t", "\n", "\n\n", "\r\n", " \n", "\n   ", "\u{a0}", "\u{3000}",
    ];
    #[rustfmt::skip]
    const PUNCT: &[&str] = &[
        ".", ",", "!", "?", "...", "'", "\"", "(", ")", "[", "]", "{", "}", "/", "//", "\\",
        "-", "--", "—", "–", "…", ":", ";", "=>", "->", "::", "#", "@", "$", "%", "&", "*", "+",
        "=", "<", ">", "|", "~", "`", "```", "«", "»", "“", "”", "‘", "’", "·", "•", "€", "£",
        "©", "°", "±", "×", "÷", "√", "∞", "≤", "≥",
    ];
    let pieces = rng.below(60);
    let mut s = String::new();
    for _ in 0..pieces {
        match rng.below(10) {
            0..=3 => s.push_str(rng.pick(WORDS)),
            4 | 5 => s.push_str(rng.pick(SPACES)),
            6 => s.push_str(rng.pick(PUNCT)),
            7 => {
                for _ in 0..1 + rng.below(9) {
                    s.push(char::from(b'0' + rng.below(10) as u8));
                }
            }
            8 => {
                // A run of one whitespace kind, occasionally long.
                let run = if rng.below(8) == 0 {
                    1 + rng.below(300)
                } else {
                    1 + rng.below(6)
                };
                s.push_str(&rng.pick(SPACES).repeat(run));
            }
            _ => {
                // Random code points from a few ranges, including combining marks.
                let c = match rng.below(6) {
                    0 => 0x20 + rng.below(0x5f) as u32,
                    1 => 0xa0 + rng.below(0x250) as u32,
                    2 => 0x300 + rng.below(0x70) as u32,
                    3 => 0x4e00 + rng.below(0x5000) as u32,
                    4 => 0x1f300 + rng.below(0x300) as u32,
                    _ => 0x600 + rng.below(0x100) as u32,
                };
                s.push(char::from_u32(c).unwrap_or('?'));
            }
        }
    }
    s
}

#[test]
fn generated_strings_match_tiktoken() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let inputs: Vec<(String, String)> = (0..4_000)
        .map(|i| (format!("generated #{i}"), random_text(&mut rng)))
        .collect();
    let compared = assert_same_counts("generated", &inputs);
    assert_eq!(compared, 8_000);
}

#[test]
fn vocabularies_are_complete() {
    assert_eq!(Bpe::o200k_base().vocab_size(), 199_998);
    assert_eq!(Bpe::cl100k_base().vocab_size(), 100_256);
    // Every ordinary token tiktoken-rs knows is in the blob, at the same rank.
    for (name, bpe, tiktoken, _) in encodings() {
        for rank in 0..bpe.vocab_size() as u32 {
            let bytes = tiktoken
                .decode_bytes(&[rank])
                .expect("ordinary rank decodes");
            assert_eq!(bpe.rank(&bytes), Some(rank), "{name} rank {rank}");
        }
    }
}

// ---- measurements: print only, no assertions on time or memory ----

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn vm_rss_kib() -> Option<u64> {
    status_kib("VmRSS:")
}

fn print_rss_delta(what: &str, build: impl FnOnce() -> usize) {
    let mib = |kib: Option<u64>| kib.unwrap_or(0) as f64 / 1024.0;
    let (before, anon_before, file_before) =
        (vm_rss_kib(), status_kib("RssAnon:"), status_kib("RssFile:"));
    let tokens = build();
    let (after, anon_after, file_after) =
        (vm_rss_kib(), status_kib("RssAnon:"), status_kib("RssFile:"));
    match (before, after) {
        (Some(b), Some(a)) => println!(
            "{what}: VmRSS {:.1} MiB -> {:.1} MiB (+{:.1} MiB: heap +{:.1}, mapped binary +{:.1}); \
             sample = {tokens} tokens",
            b as f64 / 1024.0,
            a as f64 / 1024.0,
            (a as f64 - b as f64) / 1024.0,
            mib(anon_after) - mib(anon_before),
            mib(file_after) - mib(file_before),
        ),
        _ => println!("{what}: /proc/self/status not available"),
    }
}

const SAMPLE: &str = "hello world, it's a sample with 12345 digits";

#[test]
#[ignore = "measurement; run alone with --exact"]
fn rss_bpe_o200k_base() {
    print_rss_delta("llm::bpe o200k_base", || Bpe::o200k_base().count(SAMPLE));
}

#[test]
#[ignore = "measurement; run alone with --exact"]
fn rss_bpe_cl100k_base() {
    print_rss_delta("llm::bpe cl100k_base", || Bpe::cl100k_base().count(SAMPLE));
}

#[test]
#[ignore = "measurement; run alone with --exact"]
fn rss_tiktoken_o200k_base() {
    print_rss_delta("tiktoken-rs o200k_base", || {
        tiktoken_rs::o200k_base_singleton()
            .encode_ordinary(SAMPLE)
            .len()
    });
}

#[test]
#[ignore = "measurement; run alone with --exact"]
fn rss_tiktoken_cl100k_base() {
    print_rss_delta("tiktoken-rs cl100k_base", || {
        tiktoken_rs::cl100k_base_singleton()
            .encode_ordinary(SAMPLE)
            .len()
    });
}

#[test]
#[ignore = "measurement; run alone with --exact"]
fn rss_both_encodings() {
    print_rss_delta("llm::bpe both", || {
        Bpe::o200k_base().count(SAMPLE) + Bpe::cl100k_base().count(SAMPLE)
    });
    print_rss_delta("tiktoken-rs both (after llm::bpe)", || {
        tiktoken_rs::o200k_base_singleton()
            .encode_ordinary(SAMPLE)
            .len()
            + tiktoken_rs::cl100k_base_singleton()
                .encode_ordinary(SAMPLE)
                .len()
    });
}

#[test]
#[ignore = "measurement; run in release with --nocapture"]
fn throughput_old_vs_new() {
    use std::time::Instant;
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/transcripts/system_design_strong.txt");
    let text = std::fs::read_to_string(path).expect("sample transcript");
    let median = |f: &dyn Fn() -> usize| {
        let mut runs: Vec<f64> = (0..7)
            .map(|_| {
                let t0 = Instant::now();
                for _ in 0..200 {
                    std::hint::black_box(f());
                }
                t0.elapsed().as_secs_f64() / 200.0
            })
            .collect();
        runs.sort_by(f64::total_cmp);
        runs[3]
    };
    for (name, bpe, tiktoken, _) in encodings() {
        let tokens = bpe.count(&text);
        let ours = median(&|| bpe.count(std::hint::black_box(&text)));
        let theirs = median(&|| tiktoken.encode_ordinary(std::hint::black_box(&text)).len());
        println!(
            "{name}: {} bytes -> {tokens} tokens; llm::bpe {:.0} µs ({:.2} M tokens/s), tiktoken-rs {:.0} µs ({:.2} M tokens/s)",
            text.len(),
            ours * 1e6,
            tokens as f64 / ours / 1e6,
            theirs * 1e6,
            tokens as f64 / theirs / 1e6
        );
    }
}
