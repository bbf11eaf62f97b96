//! Search by meaning (cosine over the in-memory vectors), by keyword (FTS5 BM25), or both
//! (reciprocal-rank fusion), always within named scopes.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params_from_iter};
use serde::{Deserialize, Serialize};

use crate::error::{Result, invalid};
use crate::index::{RowFilter, ScanHit};
use crate::scope::{Scope, ScopeKind};
use crate::store::{Memory, scope_filter_sql, scope_key};
use crate::types::{EntityId, Observation, Timestamp, Vector};

/// Constant of reciprocal-rank fusion: a hit at rank r (from 1) in a list adds 1 / (K + r).
/// 60 is the value of the original paper (Cormack et al., 2009) and of most hybrid engines;
/// it keeps one list's top hit from drowning hits that both lists rank well.
const RRF_K: f32 = 60.0;

/// Most entities one search may return.
pub const MAX_LIMIT: usize = 1000;

/// How to rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Cosine similarity of the query's embedding to each observation; an entity scores its
    /// best observation. `min_similarity` applies.
    Semantic,
    /// FTS5 BM25 over entity names and observation texts; any query word may match.
    Keyword,
    /// Both lists fused by reciprocal rank: entities found by meaning and by words rank
    /// highest. `min_similarity` applies to the semantic list only, so an exact keyword
    /// match is still found when its meaning scores low.
    #[default]
    Hybrid,
}

/// A search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// What to look for, in natural language or keywords.
    pub query: String,
    /// How to rank; hybrid by default.
    #[serde(default)]
    pub mode: SearchMode,
    /// Scopes to search (at least one): the supervisor lists those the agent may read.
    pub scopes: Vec<Scope>,
    /// Most entities to return; 10 by default.
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// Least cosine similarity of a semantic match; 0 by default.
    #[serde(default)]
    pub min_similarity: f32,
    /// Only entities of these types (any type when empty).
    #[serde(default)]
    pub entity_types: Vec<String>,
    /// Only observations recorded at or after this time (for a match on a name: the
    /// entity's creation time).
    #[serde(default)]
    pub since: Option<Timestamp>,
    /// Only observations recorded at or before this time.
    #[serde(default)]
    pub until: Option<Timestamp>,
}

fn default_limit() -> usize {
    10
}

impl SearchRequest {
    /// A hybrid search of `scopes` for `query` with the defaults.
    pub fn new(query: impl Into<String>, scopes: Vec<Scope>) -> Self {
        Self {
            query: query.into(),
            mode: SearchMode::Hybrid,
            scopes,
            limit: default_limit(),
            min_similarity: 0.0,
            entity_types: Vec::new(),
            since: None,
            until: None,
        }
    }

    fn check(&self) -> Result<()> {
        if self.scopes.is_empty() {
            return Err(invalid(
                "search scopes",
                "name at least one scope to search",
            ));
        }
        for s in &self.scopes {
            s.validate()?;
        }
        if self.limit > MAX_LIMIT {
            return Err(invalid(
                "search limit",
                format!("{} is above the maximum of {MAX_LIMIT}", self.limit),
            ));
        }
        if !(-1.0..=1.0).contains(&self.min_similarity) {
            return Err(invalid(
                "min_similarity",
                format!("{} is not between -1 and 1", self.min_similarity),
            ));
        }
        Ok(())
    }
}

/// One entity found, with the observation that matched best.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    /// The entity's row id.
    pub entity_id: EntityId,
    /// Its scope.
    pub scope: Scope,
    /// Its name.
    pub name: String,
    /// Its type.
    pub entity_type: String,
    /// What the ranking sorted by (higher is better): the cosine similarity (semantic),
    /// minus the BM25 rank (keyword), or the fused reciprocal-rank score (hybrid).
    pub score: f32,
    /// Cosine similarity of the best observation, when the semantic side found it.
    pub similarity: Option<f32>,
    /// The best-matching observation; `None` when only the entity's name matched.
    pub observation: Option<Observation>,
}

