//! `/api/v1/memory`: every memory operation as a client asks for it ([`MemoryRequest`]), in the
//! API's own words (scopes written `agent-only:NAME`, `workspace:NAME` or `global`, times in
//! RFC 3339, modes and formats by name), and the HTTP request each one is ([`MemoryRoute`],
//! [`MemoryRequest::query`], [`MemoryRequest::body`]).
//!
//! The daemon reads HTTP into a `MemoryRequest`; the supervisor checks one and runs it, so a
//! client in the daemon's process (the CLI with no daemon running) hands over the same value
//! and gets the same answers and messages without going through HTTP.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An entity to create or update (the body of `POST /api/v1/memory/entities`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityUpsert {
    /// The entity's name, unique in its scope.
    pub name: String,
    /// Absent: the entity's current type, or `thing` for a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_type: Option<String>,
    /// Observations to add.
    #[serde(default)]
    pub observations: Vec<String>,
    /// Free-form metadata (a JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, Value>>,
}

/// Body of the observation routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationsBody {
    /// Observation texts.
    pub observations: Vec<String>,
}

/// A relation to create or update (the body of `POST /api/v1/memory/relations`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelationBody {
    /// Source entity.
    pub from: String,
    /// Target entity.
    pub to: String,
    /// Relation type.
    pub relation_type: String,
    /// Strength in 0..=1; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<f32>,
}

/// How far a graph walk goes and along which relations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GraphParams {
    /// Hops; the route's default when absent.
    pub depth: Option<u32>,
    /// Only these relation types (all when empty).
    pub relation_types: Vec<String>,
    /// `outgoing`, `incoming` or `both`.
    pub direction: Option<String>,
    /// Most entities returned.
    pub limit: Option<usize>,
}

/// A search.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchParams {
    /// What to look for.
    pub query: String,
    /// The scopes searched (at least one).
    pub scopes: Vec<String>,
    /// `hybrid`, `semantic` or `keyword`.
    pub mode: Option<String>,
    /// Most hits.
    pub limit: Option<usize>,
    /// Least similarity of a semantic hit.
    pub min_similarity: Option<f32>,
    /// Only entities of these types.
    pub types: Vec<String>,
    /// Only observations since this time.
    pub since: Option<String>,
    /// Only observations until this time.
    pub until: Option<String>,
}

/// One memory operation.
#[derive(Debug, Clone, PartialEq)]
pub enum MemoryRequest {
    /// Create or update an entity with observations.
    Upsert {
        /// The memory it works in.
        scope: String,
        /// What to store.
        entity: EntityUpsert,
    },
    /// An entity, its observations and relations.
    Show {
        /// The memory it works in.
        scope: String,
        /// The entity.
        name: String,
    },
    /// Delete an entity with its observations and relations.
    Delete {
        /// The memory it works in.
        scope: String,
        /// The entity.
        name: String,
    },
    /// Add observations to an entity.
    AddObservations {
        /// The memory it works in.
        scope: String,
        /// The entity.
        name: String,
        /// Observation texts.
        observations: Vec<String>,
    },
    /// Delete observations by text.
    DeleteObservations {
        /// The memory it works in.
        scope: String,
        /// The entity.
        name: String,
        /// Observation texts.
        observations: Vec<String>,
    },
    /// Entities within some hops of one.
    Neighbours {
        /// The memory it works in.
        scope: String,
        /// The entity.
        name: String,
        /// How far and along which relations.
        graph: GraphParams,
    },
    /// Create a relation or update its strength.
    Relate {
        /// The memory it works in.
        scope: String,
        /// The relation.
        relation: RelationBody,
    },
    /// Delete one relation.
    Unrelate {
        /// The memory it works in.
        scope: String,
        /// Source entity.
        from: String,
        /// Target entity.
        to: String,
        /// Relation type.
        relation_type: String,
    },
    /// Semantic, keyword or hybrid search.
    Search(SearchParams),
    /// The shortest path between two entities.
    Path {
        /// The memory it works in.
        scope: String,
        /// Where the path starts.
        from: String,
        /// Where it ends.
        to: String,
        /// Most hops; the deepest walk allowed when absent.
        depth: Option<u32>,
        /// Only along these relation types (all when empty).
        relation_types: Vec<String>,
        /// `outgoing`, `incoming` or `both`.
        direction: Option<String>,
    },
    /// A file of the memory.
    Export {
        /// The scopes written; empty for all.
        scopes: Vec<String>,
        /// `caxton` (the default) or `mcp`.
        format: Option<String>,
        /// Whether vectors are written (the default).
        embeddings: Option<bool>,
    },
    /// Read a file into the memory.
    Import {
        /// The scope to read into (Caxton files name their own).
        scope: Option<String>,
        /// `caxton`, `mcp`, or detected from the file when absent.
        format: Option<String>,
        /// The file.
        file: Vec<u8>,
    },
    /// Counts and sizes, optionally an integrity check.
    Stats {
        /// The scopes counted; empty for all.
        scopes: Vec<String>,
        /// Whether to run an integrity check.
        check: bool,
    },
}

