//! Go `time.Duration` parsing and formatting (HEALTHCHECK intervals, history).

/// Parse a Go duration string (`1m30s`, `500ms`, `1.5h`) into nanoseconds.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += n * mult;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let v = total.round() as i64;
    Some(if neg { -v } else { v })
}

fn frac(v: u64, prec: u32) -> String {
    // v has `prec` fractional digits.
    let div = 10u64.pow(prec);
    let (int, mut f) = (v / div, v % div);
    if f == 0 {
        return int.to_string();
    }
    let mut digits = prec as usize;
    while f % 10 == 0 {
        f /= 10;
        digits -= 1;
    }
    format!("{int}.{f:0digits$}")
}

/// Go's `Duration.String()`.
pub fn format_go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 3));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 6));
    }
    let secs_total = u / 1_000_000_000;
    let sub = u % 1_000_000_000;
    let h = secs_total / 3600;
    let m = (secs_total % 3600) / 60;
    let s = frac((secs_total % 60) * 1_000_000_000 + sub, 9);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}s")
    } else {
        format!("{sign}{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for (s, ns, f) in [
            ("5s", 5_000_000_000, "5s"),
            ("1m30s", 90_000_000_000, "1m30s"),
            ("5m", 300_000_000_000, "5m0s"),
            ("1h", 3_600_000_000_000, "1h0m0s"),
            ("500ms", 500_000_000, "500ms"),
            ("1.5s", 1_500_000_000, "1.5s"),
            ("0s", 0, "0s"),
        ] {
            assert_eq!(parse_go_duration(s), Some(ns), "{s}");
            assert_eq!(format_go_duration(ns), f, "{s}");
        }
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("x"), None);
    }
}