impl Memory {
    /// Search the given scopes. Semantic and hybrid searches embed the query first (one
    /// forward pass of the model, about 5 ms here for a short query).
    pub fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        request.check()?;
        if request.limit == 0 {
            return Ok(Vec::new());
        }
        match request.mode {
            SearchMode::Keyword => self.keyword(request, request.limit),
            SearchMode::Semantic => {
                let v = self.embed_query(&request.query)?;
                self.semantic(&v, request, request.limit)
            }
            SearchMode::Hybrid => {
                let v = self.embed_query(&request.query)?;
                let depth = (request.limit * 3).clamp(30, MAX_LIMIT);
                let semantic = self.semantic(&v, request, depth)?;
                let keyword = self.keyword(request, depth)?;
                Ok(fuse(semantic, keyword, request.limit))
            }
        }
    }

    /// Semantic search with an embedding the caller already has (`request.query` and `mode`
    /// are ignored).
    pub fn search_by_vector(
        &self,
        vector: &Vector,
        request: &SearchRequest,
    ) -> Result<Vec<SearchHit>> {
        request.check()?;
        self.semantic(vector, request, request.limit)
    }

    fn embed_query(&self, query: &str) -> Result<Vector> {
        if query.trim().is_empty() {
            return Err(invalid("search query", "it is empty"));
        }
        let mut v = self.embedder.embed(&[query])?;
        v.pop()
            .ok_or_else(|| invalid("search query", "the embedder returned nothing"))
    }

    fn semantic(
        &self,
        query: &Vector,
        request: &SearchRequest,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        let hits: Vec<ScanHit> = {
            let index = self.index();
            let scopes: Vec<u32> = request
                .scopes
                .iter()
                .filter_map(|s| {
                    index.existing_scope_key(&scope_key(s.kind().as_str(), s.namespace()))
                })
                .collect();
            if scopes.is_empty() {
                return Ok(Vec::new());
            }
            let types = if request.entity_types.is_empty() {
                None
            } else {
                let t: Vec<u32> = request
                    .entity_types
                    .iter()
                    .filter_map(|t| index.existing_type_key(t))
                    .collect();
                if t.is_empty() {
                    return Ok(Vec::new());
                }
                Some(t)
            };
            let filter = RowFilter {
                scopes: Some(scopes),
                types,
                since: request.since.map(|t| t.0),
                until: request.until.map(|t| t.0),
            };
            index.search(query, &filter, limit, request.min_similarity)
        };
        self.db.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT e.scope, e.namespace, e.name, e.entity_type, o.text, o.created_at
                 FROM observations o JOIN entities e ON e.id = o.entity_id
                 WHERE o.id = ?1 AND o.entity_id = ?2",
            )?;
            let mut out = Vec::with_capacity(hits.len());
            for h in hits {
                // A row deleted between the scan and this read is simply not reported. Row ids
                // can be reused after a delete, so the row must still belong to the entity the
                // index saw, and that entity to a scope the caller named: a stale id must never
                // show another scope's text.
                let Some(row) = stmt
                    .query_row((h.observation, h.entity), |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, i64>(5)?,
                        ))
                    })
                    .optional()?
                else {
                    continue;
                };
                let (kind, namespace, name, entity_type, text, at) = row;
                let scope = Scope::from_parts(ScopeKind::parse(&kind)?, &namespace)?;
                if !request.scopes.contains(&scope) {
                    continue;
                }
                out.push(SearchHit {
                    entity_id: h.entity,
                    scope,
                    name,
                    entity_type,
                    score: h.similarity,
                    similarity: Some(h.similarity),
                    observation: Some(Observation {
                        id: h.observation,
                        text,
                        created_at: Timestamp(at),
                    }),
                });
            }
            Ok(out)
        })
    }

    fn keyword(&self, request: &SearchRequest, limit: usize) -> Result<Vec<SearchHit>> {
        let Some(fts) = fts_query(&request.query) else {
            return Ok(Vec::new());
        };
        let (scope_sql, scope_args) = scope_filter_sql("e", &request.scopes);
        let mut sql = format!(
            "WITH hits AS (
                 SELECT rowid AS rid, bm25(memory_fts, 2.0, 1.0) AS rank
                 FROM memory_fts WHERE memory_fts MATCH ?
             )
             SELECT e.id, e.scope, e.namespace, e.name, e.entity_type, o.id, o.text,
                    coalesce(o.created_at, e.created_at), hits.rank
             FROM hits
             LEFT JOIN observations o ON hits.rid > 0 AND o.id = hits.rid
             JOIN entities e ON e.id = CASE WHEN hits.rid < 0 THEN -hits.rid ELSE o.entity_id END
             WHERE {scope_sql}"
        );
        let mut args: Vec<rusqlite::types::Value> = vec![fts.into()];
        args.extend(scope_args.into_iter().map(Into::into));
        if !request.entity_types.is_empty() {
            let marks = vec!["?"; request.entity_types.len()].join(", ");
            sql.push_str(&format!(" AND e.entity_type IN ({marks})"));
            args.extend(request.entity_types.iter().cloned().map(Into::into));
        }
        if let Some(t) = request.since {
            sql.push_str(" AND coalesce(o.created_at, e.created_at) >= ?");
            args.push(t.0.into());
        }
        if let Some(t) = request.until {
            sql.push_str(" AND coalesce(o.created_at, e.created_at) <= ?");
            args.push(t.0.into());
        }
        // Several rows may belong to one entity; fetch enough to fill `limit` entities.
        sql.push_str(" ORDER BY hits.rank LIMIT ?");
        args.push(i64::try_from(limit * 4 + 16).unwrap_or(i64::MAX).into());

        self.db.read(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(args.iter()))?;
            let mut out: Vec<SearchHit> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            while let Some(r) = rows.next()? {
                let id: EntityId = r.get(0)?;
                if !seen.insert(id) {
                    continue;
                }
                let kind: String = r.get(1)?;
                let namespace: String = r.get(2)?;
                let obs: Option<i64> = r.get(5)?;
                let text: Option<String> = r.get(6)?;
                let rank: f64 = r.get(8)?;
                out.push(SearchHit {
                    entity_id: id,
                    scope: Scope::from_parts(ScopeKind::parse(&kind)?, &namespace)?,
                    name: r.get(3)?,
                    entity_type: r.get(4)?,
                    // BM25 is lower-is-better; negate so every mode sorts descending.
                    score: -(rank as f32),
                    similarity: None,
                    observation: match (obs, text) {
                        (Some(id), Some(text)) => Some(Observation {
                            id,
                            text,
                            created_at: Timestamp(r.get(7)?),
                        }),
                        _ => None,
                    },
                });
                if out.len() == limit {
                    break;
                }
            }
            Ok(out)
        })
    }
}

