//! The words of goals: how a goal splits into tokens, which words name a
//! deliverable, and which are ordinary phrasing. Shared by the intent
//! reader and the vocabulary of the agents' words.

use agentmesh_proto::v1::Deliverable;

/// Tokens: lower-case words, Unicode-aware; `q2`, `h1`, `2025`, `2025-q2`
/// and dates stay whole.
pub fn tokens(text: &str) -> Vec<String> {
    raw_tokens(text).iter().map(|t| t.to_lowercase()).collect()
}

/// Tokens with their case kept, aligned with [`tokens`].
pub fn raw_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        if ch.is_alphanumeric() || ch == '-' || ch == '&' || ch == '\'' {
            cur.push(ch);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out.into_iter()
        .map(|t| {
            let t = t
                .strip_suffix("'s")
                .or_else(|| t.strip_suffix("'S"))
                .unwrap_or(&t);
            t.trim_matches(|c| c == '-' || c == '\'').to_string()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// Words that mark what to deliver.
pub fn deliverables_of(word: &str) -> &'static [Deliverable] {
    DELIVERABLE_WORDS
        .iter()
        .find(|(w, _)| *w == word)
        .map_or(&[], |(_, ds)| *ds)
}

/// How a deliverable is named in rationales and readings.
pub fn deliverable_name(d: Deliverable) -> &'static str {
    match d {
        Deliverable::Dataset => "the data",
        Deliverable::Metrics => "metrics",
        Deliverable::Charts => "charts",
        Deliverable::Summary => "an executive summary",
        Deliverable::Unspecified => "nothing",
    }
}

/// Words that are part of ordinary phrasing and never a filter.
pub fn is_filler(word: &str) -> bool {
    matches!(
        word,
        "the"
            | "a"
            | "an"
            | "and"
            | "or"
            | "of"
            | "for"
            | "in"
            | "on"
            | "with"
            | "to"
            | "from"
            | "by"
            | "please"
            | "me"
            | "my"
            | "our"
            | "us"
            | "we"
            | "i"
            | "generate"
            | "create"
            | "make"
            | "build"
            | "give"
            | "show"
            | "produce"
            | "prepare"
            | "write"
            | "draft"
            | "get"
            | "just"
            | "only"
            | "sales"
            | "sale"
            | "revenue"
            | "quarter"
            | "quarterly"
            | "half"
            | "year"
            | "month"
            | "monthly"
            | "executive"
            | "region"
            | "regions"
            | "channel"
            | "channels"
            | "country"
            | "countries"
            | "product"
            | "products"
            | "line"
            | "lines"
            | "week"
            | "weeks"
            | "weekly"
            | "day"
            | "days"
            | "daily"
            | "annual"
            | "yearly"
            | "as"
            | "at"
            | "is"
            | "are"
            | "was"
            | "were"
            | "be"
            | "been"
            | "do"
            | "did"
            | "does"
            | "how"
            | "what"
            | "which"
            | "when"
            | "where"
            | "why"
            | "any"
            | "all"
            | "each"
            | "every"
            | "some"
            | "this"
            | "that"
            | "these"
            | "those"
            | "it"
            | "its"
            | "their"
            | "your"
            | "you"
            | "can"
            | "could"
            | "would"
            | "should"
            | "will"
            | "need"
            | "needs"
            | "want"
            | "like"
            | "about"
            | "into"
            | "over"
            | "than"
            | "up"
            | "so"
            | "also"
            | "then"
            | "via"
            | "per"
            | "through"
            | "across"
            | "within"
            | "including"
            | "plus"
            | "quick"
            | "full"
            | "complete"
            | "detailed"
            | "detail"
            | "short"
            | "simple"
            | "new"
            | "latest"
            | "recent"
            | "current"
            | "total"
            | "overall"
            | "business"
            | "board"
            | "team"
            | "boss"
            | "manager"
            | "management"
            | "leadership"
            | "executives"
            | "ceo"
            | "cfo"
            | "investors"
            | "stakeholders"
            | "meeting"
            | "asap"
            | "today"
            | "now"
            | "check"
            | "see"
            | "look"
            | "tell"
            | "know"
            | "send"
            | "let"
            | "sold"
            | "sell"
            | "selling"
            | "ago"
            | "prior"
            | "previous"
            | "same"
            | "period"
            | "yoy"
            | "qoq"
            | "year-over-year"
            | "quarter-over-quarter"
            | "month-over-month"
            | "last"
            | "next"
    )
}

const REPORT: &[Deliverable] = &[
    Deliverable::Dataset,
    Deliverable::Metrics,
    Deliverable::Charts,
    Deliverable::Summary,
];
const CHARTS: &[Deliverable] = &[Deliverable::Charts];
const SUMMARY: &[Deliverable] = &[Deliverable::Summary];
const METRICS: &[Deliverable] = &[Deliverable::Metrics];
const DATA: &[Deliverable] = &[Deliverable::Dataset];

/// Every word that names deliverables, and what it names.
pub const DELIVERABLE_WORDS: &[(&str, &[Deliverable])] = &[
    ("report", REPORT),
    ("reports", REPORT),
    ("overview", REPORT),
    ("review", REPORT),
    ("analysis", REPORT),
    ("performance", REPORT),
    ("chart", CHARTS),
    ("charts", CHARTS),
    ("visualization", CHARTS),
    ("visualizations", CHARTS),
    ("visualisation", CHARTS),
    ("visualisations", CHARTS),
    ("graph", CHARTS),
    ("graphs", CHARTS),
    ("plot", CHARTS),
    ("plots", CHARTS),
    ("visual", CHARTS),
    ("visuals", CHARTS),
    ("dashboard", CHARTS),
    ("summary", SUMMARY),
    ("summaries", SUMMARY),
    ("summarize", SUMMARY),
    ("summarise", SUMMARY),
    ("brief", SUMMARY),
    ("briefing", SUMMARY),
    ("tldr", SUMMARY),
    ("memo", SUMMARY),
    ("metrics", METRICS),
    ("kpi", METRICS),
    ("kpis", METRICS),
    ("numbers", METRICS),
    ("figures", METRICS),
    ("breakdown", METRICS),
    ("breakdowns", METRICS),
    ("growth", METRICS),
    ("analyze", METRICS),
    ("analyse", METRICS),
    ("data", DATA),
    ("dataset", DATA),
    ("extract", DATA),
    ("export", DATA),
    ("csv", DATA),
    ("table", DATA),
    ("rows", DATA),
    ("raw", DATA),
    ("spreadsheet", DATA),
    ("excel", DATA),
    ("xlsx", DATA),
];
