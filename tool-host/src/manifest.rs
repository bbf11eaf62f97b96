//! `tool.toml`: what a tool server provides and what it may use.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::CallLimits;
use crate::http_access::HostAllowlist;

/// The manifest's file name inside a tool package directory.
pub const MANIFEST_FILE: &str = "tool.toml";

/// Placeholder in a directory grant for the calling agent's workspace directory.
pub const WORKSPACE_PLACEHOLDER: &str = "{workspace}";

/// Longest wall-clock limit a manifest may ask for.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a package or its manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// TOML syntax or an unknown or mistyped field.
    #[error("{path}:{line}: {reason}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The parser's message.
        reason: String,
    },
    /// A value that parses but is not acceptable.
    #[error("{path}: {field}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field, e.g. `tools[2].input_schema`.
        field: String,
        /// Why.
        reason: String,
    },
}

/// A parsed, validated `tool.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToolManifest {
    /// Server name, unique among deployed servers.
    pub name: String,
    /// The server's version.
    pub version: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// The module file, relative to the package directory.
    pub module: String,
    /// The MCP tools it provides.
    pub tools: Vec<ToolDef>,
    /// What it may reach.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Per-call bounds.
    #[serde(default)]
    pub limits: ManifestLimits,
}

/// One MCP tool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToolDef {
    /// MCP tool name, unique among all deployed tools.
    pub name: String,
    /// What it does, for the model and for people.
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the arguments object.
    pub input_schema: serde_json::Value,
}

/// What a server may use besides its memory.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Directories preopened for WASI and for `sqlite_query`.
    #[serde(default)]
    pub directories: Vec<DirectoryCapability>,
    /// Hosts `http_request` may reach.
    #[serde(default)]
    pub http_hosts: Vec<String>,
}

/// A directory grant as written in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DirectoryCapability {
    /// Host directory; `{workspace}` is the calling agent's workspace.
    pub host: String,
    /// Where the module sees it.
    #[serde(default = "dot")]
    pub guest: String,
    /// `read` or `read-write`.
    #[serde(default)]
    pub access: Access,
}

fn dot() -> String {
    ".".into()
}

/// File access a directory grant gives.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Read only.
    #[default]
    Read,
    /// Read, create, change, delete.
    ReadWrite,
}

/// Per-call limits as written in the manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ManifestLimits {
    /// Linear memory, e.g. `"32MB"`.
    #[serde(default)]
    pub memory: Option<String>,
    /// Fuel (about one unit per WebAssembly instruction).
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Wall-clock time, e.g. `"5s"`.
    #[serde(default)]
    pub timeout: Option<String>,
}

