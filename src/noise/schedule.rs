//! Digest schedules: `{every: "1h"}`, or `{at: "09:00", days: [mon, tue, ...], tz: "Europe/Berlin"}`.
//!
//! Times of day are computed in the schedule's time zone with jiff's bundled time-zone
//! database, so a digest at 09:00 stays at 09:00 local across daylight-saving changes (a time
//! that does not exist that day is taken in the usual, "compatible" way).

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde_json::Value;

/// When a connection's digest goes out.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Every so often.
    Every(std::time::Duration),
    /// At a time of day on some weekdays, in a time zone.
    At {
        /// The time of day.
        time: Time,
        /// The weekdays.
        days: Vec<Weekday>,
        /// The time zone.
        tz: TimeZone,
    },
}

impl Schedule {
    /// Reads a digest setting as stored on a connection.
    pub fn parse(v: &Value) -> Result<Self, String> {
        let obj = v
            .as_object()
            .ok_or("a digest is {every: ...} or {at: ..., days: [...], tz: ...}")?;
        if let Some(every) = obj.get("every") {
            if obj.len() != 1 {
                return Err("`every` stands alone".into());
            }
            let d = crate::units::parse_duration(
                every.as_str().ok_or("`every` is a duration such as 1h")?,
            )?;
            if d < std::time::Duration::from_secs(60) {
                return Err("a digest comes at most once a minute".into());
            }
            return Ok(Self::Every(d));
        }
        if let Some(bad) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "at" | "days" | "tz"))
        {
            return Err(format!("unknown digest key `{bad}` (every, at, days, tz)"));
        }
        let at = obj
            .get("at")
            .and_then(Value::as_str)
            .ok_or("`at` is a time of day such as 09:00")?;
        let time: Time = format!("{at}:00")
            .parse()
            .map_err(|_| format!("{at:?} is not a time of day such as 09:00"))?;
        let days = match obj.get("days") {
            None => vec![
                Weekday::Monday,
                Weekday::Tuesday,
                Weekday::Wednesday,
                Weekday::Thursday,
                Weekday::Friday,
                Weekday::Saturday,
                Weekday::Sunday,
            ],
            Some(Value::Array(list)) => list
                .iter()
                .map(|d| weekday(d.as_str().unwrap_or_default()))
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err("`days` is a list such as [mon, tue, wed, thu, fri]".into()),
        };
        if days.is_empty() {
            return Err("`days` names no day".into());
        }
        let tz_name = obj.get("tz").and_then(Value::as_str).unwrap_or("UTC");
        let tz = TimeZone::get(tz_name)
            .map_err(|_| format!("{tz_name:?} is not a time zone such as Europe/Berlin"))?;
        Ok(Self::At { time, days, tz })
    }

    /// The first time the digest is due strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Timestamp {
        match self {
            Self::Every(d) => {
                let step = d.as_secs() as i64;
                // On the period's grid (e.g. every full hour), the next one after `after`.
                let next = (after.as_second().div_euclid(step) + 1) * step;
                Timestamp::from_second(next).unwrap_or(after)
            }
            Self::At { time, days, tz } => {
                let local = after.to_zoned(tz.clone());
                let mut date = local.date();
                for _ in 0..15 {
                    if days.contains(&date.weekday()) {
                        if let Ok(z) = date.to_datetime(*time).to_zoned(tz.clone()) {
                            if z.timestamp() > after {
                                return z.timestamp();
                            }
                        }
                    }
                    date = date.checked_add(1.day()).unwrap_or(date);
                }
                after
            }
        }
    }
}

fn weekday(s: &str) -> Result<Weekday, String> {
    Ok(match s.to_ascii_lowercase().get(..3).unwrap_or_default() {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => {
            return Err(format!(
                "{s:?} is not a weekday (mon, tue, wed, thu, fri, sat, sun)"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn hourly_on_the_hour() {
        let s = Schedule::parse(&json!({"every": "1h"})).unwrap();
        assert_eq!(
            s.next_after(ts("2026-11-27T09:12:00Z")),
            ts("2026-11-27T10:00:00Z")
        );
        assert_eq!(
            s.next_after(ts("2026-11-27T10:00:00Z")),
            ts("2026-11-27T11:00:00Z")
        );
    }

    #[test]
    fn nine_in_berlin_on_weekdays_across_daylight_saving() {
        let s = Schedule::parse(&json!({"at": "09:00", "days": ["mon", "tue", "wed", "thu", "fri"], "tz": "Europe/Berlin"})).unwrap();
        // Friday 27 March 2026, 09:00 CET = 08:00 UTC.
        assert_eq!(
            s.next_after(ts("2026-03-27T07:00:00Z")),
            ts("2026-03-27T08:00:00Z")
        );
        // After it: the weekend is skipped, and on Monday 30 March it is summer time (CEST):
        // 09:00 local = 07:00 UTC.
        assert_eq!(
            s.next_after(ts("2026-03-27T08:00:00Z")),
            ts("2026-03-30T07:00:00Z")
        );
        // And back in October: Monday 26 October 2026, 09:00 CET = 08:00 UTC.
        assert_eq!(
            s.next_after(ts("2026-10-23T08:00:00Z")),
            ts("2026-10-26T08:00:00Z")
        );
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(Schedule::parse(&json!({"every": "10s"}))
            .unwrap_err()
            .contains("once a minute"));
        assert!(Schedule::parse(&json!({"at": "25:00"}))
            .unwrap_err()
            .contains("time of day"));
        assert!(
            Schedule::parse(&json!({"at": "09:00", "days": ["someday"]}))
                .unwrap_err()
                .contains("weekday")
        );
        assert!(
            Schedule::parse(&json!({"at": "09:00", "tz": "Mars/Olympus"}))
                .unwrap_err()
                .contains("time zone")
        );
        assert!(Schedule::parse(&json!({"at": "09:00", "when": 1}))
            .unwrap_err()
            .contains("unknown digest key"));
    }
}
