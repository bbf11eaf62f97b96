//! Supervisor configuration: the TOML file, `CAXTON_*` environment overrides, and the defaults
//! that depend on who runs the daemon (systemd or root versus a user session).
//!
//! Raw inputs ([`ConfigFile`], [`ConfigSources`]) are resolved once into [`Config`]; nothing else
//! reads the environment or guesses paths.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the systemd unit's daemon listens (`RuntimeDirectory=caxton`).
pub const SYSTEM_SOCKET: &str = "/run/caxton/caxton.sock";

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error (shown in the message, so not chained as a source).
        error: std::io::Error,
    },
    /// The config file is not valid.
    #[error("{path}:{line}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending item.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// An environment override has a bad value.
    #[error("environment variable {var}={value:?}: {reason}")]
    Env {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// The settings contradict each other.
    #[error("configuration: {0}")]
    Inconsistent(String),
}

/// The config file as written by the operator. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The file and its text, when it was read from one, so that a value refused after parsing
    /// can still be reported at its line.
    #[serde(skip)]
    origin: Option<Origin>,
    /// Where the database, agents and (by default) the socket live.
    pub data_dir: Option<PathBuf>,
    /// Directory of agent TOML files.
    pub agents_dir: Option<PathBuf>,
    /// Management API Unix socket.
    pub socket: Option<PathBuf>,
    /// Where local model files are looked for.
    pub models_dir: Option<PathBuf>,
    /// Where the built-in tool packages are (one directory each, as `scripts/build-tools.sh`
    /// leaves them).
    pub builtin_tools_dir: Option<PathBuf>,
    /// Management API over TCP.
    #[serde(default)]
    pub api: ApiSection,
    /// Worker processes.
    #[serde(default)]
    pub worker: WorkerSection,
    /// Shutdown behaviour.
    #[serde(default)]
    pub shutdown: ShutdownSection,
    /// Named LLM providers.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Defaults for agents that do not choose.
    #[serde(default)]
    pub defaults: DefaultsSection,
    /// The embedded memory.
    #[serde(default)]
    pub memory: MemorySection,
    /// The execution history database.
    #[serde(default)]
    pub executions: ExecutionsSection,
    /// Conversations: how long they can be continued and how much of them an agent sees.
    #[serde(default)]
    pub conversations: ConversationsSection,
    /// Budgets of delegation trees whose root agent does not set its own.
    #[serde(default)]
    pub delegation: DelegationSection,
    /// OpenTelemetry trace export.
    #[serde(default)]
    pub telemetry: TelemetrySection,
}

/// `[telemetry]`: where the daemon's traces go (the `OTEL_*` variables override it).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    /// OTLP over HTTP, e.g. `http://127.0.0.1:4318`; traces go to its `/v1/traces`.
    pub endpoint: Option<String>,
    /// The `service.name` of the spans (default `caxton`).
    pub service_name: Option<String>,
}

/// `[delegation]`: what one caller's request may spend, with everything it delegates.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegationSection {
    /// Tokens of every model call in a request's tree.
    pub token_budget: Option<u64>,
    /// Tool calls (delegations included) of every execution in a request's tree.
    pub tool_call_budget: Option<u64>,
}

/// `[conversations]`: every request belongs to one; a later request may continue it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationsSection {
    /// Idle time after which a conversation can no longer be continued, e.g. "24h".
    pub expire_after: Option<String>,
    /// Earlier turns a continued conversation gives its agent, at most.
    pub history_turns: Option<u64>,
}

/// `[executions]`: the database of execution records (`DATA_DIR/caxton.db`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionsSection {
    /// Cap on the database file, e.g. "1GB"; when a record would grow it beyond, runs are
    /// refused as on a full disk.
    pub max_size: Option<String>,
}

/// `[memory]`: the embedded knowledge graph agents with `[memory] enabled` use.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySection {
    /// The SQLite file; default: `DATA_DIR/memory.db`.
    pub database: Option<PathBuf>,
    /// Load the embedding model at start instead of on first use.
    pub preload: Option<bool>,
    /// `"normal"` (survives a crash of the daemon, the default) or `"full"` (also survives
    /// power loss, one fsync per write).
    pub synchronous: Option<String>,
    /// Longest observation accepted, e.g. "8KB".
    pub max_observation: Option<String>,
    /// Cap on the database file, e.g. "10GB"; writes beyond it fail as on a full disk.
    pub max_size: Option<String>,
}

/// `[api]`: the optional TCP listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Address to listen on, e.g. `127.0.0.1:8080`. Requires a token.
    pub tcp_listen: Option<SocketAddr>,
    /// Environment variable holding the bearer token.
    pub token_env: Option<String>,
    /// File holding the bearer token.
    pub token_file: Option<PathBuf>,
    /// Largest accepted request body, e.g. "1MB".
    pub max_body: Option<String>,
    /// Longest wait for a request's headers, and for the next request on an idle connection,
    /// e.g. "10s".
    pub header_timeout: Option<String>,
    /// Longest wait for the next piece of a request body, e.g. "30s".
    pub body_timeout: Option<String>,
    /// Most connections open at once on each listener.
    pub max_connections: Option<usize>,
    /// Most connections on each listener whose peer is not yet known to be allowed (TCP before a
    /// valid token, refused Unix peers); the oldest of them is closed first.
    pub max_unauthenticated: Option<usize>,
    /// File descriptors kept free for workers, databases and tools; the connection caps shrink
    /// to fit the rest.
    pub fd_reserve: Option<u64>,
}

/// `[worker]`: how agent requests are run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSection {
    /// The `caxton-worker` binary; default: next to the running executable.
    pub path: Option<PathBuf>,
    /// Default per-request deadline, e.g. "60s".
    pub timeout: Option<String>,
    /// Time between TERM and KILL when a worker must stop, e.g. "2s".
    pub grace_period: Option<String>,
    /// Most workers alive at once; more requests wait.
    pub max_concurrent: Option<usize>,
    /// Default address-space limit, e.g. "512MB".
    pub memory: Option<String>,
    /// CPU seconds a worker may use.
    pub cpu_seconds: Option<u64>,
    /// Open file descriptors a worker may hold.
    pub open_files: Option<u64>,
    /// Processes (and threads) a worker and everything it starts may have at once, where the
    /// kernel offers a pids cgroup to enforce it.
    pub processes: Option<u64>,
    /// CPUs a worker and everything it starts may use at once (`cpu.max` of its cgroup, where a
    /// delegated cgroup v2 subtree offers the cpu controller), e.g. 1 or 0.5.
    pub cpus: Option<toml::Value>,
    /// How workers confine themselves: "strict", "best-effort" (the default) or "off".
    pub sandbox: Option<String>,
    /// Longest wait for a new worker's Hello, e.g. "5s".
    pub handshake_timeout: Option<String>,
}

/// `[shutdown]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSection {
    /// How long in-flight requests may run after SIGTERM, e.g. "10s".
    pub grace_period: Option<String>,
}

/// `[defaults]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSection {
    /// Provider used by agents whose `[llm]` names none.
    pub provider: Option<String>,
}

/// What kind of server a provider talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// The offline model run inside the supervisor.
    Local,
    /// Any OpenAI-compatible chat-completions server.
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
}

