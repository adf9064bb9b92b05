//! `complianceCheck` / `complianceEnforce` with `params.settings` (`sysName`,
//! `sysLocation`, `sysContact`): compares the printer's values with the assigned ones and,
//! when enforcing, writes the differing ones and reads them back. The result carries
//! `compliant` and the `differences` found.

use super::super::results::{one, printer_outcome, with_printers};
use super::{Access, Context, Job, oid, resolve, set};
use fleet_protocol::jobs::{ComplianceParams, Difference, JobResult, Level, Message, Status};
use fleet_snmp::{Oid, Target, Value as Snmp, VarBind};

/// Generic settings a configuration can assign (SNMPv2-MIB system group).
const GENERIC_SETTINGS: &[(&str, &str)] = &[
    ("sysContact", "1.3.6.1.2.1.1.4.0"),
    ("sysName", "1.3.6.1.2.1.1.5.0"),
    ("sysLocation", "1.3.6.1.2.1.1.6.0"),
];

/// Runs a check (or, with `enforce`, an enforcement).
pub async fn run(ctx: &Context, job: &Job, params: &ComplianceParams, enforce: bool) -> JobResult {
    let mut messages = Vec::new();
    let mut checks: Vec<(String, Oid, String)> = Vec::new();
    for (k, v) in &params.settings {
        match (GENERIC_SETTINGS.iter().find(|(n, _)| n == k), v.as_str()) {
            (Some((_, o)), Some(text)) => checks.push((k.clone(), oid(o), text.to_string())),
            (Some(_), None) => {
                messages.push(Message::error(format!("params.settings.{k} must be a string")))
            }
            (None, _) => messages.push(Message::warning(format!(
                "params.settings.{k}: not a setting this agent manages (sysName, sysLocation, sysContact)"
            ))),
        }
    }
    if messages.iter().any(|m| m.level == Level::Error) {
        return with_printers(Status::Failed, messages, vec![]);
    }
    let p = match resolve(ctx, job, Access::Write).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (addr, serial) = (p.addr, p.serial.clone());
    let read = |target: Target| {
        let oids: Vec<Oid> = checks.iter().map(|c| c.1.clone()).collect();
        async move { fleet_snmp::walk::get(&ctx.snmp, &target, &oids).await }
    };
    let differences = |got: &[VarBind]| -> Vec<Difference> {
        checks
            .iter()
            .filter_map(|(name, o, want)| {
                let have = got
                    .iter()
                    .find(|vb| &vb.oid == o)
                    .and_then(|vb| vb.value.as_bytes())
                    .map(|b| String::from_utf8_lossy(b).to_string());
                (have.as_deref() != Some(want.as_str())).then(|| Difference {
                    setting: name.clone(),
                    expected: want.clone(),
                    found: have,
                })
            })
            .collect()
    };
    let not_communicating = |e: fleet_snmp::SnmpError| {
        printer_outcome(
            addr,
            serial.as_deref(),
            Status::PrinterNotCommunicating,
            e.to_string(),
        )
    };
    let got = match read(p.target.clone()).await {
        Ok(v) => v,
        Err(e) => return not_communicating(e),
    };
    let mut diff = differences(&got);
    if enforce && !diff.is_empty() {
        for d in &diff {
            let Some((_, o)) = GENERIC_SETTINGS.iter().find(|(n, _)| *n == d.setting) else {
                continue;
            };
            let vb = VarBind {
                oid: oid(o),
                value: Snmp::OctetString(d.expected.as_bytes().to_vec()),
            };
            let r = set(ctx, &p, &d.setting, vb).await;
            if r.status != Status::Completed {
                return JobResult {
                    compliant: Some(false),
                    differences: Some(diff),
                    ..r
                };
            }
        }
        diff = match read(p.target.clone()).await {
            Ok(v) => differences(&v),
            Err(e) => return not_communicating(e),
        };
        messages.push(Message::info("differing settings written and read back"));
    }
    let compliant = diff.is_empty();
    messages.push(if compliant {
        Message::info("compliant with the assigned configuration")
    } else {
        Message::warning(format!("not compliant: {} setting(s) differ", diff.len()))
    });
    let status = if compliant || !enforce {
        Status::Completed
    } else {
        Status::Failed
    };
    JobResult {
        compliant: Some(compliant),
        differences: Some(diff),
        ..with_printers(
            status,
            messages,
            vec![one(addr, serial.as_deref(), status, None)],
        )
    }
}
