//! The memory's interfaces end to end: `caxton memory ...` and `/api/v1/memory/...` against a
//! real daemon with the real all-MiniLM-L6-v2; the MCP memory server's own file; `kill -9` of
//! the daemon in the middle of a burst of writes; many clients at once; bad input; scopes.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    Daemon, DaemonOptions, Env, FakeLlm, echo_agent, http, models_dir, read_response, text,
};

/// The file the reference MCP memory server (`@modelcontextprotocol/server-memory`) wrote.
const MCP_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/memory/tests/fixtures/mcp-server-memory.jsonl"
);

fn models() -> PathBuf {
    let dir = models_dir();
    assert!(
        dir.join("all-MiniLM-L6-v2/model.safetensors").is_file(),
        "the embedding model is not in {}: run scripts/fetch-models.sh (scripts/setup.sh does)",
        dir.display()
    );
    dir
}

fn model_env() -> Vec<(String, String)> {
    vec![("CAXTON_MODELS_DIR".into(), models().display().to_string())]
}

/// A daemon whose memory embeds with the real model.
fn memory_daemon() -> Daemon {
    Daemon::start(DaemonOptions::offline(&models()))
}

/// The CLI's standard output, failing the test when the command failed.
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    text(&out.stdout)
}

/// The CLI's error message, failing the test when the command succeeded.
fn refused(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "command succeeded: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

fn api(d: &Daemon, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    http(
        &d.env.socket,
        method,
        path,
        body.map(|b| b.to_string()).as_deref(),
    )
    .unwrap()
}

/// One request whose body may be any bytes (invalid UTF-8 included).
fn raw(socket: &Path, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let mut stream = UnixStream::connect(socket).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: caxton\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    read_response(&mut stream).unwrap()
}

/// A scope's graph as the API exports it, without what legitimately differs between copies
/// (scope, times): entities with type, metadata, observation texts and embeddings; relations.
fn graph(d: &Daemon, scope: &str) -> (Vec<Value>, Vec<Value>) {
    let (code, export) = api(
        d,
        "GET",
        &format!("/api/v1/memory/export?scope={scope}"),
        None,
    );
    assert_eq!(code, 200, "{export}");
    let mut entities: Vec<Value> = export["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut observations: Vec<Value> = e["observations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| json!([o["text"], o["embedding"]]))
                .collect();
            observations.sort_by_key(Value::to_string);
            json!({"name": e["name"], "type": e["entity_type"], "metadata": e["metadata"], "observations": observations})
        })
        .collect();
    entities.sort_by_key(Value::to_string);
    let mut relations: Vec<Value> = export["relations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r["from"], r["relation_type"], r["to"], r["strength"]]))
        .collect();
    relations.sort_by_key(Value::to_string);
    (entities, relations)
}

