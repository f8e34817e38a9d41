//! Reporting periods: one type for the whole sales domain, its canonical
//! form (the goal front-end writes it, the data agent reads it), its label,
//! and its comparison periods.
//!
//! Accepted forms: `2025-Q2`, `Q2 2025`, `Q2` (the latest complete Q2 in the
//! source), `2025-H1`, `H1` (latest complete), `2025` (a year), `2025-04`
//! (a month), `2025-04..2025-06` (a month range), and
//! `2025-04-01..2025-06-30` (explicit dates, inclusive).

use std::ops::RangeInclusive;

use serde::Serialize;
use time::{Date, Month};

/// Years a period may fall in, wherever a period is read.
pub const YEARS: RangeInclusive<i32> = 1900..=2200;

/// `s` as a year: four digits within [`YEARS`].
pub fn year_of(s: &str) -> Option<i32> {
    s.parse::<i32>()
        .ok()
        .filter(|y| s.len() == 4 && YEARS.contains(y))
}

/// English month names, January first.
pub const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A closed range of days with a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    /// First day.
    pub start: Date,
    /// Last day, inclusive.
    pub end: Date,
    /// What kind of period this is, for comparison periods and labels.
    #[serde(skip)]
    pub kind: PeriodKind,
}

/// The shape of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodKind {
    /// Calendar quarter 1..=4.
    Quarter(u8),
    /// Half year 1..=2.
    Half(u8),
    /// A calendar year.
    Year,
    /// Whole months (count), as asked for: "April to June" stays a month
    /// range rather than becoming Q2.
    Months(u8),
    /// Arbitrary days.
    Days,
}

/// Why a period string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PeriodError(pub String);

fn err(msg: impl Into<String>) -> PeriodError {
    PeriodError(msg.into())
}

fn month(m: u8) -> Result<Month, PeriodError> {
    Month::try_from(m).map_err(|_| err(format!("month {m} does not exist; use 1 to 12")))
}

fn ymd(y: i32, m: u8, d: u8) -> Result<Date, PeriodError> {
    Date::from_calendar_date(y, month(m)?, d)
        .map_err(|_| err(format!("{y:04}-{m:02}-{d:02} is not a date")))
}

fn month_end(y: i32, m: u8) -> Result<Date, PeriodError> {
    let mo = month(m)?;
    ymd(y, m, mo.length(y))
}

impl Period {
    /// Months `first..=last` of year `y`.
    pub fn months(y: i32, first: u8, last: u8) -> Result<Self, PeriodError> {
        // Both are checked before any arithmetic on them.
        month(first)?;
        month(last)?;
        if first > last {
            return Err(err(format!("month range {first}..{last} runs backwards")));
        }
        let count = last - first + 1;
        let kind = match (first, count) {
            (1 | 4 | 7 | 10, 3) => PeriodKind::Quarter(first / 3 + 1),
            (1 | 7, 6) => PeriodKind::Half(first / 6 + 1),
            (1, 12) => PeriodKind::Year,
            _ => PeriodKind::Months(count),
        };
        Ok(Self {
            start: ymd(y, first, 1)?,
            end: month_end(y, last)?,
            kind,
        })
    }

    /// Months `first..=last` of year `y`, kept as a month range whatever
    /// its shape (see [`Period::months`] for the one that recognises
    /// quarters, halves and years).
    pub fn month_range(y: i32, first: u8, last: u8) -> Result<Self, PeriodError> {
        let mut p = Self::months(y, first, last)?;
        p.kind = PeriodKind::Months(last - first + 1);
        Ok(p)
    }

    /// The days `start..=end`.
    pub fn days_between(start: Date, end: Date) -> Result<Self, PeriodError> {
        days(start, end)
    }

    /// Quarter `q` of year `y`.
    pub fn quarter(y: i32, q: u8) -> Result<Self, PeriodError> {
        if !(1..=4).contains(&q) {
            return Err(err(format!("Q{q} does not exist; quarters are Q1 to Q4")));
        }
        Self::months(y, q * 3 - 2, q * 3)
    }

