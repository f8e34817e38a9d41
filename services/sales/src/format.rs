//! How figures are written: money, counts, percentages and percentage
//! points. The summary, the report and the charts all write through these,
//! and [`crate::faithfulness`] reads the same forms back.

/// Money as agentmesh writes it, and [`crate::faithfulness::figures`] reads it back: `$1.20B`,
/// `$12.35M`, `$412.5k`, `$950`.
pub fn money(x: f64) -> String {
    let a = x.abs();
    let s = if a >= 1e9 {
        format!("${:.2}B", a / 1e9)
    } else if a >= 1e6 {
        format!("${:.2}M", a / 1e6)
    } else if a >= 1e3 {
        format!("${:.1}k", a / 1e3)
    } else {
        format!("${a:.0}")
    };
    if x < 0.0 { format!("-{s}") } else { s }
}

/// A count with thousands separators: `16194.0` → `"16,194"`.
pub fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

/// A change in percent with its sign: `+8.2%`, `-3.1%`.
pub fn signed_pct(x: f64) -> String {
    format!("{x:+.1}%")
}

/// A share or margin in percent: `41.3%`.
pub fn pct(x: f64) -> String {
    format!("{x:.1}%")
}

/// A change in percentage points with its sign: `+1.2 pts`.
pub fn pts(x: f64) -> String {
    format!("{x:+.1} pts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_written_as_the_faithfulness_check_reads_them() {
        assert_eq!(money(1_204_000_000.0), "$1.20B");
        assert_eq!(money(12_345_678.0), "$12.35M");
        assert_eq!(money(4_500.0), "$4.5k");
        assert_eq!(money(-12.0), "-$12");
        assert_eq!(thousands(16_194.0), "16,194");
        assert_eq!(thousands(-1_234_567.0), "-1,234,567");
        assert_eq!(signed_pct(8.24), "+8.2%");
        assert_eq!(signed_pct(-3.1), "-3.1%");
        assert_eq!(pct(41.26), "41.3%");
        assert_eq!(pts(-0.44), "-0.4 pts");
    }
}
