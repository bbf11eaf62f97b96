//! Graph traversal over relations: neighbours to a depth, and the shortest path between two
//! entities, both breadth-first on one read connection. Relations never cross scopes (both
//! ends are resolved in one scope when created or imported), so a walk stays in its scope.

use std::collections::{HashMap, VecDeque};

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::error::{Result, invalid};
use crate::scope::Scope;
use crate::store::{Memory, entity_id, not_found};
use crate::types::{EntityId, Relation};

/// Deepest walk allowed: beyond this a knowledge graph is usually all reachable anyway.
pub const MAX_DEPTH: u32 = 10;
/// Most entities one walk may visit before it stops and reports what it has.
const MAX_VISITED: usize = 100_000;

/// Which way relations may be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From an entity to the targets of its relations.
    Outgoing,
    /// From an entity to the sources of relations pointing at it.
    Incoming,
    /// Both ways.
    #[default]
    Both,
}

/// How to walk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphQuery {
    /// Neighbours: how many hops out (1 = direct neighbours). Paths: the longest path looked
    /// for. At most [`MAX_DEPTH`].
    pub depth: u32,
    /// Follow only relations of these types (all when empty).
    #[serde(default)]
    pub relation_types: Vec<String>,
    /// Which way to follow relations; both by default.
    #[serde(default)]
    pub direction: Direction,
    /// Most neighbours to return; 1,000 by default.
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    1000
}

impl GraphQuery {
    /// Walk `depth` hops both ways over every relation type.
    pub fn new(depth: u32) -> Self {
        Self {
            depth,
            relation_types: Vec::new(),
            direction: Direction::Both,
            limit: default_limit(),
        }
    }

    fn check(&self) -> Result<()> {
        if self.depth == 0 || self.depth > MAX_DEPTH {
            return Err(invalid(
                "graph depth",
                format!("{} is not between 1 and {MAX_DEPTH}", self.depth),
            ));
        }
        Ok(())
    }
}

/// An entity reached by a walk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Neighbour {
    /// Its name.
    pub name: String,
    /// Its type.
    pub entity_type: String,
    /// Hops from the start.
    pub depth: u32,
    /// The relation by which it was first reached (as stored, so `from`/`to` show its
    /// direction).
    pub via: Relation,
}

/// One hop of a path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathStep {
    /// The entity this hop leaves.
    pub from: String,
    /// The entity it reaches.
    pub to: String,
    /// The relation followed, as stored (it points backwards when it was followed as incoming).
    pub relation: Relation,
}

/// One edge out of a node: (other end, relation as stored).
type Edge = (EntityId, EntityId, EntityId, String, f64);

impl Memory {
    /// Entities within `query.depth` hops of `name`, nearest first (then by name), without
    /// `name` itself.
    pub fn neighbours(
        &self,
        scope: &Scope,
        name: &str,
        query: &GraphQuery,
    ) -> Result<Vec<Neighbour>> {
        scope.validate()?;
        query.check()?;
        self.db.read(|c| {
            let start = entity_id(c, scope, name)?.ok_or_else(|| not_found(scope, name))?;
            let parents = bfs(c, start, None, query)?;
            let mut names = NameCache::default();
            let mut out = Vec::new();
            for (&id, (depth, edge)) in &parents {
                let Some((_, from, to, relation_type, strength)) = edge else {
                    continue;
                };
                let (n, t) = names.get(c, id)?;
                out.push(Neighbour {
                    name: n,
                    entity_type: t,
                    depth: *depth,
                    via: Relation {
                        from: names.get(c, *from)?.0,
                        to: names.get(c, *to)?.0,
                        relation_type: relation_type.clone(),
                        strength: *strength as f32,
                    },
                });
            }
            out.sort_by(|a, b| a.depth.cmp(&b.depth).then_with(|| a.name.cmp(&b.name)));
            out.truncate(query.limit);
            Ok(out)
        })
    }