impl ToolManifest {
    /// Read `DIR/tool.toml` and check everything that can be checked without compiling.
    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|error| ManifestError::Read {
            path: path.clone(),
            error,
        })?;
        Self::parse(&path, &text)
    }

    /// Parse and validate manifest text; `path` is only for messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManifestError> {
        let manifest: ToolManifest = toml::from_str(text).map_err(|e| ManifestError::Syntax {
            path: path.to_owned(),
            line: e
                .span()
                .map(|s| {
                    text.as_bytes()[..s.start.min(text.len())]
                        .iter()
                        .filter(|&&b| b == b'\n')
                        .count()
                        + 1
                })
                .unwrap_or(1),
            reason: e.message().to_owned(),
        })?;
        manifest.validate(path)?;
        Ok(manifest)
    }

    fn validate(&self, path: &Path) -> Result<(), ManifestError> {
        let invalid = |field: &str, reason: String| ManifestError::Invalid {
            path: path.to_owned(),
            field: field.to_owned(),
            reason,
        };
        if !valid_server_name(&self.name) {
            return Err(invalid(
                "name",
                format!(
                    "{:?}: use 1-64 lowercase letters, digits, '-' or '_', starting with a letter",
                    self.name
                ),
            ));
        }
        if self.version.trim().is_empty() {
            return Err(invalid("version", "must not be empty".into()));
        }
        let module = Path::new(&self.module);
        if self.module.is_empty()
            || module.is_absolute()
            || module
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(invalid(
                "module",
                format!(
                    "{:?}: a file name inside the package directory",
                    self.module
                ),
            ));
        }
        if self.tools.is_empty() {
            return Err(invalid(
                "tools",
                "a tool server must provide at least one tool".into(),
            ));
        }
        let mut seen = HashSet::new();
        for (i, tool) in self.tools.iter().enumerate() {
            let field = |f: &str| format!("tools[{i}].{f}");
            if !valid_tool_name(&tool.name) {
                return Err(invalid(
                    &field("name"),
                    format!("{:?}: use 1-64 letters, digits, '_' or '-'", tool.name),
                ));
            }
            if !seen.insert(tool.name.as_str()) {
                return Err(invalid(
                    &field("name"),
                    format!("{:?} appears twice", tool.name),
                ));
            }
            if tool.input_schema.get("type").and_then(|t| t.as_str()) != Some("object") {
                return Err(invalid(
                    &field("input_schema"),
                    "must be a JSON Schema with type = \"object\" (MCP tool arguments are an object)"
                        .into(),
                ));
            }
            jsonschema::validator_for(&tool.input_schema)
                .map_err(|e| invalid(&field("input_schema"), e.to_string()))?;
        }
        for (i, dir) in self.capabilities.directories.iter().enumerate() {
            let field = |f: &str| format!("capabilities.directories[{i}].{f}");
            if dir.host.trim().is_empty() {
                return Err(invalid(&field("host"), "must not be empty".into()));
            }
            if dir.host != WORKSPACE_PLACEHOLDER && !Path::new(&dir.host).is_absolute() {
                return Err(invalid(
                    &field("host"),
                    format!(
                        "{:?}: an absolute path or {WORKSPACE_PLACEHOLDER}",
                        dir.host
                    ),
                ));
            }
            if dir.guest.is_empty() || dir.guest.split('/').any(|c| c == "..") {
                return Err(invalid(
                    &field("guest"),
                    format!("{:?} is not a usable path", dir.guest),
                ));
            }
        }
        HostAllowlist::parse(&self.capabilities.http_hosts)
            .map_err(|e| invalid("capabilities.http_hosts", e.to_string()))?;
        self.call_limits(path)?;
        Ok(())
    }

    /// The limits each call of this server runs under.
    pub fn call_limits(&self, path: &Path) -> Result<CallLimits, ManifestError> {
        let invalid = |field: &str, reason: String| ManifestError::Invalid {
            path: path.to_owned(),
            field: field.to_owned(),
            reason,
        };
        let mut limits = CallLimits::default();
        if let Some(memory) = &self.limits.memory {
            let bytes = memory
                .parse::<bytesize::ByteSize>()
                .map_err(|e| invalid("limits.memory", format!("{memory:?}: {e}")))?
                .as_u64();
            if bytes < 64 << 10 {
                return Err(invalid(
                    "limits.memory",
                    format!("{memory:?} is less than one 64 KiB page"),
                ));
            }
            limits.memory_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
        if let Some(fuel) = self.limits.fuel {
            if fuel == 0 {
                return Err(invalid("limits.fuel", "must be positive".into()));
            }
            limits.fuel = fuel;
        }
        if let Some(timeout) = &self.limits.timeout {
            let wall = humantime::parse_duration(timeout)
                .map_err(|e| invalid("limits.timeout", format!("{timeout:?}: {e}")))?;
            if wall.is_zero() || wall > MAX_TIMEOUT {
                return Err(invalid(
                    "limits.timeout",
                    format!("{timeout:?}: between 1ms and {}s", MAX_TIMEOUT.as_secs()),
                ));
            }
            limits.wall = wall;
        }
        Ok(limits)
    }

    /// Whether any directory grant needs the caller's workspace.
    pub fn uses_workspace(&self) -> bool {
        self.capabilities
            .directories
            .iter()
            .any(|d| d.host == WORKSPACE_PLACEHOLDER)
    }
}

fn valid_server_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// The characters every provider accepts in a function name.
fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "csv_parser"
version = "1.0.0"
description = "CSV"
module = "csv_parser.wasm"

[[tools]]
name = "csv_stats"
description = "Column statistics"
input_schema = { type = "object", properties = { csv = { type = "string" } }, required = ["csv"] }

[capabilities]
directories = [{ host = "{workspace}", guest = ".", access = "read-write" }]
http_hosts = ["api.example.com"]

[limits]
memory = "32MB"
timeout = "2s"
"#;

    fn parse(text: &str) -> Result<ToolManifest, ManifestError> {
        ToolManifest::parse(Path::new("pkg/tool.toml"), text)
    }

    #[test]
    fn a_good_manifest_parses_with_its_limits() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.tools[0].name, "csv_stats");
        assert!(m.uses_workspace());
        assert_eq!(m.capabilities.directories[0].access, Access::ReadWrite);
        let l = m.call_limits(Path::new("x")).unwrap();
        assert_eq!(l.memory_bytes, 32_000_000);
        assert_eq!(l.wall, Duration::from_secs(2));
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let e = parse(&GOOD.replace("description = \"CSV\"", "descripton = \"CSV\"")).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("pkg/tool.toml:4:"), "{text}");
        assert!(text.contains("descripton"), "{text}");

        let e = parse(&GOOD.replace(
            "type = \"object\", properties",
            "type = \"array\", properties",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("tools[0].input_schema"), "{e}");

        let e = parse(&GOOD.replace("type = \"string\"", "type = \"strng\"")).unwrap_err();
        assert!(e.to_string().contains("tools[0].input_schema"), "{e}");

        let e = parse(&GOOD.replace("csv_parser.wasm", "../x.wasm")).unwrap_err();
        assert!(e.to_string().contains("module"), "{e}");

        let e = parse(&GOOD.replace("api.example.com", "https://api.example.com/")).unwrap_err();
        assert!(e.to_string().contains("capabilities.http_hosts"), "{e}");

        let e = parse(&GOOD.replace("\"2s\"", "\"forever\"")).unwrap_err();
        assert!(e.to_string().contains("limits.timeout"), "{e}");

        let e = parse(&GOOD.replace("host = \"{workspace}\"", "host = \"relative\"")).unwrap_err();
        assert!(e.to_string().contains("directories[0].host"), "{e}");

        let e = parse(&GOOD.replace("name = \"csv_stats\"", "name = \"csv stats\"")).unwrap_err();
        assert!(e.to_string().contains("tools[0].name"), "{e}");
    }
}