/// `[providers.NAME]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Protocol spoken by the server.
    pub kind: ProviderKind,
    /// Base URL, e.g. `https://api.openai.com/v1` (HTTP providers).
    pub base_url: Option<String>,
    /// Model used when the agent names none (HTTP providers).
    pub model: Option<String>,
    /// GGUF file of a `local` provider, absolute or relative to `models_dir`.
    pub model_file: Option<PathBuf>,
    /// Load a `local` model when the daemon starts instead of on first use.
    pub preload: Option<bool>,
    /// `local`: accepted for compatibility and ignored; the default is now the fast one.
    pub fast_prefill: Option<bool>,
    /// Environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// File holding the API key.
    pub api_key_file: Option<PathBuf>,
    /// Whole-request timeout, e.g. "60s".
    pub timeout: Option<String>,
    /// Retries on 429 and 5xx after the first attempt (default 2).
    pub max_retries: Option<u32>,
    /// `auto` (the default), `none` or `required` (`any`): sent whenever tools are offered;
    /// an agent's `[llm] tool_choice` overrides it.
    pub tool_choice: Option<crate::provider::ToolChoice>,
}

/// Operator inputs that come from the command line (or their `CAXTON_*` variables).
#[derive(Debug, Default, Clone)]
pub struct ConfigSources {
    /// `--config FILE` / `CAXTON_CONFIG`.
    pub config_file: Option<PathBuf>,
    /// `--data-dir DIR` / `CAXTON_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--socket PATH` / `CAXTON_SOCKET`.
    pub socket: Option<PathBuf>,
}

/// Where a config file came from, kept to name the line of a value refused after parsing.
#[derive(Debug, Clone, Default)]
struct Origin {
    path: PathBuf,
    text: String,
}

impl Origin {
    /// The error for the value at `key` (e.g. `["worker", "timeout"]`): `file:line: reason` when
    /// the key is in the file, the bare reason otherwise (the value was a default).
    fn error(origin: &Option<Self>, key: &[&str], reason: String) -> ConfigError {
        match origin
            .as_ref()
            .and_then(|o| line_of_key(&o.text, key).map(|line| (o, line)))
        {
            Some((o, line)) => ConfigError::Invalid {
                path: o.path.clone(),
                line,
                reason,
            },
            None => ConfigError::Inconsistent(reason),
        }
    }
}

/// 1-based line of the value of a dotted key in TOML text, if the key is there.
pub(crate) fn line_of_key(text: &str, key: &[&str]) -> Option<usize> {
    let root = toml::de::DeValue::Table(toml::de::DeTable::parse(text).ok()?.into_inner());
    let mut value = &root;
    let mut start = 0;
    for part in key {
        let next = value.get(*part)?;
        start = next.span().start;
        value = next.get_ref();
    }
    Some(line_of(text, start))
}

/// An inclusive range a setting must fall in.
#[derive(Debug, Clone, Copy)]
pub struct Bounds<T> {
    /// Least accepted value.
    pub min: T,
    /// Greatest accepted value.
    pub max: T,
}

/// Request deadlines (`[worker] timeout`, an agent's `[limits] timeout`, a provider's
/// `timeout`): no worker can start and answer in less than 100ms, and a day is far beyond any
/// request while keeping `Instant + timeout` arithmetic far from overflow.
pub const TIMEOUT_BOUNDS: Bounds<Duration> = Bounds {
    min: Duration::from_millis(100),
    max: Duration::from_secs(24 * 60 * 60),
};
/// `[conversations] expire_after`: a minute to a year.
pub const EXPIRE_AFTER_BOUNDS: Bounds<Duration> = Bounds {
    min: Duration::from_secs(60),
    max: Duration::from_secs(366 * 24 * 60 * 60),
};
/// `[delegation] token_budget`.
pub const TOKEN_BUDGET_BOUNDS: Bounds<u64> = Bounds {
    min: 1,
    max: 1_000_000_000,
};
/// `[delegation] tool_call_budget`.
pub const TOOL_CALL_BUDGET_BOUNDS: Bounds<u64> = Bounds {
    min: 1,
    max: 1_000_000,
};
/// `[conversations] history_turns`: zero gives an agent no earlier turns.
pub const HISTORY_TURNS_BOUNDS: Bounds<u64> = Bounds { min: 0, max: 1000 };
/// `[worker] grace_period`: zero means KILL at once; the unit's stop timeout assumes
/// three of these fit in it, so a minute is the most.
pub const KILL_GRACE_BOUNDS: Bounds<Duration> = Bounds {
    min: Duration::ZERO,
    max: Duration::from_secs(60),
};
/// `[worker] handshake_timeout`: a worker says hello within milliseconds of its start; one
/// that has not after this is stuck, and holds a slot for nothing.
pub const HANDSHAKE_TIMEOUT_BOUNDS: Bounds<Duration> = Bounds {
    min: Duration::from_millis(100),
    max: Duration::from_secs(60),
};
/// `[shutdown] grace_period`: zero stops running requests at once; an hour is the most.
pub const SHUTDOWN_GRACE_BOUNDS: Bounds<Duration> = Bounds {
    min: Duration::ZERO,
    max: Duration::from_secs(60 * 60),
};
/// A worker's address space (`[worker] memory`, an agent's `[limits] memory`). The least is
/// what `caxton-worker` needs to run one request, with a margin: measured with RLIMIT_AS
/// lowered before exec, the (larger) debug build answers at 7MiB, cannot even map libc at
/// 6.5MiB, and answers a 900KB request at 12MiB. The most is the x86-64 user address space,
/// beyond which a limit limits nothing.
pub const WORKER_MEMORY_BOUNDS: Bounds<u64> = Bounds {
    min: 16 * 1024 * 1024,
    max: 128 << 40,
};
/// `[worker] cpu_seconds`: at least one second (zero kills every worker with SIGXCPU at once),
/// at most the longest request deadline.
pub const CPU_SECONDS_BOUNDS: Bounds<u64> = Bounds {
    min: 1,
    max: 24 * 60 * 60,
};
/// `[worker] open_files`: the worker holds its three standard descriptors and the dynamic
/// loader needs one more (measured: it answers with 4 and cannot load its libraries with 3);
/// 8 leaves a margin. The most is further limited by the daemon's own hard `RLIMIT_NOFILE`,
/// checked when the daemon starts.
pub const OPEN_FILES_BOUNDS: Bounds<u64> = Bounds {
    min: 8,
    max: 1 << 20,
};
/// `[worker] max_concurrent`: each live worker costs the daemon a few descriptors.
pub const MAX_CONCURRENT_BOUNDS: Bounds<u64> = Bounds { min: 1, max: 4096 };
/// `[api] max_body`: at least what deploying the largest accepted agent file needs, so a
/// file that `caxton agent validate` accepts is never refused by the API for its size.
pub const MAX_BODY_BOUNDS: Bounds<u64> = Bounds {
    min: crate::agent::MAX_AGENT_DEPLOY_BODY as u64,
    max: 256 * 1024 * 1024,
};
/// `[memory] max_observation`: an observation crosses the worker protocol in one frame.
pub const MAX_OBSERVATION_BOUNDS: Bounds<u64> = Bounds {
    min: 1,
    max: 4 * 1024 * 1024,
};
/// `[api] header_timeout` and `body_timeout`: long enough for a slow client on a slow link,
/// short enough that an idle or stalled connection gives its place back.
pub const API_TIMEOUT_BOUNDS: Bounds<Duration> = Bounds {
    min: Duration::from_millis(100),
    max: Duration::from_secs(60 * 60),
};
/// `[api] max_connections`, per listener.
pub const MAX_CONNECTIONS_BOUNDS: Bounds<u64> = Bounds { min: 1, max: 65536 };
/// `[api] fd_reserve`: a worker spawn alone needs a few descriptors.
pub const FD_RESERVE_BOUNDS: Bounds<u64> = Bounds {
    min: 16,
    max: 1_000_000,
};
/// `[worker] cpus`, in hundredths of a CPU: a hundredth is the least `cpu.max` quota the kernel
/// accepts within its 100 ms period (1 ms), and 1024 CPUs is beyond any machine this runs on.
pub const WORKER_CPUS_BOUNDS: Bounds<u64> = Bounds {
    min: 1,
    max: 1024 * 100,
};
/// `[worker] processes`: the worker itself is one; the unit's `TasksMax=` bounds the sum.
pub const WORKER_PROCESSES_BOUNDS: Bounds<u64> = Bounds { min: 1, max: 4096 };
/// `[executions] max_size`: the schema alone takes five 4 KiB pages.
pub const EXECUTIONS_MAX_SIZE_BOUNDS: Bounds<u64> = Bounds {
    min: 32 * 1024,
    max: 1 << 48,
};
/// `[memory] max_size`: SQLite needs a few pages for its schema alone.
pub const MEMORY_MAX_SIZE_BOUNDS: Bounds<u64> = Bounds {
    min: 1024 * 1024,
    max: 1 << 48,
};

