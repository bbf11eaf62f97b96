//! The memory operations: every `/api/v1/memory` route and every `caxton memory` command is
//! one [`MemoryOp`], run on a [`Memory`] by [`MemoryOp::run`]. The API file turns HTTP into an
//! operation and its result back into HTTP; the CLI without a daemon runs the same operation in
//! its own process, so both answer alike.

use bytes::Bytes;
pub use caxton_api_contract::memory::EntityUpsert;
use caxton_api_contract::memory::{
    EntityDeleted, EntityRecord, EntityShown, EntityStored, GraphParams, ImportCounts, Imported,
    MemoryRequest, NeighbourRecord, Neighbours, ObservationRecord, ObservationsAdded,
    ObservationsDeleted, PathAnswer, PathStepRecord, Related, RelationKey, RelationRecord,
    SearchAnswer, SearchHitRecord, StatsAnswer, StatsScopes, Unrelated,
};
use caxton_memory::{
    Direction, EntityInput, ExportRequest, GraphQuery, ImportOptions, MAX_DEPTH, Memory,
    MemoryError, Relation, Scope, SearchMode, SearchRequest, Timestamp,
};
use serde_json::Value;

/// What an operation answers.
#[derive(Debug)]
pub enum OperationReply {
    /// A JSON document; `created` when it made a new entity.
    Json {
        /// Whether a new entity was created.
        created: bool,
        /// The document.
        body: Value,
    },
    /// An export file.
    File {
        /// `application/json` or `application/x-ndjson`.
        content_type: &'static str,
        /// The file.
        bytes: Vec<u8>,
    },
}

/// Why an operation gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// The memory refused or failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The relation to delete does not exist.
    #[error("no relation {from:?} {relation_type} {to:?} in scope {scope}")]
    RelationNotFound {
        /// Its scope.
        scope: Scope,
        /// Source entity.
        from: String,
        /// Target entity.
        to: String,
        /// Relation type.
        relation_type: String,
    },
}

/// Export and import file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Caxton's versioned JSON (scopes, times, metadata, strengths, embeddings).
    Caxton,
    /// The JSON-lines file of `@modelcontextprotocol/server-memory` (one scope, no times).
    Mcp,
}

impl FileFormat {
    /// `caxton` or `mcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Caxton => "caxton",
            Self::Mcp => "mcp",
        }
    }

    /// The format of an import file: MCP when its first non-empty line is a JSON object with a
    /// `type` (every MCP line has one) or at least starts like one, else Caxton's JSON (whose
    /// first line, pretty-printed, is a lone `{`). The line is read leniently, so a bad byte
    /// in it is reported by the MCP reader with its line and column.
    pub fn detect(bytes: &[u8]) -> Self {
        let Some(first) = bytes
            .split(|&b| b == b'\n')
            .find(|line| line.iter().any(|b| !b.is_ascii_whitespace()))
        else {
            return Self::Caxton;
        };
        let line = String::from_utf8_lossy(first);
        let starts_like_mcp = line.trim_start().starts_with("{\"type\"");
        match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(o)) if o.contains_key("type") => Self::Mcp,
            _ if starts_like_mcp => Self::Mcp,
            _ => Self::Caxton,
        }
    }
}