#[test]
fn the_cli_stores_finds_walks_exports_and_imports_a_graph() {
    let d = memory_daemon();
    let acme = "workspace:acme";
    let out = ok(&d.cli(&[
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
    ]));
    assert_eq!(
        out.trim(),
        "created Ada Lovelace (person) in workspace:acme: 2 observations added"
    );
    ok(&d.cli(&[
        "memory",
        "add",
        "Analytical Engine",
        "A mechanical general-purpose computer",
        "--type",
        "machine",
        "--scope",
        acme,
    ]));
    ok(&d.cli(&[
        "memory",
        "add",
        "Charles Babbage",
        "Mathematician who designed calculating machines",
        "--type",
        "person",
        "--scope",
        acme,
    ]));
    // Adding a fact without --type keeps the entity's type, and a known fact is not repeated.
    let out = ok(&d.cli(&[
        "memory",
        "add",
        "Ada Lovelace",
        "Prefers green tea in the morning",
        "Daughter of Lord Byron",
        "--scope",
        acme,
    ]));
    assert_eq!(
        out.trim(),
        "updated Ada Lovelace (person) in workspace:acme: 1 observation added, 1 already known"
    );
    let out = ok(&d.cli(&[
        "memory",
        "relate",
        "Ada Lovelace",
        "wrote_about",
        "Analytical Engine",
        "--scope",
        acme,
    ]));
    assert_eq!(
        out.trim(),
        "related Ada Lovelace --wrote_about--> Analytical Engine in workspace:acme"
    );
    ok(&d.cli(&[
        "memory",
        "relate",
        "Charles Babbage",
        "designed",
        "Analytical Engine",
        "--strength",
        "0.9",
        "--scope",
        acme,
    ]));

    // By meaning: no word of the question is in the fact it finds.
    let out = ok(&d.cli(&[
        "memory",
        "search",
        "what does she like to drink",
        "--mode",
        "semantic",
        "-n",
        "1",
        "--scope",
        acme,
    ]));
    assert!(
        out.contains("Ada Lovelace (person): Prefers green tea in the morning"),
        "{out}"
    );
    let found: Value = serde_json::from_str(&ok(&d.cli(&[
        "memory",
        "search",
        "computing machine",
        "--scope",
        acme,
        "--type",
        "machine",
        "--json",
    ])))
    .unwrap();
    assert_eq!(found["hits"][0]["name"], "Analytical Engine", "{found}");
    assert_eq!(found["hits"].as_array().unwrap().len(), 1, "{found}");

    let out = ok(&d.cli(&["memory", "show", "Ada Lovelace", "--scope", acme]));
    for line in [
        "Ada Lovelace (person) in workspace:acme",
        r#"  metadata: {"born":1815}"#,
        "  - Prefers green tea in the morning",
        "  - Wrote the first published algorithm",
        "  - Daughter of Lord Byron",
        "  Ada Lovelace --wrote_about--> Analytical Engine",
    ] {
        assert!(out.lines().any(|l| l == line), "no {line:?} in:\n{out}");
    }

    let out = ok(&d.cli(&[
        "memory",
        "neighbours",
        "Ada Lovelace",
        "--depth",
        "2",
        "--scope",
        acme,
    ]));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "1  Analytical Engine (machine)  via Ada Lovelace --wrote_about--> Analytical Engine",
            "2  Charles Babbage (person)  via Charles Babbage --designed (0.90)--> Analytical Engine",
        ]
    );
    let out = ok(&d.cli(&[
        "memory",
        "path",
        "Ada Lovelace",
        "Charles Babbage",
        "--scope",
        acme,
    ]));
    assert_eq!(
        out.trim(),
        "Ada Lovelace --wrote_about--> Analytical Engine <--designed-- Charles Babbage"
    );

    // Export, then import into another scope of the same daemon and into a fresh daemon.
    let file = d.env.data_dir().join("acme.json");
    let file_arg = file.to_str().unwrap();
    let out = ok(&d.cli(&["memory", "export", file_arg, "--scope", acme]));
    assert!(
        out.starts_with("exported 3 entities and 2 relations from workspace:acme"),
        "{out}"
    );
    let out = ok(&d.cli(&["memory", "import", file_arg, "--scope", "workspace:copy"]));
    assert!(
        out.contains("into workspace:copy: 3 entities created, 0 merged, 5 observations added"),
        "{out}"
    );
    let original = graph(&d, acme);
    assert_eq!(original.0.len(), 3);
    assert_eq!(graph(&d, "workspace:copy"), original);

    let fresh = memory_daemon();
    let out = ok(&fresh.cli(&["memory", "import", file_arg]));
    assert!(out.contains("into the scopes it names"), "{out}");
    assert_eq!(graph(&fresh, acme), original, "same graph, same vectors");
    let out = ok(&fresh.cli(&[
        "memory",
        "search",
        "a tea drinker",
        "-n",
        "1",
        "--scope",
        acme,
    ]));
    assert!(out.contains("Ada Lovelace"), "{out}");

    // Forgetting a fact and a relation in the copy leaves the original alone.
    let copy = "workspace:copy";
    let out = ok(&d.cli(&[
        "memory",
        "forget",
        "Ada Lovelace",
        "Prefers green tea in the morning",
        "--scope",
        copy,
    ]));
    assert!(
        out.contains("forgot 1 of Ada Lovelace's observations"),
        "{out}"
    );
    let unrelate = [
        "memory",
        "unrelate",
        "Ada Lovelace",
        "wrote_about",
        "Analytical Engine",
        "--scope",
        copy,
    ];
    let out = ok(&d.cli(&unrelate));
    assert!(
        out.contains("removed Ada Lovelace --wrote_about--> Analytical Engine"),
        "{out}"
    );
    let shown = ok(&d.cli(&["memory", "show", "Ada Lovelace", "--scope", copy]));
    assert!(
        !shown.contains("green tea") && !shown.contains("wrote_about"),
        "{shown}"
    );
    assert_eq!(graph(&d, acme), original);
    let missing = d.cli(&unrelate);
    assert!(!missing.status.success());
    assert!(
        crate::support::text(&missing.stderr).contains("wrote_about"),
        "{}",
        crate::support::text(&missing.stderr)
    );
}