/// Resource limits applied to every worker process.
#[derive(Debug, Clone, Copy)]
pub struct WorkerLimits {
    /// `RLIMIT_AS` in bytes.
    pub address_space: u64,
    /// `RLIMIT_CPU` in seconds.
    pub cpu_seconds: u64,
    /// `RLIMIT_NOFILE`.
    pub open_files: u64,
    /// `pids.max` of the worker's own cgroup, where one can be made.
    pub processes: u64,
    /// `[worker] cpus` as microseconds of CPU time per 100 ms period (`cpu.max` of the worker's
    /// cgroup, where a delegated cgroup v2 subtree offers the cpu controller).
    pub cpu_quota_micros: u64,
}

/// Resolved configuration; every path is absolute and every default applied.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub config_file: Option<PathBuf>,
    /// State directory.
    pub data_dir: PathBuf,
    /// Agent files.
    pub agents_dir: PathBuf,
    /// SQLite database file.
    pub database: PathBuf,
    /// `[executions] max_size` in bytes.
    pub database_max_bytes: Option<u64>,
    /// Management API socket.
    pub socket: PathBuf,
    /// Whether the socket (or the data directory holding it) was chosen by the operator rather
    /// than defaulted; clients only look elsewhere for a daemon when it was not.
    pub socket_explicit: bool,
    /// Optional TCP listener and its token.
    pub tcp: Option<TcpApi>,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Timeouts and connection caps of the API listeners.
    pub api_limits: ApiLimits,
    /// The worker binary.
    pub worker_path: PathBuf,
    /// Default per-request deadline.
    pub default_timeout: Duration,
    /// TERM-to-KILL grace for workers.
    pub kill_grace: Duration,
    /// Longest wait for a new worker's Hello.
    pub handshake_timeout: Duration,
    /// Concurrency cap.
    pub max_concurrent_workers: usize,
    /// Default rlimits.
    pub worker_limits: WorkerLimits,
    /// `[worker] sandbox`: `strict`, `best-effort` or `off`, as the worker's `--sandbox` takes it.
    pub worker_sandbox: &'static str,
    /// Drain time on SIGTERM.
    pub shutdown_grace: Duration,
    /// Named providers; always includes a `local` one.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Where local model files live.
    pub models_dir: PathBuf,
    /// Derived files (the requantised model, compiled tool modules) live here.
    pub cache_dir: PathBuf,
    /// Deployed tool packages.
    pub tools_dir: PathBuf,
    /// Built-in tool packages, when found.
    pub builtin_tools_dir: Option<PathBuf>,
    /// Agents' workspace directories, one per agent, for tools granted `{workspace}`.
    pub workspaces_dir: PathBuf,
    /// Default provider name.
    pub default_provider: Option<String>,
    /// The embedded memory.
    pub memory: MemoryConfig,
    /// Idle time after which a conversation expires.
    pub conversation_expiry: Duration,
    /// Earlier turns a continued conversation gives its agent.
    pub history_turns: usize,
    /// Tokens a request's whole delegation tree may spend, unless its root agent says.
    pub token_budget: u64,
    /// Tool calls a request's whole tree may make, unless its root agent says.
    pub tool_call_budget: u64,
    /// Trace export.
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// The config file's text, to name lines in the checks made when the daemon starts.
    origin: Option<Origin>,
    /// Where `worker_path` came from, for the same checks.
    worker_path_set_by: SetBy,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy)]
enum SetBy {
    File,
    Env(&'static str),
    Default,
}

/// Resolved `[memory]`.
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    /// The SQLite file.
    pub database: PathBuf,
    /// Load the embedding model at start.
    pub preload: bool,
    /// Durability of commits.
    pub synchronous: caxton_memory::Synchronous,
    /// Longest observation in bytes.
    pub max_observation_bytes: usize,
    /// Cap on the database file in bytes.
    pub max_size_bytes: Option<u64>,
}

/// Resolved timeouts and connection caps of `[api]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Longest wait for a request's headers (and for the next one on an idle connection).
    pub header_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_timeout: Duration,
    /// Most connections at once per listener.
    pub max_connections: usize,
    /// Most not-yet-allowed connections at once per listener.
    pub max_unauthenticated: usize,
    /// File descriptors kept free for everything but API connections.
    pub fd_reserve: u64,
}

/// TCP listener settings. The token is read only by the daemon when it starts listening, so
/// CLI commands (which load the same configuration) need no access to it.
#[derive(Debug, Clone)]
pub struct TcpApi {
    /// Address to bind.
    pub listen: SocketAddr,
    token: TokenSource,
}

/// Shortest bearer token the TCP API accepts.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone)]
enum TokenSource {
    Env(String),
    File(PathBuf),
}

impl TcpApi {
    /// Read the bearer token clients must present.
    pub fn read_token(&self) -> Result<String, ConfigError> {
        let token = match &self.token {
            TokenSource::Env(var) => {
                std::env::var(var)
                    .map(|v| v.trim().to_owned())
                    .map_err(|_| {
                        ConfigError::Inconsistent(format!(
                            "api.token_env names {var}, which is not set"
                        ))
                    })?
            }
            TokenSource::File(path) => std::fs::read_to_string(path)
                .map_err(|error| ConfigError::Read {
                    path: path.clone(),
                    error,
                })?
                .trim()
                .to_owned(),
        };
        if token.len() < MIN_TOKEN_LEN {
            let from = match &self.token {
                TokenSource::Env(var) => format!("api.token_env = {var:?}"),
                TokenSource::File(path) => {
                    format!("api.token_file = {:?}", path.display().to_string())
                }
            };
            return Err(ConfigError::Inconsistent(format!(
                "{from}: the API token has {} characters; it must have at least {MIN_TOKEN_LEN}",
                token.len()
            )));
        }
        Ok(token)
    }
}

