//! Cron schedules as upstream's CronJob controller reads them (`cron.ParseStandard` of
//! github.com/robfig/cron/v3): five fields (minute hour day-of-month month day-of-week) with
//! ranges, steps, lists and names, the `@yearly`…`@hourly` descriptors and `@every <duration>`,
//! evaluated in a time zone; and upstream's `mostRecentScheduleTime`.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Five fields as bit sets; the star flags say whether day-of-month / day-of-week were `*`.
    Spec {
        /// Minutes 0-59.
        minute: u64,
        /// Hours 0-23.
        hour: u64,
        /// Days of the month 1-31.
        dom: u64,
        /// Months 1-12.
        month: u64,
        /// Days of the week 0-6 (Sunday = 0).
        dow: u64,
        /// Day-of-month was `*`/`?`.
        dom_star: bool,
        /// Day-of-week was `*`/`?`.
        dow_star: bool,
    },
    /// `@every <duration>`: a fixed delay (whole seconds).
    Every(u64),
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DOWS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(s: &str, names: &[&str], one_based: bool) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(u32::try_from(i).unwrap_or(0) + u32::from(one_based));
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("failed to parse int from {s}"));
    }
    s.parse()
        .map_err(|_| format!("failed to parse int from {s}"))
}

/// One field: returns its bits and whether it started with `*`/`?` (robfig's star bit).
fn field(
    expr: &str,
    min: u32,
    max: u32,
    names: &[&str],
    one_based: bool,
) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in expr.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(value(s, &[], false)?)),
            None => (part, None),
        };
        let (mut lo, mut hi, is_star) = if range == "*" || range == "?" {
            (min, max, true)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, names, one_based)?,
                value(b, names, one_based)?,
                false,
            )
        } else {
            let v = value(range, names, one_based)?;
            (v, v, false)
        };
        if step.is_some() && !is_star && !range.contains('-') {
            hi = max;
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(format!("step of range should be a positive number: {part}"));
        }
        if lo < min || hi > max || lo > hi {
            return Err(format!("out of range: {part}"));
        }
        if is_star && step == 1 {
            star = true;
        }
        while lo <= hi {
            bits |= 1 << lo;
            lo += step;
        }
    }
    Ok((bits, star))
}

fn parse_every(d: &str) -> Result<u64, String> {
    // Go duration syntax, whole units: `1h30m`, `90s`, `5m`.
    let mut total = 0u64;
    let mut num = String::new();
    for c in d.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| format!("invalid duration {d}"))?;
        num.clear();
        total = total.saturating_add(match c {
            'h' => n.saturating_mul(3600),
            'm' => n.saturating_mul(60),
            's' => n,
            _ => return Err(format!("invalid duration {d}")),
        });
    }
    if !num.is_empty() || total == 0 {
        return Err(format!("invalid duration {d}"));
    }
    Ok(total)
}