/// One memory endpoint, with its path parameter where it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryRoute {
    /// `POST /api/v1/memory/entities`
    UpsertEntity,
    /// `GET /api/v1/memory/entities/{name}`
    ShowEntity(String),
    /// `DELETE /api/v1/memory/entities/{name}`
    DeleteEntity(String),
    /// `POST /api/v1/memory/entities/{name}/observations`
    AddObservations(String),
    /// `DELETE /api/v1/memory/entities/{name}/observations`
    DeleteObservations(String),
    /// `GET /api/v1/memory/entities/{name}/neighbours`
    Neighbours(String),
    /// `POST /api/v1/memory/relations`
    Relate,
    /// `DELETE /api/v1/memory/relations`
    Unrelate,
    /// `GET /api/v1/memory/search`
    Search,
    /// `GET /api/v1/memory/path`
    Path,
    /// `GET /api/v1/memory/export`
    Export,
    /// `POST /api/v1/memory/import`
    Import,
    /// `GET /api/v1/memory/stats`
    Stats,
}

impl MemoryRoute {
    /// The HTTP method.
    pub fn method(&self) -> &'static str {
        match self {
            Self::UpsertEntity | Self::AddObservations(_) | Self::Relate | Self::Import => "POST",
            Self::DeleteEntity(_) | Self::DeleteObservations(_) | Self::Unrelate => "DELETE",
            Self::ShowEntity(_)
            | Self::Neighbours(_)
            | Self::Search
            | Self::Path
            | Self::Export
            | Self::Stats => "GET",
        }
    }

    /// The path, with the entity name percent-encoded.
    pub fn path(&self) -> String {
        let entity = |name: &str, rest: &str| {
            format!("/api/v1/memory/entities/{}{rest}", encode_segment(name))
        };
        match self {
            Self::UpsertEntity => "/api/v1/memory/entities".into(),
            Self::ShowEntity(n) | Self::DeleteEntity(n) => entity(n, ""),
            Self::AddObservations(n) | Self::DeleteObservations(n) => entity(n, "/observations"),
            Self::Neighbours(n) => entity(n, "/neighbours"),
            Self::Relate | Self::Unrelate => "/api/v1/memory/relations".into(),
            Self::Search => "/api/v1/memory/search".into(),
            Self::Path => "/api/v1/memory/path".into(),
            Self::Export => "/api/v1/memory/export".into(),
            Self::Import => "/api/v1/memory/import".into(),
            Self::Stats => "/api/v1/memory/stats".into(),
        }
    }

    /// The query parameters this route understands.
    pub fn parameters(&self) -> &'static [&'static str] {
        match self {
            Self::UpsertEntity
            | Self::ShowEntity(_)
            | Self::DeleteEntity(_)
            | Self::AddObservations(_)
            | Self::DeleteObservations(_)
            | Self::Relate => &["scope"],
            Self::Unrelate => &["scope", "from", "to", "relation_type"],
            Self::Neighbours(_) => &["scope", "depth", "relation_type", "direction", "limit"],
            Self::Search => &[
                "scope",
                "query",
                "mode",
                "limit",
                "min_similarity",
                "type",
                "since",
                "until",
            ],
            Self::Path => &["scope", "from", "to", "depth", "relation_type", "direction"],
            Self::Export => &["scope", "format", "embeddings"],
            Self::Import => &["scope", "format"],
            Self::Stats => &["scope", "check"],
        }
    }
}

