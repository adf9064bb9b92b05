//! Calendar schedules: when a `recurrence` (docs/protocol.md, Recurring jobs) next runs,
//! in its own time zone, daylight-saving changes included.

use fleet_protocol::admin::{MonthDay, Recurrence, Repeat, Weekday};
use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

/// A checked recurrence.
#[derive(Debug, Clone)]
pub struct Plan {
    repeat: Repeat,
    start: Date,
    end: Option<Date>,
    time: Time,
    zone: TimeZone,
}

/// Longest gap between two days a plan may run on (a monthly plan runs every month).
const MAX_GAP_DAYS: u32 = 62;

impl Plan {
    /// Checks a recurrence; the error names the field (`recurrence.timeZone: ...`).
    ///
    /// # Errors
    /// A date, time or zone that does not parse, an empty week, a day out of range, an
    /// end before the start.
    pub fn new(r: &Recurrence) -> Result<Plan, String> {
        let date = |key: &str, v: &str| {
            parse_date(v).ok_or_else(|| format!("recurrence.{key}: {v:?} is not a YYYY-MM-DD date"))
        };
        let start = date("startDate", &r.start_date)?;
        let end = r
            .end_date
            .as_deref()
            .map(|e| date("endDate", e))
            .transpose()?;
        if end.is_some_and(|e| e < start) {
            return Err("recurrence.endDate: before startDate".into());
        }
        let time = parse_time(&r.time)
            .ok_or_else(|| format!("recurrence.time: {:?} is not HH:MM (24-hour)", r.time))?;
        let zone = TimeZone::get(&r.time_zone).map_err(|_| {
            format!(
                "recurrence.timeZone: {:?} is not a known time zone (IANA names, e.g. Europe/Paris, UTC)",
                r.time_zone
            )
        })?;
        match &r.repeat {
            Repeat::Weekly { days } if days.is_empty() => {
                return Err("recurrence.days: name at least one day (mon ... sun)".into());
            }
            Repeat::Monthly {
                on: MonthDay::Day(d),
            } if !(1..=31).contains(d) => {
                return Err(format!(
                    "recurrence.on.day: {d} is not a day of a month (1..=31)"
                ));
            }
            Repeat::Monthly {
                on: MonthDay::Weekday { week, .. },
            } if !matches!(week, 1..=4 | -1) => {
                return Err(format!(
                    "recurrence.on.weekday.week: {week} is not 1..=4 or -1 (the last)"
                ));
            }
            _ => {}
        }
        Ok(Plan {
            repeat: r.repeat.clone(),
            start,
            end,
            time,
            zone,
        })
    }

    /// The first time it runs at or after `at_ms` (epoch ms); `None` once it has ended.
    pub fn next_at_or_after(&self, at_ms: i64) -> Option<i64> {
        let at = Timestamp::from_millisecond(at_ms).ok()?;
        // From the day before in the zone: a time late in the evening of the previous
        // local day can still be ahead of `at` after a daylight-saving shift.
        let mut day = at
            .to_zoned_datetime(self.zone.clone())
            .date()
            .yesterday()
            .ok()?;
        if day < self.start {
            day = self.start;
        }
        let mut gap = 0;
        loop {
            if self.end.is_some_and(|e| day > e) {
                return None;
            }
            if self.runs_on(day) {
                gap = 0;
                let when = day
                    .to_datetime(self.time)
                    .to_zoned_datetime(self.zone.clone())
                    .ok()?;
                let ms = when.timestamp().as_millisecond();
                if ms >= at_ms {
                    return Some(ms);
                }
                if self.repeat == Repeat::Once {
                    return None;
                }
            } else {
                gap += 1;
                if gap > MAX_GAP_DAYS || (self.repeat == Repeat::Once && day > self.start) {
                    return None;
                }
            }
            day = day.tomorrow().ok()?;
        }
    }

    fn runs_on(&self, d: Date) -> bool {
        match &self.repeat {
            Repeat::Once => d == self.start,
            Repeat::Daily => true,
            Repeat::Weekly { days } => days.iter().any(|w| same_day(*w, d.weekday())),
            Repeat::Monthly {
                on: MonthDay::Day(n),
            } => d.day() == (*n as i8).min(d.days_in_month()),
            Repeat::Monthly {
                on: MonthDay::Weekday { week, day },
            } => {
                same_day(*day, d.weekday())
                    && if *week == -1 {
                        d.day() + 7 > d.days_in_month()
                    } else {
                        (d.day() - 1) / 7 + 1 == *week
                    }
            }
        }
    }
}

fn same_day(w: Weekday, d: jiff::civil::Weekday) -> bool {
    use jiff::civil::Weekday as J;
    matches!(
        (w, d),
        (Weekday::Mon, J::Monday)
            | (Weekday::Tue, J::Tuesday)
            | (Weekday::Wed, J::Wednesday)
            | (Weekday::Thu, J::Thursday)
            | (Weekday::Fri, J::Friday)
            | (Weekday::Sat, J::Saturday)
            | (Weekday::Sun, J::Sunday)
    )
}

/// `YYYY-MM-DD` exactly (jiff also takes forms an admin did not mean, e.g. with a time).
fn parse_date(v: &str) -> Option<Date> {
    let b = v.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| v.get(r)?.parse::<i16>().ok();
    Date::new(n(0..4)?, n(5..7)? as i8, n(8..10)? as i8).ok()
}

