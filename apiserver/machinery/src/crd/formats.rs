//! String `format`s checked in custom resources (the `strfmt.Default` registry upstream uses:
//! date, date-time, byte, uuid*, ipv4, ipv6, cidr, mac, hostname, email, uri, duration,
//! hexcolor, rgbcolor, bsonobjectid). Unknown formats and numeric formats (`int32`, `int64`,
//! `float`, `double`) are accepted without a check, as upstream does.

use std::net::{Ipv4Addr, Ipv6Addr};

use base64::Engine;

fn all_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_uuid(s: &str, version: Option<u8>) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    if parts.len() != 5
        || parts
            .iter()
            .zip(lens)
            .any(|(p, l)| p.len() != l || !all_hex(p))
    {
        return false;
    }
    match version {
        None => true,
        Some(v) => {
            let ver_ok = parts[2].as_bytes()[0] == b'0' + v;
            let variant_ok = matches!(
                parts[3].as_bytes()[0].to_ascii_lowercase(),
                b'8' | b'9' | b'a' | b'b'
            );
            ver_ok && variant_ok
        }
    }
}

fn is_date(s: &str) -> bool {
    s.len() == 10 && s.parse::<jiff::civil::Date>().is_ok() && s.as_bytes()[4] == b'-'
}

fn is_date_time(s: &str) -> bool {
    // RFC 3339 with a zone offset or Z (strfmt also accepts a few variants of the same).
    s.len() >= 20 && s.parse::<jiff::Timestamp>().is_ok()
}

fn is_hostname(s: &str) -> bool {
    if s.is_empty() || s.len() > 255 {
        return false;
    }
    s.trim_end_matches('.').split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

fn is_mac(s: &str) -> bool {
    let groups_ok = |sep: char, glen: usize| {
        let g: Vec<&str> = s.split(sep).collect();
        matches!(g.len(), 6 | 8 | 20) && g.iter().all(|p| p.len() == glen && all_hex(p))
    };
    groups_ok(':', 2) || groups_ok('-', 2) || {
        let g: Vec<&str> = s.split('.').collect();
        matches!(g.len(), 3 | 4 | 10) && g.iter().all(|p| p.len() == 4 && all_hex(p))
    }
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    (ip.parse::<Ipv4Addr>().is_ok() && bits <= 32)
        || (ip.parse::<Ipv6Addr>().is_ok() && bits <= 128)
}

fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    !scheme.is_empty()
        && scheme.as_bytes()[0].is_ascii_alphabetic()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !rest.contains(' ')
}

fn is_email(s: &str) -> bool {
    match s.rsplit_once('@') {
        Some((local, domain)) => !local.is_empty() && is_hostname(domain) && !s.contains(' '),
        None => false,
    }
}

/// strfmt's duration: a sequence of `<number><unit>` with optional spaces, units from
/// ns to weeks (`1h30m`, `3 days`, `2w`).
fn is_duration(s: &str) -> bool {
    let units = [
        "ns", "us", "µs", "ms", "s", "m", "h", "d", "w", "sec", "secs", "second", "seconds", "min",
        "mins", "minute", "minutes", "hour", "hours", "hr", "day", "days", "week", "weeks", "wk",
    ];
    let mut rest = s.trim();
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return false;
        }
        rest = rest[num_end..].trim_start();
        let unit_end = rest
            .find(|c: char| !c.is_alphabetic() && c != 'µ')
            .unwrap_or(rest.len());
        if !units.contains(&&rest[..unit_end]) {
            return false;
        }
        rest = rest[unit_end..].trim_start();
    }
    true
}

fn is_hexcolor(s: &str) -> bool {
    s.strip_prefix('#')
        .is_some_and(|h| (h.len() == 3 || h.len() == 6) && all_hex(h))
}

fn is_rgbcolor(s: &str) -> bool {
    let Some(inner) = s.strip_prefix("rgb(").and_then(|r| r.strip_suffix(')')) else {
        return false;
    };
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    parts.len() == 3 && parts.iter().all(|p| p.parse::<u8>().is_ok())
}

/// Whether `s` is a valid value of `format` (true for formats not checked).
pub(super) fn check_format(format: &str, s: &str) -> bool {
    match format {
        "date" => is_date(s),
        "date-time" | "datetime" => is_date_time(s),
        "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        "uuid" => is_uuid(s, None),
        "uuid3" => is_uuid(s, Some(3)),
        "uuid4" => is_uuid(s, Some(4)),
        "uuid5" => is_uuid(s, Some(5)),
        "ipv4" => s.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<Ipv6Addr>().is_ok(),
        "cidr" => is_cidr(s),
        "mac" => is_mac(s),
        "hostname" => is_hostname(s),
        "email" => is_email(s),
        "uri" => is_uri(s),
        "duration" => is_duration(s),
        "hexcolor" => is_hexcolor(s),
        "rgbcolor" => is_rgbcolor(s),
        "bsonobjectid" => s.len() == 24 && all_hex(s),
        _ => true,
    }
}
