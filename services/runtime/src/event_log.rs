//! An append-only, in-memory event log with followers.
//!
//! Writers append under a short synchronous lock (never held across an
//! await); followers read from any position and then wait for more. Used for
//! a task's event stream (so that an idempotent repeat can follow or replay
//! it) and for a run's event list in the orchestrator.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::Stream;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;

/// An append-only list of events; event `n` (from 1) has index `n - 1`.
#[derive(Debug)]
pub struct EventLog<T> {
    inner: Mutex<Inner<T>>,
    /// Woken on every append and on close. Waiters enable their
    /// `Notified` before reading, so no append between the read and the
    /// wait is missed.
    changed: Notify,
}

#[derive(Debug)]
struct Inner<T> {
    events: Vec<T>,
    closed: bool,
    /// In a gated log, followers see events up to this sequence number
    /// only (see [`EventLog::gated`]); `None`: every appended event.
    published: Option<u64>,
}

impl<T> Inner<T> {
    /// How many events followers may see.
    fn visible(&self) -> usize {
        let len = self.events.len();
        self.published
            .map_or(len, |p| len.min(usize::try_from(p).unwrap_or(usize::MAX)))
    }
}

/// Returned by [`EventLog::append_with`] when the log is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event log is closed")]
pub struct Closed;

impl<T: Clone + Send + Sync + 'static> EventLog<T> {
    /// An empty, open log.
    pub fn new() -> Arc<Self> {
        Self::with(Vec::new(), false, None)
    }

    /// An empty, open log whose followers see an event only once it is
    /// published ([`EventLog::publish`]): for events that must be stored
    /// durably before anyone is told about them.
    pub fn gated() -> Arc<Self> {
        Self::with(Vec::new(), false, Some(0))
    }

    /// A log holding `events` (numbered from 1), closed if `closed`.
    pub fn restored(events: Vec<T>, closed: bool) -> Arc<Self> {
        Self::with(events, closed, None)
    }

    /// An open, gated log holding `events` (numbered from 1, all stored
    /// and published already): one that goes on being written durably.
    pub fn resumed(events: Vec<T>) -> Arc<Self> {
        let published = events.len() as u64;
        Self::with(events, false, Some(published))
    }

    fn with(events: Vec<T>, closed: bool, published: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                events,
                closed,
                published,
            }),
            changed: Notify::new(),
        })
    }

    /// Lets followers of a gated log see events up to `seq`.
    pub fn publish(&self, seq: u64) {
        {
            let mut inner = self.lock();
            match &mut inner.published {
                Some(p) if *p < seq => *p = seq,
                _ => return,
            }
        }
        self.changed.notify_waiters();
    }

    /// Lifts the gate: followers see every event from now on.
    pub fn ungate(&self) {
        self.lock().published = None;
        self.changed.notify_waiters();
    }

    /// Number of events followers may see (all of them unless gated).
    pub fn visible_len(&self) -> u64 {
        self.lock().visible() as u64
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // No code panics while holding the lock; recover the data if one did.
        self.inner.lock()
    }

    /// Appends the event built from its 1-based sequence number; `close`
    /// ends the log after this event. Fails if the log was already closed.
    pub fn append_with(&self, close: bool, build: impl FnOnce(u64) -> T) -> Result<u64, Closed> {
        let seq = {
            let mut inner = self.lock();
            if inner.closed {
                return Err(Closed);
            }
            let seq = inner.events.len() as u64 + 1;
            inner.events.push(build(seq));
            inner.closed = close;
            seq
        };
        self.changed.notify_waiters();
        Ok(seq)
    }

    /// Closes the log without an event: followers end after what they have.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_waiters();
    }

    /// Number of events.
    pub fn len(&self) -> u64 {
        self.lock().events.len() as u64
    }

    /// True when there are no events yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the log is closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Folds over the events in order, without copying them.
    pub fn fold<B>(&self, init: B, f: impl FnMut(B, &T) -> B) -> B {
        self.lock().events.iter().fold(init, f)
    }

    /// The last event, if any.
    pub fn last(&self) -> Option<T> {
        self.lock().events.last().cloned()
    }

    /// The event with sequence number `seq` (from 1).
    pub fn get(&self, seq: u64) -> Option<T> {
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.lock().events.get(index).cloned()
    }

    /// A copy of the events with sequence number greater than `after`.
    pub fn snapshot_after(&self, after: u64) -> Vec<T> {
        let inner = self.lock();
        let from = usize::try_from(after).unwrap_or(usize::MAX);
        inner
            .events
            .get(from..)
            .map(<[T]>::to_vec)
            .unwrap_or_default()
    }

    /// Resolves once the log is closed and followers may see every event.
    pub async fn closed(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let settled = {
                let inner = self.lock();
                inner.closed && inner.visible() == inner.events.len()
            };
            if settled {
                return;
            }
            changed.await;
        }
    }

    /// Events with sequence number greater than `after`, then live events,
    /// ending when the log is closed and everything was yielded.
    pub fn follow(self: &Arc<Self>, after: u64) -> impl Stream<Item = T> + Send + 'static {
        let state = Follower {
            log: Arc::clone(self),
            cursor: after,
            buffer: VecDeque::new(),
        };
        futures_util::stream::unfold(state, |mut st| async move {
            let item = st.next().await?;
            Some((item, st))
        })
    }
}

