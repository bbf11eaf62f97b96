//! Export and import: Caxton's versioned JSON of the whole graph, and the common import path
//! that the MCP JSON-lines reader ([`crate::mcp_jsonl`]) shares.
//!
//! The JSON file:
//! ```text
//! { "format": "caxton-memory", "version": 1, "exported_at": "2026-11-26T16:24:00.000Z",
//!   "embedding_model": "sentence-transformers/all-MiniLM-L6-v2", "dimensions": 384,
//!   "entities": [ { "scope": "workspace:acme", "name": "Alice", "entity_type": "person",
//!                   "metadata": {}, "created_at": "…", "updated_at": "…",
//!                   "observations": [ { "text": "…", "created_at": "…",
//!                                       "embedding": "<base64 of 384 little-endian f32>" } ] } ],
//!   "relations": [ { "scope": "workspace:acme", "from": "Alice", "to": "Acme",
//!                    "relation_type": "works_at", "strength": 1.0, "created_at": "…" } ] }
//! ```
//! Import is one transaction: the whole file is parsed and checked, and missing embeddings are
//! computed, before the write lock is taken; any fault refuses the file, names the record, and
//! changes nothing. Embeddings in the file are reused only when its `embedding_model` is the
//! running one; otherwise they are recomputed. Import merges: an entity that exists takes the
//! file's type and metadata keys, gains the observations it lacks, and keeps its own creation
//! time; relations are created or take the file's strength.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::error::{MemoryError, Result};
use crate::index::RowMeta;
use crate::scope::{Scope, ScopeKind};
use crate::store::{
    Memory, embedding_text, entity_id, parse_metadata, scope_filter_sql, scope_key, upsert_relation,
};
use crate::types::{
    EMBEDDING_DIM, EntityId, MAX_NAME_BYTES, MAX_TYPE_BYTES, ObservationId, Timestamp, Vector,
    check_metadata, check_name, check_observation, check_strength, default_strength,
    text_from_bytes, vector_from_bytes, vector_to_bytes,
};

/// The `format` field of an export.
pub const EXPORT_FORMAT: &str = "caxton-memory";
/// The newest export version this build writes and reads.
pub const EXPORT_VERSION: u32 = 1;

/// Texts embedded per model call during an import.
const IMPORT_EMBED_BATCH: usize = 256;

/// A whole export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryExport {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// [`EXPORT_VERSION`] when written by this build.
    pub version: u32,
    /// When it was written.
    pub exported_at: Timestamp,
    /// The model the embeddings come from.
    pub embedding_model: String,
    /// Dimensions of each embedding.
    pub dimensions: usize,
    /// Every entity with its observations.
    pub entities: Vec<ExportEntity>,
    /// Every relation.
    pub relations: Vec<ExportRelation>,
}

/// One entity in an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportEntity {
    /// Its scope.
    pub scope: Scope,
    /// Its name.
    pub name: String,
    /// Its type.
    pub entity_type: String,
    /// A JSON object.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Its observations, oldest first.
    #[serde(default)]
    pub observations: Vec<ExportObservation>,
}

/// One observation in an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportObservation {
    /// The fact.
    pub text: String,
    /// When it was recorded.
    pub created_at: Timestamp,
    /// Base64 of 384 little-endian f32; absent when exported without embeddings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<String>,
}

/// One relation in an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportRelation {
    /// The scope of both ends.
    pub scope: Scope,
    /// Source entity name.
    pub from: String,
    /// Target entity name.
    pub to: String,
    /// Its type.
    pub relation_type: String,
    /// Between 0 and 1.
    #[serde(default = "default_strength")]
    pub strength: f32,
    /// When it was created.
    pub created_at: Timestamp,
}

/// One record of an export, in the order [`Memory::export_each`] reads them.
pub(crate) enum ExportItem {
    /// An entity with its observations.
    Entity(ExportEntity),
    /// A relation; all come after the entities.
    Relation(ExportRelation),
}

/// What to export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRequest {
    /// The scopes to export; `None` exports every scope (an operator's full backup).
    pub scopes: Option<Vec<Scope>>,
    /// Include the embeddings (2 KB of base64 per observation), so that an import into the
    /// same model needs no recomputation.
    pub include_embeddings: bool,
}

