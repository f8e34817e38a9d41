//! The agentmesh skill extension of an A2A agent card: what A2A's
//! `AgentSkill` cannot say (JSON Schemas of input and output, content kinds,
//! planning phrases), declared as one extension in
//! `capabilities.extensions` whose `params.skills` maps a skill id to
//!
//! ```json
//! {"inputSchema": {...}, "outputSchema": {...}, "consumes": ["dataset"],
//!  "produces": ["summary"], "phrases": ["translate"]}
//! ```
//!
//! The orchestrator's own card declares it; an A2A sub-agent may, and the
//! orchestrator reads it when it does (every field is optional).

use std::collections::HashMap;

use a2a::{AgentCard, AgentExtension};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The extension's URI.
pub const URI: &str = "https://agentmesh.dev/a2a/extensions/skills/v1";

/// What the extension says of one skill.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SkillExtras {
    /// JSON Schema of the input object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Map<String, Value>>,
    /// JSON Schema of the output object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Map<String, Value>>,
    /// Content kinds the skill reads.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consumes: Vec<String>,
    /// Content kinds the skill makes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub produces: Vec<String>,
    /// Words of a goal that ask for the skill.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phrases: Vec<String>,
}

/// The extension declaring `skills`.
pub fn declare(skills: HashMap<String, SkillExtras>) -> AgentExtension {
    let skills = serde_json::to_value(skills).unwrap_or(Value::Null);
    AgentExtension {
        uri: URI.to_string(),
        description: Some(
            "agentmesh skill details: JSON Schemas of input and output, content kinds, planning phrases"
                .to_string(),
        ),
        required: Some(false),
        params: Some(HashMap::from([("skills".to_string(), skills)])),
    }
}

/// What `card`'s extension says of each skill (empty without it; a
/// malformed entry is left out).
pub fn read(card: &AgentCard) -> HashMap<String, SkillExtras> {
    let Some(ext) = card
        .capabilities
        .extensions
        .iter()
        .flatten()
        .find(|e| e.uri == URI)
    else {
        return HashMap::new();
    };
    let Some(Value::Object(skills)) = ext.params.as_ref().and_then(|p| p.get("skills")) else {
        return HashMap::new();
    };
    skills
        .iter()
        .filter_map(|(id, v)| Some((id.clone(), SkillExtras::deserialize(v).ok()?)))
        .collect()
}