/// `HH:MM`, 24-hour.
fn parse_time(v: &str) -> Option<Time> {
    let (h, m) = v.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(v: serde_json::Value) -> Plan {
        Plan::new(&serde_json::from_value(v).unwrap()).unwrap()
    }

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn runs(p: &Plan, from: &str, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = ms(from);
        while out.len() < n {
            let Some(next) = p.next_at_or_after(at) else {
                break;
            };
            out.push(Timestamp::from_millisecond(next).unwrap().to_string());
            at = next + 1;
        }
        out
    }

    #[test]
    fn daily_keeps_the_local_time_across_daylight_saving() {
        let p = plan(
            json!({"repeat": "daily", "startDate": "2027-03-27", "time": "02:30",
            "timeZone": "Europe/Paris"}),
        );
        // 27 March: UTC+1; 28 March: 02:30 does not exist (runs at 03:30 CEST, 01:30Z);
        // 29 March: UTC+2.
        assert_eq!(
            runs(&p, "2027-03-01T00:00:00Z", 3),
            [
                "2027-03-27T01:30:00Z",
                "2027-03-28T01:30:00Z",
                "2027-03-29T00:30:00Z"
            ]
        );
    }

    #[test]
    fn once_runs_once_and_then_never() {
        let p = plan(
            json!({"repeat": "once", "startDate": "2027-01-10", "time": "23:00",
            "timeZone": "America/New_York"}),
        );
        assert_eq!(
            runs(&p, "2027-01-01T00:00:00Z", 5),
            ["2027-01-11T04:00:00Z"]
        );
        assert_eq!(p.next_at_or_after(ms("2027-01-11T04:00:00.001Z")), None);
    }

    #[test]
    fn weekly_on_named_days_until_the_end_date() {
        let p = plan(json!({"repeat": "weekly", "days": ["mon", "thu"],
            "startDate": "2027-01-01", "endDate": "2027-01-14", "time": "08:00",
            "timeZone": "UTC"}));
        assert_eq!(
            runs(&p, "2026-12-01T00:00:00Z", 10),
            [
                "2027-01-04T08:00:00Z",
                "2027-01-07T08:00:00Z",
                "2027-01-11T08:00:00Z",
                "2027-01-14T08:00:00Z"
            ]
        );
    }

    #[test]
    fn monthly_on_a_date_or_a_weekday_of_the_month() {
        // The 31st: the last day of shorter months.
        let p = plan(
            json!({"repeat": "monthly", "on": {"day": 31}, "startDate": "2027-01-01",
            "time": "06:00", "timeZone": "UTC"}),
        );
        assert_eq!(
            runs(&p, "2027-01-01T00:00:00Z", 4),
            [
                "2027-01-31T06:00:00Z",
                "2027-02-28T06:00:00Z",
                "2027-03-31T06:00:00Z",
                "2027-04-30T06:00:00Z"
            ]
        );
        let second_tue = plan(json!({"repeat": "monthly",
            "on": {"weekday": {"week": 2, "day": "tue"}}, "startDate": "2027-01-01",
            "time": "06:00", "timeZone": "UTC"}));
        assert_eq!(
            runs(&second_tue, "2027-01-01T00:00:00Z", 2),
            ["2027-01-12T06:00:00Z", "2027-02-09T06:00:00Z"]
        );
        let last_fri = plan(json!({"repeat": "monthly",
            "on": {"weekday": {"week": -1, "day": "fri"}}, "startDate": "2027-01-01",
            "time": "06:00", "timeZone": "UTC"}));
        assert_eq!(
            runs(&last_fri, "2027-01-01T00:00:00Z", 2),
            ["2027-01-29T06:00:00Z", "2027-02-26T06:00:00Z"]
        );
    }

    #[test]
    fn a_bad_recurrence_names_its_field() {
        let bad =
            |v: serde_json::Value| Plan::new(&serde_json::from_value(v).unwrap()).unwrap_err();
        let base = |k: &str, v: serde_json::Value| {
            let mut o = json!({"repeat": "daily", "startDate": "2027-01-01", "time": "06:00",
                "timeZone": "UTC"});
            o[k] = v;
            o
        };
        assert!(bad(base("timeZone", json!("Mars/Olympus"))).starts_with("recurrence.timeZone"));
        assert!(bad(base("time", json!("25:00"))).starts_with("recurrence.time:"));
        assert!(bad(base("time", json!("6pm"))).starts_with("recurrence.time:"));
        assert!(bad(base("startDate", json!("2027-02-30"))).starts_with("recurrence.startDate"));
        assert!(bad(base("endDate", json!("2026-12-31"))).starts_with("recurrence.endDate"));
        assert!(
            bad(
                json!({"repeat": "weekly", "days": [], "startDate": "2027-01-01",
                "time": "06:00", "timeZone": "UTC"})
            )
            .starts_with("recurrence.days")
        );
        assert!(
            bad(
                json!({"repeat": "monthly", "on": {"day": 32}, "startDate": "2027-01-01",
                "time": "06:00", "timeZone": "UTC"})
            )
            .starts_with("recurrence.on.day")
        );
    }
}
