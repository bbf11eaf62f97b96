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
        eprintln!(
            "model:     {} via {} ({} prompt + {} completion tokens)",
            s(u, "model"),
            s(u, "provider"),
            u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
            u.get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0)
        );
    }
    if let Some(o) = r.pointer("/outcome/kind").and_then(Value::as_str) {
        eprintln!("outcome:   {o}");
    }
}