    /// Half `h` of year `y`.
    pub fn half(y: i32, h: u8) -> Result<Self, PeriodError> {
        if !(1..=2).contains(&h) {
            return Err(err(format!("H{h} does not exist; halves are H1 and H2")));
        }
        Self::months(y, h * 6 - 5, h * 6)
    }

    /// Human label: "Q2 2025", "H1 2025", "2025", "April 2025",
    /// "April–June 2025", "2025-04-01 to 2025-05-15".
    pub fn label(&self) -> String {
        let y = self.start.year();
        let month = |d: Date| MONTH_NAMES[usize::from(u8::from(d.month())) - 1];
        match self.kind {
            PeriodKind::Quarter(q) => format!("Q{q} {y}"),
            PeriodKind::Half(h) => format!("H{h} {y}"),
            PeriodKind::Year => format!("{y}"),
            PeriodKind::Months(1) => format!("{} {y}", month(self.start)),
            PeriodKind::Months(_) => format!("{}–{} {y}", month(self.start), month(self.end)),
            PeriodKind::Days if self.start == self.end => self.start.to_string(),
            PeriodKind::Days => format!("{} to {}", self.start, self.end),
        }
    }

    /// The canonical form [`parse`] reads back to the same days: `2025-Q2`,
    /// `2025-H1`, `2025`, `2025-04`, `2025-04..2025-06`,
    /// `2025-04-01..2025-05-15`.
    pub fn spec(&self) -> String {
        let y = self.start.year();
        let m = u8::from(self.start.month());
        match self.kind {
            PeriodKind::Quarter(q) => format!("{y}-Q{q}"),
            PeriodKind::Half(h) => format!("{y}-H{h}"),
            PeriodKind::Year => format!("{y}"),
            PeriodKind::Months(1) => format!("{y}-{m:02}"),
            PeriodKind::Months(_) => format!("{y}-{m:02}..{y}-{:02}", u8::from(self.end.month())),
            PeriodKind::Days if self.start == self.end => self.start.to_string(),
            PeriodKind::Days => format!("{}..{}", self.start, self.end),
        }
    }

    /// Days in the period.
    pub fn days(&self) -> i64 {
        (self.end - self.start).whole_days() + 1
    }

    /// The period of the same shape just before this one.
    pub fn previous(&self) -> Result<Self, PeriodError> {
        let y = self.start.year();
        let m = u8::from(self.start.month());
        let span = match self.kind {
            PeriodKind::Quarter(_) => 3,
            PeriodKind::Half(_) => 6,
            PeriodKind::Year => 12,
            PeriodKind::Months(n) => n,
            PeriodKind::Days => {
                let len = time::Duration::days(self.days());
                let end = self
                    .start
                    .previous_day()
                    .ok_or_else(|| err("period too early"))?;
                let start = self
                    .start
                    .checked_sub(len)
                    .ok_or_else(|| err("period too early"))?;
                return Ok(Self {
                    start,
                    end,
                    kind: PeriodKind::Days,
                });
            }
        };
        let start_index = i32::from(m) - 1 - i32::from(span) + y * 12;
        let (py, pm) = (start_index.div_euclid(12), start_index.rem_euclid(12) + 1);
        let last_index = start_index + i32::from(span) - 1;
        let (ly, lm) = (last_index.div_euclid(12), last_index.rem_euclid(12) + 1);
        let pm = u8::try_from(pm).map_err(|_| err("month"))?;
        let lm = u8::try_from(lm).map_err(|_| err("month"))?;
        if py == ly {
            // Recomputes the kind: the quarter before Q1 is Q4.
            return Self::months(py, pm, lm);
        }
        Ok(Self {
            start: ymd(py, pm, 1)?,
            end: month_end(ly, lm)?,
            kind: self.kind,
        })
    }

    /// The same period a year earlier.
    pub fn year_ago(&self) -> Result<Self, PeriodError> {
        let shift = |d: Date| -> Result<Date, PeriodError> {
            let y = d.year() - 1;
            let m = d.month();
            let day = d.day().min(m.length(y));
            Date::from_calendar_date(y, m, day).map_err(|_| err("date"))
        };
        Ok(Self {
            start: shift(self.start)?,
            end: shift(self.end)?,
            kind: self.kind,
        })
    }
}

