//! Agent cards: what an A2A client reads before it sends anything. Each agent has one at
//! `/a2a/{agent}/.well-known/agent-card.json`; the server's own, at
//! `/.well-known/agent-card.json`, lists the agents as its skills. Both are also served at the
//! older `agent.json` name that clients before 0.3.0 ask for.

use std::collections::HashMap;

use a2a_types::{
    AgentCapabilities, AgentCard, AgentExtension, AgentInterface, AgentProvider, AgentSkill,
    HTTPAuthSecurityScheme, SecurityScheme, TransportProtocol,
};

use super::{DELEGATION_EXTENSION, PROTOCOL_VERSION};
use crate::agent::AgentDefinition;

/// The name of the security scheme of a server whose API needs a token.
const BEARER: &str = "bearer";

/// The path of an agent's JSON-RPC endpoint.
pub fn agent_path(agent: &str) -> String {
    format!("/a2a/{agent}")
}

/// The card of `agent`, served from `base` (`http://host:port`); `secured` when the API asks
/// for a bearer token.
pub fn agent_card(agent: &AgentDefinition, base: &str, secured: bool) -> AgentCard {
    let description = agent
        .description
        .clone()
        .or_else(|| agent.documentation.as_deref().map(first_paragraph))
        .unwrap_or_else(|| format!("The Caxton agent {}", agent.name));
    // One skill per capability the agent declares; an agent with none is one skill, itself.
    let mut skills: Vec<AgentSkill> = agent
        .capabilities
        .iter()
        .map(|c| skill(c, c, &description, vec![c.clone()]))
        .collect();
    if skills.is_empty() {
        skills.push(skill(
            agent.name.as_str(),
            agent.name.as_str(),
            &description,
            vec![agent.name.to_string()],
        ));
    }
    card(
        agent.name.as_str(),
        &description,
        &agent.version,
        &format!("{base}{}", agent_path(agent.name.as_str())),
        base,
        skills,
        secured,
    )
}

/// The server's card: one skill per agent, each naming the agent's own card.
pub fn server_card(
    agents: &[std::sync::Arc<AgentDefinition>],
    base: &str,
    secured: bool,
) -> AgentCard {
    let skills = agents
        .iter()
        .map(|a| {
            let path = agent_path(a.name.as_str());
            let description = format!(
                "{} (its card: {base}{path}/.well-known/agent-card.json)",
                a.description.as_deref().unwrap_or("A Caxton agent")
            );
            let mut tags = vec!["agent".to_owned()];
            tags.extend(a.capabilities.iter().cloned());
            skill(a.name.as_str(), a.name.as_str(), &description, tags)
        })
        .collect();
    card(
        "caxton",
        "A Caxton server: each skill is one of its agents; send to the agent's own URL \
         (/a2a/{agent}), or here with the agent's name in message.metadata.skill",
        env!("CARGO_PKG_VERSION"),
        &format!("{base}/a2a"),
        base,
        skills,
        secured,
    )
}

fn skill(id: &str, name: &str, description: &str, tags: Vec<String>) -> AgentSkill {
    AgentSkill {
        id: id.to_owned(),
        name: name.to_owned(),
        description: description.to_owned(),
        tags,
        examples: Vec::new(),
        input_modes: Vec::new(),
        output_modes: Vec::new(),
        security: Vec::new(),
    }
}

fn card(
    name: &str,
    description: &str,
    version: &str,
    url: &str,
    base: &str,
    skills: Vec<AgentSkill>,
    secured: bool,
) -> AgentCard {
    let (schemes, security) = if secured {
        (
            Some(HashMap::from([(
                BEARER.to_owned(),
                SecurityScheme::Http(HTTPAuthSecurityScheme {
                    scheme_type: "http".into(),
                    scheme: "bearer".into(),
                    description: Some(
                        "The server's API token ([api] token_env or token_file)".into(),
                    ),
                    bearer_format: None,
                }),
            )])),
            vec![HashMap::from([(BEARER.to_owned(), Vec::new())])],
        )
    } else {
        (None, Vec::new())
    };
    AgentCard {
        name: name.to_owned(),
        description: description.to_owned(),
        version: version.to_owned(),
        protocol_version: PROTOCOL_VERSION.into(),
        url: url.to_owned(),
        preferred_transport: TransportProtocol::JsonRpc,
        capabilities: AgentCapabilities {
            streaming: Some(true),
            push_notifications: Some(false),
            state_transition_history: Some(false),
            extensions: vec![AgentExtension {
                uri: DELEGATION_EXTENSION.into(),
                description: Some(
                    "Delegation guards across servers: message.metadata[\"caxton.delegation\"] \
                     carries the ancestry, depth limit, deadline and budget of the asking tree"
                        .into(),
                ),
                required: Some(false),
                params: None,
            }],
        },
        default_input_modes: vec!["text/plain".into(), "application/json".into()],
        default_output_modes: vec!["text/plain".into()],
        skills,
        provider: Some(AgentProvider {
            organization: "Caxton".into(),
            url: base.to_owned(),
        }),
        additional_interfaces: vec![AgentInterface {
            transport: TransportProtocol::JsonRpc,
            url: url.to_owned(),
        }],
        documentation_url: None,
        icon_url: None,
        security,
        security_schemes: schemes,
        signatures: Vec::new(),
        supports_authenticated_extended_card: Some(false),
    }
}

/// The first paragraph of an agent's documentation, for its card.
fn first_paragraph(text: &str) -> String {
    text.trim()
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
