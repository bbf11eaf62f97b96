//! Export and import: Caxton's JSON round trip, refusal of bad files without any change, a
//! change of embedding model, and the MCP memory server's JSON-lines file.

use std::process::Command;

use caxton_memory::{
    ExportRequest, ImportOptions, Memory, MemoryError, MemoryExport, Relation, Scope, SearchMode,
    SearchRequest,
};

use crate::common::{entity, memory, ws};

const MCP_FIXTURE: &str = include_str!("../fixtures/mcp-server-memory.jsonl");

fn seeded() -> (tempfile::TempDir, Memory) {
    let (dir, m) = memory();
    let acme = ws("acme");
    let mut alice = entity("Alice", "person", &["drinks green tea", "lives in Lisbon"]);
    alice.metadata = Some(
        serde_json::json!({"source": "chat", "n": 3})
            .as_object()
            .unwrap()
            .clone(),
    );
    m.upsert_entity(&acme, &alice).unwrap();
    m.upsert_entity(&acme, &entity("Acme", "company", &["makes anvils"]))
        .unwrap();
    m.upsert_entity(
        &Scope::agent("scribe").unwrap(),
        &entity("draft", "note", &["first line"]),
    )
    .unwrap();
    m.relate(
        &acme,
        &Relation {
            from: "Alice".into(),
            to: "Acme".into(),
            relation_type: "works_at".into(),
            strength: 0.75,
        },
    )
    .unwrap();
    (dir, m)
}

/// The graph without the export time, for comparing two exports.
fn graph_of(m: &Memory) -> serde_json::Value {
    let mut v = serde_json::to_value(m.export(&ExportRequest::default()).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("exported_at");
    v
}

fn export_bytes(m: &Memory) -> Vec<u8> {
    let mut out = Vec::new();
    m.export_json(&ExportRequest::default(), &mut out).unwrap();
    out
}

#[test]
fn a_round_trip_reproduces_the_same_graph_without_recomputing_embeddings() {
    let (_a, source) = seeded();
    let bytes = export_bytes(&source);
    let (_b, target) = memory();
    let report = target
        .import_json(&bytes, &ImportOptions::default())
        .unwrap();
    assert_eq!(
        (
            report.entities_created,
            report.observations_added,
            report.relations
        ),
        (3, 4, 1)
    );
    assert_eq!(
        report.embeddings_computed, 0,
        "same model: vectors taken from the file"
    );
    assert_eq!(graph_of(&target), graph_of(&source));

    let q = SearchRequest {
        mode: SearchMode::Semantic,
        ..SearchRequest::new("green tea", vec![ws("acme")])
    };
    assert_eq!(target.search(&q).unwrap(), {
        // Entity ids may differ between databases; everything else must not.
        let mut hits = source.search(&q).unwrap();
        for (h, t) in hits.iter_mut().zip(target.search(&q).unwrap()) {
            h.entity_id = t.entity_id;
            h.observation.as_mut().unwrap().id = t.observation.as_ref().unwrap().id;
        }
        hits
    });
    // Importing the same file again adds nothing.
    let again = target
        .import_json(&bytes, &ImportOptions::default())
        .unwrap();
    assert_eq!(
        (
            again.entities_merged,
            again.observations_added,
            again.observations_skipped
        ),
        (3, 0, 4)
    );
}

#[test]
fn another_model_s_file_is_re_embedded_on_import() {
    let (_a, source) = seeded();
    let mut export = source.export(&ExportRequest::default()).unwrap();
    export.embedding_model = "someone/else".into();
    let (_b, target) = memory();
    let report = target.import(&export, &ImportOptions::default()).unwrap();
    assert_eq!(report.embeddings_computed, 4);
    let hits = target
        .search(&SearchRequest {
            mode: SearchMode::Semantic,
            ..SearchRequest::new("Alice: drinks green tea", vec![ws("acme")])
        })
        .unwrap();
    assert!((hits[0].similarity.unwrap() - 1.0).abs() < 1e-5);
}

/// Import `bytes` into a memory holding one entity; assert it fails naming `record` and
/// that the memory is exactly as before.
fn refused(bytes: &[u8], record: &str) -> String {
    let (_dir, m) = memory();
    m.upsert_entity(&ws("acme"), &entity("Keep", "t", &["untouched"]))
        .unwrap();
    let before = graph_of(&m);
    let err = m.import_json(bytes, &ImportOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, MemoryError::Import { .. }), "{text}");
    assert!(text.contains(record), "expected {record:?} in: {text}");
    assert_eq!(graph_of(&m), before, "a refused import changed nothing");
    text
}