impl MemoryRequest {
    /// The endpoint it goes to.
    pub fn route(&self) -> MemoryRoute {
        match self {
            Self::Upsert { .. } => MemoryRoute::UpsertEntity,
            Self::Show { name, .. } => MemoryRoute::ShowEntity(name.clone()),
            Self::Delete { name, .. } => MemoryRoute::DeleteEntity(name.clone()),
            Self::AddObservations { name, .. } => MemoryRoute::AddObservations(name.clone()),
            Self::DeleteObservations { name, .. } => MemoryRoute::DeleteObservations(name.clone()),
            Self::Neighbours { name, .. } => MemoryRoute::Neighbours(name.clone()),
            Self::Relate { .. } => MemoryRoute::Relate,
            Self::Unrelate { .. } => MemoryRoute::Unrelate,
            Self::Search(_) => MemoryRoute::Search,
            Self::Path { .. } => MemoryRoute::Path,
            Self::Export { .. } => MemoryRoute::Export,
            Self::Import { .. } => MemoryRoute::Import,
            Self::Stats { .. } => MemoryRoute::Stats,
        }
    }

    /// Its query parameters, in the order the API documents them.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        let scope = |q: &mut Vec<(&'static str, String)>, scope: &str| {
            q.push(("scope", scope.to_owned()));
        };
        let scopes = |q: &mut Vec<(&'static str, String)>, scopes: &[String]| {
            q.extend(scopes.iter().map(|s| ("scope", s.clone())));
        };
        let graph = |q: &mut Vec<(&'static str, String)>, g: &GraphParams| {
            q.extend(
                g.relation_types
                    .iter()
                    .map(|t| ("relation_type", t.clone())),
            );
            push(q, "depth", g.depth);
            push(q, "direction", g.direction.as_ref());
            push(q, "limit", g.limit);
        };
        match self {
            Self::Upsert { scope: s, .. }
            | Self::Show { scope: s, .. }
            | Self::Delete { scope: s, .. }
            | Self::AddObservations { scope: s, .. }
            | Self::DeleteObservations { scope: s, .. }
            | Self::Relate { scope: s, .. } => scope(&mut q, s),
            Self::Neighbours {
                scope: s, graph: g, ..
            } => {
                scope(&mut q, s);
                graph(&mut q, g);
            }
            Self::Unrelate {
                scope: s,
                from,
                to,
                relation_type,
            } => {
                scope(&mut q, s);
                q.push(("from", from.clone()));
                q.push(("to", to.clone()));
                q.push(("relation_type", relation_type.clone()));
            }
            Self::Search(p) => {
                q.push(("query", p.query.clone()));
                scopes(&mut q, &p.scopes);
                q.extend(p.types.iter().map(|t| ("type", t.clone())));
                push(&mut q, "mode", p.mode.as_ref());
                push(&mut q, "limit", p.limit);
                push(&mut q, "min_similarity", p.min_similarity);
                push(&mut q, "since", p.since.as_ref());
                push(&mut q, "until", p.until.as_ref());
            }
            Self::Path {
                scope: s,
                from,
                to,
                depth,
                relation_types,
                direction,
            } => {
                scope(&mut q, s);
                q.push(("from", from.clone()));
                q.push(("to", to.clone()));
                graph(
                    &mut q,
                    &GraphParams {
                        depth: *depth,
                        relation_types: relation_types.clone(),
                        direction: direction.clone(),
                        limit: None,
                    },
                );
            }
            Self::Export {
                scopes: s,
                format,
                embeddings,
            } => {
                push(&mut q, "format", format.as_ref());
                scopes(&mut q, s);
                push(&mut q, "embeddings", *embeddings);
            }
            Self::Import { scope, format, .. } => {
                push(&mut q, "format", format.as_ref());
                push(&mut q, "scope", scope.as_ref());
            }
            Self::Stats { scopes: s, check } => {
                scopes(&mut q, s);
                if *check {
                    q.push(("check", "true".into()));
                }
            }
        }
        q
    }

    /// Its path with the query string.
    pub fn path_and_query(&self) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.query())
            .finish();
        let path = self.route().path();
        if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        }
    }

    /// Its body and the body's media type.
    pub fn body(&self) -> (&'static str, Vec<u8>) {
        match self {
            Self::Upsert { entity, .. } => json(entity),
            Self::AddObservations { observations, .. }
            | Self::DeleteObservations { observations, .. } => json(&ObservationsBody {
                observations: observations.clone(),
            }),
            Self::Relate { relation, .. } => json(relation),
            Self::Import { format, file, .. } => (
                if format.as_deref() == Some("mcp") {
                    "application/x-ndjson"
                } else {
                    "application/json"
                },
                file.clone(),
            ),
            _ => ("application/json", Vec::new()),
        }
    }
}

/// A stored observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservationRecord {
    /// Row id.
    pub id: i64,
    /// The fact.
    pub text: String,
    /// When it was recorded (RFC 3339).
    pub created_at: String,
}

