//! One agent file: strict TOML parsing, the seed's `[parameters]` layout pitfall, template checks.
//!
//! Every error names the file, the line and the reason. Warnings (accepted but suspicious layouts)
//! are kept with the definition so `deploy` and `validate` can show them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use caxton_ipc_protocol::TEMPLATE_VARIABLES;
use serde::Deserialize;
use toml::Spanned;

use caxton_api_contract::agents::{AgentDetail, AgentSummary};
pub use caxton_api_contract::agents::{
    AgentFileError, DEFAULT_WORKSPACE, DelegationSettings, LlmSettings, MAX_DELEGATION_DEPTH,
    MemoryScope, MemorySettings,
};

use super::name::AgentName;
use crate::config::{
    TIMEOUT_BOUNDS, WORKER_MEMORY_BOUNDS, check_duration, check_size, line_of,
    parse_bounded_duration, parse_bounded_size, show_size,
};

/// Largest agent file accepted, in bytes. Prompts and documentation fit many times over; the
/// cap keeps a deploy request within the API's body limit (see [`MAX_AGENT_DEPLOY_BODY`]).
pub const MAX_AGENT_FILE_BYTES: usize = 256 * 1024;

/// Largest deploy request an agent file at the cap makes: JSON escapes at most double a TOML
/// file (TOML allows no control characters but tab and line ends, each escaped in two bytes),
/// plus the file's name and the JSON around it. `[api] max_body` may not be set below this.
pub const MAX_AGENT_DEPLOY_BODY: usize = 2 * MAX_AGENT_FILE_BYTES + 32 * 1024;

/// Read an agent file, refusing one larger than [`MAX_AGENT_FILE_BYTES`] (without reading all
/// of it) or one that is not UTF-8 (naming the line and byte column of the first bad byte).
pub fn read_agent_file(path: &Path) -> Result<String, AgentFileError> {
    use std::io::Read;
    let file_name = path.display().to_string();
    let fail = |line: usize, reason: String| AgentFileError {
        file: file_name.clone(),
        line,
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(1, format!("cannot read: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_AGENT_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(1, format!("cannot read: {e}")))?;
    if bytes.len() > MAX_AGENT_FILE_BYTES {
        let size = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        return Err(fail(1, too_large(size)));
    }
    agent_source_from_bytes(path, bytes)
}

/// The text of an agent file, or an error at the first byte that is not UTF-8.
pub fn agent_source_from_bytes(path: &Path, bytes: Vec<u8>) -> Result<String, AgentFileError> {
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let line_start = bytes[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        AgentFileError {
            file: path.display().to_string(),
            line,
            reason: format!(
                "not valid UTF-8: byte 0x{:02x} at byte column {} (agent files must be UTF-8 text)",
                bytes[at],
                at - line_start + 1
            ),
        }
    })
}

fn too_large(size: u64) -> String {
    format!(
        "the file is {size} bytes ({}); agent files may be at most {MAX_AGENT_FILE_BYTES} bytes ({})",
        show_size(size),
        show_size(MAX_AGENT_FILE_BYTES as u64)
    )
}

/// The most memories an agent may ask to have put in its prompt.
const MAX_MEMORY_SEARCH_LIMIT: u32 = 100;

/// Why `[memory]` settings cannot work, naming the field.
fn check_memory(settings: &MemorySettings) -> Result<(), String> {
    {
        let this = settings;
        match (this.scope, &this.workspace) {
            (MemoryScope::Workspace, Some(w)) => {
                caxton_memory::Scope::workspace(w.as_str())
                    .map_err(|e| format!("memory.workspace = {w:?}: {e}"))?;
            }
            (MemoryScope::Agent | MemoryScope::Global, Some(_)) => {
                return Err(
                    "memory.workspace is only used with memory.scope = \"workspace\"".into(),
                );
            }
            _ => {}
        }
        if !(1..=MAX_MEMORY_SEARCH_LIMIT).contains(&this.search_limit) {
            return Err(format!(
                "memory.search_limit = {}: must be between 1 and {MAX_MEMORY_SEARCH_LIMIT}",
                this.search_limit
            ));
        }
        if !(-1.0..=1.0).contains(&this.min_similarity) {
            return Err(format!(
                "memory.min_similarity = {}: must be between -1 and 1",
                this.min_similarity
            ));
        }
        Ok(())
    }
}

/// Why `[delegation]` settings cannot work, naming the field.
fn check_delegation(d: &DelegationSettings) -> Result<(), String> {
    for agent in &d.agents {
        AgentName::parse(agent)
            .map_err(|e| format!("delegation.agents: {agent:?} is not an agent name: {e}"))?;
    }
    for (i, remote) in d.remote.iter().enumerate() {
        let field = format!("delegation.remote[{i}]");
        AgentName::parse(&remote.name)
            .map_err(|e| format!("{field}.name: {:?} is not an agent name: {e}", remote.name))?;
        if d.agents.contains(&remote.name) || d.remote[..i].iter().any(|r| r.name == remote.name) {
            return Err(format!(
                "{field}.name: {:?} is already the name of an agent this one may ask",
                remote.name
            ));
        }
        let url = url::Url::parse(&remote.card)
            .map_err(|e| format!("{field}.card = {:?}: not a URL ({e})", remote.card))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "{field}.card = {:?}: must be an http:// or https:// URL with a host",
                remote.card
            ));
        }
    }
    if let Some(depth) = d.max_depth
        && !(1..=MAX_DELEGATION_DEPTH).contains(&depth)
    {
        return Err(format!(
            "delegation.max_depth = {depth}: must be between 1 and {MAX_DELEGATION_DEPTH}"
        ));
    }
    if d.token_budget == Some(0) || d.tool_call_budget == Some(0) {
        return Err(
            "delegation budgets must be at least 1 (leave one out to use the config's)".into(),
        );
    }
    Ok(())
}

