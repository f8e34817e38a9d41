//! The endpoint table: every known agent replica, where it came from, its
//! health, its card, its load and its recent failures; and replica choice.
//!
//! Locks here are synchronous and never held across an await. Discovery
//! sources add and remove *sources* of an endpoint; an endpoint without
//! sources is dropped and its health watcher stops. The registry starts a
//! watcher for each new endpoint through the [`Watcher`] it was given (the
//! health module's, in a server), so it depends on no watcher itself.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use agentmesh_proto::v1::{AgentCard, AgentEndpoint, EndpointHealth, Skill};
use agentmesh_runtime::auth::{AuthChannel, CallCredentials};
use agentmesh_runtime::schema::{SchemaError, SkillSchemas};
use agentmesh_runtime::tls::scheme;
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::{ClientTlsConfig, Endpoint as TonicEndpoint};
use tracing::{info, warn};

use crate::config::{DiscoveryConfig, RoutingConfig};
use crate::routing::queue::{Full, SkillQueues};

/// Starts watching a new endpoint until its `watcher` token is cancelled.
pub type Watcher = fn(Arc<Registry>, Arc<Endpoint>);

/// A skill as one agent's card declares it, with its schemas compiled.
pub struct SkillInfo {
    /// The card's skill.
    pub skill: Skill,
    /// Compiled input/output schemas.
    pub schemas: SkillSchemas,
}

/// A fetched card with its skills indexed.
pub struct CardInfo {
    /// The card as the agent sent it.
    pub card: AgentCard,
    skills: HashMap<String, Arc<SkillInfo>>,
}

impl CardInfo {
    /// Indexes a card and compiles its schemas.
    pub fn new(card: AgentCard) -> Result<Self, SchemaError> {
        let mut skills = HashMap::new();
        for skill in &card.skills {
            let schemas = SkillSchemas::compile(skill)?;
            skills.insert(
                skill.id.clone(),
                Arc::new(SkillInfo {
                    skill: skill.clone(),
                    schemas,
                }),
            );
        }
        Ok(Self { card, skills })
    }

    /// The skill `id`, if the card offers it.
    pub fn skill(&self, id: &str) -> Option<&Arc<SkillInfo>> {
        self.skills.get(id)
    }
}

#[derive(Default)]
struct EndpointState {
    health: EndpointHealth,
    card: Option<Arc<CardInfo>>,
    ejected_until: Option<Instant>,
    consecutive_failures: u32,
    outcomes: VecDeque<bool>,
}

impl EndpointState {
    /// The card, if this endpoint may get new work for `skill` now:
    /// SERVING, not ejected, and its card offers the skill.
    fn routable(&self, skill: &str, now: Instant) -> Option<&Arc<CardInfo>> {
        if self.health != EndpointHealth::Serving || self.ejected_until.is_some_and(|t| t > now) {
            return None;
        }
        self.card.as_ref().filter(|c| c.skill(skill).is_some())
    }
}

/// How an endpoint is reached.
#[derive(Clone)]
pub enum Transport {
    /// An agentmesh agent: `agentmesh.v1.AgentService` on a lazily
    /// connected channel that reconnects on its own, presenting the
    /// orchestrator's credentials (`discovery.token_file`).
    Mesh(AuthChannel),
    /// An A2A agent (`[[discovery.a2a]]`), through its A2A client.
    A2a(Arc<crate::a2a::peer::Peer>),
}

/// One agent replica.
pub struct Endpoint {
    /// `host:port` of a mesh agent; the base URL of an A2A agent.
    pub address: String,
    /// How it is reached.
    pub transport: Transport,
    sources: Mutex<BTreeSet<String>>,
    state: Mutex<EndpointState>,
    in_flight: AtomicU32,
    /// Stops this endpoint's health watcher.
    pub watcher: CancellationToken,
}

impl Endpoint {
    /// The endpoint's current health.
    pub fn health(&self) -> EndpointHealth {
        self.state.lock().health
    }

