//! A tool's input schema, compiled once, and the check every call's arguments pass before the
//! tool runs: the same check (and the same message) for WebAssembly tools and for the tools the
//! supervisor serves itself.

use serde_json::Value;

use crate::ToolCallError;

/// Most argument errors reported for one call.
const MAX_REPORTED_ERRORS: usize = 8;

/// A compiled JSON Schema for one tool's arguments.
pub struct ArgumentSchema(jsonschema::Validator);

impl std::fmt::Debug for ArgumentSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgumentSchema").finish_non_exhaustive()
    }
}

impl ArgumentSchema {
    /// Compile `schema`; the error says why it is not a usable JSON Schema.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        jsonschema::validator_for(schema)
            .map(Self)
            .map_err(|e| e.to_string())
    }

    /// Check `args` for `tool`: every violation (up to a few), each with its JSON pointer.
    pub fn check(&self, tool: &str, args: &Value) -> Result<(), ToolCallError> {
        let reasons: Vec<String> = self
            .0
            .iter_errors(args)
            .take(MAX_REPORTED_ERRORS)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(ToolCallError::InvalidArguments {
                tool: tool.to_owned(),
                reasons,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_are_named_with_their_pointer() {
        let schema = ArgumentSchema::compile(&serde_json::json!({
            "type": "object",
            "properties": {"n": {"type": "integer", "maximum": 3}},
            "required": ["n"],
            "additionalProperties": false
        }))
        .unwrap();
        assert!(schema.check("t", &serde_json::json!({"n": 2})).is_ok());
        let err = schema
            .check("t", &serde_json::json!({"n": 9, "x": 1}))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid arguments for t:"), "{err}");
        assert!(err.contains("/n: 9") && err.contains("'x'"), "{err}");
        assert!(ArgumentSchema::compile(&serde_json::json!({"type": 7})).is_err());
    }
}