/// A checked memory operation, ready to run: what every `/api/v1/memory` route and every
/// `caxton memory` command asks of the memory.
#[derive(Debug)]
pub enum MemoryOp {
    /// Create or update an entity with observations.
    Upsert {
        /// The memory it works in.
        scope: Scope,
        /// What to store.
        body: EntityUpsert,
    },
    /// An entity, its observations and relations.
    Show {
        /// The memory it works in.
        scope: Scope,
        /// The entity.
        name: String,
    },
    /// Delete an entity with its observations and relations.
    Delete {
        /// The memory it works in.
        scope: Scope,
        /// The entity.
        name: String,
    },
    /// Add observations to an entity.
    AddObservations {
        /// The memory it works in.
        scope: Scope,
        /// The entity.
        name: String,
        /// Observation texts.
        observations: Vec<String>,
    },
    /// Delete observations by text.
    DeleteObservations {
        /// The memory it works in.
        scope: Scope,
        /// The entity.
        name: String,
        /// Observation texts.
        observations: Vec<String>,
    },
    /// Entities within some hops of one.
    Neighbours {
        /// The memory it works in.
        scope: Scope,
        /// The entity.
        name: String,
        /// How far and along which relations.
        query: GraphQuery,
    },
    /// Create a relation or update its strength.
    Relate {
        /// The memory it works in.
        scope: Scope,
        /// The relation.
        relation: Relation,
    },
    /// Delete one relation.
    Unrelate {
        /// The memory it works in.
        scope: Scope,
        /// Where the relation or path starts.
        from: String,
        /// Where it ends.
        to: String,
        /// Its type.
        relation_type: String,
    },
    /// Semantic, keyword or hybrid search.
    Search(SearchRequest),
    /// The shortest path between two entities.
    Path {
        /// The memory it works in.
        scope: Scope,
        /// Where the relation or path starts.
        from: String,
        /// Where it ends.
        to: String,
        /// How far and along which relations.
        query: GraphQuery,
    },
    /// A file of the memory.
    Export(Export),
    /// Read a file into the memory.
    Import {
        /// The file's format.
        format: FileFormat,
        /// Whether the format was detected rather than given.
        detected: bool,
        /// The scope to read into (Caxton files name their own).
        scope: Option<Scope>,
        /// The file.
        bytes: Bytes,
    },
    /// Counts and sizes, optionally an integrity check.
    Stats {
        /// The scopes covered; empty for all.
        scopes: Vec<Scope>,
        /// Whether to run an integrity check.
        check: bool,
    },
}

/// An export, checked.
#[derive(Debug)]
pub struct Export {
    /// The file's format.
    pub format: FileFormat,
    /// Empty for every scope; exactly one for [`FileFormat::Mcp`].
    pub scopes: Vec<Scope>,
    /// Whether vectors are written (Caxton's format only).
    pub embeddings: bool,
}

impl Export {
    /// The file's media type.
    pub fn content_type(&self) -> &'static str {
        match self.format {
            FileFormat::Caxton => "application/json",
            FileFormat::Mcp => "application/x-ndjson",
        }
    }

    /// Write the file to `out` as it is read. Blocks (SQLite).
    pub fn write(&self, m: &Memory, out: &mut dyn std::io::Write) -> Result<(), MemoryError> {
        match self.format {
            FileFormat::Caxton => {
                let request = ExportRequest {
                    scopes: (!self.scopes.is_empty()).then(|| self.scopes.clone()),
                    include_embeddings: self.embeddings,
                };
                m.export_json(&request, out)
            }
            FileFormat::Mcp => match self.scopes.as_slice() {
                [scope] => m.export_mcp_jsonl(scope, out),
                _ => Err(MemoryError::InvalidInput {
                    field: "scope",
                    reason: "format=mcp exports exactly one scope".into(),
                }),
            },
        }
    }
}

/// What a scope parameter looks like, for error messages.
const SCOPE_SYNTAX: &str = "agent-only:NAME, workspace:NAME or global";

