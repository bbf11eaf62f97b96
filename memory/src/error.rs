//! The one error type of the crate, with the SQLite failures a caller must tell apart (disk
//! full, busy, a database from a newer Caxton) mapped to their own variants.

use std::path::PathBuf;

/// Why a memory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The caller's input was refused before anything was written.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Which value (for example `observation text`, `entity name`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A byte string that must be text is not valid UTF-8.
    #[error("{what} is not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 {
        /// What was being read.
        what: String,
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// A named entity does not exist in the given scope.
    #[error("no entity named {name:?} in scope {scope}")]
    EntityNotFound {
        /// The scope searched.
        scope: String,
        /// The missing name.
        name: String,
    },
    /// The database file was written by a newer Caxton whose schema this build does not know.
    #[error(
        "memory database {path} has schema version {found}, but this build of caxton supports up to version {supported}: upgrade caxton, or restore a backup made by this version"
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The disk (or the configured size limit) is full; the failed write changed nothing.
    #[error(
        "memory database is full (no space on the disk, or a file size limit reached): the write was rolled back and nothing was changed; free space and retry"
    )]
    DiskFull,
    /// Another process held the database locked for longer than the busy timeout.
    #[error(
        "memory database stayed locked by another process beyond the busy timeout; retry later"
    )]
    Busy,
    /// The database could not be opened or migrated.
    #[error("memory database {path}: {detail}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// An import file is malformed or incompatible; nothing was imported.
    #[error("import refused, nothing was changed: {record}: {reason}")]
    Import {
        /// The record at fault (for example `entities[3] "Alice"` or `line 7`).
        record: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The embedding model failed or is missing.
    #[error(transparent)]
    Embedding(#[from] crate::embed::EmbedError),
    /// Any other SQLite failure.
    #[error("memory database: {0}")]
    Database(String),
    /// Writing an export failed.
    #[error("writing export: {0}")]
    Io(#[from] std::io::Error),
}

impl From<rusqlite::Error> for MemoryError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Self::DiskFull,
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Self::Busy
            }
            // A write that hit RLIMIT_FSIZE or ENOSPC at the start of a page reports an I/O
            // error rather than SQLITE_FULL; to the caller both mean "no space".
            Some(rusqlite::ErrorCode::SystemIoFailure) if is_write_failure(&e) => Self::DiskFull,
            _ => Self::Database(e.to_string()),
        }
    }
}

impl From<r2d2::Error> for MemoryError {
    fn from(e: r2d2::Error) -> Self {
        Self::Database(format!("reader pool: {e}"))
    }
}

/// True for the extended I/O error code of a failed write (ENOSPC or EFBIG on a fresh page).
fn is_write_failure(e: &rusqlite::Error) -> bool {
    use rusqlite::ffi;
    match e {
        rusqlite::Error::SqliteFailure(f, _) => f.extended_code == ffi::SQLITE_IOERR_WRITE,
        _ => false,
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = MemoryError> = std::result::Result<T, E>;

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> MemoryError {
    MemoryError::InvalidInput {
        field,
        reason: reason.into(),
    }
}
