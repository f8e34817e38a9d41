//! The orchestrator's A2A agent card, made from the live skill catalog on
//! every request: one `goal` skill (a goal in plain language, the mesh
//! plans it), and one skill per mesh skill some agent serves, with the
//! agentmesh extension carrying their schemas and kinds.

use std::collections::HashMap;
use std::sync::Arc;

use a2a::{
    AgentCapabilities, AgentCard, AgentInterface, AgentProvider, AgentSkill,
    HttpAuthSecurityScheme, SecurityScheme, TRANSPORT_PROTOCOL_GRPC, TRANSPORT_PROTOCOL_JSONRPC,
};
use a2a_server::AgentCardProducer;
use agentmesh_proto::json::from_opt_struct;

use crate::a2a::extension::{self, SkillExtras};
use crate::config::OrchestratorConfig;
use crate::routing::Registry;

/// The id of the skill that runs goals.
pub const GOAL_SKILL: &str = "goal";
/// Name of the bearer security scheme in the card.
const BEARER: &str = "bearer";

/// Makes the card from the registry's current skills.
pub struct CardSource {
    registry: Arc<Registry>,
    name: String,
    interfaces: Vec<AgentInterface>,
    authenticated: bool,
}

impl CardSource {
    /// The card of an orchestrator configured by `cfg`, whose HTTP
    /// listener (if any) is at `http_addr` and gRPC listener at `grpc_addr`.
    pub fn new(
        registry: Arc<Registry>,
        cfg: &OrchestratorConfig,
        http_addr: Option<std::net::SocketAddr>,
        grpc_addr: std::net::SocketAddr,
    ) -> Self {
        let mut interfaces = Vec::new();
        // Both listeners speak TLS with server.tls.
        let scheme = if cfg.server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let jsonrpc = cfg
            .a2a
            .public_url
            .clone()
            .or_else(|| http_addr.map(|a| format!("{scheme}://{a}/")));
        if let Some(url) = jsonrpc {
            interfaces.push(AgentInterface::new(url, TRANSPORT_PROTOCOL_JSONRPC));
        }
        let grpc = cfg
            .a2a
            .grpc_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{grpc_addr}"));
        interfaces.push(AgentInterface::new(grpc, TRANSPORT_PROTOCOL_GRPC));
        Self {
            registry,
            name: cfg
                .a2a
                .name
                .clone()
                .unwrap_or_else(|| "agentmesh".to_string()),
            interfaces,
            authenticated: cfg.server.auth.is_some(),
        }
    }

    /// The card with the skills served now.
    pub fn card(&self) -> AgentCard {
        let mut skills = vec![AgentSkill {
            id: GOAL_SKILL.to_string(),
            name: "Run a goal".to_string(),
            description: "Send a goal in plain language (and optionally a data part with `parameters`, an explicit `plan`, `fanIn` or `deadline`); the mesh plans it, delegates each step to its agents and returns the integrated report (HTML, Markdown, JSON, charts, dataset) as artifacts.".to_string(),
            tags: vec!["orchestration".to_string(), "report".to_string()],
            examples: Some(vec![
                "Generate a Q2 sales performance report with visualizations and an executive summary".to_string(),
            ]),
            input_modes: Some(vec!["text/plain".to_string(), "application/json".to_string()]),
            output_modes: None,
            security_requirements: None,
        }];
        let mut extras = HashMap::new();
        for info in self.registry.known_skills() {
            let s = &info.skill;
            skills.push(AgentSkill {
                id: s.id.clone(),
                name: s.id.clone(),
                description: s.description.clone(),
                tags: s.tags.clone(),
                examples: (!s.examples.is_empty()).then(|| s.examples.clone()),
                input_modes: Some(vec!["application/json".to_string()]),
                output_modes: Some(vec!["application/json".to_string()]),
                security_requirements: None,
            });
            let schema = |st: Option<&agentmesh_proto::prost_types::Struct>| {
                st.filter(|s| !s.fields.is_empty())
                    .map(|s| from_opt_struct(Some(s)))
            };
            extras.insert(
                s.id.clone(),
                SkillExtras {
                    input_schema: schema(s.input_schema.as_ref()),
                    output_schema: schema(s.output_schema.as_ref()),
                    consumes: s.consumes.clone(),
                    produces: s.produces.clone(),
                    phrases: s
                        .planning
                        .as_ref()
                        .map(|p| p.phrases.clone())
                        .unwrap_or_default(),
                },
            );
        }
        let (security_schemes, security_requirements) = if self.authenticated {
            let scheme = SecurityScheme::HttpAuth(HttpAuthSecurityScheme {
                scheme: "Bearer".to_string(),
                description: Some(
                    "A token of [server.auth]: a static token or a JWT from the configured issuer"
                        .to_string(),
                ),
                bearer_format: Some("JWT".to_string()),
            });
            (
                Some(HashMap::from([(BEARER.to_string(), scheme)])),
                Some(vec![HashMap::from([(BEARER.to_string(), Vec::new())])]),
            )
        } else {
            (None, None)
        };
        AgentCard {
            name: self.name.clone(),
            description: "An agentmesh orchestrator: it plans a goal, delegates each step to sub-agents over gRPC and A2A, validates, retries and reroutes, and integrates the outputs into one report with a record of which agent did what.".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            supported_interfaces: self.interfaces.clone(),
            capabilities: AgentCapabilities {
                streaming: Some(true),
                push_notifications: Some(false),
                extensions: Some(vec![extension::declare(extras)]),
                extended_agent_card: Some(self.authenticated),
            },
            default_input_modes: vec!["text/plain".to_string(), "application/json".to_string()],
            default_output_modes: vec![
                "text/html".to_string(),
                "text/markdown".to_string(),
                "application/json".to_string(),
                "image/svg+xml".to_string(),
                "text/csv".to_string(),
            ],
            skills,
            provider: Some(AgentProvider {
                organization: "agentmesh".to_string(),
                url: "https://github.com/agentmesh/agentmesh".to_string(),
            }),
            documentation_url: Some(
                "https://github.com/agentmesh/agentmesh/blob/main/docs/A2A.md".to_string(),
            ),
            icon_url: None,
            security_schemes,
            security_requirements,
            signatures: None,
        }
    }

    /// The extended card (authenticated callers): the public card whose
    /// skill descriptions also name the agents that serve them.
    pub fn extended(&self) -> AgentCard {
        let mut card = self.card();
        let serving = self.registry.snapshot();
        for skill in card.skills.iter_mut().filter(|s| s.id != GOAL_SKILL) {
            let agents: Vec<String> = serving
                .iter()
                .filter(|ep| {
                    ep.card
                        .as_ref()
                        .is_some_and(|c| c.skills.iter().any(|s| s.id == skill.id))
                })
                .map(|ep| {
                    let name = ep.card.as_ref().map(|c| c.name.as_str()).unwrap_or("");
                    format!("{name} at {}", ep.address)
                })
                .collect();
            if !agents.is_empty() {
                skill.description =
                    format!("{} (served by {})", skill.description, agents.join(", "));
            }
        }
        card
    }
}

impl AgentCardProducer for CardSource {
    fn card(&self) -> AgentCard {
        CardSource::card(self)
    }
}