impl MemoryOp {
    /// Check a request in the API's words and turn it into an operation. The error is the
    /// message a client gets (a 400 from the API), naming the parameter as the API spells it.
    pub fn from_request(request: MemoryRequest) -> Result<Self, String> {
        Ok(match request {
            MemoryRequest::Upsert { scope, entity } => Self::Upsert {
                scope: one_scope(&scope)?,
                body: entity,
            },
            MemoryRequest::Show { scope, name } => Self::Show {
                scope: one_scope(&scope)?,
                name,
            },
            MemoryRequest::Delete { scope, name } => Self::Delete {
                scope: one_scope(&scope)?,
                name,
            },
            MemoryRequest::AddObservations {
                scope,
                name,
                observations,
            } => Self::AddObservations {
                scope: one_scope(&scope)?,
                name,
                observations,
            },
            MemoryRequest::DeleteObservations {
                scope,
                name,
                observations,
            } => Self::DeleteObservations {
                scope: one_scope(&scope)?,
                name,
                observations,
            },
            MemoryRequest::Neighbours { scope, name, graph } => Self::Neighbours {
                scope: one_scope(&scope)?,
                name,
                query: graph_query(graph, 1)?,
            },
            MemoryRequest::Relate { scope, relation } => Self::Relate {
                scope: one_scope(&scope)?,
                relation: Relation {
                    from: relation.from,
                    to: relation.to,
                    relation_type: relation.relation_type,
                    strength: relation.strength.unwrap_or(1.0),
                },
            },
            MemoryRequest::Unrelate {
                scope,
                from,
                to,
                relation_type,
            } => Self::Unrelate {
                scope: one_scope(&scope)?,
                from: required("from", from)?,
                to: required("to", to)?,
                relation_type: required("relation_type", relation_type)?,
            },
            MemoryRequest::Search(p) => {
                let scopes = scopes(&p.scopes)?;
                if scopes.is_empty() {
                    return Err(format!(
                        "query parameter scope is required: name the memory to search with scope={SCOPE_SYNTAX} (repeat it to search several)"
                    ));
                }
                let mut request = SearchRequest::new(required("query", p.query)?, scopes);
                if let Some(mode) = p.mode {
                    request.mode = match mode.as_str() {
                        "hybrid" => SearchMode::Hybrid,
                        "semantic" => SearchMode::Semantic,
                        "keyword" => SearchMode::Keyword,
                        other => {
                            return Err(format!(
                                "query parameter mode={other:?} is not hybrid, semantic or keyword"
                            ));
                        }
                    };
                }
                if let Some(limit) = p.limit {
                    request.limit = limit;
                }
                if let Some(min) = p.min_similarity {
                    request.min_similarity = min;
                }
                request.entity_types = p.types;
                request.since = time("since", p.since.as_deref())?;
                request.until = time("until", p.until.as_deref())?;
                Self::Search(request)
            }
            MemoryRequest::Path {
                scope,
                from,
                to,
                depth,
                relation_types,
                direction,
            } => Self::Path {
                scope: one_scope(&scope)?,
                from: required("from", from)?,
                to: required("to", to)?,
                query: graph_query(
                    GraphParams {
                        depth,
                        relation_types,
                        direction,
                        limit: None,
                    },
                    MAX_DEPTH,
                )?,
            },
            MemoryRequest::Export {
                scopes: given,
                format,
                embeddings,
            } => {
                let format = file_format(format.as_deref())?.unwrap_or(FileFormat::Caxton);
                let scopes = scopes(&given)?;
                if format == FileFormat::Mcp && scopes.len() != 1 {
                    return Err(format!(
                        "format=mcp exports one scope: name it with scope={SCOPE_SYNTAX} (the MCP memory server's file has no scopes)"
                    ));
                }
                Self::Export(Export {
                    format,
                    scopes,
                    embeddings: embeddings.unwrap_or(true),
                })
            }
            MemoryRequest::Import {
                scope,
                format,
                file,
            } => {
                if file.iter().all(u8::is_ascii_whitespace) {
                    return Err(
                        "the request body is empty: send the file to import as the body".into(),
                    );
                }
                let given = file_format(format.as_deref())?;
                let format = given.unwrap_or_else(|| FileFormat::detect(&file));
                let scope = scope.as_deref().map(parse_scope).transpose()?;
                if format == FileFormat::Mcp && scope.is_none() {
                    return Err(format!(
                        "query parameter scope is required for an MCP memory server file (it has no scopes): name it with scope={SCOPE_SYNTAX}"
                    ));
                }
                Self::Import {
                    format,
                    detected: given.is_none(),
                    scope,
                    bytes: Bytes::from(file),
                }
            }
            MemoryRequest::Stats {
                scopes: given,
                check,
            } => Self::Stats {
                scopes: scopes(&given)?,
                check,
            },
        })
    }
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse::<Scope>()
        .map_err(|e| format!("query parameter scope={s:?}: {e} (use {SCOPE_SYNTAX})"))
}

/// The one scope of an operation on one memory.
fn one_scope(s: &str) -> Result<Scope, String> {
    if s.is_empty() {
        return Err(format!(
            "query parameter scope is required: name the memory with scope={SCOPE_SYNTAX}"
        ));
    }
    parse_scope(s)
}

fn scopes(given: &[String]) -> Result<Vec<Scope>, String> {
    given.iter().map(|s| parse_scope(s)).collect()
}

fn required(key: &str, value: String) -> Result<String, String> {
    if value.is_empty() {
        Err(format!("query parameter {key} is required"))
    } else {
        Ok(value)
    }
}

fn time(key: &str, value: Option<&str>) -> Result<Option<Timestamp>, String> {
    value
        .map(|v| {
            Timestamp::parse(v).map_err(|_| {
                format!(
                    "query parameter {key}={v:?} is not an RFC 3339 time (like 2026-01-31T09:00:00Z)"
                )
            })
        })
        .transpose()
}

