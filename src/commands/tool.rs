//! `caxton tool ...`. With a daemon running these go through its API; without one they work on
//! the data directory's tools directory, which a daemon started later loads.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use caxton_supervisor::config::Config;
use caxton_tool_host::manifest::{MANIFEST_FILE, ToolManifest};

use crate::backend::Backend;
use crate::cli::ToolCommand;
use crate::client::ApiClient;
use crate::output;

pub async fn run(
    cmd: ToolCommand,
    config: &Config,
    client: &ApiClient,
) -> anyhow::Result<ExitCode> {
    match cmd {
        ToolCommand::Deploy { dir } => deploy(&dir, config, client).await,
        ToolCommand::List { json } => list(config, client, json).await,
        ToolCommand::Show { name, json } => show(&name, config, client, json).await,
        ToolCommand::Remove { name } => remove(&name, config, client).await,
    }
}

async fn deploy(dir: &Path, config: &Config, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest_text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    // Parse here too, to find the module and to report manifest errors without a round trip.
    let manifest = ToolManifest::parse(&manifest_path, &manifest_text)?;
    let module_path = dir.join(&manifest.module);
    let wasm = std::fs::read(&module_path)
        .with_context(|| format!("cannot read the module {}", module_path.display()))?;
    let origin = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let backend = Backend::choose(config, client, "tool deploy").await?;
    let out = backend.deploy_tool(&origin, manifest_text, wasm).await?;
    println!(
        "{} tool server {} {} ({}){}",
        if out.replaced { "updated" } else { "deployed" },
        out.server.name,
        out.server.version,
        out.server.tools.join(", "),
        if backend.is_in_process() {
            " (no daemon running)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

async fn list(config: &Config, client: &ApiClient, json: bool) -> anyhow::Result<ExitCode> {
    let list = Backend::choose_to_read(config, client)
        .await?
        .tool_servers()
        .await?;
    if json {
        output::print_json(&list);
    } else {
        output::print_tool_servers(&list);
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(
    name: &str,
    config: &Config,
    client: &ApiClient,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let detail = Backend::choose_to_read(config, client)
        .await?
        .tool_server(name)
        .await?;
    if json {
        output::print_json(&detail);
    } else {
        let manifest: ToolManifest = serde_json::from_value(detail.manifest.clone())
            .context("reading the tool server's manifest")?;
        output::print_tool_server(&detail.info, &manifest);
    }
    Ok(ExitCode::SUCCESS)
}

async fn remove(name: &str, config: &Config, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let backend = Backend::choose(config, client, "tool remove").await?;
    backend.remove_tool(name).await?;
    println!(
        "removed tool server {name}{}",
        if backend.is_in_process() {
            " (no daemon running)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
