//! Judge prompts: the files in `prompts/`, their version identity (label + sha256 of the file's
//! bytes), the lock file that freezes published versions, linting, diffing and rendering.
//!
//! Layout on disk:
//!
//! ```text
//! prompts/
//!   prompts.lock                 # [versions] "system_design@v1" = "<sha256 of the file's bytes>"
//!   system_design/v1.toml        # a PromptFile; id = directory = stage, version = file stem
//!   system_design/v2.toml
//! ```
//!
//! Invariants this module keeps:
//! - a version's identity is `id@version` plus the sha256 of the file's exact bytes, so any
//!   edit (even whitespace) is a different prompt and changes every cache key that used it;
//! - a published version (one in the lock) is immutable: [`lint`] fails when its bytes change
//!   and [`lock`] never rewrites an existing entry;
//! - the rendered system message depends only on the prompt version (never on the candidate),
//!   so providers can cache it as a prefix; candidate content only ever appears in the user
//!   message, inside a block delimited by a per-request boundary the candidate cannot predict.
//!
//! Templates are minijinja with strict undefined, `trim_blocks` and `lstrip_blocks` (the same
//! whitespace rules as Hugging Face chat templates), and no auto-escaping.

pub mod diff;
pub mod file;
pub mod lint;
pub mod registry;
pub mod render;
pub mod schema;

use std::cmp::Ordering;
use std::path::PathBuf;

pub use diff::diff;
pub use file::{Example, PromptFile, Template};
pub use lint::{lint, lock, LintIssue, LintSeverity};
pub use registry::{PromptVersion, Registry, LOCK_FILE};
pub use render::{render, RenderInput, Rendered, CANDIDATE_VARS, STATIC_VARS};
pub use schema::output_schema;

/// Everything that can go wrong loading, resolving or rendering judge prompts. Each variant
/// names the file or the prompt version involved, because the reader is usually fixing a
/// prompt file by hand.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// Reading a prompt file, the lock or the prompts directory failed. The underlying error
    /// is part of the message (not a `source`) so it shows however the error is printed.
    #[error("cannot read {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Writing the lock file failed.
    #[error("cannot write {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A prompt file is not valid UTF-8 TOML in the `PromptFile` shape. Line and column are
    /// 1-based so editors can jump to them.
    #[error("{}:{line}:{column}: invalid prompt file: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// The lock file exists but cannot be read as `[versions] "id@version" = "<sha256>"`.
    #[error("{}: invalid lock file: {message}", path.display())]
    Lock { path: PathBuf, message: String },
    /// Two files claim the same `id@version`; which one a grading used would be ambiguous.
    #[error("prompt version {key} is defined twice: {} and {}", first.display(), second.display())]
    Duplicate {
        key: String,
        first: PathBuf,
        second: PathBuf,
    },
    /// A `--prompt` style reference that is not `id` or `id@version`.
    #[error(
        "invalid prompt reference `{0}`: expected `id` or `id@version` (e.g. `system_design@v1`)"
    )]
    BadReference(String),
    /// A reference that names no loaded prompt version.
    #[error("no prompt version `{reference}`; available: {available}")]
    NotFound {
        reference: String,
        available: String,
    },
    /// A template failed to compile or render (syntax error, undefined variable, or the
    /// system template using candidate variables).
    #[error("{key}: {which} template: {message}")]
    Template {
        key: String,
        which: &'static str,
        message: String,
    },
}

/// Splits `"system_design@v2"` into `("system_design", Some("v2"))` and `"system_design"` into
/// `("system_design", None)` (meaning: the latest version). Rejects empty parts and stray `@`s
/// so a typo cannot silently resolve to "latest".
pub fn parse_ref(s: &str) -> Result<(String, Option<String>), PromptError> {
    let s = s.trim();
    let bad = || PromptError::BadReference(s.to_string());
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    match s.split_once('@') {
        None if valid(s) => Ok((s.to_string(), None)),
        Some((id, version)) if valid(id) && valid(version) => {
            Ok((id.to_string(), Some(version.to_string())))
        }
        _ => Err(bad()),
    }
}

/// Orders version labels naturally, so `v2 < v10` and `v1 < v1.1 < v2`: runs of digits compare
/// by numeric value, everything else by text. Ties (e.g. `v01` vs `v1`) fall back to plain
/// string order so the order is total and deterministic.
pub fn cmp_versions(a: &str, b: &str) -> Ordering {
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let ord = match (x, y) {
            (Chunk::Num(x), Chunk::Num(y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            (Chunk::Num(_), Chunk::Text(_)) => Ordering::Less,
            (Chunk::Text(_), Chunk::Num(_)) => Ordering::Greater,
            (Chunk::Text(x), Chunk::Text(y)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

enum Chunk<'a> {
    Num(&'a str),
    Text(&'a str),
}

fn chunks(s: &str) -> Vec<Chunk<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut digit: Option<bool> = None;
    for (i, c) in s.char_indices() {
        let d = c.is_ascii_digit();
        if digit.is_some_and(|prev| prev != d) {
            out.push(chunk(&s[start..i], !d));
            start = i;
        }
        digit = Some(d);
    }
    if let Some(d) = digit {
        out.push(chunk(&s[start..], d));
    }
    out
}

fn chunk(s: &str, digits: bool) -> Chunk<'_> {
    if digits {
        Chunk::Num(s)
    } else {
        Chunk::Text(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_naturally() {
        let mut v = vec!["v10", "v2", "v1", "v1.1", "v9", "v2-beta"];
        v.sort_by(|a, b| cmp_versions(a, b));
        assert_eq!(v, ["v1", "v1.1", "v2", "v2-beta", "v9", "v10"]);
        assert_eq!(cmp_versions("v2", "v10"), Ordering::Less);
        assert_eq!(cmp_versions("v10", "v10"), Ordering::Equal);
        assert_ne!(cmp_versions("v01", "v1"), Ordering::Equal);
    }

    #[test]
    fn parse_ref_accepts_id_and_id_at_version() {
        assert_eq!(
            parse_ref("system_design@v2").unwrap(),
            ("system_design".to_string(), Some("v2".to_string()))
        );
        assert_eq!(
            parse_ref("system_design").unwrap(),
            ("system_design".to_string(), None)
        );
        for bad in ["", "@v1", "system_design@", "a@b@c", "sys design"] {
            assert!(parse_ref(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
