//! What the data looks like, asked of the agent that describes it (a skill
//! producing `sales.schema`), cached for a short while. The intent parser
//! resolves periods and filters against it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::json::from_opt_struct;
use agentmesh_proto::v1::agent_service_client::AgentServiceClient;
use agentmesh_proto::v1::{ExecuteTaskRequest, task_event};
use serde_json::Value;
use time::Date;
use time::macros::format_description;
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::intent::Catalog;
use crate::registry::Registry;

/// The kind a describing skill produces.
pub const SCHEMA_KIND: &str = "sales.schema";
/// How long a fetched catalog is reused.
const TTL: Duration = Duration::from_secs(30);
/// How long a describe call may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Filter fields read from the description: (output key, filter field).
const FIELDS: [(&str, &str); 4] = [
    ("regions", "region"),
    ("countries", "country"),
    ("product_lines", "product_line"),
    ("channels", "channel"),
];

/// A catalog and where it came from.
#[derive(Debug, Clone)]
pub struct Described {
    /// The catalog.
    pub catalog: Catalog,
    /// "sales.describe on 127.0.0.1:50051", for the plan's notes.
    pub source: String,
}

/// A short-lived cache of the catalog.
#[derive(Default)]
pub struct CatalogCache {
    cached: Mutex<Option<(Instant, Arc<Described>)>>,
}

impl CatalogCache {
    /// The catalog, fetched when the cached one is older than the TTL.
    pub async fn get(&self, registry: &Arc<Registry>) -> Result<Arc<Described>, MeshError> {
        if let Some((at, d)) = self
            .cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            && at.elapsed() < TTL
        {
            return Ok(Arc::clone(d));
        }
        let fresh = Arc::new(fetch(registry).await?);
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), Arc::clone(&fresh)));
        Ok(fresh)
    }
}

async fn fetch(registry: &Arc<Registry>) -> Result<Described, MeshError> {
    let producers = registry.producers(SCHEMA_KIND);
    let Some((skill, _)) = producers.first() else {
        return Err(MeshError::new(
            ErrorReason::NoAgentForSkill,
            format!(
                "no healthy agent offers a skill producing `{SCHEMA_KIND}`, needed to read the goal against the data"
            ),
        ));
    };
    let skill_id = skill.skill.id.clone();
    let slot = registry
        .acquire(
            &skill_id,
            &[],
            Duration::from_secs(2),
            &CancellationToken::new(),
        )
        .await
        .map_err(|_| {
            MeshError::new(
                ErrorReason::NoAgentForSkill,
                format!("no replica of {skill_id} is free to describe the data"),
            )
        })?;
    let mut client = AgentServiceClient::new(slot.endpoint.channel.clone())
        .max_decoding_message_size(16 * 1024 * 1024);
    let mut req = tonic::Request::new(ExecuteTaskRequest {
        task_id: format!("catalog-{}", uuid::Uuid::new_v4()),
        run_id: "planning".into(),
        skill_id: skill_id.clone(),
        attempt: 1,
        ..ExecuteTaskRequest::default()
    });
    req.set_timeout(FETCH_TIMEOUT);
    let unavailable = |m: String| MeshError::new(ErrorReason::AgentUnavailable, m);
    let output = tokio::time::timeout(FETCH_TIMEOUT, async {
        let mut stream = client
            .execute_task(req)
            .await
            .map_err(|s| unavailable(format!("{skill_id}: {}", s.message())))?
            .into_inner();
        while let Some(ev) = stream.next().await {
            let ev = ev.map_err(|s| unavailable(format!("{skill_id}: {}", s.message())))?;
            match ev.event {
                Some(task_event::Event::Result(r)) => {
                    return Ok(from_opt_struct(r.output.as_ref()));
                }
                Some(task_event::Event::Failure(f)) => {
                    return Err(unavailable(format!("{skill_id} failed: {}", f.message)));
                }
                _ => {}
            }
        }
        Err(unavailable(format!("{skill_id} returned no result")))
    })
    .await
    .map_err(|_| {
        unavailable(format!(
            "{skill_id} did not answer within {FETCH_TIMEOUT:?}"
        ))
    })??;
    let catalog = parse(&Value::Object(output))
        .map_err(|m| MeshError::new(ErrorReason::OutputInvalid, format!("{skill_id}: {m}")))?;
    Ok(Described {
        catalog,
        source: format!("{skill_id} on {}", slot.endpoint.address),
    })
}

/// Reads a `sales.schema` description.
pub fn parse(v: &Value) -> Result<Catalog, String> {
    let fmt = format_description!("[year]-[month]-[day]");
    let date = |key: &str| -> Result<Date, String> {
        let s = v[key].as_str().ok_or_else(|| format!("{key} is missing"))?;
        Date::parse(s, fmt).map_err(|e| format!("{key} {s:?}: {e}"))
    };
    let mut values = BTreeMap::new();
    for (key, field) in FIELDS {
        let list: Vec<String> = v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        values.insert(field.to_string(), list);
    }
    Ok(Catalog {
        values,
        first_date: date("first_date")?,
        complete_through: date("complete_through")?,
        last_date: date("last_date")?,
    })
}
