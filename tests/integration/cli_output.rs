//! Snapshots of what the CLI prints for people (everything but `--json`): each test drives the
//! real `caxton` binary through a group of commands, through a daemon and without one, and
//! compares the transcript (command, exit code, standard output, standard error) with a file in
//! `tests/integration/snapshots/`. A change to a human format, an error message or an exit code
//! makes the test fail with a diff.
//!
//! What differs between runs (temporary paths, execution ids, PIDs, durations, timestamps,
//! uptime, file sizes, similarity scores) is replaced by `[PLACEHOLDERS]` with insta's filters
//! before the comparison; see [`settings`]. Each filter matches only the exact shape printed
//! today, so a change of that shape (another precision, another unit) still shows in the diff.
//!
//! Reviewing a change (`cargo insta` is not needed; run `cargo build --workspace` first, the
//! tests start the built binaries):
//! 1. `INSTA_UPDATE=new cargo test --workspace --test integration cli_output::` fails on each
//!    changed transcript and writes it beside the accepted one as `NAME.snap.new`;
//! 2. read the change: `diff -u tests/integration/snapshots/NAME.snap{,.new}`;
//! 3. if every change is intended, accept them all with `INSTA_UPDATE=always` and the same
//!    command (it rewrites the `.snap` files in place and passes), delete the `.snap.new` files
//!    and commit the `.snap` files with the code that changed them (`git diff` shows the
//!    reviewer the same change); if not, delete the `.snap.new` files and fix the code.
//!
//! A new test's snapshot is written the same way. Without `INSTA_UPDATE`, insta writes
//! `.snap.new` files on a developer's machine and nothing at all under CI (it reads `CI=true`,
//! which `.ci/run` has), so there a missing or different snapshot fails the test.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::{Daemon, DaemonOptions, Env, FakeLlm, builtin_tools_dir, models_dir, text};

/// A session at the terminal: each command as typed, then what it printed and how it exited.
struct Transcript<'a> {
    env: &'a Env,
    /// Extra environment for every command (the models directory, for memory without a daemon).
    vars: Vec<(&'static str, std::path::PathBuf)>,
    log: String,
}

impl<'a> Transcript<'a> {
    fn new(env: &'a Env) -> Self {
        Self {
            env,
            vars: Vec::new(),
            log: String::new(),
        }
    }

    fn with_models(env: &'a Env) -> Self {
        let mut t = Self::new(env);
        t.vars.push(("CAXTON_MODELS_DIR", models()));
        t
    }

    /// Run `caxton ARGS` and record it.
    fn run(&mut self, args: &[&str]) -> Output {
        let out = self.env.cli_with_env(args, &self.vars);
        self.record(args, &out);
        out
    }

    /// Run `caxton ARGS` with this standard input and record it.
    fn run_with_stdin(&mut self, args: &[&str], stdin: &str) -> Output {
        assert!(self.vars.is_empty(), "stdin and extra variables together");
        let out = self.env.cli_with_stdin(args, Some(stdin));
        // As printf's format: its `\n` is the newline.
        let format = stdin
            .replace('\\', r"\\")
            .replace('%', "%%")
            .replace('\n', r"\n")
            .replace('\'', r"'\''");
        self.log.push_str(&format!("$ printf '{format}' | "));
        self.record(args, &out);
        out
    }

    /// Run `caxton ARGS` with this file on standard input and record it.
    fn run_with_stdin_from(&mut self, args: &[&str], file: &Path) -> Output {
        let input = std::fs::read_to_string(file).unwrap();
        let out = self.env.cli_with_stdin(args, Some(&input));
        let redirect = format!(" < {}", shell_word(arg(file)));
        self.record_with(args, &redirect, &out);
        out
    }

    /// Run `caxton ARGS`, recorded as `caxton SHOWN` (for arguments that differ between runs).
    fn run_shown(&mut self, args: &[&str], shown: &[&str]) -> Output {
        let out = self.env.cli_with_env(args, &self.vars);
        self.record(shown, &out);
        out
    }

    fn record(&mut self, args: &[&str], out: &Output) {
        self.record_with(args, "", out);
    }

