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
    EntityDeleted, EntityShown, EntityStored, EntityUpsert, GraphParams, Imported, MemoryRequest,
    Neighbours, ObservationsDeleted, PathAnswer, Related, RelationBody, RelationRecord,
    SearchAnswer, SearchParams, StatsAnswer, StatsScopes, Unrelated,
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
            let body: SearchAnswer = api
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
            let body: EntityShown = api
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
            let body: Related = api
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
                    relation_text(
                        &b.relation.from,
                        &b.relation.relation_type,
                        &b.relation.to,
                        b.relation.strength
                    ),
                    b.scope
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
            let body: Neighbours = api
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
            let body: PathAnswer = api
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
            let body: EntityDeleted = api
                .json(MemoryRequest::Delete {
                    scope: scope.scope,
                    name,
                })
                .await?;
            print(json, &body, |b| {
                println!("removed {} from {}", b.deleted, b.scope);
            });
            Ok(ExitCode::SUCCESS)
        }
        MemoryCommand::Forget {
            name,
            observations,
            scope,
            json,
        } => {
            let body: ObservationsDeleted = api
                .json(MemoryRequest::DeleteObservations {
                    scope: scope.scope,
                    name,
                    observations,
                })
                .await?;
            print(json, &body, |b| {
                println!(
                    "forgot {} of {}'s observations in {}",
                    b.observations_deleted, b.name, b.scope
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
            let body: Unrelated = api
                .json(MemoryRequest::Unrelate {
                    scope: scope.scope,
                    from,
                    to,
                    relation_type,
                })
                .await?;
            print(json, &body, |b| {
                let d = &b.deleted;
                println!(
                    "removed {} from {}",
                    relation_text(&d.from, &d.relation_type, &d.to, 1.0),
                    b.scope
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
            let body: StatsAnswer = api.json(MemoryRequest::Stats { scopes, check }).await?;
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

    /// Run `request` and read its answer as the contract's `T`.
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: MemoryRequest,
    ) -> anyhow::Result<T> {
        match self.call(request).await? {
            MemoryAnswer::Json(body) => {
                serde_json::from_value(body).context("the memory answer does not match the API")
            }
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

fn print<T: serde::Serialize>(json: bool, body: &T, human: impl FnOnce(&T)) {
    if json {
        output::print_json(body);
    } else {
        human(body);
    }
}

fn plural(count: usize, one: &str, many: &str) -> String {
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
    let answer: EntityStored = api.json(MemoryRequest::Upsert { scope, entity }).await?;
    print(json, &answer, |b| {
        let skipped = b.observations_skipped;
        println!(
            "{} {} ({}) in {}: {} added{}",
            if b.created { "created" } else { "updated" },
            b.name,
            b.entity_type,
            b.scope,
            plural(b.observations_added, "observation", "observations"),
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
fn relation_text(from: &str, relation_type: &str, to: &str, strength: f32) -> String {
    let strength = f64::from(strength);
    let label = if (strength - 1.0).abs() < 1e-6 {
        relation_type.to_owned()
    } else {
        format!("{relation_type} ({strength:.2})")
    };
    format!("{from} --{label}--> {to}")
}

fn relation_line(r: &RelationRecord) -> String {
    relation_text(&r.from, &r.relation_type, &r.to, r.strength)
}

fn print_hits(body: &SearchAnswer, several_scopes: bool) {
    if body.hits.is_empty() {
        println!("nothing found");
        return;
    }
    for h in &body.hits {
        // The similarity means something to a reader; the fused rank score does not.
        let similarity = h
            .similarity
            .map_or_else(|| "    -".to_owned(), |v| format!("{:5.2}", f64::from(v)));
        let scope = if several_scopes {
            format!("[{}] ", h.scope)
        } else {
            String::new()
        };
        let observation = h
            .observation
            .as_ref()
            .map(|o| format!(": {}", o.text.replace('\n', " ")))
            .unwrap_or_default();
        println!(
            "{similarity}  {scope}{} ({}){observation}",
            h.name, h.entity_type
        );
    }
}

fn print_entity(body: &EntityShown) {
    let e = &body.entity;
    println!("{} ({}) in {}", e.name, e.entity_type, e.scope);
    println!("  created {}, updated {}", e.created_at, e.updated_at);
    if !e.metadata.is_empty() {
        println!("  metadata: {}", Value::Object(e.metadata.clone()));
    }
    if e.observations.is_empty() {
        println!("observations: none");
    } else {
        println!("observations:");
        for o in &e.observations {
            println!("  - {}", o.text);
        }
    }
    if body.relations.is_empty() {
        println!("relations: none");
    } else {
        println!("relations:");
        for r in &body.relations {
            println!("  {}", relation_line(r));
        }
    }
}

fn print_neighbours(body: &Neighbours) {
    if body.neighbours.is_empty() {
        println!(
            "{} has no neighbours within {} in {}",
            body.name,
            plural(body.depth as usize, "hop", "hops"),
            body.scope
        );
        return;
    }
    for nb in &body.neighbours {
        println!(
            "{}  {} ({})  via {}",
            nb.depth,
            nb.name,
            nb.entity_type,
            relation_line(&nb.via)
        );
    }
}

fn print_path(body: &PathAnswer) {
    let Some(steps) = &body.path else {
        println!(
            "no path from {} to {} within {} in {}",
            body.from,
            body.to,
            plural(body.depth as usize, "hop", "hops"),
            body.scope
        );
        return;
    };
    let mut line = body.from.clone();
    for step in steps {
        let r = &step.relation;
        // A relation followed against its direction is drawn pointing back.
        if r.from == step.from {
            line.push_str(&format!(" --{}--> {}", r.relation_type, step.to));
        } else {
            line.push_str(&format!(" <--{}-- {}", r.relation_type, step.to));
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

fn print_stats(body: &StatsAnswer) {
    let scopes = match &body.scopes {
        StatsScopes::Some(list) => list.join(", "),
        StatsScopes::All(_) => "all".to_owned(),
    };
    println!("scopes:        {scopes}");
    println!("entities:      {}", body.entities);
    println!("observations:  {}", body.observations);
    println!("relations:     {}", body.relations);
    println!(
        "database:      {} (write-ahead log {}; all scopes)",
        human_bytes(body.database_bytes),
        human_bytes(body.wal_bytes)
    );
    println!(
        "vectors:       {} in memory (all scopes)",
        body.indexed_vectors
    );
    println!("model:         {}", body.embedding_model);
    println!("schema:        version {}", body.schema_version);
    if let Some(integrity) = &body.integrity {
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
            plural(entities, "entity", "entities"),
            plural(relations, "relation", "relations"),
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
    let body: Imported = match api.0.memory(request).await? {
        Ok(MemoryAnswer::Json(body)) => {
            serde_json::from_value(body).context("the import answer")?
        }
        Ok(MemoryAnswer::File(_)) => bail!("the import answer is not a JSON document"),
        Err(message) => bail!("{name}: {}", as_options(&message)),
    };
    print(json, &body, |b| {
        let r = &b.report;
        let into = b.scope.as_deref().unwrap_or("the scopes it names");
        println!(
            "imported {name} ({} format) into {into}: {} created, {} merged, {} added ({} already known), {}",
            b.format,
            plural(r.entities_created, "entity", "entities"),
            r.entities_merged,
            plural(r.observations_added, "observation", "observations"),
            r.observations_skipped,
            plural(r.relations, "relation", "relations"),
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
