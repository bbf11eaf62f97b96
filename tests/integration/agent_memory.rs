//! Agents with `[memory]`: relevant memories reach the prompt, `auto_store` remembers a
//! successful request, the memory tools run through the ordinary tool loop, and the supervisor
//! keeps each agent inside the scope its file names. Real daemon, real worker, the real
//! embedding model; the LLM is the loopback fake, which echoes the prompt it gets.

use serde_json::{Value, json};

use crate::support::{Daemon, DaemonOptions, FakeLlm, http, models_dir};

/// A daemon whose memory embeds with the real all-MiniLM-L6-v2.
fn daemon_with_memory() -> (FakeLlm, Daemon) {
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    opts.env.push((
        "CAXTON_MODELS_DIR".into(),
        models_dir().display().to_string(),
    ));
    let daemon = Daemon::start(opts);
    (llm, daemon)
}

/// An agent whose prompt shows its memories: the fake LLM echoes `CONTEXT || REQUEST`.
fn remembering_agent(name: &str, memory: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"1.0.0\"\nuser_prompt_template = \"{{{{ context }}}} || {{{{ request }}}}\"\n\n[llm]\nprovider = \"fake\"\n\n[memory]\n{memory}\n"
    )
}

/// Run `request` and return the answer, failing the test on any error.
fn answer(d: &Daemon, agent: &str, request: &str) -> String {
    let (status, body) = d.run(agent, request);
    assert_eq!(status, 200, "{agent}: {body}");
    body["answer"].as_str().unwrap_or_default().to_owned()
}

/// The daemon's Prometheus exposition.
fn metrics_text(d: &Daemon) -> String {
    use std::io::Write;
    let mut stream = std::os::unix::net::UnixStream::connect(&d.env.socket).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (code, body) = crate::support::read_response(&mut stream).unwrap();
    assert_eq!(code, 200);
    body.as_str().unwrap_or_default().to_owned()
}

/// The JSON a memory tool returned, from the fake LLM's `tool said: RESULT` answer.
fn tool_result(answer: &str) -> Value {
    let raw = answer
        .strip_prefix("tool said: ")
        .unwrap_or_else(|| panic!("no tool result in {answer:?}"));
    serde_json::from_str(raw).unwrap_or_else(|e| panic!("{e}: {raw}"))
}

#[test]
fn an_agent_remembers_what_it_was_told_and_finds_it_by_meaning() {
    let (_llm, d) = daemon_with_memory();
    d.deploy(
        "diary",
        &remembering_agent("diary", "enabled = true\nauto_store = true"),
    );

    let first = answer(&d, "diary", "My sister Lena lives in Porto.");
    assert!(
        first.ends_with("|| My sister Lena lives in Porto.") && !first.contains("memories"),
        "nothing remembered yet, so no memories in the prompt: {first}"
    );

    answer(&d, "diary", "Lena works as a pharmacist.");

    // The only way the facts can come back is auto_store having kept the earlier exchanges,
    // each its own memory, so both can.
    let recall = answer(&d, "diary", "Tell me about my sister Lena.");
    assert!(
        recall.contains("Relevant memories:")
            && recall.contains("Lena lives in Porto")
            && recall.contains("Lena works as a pharmacist"),
        "the earlier exchanges are in the prompt: {recall}"
    );

    // Memories that do not resemble the request stay out, however many words they share.
    let unrelated = answer(&d, "diary", "How many legs does a spider have?");
    assert!(
        !unrelated.contains("memories"),
        "unrelated memories reached the prompt: {unrelated}"
    );
}

