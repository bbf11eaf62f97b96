//! Execution rows: written when an execution starts and again when it ends, each time with the
//! message that started or answered it and its conversation's new state.

use rusqlite::{OptionalExtension, params};

use super::conversations::{self, Exchange};
use super::{ExecutionRecord, Store, StoreError, now_seconds};
use crate::tools::ToolCallRecord;
use crate::worker_pool::{ExecutionReport, Placement};
use caxton_api_contract::runs::ExecutionFilter;

impl Store {
    /// Record that an execution started, with the request that started it: the conversation
    /// (created if new), the request message and the execution's row land together.
    pub fn record_start(
        &self,
        execution_id: &str,
        agent: &str,
        version: &str,
        started_at: f64,
        exchange: &Exchange,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        conversations::open_exchange(&tx, exchange, execution_id, now_seconds())?;
        tx.execute(
            "INSERT INTO executions (execution_id, agent, agent_version, status, started_at, conversation_id, \
             parent_execution_id, root_execution_id, depth) VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7, ?8)",
            params![
                execution_id,
                agent,
                version,
                started_at,
                exchange.conversation_id,
                exchange.parent_execution_id,
                exchange.root_execution_id,
                exchange.depth,
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Record how an execution ended, with its answer (or error) message.
    pub fn record_finish(
        &self,
        r: &ExecutionReport,
        exchange: &Exchange,
    ) -> Result<(), StoreError> {
        let usage = r.usage.as_ref();
        let mut conn = self.pool.get()?;
        // The row, its tool calls, its answer and the conversation land together or not at all.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO executions (execution_id, agent, agent_version, status, outcome, error, worker_pid, exit_code, \
             exit_signal, started_at, duration_ms, provider, model, prompt_tokens, completion_tokens, llm_ms, \
             conversation_id, parent_execution_id, root_execution_id, depth, trace_id) \
             VALUES (?1, ?2, ?3, 'finished', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20) \
             ON CONFLICT(execution_id) DO UPDATE SET status = 'finished', outcome = ?4, error = ?5, worker_pid = ?6, \
             exit_code = ?7, exit_signal = ?8, duration_ms = ?10, provider = ?11, model = ?12, prompt_tokens = ?13, \
             completion_tokens = ?14, llm_ms = ?15, trace_id = ?20",
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
                exchange.conversation_id,
                exchange.parent_execution_id,
                exchange.root_execution_id,
                exchange.depth,
                r.trace_id,
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
        conversations::close_exchange(&tx, exchange, r, now_seconds())?;
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
        record.children = conn
            .prepare_cached(
                "SELECT execution_id FROM executions WHERE parent_execution_id = ?1 \
                 ORDER BY started_at, rowid",
            )?
            .query_map([execution_id], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(Some(record))
    }

    /// The most recent executions, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<ExecutionRecord>, StoreError> {
        self.executions(&ExecutionFilter {
            limit: Some(limit),
            ..ExecutionFilter::default()
        })
    }

    /// The executions `filter` selects, newest first (at most 20 unless it says, 1000 at most).
    pub fn executions(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionRecord>, StoreError> {
        let conn = self.pool.get()?;
        // Unset filters match everything, so one statement serves every combination.
        let mut stmt = conn.prepare_cached(&format!(
            "{SELECT} WHERE (?1 IS NULL OR agent = ?1) \
             AND (?2 IS NULL OR status = ?2 OR outcome = ?2) \
             AND (?3 IS NULL OR started_at >= ?3) \
             ORDER BY started_at DESC LIMIT ?4"
        ))?;
        let limit = filter.limit.unwrap_or(20).min(1000) as i64;
        let rows = stmt.query_map(
            params![filter.agent, filter.status, filter.since, limit],
            row_to_record,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

const SELECT: &str = "SELECT execution_id, agent, agent_version, status, outcome, error, worker_pid, exit_code, \
    exit_signal, started_at, duration_ms, provider, model, prompt_tokens, completion_tokens, llm_ms, \
    conversation_id, parent_execution_id, root_execution_id, trace_id FROM executions";

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
        children: Vec::new(),
        trace_id: row.get(19)?,
        placement: Placement {
            conversation_id: row.get(16)?,
            parent_execution_id: row.get(17)?,
            root_execution_id: row.get(18)?,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use crate::store::conversations::tests::exchange;

    #[test]
    fn a_crash_leaves_running_rows_abandoned_and_keeps_their_request() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        let store = Store::open(&db).unwrap();
        store
            .record_start("e1", "hello", "1", 1.0, &exchange("c1", "hello", "hi"))
            .unwrap();
        drop(store);
        let store = Store::open(&db).unwrap();
        let rec = store.get("e1").unwrap().unwrap();
        assert_eq!(rec.status, "abandoned");
        assert!(rec.error.unwrap().contains("supervisor stopped"));
        assert_eq!(rec.placement.conversation_id.as_deref(), Some("c1"));
        let shown = store.conversation("c1", 0.0).unwrap().unwrap();
        assert_eq!(shown.messages.len(), 1, "the request is kept");
        assert_eq!(shown.messages[0].content, "hi");
        assert_eq!(
            shown.conversation.state,
            caxton_api_contract::conversations::ConversationState::Failed
        );
        assert_eq!(shown.executions[0].status, "abandoned");
    }
}
