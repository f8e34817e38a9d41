//! Goal text → intent: what to deliver, for which period, with which
//! filters and comparisons. Deterministic; anything it cannot read is an
//! error that says what was not understood and what would work, never a
//! guess presented as certain. Structured `RunParameters` override the text.

use std::collections::BTreeMap;

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::v1::{Deliverable, Filter, Intent, Period as PbPeriod, RunParameters};
pub use agentmesh_sales::{Catalog, Period};
use time::{Date, Month};

use crate::goal::vocabulary::Vocabulary;

/// A parsed goal.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalIntent {
    /// What to deliver, in report order.
    pub deliverables: Vec<Deliverable>,
    /// The period.
    pub period: Period,
    /// Filter field → values, as the catalog spells them.
    pub filters: BTreeMap<String, Vec<String>>,
    /// Compare with the previous period.
    pub compare_previous: bool,
    /// Compare with the same period a year earlier.
    pub compare_year_ago: bool,
    /// Words of the goal, lower-case, for skills that take named options
    /// (e.g. chart ids).
    pub words: Vec<String>,
    /// What the parser decided on its own (defaults, resolutions).
    pub notes: Vec<String>,
    /// Kinds asked for beyond the deliverables, from the agents' words.
    pub kinds: Vec<String>,
    /// Months after the data ends that the goal asks about.
    pub horizon_months: Option<u32>,
    /// The whole history the data has complete, for skills that read it
    /// all (a forecast).
    pub history: Period,
}

impl GoalIntent {
    /// The intent as the protocol carries it.
    pub fn to_proto(&self) -> Intent {
        Intent {
            deliverables: self.deliverables.iter().map(|d| *d as i32).collect(),
            period: Some(PbPeriod {
                start: self.period.start.to_string(),
                end: self.period.end.to_string(),
                label: self.period.label(),
            }),
            filters: self
                .filters
                .iter()
                .map(|(field, values)| Filter {
                    field: field.clone(),
                    values: values.clone(),
                })
                .collect(),
            compare_previous: self.compare_previous,
            compare_year_ago: self.compare_year_ago,
            notes: self.notes.clone(),
            kinds: self.kinds.clone(),
            horizon_months: self.horizon_months.unwrap_or(0),
        }
    }
}

const EXAMPLE: &str = "try e.g. \"Generate a Q2 sales performance report with visualizations and an executive summary\", \"revenue by region chart for H1 2025\" or \"executive summary for Europe, March 2025\"";

fn not_understood(message: impl Into<String>) -> MeshError {
    MeshError::new(
        ErrorReason::GoalNotUnderstood,
        format!("{}; {EXAMPLE}", message.into()),
    )
    .with_meta("field", "spec.goal")
}

const MONTHS: [(&str, &str, u8); 12] = [
    ("january", "jan", 1),
    ("february", "feb", 2),
    ("march", "mar", 3),
    ("april", "apr", 4),
    ("may", "may", 5),
    ("june", "jun", 6),
    ("july", "jul", 7),
    ("august", "aug", 8),
    ("september", "sep", 9),
    ("october", "oct", 10),
    ("november", "nov", 11),
    ("december", "dec", 12),
];

const ORDINALS: [(&str, u8); 4] = [("first", 1), ("second", 2), ("third", 3), ("fourth", 4)];

/// Aliases of filter values: (alias words, field, values).
const ALIASES: &[(&str, &str, &[&str])] = &[
    ("emea", "region", &["Europe", "Middle East & Africa"]),
    ("apac", "region", &["Asia Pacific"]),
    ("asia", "region", &["Asia Pacific"]),
    ("latam", "region", &["Latin America"]),
    ("mea", "region", &["Middle East & Africa"]),
    ("na", "region", &["North America"]),
    ("amer", "region", &["North America", "Latin America"]),
    ("americas", "region", &["North America", "Latin America"]),
    ("usa", "country", &["United States"]),
    ("uk", "country", &["United Kingdom"]),
    ("ecommerce", "channel", &["Online"]),
    ("e-commerce", "channel", &["Online"]),
    ("web", "channel", &["Online"]),
    ("stores", "channel", &["Retail"]),
    ("store", "channel", &["Retail"]),
    ("partners", "channel", &["Partner"]),
    ("resellers", "channel", &["Partner"]),
];

