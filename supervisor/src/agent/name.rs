//! Agent names. Canonical names are lower-case kebab (`data-analyzer`); the seed's CamelCase names
//! (`DataAnalyzer`) are accepted and normalised, so both spellings refer to one agent everywhere:
//! in file names, the API, the CLI, metrics and the database.

use std::fmt;

/// A valid, normalised agent name matching `^[a-z][a-z0-9-]*[a-z0-9]$`, at most 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct AgentName(String);

/// Why a string is not an agent name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid agent name {given:?}: {reason}")]
pub struct InvalidAgentName {
    /// What was given.
    pub given: String,
    /// Why it was refused.
    pub reason: &'static str,
}

const MAX_LEN: usize = 63;

impl AgentName {
    /// Accept a kebab-case name as is, or normalise a CamelCase one (`DataAnalyzer` → `data-analyzer`).
    pub fn parse(given: &str) -> Result<Self, InvalidAgentName> {
        let refuse = |reason| {
            Err(InvalidAgentName {
                given: given.to_owned(),
                reason,
            })
        };
        let candidate = if given.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
            if !given.chars().all(|c| c.is_ascii_alphanumeric()) {
                return refuse("a CamelCase name may contain only letters and digits");
            }
            camel_to_kebab(given)
        } else {
            given.to_owned()
        };
        let bytes = candidate.as_bytes();
        if bytes.len() < 2 {
            return refuse("names have at least two characters");
        }
        if bytes.len() > MAX_LEN {
            return refuse("names have at most 63 characters");
        }
        if !bytes[0].is_ascii_lowercase() {
            return refuse("names start with a lower-case letter (or are CamelCase)");
        }
        if !bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return refuse("names use only a-z, 0-9 and '-' (or are CamelCase)");
        }
        if bytes[bytes.len() - 1] == b'-' {
            return refuse("names do not end with '-'");
        }
        Ok(Self(candidate))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `DataAnalyzer` → `data-analyzer`, `HTTPClient` → `http-client`, `Agent2Go` → `agent2-go`.
fn camel_to_kebab(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_is_lower)
            {
                out.push('-');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_names_are_normalised() {
        assert_eq!(
            AgentName::parse("DataAnalyzer").unwrap().as_str(),
            "data-analyzer"
        );
        assert_eq!(
            AgentName::parse("HTTPClient").unwrap().as_str(),
            "http-client"
        );
        assert_eq!(AgentName::parse("Hello").unwrap().as_str(), "hello");
    }

    #[test]
    fn kebab_names_are_kept() {
        assert_eq!(
            AgentName::parse("report-bot-2").unwrap().as_str(),
            "report-bot-2"
        );
    }

    #[test]
    fn bad_names_are_refused_with_a_reason() {
        for bad in [
            "",
            "a",
            "-x",
            "x-",
            "under_score",
            "Data_Analyzer",
            "héllo",
            "1abc",
            "a/b",
        ] {
            let err = AgentName::parse(bad).unwrap_err();
            assert_eq!(err.given, bad);
        }
        assert!(AgentName::parse(&"a".repeat(64)).is_err());
    }
}