impl Schedule {
    /// `cron.ParseStandard`.
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with("@every ") => {
                return parse_every(s.trim_start_matches("@every ").trim()).map(Schedule::Every);
            }
            s if s.starts_with('@') => return Err(format!("unrecognized descriptor: {s}")),
            s => s,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!("expected exactly 5 fields, found {}", f.len()));
        }
        let (minute, _) = field(f[0], 0, 59, &[], false)?;
        let (hour, _) = field(f[1], 0, 23, &[], false)?;
        let (dom, dom_star) = field(f[2], 1, 31, &[], false)?;
        let (month, _) = field(f[3], 1, 12, MONTHS, true)?;
        let (dow, dow_star) = field(f[4], 0, 6, DOWS, false)?;
        Ok(Schedule::Spec {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star,
            dow_star,
        })
    }

    /// robfig `SpecSchedule.Next`: the first activation strictly after `t`, in `tz`; None when
    /// there is none within five years (e.g. `0 0 30 2 *`).
    pub fn next(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let (minute, hour, dom, month, dow, dom_star, dow_star) = match self {
            Schedule::Every(secs) => {
                let whole = t.as_second().checked_add(i64::try_from(*secs).ok()?)?;
                return Timestamp::from_second(whole).ok();
            }
            Schedule::Spec {
                minute,
                hour,
                dom,
                month,
                dow,
                dom_star,
                dow_star,
            } => (*minute, *hour, *dom, *month, *dow, *dom_star, *dow_star),
        };
        let has = |bits: u64, v: i8| bits & (1u64 << u32::try_from(v).unwrap_or(63)) != 0;
        let day_matches = |d: Date| {
            let dm = has(dom, d.day());
            let wm = has(dow, d.weekday().to_sunday_zero_offset());
            if dom_star || dow_star {
                dm && wm
            } else {
                dm || wm
            }
        };
        // Start at the next whole minute.
        let local = t.to_zoned(tz.clone()).datetime();
        let mut dt: DateTime = local
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = local.year().saturating_add(5);
        // Each step moves to the start of the next candidate month / day / hour / minute.
        for _ in 0..200_000 {
            if dt.year() > limit {
                return None;
            }
            if !has(month, dt.month()) {
                dt = dt
                    .date()
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .to_datetime(jiff::civil::time(0, 0, 0, 0));
                continue;
            }
            if !day_matches(dt.date()) {
                dt = dt
                    .date()
                    .checked_add(1.day())
                    .ok()?
                    .to_datetime(jiff::civil::time(0, 0, 0, 0));
                continue;
            }
            if !has(hour, dt.hour()) {
                dt = dt
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if !has(minute, dt.minute()) {
                dt = dt.checked_add(1.minute()).ok()?;
                continue;
            }
            // A civil time in a DST gap moves forward; a repeated one takes its first instant.
            let ts = tz.to_ambiguous_zoned(dt).compatible().ok()?.timestamp();
            if ts <= t {
                dt = dt.checked_add(1.minute()).ok()?;
                continue;
            }
            return Some(ts);
        }
        None
    }
}

