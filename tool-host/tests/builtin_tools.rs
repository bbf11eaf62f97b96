//! The built-in tool servers and the SDK examples as `scripts/build-tools.sh` builds them: each
//! package loaded from its directory through its manifest and called the way an agent would,
//! asserting what the agent (and its user) would see.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot set up should fail loudly"
)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use caxton_tool_host::manifest::ToolManifest;
use caxton_tool_host::{CallContext, CallLimits, HostLimits, ToolCallError, ToolHost, ToolServer};
use serde_json::{Value, json};

/// Every package the build script builds, by directory under `tools/`.
const PACKAGES: &[&str] = &[
    "builtin/csv",
    "builtin/json",
    "builtin/chart",
    "builtin/fs",
    "builtin/http",
    "builtin/sqlite",
    "examples/echo-zig",
    "examples/echo-c",
];

fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tool-packages")
}

/// One host for the whole test binary; its compile cache outlives the run, so a second run
/// (and every test after the first per module) loads compiled code instead of compiling.
fn host() -> &'static ToolHost {
    static HOST: OnceLock<ToolHost> = OnceLock::new();
    HOST.get_or_init(|| {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("builtin-tools-cache");
        ToolHost::new(cache, HostLimits::default()).unwrap()
    })
}

/// The package's manifest and built module bytes, or a failure saying how to build them.
fn package(name: &str) -> (PathBuf, ToolManifest, Vec<u8>) {
    let dir = tools_dir().join(name);
    let manifest = ToolManifest::load(&dir).unwrap();
    let module = dir.join(&manifest.module);
    let wasm = std::fs::read(&module).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the tool modules are build outputs; run scripts/build-tools.sh",
            module.display()
        )
    });
    (dir, manifest, wasm)
}

fn server(name: &str) -> ToolServer {
    let (dir, _, _) = package(name);
    ToolServer::load(host(), &dir).unwrap()
}

fn call_in(server: &ToolServer, tool: &str, args: Value, ctx: &CallContext) -> Value {
    server
        .call(tool, &args, ctx)
        .unwrap_or_else(|e| panic!("{tool}({args}): {e}"))
}

fn call(server: &ToolServer, tool: &str, args: Value) -> Value {
    call_in(server, tool, args, &CallContext::default())
}

/// The text content of a successful result.
fn ok_text(result: &Value) -> &str {
    assert_eq!(result["isError"], false, "expected success: {result}");
    result["content"][0]["text"].as_str().unwrap()
}

/// The text of an `isError` result.
fn error_text(result: &Value) -> &str {
    assert_eq!(result["isError"], true, "expected a tool error: {result}");
    result["content"][0]["text"].as_str().unwrap()
}

fn imports(wasm: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let wasmparser::Payload::ImportSection(reader) = payload.unwrap() {
            for import in reader.into_imports() {
                let import = import.unwrap();
                out.push(format!("{}.{}", import.module, import.name));
            }
        }
    }
    out
}

// ---- every package ---------------------------------------------------------------------------

#[test]
fn every_package_imports_only_what_its_tools_need() {
    for name in PACKAGES {
        let (_, manifest, wasm) = package(name);
        let imports = imports(&wasm);
        let allowed = |i: &String| match manifest.name.as_str() {
            "file_system" => i.starts_with("wasi_snapshot_preview1."),
            "http_client" => i == "caxton.http_request" || i == "caxton.log",
            "sqlite_query" => i == "caxton.sqlite_query" || i == "caxton.log",
            _ => false,
        };
        let extra: Vec<_> = imports.iter().filter(|i| !allowed(i)).collect();
        assert!(extra.is_empty(), "{name} imports {extra:?}");
        // Kept small: instantiation cost and the on-disk cache grow with the module.
        assert!(wasm.len() < 256 << 10, "{name} is {} bytes", wasm.len());
    }
}

