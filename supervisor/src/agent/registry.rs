//! The set of deployed agents, kept in memory and mirrored by the files of the agents directory.
//!
//! Invariants: a file that fails to parse never replaces the version of its agent that is
//! running; one agent name is defined by one file (two files defining it are both refused, and
//! the running version stays); a request holds an `Arc` of the definition it started with, so a
//! reload or removal never changes a request already in flight.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::definition::{AgentDefinition, AgentFileError, parse_agent, read_agent_file};
use super::name::AgentName;

/// Failures of registry operations.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The agent file is invalid.
    #[error(transparent)]
    Invalid(#[from] AgentFileError),
    /// No such agent.
    #[error("no agent named {0:?} is deployed")]
    NotFound(String),
    /// The agents directory could not be read or written.
    #[error("agents directory {path}: {error}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error (shown in the message, so not chained as a source).
        error: std::io::Error,
    },
}

pub use caxton_api_contract::agents::ReloadReport;

/// The result of a deploy.
#[derive(Debug)]
pub struct DeployOutcome {
    /// The definition now deployed.
    pub agent: Arc<AgentDefinition>,
    /// Where it was written.
    pub path: PathBuf,
    /// Whether it replaced a previous version.
    pub replaced: bool,
}

#[derive(Default)]
struct State {
    by_name: BTreeMap<AgentName, Arc<AgentDefinition>>,
    /// Which file each agent came from, so a bad file keeps its good predecessor.
    file_of: HashMap<AgentName, PathBuf>,
}

/// Deployed agents.
pub struct AgentRegistry {
    dir: PathBuf,
    state: RwLock<State>,
}