    /// The endpoint's card, once fetched.
    pub fn card(&self) -> Option<Arc<CardInfo>> {
        self.state.lock().card.clone()
    }

    /// Tasks this orchestrator has in flight on the endpoint.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// A reserved slot on an endpoint; released when dropped.
pub struct Slot {
    /// The chosen endpoint.
    pub endpoint: Arc<Endpoint>,
    /// Its card at the time of choice.
    pub card: Arc<CardInfo>,
    registry: Arc<Registry>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.registry.changed.notify_waiters();
        self.registry.dispatch();
    }
}

/// Why no slot could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// No healthy, non-ejected endpoint offers the skill.
    NoReplica,
    /// Replicas exist but all were at their max concurrency until the wait
    /// ended.
    AllBusy,
    /// The skill's queue is at its bound (`routing.max_queued_steps`).
    QueueFull,
}

/// What a step asks of [`Registry::acquire`].
pub struct SlotRequest<'a> {
    /// The skill.
    pub skill: &'a str,
    /// Replicas to use only when nothing else is there (earlier attempts').
    pub avoid: &'a [String],
    /// The replica to choose when it is free (the one a resumed attempt
    /// ran on: it may still hold the task, or its result).
    pub prefer: Option<&'a str>,
    /// The run asking, for fairness between runs.
    pub run: &'a str,
    /// How long to wait for a replica to appear when none is there.
    pub no_replica_wait: Duration,
    /// When to give up waiting.
    pub until: Instant,
    /// Stops the wait.
    pub stop: &'a CancellationToken,
    /// Told how many steps wait for the skill when this one joins the
    /// queue.
    pub on_queued: &'a (dyn Fn(u32) + Sync),
}

/// A step waiting for a busy skill.
struct Waiter {
    avoid: Vec<String>,
    tx: oneshot::Sender<Slot>,
}

/// Takes a waiter out of its queue when its wait ends.
struct Leave<'a> {
    registry: &'a Registry,
    skill: &'a str,
    id: u64,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.registry.queues.lock().remove(self.skill, self.id);
    }
}

/// All known endpoints.
pub struct Registry {
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    queues: Mutex<SkillQueues<Waiter>>,
    changed: Notify,
    routing: RoutingConfig,
    discovery: DiscoveryConfig,
    /// TLS towards every endpoint, read once at start.
    tls: Option<ClientTlsConfig>,
    /// Presented to every endpoint (`discovery.token_file`).
    credentials: CallCredentials,
    /// Starts each new endpoint's health watcher.
    watcher: Option<Watcher>,
    /// Parent of every health watcher; cancelled on shutdown.
    pub shutdown: CancellationToken,
}

impl Registry {
    /// An empty registry; `tls` (from `discovery.tls`) is used towards
    /// every endpoint, and `watcher` watches each new one.
    pub fn new(
        routing: RoutingConfig,
        discovery: DiscoveryConfig,
        tls: Option<ClientTlsConfig>,
        credentials: CallCredentials,
        watcher: Watcher,
    ) -> Arc<Self> {
        Self::with(routing, discovery, tls, credentials, Some(watcher))
    }

    /// A registry that watches nothing: endpoints stay as they are set
    /// (for tests of routing itself).
    pub fn detached(routing: RoutingConfig, discovery: DiscoveryConfig) -> Arc<Self> {
        Self::with(routing, discovery, None, CallCredentials::none(), None)
    }

    fn with(
        routing: RoutingConfig,
        discovery: DiscoveryConfig,
        tls: Option<ClientTlsConfig>,
        credentials: CallCredentials,
        watcher: Option<Watcher>,
    ) -> Arc<Self> {
        Arc::new(Self {
            endpoints: Mutex::new(HashMap::new()),
            queues: Mutex::new(SkillQueues::new(routing.max_queued_steps)),
            changed: Notify::new(),
            routing,
            discovery,
            tls,
            credentials,
            watcher,
            shutdown: CancellationToken::new(),
        })
    }

    /// Whether endpoints are reached over TLS (`discovery.tls`).
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Discovery settings (health intervals, timeouts).
    pub fn discovery(&self) -> &DiscoveryConfig {
        &self.discovery
    }