    /// Record a command line (after a pipe, if one was written), `tail` after its arguments.
    fn record_with(&mut self, args: &[&str], tail: &str, out: &Output) {
        if !self.log.ends_with("| ") {
            self.log.push_str("$ ");
        }
        let words: Vec<String> = args.iter().map(|a| shell_word(a)).collect();
        self.log
            .push_str(&format!("caxton {}{tail}\n", words.join(" ")));
        push_output(&mut self.log, out);
    }
}

/// A command's exit code, standard output and standard error, each section only when not empty.
fn push_output(log: &mut String, out: &Output) {
    match out.status.code() {
        Some(code) => log.push_str(&format!("[exit {code}]\n")),
        None => log.push_str(&format!("[{}]\n", out.status)),
    }
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        if bytes.is_empty() {
            continue;
        }
        log.push_str(&format!("[{name}]\n"));
        let body = text(bytes);
        // Trailing blanks are part of a format (padded columns) that editors strip: show them.
        for line in body.split_inclusive('\n') {
            let (line, newline) = match line.strip_suffix('\n') {
                Some(l) => (l, "\n"),
                None => (line, ""),
            };
            let kept = line.trim_end_matches(' ');
            log.push_str(kept);
            log.push_str(&"·".repeat(line.len() - kept.len()));
            log.push_str(newline);
        }
        if !body.ends_with('\n') {
            log.push_str("[no newline at end]\n");
        }
    }
    log.push('\n');
}

/// An argument as a shell would need it typed.
fn shell_word(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// A literal string as a regex.
fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The filters that blank out what differs between runs; `data_dir` is the environment's.
fn settings(data_dir: &Path, description: &str) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_description(description);
    s.set_omit_expression(true);
    // Paths first: they may contain digits the later filters would take for numbers.
    s.add_filter(&literal(&data_dir.display().to_string()), "[DATA]");
    s.add_filter(&literal(env!("CARGO_MANIFEST_DIR")), "[REPO]");
    // A row of the status table, before its UUID goes: PID in 8 columns, AGENT in 24,
    // EXECUTION in 38, AGE right-aligned in 8, STATE. The redaction tokens keep those widths, and a
    // row of other widths keeps its PID and id, so a change of alignment fails the comparison.
    s.add_filter(
        r"(?m)^\d[\d ]{7} (.{24}) [0-9a-f-]{36}   [ \d.]{2}[ \d.mhs]{6}  (\S+)$",
        format!("{:<8} $1 {:<38} {:>8}  $2", "[PID]", "[UUID]", "[AGE]"),
    );
    s.add_filter(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[UUID]",
    );
    // Which sandbox layers a worker could apply depends on the kernel (tests/integration/
    // sandbox.rs checks them).
    s.add_filter(r"(?m)^sandbox: .*$", "sandbox: [LAYERS]");
    // Which cgroups workers get depends on the host (tests/integration/cgroups.rs checks them).
    s.add_filter(r"(?m)^cgroup:  .*$", "cgroup:  [CGROUPS]");
    // An entity's times (RFC 3339), and only those: an error message's example time stays.
    s.add_filter(
        r"(created|updated) \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
        "$1 [TIME]",
    );
    // `caxton 0.1.0  pid 123  up 1.2s` (status): the version moves with every release.
    s.add_filter(
        &format!(
            r"caxton {}  pid \d+  up ",
            literal(env!("CARGO_PKG_VERSION"))
        ),
        "caxton [VERSION]  pid [PID]  up ",
    );
    s.add_filter(r"  up (\d+ms|\d+\.\ds|\d+m|\d+h)\n", "  up [UPTIME]\n");
    s.add_filter(r"\bpid \d+", "pid [PID]");
    s.add_filter(r"\bworker \d+\b", "worker [PID]");
    // Durations of runs and tool calls: `12.3 ms`.
    s.add_filter(r"\b\d+\.\d ms\b", "[N.N] ms");
    // Database, log and export sizes: `1.2 MiB`, `512 B`.
    s.add_filter(r"\b\d+\.\d (KiB|MiB|GiB|TiB)\b", "[SIZE]");
    s.add_filter(r"\b\d+ B\b", "[SIZE]");
    // Search similarities, `{:5.2}` at the start of a hit: the model's floating point may
    // differ in the last digit between CPUs.
    s.add_filter(r"(?m)^[ -]\d\.\d\d  ", "[SIM]  ");
    // The fake model server's loopback port.
    s.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    // Times in the conversation and execution tables and pages: at the start of a line, after
    // a column gap or after a label (an error message's example time follows other words).
    s.add_filter(
        r"(?m)(^|  |:\s+)\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z",
        "$1[TIME]",
    );
    // Whole milliseconds: a conversation's execution tree `(succeeded, 12 ms, ...)`, the
    // execution table's DURATION column.
    // Leading spaces go too: the table right-aligns the column, so its padding moves with the
    // number of digits.
    s.add_filter(r" +\d+ ms\b", " [N] ms");
    s
}

