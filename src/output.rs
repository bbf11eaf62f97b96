//! What the CLI prints for people (tables, summaries); `--json` prints the API's JSON instead.

use caxton_api_contract::agents::{AgentDetail, AgentList};
use caxton_api_contract::conversations::{
    ConversationDetail, ConversationList, ExecutionNode, MessageKind,
};
use caxton_api_contract::protocols::{AwardAnswer, NegotiationAnswer, NegotiationOutcome};
use caxton_api_contract::routing::CapabilityList;
use caxton_api_contract::tools::{ToolServerInfo, ToolServerList};
use caxton_api_contract::{
    ExecutionList, ExecutionRecord, ExecutionReport, LiveWorker, StatusReport,
};
use caxton_tool_host::manifest::{Access, ToolManifest};

pub fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
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
    if !status.cgroups.is_empty() {
        println!("cgroup:  {}", status.cgroups);
    }
    if !status.workers.is_empty() {
        println!(
            "{:<8} {:<24} {:<38} {:>8}  STATE",
            "PID", "AGENT", "EXECUTION", "AGE"
        );
        // Delegated executions under the one that asked, indented by depth.
        let live: std::collections::HashSet<&str> = status
            .workers
            .iter()
            .map(|w| w.execution_id.as_str())
            .collect();
        let is_root = |w: &&LiveWorker| {
            w.parent_execution_id
                .as_deref()
                .is_none_or(|p| !live.contains(p))
        };
        let mut stack: Vec<(&LiveWorker, usize)> = status
            .workers
            .iter()
            .filter(is_root)
            .rev()
            .map(|w| (w, 0))
            .collect();
        while let Some((w, depth)) = stack.pop() {
            let agent = if depth == 0 {
                w.agent.clone()
            } else {
                format!("{}└ {}", "  ".repeat(depth - 1), w.agent)
            };
            println!(
                "{:<8} {:<24} {:<38} {:>8}  {}",
                w.pid,
                agent,
                w.execution_id,
                human_age(w.age_seconds),
                w.state.as_str(),
            );
            stack.extend(
                status
                    .workers
                    .iter()
                    .filter(|c| c.parent_execution_id.as_deref() == Some(w.execution_id.as_str()))
                    .rev()
                    .map(|c| (c, depth + 1)),
            );
        }
        // How the workers confined themselves: one line per kind (usually one), a missing
        // layer marked `-`.
        let sandboxes: std::collections::BTreeSet<&str> = status
            .workers
            .iter()
            .filter_map(|w| w.sandbox.as_deref())
            .collect();
        for sandbox in sandboxes {
            println!("sandbox: {sandbox}");
        }
    }
}

pub fn print_agents(list: &AgentList) {
    if list.agents.is_empty() {
        println!("no agents deployed (deploy one with `caxton agent deploy FILE`)");
        return;
    }
    println!("{:<28} {:<10} DESCRIPTION", "NAME", "VERSION");
    for a in &list.agents {
        println!(
            "{:<28} {:<10} {}",
            a.name,
            a.version,
            a.description.as_deref().unwrap_or_default()
        );
    }
}

pub fn print_capabilities(list: &CapabilityList) {
    if list.capabilities.is_empty() {
        println!("no agent declares a capability (add `capabilities = [...]` to an agent file)");
        return;
    }
    println!("{:<28} AGENTS", "CAPABILITY");
    for c in &list.capabilities {
        println!("{:<28} {}", c.name, c.agents.join(", "));
    }
}

pub fn print_agent(a: &AgentDetail) {
    println!("name:         {}", a.name);
    println!("version:      {}", a.version);
    if let Some(description) = a.description.as_deref().filter(|d| !d.is_empty()) {
        println!("description:  {description}");
    }
    println!("capabilities: {}", a.capabilities.join(", "));
    println!("tools:        {}", a.tools.join(", "));
    println!(
        "llm:          provider={} model={}",
        a.llm
            .provider
            .as_deref()
            .unwrap_or("(the configured default)"),
        a.llm.model.as_deref().unwrap_or("(the provider's default)")
    );
    let d = &a.delegation;
    if d.enabled() {
        let mut reach = Vec::new();
        for (what, items) in [
            ("agents", &d.agents),
            ("capabilities", &d.capabilities),
            ("topics", &d.topics),
        ] {
            if !items.is_empty() {
                reach.push(format!("{what}={}", items.join(",")));
            }
        }
        if !d.remote.is_empty() {
            let remote: Vec<String> = d
                .remote
                .iter()
                .map(|r| format!("{}@{}", r.name, r.card))
                .collect();
            reach.push(format!("remote={}", remote.join(",")));
        }
        if let Some(depth) = d.max_depth {
            reach.push(format!("max_depth={depth}"));
        }
        println!("delegates to: {}", reach.join(" "));
    }
    if !a.subscriptions.is_empty() {
        println!("subscribes:   {}", a.subscriptions.join(", "));
    }
    if let Some(doc) = a.documentation.as_deref().filter(|d| !d.is_empty()) {
        println!("\n{}", doc.trim());
    }
}

