//! Loading prompt versions from disk, their identity (`id@version` + sha256 of the bytes), the
//! lock file of published versions, and lookups by reference or stage.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::render::{self, Compiled};
use super::{cmp_versions, parse_ref, PromptError, PromptFile};
use crate::domain::{PromptRef, Stage};

/// The lock file's name inside the prompts directory.
pub const LOCK_FILE: &str = "prompts.lock";

/// One prompt version as loaded: the parsed file, its identity and whether it is published.
/// Compiled templates and the rendered system message are cached inside on first use, so
/// rendering many candidates never recompiles or re-renders the static part.
pub struct PromptVersion {
    pub file: PromptFile,
    /// Lowercase hex sha256 of the file's exact bytes.
    pub sha256: String,
    pub path: PathBuf,
    /// True when `id@version` is in the lock file (whether or not the bytes still match; a
    /// mismatch is a lint error, see [`super::lint`]).
    pub published: bool,
    /// The file's text, kept so diffs show exactly the bytes that were hashed.
    pub source: String,
    pub(crate) compiled: OnceLock<Result<Compiled, (&'static str, String)>>,
}

impl PromptVersion {
    /// Parses one prompt file's bytes. `path` is only used for identity and error messages;
    /// nothing is read from disk. The result is unpublished until a [`Registry`] marks it.
    pub fn from_bytes(
        path: impl Into<PathBuf>,
        bytes: &[u8],
    ) -> Result<PromptVersion, PromptError> {
        let path = path.into();
        let sha256 = hex::encode(Sha256::digest(bytes));
        let source = match std::str::from_utf8(bytes) {
            Ok(s) => s.to_string(),
            Err(e) => {
                let (line, column) = line_col(bytes, e.valid_up_to());
                return Err(PromptError::Parse {
                    path,
                    line,
                    column,
                    message: "file is not valid UTF-8".to_string(),
                });
            }
        };
        let file: PromptFile = toml::from_str(&source).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|r| line_col(source.as_bytes(), r.start))
                .unwrap_or((1, 1));
            PromptError::Parse {
                path: path.clone(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        Ok(PromptVersion {
            file,
            sha256,
            path,
            published: false,
            source,
            compiled: OnceLock::new(),
        })
    }

    /// Reads and parses one prompt file.
    pub fn read(path: &Path) -> Result<PromptVersion, PromptError> {
        let bytes = std::fs::read(path).map_err(|error| PromptError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        PromptVersion::from_bytes(path, &bytes)
    }

    /// What a report records about the prompt that produced it.
    pub fn prompt_ref(&self) -> PromptRef {
        PromptRef {
            id: self.file.id.clone(),
            version: self.file.version.clone(),
            sha256: self.sha256.clone(),
        }
    }

    /// `id@version`, the key used in the lock file and in references.
    pub fn key(&self) -> String {
        format!("{}@{}", self.file.id, self.file.version)
    }

    /// The rendered system message. It depends only on this version, so it is rendered once
    /// and reused for every candidate (and is what providers cache as a prefix).
    pub fn system_message(&self) -> Result<&str, PromptError> {
        Ok(&self.compiled()?.system)
    }

    pub(crate) fn compiled(&self) -> Result<&Compiled, PromptError> {
        self.compiled
            .get_or_init(|| render::compile(&self.file))
            .as_ref()
            .map_err(|(which, message)| PromptError::Template {
                key: self.key(),
                which,
                message: message.clone(),
            })
    }
}

impl Clone for PromptVersion {
    /// Clones the data; the template cache is rebuilt lazily by the clone.
    fn clone(&self) -> Self {
        PromptVersion {
            file: self.file.clone(),
            sha256: self.sha256.clone(),
            path: self.path.clone(),
            published: self.published,
            source: self.source.clone(),
            compiled: OnceLock::new(),
        }
    }
}

impl fmt::Debug for PromptVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromptVersion")
            .field("key", &self.key())
            .field("sha256", &self.sha256)
            .field("path", &self.path)
            .field("published", &self.published)
            .finish_non_exhaustive()
    }
}

/// All prompt versions of a prompts directory plus its lock.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: Option<PathBuf>,
    /// Sorted by id, then naturally by version.
    versions: Vec<PromptVersion>,
    /// The lock file's entries: `id@version` → sha256 at publication.
    lock: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFileShape {
    #[serde(default)]
    versions: BTreeMap<String, String>,
}

/// Reads the lock file; a missing file means nothing is published yet.
pub(crate) fn read_lock(path: &Path) -> Result<BTreeMap<String, String>, PromptError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(error) => {
            return Err(PromptError::Io {
                path: path.to_path_buf(),
                error,
            })
        }
    };
    parse_lock(path, &text)
}