impl Config {
    /// What only the daemon needs and only the machine it runs on can tell: the worker binary
    /// is an executable regular file, the worker rlimits do not exceed the daemon's own hard
    /// limits (raising a limit past the hard one takes privilege the unit does not grant, so
    /// every spawn would fail), and the TCP API token can be read and is long enough.
    /// `caxton serve` calls this before it binds anything, so a refused configuration leaves
    /// no socket behind.
    pub fn check_runnable(&self) -> Result<(), ConfigError> {
        use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};
        self.check_worker_path()?;
        let hard_limits = [
            (
                "open_files",
                Resource::RLIMIT_NOFILE,
                self.worker_limits.open_files,
                "RLIMIT_NOFILE",
            ),
            (
                "cpu_seconds",
                Resource::RLIMIT_CPU,
                self.worker_limits.cpu_seconds,
                "RLIMIT_CPU",
            ),
            (
                "memory",
                Resource::RLIMIT_AS,
                self.worker_limits.address_space,
                "RLIMIT_AS",
            ),
        ];
        for (field, resource, wanted, resource_name) in hard_limits {
            let Ok((_, hard)) = getrlimit(resource) else {
                continue;
            };
            if hard != RLIM_INFINITY && wanted > hard {
                let shown = if field == "memory" {
                    show_size(wanted)
                } else {
                    wanted.to_string()
                };
                return Err(Origin::error(
                    &self.origin,
                    &["worker", field],
                    format!(
                        "worker.{field} = {shown}: exceeds this daemon's hard {resource_name} of {hard} \
                         (workers cannot be given more than the daemon has); lower it or raise \
                         the daemon's limit (LimitNOFILE=/LimitCPU=/LimitAS= under systemd)",
                    ),
                ));
            }
        }
        if let Some(tcp) = &self.tcp {
            tcp.read_token().map_err(|e| {
                let key = match tcp.token {
                    TokenSource::Env(_) => "token_env",
                    TokenSource::File(_) => "token_file",
                };
                Origin::error(&self.origin, &["api", key], e.to_string())
            })?;
        }
        Ok(())
    }

    fn check_worker_path(&self) -> Result<(), ConfigError> {
        let path = &self.worker_path;
        let problem = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("not found".to_owned()),
            Err(e) => Some(format!("cannot be read: {e}")),
            Ok(meta) if !meta.is_file() => Some("is not a regular file".to_owned()),
            Ok(_) => nix::unistd::access(path, nix::unistd::AccessFlags::X_OK)
                .err()
                .map(|e| format!("is not executable by this daemon: {}", e.desc())),
        };
        let Some(problem) = problem else {
            return Ok(());
        };
        let reason = format!("worker binary {} {problem}", path.display());
        Err(match self.worker_path_set_by {
            SetBy::File => Origin::error(
                &self.origin,
                &["worker", "path"],
                format!("worker.path: {reason}"),
            ),
            SetBy::Env(var) => ConfigError::Env {
                var,
                value: path.display().to_string(),
                reason,
            },
            SetBy::Default => ConfigError::Inconsistent(format!(
                "{reason} (the default, beside this executable); set [worker] path"
            )),
        })
    }

    /// Load the config file (if any), apply environment overrides and resolve defaults.
    pub fn load(sources: &ConfigSources) -> Result<Self, ConfigError> {
        let file = match &sources.config_file {
            Some(path) => read_config_file(path)?,
            None => ConfigFile::default(),
        };
        Self::resolve(sources, file, &|name| std::env::var_os(name))
    }

    /// Resolve with an explicit environment (tests pass their own).
    pub fn resolve(
        sources: &ConfigSources,
        mut file: ConfigFile,
        env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Self, ConfigError> {
        let origin = file.origin.take();
        let at = |key: &[&str], reason: String| Origin::error(&origin, key, reason);
        let env_path = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let system_mode = is_system_instance(env);

        let explicit_data_dir = sources
            .data_dir
            .clone()
            .or(env_path("CAXTON_DATA_DIR"))
            .or(file.data_dir.clone());
        let data_dir = match &explicit_data_dir {
            Some(dir) => dir.clone(),
            None => default_data_dir(system_mode, env)?,
        };
        let data_dir = absolute(&data_dir)?;
        let agents_dir = absolute(
            &env_path("CAXTON_AGENTS_DIR")
                .or(file.agents_dir.clone())
                .unwrap_or_else(|| data_dir.join("agents")),
        )?;
        let socket = sources
            .socket
            .clone()
            .or(env_path("CAXTON_SOCKET"))
            .or(file.socket.clone());
        let socket_explicit = socket.is_some() || explicit_data_dir.is_some();
        let socket = match socket {
            Some(path) => absolute(&path)?,
            None if explicit_data_dir.is_some() => data_dir.join("caxton.sock"),
            None => default_socket(system_mode, env, &data_dir),
        };

        let tcp = match file.api.tcp_listen {
            None => None,
            Some(listen) => Some(TcpApi {
                listen,
                token: token_source(&file.api).map_err(|reason| at(&["api"], reason))?,
            }),
        };
        let size = |key: [&str; 2], value: &Option<String>, bounds, default: u64| {
            value.as_deref().map_or(Ok(default), |v| {
                parse_bounded_size(&key.join("."), v, bounds).map_err(|reason| at(&key, reason))
            })
        };
        let duration = |key: [&str; 2], value: &Option<String>, bounds, default: Duration| {
            value.as_deref().map_or(Ok(default), |v| {
                parse_bounded_duration(&key.join("."), v, bounds).map_err(|reason| at(&key, reason))
            })
        };
        let count = |key: [&str; 2], value: Option<u64>, bounds, default: u64| {
            value.map_or(Ok(default), |v| {
                check_count(&key.join("."), v, bounds).map_err(|reason| at(&key, reason))
            })
        };
        let max_body_bytes = size(
            ["api", "max_body"],
            &file.api.max_body,
            MAX_BODY_BOUNDS,
            1024 * 1024,
        )? as usize;
        let header_timeout = duration(
            ["api", "header_timeout"],
            &file.api.header_timeout,
            API_TIMEOUT_BOUNDS,
            Duration::from_secs(10),
        )?;
        let body_timeout = duration(
            ["api", "body_timeout"],
            &file.api.body_timeout,
            API_TIMEOUT_BOUNDS,
            Duration::from_secs(30),
        )?;
        let max_connections = count(
            ["api", "max_connections"],
            file.api.max_connections.map(|n| n as u64),
            MAX_CONNECTIONS_BOUNDS,
            256,
        )?;
        // Unset, a quarter of the connections may be not-yet-allowed ones.
        let max_unauthenticated = count(
            ["api", "max_unauthenticated"],
            file.api.max_unauthenticated.map(|n| n as u64),
            Bounds {
                min: 1,
                max: max_connections,
            },
            (max_connections / 4).max(1),
        )?;
        let api_limits = ApiLimits {
            header_timeout,
            body_timeout,
            max_connections: max_connections as usize,
            max_unauthenticated: max_unauthenticated as usize,
            fd_reserve: count(
                ["api", "fd_reserve"],
                file.api.fd_reserve,
                FD_RESERVE_BOUNDS,
                256,
            )?,
        };

        let (worker_path, worker_path_set_by) = match env_path("CAXTON_WORKER_PATH") {
            Some(p) => (absolute(&p)?, SetBy::Env("CAXTON_WORKER_PATH")),
            None => match &file.worker.path {
                Some(p) => (absolute(p)?, SetBy::File),
                None => (default_worker_path(), SetBy::Default),
            },
        };
        let default_timeout = duration(
            ["worker", "timeout"],
            &file.worker.timeout,
            TIMEOUT_BOUNDS,
            Duration::from_secs(120),
        )?;
        let conversation_expiry = duration(
            ["conversations", "expire_after"],
            &file.conversations.expire_after,
            EXPIRE_AFTER_BOUNDS,
            Duration::from_secs(24 * 60 * 60),
        )?;
        let history_turns = count(
            ["conversations", "history_turns"],
            file.conversations.history_turns,
            HISTORY_TURNS_BOUNDS,
            20,
        )? as usize;
        if let Some(endpoint) = &file.telemetry.endpoint {
            let parsed = url::Url::parse(endpoint).map_err(|e| {
                at(
                    &["telemetry", "endpoint"],
                    format!("telemetry.endpoint = {endpoint:?}: not a URL ({e})"),
                )
            })?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(at(
                    &["telemetry", "endpoint"],
                    format!(
                        "telemetry.endpoint = {endpoint:?}: an OTLP/HTTP endpoint is http:// or https:// and a host, e.g. \"http://127.0.0.1:4318\""
                    ),
                ));
            }
        }
        let token_budget = count(
            ["delegation", "token_budget"],
            file.delegation.token_budget,
            TOKEN_BUDGET_BOUNDS,
            200_000,
        )?;
        let tool_call_budget = count(
            ["delegation", "tool_call_budget"],
            file.delegation.tool_call_budget,
            TOOL_CALL_BUDGET_BOUNDS,
            1_000,
        )?;
        let kill_grace = duration(
            ["worker", "grace_period"],
            &file.worker.grace_period,
            KILL_GRACE_BOUNDS,
            Duration::from_secs(2),
        )?;
        let handshake_timeout = duration(
            ["worker", "handshake_timeout"],
            &file.worker.handshake_timeout,
            HANDSHAKE_TIMEOUT_BOUNDS,
            Duration::from_secs(5),
        )?;
        let shutdown_grace = duration(
            ["shutdown", "grace_period"],
            &file.shutdown.grace_period,
            SHUTDOWN_GRACE_BOUNDS,
            Duration::from_secs(10),
        )?;
        let address_space = size(
            ["worker", "memory"],
            &file.worker.memory,
            WORKER_MEMORY_BOUNDS,
            1024 * 1024 * 1024,
        )?;
        let worker_sandbox = match file.worker.sandbox.as_deref() {
            None | Some("best-effort") => "best-effort",
            Some("strict") => "strict",
            Some("off") => "off",
            Some(other) => {
                return Err(at(
                    &["worker", "sandbox"],
                    format!(
                        "worker.sandbox = {other:?}: must be \"strict\", \"best-effort\" or \"off\""
                    ),
                ));
            }
        };
        let worker_limits = WorkerLimits {
            address_space,
            cpu_seconds: count(
                ["worker", "cpu_seconds"],
                file.worker.cpu_seconds,
                CPU_SECONDS_BOUNDS,
                300,
            )?,
            open_files: count(
                ["worker", "open_files"],
                file.worker.open_files,
                OPEN_FILES_BOUNDS,
                64,
            )?,
            processes: count(
                ["worker", "processes"],
                file.worker.processes,
                WORKER_PROCESSES_BOUNDS,
                DEFAULT_WORKER_PROCESSES,
            )?,
            cpu_quota_micros: match &file.worker.cpus {
                None => CPU_PERIOD_MICROS,
                Some(value) => {
                    cpu_quota(value).map_err(|reason| at(&["worker", "cpus"], reason))?
                }
            },
        };
        let database_max_bytes = file
            .executions
            .max_size
            .as_deref()
            .map(|v| {
                parse_bounded_size("executions.max_size", v, EXECUTIONS_MAX_SIZE_BOUNDS)
                    .map_err(|reason| at(&["executions", "max_size"], reason))
            })
            .transpose()?;
        let max_concurrent_workers = count(
            ["worker", "max_concurrent"],
            file.worker.max_concurrent.map(|n| n as u64),
            MAX_CONCURRENT_BOUNDS,
            64,
        )? as usize;
        for (name, provider) in &file.providers {
            if let Some(t) = &provider.timeout {
                let key = ["providers", name.as_str(), "timeout"];
                parse_bounded_duration(&key.join("."), t, TIMEOUT_BOUNDS)
                    .map_err(|reason| at(&key, reason))?;
            }
        }

        if let Some(default) = &file.defaults.provider
            && !file.providers.contains_key(default)
            && default != LOCAL_PROVIDER
        {
            return Err(at(
                &["defaults", "provider"],
                format!("[defaults] provider = {default:?} names no [providers.{default}] table"),
            ));
        }
        // With exactly one provider configured, it is the obvious default; otherwise the
        // offline model is.
        let default_provider = file.defaults.provider.clone().or_else(|| {
            (file.providers.len() == 1)
                .then(|| file.providers.keys().next().cloned())
                .flatten()
        });
        let mut providers = file.providers;
        providers
            .entry(LOCAL_PROVIDER.to_owned())
            .or_insert_with(ProviderConfig::local);
        let default_provider = default_provider.or_else(|| Some(LOCAL_PROVIDER.to_owned()));
        let models_dir = match env_path("CAXTON_MODELS_DIR").or(file.models_dir.clone()) {
            Some(dir) => absolute(&dir)?,
            None => default_models_dir(&data_dir),
        };

        let builtin_tools_dir =
            match env_path("CAXTON_BUILTIN_TOOLS_DIR").or(file.builtin_tools_dir.clone()) {
                Some(dir) => Some(absolute(&dir)?),
                None => default_builtin_tools_dir(),
            };

        let memory = MemoryConfig {
            database: match &file.memory.database {
                Some(p) if p.is_absolute() => p.clone(),
                Some(p) => data_dir.join(p),
                None => data_dir.join("memory.db"),
            },
            preload: file.memory.preload.unwrap_or(false),
            synchronous: match file.memory.synchronous.as_deref() {
                None | Some("normal") => caxton_memory::Synchronous::Normal,
                Some("full") => caxton_memory::Synchronous::Full,
                Some(other) => {
                    return Err(at(
                        &["memory", "synchronous"],
                        format!("memory.synchronous = {other:?}: must be \"normal\" or \"full\""),
                    ));
                }
            },
            max_observation_bytes: size(
                ["memory", "max_observation"],
                &file.memory.max_observation,
                MAX_OBSERVATION_BOUNDS,
                caxton_memory::DEFAULT_MAX_OBSERVATION_BYTES as u64,
            )? as usize,
            max_size_bytes: match file.memory.max_size {
                Some(_) => Some(size(
                    ["memory", "max_size"],
                    &file.memory.max_size,
                    MEMORY_MAX_SIZE_BOUNDS,
                    0,
                )?),
                None => None,
            },
        };

        Ok(Self {
            origin,
            worker_path_set_by,
            memory,
            socket_explicit,
            config_file: sources.config_file.clone(),
            database: data_dir.join("caxton.db"),
            database_max_bytes,
            cache_dir: data_dir.join("cache"),
            tools_dir: data_dir.join("tools"),
            builtin_tools_dir,
            workspaces_dir: data_dir.join("workspaces"),
            data_dir,
            agents_dir,
            socket,
            tcp,
            max_body_bytes,
            api_limits,
            worker_path,
            default_timeout,
            kill_grace,
            handshake_timeout,
            max_concurrent_workers,
            worker_limits,
            worker_sandbox,
            shutdown_grace,
            providers,
            models_dir,
            default_provider,
            conversation_expiry,
            history_turns,
            token_budget,
            tool_call_budget,
            telemetry: crate::telemetry::TelemetryConfig {
                endpoint: file.telemetry.endpoint.clone(),
                service_name: file.telemetry.service_name.clone(),
            },
        })
    }
}

