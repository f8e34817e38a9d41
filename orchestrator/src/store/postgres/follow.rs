//! Runs driven by other replicas, followed here: a run read from the
//! database unfinished is extended with each batch its driver commits
//! (`NOTIFY agentmesh_events` names the run), and read again every
//! `store.poll_ms` in case a notification was missed (the listener
//! reconnects after a failure). The same connection hears cancel requests
//! made on other replicas (`NOTIFY agentmesh_cancel`) for runs driven here.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use agentmesh_proto::v1::{RunEvent, run_event};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tracing::{debug, info, warn};

use super::{Shared, events_after};
use crate::events;
use crate::store::RunRecord;

/// Wait before connecting the listener again.
const RECONNECT: Duration = Duration::from_secs(1);

/// What the listener heard.
enum Heard {
    /// New events of this run were committed.
    Events(String),
    /// Someone asked to cancel this run.
    Cancel(String),
}

/// A run followed here, and its row.
type Followed = (Arc<RunRecord>, i64);

/// The run `id` if it is followed here already.
pub(super) fn followed(shared: &Shared, id: &str) -> Option<Arc<RunRecord>> {
    followed_at(shared, id).map(|(run, _)| run)
}

fn followed_at(shared: &Shared, id: &str) -> Option<Followed> {
    let mirrors = shared.mirrors.lock();
    let (weak, row) = mirrors.get(id)?;
    Some((weak.upgrade()?, *row))
}

/// Follows `run` (read unfinished at database row `row`) from now on, or
/// returns the copy already followed.
pub(super) fn mirror(shared: &Shared, run: Arc<RunRecord>, row: i64) -> Arc<RunRecord> {
    let mut mirrors = shared.mirrors.lock();
    if let Some(existing) = mirrors.get(&run.id).and_then(|(w, _)| w.upgrade()) {
        return existing;
    }
    mirrors.retain(|_, (w, _)| w.strong_count() > 0);
    mirrors.insert(run.id.clone(), (Arc::downgrade(&run), row));
    run
}

/// Listens and polls until the store shuts down.
pub(super) async fn run(shared: Arc<Shared>) {
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    let listener = tokio::spawn(listen(Arc::clone(&shared), heard_tx));
    let mut poll = tokio::time::interval(shared.opts.poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => break,
            Some(h) = heard.recv() => match h {
                Heard::Events(id) => {
                    if let Some(run) = followed_at(&shared, &id) {
                        refresh(&shared, &run).await;
                    }
                }
                Heard::Cancel(id) => cancel_here(&shared, &id).await,
            },
            _ = poll.tick() => {
                let runs: Vec<Followed> = {
                    let mut mirrors = shared.mirrors.lock();
                    mirrors.retain(|_, (w, _)| w.strong_count() > 0);
                    mirrors
                        .values()
                        .filter_map(|(w, row)| Some((w.upgrade()?, *row)))
                        .collect()
                };
                for run in runs {
                    refresh(&shared, &run).await;
                }
                poll_cancels(&shared).await;
            }
        }
    }
    listener.abort();
}

/// Reads the events of `run` committed since it was last read and appends
/// them; a finished run is no longer followed.
async fn refresh(shared: &Shared, (run, row): &Followed) {
    if run.log.is_closed() {
        shared.mirrors.lock().remove(&run.id);
        return;
    }
    let read = async {
        let client = shared.pool.get().await.map_err(|e| e.to_string())?;
        events_after(&client, *row, &run.id, run.log.len())
            .await
            .map_err(|e| e.to_string())
    };
    match read.await {
        Ok(events) => extend(run, events),
        Err(e) => {
            debug!(run_id = %run.id, error = %e, "run store: reading a followed run failed; read again at the next poll")
        }
    }
    if run.log.is_closed() {
        shared.mirrors.lock().remove(&run.id);
    }
}

/// Appends stored `events` (in order, numbered on from the log's end) to a
/// followed run's log; the final event closes it.
fn extend(run: &RunRecord, events: Vec<RunEvent>) {
    for ev in events {
        let close = matches!(ev.event, Some(run_event::Event::Finished(_)));
        let expected = run.log.len() + 1;
        if ev.seq != expected {
            return;
        }
        let ev = Arc::new(ev);
        run.waits.observe(&ev);
        if run.log.append_with(close, |_| ev).is_err() {
            return;
        }
    }
}

/// Cancels run `id` if it is driven here and someone asked for it.
async fn cancel_here(shared: &Shared, id: &str) {
    let Some(run) = shared.memory.get(id).filter(|r| !r.log.is_closed()) else {
        return;
    };
    let reason = async {
        let client = shared.pool.get().await.map_err(|e| e.to_string())?;
        client
            .query_opt("SELECT cancel FROM agentmesh_runs WHERE id = $1", &[&id])
            .await
            .map_err(|e| e.to_string())?
            .map(|r| r.try_get::<_, Option<String>>(0))
            .transpose()
            .map_err(|e| e.to_string())
    };
    match reason.await {
        Ok(Some(Some(reason))) => {
            info!(run_id = id, "run canceled from another replica");
            run.stop(events::canceled_by_client(&reason));
        }
        Ok(_) => {}
        Err(e) => warn!(run_id = id, error = %e, "run store: reading a cancel request failed"),
    }
}

/// Cancel requests for runs driven here that a notification may not have
/// brought.
async fn poll_cancels(shared: &Shared) {
    let epoch = shared.epoch.load(std::sync::atomic::Ordering::Acquire);
    if epoch == 0 {
        return;
    }
    let asked = async {
        let client = shared.pool.get().await.map_err(|e| e.to_string())?;
        client
            .query(
                "SELECT id FROM agentmesh_runs
                 WHERE epoch = $1 AND finished IS NULL AND cancel IS NOT NULL",
                &[&epoch],
            )
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    };
    match asked.await {
        Ok(ids) => {
            for id in ids {
                let stopped = shared.memory.get(&id).is_none_or(|r| r.stop.is_cancelled());
                if !stopped {
                    cancel_here(shared, &id).await;
                }
            }
        }
        Err(e) => debug!(error = %e, "run store: polling cancel requests failed"),
    }
}

/// Holds a connection that listens on both channels, reconnecting after a
/// failure, and passes what it hears on.
async fn listen(shared: Arc<Shared>, heard: mpsc::UnboundedSender<Heard>) {
    loop {
        match shared.db.connect().await {
            Ok((client, mut driver)) => {
                let listening =
                    client.batch_execute("LISTEN agentmesh_events; LISTEN agentmesh_cancel");
                let mut listening = std::pin::pin!(listening);
                let mut subscribed = false;
                loop {
                    // Drive the connection (it carries the LISTEN and then
                    // the notifications).
                    let message = tokio::select! {
                        done = &mut listening, if !subscribed => {
                            subscribed = true;
                            if let Err(e) = done {
                                warn!(error = %e, "run store: LISTEN failed");
                                break;
                            }
                            continue;
                        }
                        m = poll_fn(|cx| driver.poll_message(cx)) => m,
                    };
                    match message {
                        Some(Ok(AsyncMessage::Notification(n))) => {
                            let what = match n.channel() {
                                "agentmesh_cancel" => Heard::Cancel(n.payload().to_string()),
                                _ => Heard::Events(n.payload().to_string()),
                            };
                            if heard.send(what).is_err() {
                                return;
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            warn!(error = %e, "run store: the listening connection failed; reconnecting");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Err(e) => warn!(error = %e, "run store: could not connect to listen; trying again"),
        }
        tokio::time::sleep(RECONNECT).await;
    }
}