/// Compare a transcript with its snapshot, with the run-dependent parts blanked out.
fn assert_transcript(name: &str, description: &str, env: &Env, transcript: &str) {
    settings(env.data_dir(), description).bind(|| insta::assert_snapshot!(name, transcript));
}

fn models() -> std::path::PathBuf {
    let dir = models_dir();
    assert!(
        dir.join("all-MiniLM-L6-v2/model.safetensors").is_file(),
        "the embedding model is not in {}: run scripts/fetch-models.sh (scripts/setup.sh does)",
        dir.display()
    );
    dir
}

/// An agent with every field `agent show` prints.
fn greeter() -> String {
    r#"name = "greeter"
version = "1.2.0"
description = "Greets people and counts rows"
capabilities = ["chat", "csv"]
tools = ["csv_parser"]
user_prompt_template = "{{ request }}"
documentation = """
# Greeter

Says hello back; give it a CSV and it asks csv_stats.
"""

[llm]
provider = "fake"
model = "fake-model"
"#
    .to_owned()
}

/// The seed layout TOML reads differently from how it looks: deploys, with a warning.
fn pitfall() -> String {
    "name = \"Pitfall\"\nversion = \"0.1.0\"\n\n[parameters]\nsize = \"1MB\"\n\n\
     user_prompt_template = \"{{ request }}\"\n"
        .to_owned()
}

/// An agent whose provider is not configured.
fn elsewhere() -> String {
    "name = \"elsewhere\"\nversion = \"1\"\nuser_prompt_template = \"{{ request }}\"\n\n\
     [llm]\nprovider = \"nowhere\"\n"
        .to_owned()
}

/// A misspelt key on line 4.
const MISSPELT: &str = "name = \"greeter\"\nversion = \"2.0.0\"\nuser_prompt_template = \"{{ request }}\"\nmodle = \"x\"\n";

/// A tool module whose one tool answers nothing (enough to deploy and show).
const SILENT_MODULE: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_call") (param i32 i32 i32 i32) (result i64) (i64.const 0)))
"#;

/// A tool package with every part `tool show` prints: two tools, directories, HTTP hosts,
/// limits.
fn kit_package(dir: &Path) {
    std::fs::write(dir.join("kit.wasm"), wat::parse_str(SILENT_MODULE).unwrap()).unwrap();
    std::fs::write(
        dir.join("tool.toml"),
        r#"name = "kit"
version = "0.3.0"
description = "A package with every part tool show prints"
module = "kit.wasm"

[[tools]]
name = "kit_list"
description = "List things"
input_schema = { type = "object", properties = { prefix = { type = "string" } } }

[[tools]]
name = "kit_get"
description = "Get one thing"
input_schema = { type = "object", required = ["id"], properties = { id = { type = "integer" } } }

[capabilities]
directories = [{ host = "{workspace}", guest = "data", access = "read" }]
http_hosts = ["api.example.com"]

[limits]
memory = "8MB"
fuel = 1000000
timeout = "1s"
"#,
    )
    .unwrap();
}

/// A package whose manifest has a key it does not know, on line 5.
fn bad_package(dir: &Path) {
    std::fs::write(
        dir.join("tool.toml"),
        "name = \"bad\"\nversion = \"1\"\nmodule = \"m.wasm\"\ntools = []\ncolour = \"red\"\n",
    )
    .unwrap();
}