/// A validated agent definition.
#[derive(Debug, Clone)]
pub struct AgentDefinition {
    /// Normalised name.
    pub name: AgentName,
    /// The name as written in the file.
    pub declared_name: String,
    /// Version string.
    pub version: String,
    /// One-line description.
    pub description: Option<String>,
    /// What the agent can do.
    pub capabilities: Vec<String>,
    /// MCP tools it may call.
    pub tools: Vec<String>,
    /// Memory use.
    pub memory: MemorySettings,
    /// Whom its model may delegate to, and the limits of the trees it roots.
    pub delegation: DelegationSettings,
    /// Topics whose notifications start a request of it.
    pub subscriptions: Vec<String>,
    /// Free-form parameters, also visible to templates.
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// System prompt template.
    pub system_prompt: String,
    /// User prompt template.
    pub user_prompt_template: String,
    /// Markdown documentation.
    pub documentation: Option<String>,
    /// Model choice.
    pub llm: LlmSettings,
    /// Per-request deadline, if the agent sets one.
    pub timeout: Option<Duration>,
    /// Address-space limit in bytes, if the agent sets one.
    pub memory_limit: Option<u64>,
    /// Tool calls one request may make before the model must answer.
    pub max_tool_calls: u32,
    /// Accepted but suspicious layouts.
    pub warnings: Vec<String>,
    /// The TOML source, kept so `show` can print what was deployed.
    pub source: String,
}

impl AgentDefinition {
    /// The agent as lists and deploy answers show it.
    pub fn summary(&self) -> AgentSummary {
        AgentSummary {
            name: self.name.to_string(),
            declared_name: self.declared_name.clone(),
            version: self.version.clone(),
            description: self.description.clone(),
            capabilities: self.capabilities.clone(),
            tools: self.tools.clone(),
            llm: self.llm.clone(),
        }
    }

