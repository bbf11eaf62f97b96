//! Delegation: an agent's model asks another agent (or a capability) through a tool, and the
//! supervisor runs that request in a worker of its own, as a child of the asking execution.
//!
//! Every execution carries its [`Lineage`]: where it sits in its tree (the agents from the root
//! down to it, its depth and the depth limit the path set), its deadline, and the budgets its
//! whole tree shares. The guards ([`Lineage::check`]) hold for the whole tree, not per pair:
//! a target already on the path is a cycle whatever its length, the tightest `max_depth` on the
//! path holds, a child ends when its parent must, and one token budget and one tool-call budget
//! are drawn on by every execution of the tree. A refusal is a tool error the asking model
//! reads; no worker is spawned for it.
//!
//! Invariant: the checks are the supervisor's, made before any worker for the child exists;
//! nothing a worker sends names its depth, its ancestry or its budget.

pub mod tools;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use caxton_api_contract::agents::DEFAULT_DELEGATION_DEPTH;
use tokio_util::sync::CancellationToken;

use crate::agent::{AgentDefinition, AgentName};

pub use tools::DelegationTools;

/// What a request's whole tree may spend; shared by every execution in it.
#[derive(Debug)]
pub struct TreeBudget {
    token_limit: u64,
    tokens_spent: AtomicU64,
    tool_call_limit: u64,
    tool_calls_made: AtomicU64,
}

impl TreeBudget {
    /// A budget of `tokens` and `tool_calls` for a new tree.
    pub fn new(tokens: u64, tool_calls: u64) -> Self {
        Self {
            token_limit: tokens,
            tokens_spent: AtomicU64::new(0),
            tool_call_limit: tool_calls,
            tool_calls_made: AtomicU64::new(0),
        }
    }

    /// Count tokens a model call of the tree used.
    pub fn spend_tokens(&self, tokens: u64) {
        self.tokens_spent.fetch_add(tokens, Ordering::Relaxed);
    }

    /// Tokens the tree may still spend.
    pub fn tokens_left(&self) -> u64 {
        self.token_limit
            .saturating_sub(self.tokens_spent.load(Ordering::Relaxed))
    }

    /// Take one tool call from the budget; `Err` with the message the model reads when none
    /// is left (the call does not run).
    pub fn take_tool_call(&self) -> Result<(), String> {
        let made = self.tool_calls_made.fetch_add(1, Ordering::Relaxed);
        if made >= self.tool_call_limit {
            return Err(format!(
                "the tool-call budget of this request ({} calls, shared by every agent it \
                 delegated to) is spent; answer with what you have",
                self.tool_call_limit
            ));
        }
        Ok(())
    }

    /// Tool calls the tree may still make.
    pub fn tool_calls_left(&self) -> u64 {
        self.tool_call_limit
            .saturating_sub(self.tool_calls_made.load(Ordering::Relaxed))
    }

    /// The message a model call over budget fails with.
    pub fn tokens_spent_message(&self) -> String {
        format!(
            "the token budget of this request ({} tokens, shared by every agent it delegated \
             to) is spent",
            self.token_limit
        )
    }

    /// Tokens spent so far and the limit, for reports.
    pub fn tokens(&self) -> (u64, u64) {
        (self.tokens_spent.load(Ordering::Relaxed), self.token_limit)
    }
}

/// The part of a request's path before it reached this server, for a request another server
/// delegated over A2A: empty for a request that started here.
#[derive(Debug, Clone, Default)]
pub struct Upstream {
    /// The agents from the root down to the one that asked this server, each with its server.
    pub hops: Vec<crate::a2a::Hop>,
    /// This server's own agents among them: asking one again is a cycle across servers.
    pub here: Vec<AgentName>,
}

