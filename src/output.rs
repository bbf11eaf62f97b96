//! What the CLI prints for people (tables, summaries); `--json` prints the API's JSON instead.

use serde_json::Value;

pub fn print_json(value: &Value) {
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

pub fn print_status(body: &Value) {
    let uptime = body
        .get("uptime_seconds")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    println!(
        "caxton {}  pid {}  up {}",
        s(body, "version"),
        body.get("pid").unwrap_or(&Value::Null),
        human_age(uptime)
    );
    println!(
        "ready:   {}",
        body.get("ready").and_then(Value::as_bool).unwrap_or(false)
    );
    println!(
        "agents:  {}",
        body.get("agents").and_then(Value::as_u64).unwrap_or(0)
    );
    let workers = body
        .get("workers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    println!("workers: {}", workers.len());
    if !workers.is_empty() {
        println!(
            "{:<8} {:<24} {:<38} {:>8}  STATE",
            "PID", "AGENT", "EXECUTION", "AGE"
        );
        for w in &workers {
            println!(
                "{:<8} {:<24} {:<38} {:>8}  {}",
                w.get("pid").and_then(Value::as_u64).unwrap_or(0),
                s(w, "agent"),
                s(w, "execution_id"),
                human_age(w.get("age_seconds").and_then(Value::as_f64).unwrap_or(0.0)),
                s(w, "state"),
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

pub fn print_run_details(r: &Value) {
    let f = |key: &str| r.get(key).and_then(Value::as_f64);
    eprintln!("execution: {}", s(r, "execution_id"));
    eprintln!("agent:     {} {}", s(r, "agent"), s(r, "agent_version"));
    if let Some(pid) = r.get("worker_pid").and_then(Value::as_u64) {
        eprintln!("worker:    pid {pid}");
    }
    if let Some(ms) = f("duration_ms") {
        eprintln!(
            "duration:  {ms:.1} ms (worker start-up {:.1} ms, model {:.1} ms)",
            f("startup_ms").unwrap_or(0.0),
            f("llm_ms").unwrap_or(0.0)
        );
    }
    if let Some(u) = r.get("usage").filter(|u| !u.is_null()) {
        let tokens = |key: &str| u.get(key).and_then(Value::as_u64);
        // A server that reports no counts gets no invented zeros.
        let counts = match (tokens("prompt_tokens"), tokens("completion_tokens")) {
            (Some(p), Some(c)) => format!("{p} prompt + {c} completion tokens"),
            (Some(p), None) => format!("{p} prompt tokens, completion tokens unknown"),
            (None, Some(c)) => format!("prompt tokens unknown, {c} completion tokens"),
            (None, None) => "usage unknown: the provider reported no token counts".to_owned(),
        };
        eprintln!(
            "model:     {} via {} ({counts})",
            s(u, "model"),
            s(u, "provider"),
        );
    }
    for (i, call) in r
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        eprintln!(
            "tool {}:    {}({}) → {} bytes in {:.1} ms, {}{}",
            i + 1,
            s(call, "tool"),
            s(call, "arguments"),
            call.get("result_bytes")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            call.get("duration_ms")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            s(call, "outcome"),
            call.get("error")
                .and_then(Value::as_str)
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    if let Some(o) = r.pointer("/outcome/kind").and_then(Value::as_str) {
        eprintln!("outcome:   {o}");
    }
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
