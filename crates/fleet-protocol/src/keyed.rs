//! The keyed view of a printer report (DATA-MODEL.md §4.2–§4.3): supplies, alerts and
//! meters become objects keyed by `supplyKey` / `alertKey` / `oid`, so a delta can touch
//! one element;
//! RFC 7396 merge-patch diffs over it, and the way back to the API's arrays. The agent
//! computes deltas with these functions and the cloud applies them with the same ones.

use serde_json::{Map, Value};

fn rekey(v: &mut Value, field: &str, key: &str) {
    if let Some(Value::Array(items)) = v.get_mut(field) {
        let mut m = Map::new();
        for it in items.drain(..) {
            if let Some(k) = it.get(key).and_then(Value::as_str) {
                m.insert(k.to_string(), it);
            }
        }
        v[field] = Value::Object(m);
    }
}

fn unkey(v: &mut Value, field: &str) {
    if let Some(Value::Object(m)) = v.get_mut(field) {
        // Object keys come back sorted (serde_json's map is ordered by key).
        let items: Vec<Value> = std::mem::take(m).into_iter().map(|(_, x)| x).collect();
        v[field] = Value::Array(items);
    }
}

fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Returns the keyed view of a report in JSON form (as `fleet-agent poll --json` prints
/// it), without `collectedAt`, which travels beside it. Null members are left out: absent
/// means null (DATA-MODEL.md §1.2), which is also what a merge patch can express, so
/// applying a delta reproduces this view exactly.
pub fn keyed(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.remove("collectedAt");
    }
    strip_nulls(&mut v);
    rekey(&mut v, "supplies", "supplyKey");
    rekey(&mut v, "alerts", "alertKey");
    rekey(&mut v, "meters", "oid");
    v
}

/// Turns a keyed view back into the API shape (arrays sorted by key).
pub fn unkeyed(keyed: &Value) -> Value {
    let mut v = keyed.clone();
    unkey(&mut v, "supplies");
    unkey(&mut v, "alerts");
    unkey(&mut v, "meters");
    v
}

/// Computes the RFC 7396 merge patch that turns `old` into `new` (`None` when equal).
/// Objects are diffed member by member; anything else is replaced; members missing from
/// `new` become `null` (delete). A `null` value present in `new` cannot be expressed by a
/// merge patch, so it is also sent as `null` and the member disappears: consumers treat
/// absent as null (DATA-MODEL.md §1.2).
pub fn diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut patch = Map::new();
            for (k, va) in a {
                match b.get(k) {
                    None => {
                        patch.insert(k.clone(), Value::Null);
                    }
                    Some(vb) => {
                        if va.is_object() && vb.is_object() {
                            if let Some(p) = diff(va, vb) {
                                patch.insert(k.clone(), p);
                            }
                        } else if va != vb {
                            patch.insert(k.clone(), vb.clone());
                        }
                    }
                }
            }
            for (k, vb) in b {
                if !a.contains_key(k) && !vb.is_null() {
                    patch.insert(k.clone(), vb.clone());
                }
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        _ => (old != new).then(|| new.clone()),
    }
}

/// Applies a merge patch (RFC 7396).
pub fn apply(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(level: i64, alert: bool, pages: u64) -> Value {
        let mut alerts = vec![];
        if alert {
            alerts.push(
                json!({ "alertKey": "a:8.1.807", "status": "WARNING", "issue": "Tray 1 Low" }),
            );
        }
        json!({
            "serialNumber": "SN1",
            "collectedAt": 123,
            "modelName": null,
            "counters": { "lifetimeCount": pages },
            "supplies": [
                { "supplyKey": "m:1.2", "currentLevel": 60, "color": "Cyan" },
                { "supplyKey": "m:1.1", "currentLevel": if level >= 0 { json!(level) } else { Value::Null },
                  "ext": { "prtMarkerSuppliesLevel": level } },
            ],
            "alerts": alerts,
        })
    }

    #[test]
    fn the_keyed_view_drops_nulls_and_the_collection_time_and_keys_the_arrays() {
        let k = keyed(report(50, true, 1000));
        assert_eq!(k.get("collectedAt"), None);
        assert_eq!(k.get("modelName"), None);
        assert_eq!(k["supplies"]["m:1.1"]["currentLevel"], 50);
        assert_eq!(k["alerts"]["a:8.1.807"]["status"], "WARNING");
    }

    #[test]
    fn applying_the_delta_to_the_keyed_state_gives_the_new_state() {
        let (a, b) = (
            keyed(report(50, true, 1000)),
            keyed(report(40, false, 1234)),
        );
        let patch = diff(&a, &b).unwrap();
        assert_eq!(patch["alerts"]["a:8.1.807"], Value::Null, "deleted by key");
        assert!(
            patch["supplies"].get("m:1.2").is_none(),
            "only what changed"
        );
        let mut state = a.clone();
        apply(&mut state, &patch);
        assert_eq!(state, b);
        assert_eq!(diff(&a, &a), None);
        // Back to the API shape: arrays sorted by key.
        let api = unkeyed(&state);
        let keys: Vec<&str> = api["supplies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["supplyKey"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["m:1.1", "m:1.2"]);
        assert!(api["alerts"].as_array().unwrap().is_empty());
        // A level that becomes -3 (someRemaining): the percentage disappears.
        let c = keyed(report(-3, false, 1234));
        let patch = diff(&b, &c).unwrap();
        assert_eq!(patch["supplies"]["m:1.1"]["currentLevel"], Value::Null);
        let mut state = b;
        apply(&mut state, &patch);
        assert_eq!(state, c);
    }
}