fn edited(f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let (_dir, m) = seeded();
    let mut v: serde_json::Value = serde_json::from_slice(&export_bytes(&m)).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn a_bad_file_changes_nothing_and_the_error_names_the_record() {
    refused(b"{\"format\": \"caxton-memory\", ", "file");
    refused(b"\xff\xfe not text", "file");
    let text = refused(&edited(|v| v["version"] = 7.into()), "file header");
    assert!(
        text.contains("version 7") && text.contains("reads version 1"),
        "{text}"
    );
    refused(
        &edited(|v| v["format"] = "neo4j-dump".into()),
        "file header",
    );
    refused(
        &edited(|v| {
            v["entities"][1]
                .as_object_mut()
                .unwrap()
                .remove("entity_type");
        }),
        "entities[1] \"Acme\"",
    );
    refused(
        &edited(|v| v["entities"][0]["observations"][1]["text"] = "x".repeat(9000).into()),
        "entities[0] \"Alice\" observations[1]",
    );
    refused(
        &edited(|v| v["entities"][0]["observations"][0]["embedding"] = "bm90IGEgdmVjdG9y".into()),
        "entities[0] \"Alice\" observations[0]",
    );
    refused(
        &edited(|v| v["entities"][2]["name"] = "".into()),
        "entities[2]",
    );
    // The relation's end is checked inside the transaction, after the entities were written:
    // those writes are rolled back too.
    let text = refused(
        &edited(|v| v["relations"][0]["to"] = "Nobody".into()),
        "relations[0]",
    );
    assert!(text.contains("\"Nobody\""), "{text}");
}

#[test]
fn import_can_move_everything_into_one_scope_and_merges_with_what_is_there() {
    let (_a, source) = seeded();
    let (_b, target) = memory();
    let mine = Scope::agent("me").unwrap();
    target
        .upsert_entity(
            &mine,
            &entity("Alice", "friend", &["drinks green tea", "plays chess"]),
        )
        .unwrap();
    let options = ImportOptions {
        scope: Some(mine.clone()),
    };
    let report = target
        .import_json(&export_bytes(&source), &options)
        .unwrap();
    assert_eq!((report.entities_created, report.entities_merged), (2, 1));
    let alice = target.entity(&mine, "Alice").unwrap().unwrap();
    let texts: Vec<&str> = alice.observations.iter().map(|o| o.text.as_str()).collect();
    assert_eq!(
        texts,
        ["drinks green tea", "plays chess", "lives in Lisbon"]
    );
    assert_eq!(alice.entity_type, "person", "the file's type wins");
    assert_eq!(alice.metadata["source"], "chat");
    assert_eq!(target.relations_of(&mine, "Acme").unwrap().len(), 1);
}

#[test]
fn the_mcp_memory_server_file_round_trips_byte_for_byte() {
    let (_dir, m) = memory();
    let s = ws("imported");
    let report = m.import_mcp_jsonl(MCP_FIXTURE.as_bytes(), &s).unwrap();
    assert_eq!((report.entities_created, report.observations_added), (4, 6));
    let john = m.entity(&s, "John_Smith").unwrap().unwrap();
    assert_eq!(john.entity_type, "person");
    assert_eq!(john.observations.len(), 3);
    let lisboa = m.entity(&s, "Lisboa").unwrap().unwrap();
    assert_eq!(
        lisboa.observations[1].text,
        "Known for \"pastéis de nata\" 🥐"
    );
    assert!(
        m.entity(&s, "Empty_Project")
            .unwrap()
            .unwrap()
            .observations
            .is_empty()
    );

    let mut out = Vec::new();
    m.export_mcp_jsonl(&s, &mut out).unwrap();
    // The server wrote one relation twice (it only deduplicates against the file, not within
    // one create_relations call); a graph holds it once, so the export has it once.
    let mut expected: Vec<&str> = Vec::new();
    for line in MCP_FIXTURE.split('\n') {
        if !expected.contains(&line) {
            expected.push(line);
        }
    }
    assert_eq!(String::from_utf8(out).unwrap(), expected.join("\n"));
    m.integrity_check().unwrap();
}

#[test]
fn a_bad_mcp_line_refuses_the_file_naming_the_line() {
    let (_dir, m) = memory();
    let s = ws("imported");
    let cases: [(&[u8], &str); 4] = [
        (b"{\"type\":\"entity\",\"name\":\"a\",\"entityType\":\"t\",\"observations\":[]}\n{\"type\":\"entity\"}", "line 2"),
        (b"{\"type\":\"entity\",\"name\":\"a\",\"entityType\":\"t\"}\n\n{\"type\":\"relation\",\"from\":\"a\",\"to\":\"zz\",\"relationType\":\"r\"}", "line 3"),
        (b"{\"type\":\"entity\",\"name\":\"\xc3(\",\"entityType\":\"t\"}", "line 1"),
        (b"{\"type\":\"blob\"}", "line 1"),
    ];
    for (bytes, line) in cases {
        let err = m.import_mcp_jsonl(bytes, &s).unwrap_err().to_string();
        assert!(err.contains(line), "expected {line}: {err}");
    }
    assert_eq!(m.stats(&[]).unwrap().entities, 0);
}

/// Where `scripts/install-test-clients.sh` puts the reference MCP memory server.
fn mcp_server_memory() -> std::path::PathBuf {
    use std::path::PathBuf;
    let cache = std::env::var_os("CAXTON_TOOLS_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("caxton")))
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".cache/caxton")
        });
    let dir = cache.join("mcp-server-memory-2026.8.31");
    assert!(
        dir.join(".installed").is_file(),
        "the reference MCP memory server is not installed: run scripts/install-test-clients.sh (scripts/setup.sh does)"
    );
    dir
}

