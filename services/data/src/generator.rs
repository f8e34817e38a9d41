//! A deterministic, seeded generator of a realistic sales history.
//!
//! 2023-01-01 to 2025-06-30, about 260,000 order lines at scale 1, with what
//! a report should find: Q4 seasonality and a summer dip, different growth
//! by region (Asia Pacific fastest), a weak region (Latin America declines
//! through 2025, sharply in Brazil in June 2025), a product launch (Nimbus
//! Tab 11, a new Tablets line, from 2025-03-15), and anomalies (a bulk
//! partner deal in Germany on 2025-05-20; a deep-discount promotion in Japan
//! in late November 2024).

use std::path::Path;

use rusqlite::{Connection, params};
use time::macros::date;
use time::{Date, Weekday};

/// First day of the generated history.
pub const START: Date = date!(2023 - 01 - 01);
/// Last day of the generated history.
pub const END: Date = date!(2025 - 06 - 30);
/// Generator version, stored in the database's meta table.
pub const VERSION: &str = "1";

/// The `sales` table every source exposes (CSV files use these headers).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sales (
    order_id     INTEGER NOT NULL,
    order_date   TEXT    NOT NULL,
    region       TEXT    NOT NULL,
    country      TEXT    NOT NULL,
    product_line TEXT    NOT NULL,
    product      TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    units        INTEGER NOT NULL,
    unit_price   REAL    NOT NULL,
    discount     REAL    NOT NULL,
    revenue      REAL    NOT NULL,
    cost         REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// Index created after loading.
pub const INDEX: &str = "CREATE INDEX IF NOT EXISTS sales_by_date ON sales (order_date);";

struct Product {
    line: &'static str,
    name: &'static str,
    price: f64,
    cost: f64,
    weight: f64,
    launched: Option<Date>,
}

const CATALOG: &[Product] = &[
    p("Laptops", "AeroBook 13", 1299.0, 905.0, 10.0),
    p("Laptops", "AeroBook Pro 16", 2399.0, 1640.0, 5.0),
    p("Laptops", "WorkMate 14", 899.0, 655.0, 9.0),
    p("Monitors", "ClearView 27", 329.0, 214.0, 9.0),
    p("Monitors", "ClearView 32 4K", 649.0, 433.0, 4.0),
    p("Accessories", "Dock Pro", 229.0, 118.0, 8.0),
    p("Accessories", "Silent Keyboard", 89.0, 37.0, 12.0),
    p("Accessories", "Precision Mouse", 59.0, 22.0, 14.0),
    p("Software", "Secure Suite", 149.0, 21.0, 7.0),
    p("Software", "Cloud Backup", 99.0, 16.0, 6.0),
    p("Services", "Extended Warranty", 199.0, 61.0, 6.0),
    p("Services", "Onsite Setup", 149.0, 92.0, 3.0),
    Product {
        line: "Tablets",
        name: "Nimbus Tab 11",
        price: 699.0,
        cost: 468.0,
        weight: 11.0,
        launched: Some(date!(2025 - 03 - 15)),
    },
];

const fn p(line: &'static str, name: &'static str, price: f64, cost: f64, weight: f64) -> Product {
    Product {
        line,
        name,
        price,
        cost,
        weight,
        launched: None,
    }
}

struct Country {
    region: &'static str,
    name: &'static str,
    daily_orders: f64,
}

const fn c(region: &'static str, name: &'static str, daily_orders: f64) -> Country {
    Country {
        region,
        name,
        daily_orders,
    }
}

const COUNTRIES: &[Country] = &[
    c("North America", "United States", 60.0),
    c("North America", "Canada", 9.0),
    c("North America", "Mexico", 5.0),
    c("Europe", "Germany", 14.0),
    c("Europe", "United Kingdom", 12.0),
    c("Europe", "France", 10.0),
    c("Europe", "Spain", 5.0),
    c("Europe", "Netherlands", 5.0),
    c("Asia Pacific", "Japan", 9.0),
    c("Asia Pacific", "Australia", 6.0),
    c("Asia Pacific", "Singapore", 4.0),
    c("Asia Pacific", "India", 6.0),
    c("Latin America", "Brazil", 7.0),
    c("Latin America", "Argentina", 3.0),
    c("Latin America", "Chile", 2.0),
    c("Middle East & Africa", "United Arab Emirates", 3.0),
    c("Middle East & Africa", "South Africa", 3.0),
    c("Middle East & Africa", "Saudi Arabia", 2.0),
];

/// Yearly multiplier on order volume by region and year.
fn growth(region: &str, year: i32) -> f64 {
    let yearly: &[f64] = match region {
        "North America" => &[1.0, 1.10, 1.21],
        "Europe" => &[1.0, 1.07, 1.16],
        "Asia Pacific" => &[1.0, 1.22, 1.50],
        // Weak region: grows in 2024, falls back in 2025.
        "Latin America" => &[1.0, 1.06, 0.84],
        _ => &[1.0, 1.12, 1.26],
    };
    let idx = usize::try_from(year - START.year()).unwrap_or(0);
    yearly.get(idx).copied().unwrap_or(1.0)
}

/// Seasonality by month (1..=12).
const SEASON: [f64; 12] = [
    0.86, 0.84, 0.97, 0.95, 1.0, 1.02, 0.88, 0.9, 1.04, 1.06, 1.22, 1.36,
];

