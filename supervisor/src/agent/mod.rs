//! Configuration agents: parsing and validating their TOML files, and the live registry of them.

mod definition;
mod name;
mod registry;

pub use definition::{
    AgentDefinition, AgentFileError, DEFAULT_WORKSPACE, LlmSettings, MAX_AGENT_DEPLOY_BODY,
    MAX_AGENT_FILE_BYTES, MemoryScope, MemorySettings, agent_source_from_bytes, parse_agent,
    read_agent_file,
};
pub use name::{AgentName, InvalidAgentName};
pub use registry::{AgentRegistry, DeployOutcome, RegistryError, ReloadReport};