impl AgentRegistry {
    /// An empty registry over `dir`; call [`reload`](Self::reload) to read the files.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            state: RwLock::new(State::default()),
        }
    }

    /// The agents directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-read every `*.toml` in the directory. Good files replace their agents; bad files are
    /// reported and leave the previous version of their agent in place.
    pub fn reload(&self) -> Result<ReloadReport, RegistryError> {
        let io = |error| RegistryError::Io {
            path: self.dir.clone(),
            error,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        files.sort();

        let mut report = ReloadReport::default();
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let mut parsed = Vec::new();
        let mut failed_files = Vec::new();
        for path in &files {
            match read_agent_file(path).and_then(|src| parse_agent(path, &src)) {
                Ok(agent) => parsed.push((path.clone(), agent)),
                Err(e) => {
                    tracing::warn!(file = %path.display(), line = e.line, reason = %e.reason, "agent file rejected");
                    report.errors.push(e);
                    failed_files.push(path.clone());
                }
            }
        }
        // Which files define each name. A broken file still holds the name of the agent it
        // defined before, whose running version it keeps.
        let mut claims: BTreeMap<AgentName, Vec<PathBuf>> = BTreeMap::new();
        for (path, agent) in &parsed {
            claims
                .entry(agent.name.clone())
                .or_default()
                .push(path.clone());
        }
        for (name, path) in &state.file_of {
            if failed_files.contains(path) {
                claims.entry(name.clone()).or_default().push(path.clone());
            }
        }
        let mut next = State::default();
        for (path, agent) in parsed {
            let owners = &claims[&agent.name];
            if owners.len() > 1 {
                let others: Vec<String> = owners
                    .iter()
                    .filter(|p| **p != path)
                    .map(|p| p.display().to_string())
                    .collect();
                let e = AgentFileError {
                    file: path.display().to_string(),
                    line: name_line(&agent.source),
                    reason: format!(
                        "agent {:?} is also defined by {}; an agent must be defined by one file \
                         only, so neither is loaded (a running version stays)",
                        agent.name.as_str(),
                        others.join(", ")
                    ),
                };
                tracing::warn!(file = %e.file, line = e.line, reason = %e.reason, "agent file rejected");
                report.errors.push(e);
                continue;
            }
            report.warnings.extend(agent.warnings.iter().cloned());
            next.file_of.insert(agent.name.clone(), path);
            next.by_name.insert(agent.name.clone(), Arc::new(agent));
        }
        // Keep the running version of any agent whose file is now broken or contested.
        for (name, path) in &state.file_of {
            let contested = claims.get(name).is_some_and(|owners| owners.len() > 1);
            if (contested || failed_files.contains(path))
                && !next.by_name.contains_key(name)
                && let Some(agent) = state.by_name.get(name)
            {
                next.by_name.insert(name.clone(), agent.clone());
                next.file_of.insert(name.clone(), path.clone());
            }
        }
        report.loaded = next.by_name.len();
        *state = next;
        Ok(report)
    }

    /// Another file of the directory, besides `target`, that defines `name`.
    fn other_file_defining(&self, name: &AgentName, target: &Path) -> Option<PathBuf> {
        #[derive(serde::Deserialize)]
        struct NameOnly {
            name: Option<String>,
        }
        let entries = std::fs::read_dir(&self.dir).ok()?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file() && p != target)
            .collect();
        files.sort();
        files.into_iter().find(|path| {
            read_agent_file(path)
                .ok()
                .and_then(|src| toml::from_str::<NameOnly>(&src).ok())
                .and_then(|raw| raw.name)
                .and_then(|n| AgentName::parse(&n).ok())
                .is_some_and(|n| &n == name)
        })
    }

    /// Validate `source` and, if it is good, write it to the directory and deploy it.
    pub fn deploy(&self, origin: &Path, source: &str) -> Result<DeployOutcome, RegistryError> {
        let agent = parse_agent(origin, source)?;
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        // Overwrite the file the agent already came from, so one agent never has two files.
        let path = state
            .file_of
            .get(&agent.name)
            .cloned()
            .unwrap_or_else(|| self.dir.join(format!("{}.toml", agent.name)));
        if let Some(other) = self.other_file_defining(&agent.name, &path) {
            return Err(RegistryError::Invalid(AgentFileError {
                file: origin.display().to_string(),
                line: name_line(source),
                reason: format!(
                    "agent {:?} is also defined by {} in the agents directory; an agent must be \
                     defined by one file only: remove that file first (the running version stays)",
                    agent.name.as_str(),
                    other.display()
                ),
            }));
        }
        write_atomically(&path, source).map_err(|error| RegistryError::Io {
            path: path.clone(),
            error,
        })?;
        let agent = Arc::new(agent);
        let replaced = state
            .by_name
            .insert(agent.name.clone(), agent.clone())
            .is_some();
        state.file_of.insert(agent.name.clone(), path.clone());
        Ok(DeployOutcome {
            agent,
            path,
            replaced,
        })
    }

    /// Remove an agent and its file. Requests already running keep their copy.
    pub fn remove(&self, name: &str) -> Result<Arc<AgentDefinition>, RegistryError> {
        let key = AgentName::parse(name).map_err(|_| RegistryError::NotFound(name.to_owned()))?;
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let agent = state
            .by_name
            .remove(&key)
            .ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
        if let Some(path) = state.file_of.remove(&key) {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    // Put it back: memory and disk must agree.
                    state.by_name.insert(key.clone(), agent);
                    state.file_of.insert(key, path.clone());
                    return Err(RegistryError::Io { path, error });
                }
            }
        }
        Ok(agent)
    }

    /// Look an agent up by either spelling of its name.
    pub fn get(&self, name: &str) -> Option<Arc<AgentDefinition>> {
        let key = AgentName::parse(name).ok()?;
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_name
            .get(&key)
            .cloned()
    }

    /// All deployed agents, by name.
    pub fn list(&self) -> Vec<Arc<AgentDefinition>> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_name
            .values()
            .cloned()
            .collect()
    }

    /// Number of deployed agents.
    pub fn len(&self) -> usize {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_name
            .len()
    }

    /// Whether no agent is deployed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The line of an agent file's `name`, for errors about the name.
fn name_line(source: &str) -> usize {
    crate::config::line_of_key(source, &["name"]).unwrap_or(1)
}

