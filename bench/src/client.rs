//! The harness as the ministry's operator: issuing one directive or many pipelined, reading
//! a backlog, and polling a directive's summary until every target is final.

use super::*;

/// A disposal directive to `to` blocking `rules` domains named after `tag`.
pub(super) fn request(to: &str, tag: &str, rules: usize) -> IssueRequest {
    IssueRequest {
        id: uuid::Uuid::now_v7().to_string(),
        to: vec![to.into()],
        kind: DirectiveKind::Disposal as i32,
        urgency: Urgency::General as i32,
        rules: (0..rules)
            .map(|i| Rule {
                kind: RuleKind::BlockDomain as i32,
                value: format!("r{i}.{tag}.bench.example").into(),
                op: 0,
            })
            .collect(),
        ..Default::default()
    }
}

pub(super) async fn issue(
    client: &mut OperatorClient<Channel>,
    tag: &str,
    rules: usize,
) -> anyhow::Result<String> {
    let request = request("all", tag, rules);
    Ok(client.issue_directive(request).await?.into_inner().id)
}

/// A blacklist change to all: one versioned delta of `rules` domains.
pub(super) async fn issue_blacklist(
    client: &mut OperatorClient<Channel>,
    tag: &str,
    rules: usize,
) -> anyhow::Result<String> {
    let request = IssueRequest {
        blacklist: true,
        ..request("all", tag, rules)
    };
    Ok(client.issue_directive(request).await?.into_inner().id)
}

/// Issues `requests` with `in_flight` of them outstanding at a time, as a pipelining
/// client does; returns their IDs in the order issued.
pub(super) async fn issue_pipelined(
    client: &OperatorClient<Channel>,
    requests: impl Iterator<Item = IssueRequest>,
    in_flight: usize,
) -> anyhow::Result<Vec<String>> {
    use futures::StreamExt;
    let results = futures::stream::iter(requests)
        .map(|request| {
            let mut client = client.clone();
            async move { client.issue_directive(request).await }
        })
        .buffered(in_flight.max(1))
        .collect::<Vec<_>>()
        .await;
    results
        .into_iter()
        .map(|r| Ok(r?.into_inner().id))
        .collect()
}

pub(super) async fn backlog_of(
    client: &mut OperatorClient<Channel>,
    peer: &str,
) -> anyhow::Result<u64> {
    let status = client.node_status(NodeStatusRequest {}).await?.into_inner();
    status
        .peers
        .iter()
        .find(|p| p.peer == peer)
        .map(|p| p.backlog)
        .with_context(|| format!("{peer} not among the ministry's peers"))
}

/// Poll intervals: even a summary is the ministry reading 4,991 target records, so it is
/// not free; latency is measured on the ministry's clock, not by the poll.
pub(super) const FAST_POLL: Duration = Duration::from_millis(25);
pub(super) const SLOW_POLL: Duration = Duration::from_millis(250);

/// A fully executed directive, on the ministry's clock: when it accepted the directive and
/// when the last target's `executed` arrived.
pub(super) struct Done {
    pub(super) issued_ms: i64,
    pub(super) finished_ms: i64,
}

impl Done {
    pub(super) fn latency_ms(&self) -> i64 {
        self.finished_ms - self.issued_ms
    }
}

/// Waits until the ministry holds `executed` for all `n` targets.
pub(super) async fn wait_done(
    client: &mut OperatorClient<Channel>,
    id: &str,
    n: usize,
    poll: Duration,
) -> anyhow::Result<Done> {
    let started = Instant::now();
    // Counts are keyed by the names the node gives states.
    let count = |s: &isms_proto::v1::DirectiveSummary, state: TargetState| {
        let name = isms_domain::directive::state_name(state);
        s.counts.get(name).copied().unwrap_or(0) as usize
    };
    loop {
        // The summary, not the view: building, sending and reading 4,991 rows 40 times a
        // second was a quarter of the ministry's CPU in the latency scenario.
        let summary = client
            .get_directive_summary(GetDirectiveRequest { id: id.into() })
            .await?
            .into_inner();
        let executed = count(&summary, TargetState::Executed);
        if executed == n && summary.targets as usize == n {
            return Ok(Done {
                issued_ms: summary.issued_at_ms,
                finished_ms: summary.finished_at_ms,
            });
        }
        if count(&summary, TargetState::Failed) + count(&summary, TargetState::Returned) > 0 {
            let view = client
                .get_directive(GetDirectiveRequest { id: id.into() })
                .await?
                .into_inner();
            if let Some(bad) = view.targets.iter().find(|t| {
                t.state == TargetState::Failed as i32 || t.state == TargetState::Returned as i32
            }) {
                bail!("{id}: {} {}: {}", bad.node, bad.state, bad.detail);
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("{id}: only {executed} of {n} executed after 600s");
        }
        tokio::time::sleep(poll).await;
    }
}