#[test]
fn the_mcp_memory_server_reads_what_caxton_writes() {
    let (_dir, m) = seeded();
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("caxton.jsonl");
    let mut out = Vec::new();
    m.export_mcp_jsonl(&ws("acme"), &mut out).unwrap();
    std::fs::write(&file, &out).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mcp-memory-fixture.mjs"
    );
    let read = Command::new("node")
        .args([script, "read"])
        .arg(&file)
        .env("MCP_SERVER_MEMORY_DIR", mcp_server_memory())
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let graph: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(graph["entities"][0]["name"], "Alice");
    assert_eq!(graph["entities"][0]["observations"][1], "lives in Lisbon");
    assert_eq!(graph["relations"][0]["relationType"], "works_at");
}

#[test]
fn the_streamed_file_is_the_typed_export_whatever_the_graph_holds() {
    let same = |m: &Memory, scopes: Option<Vec<Scope>>| {
        let request = ExportRequest {
            scopes,
            include_embeddings: true,
        };
        let mut out = Vec::new();
        m.export_json(&request, &mut out).unwrap();
        let mut streamed: serde_json::Value = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
        let mut typed = serde_json::to_value(m.export(&request).unwrap()).unwrap();
        streamed.as_object_mut().unwrap().remove("exported_at");
        typed.as_object_mut().unwrap().remove("exported_at");
        assert_eq!(streamed, typed);
        typed
    };
    let (_e, empty) = memory();
    assert_eq!(same(&empty, None)["entities"], serde_json::json!([]));
    let (_s, m) = seeded();
    let lone = ws("lone");
    m.upsert_entity(&lone, &entity("Hermit", "person", &[]))
        .unwrap();
    let only = same(&m, Some(vec![lone]));
    assert_eq!(only["entities"][0]["observations"], serde_json::json!([]));
    assert_eq!(only["relations"], serde_json::json!([]));
    assert!(!same(&m, None)["relations"].as_array().unwrap().is_empty());
}

#[test]
fn exports_parse_back_into_the_typed_form() {
    let (_dir, m) = seeded();
    let typed: MemoryExport = serde_json::from_slice(&export_bytes(&m)).unwrap();
    assert_eq!(typed.entities.len(), 3);
    let only = m
        .export(&ExportRequest {
            scopes: Some(vec![ws("acme")]),
            include_embeddings: false,
        })
        .unwrap();
    assert_eq!(only.entities.len(), 2);
    assert!(only.entities[0].observations[0].embedding.is_none());
}
