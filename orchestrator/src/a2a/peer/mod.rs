//! A2A agents as sub-agents (`[[discovery.a2a]] url = "..."`).
//!
//! The orchestrator fetches the agent's card from
//! `<url>/.well-known/agent-card.json` every `discovery.health_check_ms`:
//! a card that answers is SERVING, one that does not is UNREACHABLE. Its
//! skills become mesh skills: schemas, kinds and planning phrases from the
//! agentmesh skill extension when the card declares it ([`extension`]),
//! otherwise text in (`{"text": ...}`) and text or data out
//! (`{"text": ..., "data": ...}`). Steps go to it with
//! `SendStreamingMessage` through the A2A SDK's client, over the binding
//! the card prefers among JSON-RPC, HTTP+JSON and gRPC ([`call`]).

pub mod call;

use std::sync::Arc;
use std::time::Duration;

use a2a::{
    A2AError, TRANSPORT_PROTOCOL_GRPC, TRANSPORT_PROTOCOL_HTTP_JSON, TRANSPORT_PROTOCOL_JSONRPC,
};
use a2a_client::jsonrpc::JsonRpcTransportFactory;
use a2a_client::middleware::CallInterceptor;
use a2a_client::rest::RestTransportFactory;
use a2a_client::{A2AClient, A2AClientFactory, ServiceParams, Transport};
use agentmesh_proto::json::to_struct;
use agentmesh_proto::v1::{AgentCard, EndpointHealth, Skill, SkillPlanning};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tracing::{info, warn};

use crate::a2a::extension;
use crate::config::A2aPeerConfig;
use crate::routing::{CardInfo, Endpoint, Registry};

/// The client of an A2A agent, made from one version of its card.
pub struct Connected {
    /// The card it was made from.
    pub card: a2a::AgentCard,
    /// The client, on the binding chosen from the card.
    pub client: A2AClient<Box<dyn Transport>>,
}

/// One A2A agent.
pub struct Peer {
    url: String,
    http: reqwest::Client,
    factory: A2AClientFactory,
    max_concurrency: u32,
    connected: Mutex<Option<Arc<Connected>>>,
}

/// Why a peer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The token file could not be read.
    #[error("discovery.a2a {url}: token_file {path}: {source}")]
    Token {
        /// The agent.
        url: String,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("discovery.a2a {url}: {message}")]
    Client {
        /// The agent.
        url: String,
        /// Why.
        message: String,
    },
}

/// Presents a bearer token on every call.
struct Bearer(String);

#[async_trait::async_trait]
impl CallInterceptor for Bearer {
    async fn before(&self, _method: &str, params: &mut ServiceParams) -> Result<(), A2AError> {
        params.insert(
            "authorization".to_string(),
            vec![format!("Bearer {}", self.0)],
        );
        Ok(())
    }
}

impl Peer {
    /// The peer `cfg` names; nothing is fetched yet.
    pub fn new(cfg: &A2aPeerConfig, connect_timeout: Duration) -> Result<Self, PeerError> {
        let token = cfg
            .token_file
            .as_ref()
            .map(|path| {
                std::fs::read_to_string(path)
                    .map(|t| t.trim().to_string())
                    .map_err(|source| PeerError::Token {
                        url: cfg.url.clone(),
                        path: path.display().to_string(),
                        source,
                    })
            })
            .transpose()?;
        // reqwest's rustls needs a process-wide provider: ring, as
        // everywhere in the mesh.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| PeerError::Client {
                url: cfg.url.clone(),
                message: e.to_string(),
            })?;
        let mut builder = A2AClientFactory::builder()
            .no_defaults()
            .register(Arc::new(JsonRpcTransportFactory::new(Some(http.clone()))))
            .register(Arc::new(RestTransportFactory::new(Some(http.clone()))))
            .register(Arc::new(a2a_grpc::GrpcTransportFactory::new()))
            .preferred_bindings(vec![
                TRANSPORT_PROTOCOL_GRPC.to_string(),
                TRANSPORT_PROTOCOL_JSONRPC.to_string(),
                TRANSPORT_PROTOCOL_HTTP_JSON.to_string(),
            ]);
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            builder = builder.with_interceptor(Arc::new(Bearer(token)));
        }
        Ok(Self {
            url: cfg.url.trim_end_matches('/').to_string(),
            http,
            factory: builder.build(),
            max_concurrency: cfg.max_concurrency,
            connected: Mutex::new(None),
        })
    }

    /// The agent's base URL (its endpoint address in the registry).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client of the card fetched last, if one was.
    pub fn connected(&self) -> Option<Arc<Connected>> {
        self.connected.lock().clone()
    }

    /// A task on this agent.
    pub fn task(self: &Arc<Self>) -> call::A2aTask {
        call::A2aTask::new(Arc::clone(self))
    }

    /// Fetches the card again; the mesh card when it changed (and a new
    /// client was made for it), None when it is as it was.
    async fn refresh(&self) -> Result<Option<AgentCard>, String> {
        let resolver = a2a_client::agent_card::AgentCardResolver::new(Some(self.http.clone()));
        let card = resolver.resolve(&self.url).await.map_err(|e| e.message)?;
        if self.connected().is_some_and(|c| same_card(&c.card, &card)) {
            return Ok(None);
        }
        let client = self
            .factory
            .create_from_card(&card)
            .await
            .map_err(|e| format!("no usable interface in the card: {}", e.message))?;
        let mesh = mesh_card(&card, self.max_concurrency);
        *self.connected.lock() = Some(Arc::new(Connected { card, client }));
        Ok(Some(mesh))
    }
}

