//! The wait for a busy skill: one queue per skill, fair across runs.
//!
//! Steps waiting for the same skill are served round robin by run (a run
//! with many waiting steps gets one slot, then every other waiting run gets
//! one, and so on) and first in, first out within a run, so one big run
//! cannot starve the others. Each queue is bounded.

use std::collections::{HashMap, VecDeque};

/// One skill's queue: runs in turn, each with its waiting steps in order.
struct FairQueue<T> {
    runs: VecDeque<(String, VecDeque<(u64, T)>)>,
    len: usize,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        Self {
            runs: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> FairQueue<T> {
    fn push(&mut self, run: &str, id: u64, item: T) {
        self.len += 1;
        if let Some((_, items)) = self.runs.iter_mut().find(|(r, _)| r == run) {
            items.push_back((id, item));
        } else {
            self.runs
                .push_back((run.to_string(), VecDeque::from([(id, item)])));
        }
    }

    fn front(&self) -> Option<&T> {
        self.runs
            .front()
            .and_then(|(_, items)| items.front())
            .map(|(_, t)| t)
    }

    fn pop(&mut self) -> Option<T> {
        let (run, mut items) = self.runs.pop_front()?;
        let (_, item) = items.pop_front()?;
        self.len -= 1;
        if !items.is_empty() {
            // This run had its turn: it goes behind every other waiting run.
            self.runs.push_back((run, items));
        }
        Some(item)
    }

    fn remove(&mut self, id: u64) -> Option<T> {
        let r = self
            .runs
            .iter()
            .position(|(_, items)| items.iter().any(|(i, _)| *i == id))?;
        let items = &mut self.runs[r].1;
        let at = items.iter().position(|(i, _)| *i == id)?;
        let (_, item) = items.remove(at)?;
        if items.is_empty() {
            self.runs.remove(r);
        }
        self.len -= 1;
        Some(item)
    }
}

/// The queues of every busy skill.
pub struct SkillQueues<T> {
    by_skill: HashMap<String, FairQueue<T>>,
    max_per_skill: usize,
    next_id: u64,
}

/// A skill's queue is at its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl<T> SkillQueues<T> {
    /// Empty queues of at most `max_per_skill` waiting steps each.
    pub fn new(max_per_skill: usize) -> Self {
        Self {
            by_skill: HashMap::new(),
            max_per_skill,
            next_id: 0,
        }
    }

    /// Queues `item` for `skill` on behalf of `run`; returns its id (for
    /// [`SkillQueues::remove`]) and how many wait for the skill now.
    pub fn push(&mut self, skill: &str, run: &str, item: T) -> Result<(u64, usize), Full> {
        let queue = self.by_skill.entry(skill.to_string()).or_default();
        if queue.len >= self.max_per_skill {
            return Err(Full);
        }
        self.next_id += 1;
        queue.push(run, self.next_id, item);
        Ok((self.next_id, queue.len))
    }

    /// The item whose turn it is for `skill`.
    pub fn front(&self, skill: &str) -> Option<&T> {
        self.by_skill.get(skill).and_then(FairQueue::front)
    }

    /// Takes the item whose turn it is for `skill`.
    pub fn pop(&mut self, skill: &str) -> Option<T> {
        let queue = self.by_skill.get_mut(skill)?;
        let item = queue.pop();
        if queue.len == 0 {
            self.by_skill.remove(skill);
        }
        item
    }

    /// Takes item `id` out of `skill`'s queue (it stopped waiting).
    pub fn remove(&mut self, skill: &str, id: u64) -> Option<T> {
        let queue = self.by_skill.get_mut(skill)?;
        let item = queue.remove(id);
        if queue.len == 0 {
            self.by_skill.remove(skill);
        }
        item
    }

    /// Whether `skill`'s queue is at its bound.
    pub fn is_full(&self, skill: &str) -> bool {
        self.by_skill
            .get(skill)
            .is_some_and(|q| q.len >= self.max_per_skill)
    }

    /// Whether no step waits for any skill.
    pub fn is_empty(&self) -> bool {
        self.by_skill.is_empty()
    }

    /// Skills with waiting steps.
    pub fn skills(&self) -> Vec<String> {
        self.by_skill.keys().cloned().collect()
    }

    /// `(skill, waiting)` for every skill with waiting steps, by skill.
    pub fn lengths(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = self
            .by_skill
            .iter()
            .map(|(skill, q)| (skill.clone(), q.len))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_take_turns_and_each_run_keeps_its_order() {
        let mut q = SkillQueues::new(100);
        for i in 0..4 {
            q.push("s", "big", format!("big{i}")).unwrap();
        }
        q.push("s", "small", "small0".to_string()).unwrap();
        q.push("s", "other", "other0".to_string()).unwrap();
        q.push("s", "small", "small1".to_string()).unwrap();
        let order: Vec<String> = std::iter::from_fn(|| q.pop("s")).collect();
        assert_eq!(
            order,
            ["big0", "small0", "other0", "big1", "small1", "big2", "big3"]
        );
        assert!(q.lengths().is_empty(), "an empty queue is dropped");
    }

    #[test]
    fn queues_are_per_skill_and_bounded() {
        let mut q = SkillQueues::new(2);
        assert_eq!(q.push("a", "r", 1).unwrap().1, 1);
        assert_eq!(q.push("a", "r", 2).unwrap().1, 2);
        assert!(q.is_full("a"));
        assert_eq!(q.push("a", "r2", 3), Err(Full));
        assert!(
            q.push("b", "r", 4).is_ok(),
            "another skill has its own bound"
        );
        assert_eq!(q.lengths(), [("a".to_string(), 2), ("b".to_string(), 1)]);
        assert_eq!(q.front("a"), Some(&1));
    }

    #[test]
    fn a_step_that_stops_waiting_leaves_the_queue() {
        let mut q = SkillQueues::new(10);
        let (a, _) = q.push("s", "r1", "a").unwrap();
        let (b, _) = q.push("s", "r2", "b").unwrap();
        q.push("s", "r1", "c").unwrap();
        assert_eq!(q.remove("s", a), Some("a"));
        assert_eq!(q.remove("s", a), None, "once");
        assert_eq!(q.pop("s"), Some("c"), "r1 keeps its place in the rotation");
        assert_eq!(q.remove("s", b), Some("b"));
        assert!(q.skills().is_empty() && q.is_empty());
    }
}