fn example_tool(name: &str) -> String {
    format!(
        "{}/tool-packages/examples/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A data directory's path as an argument.
fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

const CSV_CALL: &str = r#"[call csv_stats {"csv": "region,total\nnorth,10\nsouth,32"}]"#;

#[test]
fn agents_tools_status_and_workers_through_a_daemon() {
    builtin_tools_dir();
    let llm = FakeLlm::start();
    let d = Daemon::start(DaemonOptions::new(&llm));
    let env = &d.env;
    let greeter_file = env.agent_file("greeter", &greeter());
    let pitfall_file = env.agent_file("pitfall", &pitfall());
    let misspelt_file = env.agent_file("misspelt", MISSPELT);
    let elsewhere_file = env.agent_file("elsewhere", &elsewhere());
    let missing_file = env.data_dir().join("missing.toml");

    let mut t = Transcript::new(env);
    t.run(&["agent", "list"]);
    t.run(&["agent", "validate", arg(&greeter_file)]);
    t.run(&["agent", "validate", arg(&misspelt_file)]);
    t.run(&["agent", "validate", arg(&elsewhere_file)]);
    t.run(&["agent", "deploy", arg(&greeter_file)]);
    t.run(&["agent", "deploy", arg(&greeter_file)]);
    t.run(&["agent", "deploy", arg(&pitfall_file)]);
    t.run(&["agent", "deploy", arg(&misspelt_file)]);
    t.run(&["agent", "deploy", arg(&elsewhere_file)]);
    t.run(&["agent", "deploy", arg(&missing_file)]);
    t.run(&["agent", "list"]);
    t.run(&["agent", "show", "greeter"]);
    t.run(&["agent", "show", "pitfall"]);
    t.run(&["agent", "show", "nobody"]);
    t.run(&["agent", "run", "greeter", "hello there"]);
    t.run(&["agent", "run", "greeter", "hello there", "--verbose"]);
    t.run(&["agent", "run", "greeter", CSV_CALL, "--verbose"]);
    t.run(&[
        "agent",
        "run",
        "greeter",
        "one two three",
        "--stream",
        "--verbose",
    ]);
    t.run_with_stdin(&["agent", "run", "greeter"], "piped question\n");
    t.run(&["agent", "run", "greeter", "[401] refused"]);
    t.run(&["agent", "run", "greeter", "[401] refused", "--verbose"]);
    t.run(&["agent", "run", "greeter", "[401] refused", "--stream"]);
    t.run(&["agent", "run", "greeter", "   "]);
    t.run(&["agent", "run", "nobody", "hi"]);
    t.run(&["agent", "remove", "pitfall"]);
    t.run(&["agent", "remove", "pitfall"]);
    assert_transcript(
        "agent_through_a_daemon",
        "caxton agent ... with a daemon running",
        env,
        &t.log,
    );

    let kit = tempfile::tempdir().unwrap();
    kit_package(kit.path());
    let bad = tempfile::tempdir().unwrap();
    bad_package(bad.path());
    let mut t = Transcript::new(env);
    t.run(&["tool", "list"]);
    t.run(&["tool", "deploy", &example_tool("echo-zig")]);
    t.run(&["tool", "deploy", &example_tool("echo-zig")]);
    t.run(&["tool", "deploy", &example_tool("echo-c")]);
    t.run(&["tool", "deploy", arg(kit.path())]);
    t.run(&["tool", "deploy", arg(bad.path())]);
    t.run(&["tool", "deploy", arg(env.data_dir())]);
    t.run(&["tool", "list"]);
    t.run(&["tool", "show", "echo_zig"]);
    t.run(&["tool", "show", "kit"]);
    t.run(&["tool", "show", "nope"]);
    t.run(&["tool", "remove", "csv_parser"]);
    t.run(&["tool", "remove", "kit"]);
    t.run(&["tool", "remove", "nope"]);
    // The temporary package directories are not the data directory: name them.
    let log = t
        .log
        .replace(arg(kit.path()), "[KIT]")
        .replace(arg(bad.path()), "[BAD]");
    assert_transcript(
        "tool_through_a_daemon",
        "caxton tool ... with a daemon running",
        env,
        &log,
    );

    let mut t = Transcript::new(env);
    t.run(&["health"]);
    t.run(&["status"]);
    // A worker that waits for the model until it is killed: one row in the status table.
    let hung = {
        let env_args = (env.config.clone(), env.data_dir().to_owned());
        std::thread::spawn(move || {
            std::process::Command::new(crate::support::caxton_bin())
                .arg("--config")
                .arg(&env_args.0)
                .arg("--data-dir")
                .arg(&env_args.1)
                .args(["agent", "run", "greeter", "[hang] wait for me"])
                .env_remove("CAXTON_SOCKET")
                .env_remove("CAXTON_CONFIG")
                .env_remove("CAXTON_DATA_DIR")
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        })
    };
    let pid = d.wait_for_worker("greeter");
    t.run(&["status"]);
    t.run(&["worker", "kill", "999999999"]);
    let pid = pid.to_string();
    t.run_shown(
        &["worker", "kill", &pid, "--signal", "NOPE"],
        &["worker", "kill", "PID", "--signal", "NOPE"],
    );
    t.run_shown(&["worker", "kill", &pid], &["worker", "kill", "PID"]);
    let killed = hung.join().unwrap();
    t.log.push_str(
        "$ caxton agent run greeter '[hang] wait for me'   # the run whose worker was killed\n",
    );
    push_output(&mut t.log, &killed);
    assert!(
        crate::support::wait_until(Duration::from_secs(10), || {
            text(&d.cli(&["status"]).stdout).contains("workers: 0\n")
        }),
        "the killed worker left the live table"
    );
    t.run(&["status"]);
    assert_transcript(
        "status_health_worker_through_a_daemon",
        "caxton health, status and worker kill with a daemon running",
        env,
        &t.log,
    );
}

#[test]
fn memory_through_a_daemon() {
    let d = Daemon::start(DaemonOptions::offline(&models()));
    let env = &d.env;
    let acme = "workspace:acme";
    let export = env.data_dir().join("acme.json");
    let export_mcp = env.data_dir().join("acme.jsonl");
    let mcp_fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/memory/tests/fixtures/mcp-server-memory.jsonl"
    );

    let mut t = Transcript::new(env);
    t.run(&["memory", "stats"]);
    t.run(&[
        "memory",
        "add",
        "Ada Lovelace",
        "Prefers green tea in the morning",
        "Wrote the first published algorithm",
        "--type",
        "person",
        "--metadata",
        r#"{"born": 1815}"#,
        "--scope",
        acme,
    ]);
    t.run(&[
        "memory",
        "add",
        "Analytical Engine",
        "A mechanical general-purpose computer",
        "--type",
        "machine",
        "--scope",
        acme,
    ]);
    t.run_with_stdin(
        &[
            "memory",
            "add",
            "Charles Babbage",
            "-",
            "--type",
            "person",
            "--scope",
            acme,
        ],
        "Mathematician who designed calculating machines\n\nKept a workshop in London\n",
    );
    t.run(&["memory", "add", "Lonely Island", "--scope", acme]);
    t.run(&[
        "memory",
        "add",
        "Ada Lovelace",
        "Prefers green tea in the morning",
        "Daughter of Lord Byron",
        "--scope",
        acme,
    ]);
    t.run(&[
        "memory",
        "relate",
        "Ada Lovelace",
        "wrote_about",
        "Analytical Engine",
        "--scope",
        acme,
    ]);
    t.run(&[
        "memory",
        "relate",
        "Charles Babbage",
        "designed",
        "Analytical Engine",
        "--strength",
        "0.9",
        "--scope",
        acme,
    ]);
    t.run(&[
        "memory",
        "search",
        "what does she like to drink",
        "--mode",
        "semantic",
        "-n",
        "1",
        "--scope",
        acme,
    ]);
    t.run(&[
        "memory", "search", "machines", "--mode", "keyword", "--scope", acme,
    ]);
    t.run(&[
        "memory", "search", "machines", "--mode", "keyword", "--scope", acme, "--scope", "global",
    ]);
    t.run(&[
        "memory", "search", "zeppelin", "--mode", "keyword", "--scope", acme,
    ]);
    t.run(&[
        "memory", "search", "Lonely", "--mode", "keyword", "--scope", acme,
    ]);
    t.run(&["memory", "show", "Ada Lovelace", "--scope", acme]);
    t.run(&["memory", "show", "Lonely Island", "--scope", acme]);
    t.run(&[
        "memory",
        "neighbours",
        "Ada Lovelace",
        "--depth",
        "2",
        "--scope",
        acme,
    ]);
    t.run(&["memory", "neighbours", "Lonely Island", "--scope", acme]);
    t.run(&[
        "memory",
        "path",
        "Ada Lovelace",
        "Charles Babbage",
        "--scope",
        acme,
    ]);
    t.run(&[
        "memory",
        "path",
        "Ada Lovelace",
        "Lonely Island",
        "--scope",
        acme,
    ]);
    t.run(&["memory", "export", arg(&export), "--scope", acme]);
    t.run(&[
        "memory",
        "export",
        arg(&export_mcp),
        "--format",
        "mcp",
        "--scope",
        acme,
    ]);
    t.run(&[
        "memory",
        "import",
        arg(&export),
        "--scope",
        "workspace:copy",
    ]);
    t.run(&[
        "memory",
        "import",
        arg(&export),
        "--scope",
        "workspace:copy",
    ]);
    t.run(&["memory", "import", mcp_fixture, "--scope", "workspace:mcp"]);
    t.run_with_stdin_from(
        &[
            "memory",
            "import",
            "-",
            "--format",
            "mcp",
            "--scope",
            "workspace:piped",
        ],
        Path::new(mcp_fixture),
    );
    t.run(&[
        "memory",
        "forget",
        "Ada Lovelace",
        "Prefers green tea in the morning",
        "--scope",
        "workspace:copy",
    ]);
    t.run(&[
        "memory",
        "unrelate",
        "Ada Lovelace",
        "wrote_about",
        "Analytical Engine",
        "--scope",
        "workspace:copy",
    ]);
    t.run(&[
        "memory",
        "remove",
        "Lonely Island",
        "--scope",
        "workspace:copy",
    ]);
    t.run(&["memory", "stats"]);
    t.run(&["memory", "stats", "--scope", acme, "--check"]);
    assert_transcript(
        "memory_through_a_daemon",
        "caxton memory ... with a daemon running",
        env,
        &t.log,
    );

    let mut t = Transcript::new(env);
    memory_mistakes(&mut t, mcp_fixture);
    assert_transcript(
        "memory_mistakes_through_a_daemon",
        "caxton memory ... refused, with a daemon running",
        env,
        &t.log,
    );
}

/// The memory commands' common mistakes; the entities of `workspace:acme` may or may not exist.
fn memory_mistakes(t: &mut Transcript<'_>, mcp_fixture: &str) {
    let acme = "workspace:acme";
    t.run(&["memory", "show", "Nobody", "--scope", acme]);
    t.run(&["memory", "show", "Nobody", "--scope", "nowhere"]);
    t.run(&["memory", "show", "Nobody", "--scope", "agent-only:"]);
    t.run(&["memory", "add", "Nobody", "a fact"]);
    t.run(&[
        "memory",
        "add",
        "Nobody",
        "--metadata",
        "{not json",
        "--scope",
        acme,
    ]);
    t.run(&[
        "memory",
        "add",
        "Nobody",
        "--metadata",
        "[1, 2]",
        "--scope",
        acme,
    ]);
    t.run(&[
        "memory", "relate", "Nobody", "knows", "Somebody", "--scope", acme,
    ]);
    t.run(&[
        "memory",
        "relate",
        "Nobody",
        "knows",
        "Somebody",
        "--strength",
        "7",
        "--scope",
        acme,
    ]);
    t.run(&[
        "memory",
        "search",
        "tea",
        "--scope",
        acme,
        "--since",
        "yesterday",
    ]);
    t.run(&[
        "memory",
        "search",
        "tea",
        "--scope",
        acme,
        "--min-similarity",
        "3",
    ]);
    t.run(&[
        "memory", "search", "tea", "--scope", acme, "--mode", "fuzzy",
    ]);
    t.run(&["memory", "neighbours", "Nobody", "--scope", acme]);
    t.run(&[
        "memory",
        "neighbours",
        "Nobody",
        "--depth",
        "99",
        "--scope",
        acme,
    ]);
    t.run(&["memory", "path", "Nobody", "Somebody", "--scope", acme]);
    t.run(&["memory", "forget", "Nobody", "a fact", "--scope", acme]);
    t.run(&[
        "memory", "unrelate", "Nobody", "knows", "Somebody", "--scope", acme,
    ]);
    t.run(&["memory", "remove", "Nobody", "--scope", acme]);
    t.run(&["memory", "import", "/nonexistent/caxton-memory.json"]);
    t.run(&["memory", "import", mcp_fixture]);
    t.run(&["memory", "export", "--scope", "nowhere", "-"]);
    t.run(&["memory", "stats", "--scope", "nowhere"]);
}

#[test]
fn agents_tools_and_memory_without_a_daemon() {
    builtin_tools_dir();
    let llm = FakeLlm::start();
    let env = Env::new(&DaemonOptions::new(&llm));
    let greeter_file = env.agent_file("greeter", &greeter());
    let misspelt_file = env.agent_file("misspelt", MISSPELT);
    let elsewhere_file = env.agent_file("elsewhere", &elsewhere());
    let missing_file = env.data_dir().join("missing.toml");

    let mut t = Transcript::new(&env);
    t.run(&["health"]);
    t.run(&["status"]);
    t.run(&["worker", "kill", "1234"]);
    assert_transcript(
        "status_health_worker_without_a_daemon",
        "caxton health, status and worker kill with no daemon running",
        &env,
        &t.log,
    );

    let mut t = Transcript::new(&env);
    t.run(&["agent", "list"]);
    t.run(&["agent", "validate", arg(&greeter_file)]);
    t.run(&["agent", "validate", arg(&misspelt_file)]);
    t.run(&["agent", "deploy", arg(&greeter_file)]);
    t.run(&["agent", "deploy", arg(&greeter_file)]);
    t.run(&["agent", "deploy", arg(&misspelt_file)]);
    t.run(&["agent", "deploy", arg(&elsewhere_file)]);
    t.run(&["agent", "deploy", arg(&missing_file)]);
    t.run(&["agent", "list"]);
    t.run(&["agent", "show", "greeter"]);
    t.run(&["agent", "show", "nobody"]);
    t.run(&["agent", "run", "greeter", "hello there"]);
    t.run(&["agent", "run", "greeter", "hello there", "--verbose"]);
    t.run(&["agent", "run", "greeter", CSV_CALL, "--verbose"]);
    t.run(&[
        "agent",
        "run",
        "greeter",
        "one two three",
        "--stream",
        "--verbose",
    ]);
    t.run(&["agent", "run", "greeter", "[401] refused"]);
    t.run(&["agent", "run", "greeter", "[401] refused", "--verbose"]);
    t.run(&["agent", "run", "greeter", "[401] refused", "--stream"]);
    t.run(&["agent", "run", "nobody", "hi"]);
    t.run(&["agent", "remove", "greeter"]);
    t.run(&["agent", "remove", "greeter"]);
    assert_transcript(
        "agent_without_a_daemon",
        "caxton agent ... with no daemon running (in-process)",
        &env,
        &t.log,
    );

    let kit = tempfile::tempdir().unwrap();
    kit_package(kit.path());
    let mut t = Transcript::new(&env);
    t.run(&["tool", "list"]);
    t.run(&["tool", "deploy", arg(kit.path())]);
    t.run(&["tool", "deploy", arg(kit.path())]);
    t.run(&["tool", "deploy", arg(env.data_dir())]);
    t.run(&["tool", "show", "kit"]);
    t.run(&["tool", "show", "nope"]);
    t.run(&["tool", "remove", "kit"]);
    t.run(&["tool", "remove", "nope"]);
    let log = t.log.replace(arg(kit.path()), "[KIT]");
    assert_transcript(
        "tool_without_a_daemon",
        "caxton tool ... with no daemon running (in-process)",
        &env,
        &log,
    );

    // Each command loads the model itself here: a few of them, then the mistakes.
    let acme = "workspace:acme";
    let export = env.data_dir().join("acme.json");
    let mut t = Transcript::with_models(&env);
    t.run(&[
        "memory",
        "add",
        "Lighthouse",
        "Its lamp is lit at dusk",
        "--type",
        "place",
        "--scope",
        acme,
    ]);
    t.run(&[
        "memory",
        "add",
        "Harbour",
        "Boats shelter here",
        "--scope",
        acme,
    ]);
    t.run(&[
        "memory",
        "relate",
        "Lighthouse",
        "guards",
        "Harbour",
        "--scope",
        acme,
    ]);
    t.run(&[
        "memory",
        "search",
        "when is the light switched on",
        "-n",
        "1",
        "--scope",
        acme,
    ]);
    t.run(&["memory", "show", "Lighthouse", "--scope", acme]);
    t.run(&["memory", "neighbours", "Harbour", "--scope", acme]);
    t.run(&["memory", "path", "Harbour", "Lighthouse", "--scope", acme]);
    t.run(&[
        "memory",
        "export",
        arg(&export),
        "--scope",
        acme,
        "--no-embeddings",
    ]);
    t.run(&["memory", "import", arg(&export), "--scope", "global"]);
    t.run(&[
        "memory",
        "forget",
        "Harbour",
        "Boats shelter here",
        "--scope",
        acme,
    ]);
    t.run(&[
        "memory",
        "unrelate",
        "Lighthouse",
        "guards",
        "Harbour",
        "--scope",
        acme,
    ]);
    t.run(&["memory", "remove", "Harbour", "--scope", acme]);
    t.run(&["memory", "stats", "--scope", acme]);
    t.run(&["memory", "show", "Nobody", "--scope", acme]);
    t.run(&["memory", "show", "Nobody", "--scope", "nowhere"]);
    t.run(&[
        "memory",
        "add",
        "Nobody",
        "--metadata",
        "[1, 2]",
        "--scope",
        acme,
    ]);
    t.run(&[
        "memory",
        "search",
        "tea",
        "--scope",
        acme,
        "--since",
        "yesterday",
    ]);
    assert_transcript(
        "memory_without_a_daemon",
        "caxton memory ... with no daemon running (in-process)",
        &env,
        &t.log,
    );
}

/// Agents scripted for the protocols: the fake model answers protocol prompts from markers in
/// the system prompt.
fn scripted(name: &str, system: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"1.0.0\"\nsystem_prompt = \"{system}\"\nuser_prompt_template = \"{{{{ request }}}}\"\n{extra}"
    )
}

