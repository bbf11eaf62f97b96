//! Where a request sits among the others: the conversation it opens or continues, the message
//! that carries it, and (for a delegation) its place in its tree. The supervisor stores all of
//! it ([`crate::store`]) before the request's worker starts.

use caxton_api_contract::conversations::{MessageKind, Party, Protocol};
use caxton_ipc_protocol::Turn;

use crate::store::{ConversationLookup, Exchange, Store, StoreError};

/// Why a request cannot join the conversation it names.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// No conversation has the id.
    #[error(
        "no conversation {0:?} exists (see `caxton conversation list`); leave out --conversation to start a new one"
    )]
    Unknown(String),
    /// It was idle too long.
    #[error(
        "conversation {id:?} expired {ago} ago ([conversations] expire_after is {limit}); start a new one"
    )]
    Expired {
        /// The conversation.
        id: String,
        /// How long ago, in words.
        ago: String,
        /// The configured idle limit, in words.
        limit: String,
    },
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The conversation a caller's request joins, and what the agent gets of it.
#[derive(Debug, Clone)]
pub struct Joined {
    /// Its id (new or continued).
    pub id: String,
    /// Its earlier turns, oldest first; empty for a new one.
    pub history: Vec<Turn>,
    /// The protocol a new conversation is created with.
    pub protocol: Protocol,
}

/// Open a new conversation for a caller, or continue `requested`.
pub async fn join(
    store: &Store,
    requested: Option<String>,
    history_turns: usize,
    expiry: std::time::Duration,
) -> Result<Joined, ConversationError> {
    let Some(id) = requested else {
        return Ok(Joined {
            id: uuid::Uuid::new_v4().to_string(),
            history: Vec::new(),
            protocol: Protocol::RequestReply,
        });
    };
    let store = store.clone();
    let now = crate::store::now_seconds();
    let looked_up = {
        let id = id.clone();
        tokio::task::spawn_blocking(move || store.continue_conversation(&id, now, history_turns))
            .await
            .map_err(|e| StoreError::Query(format!("conversation lookup task failed: {e}")))??
    };
    match looked_up {
        ConversationLookup::Unknown => Err(ConversationError::Unknown(id)),
        ConversationLookup::Expired(at) => Err(ConversationError::Expired {
            id,
            ago: words(std::time::Duration::from_secs_f64((now - at).max(0.0))),
            limit: words(expiry),
        }),
        ConversationLookup::Open(history) => Ok(Joined {
            id,
            history,
            protocol: Protocol::RequestReply,
        }),
    }
}

/// A duration as a person reads it, to the second: `3h 5m 12s`.
fn words(d: std::time::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
}

/// The message of a caller's request to `receiver`, in `conversation`.
pub fn from_caller(
    conversation: &Joined,
    receiver: Party,
    kind: MessageKind,
    content: &str,
    execution_id: &str,
    expiry: std::time::Duration,
) -> Exchange {
    Exchange {
        conversation_id: conversation.id.clone(),
        protocol: conversation.protocol,
        message_id: uuid::Uuid::new_v4().to_string(),
        kind,
        sender: Party::Caller,
        receiver,
        content: content.to_owned(),
        parent_execution_id: None,
        root_execution_id: execution_id.to_owned(),
        depth: 0,
        expires_after: expiry.as_secs_f64(),
    }
}

/// The message of a delegated request (or notification) from the execution `parent` places.
pub fn from_agent(
    parent: &crate::delegation::Lineage,
    receiver: Party,
    kind: MessageKind,
    content: &str,
    child_depth: u32,
    expiry: std::time::Duration,
) -> Exchange {
    Exchange {
        conversation_id: parent.conversation_id.clone(),
        protocol: Protocol::RequestReply,
        message_id: uuid::Uuid::new_v4().to_string(),
        kind,
        sender: parent
            .agent()
            .map_or(Party::Caller, |a| Party::Agent(a.to_string())),
        receiver,
        content: content.to_owned(),
        parent_execution_id: Some(parent.execution_id.clone()),
        root_execution_id: parent.root_execution_id.clone(),
        depth: child_depth,
        expires_after: expiry.as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_words() {
        let w = |s| words(std::time::Duration::from_secs(s));
        assert_eq!(w(45), "45s");
        assert_eq!(w(3 * 3600 + 300), "3h 5m");
    }
}
