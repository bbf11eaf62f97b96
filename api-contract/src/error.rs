//! The one shape of every error answer: `{"error": {"kind": ..., "message": ...}}`, with the
//! execution's report when a run failed and the file, line and reason when an agent file was
//! refused.

use serde::{Deserialize, Serialize};

use crate::runs::ExecutionReport;

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// What went wrong.
    pub error: ErrorDetail,
    /// The report of the run that failed, when the error is a run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<Box<ExecutionReport>>,
    /// The refused file, when an agent file was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Its line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The kind and message of an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable kind (`unknown_agent`, `deadline_exceeded`, ...).
    pub kind: String,
    /// What a user reads.
    pub message: String,
}

impl ErrorAnswer {
    /// An error of `kind` saying `message`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                kind: kind.into(),
                message: message.into(),
            },
            execution: None,
            file: None,
            line: None,
            reason: None,
        }
    }
}
