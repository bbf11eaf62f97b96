//! One grant per execution: everything a request may use (its agent, the tools offered to its
//! model and who serves each, the memory it reaches, its workspace directory) is resolved once
//! when the run is prepared, into one [`ExecutionGrant`], and every frame the worker sends is
//! checked against it: a completion may offer the model only granted tools (with the grant's
//! descriptions, not the worker's), and a tool call runs only when its tool is granted.
//!
//! The grant also carries the execution's [`Lineage`] (its place in its delegation tree and the
//! budgets the tree shares), so the delegation tools and the budget checks find it here.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use caxton_ipc_protocol::{ToolCall, ToolSpec};
use caxton_memory::Scope;
use serde_json::Value;

use crate::agent::AgentDefinition;
use crate::delegation::Lineage;
use crate::tools::{CallOutcome, ToolCallContext, ToolProvider};

/// A granted tool and the provider that serves it.
struct GrantedTool {
    spec: ToolSpec,
    provider: Arc<dyn ToolProvider>,
}

/// What one execution may use.
pub struct ExecutionGrant {
    agent: Arc<AgentDefinition>,
    tools: BTreeMap<String, GrantedTool>,
    context: ToolCallContext,
    unmatched: Vec<String>,
}

impl std::fmt::Debug for ExecutionGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionGrant")
            .field("agent", &self.agent.name)
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .field("memory", &self.context.memory)
            .finish_non_exhaustive()
    }
}

impl ExecutionGrant {
    /// Resolve what a request of `agent` reaching `memory`, placed in its tree by `lineage`,
    /// may use from every tool provider.
    pub fn resolve(
        agent: Arc<AgentDefinition>,
        memory: Option<Scope>,
        lineage: Option<Arc<Lineage>>,
        providers: &[Arc<dyn ToolProvider>],
        workspaces_dir: &Path,
    ) -> Self {
        let mut tools = BTreeMap::new();
        let mut matched = std::collections::BTreeSet::new();
        for provider in providers {
            let granted = provider.grant(&agent, memory.as_ref());
            for spec in granted.tools {
                // Providers' names do not overlap (the tool registry refuses packages that
                // shadow another provider's tools); the first provider keeps a name if they do.
                tools
                    .entry(spec.name.clone())
                    .or_insert_with(|| GrantedTool {
                        spec,
                        provider: provider.clone(),
                    });
            }
            matched.extend(granted.matched);
        }
        let unmatched = agent
            .tools
            .iter()
            .filter(|e| !matched.contains(*e))
            .cloned()
            .collect();
        let context = ToolCallContext {
            workspace: Some(workspaces_dir.join(agent.name.as_str())),
            memory,
            caller: Some(agent.clone()),
            lineage,
        };
        Self {
            agent,
            tools,
            context,
            unmatched,
        }
    }

    /// The agent that answers.
    pub fn agent(&self) -> &Arc<AgentDefinition> {
        &self.agent
    }

    /// Where the execution sits in its tree, with the budgets the tree shares.
    pub fn lineage(&self) -> Option<&Arc<Lineage>> {
        self.context.lineage.as_ref()
    }

    /// The memory the request reaches; `None` when its agent's memory is off.
    pub fn memory(&self) -> Option<&Scope> {
        self.context.memory.as_ref()
    }

    /// The tools offered to the model, by name.
    pub fn tools(&self) -> Vec<ToolSpec> {
        self.tools.values().map(|t| t.spec.clone()).collect()
    }

    /// Whether the execution may call tool `name`.
    pub fn grants(&self, name: &str) -> bool {
        self.tools.contains_key(name)
    }

    /// The agent's `tools` entries that match no deployed tool.
    pub fn unmatched(&self) -> &[String] {
        &self.unmatched
    }

    /// The tools a worker's completion request offers its model, checked: each must be
    /// granted, and goes to the provider as the grant describes it. The error names the first
    /// tool that is not granted.
    pub fn offered(&self, requested: &[ToolSpec]) -> Result<Vec<ToolSpec>, String> {
        requested
            .iter()
            .map(|t| match self.tools.get(&t.name) {
                Some(granted) => Ok(granted.spec.clone()),
                None => Err(format!(
                    "the worker offered its model tool {:?}, which agent {} is not granted",
                    t.name, self.agent.name
                )),
            })
            .collect()
    }