#[test]
fn the_mcp_memory_servers_file_moves_in_and_back_out_through_the_cli() {
    let d = memory_daemon();
    let out = ok(&d.cli(&["memory", "import", MCP_FIXTURE, "--scope", "workspace:mcp"]));
    assert!(
        out.contains("(mcp format) into workspace:mcp: 4 entities created"),
        "recognised by its content: {out}"
    );
    let out = ok(&d.cli(&["memory", "show", "John_Smith", "--scope", "workspace:mcp"]));
    assert!(out.contains("  - Speaks fluent Spanish"), "{out}");
    assert!(
        out.contains("  John_Smith --works at--> Anthropic"),
        "{out}"
    );
    let out = ok(&d.cli(&[
        "memory",
        "search",
        "capital city of Portugal",
        "-n",
        "1",
        "--scope",
        "workspace:mcp",
    ]));
    assert!(out.contains("Lisboa (city)"), "{out}");

    let file = d.env.data_dir().join("back.jsonl");
    ok(&d.cli(&[
        "memory",
        "export",
        file.to_str().unwrap(),
        "--format",
        "mcp",
        "--scope",
        "workspace:mcp",
    ]));
    let written = std::fs::read_to_string(&file).unwrap();
    let original = std::fs::read_to_string(MCP_FIXTURE).unwrap();
    // The reference server's file lists one relation twice; Caxton keeps a relation once.
    let lines = |s: &str| s.lines().map(str::to_owned).collect::<BTreeSet<_>>();
    assert_eq!(lines(&written), lines(&original));
    assert_eq!(written.lines().count(), lines(&original).len());
    assert!(
        !written.ends_with('\n'),
        "no newline after the last line, as the server writes"
    );
}