#[test]
fn every_manifest_tool_is_answered_by_its_module() {
    for name in PACKAGES {
        let (_, manifest, wasm) = package(name);
        let module = host().load(&manifest.name, &wasm).unwrap();
        for tool in &manifest.tools {
            // Without the schema check in front, empty arguments reach the module, which must
            // know the tool and, when the tool has required arguments, refuse them as a tool
            // error rather than crash.
            let result = module
                .call(&tool.name, "{}", CallLimits::default())
                .unwrap();
            let text = result["content"][0]["text"].as_str().unwrap();
            assert!(
                !text.contains("unknown tool"),
                "{name}: {}: {text}",
                tool.name
            );
            if tool.input_schema.get("required").is_some() {
                let text = error_text(&result);
                let want = format!("{}: invalid arguments: ", tool.name);
                assert!(text.starts_with(&want), "{name}: {text}");
            }
        }
        let result = module
            .call("no_such_tool", "{}", CallLimits::default())
            .unwrap();
        assert_eq!(
            error_text(&result),
            "unknown tool \"no_such_tool\"",
            "{name}"
        );
    }
}

// ---- the SDK examples ------------------------------------------------------------------------

#[test]
fn the_echo_examples_in_zig_and_c_answer_alike() {
    for name in ["examples/echo-zig", "examples/echo-c"] {
        let echo = server(name);
        let text = "Grüße, \"quoted\"\n\ttab \\ backslash \u{1F600}";
        let result = call(&echo, "echo", json!({ "text": text }));
        assert_eq!(ok_text(&result), text, "{name}");
        assert_eq!(result["content"][0]["type"], "text");
        let result = call(&echo, "echo", json!({ "text": "ab", "repeat": 3 }));
        assert_eq!(ok_text(&result), "ababab", "{name}");
        // The manifest's schema stops a bad argument before the module runs.
        let err = echo
            .call("echo", &json!({ "text": 5 }), &CallContext::default())
            .unwrap_err();
        assert!(
            matches!(err, ToolCallError::InvalidArguments { .. }),
            "{name}: {err}"
        );
    }
}

#[test]
fn the_echo_examples_report_their_own_errors_as_tool_errors() {
    for name in ["examples/echo-zig", "examples/echo-c"] {
        let (_, manifest, wasm) = package(name);
        let module = host().load(&manifest.name, &wasm).unwrap();
        // Past the schema (raw module call), the module's own check answers.
        let result = module
            .call(
                "echo",
                r#"{"text":"x","repeat":1000}"#,
                CallLimits::default(),
            )
            .unwrap();
        assert!(error_text(&result).contains("1000"), "{name}: {result}");
    }
}

#[test]
fn the_worked_example_in_the_abi_document_holds() {
    let echo = server("examples/echo-zig");
    let result = call(&echo, "echo", json!({ "text": "hi ", "repeat": 2 }));
    assert_eq!(
        result,
        json!({"content":[{"type":"text","text":"hi hi "}],"isError":false})
    );
    let (_, manifest, wasm) = package("examples/echo-zig");
    let module = host().load(&manifest.name, &wasm).unwrap();
    let result = module
        .call(
            "echo",
            r#"{"repeat":1000,"text":"hi "}"#,
            CallLimits::default(),
        )
        .unwrap();
    assert_eq!(
        result,
        json!({"content":[{"type":"text","text":"repeat must be at most 100, not 1000"}],"isError":true})
    );
}

// ---- csv_parser ------------------------------------------------------------------------------

const SALES: &str = "region,product,units,price,note\n\
North,Widget,12,2.50,\"first, batch\"\n\
South,Gadget,7,10.00,\"said \"\"hello\"\"\"\n\
North,Gadget,3,10.00,\"two\nlines\"\n\
East,Widget,,2.75,\n\
West,Widget,20,2.50,plain\n";

