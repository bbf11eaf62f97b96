//! Agent files and requests the tests and benches share: an agent whose prompt is the request
//! (so the fake LLM echoes it, or follows the `[call ...]` script in it), and the request text
//! that scripts an `ask_agent` call.

/// An agent whose whole prompt is the request; `extra` is appended to the file.
pub fn echo_agent(name: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"1.0.0\"\nuser_prompt_template = \"{{{{ request }}}}\"\n{extra}"
    )
}

/// A request that makes the fake model call `ask_agent` with `agent` and `request`, then answer
/// `tool said: <the answer>`.
pub fn ask(agent: &str, request: &str) -> String {
    format!(
        "[call ask_agent {}]",
        serde_json::json!({"agent": agent, "request": request})
    )
}