    /// The shortest path (fewest hops, at most `query.depth`) from `from` to `to`; `None` when
    /// they are not connected within that many hops. A path from an entity to itself is empty.
    pub fn shortest_path(
        &self,
        scope: &Scope,
        from: &str,
        to: &str,
        query: &GraphQuery,
    ) -> Result<Option<Vec<PathStep>>> {
        scope.validate()?;
        query.check()?;
        self.db.read(|c| {
            let start = entity_id(c, scope, from)?.ok_or_else(|| not_found(scope, from))?;
            let goal = entity_id(c, scope, to)?.ok_or_else(|| not_found(scope, to))?;
            if start == goal {
                return Ok(Some(Vec::new()));
            }
            let parents = bfs(c, start, Some(goal), query)?;
            if !parents.contains_key(&goal) {
                return Ok(None);
            }
            let mut names = NameCache::default();
            let mut steps = Vec::new();
            let mut node = goal;
            while let Some((_, Some((prev, f, t, relation_type, strength)))) = parents.get(&node) {
                steps.push(PathStep {
                    from: names.get(c, *prev)?.0,
                    to: names.get(c, node)?.0,
                    relation: Relation {
                        from: names.get(c, *f)?.0,
                        to: names.get(c, *t)?.0,
                        relation_type: relation_type.clone(),
                        strength: *strength as f32,
                    },
                });
                node = *prev;
            }
            steps.reverse();
            Ok(Some(steps))
        })
    }
}

/// Breadth-first walk from `start`; for every reached node its depth and the edge it was
/// reached by (`None` for the start). Stops early when `goal` is reached.
fn bfs(
    c: &Connection,
    start: EntityId,
    goal: Option<EntityId>,
    query: &GraphQuery,
) -> Result<HashMap<EntityId, (u32, Option<Edge>)>> {
    let mut outgoing = c.prepare_cached(
        "SELECT to_id, from_id, to_id, relation_type, strength FROM relations WHERE from_id = ?1 ORDER BY id",
    )?;
    let mut incoming = c.prepare_cached(
        "SELECT from_id, from_id, to_id, relation_type, strength FROM relations WHERE to_id = ?1 ORDER BY id",
    )?;
    let mut seen: HashMap<EntityId, (u32, Option<Edge>)> = HashMap::from([(start, (0, None))]);
    let mut queue = VecDeque::from([(start, 0u32)]);
    while let Some((node, depth)) = queue.pop_front() {
        if depth == query.depth || seen.len() >= MAX_VISITED {
            continue;
        }
        let mut edges: Vec<(EntityId, Edge)> = Vec::new();
        let dirs: &[bool] = match query.direction {
            Direction::Outgoing => &[true],
            Direction::Incoming => &[false],
            Direction::Both => &[true, false],
        };
        for &out in dirs {
            let stmt = if out { &mut outgoing } else { &mut incoming };
            let rows = stmt.query_map([node], |r| {
                Ok((
                    r.get::<_, EntityId>(0)?,
                    (
                        node,
                        r.get(1)?,
                        r.get(2)?,
                        r.get::<_, String>(3)?,
                        r.get(4)?,
                    ),
                ))
            })?;
            for row in rows {
                let (other, edge) = row?;
                if query.relation_types.is_empty() || query.relation_types.contains(&edge.3) {
                    edges.push((other, edge));
                }
            }
        }
        for (other, edge) in edges {
            if seen.contains_key(&other) {
                continue;
            }
            seen.insert(other, (depth + 1, Some(edge)));
            if goal == Some(other) {
                return Ok(seen);
            }
            queue.push_back((other, depth + 1));
        }
    }
    Ok(seen)
}

/// Names and types of entities, read once each.
#[derive(Default)]
struct NameCache(HashMap<EntityId, (String, String)>);

impl NameCache {
    fn get(&mut self, c: &Connection, id: EntityId) -> Result<(String, String)> {
        if let Some(v) = self.0.get(&id) {
            return Ok(v.clone());
        }
        let v: (String, String) = c
            .prepare_cached("SELECT name, entity_type FROM entities WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or_default();
        self.0.insert(id, v.clone());
        Ok(v)
    }
}