#[test]
fn csv_parse_handles_quotes_embedded_delimiters_and_newlines() {
    let csv = server("builtin/csv");
    let result = call(&csv, "csv_parse", json!({ "csv": SALES }));
    let text: Value = serde_json::from_str(ok_text(&result)).unwrap();
    let data = &result["structuredContent"];
    assert_eq!(&text, data, "the text is the structured content as JSON");
    assert_eq!(
        data["header"],
        json!(["region", "product", "units", "price", "note"])
    );
    assert_eq!(data["row_count"], 5);
    assert_eq!(data["truncated"], false);
    assert_eq!(
        data["rows"][0],
        json!(["North", "Widget", "12", "2.50", "first, batch"])
    );
    assert_eq!(data["rows"][1][4], "said \"hello\"");
    assert_eq!(data["rows"][2][4], "two\nlines");
    assert_eq!(data["rows"][3], json!(["East", "Widget", "", "2.75", ""]));

    // CRLF line ends, another delimiter, a byte-order mark, no header, a row limit.
    let result = call(
        &csv,
        "csv_parse",
        json!({ "csv": "\u{FEFF}a;b\r\n1;\"x;y\"\r\n2;z\r\n", "delimiter": ";",
                "has_header": false, "max_rows": 2 }),
    );
    let data = &result["structuredContent"];
    assert_eq!(data["header"], json!(["column_1", "column_2"]));
    assert_eq!(data["rows"], json!([["a", "b"], ["1", "x;y"]]));
    assert_eq!(data["row_count"], 3);
    assert_eq!(data["truncated"], true);

    let result = call(
        &csv,
        "csv_parse",
        json!({ "csv": "a\tb\n1\t2\n", "delimiter": "\\t" }),
    );
    assert_eq!(result["structuredContent"]["rows"], json!([["1", "2"]]));

    // Blank lines are skipped; a trailing delimiter is an empty last field; text after a
    // closing quote stays in the field; a quote inside an unquoted field is a character.
    let result = call(
        &csv,
        "csv_parse",
        json!({ "csv": "a,b\n\n1,\n\"x\"y,2 \"in\"\n\"\",3," }),
    );
    assert_eq!(
        result["structuredContent"]["rows"],
        json!([["1", ""], ["xy", "2 \"in\""], ["", "3", ""]])
    );
}

#[test]
fn csv_parse_names_the_line_of_an_unterminated_quote() {
    let csv = server("builtin/csv");
    let result = call(
        &csv,
        "csv_parse",
        json!({ "csv": "a,b\n1,2\n3,\"open\n4,5\n" }),
    );
    assert_eq!(
        error_text(&result),
        "unterminated quoted field starting on line 3"
    );
}

