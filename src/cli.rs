//! Command-line arguments, as typed by the operator (resolution happens in the supervisor's config).

use std::path::PathBuf;

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
    /// Show the daemon's uptime, version, agents and live worker processes.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 only if the daemon answers and accepts requests (for systemd and Kubernetes probes).
    Health,
    /// Act on live worker processes.
    #[command(subcommand)]
    Worker(WorkerCommand),
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
        /// Agent name.
        name: String,
        /// The request text; `-` reads it from standard input.
        text: Option<String>,
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