fn file_format(given: Option<&str>) -> Result<Option<FileFormat>, String> {
    match given {
        None | Some("auto") => Ok(None),
        Some("caxton") => Ok(Some(FileFormat::Caxton)),
        Some("mcp") => Ok(Some(FileFormat::Mcp)),
        Some(other) => Err(format!(
            "query parameter format={other:?} is not caxton or mcp"
        )),
    }
}

fn graph_query(params: GraphParams, default_depth: u32) -> Result<GraphQuery, String> {
    let mut query = GraphQuery::new(params.depth.unwrap_or(default_depth));
    query.relation_types = params.relation_types;
    if let Some(d) = params.direction {
        query.direction = match d.as_str() {
            "outgoing" => Direction::Outgoing,
            "incoming" => Direction::Incoming,
            "both" => Direction::Both,
            other => {
                return Err(format!(
                    "query parameter direction={other:?} is not outgoing, incoming or both"
                ));
            }
        };
    }
    if let Some(limit) = params.limit {
        query.limit = limit;
    }
    Ok(query)
}

impl MemoryOp {
    /// A short name for logs (`upsert`, `search`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Upsert { .. } => "upsert",
            Self::Show { .. } => "show",
            Self::Delete { .. } => "delete",
            Self::AddObservations { .. } => "add_observations",
            Self::DeleteObservations { .. } => "delete_observations",
            Self::Neighbours { .. } => "neighbours",
            Self::Relate { .. } => "relate",
            Self::Unrelate { .. } => "unrelate",
            Self::Search(_) => "search",
            Self::Path { .. } => "path",
            Self::Export(_) => "export",
            Self::Import { .. } => "import",
            Self::Stats { .. } => "stats",
        }
    }

    /// The scopes it works in, for logs (`all` when it covers every scope).
    pub fn scope_label(&self) -> String {
        let list = |scopes: &[Scope]| {
            if scopes.is_empty() {
                "all".to_owned()
            } else {
                scopes
                    .iter()
                    .map(Scope::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        match self {
            Self::Upsert { scope, .. }
            | Self::Show { scope, .. }
            | Self::Delete { scope, .. }
            | Self::AddObservations { scope, .. }
            | Self::DeleteObservations { scope, .. }
            | Self::Neighbours { scope, .. }
            | Self::Relate { scope, .. }
            | Self::Unrelate { scope, .. }
            | Self::Path { scope, .. } => scope.to_string(),
            Self::Search(r) => list(&r.scopes),
            Self::Export(Export { scopes, .. }) | Self::Stats { scopes, .. } => list(scopes),
            Self::Import { scope, .. } => scope
                .as_ref()
                .map_or_else(|| "from file".to_owned(), Scope::to_string),
        }
    }

    /// Perform it. Blocks (SQLite, the embedding model): async callers use the blocking pool.
    pub fn run(self, m: &Memory) -> Result<OperationReply, OperationError> {
        let ok = |body: Result<Value, serde_json::Error>| {
            Ok(OperationReply::Json {
                created: false,
                body: body.map_err(|e| MemoryError::Database(e.to_string()))?,
            })
        };
        match self {
            Self::Upsert { scope, body } => {
                let input = entity_input(
                    m,
                    &scope,
                    body.name,
                    body.entity_type,
                    body.observations,
                    body.metadata,
                )?;
                let up = m.upsert_entity(&scope, &input)?;
                tracing::info!(
                    entity = %input.name,
                    created = up.created,
                    observations_added = up.added_observations.len(),
                    "memory entity stored"
                );
                let stored = EntityStored {
                    scope: scope.to_string(),
                    observations_skipped: input
                        .observations
                        .len()
                        .saturating_sub(up.added_observations.len()),
                    name: input.name,
                    entity_type: input.entity_type,
                    id: up.id,
                    created: up.created,
                    observations_added: up.added_observations.len(),
                };
                Ok(OperationReply::Json {
                    created: up.created,
                    body: serde_json::to_value(stored)
                        .map_err(|e| MemoryError::Database(e.to_string()))?,
                })
            }
            Self::Show { scope, name } => {
                let entity = m
                    .entity(&scope, &name)?
                    .ok_or_else(|| not_found(&scope, &name))?;
                let relations = m.relations_of(&scope, &name)?;
                ok(serde_json::to_value(EntityShown {
                    entity: entity_record(entity),
                    relations: relations.into_iter().map(relation_record).collect(),
                }))
            }
            Self::Delete { scope, name } => {
                if !m.delete_entity(&scope, &name)? {
                    return Err(not_found(&scope, &name).into());
                }
                tracing::info!(entity = %name, "memory entity deleted");
                ok(serde_json::to_value(EntityDeleted {
                    scope: scope.to_string(),
                    deleted: name,
                }))
            }
            Self::AddObservations {
                scope,
                name,
                observations,
            } => {
                let added = m.add_observations(&scope, &name, &observations)?;
                ok(serde_json::to_value(ObservationsAdded {
                    scope: scope.to_string(),
                    name,
                    observations_added: added.len(),
                    observations_skipped: observations.len().saturating_sub(added.len()),
                }))
            }
            Self::DeleteObservations {
                scope,
                name,
                observations,
            } => {
                let deleted = m.delete_observations(&scope, &name, &observations)?;
                ok(serde_json::to_value(ObservationsDeleted {
                    scope: scope.to_string(),
                    name,
                    observations_deleted: deleted,
                }))
            }
            Self::Neighbours { scope, name, query } => {
                let neighbours = m.neighbours(&scope, &name, &query)?;
                ok(serde_json::to_value(Neighbours {
                    scope: scope.to_string(),
                    name,
                    depth: query.depth,
                    neighbours: neighbours
                        .into_iter()
                        .map(|n| NeighbourRecord {
                            name: n.name,
                            entity_type: n.entity_type,
                            depth: n.depth,
                            via: relation_record(n.via),
                        })
                        .collect(),
                }))
            }
            Self::Relate { scope, relation } => {
                m.relate(&scope, &relation)?;
                ok(serde_json::to_value(Related {
                    scope: scope.to_string(),
                    relation: relation_record(relation),
                }))
            }
            Self::Unrelate {
                scope,
                from,
                to,
                relation_type,
            } => {
                if !m.delete_relation(&scope, &from, &to, &relation_type)? {
                    return Err(OperationError::RelationNotFound {
                        scope,
                        from,
                        to,
                        relation_type,
                    });
                }
                ok(serde_json::to_value(Unrelated {
                    scope: scope.to_string(),
                    deleted: RelationKey {
                        from,
                        to,
                        relation_type,
                    },
                }))
            }
            Self::Search(request) => {
                let hits = m.search(&request)?;
                tracing::debug!(hits = hits.len(), mode = ?request.mode, "memory searched");
                ok(serde_json::to_value(SearchAnswer {
                    mode: mode_name(request.mode).to_owned(),
                    query: request.query,
                    hits: hits
                        .into_iter()
                        .map(|h| SearchHitRecord {
                            entity_id: h.entity_id,
                            scope: h.scope.to_string(),
                            name: h.name,
                            entity_type: h.entity_type,
                            score: h.score,
                            similarity: h.similarity,
                            observation: h.observation.map(observation_record),
                        })
                        .collect(),
                }))
            }
            Self::Path {
                scope,
                from,
                to,
                query,
            } => {
                let path = m.shortest_path(&scope, &from, &to, &query)?;
                ok(serde_json::to_value(PathAnswer {
                    scope: scope.to_string(),
                    from,
                    to,
                    depth: query.depth,
                    path: path.map(|steps| {
                        steps
                            .into_iter()
                            .map(|step| PathStepRecord {
                                from: step.from,
                                to: step.to,
                                relation: relation_record(step.relation),
                            })
                            .collect()
                    }),
                }))
            }
            Self::Export(export) => {
                let mut bytes = Vec::new();
                export.write(m, &mut bytes)?;
                Ok(OperationReply::File {
                    content_type: export.content_type(),
                    bytes,
                })
            }
            Self::Import {
                format,
                detected,
                scope,
                bytes,
            } => {
                let report = match (format, &scope) {
                    (FileFormat::Mcp, Some(scope)) => m.import_mcp_jsonl(&bytes, scope),
                    (FileFormat::Mcp, None) => {
                        return Err(MemoryError::InvalidInput {
                            field: "scope",
                            reason: "an MCP memory server file has no scopes: name one".into(),
                        }
                        .into());
                    }
                    (FileFormat::Caxton, _) => m.import_json(
                        &bytes,
                        &ImportOptions {
                            scope: scope.clone(),
                        },
                    ),
                };
                let report = match report {
                    Ok(r) => r,
                    // Say which format the file was read as, so a misdetected file is explained.
                    Err(MemoryError::Import { record, reason }) if detected => {
                        return Err(MemoryError::Import {
                            record: format!("{record} (read as the {} format)", format.as_str()),
                            reason,
                        }
                        .into());
                    }
                    Err(e) => return Err(e.into()),
                };
                tracing::info!(
                    format = format.as_str(),
                    entities_created = report.entities_created,
                    entities_merged = report.entities_merged,
                    observations_added = report.observations_added,
                    relations = report.relations,
                    "memory imported"
                );
                ok(serde_json::to_value(Imported {
                    format: format.as_str().to_owned(),
                    scope: scope.as_ref().map(Scope::to_string),
                    report: ImportCounts {
                        entities_created: report.entities_created,
                        entities_merged: report.entities_merged,
                        observations_added: report.observations_added,
                        observations_skipped: report.observations_skipped,
                        relations: report.relations,
                        embeddings_computed: report.embeddings_computed,
                    },
                }))
            }
            Self::Stats { scopes, check } => {
                let stats = m.stats(&scopes)?;
                let integrity = if check {
                    m.integrity_check()?;
                    Some("ok".to_owned())
                } else {
                    None
                };
                ok(serde_json::to_value(StatsAnswer {
                    scopes: if scopes.is_empty() {
                        StatsScopes::All("all".into())
                    } else {
                        StatsScopes::Some(scopes.iter().map(Scope::to_string).collect())
                    },
                    entities: stats.entities,
                    observations: stats.observations,
                    relations: stats.relations,
                    database_bytes: stats.database_bytes,
                    wal_bytes: stats.wal_bytes,
                    indexed_vectors: stats.indexed_vectors,
                    embedding_model: stats.embedding_model,
                    schema_version: stats.schema_version,
                    integrity,
                }))
            }
        }
    }
}

/// The API's record of a stored entity.
fn entity_record(e: caxton_memory::Entity) -> EntityRecord {
    EntityRecord {
        id: e.id,
        scope: e.scope.to_string(),
        name: e.name,
        entity_type: e.entity_type,
        metadata: e.metadata,
        created_at: e.created_at.to_string(),
        updated_at: e.updated_at.to_string(),
        observations: e.observations.into_iter().map(observation_record).collect(),
    }
}

fn observation_record(o: caxton_memory::Observation) -> ObservationRecord {
    ObservationRecord {
        id: o.id,
        text: o.text,
        created_at: o.created_at.to_string(),
    }
}

fn relation_record(r: Relation) -> RelationRecord {
    RelationRecord {
        from: r.from,
        to: r.to,
        relation_type: r.relation_type,
        strength: r.strength,
    }
}

/// The mode as the API spells it.
fn mode_name(mode: SearchMode) -> &'static str {
    match mode {
        SearchMode::Hybrid => "hybrid",
        SearchMode::Semantic => "semantic",
        SearchMode::Keyword => "keyword",
    }
}

fn not_found(scope: &Scope, name: &str) -> MemoryError {
    MemoryError::EntityNotFound {
        scope: scope.to_string(),
        name: name.to_owned(),
    }
}

/// The type of an entity whose writer names none, when it is new.
pub const DEFAULT_ENTITY_TYPE: &str = "thing";

/// The input to store `name` with: without `entity_type`, an entity that exists keeps its own
/// (adding a fact never retypes it) and a new one is a [`DEFAULT_ENTITY_TYPE`].
pub fn entity_input(
    memory: &Memory,
    scope: &Scope,
    name: String,
    entity_type: Option<String>,
    observations: Vec<String>,
    metadata: Option<serde_json::Map<String, Value>>,
) -> Result<EntityInput, MemoryError> {
    let entity_type = match entity_type {
        Some(t) => t,
        None => memory
            .entity(scope, &name)?
            .map_or_else(|| DEFAULT_ENTITY_TYPE.to_owned(), |e| e.entity_type),
    };
    Ok(EntityInput {
        name,
        entity_type,
        observations,
        metadata,
    })
}