    /// The agent in full, with its source.
    pub fn detail(&self) -> AgentDetail {
        AgentDetail {
            name: self.name.to_string(),
            declared_name: self.declared_name.clone(),
            version: self.version.clone(),
            description: self.description.clone(),
            capabilities: self.capabilities.clone(),
            tools: self.tools.clone(),
            memory: self.memory.clone(),
            delegation: self.delegation.clone(),
            subscriptions: self.subscriptions.clone(),
            parameters: self.parameters.clone(),
            system_prompt: self.system_prompt.clone(),
            user_prompt_template: self.user_prompt_template.clone(),
            documentation: self.documentation.clone(),
            llm: self.llm.clone(),
            timeout: self.timeout.map(|d| d.as_secs_f64()),
            memory_limit: self.memory_limit,
            max_tool_calls: self.max_tool_calls,
            warnings: self.warnings.clone(),
            source: self.source.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: Spanned<String>,
    version: Spanned<String>,
    description: Option<String>,
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    tools: Vec<String>,
    system_prompt: Option<Spanned<String>>,
    user_prompt_template: Option<Spanned<String>>,
    documentation: Option<String>,
    memory: Option<Spanned<MemorySettings>>,
    delegation: Option<Spanned<DelegationSettings>>,
    #[serde(default)]
    subscriptions: Vec<String>,
    parameters: Option<BTreeMap<String, Spanned<toml::Value>>>,
    llm: Option<Spanned<LlmSettings>>,
    limits: Option<RawLimits>,
}

/// Tool calls per request when `[limits] max_tool_calls` is not set.
pub const DEFAULT_MAX_TOOL_CALLS: u32 = 10;
/// The most an agent may ask for: each call is a model round trip.
const MAX_TOOL_CALLS: u32 = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    timeout: Option<Spanned<DurationValue>>,
    memory: Option<Spanned<SizeValue>>,
    max_tool_calls: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Seconds(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// Keys that belong at the top level but that the seed's example places after `[parameters]`.
const LIFTABLE: [&str; 3] = ["system_prompt", "user_prompt_template", "documentation"];

/// Parse and validate one agent file. `file` names it in errors.
pub fn parse_agent(file: &Path, source: &str) -> Result<AgentDefinition, AgentFileError> {
    let file_name = file.display().to_string();
    if source.len() > MAX_AGENT_FILE_BYTES {
        return Err(AgentFileError {
            file: file_name,
            line: 1,
            reason: too_large(source.len() as u64),
        });
    }
    let err_at = |offset: usize, reason: String| AgentFileError {
        file: file_name.clone(),
        line: line_of(source, offset),
        reason,
    };
    let raw: RawAgent = toml::from_str(source).map_err(|e| {
        err_at(
            e.span().map(|s| s.start).unwrap_or(0),
            e.message().trim().to_owned(),
        )
    })?;

    let name = AgentName::parse(raw.name.get_ref())
        .map_err(|e| err_at(raw.name.span().start, e.to_string()))?;
    let mut warnings = Vec::new();
    if name.as_str() != raw.name.get_ref() {
        warnings.push(format!(
            "name {:?} is known to Caxton as {:?}",
            raw.name.get_ref(),
            name.as_str()
        ));
    }
    if raw.version.get_ref().trim().is_empty() {
        return Err(err_at(
            raw.version.span().start,
            "version must not be empty".into(),
        ));
    }

    // TOML puts every key after a `[table]` header into that table; the seed's DataAnalyzer has
    // its prompts after `[parameters]`. Accept them from there, loudly.
    let mut parameters = raw.parameters.unwrap_or_default();
    let mut system_prompt = raw.system_prompt;
    let mut user_prompt_template = raw.user_prompt_template;
    let mut documentation = raw.documentation;
    for key in LIFTABLE {
        let Some(value) = parameters.remove(key) else {
            continue;
        };
        let offset = value.span().start;
        let toml::Value::String(text) = value.into_inner() else {
            return Err(err_at(offset, format!("parameters.{key} must be a string")));
        };
        let already = match key {
            "system_prompt" => system_prompt.is_some(),
            "user_prompt_template" => user_prompt_template.is_some(),
            _ => documentation.is_some(),
        };
        if already {
            return Err(err_at(
                offset,
                format!(
                    "{key} is given twice: at the top level and under [parameters]; keep the top-level one"
                ),
            ));
        }
        warnings.push(format!(
            "{file_name}:{}: {key} follows the [parameters] header, so TOML reads it as parameters.{key}; \
             Caxton uses it as the agent's {key}, but move it above the first [table] header to make that explicit",
            line_of(source, offset)
        ));
        let spanned = Spanned::new(offset..offset, text);
        match key {
            "system_prompt" => system_prompt = Some(spanned),
            "user_prompt_template" => user_prompt_template = Some(spanned),
            _ => documentation = Some(spanned.into_inner()),
        }
    }

    let Some(user_prompt_template) = user_prompt_template else {
        return Err(AgentFileError {
            file: file_name,
            line: 1,
            reason: "missing field `user_prompt_template`".into(),
        });
    };
    let system_prompt = system_prompt.unwrap_or_else(|| Spanned::new(0..0, String::new()));

    let mut known: Vec<&str> = TEMPLATE_VARIABLES.to_vec();
    known.extend(parameters.keys().map(String::as_str));
    for (field, template) in [
        ("system_prompt", &system_prompt),
        ("user_prompt_template", &user_prompt_template),
    ] {
        check_template(field, template.get_ref(), &known)
            .map_err(|reason| err_at(template.span().start, reason))?;
    }

    let parameters_json = parameters
        .into_iter()
        .map(|(k, v)| Ok((k, toml_to_json(v.into_inner()))))
        .collect::<Result<serde_json::Map<_, _>, AgentFileError>>()?;

    let llm = match raw.llm {
        Some(llm) => {
            let offset = llm.span().start;
            let llm = llm.into_inner();
            if let Some(t) = llm.temperature
                && !(0.0..=2.0).contains(&t)
            {
                return Err(err_at(
                    offset,
                    format!("llm.temperature = {t}: must be between 0 and 2"),
                ));
            }
            if let Some(p) = llm.top_p
                && !(0.0..=1.0).contains(&p)
            {
                return Err(err_at(
                    offset,
                    format!("llm.top_p = {p}: must be between 0 and 1"),
                ));
            }
            if llm.max_tokens == Some(0) {
                return Err(err_at(offset, "llm.max_tokens must be at least 1".into()));
            }
            llm
        }
        None => LlmSettings::default(),
    };

    let memory = match raw.memory {
        Some(memory) => {
            let offset = memory.span().start;
            let memory = memory.into_inner();
            check_memory(&memory).map_err(|reason| err_at(offset, reason))?;
            memory
        }
        None => MemorySettings::default(),
    };

    let delegation = match raw.delegation {
        Some(d) => {
            let offset = d.span().start;
            let d = d.into_inner();
            check_delegation(&d).map_err(|reason| err_at(offset, reason))?;
            d
        }
        None => DelegationSettings::default(),
    };

    let (timeout, memory_limit, max_tool_calls) = match raw.limits {
        None => (None, None, DEFAULT_MAX_TOOL_CALLS),
        Some(limits) => {
            let timeout = match limits.timeout {
                None => None,
                Some(t) => {
                    let offset = t.span().start;
                    // Bounded here so that no deadline computed from it can overflow.
                    let d = match t.into_inner() {
                        DurationValue::Seconds(s) => check_duration(
                            "limits.timeout",
                            &s.to_string(),
                            Duration::from_secs(s),
                            TIMEOUT_BOUNDS,
                        ),
                        DurationValue::Text(text) => {
                            parse_bounded_duration("limits.timeout", &text, TIMEOUT_BOUNDS)
                        }
                    }
                    .map_err(|reason| err_at(offset, reason))?;
                    Some(d)
                }
            };
            let memory = match limits.memory {
                None => None,
                Some(m) => {
                    let offset = m.span().start;
                    let bytes = match m.into_inner() {
                        SizeValue::Bytes(b) => {
                            check_size("limits.memory", &b.to_string(), b, WORKER_MEMORY_BOUNDS)
                        }
                        SizeValue::Text(text) => {
                            parse_bounded_size("limits.memory", &text, WORKER_MEMORY_BOUNDS)
                        }
                    }
                    .map_err(|reason| err_at(offset, reason))?;
                    Some(bytes)
                }
            };
            let max_tool_calls = match limits.max_tool_calls {
                None => DEFAULT_MAX_TOOL_CALLS,
                Some(n) if *n.get_ref() > MAX_TOOL_CALLS => {
                    return Err(err_at(
                        n.span().start,
                        format!("limits.max_tool_calls must be at most {MAX_TOOL_CALLS}"),
                    ));
                }
                Some(n) => n.into_inner(),
            };
            (timeout, memory, max_tool_calls)
        }
    };

    Ok(AgentDefinition {
        name,
        declared_name: raw.name.into_inner(),
        version: raw.version.into_inner(),
        description: raw.description,
        capabilities: raw.capabilities,
        tools: raw.tools,
        memory,
        delegation,
        subscriptions: raw.subscriptions,
        parameters: parameters_json,
        system_prompt: system_prompt.into_inner(),
        user_prompt_template: user_prompt_template.into_inner(),
        documentation,
        llm,
        timeout,
        memory_limit,
        max_tool_calls,
        warnings,
        source: source.to_owned(),
    })
}

/// Syntax-check a template and refuse variables that no request can supply. minijinja's
/// global functions (`range`, `dict`, `namespace`, ...) are not variables the request must
/// supply: the worker renders with the same default environment, where they are defined.
fn check_template(field: &str, source: &str, known: &[&str]) -> Result<(), String> {
    let env = minijinja::Environment::new();
    let template = env
        .template_from_str(source)
        .map_err(|e| format!("{field}: template error: {e}"))?;
    let globals: Vec<&str> = env.globals().map(|(name, _)| name).collect();
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !known.contains(&v.as_str()) && !globals.contains(&v.as_str()))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    Err(format!(
        "{field} uses unknown variable{} {}; templates may use {} and the keys of [parameters]",
        if unknown.len() > 1 { "s" } else { "" },
        unknown.join(", "),
        TEMPLATE_VARIABLES.join(", "),
    ))
}

fn toml_to_json(value: toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => s.into(),
        toml::Value::Integer(i) => i.into(),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
        }
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.into_iter().map(toml_to_json).collect(),
        toml::Value::Table(t) => t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use caxton_api_contract::agents::DEFAULT_MEMORY_SEARCH_LIMIT;

    use super::*;

    const SEED_DATA_ANALYZER: &str = include_str!("../../../examples/agents/data-analyzer.toml");

    fn parse(src: &str) -> Result<AgentDefinition, AgentFileError> {
        parse_agent(Path::new("agents/test.toml"), src)
    }

    #[test]
    fn the_seed_example_deploys_as_printed_with_warnings() {
        let agent = parse(SEED_DATA_ANALYZER).unwrap();
        assert_eq!(agent.name.as_str(), "data-analyzer");
        assert!(agent.system_prompt.contains("data analysis expert"));
        assert!(agent.user_prompt_template.contains("{{request}}"));
        assert!(
            agent
                .documentation
                .as_deref()
                .unwrap_or("")
                .contains("# DataAnalyzer Agent")
        );
        assert!(!agent.parameters.contains_key("system_prompt"));
        assert_eq!(agent.parameters["max_file_size"], "10MB");
        let pitfall: Vec<_> = agent
            .warnings
            .iter()
            .filter(|w| w.contains("follows the [parameters] header"))
            .collect();
        assert_eq!(pitfall.len(), 3, "{:?}", agent.warnings);
    }

    #[test]
    fn unknown_fields_name_file_line_and_field() {
        let err = parse(
            "name = \"hi\"\nversion = \"1\"\nuser_prompt_template = \"x\"\nmodle = \"gpt\"\n",
        )
        .unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(err.reason.contains("modle"), "{err}");
        assert!(err.to_string().starts_with("agents/test.toml:4:"), "{err}");
    }

    #[test]
    fn wrong_types_are_refused() {
        let err = parse(
            "name = \"hi\"\nversion = \"1\"\ntools = \"csv\"\nuser_prompt_template = \"x\"\n",
        )
        .unwrap_err();
        assert_eq!(err.line, 3, "{err}");
    }

    #[test]
    fn llm_tool_choice_takes_the_openai_and_anthropic_words_and_names_a_bad_one() {
        let agent = |choice: &str| {
            parse(&format!(
                "name = \"hi\"\nversion = \"1\"\nuser_prompt_template = \"x\"\n\n[llm]\ntool_choice = \"{choice}\"\n"
            ))
        };
        use crate::provider::ToolChoice;
        for (word, choice) in [
            ("auto", ToolChoice::Auto),
            ("none", ToolChoice::None),
            ("required", ToolChoice::Required),
            ("any", ToolChoice::Required),
        ] {
            assert_eq!(agent(word).unwrap().llm.tool_choice, Some(choice), "{word}");
        }
        let err = agent("sometimes").unwrap_err();
        assert!(err.to_string().starts_with("agents/test.toml:6:"), "{err}");
        assert!(err.reason.contains("sometimes"), "{err}");
        assert!(err.reason.contains("`required`"), "{err}");
    }

    #[test]
    fn a_remote_agent_needs_a_name_of_its_own_and_a_card_url() {
        let agent = |remote: &str| {
            parse(&format!(
                "name = \"hi\"\nversion = \"1\"\nuser_prompt_template = \"x\"\n\n[delegation]\nagents = [\"helper\"]\n{remote}"
            ))
        };
        let ok = agent(
            "[[delegation.remote]]\nname = \"far\"\ncard = \"http://10.0.0.7:8080/a2a/far/.well-known/agent-card.json\"\ntoken_env = \"FAR_TOKEN\"\n",
        )
        .unwrap();
        assert_eq!(ok.delegation.remote[0].name, "far");
        assert!(ok.delegation.enabled());
        for (remote, words) in [
            (
                "[[delegation.remote]]\nname = \"helper\"\ncard = \"http://x/c\"\n",
                "delegation.remote[0].name: \"helper\" is already the name",
            ),
            (
                "[[delegation.remote]]\nname = \"far\"\ncard = \"not a url\"\n",
                "delegation.remote[0].card = \"not a url\": not a URL",
            ),
            (
                "[[delegation.remote]]\nname = \"far\"\ncard = \"file:///etc/passwd\"\n",
                "must be an http:// or https:// URL",
            ),
            (
                "[[delegation.remote]]\nname = \"Far One\"\ncard = \"http://x/c\"\n",
                "delegation.remote[0].name",
            ),
            (
                "[[delegation.remote]]\nname = \"far\"\ncard = \"http://x/c\"\n[[delegation.remote]]\nname = \"far\"\ncard = \"http://y/c\"\n",
                "delegation.remote[1].name: \"far\" is already",
            ),
        ] {
            let err = agent(remote).unwrap_err();
            assert!(err.reason.contains(words), "{remote}: {err}");
        }
    }

    #[test]
    fn bad_names_are_refused_on_their_line() {
        let err = parse("version = \"1\"\nname = \"bad_name\"\nuser_prompt_template = \"x\"\n")
            .unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.reason.contains("bad_name"), "{err}");
    }

