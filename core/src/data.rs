//! Enterprises' data: an enterprise submits a new version of its basic and
//! active-resource data, which travels up and is kept by every node on the way; a
//! re-report closes the correction demands waiting at the enterprise. Its province
//! validates each version (`isms_data::validate`, by the rules of its configuration)
//! against the latest data of its other enterprises; anomalies become a correction demand
//! to the enterprise, issued by the province on the 5-working-day clock, and go up to the
//! ministry with the version.
//!
//! Must not: validate at the enterprise (the authority does), or issue a second demand for
//! a version that has one.

use super::*;
use isms_proto::v1::{DataCorrection, DataStatus, ResourceReport, SubmitDataReply, Urgency};

impl Core {
    /// Enterprise: a new version of its data, stored, sent up and audited; the correction
    /// demands waiting here are reported corrected by it.
    pub(super) fn submit_data(
        &mut self,
        g: &mut Group<'_>,
        caller: &Caller,
        mut report: ResourceReport,
    ) -> Result<SubmitDataReply, NodeError> {
        if self.tier != Tier::Enterprise {
            return Err(NodeError::Forbidden(
                "only an enterprise submits its data (R-5.1)".into(),
            ));
        }
        let me = self.shared.node_id.to_string();
        let key = records::data_report(&me);
        let previous: Option<ResourceReport> = g.read(&key)?;
        report.enterprise = me.clone();
        report.version = previous.map_or(1, |p| p.version + 1);
        report.submitted_at_ms = g.now;
        report.by = caller.operator.clone();
        g.txn.put(key, encode(&report));
        let summary = format!(
            "version {}: {} houses, {} customers",
            report.version,
            report.houses.len(),
            report.customers.len()
        );
        audit(g, caller, "data.submit", &me, &summary);
        // A re-report is what a data-correction demand asks for.
        let waiting: Vec<String> = self
            .shared
            .store
            .scan_prefix(records::CORRECTION_PREFIX)
            .filter_map(|e| e.ok())
            .map(|(k, _)| {
                String::from_utf8_lossy(&k[records::CORRECTION_PREFIX.len()..]).into_owned()
            })
            .collect();
        for id in waiting {
            let note = format!("re-reported as data version {}", report.version);
            self.corrected(g, &id, caller, &note)?;
        }
        let version = report.version;
        self.send_up(g, outbox_entry::Body::DataReport(report));
        Ok(SubmitDataReply { version })
    }

    /// A child's data (its own, or one of a province's enterprises'): kept, validated at
    /// the enterprise's province, passed up.
    pub(super) fn receive_data(
        &mut self,
        g: &mut Group<'_>,
        from: &NodeId,
        report: ResourceReport,
    ) -> Result<(), NodeError> {
        let key = records::data_report(&report.enterprise);
        let kept: Option<ResourceReport> = g.read(&key)?;
        if kept.is_some_and(|k| k.version >= report.version) {
            return Ok(()); // a resend, or older
        }
        g.txn.put(key, encode(&report));
        let validating = self.tier == Tier::Province && from.as_str() == report.enterprise;
        if validating {
            self.validate_data(g, &report)?;
        }
        self.send_up(g, outbox_entry::Body::DataReport(report));
        Ok(())
    }

    /// Province: what is wrong with an enterprise's new version; a demand to correct it.
    fn validate_data(
        &mut self,
        g: &mut Group<'_>,
        report: &ResourceReport,
    ) -> Result<(), NodeError> {
        let mut others = Vec::new();
        for entry in self.shared.store.scan_prefix(records::DATA_REPORT_PREFIX) {
            let (k, v) = entry?;
            let other: ResourceReport = decode(&k, &v)?;
            if other.enterprise != report.enterprise {
                others.push(other);
            }
        }
        let anomalies = isms_data::validate(report, &others, &self.data_rules);
        let key = records::data_status(&report.enterprise);
        let mut status: DataStatus = g.read(&key)?.unwrap_or_default();
        status.enterprise = report.enterprise.clone();
        status.version = report.version;
        status.submitted_at_ms = report.submitted_at_ms;
        status.validated_at_ms = g.now;
        (status.houses, status.customers, status.domains) = counts(report);
        status.anomalies = anomalies;
        // The version before was re-reported: its demand is answered.
        status.correction_open = false;
        let outcome = format!(
            "version {}: {} anomalies",
            report.version,
            status.anomalies.len()
        );
        audit(
            g,
            &Caller::node(),
            "data.validate",
            &report.enterprise,
            &outcome,
        );
        if !status.anomalies.is_empty() && status.correction_version != report.version {
            let id = self.demand_correction(g, report, &status)?;
            status.correction_id = id;
            status.correction_version = report.version;
            status.correction_open = true;
        }
        g.txn.put(key, encode(&status));
        self.send_up(g, outbox_entry::Body::DataStatus(status));
        Ok(())
    }