/// The `cpu.max` period of a worker's cgroup: the kernel's default, 100 ms.
pub const CPU_PERIOD_MICROS: u64 = 100_000;

/// `[worker] cpus` (an integer or a decimal number of CPUs) as a `cpu.max` quota per
/// [`CPU_PERIOD_MICROS`].
fn cpu_quota(value: &toml::Value) -> Result<u64, String> {
    let cpus = match value {
        toml::Value::Integer(n) => *n as f64,
        toml::Value::Float(f) => *f,
        other => {
            return Err(format!(
                "worker.cpus = {other}: must be a number of CPUs, e.g. 1 or 0.5"
            ));
        }
    };
    let hundredths = (cpus * 100.0).round();
    let bounds = WORKER_CPUS_BOUNDS;
    if !cpus.is_finite() || hundredths < bounds.min as f64 || hundredths > bounds.max as f64 {
        return Err(format!(
            "worker.cpus = {value}: must be from 0.01 to {} CPUs",
            bounds.max / 100
        ));
    }
    Ok(hundredths as u64 * (CPU_PERIOD_MICROS / 100))
}

/// Processes a worker's cgroup may hold when `[worker] processes` is not set: the worker itself
/// needs one, so this leaves room for what a tool-less agent never starts.
pub const DEFAULT_WORKER_PROCESSES: u64 = 32;