#[test]
fn csv_stats_gives_numeric_and_text_column_statistics() {
    let csv = server("builtin/csv");
    let result = call(&csv, "csv_stats", json!({ "csv": SALES }));
    let data = &result["structuredContent"];
    assert_eq!(data["row_count"], 5);
    let col = |name: &str| {
        data["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    let units = col("units");
    assert_eq!(units["type"], "numeric");
    assert_eq!(units["count"], 4);
    assert_eq!(units["missing"], 1);
    assert_eq!(units["min"], 3.0);
    assert_eq!(units["max"], 20.0);
    assert_eq!(units["sum"], 42.0);
    assert_eq!(units["mean"], 10.5);
    // Sample standard deviation of 12, 7, 3, 20: sqrt(161 / 3).
    let sd = units["stddev"].as_f64().unwrap();
    assert!((sd - (161.0f64 / 3.0).sqrt()).abs() < 1e-9, "{sd}");
    let price = col("price");
    assert_eq!(price["sum"], 27.75);
    assert_eq!(price["mean"], 5.55);
    assert_eq!(price["min"], 2.5);
    let region = col("region");
    assert_eq!(region["type"], "text");
    assert_eq!(region["count"], 5);
    assert_eq!(region["distinct"], 4);
    assert!(region.get("mean").is_none());
    let note = col("note");
    assert_eq!(
        (note["count"].clone(), note["missing"].clone()),
        (json!(4), json!(1))
    );

    // Only the columns asked for; a wrong name lists the real ones.
    let result = call(
        &csv,
        "csv_stats",
        json!({ "csv": SALES, "columns": ["Price"] }),
    );
    let columns = result["structuredContent"]["columns"].as_array().unwrap();
    assert_eq!(columns.len(), 1);
    assert_eq!(columns[0]["name"], "price");
    let result = call(
        &csv,
        "csv_stats",
        json!({ "csv": SALES, "columns": ["revenue"] }),
    );
    assert_eq!(
        error_text(&result),
        "no column \"revenue\"; the columns are \"region\", \"product\", \"units\", \"price\", \"note\""
    );
}

#[test]
fn csv_filter_compares_numbers_as_numbers_and_returns_csv_or_json() {
    let csv = server("builtin/csv");
    let result = call(
        &csv,
        "csv_filter",
        json!({ "csv": SALES, "column": "units", "op": ">", "value": 5 }),
    );
    // "12" > "5" only as numbers; quoting survives the round trip.
    assert_eq!(
        ok_text(&result),
        "region,product,units,price,note\n\
         North,Widget,12,2.50,\"first, batch\"\n\
         South,Gadget,7,10.00,\"said \"\"hello\"\"\"\n\
         West,Widget,20,2.50,plain\n"
    );
    assert_eq!(
        result["structuredContent"],
        json!({ "matched": 3, "total": 5, "truncated": false })
    );

    let result = call(
        &csv,
        "csv_filter",
        json!({ "csv": SALES, "column": "product", "op": "==", "value": "gadget",
                "ignore_case": true, "format": "json" }),
    );
    let data = &result["structuredContent"];
    assert_eq!(data["matched"], 2);
    assert_eq!(data["rows"][0][0], "South");
    assert_eq!(data["rows"][1][4], "two\nlines");
    assert_eq!(data["header"][2], "units");

    let rows = |op: &str, value: Value| {
        let r = call(
            &csv,
            "csv_filter",
            json!({ "csv": SALES, "column": "price", "op": op, "value": value, "format": "json" }),
        );
        r["structuredContent"]["matched"].as_u64().unwrap()
    };
    assert_eq!(rows("==", json!("2.5")), 2, "2.50 == 2.5 as numbers");
    assert_eq!(rows("!=", json!(10)), 3);
    assert_eq!(rows("<", json!(10)), 3);
    assert_eq!(rows("<=", json!(10)), 5);
    assert_eq!(rows(">=", json!(2.75)), 3);
    let result = call(
        &csv,
        "csv_filter",
        json!({ "csv": SALES, "column": "note", "op": "contains", "value": "line" }),
    );
    assert_eq!(result["structuredContent"]["matched"], 1);
}

#[test]
fn csv_stats_handles_a_file_of_twenty_thousand_rows() {
    let csv = server("builtin/csv");
    let mut text = String::from("n,label\n");
    for i in 0..20_000 {
        text.push_str(&format!("{i},\"row {}, group\"\n", i % 7));
    }
    let result = call(&csv, "csv_stats", json!({ "csv": text }));
    let columns = &result["structuredContent"]["columns"];
    assert_eq!(columns[0]["count"], 20_000);
    assert_eq!(columns[0]["sum"], 199_990_000.0);
    assert_eq!(columns[0]["mean"], 9999.5);
    assert_eq!(columns[0]["max"], 19_999.0);
    assert_eq!(columns[1]["distinct"], 7);
}

// ---- json_query ------------------------------------------------------------------------------

const STORE: &str = r#"{"store": {"books": [
  {"title": "Sayings of the Century", "price": 8.95, "tags": ["quotes"]},
  {"title": "Sword of Honour", "price": 12.99, "isbn": "0-553-21311-3"},
  {"title": "Moby Dick", "price": 8.99, "isbn": "0-395-19395-8"}
], "bicycle": {"color": "red", "price": 19.95}, "odd key.with dot": 1}}"#;

#[test]
fn json_query_selects_by_path() {
    let q = server("builtin/json");
    let query = |path: &str| {
        let r = call(&q, "json_query", json!({ "document": STORE, "path": path }));
        let text: Value = serde_json::from_str(ok_text(&r)).unwrap();
        assert_eq!(text, r["structuredContent"]);
        r["structuredContent"].clone()
    };
    assert_eq!(
        query("$.store.books[0].title")["matches"],
        json!(["Sayings of the Century"])
    );
    assert_eq!(
        query("store.books[-1].title")["matches"],
        json!(["Moby Dick"])
    );
    let r = query("$.store.books[*].isbn");
    assert_eq!(r["matches"], json!(["0-553-21311-3", "0-395-19395-8"]));
    assert_eq!(r["count"], 2);
    // Numbers come back exactly as written.
    assert_eq!(
        query("$..price")["matches"].to_string(),
        "[8.95,12.99,8.99,19.95]"
    );
    assert_eq!(
        query("$.store.books[1:3].price")["matches"],
        json!([12.99, 8.99])
    );
    assert_eq!(query("$.store['odd key.with dot']")["matches"], json!([1]));
    assert_eq!(query("$.store.bicycle.*")["matches"], json!(["red", 19.95]));
    assert_eq!(query("$.store.nothing")["count"], 0);

    // The document may also be a JSON value rather than text.
    let r = call(
        &q,
        "json_query",
        json!({ "document": {"a": {"b": [{"c": 1}, {"c": 2}]}}, "path": "a.b[*].c" }),
    );
    assert_eq!(r["structuredContent"]["matches"], json!([1, 2]));

    let r = call(
        &q,
        "json_query",
        json!({ "document": STORE, "path": "$.store.books[x]" }),
    );
    assert!(
        error_text(&r).starts_with("bad path \"$.store.books[x]\" at character 15"),
        "{r}"
    );
    let r = call(
        &q,
        "json_query",
        json!({ "document": "{not json", "path": "$" }),
    );
    assert!(error_text(&r).contains("not JSON text"), "{r}");
    let deep = format!("{}1{}", "[".repeat(150), "]".repeat(150));
    let r = call(&q, "json_query", json!({ "document": deep, "path": "$" }));
    assert_eq!(error_text(&r), "document nests more than 100 levels deep");
}