struct Follower<T> {
    log: Arc<EventLog<T>>,
    cursor: u64,
    buffer: VecDeque<T>,
}

impl<T: Clone + Send + Sync + 'static> Follower<T> {
    async fn next(&mut self) -> Option<T> {
        loop {
            let log = &*self.log;
            if let Some(item) = self.buffer.pop_front() {
                return Some(item);
            }
            // Registered before reading, so that an append after the read
            // wakes the wait below.
            let changed = log.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let closed = {
                let inner = log.lock();
                let from = usize::try_from(self.cursor).unwrap_or(usize::MAX);
                let visible = inner.visible();
                if let Some(new) = inner.events.get(from..visible).filter(|s| !s.is_empty()) {
                    self.buffer.extend(new.iter().cloned());
                    self.cursor = visible as u64;
                    continue;
                }
                inner.closed && from >= inner.events.len()
            };
            if closed {
                return None;
            }
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn follower_sees_history_then_live_events_then_end() {
        let log = EventLog::<u64>::new();
        log.append_with(false, |s| s * 10).unwrap();
        let follower = log.follow(0);
        let writer = {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                log.append_with(false, |s| s * 10).unwrap();
                log.append_with(true, |s| s * 10).unwrap();
            })
        };
        let all: Vec<u64> = follower.collect().await;
        writer.await.unwrap();
        assert_eq!(all, vec![10, 20, 30]);
        assert_eq!(log.append_with(false, |s| s), Err(Closed));
    }

    #[tokio::test]
    async fn follow_after_skips_seen_events() {
        let log = EventLog::<u64>::new();
        for _ in 0..5 {
            log.append_with(false, |s| s).unwrap();
        }
        log.close();
        let rest: Vec<u64> = log.follow(3).collect().await;
        assert_eq!(rest, vec![4, 5]);
        assert_eq!(log.snapshot_after(4), vec![5]);
    }

    #[tokio::test]
    async fn a_gated_log_shows_followers_only_published_events() {
        let log = EventLog::<u64>::gated();
        log.append_with(false, |s| s).unwrap();
        log.append_with(false, |s| s).unwrap();
        log.append_with(true, |s| s).unwrap();
        assert_eq!(log.visible_len(), 0);
        let mut follower = Box::pin(log.follow(0));
        let nothing_yet =
            tokio::time::timeout(std::time::Duration::from_millis(20), follower.next()).await;
        assert!(nothing_yet.is_err(), "no event is published yet");
        log.publish(2);
        assert_eq!(follower.next().await, Some(1));
        assert_eq!(follower.next().await, Some(2));
        log.publish(1); // never moves back
        assert_eq!(log.visible_len(), 2);
        let reader = tokio::spawn(async move { follower.collect::<Vec<u64>>().await });
        log.publish(3);
        assert_eq!(
            reader.await.unwrap(),
            vec![3],
            "closed and fully seen: ends"
        );
        let ungated = EventLog::<u64>::gated();
        ungated.append_with(true, |s| s).unwrap();
        ungated.ungate();
        assert_eq!(ungated.follow(0).collect::<Vec<u64>>().await, vec![1]);
        let restored = EventLog::restored(vec![1_u64, 2], true);
        assert_eq!(restored.follow(1).collect::<Vec<u64>>().await, vec![2]);
    }
}