/// Name of the built-in offline provider.
pub const LOCAL_PROVIDER: &str = "local";

/// The GGUF file the built-in `local` provider loads.
pub const DEFAULT_LOCAL_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

impl ProviderConfig {
    /// The built-in offline provider's settings.
    pub fn local() -> Self {
        Self {
            kind: ProviderKind::Local,
            base_url: None,
            model: None,
            model_file: None,
            preload: None,
            fast_prefill: None,
            api_key_env: None,
            api_key_file: None,
            timeout: None,
            max_retries: None,
            tool_choice: None,
        }
    }
}

/// The first models directory that exists among the data directory's, the system one and the
/// one beside a cargo build tree (where `scripts/setup.sh` puts the weights); else the data
/// directory's, which the error for a missing model then names.
fn default_models_dir(data_dir: &Path) -> PathBuf {
    let mut candidates = vec![
        data_dir.join("models"),
        PathBuf::from("/usr/share/caxton/models"),
    ];
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned))
    {
        // target/{debug,release}/caxton → the repository's models/
        candidates.push(dir.join("../../models"));
    }
    candidates
        .into_iter()
        .find(|d| d.join(DEFAULT_LOCAL_MODEL_FILE).is_file())
        .map(|d| std::path::absolute(&d).unwrap_or(d))
        .unwrap_or_else(|| data_dir.join("models"))
}

/// The built-in tool packages: installed under /usr/lib/caxton/tools, or in the source tree beside
/// a cargo build (`target/{debug,release}/caxton` → `tool-packages/builtin`).
fn default_builtin_tools_dir() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("/usr/lib/caxton/tools")];
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned))
    {
        candidates.push(dir.join("../../tool-packages/builtin"));
    }
    // The source tree this binary was built from, wherever its target directory is.
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tool-packages/builtin"));
    candidates
        .into_iter()
        .find(|d| d.is_dir())
        .map(|d| d.canonicalize().unwrap_or(d))
}

/// Read and parse a config file, naming the line of any error.
pub fn read_config_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })?;
    let mut file: ConfigFile = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        path: path.to_owned(),
        line: e.span().map(|s| line_of(&text, s.start)).unwrap_or(1),
        reason: e.message().trim().to_owned(),
    })?;
    file.origin = Some(Origin {
        path: path.to_owned(),
        text,
    });
    Ok(file)
}

/// 1-based line number of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parse "30s", "500ms", "2m" and the like.
pub fn parse_duration(field: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value)
        .map_err(|e| ConfigError::Inconsistent(format!("{field} = {value:?}: {e}")))
}

/// Parse a duration written as text and check it against `bounds`; the error names the field,
/// the value and the accepted range.
pub fn parse_bounded_duration(
    field: &str,
    value: &str,
    bounds: Bounds<Duration>,
) -> Result<Duration, String> {
    let d = humantime::parse_duration(value).map_err(|e| {
        format!(
            "{field} = {value:?}: {e}; write a duration between {} and {}, e.g. \"30s\"",
            show_duration(bounds.min),
            show_duration(bounds.max)
        )
    })?;
    check_duration(field, &format!("{value:?}"), d, bounds)
}

/// Check a duration against `bounds`; `shown` is the value as the operator wrote it.
pub fn check_duration(
    field: &str,
    shown: &str,
    value: Duration,
    bounds: Bounds<Duration>,
) -> Result<Duration, String> {
    if (bounds.min..=bounds.max).contains(&value) {
        return Ok(value);
    }
    Err(format!(
        "{field} = {shown}: must be between {} and {}",
        show_duration(bounds.min),
        show_duration(bounds.max)
    ))
}

/// Parse a size written as text and check it against `bounds`.
pub fn parse_bounded_size(field: &str, value: &str, bounds: Bounds<u64>) -> Result<u64, String> {
    let bytes = value
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| {
            format!(
                "{field} = {value:?}: {e}; write a size between {} and {}, e.g. \"512MiB\"",
                show_size(bounds.min),
                show_size(bounds.max)
            )
        })?;
    check_size(field, &format!("{value:?}"), bytes, bounds)
}

/// Check a size in bytes against `bounds`; `shown` is the value as the operator wrote it.
pub fn check_size(
    field: &str,
    shown: &str,
    value: u64,
    bounds: Bounds<u64>,
) -> Result<u64, String> {
    if (bounds.min..=bounds.max).contains(&value) {
        return Ok(value);
    }
    Err(format!(
        "{field} = {shown}: must be between {} and {}",
        show_size(bounds.min),
        show_size(bounds.max)
    ))
}

