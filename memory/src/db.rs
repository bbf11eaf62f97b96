//! The SQLite file: opening, versioned migrations, one writer and a pool of readers.
//!
//! Concurrency model. SQLite allows one writer at a time; rather than let many connections race
//! for the lock (and surface `SQLITE_BUSY`), every write in this process goes through the one
//! writer connection behind a mutex, in an `IMMEDIATE` transaction (it takes the write lock at
//! `BEGIN`, so a transaction never has to upgrade from read to write and fail half way). Reads
//! use a pool of read-only connections; in WAL mode they never block the writer or each other.
//! Every connection has a busy timeout, which covers another process writing the same file (a
//! second daemon, the `sqlite3` shell); only if that outlasts the timeout does the caller see
//! [`MemoryError::Busy`], never a raw `SQLITE_BUSY`.
//!
//! Durability. `journal_mode=WAL` with `synchronous=NORMAL` by default: a commit is in the WAL
//! file (in the kernel's page cache) before the call returns, so it survives any crash of the
//! process (`kill -9`, OOM kill, panic), and the database can never be corrupted; only an
//! operating-system crash or power cut can lose the last commits. `synchronous=FULL` adds an
//! fsync per commit (about 4 ms on this kind of machine) and also survives power loss: choose
//! it with [`Synchronous::Full`].

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::{MemoryError, Result};

/// Schema changes, oldest first; the database's `user_version` is the number applied. Never
/// edit a released entry: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the knowledge graph.
    r#"
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;
    CREATE TABLE entities (
        id INTEGER PRIMARY KEY,
        scope TEXT NOT NULL CHECK (scope IN ('agent-only', 'workspace', 'global')),
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        entity_type TEXT NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (scope, namespace, name)
    ) STRICT;
    CREATE TABLE observations (
        id INTEGER PRIMARY KEY,
        entity_id INTEGER NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
        text TEXT NOT NULL,
        embedding BLOB NOT NULL CHECK (length(embedding) = 1536),
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX observations_by_entity ON observations (entity_id);
    CREATE TABLE relations (
        id INTEGER PRIMARY KEY,
        from_id INTEGER NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
        to_id INTEGER NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
        relation_type TEXT NOT NULL,
        strength REAL NOT NULL DEFAULT 1.0 CHECK (strength BETWEEN 0.0 AND 1.0),
        created_at INTEGER NOT NULL,
        UNIQUE (from_id, to_id, relation_type)
    ) STRICT;
    CREATE INDEX relations_by_target ON relations (to_id);
    "#,
    // 2: keyword search. One contentless FTS5 table (the text lives in the tables above):
    // rowid -id holds an entity's name, rowid +id an observation's text beside its entity's
    // name, so "alice tea" ranks Alice's tea observation first. Triggers keep it in step,
    // including the cascade when an entity is deleted; existing rows are indexed here.
    r#"
    CREATE VIRTUAL TABLE memory_fts USING fts5 (
        name, text,
        content = '', contentless_delete = 1,
        tokenize = 'unicode61 remove_diacritics 2'
    );
    INSERT INTO memory_fts (rowid, name, text) SELECT -id, name, '' FROM entities;
    INSERT INTO memory_fts (rowid, name, text)
        SELECT o.id, e.name, o.text FROM observations o JOIN entities e ON e.id = o.entity_id;
    CREATE TRIGGER entities_fts_insert AFTER INSERT ON entities BEGIN
        INSERT INTO memory_fts (rowid, name, text) VALUES (-new.id, new.name, '');
    END;
    CREATE TRIGGER entities_fts_delete AFTER DELETE ON entities BEGIN
        DELETE FROM memory_fts WHERE rowid = -old.id;
    END;
    CREATE TRIGGER observations_fts_insert AFTER INSERT ON observations BEGIN
        INSERT INTO memory_fts (rowid, name, text)
            SELECT new.id, e.name, new.text FROM entities e WHERE e.id = new.entity_id;
    END;
    CREATE TRIGGER observations_fts_delete AFTER DELETE ON observations BEGIN
        DELETE FROM memory_fts WHERE rowid = old.id;
    END;
    "#,
];

/// Newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The `synchronous` setting; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Survives any process crash; an OS crash or power cut may lose the last commits.
    #[default]
    Normal,
    /// Also survives power loss, at one fsync per commit.
    Full,
}