/// Where one execution sits in its tree, and what bounds it.
#[derive(Debug, Clone)]
pub struct Lineage {
    /// The execution.
    pub execution_id: String,
    /// Its conversation (the whole tree shares the root's).
    pub conversation_id: String,
    /// The caller's execution at the root.
    pub root_execution_id: String,
    /// The agents from the root down to this execution, this one last (on this server).
    pub path: Vec<AgentName>,
    /// The path before this server, when another server delegated the request.
    pub upstream: Arc<Upstream>,
    /// The deepest depth any execution below may have: the tightest limit on the path.
    pub depth_limit: u32,
    /// When this execution must end.
    pub deadline: Instant,
    /// What the whole tree may spend.
    pub budget: Arc<TreeBudget>,
    /// Cancelled when this execution is stopped (killed, past its deadline, its caller gone),
    /// which stops the notifications it sent that still run.
    pub cancel: CancellationToken,
}

/// Why a delegation was refused, with the words the asking model reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The target is not in the asking agent's `[delegation]` lists.
    #[error("{0}")]
    NotAllowed(String),
    /// No such agent or capability.
    #[error("{0}")]
    UnknownTarget(String),
    /// The target is already on the path from the root.
    #[error("{0}")]
    Cycle(String),
    /// The tree would be deeper than a limit on its path allows.
    #[error("{0}")]
    Depth(String),
    /// The tree's budget is spent.
    #[error("{0}")]
    Budget(String),
    /// The asking execution has too little time left for a child to do anything.
    #[error("{0}")]
    Deadline(String),
    /// The supervisor is shutting down, or the child's request cannot be prepared.
    #[error("{0}")]
    Unavailable(String),
}

impl Refusal {
    /// The reason as metrics label it.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotAllowed(_) => "not_allowed",
            Self::UnknownTarget(_) => "unknown_target",
            Self::Cycle(_) => "cycle",
            Self::Depth(_) => "depth",
            Self::Budget(_) => "budget",
            Self::Deadline(_) => "deadline",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// A child needs at least this long to start a worker and ask its model.
const LEAST_CHILD_TIME: Duration = Duration::from_millis(200);

impl Lineage {
    /// The lineage of a caller's request: the root of a new tree, with its agent's budgets
    /// (else the config's) and depth limit.
    pub fn root(
        execution_id: &str,
        conversation_id: &str,
        agent: &AgentDefinition,
        deadline: Instant,
        default_tokens: u64,
        default_tool_calls: u64,
    ) -> Self {
        let d = &agent.delegation;
        Self {
            execution_id: execution_id.to_owned(),
            conversation_id: conversation_id.to_owned(),
            root_execution_id: execution_id.to_owned(),
            path: vec![agent.name.clone()],
            upstream: Arc::default(),
            depth_limit: d.max_depth.unwrap_or(DEFAULT_DELEGATION_DEPTH),
            deadline,
            budget: Arc::new(TreeBudget::new(
                d.token_budget.unwrap_or(default_tokens),
                d.tool_call_budget.unwrap_or(default_tool_calls),
            )),
            cancel: CancellationToken::new(),
        }
    }