// ---- chart_generator -------------------------------------------------------------------------

#[test]
fn chart_svg_draws_a_well_formed_bar_chart_with_escaped_labels() {
    let chart = server("builtin/chart");
    let result = call(
        &chart,
        "chart_svg",
        json!({
            "kind": "bar",
            "title": "Sales <Q1> & \"Q2\"",
            "labels": ["North", "South & East", "West"],
            "series": [{"name": "2024", "values": [12, 7.5, 20]},
                       {"name": "2025", "values": [15, null, 18]}],
            "y_label": "units"
        }),
    );
    let svg = ok_text(&result);
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(root.attribute("width"), Some("640"));
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect();
    for want in [
        "Sales <Q1> & \"Q2\"",
        "North",
        "South & East",
        "West",
        "2024",
        "2025",
        "units",
        "0",
        "20",
    ] {
        assert!(texts.contains(&want), "no text {want:?} in {texts:?}");
    }
    // Five bars: the gap (null) draws nothing; one axis-aligned rect per value.
    let bars = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.children().any(|c| c.has_tag_name("title")))
        .count();
    assert_eq!(bars, 5);
    // The tallest bar (20) is taller than the smallest (7.5).
    let height = |label: &str| {
        doc.descendants()
            .find(|n| {
                n.has_tag_name("rect")
                    && n.children()
                        .any(|c| c.text().is_some_and(|t| t.starts_with(label)))
            })
            .and_then(|n| n.attribute("height"))
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert!(height("West / 2024") > height("South & East / 2024"));
}

#[test]
fn chart_svg_draws_a_line_chart_and_refuses_mismatched_series() {
    let chart = server("builtin/chart");
    let result = call(
        &chart,
        "chart_svg",
        json!({ "kind": "line", "labels": ["Jan", "Feb", "Mar", "Apr"],
                "series": [{"values": [-0.5, 0.25, 2, 1]}] }),
    );
    let svg = ok_text(&result);
    let doc = roxmltree::Document::parse(svg).unwrap();
    let line = doc
        .descendants()
        .find(|n| n.has_tag_name("polyline"))
        .unwrap();
    assert_eq!(line.attribute("points").unwrap().split(' ').count(), 4);
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect();
    // Ticks in steps of 0.5 from -0.5 to 2.
    assert_eq!(
        texts,
        [
            "-0.5", "0.0", "0.5", "1.0", "1.5", "2.0", "Jan", "Feb", "Mar", "Apr"
        ]
    );

    let result = call(
        &chart,
        "chart_svg",
        json!({ "labels": ["a", "b"], "series": [{"name": "s", "values": [1, 2, 3]}] }),
    );
    assert_eq!(
        error_text(&result),
        "series 1 (s) has 3 values for 2 labels"
    );
}

// ---- file_system -----------------------------------------------------------------------------

/// A workspace with a few files, inside a directory that also holds a file outside it.
struct Workspace {
    _root: tempfile::TempDir,
    dir: PathBuf,
    ctx: CallContext,
}