/// How to open the database.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Durability of commits.
    pub synchronous: Synchronous,
    /// How long a statement waits for another process's lock before failing with `Busy`.
    pub busy_timeout: Duration,
    /// Read connections in the pool.
    pub readers: u32,
    /// Cap on the database file size in bytes (rounded down to whole pages); writes beyond it
    /// fail with [`MemoryError::DiskFull`] as if the disk were full.
    pub max_bytes: Option<u64>,
    /// Size the write-ahead log is cut back to after a checkpoint; without it a WAL that grew
    /// once (a long read during a burst of writes) keeps its size on disk for good.
    pub wal_size_limit: u64,
}

/// Default [`DbOptions::wal_size_limit`]: 64 MiB, well above what one checkpoint interval
/// (1,000 pages) writes, so ordinary use never truncates and regrows the file.
pub const DEFAULT_WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(10),
            readers: 4,
            max_bytes: None,
            wal_size_limit: DEFAULT_WAL_SIZE_LIMIT,
        }
    }
}

/// An open database: the writer and the reader pool.
pub(crate) struct Db {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: r2d2::Pool<SqliteConnectionManager>,
}

impl Db {
    /// Open (creating if needed) and migrate the database at `path`.
    pub(crate) fn open(path: &Path, options: &DbOptions) -> Result<Self> {
        let open_err = |detail: String| MemoryError::Open {
            path: path.to_owned(),
            detail,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| open_err(format!("creating {}: {e}", parent.display())))?;
        }
        let mut writer = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        configure_writer(&writer, options).map_err(|e| open_err(e.to_string()))?;
        migrate(&mut writer, path)?;