impl Default for ExportRequest {
    fn default() -> Self {
        Self {
            scopes: None,
            include_embeddings: true,
        }
    }
}

/// How to import.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportOptions {
    /// Put every record into this scope instead of the one the file names (required for the
    /// MCP JSON-lines format, which has no scopes).
    pub scope: Option<Scope>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportReport {
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
    /// Observations whose embedding was computed by the running model (rather than taken
    /// from the file).
    pub embeddings_computed: usize,
}

/// An entity ready to import: checked, with its record name for error messages.
pub(crate) struct ImportEntity {
    pub record: String,
    pub scope: Scope,
    pub name: String,
    pub entity_type: String,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub observations: Vec<ImportObservation>,
}

pub(crate) struct ImportObservation {
    pub text: String,
    pub created_at: Timestamp,
    pub vector: Option<Vector>,
}

pub(crate) struct ImportRelation {
    pub record: String,
    pub scope: Scope,
    pub from: String,
    pub to: String,
    pub relation_type: String,
    pub strength: f32,
    pub created_at: Timestamp,
}

pub(crate) fn refuse(record: impl Into<String>, reason: impl ToString) -> MemoryError {
    MemoryError::Import {
        record: record.into(),
        reason: reason.to_string(),
    }
}

/// `entities[3] "Alice"`: the index, and the name when there is one.
fn entity_record(i: usize, v: &serde_json::Value) -> String {
    match v.get("name").and_then(|n| n.as_str()) {
        Some(n) => format!("entities[{i}] {n:?}"),
        None => format!("entities[{i}]"),
    }
}

impl Memory {
    /// Everything in the selected scopes, read from one snapshot.
    pub fn export(&self, request: &ExportRequest) -> Result<MemoryExport> {
        let (mut entities, mut relations) = (Vec::new(), Vec::new());
        self.export_each(request, &mut |item| {
            match item {
                ExportItem::Entity(e) => entities.push(e),
                ExportItem::Relation(r) => relations.push(r),
            }
            Ok(())
        })?;
        Ok(MemoryExport {
            format: EXPORT_FORMAT.to_owned(),
            version: EXPORT_VERSION,
            exported_at: Timestamp::now(),
            embedding_model: self.embedder.model_id().to_owned(),
            dimensions: EMBEDDING_DIM,
            entities,
            relations,
        })
    }

    /// [`Memory::export`] written as JSON as it is read, one entity or relation a line, so
    /// that exporting a large memory never holds it all in memory.
    pub fn export_json(&self, request: &ExportRequest, out: &mut dyn Write) -> Result<()> {
        let exported_at = serde_json::to_value(Timestamp::now()).map_err(std::io::Error::from)?;
        write!(
            out,
            "{{\n\"format\": {},\n\"version\": {EXPORT_VERSION},\n\"exported_at\": {exported_at},\n\"embedding_model\": {},\n\"dimensions\": {EMBEDDING_DIM},\n\"entities\": [",
            serde_json::Value::from(EXPORT_FORMAT),
            serde_json::Value::from(self.embedder.model_id()),
        )?;
        let (mut entities, mut relations) = (0usize, 0usize);
        self.export_each(request, &mut |item| {
            match &item {
                ExportItem::Entity(e) => {
                    out.write_all(if entities == 0 { b"\n" } else { b",\n" })?;
                    entities += 1;
                    serde_json::to_writer(&mut *out, e).map_err(std::io::Error::from)?;
                }
                ExportItem::Relation(r) => {
                    out.write_all(match (relations, entities) {
                        (0, 0) => b"],\n\"relations\": [\n".as_slice(),
                        (0, _) => b"\n],\n\"relations\": [\n".as_slice(),
                        _ => b",\n".as_slice(),
                    })?;
                    relations += 1;
                    serde_json::to_writer(&mut *out, r).map_err(std::io::Error::from)?;
                }
            }
            Ok(())
        })?;
        out.write_all(match (relations, entities) {
            (0, 0) => b"],\n\"relations\": []\n}\n".as_slice(),
            (0, _) => b"\n],\n\"relations\": []\n}\n".as_slice(),
            _ => b"\n]\n}\n".as_slice(),
        })?;
        Ok(())
    }

