//! `caxton memory ...`. Each command is one [`MemoryRequest`] of the API contract: with a
//! daemon running it goes to its API (`/api/v1/memory/...`); without one the memory database is
//! opened in this process and the very same operation runs on it (`caxton_supervisor::memory`),
//! so the answers are identical. SQLite's write-ahead log lets both share the file safely, but the daemon is
//! preferred: it has the embedding model loaded already.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use caxton_api_contract::memory::{
    EntityUpsert, GraphParams, MemoryRequest, RelationBody, SearchParams,
};
use caxton_supervisor::config::Config;
use serde_json::{Value, json};

use crate::backend::{Backend, MemoryAnswer};
use crate::cli::MemoryCommand;
use crate::client::ApiClient;
use crate::output;

pub async fn run(
    cmd: MemoryCommand,
    config: &Config,
    client: &ApiClient,
) -> anyhow::Result<ExitCode> {
    let backend = Backend::choose(config, client, "memory").await?;
    let api = Api(&backend);
    match cmd {
        MemoryCommand::Add {
            name,
            observations,
            entity_type,
            metadata,
            scope,
            json,
        } => {
            add(
                &api,
                name,
                observations,
                entity_type,
                metadata,
                scope.scope,
                json,
            )
            .await
        }
        MemoryCommand::Search {
            query,
            scopes,
            mode,
            limit,
            min_similarity,
            types,
            since,
            until,
            json,
        } => {
            let several = scopes.len() > 1;
            let body = api
                .json(MemoryRequest::Search(SearchParams {
                    query,
                    scopes,
                    mode,
                    limit,
                    min_similarity,
                    types,
                    since,
                    until,
                }))
                .await?;
            print(json, &body, |b| print_hits(b, several));
            Ok(ExitCode::SUCCESS)
        }
        MemoryCommand::Show { name, scope, json } => {
            let body = api
                .json(MemoryRequest::Show {
                    scope: scope.scope,
                    name,
                })
                .await?;
            print(json, &body, print_entity);
            Ok(ExitCode::SUCCESS)
        }
        MemoryCommand::Relate {
            from,
            relation_type,
            to,
            strength,
            scope,
            json,
        } => {
            let body = api
                .json(MemoryRequest::Relate {
                    scope: scope.scope,
                    relation: RelationBody {
                        from,
                        to,
                        relation_type,
                        strength,
                    },
                })
                .await?;
            print(json, &body, |b| {
                println!(
                    "related {} in {}",
                    relation_text(&b["relation"]),
                    s(b, "scope")
                );
            });
            Ok(ExitCode::SUCCESS)
        }
        MemoryCommand::Neighbours {
            name,
            depth,
            relation_type,
            direction,
            scope,
            json,
        } => {
            let body = api
                .json(MemoryRequest::Neighbours {
                    scope: scope.scope,
                    name,
                    graph: GraphParams {
                        depth,
                        relation_types: relation_type,
                        direction,
                        limit: None,
                    },
                })
                .await?;
            print(json, &body, print_neighbours);
            Ok(ExitCode::SUCCESS)
        }
        MemoryCommand::Path {
            from,
            to,
            depth,
            relation_type,
            scope,
            json,
        } => {
            let body = api
                .json(MemoryRequest::Path {
                    scope: scope.scope,
                    from,
                    to,
                    depth,
                    relation_types: relation_type,
                    direction: None,
                })
                .await?;
            print(json, &body, print_path);
            Ok(ExitCode::SUCCESS)
        }
        MemoryCommand::Remove { name, scope, json } => {
            let body = api
                .json(MemoryRequest::Delete {
                    scope: scope.scope,
                    name,
                })
                .await?;
            print(json, &body, |b| {
                println!("removed {} from {}", s(b, "deleted"), s(b, "scope"));
            });
            Ok(ExitCode::SUCCESS)
        }
        MemoryCommand::Forget {
            name,
            observations,
            scope,
            json,
        } => {
            let body = api
                .json(MemoryRequest::DeleteObservations {
                    scope: scope.scope,
                    name,
                    observations,
                })
                .await?;
            print(json, &body, |b| {
                println!(
                    "forgot {} of {}'s observations in {}",
                    n(b, "observations_deleted"),
                    s(b, "name"),
                    s(b, "scope")
                );
            });
            Ok(ExitCode::SUCCESS)
        }
        MemoryCommand::Unrelate {
            from,
            relation_type,
            to,
            scope,
            json,
        } => {
            let body = api
                .json(MemoryRequest::Unrelate {
                    scope: scope.scope,
                    from,
                    to,
                    relation_type,
                })
                .await?;
            print(json, &body, |b| {
                println!(
                    "removed {} from {}",
                    relation_text(&b["deleted"]),
                    s(b, "scope")
                );
            });
            Ok(ExitCode::SUCCESS)
        }
        MemoryCommand::Export {
            file,
            format,
            scopes,
            no_embeddings,
            json,
        } => {
            // `-` is standard output, as for import.
            let file = file.filter(|f| f.as_os_str() != "-");
            export(&api, file.as_deref(), format, scopes, no_embeddings, json).await
        }
        MemoryCommand::Import {
            file,
            format,
            scope,
            json,
        } => import(&api, &file, format, scope, json).await,
        MemoryCommand::Stats {
            scopes,
            check,
            json,
        } => {
            let body = api.json(MemoryRequest::Stats { scopes, check }).await?;
            print(json, &body, print_stats);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Memory operations on the backend, with the API's messages naming this command's options.
struct Api<'a>(&'a Backend<'a>);

impl Api<'_> {
    /// Run `request`; a refusal fails with its message.
    async fn call(&self, request: MemoryRequest) -> anyhow::Result<MemoryAnswer> {
        match self.0.memory(request).await? {
            Ok(answer) => Ok(answer),
            Err(message) => bail!(as_options(&message)),
        }
    }

    /// Run `request` and return its JSON answer.
    async fn json(&self, request: MemoryRequest) -> anyhow::Result<Value> {
        match self.call(request).await? {
            MemoryAnswer::Json(body) => Ok(body),
            MemoryAnswer::File(_) => bail!("the answer is a file, not a JSON document"),
        }
    }
}

/// The API's messages name query parameters (`query parameter since="x" is not ...`); each
/// has the option of the same name here, so name that instead.
fn as_options(message: &str) -> String {
    const MARK: &str = "query parameter ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        rest = &rest[at + MARK.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        out.push_str("--");
        out.push_str(&rest[..end].replace('_', "-"));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn print(json: bool, body: &Value, human: impl FnOnce(&Value)) {
    if json {
        output::print_json(body);
    } else {
        human(body);
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn n(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn plural(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

async fn add(
    api: &Api<'_>,
    name: String,
    observations: Vec<String>,
    entity_type: Option<String>,
    metadata: Option<String>,
    scope: String,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut texts = Vec::with_capacity(observations.len());
    for o in observations {
        if o == "-" {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("reading observations from standard input")?;
            texts.extend(
                input
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned),
            );
        } else {
            texts.push(o);
        }
    }
    let metadata = match metadata {
        None => None,
        Some(m) => match serde_json::from_str::<Value>(&m).context("--metadata is not JSON")? {
            Value::Object(map) => Some(map),
            _ => bail!("--metadata must be a JSON object, like '{{\"team\": \"ops\"}}'"),
        },
    };
    let entity = EntityUpsert {
        name,
        entity_type,
        observations: texts,
        metadata,
    };
    let answer = api.json(MemoryRequest::Upsert { scope, entity }).await?;
    print(json, &answer, |b| {
        let skipped = n(b, "observations_skipped");
        println!(
            "{} {} ({}) in {}: {} added{}",
            if b["created"] == true {
                "created"
            } else {
                "updated"
            },
            s(b, "name"),
            s(b, "entity_type"),
            s(b, "scope"),
            plural(n(b, "observations_added"), "observation", "observations"),
            if skipped > 0 {
                format!(", {skipped} already known")
            } else {
                String::new()
            }
        );
    });
    Ok(ExitCode::SUCCESS)
}

/// `Ada --works_at--> Acme`, with the strength when it is not 1.
fn relation_text(r: &Value) -> String {
    let strength = r.get("strength").and_then(Value::as_f64).unwrap_or(1.0);
    let label = if (strength - 1.0).abs() < 1e-6 {
        s(r, "relation_type").to_owned()
    } else {
        format!("{} ({strength:.2})", s(r, "relation_type"))
    };
    format!("{} --{label}--> {}", s(r, "from"), s(r, "to"))
}

fn print_hits(body: &Value, several_scopes: bool) {
    let hits = body["hits"].as_array().cloned().unwrap_or_default();
    if hits.is_empty() {
        println!("nothing found");
        return;
    }
    for h in &hits {
        // The similarity means something to a reader; the fused rank score does not.
        let similarity = h
            .get("similarity")
            .and_then(Value::as_f64)
            .map_or_else(|| "    -".to_owned(), |v| format!("{v:5.2}"));
        let scope = if several_scopes {
            format!("[{}] ", s(h, "scope"))
        } else {
            String::new()
        };
        let observation = h
            .pointer("/observation/text")
            .and_then(Value::as_str)
            .map(|t| format!(": {}", t.replace('\n', " ")))
            .unwrap_or_default();
        println!(
            "{similarity}  {scope}{} ({}){observation}",
            s(h, "name"),
            s(h, "entity_type")
        );
    }
}

fn print_entity(body: &Value) {
    let e = &body["entity"];
    println!(
        "{} ({}) in {}",
        s(e, "name"),
        s(e, "entity_type"),
        s(e, "scope")
    );
    println!(
        "  created {}, updated {}",
        s(e, "created_at"),
        s(e, "updated_at")
    );
    if let Some(meta) = e["metadata"].as_object()
        && !meta.is_empty()
    {
        println!("  metadata: {}", e["metadata"]);
    }
    let observations = e["observations"].as_array().cloned().unwrap_or_default();
    if observations.is_empty() {
        println!("observations: none");
    } else {
        println!("observations:");
        for o in &observations {
            println!("  - {}", s(o, "text"));
        }
    }
    let relations = body["relations"].as_array().cloned().unwrap_or_default();
    if relations.is_empty() {
        println!("relations: none");
    } else {
        println!("relations:");
        for r in &relations {
            println!("  {}", relation_text(r));
        }
    }
}

fn print_neighbours(body: &Value) {
    let neighbours = body["neighbours"].as_array().cloned().unwrap_or_default();
    if neighbours.is_empty() {
        println!(
            "{} has no neighbours within {} in {}",
            s(body, "name"),
            plural(n(body, "depth"), "hop", "hops"),
            s(body, "scope")
        );
        return;
    }
    for nb in &neighbours {
        println!(
            "{}  {} ({})  via {}",
            n(nb, "depth"),
            s(nb, "name"),
            s(nb, "entity_type"),
            relation_text(&nb["via"])
        );
    }
}

fn print_path(body: &Value) {
    let Some(steps) = body["path"].as_array() else {
        println!(
            "no path from {} to {} within {} in {}",
            s(body, "from"),
            s(body, "to"),
            plural(n(body, "depth"), "hop", "hops"),
            s(body, "scope")
        );
        return;
    };
    let mut line = s(body, "from").to_owned();
    for step in steps {
        let r = &step["relation"];
        // A relation followed against its direction is drawn pointing back.
        if s(r, "from") == s(step, "from") {
            line.push_str(&format!(
                " --{}--> {}",
                s(r, "relation_type"),
                s(step, "to")
            ));
        } else {
            line.push_str(&format!(
                " <--{}-- {}",
                s(r, "relation_type"),
                s(step, "to")
            ));
        }
    }
    println!("{line}");
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn print_stats(body: &Value) {
    let scopes = match &body["scopes"] {
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        _ => "all".to_owned(),
    };
    println!("scopes:        {scopes}");
    println!("entities:      {}", n(body, "entities"));
    println!("observations:  {}", n(body, "observations"));
    println!("relations:     {}", n(body, "relations"));
    println!(
        "database:      {} (write-ahead log {}; all scopes)",
        human_bytes(n(body, "database_bytes")),
        human_bytes(n(body, "wal_bytes"))
    );
    println!(
        "vectors:       {} in memory (all scopes)",
        n(body, "indexed_vectors")
    );
    println!("model:         {}", s(body, "embedding_model"));
    println!("schema:        version {}", n(body, "schema_version"));
    if let Some(integrity) = body.get("integrity").and_then(Value::as_str) {
        println!("integrity:     {integrity}");
    }
}

/// Entities and relations in an export, for the summary.
fn count_export(format: &str, bytes: &[u8]) -> (usize, usize) {
    if format == "mcp" {
        let mut counts = (0, 0);
        for line in bytes.split(|&b| b == b'\n') {
            match serde_json::from_slice::<Value>(line)
                .ok()
                .as_ref()
                .and_then(|v| v.get("type"))
                .and_then(Value::as_str)
            {
                Some("entity") => counts.0 += 1,
                Some("relation") => counts.1 += 1,
                _ => {}
            }
        }
        return counts;
    }
    let doc: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let len = |key: &str| doc[key].as_array().map_or(0, Vec::len);
    (len("entities"), len("relations"))
}

async fn export(
    api: &Api<'_>,
    file: Option<&Path>,
    format: String,
    scopes: Vec<String>,
    no_embeddings: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let request = MemoryRequest::Export {
        scopes: scopes.clone(),
        format: Some(format.clone()),
        embeddings: no_embeddings.then_some(false),
    };
    let bytes = match api.call(request).await? {
        MemoryAnswer::File(bytes) => bytes,
        MemoryAnswer::Json(_) => bail!("the export answer is not a file"),
    };
    let Some(file) = file else {
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes)
            .and_then(|()| out.flush())
            .context("writing the export to standard output")?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::write(file, &bytes).with_context(|| format!("cannot write {}", file.display()))?;
    let (entities, relations) = count_export(&format, &bytes);
    let from = if scopes.is_empty() {
        "every scope".to_owned()
    } else {
        scopes.join(", ")
    };
    let summary = json!({
        "file": file.display().to_string(),
        "format": format,
        "scopes": scopes,
        "bytes": bytes.len(),
        "entities": entities,
        "relations": relations,
    });
    print(json, &summary, |_| {
        println!(
            "exported {} and {} from {from} to {} ({format} format, {})",
            plural(entities as u64, "entity", "entities"),
            plural(relations as u64, "relation", "relations"),
            file.display(),
            human_bytes(bytes.len() as u64)
        );
    });
    Ok(ExitCode::SUCCESS)
}

async fn import(
    api: &Api<'_>,
    file: &Path,
    format: Option<String>,
    scope: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (bytes, name) = if file == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading the import from standard input")?;
        (buf, "standard input".to_owned())
    } else {
        let buf = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        (buf, file.display().to_string())
    };
    let request = MemoryRequest::Import {
        scope,
        format,
        file: bytes,
    };
    let body = match api.0.memory(request).await? {
        Ok(MemoryAnswer::Json(body)) => body,
        Ok(MemoryAnswer::File(_)) => bail!("the import answer is not a JSON document"),
        Err(message) => bail!("{name}: {}", as_options(&message)),
    };
    print(json, &body, |b| {
        let r = &b["report"];
        let into = match b["scope"].as_str() {
            Some(scope) => scope.to_owned(),
            None => "the scopes it names".to_owned(),
        };
        println!(
            "imported {name} ({} format) into {into}: {} created, {} merged, {} added ({} already known), {}",
            s(b, "format"),
            plural(n(r, "entities_created"), "entity", "entities"),
            n(r, "entities_merged"),
            plural(n(r, "observations_added"), "observation", "observations"),
            n(r, "observations_skipped"),
            plural(n(r, "relations"), "relation", "relations"),
        );
    });
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_messages_name_the_cli_options() {
        assert_eq!(
            as_options("query parameter min_similarity=\"x\" is not a number"),
            "--min-similarity=\"x\" is not a number"
        );
        assert_eq!(
            as_options("query parameter scope is required: name it with scope=global"),
            "--scope is required: name it with scope=global"
        );
        assert_eq!(as_options("no entity named \"A\""), "no entity named \"A\"");
    }
}
