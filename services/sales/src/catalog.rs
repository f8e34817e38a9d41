//! What the data looks like, as a skill producing [`crate::kinds::SCHEMA`]
//! describes it: the values of each filter field and the dates covered.
//! The goal front-end resolves periods and filters against it.

use std::collections::BTreeMap;

use serde_json::Value;
use time::Date;
use time::macros::format_description;

/// Filter fields read from the description: (output key, filter field).
const FIELDS: [(&str, &str); 4] = [
    ("regions", "region"),
    ("countries", "country"),
    ("product_lines", "product_line"),
    ("channels", "channel"),
];

/// The data's dimensions and dates.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    /// Filter field → known values (`region`, `country`, `product_line`, `channel`).
    pub values: BTreeMap<String, Vec<String>>,
    /// First day with data.
    pub first_date: Date,
    /// Last day of the last complete month.
    pub complete_through: Date,
    /// Last day with data.
    pub last_date: Date,
}

impl Catalog {
    /// Reads a `sales.schema` output.
    pub fn from_output(v: &Value) -> Result<Self, String> {
        let fmt = format_description!("[year]-[month]-[day]");
        let date = |key: &str| -> Result<Date, String> {
            let s = v[key].as_str().ok_or_else(|| format!("{key} is missing"))?;
            Date::parse(s, fmt).map_err(|e| format!("{key} {s:?}: {e}"))
        };
        let mut values = BTreeMap::new();
        for (key, field) in FIELDS {
            let list: Vec<String> = v[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            values.insert(field.to_string(), list);
        }
        Ok(Self {
            values,
            first_date: date("first_date")?,
            complete_through: date("complete_through")?,
            last_date: date("last_date")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::date;

    #[test]
    fn a_description_is_read_and_a_missing_date_named() {
        let out = json!({
            "regions": ["Europe"], "channels": ["Online", 3],
            "first_date": "2023-01-01", "complete_through": "2025-06-30", "last_date": "2025-07-04"
        });
        let c = Catalog::from_output(&out).unwrap();
        assert_eq!(c.values["region"], ["Europe"]);
        assert_eq!(c.values["channel"], ["Online"], "non-strings are skipped");
        assert!(c.values["country"].is_empty());
        assert_eq!(c.complete_through, date!(2025 - 06 - 30));
        let err = Catalog::from_output(&json!({"first_date": "2023-01-01"})).unwrap_err();
        assert!(err.contains("complete_through"), "{err}");
    }
}