    /// Every entity (with its observations, oldest first) and then every relation of the
    /// selected scopes, handed to `each` as they are read from one read transaction.
    pub(crate) fn export_each(
        &self,
        request: &ExportRequest,
        each: &mut dyn FnMut(ExportItem) -> Result<()>,
    ) -> Result<()> {
        let scopes = request.scopes.clone().unwrap_or_default();
        for s in &scopes {
            s.validate()?;
        }
        let (where_sql, args) = scope_filter_sql("e", &scopes);
        self.db.read(|c| {
            // One read transaction: entities, observations and relations from the same moment.
            let tx = c.unchecked_transaction()?;
            {
                let mut stmt = tx.prepare(&format!(
                    "SELECT e.id, e.scope, e.namespace, e.name, e.entity_type, e.metadata,
                            e.created_at, e.updated_at, o.text, o.created_at, o.embedding
                     FROM entities e LEFT JOIN observations o ON o.entity_id = e.id
                     WHERE {where_sql} ORDER BY e.id, o.id"
                ))?;
                let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
                let mut current: Option<(EntityId, ExportEntity)> = None;
                while let Some(r) = rows.next()? {
                    let id: EntityId = r.get(0)?;
                    if current.as_ref().is_none_or(|(at, _)| *at != id) {
                        if let Some((_, done)) = current.take() {
                            each(ExportItem::Entity(done))?;
                        }
                        let kind: String = r.get(1)?;
                        let namespace: String = r.get(2)?;
                        current = Some((
                            id,
                            ExportEntity {
                                scope: Scope::from_parts(ScopeKind::parse(&kind)?, &namespace)?,
                                name: r.get(3)?,
                                entity_type: r.get(4)?,
                                metadata: parse_metadata(&r.get::<_, String>(5)?)?,
                                created_at: Timestamp(r.get(6)?),
                                updated_at: Timestamp(r.get(7)?),
                                observations: Vec::new(),
                            },
                        ));
                    }
                    // An entity without observations comes as one row of NULLs.
                    let Some(text) = r.get::<_, Option<String>>(8)? else {
                        continue;
                    };
                    let embedding = if request.include_embeddings {
                        let blob = r
                            .get_ref(10)?
                            .as_blob()
                            .map_err(|e| MemoryError::Database(e.to_string()))?;
                        Some(BASE64.encode(blob))
                    } else {
                        None
                    };
                    if let Some((_, entity)) = current.as_mut() {
                        entity.observations.push(ExportObservation {
                            text,
                            created_at: Timestamp(r.get(9)?),
                            embedding,
                        });
                    }
                }
                if let Some((_, done)) = current {
                    each(ExportItem::Entity(done))?;
                }
            }
            {
                let mut stmt = tx.prepare(&format!(
                    "SELECT e.scope, e.namespace, e.name, t.name, r.relation_type, r.strength, r.created_at
                     FROM relations r JOIN entities e ON e.id = r.from_id JOIN entities t ON t.id = r.to_id
                     WHERE {where_sql} ORDER BY r.id"
                ))?;
                let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
                while let Some(r) = rows.next()? {
                    let kind: String = r.get(0)?;
                    let namespace: String = r.get(1)?;
                    each(ExportItem::Relation(ExportRelation {
                        scope: Scope::from_parts(ScopeKind::parse(&kind)?, &namespace)?,
                        from: r.get(2)?,
                        to: r.get(3)?,
                        relation_type: r.get(4)?,
                        strength: r.get::<_, f64>(5)? as f32,
                        created_at: Timestamp(r.get(6)?),
                    }))?;
                }
            }
            tx.finish()?;
            Ok(())
        })
    }