/// Check a count against `bounds`.
fn check_count(field: &str, value: u64, bounds: Bounds<u64>) -> Result<u64, String> {
    if (bounds.min..=bounds.max).contains(&value) {
        return Ok(value);
    }
    Err(format!(
        "{field} = {value}: must be between {} and {}",
        bounds.min, bounds.max
    ))
}

/// A duration as an operator writes it: "24h" rather than humantime's "1day".
pub fn show_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() == 0 && secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// A byte count as an operator writes it ("16MiB"), with the exact number when that rounds.
pub fn show_size(bytes: u64) -> String {
    let shown = bytesize::ByteSize::b(bytes).display().iec().to_string();
    let exact = shown
        .parse::<bytesize::ByteSize>()
        .is_ok_and(|b| b.as_u64() == bytes);
    if exact {
        shown.replace(".0 ", "").replace(' ', "")
    } else {
        format!("{bytes} bytes")
    }
}

/// Run by systemd (it sets `INVOCATION_ID`) or as root: use the system paths.
fn is_system_instance(env: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    // SAFETY: geteuid has no preconditions.
    env("INVOCATION_ID").is_some() || unsafe { libc::geteuid() } == 0
}

fn default_data_dir(
    system: bool,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<PathBuf, ConfigError> {
    // systemd's StateDirectory= tells us exactly where our state goes.
    if let Some(dir) = env("STATE_DIRECTORY").filter(|v| !v.is_empty()) {
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        return Ok(PathBuf::from(first));
    }
    if system {
        return Ok(PathBuf::from("/var/lib/caxton"));
    }
    if let Some(xdg) = env("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("caxton"));
    }
    match env("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/caxton")),
        None => Err(ConfigError::Inconsistent(
            "cannot choose a data directory: HOME is not set; pass --data-dir".into(),
        )),
    }
}

fn default_socket(
    system: bool,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    data_dir: &Path,
) -> PathBuf {
    if let Some(dir) = env("RUNTIME_DIRECTORY").filter(|v| !v.is_empty()) {
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        return PathBuf::from(first).join("caxton.sock");
    }
    if system {
        return PathBuf::from(SYSTEM_SOCKET);
    }
    match env("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("caxton/caxton.sock"),
        None => data_dir.join("caxton.sock"),
    }
}

/// `caxton-worker` installed beside the running binary (the .deb and `cargo build` both do this).
fn default_worker_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("caxton-worker")))
        .unwrap_or_else(|| PathBuf::from("/usr/lib/caxton/caxton-worker"))
}