/// Upstream `mostRecentScheduleTime`: the latest activation after `earliest` that is not after
/// `now`, and about how many were missed (upstream warns with `TooManyMissedTimes` above 100).
pub fn most_recent(
    schedule: &Schedule,
    earliest: Timestamp,
    now: Timestamp,
    tz: &TimeZone,
) -> (Option<Timestamp>, i64) {
    let Some(t1) = schedule.next(earliest, tz) else {
        return (None, 0);
    };
    if now < t1 {
        return (None, 0);
    }
    let Some(t2) = schedule.next(t1, tz) else {
        return (Some(t1), 1);
    };
    if now < t2 {
        return (Some(t1), 1);
    }
    let interval = t2.duration_since(t1).as_secs().max(1);
    let missed = now.duration_since(t1).as_secs() / interval + 1;
    // Walk back from `now` in growing windows until an activation lies in the window, then
    // forward to the last one not after `now` (bounded: the window holds only a few).
    let mut window = interval.saturating_mul(2);
    let mut found = t1;
    loop {
        let from = now
            .checked_sub(SignedDuration::from_secs(window))
            .unwrap_or(earliest)
            .max(earliest);
        if let Some(t) = schedule.next(from, tz)
            && t <= now
        {
            found = t;
            break;
        }
        if from <= earliest {
            break;
        }
        window = window.saturating_mul(2);
    }
    for _ in 0..10_000 {
        match schedule.next(found, tz) {
            Some(t) if t <= now => found = t,
            _ => break,
        }
    }
    (Some(found), missed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn standard_fields_and_descriptors() {
        let utc = TimeZone::UTC;
        let every_min = Schedule::parse("* * * * *").unwrap_or(Schedule::Every(1));
        assert_eq!(
            every_min.next(ts("2026-01-01T10:00:30Z"), &utc),
            Some(ts("2026-01-01T10:01:00Z"))
        );
        assert_eq!(
            every_min.next(ts("2026-01-01T10:01:00Z"), &utc),
            Some(ts("2026-01-01T10:02:00Z"))
        );
        let hourly = Schedule::parse("@hourly").unwrap_or(Schedule::Every(1));
        assert_eq!(
            hourly.next(ts("2026-01-01T10:00:00Z"), &utc),
            Some(ts("2026-01-01T11:00:00Z"))
        );
        let step = Schedule::parse("*/15 9-17 * * mon-fri").unwrap_or(Schedule::Every(1));
        // 2026-01-03 is a Saturday: the next run is Monday 09:00.
        assert_eq!(
            step.next(ts("2026-01-02T17:50:00Z"), &utc),
            Some(ts("2026-01-05T09:00:00Z"))
        );
        assert_eq!(
            step.next(ts("2026-01-05T09:00:00Z"), &utc),
            Some(ts("2026-01-05T09:15:00Z"))
        );
        // Day-of-month OR day-of-week when neither is `*`: the 13th, or any Friday.
        let either = Schedule::parse("0 0 13 * 5").unwrap_or(Schedule::Every(1));
        assert_eq!(
            either.next(ts("2026-02-01T00:00:00Z"), &utc),
            Some(ts("2026-02-06T00:00:00Z"))
        );
        let never = Schedule::parse("0 0 30 2 *").unwrap_or(Schedule::Every(1));
        assert_eq!(never.next(ts("2026-01-01T00:00:00Z"), &utc), None);
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("@fortnightly").is_err());
        assert_eq!(Schedule::parse("@every 1h30m"), Ok(Schedule::Every(5400)));
    }

    #[test]
    fn time_zones_shift_the_activation() {
        let Ok(berlin) = TimeZone::get("Europe/Berlin") else {
            return;
        };
        let daily = Schedule::parse("0 9 * * *").unwrap_or(Schedule::Every(1));
        // 09:00 in Berlin is 08:00 UTC in winter, 07:00 UTC in summer.
        assert_eq!(
            daily.next(ts("2026-01-10T00:00:00Z"), &berlin),
            Some(ts("2026-01-10T08:00:00Z"))
        );
        assert_eq!(
            daily.next(ts("2026-07-10T00:00:00Z"), &berlin),
            Some(ts("2026-07-10T07:00:00Z"))
        );
        // 02:30 does not exist on 2026-03-29 in Berlin: it moves to 03:30 local.
        let gap = Schedule::parse("30 2 * * *").unwrap_or(Schedule::Every(1));
        assert_eq!(
            gap.next(ts("2026-03-29T00:00:00Z"), &berlin),
            Some(ts("2026-03-29T01:30:00Z"))
        );
    }

    #[test]
    fn most_recent_finds_the_last_missed_activation() {
        let utc = TimeZone::UTC;
        let s = Schedule::parse("*/5 * * * *").unwrap_or(Schedule::Every(1));
        let (t, m) = most_recent(
            &s,
            ts("2026-01-01T10:00:00Z"),
            ts("2026-01-01T10:03:00Z"),
            &utc,
        );
        assert_eq!((t, m), (None, 0));
        let (t, m) = most_recent(
            &s,
            ts("2026-01-01T10:00:00Z"),
            ts("2026-01-01T10:07:00Z"),
            &utc,
        );
        assert_eq!((t, m), (Some(ts("2026-01-01T10:05:00Z")), 1));
        let (t, m) = most_recent(
            &s,
            ts("2026-01-01T10:00:00Z"),
            ts("2026-01-01T11:02:00Z"),
            &utc,
        );
        assert_eq!((t, m), (Some(ts("2026-01-01T11:00:00Z")), 12));
        let (t, m) = most_recent(
            &s,
            ts("2026-01-01T00:00:00Z"),
            ts("2026-01-03T00:01:00Z"),
            &utc,
        );
        assert_eq!((t, m), (Some(ts("2026-01-03T00:00:00Z")), 576));
        // Irregular: weekdays at 09:00, asked on Monday 08:00 after a weekend.
        let w = Schedule::parse("0 9 * * 1-5").unwrap_or(Schedule::Every(1));
        let (t, _) = most_recent(
            &w,
            ts("2026-01-01T00:00:00Z"),
            ts("2026-01-05T08:00:00Z"),
            &utc,
        );
        assert_eq!(t, Some(ts("2026-01-02T09:00:00Z")));
    }
}