    /// Run one tool call of the model: refused unless granted, `invalid` unless its arguments
    /// are a JSON value (no arguments at all stand for `{}`), else run by its provider.
    pub async fn call(&self, call: &ToolCall) -> CallOutcome {
        let Some(granted) = self.tools.get(&call.name) else {
            return CallOutcome::refused(
                &call.name,
                &call.arguments_json,
                "refused",
                format!("tool {:?} is not in this agent's tools list", call.name),
            );
        };
        let text = call.arguments_json.trim();
        let arguments = if text.is_empty() {
            Ok(Value::Object(serde_json::Map::new()))
        } else {
            serde_json::from_str::<Value>(text)
        };
        match arguments {
            Ok(arguments) => {
                granted
                    .provider
                    .call(&call.name, arguments, &self.context)
                    .await
            }
            Err(e) => CallOutcome::refused(
                &call.name,
                &call.arguments_json,
                "invalid",
                format!("arguments are not valid JSON: {e}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use std::sync::Mutex;

    use super::*;
    use crate::tools::Granted;

    /// A provider granting fixed tools and recording what it was asked to run.
    struct Fixed {
        names: Vec<&'static str>,
        matches: Vec<&'static str>,
        calls: Mutex<Vec<(String, Value, Option<Scope>)>>,
    }

    #[async_trait::async_trait]
    impl ToolProvider for Fixed {
        fn grant(&self, agent: &AgentDefinition, _memory: Option<&Scope>) -> Granted {
            Granted {
                tools: self
                    .names
                    .iter()
                    .map(|n| ToolSpec {
                        name: (*n).into(),
                        description: format!("{n} as granted"),
                        input_schema_json: "{}".into(),
                    })
                    .collect(),
                matched: agent
                    .tools
                    .iter()
                    .filter(|e| self.matches.contains(&e.as_str()))
                    .cloned()
                    .collect(),
            }
        }

        async fn call(&self, tool: &str, arguments: Value, ctx: &ToolCallContext) -> CallOutcome {
            self.calls
                .lock()
                .unwrap()
                .push((tool.into(), arguments, ctx.memory.clone()));
            CallOutcome::new(
                tool,
                "",
                std::time::Instant::now(),
                serde_json::json!({"content": [], "isError": false}),
                "ok",
                None,
            )
        }
    }

    fn agent(tools: &str) -> Arc<AgentDefinition> {
        let src = format!(
            "name = \"helper\"\nversion = \"1\"\nsystem_prompt = \"s\"\nuser_prompt_template = \"{{{{request}}}}\"\ntools = [{tools}]\n"
        );
        Arc::new(crate::agent::parse_agent(Path::new("agents/helper.toml"), &src).unwrap())
    }

    fn call(name: &str, args: &str) -> ToolCall {
        ToolCall {
            id: "c1".into(),
            name: name.into(),
            arguments_json: args.into(),
        }
    }

    #[tokio::test]
    async fn a_worker_can_use_only_what_its_execution_was_granted() {
        let wasm = Arc::new(Fixed {
            names: vec!["fetch"],
            matches: vec!["fetch"],
            calls: Mutex::default(),
        });
        let memory = Arc::new(Fixed {
            names: vec!["memory_search"],
            matches: vec![],
            calls: Mutex::default(),
        });
        let providers: Vec<Arc<dyn ToolProvider>> = vec![wasm.clone(), memory.clone()];
        let scope = Scope::agent("helper").unwrap();
        let grant = ExecutionGrant::resolve(
            agent("\"fetch\", \"nonexistent\""),
            Some(scope.clone()),
            None,
            &providers,
            Path::new("/srv/workspaces"),
        );
        let names: Vec<String> = grant.tools().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["fetch", "memory_search"]);
        assert_eq!(grant.unmatched(), ["nonexistent"]);

        // A completion frame offering an ungranted tool is refused by name; a granted one
        // reaches the provider as granted, whatever the worker said it was.
        let mut forged = grant.tools();
        forged[0].description = "run anything".into();
        assert_eq!(
            grant.offered(&forged).unwrap()[0].description,
            "fetch as granted"
        );
        forged.push(ToolSpec {
            name: "shell".into(),
            description: String::new(),
            input_schema_json: "{}".into(),
        });
        let err = grant.offered(&forged).unwrap_err();
        assert!(err.contains("\"shell\"") && err.contains("helper"), "{err}");

        // Calls: refused when not granted, invalid when not JSON, else to the provider that
        // granted the tool, with the grant's memory scope.
        let refused = grant.call(&call("shell", "{}")).await;
        assert_eq!(refused.record.outcome, "refused");
        assert!(refused.is_error());
        let invalid = grant.call(&call("fetch", "{not json")).await;
        assert_eq!(invalid.record.outcome, "invalid");
        assert!(grant.call(&call("fetch", "")).await.record.outcome == "ok");
        assert!(
            grant
                .call(&call("memory_search", r#"{"query":"tea"}"#))
                .await
                .record
                .outcome
                == "ok"
        );
        let wasm_calls = wasm.calls.lock().unwrap().clone();
        assert_eq!(wasm_calls.len(), 1);
        assert_eq!(wasm_calls[0].1, serde_json::json!({}));
        let memory_calls = memory.calls.lock().unwrap().clone();
        assert_eq!(memory_calls.len(), 1);
        assert_eq!(memory_calls[0].0, "memory_search");
        assert_eq!(memory_calls[0].2, Some(scope));
    }
}
