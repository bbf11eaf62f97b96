//! Conversations and their messages: a request opens (or continues) a conversation and is
//! stored as a message before its execution starts; its answer or error is stored when it ends.

use std::collections::BTreeMap;

use caxton_api_contract::conversations::{
    ConversationDetail, ConversationState, ConversationSummary, ExecutionNode, Message,
    MessageKind, Party, Protocol,
};
use caxton_ipc_protocol::Turn;
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use crate::worker_pool::{ExecutionReport, Outcome};

/// The message that starts an execution, and where that execution sits in its conversation
/// and its tree; kept until the execution ends, so its answer is filed beside it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The conversation, created by the first message that names it.
    pub conversation_id: String,
    /// How the conversation's agents interact (set when it is created).
    pub protocol: Protocol,
    /// The starting message's id.
    pub message_id: String,
    /// A request (answered) or a notification (answered only if it fails).
    pub kind: MessageKind,
    /// Who asked.
    pub sender: Party,
    /// Whom it was addressed to: the agent, or the capability or topic that reached it.
    pub receiver: Party,
    /// The request's text.
    pub content: String,
    /// The execution that delegated this one.
    pub parent_execution_id: Option<String>,
    /// The caller's execution at the root of the tree.
    pub root_execution_id: String,
    /// Delegations between the root and this execution.
    pub depth: u32,
    /// Idle seconds after which the conversation expires.
    pub expires_after: f64,
}

impl Exchange {
    /// Where the execution it starts sits, as reports and records show it.
    pub fn placement(&self) -> caxton_api_contract::Placement {
        caxton_api_contract::Placement {
            conversation_id: Some(self.conversation_id.clone()),
            parent_execution_id: self.parent_execution_id.clone(),
            root_execution_id: Some(self.root_execution_id.clone()),
        }
    }
}

/// What a request that continues a conversation finds.
#[derive(Debug)]
pub enum ConversationLookup {
    /// No conversation has this id.
    Unknown,
    /// It expired at this time (seconds since the epoch).
    Expired(f64),
    /// It can go on; these are its earlier turns, oldest first.
    Open(Vec<Turn>),
}

/// Most bytes of earlier turns given to an agent; the oldest go first beyond it, so a long
/// conversation never makes a job frame too large for the protocol.
const HISTORY_BYTES: usize = 256 * 1024;

/// Store the conversation (new, or now in progress again) and the starting message.
pub(super) fn open_exchange(
    tx: &rusqlite::Transaction<'_>,
    ex: &Exchange,
    execution_id: &str,
    now: f64,
) -> Result<(), StoreError> {
    // In progress while any of its executions runs, a delegated one included (a notification
    // may start after its root ended); `close_exchange` settles it when the last one ends.
    tx.execute(
        "INSERT INTO conversations (conversation_id, initiator, protocol, state, created_at, updated_at, expires_at) \
         VALUES (?1, ?2, ?3, 'in-progress', ?4, ?4, ?5) \
         ON CONFLICT(conversation_id) DO UPDATE SET state = 'in-progress', updated_at = ?4, expires_at = ?5",
        params![
            ex.conversation_id,
            ex.sender.to_key(),
            ex.protocol.as_str(),
            now,
            now + ex.expires_after,
        ],
    )?;
    insert_message(
        tx,
        ex.protocol,
        &Message {
            id: ex.message_id.clone(),
            kind: ex.kind,
            conversation_id: ex.conversation_id.clone(),
            reply_to: None,
            sender: ex.sender.clone(),
            receiver: ex.receiver.clone(),
            content: ex.content.clone(),
            timestamp: now,
            execution_id: Some(execution_id.to_owned()),
        },
    )
}

