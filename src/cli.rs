//! Command-line arguments, as typed by the operator (resolution happens in the supervisor's config).

use std::path::PathBuf;

use caxton_api_contract::routing::Strategy;
use clap::{Args, Parser, Subcommand};

/// Caxton runs AI agents defined in TOML files, one short-lived worker process per request.
///
/// Start the daemon with `caxton serve` (or under systemd), deploy an agent with
/// `caxton agent deploy FILE`, and ask it something with `caxton agent run NAME "question"`.
/// Without a running daemon, `caxton agent run` starts a supervisor for that one request.
#[derive(Debug, Parser)]
#[command(
    name = "caxton",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command understands.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Management API socket: where `serve` listens and where every other command connects.
    #[arg(long, global = true, env = "CAXTON_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Supervisor configuration file (TOML).
    #[arg(long, global = true, env = "CAXTON_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// State directory: database, agents and, unless configured otherwise, the socket.
    #[arg(long, global = true, env = "CAXTON_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the supervisor daemon in the foreground (systemd runs exactly this).
    Serve,
    /// Deploy, inspect, run and remove agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Deploy, inspect and remove MCP tool servers (WebAssembly packages).
    #[command(subcommand)]
    Tool(ToolCommand),
    /// Store, search, inspect, export and import the agents' long-term memory.
    ///
    /// Every command names the memory it works in with `--scope`: `agent-only:AGENT` (one
    /// agent's private memory), `workspace:NAME` (shared by a workspace's agents) or `global`.
    #[command(subcommand)]
    Memory(MemoryCommand),
    /// Show the daemon's uptime, version, agents and live worker processes.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 only if the daemon answers and accepts requests (for systemd and Kubernetes probes).
    Health,
    /// Show the running daemon's log filter, or change it without a restart (a `tracing`
    /// directive: `debug`, `warn,caxton_supervisor=debug`, ...).
    LogFilter {
        /// The new filter; leave it out to show the one in force.
        filter: Option<String>,
    },
    /// Act on live worker processes.
    #[command(subcommand)]
    Worker(WorkerCommand),
    /// The capabilities agents declare (`capabilities` in an agent file), which
    /// `caxton agent run --capability` routes by.
    #[command(subcommand)]
    Capability(CapabilityCommand),
    /// Conversations: every request belongs to one, with its messages and the executions it
    /// caused; `caxton agent run --conversation ID` continues one.
    #[command(subcommand)]
    Conversation(ConversationCommand),
    /// Start an interaction protocol among agents: contract-net, auction or negotiation.
    #[command(subcommand)]
    Protocol(ProtocolCommand),
    /// The execution history: every request's record, newest first.
    #[command(subcommand)]
    Execution(ExecutionCommand),
    /// Topics agents subscribe to (`subscriptions = [...]` in an agent file).
    #[command(subcommand)]
    Topic(TopicCommand),
}