#[test]
fn agents_working_together_through_a_daemon() {
    let llm = FakeLlm::start();
    let d = Daemon::start(DaemonOptions::new(&llm));
    let env = &d.env;
    d.deploy(
        "coordinator",
        &scripted(
            "coordinator",
            "You coordinate.",
            "[delegation]\nagents = [\"researcher\"]\ncapabilities = [\"research\"]\n",
        ),
    );
    d.deploy(
        "researcher",
        &scripted(
            "researcher",
            "[bid 0.8]",
            "capabilities = [\"research\"]\nsubscriptions = [\"news\"]\n",
        ),
    );
    d.deploy(
        "analyst",
        &scripted("analyst", "[bid 0.3]", "capabilities = [\"research\"]\n"),
    );
    d.deploy(
        "buyer",
        &scripted("buyer", "[negotiate offer,x,counter]", ""),
    );
    d.deploy(
        "seller",
        &scripted("seller", "[negotiate x,counter,x,accept]", ""),
    );
    let mut t = Transcript::new(env);
    t.run(&["agent", "show", "coordinator"]);
    let out = t.run(&[
        "agent",
        "run",
        "coordinator",
        "-v",
        r#"[call ask_agent {"agent": "researcher", "request": "facts on tea"}]"#,
    ]);
    let id = text(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("conversation: ").map(str::to_owned))
        .unwrap();
    t.run(&["conversation", "list"]);
    t.run_shown(
        &["conversation", "show", &id],
        &["conversation", "show", "ID"],
    );
    t.run(&["conversation", "show", "no-such-id"]);
    t.run(&[
        "agent",
        "run",
        "coordinator",
        "--conversation",
        "no-such-id",
        "hi",
    ]);
    t.run(&[
        "protocol",
        "contract-net",
        "--capability",
        "research",
        "Summarise tea",
    ]);
    t.run(&[
        "protocol",
        "auction",
        "--capability",
        "research",
        "Summarise tea",
    ]);
    t.run(&["protocol", "negotiate", "buyer", "seller", "a bike"]);
    t.run(&[
        "protocol",
        "negotiate",
        "buyer",
        "seller",
        "a bike",
        "--rounds",
        "0",
    ]);
    t.run(&["topic", "publish", "news", "tea is hot"]);
    t.run(&["topic", "publish", "weather", "rain"]);
    t.run(&["execution", "list", "--agent", "coordinator"]);
    let list = d.cli(&[
        "execution",
        "list",
        "--agent",
        "coordinator",
        "--limit",
        "1",
        "--json",
    ]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let root = list["executions"][0]["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.run_shown(&["execution", "show", &root], &["execution", "show", "ID"]);
    t.run(&["execution", "list", "--since", "last tuesday"]);
    assert_transcript(
        "agents_working_together_through_a_daemon",
        "conversations, delegation, the protocols and the execution history with a daemon running",
        env,
        &t.log,
    );
}
