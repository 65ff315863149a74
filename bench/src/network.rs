//! The network-view scenario (issue 37): the ministry's view of every node with
//! heartbeats every `health.interval`. Measures the time until it holds every node up,
//! its CPU and the bytes per second on its links while the network is idle (heartbeats
//! only, as the ministry counts its frames), and, with a province stopped, how long until
//! the province is down, checking that its enterprises turned unknown together, in one
//! step.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use isms_proto::v1::operator_client::OperatorClient;
use isms_proto::v1::{Liveness, NetworkStatusRequest, NodeHealth, NodeStatusRequest};
use tonic::transport::Channel;

use crate::net::{self, BenchNet};

/// The figures: (name, unit, value).
pub type Row = (String, &'static str, f64);

async fn nodes(
    client: &mut OperatorClient<Channel>,
    province: &str,
) -> anyhow::Result<Vec<NodeHealth>> {
    Ok(client
        .network_status(NetworkStatusRequest {
            state: String::new(),
            province: province.to_string(),
        })
        .await?
        .into_inner()
        .nodes)
}

/// Bytes the ministry has received and sent on all its links.
async fn link_bytes(client: &mut OperatorClient<Channel>) -> anyhow::Result<(u64, u64)> {
    let peers = client
        .node_status(NodeStatusRequest {})
        .await?
        .into_inner()
        .peers;
    Ok(peers
        .iter()
        .fold((0, 0), |(r, s), p| (r + p.bytes_received, s + p.bytes_sent)))
}

fn liveness(n: &NodeHealth) -> Liveness {
    Liveness::try_from(n.liveness).unwrap_or(Liveness::Unspecified)
}

pub async fn run(
    bench: &mut BenchNet,
    client: &mut OperatorClient<Channel>,
    province: &str,
    total_nodes: usize,
    idle: Duration,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let t0 = Instant::now();
    loop {
        let all = nodes(client, "").await?;
        let up = all.iter().filter(|n| liveness(n) == Liveness::Up).count();
        if all.len() >= total_nodes && up == all.len() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(180) {
            bail!("the ministry holds {up} of {total_nodes} nodes up after 180s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "  the ministry holds all {total_nodes} nodes up ({:.1}s after the scenario began)",
        t0.elapsed().as_secs_f64()
    );

    let pid = bench.pid("ministry").context("ministry pid")?;
    let (cpu0, bytes0) = (net::cpu_ms(pid), link_bytes(client).await?);
    let started = Instant::now();
    tokio::time::sleep(idle).await;
    let secs = started.elapsed().as_secs_f64();
    let (cpu1, bytes1) = (net::cpu_ms(pid), link_bytes(client).await?);
    let cpu = (cpu1 - cpu0) as f64 / secs;
    let received = (bytes1.0 - bytes0.0) as f64 / secs;
    let sent = (bytes1.1 - bytes0.1) as f64 / secs;
    println!(
        "  idle {secs:.0}s with heartbeats: ministry CPU {cpu:.1} ms/s; its links carry {:.2} KiB/s in, {:.2} KiB/s out",
        received / 1024.0,
        sent / 1024.0
    );
    rows.push(("ministry CPU, idle with heartbeats".into(), "ms/s", cpu));
    rows.push((
        "ministry links in, idle with heartbeats".into(),
        "KiB/s",
        received / 1024.0,
    ));
    rows.push((
        "ministry links out, idle with heartbeats".into(),
        "KiB/s",
        sent / 1024.0,
    ));

    // A province stops: the ministry shows it down, and its enterprises unknown, together.
    bench.stop(province)?;
    let stopped = Instant::now();
    let mut mixed = 0;
    let down_after = loop {
        let sub = nodes(client, province).await?;
        let p = sub.iter().find(|n| n.node == province).map(liveness);
        let below: Vec<Liveness> = sub
            .iter()
            .filter(|n| n.node != province)
            .map(liveness)
            .collect();
        // Once the province is not up, every enterprise below it is unknown in the same
        // answer: never some up and some unknown.
        if p != Some(Liveness::Up) && below.iter().any(|l| *l != Liveness::Unknown) {
            mixed += 1;
        }
        if p == Some(Liveness::Down) {
            break stopped.elapsed().as_secs_f64();
        }
        if stopped.elapsed() > Duration::from_secs(300) {
            bail!("{province} not down at the ministry 300s after it stopped");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    anyhow::ensure!(
        mixed == 0,
        "{mixed} answers showed {province} not up with some of its enterprises not unknown"
    );
    println!(
        "  {province} down at the ministry {down_after:.1}s after it stopped, its enterprises unknown in one step"
    );
    rows.push((
        format!("{province} shown down after it stopped"),
        "s",
        down_after,
    ));
    bench.spawn(province)?;
    let back = Instant::now();
    loop {
        let sub = nodes(client, province).await?;
        if sub.iter().all(|n| liveness(n) == Liveness::Up) && sub.len() > 1 {
            break;
        }
        if back.elapsed() > Duration::from_secs(180) {
            bail!("{province} and its enterprises not up again 180s after its restart");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "  {province} and its enterprises up again {:.1}s after its restart",
        back.elapsed().as_secs_f64()
    );
    Ok(rows)
}
