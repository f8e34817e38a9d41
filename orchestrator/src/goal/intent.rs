//! Goal text → intent: what to deliver, for which period, with which
//! filters and comparisons. Deterministic; anything it cannot read is an
//! error that says what was not understood and what would work, never a
//! guess presented as certain. Structured `RunParameters` override the text.

use std::collections::BTreeMap;

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_proto::v1::{
    Deliverable, Filter, Intent, Period as PbPeriod, Ranking, RunParameters,
};
pub use agentmesh_sales::{Catalog, Period};
use time::{Date, Month};

use crate::goal::vocabulary::Vocabulary;
use crate::goal::words::{
    DELIVERABLE_WORDS, deliverable_name, deliverables_of, is_filler, raw_tokens, tokens,
};

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
    /// Compare with a period named in the goal that is neither of those.
    pub compare_period: Option<Period>,
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
    /// Breakdowns asked for ("by country"), as dimension names.
    pub group_by: Vec<String>,
    /// Phrases understood, with what they were read as ("q2 → Q2 2025").
    pub understood: Vec<String>,
    /// Words read as ordinary phrasing.
    pub filler: Vec<String>,
    /// Words not understood that cannot change the answer where they stand.
    pub not_understood: Vec<String>,
    /// A ranking asked for.
    pub ranking: Option<Ranking>,
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
            group_by: self.group_by.clone(),
            understood: self.understood.clone(),
            filler: self.filler.clone(),
            not_understood: self.not_understood.clone(),
            ranking: self.ranking.clone(),
            compare_period: self.compare_period.map(|p| PbPeriod {
                start: p.start.to_string(),
                end: p.end.to_string(),
                label: p.label(),
            }),
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

const ORDINALS: [(&str, u8); 8] = [
    ("first", 1),
    ("second", 2),
    ("third", 3),
    ("fourth", 4),
    ("1st", 1),
    ("2nd", 2),
    ("3rd", 3),
    ("4th", 4),
];

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

/// Words that ask to change data: no agent here does, and a goal that
/// asks must not be read as a report.
const ACTIONS: &[&str] = &[
    "delete",
    "deleting",
    "remove",
    "removing",
    "drop",
    "erase",
    "purge",
    "update",
    "updating",
    "modify",
    "edit",
    "insert",
    "overwrite",
    "rename",
    "upload",
    "import",
    "truncate",
    "alter",
    "wipe",
];

/// Words that would exclude values: the reader only includes.
const NEGATIONS: &[&str] = &["except", "excluding", "exclude", "without", "not", "minus"];

/// Deliverables no agent here makes.
const UNSUPPORTED: &[&str] = &[
    "slides",
    "slide",
    "deck",
    "decks",
    "presentation",
    "presentations",
    "powerpoint",
    "ppt",
    "pptx",
    "pdf",
    "docx",
    "video",
    "infographic",
];

/// Most dimensions one breakdown takes (the data agent's group_by).
const MAX_BREAKDOWNS: usize = 4;

/// Dimensions the metrics, charts and summary break down by themselves.
const REPORT_DIMENSIONS: &[&str] = &["month", "region", "product_line", "channel"];

