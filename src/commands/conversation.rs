//! `caxton conversation list | show ID`: read from the daemon, or from the database when no
//! daemon runs (read only, so it works beside an in-process run).

use std::process::ExitCode;

use caxton_supervisor::config::Config;

use crate::backend::Backend;
use crate::cli::ConversationCommand;
use crate::client::ApiClient;
use crate::output;

pub async fn run(
    cmd: ConversationCommand,
    config: &Config,
    client: &ApiClient,
) -> anyhow::Result<ExitCode> {
    let backend = Backend::choose_to_read(config, client).await?;
    match cmd {
        ConversationCommand::List { limit, json } => {
            let list = backend.conversations(limit).await?;
            if json {
                output::print_json(&list);
            } else {
                output::print_conversations(&list);
            }
        }
        ConversationCommand::Show { id, json } => {
            let detail = backend.conversation(&id).await?;
            if json {
                output::print_json(&detail);
            } else {
                output::print_conversation(&detail);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