    /// The lineage of a request another server delegated to `agent` over A2A, bounded by what
    /// that server said of its tree: refused when `agent` is already on the path (a cycle across
    /// servers, `here` being this server's id), when the tree is as deep as it may be, or when
    /// its budget is spent. The tree's budget here is what the asking tree had left.
    pub fn from_remote(
        execution_id: &str,
        conversation_id: &str,
        agent: &AgentDefinition,
        own_deadline: Instant,
        asked: &crate::a2a::Delegation,
        here: &str,
    ) -> Result<Self, Refusal> {
        let upstream = Upstream {
            hops: asked.ancestry.clone(),
            here: asked
                .ancestry
                .iter()
                .filter(|h| h.server == here)
                .filter_map(|h| AgentName::parse(&h.agent).ok())
                .collect(),
        };
        let chain = || {
            asked
                .ancestry
                .iter()
                .map(|h| h.agent.as_str())
                .chain([agent.name.as_str()])
                .collect::<Vec<_>>()
                .join(" → ")
        };
        if upstream.here.contains(&agent.name) {
            return Err(Refusal::Cycle(format!(
                "refused: {} is already working on this request on this server, so asking it                  again would make a cycle across servers ({})",
                agent.name,
                chain()
            )));
        }
        let depth = u32::try_from(asked.ancestry.len()).unwrap_or(u32::MAX);
        if depth > asked.max_depth {
            return Err(Refusal::Depth(format!(
                "refused: this request would be {depth} delegation(s) deep ({}), more than the                  max_depth of {} its path allows",
                chain(),
                asked.max_depth
            )));
        }
        if asked.tokens_left == 0 {
            return Err(Refusal::Budget(
                "refused: the token budget of the asking request is spent".into(),
            ));
        }
        let own_limit = agent
            .delegation
            .max_depth
            .map_or(u32::MAX, |d| depth.saturating_add(d));
        let remote_deadline = Instant::now()
            .checked_add(Duration::from_millis(asked.deadline_ms))
            .unwrap_or(own_deadline);
        Ok(Self {
            execution_id: execution_id.to_owned(),
            conversation_id: conversation_id.to_owned(),
            root_execution_id: execution_id.to_owned(),
            path: vec![agent.name.clone()],
            upstream: Arc::new(upstream),
            depth_limit: asked.max_depth.min(own_limit),
            deadline: own_deadline.min(remote_deadline),
            budget: Arc::new(TreeBudget::new(asked.tokens_left, asked.tool_calls_left)),
            cancel: CancellationToken::new(),
        })
    }

    /// Delegations between the root and this execution, counting those on other servers.
    pub fn depth(&self) -> u32 {
        u32::try_from(self.upstream.hops.len() + self.path.len().saturating_sub(1))
            .unwrap_or(u32::MAX)
    }

    /// What a server this execution delegates to must know of its tree (`here` being this
    /// server's id), for the message's metadata.
    pub fn for_remote(&self, here: &str) -> crate::a2a::Delegation {
        let mut ancestry = self.upstream.hops.clone();
        ancestry.extend(self.path.iter().map(|a| crate::a2a::Hop {
            server: here.to_owned(),
            agent: a.to_string(),
        }));
        crate::a2a::Delegation {
            ancestry,
            max_depth: self.depth_limit,
            deadline_ms: u64::try_from(
                self.deadline
                    .saturating_duration_since(Instant::now())
                    .as_millis(),
            )
            .unwrap_or(u64::MAX),
            tokens_left: self.budget.tokens_left(),
            tool_calls_left: self.budget.tool_calls_left(),
            conversation: self.conversation_id.clone(),
            parent_task: self.execution_id.clone(),
        }
    }

    /// The agent of this execution.
    pub fn agent(&self) -> Option<&AgentName> {
        self.path.last()
    }

    /// Whether a child of this execution may run `target`: not a cycle, not too deep, budget
    /// and time left. The allowlist is checked by the caller, which knows how the target was
    /// named.
    pub fn check(&self, target: &AgentName) -> Result<(), Refusal> {
        if self.path.contains(target) || self.upstream.here.contains(target) {
            let mut cycle: Vec<&str> = (self.upstream.hops.iter().map(|h| h.agent.as_str()))
                .chain(self.path.iter().map(AgentName::as_str))
                .collect();
            cycle.push(target.as_str());
            return Err(Refusal::Cycle(format!(
                "refused: asking {target} would make a cycle ({}); an agent already working on \
                 this request cannot be asked again",
                cycle.join(" → ")
            )));
        }
        self.check_bounds()
    }

