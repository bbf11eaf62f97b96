//! What the CLI prints for people (tables, summaries); `--json` prints the API's JSON instead.

use caxton_api_contract::{ExecutionReport, StatusReport};
use serde_json::Value;

pub fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn human_age(seconds: f64) -> String {
    match seconds {
        s if s < 1.0 => format!("{}ms", (s * 1000.0) as u64),
        s if s < 120.0 => format!("{s:.1}s"),
        s if s < 7200.0 => format!("{}m", (s / 60.0) as u64),
        s => format!("{}h", (s / 3600.0) as u64),
    }
}

pub fn print_status(status: &StatusReport) {
    println!(
        "caxton {}  pid {}  up {}",
        status.version,
        status.pid,
        human_age(status.uptime_seconds)
    );
    println!("ready:   {}", status.ready);
    println!("agents:  {}", status.agents);
    println!("workers: {}", status.workers.len());
    if !status.workers.is_empty() {
        println!(
            "{:<8} {:<24} {:<38} {:>8}  STATE",
            "PID", "AGENT", "EXECUTION", "AGE"
        );
        for w in &status.workers {
            println!(
                "{:<8} {:<24} {:<38} {:>8}  {}",
                w.pid,
                w.agent,
                w.execution_id,
                human_age(w.age_seconds),
                w.state.as_str(),
            );
        }
    }
}

pub fn print_agents(body: &Value) {
    let agents = body
        .get("agents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if agents.is_empty() {
        println!("no agents deployed (deploy one with `caxton agent deploy FILE`)");
        return;
    }
    println!("{:<28} {:<10} DESCRIPTION", "NAME", "VERSION");
    for a in &agents {
        println!(
            "{:<28} {:<10} {}",
            s(a, "name"),
            s(a, "version"),
            s(a, "description")
        );
    }
}

pub fn print_agent(a: &Value) {
    let list = |key: &str| {
        a.get(key)
            .and_then(Value::as_array)
            .map(|v| {
                v.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    println!("name:         {}", s(a, "name"));
    println!("version:      {}", s(a, "version"));
    if !s(a, "description").is_empty() {
        println!("description:  {}", s(a, "description"));
    }
    println!("capabilities: {}", list("capabilities"));
    println!("tools:        {}", list("tools"));
    if let Some(llm) = a.get("llm") {
        println!(
            "llm:          provider={} model={}",
            s(llm, "provider"),
            s(llm, "model")
        );
    }
    if !s(a, "documentation").is_empty() {
        println!("\n{}", s(a, "documentation").trim());
    }
}

pub fn print_run_details(r: &ExecutionReport) {
    eprintln!("execution: {}", r.execution_id);
    eprintln!("agent:     {} {}", r.agent, r.agent_version);
    if let Some(pid) = r.worker_pid {
        eprintln!("worker:    pid {pid}");
    }
    eprintln!(
        "duration:  {:.1} ms (worker start-up {:.1} ms, model {:.1} ms)",
        r.duration_ms,
        r.startup_ms.unwrap_or(0.0),
        r.llm_ms.unwrap_or(0.0)
    );
    if let Some(u) = &r.usage {
        // A server that reports no counts gets no invented zeros.
        let counts = match (u.prompt_tokens, u.completion_tokens) {
            (Some(p), Some(c)) => format!("{p} prompt + {c} completion tokens"),
            (Some(p), None) => format!("{p} prompt tokens, completion tokens unknown"),
            (None, Some(c)) => format!("prompt tokens unknown, {c} completion tokens"),
            (None, None) => "usage unknown: the provider reported no token counts".to_owned(),
        };
        eprintln!("model:     {} via {} ({counts})", u.model, u.provider);
    }
    for (i, call) in r.tool_calls.iter().enumerate() {
        eprintln!(
            "tool {}:    {}({}) → {} bytes in {:.1} ms, {}{}",
            i + 1,
            call.tool,
            call.arguments,
            call.result_bytes,
            call.duration_ms,
            call.outcome,
            call.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    eprintln!("outcome:   {}", r.outcome.label());
}

pub fn print_tool_servers(body: &Value) {
    let servers = body
        .get("servers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if servers.is_empty() {
        println!("no tool servers (deploy one with `caxton tool deploy DIR`)");
        return;
    }
    println!("{:<20} {:<10} {:<9} TOOLS", "SERVER", "VERSION", "SOURCE");
    for server in &servers {
        let tools: Vec<&str> = server
            .get("tools")
            .and_then(Value::as_array)
            .map(|t| t.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "{:<20} {:<10} {:<9} {}",
            s(server, "name"),
            s(server, "version"),
            s(server, "source").replace('_', "-"),
            tools.join(", ")
        );
    }
}

pub fn print_tool_server(body: &Value) {
    println!(
        "{} {} ({})",
        s(body, "name"),
        s(body, "version"),
        s(body, "source").replace('_', "-")
    );
    if !s(body, "description").is_empty() {
        println!("{}", s(body, "description"));
    }
    let manifest = body.get("manifest").cloned().unwrap_or_default();
    for tool in manifest
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!("\ntool {}: {}", s(tool, "name"), s(tool, "description"));
        if let Some(schema) = tool.get("input_schema") {
            println!("  input: {schema}");
        }
    }
    let caps = manifest.get("capabilities").cloned().unwrap_or_default();
    println!();
    for dir in caps
        .get("directories")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!(
            "directory: {} as {} ({})",
            s(dir, "host"),
            s(dir, "guest"),
            s(dir, "access")
        );
    }
    for host in caps
        .get("http_hosts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!("http host: {}", host.as_str().unwrap_or_default());
    }
    if let Some(limits) = manifest.get("limits").and_then(Value::as_object) {
        let shown: Vec<String> = limits
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                format!(
                    "{k} = {}",
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                )
            })
            .collect();
        if !shown.is_empty() {
            println!("limits: {}", shown.join(", "));
        }
    }
}
