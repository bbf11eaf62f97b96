//! The values that go in and out of the memory: entities, observations, relations, times, and
//! the checks every input passes before anything is written.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Result, invalid};
use crate::scope::Scope;

/// Dimensions of every stored embedding (all-MiniLM-L6-v2).
pub const EMBEDDING_DIM: usize = 384;
/// One embedding: unit length, so a dot product is the cosine similarity.
pub type Vector = [f32; EMBEDDING_DIM];

/// Longest entity name, in bytes.
pub const MAX_NAME_BYTES: usize = 512;
/// Longest entity or relation type, in bytes.
pub const MAX_TYPE_BYTES: usize = 128;
/// Largest entity metadata, serialised as JSON, in bytes.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// Default limit on one observation's text, in bytes (see [`crate::MemoryOptions`]). The model
/// reads at most 256 tokens (about 1,000 characters of English), so longer text is stored but
/// only its start is searchable by meaning.
pub const DEFAULT_MAX_OBSERVATION_BYTES: usize = 8 * 1024;

/// Row id of an entity.
pub type EntityId = i64;
/// Row id of an observation.
pub type ObservationId = i64;

/// A point in time with millisecond precision, serialised as RFC 3339 (`2026-11-26T16:24:00.123Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// Parse RFC 3339 (`2026-11-26T16:24:00Z`, fractional seconds allowed).
    pub fn parse(s: &str) -> Result<Self> {
        let t = humantime::parse_rfc3339_weak(s)
            .map_err(|e| invalid("timestamp", format!("{s:?}: {e}")))?;
        let ms = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        Ok(Self(ms))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.0.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_millis(self.0.unsigned_abs())
        };
        write!(f, "{}", humantime::format_rfc3339_millis(t))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An entity to create or update, with observations to add to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntityInput {
    /// Unique within its scope.
    pub name: String,
    /// Free-form kind, for example `person`, `project`, `preference`.
    pub entity_type: String,
    /// Facts to add; a text already recorded on the entity is not added twice.
    #[serde(default)]
    pub observations: Vec<String>,
    /// A JSON object; its keys replace the stored metadata's keys of the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A stored entity with its observations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entity {
    /// Row id (stable for the life of the database, not across export and import).
    pub id: EntityId,
    /// Where it lives.
    pub scope: Scope,
    /// Its name.
    pub name: String,
    /// Its type.
    pub entity_type: String,
    /// A JSON object.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its type, metadata or observations last changed.
    pub updated_at: Timestamp,
    /// Its observations, oldest first.
    pub observations: Vec<Observation>,
}

/// One recorded fact about an entity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    /// Row id.
    pub id: ObservationId,
    /// The fact.
    pub text: String,
    /// When it was recorded.
    pub created_at: Timestamp,
}

/// A directed, typed link between two entities of the same scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relation {
    /// Name of the source entity.
    pub from: String,
    /// Name of the target entity.
    pub to: String,
    /// Verb-like type, for example `works_at`.
    pub relation_type: String,
    /// Between 0 and 1; 1 when not given.
    #[serde(default = "default_strength")]
    pub strength: f32,
}

pub(crate) fn default_strength() -> f32 {
    1.0
}

/// What an upsert did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Upserted {
    /// The entity's row id.
    pub id: EntityId,
    /// True when the entity did not exist before.
    pub created: bool,
    /// Ids of the observations added (texts already present are skipped).
    pub added_observations: Vec<ObservationId>,
}

/// Counts and sizes for `caxton memory stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Entities in the scopes asked about.
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
}

/// Refuse an empty, over-long or control-character name.
pub(crate) fn check_name(field: &'static str, name: &str, max: usize) -> Result<()> {
    if name.trim().is_empty() {
        return Err(invalid(field, "it is empty"));
    }
    if name.len() > max {
        return Err(invalid(
            field,
            format!("{} bytes, the limit is {max}", name.len()),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(field, "it contains control characters"));
    }
    Ok(())
}

/// Refuse an empty or over-long observation, or one with control characters other than
/// newline, tab and carriage return.
pub(crate) fn check_observation(text: &str, max: usize) -> Result<()> {
    if text.trim().is_empty() {
        return Err(invalid("observation text", "it is empty"));
    }
    if text.len() > max {
        return Err(invalid(
            "observation text",
            format!("{} bytes, the limit is {max}", text.len()),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        return Err(invalid(
            "observation text",
            "it contains control characters",
        ));
    }
    Ok(())
}

/// Refuse a strength outside 0..=1 (or NaN).
pub(crate) fn check_strength(strength: f32) -> Result<()> {
    if (0.0..=1.0).contains(&strength) {
        Ok(())
    } else {
        Err(invalid(
            "relation strength",
            format!("{strength} is not between 0 and 1"),
        ))
    }
}

/// Refuse metadata whose JSON is larger than the limit.
pub(crate) fn check_metadata(meta: &serde_json::Map<String, serde_json::Value>) -> Result<String> {
    let json = serde_json::to_string(meta).map_err(|e| invalid("metadata", e.to_string()))?;
    if json.len() > MAX_METADATA_BYTES {
        return Err(invalid(
            "metadata",
            format!(
                "{} bytes of JSON, the limit is {MAX_METADATA_BYTES}",
                json.len()
            ),
        ));
    }
    Ok(json)
}

/// Text from bytes, or an error naming `what` and the offset of the first bad byte.
pub fn text_from_bytes<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| crate::MemoryError::InvalidUtf8 {
        what: what.to_owned(),
        offset: e.valid_up_to(),
    })
}

/// Little-endian f32 bytes of a vector, the form stored in the `embedding` column.
pub(crate) fn vector_to_bytes(v: &Vector) -> Vec<u8> {
    let mut out = Vec::with_capacity(EMBEDDING_DIM * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// The inverse of [`vector_to_bytes`]; `None` when the length is wrong.
pub(crate) fn vector_from_bytes(bytes: &[u8]) -> Option<Vector> {
    if bytes.len() != EMBEDDING_DIM * 4 {
        return None;
    }
    let mut v = [0.0f32; EMBEDDING_DIM];
    for (x, chunk) in v.iter_mut().zip(bytes.chunks_exact(4)) {
        *x = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn timestamps_round_trip_through_rfc3339() {
        let t = Timestamp(1_764_174_240_123);
        let s = t.to_string();
        assert_eq!(s, "2025-11-26T16:24:00.123Z");
        assert_eq!(Timestamp::parse(&s).unwrap(), t);
        assert!(Timestamp::parse("yesterday").is_err());
    }

    #[test]
    fn observation_checks_name_the_problem() {
        let err = check_observation(&"x".repeat(100), 10)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("100 bytes") && err.contains("limit is 10"),
            "{err}"
        );
        assert!(check_observation("  \n", 10).is_err());
        assert!(check_observation("bell\u{7}", 10).is_err());
        assert!(check_observation("two\nlines\tok", 100).is_ok());
    }

    #[test]
    fn invalid_utf8_names_the_offset() {
        let err = text_from_bytes(b"abc\xffdef", "line 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("offset 3"), "{err}");
    }
}