/// Reciprocal-rank fusion of two ranked lists.
fn fuse(semantic: Vec<SearchHit>, keyword: Vec<SearchHit>, limit: usize) -> Vec<SearchHit> {
    let mut fused: HashMap<EntityId, SearchHit> = HashMap::new();
    let mut scores: HashMap<EntityId, f32> = HashMap::new();
    for list in [semantic, keyword] {
        for (rank, hit) in list.into_iter().enumerate() {
            *scores.entry(hit.entity_id).or_default() += 1.0 / (RRF_K + rank as f32 + 1.0);
            // The semantic list comes first, so its observation and similarity are kept.
            fused.entry(hit.entity_id).or_insert(hit);
        }
    }
    let mut out: Vec<SearchHit> = fused
        .into_values()
        .map(|mut h| {
            h.score = scores.get(&h.entity_id).copied().unwrap_or(0.0);
            h
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| {
                b.similarity
                    .unwrap_or(-2.0)
                    .total_cmp(&a.similarity.unwrap_or(-2.0))
            })
            .then(a.entity_id.cmp(&b.entity_id))
    });
    out.truncate(limit);
    out
}

/// The words of a user's query as an FTS5 OR query, each quoted so that no character of the
/// input is read as FTS5 syntax; `None` when there is no word.
fn fts_query(query: &str) -> Option<String> {
    let terms: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(32)
        .map(|w| format!("\"{w}\""))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" OR "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_queries_quote_every_word_and_drop_syntax() {
        assert_eq!(
            fts_query("green tea").as_deref(),
            Some("\"green\" OR \"tea\"")
        );
        assert_eq!(
            fts_query("NEAR(\"a\" b) OR -c*").as_deref(),
            Some("\"NEAR\" OR \"a\" OR \"b\" OR \"OR\" OR \"c\"")
        );
        assert_eq!(fts_query(" ,;* "), None);
    }
}
