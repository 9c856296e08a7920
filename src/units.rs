//! Units written in config and rules: sizes (`25MiB`), durations (`10s`, `1h 30m`) and rates
//! (`5/1m`).
//!
//! In: the text as written. Out: bytes, a [`Duration`], or a count per period; an error says
//! what was expected. Guarantees: pure functions, shared by the config, the rules and the API,
//! so a unit reads the same wherever it is written.

use std::time::Duration;

/// Parses a size: a number of bytes, or a number with B, KB, MB, GB, KiB, MiB or GiB.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (write 25MiB, 512KiB or a number of bytes)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KB, MB, GB, KiB, MiB or GiB)"
            ))
        }
    };
    Ok((num * factor as f64) as u64)
}

/// A size as config writes it, the largest binary unit that keeps a whole or one decimal:
/// `512B`, `1.5KiB`, `64MiB`, `2.3GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            let tenths = (bytes as u128 * 10 / size as u128) as u64;
            return if tenths.is_multiple_of(10) {
                format!("{}{unit}", tenths / 10)
            } else {
                format!("{}.{}{unit}", tenths / 10, tenths % 10)
            };
        }
    }
    format!("{bytes}B")
}

/// Parses a duration like `10s`, `2m`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration (write 10s, 5m, 1h): {e}"))
}

/// Parses `5/1m` (also `5/m`, `100 / 1h`).
pub fn parse_rate(s: &str) -> Result<(u32, Duration), String> {
    let (count, period) = s
        .split_once('/')
        .ok_or_else(|| format!("rate {s:?} is not count/duration (e.g. 5/1m)"))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("rate {s:?}: {:?} is not a whole number", count.trim()))?;
    let period = period.trim();
    let period = if period.starts_with(|c: char| c.is_ascii_digit()) {
        period.to_string()
    } else {
        format!("1{period}")
    };
    let period = parse_duration(&period)?;
    if count == 0 || period.is_zero() {
        return Err(format!(
            "rate {s:?} allows nothing; use enabled: false to turn a rule off"
        ));
    }
    Ok((count, period))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_written_as_config_reads_them() {
        assert_eq!(format_size(0), "0B");
        assert_eq!(format_size(1023), "1023B");
        assert_eq!(format_size(1536), "1.5KiB");
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size((5 << 30) + (1 << 29)), "5.5GiB");
        for bytes in [1u64, 2048, 100 << 20, 3 << 30] {
            assert_eq!(parse_size(&format_size(bytes)).unwrap(), bytes);
        }
    }

    #[test]
    fn sizes_durations_and_rates() {
        assert_eq!(parse_size("25MiB").unwrap(), 25 << 20);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("2 KB").unwrap(), 2000);
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(
            parse_duration(" 1h 30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert!(parse_duration("soon")
            .unwrap_err()
            .contains("not a duration"));
        assert_eq!(parse_rate("5/1m"), Ok((5, Duration::from_secs(60))));
        assert_eq!(parse_rate("100 / h"), Ok((100, Duration::from_secs(3600))));
        assert!(parse_rate("0/1m").is_err());
        assert!(parse_rate("five").is_err());
    }
}
