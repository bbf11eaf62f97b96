//! A deployed tool server: its manifest, its compiled module, its argument validators and its
//! HTTP client, ready for MCP `tools/call`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::arguments::ArgumentSchema;
use crate::http_access::{HostAllowlist, HttpAccess};
use crate::manifest::{Access, ManifestError, ToolManifest, WORKSPACE_PLACEHOLDER};
use crate::{CallLimits, DirGrant, Grants, LoadError, ToolFault, ToolHost, ToolModule};

/// Why a tool package could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The manifest is unreadable or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The module file could not be read.
    #[error("{path}: {error}")]
    ModuleFile {
        /// The module file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The module does not compile or does not implement the ABI.
    #[error(transparent)]
    Module(#[from] LoadError),
    /// The HTTP client for the allowlist could not be built.
    #[error("tool server {name}: {detail}")]
    Http {
        /// Server name.
        name: String,
        /// Why.
        detail: String,
    },
}

/// Why a `tools/call` produced no `CallToolResult`.
#[derive(Debug, thiserror::Error)]
pub enum ToolCallError {
    /// The server has no tool of that name.
    #[error("tool server {server} has no tool {tool:?}")]
    UnknownTool {
        /// Server name.
        server: String,
        /// The requested tool.
        tool: String,
    },
    /// The arguments do not match the tool's input schema; the module did not run.
    #[error("invalid arguments for {tool}: {}", reasons.join("; "))]
    InvalidArguments {
        /// The tool.
        tool: String,
        /// Each violation, with its JSON pointer.
        reasons: Vec<String>,
    },
    /// The server works in the caller's workspace, and the caller has none.
    #[error("tool server {server} needs a workspace directory and the call has none")]
    NoWorkspace {
        /// Server name.
        server: String,
    },
    /// The workspace directory could not be created.
    #[error("workspace {path}: {error}")]
    Workspace {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The module ran and failed.
    #[error(transparent)]
    Fault(#[from] ToolFault),
}

/// Who is calling: what `{workspace}` in a directory grant stands for.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The calling agent's workspace directory, created if missing.
    pub workspace: Option<PathBuf>,
}

impl CallContext {
    /// Who is calling, for sharing the call slots: each agent has its own workspace (and the MCP
    /// endpoint one of its own), so the workspace names the caller; calls with none share one.
    pub fn caller(&self) -> String {
        self.workspace
            .as_deref()
            .map(|w| w.display().to_string())
            .unwrap_or_default()
    }
}

/// A loaded tool server.
pub struct ToolServer {
    manifest: ToolManifest,
    module: ToolModule,
    validators: HashMap<String, ArgumentSchema>,
    http: Option<HttpAccess>,
    limits: CallLimits,
}

impl std::fmt::Debug for ToolServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolServer")
            .field("name", &self.manifest.name)
            .field("version", &self.manifest.version)
            .finish_non_exhaustive()
    }
}

impl ToolServer {
    /// Load the package in `dir`: `tool.toml` and the module it names.
    pub fn load(host: &ToolHost, dir: &Path) -> Result<Self, PackageError> {
        let manifest = ToolManifest::load(dir)?;
        let module_path = dir.join(&manifest.module);
        let wasm = std::fs::read(&module_path).map_err(|error| PackageError::ModuleFile {
            path: module_path.clone(),
            error,
        })?;
        Self::from_parts(
            host,
            manifest,
            &wasm,
            &dir.join(crate::manifest::MANIFEST_FILE),
        )
    }

    /// Build a server from a validated manifest and module bytes; `manifest_path` names the
    /// manifest in messages.
    pub fn from_parts(
        host: &ToolHost,
        manifest: ToolManifest,
        wasm: &[u8],
        manifest_path: &Path,
    ) -> Result<Self, PackageError> {
        let limits = manifest.call_limits(manifest_path)?;
        let module = host.load(&manifest.name, wasm)?;
        let mut validators = HashMap::new();
        for (i, tool) in manifest.tools.iter().enumerate() {
            let validator = ArgumentSchema::compile(&tool.input_schema).map_err(|reason| {
                ManifestError::Invalid {
                    path: manifest_path.to_owned(),
                    field: format!("tools[{i}].input_schema"),
                    reason,
                }
            })?;
            validators.insert(tool.name.clone(), validator);
        }
        let http = if manifest.capabilities.http_hosts.is_empty() {
            None
        } else {
            let allow = HostAllowlist::parse(&manifest.capabilities.http_hosts).map_err(|e| {
                ManifestError::Invalid {
                    path: manifest_path.to_owned(),
                    field: "capabilities.http_hosts".into(),
                    reason: e.to_string(),
                }
            })?;
            Some(HttpAccess::new(allow).map_err(|detail| PackageError::Http {
                name: manifest.name.clone(),
                detail,
            })?)
        };
        Ok(Self {
            manifest,
            module,
            validators,
            http,
            limits,
        })
    }

    /// The server's manifest.
    pub fn manifest(&self) -> &ToolManifest {
        &self.manifest
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// Validate `args` against the tool's schema, then run the tool in a fresh instance.
    pub fn call(
        &self,
        tool: &str,
        args: &Value,
        ctx: &CallContext,
    ) -> Result<Value, ToolCallError> {
        let Some(validator) = self.validators.get(tool) else {
            return Err(ToolCallError::UnknownTool {
                server: self.manifest.name.clone(),
                tool: tool.to_owned(),
            });
        };
        validator.check(tool, args)?;
        let grants = self.grants(ctx)?;
        let args = serde_json::to_string(args).unwrap_or_else(|_| "{}".into());
        Ok(self.module.call_with(tool, &args, &grants, self.limits)?)
    }

    fn grants(&self, ctx: &CallContext) -> Result<Grants, ToolCallError> {
        let mut dirs = Vec::with_capacity(self.manifest.capabilities.directories.len());
        for dir in &self.manifest.capabilities.directories {
            let host = if dir.host == WORKSPACE_PLACEHOLDER {
                let Some(ws) = &ctx.workspace else {
                    return Err(ToolCallError::NoWorkspace {
                        server: self.manifest.name.clone(),
                    });
                };
                std::fs::create_dir_all(ws).map_err(|error| ToolCallError::Workspace {
                    path: ws.clone(),
                    error,
                })?;
                ws.clone()
            } else {
                PathBuf::from(&dir.host)
            };
            dirs.push(DirGrant {
                host,
                guest: dir.guest.clone(),
                writable: dir.access == Access::ReadWrite,
            });
        }
        Ok(Grants {
            dirs,
            http: self.http.clone(),
        })
    }
}