pub(crate) fn parse_lock(path: &Path, text: &str) -> Result<BTreeMap<String, String>, PromptError> {
    let lock_err = |message: String| PromptError::Lock {
        path: path.to_path_buf(),
        message,
    };
    let shape: LockFileShape = toml::from_str(text).map_err(|e| {
        let (line, _) = e
            .span()
            .map(|r| line_col(text.as_bytes(), r.start))
            .unwrap_or((1, 1));
        lock_err(format!("line {line}: {}", e.message().trim()))
    })?;
    for (key, sha) in &shape.versions {
        match parse_ref(key) {
            Ok((_, Some(_))) => {}
            _ => return Err(lock_err(format!("`{key}` is not `id@version`"))),
        }
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(lock_err(format!(
                "`{key}` = `{sha}` is not a sha256 hex digest"
            )));
        }
    }
    Ok(shape.versions)
}

impl Registry {
    /// Loads `dir/<stage>/<version>.toml` for every subdirectory (hidden ones and any other
    /// files are ignored) and `dir/prompts.lock`. Fails on the first file that does not parse,
    /// naming it and the line, because a half-loaded registry would silently grade with a
    /// different prompt set. Semantic problems (an incomplete rubric, a changed published
    /// version) do not fail loading; [`super::lint`] reports them.
    pub fn load(dir: &Path) -> Result<Registry, PromptError> {
        let io_err = |path: &Path, error| PromptError::Io {
            path: path.to_path_buf(),
            error,
        };
        let lock = read_lock(&dir.join(LOCK_FILE))?;
        let mut versions = Vec::new();
        for sub in sorted_entries(dir).map_err(|e| io_err(dir, e))? {
            if is_hidden(&sub) || !sub.is_dir() {
                continue;
            }
            for path in sorted_entries(&sub).map_err(|e| io_err(&sub, e))? {
                if is_hidden(&path)
                    || !path.is_file()
                    || path.extension().and_then(|e| e.to_str()) != Some("toml")
                {
                    continue;
                }
                versions.push(PromptVersion::read(&path)?);
            }
        }
        let mut reg = Registry::from_versions(versions, lock)?;
        reg.dir = Some(dir.to_path_buf());
        Ok(reg)
    }

    /// Builds a registry from already-parsed versions and lock entries (for tests and for
    /// prompts embedded in the binary). Marks each version published iff the lock has its key.
    pub fn from_versions(
        versions: Vec<PromptVersion>,
        lock: BTreeMap<String, String>,
    ) -> Result<Registry, PromptError> {
        let mut versions = versions;
        versions.sort_by(|a, b| {
            a.file
                .id
                .cmp(&b.file.id)
                .then_with(|| cmp_versions(&a.file.version, &b.file.version))
                .then_with(|| a.file.version.cmp(&b.file.version))
        });
        for pair in versions.windows(2) {
            if pair[0].key() == pair[1].key() {
                return Err(PromptError::Duplicate {
                    key: pair[0].key(),
                    first: pair[0].path.clone(),
                    second: pair[1].path.clone(),
                });
            }
        }
        for v in &mut versions {
            v.published = lock.contains_key(&v.key());
        }
        Ok(Registry {
            dir: None,
            versions,
            lock,
        })
    }

