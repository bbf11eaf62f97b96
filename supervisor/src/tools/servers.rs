//! The deployed MCP tool servers: built-in ones found at start, operator-deployed ones persisted
//! in the data directory, and the calls agents and MCP clients make to them.
//!
//! Invariants: tool names are unique across all servers (an agent's model sees one flat list);
//! a deploy either replaces a server completely or changes nothing; calls run on the blocking
//! pool, at most [`MAX_CONCURRENT_CALLS`] at once (the instance pool's size), of which one tool
//! server may hold half and one caller (agent) a quarter, so slow calls of one cannot starve the
//! others; a failing call is that call's error result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use caxton_ipc_protocol::ToolSpec;
use caxton_tool_host::manifest::{MANIFEST_FILE, ToolManifest};
use caxton_tool_host::{
    CallContext, CallSlots, HostLimits, PackageError, SlotLimits, ToolCallError, ToolHost,
    ToolServer,
};
use serde_json::Value;

use super::{CallOutcome, Granted, ToolCallContext, ToolProvider, error_result, result_text};
use crate::agent::AgentDefinition;

/// Calls running at once; more wait their turn (see [`SlotLimits::for_pool`] for the shares of
/// one tool server and one caller).
pub const MAX_CONCURRENT_CALLS: usize = 64;

/// Why a tool operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The package is invalid.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// Another server (or another provider, such as the supervisor's memory) already provides a
    /// tool of the same name.
    #[error("tool {tool:?} of {server} is already provided by {other}")]
    NameClash {
        /// The server being deployed.
        server: String,
        /// The clashing tool.
        tool: String,
        /// The server that has it.
        other: String,
    },
    /// No such server.
    #[error("no tool server named {0:?} is deployed (see `caxton tool list`)")]
    UnknownServer(String),
    /// Built-in servers come with the installation.
    #[error("{0} is a built-in tool server and cannot be removed")]
    BuiltIn(String),
    /// The package could not be stored.
    #[error("cannot store tool package in {path}: {error}")]
    Storage {
        /// Where.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The tool host could not start.
    #[error("tool host: {0}")]
    Host(String),
}

pub use caxton_api_contract::tools::{ToolServerDetail, ToolServerInfo, ToolSource};

struct Loaded {
    manifest: ToolManifest,
    /// Packages found at start are compiled on their first call (from the on-disk cache, so
    /// cheaply), which keeps start-up quick however many servers are deployed.
    server: OnceLock<Result<Arc<ToolServer>, String>>,
    /// Where a lazily compiled package lives.
    package: PathBuf,
    source: ToolSource,
}