fn same_card(a: &a2a::AgentCard, b: &a2a::AgentCard) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

/// Watches `peer` through its card until the endpoint's watcher stops.
pub async fn watch(registry: &Arc<Registry>, ep: &Arc<Endpoint>, peer: &Arc<Peer>) {
    let interval = registry.discovery().health_check;
    let timeout = registry.discovery().connect_timeout;
    loop {
        match tokio::time::timeout(timeout, peer.refresh()).await {
            Ok(Ok(Some(card))) => match CardInfo::new(card) {
                Ok(info) => {
                    info!(url = %peer.url, skills = info.card.skills.len(), "A2A agent card read");
                    registry.set_health(ep, EndpointHealth::Serving, Some(Arc::new(info)));
                }
                Err(e) => {
                    warn!(url = %peer.url, error = %e, "A2A agent card unusable; endpoint gets no work");
                    registry.set_health(ep, EndpointHealth::NotServing, None);
                }
            },
            Ok(Ok(None)) => registry.set_health(ep, EndpointHealth::Serving, None),
            Ok(Err(e)) => {
                warn!(url = %peer.url, error = %e, "A2A agent card unavailable");
                registry.set_health(ep, EndpointHealth::Unreachable, None);
            }
            Err(_) => registry.set_health(ep, EndpointHealth::Unreachable, None),
        }
        tokio::time::sleep(interval).await;
    }
}

/// Input of a skill the card says nothing more of: text.
fn text_input() -> Map<String, Value> {
    let schema = json!({
        "type": "object",
        "properties": {"text": {"type": "string"}},
    });
    schema.as_object().cloned().unwrap_or_default()
}

/// Output of a skill the card says nothing more of: text, or data.
fn text_or_data_output() -> Map<String, Value> {
    let schema = json!({
        "type": "object",
        "properties": {"text": {"type": "string"}, "a2a_task_id": {"type": "string"}},
    });
    schema.as_object().cloned().unwrap_or_default()
}

/// An A2A card as a mesh card: one mesh skill per A2A skill.
pub fn mesh_card(card: &a2a::AgentCard, max_concurrency: u32) -> AgentCard {
    let extras = extension::read(card);
    let skills = card
        .skills
        .iter()
        .map(|s| {
            let x = extras.get(&s.id).cloned().unwrap_or_default();
            Skill {
                id: s.id.clone(),
                description: s.description.clone(),
                tags: s.tags.clone(),
                examples: s.examples.clone().unwrap_or_default(),
                input_schema: Some(to_struct(&x.input_schema.unwrap_or_else(text_input))),
                output_schema: Some(to_struct(
                    &x.output_schema.unwrap_or_else(text_or_data_output),
                )),
                consumes: x.consumes,
                produces: x.produces,
                hints: None,
                planning: (!x.phrases.is_empty()).then(|| SkillPlanning {
                    phrases: x.phrases,
                    ..SkillPlanning::default()
                }),
            }
        })
        .collect();
    AgentCard {
        name: card.name.clone(),
        version: card.version.clone(),
        description: card.description.clone(),
        protocol_version: format!("a2a/{}", a2a::VERSION),
        max_concurrency,
        skills,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn a2a_card(extensions: Option<Vec<a2a::AgentExtension>>) -> a2a::AgentCard {
        serde_json::from_value(json!({
            "name": "translator", "description": "d", "version": "2.1.0",
            "supportedInterfaces": [{"url": "http://127.0.0.1:1/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
            "capabilities": {"streaming": true},
            "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
            "skills": [{"id": "translate", "name": "Translate", "description": "to French", "tags": ["language"]}]
        }))
        .map(|mut c: a2a::AgentCard| {
            c.capabilities.extensions = extensions;
            c
        })
        .unwrap()
    }

    #[test]
    fn a_plain_card_is_text_in_text_out() {
        let card = mesh_card(&a2a_card(None), 4);
        assert_eq!(card.name, "translator");
        assert_eq!(card.max_concurrency, 4);
        let skill = &card.skills[0];
        assert_eq!(skill.id, "translate");
        let input = agentmesh_proto::json::from_opt_struct(skill.input_schema.as_ref());
        assert_eq!(input["properties"]["text"]["type"], "string");
        assert!(skill.produces.is_empty() && skill.planning.is_none());
        assert!(CardInfo::new(card).is_ok());
    }

    #[test]
    fn the_extension_gives_schemas_kinds_and_phrases() {
        let extras = SkillExtrasFixture::one();
        let card = mesh_card(&a2a_card(Some(vec![extension::declare(extras)])), 0);
        let skill = &card.skills[0];
        assert_eq!(skill.produces, ["demo.translation"]);
        assert_eq!(skill.planning.as_ref().unwrap().phrases, ["translate"]);
        let input = agentmesh_proto::json::from_opt_struct(skill.input_schema.as_ref());
        assert_eq!(input["required"], json!(["summary"]));
    }

    struct SkillExtrasFixture;

    impl SkillExtrasFixture {
        fn one() -> HashMap<String, extension::SkillExtras> {
            HashMap::from([(
                "translate".to_string(),
                extension::SkillExtras {
                    input_schema: json!({"type": "object", "required": ["summary"]})
                        .as_object()
                        .cloned(),
                    output_schema: None,
                    consumes: vec!["sales.summary".into()],
                    produces: vec!["demo.translation".into()],
                    phrases: vec!["translate".into()],
                },
            )])
        }
    }
}