/// Store the answer (or error) of an execution, and the conversation's state when a caller's
/// request ended.
pub(super) fn close_exchange(
    tx: &rusqlite::Transaction<'_>,
    ex: &Exchange,
    report: &ExecutionReport,
    now: f64,
) -> Result<(), StoreError> {
    let succeeded = report.outcome == Outcome::Succeeded;
    // A notification's sender does not wait: only a failure is worth a message back.
    if ex.kind == MessageKind::Request || !succeeded {
        let (kind, content) = match (&report.answer, report.failure_message()) {
            (Some(answer), None) => (MessageKind::Response, answer.clone()),
            (_, Some(error)) => (MessageKind::Error, error),
            (None, None) => (MessageKind::Response, String::new()),
        };
        insert_message(
            tx,
            ex.protocol,
            &Message {
                id: uuid::Uuid::new_v4().to_string(),
                kind,
                conversation_id: ex.conversation_id.clone(),
                reply_to: Some(ex.message_id.clone()),
                sender: Party::Agent(report.agent.clone()),
                receiver: ex.sender.clone(),
                content,
                timestamp: now,
                execution_id: Some(report.execution_id.clone()),
            },
        )?;
    }
    // In progress while another execution of it runs (a broadcast, a concurrent turn, a
    // notification still at work); else as its last caller's request ended.
    tx.execute(
        "UPDATE conversations SET updated_at = ?2, expires_at = ?3, state = CASE \
           WHEN EXISTS (SELECT 1 FROM executions WHERE conversation_id = ?1 AND status = 'running' \
             AND execution_id != ?4) THEN 'in-progress' \
           ELSE COALESCE((SELECT CASE WHEN outcome = 'succeeded' THEN 'completed' ELSE 'failed' END \
             FROM executions WHERE conversation_id = ?1 AND parent_execution_id IS NULL \
             AND status != 'running' ORDER BY started_at DESC, rowid DESC LIMIT 1), state) END \
         WHERE conversation_id = ?1",
        params![
            ex.conversation_id,
            now,
            now + ex.expires_after,
            report.execution_id,
        ],
    )?;
    Ok(())
}

fn insert_message(
    tx: &rusqlite::Transaction<'_>,
    protocol: Protocol,
    m: &Message,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO messages (message_id, conversation_id, kind, reply_to, sender, receiver, content, created_at, \
         execution_id, protocol) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        m.id,
        m.conversation_id,
        m.kind.as_str(),
        m.reply_to,
        m.sender.to_key(),
        m.receiver.to_key(),
        m.content,
        m.timestamp,
        m.execution_id,
        protocol.as_str(),
    ])?;
    Ok(())
}

const SUMMARY: &str = "SELECT c.conversation_id, c.initiator, c.protocol, c.state, c.created_at, c.updated_at, c.expires_at, \
    (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.conversation_id), \
    (SELECT COUNT(*) FROM executions e WHERE e.conversation_id = c.conversation_id), \
    (SELECT group_concat(agent, char(31)) FROM (SELECT DISTINCT agent FROM executions e \
       WHERE e.conversation_id = c.conversation_id ORDER BY agent)) \
    FROM conversations c";

/// A stored text that does not parse is a database written by something else: a query error.
fn parsed<T: std::str::FromStr<Err = String>>(column: usize, text: &str) -> rusqlite::Result<T> {
    text.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into())
    })
}

fn party(column: usize, key: &str) -> rusqlite::Result<Party> {
    Party::from_key(key).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            format!("not a party: {key:?}").into(),
        )
    })
}

fn row_to_summary(
    now: f64,
) -> impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<ConversationSummary> {
    move |row| {
        let mut state: ConversationState = parsed(3, &row.get::<_, String>(3)?)?;
        let expires_at: f64 = row.get(6)?;
        // Expiry is read, not swept: an idle conversation past its time is expired.
        if state != ConversationState::InProgress && expires_at < now {
            state = ConversationState::Expired;
        }
        let participants: Option<String> = row.get(9)?;
        Ok(ConversationSummary {
            id: row.get(0)?,
            initiator: party(1, &row.get::<_, String>(1)?)?,
            protocol: parsed(2, &row.get::<_, String>(2)?)?,
            state,
            created_at: row.get(4)?,
            updated_at: row.get(5)?,
            expires_at,
            messages: row.get::<_, i64>(7)?.max(0) as u64,
            executions: row.get::<_, i64>(8)?.max(0) as u64,
            participants: participants
                .map(|p| p.split('\u{1f}').map(str::to_owned).collect())
                .unwrap_or_default(),
        })
    }
}

