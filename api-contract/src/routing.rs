//! Capability routing: which agents declare which capability, and a request sent to a
//! capability instead of an agent (`POST /api/v1/capabilities/{capability}/run`).

use serde::{Deserialize, Serialize};

use crate::runs::ExecutionReport;

/// How a request to a capability picks its agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// One agent with the capability: the one with the fewest requests in flight, then the
    /// least recently used, then by name.
    #[default]
    Best,
    /// One agent, each in turn.
    RoundRobin,
    /// Every agent with the capability, in parallel; the answers come back together.
    Broadcast,
}

impl Strategy {
    /// The strategy as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Best => "best",
            Self::RoundRobin => "round-robin",
            Self::Broadcast => "broadcast",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "best" => Ok(Self::Best),
            "round-robin" => Ok(Self::RoundRobin),
            "broadcast" => Ok(Self::Broadcast),
            other => Err(format!(
                "unknown strategy {other:?}: use best, round-robin or broadcast"
            )),
        }
    }
}

/// A capability and the agents that declare it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilityEntry {
    /// The capability.
    pub name: String,
    /// Agents declaring it, by name.
    pub agents: Vec<String>,
}

/// `GET /api/v1/capabilities`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilityList {
    /// Every declared capability, by name.
    pub capabilities: Vec<CapabilityEntry>,
}

/// The answer of a broadcast: one report per agent, each naming its agent, in agent order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BroadcastAnswer {
    /// The capability asked.
    pub capability: String,
    /// Each agent's execution.
    pub answers: Vec<ExecutionReport>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strategy_reads_as_it_is_written() {
        for s in [Strategy::Best, Strategy::RoundRobin, Strategy::Broadcast] {
            assert_eq!(s.as_str().parse::<Strategy>(), Ok(s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::Value::from(s.as_str()))
            );
        }
        assert!("fastest".parse::<Strategy>().is_err());
    }
}