/// Parses a period; `latest_complete_end` is the last day the source has
/// complete data for, used for forms without a year.
pub fn parse(text: &str, latest_complete_end: Date) -> Result<Period, PeriodError> {
    let t = text.trim().to_ascii_uppercase().replace(' ', "-");
    if t.is_empty() {
        return Err(err("period is empty"));
    }
    if let Some((a, b)) = t.split_once("..") {
        return parse_range(a, b);
    }
    let parts: Vec<&str> = t.split('-').filter(|s| !s.is_empty()).collect();
    match parts.as_slice() {
        [p] if p.starts_with('Q') || p.starts_with('H') => latest(p, latest_complete_end),
        [y] => Period::months(year(y).map_err(|_| unrecognised(text))?, 1, 12),
        [a, b] if a.starts_with('Q') || a.starts_with('H') => half_or_quarter(b, a),
        [y, b] if b.starts_with('Q') || b.starts_with('H') => half_or_quarter(y, b),
        [y, m] => {
            let m = num(m, "month")?;
            Period::months(year(y)?, m, m)
        }
        [y, m, d] => {
            let day = ymd(year(y)?, num(m, "month")?, num(d, "day")?)?;
            Ok(Period {
                start: day,
                end: day,
                kind: PeriodKind::Days,
            })
        }
        _ => Err(unrecognised(text)),
    }
}

fn unrecognised(text: &str) -> PeriodError {
    err(format!(
        "period {text:?} is not understood; use e.g. 2025-Q2, Q2, 2025-H1, 2025, 2025-04, \
         2025-04..2025-06 or 2025-04-01..2025-06-30"
    ))
}

fn year(s: &str) -> Result<i32, PeriodError> {
    year_of(s).ok_or_else(|| err(format!("{s:?} is not a year")))
}

fn num(s: &str, what: &str) -> Result<u8, PeriodError> {
    s.parse::<u8>()
        .map_err(|_| err(format!("{s:?} is not a {what}")))
}

fn half_or_quarter(y: &str, p: &str) -> Result<Period, PeriodError> {
    let y = year(y)?;
    let (kind, n) = p.split_at(1);
    let n = num(n, "quarter or half number")?;
    if kind == "Q" {
        Period::quarter(y, n)
    } else {
        Period::half(y, n)
    }
}

fn latest(p: &str, complete_end: Date) -> Result<Period, PeriodError> {
    let (kind, n) = p.split_at(1);
    let n = num(n, "quarter or half number")?;
    let mut y = complete_end.year();
    loop {
        let candidate = if kind == "Q" {
            Period::quarter(y, n)?
        } else {
            Period::half(y, n)?
        };
        if candidate.end <= complete_end {
            return Ok(candidate);
        }
        y -= 1;
    }
}

fn parse_range(a: &str, b: &str) -> Result<Period, PeriodError> {
    let pa: Vec<&str> = a.split('-').collect();
    let pb: Vec<&str> = b.split('-').collect();
    match (pa.as_slice(), pb.as_slice()) {
        ([y1, m1], [y2, m2]) => {
            let (y1, y2) = (year(y1)?, year(y2)?);
            let (m1, m2) = (num(m1, "month")?, num(m2, "month")?);
            if y1 == y2 {
                Period::months(y1, m1, m2)
            } else {
                let start = ymd(y1, m1, 1)?;
                let end = month_end(y2, m2)?;
                days(start, end)
            }
        }
        ([y1, m1, d1], [y2, m2, d2]) => days(
            ymd(year(y1)?, num(m1, "month")?, num(d1, "day")?)?,
            ymd(year(y2)?, num(m2, "month")?, num(d2, "day")?)?,
        ),
        _ => Err(unrecognised(&format!("{a}..{b}"))),
    }
}

