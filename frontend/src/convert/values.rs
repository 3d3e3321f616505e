//! Value parsing and formatting for image-config instructions (EXPOSE,
//! STOPSIGNAL, HEALTHCHECK history).

use super::util;
use crate::instructions::{format_go_duration, HealthCmd};

/// Go `strconv.QuoteRune` for a small integer (history of HEALTHCHECK).
fn go_quote_rune(n: i64) -> String {
    match u32::try_from(n).ok().and_then(char::from_u32) {
        Some(c) if (' '..='~').contains(&c) && c != '\'' && c != '\\' => format!("'{c}'"),
        Some('\'') => "'\\''".into(),
        Some('\\') => "'\\\\'".into(),
        Some('\x07') => "'\\a'".into(),
        Some('\x08') => "'\\b'".into(),
        Some('\x0c') => "'\\f'".into(),
        Some('\n') => "'\\n'".into(),
        Some('\r') => "'\\r'".into(),
        Some('\t') => "'\\t'".into(),
        Some('\x0b') => "'\\v'".into(),
        Some(c) if (c as u32) < 0x80 => format!("'\\x{:02x}'", c as u32),
        Some(c) => {
            let q = crate::parser::go_quote(&c.to_string());
            format!("'{}'", &q[1..q.len() - 1])
        }
        None => format!("%!q(int={n})"),
    }
}

pub(super) fn health_history(h: &HealthCmd) -> String {
    format!(
        "HEALTHCHECK &{{{} {:?} {:?} {:?} {:?} {}}}",
        util::go_quote_list(&h.test),
        format_go_duration(h.interval),
        format_go_duration(h.timeout),
        format_go_duration(h.start_period),
        format_go_duration(h.start_interval),
        go_quote_rune(h.retries)
    )
}

/// docker's `signal.ParseSignal` for Linux: a non-zero number or a known
/// name, with or without `SIG`.
pub(super) fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<i64>() {
        return n != 0;
    }
    let up = s.to_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
        "RTMIN", "RTMAX",
    ];
    if NAMES.contains(&name) {
        return true;
    }
    let rt = |p: &str, max: u32| {
        name.strip_prefix(p)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=max).contains(&n))
    };
    rt("RTMIN+", 15) || rt("RTMAX-", 14)
}

/// BuildKit's `splitParts`: `[ip:][host:]container` into its three parts
/// (an IPv6 address keeps its colons and brackets).
pub(super) fn split_port_parts(raw: &str) -> (&str, &str, &str) {
    let parts: Vec<&str> = raw.split(':').collect();
    let n = parts.len();
    let container = parts[n - 1];
    match n {
        1 => ("", "", container),
        2 => ("", parts[0], container),
        3 => (parts[0], parts[1], container),
        _ => {
            // Everything before the last two parts is the address.
            let ip_len = parts[..n - 2].iter().map(|p| p.len() + 1).sum::<usize>() - 1;
            (&raw[..ip_len], parts[n - 2], container)
        }
    }
}

/// `lo-hi` or `p` as a port range.
fn port_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.parse::<u16>().ok()?, b.parse::<u16>().ok()?),
        None => {
            let p = s.parse::<u16>().ok()?;
            (p, p)
        }
    };
    (lo <= hi).then_some((lo, hi))
}

/// Parse one EXPOSE spec (`[ip:][host:]port[-end][/proto]`) into
/// `port/proto` entries, with BuildKit's messages. The address and host
/// port are checked and then dropped, as BuildKit does.
pub(super) fn parse_ports(spec: &str) -> Result<Vec<String>, String> {
    let (ip, host, container) = split_port_parts(spec);
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty() {
        return Err(format!("no port specified: {spec}<empty>"));
    }
    let proto = match proto.to_lowercase().as_str() {
        "" => "tcp".to_string(),
        p @ ("tcp" | "udp" | "sctp") => p.to_string(),
        p => return Err(format!("invalid proto: {p}")),
    };
    if !ip.is_empty() {
        let bare = match ip.strip_prefix('[') {
            Some(rest) => rest
                .strip_suffix(']')
                .ok_or_else(|| format!("invalid IP address {ip}"))?,
            None => ip,
        };
        if bare.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("invalid IP address: {bare}"));
        }
    }
    let (lo, hi) = port_range(port).ok_or_else(|| format!("invalid containerPort: {port}"))?;
    if !host.is_empty() {
        let (hlo, hhi) = port_range(host).ok_or_else(|| format!("invalid hostPort: {host}"))?;
        if hhi - hlo != hi - lo && hi != lo {
            return Err(format!(
                "invalid ranges specified for container and host Ports: {port} and {host}"
            ));
        }
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_ports("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(parse_ports("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(parse_ports("1-2/tcp").unwrap(), vec!["1/tcp", "2/tcp"]);
        assert!(parse_ports("x").is_err());
        assert_eq!(parse_ports("8080:80").unwrap(), vec!["80/tcp"]);
        assert_eq!(
            parse_ports("127.0.0.1:8080:80/udp").unwrap(),
            vec!["80/udp"]
        );
        assert_eq!(parse_ports("[::1]:8080:80").unwrap(), vec!["80/tcp"]);
        assert_eq!(parse_ports("::1:8080:80").unwrap(), vec!["80/tcp"]);
        assert_eq!(
            parse_ports("300.1.1.1:80:80").unwrap_err(),
            "invalid IP address: 300.1.1.1"
        );
        assert_eq!(parse_ports("x:80").unwrap_err(), "invalid hostPort: x");
        assert_eq!(
            parse_ports("1-3:1-2").unwrap_err(),
            "invalid ranges specified for container and host Ports: 1-2 and 1-3"
        );
        assert_eq!(split_port_parts("a:b:c:d"), ("a:b", "c", "d"));
    }

    #[test]
    fn quote_rune() {
        assert_eq!(go_quote_rune(3), "'\\x03'");
        assert_eq!(go_quote_rune(0), "'\\x00'");
        assert_eq!(go_quote_rune(65), "'A'");
    }
}