/// A stored entity with its observations, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityRecord {
    /// Row id.
    pub id: i64,
    /// Where it lives.
    pub scope: String,
    /// Its name.
    pub name: String,
    /// Its type.
    pub entity_type: String,
    /// A JSON object.
    #[serde(default)]
    pub metadata: serde_json::Map<String, Value>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When its type, metadata or observations last changed (RFC 3339).
    pub updated_at: String,
    /// Its observations.
    #[serde(default)]
    pub observations: Vec<ObservationRecord>,
}

/// A stored relation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelationRecord {
    /// Source entity.
    pub from: String,
    /// Target entity.
    pub to: String,
    /// Relation type.
    pub relation_type: String,
    /// Between 0 and 1.
    pub strength: f32,
}

/// What names one relation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelationKey {
    /// Source entity.
    pub from: String,
    /// Target entity.
    pub to: String,
    /// Relation type.
    pub relation_type: String,
}

/// Answer of [`MemoryRequest::Upsert`] (201 when the entity is new).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityStored {
    /// Its scope.
    pub scope: String,
    /// Its name.
    pub name: String,
    /// Its type.
    pub entity_type: String,
    /// Its row id.
    pub id: i64,
    /// Whether it is new.
    pub created: bool,
    /// Observations added.
    pub observations_added: usize,
    /// Observations already known, not added again.
    pub observations_skipped: usize,
}

/// Answer of [`MemoryRequest::Show`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityShown {
    /// The entity.
    pub entity: EntityRecord,
    /// Its relations, both directions.
    pub relations: Vec<RelationRecord>,
}

/// Answer of [`MemoryRequest::Delete`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityDeleted {
    /// Its scope.
    pub scope: String,
    /// The entity deleted.
    pub deleted: String,
}

/// Answer of [`MemoryRequest::AddObservations`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservationsAdded {
    /// Its scope.
    pub scope: String,
    /// The entity.
    pub name: String,
    /// Observations added.
    pub observations_added: usize,
    /// Observations already known, not added again.
    pub observations_skipped: usize,
}

/// Answer of [`MemoryRequest::DeleteObservations`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservationsDeleted {
    /// Its scope.
    pub scope: String,
    /// The entity.
    pub name: String,
    /// Observations deleted.
    pub observations_deleted: usize,
}

/// An entity reached by a walk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeighbourRecord {
    /// Its name.
    pub name: String,
    /// Its type.
    pub entity_type: String,
    /// Hops from the start.
    pub depth: u32,
    /// The relation by which it was first reached, as stored.
    pub via: RelationRecord,
}

/// Answer of [`MemoryRequest::Neighbours`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbours {
    /// Its scope.
    pub scope: String,
    /// The entity walked from.
    pub name: String,
    /// Most hops walked.
    pub depth: u32,
    /// What was reached, nearest first.
    pub neighbours: Vec<NeighbourRecord>,
}

/// Answer of [`MemoryRequest::Relate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Related {
    /// Its scope.
    pub scope: String,
    /// The relation as stored.
    pub relation: RelationRecord,
}

/// Answer of [`MemoryRequest::Unrelate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unrelated {
    /// Its scope.
    pub scope: String,
    /// The relation deleted.
    pub deleted: RelationKey,
}

/// One entity found, with the observation that matched best.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHitRecord {
    /// The entity's row id.
    pub entity_id: i64,
    /// Its scope.
    pub scope: String,
    /// Its name.
    pub name: String,
    /// Its type.
    pub entity_type: String,
    /// What the ranking sorted by (higher is better).
    pub score: f32,
    /// Cosine similarity of the best observation, when the semantic side found it.
    pub similarity: Option<f32>,
    /// The best-matching observation; absent when only the name matched.
    pub observation: Option<ObservationRecord>,
}

/// Answer of [`MemoryRequest::Search`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchAnswer {
    /// The query.
    pub query: String,
    /// The mode used.
    pub mode: String,
    /// Best first.
    pub hits: Vec<SearchHitRecord>,
}

/// One hop of a path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathStepRecord {
    /// The entity this hop leaves.
    pub from: String,
    /// The entity it reaches.
    pub to: String,
    /// The relation followed, as stored (pointing back when followed as incoming).
    pub relation: RelationRecord,
}