#[test]
fn the_cli_works_without_a_daemon_and_a_daemon_started_later_sees_the_same_memory() {
    let env = Env::new(&DaemonOptions::offline(&models()));
    let vars = [("CAXTON_MODELS_DIR", models())];
    let out = env.cli_with_env(
        &[
            "memory",
            "add",
            "Lighthouse",
            "Its lamp is lit at dusk",
            "--type",
            "place",
            "--scope",
            "global",
        ],
        &vars,
    );
    assert_eq!(
        ok(&out).trim(),
        "created Lighthouse (place) in global: 1 observation added"
    );
    let out = env.cli_with_env(
        &[
            "memory",
            "search",
            "when is the light switched on",
            "--scope",
            "global",
        ],
        &vars,
    );
    assert!(ok(&out).contains("Lighthouse (place)"));
    let out = env.cli_with_env(&["memory", "show", "Nowhere", "--scope", "global"], &vars);
    assert!(
        refused(&out).contains(r#"no entity named "Nowhere" in scope global"#),
        "the same message as the API's"
    );

    let d = Daemon::start_in(env, &model_env());
    let out = ok(&d.cli(&["memory", "show", "Lighthouse", "--scope", "global"]));
    assert!(out.contains("  - Its lamp is lit at dusk"), "{out}");
}

/// What one client of the burst got acknowledged.
#[derive(Default)]
struct Acked {
    entities: Vec<(String, String)>,
    observations: Vec<(String, String)>,
    relations: Vec<(String, String)>,
    /// Answers other than 2xx that were not caused by the kill.
    unexpected: Vec<String>,
}

/// Rows 2 to 4 of the operator's fault list (docs/faults.md) against one kill: a write burst and
/// a running worker when the daemon is killed; every acknowledged write, no worker left, the
/// socket bound again by the next daemon.
#[test]
fn acknowledged_writes_survive_kill_9_of_the_daemon_in_a_burst() {
    // A worker waiting on a model that never answers runs through the whole burst.
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::offline(&models());
    opts.llm_url = llm.base_url();
    let mut d = Daemon::start(opts);
    d.deploy(
        "waiter",
        &echo_agent(
            "waiter",
            "[llm]\nprovider = \"fake\"\n[limits]\ntimeout = \"60s\"\n",
        ),
    );
    let stuck = d.run_in_background("waiter", "[hang]");
    let worker = d.wait_for_worker("waiter");
    let socket = d.env.socket.clone();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let socket = socket.clone();
            let acked = acked.clone();
            std::thread::spawn(move || {
                let post = |path: &str, body: Value| {
                    http(&socket, "POST", path, Some(&body.to_string()))
                };
                let mut previous: Option<String> = None;
                for i in 0.. {
                    let name = format!("c{c}-{i}");
                    let fact = format!("client {c} wrote note number {i}");
                    // Three kinds of write: an entity, an observation, a relation.
                    let writes = [
                        (
                            "/api/v1/memory/entities?scope=workspace:burst".to_owned(),
                            json!({"name": name, "entity_type": "note", "observations": [fact]}),
                        ),
                        (
                            format!("/api/v1/memory/entities/{name}/observations?scope=workspace:burst"),
                            json!({"observations": [format!("{fact}, again")]}),
                        ),
                        (
                            "/api/v1/memory/relations?scope=workspace:burst".to_owned(),
                            json!({"from": name, "to": previous.clone().unwrap_or_else(|| name.clone()), "relation_type": "follows"}),
                        ),
                    ];
                    for (k, (path, body)) in writes.into_iter().enumerate() {
                        match post(&path, body) {
                            Ok((200 | 201, _)) => {
                                let mut a = acked.lock().unwrap();
                                match k {
                                    0 => a.entities.push((name.clone(), fact.clone())),
                                    1 => a.observations.push((name.clone(), format!("{fact}, again"))),
                                    _ => a.relations.push((
                                        name.clone(),
                                        previous.clone().unwrap_or_else(|| name.clone()),
                                    )),
                                }
                            }
                            // The daemon died: no answer, or a connection refused.
                            Ok((0, _)) | Err(_) => return,
                            Ok((code, body)) => {
                                acked.lock().unwrap().unexpected.push(format!("{code} {body}"));
                                return;
                            }
                        }
                    }
                    previous = Some(name);
                }
            })
        })
        .collect();

    let start = Instant::now();
    while acked.lock().unwrap().entities.len() < 40 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the burst is too slow: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = d.signal_and_wait(libc::SIGKILL);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    for c in clients {
        c.join().unwrap();
    }
    // The worker died with its supervisor (its parent-death signal), and its caller heard.
    let gone = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{worker}")).exists() {
        assert!(
            Instant::now() < gone,
            "worker {worker} outlived its supervisor"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !matches!(stuck.join().unwrap(), Ok((200, _))),
        "the killed daemon's request was answered"
    );
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.unexpected.is_empty(), "{:?}", acked.unexpected);

    // The next daemon binds the same socket path over the dead one's file, and runs requests.
    let Daemon { env, .. } = d;
    let d = Daemon::start_in(env, &model_env());
    let (code, body) = d.run("waiter", "after the kill");
    assert_eq!(code, 200, "{body}");
    let out = ok(&d.cli(&["memory", "stats", "--check", "--scope", "workspace:burst"]));
    assert!(out.contains("integrity:     ok"), "{out}");
    let stats: Value = serde_json::from_str(&ok(&d.cli(&[
        "memory",
        "stats",
        "--scope",
        "workspace:burst",
        "--json",
    ])))
    .unwrap();
    assert!(
        stats["entities"].as_u64().unwrap() >= acked.entities.len() as u64,
        "{stats}"
    );

    let (code, export) = api(
        &d,
        "GET",
        "/api/v1/memory/export?scope=workspace:burst&embeddings=false",
        None,
    );
    assert_eq!(code, 200, "{export}");
    let mut facts = BTreeSet::new();
    for e in export["entities"].as_array().unwrap() {
        for o in e["observations"].as_array().unwrap() {
            facts.insert((
                e["name"].as_str().unwrap().to_owned(),
                o["text"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let relations: BTreeSet<(String, String)> = export["relations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["from"].as_str().unwrap().to_owned(),
                r["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for fact in acked.entities.iter().chain(&acked.observations) {
        assert!(facts.contains(fact), "acknowledged {fact:?} is lost");
    }
    for relation in &acked.relations {
        assert!(
            relations.contains(relation),
            "acknowledged relation {relation:?} is lost"
        );
    }
    // Every vector came back into the search index, not only into the table.
    assert_eq!(
        stats["indexed_vectors"].as_u64().unwrap(),
        stats["observations"].as_u64().unwrap()
    );
}

#[test]
fn many_clients_writing_and_reading_at_once_never_see_a_busy_database() {
    let d = memory_daemon();
    let socket = d.env.socket.clone();
    const CLIENTS: usize = 8;
    const ROUNDS: usize = 8;
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let socket = socket.clone();
            let failures = failures.clone();
            std::thread::spawn(move || {
                let check = |what: &str, answer: std::io::Result<(u16, Value)>| match answer {
                    Ok((200 | 201, body)) => body,
                    Ok((code, body)) => {
                        failures.lock().unwrap().push(format!("{what}: {code} {body}"));
                        Value::Null
                    }
                    Err(e) => {
                        failures.lock().unwrap().push(format!("{what}: {e}"));
                        Value::Null
                    }
                };
                for r in 0..ROUNDS {
                    let body = json!({"name": format!("w{c}-{r}"), "entity_type": "note", "observations": [format!("worker {c} finished task {r}")]});
                    check("upsert", http(&socket, "POST", "/api/v1/memory/entities?scope=global", Some(&body.to_string())));
                    // Everyone also writes to one shared entity: the writes contend for one row.
                    let body = json!({"name": "hub", "entity_type": "log", "observations": [format!("client {c} round {r}")]});
                    check("shared upsert", http(&socket, "POST", "/api/v1/memory/entities?scope=global", Some(&body.to_string())));
                    check("keyword search", http(&socket, "GET", &format!("/api/v1/memory/search?scope=global&mode=keyword&query=worker+{c}"), None));
                    let found = check("semantic search", http(&socket, "GET", "/api/v1/memory/search?scope=global&mode=semantic&query=which+tasks+are+done&limit=5", None));
                    if found != Value::Null && found["hits"].as_array().is_none_or(Vec::is_empty) {
                        failures.lock().unwrap().push(format!("semantic search found nothing: {found}"));
                    }
                    check("show", http(&socket, "GET", &format!("/api/v1/memory/entities/w{c}-{r}?scope=global"), None));
                    check("stats", http(&socket, "GET", "/api/v1/memory/stats", None));
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed requests: {:#?}\ndaemon log:\n{}",
        failures.len(),
        &failures[..failures.len().min(10)],
        d.log()
    );
    let (_, stats) = api(
        &d,
        "GET",
        "/api/v1/memory/stats?scope=global&check=true",
        None,
    );
    assert_eq!(stats["entities"], (CLIENTS * ROUNDS + 1) as u64, "{stats}");
    assert_eq!(
        stats["observations"],
        (2 * CLIENTS * ROUNDS) as u64,
        "{stats}"
    );
    assert_eq!(stats["integrity"], "ok", "{stats}");
}

#[test]
fn oversized_observations_and_invalid_utf8_are_refused_and_nothing_stored_is_lost() {
    let d = memory_daemon();
    let socket = d.env.socket.clone();
    let (code, body) = api(
        &d,
        "POST",
        "/api/v1/memory/entities?scope=global",
        Some(
            json!({"name": "Keeper", "entity_type": "note", "observations": ["the original fact"]}),
        ),
    );
    assert_eq!(code, 201, "{body}");
    let stats = || api(&d, "GET", "/api/v1/memory/stats?scope=global", None).1;
    let before = stats();

    let big = "x".repeat(9000);
    let (code, body) = api(
        &d,
        "POST",
        "/api/v1/memory/entities?scope=global",
        Some(json!({"name": "Keeper", "observations": ["a fine fact", big]})),
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["kind"], "invalid_input");
    assert_eq!(
        body["error"]["message"],
        "invalid observation text: 9000 bytes, the limit is 8192"
    );
    let err = refused(&d.cli(&["memory", "add", "Keeper", &big, "--scope", "global"]));
    assert!(err.contains("observation text: 9000 bytes"), "{err}");

    let (code, body) = raw(
        &socket,
        "POST",
        "/api/v1/memory/entities?scope=global",
        b"{\"name\":\"Keeper\",\"observations\":[\"caf\xe9\"]}",
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["kind"], "invalid_utf8");
    assert_eq!(
        body["error"]["message"],
        "request body is not valid UTF-8 (first bad byte at offset 37)"
    );

    // An import is all or nothing: the good first line is not stored either.
    let mcp = b"{\"type\":\"entity\",\"name\":\"Fresh\",\"entityType\":\"t\",\"observations\":[\"fine\"]}\n{\"type\":\"entity\",\"name\":\"Bad\",\"entityType\":\"t\",\"observations\":[\"caf\xe9\"]}";
    let (code, body) = raw(&socket, "POST", "/api/v1/memory/import?scope=global", mcp);
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["kind"], "import_refused");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("line 2") && message.contains("UTF-8"),
        "{message}"
    );
    let (code, _) = api(
        &d,
        "GET",
        "/api/v1/memory/entities/Fresh?scope=global",
        None,
    );
    assert_eq!(code, 404);

    let file = d.env.data_dir().join("bad.jsonl");
    std::fs::write(&file, mcp).unwrap();
    let err = refused(&d.cli(&[
        "memory",
        "import",
        file.to_str().unwrap(),
        "--scope",
        "global",
    ]));
    assert!(
        err.contains(&format!(
            "{}: import refused, nothing was changed: line 2",
            file.display()
        )),
        "names the file and the line: {err}"
    );

    let export = json!({
        "format": "caxton-memory", "version": 1, "exported_at": "2026-01-01T00:00:00Z",
        "embedding_model": "sentence-transformers/all-MiniLM-L6-v2", "dimensions": 384,
        "entities": [
            {"scope": "global", "name": "Fine", "entity_type": "t", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "observations": []},
            {"scope": "global", "name": "Huge", "entity_type": "t", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
             "observations": [{"text": big, "created_at": "2026-01-01T00:00:00Z"}]}
        ],
        "relations": []
    });
    let (code, body) = api(&d, "POST", "/api/v1/memory/import", Some(export));
    assert_eq!(code, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(r#"entities[1] "Huge""#) && message.contains("9000 bytes"),
        "{message}"
    );

    assert_eq!(stats(), before, "nothing was added or lost");
    let (code, body) = api(
        &d,
        "GET",
        "/api/v1/memory/entities/Keeper?scope=global",
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(
        body["entity"]["observations"][0]["text"],
        "the original fact"
    );
    assert_eq!(body["entity"]["observations"].as_array().unwrap().len(), 1);
    let (_, checked) = api(&d, "GET", "/api/v1/memory/stats?check=true", None);
    assert_eq!(checked["integrity"], "ok");
}

#[test]
fn an_agents_private_memory_is_invisible_from_another_scope() {
    let d = memory_daemon();
    let (code, body) = api(
        &d,
        "POST",
        "/api/v1/memory/entities?scope=agent-only:a",
        Some(
            json!({"name": "Secret plan", "entity_type": "plan", "observations": ["Meet at the lighthouse at dawn"]}),
        ),
    );
    assert_eq!(code, 201, "{body}");
    for mode in ["semantic", "keyword", "hybrid"] {
        let (code, body) = api(
            &d,
            "GET",
            &format!(
                "/api/v1/memory/search?scope=agent-only:b&mode={mode}&query=lighthouse+meeting+at+dawn"
            ),
            None,
        );
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["hits"], json!([]), "{mode}: {body}");
        let (_, body) = api(
            &d,
            "GET",
            &format!(
                "/api/v1/memory/search?scope=agent-only:a&mode={mode}&query=lighthouse+meeting+at+dawn"
            ),
            None,
        );
        assert_eq!(body["hits"][0]["name"], "Secret plan", "{mode}: {body}");
    }
    let (code, body) = api(
        &d,
        "GET",
        "/api/v1/memory/entities/Secret%20plan?scope=agent-only:b",
        None,
    );
    assert_eq!(code, 404);
    assert_eq!(
        body["error"]["message"],
        r#"no entity named "Secret plan" in scope agent-only:b"#
    );
    let (code, _) = api(
        &d,
        "GET",
        "/api/v1/memory/entities/Secret%20plan/neighbours?scope=agent-only:b",
        None,
    );
    assert_eq!(code, 404);
    let (_, body) = api(&d, "GET", "/api/v1/memory/stats?scope=agent-only:b", None);
    assert_eq!(body["entities"], 0, "{body}");
    let (_, body) = api(&d, "GET", "/api/v1/memory/export?scope=agent-only:b", None);
    assert_eq!(body["entities"], json!([]), "{body}");
    // Searching both scopes finds it, labelled with the scope it lives in.
    let (_, body) = api(
        &d,
        "GET",
        "/api/v1/memory/search?scope=agent-only:b&scope=agent-only:a&query=lighthouse",
        None,
    );
    assert_eq!(body["hits"][0]["scope"], "agent-only:a", "{body}");
    // And a request that names no scope is refused rather than defaulting to one.
    let (code, body) = api(&d, "GET", "/api/v1/memory/search?query=lighthouse", None);
    assert_eq!(code, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("scope is required"),
        "{body}"
    );
}

#[test]
fn a_real_full_disk_refuses_memory_writes_keeps_every_acknowledged_one_and_recovers() {
    // The memory database on a 1 MiB tmpfs the daemon mounts in a user and mount namespace of
    // its own (no root needed); the socket and everything else stay on the test's disk.
    if !std::process::Command::new("unshare")
        .args(["-Urm", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("SKIPPED: no unprivileged user namespaces here (`unshare -Urm` failed)");
        return;
    }
    let mut opts = DaemonOptions::offline(&models());
    let scratch = tempfile::tempdir().unwrap();
    let small = scratch.path().join("small");
    std::fs::create_dir(&small).unwrap();
    opts.extra_config = format!(
        "[memory]\ndatabase = \"{}\"\n",
        small.join("memory.db").display()
    );
    let env = Env::new(&opts);
    let wrapper: Vec<String> = [
        "unshare",
        "-Urm",
        "sh",
        "-c",
        "mount -t tmpfs -o size=1m tmpfs \"$0\" && exec \"$@\"",
    ]
    .into_iter()
    .map(String::from)
    .chain([small.display().to_string()])
    .collect();
    let d = Daemon::start_wrapped(env, &opts.env, &wrapper);

    let mut acknowledged = Vec::new();
    let full = loop {
        assert!(acknowledged.len() < 5000, "1 MiB never filled up");
        let name = format!("note-{}", acknowledged.len());
        let fact = format!("{name}: {}", "a fact worth keeping ".repeat(20));
        let (code, body) = api(
            &d,
            "POST",
            "/api/v1/memory/entities?scope=workspace:disk",
            Some(json!({"name": name, "entity_type": "note", "observations": [fact]})),
        );
        match code {
            200 | 201 => acknowledged.push(name),
            _ => break (code, body),
        }
    };
    assert_eq!(full.0, 507, "{}", full.1);
    assert_eq!(full.1["error"]["kind"], "disk_full", "{}", full.1);
    assert!(
        full.1["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no space on the disk"),
        "{}",
        full.1
    );
    assert!(
        acknowledged.len() > 10,
        "only {} writes fit",
        acknowledged.len()
    );
    // Runs do not need the memory disk, and reads still work: every acknowledged write is there.
    assert_eq!(api(&d, "GET", "/api/v1/health", None).0, 200);
    let kept: BTreeSet<String> = graph(&d, "workspace:disk")
        .0
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect();
    for name in &acknowledged {
        assert!(kept.contains(name), "{name} was acknowledged and is gone");
    }

    // Space comes back (the tmpfs grows): writes work again, without a restart.
    let grown = std::process::Command::new("nsenter")
        .args([
            "-t",
            &d.pid().to_string(),
            "-U",
            "-m",
            "--preserve-credentials",
        ])
        .args(["mount", "-o", "remount,size=8m"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(grown.success(), "could not grow the tmpfs");
    let (code, body) = api(
        &d,
        "POST",
        "/api/v1/memory/entities?scope=workspace:disk",
        Some(json!({"name": "after", "entity_type": "note", "observations": ["space again"]})),
    );
    assert!(matches!(code, 200 | 201), "{code} {body}");
}