fn days(start: Date, end: Date) -> Result<Period, PeriodError> {
    if start > end {
        return Err(err(format!("period {start}..{end} ends before it starts")));
    }
    Ok(Period {
        start,
        end,
        kind: PeriodKind::Days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const END: Date = date!(2025 - 06 - 30);

    #[test]
    fn parses_every_form() {
        let q = parse("2025-Q2", END).unwrap();
        assert_eq!(
            (q.start, q.end),
            (date!(2025 - 04 - 01), date!(2025 - 06 - 30))
        );
        assert_eq!(q.label(), "Q2 2025");
        assert_eq!(parse("q2 2025", END).unwrap(), q);
        assert_eq!(parse("Q2", END).unwrap(), q, "latest complete Q2");
        assert_eq!(parse("Q3", END).unwrap().start, date!(2024 - 07 - 01));
        assert_eq!(parse("2025-H1", END).unwrap().end, date!(2025 - 06 - 30));
        assert_eq!(parse("2024", END).unwrap().days(), 366);
        assert_eq!(parse("2025-02", END).unwrap().end, date!(2025 - 02 - 28));
        let r = parse("2025-04..2025-06", END).unwrap();
        assert_eq!(r.kind, PeriodKind::Quarter(2));
        let d = parse("2025-04-15..2025-05-14", END).unwrap();
        assert_eq!(d.days(), 30);
    }

    #[test]
    fn refuses_impossible_periods() {
        for bad in [
            "Q5",
            "2025-Q0",
            "2025-13",
            "2025-02-30",
            "H3",
            "",
            "next week",
            "2025-06..2025-04",
            "2025-00..2025-255",
            "2025-13..2025-14",
            "2025-Q255",
            "2025-H0",
        ] {
            assert!(parse(bad, END).is_err(), "{bad:?} should be refused");
        }
        assert!(parse("Q5", END).unwrap_err().0.contains("Q1 to Q4"));
    }

    #[test]
    fn comparison_periods() {
        let q1 = parse("2025-Q1", END).unwrap();
        let prev = q1.previous().unwrap();
        assert_eq!(
            (prev.start, prev.end),
            (date!(2024 - 10 - 01), date!(2024 - 12 - 31))
        );
        assert_eq!(prev.label(), "Q4 2024");
        let ya = q1.year_ago().unwrap();
        assert_eq!(ya.label(), "Q1 2024");
        let d = parse("2025-04-15..2025-05-14", END).unwrap();
        let p = d.previous().unwrap();
        assert_eq!(
            (p.start, p.end),
            (date!(2025 - 03 - 16), date!(2025 - 04 - 14))
        );
        let leap = parse("2024-02", END).unwrap().year_ago().unwrap();
        assert_eq!(leap.end, date!(2023 - 02 - 28));
    }

    #[test]
    fn the_canonical_form_reads_back_to_the_same_period() {
        let cases = [
            (Period::quarter(2025, 2).unwrap(), "2025-Q2", "Q2 2025"),
            (Period::half(2024, 2).unwrap(), "2024-H2", "H2 2024"),
            (Period::months(2024, 1, 12).unwrap(), "2024", "2024"),
            (Period::months(2025, 3, 3).unwrap(), "2025-03", "March 2025"),
            (
                Period::month_range(2025, 4, 6).unwrap(),
                "2025-04..2025-06",
                "April–June 2025",
            ),
            (
                Period::days_between(date!(2025 - 04 - 01), date!(2025 - 05 - 15)).unwrap(),
                "2025-04-01..2025-05-15",
                "2025-04-01 to 2025-05-15",
            ),
        ];
        for (period, spec, label) in cases {
            assert_eq!(
                (period.spec().as_str(), period.label().as_str()),
                (spec, label)
            );
            let back = parse(spec, END).unwrap();
            assert_eq!((back.start, back.end), (period.start, period.end), "{spec}");
        }
    }

    #[test]
    fn years_are_read_by_one_rule() {
        assert_eq!(year_of("2025"), Some(2025));
        assert_eq!(year_of("1900"), Some(1900));
        for bad in ["1899", "2201", "25", "02025", "x"] {
            assert_eq!(year_of(bad), None, "{bad}");
            assert!(parse(bad, END).is_err(), "{bad}");
        }
    }
}
