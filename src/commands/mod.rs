//! One function per command. Each returns the process exit code; errors bubble up as `anyhow`.

mod agent;
mod conversation;
mod daemon;
mod execution;
mod memory;
mod protocol;
mod tool;

use std::process::ExitCode;

use anyhow::Context;
use caxton_supervisor::config::{self, Config, ConfigSources};

use crate::cli::{Cli, Command};
use crate::client::ApiClient;

/// Exit code when the daemon is not running or not ready (`caxton health`, `caxton status`).
pub const EXIT_UNAVAILABLE: u8 = 3;

/// A user's CLI defaults to a per-user socket; when none is there but the system daemon's is,
/// talk to the system daemon (access is then decided by the socket's group).
fn client_socket(config: &Config) -> std::path::PathBuf {
    let system = std::path::Path::new(config::SYSTEM_SOCKET);
    if !config.socket_explicit && !config.socket.exists() && system.exists() {
        return system.to_owned();
    }
    config.socket.clone()
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let sources = ConfigSources {
        config_file: cli.global.config.clone(),
        data_dir: cli.global.data_dir.clone(),
        socket: cli.global.socket.clone(),
    };
    let config = Config::load(&sources).context("loading configuration")?;
    if matches!(cli.command, Command::Serve) {
        config.check_runnable().context("checking configuration")?;
    }
    let client = ApiClient::new(&client_socket(&config));
    match cli.command {
        Command::Serve => daemon::serve(config).await,
        Command::Agent(cmd) => agent::run(cmd, &config, &client).await,
        Command::Tool(cmd) => tool::run(cmd, &config, &client).await,
        Command::Memory(cmd) => memory::run(cmd, &config, &client).await,
        Command::Status { json } => daemon::status(&client, json).await,
        Command::Health => daemon::health(&client).await,
        Command::LogFilter { filter } => daemon::log_filter(&client, filter).await,
        Command::Worker(cmd) => daemon::worker(cmd, &client).await,
        Command::Capability(cmd) => agent::capability(cmd, &config, &client).await,
        Command::Conversation(cmd) => conversation::run(cmd, &config, &client).await,
        Command::Protocol(cmd) => protocol::run(cmd, &config, &client).await,
        Command::Execution(cmd) => execution::run(cmd, &config, &client).await,
        Command::Topic(cmd) => protocol::topic(cmd, &config, &client).await,
    }
}