    #[test]
    fn unknown_template_variables_are_named() {
        let src = "name = \"hi\"\nversion = \"1\"\nuser_prompt_template = \"\"\"\nHello {{ customer }}\n\"\"\"\n";
        let err = parse(src).unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert!(err.reason.contains("customer"), "{err}");
    }

    #[test]
    fn parameters_are_template_variables() {
        let src = "name = \"hi\"\nversion = \"1\"\nuser_prompt_template = \"{{ tone }} {{ request }}\"\n[parameters]\ntone = \"dry\"\n";
        assert!(parse(src).is_ok());
    }

    #[test]
    fn template_syntax_errors_are_refused() {
        let err = parse("name = \"hi\"\nversion = \"1\"\nuser_prompt_template = \"{{ request \"\n")
            .unwrap_err();
        assert!(err.reason.contains("template error"), "{err}");
    }

    #[test]
    fn limits_accept_text_and_numbers() {
        let src = "name = \"hi\"\nversion = \"1\"\nuser_prompt_template = \"x\"\n[limits]\ntimeout = \"1500ms\"\nmemory = \"256MB\"\n";
        let agent = parse(src).unwrap();
        assert_eq!(agent.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(agent.memory_limit, Some(256_000_000));
        let err = parse("name = \"hi\"\nversion = \"1\"\nuser_prompt_template = \"x\"\n[limits]\ntimeout = \"soon\"\n").unwrap_err();
        assert_eq!(err.line, 5, "{err}");
    }

    #[test]
    fn limits_are_bounded_on_their_line() {
        let head = "name = \"hi\"\nversion = \"1\"\nuser_prompt_template = \"x\"\n[limits]\n";
        for (body, expected) in [
            (
                "timeout = 18446744073709551615",
                "limits.timeout = 18446744073709551615: must be between 100ms and 24h",
            ),
            ("timeout = 0", "limits.timeout = 0: must be between"),
            (
                "timeout = \"0s\"",
                "limits.timeout = \"0s\": must be between",
            ),
            ("timeout = \"25h\"", "limits.timeout = \"25h\""),
            (
                "memory = \"1KiB\"",
                "limits.memory = \"1KiB\": must be between 16MiB",
            ),
            (
                "memory = 18446744073709551615",
                "limits.memory = 18446744073709551615",
            ),
        ] {
            let err = parse(&format!("{head}{body}\n")).unwrap_err();
            assert_eq!(err.line, 5, "{body}: {err}");
            assert!(err.reason.contains(expected), "{body}: {err}");
        }
        let agent = parse(&format!("{head}timeout = 86400\nmemory = \"16MiB\"\n")).unwrap();
        assert_eq!(agent.timeout, Some(Duration::from_secs(86400)));
    }

    #[test]
    fn a_file_over_the_cap_is_refused_naming_its_size_and_the_cap() {
        let big = format!(
            "name = \"hi\"\nversion = \"1\"\nuser_prompt_template = \"x\"\n# {}\n",
            "x".repeat(MAX_AGENT_FILE_BYTES)
        );
        let err = parse(&big).unwrap_err().to_string();
        assert!(err.starts_with("agents/test.toml:1:"), "{err}");
        assert!(err.contains(&format!("{} bytes", big.len())), "{err}");
        assert!(err.contains("256KiB"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        std::fs::write(&path, &big).unwrap();
        let err = read_agent_file(&path).unwrap_err();
        assert!(
            err.reason.contains(&format!("{} bytes", big.len())),
            "{err}"
        );
    }

    #[test]
    fn invalid_utf8_names_the_line_and_byte_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.toml");
        std::fs::write(
            &path,
            b"name = \"hi\"\nversion = \"1\"\nuser_prompt_template = \"caf\xe9\"\n",
        )
        .unwrap();
        let err = read_agent_file(&path).unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert!(err.to_string().contains("latin1.toml:3:"), "{err}");
        assert!(
            err.reason.contains("0xe9") && err.reason.contains("byte column 28"),
            "{err}"
        );
    }

    #[test]
    fn minijinja_builtins_pass_the_template_check_and_unknown_variables_do_not() {
        let head = "name = \"hi\"\nversion = \"1\"\n";
        let template = "{% set ns = namespace(n=0) %}{% for i in range(3) %}{{ loop.index }}{% set ns.n = ns.n + i %}{% endfor %}{{ dict(a=1).a }} {{ ns.n }} {{ request | upper }}";
        let agent = parse(&format!("{head}user_prompt_template = '{template}'\n"));
        assert!(agent.is_ok(), "{:?}", agent.err());
        let err = parse(&format!(
            "{head}user_prompt_template = '{{% for i in range(customer) %}}{{{{ i }}}}{{% endfor %}}'\n"
        ))
        .unwrap_err();
        assert!(err.reason.contains("customer"), "{err}");
        assert!(!err.reason.contains("range"), "{err}");
    }

    #[test]
    fn memory_settings_are_checked_where_they_are_written() {
        let head = "name = \"hi\"\nversion = \"1\"\nuser_prompt_template = \"x\"\n[memory]\n";
        let agent = parse(&format!(
            "{head}enabled = true\nscope = \"agent-only\"\nauto_store = true\n"
        ))
        .unwrap();
        assert_eq!(agent.memory.scope, MemoryScope::Agent);
        assert!(agent.memory.auto_store);
        assert_eq!(agent.memory.search_limit, DEFAULT_MEMORY_SEARCH_LIMIT);

        for (body, names) in [
            ("scope = \"team\"", "team"),
            ("search_limit = 0", "search_limit"),
            ("min_similarity = 1.5", "min_similarity"),
            (
                "scope = \"global\"\nworkspace = \"ops\"",
                "memory.workspace",
            ),
            (
                "scope = \"workspace\"\nworkspace = \"\"",
                "memory.workspace",
            ),
        ] {
            let err = parse(&format!("{head}enabled = true\n{body}\n")).unwrap_err();
            assert!(err.line >= 4, "{body}: {err}");
            assert!(err.reason.contains(names), "{body}: {err}");
        }
    }
}