/// Generates the history into `path` (scale 1 ≈ 260,000 lines). Writes to a
/// temporary file next to it and renames, so a crash never leaves a
/// half-written database behind. Returns the number of lines.
pub fn generate(path: &Path, scale: f64, seed: u64) -> Result<u64, rusqlite::Error> {
    // Unique per process and call: replicas sharing a data folder may
    // generate at the same time; the first rename wins, the data is equal.
    let tmp = path.with_extension(format!(
        "generating-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut conn = Connection::open(&tmp)?;
    conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")?;
    conn.execute_batch(SCHEMA)?;
    let rows = fill(&mut conn, scale, seed)?;
    conn.execute_batch(INDEX)?;
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('generator', ?1), ('seed', ?2), ('rows', ?3)",
        params![VERSION, seed.to_string(), rows.to_string()],
    )?;
    drop(conn);
    std::fs::rename(&tmp, path).map_err(|e| {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!("rename generated database: {e}")),
        )
    })?;
    Ok(rows)
}

/// Fills `sales` in `conn` (one transaction) and returns the number of lines.
pub fn fill(conn: &mut Connection, scale: f64, seed: u64) -> Result<u64, rusqlite::Error> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let tx = conn.transaction()?;
    let mut rows = 0u64;
    {
        let mut insert = tx.prepare(
            "INSERT INTO sales (order_id, order_date, region, country, product_line, product,
                                channel, units, unit_price, discount, revenue, cost)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        let mut order_id = 100_000u64;
        let mut day = START;
        while day <= END {
            let date_text = day.to_string();
            let month = usize::from(u8::from(day.month())) - 1;
            let weekend = matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday);
            for country in COUNTRIES {
                let mut rate = country.daily_orders
                    * scale
                    * SEASON[month]
                    * growth(country.region, day.year())
                    * if weekend { 0.62 } else { 1.0 };
                if country.name == "Brazil" && day >= date!(2025 - 06 - 01) {
                    rate *= 0.4; // supply disruption
                }
                let orders = poisson_ish(&mut rng, rate);
                for _ in 0..orders {
                    order_id += 1;
                    let channel = pick_channel(&mut rng, weekend);
                    let lines = 1 + usize::from(rng.f64() < 0.45) + usize::from(rng.f64() < 0.15);
                    for _ in 0..lines {
                        let product = pick_product(&mut rng, day);
                        let mut units: i64 = match channel {
                            "Partner" => rng.i64(3..=20),
                            _ => rng.i64(1..=3),
                        };
                        let mut discount = match channel {
                            "Partner" => 0.08 + rng.f64() * 0.10,
                            "Online" => rng.f64() * 0.08,
                            _ => rng.f64() * 0.05,
                        };
                        if country.name == "Japan"
                            && day >= date!(2024 - 11 - 22)
                            && day <= date!(2024 - 11 - 30)
                        {
                            discount = 0.40; // promotion week
                            units += 1;
                        }
                        insert_line(
                            &mut insert,
                            order_id,
                            &date_text,
                            country,
                            product,
                            channel,
                            units,
                            discount,
                            &mut rng,
                        )?;
                        rows += 1;
                    }
                }
            }
            if day == date!(2025 - 05 - 20) {
                // One bulk partner deal: the anomaly a report should flag.
                order_id += 1;
                let de = &COUNTRIES[3];
                let pro = &CATALOG[1];
                let units = (400.0 * scale).round().max(1.0) as i64;
                insert_line(
                    &mut insert,
                    order_id,
                    &date_text,
                    de,
                    pro,
                    "Partner",
                    units,
                    0.22,
                    &mut rng,
                )?;
                rows += 1;
            }
            match day.next_day() {
                Some(next) => day = next,
                None => break,
            }
        }
    }
    tx.commit()?;
    Ok(rows)
}

#[allow(clippy::too_many_arguments)]
fn insert_line(
    insert: &mut rusqlite::Statement<'_>,
    order_id: u64,
    date: &str,
    country: &Country,
    product: &Product,
    channel: &str,
    units: i64,
    discount: f64,
    rng: &mut fastrand::Rng,
) -> Result<(), rusqlite::Error> {
    let price = round2(product.price * (0.97 + rng.f64() * 0.06));
    let discount = round2(discount * 100.0) / 100.0;
    let revenue = round2(units as f64 * price * (1.0 - discount));
    let cost = round2(units as f64 * product.cost * (0.98 + rng.f64() * 0.04));
    insert.execute(params![
        i64::try_from(order_id).unwrap_or(i64::MAX),
        date,
        country.region,
        country.name,
        product.line,
        product.name,
        channel,
        units,
        price,
        discount,
        revenue,
        cost
    ])?;
    Ok(())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A non-negative integer with mean `rate` (normal approximation, fine for
/// the rates used here).
fn poisson_ish(rng: &mut fastrand::Rng, rate: f64) -> u64 {
    let noise = (rng.f64() + rng.f64() + rng.f64() - 1.5) * 2.0; // ~N(0,1)
    let x = rate + noise * rate.sqrt();
    // Truncation after rounding is the intent.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = x.round().max(0.0) as u64;
    n
}

fn pick_channel(rng: &mut fastrand::Rng, weekend: bool) -> &'static str {
    let x = rng.f64();
    if weekend {
        if x < 0.62 {
            "Online"
        } else if x < 0.92 {
            "Retail"
        } else {
            "Partner"
        }
    } else if x < 0.43 {
        "Online"
    } else if x < 0.72 {
        "Retail"
    } else {
        "Partner"
    }
}

fn pick_product(rng: &mut fastrand::Rng, day: Date) -> &'static Product {
    let available = |p: &&Product| p.launched.is_none_or(|d| day >= d);
    let total: f64 = CATALOG.iter().filter(available).map(|p| p.weight).sum();
    let mut x = rng.f64() * total;
    for product in CATALOG.iter().filter(available) {
        if x < product.weight {
            return product;
        }
        x -= product.weight;
    }
    &CATALOG[0]
}
