//! A printer's trends for its page: one point a day (page count, supply levels) from the
//! store, and for each supply being used up the date it is estimated to run out, from its
//! recent rate of use, shown only when the points support it and with the basis.

use super::{Shared, blocking};
use crate::web::reason;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

/// Days looked back for a rate of use.
const RATE_DAYS: i64 = 90;
/// Fewest points a rate is drawn from.
const MIN_POINTS: usize = 4;
/// Shortest span of them, days.
const MIN_SPAN: i64 = 7;
/// Longest estimate given, days (past that: "not within two years").
const MAX_DAYS: f64 = 730.0;

/// When a supply is estimated to run out.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    /// Days from the last point.
    pub days_left: u32,
    /// The day it runs out (days since the epoch).
    pub day: i64,
    /// Percent a day.
    pub per_day: f64,
    /// Days the rate was measured over.
    pub over_days: i64,
    /// Points it was measured from.
    pub points: usize,
}

/// The run-out estimate of one consumable from its points `(day, percent left)`, oldest
/// first: a least-squares rate over the points since it was last replaced (a rise) and
/// within [`RATE_DAYS`]; none when there are too few points, too short a span, no use,
/// or it would last more than two years.
pub fn estimate(points: &[(i64, u8)]) -> Option<Estimate> {
    let &(last_day, last) = points.last()?;
    // Since the last replacement: the run of points that never rose by more than 2.
    let mut start = points.len() - 1;
    while start > 0 && points[start].1 <= points[start - 1].1.saturating_add(2) {
        if last_day - points[start - 1].0 > RATE_DAYS {
            break;
        }
        start -= 1;
    }
    let run = &points[start..];
    let span = last_day - run[0].0;
    if run.len() < MIN_POINTS || span < MIN_SPAN {
        return None;
    }
    let n = run.len() as f64;
    let mean_x = run.iter().map(|p| p.0 as f64).sum::<f64>() / n;
    let mean_y = run.iter().map(|p| f64::from(p.1)).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for &(x, y) in run {
        let dx = x as f64 - mean_x;
        sxy += dx * (f64::from(y) - mean_y);
        sxx += dx * dx;
    }
    let slope = sxy / sxx;
    if !slope.is_finite() || slope >= -0.01 {
        return None;
    }
    let left = f64::from(last) / -slope;
    if left > MAX_DAYS {
        return None;
    }
    Some(Estimate {
        days_left: left.round() as u32,
        day: last_day + left.round() as i64,
        per_day: -slope,
        over_days: span,
        points: run.len(),
    })
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01 (UTC).
pub fn ymd(day: i64) -> String {
    // Howard Hinnant's civil-from-days.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `GET /api/printers/{id}/history`: its daily points, its supplies (named from the
/// latest reading) and their run-out estimates.
pub async fn history(State(agent): Shared, Path(id): Path<i64>) -> Response {
    let r = blocking(&agent, move |a| {
        let known = a.store.printers()?.iter().any(|p| p.id == id);
        let rows = a.store.history(id)?;
        let report = a.store.latest_report(id)?;
        Ok((known, rows, report))
    })
    .await;
    let (known, rows, report) = match r {
        Ok(v) => v,
        Err(e) => return e,
    };
    if !known {
        return reason(StatusCode::NOT_FOUND, format!("no printer {id}"));
    }
    let report: Value = report
        .and_then(|r| serde_json::from_str(&r).ok())
        .unwrap_or(Value::Null);
    let supplies: Vec<Value> = report["supplies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let filled = s["ext"]["prtMarkerSuppliesClass"].as_i64() == Some(4);
            json!({
                "key": s["supplyKey"],
                "name": s["description"].as_str().or(s["type"].as_str()).unwrap_or("supply").trim(),
                "color": s["color"].as_str().map(str::to_lowercase).filter(|c| c != "none"),
                "kind": if filled { "filled" } else { "remaining" },
            })
        })
        .collect();
    let estimates: Vec<Value> = supplies
        .iter()
        .filter(|s| s["kind"] == "remaining")
        .filter_map(|s| {
            let key = s["key"].as_str()?;
            let points: Vec<(i64, u8)> = rows
                .iter()
                .filter_map(|(day, _, levels)| {
                    levels
                        .iter()
                        .find(|(k, _)| k == key)
                        .and_then(|(_, l)| l.map(|l| (*day, l)))
                })
                .collect();
            let e = estimate(&points)?;
            Some(json!({
                "key": key,
                "name": s["name"],
                "runsOutOn": ymd(e.day),
                "daysLeft": e.days_left,
                "basis": format!(
                    "{:.1} % a day over the last {} days ({} readings)",
                    e.per_day, e.over_days, e.points
                ),
            }))
        })
        .collect();
    let days: Vec<Value> = rows
        .iter()
        .map(|(day, pages, levels)| {
            json!({
                "day": ymd(*day),
                "pages": pages,
                "levels": levels.iter().map(|(k, l)| (k.clone(), json!(l))).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    axum::Json(json!({ "days": days, "supplies": supplies, "estimates": estimates }))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_print_as_dates() {
        assert_eq!(ymd(0), "1970-01-01");
        assert_eq!(ymd(20_793), "2026-12-06");
        assert_eq!(ymd(11_016), "2000-02-29");
    }

    #[test]
    fn a_steady_use_gives_a_date_and_a_replacement_starts_again() {
        // 3 % a day for 10 days from 70 %: 40 % left, 13 days more.
        let pts: Vec<(i64, u8)> = (0..=10).map(|d| (1000 + d, (70 - 3 * d) as u8)).collect();
        let e = estimate(&pts).unwrap();
        assert_eq!(
            (e.days_left, e.day, e.points, e.over_days),
            (13, 1023, 11, 10)
        );
        assert!((e.per_day - 3.0).abs() < 1e-9);
        // Only the points since the last replacement count.
        let mut two: Vec<(i64, u8)> = (0..5).map(|d| (900 + d, (20 - 4 * d) as u8)).collect();
        two.extend(&pts);
        assert_eq!(estimate(&two), estimate(&pts));
        // Replaced (back to 100) three days ago: too few points since to say.
        let mut replaced = pts.clone();
        replaced.extend([(1011, 100), (1012, 99), (1013, 98)]);
        assert_eq!(estimate(&replaced), None);
        // Not used, too short a span, or years away: no estimate.
        assert_eq!(
            estimate(&(0..10).map(|d| (d, 50)).collect::<Vec<_>>()),
            None
        );
        assert_eq!(estimate(&[(0, 50), (1, 48), (2, 46), (3, 44)]), None);
        let slow: Vec<(i64, u8)> = (0..=100).map(|d| (d, (90 - d / 25) as u8)).collect();
        assert_eq!(estimate(&slow), None, "{:?}", estimate(&slow));
    }
}
