//! `caxton`: the command-line interface and the daemon entry point.
//!
//! This binary parses arguments and prints; the work happens in the `caxton-supervisor` library,
//! reached through the management API of a running daemon (or, for `agent run` and friends when
//! no daemon runs, in-process through the same library code).

mod backend;
mod cli;
mod client;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code_of(&e)
        }
    }
}

/// Exit status for a configuration the process refused (sysexits' `EX_CONFIG`). The systemd
/// unit lists it in `RestartPreventExitStatus=`: restarting cannot fix a bad config file.
pub const EXIT_CONFIG: u8 = 78;

/// The exit status for an error: [`EXIT_CONFIG`] when the configuration was refused, 1 else.
fn exit_code_of(error: &anyhow::Error) -> ExitCode {
    let config_error = error
        .chain()
        .any(|cause| cause.is::<caxton_supervisor::config::ConfigError>());
    if config_error {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::FAILURE
    }
}