impl Store {
    /// Store a message that starts no execution (a contract-net's word to the proposers it did
    /// not choose), in a conversation that exists.
    pub fn record_notice(&self, protocol: Protocol, message: &Message) -> Result<(), StoreError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction()?;
        insert_message(&tx, protocol, message)?;
        tx.execute(
            "UPDATE conversations SET updated_at = ?2 WHERE conversation_id = ?1",
            params![message.conversation_id, message.timestamp],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Whether conversation `id` can be continued at `now`, with its last `max_turns` caller
    /// requests and their answers.
    pub fn continue_conversation(
        &self,
        id: &str,
        now: f64,
        max_turns: usize,
    ) -> Result<ConversationLookup, StoreError> {
        let conn = self.pool.get()?;
        let found: Option<(String, f64)> = conn
            .prepare_cached(
                "SELECT state, expires_at FROM conversations WHERE conversation_id = ?1",
            )?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((state, expires_at)) = found else {
            return Ok(ConversationLookup::Unknown);
        };
        if state != "in-progress" && expires_at < now {
            return Ok(ConversationLookup::Expired(expires_at));
        }
        let mut turns: Vec<Turn> = conn
            .prepare_cached(
                "SELECT r.sender, q.content, r.content FROM messages q \
                 JOIN messages r ON r.reply_to = q.message_id AND r.kind = 'response' \
                 WHERE q.conversation_id = ?1 AND q.sender = 'caller' AND q.kind = 'request' \
                 AND q.protocol = 'request-reply' \
                 ORDER BY q.created_at DESC, q.rowid DESC LIMIT ?2",
            )?
            .query_map(params![id, max_turns as i64], |r| {
                let sender: String = r.get(0)?;
                Ok(Turn {
                    agent: party(0, &sender)?.agent().unwrap_or_default().to_owned(),
                    request: r.get(1)?,
                    answer: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        // Newest first so far: keep the newest that fit, then put them back in order.
        let mut bytes = 0;
        turns.retain(|t| {
            bytes += t.request.len() + t.answer.len();
            bytes <= HISTORY_BYTES
        });
        turns.reverse();
        Ok(ConversationLookup::Open(turns))
    }

    /// The most recently changed conversations, newest first.
    pub fn conversations(
        &self,
        limit: usize,
        now: f64,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt =
            conn.prepare_cached(&format!("{SUMMARY} ORDER BY c.updated_at DESC LIMIT ?1"))?;
        let rows = stmt.query_map([limit as i64], row_to_summary(now))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The messages that started and answered execution `execution_id` of conversation
    /// `conversation_id`, oldest first.
    pub fn execution_messages(
        &self,
        conversation_id: &str,
        execution_id: &str,
    ) -> Result<Vec<Message>, StoreError> {
        let conn = self.pool.get()?;
        let messages = conn
            .prepare_cached(&format!(
                "{MESSAGE} WHERE conversation_id = ?1 AND execution_id = ?2 ORDER BY created_at, rowid"
            ))?
            .query_map([conversation_id, execution_id], row_to_message)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(messages)
    }

    /// One conversation with its messages and its tree of executions.
    pub fn conversation(
        &self,
        id: &str,
        now: f64,
    ) -> Result<Option<ConversationDetail>, StoreError> {
        let conn = self.pool.get()?;
        let Some(conversation) = conn
            .prepare_cached(&format!("{SUMMARY} WHERE c.conversation_id = ?1"))?
            .query_row([id], row_to_summary(now))
            .optional()?
        else {
            return Ok(None);
        };
        let messages = conn
            .prepare_cached(&format!(
                "{MESSAGE} WHERE conversation_id = ?1 ORDER BY created_at, rowid"
            ))?
            .query_map([id], row_to_message)?
            .collect::<Result<Vec<_>, _>>()?;
        let rows = conn
            .prepare_cached(
                "SELECT execution_id, agent, status, outcome, error, started_at, duration_ms, prompt_tokens, \
                 completion_tokens, parent_execution_id FROM executions WHERE conversation_id = ?1 \
                 ORDER BY started_at, rowid",
            )?
            .query_map([id], |r| {
                Ok((
                    ExecutionNode {
                        execution_id: r.get(0)?,
                        agent: r.get(1)?,
                        status: r.get(2)?,
                        outcome: r.get(3)?,
                        error: r.get(4)?,
                        started_at: r.get(5)?,
                        duration_ms: r.get(6)?,
                        prompt_tokens: r.get(7)?,
                        completion_tokens: r.get(8)?,
                        children: Vec::new(),
                    },
                    r.get::<_, Option<String>>(9)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(ConversationDetail {
            conversation,
            messages,
            executions: tree(rows),
        }))
    }
}

/// Nest executions under their parents, keeping start order; one whose parent is not in the
/// conversation is a root.
fn tree(rows: Vec<(ExecutionNode, Option<String>)>) -> Vec<ExecutionNode> {
    let ids: std::collections::HashSet<String> =
        rows.iter().map(|(n, _)| n.execution_id.clone()).collect();
    let mut children: BTreeMap<String, Vec<ExecutionNode>> = BTreeMap::new();
    let mut order: Vec<(ExecutionNode, Option<String>)> = Vec::with_capacity(rows.len());
    for (node, parent) in rows {
        order.push((node, parent.filter(|p| ids.contains(p))));
    }
    // Children start after their parents: attach from the last started backwards.
    let mut roots = Vec::new();
    for (mut node, parent) in order.into_iter().rev() {
        if let Some(mut mine) = children.remove(&node.execution_id) {
            mine.reverse();
            node.children = mine;
        }
        match parent {
            Some(p) => children.entry(p).or_default().push(node),
            None => roots.push(node),
        }
    }
    roots.reverse();
    roots
}

/// The columns of a message, for [`row_to_message`].
const MESSAGE: &str = "SELECT message_id, kind, reply_to, sender, receiver, content, created_at, \
     execution_id, conversation_id FROM messages";

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: r.get(0)?,
        kind: parsed(1, &r.get::<_, String>(1)?)?,
        reply_to: r.get(2)?,
        sender: party(3, &r.get::<_, String>(3)?)?,
        receiver: party(4, &r.get::<_, String>(4)?)?,
        content: r.get(5)?,
        timestamp: r.get(6)?,
        execution_id: r.get(7)?,
        conversation_id: r.get(8)?,
    })
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use crate::worker_pool::new_report;

    /// A caller's request to `agent` in conversation `conversation`.
    pub(crate) fn exchange(conversation: &str, agent: &str, content: &str) -> Exchange {
        Exchange {
            conversation_id: conversation.into(),
            protocol: Protocol::RequestReply,
            message_id: uuid::Uuid::new_v4().to_string(),
            kind: MessageKind::Request,
            sender: Party::Caller,
            receiver: Party::Agent(agent.into()),
            content: content.into(),
            parent_execution_id: None,
            root_execution_id: String::new(),
            depth: 0,
            expires_after: 3600.0,
        }
    }

    fn answered(store: &Store, ex: &Exchange, id: &str, agent: &str, answer: Option<&str>) {
        store.record_start(id, agent, "1", 1.0, ex).unwrap();
        answered_started(store, ex, id, agent, answer);
    }

    /// Record the end of execution `id`, started already.
    fn answered_started(store: &Store, ex: &Exchange, id: &str, agent: &str, answer: Option<&str>) {
        let agent_def = crate::agent::parse_agent(
            std::path::Path::new("a.toml"),
            &format!("name = \"{agent}\"\nversion = \"1\"\nsystem_prompt = \"s\"\nuser_prompt_template = \"{{{{ request }}}}\"\n"),
        )
        .unwrap();
        let mut report = new_report(id.into(), &agent_def, 1.0, 2.0, Outcome::Succeeded);
        match answer {
            Some(a) => report.answer = Some(a.into()),
            None => {
                report.outcome = Outcome::AgentFailed {
                    message: "no".into(),
                };
                report.error = Some("no".into());
            }
        }
        store.record_finish(&report, ex).unwrap();
    }

    #[test]
    fn a_continued_conversation_gives_the_earlier_answered_turns_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db")).unwrap();
        answered(&store, &exchange("c", "ann", "one"), "e1", "ann", Some("1"));
        answered(&store, &exchange("c", "ann", "two"), "e2", "ann", None);
        answered(
            &store,
            &exchange("c", "bob", "three"),
            "e3",
            "bob",
            Some("3"),
        );
        let ConversationLookup::Open(turns) = store.continue_conversation("c", 2.0, 10).unwrap()
        else {
            panic!("open")
        };
        let seen: Vec<_> = turns
            .iter()
            .map(|t| (t.agent.as_str(), t.request.as_str(), t.answer.as_str()))
            .collect();
        assert_eq!(seen, [("ann", "one", "1"), ("bob", "three", "3")]);
        let ConversationLookup::Open(last) = store.continue_conversation("c", 2.0, 1).unwrap()
        else {
            panic!("open")
        };
        assert_eq!(last[0].request, "three");
        assert!(matches!(
            store.continue_conversation("nope", 2.0, 10).unwrap(),
            ConversationLookup::Unknown
        ));
        let later = super::super::now_seconds() + 7200.0;
        assert!(matches!(
            store.continue_conversation("c", later, 10).unwrap(),
            ConversationLookup::Expired(_)
        ));
        let shown = store.conversation("c", later).unwrap().unwrap();
        assert_eq!(shown.conversation.state, ConversationState::Expired);
        assert_eq!(shown.conversation.messages, 6);
        assert_eq!(shown.conversation.participants, ["ann", "bob"]);
    }

    #[test]
    fn a_conversation_settles_when_its_last_execution_ends_and_protocol_steps_are_no_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db")).unwrap();
        let root = exchange("c", "ann", "one");
        answered(&store, &root, "e1", "ann", Some("1"));
        // A notification the root sent starts after the root ended, and ends.
        let mut late = exchange("c", "bob", "fyi");
        late.kind = MessageKind::Notification;
        late.sender = Party::Agent("ann".into());
        late.parent_execution_id = Some("e1".into());
        store.record_start("e2", "bob", "1", 2.0, &late).unwrap();
        let now = super::super::now_seconds();
        let state = |store: &Store| {
            store
                .conversation("c", now)
                .unwrap()
                .unwrap()
                .conversation
                .state
        };
        assert_eq!(state(&store), ConversationState::InProgress);
        answered_started(&store, &late, "e2", "bob", Some("ok"));
        assert_eq!(
            state(&store),
            ConversationState::Completed,
            "as its root ended"
        );

        // A caller-started protocol's steps are not earlier turns of the conversation.
        let mut step = exchange("c", "bob", "CALL FOR PROPOSALS ...");
        step.protocol = Protocol::ContractNet;
        answered(&store, &step, "e3", "bob", Some("{\"score\": 1}"));
        let ConversationLookup::Open(turns) = store.continue_conversation("c", now, 10).unwrap()
        else {
            panic!("open")
        };
        let asked: Vec<_> = turns.iter().map(|t| t.request.as_str()).collect();
        assert_eq!(asked, ["one"]);
    }

    #[test]
    fn executions_nest_under_their_parents_in_start_order() {
        let node = |id: &str| ExecutionNode {
            execution_id: id.into(),
            agent: "a".into(),
            status: "finished".into(),
            outcome: None,
            error: None,
            started_at: 0.0,
            duration_ms: None,
            prompt_tokens: None,
            completion_tokens: None,
            children: Vec::new(),
        };
        let rows = vec![
            (node("root"), None),
            (node("c1"), Some("root".into())),
            (node("g1"), Some("c1".into())),
            (node("c2"), Some("root".into())),
            (node("other"), Some("elsewhere".into())),
        ];
        let roots = tree(rows);
        let ids: Vec<_> = roots.iter().map(|n| n.execution_id.as_str()).collect();
        assert_eq!(ids, ["root", "other"]);
        let kids: Vec<_> = roots[0]
            .children
            .iter()
            .map(|n| n.execution_id.as_str())
            .collect();
        assert_eq!(kids, ["c1", "c2"]);
        assert_eq!(roots[0].children[0].children[0].execution_id, "g1");
    }
}