    /// Province: a data-correction demand to the enterprise, with the findings.
    fn demand_correction(
        &mut self,
        g: &mut Group<'_>,
        report: &ResourceReport,
        status: &DataStatus,
    ) -> Result<String, NodeError> {
        let reason_code = if status.anomalies.iter().any(|a| a.rule == "required") {
            "missing"
        } else if status.anomalies.iter().any(|a| a.rule == "overlap") {
            "inconsistent"
        } else {
            "wrong"
        };
        let detail = status
            .anomalies
            .iter()
            .map(|a| format!("{}: {}: {}", a.rule, a.subject, a.detail))
            .collect::<Vec<_>>()
            .join("; ");
        let mut detail = detail;
        if detail.len() > directive::MAX_NOTE_BYTES {
            let mut cut = directive::MAX_NOTE_BYTES - 3;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
            detail.push('…');
        }
        let request = IssueRequest {
            to: vec![report.enterprise.clone()],
            kind: DirectiveKind::DataCorrection as i32,
            urgency: Urgency::General as i32,
            correction: Some(DataCorrection {
                subject: format!("data version {}", report.version),
                reason_code: reason_code.into(),
                detail,
            }),
            ..Default::default()
        };
        let reply = self.issue(g, request, &Caller::node())?;
        Ok(reply.id)
    }

    /// Ministry (or a province above another's): what a province's validation found.
    pub(super) fn receive_data_status(
        &mut self,
        g: &mut Group<'_>,
        status: DataStatus,
    ) -> Result<(), NodeError> {
        let key = records::data_status(&status.enterprise);
        let kept: Option<DataStatus> = g.read(&key)?;
        if kept.is_some_and(|k| {
            (k.version, k.validated_at_ms) >= (status.version, status.validated_at_ms)
        }) {
            return Ok(());
        }
        g.txn.put(key, encode(&status));
        self.send_up(g, outbox_entry::Body::DataStatus(status));
        Ok(())
    }
}

/// What this node holds of each enterprise's data: the validation's status where there is
/// one, else the report's version alone (at the enterprise itself).
pub fn stored_data(store: &Store, anomalies_only: bool) -> Result<Vec<DataStatus>, NodeError> {
    let mut out = BTreeMap::new();
    for entry in store.scan_prefix(records::DATA_REPORT_PREFIX) {
        let (k, v) = entry?;
        let r: ResourceReport = decode(&k, &v)?;
        let (houses, customers, domains) = counts(&r);
        out.insert(
            r.enterprise.clone(),
            DataStatus {
                enterprise: r.enterprise.clone(),
                version: r.version,
                submitted_at_ms: r.submitted_at_ms,
                houses,
                customers,
                domains,
                ..Default::default()
            },
        );
    }
    for entry in store.scan_prefix(records::DATA_STATUS_PREFIX) {
        let (k, v) = entry?;
        let s: DataStatus = decode(&k, &v)?;
        out.insert(s.enterprise.clone(), s);
    }
    Ok(out
        .into_values()
        .filter(|s| !anomalies_only || !s.anomalies.is_empty())
        .collect())
}

/// How many houses, customers and served domains a report holds.
fn counts(r: &ResourceReport) -> (u32, u32, u32) {
    let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
    (
        n(r.houses.len()),
        n(r.customers.len()),
        n(r.customers.iter().map(|c| c.domains.len()).sum()),
    )
}