    /// Adds `source` to the endpoint at `address`, creating it (and its
    /// health watcher) if new.
    pub fn add_source(self: &Arc<Self>, address: &str, source: &str) -> Result<(), String> {
        self.add_with(address, source, || self.mesh_channel(address))
    }

    /// Adds the A2A agent `peer` (source `a2a`, its URL as the address),
    /// watched like any endpoint by the registry's watcher.
    pub fn add_a2a(self: &Arc<Self>, peer: Arc<crate::a2a::peer::Peer>) {
        let address = peer.url().to_string();
        // Infallible: the transport is given.
        let _ = self.add_with(&address, "a2a", || Ok(Transport::A2a(peer)));
    }

    /// Adds `source` to the endpoint at `address`; a new endpoint is
    /// reached through `transport` and gets its health watcher.
    fn add_with(
        self: &Arc<Self>,
        address: &str,
        source: &str,
        transport: impl FnOnce() -> Result<Transport, String>,
    ) -> Result<(), String> {
        let created = {
            let mut endpoints = self.endpoints.lock();
            if let Some(ep) = endpoints.get(address) {
                ep.sources.lock().insert(source.to_string());
                None
            } else {
                let ep = Arc::new(Endpoint {
                    address: address.to_string(),
                    transport: transport()?,
                    sources: Mutex::new(BTreeSet::from([source.to_string()])),
                    state: Mutex::new(EndpointState::default()),
                    in_flight: AtomicU32::new(0),
                    watcher: self.shutdown.child_token(),
                });
                endpoints.insert(address.to_string(), Arc::clone(&ep));
                Some(ep)
            }
        };
        if let Some(ep) = created {
            info!(address, source, "endpoint added");
            if let Some(watch) = self.watcher {
                watch(Arc::clone(self), ep);
            }
        }
        Ok(())
    }

