//! Capability routing: the agents that declare a capability, and which of them a request sent to
//! the capability reaches ([`Strategy`]). The choice is made by the supervisor from the
//! registry and the live table, before any worker exists.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use caxton_api_contract::routing::{CapabilityEntry, CapabilityList, Strategy};

use crate::agent::AgentDefinition;

/// Why a request to a capability reaches no agent.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// No deployed agent declares it.
    #[error("no deployed agent declares capability {capability:?}; {}", known_text(.known))]
    UnknownCapability {
        /// The capability asked for.
        capability: String,
        /// The capabilities that exist.
        known: Vec<String>,
    },
}

fn known_text(known: &[String]) -> String {
    if known.is_empty() {
        "no agent declares any capability (see `capabilities` in an agent file)".to_owned()
    } else {
        format!("capabilities: {}", known.join(", "))
    }
}

/// Routing state: the round-robin position per capability and when each agent was last chosen.
#[derive(Debug, Default)]
pub struct Router {
    next: Mutex<HashMap<String, usize>>,
    last_used: Mutex<HashMap<String, Instant>>,
}

/// Every capability and its agents (agents by name), capabilities by name.
pub fn capabilities(agents: &[Arc<AgentDefinition>]) -> CapabilityList {
    let mut map: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for agent in agents {
        for capability in &agent.capabilities {
            map.entry(capability.as_str())
                .or_default()
                .push(agent.name.to_string());
        }
    }
    CapabilityList {
        capabilities: map
            .into_iter()
            .map(|(name, mut agents)| {
                agents.sort();
                agents.dedup();
                CapabilityEntry {
                    name: name.to_owned(),
                    agents,
                }
            })
            .collect(),
    }
}

impl Router {
    /// The agents a request to `capability` reaches under `strategy`, among `agents` (the
    /// deployed ones); `in_flight` counts an agent's requests running now. Broadcast gives every
    /// agent with the capability, by name; the others exactly one.
    pub fn route(
        &self,
        agents: &[Arc<AgentDefinition>],
        capability: &str,
        strategy: Strategy,
        in_flight: impl Fn(&str) -> usize,
    ) -> Result<Vec<Arc<AgentDefinition>>, RouteError> {
        let mut candidates: Vec<Arc<AgentDefinition>> = agents
            .iter()
            .filter(|a| a.capabilities.iter().any(|c| c == capability))
            .cloned()
            .collect();
        if candidates.is_empty() {
            return Err(RouteError::UnknownCapability {
                capability: capability.to_owned(),
                known: capabilities(agents)
                    .capabilities
                    .into_iter()
                    .map(|c| c.name)
                    .collect(),
            });
        }
        candidates.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        let chosen = match strategy {
            Strategy::Broadcast => return Ok(candidates),
            Strategy::RoundRobin => {
                let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
                let position = next.entry(capability.to_owned()).or_insert(0);
                let chosen = candidates.swap_remove(*position % candidates.len());
                *position = position.wrapping_add(1);
                chosen
            }
            Strategy::Best => {
                let last_used = self
                    .last_used
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                // Never used sorts first; then the oldest use; the name breaks ties.
                let key = |a: &Arc<AgentDefinition>| {
                    (
                        in_flight(a.name.as_str()),
                        last_used.get(a.name.as_str()).copied(),
                    )
                };
                let best = candidates
                    .iter()
                    .enumerate()
                    .min_by(|(_, a), (_, b)| key(a).cmp(&key(b)))
                    .map_or(0, |(i, _)| i);
                candidates.swap_remove(best)
            }
        };
        self.used(chosen.name.as_str());
        Ok(vec![chosen])
    }

    /// Note that `agent` was just chosen, for the least-recently-used order.
    pub fn used(&self, agent: &str) {
        self.last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(agent.to_owned(), Instant::now());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn agent(name: &str, capabilities: &str) -> Arc<AgentDefinition> {
        let src = format!(
            "name = \"{name}\"\nversion = \"1\"\nsystem_prompt = \"s\"\nuser_prompt_template = \"{{{{request}}}}\"\ncapabilities = [{capabilities}]\n"
        );
        Arc::new(crate::agent::parse_agent(std::path::Path::new("a.toml"), &src).unwrap())
    }

    fn names(agents: &[Arc<AgentDefinition>]) -> Vec<String> {
        agents.iter().map(|a| a.name.to_string()).collect()
    }

    #[test]
    fn each_strategy_picks_as_it_says() {
        let agents = vec![
            agent("bb", "\"analysis\""),
            agent("aa", "\"analysis\", \"writing\""),
            agent("cc", "\"writing\""),
        ];
        let router = Router::default();
        let idle = |_: &str| 0;
        assert_eq!(
            names(
                &router
                    .route(&agents, "analysis", Strategy::Broadcast, idle)
                    .unwrap()
            ),
            ["aa", "bb"]
        );
        // Round robin: each in turn, by name.
        let turns: Vec<String> = (0..4)
            .flat_map(|_| {
                names(
                    &router
                        .route(&agents, "writing", Strategy::RoundRobin, idle)
                        .unwrap(),
                )
            })
            .collect();
        assert_eq!(turns, ["aa", "cc", "aa", "cc"]);
        // Best: fewest in flight first, whatever was used.
        let busy_a = |n: &str| usize::from(n == "aa");
        assert_eq!(
            names(
                &router
                    .route(&agents, "analysis", Strategy::Best, busy_a)
                    .unwrap()
            ),
            ["bb"]
        );
        // Then least recently used: on a fresh router aa (by name), then bb.
        let fresh = Router::default();
        let first = names(
            &fresh
                .route(&agents, "analysis", Strategy::Best, idle)
                .unwrap(),
        );
        let second = names(
            &fresh
                .route(&agents, "analysis", Strategy::Best, idle)
                .unwrap(),
        );
        assert_eq!([first, second].concat(), ["aa", "bb"]);
    }

    #[test]
    fn an_unknown_capability_names_the_ones_that_exist() {
        let agents = vec![agent("aa", "\"writing\", \"analysis\"")];
        let err = Router::default()
            .route(&agents, "poetry", Strategy::Best, |_| 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"poetry\"") && err.contains("capabilities: analysis, writing"),
            "{err}"
        );
        let err = Router::default()
            .route(&[], "poetry", Strategy::Broadcast, |_| 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no agent declares any capability"), "{err}");
    }
}