/// Words that mark what to deliver.
pub(crate) fn deliverables_of(word: &str) -> &'static [Deliverable] {
    use Deliverable::{Charts, Dataset, Metrics, Summary};
    match word {
        "report" | "reports" | "overview" | "review" | "analysis" | "performance" => {
            &[Dataset, Metrics, Charts, Summary]
        }
        "chart" | "charts" | "visualization" | "visualizations" | "visualisation"
        | "visualisations" | "graph" | "graphs" | "plot" | "plots" | "visual" | "visuals"
        | "dashboard" => &[Charts],
        "summary" | "summaries" | "summarize" | "summarise" | "brief" | "briefing" | "tldr"
        | "memo" => &[Summary],
        "metrics" | "kpi" | "kpis" | "numbers" | "figures" | "breakdown" | "breakdowns"
        | "growth" | "analyze" | "analyse" => &[Metrics],
        "data" | "dataset" | "extract" | "export" | "csv" | "table" | "rows" | "raw" => &[Dataset],
        _ => &[],
    }
}

/// Words that are part of ordinary phrasing and never a filter.
pub(crate) fn is_filler(word: &str) -> bool {
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
    )
}

/// Tokens: lower-case words, Unicode-aware; `q2`, `h1`, `2025`, `2025-q2`
/// and dates stay whole.
pub(crate) fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        if ch.is_alphanumeric() || ch == '-' || ch == '&' || ch == '\'' {
            cur.extend(ch.to_lowercase());
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out.into_iter()
        .map(|t| {
            let t = t.strip_suffix("'s").unwrap_or(&t);
            t.trim_matches(|c| c == '-' || c == '\'').to_string()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

fn month_of(word: &str) -> Option<u8> {
    MONTHS
        .iter()
        .find(|(long, short, _)| {
            word == *long || word == *short || (word.len() >= 3 && long.starts_with(word))
        })
        .map(|(_, _, m)| *m)
}

fn year_of(word: &str) -> Option<i32> {
    agentmesh_sales::period::year_of(word)
}

fn quarter(year: i32, q: u8) -> Option<Period> {
    Period::quarter(year, q).ok()
}

fn half(year: i32, h: u8) -> Option<Period> {
    Period::half(year, h).ok()
}

/// Months `first..=last` of `year` as asked: one month, or a month range
/// that stays one ("April to June" is not relabelled Q2).
fn month_span(year: i32, first: u8, last: u8) -> Option<Period> {
    if first == last {
        Period::months(year, first, last).ok()
    } else {
        Period::month_range(year, first, last).ok()
    }
}

fn whole_year(year: i32) -> Option<Period> {
    Period::months(year, 1, 12).ok()
}

/// The latest complete quarter or half numbered `n`, given the catalog.
fn latest(kind: char, n: u8, complete: Date) -> Option<Period> {
    let mut year = complete.year();
    for _ in 0..3 {
        let p = if kind == 'Q' {
            quarter(year, n)?
        } else {
            half(year, n)?
        };
        if p.end <= complete {
            return Some(p);
        }
        year -= 1;
    }
    None
}

/// Most months a goal's horizon ("next 18 months") may name.
const MAX_HORIZON_MONTHS: u32 = 60;

fn count_of(word: &str) -> Option<u32> {
    const WORDS: [&str; 12] = [
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve",
    ];
    word.parse::<u32>().ok().or_else(|| {
        WORDS
            .iter()
            .position(|w| *w == word)
            .and_then(|i| u32::try_from(i + 1).ok())
    })
}

fn months_in(unit: &str) -> Option<u32> {
    match unit.strip_suffix('s').unwrap_or(unit) {
        "month" => Some(1),
        "quarter" => Some(3),
        "half" => Some(6),
        "year" => Some(12),
        _ => None,
    }
}

/// A horizon after the data at token `i` ("next quarter", "the coming six
/// months"): the months it spans and how many tokens it used.
fn horizon_at(t: &[String], i: usize) -> Result<Option<(u32, usize)>, MeshError> {
    if !matches!(t[i].as_str(), "next" | "coming" | "upcoming" | "following") {
        return Ok(None);
    }
    let Some(w) = t.get(i + 1) else {
        return Ok(None);
    };
    if let Some(m) = months_in(w) {
        return Ok(Some((m, 2)));
    }
    let (Some(n), Some(m)) = (count_of(w), t.get(i + 2).and_then(|u| months_in(u))) else {
        return Ok(None);
    };
    let months = n.saturating_mul(m);
    if months == 0 || months > MAX_HORIZON_MONTHS {
        return Err(not_understood(format!(
            "\"{} {w} {}\" is not a horizon of 1 to {MAX_HORIZON_MONTHS} months",
            t[i],
            t[i + 2]
        )));
    }
    Ok(Some((months, 3)))
}

/// Months from the end of `from`'s month to the end of `to`'s.
fn months_between(from: Date, to: Date) -> i32 {
    (to.year() - from.year()) * 12 + i32::from(u8::from(to.month()))
        - i32::from(u8::from(from.month()))
}

/// A period phrase found in the text, with where it ends.
struct Found {
    period: Period,
    /// Whether a year was given (otherwise it was resolved).
    explicit_year: bool,
    next: usize,
}

/// Reads a period starting at token `i`.
fn period_at(t: &[String], i: usize, catalog: &Catalog) -> Result<Option<Found>, MeshError> {
    let complete = catalog.complete_through;
    let last = catalog.last_date;
    let w = t[i].as_str();
    // A year at `j`, also as "of 2025"; with the index after it.
    let year_at = |j: usize| -> Option<(i32, usize)> {
        let j = if t.get(j).is_some_and(|w| w == "of" || w == "in") {
            j + 1
        } else {
            j
        };
        t.get(j).and_then(|w| year_of(w)).map(|y| (y, j + 1))
    };
    let year_after = |j: usize| year_at(j).map(|(y, _)| y);
    let after_year = |j: usize| year_at(j).map_or(j, |(_, n)| n);
    let year_before = if i > 0 { year_of(&t[i - 1]) } else { None };
    let with_year =
        |kind: char, n: u8, year: Option<i32>, next: usize| -> Result<Option<Found>, MeshError> {
            let (period, explicit_year) = match year {
                Some(y) => (
                    if kind == 'Q' {
                        quarter(y, n)
                    } else {
                        half(y, n)
                    },
                    true,
                ),
                None => (latest(kind, n, complete), false),
            };
            let period = period
                .ok_or_else(|| not_understood(format!("no complete {kind}{n} in the data")))?;
            Ok(Some(Found {
                period,
                explicit_year,
                next,
            }))
        };
    // 2025-q2, 2025-h1, 2025-04, 2025-04-01, 2025-04-01..2025-06-30 forms.
    if let Some((y, rest)) = w.split_once('-')
        && let Some(year) = year_of(y)
    {
        if let Some(n) = rest.strip_prefix('q').and_then(|n| n.parse::<u8>().ok()) {
            if !(1..=4).contains(&n) {
                return Err(not_understood(format!("Q{n} is not a quarter (Q1–Q4)")));
            }
            return with_year('Q', n, Some(year), i + 1);
        }
        if let Some(n) = rest.strip_prefix('h').and_then(|n| n.parse::<u8>().ok()) {
            if !(1..=2).contains(&n) {
                return Err(not_understood(format!("H{n} is not a half (H1 or H2)")));
            }
            return with_year('H', n, Some(year), i + 1);
        }
        let parts: Vec<&str> = rest.split('-').collect();
        if let [m] = parts.as_slice()
            && let Ok(m) = m.parse::<u8>()
            && (1..=12).contains(&m)
        {
            let p = month_span(year, m, m)
                .ok_or_else(|| not_understood(format!("{w} is not a month")))?;
            return Ok(Some(Found {
                period: p,
                explicit_year: true,
                next: i + 1,
            }));
        }
        if let [m, d] = parts.as_slice()
            && let (Ok(m), Ok(d)) = (m.parse::<u8>(), d.parse::<u8>())
        {
            let start = Month::try_from(m)
                .ok()
                .and_then(|mm| Date::from_calendar_date(year, mm, d).ok())
                .ok_or_else(|| not_understood(format!("{w} is not a date")))?;
            // A date range: "2025-04-01 to 2025-06-30".
            let mut end = start;
            let mut next = i + 1;
            if matches!(
                t.get(i + 1).map(String::as_str),
                Some("to" | "through" | "until" | "till")
            ) && let Some(Found { period, .. }) = t
                .get(i + 2)
                .map(|_| period_at(t, i + 2, catalog))
                .transpose()?
                .flatten()
            {
                end = period.end;
                next = i + 3;
            }
            if end < start {
                return Err(not_understood("the period ends before it starts"));
            }
            return Ok(Some(Found {
                period: Period::days_between(start, end).map_err(|e| not_understood(e.0))?,
                explicit_year: true,
                next,
            }));
        }
    }
    // q2 / q5, h1.
    if let Some(n) = w.strip_prefix('q').and_then(|n| n.parse::<u8>().ok()) {
        if !(1..=4).contains(&n) {
            return Err(not_understood(format!("Q{n} is not a quarter (Q1–Q4)")));
        }
        let year = year_after(i + 1).or(year_before);
        return with_year('Q', n, year, after_year(i + 1));
    }
    if let Some(n) = w.strip_prefix('h').and_then(|n| n.parse::<u8>().ok()) {
        if !(1..=2).contains(&n) {
            return Err(not_understood(format!("H{n} is not a half (H1 or H2)")));
        }
        let year = year_after(i + 1).or(year_before);
        return with_year('H', n, year, after_year(i + 1));
    }
    // "first quarter", "second half" (+ year).
    if let Some((_, n)) = ORDINALS.iter().find(|(o, _)| *o == w) {
        match t.get(i + 1).map(String::as_str) {
            Some("quarter") => {
                let year = year_after(i + 2).or(year_before);
                return with_year('Q', *n, year, after_year(i + 2));
            }
            Some("half") if *n <= 2 => {
                let year = year_after(i + 2).or(year_before);
                return with_year('H', *n, year, after_year(i + 2));
            }
            _ => {}
        }
    }
    // Month, month range ("april to june 2025", "jan-mar").
    if let Some(m1) = month_of(w).or_else(|| w.split_once('-').and_then(|(a, _)| month_of(a))) {
        let (m2, mut next) = if let Some((_, b)) = w.split_once('-') {
            (month_of(b).unwrap_or(m1), i + 1)
        } else if matches!(
            t.get(i + 1).map(String::as_str),
            Some("to" | "through" | "until" | "till" | "thru")
        ) && let Some(m2) = t.get(i + 2).and_then(|w| month_of(w))
        {
            (m2, i + 3)
        } else {
            (m1, i + 1)
        };
        if m2 < m1 {
            return Err(not_understood(
                "a month range must run forward within one year",
            ));
        }
        let (year, explicit_year) = match year_after(next).or(year_before) {
            Some(y) => {
                next = after_year(next);
                (y, true)
            }
            None => {
                // The latest such range the data has complete.
                let mut y = complete.year();
                if month_span(y, m2, m2).is_none_or(|p| p.end > complete) {
                    y -= 1;
                }
                (y, false)
            }
        };
        let period = month_span(year, m1, m2)
            .ok_or_else(|| not_understood(format!("{w} is not a month")))?;
        return Ok(Some(Found {
            period,
            explicit_year,
            next,
        }));
    }
    // "last quarter", "this quarter", "last year", "this year".
    if matches!(w, "last" | "previous" | "this" | "current")
        && let Some(unit) = t.get(i + 1).map(String::as_str)
    {
        let this = matches!(w, "this" | "current");
        let period = match unit {
            "quarter" if this => quarter(last.year(), u8::from(last.month()).div_ceil(3)),
            "quarter" => latest_complete_quarter(complete),
            "year" => {
                let y = if this { last.year() } else { last.year() - 1 };
                whole_year(y)
            }
            "month" => {
                let at = if this { last } else { complete };
                let m = u8::from(at.month());
                let y = at.year();
                month_span(y, m, m)
            }
            _ => return Ok(None),
        };
        let period = period.ok_or_else(|| not_understood("that period is outside the calendar"))?;
        return Ok(Some(Found {
            period,
            explicit_year: false,
            next: i + 2,
        }));
    }
    // A bare year, unless it qualifies the period that follows ("2024 Q3").
    if let Some(y) = year_of(w) {
        let next = t.get(i + 1).map(String::as_str).unwrap_or("");
        let qualifies = month_of(next).is_some()
            || ORDINALS.iter().any(|(o, _)| *o == next)
            || ((next.starts_with('q') || next.starts_with('h'))
                && next.len() == 2
                && next[1..].parse::<u8>().is_ok());
        if qualifies {
            return Ok(None);
        }
        let p = whole_year(y).ok_or_else(|| not_understood(format!("{w} is not a year")))?;
        return Ok(Some(Found {
            period: p,
            explicit_year: true,
            next: i + 1,
        }));
    }
    Ok(None)
}

/// Parses `goal` against `catalog` with the built-in words for kinds, then
/// applies `params` over it.
pub fn parse(
    goal: &str,
    params: Option<&RunParameters>,
    catalog: &Catalog,
) -> Result<GoalIntent, MeshError> {
    parse_with(goal, params, catalog, &Vocabulary::builtin())
}

/// Parses `goal` against `catalog`, reading kinds with `vocab` (the words
/// of the mesh's skills), then applies `params` over it.
pub fn parse_with(
    goal: &str,
    params: Option<&RunParameters>,
    catalog: &Catalog,
    vocab: &Vocabulary,
) -> Result<GoalIntent, MeshError> {
    let words = tokens(goal);
    let no_params = params.is_none_or(|p| *p == RunParameters::default());
    if words.is_empty() && no_params {
        return Err(not_understood("the goal is empty"));
    }
    let complete = catalog.complete_through;
    let mut notes = Vec::new();

    // Split off a comparison clause: "... vs last year", "compared to Q1".
    let cmp_at = words.iter().position(|w| {
        matches!(
            w.as_str(),
            "vs" | "versus" | "against" | "compared" | "comparison" | "relative"
        )
    });
    let (main, cmp) = match cmp_at {
        Some(i) => (&words[..i], &words[i + 1..]),
        None => (&words[..], &words[words.len()..]),
    };

    let mut deliverables: Vec<Deliverable> = Vec::new();
    let mut kinds: Vec<String> = Vec::new();
    let mut horizon: Option<(u32, String)> = None;
    let mut period: Option<Found> = None;
    let mut filters: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut i = 0;
    while i < main.len() {
        let w = main[i].as_str();
        if let Some((months, n)) = horizon_at(main, i)? {
            horizon = Some((months, main[i..i + n].join(" ")));
            i += n;
            continue;
        }
        if let Some((kind, n)) = vocab.match_at(main, i) {
            if !kinds.iter().any(|k| k == kind) {
                kinds.push(kind.to_string());
            }
            i += n;
            continue;
        }
        if let Some(found) = period_at(main, i, catalog)? {
            if let Some(prev) = &period
                && prev.period != found.period
            {
                return Err(not_understood(format!(
                    "the goal names two periods ({} and {}); name one, and put a comparison after \"vs\"",
                    prev.period.label(),
                    found.period.label()
                )));
            }
            i = found.next;
            period = Some(found);
            continue;
        }
        let mut matched = false;
        for d in deliverables_of(w) {
            matched = true;
            if !deliverables.contains(d) {
                deliverables.push(*d);
            }
        }
        if let Some(n) = match_filter(main, i, catalog, &mut filters) {
            i += n;
            continue;
        }
        if !matched
            && !is_filler(w)
            && year_of(w).is_none()
            && w.chars().all(char::is_alphabetic)
            && main
                .get(i + 1)
                .is_some_and(|n| n == "region" || n == "country" || n == "channel")
        {
            unknown.push(format!("{} {}", w, main[i + 1]));
        }
        i += 1;
    }
    if let Some(u) = unknown.first() {
        let field = u.rsplit(' ').next().unwrap_or("region");
        let known = catalog
            .values
            .get(field)
            .map(|v| v.join(", "))
            .unwrap_or_default();
        return Err(not_understood(format!(
            "\"{u}\" is not in the data; known values: {known}"
        )));
    }

    // Comparisons.
    let mut compare_previous = false;
    let mut compare_year_ago = false;
    let joined = words.join(" ");
    if [
        "year over year",
        "yoy",
        "year-over-year",
        "year ago",
        "year-ago",
        "last year",
        "prior year",
        "previous year",
    ]
    .iter()
    .any(|p| {
        cmp.join(" ").contains(p) || (cmp.is_empty() && joined.contains(p) && *p != "last year")
    }) {
        compare_year_ago = true;
    }
    if [
        "quarter over quarter",
        "qoq",
        "previous quarter",
        "last quarter",
        "prior quarter",
        "previous period",
        "prior period",
        "month over month",
        "previous month",
        "previous half",
    ]
    .iter()
    .any(|p| {
        cmp.join(" ").contains(p)
            || (cmp.is_empty() && joined.contains(p) && !p.starts_with("last"))
    }) {
        compare_previous = true;
    }

    let mut period = match period {
        Some(found) => {
            if !found.explicit_year {
                notes.push(format!(
                    "no year given: using {}, the latest the data has complete (through {})",
                    found.period.label(),
                    complete
                ));
            }
            found.period
        }
        None => {
            let q = latest_complete_quarter(complete)
                .ok_or_else(|| not_understood("the data has no complete quarter"))?;
            notes.push(format!(
                "no period given: using {}, the latest complete quarter",
                q.label()
            ));
            q
        }
    };
    // "compared to Q1" names a period: previous or a year earlier.
    if !cmp.is_empty() {
        let mut j = 0;
        while j < cmp.len() {
            if let Some(found) = period_at(cmp, j, catalog)? {
                let other = found.period;
                let span = |p: Result<Period, _>| p.ok().map(|p| (p.start, p.end));
                if span(period.previous()) == Some((other.start, other.end)) {
                    compare_previous = true;
                } else if span(period.year_ago()) == Some((other.start, other.end)) {
                    compare_year_ago = true;
                } else if !["last", "previous", "prior", "this"].contains(&cmp[j].as_str()) {
                    return Err(not_understood(format!(
                        "{} can be compared with the previous period or the same period a year earlier, not with {}",
                        period.label(),
                        other.label()
                    )));
                }
                j = found.next;
            } else {
                j += 1;
            }
        }
        if !compare_previous && !compare_year_ago {
            return Err(not_understood(
                "the comparison is not understood: say \"vs previous quarter\" or \"vs last year\"",
            ));
        }
    }

    // Structured parameters win over the text.
    if let Some(p) = params {
        if !p.period.trim().is_empty() {
            // A structured period is read by the one parser of the
            // canonical forms, ranges included.
            period = agentmesh_sales::period::parse(&p.period, complete).map_err(|e| {
                MeshError::new(
                    ErrorReason::InvalidInput,
                    format!("parameters.period {:?}: {}", p.period, e.0),
                )
                .with_meta("field", "spec.parameters.period")
            })?;
        }
        for (field, values) in [
            ("region", &p.regions),
            ("country", &p.countries),
            ("product_line", &p.product_lines),
            ("channel", &p.channels),
        ] {
            if values.is_empty() {
                continue;
            }
            let mut resolved = Vec::new();
            for v in values {
                let known = catalog.values.get(field).and_then(|known| {
                    known
                        .iter()
                        .find(|k| k.eq_ignore_ascii_case(v.trim()))
                        .cloned()
                });
                match known {
                    Some(k) => resolved.push(k),
                    None if catalog.values.get(field).is_none_or(Vec::is_empty) => {
                        resolved.push(v.trim().to_string())
                    }
                    None => {
                        return Err(MeshError::new(
                            ErrorReason::InvalidInput,
                            format!(
                                "{field} {v:?} is not in the data; known: {}",
                                catalog
                                    .values
                                    .get(field)
                                    .map(|k| k.join(", "))
                                    .unwrap_or_default()
                            ),
                        )
                        .with_meta("field", format!("spec.parameters.{field}s")));
                    }
                }
            }
            filters.insert(field.to_string(), resolved);
        }
        let ds: Vec<Deliverable> = p
            .deliverables
            .iter()
            .filter_map(|d| Deliverable::try_from(*d).ok())
            .filter(|d| *d != Deliverable::Unspecified)
            .collect();
        if !ds.is_empty() {
            deliverables = ds;
        }
        if let Some(v) = p.compare_previous {
            compare_previous = v;
        }
        if let Some(v) = p.compare_year_ago {
            compare_year_ago = v;
        }
    }

    if deliverables.is_empty() && kinds.is_empty() {
        return Err(not_understood(format!(
            "the goal does not say what to deliver (a report, charts, an executive summary, metrics or the data{})",
            vocab
                .examples()
                .iter()
                .map(|w| format!(", a {w}"))
                .collect::<String>()
        )));
    }
    let history = Period::days_between(catalog.first_date, catalog.complete_through)
        .map_err(|e| not_understood(format!("the data's history: {}", e.0)))?;
    let future_kind = kinds.iter().find(|k| vocab.is_future(k)).cloned();
    // A period after the data: a forecast's horizon, or refused.
    if period.start > catalog.last_date {
        let covers = format!(
            "the data covers {} to {}",
            catalog.first_date, catalog.last_date
        );
        match &future_kind {
            Some(kind) if deliverables.is_empty() => {
                let months = months_between(catalog.complete_through, period.end);
                let months = u32::try_from(months)
                    .unwrap_or(0)
                    .clamp(1, MAX_HORIZON_MONTHS);
                notes.push(format!(
                    "{} is after the data ({covers}): `{kind}` for the {months} months through {}",
                    period.label(),
                    period.end
                ));
                horizon = Some((months, period.label()));
                period = history;
            }
            _ => {
                return Err(not_understood(format!(
                    "{} has no data yet ({covers}); only a forecast answers about it",
                    period.label()
                )));
            }
        }
    }
    if let Some((months, phrase)) = &horizon {
        match &future_kind {
            Some(kind) => notes.push(format!(
                "\"{phrase}\": `{kind}` for {months} months after the data (complete through {complete})"
            )),
            None => {
                return Err(not_understood(format!(
                    "\"{phrase}\" is after the data (complete through {complete}); only a forecast answers about it"
                )));
            }
        }
    }
    deliverables.sort_by_key(|d| *d as i32);
    let full_report = deliverables.len() == 4;
    if full_report && !compare_previous && !compare_year_ago {
        compare_previous = true;
        compare_year_ago = true;
        notes.push("a report compares with the previous period and a year earlier".into());
    }
    if period.end > complete {
        notes.push(format!(
            "{} is not complete in the data (complete through {complete}): figures are partial",
            period.label()
        ));
    }
    if period.end < catalog.first_date {
        return Err(not_understood(format!(
            "{} is before the data starts ({})",
            period.label(),
            catalog.first_date
        )));
    }
    Ok(GoalIntent {
        deliverables,
        period,
        filters,
        compare_previous,
        compare_year_ago,
        words,
        notes,
        kinds,
        horizon_months: horizon.map(|(m, _)| m),
        history,
    })
}

fn latest_complete_quarter(complete: Date) -> Option<Period> {
    (1..=4)
        .rev()
        .filter_map(|q| latest('Q', q, complete))
        .max_by_key(|p| p.end)
}

/// Matches a filter value (or alias) starting at token `i`; returns how
/// many tokens it used.
fn match_filter(
    t: &[String],
    i: usize,
    catalog: &Catalog,
    filters: &mut BTreeMap<String, Vec<String>>,
) -> Option<usize> {
    let mut add = |field: &str, value: &str| {
        let entry = filters.entry(field.to_string()).or_default();
        if !entry.iter().any(|v| v == value) {
            entry.push(value.to_string());
        }
    };
    // Known values, longest first (multi-word values like "Middle East & Africa").
    let mut best: Option<(usize, String, String)> = None;
    for (field, values) in &catalog.values {
        for value in values {
            let vt = tokens(value);
            if vt.is_empty() || i + vt.len() > t.len() {
                continue;
            }
            let hit = vt.iter().zip(&t[i..]).all(|(a, b)| {
                a == b
                    || (a.len() > 3
                        && (b.strip_suffix('s') == Some(a) || a.strip_suffix('s') == Some(b)))
            });
            if hit && best.as_ref().is_none_or(|(n, _, _)| vt.len() > *n) {
                best = Some((vt.len(), field.clone(), value.clone()));
            }
        }
    }
    if let Some((n, field, value)) = best {
        add(&field, &value);
        return Some(n);
    }
    let w = t[i].as_str();
    for (alias, field, values) in ALIASES {
        if w == *alias {
            let known = catalog.values.get(*field)?;
            let present: Vec<&&str> = values
                .iter()
                .filter(|v| known.iter().any(|k| k == **v))
                .collect();
            if present.is_empty() {
                return None;
            }
            for v in present {
                add(field, v);
            }
            return Some(1);
        }
    }
    None
}