fn workspace() -> Workspace {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("ws");
    std::fs::create_dir_all(dir.join("data/raw")).unwrap();
    std::fs::write(dir.join("notes.txt"), "Grüße\nline two\n").unwrap();
    std::fs::write(dir.join("data/sales.csv"), "a,b\n1,2\n").unwrap();
    std::fs::write(dir.join("data/raw/blob.bin"), [0u8, 159, 146, 150, 255]).unwrap();
    std::fs::write(root.path().join("secret.txt"), "outside").unwrap();
    std::os::unix::fs::symlink(root.path().join("secret.txt"), dir.join("link.txt")).unwrap();
    let ctx = CallContext {
        workspace: Some(dir.clone()),
    };
    Workspace {
        _root: root,
        dir,
        ctx,
    }
}

#[test]
fn fs_lists_reads_and_writes_inside_the_workspace() {
    let fs = server("builtin/fs");
    let ws = workspace();

    let result = call_in(&fs, "fs_list", json!({}), &ws.ctx);
    assert_eq!(
        result["structuredContent"]["entries"],
        json!([
            {"name": "data", "type": "directory"},
            {"name": "link.txt", "type": "symlink"},
            {"name": "notes.txt", "type": "file", "size": 17},
        ])
    );
    let result = call_in(
        &fs,
        "fs_list",
        json!({ "path": "data", "recursive": true }),
        &ws.ctx,
    );
    let names: Vec<&str> = result["structuredContent"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["raw", "raw/blob.bin", "sales.csv"]);

    let result = call_in(&fs, "fs_read", json!({ "path": "notes.txt" }), &ws.ctx);
    assert_eq!(ok_text(&result), "Grüße\nline two\n");
    let result = call_in(
        &fs,
        "fs_read",
        json!({ "path": "./data/sales.csv", "offset": 4, "max_bytes": 3 }),
        &ws.ctx,
    );
    assert_eq!(ok_text(&result), "1,2");
    assert_eq!(result["structuredContent"]["truncated"], true);
    assert_eq!(result["structuredContent"]["size"], 8);
    // A cut inside "ü" keeps the text before it.
    let result = call_in(
        &fs,
        "fs_read",
        json!({ "path": "notes.txt", "max_bytes": 3 }),
        &ws.ctx,
    );
    assert_eq!(ok_text(&result), "Gr");

    let result = call_in(
        &fs,
        "fs_read",
        json!({ "path": "data/raw/blob.bin" }),
        &ws.ctx,
    );
    assert!(error_text(&result).contains("not UTF-8 text"), "{result}");
    let result = call_in(
        &fs,
        "fs_read",
        json!({ "path": "data/raw/blob.bin", "encoding": "base64" }),
        &ws.ctx,
    );
    assert_eq!(ok_text(&result), "AJ+Slv8=");

    let result = call_in(
        &fs,
        "fs_write",
        json!({ "path": "out/reports/summary.md", "content": "# Summary\n", "create_dirs": true }),
        &ws.ctx,
    );
    assert_eq!(
        ok_text(&result),
        "wrote 10 bytes to out/reports/summary.md (now 10 bytes)"
    );
    let result = call_in(
        &fs,
        "fs_write",
        json!({ "path": "out/reports/summary.md", "content": "- done\n", "append": true }),
        &ws.ctx,
    );
    assert_eq!(result["structuredContent"]["size"], 17);
    assert_eq!(
        std::fs::read_to_string(ws.dir.join("out/reports/summary.md")).unwrap(),
        "# Summary\n- done\n"
    );
    call_in(
        &fs,
        "fs_write",
        json!({ "path": "notes.txt", "content": "AAEC", "encoding": "base64" }),
        &ws.ctx,
    );
    assert_eq!(std::fs::read(ws.dir.join("notes.txt")).unwrap(), [0, 1, 2]);
}