        let busy = options.busy_timeout;
        let manager = SqliteConnectionManager::file(path)
            .with_flags(
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )
            .with_init(move |c| {
                c.busy_timeout(busy)?;
                c.pragma_update(None, "query_only", true)
            });
        // r2d2's default thread pool keeps its three threads until its 30 s reaper job is due,
        // after the pool is dropped: a process opening stores one after another piled up three
        // threads an open (found by the memory import fuzzer). One thread that drops its
        // pending jobs with the pool.
        let maintenance = scheduled_thread_pool::ScheduledThreadPool::builder()
            .num_threads(1)
            .thread_name_pattern("caxton-memory-pool")
            .on_drop_behavior(scheduled_thread_pool::OnPoolDropBehavior::DiscardPendingScheduled)
            .build();
        let readers = r2d2::Pool::builder()
            .thread_pool(std::sync::Arc::new(maintenance))
            .max_size(options.readers.max(1))
            .min_idle(Some(1))
            .connection_timeout(options.busy_timeout)
            .build(manager)
            .map_err(|e| open_err(format!("opening readers: {e}")))?;
        Ok(Self {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers,
        })
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` in an IMMEDIATE transaction on the writer and commit; then run `after` while
    /// still holding the writer, so changes to in-memory state follow commit order. Nothing of
    /// `f` persists when it or the commit fails.
    pub(crate) fn write<T, R>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T>,
        after: impl FnOnce(T) -> R,
    ) -> Result<R> {
        let mut conn = self.lock_writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(after(value))
    }

    /// Run `f` on the writer outside any transaction (pragmas, checkpoints).
    pub(crate) fn with_writer<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        f(&self.lock_writer())
    }

    /// Run `f` on a pooled read-only connection.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.readers.get()?;
        f(&conn)
    }

    fn lock_writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while writing left no transaction open (the Transaction's drop rolled it
        // back), so the connection is still usable: recover it rather than fail forever.
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn configure_writer(conn: &Connection, options: &DbOptions) -> Result<()> {
    conn.busy_timeout(options.busy_timeout)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(MemoryError::Database(format!(
            "the file system does not support WAL (journal_mode stayed {mode})"
        )));
    }
    let sync = match options.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(
        None,
        "journal_size_limit",
        i64::try_from(options.wal_size_limit).unwrap_or(i64::MAX),
    )?;
    if let Some(max) = options.max_bytes {
        let page: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let pages = i64::try_from(max).unwrap_or(i64::MAX) / page.max(512);
        conn.pragma_update(None, "max_page_count", pages.max(1))?;
    }
    Ok(())
}

/// Apply the migrations the file lacks, each in its own IMMEDIATE transaction (so a second
/// process opening the same file at the same moment waits instead of migrating twice).
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(MemoryError::SchemaTooNew {
                path: path.to_owned(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        let index = usize::try_from(version).unwrap_or(0);
        tx.execute_batch(MIGRATIONS[index])
            .map_err(|e| MemoryError::Open {
                path: path.to_owned(),
                detail: format!("migration to schema version {}: {e}", version + 1),
            })?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
        tracing::info!(path = %path.display(), version = version + 1, "memory schema migrated");
    }
}

/// Apply only the first `n` migrations: for tests of upgrades from older databases.
#[cfg(test)]
pub(crate) fn create_at_version(path: &Path, n: usize) -> Result<()> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    for (i, m) in MIGRATIONS.iter().take(n).enumerate() {
        conn.execute_batch(m)?;
        conn.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn regression_the_wal_shrinks_back_after_a_burst_that_outgrew_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let limit = 128 * 1024;
        let db = Db::open(
            &path,
            &DbOptions {
                wal_size_limit: limit,
                ..DbOptions::default()
            },
        )
        .unwrap();
        let wal = dir.path().join("m.db-wal");
        db.with_writer(|c| Ok(c.execute_batch("CREATE TABLE filler (b BLOB)")?))
            .unwrap();
        // A reader holding an old snapshot stops checkpoints, so the burst piles up in the WAL.
        let reader = Connection::open(&path).unwrap();
        reader
            .execute_batch("BEGIN; SELECT COUNT(*) FROM filler;")
            .unwrap();
        for _ in 0..64 {
            db.write(
                |tx| Ok(tx.execute("INSERT INTO filler VALUES (zeroblob(16384))", [])?),
                |_| (),
            )
            .unwrap();
        }
        let grown = std::fs::metadata(&wal).unwrap().len();
        assert!(grown > 4 * limit, "the WAL did not grow: {grown} bytes");
        reader.execute_batch("COMMIT").unwrap();
        db.with_writer(|c| Ok(c.execute_batch("PRAGMA wal_checkpoint(PASSIVE)")?))
            .unwrap();
        // The next write starts the log over and cuts the file back to the limit.
        db.write(|tx| Ok(tx.execute("DELETE FROM filler", [])?), |_| ())
            .unwrap();
        let after = std::fs::metadata(&wal).unwrap().len();
        assert!(after <= limit, "the WAL kept {after} bytes (limit {limit})");
    }

    #[test]
    fn a_newer_schema_is_refused_naming_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", SCHEMA_VERSION + 3)
                .unwrap();
        }
        let err = Db::open(&path, &DbOptions::default()).err().unwrap();
        let text = err.to_string();
        assert!(matches!(err, MemoryError::SchemaTooNew { .. }), "{text}");
        assert!(
            text.contains(&format!("schema version {}", SCHEMA_VERSION + 3))
                && text.contains(&format!("up to version {SCHEMA_VERSION}")),
            "{text}"
        );
    }

    #[test]
    fn an_older_database_is_upgraded_and_its_rows_become_searchable_by_keyword() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        create_at_version(&path, 1).unwrap();
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(&format!(
                "INSERT INTO entities (id, scope, namespace, name, entity_type, created_at, updated_at)
                     VALUES (7, 'global', '', 'Lisbon', 'city', 0, 0);
                 INSERT INTO observations (id, entity_id, text, embedding, created_at)
                     VALUES (3, 7, 'famous for its trams', zeroblob({}), 0);",
                crate::types::EMBEDDING_DIM * 4
            ))
            .unwrap();
        }
        let db = Db::open(&path, &DbOptions::default()).unwrap();
        let (version, by_name, by_text): (i64, i64, i64) = db
            .read(|c| {
                let find = |q: &str| {
                    c.query_row(
                        "SELECT rowid FROM memory_fts WHERE memory_fts MATCH ?1",
                        [q],
                        |r| r.get(0),
                    )
                };
                Ok((
                    c.pragma_query_value(None, "user_version", |r| r.get(0))?,
                    find("lisbon")?,
                    find("trams")?,
                ))
            })
            .unwrap();
        assert_eq!((version, by_name, by_text), (SCHEMA_VERSION, -7, 3));
    }

    #[test]
    fn opening_sets_wal_and_the_current_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("sub/m.db"), &DbOptions::default()).unwrap();
        let (mode, version): (String, i64) = db
            .read(|c| {
                Ok((
                    c.pragma_query_value(None, "journal_mode", |r| r.get(0))?,
                    c.pragma_query_value(None, "user_version", |r| r.get(0))?,
                ))
            })
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("m.db"), &DbOptions::default()).unwrap();
        let result: Result<()> = db.write(
            |tx| {
                tx.execute("INSERT INTO meta (key, value) VALUES ('a', 'b')", [])?;
                Err(crate::error::invalid("test", "fail after the insert"))
            },
            |()| (),
        );
        assert!(result.is_err());
        let n: i64 = db
            .read(|c| Ok(c.query_row("SELECT count(*) FROM meta", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(n, 0);
    }
}