fn token_source(api: &ApiSection) -> Result<TokenSource, String> {
    match (&api.token_env, &api.token_file) {
        (Some(var), None) => Ok(TokenSource::Env(var.clone())),
        (None, Some(path)) => Ok(TokenSource::File(path.clone())),
        (Some(_), Some(_)) => Err("set api.token_env or api.token_file, not both".into()),
        (None, None) => {
            Err("api.tcp_listen is set but no token: set api.token_env or api.token_file".into())
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf, ConfigError> {
    std::path::absolute(path)
        .map_err(|e| ConfigError::Inconsistent(format!("path {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<std::ffi::OsString> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.into())
        }
    }

    #[test]
    fn data_dir_puts_database_agents_and_socket_under_it() {
        let sources = ConfigSources {
            data_dir: Some("/srv/cx".into()),
            ..Default::default()
        };
        let cfg = Config::resolve(
            &sources,
            ConfigFile::default(),
            &env_of(&[("HOME", "/home/u")]),
        )
        .unwrap();
        assert_eq!(cfg.database, PathBuf::from("/srv/cx/caxton.db"));
        assert_eq!(cfg.agents_dir, PathBuf::from("/srv/cx/agents"));
        assert_eq!(cfg.socket, PathBuf::from("/srv/cx/caxton.sock"));
    }

    #[test]
    fn systemd_directories_win_when_nothing_is_configured() {
        let env = env_of(&[
            ("INVOCATION_ID", "x"),
            ("STATE_DIRECTORY", "/var/lib/caxton"),
            ("RUNTIME_DIRECTORY", "/run/caxton"),
        ]);
        let cfg = Config::resolve(&ConfigSources::default(), ConfigFile::default(), &env).unwrap();
        assert_eq!(cfg.data_dir, PathBuf::from("/var/lib/caxton"));
        assert_eq!(cfg.socket, PathBuf::from("/run/caxton/caxton.sock"));
    }

    #[test]
    fn the_environment_overrides_the_file_and_flags_override_the_environment() {
        let file: ConfigFile = toml::from_str("socket = \"/file.sock\"").unwrap();
        let env = env_of(&[("CAXTON_SOCKET", "/env.sock"), ("HOME", "/h")]);
        let cfg = Config::resolve(&ConfigSources::default(), file, &env).unwrap();
        assert_eq!(cfg.socket, PathBuf::from("/env.sock"));
        let flags = ConfigSources {
            socket: Some("/flag.sock".into()),
            ..Default::default()
        };
        let cfg = Config::resolve(&flags, ConfigFile::default(), &env).unwrap();
        assert_eq!(cfg.socket, PathBuf::from("/flag.sock"));
    }

    #[test]
    fn the_shipped_example_config_resolves_as_documented() {
        let text = include_str!("../../packaging/caxton.toml.example");
        let file: ConfigFile = toml::from_str(text).unwrap();
        let cfg = Config::resolve(
            &ConfigSources {
                data_dir: Some("/srv/cx".into()),
                ..Default::default()
            },
            file,
            &env_of(&[("HOME", "/h")]),
        )
        .unwrap();
        assert_eq!(cfg.memory.database, PathBuf::from("/srv/cx/memory.db"));
        assert_eq!(
            cfg.memory.max_observation_bytes,
            caxton_memory::DEFAULT_MAX_OBSERVATION_BYTES
        );
        assert_eq!(cfg.memory.synchronous, caxton_memory::Synchronous::Normal);
        // `cpus = 1`: a whole CPU of the kernel's 100 ms period.
        assert_eq!(cfg.worker_limits.cpu_quota_micros, 100_000);
        let file: ConfigFile = toml::from_str("[worker]\ncpus = 0.25").unwrap();
        let cfg = Config::resolve(&ConfigSources::default(), file, &env_of(&[("HOME", "/h")]));
        assert_eq!(cfg.unwrap().worker_limits.cpu_quota_micros, 25_000);

        let file: ConfigFile = toml::from_str("[memory]\nsynchronous = \"sometimes\"").unwrap();
        let err = Config::resolve(&ConfigSources::default(), file, &env_of(&[("HOME", "/h")]))
            .unwrap_err();
        assert!(err.to_string().contains("memory.synchronous"), "{err}");
    }

    #[test]
    fn a_default_provider_must_exist() {
        let file: ConfigFile = toml::from_str("[defaults]\nprovider = \"nope\"").unwrap();
        let err = Config::resolve(&ConfigSources::default(), file, &env_of(&[("HOME", "/h")]))
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn the_local_model_is_always_there_and_the_default_when_nothing_else_is_configured() {
        let cfg = Config::resolve(
            &ConfigSources::default(),
            ConfigFile::default(),
            &env_of(&[("HOME", "/h")]),
        )
        .unwrap();
        assert_eq!(cfg.default_provider.as_deref(), Some(LOCAL_PROVIDER));
        assert_eq!(cfg.providers[LOCAL_PROVIDER].kind, ProviderKind::Local);
        let file: ConfigFile = toml::from_str(
            "[providers.a]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nmodel = \"m\"\n",
        )
        .unwrap();
        let cfg =
            Config::resolve(&ConfigSources::default(), file, &env_of(&[("HOME", "/h")])).unwrap();
        assert_eq!(cfg.default_provider.as_deref(), Some("a"));
        assert!(cfg.providers.contains_key(LOCAL_PROVIDER));
    }

    /// Load `text` as a config file; the error's text.
    fn refusal(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let file = read_config_file(&path).unwrap();
        let sources = ConfigSources {
            data_dir: Some(dir.path().to_owned()),
            ..Default::default()
        };
        Config::resolve(&sources, file, &env_of(&[("HOME", "/h")]))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_duration_size_and_count_is_bounded_and_named_at_its_line() {
        for (text, expected) in [
            (
                "[worker]\ntimeout = \"soon\"",
                "c.toml:2: worker.timeout = \"soon\"",
            ),
            (
                "[worker]\ntimeout = \"0s\"",
                "must be between 100ms and 24h",
            ),
            ("[worker]\ntimeout = \"25h\"", "c.toml:2: worker.timeout"),
            ("[worker]\ngrace_period = \"2min\"", "between 0s and 1m"),
            (
                "[worker]\nmemory = \"1KiB\"",
                "c.toml:2: worker.memory = \"1KiB\": must be between 16MiB",
            ),
            ("[worker]\nmemory = \"1PiB\"", "c.toml:2: worker.memory"),
            (
                "[worker]\ncpu_seconds = 0",
                "c.toml:2: worker.cpu_seconds = 0",
            ),
            (
                "[worker]\nopen_files = 2",
                "c.toml:2: worker.open_files = 2",
            ),
            (
                "[worker]\ncpus = 0",
                "c.toml:2: worker.cpus = 0: must be from 0.01 to 1024 CPUs",
            ),
            ("[worker]\ncpus = 2000.5", "c.toml:2: worker.cpus = 2000.5"),
            (
                "[worker]\ncpus = \"two\"",
                "c.toml:2: worker.cpus = \"two\": must be a number of CPUs",
            ),
            (
                "[worker]\nmax_concurrent = 0",
                "c.toml:2: worker.max_concurrent = 0",
            ),
            (
                "[shutdown]\ngrace_period = \"2h\"",
                "c.toml:2: shutdown.grace_period",
            ),
            ("[api]\nmax_body = \"1KiB\"", "c.toml:2: api.max_body"),
            (
                "[memory]\nmax_observation = \"1GiB\"",
                "c.toml:2: memory.max_observation",
            ),
            ("[memory]\nmax_size = \"1KiB\"", "c.toml:2: memory.max_size"),
            (
                "[memory]\nsynchronous = \"sometimes\"",
                "c.toml:2: memory.synchronous",
            ),
            (
                "[providers.x]\nkind = \"openai\"\n\ntimeout = \"0ms\"",
                "c.toml:4: providers.x.timeout",
            ),
            (
                "\n[defaults]\nprovider = \"nope\"",
                "c.toml:3: [defaults] provider",
            ),
            (
                "[api]\ntcp_listen = \"127.0.0.1:1\"",
                "c.toml:1: api.tcp_listen is set but no token",
            ),
            (
                "[telemetry]\nendpoint = \"localhost:4318\"",
                "c.toml:2: telemetry.endpoint = \"localhost:4318\": an OTLP/HTTP endpoint is http://",
            ),
            (
                "[telemetry]\nendpoint = \"not a url\"",
                "c.toml:2: telemetry.endpoint = \"not a url\": not a URL",
            ),
            (
                "[delegation]\ntoken_budget = 0",
                "c.toml:2: delegation.token_budget = 0",
            ),
            (
                "[conversations]\nexpire_after = \"1s\"",
                "c.toml:2: conversations.expire_after",
            ),
        ] {
            let err = refusal(text);
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_deploy_body_limit_admits_the_largest_agent_file() {
        // JSON at most doubles a TOML file; the default and the least max_body both fit it.
        assert!(MAX_BODY_BOUNDS.min as usize >= 2 * crate::agent::MAX_AGENT_FILE_BYTES);
        let file: ConfigFile = toml::from_str("").unwrap();
        let cfg =
            Config::resolve(&ConfigSources::default(), file, &env_of(&[("HOME", "/h")])).unwrap();
        assert!(cfg.max_body_bytes >= crate::agent::MAX_AGENT_DEPLOY_BODY);
    }

    #[test]
    fn sizes_and_durations_are_shown_as_written() {
        assert_eq!(show_size(16 * 1024 * 1024), "16MiB");
        assert_eq!(show_size(1000), "1000B");
        assert_eq!(show_size(5 * 1024 * 1024 + 1), "5242881 bytes");
        assert_eq!(show_duration(Duration::from_secs(86400)), "24h");
        assert_eq!(show_duration(Duration::from_millis(100)), "100ms");
    }

    #[test]
    fn unknown_fields_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[worker]\ntimeout = \"5s\"\ntimout = 3\n").unwrap();
        let err = read_config_file(&path).unwrap_err().to_string();
        assert!(err.contains("c.toml:3"), "{err}");
        assert!(err.contains("timout"), "{err}");
    }

    #[test]
    fn a_provider_tool_choice_is_read_and_a_bad_one_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let provider =
            "[providers.a]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nmodel = \"m\"\n";
        std::fs::write(&path, format!("{provider}tool_choice = \"required\"\n")).unwrap();
        let file = read_config_file(&path).unwrap();
        assert_eq!(
            file.providers["a"].tool_choice,
            Some(crate::provider::ToolChoice::Required)
        );
        std::fs::write(&path, format!("{provider}tool_choice = \"always\"\n")).unwrap();
        let err = read_config_file(&path).unwrap_err().to_string();
        assert!(err.contains("c.toml:5"), "{err}");
        assert!(err.contains("always"), "{err}");
    }

    #[test]
    fn api_limits_have_defaults_and_bounds() {
        let limits = |text: &str| {
            let file: ConfigFile = toml::from_str(text).unwrap();
            Config::resolve(&ConfigSources::default(), file, &env_of(&[("HOME", "/h")]))
                .map(|c| c.api_limits)
        };
        let default = limits("").unwrap();
        assert_eq!(default.header_timeout, Duration::from_secs(10));
        assert_eq!(default.max_connections, 256);
        assert_eq!(default.max_unauthenticated, 64);
        let set = limits("[api]\nheader_timeout = \"1s\"\nmax_connections = 16\n").unwrap();
        assert_eq!(set.header_timeout, Duration::from_secs(1));
        assert_eq!(set.max_unauthenticated, 4);
        let err = limits("[api]\nmax_connections = 8\nmax_unauthenticated = 9\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("api.max_unauthenticated = 9"), "{err}");
        let err = limits("[api]\nheader_timeout = \"0s\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("api.header_timeout = \"0s\""), "{err}");
    }
}
