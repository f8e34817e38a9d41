//! Registries with endpoints set by hand (no sockets, no health watch),
//! for unit tests of routing and of what reads the registry.

use std::sync::Arc;

use agentmesh_proto::v1::{AgentCard, EndpointHealth, Skill};

use crate::config::OrchestratorConfig;
use crate::routing::registry::{CardInfo, Endpoint, Registry};

/// A skill `id` consuming and producing the given kinds.
pub fn skill(id: &str, consumes: &[&str], produces: &[&str]) -> Skill {
    Skill {
        id: id.into(),
        description: format!("does {id}"),
        consumes: consumes.iter().map(|k| (*k).to_string()).collect(),
        produces: produces.iter().map(|k| (*k).to_string()).collect(),
        ..Skill::default()
    }
}

/// A card named `name` offering `skills`, at most `max` tasks at once
/// (0: no limit).
pub fn card(name: &str, max: u32, skills: Vec<Skill>) -> AgentCard {
    AgentCard {
        name: name.into(),
        version: "1.0.0".into(),
        max_concurrency: max,
        skills,
        ..AgentCard::default()
    }
}

/// A registry that watches nothing, with the default configuration.
pub fn registry() -> Arc<Registry> {
    let cfg = OrchestratorConfig::default();
    Registry::detached(cfg.routing, cfg.discovery)
}

/// Adds a SERVING endpoint at `address` with `card`. Needs a Tokio runtime
/// (the endpoint's channel is made, lazily).
pub fn serving(registry: &Arc<Registry>, address: &str, card: AgentCard) -> Arc<Endpoint> {
    let ep = endpoint(registry, address);
    let info = CardInfo::new(card).unwrap_or_else(|e| panic!("card: {e}"));
    registry.set_health(&ep, EndpointHealth::Serving, Some(Arc::new(info)));
    ep
}

/// The endpoint at `address`, added (with no card, health unknown) if new.
pub fn endpoint(registry: &Arc<Registry>, address: &str) -> Arc<Endpoint> {
    registry
        .add_source(address, "test")
        .unwrap_or_else(|e| panic!("{address}: {e}"));
    registry
        .endpoint(address)
        .unwrap_or_else(|| panic!("{address} was just added"))
}
