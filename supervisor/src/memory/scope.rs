//! Which memory one request reaches. Workers never name a scope: the supervisor derives it
//! from the agent's `[memory]` table and the request's workspace when the run is prepared, and
//! the execution's grant carries it to the prompt's memories, `auto_store` and the memory tools.

use caxton_memory::{MemoryError, Scope};

use crate::agent::{AgentDefinition, DEFAULT_WORKSPACE, MemoryScope};

/// Why a request cannot reach the memory its agent's `[memory]` table names.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    /// The agent file pins a workspace and the request names another.
    #[error(
        "agent {agent} keeps its memory in workspace {pinned:?} ([memory] workspace); the request names workspace {requested:?}"
    )]
    WorkspaceMismatch {
        /// The agent.
        agent: String,
        /// The workspace its file names.
        pinned: String,
        /// The workspace the request names.
        requested: String,
    },
    /// The workspace name is not usable.
    #[error("workspace {name:?}: {source}")]
    Invalid {
        /// The name given.
        name: String,
        /// Why it is refused.
        source: MemoryError,
    },
}

/// The memory scope one request of `agent` reaches: none when its memory is off; for
/// `scope = "workspace"` the workspace its file pins, else the one the request names, else
/// [`DEFAULT_WORKSPACE`]. Decided here, never by the worker.
pub fn request_scope(
    agent: &AgentDefinition,
    requested_workspace: Option<&str>,
) -> Result<Option<Scope>, ScopeError> {
    if !agent.memory.enabled {
        return Ok(None);
    }
    let invalid = |name: &str| {
        let name = name.to_owned();
        move |source| ScopeError::Invalid { name, source }
    };
    let scope = match agent.memory.scope {
        MemoryScope::Agent => {
            Scope::agent(agent.name.as_str()).map_err(invalid(agent.name.as_str()))?
        }
        MemoryScope::Global => Scope::Global,
        MemoryScope::Workspace => {
            let name = match (&agent.memory.workspace, requested_workspace) {
                (Some(pinned), Some(requested)) if pinned != requested => {
                    return Err(ScopeError::WorkspaceMismatch {
                        agent: agent.name.to_string(),
                        pinned: pinned.clone(),
                        requested: requested.to_owned(),
                    });
                }
                (Some(pinned), _) => pinned.as_str(),
                (None, Some(requested)) => requested,
                (None, None) => DEFAULT_WORKSPACE,
            };
            Scope::workspace(name).map_err(invalid(name))?
        }
    };
    Ok(Some(scope))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn agent(memory: &str) -> AgentDefinition {
        let src = format!(
            "name = \"helper\"\nversion = \"1\"\nsystem_prompt = \"s\"\nuser_prompt_template = \"{{{{request}}}}\"\n[memory]\n{memory}\n"
        );
        crate::agent::parse_agent(std::path::Path::new("agents/helper.toml"), &src).unwrap()
    }

    #[test]
    fn the_supervisor_decides_which_memory_a_request_reaches() {
        let off = agent("enabled = false");
        assert!(request_scope(&off, Some("ops")).unwrap().is_none());

        let private = agent("enabled = true");
        assert_eq!(
            request_scope(&private, Some("ops")).unwrap(),
            Some(Scope::agent("helper").unwrap())
        );

        let global = agent("enabled = true\nscope = \"global\"");
        assert_eq!(request_scope(&global, None).unwrap(), Some(Scope::Global));

        let shared = agent("enabled = true\nscope = \"workspace\"");
        assert_eq!(
            request_scope(&shared, None).unwrap(),
            Some(Scope::workspace(DEFAULT_WORKSPACE).unwrap())
        );
        assert_eq!(
            request_scope(&shared, Some("ops")).unwrap(),
            Some(Scope::workspace("ops").unwrap())
        );
        assert!(matches!(
            request_scope(&shared, Some(" ")),
            Err(ScopeError::Invalid { .. })
        ));

        let pinned = agent("enabled = true\nscope = \"workspace\"\nworkspace = \"sales\"");
        assert_eq!(
            request_scope(&pinned, None).unwrap(),
            Some(Scope::workspace("sales").unwrap())
        );
        let err = request_scope(&pinned, Some("ops")).unwrap_err().to_string();
        assert!(
            err.contains("\"sales\"") && err.contains("\"ops\""),
            "{err}"
        );
    }
}