#[derive(Debug, Subcommand)]
pub enum ExecutionCommand {
    /// List executions, newest first.
    List {
        /// Only this agent's.
        #[arg(long)]
        agent: Option<String>,
        /// Only those with this status (running, finished, abandoned) or outcome (succeeded,
        /// agent_failed, killed, deadline_exceeded, cancelled, ...).
        #[arg(long)]
        status: Option<String>,
        /// Only those started since: a duration ago ("1h", "2days") or a time
        /// ("2026-12-06T22:00:00Z").
        #[arg(long)]
        since: Option<String>,
        /// How many, at most (up to 1000).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one execution: outcome, exit signal, duration, tokens, tool calls, its
    /// conversation, parent and children.
    Show {
        /// The execution id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProtocolCommand {
    /// Contract-net: every agent with the capability proposes with a score; the highest score
    /// is awarded the task and does it (equal scores: the name that sorts first); the others
    /// are told.
    ContractNet(CallArgs),
    /// Auction: every agent with the capability bids a price; the lowest price is awarded the
    /// task and does it (equal prices: the name that sorts first); the others are told.
    Auction(CallArgs),
    /// Negotiation: INITIATOR makes an offer, then the two answer each other (accept, reject or
    /// a counter-offer) until one accepts or rejects, or the round limit.
    Negotiate {
        /// The agent that makes the opening offer.
        initiator: String,
        /// The agent it negotiates with.
        responder: String,
        /// What is negotiated.
        subject: String,
        /// Most responses before it ends without agreement (1 to 20).
        #[arg(long, default_value_t = 4)]
        rounds: u32,
        /// Hold it in this conversation instead of a new one.
        #[arg(long)]
        conversation: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A call for proposals (contract-net) or bids (auction).
#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// Agents declaring this capability are asked for proposals.
    #[arg(long)]
    pub capability: String,
    /// The task, or what is bid for.
    pub task: String,
    /// Hold it in this conversation instead of a new one.
    #[arg(long)]
    pub conversation: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Publish a notification: every agent subscribed to the topic gets it, each in a worker
    /// of its own; waits for all of them and prints each answer under its agent's name.
    Publish {
        /// The topic.
        topic: String,
        /// The notification's text.
        content: String,
        /// Hold it in this conversation instead of a new one.
        #[arg(long)]
        conversation: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConversationCommand {
    /// List the most recently active conversations.
    List {
        /// How many, at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one conversation: its messages in order and the tree of executions (which agent
    /// asked which, each one's outcome, duration and tokens).
    Show {
        /// The conversation id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CapabilityCommand {
    /// List each capability and the agents that declare it.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Validate an agent file and deploy it (replacing an agent of the same name).
    Deploy {
        /// The agent's TOML file.
        file: PathBuf,
    },
    /// Check an agent file without deploying it; errors name the line.
    Validate {
        /// The agent's TOML file.
        file: PathBuf,
    },
    /// List deployed agents.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one agent's definition.
    Show {
        /// Agent name (`data-analyzer` or `DataAnalyzer`).
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a deployed agent and its file.
    Remove {
        /// Agent name.
        name: String,
    },
    /// Send the agent a request and print its answer.
    Run {
        /// Agent name; leave it out with `--capability`.
        name: Option<String>,
        /// The question; `-` reads it from standard input, as does leaving it out when input
        /// is piped in.
        text: Option<String>,
        /// Send the request to an agent that declares this capability instead of naming one.
        #[arg(long, conflicts_with = "stream")]
        capability: Option<String>,
        /// With `--capability`: `best` (fewest requests in flight, then least recently used),
        /// `round-robin`, or `broadcast` (every agent with it, in parallel, answers labelled).
        #[arg(long, requires = "capability", default_value = "best")]
        strategy: Strategy,
        /// Extra data for the prompt's `{{ context }}`.
        #[arg(long, default_value = "")]
        context: String,
        /// What the answer should satisfy, for the prompt's `{{ requirements }}`.
        #[arg(long, default_value = "")]
        requirements: String,
        /// The workspace whose memory an agent with `[memory] scope = "workspace"` uses
        /// (default: the one its file names, else "default").
        #[arg(long)]
        workspace: Option<String>,
        /// Continue this conversation: the agent gets its earlier turns (see `caxton
        /// conversation list`, or the id `--verbose` prints).
        #[arg(long)]
        conversation: Option<String>,
        /// Print the whole execution record as JSON.
        #[arg(long, conflicts_with = "stream")]
        json: bool,
        /// Print the answer as it is generated, piece by piece.
        #[arg(long)]
        stream: bool,
        /// Also print the execution id, worker PID, timing and token usage (to stderr).
        #[arg(long, short)]
        verbose: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ToolCommand {
    /// Validate, compile and deploy a tool package directory (tool.toml and its module),
    /// replacing a server of the same name.
    Deploy {
        /// The package directory.
        dir: PathBuf,
    },
    /// List tool servers, built-in and deployed, with their tools.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one tool server's manifest: tools, input schemas, capabilities, limits.
    Show {
        /// Server name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a deployed tool server.
    Remove {
        /// Server name.
        name: String,
    },
}

/// The one memory a command works in.
#[derive(Debug, Args)]
pub struct ScopeArg {
    /// The memory: agent-only:AGENT, workspace:NAME or global.
    #[arg(long, value_name = "SCOPE")]
    pub scope: String,
}

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// Create or update an entity and add observations (facts) to it.
    Add {
        /// The entity's name, unique within its scope.
        name: String,
        /// Facts about it, one argument each; `-` reads them from standard input, one a line.
        observations: Vec<String>,
        /// Its type, e.g. person or project (default: unchanged for an entity that exists,
        /// else "thing").
        #[arg(long = "type", value_name = "TYPE")]
        entity_type: Option<String>,
        /// Metadata to merge into the entity's, as a JSON object.
        #[arg(long, value_name = "JSON")]
        metadata: Option<String>,
        #[command(flatten)]
        scope: ScopeArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Search by meaning and by keyword (hybrid), or by one of them.
    Search {
        /// What to look for, in natural language or keywords.
        query: String,
        /// The memory to search (repeat to search several): agent-only:AGENT, workspace:NAME
        /// or global.
        #[arg(long = "scope", value_name = "SCOPE", required = true)]
        scopes: Vec<String>,
        /// How to rank.
        #[arg(long, value_parser = ["hybrid", "semantic", "keyword"])]
        mode: Option<String>,
        /// Most entities to show (default 10).
        #[arg(long, short = 'n')]
        limit: Option<usize>,
        /// Least cosine similarity of a match by meaning, from -1 to 1.
        #[arg(long, value_name = "SIMILARITY")]
        min_similarity: Option<f32>,
        /// Only entities of this type (repeat for several).
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        /// Only observations recorded at or after this RFC 3339 time.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only observations recorded at or before this RFC 3339 time.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an entity: its type, observations and relations.
    Show {
        /// The entity's name.
        name: String,
        #[command(flatten)]
        scope: ScopeArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Relate two entities: `caxton memory relate Ada works_at Acme`.
    Relate {
        /// The source entity.
        from: String,
        /// The relation, a verb phrase such as works_at.
        relation_type: String,
        /// The target entity.
        to: String,
        /// How strong, from 0 to 1 (default 1).
        #[arg(long)]
        strength: Option<f32>,
        #[command(flatten)]
        scope: ScopeArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the entities within some hops of an entity.
    Neighbours {
        /// The entity to start from.
        name: String,
        /// How many hops (default 1, at most 10).
        #[arg(long)]
        depth: Option<u32>,
        /// Follow only relations of this type (repeat for several).
        #[arg(long, value_name = "TYPE")]
        relation_type: Vec<String>,
        /// Which way to follow relations (default both).
        #[arg(long, value_parser = ["outgoing", "incoming", "both"])]
        direction: Option<String>,
        #[command(flatten)]
        scope: ScopeArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the shortest chain of relations between two entities.
    Path {
        /// The entity to start from.
        from: String,
        /// The entity to reach.
        to: String,
        /// Longest path looked for, in hops (default 10).
        #[arg(long)]
        depth: Option<u32>,
        /// Follow only relations of this type (repeat for several).
        #[arg(long, value_name = "TYPE")]
        relation_type: Vec<String>,
        #[command(flatten)]
        scope: ScopeArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete an entity with its observations and relations.
    Remove {
        /// The entity's name.
        name: String,
        #[command(flatten)]
        scope: ScopeArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete observations of an entity, by their exact text.
    Forget {
        /// The entity's name.
        name: String,
        /// The observations to delete, one argument each.
        #[arg(required = true)]
        observations: Vec<String>,
        #[command(flatten)]
        scope: ScopeArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete one relation: `caxton memory unrelate Ada works_at Acme`.
    Unrelate {
        /// The source entity.
        from: String,
        /// The relation.
        relation_type: String,
        /// The target entity.
        to: String,
        #[command(flatten)]
        scope: ScopeArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the memory to FILE (default: standard output).
    Export {
        /// Where to write; standard output when absent or `-`.
        file: Option<PathBuf>,
        /// `caxton`: Caxton's versioned JSON; `mcp`: the JSON-lines file of the MCP memory
        /// server (@modelcontextprotocol/server-memory), one scope.
        #[arg(long, default_value = "caxton", value_parser = ["caxton", "mcp"])]
        format: String,
        /// The memory to export (repeat for several; default every scope).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Leave the embeddings out (a file a quarter the size; the importing side
        /// recomputes them).
        #[arg(long)]
        no_embeddings: bool,
        /// Print a JSON summary.
        #[arg(long, requires = "file")]
        json: bool,
    },
    /// Import a file written by `export` or by the MCP memory server, all of it or nothing.
    Import {
        /// The file; `-` reads standard input.
        file: PathBuf,
        /// The file's format (default: recognised from its content).
        #[arg(long, value_parser = ["caxton", "mcp"])]
        format: Option<String>,
        /// Put everything into this memory (required for an MCP file, which has no scopes;
        /// default for a Caxton file: the scopes it names).
        #[arg(long, value_name = "SCOPE")]
        scope: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Count entities, observations and relations; show the database's size.
    Stats {
        /// Count only this memory (repeat for several; default every scope).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Also run SQLite's integrity check on the database file.
        #[arg(long)]
        check: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Send a signal to a live worker, named by PID or execution id.
    Kill {
        /// Worker PID or execution id (see `caxton status`).
        target: String,
        /// Signal name or number.
        #[arg(long, short, default_value = "TERM")]
        signal: String,
    },
}
