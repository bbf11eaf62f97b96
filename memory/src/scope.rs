//! Memory scopes: every entity lives in exactly one, and every operation names the scope it
//! works in, so the supervisor decides what an agent may reach and this crate only obeys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{MemoryError, Result, invalid};

/// Longest agent or workspace name accepted as a namespace, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 128;

/// Where an entity lives: one agent's private memory, one workspace's shared memory, or the
/// global one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `agent-only`: private to the named agent.
    Agent(String),
    /// `workspace`: shared by the agents of the named workspace.
    Workspace(String),
    /// `global`: shared by every agent.
    Global,
}

/// The kind of a scope, without its namespace (the `scope` value of an agent's `[memory]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScopeKind {
    /// Private to one agent.
    #[serde(rename = "agent-only")]
    AgentOnly,
    /// Shared within a workspace.
    #[serde(rename = "workspace")]
    Workspace,
    /// Shared by everyone.
    #[serde(rename = "global")]
    Global,
}

impl ScopeKind {
    /// The name used in configuration, storage and exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AgentOnly => "agent-only",
            Self::Workspace => "workspace",
            Self::Global => "global",
        }
    }

    /// Parse `agent-only`, `workspace` or `global`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "agent-only" => Ok(Self::AgentOnly),
            "workspace" => Ok(Self::Workspace),
            "global" => Ok(Self::Global),
            other => Err(invalid(
                "scope",
                format!("{other:?} is not one of agent-only, workspace, global"),
            )),
        }
    }
}

impl Scope {
    /// The private scope of `agent`.
    pub fn agent(agent: impl Into<String>) -> Result<Self> {
        let agent = agent.into();
        check_namespace(&agent)?;
        Ok(Self::Agent(agent))
    }

    /// The shared scope of `workspace`.
    pub fn workspace(workspace: impl Into<String>) -> Result<Self> {
        let workspace = workspace.into();
        check_namespace(&workspace)?;
        Ok(Self::Workspace(workspace))
    }

    /// Build a scope from its kind and namespace (ignored for `global`).
    pub fn from_parts(kind: ScopeKind, namespace: &str) -> Result<Self> {
        match kind {
            ScopeKind::AgentOnly => Self::agent(namespace),
            ScopeKind::Workspace => Self::workspace(namespace),
            ScopeKind::Global if namespace.is_empty() => Ok(Self::Global),
            ScopeKind::Global => Err(invalid(
                "scope",
                format!("global takes no namespace, got {namespace:?}"),
            )),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> ScopeKind {
        match self {
            Self::Agent(_) => ScopeKind::AgentOnly,
            Self::Workspace(_) => ScopeKind::Workspace,
            Self::Global => ScopeKind::Global,
        }
    }

    /// The agent or workspace name; empty for `global`.
    pub fn namespace(&self) -> &str {
        match self {
            Self::Agent(n) | Self::Workspace(n) => n,
            Self::Global => "",
        }
    }

    /// Reject a scope whose namespace is unusable (possible when built directly as an enum).
    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            Self::Agent(n) | Self::Workspace(n) => check_namespace(n),
            Self::Global => Ok(()),
        }
    }
}

fn check_namespace(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(invalid("scope namespace", "it is empty"));
    }
    if name.len() > MAX_NAMESPACE_BYTES {
        return Err(invalid(
            "scope namespace",
            format!("{} bytes, the limit is {MAX_NAMESPACE_BYTES}", name.len()),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("scope namespace", "it contains control characters"));
    }
    Ok(())
}

/// `agent-only:NAME`, `workspace:NAME` or `global`.
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Global => f.write_str("global"),
            other => write!(f, "{}:{}", other.kind().as_str(), other.namespace()),
        }
    }
}

/// Parses the `Display` form: `agent-only:NAME`, `workspace:NAME`, `global`.
impl FromStr for Scope {
    type Err = MemoryError;

    fn from_str(s: &str) -> Result<Self> {
        match s.split_once(':') {
            Some((kind, namespace)) => Self::from_parts(ScopeKind::parse(kind)?, namespace),
            None => Self::from_parts(ScopeKind::parse(s)?, ""),
        }
    }
}

/// Serialised as its `Display` form, so a scope is one readable string in JSON.
impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        for scope in [
            Scope::agent("researcher").unwrap(),
            Scope::workspace("acme: q3").unwrap(),
            Scope::Global,
        ] {
            assert_eq!(scope.to_string().parse::<Scope>().unwrap(), scope);
        }
        assert_eq!(
            Scope::agent("a").unwrap().to_string(),
            "agent-only:a",
            "the kind names match the [memory] scope values"
        );
    }

    #[test]
    fn refuses_empty_namespaces_and_unknown_kinds() {
        assert!(Scope::agent("").is_err());
        assert!(Scope::workspace("  ").is_err());
        assert!("agent:x".parse::<Scope>().is_err());
        assert!("global:x".parse::<Scope>().is_err());
        assert!(Scope::Agent(String::new()).validate().is_err());
    }
}
