//! A usage ledger in a JSON-lines file (`budgets.ledger_path`): one [`UsageRecord`] per line,
//! appended; read back whole at open and then summed in memory.
//!
//! Why a file: `grader grade` runs are separate processes, and `grader usage` and the budget
//! caps need their history. It is the single-host ledger; several replicas share
//! [`StoreLedger`](super::StoreLedger) (the store's `usage` table) instead, since each process
//! here only sees the lines it has read at open plus its own.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::NaiveDate;

use super::{
    LedgerError, MemoryLedger, Spent, UsageFilter, UsageLedger, UsageRecord, UsageSummaryRow,
};

pub struct FileLedger {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    totals: MemoryLedger,
}

impl FileLedger {
    /// Opens (creating if missing) the ledger at `path` and loads its history. A line that
    /// does not parse is skipped with a warning rather than making all history unreadable.
    pub fn open(path: &Path) -> Result<FileLedger, LedgerError> {
        let err = |e: std::io::Error| LedgerError(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(err(e)),
        };
        let mut records = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<UsageRecord>(line) {
                Ok(r) => records.push(r),
                Err(e) => {
                    tracing::warn!(path = %path.display(), line = n + 1, error = %e, "unreadable usage record skipped")
                }
            }
        }
        let totals = MemoryLedger::new();
        totals.add(&records);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        Ok(FileLedger {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            totals,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl UsageLedger for FileLedger {
    async fn record(&self, records: &[UsageRecord]) -> Result<(), LedgerError> {
        let mut lines = String::new();
        for r in records {
            lines.push_str(&serde_json::to_string(r).map_err(|e| LedgerError(e.to_string()))?);
            lines.push('\n');
        }
        {
            // One write per grading, so concurrent writers (O_APPEND) never interleave lines.
            let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            f.write_all(lines.as_bytes())
                .map_err(|e| LedgerError(format!("{}: {e}", self.path.display())))?;
        }
        self.totals.add(records);
        Ok(())
    }

    async fn spent(&self, tenant: &str, day: NaiveDate) -> Result<Spent, LedgerError> {
        self.totals.spent(tenant, day).await
    }

    async fn summary(&self, filter: &UsageFilter) -> Result<Vec<UsageSummaryRow>, LedgerError> {
        self.totals.summary(filter).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_survive_a_reopen_and_bad_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/usage.jsonl");
        let rec = UsageRecord {
            at: "2026-11-29T10:00:00Z".parse().unwrap(),
            tenant: "t".into(),
            stage: "system_design".into(),
            prompt: "system_design@v1".into(),
            prompt_sha256: "abc".into(),
            model: "m".into(),
            tier: "cheap".into(),
            samples: 1,
            cached_samples: 0,
            prompt_tokens: 10,
            completion_tokens: 1,
            cached_tokens: 0,
            cost_usd: 0.5,
        };
        let l = FileLedger::open(&path).unwrap();
        l.record(std::slice::from_ref(&rec)).await.unwrap();
        drop(l);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{not json\n")
            .unwrap();
        let l = FileLedger::open(&path).unwrap();
        l.record(&[rec]).await.unwrap();
        let rows = l.summary(&UsageFilter::default()).await.unwrap();
        assert_eq!((rows[0].gradings, rows[0].cost_usd), (2, 1.0));
    }
}
