//! [`Memory`]: the database, the in-memory vector index and the embedder together, and the
//! operations on entities, observations and relations.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::db::{Db, DbOptions, SCHEMA_VERSION, Synchronous};
use crate::embed::Embedder;
use crate::error::{MemoryError, Result, invalid};
use crate::index::{RowMeta, VectorIndex};
use crate::scope::{Scope, ScopeKind};
use crate::types::{
    DEFAULT_MAX_OBSERVATION_BYTES, Entity, EntityId, EntityInput, MAX_NAME_BYTES, MAX_TYPE_BYTES,
    Observation, ObservationId, Relation, Stats, Timestamp, Upserted, Vector, check_metadata,
    check_name, check_observation, check_strength, vector_from_bytes, vector_to_bytes,
};

/// Texts embedded per call when the whole database is re-embedded.
const REEMBED_BATCH: usize = 256;

/// How to open a [`Memory`].
#[derive(Debug, Clone)]
pub struct MemoryOptions {
    /// Durability of commits (see [`Synchronous`]); `Normal` by default.
    pub synchronous: Synchronous,
    /// How long a statement waits for another process's lock; 10 s by default.
    pub busy_timeout: Duration,
    /// Read connections; 4 by default.
    pub readers: u32,
    /// Cap on the database size in bytes; none by default.
    pub max_database_bytes: Option<u64>,
    /// Longest observation accepted, in bytes; 8 KiB by default.
    pub max_observation_bytes: usize,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        let db = DbOptions::default();
        Self {
            synchronous: db.synchronous,
            busy_timeout: db.busy_timeout,
            readers: db.readers,
            max_database_bytes: db.max_bytes,
            max_observation_bytes: DEFAULT_MAX_OBSERVATION_BYTES,
        }
    }
}

/// The memory store. Open once per database file and share it.
pub struct Memory {
    pub(crate) db: Db,
    pub(crate) index: RwLock<VectorIndex>,
    pub(crate) embedder: Arc<dyn Embedder>,
    pub(crate) options: MemoryOptions,
}

/// The key under which the index interns a scope.
pub(crate) fn scope_key(kind: &str, namespace: &str) -> String {
    format!("{kind}\u{0}{namespace}")
}

/// The text whose embedding is stored for an observation.
pub(crate) fn embedding_text(entity_name: &str, text: &str) -> String {
    format!("{entity_name}: {text}")
}

impl Memory {
    /// Open (creating and migrating as needed) the database at `path`, load every embedding
    /// into memory, and re-embed everything if the stored vectors came from another model.
    pub fn open(path: &Path, embedder: Arc<dyn Embedder>, options: MemoryOptions) -> Result<Self> {
        let db = Db::open(
            path,
            &DbOptions {
                synchronous: options.synchronous,
                busy_timeout: options.busy_timeout,
                readers: options.readers,
                max_bytes: options.max_database_bytes,
                ..DbOptions::default()
            },
        )?;
        let memory = Self {
            db,
            index: RwLock::new(VectorIndex::default()),
            embedder,
            options,
        };
        memory.reconcile_model()?;
        memory.load_index()?;
        Ok(memory)
    }

