//! The knowledge-graph file of the reference MCP memory server (`@modelcontextprotocol/server-memory`
//! on npm), so its users can move their memory to Caxton and back. One JSON object a line:
//! `{"type":"entity","name":…,"entityType":…,"observations":[…]}` or
//! `{"type":"relation","from":…,"to":…,"relationType":…}`; entities first, lines joined by
//! `\n` with none after the last, exactly as that server writes it. The format has no scopes,
//! times, metadata, strengths or embeddings: import puts everything in one scope, stamps it
//! with the current time and computes the embeddings.

use std::collections::HashMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::export::{
    ExportItem, ExportRequest, ImportEntity, ImportObservation, ImportRelation, ImportReport,
    refuse,
};
use crate::scope::Scope;
use crate::store::Memory;
use crate::types::{Timestamp, default_strength};

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum Line {
    Entity {
        name: String,
        #[serde(rename = "entityType")]
        entity_type: String,
        #[serde(default)]
        observations: Vec<String>,
    },
    Relation {
        from: String,
        to: String,
        #[serde(rename = "relationType")]
        relation_type: String,
    },
}

impl Memory {
    /// Write the entities and relations of `scope` in the MCP memory server's format.
    pub fn export_mcp_jsonl(&self, scope: &Scope, out: &mut dyn Write) -> Result<()> {
        let request = ExportRequest {
            scopes: Some(vec![scope.clone()]),
            include_embeddings: false,
        };
        let mut first = true;
        self.export_each(&request, &mut |item| {
            let line = match item {
                ExportItem::Entity(e) => Line::Entity {
                    name: e.name,
                    entity_type: e.entity_type,
                    observations: e.observations.into_iter().map(|o| o.text).collect(),
                },
                ExportItem::Relation(r) => Line::Relation {
                    from: r.from,
                    to: r.to,
                    relation_type: r.relation_type,
                },
            };
            // The server's own files end without a newline; so do these, byte for byte.
            if !first {
                out.write_all(b"\n")?;
            }
            first = false;
            serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from)?;
            Ok(())
        })
    }

    /// Import an MCP memory server file into `scope`, in one transaction; a bad line refuses
    /// the whole file, naming the line. An entity named on several lines (possible in a
    /// hand-edited file) is merged, as are repeated relations. A relation whose end is neither
    /// in the file nor already in `scope` is refused.
    pub fn import_mcp_jsonl(&self, bytes: &[u8], scope: &Scope) -> Result<ImportReport> {
        scope.validate()?;
        let now = Timestamp::now();
        let mut entities: Vec<ImportEntity> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut relations = Vec::new();
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let record = format!("line {}", i + 1);
            let text = std::str::from_utf8(raw).map_err(|e| {
                refuse(
                    &record,
                    format!(
                        "not valid UTF-8 (first bad byte at column {})",
                        e.valid_up_to() + 1
                    ),
                )
            })?;
            if text.trim().is_empty() {
                continue;
            }
            let line: Line = serde_json::from_str(text).map_err(|e| refuse(&record, e))?;
            match line {
                Line::Entity {
                    name,
                    entity_type,
                    observations,
                } => {
                    let observations = observations.into_iter().map(|text| ImportObservation {
                        text,
                        created_at: now,
                        vector: None,
                    });
                    if let Some(&at) = by_name.get(&name) {
                        entities[at].observations.extend(observations);
                        continue;
                    }
                    by_name.insert(name.clone(), entities.len());
                    entities.push(ImportEntity {
                        record: format!("{record} {name:?}"),
                        scope: scope.clone(),
                        name,
                        entity_type,
                        metadata: None,
                        created_at: now,
                        updated_at: now,
                        observations: observations.collect(),
                    });
                }
                Line::Relation {
                    from,
                    to,
                    relation_type,
                } => relations.push(ImportRelation {
                    record,
                    scope: scope.clone(),
                    from,
                    to,
                    relation_type,
                    strength: default_strength(),
                    created_at: now,
                }),
            }
        }
        self.import_records(entities, relations)
    }
}
