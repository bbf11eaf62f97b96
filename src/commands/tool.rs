//! `caxton tool ...`. With a daemon running these go through its API; without one they work on
//! the data directory's tools directory, which a daemon started later loads.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine as _;
use caxton_supervisor::config::Config;
use caxton_supervisor::tools::ToolRegistry;
use caxton_tool_host::manifest::{MANIFEST_FILE, ToolManifest};
use hyper::Method;
use serde_json::{Value, json};

use super::agent::try_daemon;
use crate::backend::claim_data_dir;
use crate::cli::ToolCommand;
use crate::client::{Answer, ApiClient};
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

fn offline_registry(config: &Config) -> anyhow::Result<ToolRegistry> {
    Ok(ToolRegistry::open(
        &config.tools_dir,
        config.builtin_tools_dir.as_deref(),
        &config.cache_dir,
        &caxton_supervisor::memory::reserved_names(),
    )?)
}

fn body_of(answer: Answer) -> anyhow::Result<Value> {
    if let Some(message) = answer.error_message() {
        bail!(message);
    }
    Ok(answer.body)
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
    let body = json!({
        "manifest": manifest_text,
        "module_base64": base64::engine::general_purpose::STANDARD.encode(&wasm),
        "origin": origin.display().to_string(),
    });
    let (info, replaced, offline) =
        match try_daemon(client, Method::POST, "/api/v1/tools", Some(&body)).await? {
            Some(answer) => {
                let body = body_of(answer)?;
                let replaced = body.get("replaced").and_then(Value::as_bool) == Some(true);
                (body["server"].clone(), replaced, false)
            }
            None => {
                let _lock = claim_data_dir(config, client, "tool deploy")?;
                let registry = offline_registry(config)?;
                let replaced = registry.info(&manifest.name).is_some();
                let info = registry.deploy(&origin, &manifest_text, &wasm)?;
                (serde_json::to_value(info)?, replaced, true)
            }
        };
    let tools: Vec<&str> = info["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    println!(
        "{} tool server {} {} ({}){}",
        if replaced { "updated" } else { "deployed" },
        info["name"].as_str().unwrap_or_default(),
        info["version"].as_str().unwrap_or_default(),
        tools.join(", "),
        if offline { " (no daemon running)" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

async fn list(config: &Config, client: &ApiClient, json: bool) -> anyhow::Result<ExitCode> {
    let body = match try_daemon(client, Method::GET, "/api/v1/tools", None).await? {
        Some(answer) => body_of(answer)?,
        None => json!({ "servers": offline_registry(config)?.list() }),
    };
    if json {
        output::print_json(&body);
    } else {
        output::print_tool_servers(&body);
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(
    name: &str,
    config: &Config,
    client: &ApiClient,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let body = match try_daemon(client, Method::GET, &format!("/api/v1/tools/{name}"), None).await?
    {
        Some(answer) => body_of(answer)?,
        None => {
            let detail = offline_registry(config)?
                .show(name)
                .with_context(|| format!("no tool server named {name:?} is deployed"))?;
            serde_json::to_value(detail)?
        }
    };
    if json {
        output::print_json(&body);
    } else {
        output::print_tool_server(&body);
    }
    Ok(ExitCode::SUCCESS)
}

async fn remove(name: &str, config: &Config, client: &ApiClient) -> anyhow::Result<ExitCode> {
    match try_daemon(
        client,
        Method::DELETE,
        &format!("/api/v1/tools/{name}"),
        None,
    )
    .await?
    {
        Some(answer) => {
            body_of(answer)?;
            println!("removed tool server {name}");
        }
        None => {
            let _lock = claim_data_dir(config, client, "tool remove")?;
            offline_registry(config)?.remove(name)?;
            println!("removed tool server {name} (no daemon running)");
        }
    }
    Ok(ExitCode::SUCCESS)
}