#[test]
fn memory_tools_run_through_the_tool_loop_inside_the_agent_s_scope() {
    let (_llm, d) = daemon_with_memory();
    d.deploy("keeper", &remembering_agent("keeper", "enabled = true"));
    d.deploy("stranger", &remembering_agent("stranger", "enabled = true"));
    d.deploy(
        "forgetful",
        &remembering_agent("forgetful", "enabled = false"),
    );

    let store = json!({
        "name": "Ada",
        "entity_type": "person",
        "observations": ["Ada drinks green tea every morning"]
    });
    let stored = tool_result(&answer(
        &d,
        "keeper",
        &format!("[call memory_store {store}]"),
    ));
    assert_eq!(stored["created"], true, "{stored}");
    assert_eq!(stored["observations_added"], 1, "{stored}");

    // Adding a fact without a type keeps the type Ada has.
    let more = json!({"name": "Ada", "observations": ["Ada cycles to work"]});
    let added = tool_result(&answer(
        &d,
        "keeper",
        &format!("[call memory_store {more}]"),
    ));
    assert_eq!(added["created"], false, "{added}");
    let search_type = json!({"query": "Ada", "mode": "keyword"});
    let typed = tool_result(&answer(
        &d,
        "keeper",
        &format!("[call memory_search {search_type}]"),
    ));
    assert_eq!(typed["results"][0]["entity_type"], "person", "{typed}");

    let relate = json!({"from": "Ada", "to": "Ada", "relation_type": "knows"});
    let related = answer(&d, "keeper", &format!("[call memory_relate {relate}]"));
    assert_eq!(tool_result(&related)["related"], true, "{related}");

    let search = json!({"query": "what does Ada like to drink?", "mode": "semantic"});
    let found = tool_result(&answer(
        &d,
        "keeper",
        &format!("[call memory_search {search}]"),
    ));
    assert_eq!(found["results"][0]["name"], "Ada", "{found}");
    assert_eq!(
        found["results"][0]["observation"], "Ada drinks green tea every morning",
        "{found}"
    );

    // Another agent's private memory holds nothing of keeper's.
    let elsewhere = tool_result(&answer(
        &d,
        "stranger",
        &format!("[call memory_search {search}]"),
    ));
    assert_eq!(elsewhere["results"], json!([]), "{elsewhere}");

    // Each memory operation is counted, by operation and outcome.
    let metrics = metrics_text(&d);
    for line in [
        "caxton_memory_operations_total{op=\"memory_store\",outcome=\"ok\"} 2",
        "caxton_memory_operations_total{op=\"memory_search\",outcome=\"ok\"} 3",
        "caxton_memory_operations_total{op=\"prompt_search\",outcome=\"ok\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }

    // Without [memory] enabled the model is offered no memory tools at all.
    let (status, body) = d.run("forgetful", &format!("[call memory_store {store}]"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["answer"], "no tools left after 0 results", "{body}");
    assert_eq!(body["tool_calls"], json!([]), "{body}");
}

#[test]
fn a_request_cannot_move_an_agent_into_another_workspace() {
    let (_llm, d) = daemon_with_memory();
    d.deploy(
        "sales-bot",
        &remembering_agent(
            "sales-bot",
            "enabled = true\nscope = \"workspace\"\nworkspace = \"sales\"",
        ),
    );
    let (status, body) = http(
        &d.env.socket,
        "POST",
        "/api/v1/agents/sales-bot/run",
        Some(&json!({"request": "hello", "workspace": "ops"}).to_string()),
    )
    .unwrap();
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("\"sales\"") && message.contains("\"ops\""),
        "the refusal names both workspaces: {message}"
    );

    let out = d.cli(&["agent", "run", "sales-bot", "hello", "--workspace", "sales"]);
    assert!(
        out.status.success(),
        "its own workspace is fine: {}",
        crate::support::text(&out.stderr)
    );
}

#[test]
fn an_unpinned_agent_works_in_the_workspace_each_request_names() {
    let (_llm, d) = daemon_with_memory();
    d.deploy(
        "team-bot",
        &remembering_agent("team-bot", "enabled = true\nscope = \"workspace\""),
    );
    let run_in = |workspace: &str, request: String| {
        let (status, body) = http(
            &d.env.socket,
            "POST",
            "/api/v1/agents/team-bot/run",
            Some(&json!({"request": request, "workspace": workspace}).to_string()),
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
        tool_result(body["answer"].as_str().unwrap_or_default())
    };
    let store = json!({"name": "launch", "observations": ["The launch is on Friday"]});
    run_in("alpha", format!("[call memory_store {store}]"));

    let search = json!({"query": "when is the launch?"});
    let alpha = run_in("alpha", format!("[call memory_search {search}]"));
    assert_eq!(alpha["results"][0]["name"], "launch", "{alpha}");
    let beta = run_in("beta", format!("[call memory_search {search}]"));
    assert_eq!(
        beta["results"],
        json!([]),
        "another workspace sees nothing: {beta}"
    );

    // What the agent stored is the workspace's memory, as the CLI shows it.
    let out = d.cli(&["memory", "show", "launch", "--scope", "workspace:alpha"]);
    assert!(
        crate::support::text(&out.stdout).contains("The launch is on Friday"),
        "{}",
        crate::support::text(&out.stderr)
    );
}