    /// The embedder in use.
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    /// Longest observation accepted, in bytes.
    pub fn max_observation_bytes(&self) -> usize {
        self.options.max_observation_bytes
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// Create the entity if it does not exist in `scope`, otherwise update its type and merge
    /// its metadata; then add the observations it does not have yet. Observations are embedded
    /// before the write lock is taken, so a slow model does not hold up other writers.
    pub fn upsert_entity(&self, scope: &Scope, input: &EntityInput) -> Result<Upserted> {
        scope.validate()?;
        check_name("entity name", &input.name, MAX_NAME_BYTES)?;
        check_name("entity type", &input.entity_type, MAX_TYPE_BYTES)?;
        let metadata = input.metadata.as_ref().map(check_metadata).transpose()?;
        let texts = self.new_texts(scope, &input.name, &input.observations)?;
        let vectors = self.embed_observations(&input.name, &texts)?;
        let now = Timestamp::now();
        self.db.write(
            |tx| {
                let (id, created, retyped) = upsert_entity_row(
                    tx,
                    scope,
                    &input.name,
                    &input.entity_type,
                    metadata.as_deref(),
                    now,
                )?;
                let added = insert_observations(tx, id, &texts, &vectors, now)?;
                if !created && !added.is_empty() {
                    touch(tx, id, now)?;
                }
                Ok((id, created, retyped, added))
            },
            |(id, created, retyped, added)| {
                let mut index = self.index_mut();
                let skey = index.scope_key(&scope_key(scope.kind().as_str(), scope.namespace()));
                let tkey = index.type_key(&input.entity_type);
                if retyped {
                    index.retype_entity(id, tkey);
                }
                for (obs, v) in &added {
                    index.insert(
                        RowMeta {
                            observation: *obs,
                            entity: id,
                            scope: skey,
                            entity_type: tkey,
                            time: now.0,
                        },
                        v,
                    );
                }
                Upserted {
                    id,
                    created,
                    added_observations: added.iter().map(|(o, _)| *o).collect(),
                }
            },
        )
    }

    /// Add observations to an existing entity; texts it already has are skipped. Returns the
    /// ids of those added.
    pub fn add_observations(
        &self,
        scope: &Scope,
        name: &str,
        observations: &[String],
    ) -> Result<Vec<ObservationId>> {
        scope.validate()?;
        let Some(entity) = self.entity(scope, name)? else {
            return Err(not_found(scope, name));
        };
        let input = EntityInput {
            name: entity.name,
            entity_type: entity.entity_type,
            observations: observations.to_vec(),
            metadata: None,
        };
        Ok(self.upsert_entity(scope, &input)?.added_observations)
    }

    /// Create a relation, or update its strength if the triple exists. Both entities must
    /// exist in `scope`.
    pub fn relate(&self, scope: &Scope, relation: &Relation) -> Result<()> {
        scope.validate()?;
        check_name("relation type", &relation.relation_type, MAX_TYPE_BYTES)?;
        check_strength(relation.strength)?;
        let now = Timestamp::now();
        self.db.write(
            |tx| {
                let from = entity_id(tx, scope, &relation.from)?
                    .ok_or_else(|| not_found(scope, &relation.from))?;
                let to = entity_id(tx, scope, &relation.to)?
                    .ok_or_else(|| not_found(scope, &relation.to))?;
                upsert_relation(
                    tx,
                    from,
                    to,
                    &relation.relation_type,
                    relation.strength,
                    now,
                )
            },
            |()| (),
        )
    }

    /// The entity named `name` in `scope`, with its observations.
    pub fn entity(&self, scope: &Scope, name: &str) -> Result<Option<Entity>> {
        scope.validate()?;
        self.db.read(|c| {
            let id = entity_id(c, scope, name)?;
            id.map(|id| load_entity(c, id)).transpose()
        })
    }

    /// Relations from or to the entity named `name` in `scope`.
    pub fn relations_of(&self, scope: &Scope, name: &str) -> Result<Vec<Relation>> {
        scope.validate()?;
        self.db.read(|c| {
            let id = entity_id(c, scope, name)?.ok_or_else(|| not_found(scope, name))?;
            let mut stmt = c.prepare_cached(
                "SELECT f.name, t.name, r.relation_type, r.strength FROM relations r
                 JOIN entities f ON f.id = r.from_id JOIN entities t ON t.id = r.to_id
                 WHERE r.from_id = ?1 OR r.to_id = ?1 ORDER BY r.id",
            )?;
            let rows = stmt.query_map([id], relation_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Delete an entity with its observations and relations; false when there was none.
    pub fn delete_entity(&self, scope: &Scope, name: &str) -> Result<bool> {
        scope.validate()?;
        self.db.write(
            |tx| {
                let id = entity_id(tx, scope, name)?;
                if let Some(id) = id {
                    tx.execute("DELETE FROM entities WHERE id = ?1", [id])?;
                }
                Ok(id)
            },
            |id| {
                if let Some(id) = id {
                    self.index_mut().remove_entity(id);
                }
                id.is_some()
            },
        )
    }

    /// Delete the observations of an entity whose text is one of `texts`; returns how many.
    pub fn delete_observations(
        &self,
        scope: &Scope,
        name: &str,
        texts: &[String],
    ) -> Result<usize> {
        scope.validate()?;
        self.db.write(
            |tx| {
                let id = entity_id(tx, scope, name)?.ok_or_else(|| not_found(scope, name))?;
                let mut gone = Vec::new();
                let mut stmt = tx.prepare_cached(
                    "DELETE FROM observations WHERE entity_id = ?1 AND text = ?2 RETURNING id",
                )?;
                for text in texts {
                    let ids = stmt.query_map(params![id, text], |r| r.get::<_, i64>(0))?;
                    for o in ids {
                        gone.push(o?);
                    }
                }
                if !gone.is_empty() {
                    touch(tx, id, Timestamp::now())?;
                }
                Ok(gone)
            },
            |gone| {
                let mut index = self.index_mut();
                for o in &gone {
                    index.remove(*o);
                }
                gone.len()
            },
        )
    }

    /// Delete one relation; false when there was none.
    pub fn delete_relation(
        &self,
        scope: &Scope,
        from: &str,
        to: &str,
        relation_type: &str,
    ) -> Result<bool> {
        scope.validate()?;
        self.db.write(
            |tx| {
                let (Some(f), Some(t)) = (entity_id(tx, scope, from)?, entity_id(tx, scope, to)?)
                else {
                    return Ok(false);
                };
                let n = tx.execute(
                    "DELETE FROM relations WHERE from_id = ?1 AND to_id = ?2 AND relation_type = ?3",
                    params![f, t, relation_type],
                )?;
                Ok(n > 0)
            },
            |deleted| deleted,
        )
    }

    /// Counts for the given scopes (all scopes when empty), and the sizes of the files.
    pub fn stats(&self, scopes: &[Scope]) -> Result<Stats> {
        for s in scopes {
            s.validate()?;
        }
        let (where_sql, args) = scope_filter_sql("e", scopes);
        let (entities, observations, relations, pages, page_size, model) = self.db.read(|c| {
            let count = |sql: String| -> Result<u64> {
                let n: i64 = c.query_row(&sql, rusqlite::params_from_iter(args.iter()), |r| {
                    r.get(0)
                })?;
                Ok(u64::try_from(n).unwrap_or(0))
            };
            Ok((
                count(format!("SELECT count(*) FROM entities e WHERE {where_sql}"))?,
                count(format!(
                    "SELECT count(*) FROM observations o JOIN entities e ON e.id = o.entity_id WHERE {where_sql}"
                ))?,
                count(format!(
                    "SELECT count(*) FROM relations r JOIN entities e ON e.id = r.from_id WHERE {where_sql}"
                ))?,
                c.pragma_query_value(None, "page_count", |r| r.get::<_, i64>(0))?,
                c.pragma_query_value(None, "page_size", |r| r.get::<_, i64>(0))?,
                stored_model(c)?,
            ))
        })?;
        let mut wal = self.db.path().as_os_str().to_owned();
        wal.push("-wal");
        Ok(Stats {
            entities,
            observations,
            relations,
            database_bytes: u64::try_from(pages * page_size).unwrap_or(0),
            wal_bytes: std::fs::metadata(wal).map_or(0, |m| m.len()),
            indexed_vectors: self.index().len() as u64,
            embedding_model: model.unwrap_or_else(|| self.embedder.model_id().to_owned()),
            schema_version: SCHEMA_VERSION,
        })
    }

    /// Copy the write-ahead log into the database and truncate it (after a large import, or
    /// before copying the file). SQLite checkpoints on its own too, but never shrinks the log.
    pub fn checkpoint(&self) -> Result<()> {
        self.db.with_writer(|c| {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
    }

    /// Run `PRAGMA integrity_check`; `Ok(())` when the database is sound, else what it found.
    ///
    /// It runs on a connection of its own, not a pooled reader: SQLite's FTS5 check (3.53)
    /// trusts the connection's cached index structure without noticing that the writer changed
    /// the index since that connection last read it, so on a live daemon it reported corruption
    /// that was not there (about one run in ten of the API's concurrency test). A new
    /// connection caches nothing.
    pub fn integrity_check(&self) -> Result<()> {
        let c = rusqlite::Connection::open_with_flags(
            self.path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(std::time::Duration::from_secs(10))?;
        let mut stmt = c.prepare("PRAGMA integrity_check")?;
        let report = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if report == ["ok"] {
            Ok(())
        } else {
            Err(MemoryError::Database(format!(
                "integrity check failed: {}",
                report.join("; ")
            )))
        }
    }

    pub(crate) fn index(&self) -> RwLockReadGuard<'_, VectorIndex> {
        // The index is only mutated by code that cannot panic half way through an update
        // (no external calls), so a poisoned lock still guards consistent data.
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn index_mut(&self) -> RwLockWriteGuard<'_, VectorIndex> {
        self.index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Check, deduplicate, and drop the texts the entity already has.
    fn new_texts(&self, scope: &Scope, name: &str, texts: &[String]) -> Result<Vec<String>> {
        for t in texts {
            check_observation(t, self.options.max_observation_bytes)?;
        }
        let existing: HashSet<String> = if texts.is_empty() {
            HashSet::new()
        } else {
            self.db.read(|c| {
                let Some(id) = entity_id(c, scope, name)? else {
                    return Ok(HashSet::new());
                };
                let mut stmt =
                    c.prepare_cached("SELECT text FROM observations WHERE entity_id = ?1")?;
                let rows = stmt.query_map([id], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<rusqlite::Result<HashSet<_>>>()?)
            })?
        };
        let mut seen = HashSet::new();
        Ok(texts
            .iter()
            .filter(|t| !existing.contains(*t) && seen.insert(t.as_str()))
            .cloned()
            .collect())
    }

    /// Embed observations of the entity named `name`, in one batched call.
    pub(crate) fn embed_observations(&self, name: &str, texts: &[String]) -> Result<Vec<Vector>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let full: Vec<String> = texts.iter().map(|t| embedding_text(name, t)).collect();
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        Ok(self.embedder.embed(&refs)?)
    }

    /// Fill the in-memory index from the table.
    fn load_index(&self) -> Result<()> {
        let mut index = VectorIndex::default();
        self.db.read(|c| {
            let n: i64 = c.query_row("SELECT count(*) FROM observations", [], |r| r.get(0))?;
            index.reserve(usize::try_from(n).unwrap_or(0));
            let mut stmt = c.prepare(
                "SELECT o.id, o.entity_id, e.scope, e.namespace, e.entity_type, o.created_at, o.embedding
                 FROM observations o JOIN entities e ON e.id = o.entity_id",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let observation: i64 = r.get(0)?;
                let kind: String = r.get(2)?;
                let namespace: String = r.get(3)?;
                let entity_type: String = r.get(4)?;
                let blob = r
                    .get_ref(6)?
                    .as_blob()
                    .map_err(|e| MemoryError::Database(e.to_string()))?;
                let vector = vector_from_bytes(blob).ok_or_else(|| {
                    MemoryError::Database(format!(
                        "observation {observation} has an embedding of {} bytes",
                        blob.len()
                    ))
                })?;
                let meta = RowMeta {
                    observation,
                    entity: r.get(1)?,
                    scope: index.scope_key(&scope_key(&kind, &namespace)),
                    entity_type: index.type_key(&entity_type),
                    time: r.get(5)?,
                };
                index.insert(meta, &vector);
            }
            Ok(())
        })?;
        *self.index_mut() = index;
        Ok(())
    }

    /// Record the running model in a new database; re-embed every observation when the stored
    /// vectors came from a different one (they would be meaningless to compare with).
    fn reconcile_model(&self) -> Result<()> {
        let running = self.embedder.model_id().to_owned();
        let stored = self.db.read(stored_model)?;
        if stored.as_deref() == Some(running.as_str()) {
            return Ok(());
        }
        let todo: Vec<(i64, String, String)> = self.db.read(|c| {
            let mut stmt = c.prepare(
                "SELECT o.id, e.name, o.text FROM observations o JOIN entities e ON e.id = o.entity_id",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })?;
        if !todo.is_empty() {
            tracing::warn!(
                from = stored.as_deref().unwrap_or("unknown"),
                to = %running,
                observations = todo.len(),
                "memory embeddings come from another model; re-embedding all observations"
            );
        }
        let mut vectors = Vec::with_capacity(todo.len());
        for chunk in todo.chunks(REEMBED_BATCH) {
            let texts: Vec<String> = chunk.iter().map(|(_, n, t)| embedding_text(n, t)).collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            vectors.extend(self.embedder.embed(&refs)?);
        }
        self.db.write(
            |tx| {
                let mut stmt =
                    tx.prepare("UPDATE observations SET embedding = ?2 WHERE id = ?1")?;
                for ((id, _, _), v) in todo.iter().zip(&vectors) {
                    stmt.execute(params![id, vector_to_bytes(v)])?;
                }
                set_stored_model(tx, &running)
            },
            |()| (),
        )
    }
}

pub(crate) fn not_found(scope: &Scope, name: &str) -> MemoryError {
    MemoryError::EntityNotFound {
        scope: scope.to_string(),
        name: name.to_owned(),
    }
}

pub(crate) fn stored_model(c: &Connection) -> Result<Option<String>> {
    Ok(c.query_row(
        "SELECT value FROM meta WHERE key = 'embedding_model'",
        [],
        |r| r.get(0),
    )
    .optional()?)
}

pub(crate) fn set_stored_model(tx: &Transaction<'_>, model: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('embedding_model', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [model],
    )?;
    Ok(())
}

/// Id of the entity `name` in `scope`.
pub(crate) fn entity_id(c: &Connection, scope: &Scope, name: &str) -> Result<Option<EntityId>> {
    Ok(c.prepare_cached(
        "SELECT id FROM entities WHERE scope = ?1 AND namespace = ?2 AND name = ?3",
    )?
    .query_row(
        params![scope.kind().as_str(), scope.namespace(), name],
        |r| r.get(0),
    )
    .optional()?)
}

/// Insert or update an entity row; returns (id, created, type changed).
pub(crate) fn upsert_entity_row(
    tx: &Transaction<'_>,
    scope: &Scope,
    name: &str,
    entity_type: &str,
    metadata: Option<&str>,
    now: Timestamp,
) -> Result<(EntityId, bool, bool)> {
    let existing: Option<(EntityId, String)> = tx
        .prepare_cached(
            "SELECT id, entity_type FROM entities WHERE scope = ?1 AND namespace = ?2 AND name = ?3",
        )?
        .query_row(params![scope.kind().as_str(), scope.namespace(), name], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    match existing {
        None => {
            let id = tx
                .prepare_cached(
                    "INSERT INTO entities (scope, namespace, name, entity_type, metadata, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) RETURNING id",
                )?
                .query_row(
                    params![
                        scope.kind().as_str(),
                        scope.namespace(),
                        name,
                        entity_type,
                        metadata.unwrap_or("{}"),
                        now.0
                    ],
                    |r| r.get(0),
                )?;
            Ok((id, true, false))
        }
        Some((id, old_type)) => {
            let retyped = old_type != entity_type;
            if retyped || metadata.is_some() {
                // json_patch merges the new keys into the old object (RFC 7396).
                tx.prepare_cached(
                    "UPDATE entities SET entity_type = ?2,
                         metadata = CASE WHEN ?3 IS NULL THEN metadata ELSE json_patch(metadata, ?3) END,
                         updated_at = ?4
                     WHERE id = ?1",
                )?
                .execute(params![id, entity_type, metadata, now.0])?;
            }
            Ok((id, false, retyped))
        }
    }
}

/// Insert observations (the caller has removed duplicates); returns their ids with vectors.
pub(crate) fn insert_observations(
    tx: &Transaction<'_>,
    entity: EntityId,
    texts: &[String],
    vectors: &[Vector],
    at: Timestamp,
) -> Result<Vec<(ObservationId, Vector)>> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO observations (entity_id, text, embedding, created_at) VALUES (?1, ?2, ?3, ?4)
         RETURNING id",
    )?;
    let mut exists =
        tx.prepare_cached("SELECT 1 FROM observations WHERE entity_id = ?1 AND text = ?2")?;
    let mut added = Vec::with_capacity(texts.len());
    for (text, v) in texts.iter().zip(vectors) {
        // Checked again under the write lock: another writer may have added it meanwhile.
        if exists.exists(params![entity, text])? {
            continue;
        }
        let id: i64 = stmt.query_row(params![entity, text, vector_to_bytes(v), at.0], |r| {
            r.get(0)
        })?;
        added.push((id, *v));
    }
    Ok(added)
}

pub(crate) fn upsert_relation(
    tx: &Transaction<'_>,
    from: EntityId,
    to: EntityId,
    relation_type: &str,
    strength: f32,
    now: Timestamp,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO relations (from_id, to_id, relation_type, strength, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (from_id, to_id, relation_type) DO UPDATE SET strength = excluded.strength",
    )?
    .execute(params![from, to, relation_type, f64::from(strength), now.0])?;
    Ok(())
}

fn touch(tx: &Transaction<'_>, id: EntityId, now: Timestamp) -> Result<()> {
    tx.prepare_cached("UPDATE entities SET updated_at = ?2 WHERE id = ?1")?
        .execute(params![id, now.0])?;
    Ok(())
}

pub(crate) fn relation_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Relation> {
    Ok(Relation {
        from: r.get(0)?,
        to: r.get(1)?,
        relation_type: r.get(2)?,
        // Stored from an f32, so the narrowing is exact.
        strength: r.get::<_, f64>(3)? as f32,
    })
}

/// Load one entity with its observations.
pub(crate) fn load_entity(c: &Connection, id: EntityId) -> Result<Entity> {
    let (kind, namespace, name, entity_type, metadata, created, updated): (
        String,
        String,
        String,
        String,
        String,
        i64,
        i64,
    ) = c
        .prepare_cached(
            "SELECT scope, namespace, name, entity_type, metadata, created_at, updated_at
             FROM entities WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?;
    let mut stmt = c.prepare_cached(
        "SELECT id, text, created_at FROM observations WHERE entity_id = ?1 ORDER BY id",
    )?;
    let observations = stmt
        .query_map([id], |r| {
            Ok(Observation {
                id: r.get(0)?,
                text: r.get(1)?,
                created_at: Timestamp(r.get(2)?),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Entity {
        id,
        scope: Scope::from_parts(ScopeKind::parse(&kind)?, &namespace)?,
        name,
        entity_type,
        metadata: parse_metadata(&metadata)?,
        created_at: Timestamp(created),
        updated_at: Timestamp(updated),
        observations,
    })
}

pub(crate) fn parse_metadata(json: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str(json) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Ok(serde_json::Map::new()),
        Err(e) => Err(invalid("stored metadata", e.to_string())),
    }
}

/// `(alias.scope, alias.namespace) IN (...)` for the given scopes (`1` when empty), with its
/// arguments.
pub(crate) fn scope_filter_sql(alias: &str, scopes: &[Scope]) -> (String, Vec<String>) {
    if scopes.is_empty() {
        return ("1".to_owned(), Vec::new());
    }
    let mut args = Vec::with_capacity(scopes.len() * 2);
    let tuples: Vec<&str> = scopes
        .iter()
        .map(|s| {
            args.push(s.kind().as_str().to_owned());
            args.push(s.namespace().to_owned());
            "(?, ?)"
        })
        .collect();
    (
        format!(
            "({alias}.scope, {alias}.namespace) IN (VALUES {})",
            tuples.join(", ")
        ),
        args,
    )
}