/// The dimension named at token `i` ("product line", "countries") and how
/// many tokens it used.
fn dimension_at(t: &[String], i: usize) -> Option<(&'static str, usize)> {
    let w = t.get(i)?.as_str();
    let next = t.get(i + 1).map(String::as_str);
    if matches!(w, "product" | "products") && matches!(next, Some("line" | "lines")) {
        return Some(("product_line", 2));
    }
    let dim = match w {
        "month" | "months" | "monthly" => "month",
        "week" | "weeks" | "weekly" => "week",
        "region" | "regions" => "region",
        "country" | "countries" => "country",
        "product" | "products" => "product",
        "product_line" | "product_lines" => "product_line",
        "channel" | "channels" => "channel",
        _ => return None,
    };
    Some((dim, 1))
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
    // The words as typed (a capital can mark a name) and lower-cased.
    let raw = raw_tokens(goal);
    let words: Vec<String> = raw.iter().map(|t| t.to_lowercase()).collect();
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
    let mut group_by: Vec<String> = Vec::new();
    let mut ranking: Option<Ranking> = None;
    let mut reading = Reading::default();
    let lexicon = Lexicon::new(catalog, vocab);
    let mut main: Vec<String> = main.to_vec();
    let mut i = 0;
    while i < main.len() {
        let w = main[i].clone();
        if let Some((months, n)) = horizon_at(&main, i)? {
            let phrase = main[i..i + n].join(" ");
            reading.understood(&phrase, format!("{months} months after the data"));
            horizon = Some((months, phrase));
            i += n;
            continue;
        }
        if let Some((kind, n)) = vocab.match_at(&main, i) {
            reading.understood(&main[i..i + n].join(" "), format!("`{kind}`"));
            if !kinds.iter().any(|k| k == kind) {
                kinds.push(kind.to_string());
            }
            i += n;
            continue;
        }
        if let Some(found) = period_at(&main, i, catalog)? {
            if let Some(prev) = &period
                && prev.period != found.period
            {
                return Err(not_understood(format!(
                    "the goal names two periods ({} and {}); name one, and put a comparison after \"vs\"",
                    prev.period.label(),
                    found.period.label()
                )));
            }
            reading.understood(&main[i..found.next].join(" "), found.period.label());
            i = found.next;
            period = Some(found);
            continue;
        }
        if let Some((rank, n)) = ranking_at(&main, i)? {
            reading.understood(
                &main[i..i + n].join(" "),
                format!(
                    "the {} {} {} by {}",
                    rank.order,
                    rank.n,
                    rank.dimension.replace('_', " "),
                    rank.by
                ),
            );
            ranking = Some(rank);
            i += n;
            continue;
        }
        if w == "by"
            && let Some((dims, n)) = breakdown_at(&main, i)?
        {
            reading.understood(
                &main[i..i + n].join(" "),
                format!("broken down by {}", dims.join(", ")),
            );
            for d in dims {
                if !group_by.iter().any(|g| g == d) {
                    group_by.push(d.to_string());
                }
            }
            i += n;
            continue;
        }
        let named = deliverables_of(&w);
        for d in named {
            if !deliverables.contains(d) {
                deliverables.push(*d);
            }
        }
        if let Some(n) = match_filter(&main, i, catalog, &mut filters) {
            reading.understood(
                &main[i..i + n].join(" "),
                filter_text(&main[i..i + n], catalog),
            );
            i += n;
            continue;
        }
        if !named.is_empty() {
            reading.understood(
                &w,
                named
                    .iter()
                    .map(|d| deliverable_name(*d))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            i += 1;
            continue;
        }
        if is_filler(&w) || year_of(&w).is_some() {
            reading.filler.push(w);
            i += 1;
            continue;
        }
        if let Some(fixed) = lexicon.correct(&w) {
            notes.push(format!("read \"{w}\" as \"{fixed}\""));
            main[i] = fixed;
            continue;
        }
        let prev = i.checked_sub(1).map(|k| main[k].as_str());
        let original = raw.get(i).map_or(w.as_str(), String::as_str);
        unknown_word(
            &w,
            original,
            i,
            prev,
            main.get(i + 1).map(String::as_str),
            catalog,
            vocab,
        )?;
        reading.not_understood.push(w);
        i += 1;
    }
    // The comparison clause: its periods are read below; its filters and
    // words count like the rest ("Q2 report vs last year for Europe").
    let cmp_raw = raw.get(main.len() + 1..).unwrap_or(&[]);
    let mut j = 0;
    while j < cmp.len() {
        let w = cmp[j].as_str();
        if let Some(found) = period_at(cmp, j, catalog)? {
            reading.understood(
                &cmp[j..found.next].join(" "),
                format!("compared with {}", found.period.label()),
            );
            j = found.next;
            continue;
        }
        if let Some(n) = match_filter(cmp, j, catalog, &mut filters) {
            reading.understood(
                &cmp[j..j + n].join(" "),
                filter_text(&cmp[j..j + n], catalog),
            );
            j += n;
            continue;
        }
        if is_filler(w) || matches!(w, "year" | "quarter" | "month" | "half") {
            reading.filler.push(w.to_string());
        } else {
            let prev = j.checked_sub(1).map(|k| cmp[k].as_str());
            let original = cmp_raw.get(j).map_or(w, String::as_str);
            unknown_word(
                w,
                original,
                j + 1,
                prev,
                cmp.get(j + 1).map(String::as_str),
                catalog,
                vocab,
            )?;
            reading.not_understood.push(w.to_string());
        }
        j += 1;
    }
    if !reading.not_understood.is_empty() {
        notes.push(format!(
            "not understood, and read as filler: {}",
            reading
                .not_understood
                .iter()
                .map(|w| format!("\"{w}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if group_by.len() > MAX_BREAKDOWNS {
        return Err(not_understood(format!(
            "a breakdown takes at most {MAX_BREAKDOWNS} dimensions; the goal names {}",
            group_by.join(", ")
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
    // "compared to Q1" names a period: previous, a year earlier, or any
    // other the data has.
    let mut compare_period: Option<Period> = None;
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
                    if let Some(first) = compare_period
                        && first != other
                    {
                        return Err(not_understood(format!(
                            "the comparison names two periods ({} and {}); compare with one named period, or with \"the previous quarter and last year\"",
                            first.label(),
                            other.label()
                        )));
                    }
                    compare_period =
                        Some(comparable(period, other, catalog).map_err(not_understood)?);
                }
                j = found.next;
            } else {
                j += 1;
            }
        }
        if !compare_previous && !compare_year_ago && compare_period.is_none() {
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
        if !p.compare_period.trim().is_empty() {
            let other =
                agentmesh_sales::period::parse(&p.compare_period, complete).map_err(|e| {
                    MeshError::new(
                        ErrorReason::InvalidInput,
                        format!("parameters.compare_period {:?}: {}", p.compare_period, e.0),
                    )
                    .with_meta("field", "spec.parameters.compare_period")
                })?;
            compare_period = Some(comparable(period, other, catalog).map_err(|why| {
                MeshError::new(ErrorReason::InvalidInput, why)
                    .with_meta("field", "spec.parameters.compare_period")
            })?);
        }
    }

    // A ranking is part of the metrics.
    if ranking.is_some() && !deliverables.contains(&Deliverable::Metrics) {
        deliverables.push(Deliverable::Metrics);
        deliverables.sort_by_key(|d| *d as i32);
    }
    if deliverables.is_empty() && kinds.is_empty() {
        let english = if words
            .iter()
            .any(|w| w.chars().any(|c| c.is_alphabetic() && !c.is_ascii()))
        {
            "; the rules planner reads goals in English"
        } else {
            ""
        };
        return Err(not_understood(format!(
            "the goal does not say what to deliver (a report, charts, an executive summary, metrics, the data{}){english}",
            offered(vocab)
        )));
    }
    // Breakdowns the report's own sections do not make come with the data
    // only.
    if deliverables.iter().any(|d| *d != Deliverable::Dataset)
        && let Some(dim) = group_by
            .iter()
            .find(|d| !REPORT_DIMENSIONS.contains(&d.as_str()))
    {
        let spoken = dim.replace('_', " ");
        return Err(not_understood(format!(
            "\"by {spoken}\": metrics, charts and summaries break down by month, region, product line and channel; a breakdown by {spoken} comes with the data (\"the Q2 data by {spoken}\")"
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
    if full_report && !compare_previous && !compare_year_ago && compare_period.is_none() {
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
        compare_period,
        words,
        notes,
        kinds,
        horizon_months: horizon.map(|(m, _)| m),
        history,
        group_by,
        understood: reading.understood,
        filler: reading.filler,
        not_understood: reading.not_understood,
        ranking,
    })
}

/// `other` as a comparison for `period`: a different period the data has;
/// else why not.
fn comparable(period: Period, other: Period, catalog: &Catalog) -> Result<Period, String> {
    if other == period {
        return Err(format!(
            "{} is compared with itself; name another period",
            period.label()
        ));
    }
    if other.start > catalog.last_date || other.end < catalog.first_date {
        return Err(format!(
            "{} has no data to compare with (the data covers {} to {})",
            other.label(),
            catalog.first_date,
            catalog.last_date
        ));
    }
    Ok(other)
}

/// The ranking order a word asks for.
fn rank_order(w: &str) -> Option<&'static str> {
    match w {
        "top" | "best" | "highest" | "largest" | "biggest" | "leading" | "strongest" => Some("top"),
        "bottom" | "worst" | "lowest" | "smallest" | "weakest" => Some("bottom"),
        _ => None,
    }
}

/// "the three best product lines by revenue", "top 2 regions by growth",
/// "worst channel by margin" at token `i`: the ranking and the tokens used.
fn ranking_at(t: &[String], i: usize) -> Result<Option<(Ranking, usize)>, MeshError> {
    let mut j = i;
    let mut n = count_of(&t[j]).filter(|_| t.get(j + 1).is_some_and(|w| rank_order(w).is_some()));
    if n.is_some() {
        j += 1;
    }
    let Some(order) = rank_order(&t[j]) else {
        return Ok(None);
    };
    j += 1;
    if n.is_none()
        && let Some(c) = t.get(j).and_then(|w| count_of(w))
    {
        n = Some(c);
        j += 1;
    }
    while t
        .get(j)
        .is_some_and(|w| matches!(w.as_str(), "the" | "of" | "our" | "performing" | "selling"))
    {
        j += 1;
    }
    let Some((dim, used)) = dimension_at(t, j) else {
        return Err(not_understood(format!(
            "\"{}\": say what to rank: regions, product lines or channels (\"the three best product lines by revenue\")",
            t[i..=j.min(t.len() - 1)].join(" ")
        )));
    };
    if !matches!(dim, "region" | "product_line" | "channel") {
        return Err(not_understood(format!(
            "rankings cover regions, product lines and channels, not {}s (\"the top 3 regions by growth\")",
            dim.replace('_', " ")
        )));
    }
    let plural = t[j + used - 1].ends_with('s');
    j += used;
    let mut by = "revenue";
    if t.get(j).is_some_and(|w| w == "by" || w == "in") {
        let measure = match t.get(j + 1).map(String::as_str) {
            Some("revenue" | "sales") => Some("revenue"),
            Some("growth") => Some("growth"),
            Some("margin" | "margins") => Some("margin"),
            _ => None,
        };
        if let Some(m) = measure {
            by = m;
            j += 2;
        }
    }
    let n = n.unwrap_or(if plural { 3 } else { 1 });
    if !(1..=20).contains(&n) {
        return Err(not_understood(format!(
            "a ranking lists 1 to 20 members, not {n}"
        )));
    }
    Ok(Some((
        Ranking {
            dimension: dim.to_string(),
            n,
            order: order.to_string(),
            by: by.to_string(),
        },
        j - i,
    )))
}

/// ", or what other agents offer: forecast, data quality", or nothing.
fn offered(vocab: &Vocabulary) -> String {
    let words = vocab.examples();
    if words.is_empty() {
        String::new()
    } else {
        format!(", or what other agents offer: {}", words.join(", "))
    }
}

/// How the words of a goal were read.
#[derive(Default)]
struct Reading {
    understood: Vec<String>,
    filler: Vec<String>,
    not_understood: Vec<String>,
}

impl Reading {
    fn understood(&mut self, phrase: &str, meaning: impl std::fmt::Display) {
        self.understood.push(format!("{phrase} → {meaning}"));
    }
}

/// What a matched filter phrase stands for ("emea" → "region Europe, ...").
fn filter_text(phrase: &[String], catalog: &Catalog) -> String {
    let mut found = BTreeMap::new();
    let _ = match_filter(phrase, 0, catalog, &mut found);
    found
        .iter()
        .map(|(f, vs)| format!("{} {}", f.replace('_', " "), vs.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// "by month and country" at token `i`: the dimensions and the tokens
/// used. `by` before something else (a value, a period) is not a
/// breakdown: `None`. `by` before a word that is neither is refused.
fn breakdown_at(t: &[String], i: usize) -> Result<Option<(Vec<&'static str>, usize)>, MeshError> {
    let mut dims = Vec::new();
    let mut j = i + 1;
    loop {
        while t
            .get(j)
            .is_some_and(|w| matches!(w.as_str(), "and" | "the" | "each" | "then"))
            && !dims.is_empty()
        {
            j += 1;
        }
        match dimension_at(t, j) {
            Some((dim, n)) => {
                dims.push(dim);
                j += n;
            }
            None => break,
        }
    }
    if !dims.is_empty() {
        return Ok(Some((dims, j - i)));
    }
    match t.get(i + 1) {
        Some(next)
            if next.chars().all(char::is_alphabetic)
                && !is_filler(next)
                && deliverables_of(next).is_empty() =>
        {
            Err(not_understood(format!(
                "\"by {next}\": the data breaks down by month, week, region, country, product line, product or channel"
            )))
        }
        _ => Ok(None),
    }
}

/// Refuses an unknown word that could change the answer: an action on the
/// data, an exclusion, a deliverable no agent makes, or a name
/// (capitalized, or right after "for"/"in") that is not in the data.
#[allow(clippy::too_many_arguments)]
fn unknown_word(
    w: &str,
    original: &str,
    at: usize,
    prev: Option<&str>,
    next: Option<&str>,
    catalog: &Catalog,
    vocab: &Vocabulary,
) -> Result<(), MeshError> {
    if ACTIONS.contains(&w) {
        return Err(not_understood(format!(
            "\"{w}\": the agents here read and analyse the data; none changes it"
        )));
    }
    if NEGATIONS.contains(&w) {
        return Err(not_understood(format!(
            "\"{w}\": a goal cannot exclude values; name the regions, countries, product lines or channels to include"
        )));
    }
    if UNSUPPORTED.contains(&w) {
        return Err(not_understood(format!(
            "\"{w}\" is not something the agents here make; they deliver a report (HTML and Markdown), charts, an executive summary, metrics, the data{}",
            offered(vocab)
        )));
    }
    if !w.chars().all(char::is_alphabetic) {
        return Ok(());
    }
    if let Some(field) = next.filter(|n| matches!(*n, "region" | "country" | "channel")) {
        let known = catalog
            .values
            .get(field)
            .map(|v| v.join(", "))
            .unwrap_or_default();
        return Err(not_understood(format!(
            "\"{w} {field}\" is not in the data; known values: {known}"
        )));
    }
    let capitalized = at > 0 && original.chars().next().is_some_and(char::is_uppercase);
    if capitalized || matches!(prev, Some("for" | "in")) {
        let known = |f: &str| {
            catalog
                .values
                .get(f)
                .map(|v| v.join(", "))
                .unwrap_or_default()
        };
        return Err(not_understood(format!(
            "\"{original}\" is not a region, country, product line or channel in the data (regions: {}; countries: {}; product lines: {}; channels: {})",
            known("region"),
            known("country"),
            known("product_line"),
            known("channel")
        )));
    }
    Ok(())
}

/// The words a misspelling may be corrected to: deliverables, the agents'
/// words, months, dimensions, one-word values and aliases of the data.
struct Lexicon {
    words: Vec<String>,
}

impl Lexicon {
    fn new(catalog: &Catalog, vocab: &Vocabulary) -> Self {
        let mut words: Vec<String> = DELIVERABLE_WORDS
            .iter()
            .map(|(w, _)| (*w).to_string())
            .collect();
        words.extend(vocab.single_words());
        words.extend(MONTHS.iter().map(|(long, _, _)| (*long).to_string()));
        words.extend(
            [
                "month", "week", "region", "country", "product", "channel", "quarter", "summary",
            ]
            .iter()
            .map(|w| (*w).to_string()),
        );
        for values in catalog.values.values() {
            for v in values {
                let t = tokens(v);
                if let [one] = t.as_slice() {
                    words.push(one.clone());
                }
            }
        }
        words.extend(ALIASES.iter().map(|(a, _, _)| (*a).to_string()));
        words.sort();
        words.dedup();
        Self { words }
    }

    /// The known word `w` is most likely a misspelling of: the nearest
    /// within one edit up to 7 letters, two from 8. Words under five letters
    /// are never corrected: "date" is not a misspelled "data".
    fn correct(&self, w: &str) -> Option<String> {
        let len = w.chars().count();
        if len < 5 || !w.chars().all(char::is_alphabetic) {
            return None;
        }
        let allowed = if len >= 8 { 2 } else { 1 };
        self.words
            .iter()
            .map(|c| (strsim::damerau_levenshtein(w, c), c))
            .filter(|(d, _)| *d > 0 && *d <= allowed)
            .min_by_key(|(d, _)| *d)
            .map(|(_, c)| c.clone())
    }
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