impl Loaded {
    fn server(&self, host: &ToolHost) -> Result<Arc<ToolServer>, String> {
        self.server
            .get_or_init(|| {
                ToolServer::load(host, &self.package)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }
}

/// The deployed tool servers.
pub struct ToolRegistry {
    host: Arc<ToolHost>,
    dir: PathBuf,
    servers: RwLock<BTreeMap<String, Arc<Loaded>>>,
    slots: CallSlots,
    /// Tool names other providers serve, with who serves them: no package may shadow them.
    reserved: BTreeMap<String, String>,
}

impl ToolRegistry {
    /// Start the tool host and load built-in packages, then deployed ones; a package that does
    /// not load is logged and skipped so the daemon still starts. `reserved` names the tools
    /// other providers serve (tool, provider), which no package may also provide.
    pub fn open(
        tools_dir: &Path,
        builtin_dir: Option<&Path>,
        cache_dir: &Path,
        reserved: &[(&str, &str)],
    ) -> Result<Self, ToolError> {
        let host = ToolHost::new(
            cache_dir.join("wasm"),
            HostLimits {
                max_instances: MAX_CONCURRENT_CALLS as u32,
                ..HostLimits::default()
            },
        )
        .map_err(|e| ToolError::Host(e.to_string()))?;
        let registry = Self {
            host: Arc::new(host),
            dir: tools_dir.to_owned(),
            servers: RwLock::new(BTreeMap::new()),
            slots: CallSlots::new(SlotLimits::for_pool(MAX_CONCURRENT_CALLS)),
            reserved: reserved
                .iter()
                .map(|(tool, owner)| ((*tool).to_owned(), (*owner).to_owned()))
                .collect(),
        };
        if let Some(dir) = builtin_dir {
            registry.load_all(dir, ToolSource::BuiltIn);
        }
        registry.load_all(tools_dir, ToolSource::Deployed);
        Ok(registry)
    }

    fn load_all(&self, dir: &Path, source: ToolSource) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join(MANIFEST_FILE).is_file())
            .collect();
        dirs.sort();
        for package in dirs {
            let manifest = match ToolManifest::load(&package) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(package = %package.display(), error = %e, "tool server not loaded");
                    continue;
                }
            };
            let module = package.join(&manifest.module);
            if !module.is_file() {
                let hint = if source == ToolSource::BuiltIn {
                    "run scripts/build-tools.sh"
                } else {
                    "deploy the package again"
                };
                tracing::warn!(module = %module.display(), hint, "tool module missing; server not loaded");
                continue;
            }
            let name = manifest.name.clone();
            let loaded = Loaded {
                manifest,
                server: OnceLock::new(),
                package: package.clone(),
                source,
            };
            match self.insert(loaded) {
                Ok(()) => tracing::info!(tool_server = %name, ?source, "tool server loaded"),
                Err(e) => {
                    tracing::warn!(package = %package.display(), error = %e, "tool server not loaded")
                }
            }
        }
    }

    /// Add or replace a server, refusing tool names another server already has.
    fn insert(&self, loaded: Loaded) -> Result<(), ToolError> {
        let mut servers = self
            .servers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(clash) = find_clash(&servers, &self.reserved, &loaded.manifest) {
            return Err(clash);
        }
        servers.insert(loaded.manifest.name.clone(), Arc::new(loaded));
        Ok(())
    }

    /// Validate, compile and store a package given as manifest text and module bytes; on any
    /// error nothing changes.
    pub fn deploy(
        &self,
        origin: &Path,
        manifest_text: &str,
        wasm: &[u8],
    ) -> Result<ToolServerInfo, ToolError> {
        let manifest_path = origin.join(MANIFEST_FILE);
        let manifest =
            ToolManifest::parse(&manifest_path, manifest_text).map_err(PackageError::from)?;
        let server = ToolServer::from_parts(&self.host, manifest, wasm, &manifest_path)?;
        let name = server.name().to_owned();
        self.check_clash(server.manifest())?;
        let package = self.store(&name, manifest_text, &server.manifest().module, wasm)?;
        self.insert(Loaded {
            manifest: server.manifest().clone(),
            server: OnceLock::from(Ok(Arc::new(server))),
            package,
            source: ToolSource::Deployed,
        })?;
        tracing::info!(tool_server = %name, "tool server deployed");
        self.info(&name).ok_or(ToolError::UnknownServer(name))
    }

    fn check_clash(&self, manifest: &ToolManifest) -> Result<(), ToolError> {
        let servers = self
            .servers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        find_clash(&servers, &self.reserved, manifest).map_or(Ok(()), Err)
    }

    /// Write the package under `tools_dir/NAME` atomically: a complete new directory is renamed
    /// over the old one, so a crash leaves either version, never half of one.
    fn store(
        &self,
        name: &str,
        manifest_text: &str,
        module: &str,
        wasm: &[u8],
    ) -> Result<PathBuf, ToolError> {
        let storage = |path: &Path, error| ToolError::Storage {
            path: path.to_owned(),
            error,
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| storage(&self.dir, e))?;
        let staging = self.dir.join(format!(".{name}.new"));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir(&staging).map_err(|e| storage(&staging, e))?;
        std::fs::write(staging.join(MANIFEST_FILE), manifest_text)
            .map_err(|e| storage(&staging, e))?;
        std::fs::write(staging.join(module), wasm).map_err(|e| storage(&staging, e))?;
        let target = self.dir.join(name);
        let old = self.dir.join(format!(".{name}.old"));
        let _ = std::fs::remove_dir_all(&old);
        if target.exists() {
            std::fs::rename(&target, &old).map_err(|e| storage(&target, e))?;
        }
        std::fs::rename(&staging, &target).map_err(|e| storage(&target, e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(target)
    }

    /// Remove a deployed server and its stored package.
    pub fn remove(&self, name: &str) -> Result<ToolServerInfo, ToolError> {
        let info = self
            .info(name)
            .ok_or_else(|| ToolError::UnknownServer(name.to_owned()))?;
        if info.source == ToolSource::BuiltIn {
            return Err(ToolError::BuiltIn(name.to_owned()));
        }
        let path = self.dir.join(name);
        std::fs::remove_dir_all(&path).map_err(|error| ToolError::Storage { path, error })?;
        self.servers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
        tracing::info!(tool_server = %name, "tool server removed");
        Ok(info)
    }

    /// Every server.
    pub fn list(&self) -> Vec<ToolServerInfo> {
        let servers = self
            .servers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        servers.values().map(|l| info_of(l)).collect()
    }

    /// One server's summary.
    pub fn info(&self, name: &str) -> Option<ToolServerInfo> {
        let servers = self
            .servers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        servers.get(name).map(|l| info_of(l))
    }

    /// One server with its manifest.
    pub fn show(&self, name: &str) -> Option<ToolServerDetail> {
        let servers = self
            .servers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        servers.get(name).map(|l| ToolServerDetail {
            info: info_of(l),
            manifest: serde_json::to_value(&l.manifest).unwrap_or_default(),
        })
    }

    /// Every tool of every server, as offered to models and MCP clients, by name.
    pub fn all_tools(&self) -> Vec<ToolSpec> {
        let servers = self
            .servers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut tools: Vec<ToolSpec> = servers
            .values()
            .flat_map(|l| l.manifest.tools.iter().map(spec_of))
            .collect();
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        tools
    }

    /// The tools an agent's `tools` list grants: each entry names a tool or a whole server.
    /// Entries that match nothing are returned too, so the caller can warn about them.
    pub fn resolve(&self, entries: &[String]) -> (Vec<ToolSpec>, Vec<String>) {
        let servers = self
            .servers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut chosen = BTreeMap::new();
        let mut missing = Vec::new();
        for entry in entries {
            let mut found = false;
            for loaded in servers.values() {
                let manifest = &loaded.manifest;
                for tool in &manifest.tools {
                    if manifest.name == *entry || tool.name == *entry {
                        chosen.insert(tool.name.clone(), spec_of(tool));
                        found = true;
                    }
                }
            }
            if !found {
                missing.push(entry.clone());
            }
        }
        (chosen.into_values().collect(), missing)
    }

    /// Run one call of any deployed tool (whether the caller may use it is its grant's
    /// business). Every failure becomes an `isError` result with a message.
    pub async fn call(&self, tool: &str, arguments: Value, ctx: CallContext) -> CallOutcome {
        let started = Instant::now();
        let shown_args = arguments.to_string();
        let finish = |result: Value, outcome: &str, error: Option<String>| {
            CallOutcome::new(tool, &shown_args, started, result, outcome, error)
        };
        let server = {
            let servers = self
                .servers
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            servers
                .values()
                .find(|l| l.manifest.tools.iter().any(|t| t.name == tool))
                .cloned()
        };
        let Some(server) = server else {
            let message = format!("no deployed tool server provides {tool:?}");
            return finish(error_result(&message), "refused", Some(message));
        };
        let _slot = match self
            .slots
            .acquire(&server.manifest.name, &ctx.caller())
            .await
        {
            Ok(slot) => slot,
            Err(closed) => {
                let message = closed.to_string();
                return finish(error_result(&message), "failed", Some(message));
            }
        };
        let name = tool.to_owned();
        let host = self.host.clone();
        let span = tracing::info_span!("tool_call", tool_server = %server.manifest.name, tool);
        let joined = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            server
                .server(&host)
                .map(|compiled| compiled.call(&name, &arguments, &ctx))
        })
        .await;
        match joined {
            Ok(Err(load_error)) => {
                tracing::error!(tool, error = %load_error, "tool server failed to load");
                finish(error_result(&load_error), "failed", Some(load_error))
            }
            Ok(Ok(Ok(result))) => {
                let is_error = result.get("isError").and_then(Value::as_bool) == Some(true);
                if is_error {
                    let text = result_text(&result);
                    finish(result, "tool_error", Some(text))
                } else {
                    finish(result, "ok", None)
                }
            }
            Ok(Ok(Err(e))) => {
                let outcome = match e {
                    ToolCallError::InvalidArguments { .. } => "invalid",
                    ToolCallError::UnknownTool { .. } => "refused",
                    _ => "failed",
                };
                let message = e.to_string();
                tracing::warn!(tool, error = %message, "tool call failed");
                finish(error_result(&message), outcome, Some(message))
            }
            Err(e) => {
                let message = format!("tool call task failed: {e}");
                finish(error_result(&message), "failed", Some(message))
            }
        }
    }
}