/// Answer of [`MemoryRequest::Path`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathAnswer {
    /// Its scope.
    pub scope: String,
    /// Where the path starts.
    pub from: String,
    /// Where it ends.
    pub to: String,
    /// Most hops searched.
    pub depth: u32,
    /// The hops; absent when there is no path within the depth.
    pub path: Option<Vec<PathStepRecord>>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportCounts {
    /// Entities that did not exist before.
    pub entities_created: usize,
    /// Entities that existed and were merged into.
    pub entities_merged: usize,
    /// Observations added.
    pub observations_added: usize,
    /// Observations already present, not added again.
    pub observations_skipped: usize,
    /// Relations created or updated.
    pub relations: usize,
    /// Observations whose embedding was computed (rather than taken from the file).
    pub embeddings_computed: usize,
}

/// Answer of [`MemoryRequest::Import`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Imported {
    /// The format the file was read as.
    pub format: String,
    /// The scope everything went into, when one was given.
    pub scope: Option<String>,
    /// What it did.
    pub report: ImportCounts,
}

/// The scopes a stats answer covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StatsScopes {
    /// `"all"`.
    All(String),
    /// The scopes named.
    Some(Vec<String>),
}

/// Answer of [`MemoryRequest::Stats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsAnswer {
    /// The scopes counted.
    pub scopes: StatsScopes,
    /// Entities in those scopes.
    pub entities: u64,
    /// Observations in those scopes.
    pub observations: u64,
    /// Relations in those scopes.
    pub relations: u64,
    /// Size of the whole database file (all scopes), in bytes.
    pub database_bytes: u64,
    /// Size of the write-ahead log, in bytes.
    pub wal_bytes: u64,
    /// Vectors held in memory for semantic search (all scopes).
    pub indexed_vectors: u64,
    /// The embedding model the stored vectors come from.
    pub embedding_model: String,
    /// The schema version of the database.
    pub schema_version: i64,
    /// `ok` when an integrity check was asked for and passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<String>,
}

/// A JSON body. These types hold strings, numbers and JSON maps only, so serializing them
/// cannot fail.
fn json(body: &impl Serialize) -> (&'static str, Vec<u8>) {
    (
        "application/json",
        serde_json::to_vec(body).unwrap_or_default(),
    )
}

fn push(q: &mut Vec<(&'static str, String)>, key: &'static str, value: Option<impl ToString>) {
    if let Some(v) = value {
        q.push((key, v.to_string()));
    }
}

/// A path segment in percent-encoding: `form_urlencoded` escapes everything but
/// `A-Za-z0-9*-._` (a literal `+` as `%2B`) and writes spaces as `+`, which a path would keep
/// as a plus, so those become `%20`.
pub fn encode_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_names_and_scopes_survive_the_path_and_query() {
        let route = MemoryRoute::Neighbours("Ada Lovelace/+1 café".into());
        assert_eq!(
            route.path(),
            "/api/v1/memory/entities/Ada%20Lovelace%2F%2B1%20caf%C3%A9/neighbours"
        );
        let stats = MemoryRequest::Stats {
            scopes: vec!["workspace:a b".into()],
            check: false,
        };
        assert_eq!(
            stats.path_and_query(),
            "/api/v1/memory/stats?scope=workspace%3Aa+b"
        );
    }

    #[test]
    fn every_query_parameter_a_request_writes_is_one_its_route_takes() {
        let graph = GraphParams {
            depth: Some(1),
            relation_types: vec!["r".into()],
            direction: Some("both".into()),
            limit: Some(1),
        };
        let requests = [
            MemoryRequest::Neighbours {
                scope: "global".into(),
                name: "a".into(),
                graph,
            },
            MemoryRequest::Path {
                scope: "global".into(),
                from: "a".into(),
                to: "b".into(),
                depth: Some(2),
                relation_types: vec!["r".into()],
                direction: Some("both".into()),
            },
            MemoryRequest::Search(SearchParams {
                query: "q".into(),
                scopes: vec!["global".into()],
                mode: Some("hybrid".into()),
                limit: Some(1),
                min_similarity: Some(0.1),
                types: vec!["t".into()],
                since: Some("s".into()),
                until: Some("u".into()),
            }),
            MemoryRequest::Export {
                scopes: vec!["global".into()],
                format: Some("caxton".into()),
                embeddings: Some(true),
            },
            MemoryRequest::Import {
                scope: Some("global".into()),
                format: Some("mcp".into()),
                file: Vec::new(),
            },
            MemoryRequest::Stats {
                scopes: vec!["global".into()],
                check: true,
            },
        ];
        for request in requests {
            let route = request.route();
            for (key, _) in request.query() {
                assert!(route.parameters().contains(&key), "{key} on {route:?}");
            }
        }
    }
}
