//! The words of a goal that ask for a kind of output beyond the four
//! deliverables (data, metrics, charts, summary): read from the live agent
//! cards — a skill's planning phrases, else its tags, and the last segment
//! of each kind it produces — plus a small built-in list for the kinds
//! shipped in this repository, so that a goal for a shipped kind whose
//! agent is gone is refused as NO_AGENT_FOR_SKILL rather than misread.

use std::collections::{BTreeMap, BTreeSet};

use agentmesh_proto::v1::Skill;
use agentmesh_sales::kinds;

use crate::goal::words::{deliverables_of, is_filler, tokens};

/// Built-in words for the kinds shipped here: (phrase, kind).
const BUILTIN: &[(&str, &str)] = &[
    ("forecast", kinds::FORECAST),
    ("forecasting", kinds::FORECAST),
    ("projection", kinds::FORECAST),
    ("predict", kinds::FORECAST),
    ("prediction", kinds::FORECAST),
    ("outlook", kinds::FORECAST),
    ("quality", kinds::QUALITY),
    ("data quality", kinds::QUALITY),
    ("quality check", kinds::QUALITY),
    ("outliers", kinds::QUALITY),
    ("validate", kinds::QUALITY),
    ("validation", kinds::QUALITY),
];

/// Built-in kinds whose producers answer about future periods.
const BUILTIN_FUTURE: &[&str] = &[kinds::FORECAST];

/// Kinds a goal names through the deliverables, or that no goal asks for
/// directly (the data's description).
const NOT_BY_WORD: &[&str] = &[
    kinds::DATASET,
    kinds::METRICS,
    kinds::CHART,
    kinds::SUMMARY,
    kinds::SCHEMA,
];

/// Goal words → kinds.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    /// Phrase tokens → kind; matched longest first.
    phrases: BTreeMap<Vec<String>, String>,
    /// Kinds whose producers answer about future periods.
    future: BTreeSet<String>,
}

impl Vocabulary {
    /// The built-in words only.
    pub fn builtin() -> Self {
        let mut v = Self::default();
        for (phrase, kind) in BUILTIN {
            v.add(phrase, kind);
        }
        v.future = BUILTIN_FUTURE.iter().map(|k| (*k).to_string()).collect();
        v
    }

    /// The built-in words, then those of `skills` (every card the mesh
    /// knows, serving or not; a card's words never replace a built-in one).
    pub fn from_skills<'a>(skills: impl IntoIterator<Item = &'a Skill>) -> Self {
        let mut v = Self::builtin();
        for skill in skills {
            let produced: Vec<&String> = skill
                .produces
                .iter()
                .filter(|k| !NOT_BY_WORD.contains(&k.as_str()))
                .collect();
            let Some(kind) = produced.first() else {
                continue;
            };
            let planning = skill.planning.as_ref();
            let words = match planning.filter(|p| !p.phrases.is_empty()) {
                Some(p) => &p.phrases,
                None => &skill.tags,
            };
            for word in words {
                v.add(word, kind);
            }
            for k in &produced {
                v.add(k.rsplit('.').next().unwrap_or(k), k);
            }
            if planning.is_some_and(|p| p.future_periods) {
                for k in produced {
                    v.future.insert(k.clone());
                }
            }
        }
        v
    }

    /// Adds `phrase` for `kind`, unless it is taken, or is one word the
    /// goal reader has another use for (filler, a deliverable).
    fn add(&mut self, phrase: &str, kind: &str) {
        let t = tokens(phrase);
        if t.is_empty()
            || (t.len() == 1 && (is_filler(&t[0]) || !deliverables_of(&t[0]).is_empty()))
        {
            return;
        }
        self.phrases.entry(t).or_insert_with(|| kind.to_string());
    }

    /// The kind asked for by the phrase at token `i` of `t`, and how many
    /// tokens it spans (a plural `s` is allowed on each word).
    pub fn match_at(&self, t: &[String], i: usize) -> Option<(&str, usize)> {
        let same = |a: &str, b: &str| a == b || b.strip_suffix('s') == Some(a);
        self.phrases
            .iter()
            .filter(|(p, _)| {
                i + p.len() <= t.len() && p.iter().zip(&t[i..]).all(|(a, b)| same(a, b))
            })
            .max_by_key(|(p, _)| p.len())
            .map(|(p, kind)| (kind.as_str(), p.len()))
    }

    /// Whether `kind`'s producers answer about future periods.
    pub fn is_future(&self, kind: &str) -> bool {
        self.future.contains(kind)
    }

    /// The one-word phrases, for spelling corrections.
    pub fn single_words(&self) -> Vec<String> {
        self.phrases
            .keys()
            .filter_map(|p| match p.as_slice() {
                [one] => Some(one.clone()),
                _ => None,
            })
            .collect()
    }

    /// One word per kind, for messages ("forecast, quality").
    pub fn examples(&self) -> Vec<String> {
        let mut seen = BTreeMap::<&str, String>::new();
        for (p, kind) in &self.phrases {
            seen.entry(kind.as_str()).or_insert_with(|| p.join(" "));
        }
        seen.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentmesh_proto::v1::SkillPlanning;

    fn words(goal: &str) -> Vec<String> {
        tokens(goal)
    }

    #[test]
    fn built_in_words_name_the_shipped_kinds() {
        let v = Vocabulary::builtin();
        let t = words("check the data quality of Q2");
        assert_eq!(v.match_at(&t, 2), Some((kinds::QUALITY, 2)));
        let t = words("forecasts for Europe");
        assert_eq!(v.match_at(&t, 0), Some((kinds::FORECAST, 1)));
        assert!(v.is_future(kinds::FORECAST));
        assert!(!v.is_future(kinds::QUALITY));
    }

    #[test]
    fn a_card_brings_its_tags_or_its_phrases_and_its_kind_name() {
        let tagged = Skill {
            id: "churn.score".into(),
            tags: vec!["churn".into(), "sales".into(), "report".into()],
            produces: vec!["sales.attrition".into()],
            ..Skill::default()
        };
        let phrased = Skill {
            id: "price.plan".into(),
            tags: vec!["pricing".into()],
            produces: vec!["sales.price_plan".into()],
            planning: Some(SkillPlanning {
                phrases: vec!["price plan".into()],
                future_periods: true,
                ..SkillPlanning::default()
            }),
            ..Skill::default()
        };
        let v = Vocabulary::from_skills([&tagged, &phrased]);
        let at = |goal: &str| v.match_at(&words(goal), 0).map(|(k, n)| (k.to_string(), n));
        assert_eq!(at("churn risk"), Some(("sales.attrition".into(), 1)));
        assert_eq!(at("attrition"), Some(("sales.attrition".into(), 1)));
        assert_eq!(at("price plans"), Some(("sales.price_plan".into(), 2)));
        // Phrases replace tags; filler and deliverable words are never taken.
        assert_eq!(at("pricing"), None);
        assert_eq!(at("sales"), None);
        assert_eq!(at("report"), None);
        assert!(v.is_future("sales.price_plan"));
    }
}