#[test]
fn fs_errors_name_the_path_and_the_cause() {
    let fs = server("builtin/fs");
    let ws = workspace();
    let error = |tool: &str, args: Value| {
        let result = call_in(&fs, tool, args, &ws.ctx);
        error_text(&result).to_owned()
    };
    assert_eq!(
        error("fs_read", json!({ "path": "missing.txt" })),
        "missing.txt: not found"
    );
    assert_eq!(
        error("fs_read", json!({ "path": "data" })),
        "data: is a directory (use fs_list)"
    );
    for outside in [
        "../secret.txt",
        "/etc/passwd",
        "link.txt",
        "data/../../secret.txt",
    ] {
        let text = error("fs_read", json!({ "path": outside }));
        assert!(
            text.starts_with(&format!("{outside}: permission denied")),
            "{outside}: {text}"
        );
    }
    let text = error(
        "fs_write",
        json!({ "path": "../escape.txt", "content": "x" }),
    );
    assert!(text.contains("permission denied"), "{text}");
    assert!(!ws.dir.parent().unwrap().join("escape.txt").exists());
    let text = error(
        "fs_write",
        json!({ "path": "no/such/dir/x.txt", "content": "x" }),
    );
    assert_eq!(text, "no/such/dir/x.txt: not found");
    let text = error("fs_list", json!({ "path": "notes.txt" }));
    assert_eq!(text, "notes.txt: not a directory");
}

#[test]
fn fs_cannot_write_through_a_read_only_grant() {
    let (dir, mut manifest, wasm) = package("builtin/fs");
    manifest.capabilities.directories[0].access = caxton_tool_host::manifest::Access::Read;
    let fs = ToolServer::from_parts(host(), manifest, &wasm, &dir.join("tool.toml")).unwrap();
    let ws = workspace();
    let result = call_in(
        &fs,
        "fs_write",
        json!({ "path": "notes.txt", "content": "changed" }),
        &ws.ctx,
    );
    assert!(
        error_text(&result).starts_with("notes.txt: permission denied"),
        "{result}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.dir.join("notes.txt")).unwrap(),
        "Grüße\nline two\n"
    );
    let result = call_in(&fs, "fs_read", json!({ "path": "notes.txt" }), &ws.ctx);
    assert_eq!(ok_text(&result), "Grüße\nline two\n");
}

// ---- http_client -----------------------------------------------------------------------------

/// A one-thread HTTP/1.1 server on 127.0.0.1: `/data.csv` answers CSV, `/echo` answers the
/// request it got (method, content type, a test header, body) as JSON, anything else 404.
fn http_server() -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut headers = std::collections::HashMap::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
            let len: usize = headers
                .get("content-length")
                .map_or(0, |v| v.parse().unwrap());
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap(), parts.next().unwrap());
            let (status, content_type, reply) = match path {
                "/data.csv" => (
                    "200 OK",
                    "text/csv",
                    "city,temp\nOslo,4\nRome,17\n".to_owned(),
                ),
                "/echo" => (
                    "200 OK",
                    "application/json",
                    json!({
                        "method": method,
                        "content_type": headers.get("content-type"),
                        "x_test": headers.get("x-test"),
                        "body": String::from_utf8_lossy(&body),
                    })
                    .to_string(),
                ),
                _ => ("404 Not Found", "text/plain", "no such page".to_owned()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    port
}

/// The http package with `hosts` as its allowlist.
fn http_client(hosts: &[String]) -> ToolServer {
    let (dir, mut manifest, wasm) = package("builtin/http");
    manifest.capabilities.http_hosts = hosts.to_vec();
    ToolServer::from_parts(host(), manifest, &wasm, &dir.join("tool.toml")).unwrap()
}

#[test]
fn http_get_and_post_reach_an_allowed_host() {
    let port = http_server();
    let http = http_client(&[format!("127.0.0.1:{port}")]);
    let result = call(
        &http,
        "http_get",
        json!({ "url": format!("http://127.0.0.1:{port}/data.csv") }),
    );
    assert_eq!(ok_text(&result), "city,temp\nOslo,4\nRome,17\n");
    assert_eq!(result["structuredContent"]["status"], 200);
    assert_eq!(result["structuredContent"]["content_type"], "text/csv");

    let result = call(
        &http,
        "http_post",
        json!({ "url": format!("http://127.0.0.1:{port}/echo"), "body": "{\"q\": \"ü\"}",
                "headers": {"X-Test": "yes"} }),
    );
    let echoed: Value = serde_json::from_str(ok_text(&result)).unwrap();
    assert_eq!(
        echoed,
        json!({ "method": "POST", "content_type": "application/json", "x_test": "yes",
                "body": "{\"q\": \"ü\"}" })
    );
    let result = call(
        &http,
        "http_post",
        json!({ "url": format!("http://127.0.0.1:{port}/echo"), "body": "a=1",
                "content_type": "application/x-www-form-urlencoded" }),
    );
    let echoed: Value = serde_json::from_str(ok_text(&result)).unwrap();
    assert_eq!(echoed["content_type"], "application/x-www-form-urlencoded");

    let result = call(
        &http,
        "http_get",
        json!({ "url": format!("http://127.0.0.1:{port}/missing") }),
    );
    assert_eq!(
        error_text(&result),
        format!("GET http://127.0.0.1:{port}/missing: HTTP 404\n\nno such page")
    );
}

#[test]
fn http_refusals_are_tool_errors_naming_the_cause() {
    let port = http_server();
    // Allowed by name but not by address: loopback must be listed literally.
    let http = http_client(&["localhost".to_owned()]);
    for url in [
        format!("http://127.0.0.1:{port}/data.csv"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://example.com/".to_owned(),
    ] {
        let result = call(&http, "http_get", json!({ "url": url }));
        let text = error_text(&result);
        assert!(
            text.starts_with(&format!("GET {url} refused or failed: host ")),
            "{text}"
        );
        assert!(
            text.ends_with("is not in this tool's http_hosts allowlist"),
            "{text}"
        );
    }
    // Allowed by name, refused by address: localhost resolves to loopback.
    let http = http_client(&[format!("localhost:{port}")]);
    let url = format!("http://localhost:{port}/data.csv");
    let result = call(&http, "http_get", json!({ "url": url }));
    let text = error_text(&result);
    assert!(
        text.starts_with(&format!("GET {url} refused or failed: ")),
        "{text}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{port} (loopback)")),
        "{text}"
    );
    // The shipped manifest lists no host at all.
    let http = server("builtin/http");
    let result = call(
        &http,
        "http_get",
        json!({ "url": format!("http://127.0.0.1:{port}/data.csv") }),
    );
    assert!(
        error_text(&result).contains("refused or failed"),
        "{result}"
    );
}