pub fn print_run_details(r: &ExecutionReport) {
    eprintln!("execution: {}", r.execution_id);
    if let Some(c) = &r.placement.conversation_id {
        eprintln!("conversation: {c}");
    }
    if let Some(t) = &r.trace_id {
        eprintln!("trace:     {t}");
    }
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

pub fn print_tool_servers(list: &ToolServerList) {
    if list.servers.is_empty() {
        println!("no tool servers (deploy one with `caxton tool deploy DIR`)");
        return;
    }
    println!("{:<20} {:<10} {:<9} TOOLS", "SERVER", "VERSION", "SOURCE");
    for server in &list.servers {
        println!(
            "{:<20} {:<10} {:<9} {}",
            server.name,
            server.version,
            server.source.label(),
            server.tools.join(", ")
        );
    }
}

pub fn print_tool_server(info: &ToolServerInfo, manifest: &ToolManifest) {
    println!("{} {} ({})", info.name, info.version, info.source.label());
    if !info.description.is_empty() {
        println!("{}", info.description);
    }
    for tool in &manifest.tools {
        println!("\ntool {}: {}", tool.name, tool.description);
        println!("  input: {}", tool.input_schema);
    }
    println!();
    for dir in &manifest.capabilities.directories {
        let access = match dir.access {
            Access::Read => "read",
            Access::ReadWrite => "read-write",
        };
        println!("directory: {} as {} ({access})", dir.host, dir.guest);
    }
    for host in &manifest.capabilities.http_hosts {
        println!("http host: {host}");
    }
    let limits = &manifest.limits;
    // Alphabetical, as they have always been shown.
    let shown: Vec<String> = [
        limits.fuel.map(|f| format!("fuel = {f}")),
        limits.memory.as_ref().map(|m| format!("memory = {m}")),
        limits.timeout.as_ref().map(|t| format!("timeout = {t}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !shown.is_empty() {
        println!("limits: {}", shown.join(", "));
    }
}

/// Seconds since the epoch as an RFC 3339 UTC time: `2026-12-06T22:19:39Z`.
fn utc(seconds: f64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(seconds.max(0.0));
    humantime::format_rfc3339_seconds(at).to_string()
}

pub fn print_conversations(list: &ConversationList) {
    if list.conversations.is_empty() {
        println!("no conversations yet (every `caxton agent run` starts one)");
        return;
    }
    println!(
        "{:<38} {:<12} {:<20} {:>5} {:>5}  PARTICIPANTS",
        "ID", "STATE", "UPDATED", "MSGS", "EXECS"
    );
    for c in &list.conversations {
        println!(
            "{:<38} {:<12} {:<20} {:>5} {:>5}  {}",
            c.id,
            c.state.as_str(),
            utc(c.updated_at),
            c.messages,
            c.executions,
            c.participants.join(", ")
        );
    }
}

pub fn print_conversation(detail: &ConversationDetail) {
    let c = &detail.conversation;
    println!("conversation {}", c.id);
    println!("state:      {}", c.state.as_str());
    println!("protocol:   {}", c.protocol.as_str());
    println!("started by: {}", c.initiator);
    println!("created:    {}", utc(c.created_at));
    println!("expires:    {}", utc(c.expires_at));
    println!();
    println!("executions:");
    for node in &detail.executions {
        print_node(node, 1);
    }
    println!();
    println!("messages:");
    for m in &detail.messages {
        let arrow = match m.kind {
            MessageKind::Request => "asks",
            MessageKind::Response => "answers",
            MessageKind::Notification => "notifies",
            MessageKind::Error => "fails to answer",
        };
        println!(
            "  {}  {} {arrow} {}: {}",
            utc(m.timestamp),
            m.sender,
            m.receiver,
            one_line(&m.content, 160)
        );
    }
}

fn print_node(node: &ExecutionNode, depth: usize) {
    let tokens = match (node.prompt_tokens, node.completion_tokens) {
        (Some(p), Some(c)) => format!(", {p}+{c} tokens"),
        _ => String::new(),
    };
    let duration = node
        .duration_ms
        .map(|d| format!(", {d:.0} ms"))
        .unwrap_or_default();
    let outcome = node.outcome.as_deref().unwrap_or(node.status.as_str());
    println!(
        "{}{} {} ({outcome}{duration}{tokens})",
        "  ".repeat(depth),
        node.agent,
        node.execution_id
    );
    for child in &node.children {
        print_node(child, depth + 1);
    }
}

/// `text` on one line, cut at `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &flat[..end]),
        None => flat,
    }
}

/// Each report's answer (or failure) on a line of its own, under its agent's name.
pub fn print_labelled(reports: &[ExecutionReport]) {
    for report in reports {
        match report.failure_message() {
            None => println!(
                "[{}] {}",
                report.agent,
                report.answer.as_deref().unwrap_or_default()
            ),
            Some(message) => println!("[{}] failed: {message}", report.agent),
        }
    }
}

pub fn print_award(a: &AwardAnswer) {
    println!("rule: {}", a.rule_text);
    println!("{:<28} {:>8}  PROPOSAL", "AGENT", "VALUE");
    for p in &a.proposals {
        let value = p.value.map_or("-".to_owned(), |v| format!("{v}"));
        println!("{:<28} {:>8}  {}", p.agent, value, one_line(&p.text, 100));
    }
    match (&a.awarded, &a.result) {
        (Some(winner), Some(r)) => {
            println!("awarded to: {winner}");
            match r.failure_message() {
                None => println!("{}", r.answer.as_deref().unwrap_or_default()),
                Some(m) => println!("failed: {m}"),
            }
        }
        _ => println!("awarded to: nobody (no valid proposal)"),
    }
    println!("conversation: {}", a.conversation_id);
}

pub fn print_negotiation(n: &NegotiationAnswer) {
    for t in &n.turns {
        match &t.offer {
            Some(offer) => println!("{:<24} {:<8} {}", t.agent, t.decision, one_line(offer, 120)),
            None => println!("{:<24} {}", t.agent, t.decision),
        }
    }
    let outcome = match n.outcome {
        NegotiationOutcome::Agreed => "agreed",
        NegotiationOutcome::Refused => "refused",
        NegotiationOutcome::RoundLimit => "no agreement within the round limit",
        NegotiationOutcome::Failed => "failed",
    };
    println!("outcome: {outcome}");
    if let Some(deal) = &n.agreement {
        println!("agreement: {deal}");
    }
    println!("conversation: {}", n.conversation_id);
}

/// An execution's tokens as `prompt+completion`, or `-` when unknown.
fn tokens(prompt: Option<u32>, completion: Option<u32>) -> String {
    match (prompt, completion) {
        (Some(p), Some(c)) => format!("{p}+{c}"),
        _ => "-".into(),
    }
}

pub fn print_executions(list: &ExecutionList) {
    if list.executions.is_empty() {
        println!("no executions match");
        return;
    }
    println!(
        "{:<38} {:<20} {:<18} {:<20} {:>10} {:>9}  PARENT",
        "ID", "AGENT", "OUTCOME", "STARTED", "DURATION", "TOKENS"
    );
    for e in &list.executions {
        println!(
            "{:<38} {:<20} {:<18} {:<20} {:>10} {:>9}  {}",
            e.execution_id,
            e.agent,
            e.outcome.as_deref().unwrap_or(e.status.as_str()),
            utc(e.started_at),
            e.duration_ms
                .map_or("-".to_owned(), |d| format!("{d:.0} ms")),
            tokens(e.prompt_tokens, e.completion_tokens),
            e.placement.parent_execution_id.as_deref().unwrap_or("-"),
        );
    }
}

pub fn print_execution(e: &ExecutionRecord) {
    println!("execution:    {}", e.execution_id);
    println!("agent:        {} {}", e.agent, e.agent_version);
    println!(
        "outcome:      {}",
        e.outcome.as_deref().unwrap_or(e.status.as_str())
    );
    if let Some(error) = &e.error {
        println!("error:        {error}");
    }
    println!("started:      {}", utc(e.started_at));
    if let Some(d) = e.duration_ms {
        println!("duration:     {d:.1} ms");
    }
    if let Some(pid) = e.worker_pid {
        println!("worker:       pid {pid}");
    }
    match (e.exit_code, e.exit_signal) {
        (Some(code), _) => println!("exit:         code {code}"),
        (None, Some(signal)) => println!("exit:         signal {signal}"),
        _ => {}
    }
    if let (Some(model), Some(provider)) = (&e.model, &e.provider) {
        println!(
            "model:        {model} via {provider} ({} tokens)",
            tokens(e.prompt_tokens, e.completion_tokens)
        );
    }
    let p = &e.placement;
    if let Some(c) = &p.conversation_id {
        println!("conversation: {c}");
    }
    if let Some(t) = &e.trace_id {
        println!("trace:        {t}");
    }
    if let Some(parent) = &p.parent_execution_id {
        println!("parent:       {parent}");
    }
    for child in &e.children {
        println!("child:        {child}");
    }
    for (i, call) in e.tool_calls.iter().enumerate() {
        println!(
            "{:<14}{}({}) → {}, {:.1} ms{}",
            format!("tool {}:", i + 1),
            call.tool,
            one_line(&call.arguments, 80),
            call.outcome,
            call.duration_ms,
            call.error
                .as_deref()
                .map(|e| format!(": {}", one_line(e, 120)))
                .unwrap_or_default()
        );
    }
}
