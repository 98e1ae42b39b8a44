//! Dates as ZStack's Gson writes them: Java 8 `DateFormat.getDateTimeInstance(DEFAULT, DEFAULT,
//! Locale.US)`, e.g. `Jan 6, 2017 3:51:16 AM` (no milliseconds, no zone). We render UTC: the
//! management nodes of one cluster must agree, and UTC is the only zone they all share.

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 to (year, month 1-12, day 1-31) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm: shift to an era starting on March 1st so leap days fall last.
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Render milliseconds since the Unix epoch (UTC) in the Java 8 form.
pub fn java_date(epoch_ms: u64) -> String {
    let secs = (epoch_ms / 1000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let (h24, min, s) = (sod / 3600, sod % 3600 / 60, sod % 60);
    let (h12, ampm) = match h24 {
        0 => (12, "AM"),
        1..=11 => (h24, "AM"),
        12 => (12, "PM"),
        _ => (h24 - 12, "PM"),
    };
    format!(
        "{} {d}, {y} {h12}:{min:02}:{s:02} {ampm}",
        MONTHS[(m - 1) as usize]
    )
}

/// Parse the Java 8 form back to milliseconds since the epoch; `None` if it is not one.
pub fn parse_java_date(s: &str) -> Option<u64> {
    // "MMM d, yyyy h:mm:ss a"
    let (mon, rest) = s.split_once(' ')?;
    let m = MONTHS.iter().position(|x| *x == mon)? as u32 + 1;
    let (d, rest) = rest.split_once(", ")?;
    let (y, rest) = rest.split_once(' ')?;
    let (hms, ampm) = rest.split_once(' ')?;
    let mut it = hms.split(':');
    let (h, min, sec) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || min.len() != 2 || sec.len() != 2 {
        return None;
    }
    let (d, y): (u32, i64) = (d.parse().ok()?, y.parse().ok()?);
    let (h, min, sec): (i64, i64, i64) = (h.parse().ok()?, min.parse().ok()?, sec.parse().ok()?);
    if !(1..=31).contains(&d) || !(1..=12).contains(&h) || min > 59 || sec > 59 || y < 1970 {
        return None;
    }
    let h24 = match ampm {
        "AM" => h % 12,
        "PM" => h % 12 + 12,
        _ => return None,
    };
    let days = days_from_civil(y, m, d);
    if civil_from_days(days) != (y, m, d) {
        return None; // e.g. Feb 30
    }
    let secs = days * 86_400 + h24 * 3600 + min * 60 + sec;
    u64::try_from(secs).ok().map(|s| s * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_zstack_examples() {
        // 2017-01-06T03:51:16Z, the example in ZStack's REST documentation.
        assert_eq!(java_date(1_483_674_676_000), "Jan 6, 2017 3:51:16 AM");
        // 2026-11-25T08:01:54Z
        assert_eq!(java_date(1_795_593_714_000), "Nov 25, 2026 8:01:54 AM");
        assert_eq!(java_date(0), "Jan 1, 1970 12:00:00 AM");
        assert_eq!(java_date(12 * 3600 * 1000), "Jan 1, 1970 12:00:00 PM");
        assert_eq!(java_date(951_825_600_000), "Feb 29, 2000 12:00:00 PM");
    }

    #[test]
    fn round_trips_to_the_second() {
        for ms in [
            0u64,
            1_483_674_676_000,
            951_825_600_000,
            4_102_444_799_000,
            1_795_593_714_999,
        ] {
            assert_eq!(
                parse_java_date(&java_date(ms)),
                Some(ms / 1000 * 1000),
                "{ms}"
            );
        }
        for bad in [
            "",
            "Jan 6 2017 3:51:16 AM",
            "Feb 30, 2017 1:00:00 AM",
            "Jan 6, 2017 13:00:00 PM",
            "Jan 6, 2017 3:5:16 AM",
        ] {
            assert_eq!(parse_java_date(bad), None, "{bad}");
        }
    }
}