#[async_trait::async_trait]
impl ToolProvider for ToolRegistry {
    fn grant(&self, agent: &AgentDefinition, _memory: Option<&caxton_memory::Scope>) -> Granted {
        let (tools, missing) = self.resolve(&agent.tools);
        let matched = agent
            .tools
            .iter()
            .filter(|e| !missing.contains(e))
            .cloned()
            .collect();
        Granted { tools, matched }
    }

    async fn call(&self, tool: &str, arguments: Value, ctx: &ToolCallContext) -> CallOutcome {
        let ctx = CallContext {
            workspace: ctx.workspace.clone(),
        };
        ToolRegistry::call(self, tool, arguments, ctx).await
    }
}

/// A tool of `manifest`'s server that another server already provides.
fn find_clash(
    servers: &BTreeMap<String, Arc<Loaded>>,
    reserved: &BTreeMap<String, String>,
    manifest: &ToolManifest,
) -> Option<ToolError> {
    if let Some((tool, owner)) = manifest
        .tools
        .iter()
        .find_map(|t| reserved.get_key_value(&t.name))
    {
        return Some(ToolError::NameClash {
            server: manifest.name.clone(),
            tool: tool.clone(),
            other: owner.clone(),
        });
    }
    manifest.tools.iter().find_map(|tool| {
        servers
            .iter()
            .find(|(other, loaded)| {
                other.as_str() != manifest.name
                    && loaded.manifest.tools.iter().any(|t| t.name == tool.name)
            })
            .map(|(other, _)| ToolError::NameClash {
                server: manifest.name.clone(),
                tool: tool.name.clone(),
                other: format!("tool server {other}"),
            })
    })
}