    /// Import a file written by [`Memory::export_json`]: all of it in one transaction, or
    /// nothing with an error naming the record at fault.
    pub fn import_json(&self, bytes: &[u8], options: &ImportOptions) -> Result<ImportReport> {
        let text = text_from_bytes(bytes, "import file").map_err(|e| refuse("file", e))?;
        let mut doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| refuse("file", format!("not JSON: {e}")))?;
        let header = |key: &str| doc.get(key).cloned().unwrap_or(serde_json::Value::Null);
        let format = header("format");
        if format.as_str() != Some(EXPORT_FORMAT) {
            return Err(refuse(
                "file header",
                format!("format is {format}, expected {EXPORT_FORMAT:?}"),
            ));
        }
        let version = header("version")
            .as_u64()
            .ok_or_else(|| refuse("file header", "version is missing or not a number"))?;
        if version == 0 || version > u64::from(EXPORT_VERSION) {
            return Err(refuse(
                "file header",
                format!(
                    "export version {version} is not supported: this build of caxton reads version {EXPORT_VERSION}"
                ),
            ));
        }
        let dimensions = header("dimensions").as_u64();
        let model = header("embedding_model").as_str().map(str::to_owned);
        // Vectors of another size cannot come from the running model.
        let model = model.filter(|_| dimensions == Some(EMBEDDING_DIM as u64));
        let take = |doc: &mut serde_json::Value, key: &str| -> Result<Vec<serde_json::Value>> {
            match doc.get_mut(key).map(serde_json::Value::take) {
                Some(serde_json::Value::Array(items)) => Ok(items),
                None | Some(serde_json::Value::Null) => Ok(Vec::new()),
                Some(_) => Err(refuse("file", format!("{key} is not a list"))),
            }
        };
        let raw_entities = take(&mut doc, "entities")?;
        let raw_relations = take(&mut doc, "relations")?;
        let mut entities = Vec::with_capacity(raw_entities.len());
        for (i, v) in raw_entities.into_iter().enumerate() {
            let record = entity_record(i, &v);
            let e: ExportEntity = serde_json::from_value(v).map_err(|e| refuse(&record, e))?;
            entities.push((record, e));
        }
        let mut relations = Vec::with_capacity(raw_relations.len());
        for (i, v) in raw_relations.into_iter().enumerate() {
            let record = format!("relations[{i}]");
            let r: ExportRelation = serde_json::from_value(v).map_err(|e| refuse(&record, e))?;
            relations.push((record, r));
        }
        self.import_export_records(entities, relations, model.as_deref(), options)
    }

    /// Import an export held in memory (see [`Memory::import_json`]).
    pub fn import(&self, export: &MemoryExport, options: &ImportOptions) -> Result<ImportReport> {
        if export.format != EXPORT_FORMAT || export.version == 0 || export.version > EXPORT_VERSION
        {
            return Err(refuse(
                "file header",
                format!(
                    "{} version {} is not supported: this build of caxton reads {EXPORT_FORMAT} version {EXPORT_VERSION}",
                    export.format, export.version
                ),
            ));
        }
        let model = (export.dimensions == EMBEDDING_DIM).then_some(export.embedding_model.as_str());
        let entities = export
            .entities
            .iter()
            .enumerate()
            .map(|(i, e)| (format!("entities[{i}] {:?}", e.name), e.clone()))
            .collect();
        let relations = export
            .relations
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("relations[{i}]"), r.clone()))
            .collect();
        self.import_export_records(entities, relations, model, options)
    }

    fn import_export_records(
        &self,
        entities: Vec<(String, ExportEntity)>,
        relations: Vec<(String, ExportRelation)>,
        file_model: Option<&str>,
        options: &ImportOptions,
    ) -> Result<ImportReport> {
        let reuse = file_model == Some(self.embedder.model_id());
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(entities.len());
        for (record, e) in entities {
            let scope = options.scope.clone().unwrap_or(e.scope);
            if !seen.insert((scope.clone(), e.name.clone())) {
                return Err(refuse(
                    &record,
                    format!("a second entity named {:?} in {scope}", e.name),
                ));
            }
            let mut observations = Vec::with_capacity(e.observations.len());
            for (j, o) in e.observations.into_iter().enumerate() {
                let vector = match (&o.embedding, reuse) {
                    (Some(b64), true) => Some(
                        BASE64
                            .decode(b64)
                            .ok()
                            .and_then(|bytes| vector_from_bytes(&bytes))
                            .ok_or_else(|| {
                                refuse(
                                    format!("{record} observations[{j}]"),
                                    format!("embedding is not base64 of {EMBEDDING_DIM} f32"),
                                )
                            })?,
                    ),
                    _ => None,
                };
                observations.push(ImportObservation {
                    text: o.text,
                    created_at: o.created_at,
                    vector,
                });
            }
            out.push(ImportEntity {
                record,
                scope,
                name: e.name,
                entity_type: e.entity_type,
                metadata: Some(e.metadata),
                created_at: e.created_at,
                updated_at: e.updated_at,
                observations,
            });
        }
        let relations = relations
            .into_iter()
            .map(|(record, r)| ImportRelation {
                record,
                scope: options.scope.clone().unwrap_or(r.scope),
                from: r.from,
                to: r.to,
                relation_type: r.relation_type,
                strength: r.strength,
                created_at: r.created_at,
            })
            .collect();
        self.import_records(out, relations)
    }

    /// The one import path: check, embed what needs it, then write everything in one
    /// transaction and update the index after the commit.
    pub(crate) fn import_records(
        &self,
        mut entities: Vec<ImportEntity>,
        relations: Vec<ImportRelation>,
    ) -> Result<ImportReport> {
        let max_obs = self.options.max_observation_bytes;
        for e in &entities {
            let r = &e.record;
            e.scope.validate().map_err(|err| refuse(r, err))?;
            check_name("entity name", &e.name, MAX_NAME_BYTES).map_err(|err| refuse(r, err))?;
            check_name("entity type", &e.entity_type, MAX_TYPE_BYTES)
                .map_err(|err| refuse(r, err))?;
            if let Some(m) = &e.metadata {
                check_metadata(m).map_err(|err| refuse(r, err))?;
            }
            for (j, o) in e.observations.iter().enumerate() {
                check_observation(&o.text, max_obs)
                    .map_err(|err| refuse(format!("{r} observations[{j}]"), err))?;
            }
        }
        for rel in &relations {
            let r = &rel.record;
            rel.scope.validate().map_err(|err| refuse(r, err))?;
            check_name("relation type", &rel.relation_type, MAX_TYPE_BYTES)
                .map_err(|err| refuse(r, err))?;
            check_strength(rel.strength).map_err(|err| refuse(r, err))?;
        }

        // Compute the embeddings the file could not supply, outside the write lock.
        let mut report = ImportReport::default();
        let todo: Vec<(usize, usize)> = entities
            .iter()
            .enumerate()
            .flat_map(|(i, e)| {
                e.observations
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| o.vector.is_none())
                    .map(move |(j, _)| (i, j))
            })
            .collect();
        for chunk in todo.chunks(IMPORT_EMBED_BATCH) {
            let texts: Vec<String> = chunk
                .iter()
                .map(|&(i, j)| embedding_text(&entities[i].name, &entities[i].observations[j].text))
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vectors = self.embedder.embed(&refs)?;
            for (&(i, j), v) in chunk.iter().zip(vectors) {
                entities[i].observations[j].vector = Some(v);
            }
        }
        report.embeddings_computed = todo.len();

        let (report, added) = self.db.write(
            |tx| write_records(tx, &entities, &relations, report),
            |(report, added)| {
                let mut index = self.index_mut();
                index.reserve(added.len());
                for a in &added {
                    let skey = index.scope_key(&a.scope_key);
                    let tkey = index.type_key(&a.entity_type);
                    if a.retyped {
                        index.retype_entity(a.entity, tkey);
                    }
                    for (obs, v, at) in &a.observations {
                        let meta = RowMeta {
                            observation: *obs,
                            entity: a.entity,
                            scope: skey,
                            entity_type: tkey,
                            time: *at,
                        };
                        index.insert(meta, v);
                    }
                }
                (report, added.len())
            },
        )?;
        // A large import leaves a WAL the size of everything it wrote; fold it into the
        // database and shrink it now rather than keep that much disk.
        if added > 1000 {
            self.checkpoint()?;
        }
        Ok(report)
    }
}

