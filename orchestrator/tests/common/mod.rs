//! What the goal tests read goals against: a catalog shaped like the
//! embedded data's.

use std::collections::BTreeMap;

use agentmesh_orchestrator::goal::intent::Catalog;
use time::macros::date;

/// Five regions, seven countries, six product lines, three channels, data
/// from 2023-01-01 complete through 2025-06-30.
pub fn catalog() -> Catalog {
    let mut values = BTreeMap::new();
    let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    values.insert(
        "region".into(),
        v(&[
            "Asia Pacific",
            "Europe",
            "Latin America",
            "Middle East & Africa",
            "North America",
        ]),
    );
    values.insert(
        "country".into(),
        v(&[
            "Brazil",
            "Canada",
            "France",
            "Germany",
            "Japan",
            "United Kingdom",
            "United States",
        ]),
    );
    values.insert(
        "product_line".into(),
        v(&[
            "Accessories",
            "Laptops",
            "Monitors",
            "Services",
            "Software",
            "Tablets",
        ]),
    );
    values.insert("channel".into(), v(&["Online", "Partner", "Retail"]));
    Catalog {
        values,
        first_date: date!(2023 - 01 - 01),
        complete_through: date!(2025 - 06 - 30),
        last_date: date!(2025 - 06 - 30),
    }
}
