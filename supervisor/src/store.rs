//! The supervisor's SQLite database: one row per execution, written when it starts and again
//! when it ends, so a crash leaves a row marked `abandoned` rather than no trace.

use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{OptionalExtension, params};

use crate::tools::ToolCallRecord;
use crate::worker_pool::ExecutionReport;

/// Database failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Opening or migrating the database failed.
    #[error("database {path}: {detail}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// A write found no room: the disk, or the database's `max_size`, is full.
    #[error(
        "the execution history database is full (no space left on its disk, or its max_size reached): {0}"
    )]
    Full(String),
    /// A query failed.
    #[error("database: {0}")]
    Query(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        let full = match &e {
            rusqlite::Error::SqliteFailure(f, _) => {
                f.code == rusqlite::ErrorCode::DiskFull
                    // ENOSPC or EFBIG on a fresh page is reported as a write I/O error.
                    || f.extended_code == rusqlite::ffi::SQLITE_IOERR_WRITE
            }
            _ => false,
        };
        if full {
            Self::Full(e.to_string())
        } else {
            Self::Query(e.to_string())
        }
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        Self::Query(e.to_string())
    }
}

pub use caxton_api_contract::ExecutionRecord;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct ExecutionStore {
    pool: r2d2::Pool<SqliteConnectionManager>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS executions (
    execution_id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT,
    error TEXT,
    worker_pid INTEGER,
    exit_code INTEGER,
    exit_signal INTEGER,
    started_at REAL NOT NULL,
    duration_ms REAL,
    provider TEXT,
    model TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    llm_ms REAL
);
CREATE INDEX IF NOT EXISTS executions_by_agent ON executions(agent, started_at);
CREATE TABLE IF NOT EXISTS tool_calls (
    execution_id TEXT NOT NULL REFERENCES executions(execution_id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    tool TEXT NOT NULL,
    arguments TEXT NOT NULL,
    result_bytes INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (execution_id, seq)
);
";

impl ExecutionStore {
    /// Open (creating if needed) the database, and mark executions a previous crash left
    /// `running` as `abandoned`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_capped(path, None)
    }

    /// As [`open`](Self::open); with `max_bytes`, writes that would grow the file beyond it fail
    /// with [`StoreError::Full`], as on a full disk.
    pub fn open_capped(path: &Path, max_bytes: Option<u64>) -> Result<Self, StoreError> {
        let open_err = |detail: String| StoreError::Open {
            path: path.to_owned(),
            detail,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| open_err(format!("cannot create {}: {e}", dir.display())))?;
        }
        // Switch to WAL and create the schema on one connection before the pool opens several:
        // concurrent journal-mode changes on a fresh file fail with "database is locked".
        {
            let conn = rusqlite::Connection::open(path).map_err(|e| open_err(e.to_string()))?;
            conn.busy_timeout(Duration::from_secs(5))
                .map_err(|e| open_err(e.to_string()))?;
            conn.execute_batch("PRAGMA journal_mode=WAL;")
                .map_err(|e| open_err(e.to_string()))?;
            conn.execute_batch(SCHEMA)
                .map_err(|e| open_err(e.to_string()))?;
            migrate(&conn).map_err(|e| open_err(e.to_string()))?;
        }
        let manager = SqliteConnectionManager::file(path).with_init(move |c| {
            c.busy_timeout(Duration::from_secs(5))?;
            c.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
            if let Some(max) = max_bytes {
                let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
                let pages = i64::try_from(max).unwrap_or(i64::MAX) / page_size.max(512);
                c.pragma_update(None, "max_page_count", pages.max(1))?;
            }
            Ok(())
        });
        let pool = r2d2::Pool::builder()
            .max_size(4)
            .build(manager)
            .map_err(|e| open_err(e.to_string()))?;
        let conn = pool.get().map_err(|e| open_err(e.to_string()))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| open_err(e.to_string()))?;
        let abandoned = conn
            .execute(
                "UPDATE executions SET status = 'abandoned', outcome = 'abandoned', \
                 error = 'the supervisor stopped while this execution was running' WHERE status = 'running'",
                [],
            )
            .map_err(|e| open_err(e.to_string()))?;
        if abandoned > 0 {
            tracing::warn!(
                abandoned,
                "executions left running by a previous supervisor marked abandoned"
            );
        }
        Ok(Self { pool })
    }

    /// Record that an execution started.
    pub fn record_start(
        &self,
        execution_id: &str,
        agent: &str,
        version: &str,
        started_at: f64,
    ) -> Result<(), StoreError> {
        self.pool.get()?.execute(
            "INSERT INTO executions (execution_id, agent, agent_version, status, started_at) VALUES (?1, ?2, ?3, 'running', ?4)",
            params![execution_id, agent, version, started_at],
        )?;
        Ok(())
    }

    /// Record how an execution ended.
    pub fn record_finish(&self, r: &ExecutionReport) -> Result<(), StoreError> {
        let usage = r.usage.as_ref();
        let mut conn = self.pool.get()?;
        // The row and its tool calls land together or not at all.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO executions (execution_id, agent, agent_version, status, outcome, error, worker_pid, exit_code, \
             exit_signal, started_at, duration_ms, provider, model, prompt_tokens, completion_tokens, llm_ms) \
             VALUES (?1, ?2, ?3, 'finished', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
             ON CONFLICT(execution_id) DO UPDATE SET status = 'finished', outcome = ?4, error = ?5, worker_pid = ?6, \
             exit_code = ?7, exit_signal = ?8, duration_ms = ?10, provider = ?11, model = ?12, prompt_tokens = ?13, \
             completion_tokens = ?14, llm_ms = ?15",
            params![
                r.execution_id,
                r.agent,
                r.agent_version,
                r.outcome.label(),
                r.error,
                r.worker_pid,
                r.exit_code,
                r.exit_signal,
                r.started_at,
                r.duration_ms,
                usage.map(|u| u.provider.as_str()),
                usage.map(|u| u.model.as_str()),
                usage.and_then(|u| u.prompt_tokens),
                usage.and_then(|u| u.completion_tokens),
                r.llm_ms,
            ],
        )?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO tool_calls (execution_id, seq, tool, arguments, result_bytes, duration_ms, outcome, error) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (seq, c) in r.tool_calls.iter().enumerate() {
                insert.execute(params![
                    r.execution_id,
                    seq as i64,
                    c.tool,
                    c.arguments,
                    c.result_bytes as i64,
                    c.duration_ms,
                    c.outcome,
                    c.error,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// One execution by id.
    pub fn get(&self, execution_id: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&format!("{SELECT} WHERE execution_id = ?1"))?;
        let Some(mut record) = stmt.query_row([execution_id], row_to_record).optional()? else {
            return Ok(None);
        };
        let mut calls = conn.prepare_cached(
            "SELECT tool, arguments, result_bytes, duration_ms, outcome, error FROM tool_calls \
             WHERE execution_id = ?1 ORDER BY seq",
        )?;
        record.tool_calls = calls
            .query_map([execution_id], |row| {
                Ok(ToolCallRecord {
                    tool: row.get(0)?,
                    arguments: row.get(1)?,
                    result_bytes: row.get::<_, i64>(2)? as usize,
                    duration_ms: row.get(3)?,
                    outcome: row.get(4)?,
                    error: row.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(Some(record))
    }

    /// The most recent executions, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<ExecutionRecord>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt =
            conn.prepare_cached(&format!("{SELECT} ORDER BY started_at DESC LIMIT ?1"))?;
        let rows = stmt.query_map([limit as i64], row_to_record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

const SELECT: &str = "SELECT execution_id, agent, agent_version, status, outcome, error, worker_pid, exit_code, \
    exit_signal, started_at, duration_ms, provider, model, prompt_tokens, completion_tokens, llm_ms FROM executions";

/// Bring a database made by an older version up to the current columns.
fn migrate(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let has_llm_ms: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('executions') WHERE name = 'llm_ms'",
        [],
        |r| r.get(0),
    )?;
    if !has_llm_ms {
        conn.execute_batch("ALTER TABLE executions ADD COLUMN llm_ms REAL")?;
    }
    Ok(())
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionRecord> {
    Ok(ExecutionRecord {
        execution_id: row.get(0)?,
        agent: row.get(1)?,
        agent_version: row.get(2)?,
        status: row.get(3)?,
        outcome: row.get(4)?,
        error: row.get(5)?,
        worker_pid: row.get(6)?,
        exit_code: row.get(7)?,
        exit_signal: row.get(8)?,
        started_at: row.get(9)?,
        duration_ms: row.get(10)?,
        provider: row.get(11)?,
        model: row.get(12)?,
        prompt_tokens: row.get(13)?,
        completion_tokens: row.get(14)?,
        llm_ms: row.get(15)?,
        tool_calls: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_leaves_running_rows_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        let store = ExecutionStore::open(&db).unwrap();
        store.record_start("e1", "hello", "1", 1.0).unwrap();
        drop(store);
        let store = ExecutionStore::open(&db).unwrap();
        let rec = store.get("e1").unwrap().unwrap();
        assert_eq!(rec.status, "abandoned");
        assert!(rec.error.unwrap().contains("supervisor stopped"));
    }
}