    /// Whether a child of this execution may run at all, whoever it is: not too deep, budget
    /// and time left. An agent on another server is checked for cycles there.
    pub fn check_bounds(&self) -> Result<(), Refusal> {
        if self.depth() + 1 > self.depth_limit {
            return Err(Refusal::Depth(format!(
                "refused: this request is already {} delegation(s) deep ({}), the most the \
                 [delegation] max_depth of the agents on its path allows ({}); answer yourself",
                self.depth(),
                (self.upstream.hops.iter().map(|h| h.agent.as_str()))
                    .chain(self.path.iter().map(AgentName::as_str))
                    .collect::<Vec<_>>()
                    .join(" → "),
                self.depth_limit
            )));
        }
        if self.budget.tokens_left() == 0 {
            return Err(Refusal::Budget(format!(
                "refused: {}",
                self.budget.tokens_spent_message()
            )));
        }
        if self.deadline.saturating_duration_since(Instant::now()) < LEAST_CHILD_TIME {
            return Err(Refusal::Deadline(
                "refused: this request's deadline is too close for another agent to answer".into(),
            ));
        }
        Ok(())
    }

    /// The lineage of a child running `agent` as execution `execution_id`: one level deeper,
    /// the tightest depth limit, a deadline no later than this one's, the same budget.
    pub fn child(
        &self,
        execution_id: &str,
        agent: &AgentDefinition,
        own_deadline: Instant,
    ) -> Self {
        let mut path = self.path.clone();
        path.push(agent.name.clone());
        let depth = self.depth().saturating_add(1);
        let own_limit = agent
            .delegation
            .max_depth
            .map_or(u32::MAX, |d| depth.saturating_add(d));
        Self {
            execution_id: execution_id.to_owned(),
            conversation_id: self.conversation_id.clone(),
            root_execution_id: self.root_execution_id.clone(),
            path,
            upstream: self.upstream.clone(),
            depth_limit: self.depth_limit.min(own_limit),
            deadline: self.deadline.min(own_deadline),
            budget: self.budget.clone(),
            cancel: self.cancel.child_token(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn agent(name: &str, delegation: &str) -> AgentDefinition {
        crate::agent::parse_agent(
            std::path::Path::new("a.toml"),
            &format!(
                "name = \"{name}\"\nversion = \"1\"\nuser_prompt_template = \"{{{{ request }}}}\"\n{delegation}"
            ),
        )
        .unwrap()
    }

    fn name(n: &str) -> AgentName {
        AgentName::parse(n).unwrap()
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn a_cycle_of_any_length_is_refused_naming_the_path() {
        let root = Lineage::root("e1", "c", &agent("alpha", ""), later(), 100, 100);
        let b = root.child("e2", &agent("beta", ""), later());
        let c = b.child("e3", &agent("gamma", ""), later());
        assert_eq!(root.check(&name("beta")), Ok(()));
        let Err(Refusal::Cycle(m)) = b.check(&name("alpha")) else {
            panic!("A→B→A is a cycle")
        };
        assert!(m.contains("alpha → beta → alpha"), "{m}");
        let Err(Refusal::Cycle(m)) = c.check(&name("alpha")) else {
            panic!("A→B→C→A is a cycle")
        };
        assert!(m.contains("alpha → beta → gamma → alpha"), "{m}");
    }

    fn asked(
        ancestry: &[(&str, &str)],
        max_depth: u32,
        tokens_left: u64,
    ) -> crate::a2a::Delegation {
        crate::a2a::Delegation {
            ancestry: ancestry
                .iter()
                .map(|(server, agent)| crate::a2a::Hop {
                    server: (*server).into(),
                    agent: (*agent).into(),
                })
                .collect(),
            max_depth,
            deadline_ms: 1000,
            tokens_left,
            tool_calls_left: 5,
            conversation: "c0".into(),
            parent_task: "p0".into(),
        }
    }

    #[test]
    fn a_request_from_another_server_carries_its_tree_s_guards_here() {
        let beta = agent("beta", "");
        // boss on server A asked beta here (server B): depth 1, the budget what A had left.
        let l = Lineage::from_remote(
            "e1",
            "c",
            &beta,
            later(),
            &asked(&[("A", "boss")], 3, 40),
            "B",
        )
        .unwrap();
        assert_eq!(l.depth(), 1);
        assert_eq!(l.budget.tokens_left(), 40);
        assert_eq!(l.budget.tool_calls_left(), 5);
        assert!(l.deadline <= Instant::now() + Duration::from_secs(1));
        // Asking boss back is fine here (boss is on A); asking an agent of this server already
        // on the path, through A, is a cycle.
        assert_eq!(l.check(&name("boss")), Ok(()));
        let through = Lineage::from_remote(
            "e2",
            "c",
            &beta,
            later(),
            &asked(&[("B", "gamma"), ("A", "boss")], 3, 40),
            "B",
        )
        .unwrap();
        let Err(Refusal::Cycle(m)) = through.check(&name("gamma")) else {
            panic!("gamma (B) → boss (A) → beta (B) → gamma is a cycle")
        };
        assert!(m.contains("gamma → boss → beta → gamma"), "{m}");
        // beta itself already on the path: refused before it runs.
        let Err(Refusal::Cycle(m)) = Lineage::from_remote(
            "e3",
            "c",
            &beta,
            later(),
            &asked(&[("B", "beta"), ("A", "boss")], 3, 40),
            "B",
        ) else {
            panic!("beta (B) → boss (A) → beta is a cycle")
        };
        assert!(m.contains("cycle across servers"), "{m}");
        assert!(matches!(
            Lineage::from_remote(
                "e4",
                "c",
                &beta,
                later(),
                &asked(&[("A", "boss"), ("A", "x")], 1, 40),
                "B"
            ),
            Err(Refusal::Depth(_))
        ));
        assert!(matches!(
            Lineage::from_remote(
                "e5",
                "c",
                &beta,
                later(),
                &asked(&[("A", "boss")], 3, 0),
                "B"
            ),
            Err(Refusal::Budget(_))
        ));
        // What it tells the next server: the whole path, this server's hops named by its id.
        let onward = l.for_remote("B");
        assert_eq!(onward.ancestry.len(), 2);
        assert_eq!(onward.ancestry[1].server, "B");
        assert_eq!(onward.ancestry[1].agent, "beta");
        assert_eq!(onward.parent_task, "e1");
    }

    #[test]
    fn the_tightest_depth_limit_on_the_path_holds() {
        let root = Lineage::root(
            "e1",
            "c",
            &agent(
                "alpha",
                "[delegation]\nmax_depth = 2\nagents = [\"beta\"]\n",
            ),
            later(),
            100,
            100,
        );
        let b = root.child("e2", &agent("beta", ""), later());
        assert_eq!(b.check(&name("gamma")), Ok(()));
        let c = b.child("e3", &agent("gamma", ""), later());
        assert!(matches!(c.check(&name("delta")), Err(Refusal::Depth(_))));
        // A child may tighten the limit, never loosen it.
        let tight = root.child(
            "e4",
            &agent("beta", "[delegation]\nmax_depth = 1\nagents = [\"x1\"]\n"),
            later(),
        );
        assert_eq!(tight.depth_limit, 2);
        let tighter = tight.child(
            "e5",
            &agent("gamma", "[delegation]\nmax_depth = 16\nagents = [\"x1\"]\n"),
            later(),
        );
        assert_eq!(tighter.depth_limit, 2);
    }

    #[test]
    fn children_share_the_budget_and_end_no_later_than_their_parent() {
        let soon = Instant::now() + Duration::from_secs(5);
        let root = Lineage::root("e1", "c", &agent("alpha", ""), soon, 10, 2);
        let b = root.child("e2", &agent("beta", ""), later());
        assert_eq!(b.deadline, soon);
        b.budget.spend_tokens(10);
        assert!(matches!(
            root.check(&name("gamma")),
            Err(Refusal::Budget(_))
        ));
        assert!(root.budget.take_tool_call().is_ok());
        assert!(b.budget.take_tool_call().is_ok());
        assert!(
            root.budget
                .take_tool_call()
                .unwrap_err()
                .contains("2 calls")
        );
        let late = Lineage::root("e9", "c", &agent("alpha", ""), Instant::now(), 10, 2);
        assert!(matches!(
            late.check(&name("beta")),
            Err(Refusal::Deadline(_))
        ));
    }
}