/// What the index must learn about one imported entity.
struct IndexedEntity {
    entity: EntityId,
    scope_key: String,
    entity_type: String,
    retyped: bool,
    observations: Vec<(ObservationId, Vector, i64)>,
}

fn write_records(
    tx: &Transaction<'_>,
    entities: &[ImportEntity],
    relations: &[ImportRelation],
    mut report: ImportReport,
) -> Result<(ImportReport, Vec<IndexedEntity>)> {
    let mut find = tx.prepare_cached(
        "SELECT id, entity_type FROM entities WHERE scope = ?1 AND namespace = ?2 AND name = ?3",
    )?;
    let mut insert_entity = tx.prepare_cached(
        "INSERT INTO entities (scope, namespace, name, entity_type, metadata, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
    )?;
    let mut merge_entity = tx.prepare_cached(
        "UPDATE entities SET entity_type = ?2, metadata = json_patch(metadata, ?3),
             updated_at = max(updated_at, ?4)
         WHERE id = ?1",
    )?;
    let mut texts_of = tx.prepare_cached("SELECT text FROM observations WHERE entity_id = ?1")?;
    let mut insert_obs = tx.prepare_cached(
        "INSERT INTO observations (entity_id, text, embedding, created_at) VALUES (?1, ?2, ?3, ?4)
         RETURNING id",
    )?;
    let mut ids: HashMap<(Scope, String), EntityId> = HashMap::new();
    let mut indexed = Vec::with_capacity(entities.len());
    for e in entities {
        let metadata = match &e.metadata {
            Some(m) => check_metadata(m).map_err(|err| refuse(&e.record, err))?,
            None => "{}".to_owned(),
        };
        let (kind, ns) = (e.scope.kind().as_str(), e.scope.namespace());
        let existing: Option<(EntityId, String)> = find
            .query_row(params![kind, ns, e.name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (id, retyped, mut present) = match existing {
            None => {
                let id: EntityId = insert_entity.query_row(
                    params![
                        kind,
                        ns,
                        e.name,
                        e.entity_type,
                        metadata,
                        e.created_at.0,
                        e.updated_at.0
                    ],
                    |r| r.get(0),
                )?;
                report.entities_created += 1;
                (id, false, HashSet::new())
            }
            Some((id, old_type)) => {
                merge_entity.execute(params![id, e.entity_type, metadata, e.updated_at.0])?;
                report.entities_merged += 1;
                let present = texts_of
                    .query_map([id], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<HashSet<_>>>()?;
                (id, old_type != e.entity_type, present)
            }
        };
        let mut added = Vec::with_capacity(e.observations.len());
        for o in &e.observations {
            if !present.insert(o.text.clone()) {
                report.observations_skipped += 1;
                continue;
            }
            let Some(v) = &o.vector else {
                return Err(refuse(&e.record, "an observation has no embedding"));
            };
            let obs: ObservationId = insert_obs.query_row(
                params![id, o.text, vector_to_bytes(v), o.created_at.0],
                |r| r.get(0),
            )?;
            added.push((obs, *v, o.created_at.0));
        }
        report.observations_added += added.len();
        ids.insert((e.scope.clone(), e.name.clone()), id);
        indexed.push(IndexedEntity {
            entity: id,
            scope_key: scope_key(kind, ns),
            entity_type: e.entity_type.clone(),
            retyped,
            observations: added,
        });
    }
    for r in relations {
        let mut end = |name: &str| -> Result<EntityId> {
            if let Some(&id) = ids.get(&(r.scope.clone(), name.to_owned())) {
                return Ok(id);
            }
            let id = entity_id(tx, &r.scope, name)?.ok_or_else(|| {
                refuse(
                    &r.record,
                    format!(
                        "{name:?} is neither in the file nor in {} (create it first)",
                        r.scope
                    ),
                )
            })?;
            ids.insert((r.scope.clone(), name.to_owned()), id);
            Ok(id)
        };
        let from = end(&r.from)?;
        let to = end(&r.to)?;
        upsert_relation(tx, from, to, &r.relation_type, r.strength, r.created_at)?;
        report.relations += 1;
    }
    Ok((report, indexed))
}
