//! The supervisor's SQLite database: executions ([`executions`]), and the conversations and
//! messages they belong to ([`conversations`]).
//!
//! Invariant: an execution's row, the request message that started it and its conversation are
//! written in one transaction before its worker is spawned, and its end, the answer (or error)
//! message and the conversation's new state in one transaction after; a crash between the two
//! leaves a row marked `abandoned` at the next start, never a missing one.

mod conversations;
mod executions;

use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;

pub use conversations::{ConversationLookup, Exchange};

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
pub struct Store {
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
CREATE TABLE IF NOT EXISTS conversations (
    conversation_id TEXT PRIMARY KEY,
    initiator TEXT NOT NULL,
    protocol TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_update ON conversations(updated_at);
CREATE TABLE IF NOT EXISTS messages (
    message_id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(conversation_id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    reply_to TEXT,
    sender TEXT NOT NULL,
    receiver TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at REAL NOT NULL,
    execution_id TEXT,
    protocol TEXT NOT NULL DEFAULT 'request-reply'
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, created_at);
CREATE INDEX IF NOT EXISTS messages_by_reply ON messages(reply_to);
";

/// Indexes on columns [`migrate`] may have had to add first.
const LATE_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS executions_by_conversation ON executions(conversation_id, started_at);
CREATE INDEX IF NOT EXISTS executions_by_parent ON executions(parent_execution_id);
";

impl Store {
    /// Open (creating if needed) the database, and mark executions a previous crash left
    /// `running` as `abandoned`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_capped(path, None)
    }

    /// Open an existing database to read only, changing nothing (not even what a crash left
    /// running: a supervisor may hold it); `None` when there is no database yet, an error when
    /// an older version wrote it and no supervisor has brought it up to date.
    pub fn open_to_read(path: &Path) -> Result<Option<Self>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        // A database no supervisor of this version has opened yet lacks tables and columns the
        // queries read; reading must not migrate it (a supervisor may be starting on it).
        let current =
            rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .and_then(|c| {
                    // The newest column tells whether every migration has run.
                    let (table, column, _) = ADDED_COLUMNS[ADDED_COLUMNS.len() - 1];
                    c.query_row(
                        "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
                        [table, column],
                        |r| r.get::<_, bool>(0),
                    )
                })
                .map_err(|e| StoreError::Open {
                    path: path.to_owned(),
                    detail: e.to_string(),
                })?;
        if !current {
            return Err(StoreError::Open {
                path: path.to_owned(),
                detail: "written by an older caxton; start `caxton serve` (or run any agent) \
                         once to bring it up to date, then read it again"
                    .into(),
            });
        }
        let manager = SqliteConnectionManager::file(path)
            .with_flags(rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_init(|c| c.busy_timeout(Duration::from_secs(5)));
        let pool = r2d2::Pool::builder()
            .max_size(1)
            .build(manager)
            .map_err(|e| StoreError::Open {
                path: path.to_owned(),
                detail: e.to_string(),
            })?;
        Ok(Some(Self { pool }))
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
            conn.execute_batch(LATE_INDEXES)
                .map_err(|e| open_err(e.to_string()))?;
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
        let abandoned = conn
            .execute(
                "UPDATE executions SET status = 'abandoned', outcome = 'abandoned', \
                 error = 'the supervisor stopped while this execution was running' WHERE status = 'running'",
                [],
            )
            .map_err(|e| open_err(e.to_string()))?;
        // Nothing of a conversation runs across a restart: one that was in progress ended
        // with the supervisor that ran it (its messages stay).
        let interrupted = conn
            .execute(
                "UPDATE conversations SET state = 'failed' WHERE state = 'in-progress'",
                [],
            )
            .map_err(|e| open_err(e.to_string()))?;
        if abandoned > 0 || interrupted > 0 {
            tracing::warn!(
                abandoned,
                interrupted,
                "executions left running by a previous supervisor marked abandoned, their conversations failed"
            );
        }
        Ok(Self { pool })
    }
}

/// Columns added to tables after their first release, oldest first: (table, column, type).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("executions", "llm_ms", "REAL"),
    ("executions", "conversation_id", "TEXT"),
    ("executions", "parent_execution_id", "TEXT"),
    ("executions", "root_execution_id", "TEXT"),
    ("executions", "depth", "INTEGER NOT NULL DEFAULT 0"),
    (
        "messages",
        "protocol",
        "TEXT NOT NULL DEFAULT 'request-reply'",
    ),
    ("executions", "trace_id", "TEXT"),
];

/// Bring a database made by an older version up to the current columns; its rows stay.
fn migrate(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    for (table, column, kind) in ADDED_COLUMNS {
        let present: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get(0),
        )?;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
        }
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn a_database_from_before_conversations_keeps_its_rows_and_gains_the_columns() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("old.db");
        {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch(
                "CREATE TABLE executions (execution_id TEXT PRIMARY KEY, agent TEXT NOT NULL, \
                 agent_version TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT, error TEXT, \
                 worker_pid INTEGER, exit_code INTEGER, exit_signal INTEGER, started_at REAL NOT NULL, \
                 duration_ms REAL, provider TEXT, model TEXT, prompt_tokens INTEGER, completion_tokens INTEGER);
                 INSERT INTO executions (execution_id, agent, agent_version, status, outcome, started_at) \
                 VALUES ('old', 'hello', '1', 'finished', 'succeeded', 5.0);",
            )
            .unwrap();
        }
        let store = Store::open(&db).unwrap();
        let old = store.get("old").unwrap().unwrap();
        assert_eq!(old.outcome.as_deref(), Some("succeeded"));
        assert_eq!(old.placement.conversation_id, None);
        assert_eq!(store.recent(10).unwrap().len(), 1);
    }
}
