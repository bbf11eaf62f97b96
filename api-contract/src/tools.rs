//! `/api/v1/tools`: the deployed tool servers, and deploying and removing them.

use serde::{Deserialize, Serialize};

/// Where a server came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolSource {
    /// Shipped with Caxton.
    BuiltIn,
    /// Deployed by an operator.
    Deployed,
}

impl ToolSource {
    /// `built-in` or `deployed`, as people read it.
    pub fn label(self) -> &'static str {
        match self {
            Self::BuiltIn => "built-in",
            Self::Deployed => "deployed",
        }
    }
}

/// A server in lists and deploy answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolServerInfo {
    /// Server name.
    pub name: String,
    /// Version.
    pub version: String,
    /// What it is for.
    pub description: String,
    /// Where it came from.
    pub source: ToolSource,
    /// Its tools' names.
    pub tools: Vec<String>,
}

/// A server in full (`GET /api/v1/tools/{name}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolServerDetail {
    /// Summary.
    #[serde(flatten)]
    pub info: ToolServerInfo,
    /// The package's whole manifest, as `tool.toml` reads in JSON (its fields are described in
    /// `docs/tool-abi.md`; the tool host's manifest type reads it).
    pub manifest: serde_json::Value,
}

/// `GET /api/v1/tools`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolServerList {
    /// Deployed servers, by name.
    pub servers: Vec<ToolServerInfo>,
}

/// Body of `POST /api/v1/tools`: the package's manifest text and module bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolPackage {
    /// `tool.toml` as text.
    pub manifest: String,
    /// The module, base64-encoded.
    pub module_base64: String,
    /// The package directory, for messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// Answer of a deploy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolDeployAnswer {
    /// The server now deployed.
    pub server: ToolServerInfo,
    /// Whether it replaced a deployed version.
    pub replaced: bool,
}

/// Answer of a removal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolRemoveAnswer {
    /// The server removed.
    pub removed: String,
}
