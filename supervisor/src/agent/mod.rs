//! Configuration agents: parsing and validating their TOML files, and the live registry of them.

mod definition;
mod name;
mod registry;

pub use definition::{
    AgentDefinition, AgentFileError, DEFAULT_WORKSPACE, LlmSettings, MemoryScope, MemorySettings,
    parse_agent,
};
pub use name::{AgentName, InvalidAgentName};
pub use registry::{AgentRegistry, DeployOutcome, RegistryError, ReloadReport};