/// Write to a temporary file in the same directory, sync, then rename over the target, so a
/// crash leaves either the old file or the new one, never half of one.
fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("agent"),
        std::process::id()
    ));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "name = \"hi\"\nversion = \"1\"\nuser_prompt_template = \"{{ request }}\"\n";
    const GOOD_V2: &str =
        "name = \"hi\"\nversion = \"2\"\nuser_prompt_template = \"{{ request }}!\"\n";

    #[test]
    fn a_bad_file_never_replaces_the_running_version() {
        let dir = tempfile::tempdir().unwrap();
        let reg = AgentRegistry::new(dir.path());
        std::fs::write(dir.path().join("hi.toml"), GOOD).unwrap();
        reg.reload().unwrap();
        let running = reg.get("hi").unwrap();
        std::fs::write(dir.path().join("hi.toml"), "name = \"hi\"\nversion = 1\n").unwrap();
        let report = reg.reload().unwrap();
        assert_eq!(report.errors.len(), 1);
        assert_eq!(reg.get("hi").unwrap().version, "1");
        std::fs::write(dir.path().join("hi.toml"), GOOD_V2).unwrap();
        reg.reload().unwrap();
        assert_eq!(reg.get("hi").unwrap().version, "2");
        // The request that started on v1 still holds v1.
        assert_eq!(running.version, "1");
    }

    #[test]
    fn deploy_writes_the_file_and_remove_deletes_it() {
        let dir = tempfile::tempdir().unwrap();
        let reg = AgentRegistry::new(dir.path());
        let out = reg.deploy(Path::new("my/hi.toml"), GOOD).unwrap();
        assert_eq!(out.path, dir.path().join("hi.toml"));
        assert!(!out.replaced);
        assert!(reg.deploy(Path::new("x.toml"), GOOD_V2).unwrap().replaced);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("hi.toml")).unwrap(),
            GOOD_V2
        );
        reg.remove("hi").unwrap();
        assert!(!dir.path().join("hi.toml").exists());
        assert!(matches!(reg.remove("hi"), Err(RegistryError::NotFound(_))));
    }

    #[test]
    fn a_bad_deploy_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let reg = AgentRegistry::new(dir.path());
        reg.deploy(Path::new("hi.toml"), GOOD).unwrap();
        let err = reg
            .deploy(Path::new("hi.toml"), "name = \"hi\"\n")
            .unwrap_err();
        assert!(matches!(err, RegistryError::Invalid(_)));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("hi.toml")).unwrap(),
            GOOD
        );
    }

    #[test]
    fn two_files_with_one_name_are_both_refused_naming_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
        std::fs::write(&a, GOOD).unwrap();
        std::fs::write(&b, GOOD_V2).unwrap();
        let reg = AgentRegistry::new(dir.path());
        let report = reg.reload().unwrap();
        assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
        let a_err = report
            .errors
            .iter()
            .find(|e| e.file == a.display().to_string())
            .unwrap();
        assert!(a_err.reason.contains(&b.display().to_string()), "{a_err}");
        assert_eq!(a_err.line, 1, "{a_err}");
        assert!(reg.get("hi").is_none());
    }

    #[test]
    fn a_second_file_never_takes_over_a_running_agent() {
        let dir = tempfile::tempdir().unwrap();
        let hello = dir.path().join("hello.toml");
        std::fs::write(&hello, GOOD).unwrap();
        let reg = AgentRegistry::new(dir.path());
        reg.reload().unwrap();
        // Another file claims the name while the original is broken.
        std::fs::write(dir.path().join("a-copy.toml"), GOOD_V2).unwrap();
        std::fs::write(&hello, "name = \"hi\"\nversion = 1\n").unwrap();
        let report = reg.reload().unwrap();
        assert_eq!(reg.get("hi").unwrap().version, "1");
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.file.ends_with("a-copy.toml") && e.reason.contains("hello.toml")),
            "{:?}",
            report.errors
        );
        // Both files good: still contested, still the running version.
        std::fs::write(&hello, GOOD).unwrap();
        reg.reload().unwrap();
        assert_eq!(reg.get("hi").unwrap().version, "1");
        // A deploy of the name is refused while the other file exists.
        let err = reg
            .deploy(Path::new("new.toml"), GOOD_V2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a-copy.toml"), "{err}");
        assert_eq!(std::fs::read_to_string(&hello).unwrap(), GOOD);
    }
}