    /// The directory this registry was loaded from (`None` when built in memory).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The lock file's entries, `id@version` → sha256 recorded at publication.
    pub fn lock_entries(&self) -> &BTreeMap<String, String> {
        &self.lock
    }

    /// Every version, sorted by id then naturally by version.
    pub fn list(&self) -> &[PromptVersion] {
        &self.versions
    }

    pub fn get(&self, id: &str, version: &str) -> Option<&PromptVersion> {
        self.versions
            .iter()
            .find(|v| v.file.id == id && v.file.version == version)
    }

    /// The highest version of `id` in natural order (`v10` over `v2`), published or not.
    pub fn latest(&self, id: &str) -> Option<&PromptVersion> {
        self.versions.iter().rfind(|v| v.file.id == id)
    }

    /// The version to grade `stage` with when none is named: among the versions whose `stage`
    /// matches, published ones win over drafts (a draft in the directory must not change
    /// production grading), then the prompt whose id is the stage name, then the highest
    /// version.
    pub fn for_stage(&self, stage: Stage) -> Option<&PromptVersion> {
        self.versions
            .iter()
            .filter(|v| v.file.stage == stage)
            .max_by(|a, b| {
                a.published
                    .cmp(&b.published)
                    .then_with(|| (a.file.id == stage.as_str()).cmp(&(b.file.id == stage.as_str())))
                    .then_with(|| b.file.id.cmp(&a.file.id))
                    .then_with(|| cmp_versions(&a.file.version, &b.file.version))
            })
    }

    /// Resolves `id@version` exactly, or `id` to its latest version.
    pub fn resolve(&self, reference: &str) -> Result<&PromptVersion, PromptError> {
        let (id, version) = parse_ref(reference)?;
        let found = match &version {
            Some(v) => self.get(&id, v),
            None => self.latest(&id),
        };
        found.ok_or_else(|| PromptError::NotFound {
            reference: reference.trim().to_string(),
            available: if self.versions.is_empty() {
                "none".to_string()
            } else {
                self.versions
                    .iter()
                    .map(PromptVersion::key)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
    }
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        out.push(entry?.path());
    }
    out.sort();
    Ok(out)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(bytes: &[u8], offset: usize) -> (usize, usize) {
    let offset = offset.min(bytes.len());
    let before = &bytes[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &[u8] = include_bytes!("../../tests/data/prompts/good/system_design/v1.toml");

    #[test]
    fn registry_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Registry>();
        assert_send_sync::<PromptVersion>();
    }

    #[test]
    fn templates_compile_once_per_version() {
        let pv = PromptVersion::from_bytes("system_design/v1.toml", FIXTURE).expect("fixture");
        assert!(pv.compiled.get().is_none());
        let first = pv.system_message().expect("renders").as_ptr();
        assert!(pv.compiled.get().is_some());
        assert_eq!(pv.system_message().expect("renders").as_ptr(), first);
        // A clone starts with an empty cache and renders the same text.
        let clone = pv.clone();
        assert!(clone.compiled.get().is_none());
        assert_eq!(clone.system_message().ok(), pv.system_message().ok());
    }

    #[test]
    fn line_col_is_one_based() {
        let text = b"a = 1\nbb = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 8), (2, 3));
    }

    #[test]
    fn lock_rejects_bad_keys_and_digests() {
        let p = Path::new("prompts.lock");
        assert!(parse_lock(p, "# header\n").unwrap().is_empty());
        let sha = "a".repeat(64);
        let ok = parse_lock(p, &format!("[versions]\n\"x@v1\" = \"{sha}\"\n")).unwrap();
        assert_eq!(ok.get("x@v1"), Some(&sha));
        assert!(parse_lock(p, &format!("[versions]\n\"x\" = \"{sha}\"\n")).is_err());
        assert!(parse_lock(p, "[versions]\n\"x@v1\" = \"abc\"\n").is_err());
        assert!(parse_lock(p, "[other]\n").is_err());
    }
}