// ---- sqlite_query ----------------------------------------------------------------------------

#[test]
fn sqlite_query_reads_a_database_in_the_workspace() {
    let sql = server("builtin/sqlite");
    let ws = workspace();
    let db = rusqlite::Connection::open(ws.dir.join("shop.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE items (name TEXT, price REAL, stock INTEGER);
         INSERT INTO items VALUES ('apple', 0.5, 10), ('pear', 0.75, 0), ('plum', 1.25, 3);",
    )
    .unwrap();
    drop(db);

    let result = call_in(
        &sql,
        "sqlite_query",
        json!({ "database": "shop.db",
                "sql": "SELECT name, price FROM items WHERE stock > ? ORDER BY price",
                "params": [0] }),
        &ws.ctx,
    );
    let text: Value = serde_json::from_str(ok_text(&result)).unwrap();
    assert_eq!(text, result["structuredContent"]);
    assert_eq!(
        result["structuredContent"],
        json!({ "columns": ["name", "price"], "rows": [["apple", 0.5], ["plum", 1.25]],
                "truncated": false })
    );
    let result = call_in(
        &sql,
        "sqlite_query",
        json!({ "database": "shop.db", "sql": "SELECT name FROM items", "max_rows": 2 }),
        &ws.ctx,
    );
    assert_eq!(
        result["structuredContent"]["rows"],
        json!([["apple"], ["pear"]])
    );
    assert_eq!(result["structuredContent"]["truncated"], true);

    let error = |args: Value| {
        let result = call_in(&sql, "sqlite_query", args, &ws.ctx);
        error_text(&result).to_owned()
    };
    let text = error(json!({ "database": "shop.db", "sql": "DELETE FROM items" }));
    assert_eq!(text, "shop.db: only read-only statements are allowed");
    let text = error(json!({ "database": "../shop.db", "sql": "SELECT 1" }));
    assert!(text.starts_with("../shop.db: "), "{text}");
    assert!(text.contains("outside the directories granted"), "{text}");
    let text = error(json!({ "database": "missing.db", "sql": "SELECT 1" }));
    assert!(text.starts_with("missing.db: "), "{text}");
    let text = error(json!({ "database": "shop.db", "sql": "SELECT nope FROM items" }));
    assert!(text.contains("nope"), "{text}");
    // Nothing was deleted.
    let db = rusqlite::Connection::open(ws.dir.join("shop.db")).unwrap();
    let n: i64 = db
        .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
}