    /// A lazily connected channel to the mesh agent at `address`.
    fn mesh_channel(&self, address: &str) -> Result<Transport, String> {
        let uri = format!("{}://{address}", scheme(self.tls.is_some()));
        let mut endpoint = TonicEndpoint::from_shared(uri)
            .map_err(|e| format!("invalid address {address:?}: {e}"))?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| format!("TLS towards {address}: {e}"))?;
        }
        let endpoint = endpoint
            .connect_timeout(self.discovery.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        Ok(Transport::Mesh(
            self.credentials.channel(endpoint.connect_lazy()),
        ))
    }

    /// The endpoint at `address`, if known.
    pub fn endpoint(&self, address: &str) -> Option<Arc<Endpoint>> {
        self.endpoints.lock().get(address).cloned()
    }

    /// Removes `source` from the endpoint at `address`; an endpoint left
    /// without sources is dropped.
    pub fn remove_source(&self, address: &str, source: &str) {
        let removed = {
            let mut endpoints = self.endpoints.lock();
            let empty = endpoints.get(address).is_some_and(|ep| {
                let mut sources = ep.sources.lock();
                sources.remove(source);
                sources.is_empty()
            });
            if empty {
                endpoints.remove(address)
            } else {
                None
            }
        };
        if let Some(ep) = removed {
            info!(address, source, "endpoint removed");
            ep.watcher.cancel();
            self.changed.notify_waiters();
        }
    }

    /// Makes the endpoints of `source` exactly `addresses`.
    pub fn set_source_members(self: &Arc<Self>, source: &str, addresses: &BTreeSet<String>) {
        let current: Vec<String> = self
            .endpoints
            .lock()
            .values()
            .filter(|ep| ep.sources.lock().contains(source))
            .map(|ep| ep.address.clone())
            .collect();
        for gone in current.iter().filter(|a| !addresses.contains(*a)) {
            self.remove_source(gone, source);
        }
        for address in addresses {
            if let Err(e) = self.add_source(address, source) {
                warn!(source, error = %e, "ignoring address");
            }
        }
    }

    /// Records a health change (and a new card when it became SERVING).
    pub fn set_health(
        self: &Arc<Self>,
        ep: &Endpoint,
        health: EndpointHealth,
        card: Option<Arc<CardInfo>>,
    ) {
        let changed = {
            let mut st = ep.state.lock();
            let changed = st.health != health || card.is_some();
            if health == EndpointHealth::Serving && st.health != EndpointHealth::Serving {
                // Back (restarted, reconnected): what failed while it was
                // down says nothing of the process serving now.
                st.ejected_until = None;
                st.consecutive_failures = 0;
            }
            st.health = health;
            if card.is_some() {
                st.card = card;
            }
            changed
        };
        if changed {
            info!(address = %ep.address, health = health.as_str_name(), "endpoint health");
            self.changed.notify_waiters();
            self.dispatch();
        }
    }

    /// Counts an attempt's outcome against the endpoint; repeated failures
    /// eject it for the cool-down.
    pub fn record_outcome(self: &Arc<Self>, ep: &Endpoint, ok: bool) {
        let mut st = ep.state.lock();
        st.outcomes.push_back(ok);
        while st.outcomes.len() > self.routing.error_window {
            st.outcomes.pop_front();
        }
        if ok {
            st.consecutive_failures = 0;
            return;
        }
        st.consecutive_failures += 1;
        if st.consecutive_failures >= self.routing.eject_after_failures {
            let cooldown = self.routing.eject_cooldown;
            st.consecutive_failures = 0;
            st.ejected_until = Some(Instant::now() + cooldown);
            warn!(address = %ep.address, cooldown_ms = cooldown.as_millis() as u64, "endpoint ejected after repeated failures");
            let agent = st
                .card
                .as_ref()
                .map(|c| c.card.name.clone())
                .unwrap_or_default();
            crate::metrics::metrics()
                .ejections
                .get_or_create(&crate::metrics::Endpoint {
                    endpoint: ep.address.clone(),
                    agent,
                })
                .inc();
            drop(st);
            // Wake replica waiters when the cool-down ends.
            let registry = Arc::clone(self);
            tokio::spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(cooldown) => registry.notify(),
                    () = registry.shutdown.cancelled() => {}
                }
            });
        }
    }

    /// A skill's description from any endpoint that offers it (a SERVING
    /// one first), or `None` if no known card names it.
    pub fn skill(&self, id: &str) -> Option<Arc<SkillInfo>> {
        let endpoints = self.endpoints.lock();
        let mut fallback = None;
        for ep in endpoints.values() {
            let st = ep.state.lock();
            if let Some(skill) = st.card.as_ref().and_then(|c| c.skill(id)) {
                if st.health == EndpointHealth::Serving {
                    return Some(Arc::clone(skill));
                }
                fallback.get_or_insert_with(|| Arc::clone(skill));
            }
        }
        fallback
    }

    /// Every skill (one per id) on a card the mesh knows, whatever its
    /// endpoint's health, sorted by id: what goals may name.
    pub fn known_skills(&self) -> Vec<Arc<SkillInfo>> {
        let endpoints = self.endpoints.lock();
        let mut found = std::collections::BTreeMap::<String, Arc<SkillInfo>>::new();
        for ep in endpoints.values() {
            let st = ep.state.lock();
            if let Some(card) = &st.card {
                for skill in card.skills.values() {
                    found
                        .entry(skill.skill.id.clone())
                        .or_insert_with(|| Arc::clone(skill));
                }
            }
        }
        found.into_values().collect()
    }

    /// Skills (one per id) that produce `kind`, offered by SERVING endpoints,
    /// with the agent names that offer them.
    pub fn producers(&self, kind: &str) -> Vec<(Arc<SkillInfo>, Vec<String>)> {
        let endpoints = self.endpoints.lock();
        let mut found: std::collections::BTreeMap<String, (Arc<SkillInfo>, Vec<String>)> =
            std::collections::BTreeMap::new();
        for ep in endpoints.values() {
            let st = ep.state.lock();
            if st.health != EndpointHealth::Serving {
                continue;
            }
            let Some(card) = &st.card else { continue };
            for info in card.skills.values() {
                if info.skill.produces.iter().any(|k| k == kind) {
                    let entry = found
                        .entry(info.skill.id.clone())
                        .or_insert_with(|| (Arc::clone(info), Vec::new()));
                    if !entry.1.contains(&card.card.name) {
                        entry.1.push(card.card.name.clone());
                    }
                }
            }
        }
        found.into_values().collect()
    }

    /// The replica routing would choose for `skill` among `endpoints`:
    /// SERVING, not ejected, least loaded (then by address); endpoints in
    /// `avoid` only if nothing else is available, `prefer` before any
    /// other; with `below_max`, only those under their card's max
    /// concurrency.
    fn choose<'a>(
        endpoints: &'a HashMap<String, Arc<Endpoint>>,
        skill: &str,
        avoid: &[String],
        prefer: Option<&str>,
        below_max: bool,
    ) -> Result<(&'a Arc<Endpoint>, Arc<CardInfo>), NoSlot> {
        let now = Instant::now();
        // Ranked by (avoided, not the preferred one, load), then address.
        type Rank = (bool, bool, u32);
        let mut best: Option<(Rank, &Arc<Endpoint>, Arc<CardInfo>)> = None;
        let mut offered = false;
        for ep in endpoints.values() {
            let st = ep.state.lock();
            let Some(card) = st.routable(skill, now) else {
                continue;
            };
            offered = true;
            let load = ep.in_flight();
            let max = card.card.max_concurrency;
            if below_max && max > 0 && load >= max {
                continue;
            }
            let avoided = avoid.iter().any(|a| *a == ep.address);
            let other = prefer.is_some_and(|p| p != ep.address);
            let rank = (avoided, other, load);
            let better = best
                .as_ref()
                .is_none_or(|(b_rank, b_ep, _)| (rank, &ep.address) < (*b_rank, &b_ep.address));
            if better {
                best = Some((rank, ep, Arc::clone(card)));
            }
        }
        match best {
            Some((_, ep, card)) => Ok((ep, card)),
            None if offered => Err(NoSlot::AllBusy),
            None => Err(NoSlot::NoReplica),
        }
    }

    /// Chooses a replica for `skill` (see [`Registry::choose`]; below its
    /// max concurrency) and reserves a slot on it.
    pub fn try_acquire(self: &Arc<Self>, skill: &str, avoid: &[String]) -> Result<Slot, NoSlot> {
        self.try_acquire_preferring(skill, avoid, None)
    }

    /// [`Registry::try_acquire`], choosing `prefer` when it is free.
    fn try_acquire_preferring(
        self: &Arc<Self>,
        skill: &str,
        avoid: &[String],
        prefer: Option<&str>,
    ) -> Result<Slot, NoSlot> {
        let endpoints = self.endpoints.lock();
        let (ep, card) = Self::choose(&endpoints, skill, avoid, prefer, true)?;
        ep.in_flight.fetch_add(1, Ordering::AcqRel);
        Ok(Slot {
            endpoint: Arc::clone(ep),
            card,
            registry: Arc::clone(self),
        })
    }

    /// A slot for `req.skill`: at once if a replica is free; else, while
    /// no replica is there at all, waiting up to `req.no_replica_wait` for
    /// one to appear; while every replica is busy, waiting in the skill's
    /// queue (fair across runs) for a slot to free. Waiting ends at
    /// `req.until` or when `req.stop` is cancelled.
    pub async fn acquire(self: &Arc<Self>, req: SlotRequest<'_>) -> Result<Slot, NoSlot> {
        // The common case: a replica is free now, no waiting needed.
        if let Ok(slot) = self.try_acquire_preferring(req.skill, req.avoid, req.prefer) {
            return Ok(slot);
        }
        let appear_by = (Instant::now() + req.no_replica_wait).min(req.until);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_acquire_preferring(req.skill, req.avoid, req.prefer) {
                Ok(slot) => return Ok(slot),
                Err(NoSlot::AllBusy) => return self.wait_in_queue(&req).await,
                // No replica at all: wait for one to appear.
                Err(none) => tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep_until(appear_by) => return Err(none),
                    () = req.stop.cancelled() => return Err(none),
                },
            }
        }
    }

    async fn wait_in_queue(self: &Arc<Self>, req: &SlotRequest<'_>) -> Result<Slot, NoSlot> {
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter {
            avoid: req.avoid.to_vec(),
            tx,
        };
        let (id, waiting) = self
            .queues
            .lock()
            .push(req.skill, req.run, waiter)
            .map_err(|Full| NoSlot::QueueFull)?;
        // Leaves the queue however the wait ends (a slot already sent to a
        // waiter that stopped is released when the channel is dropped).
        let _leave = Leave {
            registry: self,
            skill: req.skill,
            id,
        };
        (req.on_queued)(u32::try_from(waiting).unwrap_or(u32::MAX));
        let queued = Instant::now();
        // A slot may have freed between the failed try and the push.
        self.dispatch();
        let slot = tokio::select! {
            slot = rx => slot.map_err(|_| NoSlot::AllBusy),
            () = tokio::time::sleep_until(req.until) => Err(NoSlot::AllBusy),
            () = req.stop.cancelled() => Err(NoSlot::AllBusy),
        };
        crate::metrics::metrics()
            .queue_wait
            .get_or_create(&crate::metrics::Skill {
                skill: req.skill.to_string(),
            })
            .observe(queued.elapsed().as_secs_f64());
        slot
    }

    /// Hands free slots to queued steps, whose turn it is first.
    fn dispatch(self: &Arc<Self>) {
        // Slots for waiters that have gone are dropped after the lock is
        // released: dropping a slot dispatches again.
        let mut unclaimed = Vec::new();
        {
            let mut queues = self.queues.lock();
            // The common case, on every slot's release: nobody waits.
            if queues.is_empty() {
                return;
            }
            for skill in queues.skills() {
                while let Some(waiter) = queues.front(&skill) {
                    let Ok(slot) = self.try_acquire(&skill, &waiter.avoid) else {
                        break;
                    };
                    if let Some(waiter) = queues.pop(&skill)
                        && let Err(slot) = waiter.tx.send(slot)
                    {
                        unclaimed.push(slot);
                    }
                }
            }
        }
        drop(unclaimed);
    }

    /// Whether `skill`'s queue is full: a new run needing it is refused.
    pub fn queue_full(&self, skill: &str) -> bool {
        self.queues.lock().is_full(skill)
    }

    /// `(skill, waiting)` for every skill with steps waiting.
    pub fn queue_lengths(&self) -> Vec<(String, usize)> {
        self.queues.lock().lengths()
    }

    /// The endpoint that would serve `skill` now, without reserving it
    /// (a full replica included): `(agent name, address)`.
    pub fn preview(&self, skill: &str) -> Option<(String, String)> {
        let endpoints = self.endpoints.lock();
        let (ep, card) = Self::choose(&endpoints, skill, &[], None, false).ok()?;
        Some((card.card.name.clone(), ep.address.clone()))
    }

    /// Every endpoint as `ListAgents` shows it, sorted by address.
    pub fn snapshot(&self) -> Vec<AgentEndpoint> {
        let now = Instant::now();
        let wall = SystemTime::now();
        let endpoints = self.endpoints.lock();
        let mut out: Vec<AgentEndpoint> = endpoints
            .values()
            .map(|ep| {
                let sources = ep.sources.lock().iter().cloned().collect::<Vec<_>>();
                let st = ep.state.lock();
                let failures = st.outcomes.iter().filter(|ok| !**ok).count();
                let error_rate = if st.outcomes.is_empty() {
                    0.0
                } else {
                    failures as f64 / st.outcomes.len() as f64
                };
                let ejected_until = st.ejected_until.filter(|t| *t > now);
                AgentEndpoint {
                    address: ep.address.clone(),
                    source: sources.join(","),
                    health: st.health.into(),
                    card: st.card.as_ref().map(|c| c.card.clone()),
                    in_flight: ep.in_flight(),
                    error_rate,
                    ejected: ejected_until.is_some(),
                    ejected_until: ejected_until
                        .map(|t| (wall + t.saturating_duration_since(now)).into()),
                }
            })
            .collect();
        out.sort_by(|a, b| a.address.cmp(&b.address));
        out
    }

    /// Wakes everyone waiting for a replica (used after ejections expire).
    pub fn notify(self: &Arc<Self>) {
        self.changed.notify_waiters();
        self.dispatch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::fixture::{card, endpoint, registry, serving, skill};

    fn work(name: &str, max: u32) -> AgentCard {
        card(name, max, vec![skill("work", &[], &["thing"])])
    }

    #[tokio::test]
    async fn the_least_loaded_replica_is_chosen_and_ties_go_to_the_lower_address() {
        let r = registry();
        serving(&r, "127.0.0.1:2", work("w", 0));
        serving(&r, "127.0.0.1:1", work("w", 0));
        let first = r.try_acquire("work", &[]).unwrap();
        assert_eq!(first.endpoint.address, "127.0.0.1:1", "tie: lower address");
        let second = r.try_acquire("work", &[]).unwrap();
        assert_eq!(second.endpoint.address, "127.0.0.1:2", "less loaded");
        drop(first);
        let third = r.try_acquire("work", &[]).unwrap();
        assert_eq!(
            third.endpoint.address, "127.0.0.1:1",
            "a released slot counts"
        );
    }

    #[tokio::test]
    async fn an_avoided_replica_is_used_only_when_nothing_else_is_there() {
        let r = registry();
        serving(&r, "127.0.0.1:1", work("w", 0));
        serving(&r, "127.0.0.1:2", work("w", 0));
        let avoid = ["127.0.0.1:1".to_string()];
        assert_eq!(
            r.try_acquire("work", &avoid).unwrap().endpoint.address,
            "127.0.0.1:2"
        );
        r.remove_source("127.0.0.1:2", "test");
        assert_eq!(
            r.try_acquire("work", &avoid).unwrap().endpoint.address,
            "127.0.0.1:1",
            "a retry may go back to the replica it left"
        );
    }

    #[tokio::test]
    async fn a_replica_at_its_max_concurrency_gets_nothing_more() {
        let r = registry();
        serving(&r, "127.0.0.1:1", work("w", 1));
        let held = r.try_acquire("work", &[]).unwrap();
        assert!(matches!(r.try_acquire("work", &[]), Err(NoSlot::AllBusy)));
        assert_eq!(
            r.preview("work"),
            Some(("w".into(), "127.0.0.1:1".into())),
            "a plan still shows who would serve it"
        );
        drop(held);
        assert!(r.try_acquire("work", &[]).is_ok());
    }

    #[tokio::test]
    async fn only_serving_replicas_that_offer_the_skill_are_chosen() {
        let r = registry();
        let ep = serving(&r, "127.0.0.1:1", work("w", 0));
        endpoint(&r, "127.0.0.1:2"); // no card yet
        assert!(matches!(
            r.try_acquire("other", &[]),
            Err(NoSlot::NoReplica)
        ));
        r.set_health(&ep, EndpointHealth::NotServing, None);
        assert!(matches!(r.try_acquire("work", &[]), Err(NoSlot::NoReplica)));
        assert!(r.skill("work").is_some(), "its card is still known");
        assert!(
            r.producers("thing").is_empty(),
            "but it produces nothing now"
        );
    }

    #[tokio::test]
    async fn repeated_failures_eject_a_replica_for_the_cool_down() {
        let r = registry();
        let bad = serving(&r, "127.0.0.1:1", work("w", 0));
        serving(&r, "127.0.0.1:2", work("w", 0));
        let limit = r.routing.eject_after_failures;
        for _ in 1..limit {
            r.record_outcome(&bad, false);
        }
        r.record_outcome(&bad, true);
        for _ in 1..limit {
            r.record_outcome(&bad, false);
        }
        assert!(!r.snapshot()[0].ejected, "a success resets the count");
        r.record_outcome(&bad, false);
        let listed = r.snapshot();
        assert!(listed[0].ejected && listed[0].ejected_until.is_some());
        assert!(listed[0].error_rate > 0.0);
        for _ in 0..3 {
            assert_eq!(
                r.try_acquire("work", &[]).unwrap().endpoint.address,
                "127.0.0.1:2"
            );
        }
        // Still SERVING: the cool-down stands.
        r.set_health(&bad, EndpointHealth::Serving, None);
        assert!(r.snapshot()[0].ejected);
        // Down, then back (a restart): a clean record, routable at once.
        r.set_health(&bad, EndpointHealth::NotServing, None);
        r.set_health(&bad, EndpointHealth::Serving, None);
        assert!(!r.snapshot()[0].ejected);
        let slot = r.try_acquire("work", &[]).unwrap();
        assert_eq!(slot.endpoint.address, "127.0.0.1:1");
    }

    fn request<'a>(
        skill: &'a str,
        run: &'a str,
        stop: &'a CancellationToken,
        on_queued: &'a (dyn Fn(u32) + Sync),
    ) -> SlotRequest<'a> {
        SlotRequest {
            prefer: None,
            skill,
            avoid: &[],
            run,
            no_replica_wait: Duration::from_millis(100),
            until: Instant::now() + Duration::from_secs(10),
            stop,
            on_queued,
        }
    }

    #[tokio::test]
    async fn a_busy_skill_queues_its_steps_and_serves_runs_in_turn() {
        let r = registry();
        serving(&r, "127.0.0.1:1", work("w", 1));
        let stop = CancellationToken::new();
        let held = r.try_acquire("work", &[]).unwrap();
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        // Run "big" queues three steps before run "small" queues one.
        for (run, n) in [("big", 0), ("big", 1), ("big", 2), ("small", 0)] {
            let registry = Arc::clone(&r);
            let stop = stop.clone();
            let served = Arc::clone(&served);
            waiters.push(tokio::spawn(async move {
                let slot = registry
                    .acquire(request("work", run, &stop, &|_| {}))
                    .await
                    .unwrap();
                served.lock().push(format!("{run}{n}"));
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(slot);
            }));
            // Queue in this order.
            while r.queue_lengths().first().map_or(0, |(_, n)| *n) < waiters.len() {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(r.queue_lengths(), [("work".to_string(), 4)]);
        drop(held);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*served.lock(), ["big0", "small0", "big1", "big2"]);
        assert!(r.queue_lengths().is_empty());
    }

    #[tokio::test]
    async fn a_step_that_stops_waiting_leaves_the_queue_and_a_full_queue_refuses() {
        let mut cfg = crate::config::OrchestratorConfig::default();
        cfg.routing.max_queued_steps = 1;
        let r = Registry::detached(cfg.routing, cfg.discovery);
        serving(&r, "127.0.0.1:1", work("w", 1));
        let _held = r.try_acquire("work", &[]).unwrap();
        let stop = CancellationToken::new();
        let told = Arc::new(Mutex::new(Vec::new()));
        let waiting = {
            let (r, stop, told) = (Arc::clone(&r), stop.clone(), Arc::clone(&told));
            tokio::spawn(async move {
                let on_queued = move |n: u32| told.lock().push(n);
                r.acquire(request("work", "a", &stop, &on_queued))
                    .await
                    .err()
            })
        };
        while r.queue_lengths().is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(*told.lock(), [1], "the step is told where it stands");
        let other = CancellationToken::new();
        assert_eq!(
            r.acquire(request("work", "b", &other, &|_| {})).await.err(),
            Some(NoSlot::QueueFull)
        );
        assert!(r.queue_full("work"));
        stop.cancel();
        assert_eq!(waiting.await.unwrap(), Some(NoSlot::AllBusy));
        assert!(r.queue_lengths().is_empty(), "it left the queue");
    }
}