fn info_of(loaded: &Loaded) -> ToolServerInfo {
    let m = &loaded.manifest;
    ToolServerInfo {
        name: m.name.clone(),
        version: m.version.clone(),
        description: m.description.clone(),
        source: loaded.source,
        tools: m.tools.iter().map(|t| t.name.clone()).collect(),
    }
}

fn spec_of(tool: &caxton_tool_host::manifest::ToolDef) -> ToolSpec {
    ToolSpec {
        name: tool.name.clone(),
        description: tool.description.clone(),
        input_schema_json: tool.input_schema.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    /// Tool `hog` tells the loopback server at `port` that it runs, then sleeps 10 s through
    /// WASI's `poll_oneoff`; tool `ping` answers at once.
    fn module(port: u16) -> String {
        let request = format!(r#"{{"url":"http://127.0.0.1:{port}/arrived"}}"#);
        format!(
            r#"(module
  (import "caxton" "http_request" (func $http (param i32 i32) (result i64)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 4096))
  (data (i32.const 1024) "{{\"content\":[]}}")
  (data (i32.const 2048) "{escaped}")
  (func (export "caxton_alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $len)))
    (local.get $p))
  (func (export "caxton_call") (param $np i32) (param $nl i32) (param $ap i32) (param $al i32) (result i64)
    (if (i32.eq (i32.load8_u (local.get $np)) (i32.const 104))
      (then
        (drop (call $http (i32.const 2048) (i32.const {len})))
        (i32.store8 (i32.const 264) (i32.const 0))
        (i32.store (i32.const 272) (i32.const 1))
        (i64.store (i32.const 280) (i64.const 10000000000))
        (drop (call $poll (i32.const 256) (i32.const 512) (i32.const 1) (i32.const 600)))))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 14))))"#,
            escaped = request.replace('"', "\\\""),
            len = request.len()
        )
    }

    fn manifest(server: &str, tool: &str, hosts: &str) -> String {
        format!(
            r#"name = "{server}"
version = "1.0.0"
description = "test"
module = "{server}.wasm"

[[tools]]
name = "{tool}"
description = "test"

[tools.input_schema]
type = "object"

[capabilities]
http_hosts = [{hosts}]

[limits]
timeout = "1s"
"#
        )
    }

    /// A loopback server that reports each request it answers.
    fn arrivals() -> (u16, tokio::sync::mpsc::UnboundedReceiver<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                        line.clear();
                    }
                    let _ = tx.send(());
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                });
            }
        });
        (port, rx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_agents_slow_calls_leave_slots_for_another_agent() {
        let dir = tempfile::tempdir().unwrap();
        let (port, mut arrived) = arrivals();
        let registry = Arc::new(
            ToolRegistry::open(
                &dir.path().join("tools"),
                None,
                &dir.path().join("cache"),
                &[],
            )
            .unwrap(),
        );
        let wasm = module(port);
        let hosts = format!("\"127.0.0.1:{port}\"");
        registry
            .deploy(
                dir.path(),
                &manifest("hogs", "hog", &hosts),
                wasm.as_bytes(),
            )
            .unwrap();
        registry
            .deploy(dir.path(), &manifest("pinger", "ping", ""), wasm.as_bytes())
            .unwrap();
        let ctx = |agent: &str| CallContext {
            workspace: Some(dir.path().join("workspaces").join(agent)),
        };
        // More sleeping calls from one agent than there are slots in all.
        let mut hogs = Vec::new();
        for _ in 0..MAX_CONCURRENT_CALLS + 8 {
            let (registry, ctx) = (registry.clone(), ctx("busy"));
            hogs.push(tokio::spawn(async move {
                registry
                    .call("hog", Value::Object(Default::default()), ctx)
                    .await
            }));
        }
        // The agent's share of the slots is taken, each call asleep in it.
        for _ in 0..SlotLimits::for_pool(MAX_CONCURRENT_CALLS).per_caller {
            arrived.recv().await.unwrap();
        }
        let ping = registry
            .call("ping", Value::Object(Default::default()), ctx("other"))
            .await;
        assert_eq!(ping.record.outcome, "ok", "{:?}", ping.record);
        assert!(
            hogs.iter().all(|h| !h.is_finished()),
            "the other agent's call waited for a sleeping call to give its slot back"
        );
        // The sleepers end at their 1 s limit, not after the 10 s they asked for.
        let first = hogs.remove(0).await.unwrap();
        assert_eq!(first.record.outcome, "failed", "{:?}", first.record);
        let error = first.record.error.unwrap_or_default();
        assert!(error.contains("time limit"), "{error}");
        for hog in hogs {
            hog.abort();
        }
    }
}
