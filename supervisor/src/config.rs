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

/// Resource limits applied to every worker process.
#[derive(Debug, Clone, Copy)]
pub struct WorkerLimits {
    /// `RLIMIT_AS` in bytes.
    pub address_space: u64,
    /// `RLIMIT_CPU` in seconds.
    pub cpu_seconds: u64,
    /// `RLIMIT_NOFILE`.
    pub open_files: u64,
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
    /// Concurrency cap.
    pub max_concurrent_workers: usize,
    /// Default rlimits.
    pub worker_limits: WorkerLimits,
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

impl ApiLimits {
    /// Defaults and bounds: a timeout between 100 ms and one hour, caps between 1 and 65536
    /// with the unauthenticated one no larger than the total.
    fn resolve(api: &ApiSection) -> Result<Self, ConfigError> {
        let timeout = |field: &str, value: &Option<String>, default: u64| {
            let d = parse_duration_opt(field, value, Duration::from_secs(default))?;
            if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
                return Err(ConfigError::Inconsistent(format!(
                    "{field} = {:?}: must be between 100ms and 1h",
                    value.as_deref().unwrap_or_default()
                )));
            }
            Ok(d)
        };
        let header_timeout = timeout("api.header_timeout", &api.header_timeout, 10)?;
        let body_timeout = timeout("api.body_timeout", &api.body_timeout, 30)?;
        let max_connections = api.max_connections.unwrap_or(256);
        if !(1..=65536).contains(&max_connections) {
            return Err(ConfigError::Inconsistent(format!(
                "api.max_connections = {max_connections}: must be between 1 and 65536"
            )));
        }
        let max_unauthenticated = api
            .max_unauthenticated
            .unwrap_or_else(|| (max_connections / 4).max(1));
        if !(1..=max_connections).contains(&max_unauthenticated) {
            return Err(ConfigError::Inconsistent(format!(
                "api.max_unauthenticated = {max_unauthenticated}: must be between 1 and \
                 api.max_connections ({max_connections})"
            )));
        }
        let fd_reserve = api.fd_reserve.unwrap_or(256);
        if !(16..=1_000_000).contains(&fd_reserve) {
            return Err(ConfigError::Inconsistent(format!(
                "api.fd_reserve = {fd_reserve}: must be between 16 and 1000000"
            )));
        }
        Ok(Self {
            header_timeout,
            body_timeout,
            max_connections,
            max_unauthenticated,
            fd_reserve,
        })
    }
}

/// TCP listener settings. The token is read only by the daemon when it starts listening, so
/// CLI commands (which load the same configuration) need no access to it.
#[derive(Debug, Clone)]
pub struct TcpApi {
    /// Address to bind.
    pub listen: SocketAddr,
    token: TokenSource,
}

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
        if token.len() < 16 {
            return Err(ConfigError::Inconsistent(
                "the API token must be at least 16 characters".into(),
            ));
        }
        Ok(token)
    }
}

impl Config {
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
        file: ConfigFile,
        env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Self, ConfigError> {
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
                token: token_source(&file.api)?,
            }),
        };
        let max_body_bytes = match &file.api.max_body {
            Some(s) => parse_size("api.max_body", s)? as usize,
            None => 1024 * 1024,
        };
        let api_limits = ApiLimits::resolve(&file.api)?;

        let worker_path = match env_path("CAXTON_WORKER_PATH").or(file.worker.path.clone()) {
            Some(p) => absolute(&p)?,
            None => default_worker_path(),
        };
        let default_timeout = parse_duration_opt(
            "worker.timeout",
            &file.worker.timeout,
            Duration::from_secs(120),
        )?;
        let kill_grace = parse_duration_opt(
            "worker.grace_period",
            &file.worker.grace_period,
            Duration::from_secs(2),
        )?;
        let shutdown_grace = parse_duration_opt(
            "shutdown.grace_period",
            &file.shutdown.grace_period,
            Duration::from_secs(10),
        )?;
        let address_space = match &file.worker.memory {
            Some(s) => parse_size("worker.memory", s)?,
            None => 1024 * 1024 * 1024,
        };
        let worker_limits = WorkerLimits {
            address_space,
            cpu_seconds: file.worker.cpu_seconds.unwrap_or(300),
            open_files: file.worker.open_files.unwrap_or(64),
        };
        let max_concurrent_workers = file.worker.max_concurrent.unwrap_or(64).max(1);

        if let Some(default) = &file.defaults.provider
            && !file.providers.contains_key(default)
            && default != LOCAL_PROVIDER
        {
            return Err(ConfigError::Inconsistent(format!(
                "[defaults] provider = {default:?} names no [providers.{default}] table"
            )));
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
                    return Err(ConfigError::Inconsistent(format!(
                        "memory.synchronous = {other:?}: must be \"normal\" or \"full\""
                    )));
                }
            },
            max_observation_bytes: match &file.memory.max_observation {
                Some(s) => parse_size("memory.max_observation", s)? as usize,
                None => caxton_memory::DEFAULT_MAX_OBSERVATION_BYTES,
            },
            max_size_bytes: file
                .memory
                .max_size
                .as_deref()
                .map(|s| parse_size("memory.max_size", s))
                .transpose()?,
        };

        Ok(Self {
            memory,
            socket_explicit,
            config_file: sources.config_file.clone(),
            database: data_dir.join("caxton.db"),
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
            max_concurrent_workers,
            worker_limits,
            shutdown_grace,
            providers,
            models_dir,
            default_provider,
        })
    }
}

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
/// a cargo build (`target/{debug,release}/caxton` → `tools/builtin`).
fn default_builtin_tools_dir() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("/usr/lib/caxton/tools")];
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned))
    {
        candidates.push(dir.join("../../tools/builtin"));
    }
    // The source tree this binary was built from, wherever its target directory is.
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/builtin"));
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
    toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        path: path.to_owned(),
        line: e.span().map(|s| line_of(&text, s.start)).unwrap_or(1),
        reason: e.message().to_owned(),
    })
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

fn parse_duration_opt(
    field: &str,
    value: &Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    value
        .as_deref()
        .map_or(Ok(default), |v| parse_duration(field, v))
}

/// Parse "512MB", "1GiB" and the like into bytes.
pub fn parse_size(field: &str, value: &str) -> Result<u64, ConfigError> {
    value
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| ConfigError::Inconsistent(format!("{field} = {value:?}: {e}")))
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

fn token_source(api: &ApiSection) -> Result<TokenSource, ConfigError> {
    match (&api.token_env, &api.token_file) {
        (Some(var), None) => Ok(TokenSource::Env(var.clone())),
        (None, Some(path)) => Ok(TokenSource::File(path.clone())),
        (Some(_), Some(_)) => Err(ConfigError::Inconsistent(
            "set api.token_env or api.token_file, not both".into(),
        )),
        (None, None) => Err(ConfigError::Inconsistent(
            "api.tcp_listen is set but no token: set api.token_env or api.token_file".into(),
        )),
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
