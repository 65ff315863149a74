//! The transport's floor: what one small frame each way costs on the stack the link is built
//! on (tokio, rustls, HTTP/2 through tonic, loopback TCP), with nothing of ours on either
//! end: no store, no core, no outbox. Echo servers stand in for the provinces, each in its
//! own process with the nodes' TLS and HTTP/2 settings; this process stands in for the
//! load generator, with one mutually authenticated connection per simulated enterprise.
//! Each round sends one frame down every connection and waits for every echo.
//!
//! `cargo run --release -p isms-bench --example transport_floor -- [servers] [per_server]
//! [rounds] [frame_bytes] [hop] [current]`: by default 31 × 161 connections, 20 rounds, 300-byte
//! frames. Flags for the servers: `hop`, each answers from a task of its own through a
//! channel, as a node's link writer does, instead of from the request stream itself;
//! `current`, each runs Tokio's single-threaded scheduler instead of its multi-threaded one.
//!
//! `… -- stream [messages] [envelope_bytes] [per_frame] [window]`: the backlog's floor.
//! One server, one link: `messages` envelopes (default 100,000 of 400 bytes, a one-target
//! directive's size) in frames of `per_frame` (512, the link's `batch`) with at most
//! `window` (8,192, the link's) unacknowledged; the server answers each frame with an
//! acknowledgment only, as a province storing a backlog in its inbox does.

use std::io::BufRead;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{Stream, StreamExt};
use isms_deploy::pki::DevCa;
use isms_domain::identity::Identity;
use isms_proto::v1::link_client::LinkClient;
use isms_proto::v1::link_server::{Link, LinkServer};
use isms_proto::v1::{Batch, Frame, frame};
use isms_transport::tls;
use prost::bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

const TRUST_DOMAIN: &str = "isms.example";

fn main() -> anyhow::Result<()> {
    tls::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        let dir = args.get(1).context("serve <dir> [hop] [current] [ack]")?;
        let hop = args.iter().any(|a| a == "hop");
        let ack = args.iter().any(|a| a == "ack");
        let runtime = if args.iter().any(|a| a == "current") {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
        } else {
            tokio::runtime::Runtime::new()?
        };
        return runtime.block_on(serve(dir.into(), hop, ack));
    }
    if args.first().map(String::as_str) == Some("stream") {
        let num = |i: usize, default: usize| -> anyhow::Result<usize> {
            args.get(i)
                .map_or(Ok(default), |a| a.parse().context("a number"))
        };
        let (messages, size, per_frame, window) =
            (num(1, 100_000)?, num(2, 400)?, num(3, 512)?, num(4, 8192)?);
        anyhow::ensure!(
            messages > 0 && per_frame > 0 && window >= per_frame,
            "messages and per_frame must be at least 1, window at least per_frame"
        );
        return tokio::runtime::Runtime::new()?.block_on(stream(messages, size, per_frame, window));
    }
    let num = |i: usize, default: usize| -> anyhow::Result<usize> {
        args.get(i)
            .map_or(Ok(default), |a| a.parse().context("a number"))
    };
    let servers = num(0, 31)?;
    let per = num(1, 161)?;
    let rounds = num(2, 20)?;
    let size = num(3, 300)?;
    let flags: Vec<String> = args.iter().skip(4).cloned().collect();
    anyhow::ensure!(
        servers > 0 && per > 0 && rounds > 0,
        "servers, links per server and rounds must be at least 1"
    );
    if let Some(bad) = flags
        .iter()
        .find(|f| !["hop", "current"].contains(&f.as_str()))
    {
        anyhow::bail!("unknown flag {bad:?}: the flags are hop and current");
    }
    tokio::runtime::Runtime::new()?.block_on(drive(servers, per, rounds, size, &flags))
}

/// An echo server: every frame that comes in is answered with one of the same size.
struct Echo {
    hop: bool,
    /// Answer a frame with an acknowledgment of its envelopes only.
    ack: bool,
}

type Frames = Pin<Box<dyn Stream<Item = Result<Frame, Status>> + Send>>;

#[tonic::async_trait]
impl Link for Echo {
    type OpenStream = Frames;

    async fn open(
        &self,
        request: Request<Streaming<Frame>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        let inbound = request.into_inner();
        if self.ack {
            let mut applied = 0u64;
            return Ok(Response::new(Box::pin(inbound.map(move |f| {
                f.map(|f| {
                    if let Some(frame::Body::Batch(b)) = f.body {
                        applied += b.envelopes.len() as u64;
                    }
                    Frame {
                        body: Some(frame::Body::Batch(Batch {
                            envelopes: Vec::new(),
                            applied,
                        })),
                    }
                })
            }))));
        }
        if !self.hop {
            return Ok(Response::new(Box::pin(inbound.map(|f| f.map(echo)))));
        }
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut inbound = inbound;
            while let Some(Ok(f)) = inbound.next().await {
                if tx.send(Ok(echo(f))).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn echo(f: Frame) -> Frame {
    match f.body {
        Some(frame::Body::Batch(b)) => batch(b.envelopes.first().map_or(0, Bytes::len)),
        _ => batch(0),
    }
}

fn batch(size: usize) -> Frame {
    Frame {
        body: Some(frame::Body::Batch(Batch {
            envelopes: vec![Bytes::from(vec![b'x'; size])],
            applied: 1,
        })),
    }
}

async fn serve(dir: std::path::PathBuf, hop: bool, ack: bool) -> anyhow::Result<()> {
    let paths = tls::TlsPaths {
        ca: &dir.join("ca.pem"),
        cert: &dir.join("server.pem"),
        key: &dir.join("server.key"),
    };
    // As a node without `tls.crl`.
    let revocations = tls::Revocations::none(paths.ca)?;
    let config = tls::server_config(&paths, &revocations)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    let stop = tokio_util::sync::CancellationToken::new();
    let incoming = tls::incoming(listener, config, revocations, stop.clone());
    // The nodes' server settings (node.rs).
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20))
        .add_service(LinkServer::new(Echo { hop, ack }))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

/// User plus system CPU of a process so far.
fn cpu(pid: u32) -> anyhow::Result<Duration> {
    let stat = isms_node::scheduling::process_stat(pid).map_err(anyhow::Error::msg)?;
    Ok(stat.cpu_time())
}

struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }
}

/// The network's CA, a server identity and a client identity in `dir`.
fn pki(dir: &std::path::Path) -> anyhow::Result<Identity> {
    let ca = DevCa::generate(TRUST_DOMAIN, "floor CA")?;
    ca.write_cert(&dir.join("ca.pem"))?;
    let server_id = Identity::Node("province/11".parse()?);
    ca.issue(&server_id)?.write(dir, "server")?;
    ca.issue(&Identity::Node("enterprise/e1101".parse()?))?
        .write(dir, "client")?;
    Ok(server_id)
}

/// Starts one server process with `flags`; its port.
fn spawn_server(
    dir: &std::path::Path,
    flags: &[&str],
    children: &mut Servers,
) -> anyhow::Result<u16> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("serve")
        .arg(dir)
        .args(flags)
        .stdout(Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().context("server stdout")?;
    children.0.push(child);
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line)?;
    line.trim().parse::<u16>().context("server port")
}

/// The backlog's floor: `messages` envelopes through one link, acknowledged per frame.
async fn stream(
    messages: usize,
    size: usize,
    per_frame: usize,
    window: usize,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server_id = pki(dir.path())?;
    let mut children = Servers(Vec::new());
    let port = spawn_server(dir.path(), &["ack"], &mut children)?;
    let paths = tls::TlsPaths {
        ca: &dir.path().join("ca.pem"),
        cert: &dir.path().join("client.pem"),
        key: &dir.path().join("client.key"),
    };
    let client = tls::client_config(&paths, server_id, TRUST_DOMAIN)?;
    let channel = tls::channel(&format!("127.0.0.1:{port}"), client)?;
    let (tx, rx) = mpsc::channel(64);
    let mut acks = LinkClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .open(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let envelope = Bytes::from(vec![b'x'; size]);
    let (server, me) = (children.0[0].id(), std::process::id());
    let (s0, c0) = (cpu(server)?, cpu(me)?);
    let t0 = Instant::now();
    let (mut sent, mut acked) = (0usize, 0usize);
    while acked < messages {
        while sent < messages && sent - acked + per_frame <= window {
            let n = per_frame.min(messages - sent);
            tx.send(Frame {
                body: Some(frame::Body::Batch(Batch {
                    envelopes: vec![envelope.clone(); n],
                    applied: 0,
                })),
            })
            .await?;
            sent += n;
        }
        let answer = tokio::time::timeout(Duration::from_secs(60), acks.message())
            .await
            .context("no acknowledgment in 60 s")??
            .context("the server closed the link")?;
        if let Some(frame::Body::Batch(b)) = answer.body {
            acked = b.applied as usize;
        }
    }
    let wall = t0.elapsed();
    let (s1, c1) = (cpu(server)?, cpu(me)?);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / messages as f64;
    println!(
        "{messages} envelopes of {size} bytes, {per_frame} a frame, window {window}, one mTLS link: {:.0} messages/s ({:.2} s); CPU per message: sender {:.2} µs, receiver {:.2} µs",
        messages as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
        per(c1 - c0),
        per(s1 - s0),
    );
    Ok(())
}

async fn drive(
    servers: usize,
    per: usize,
    rounds: usize,
    size: usize,
    flags: &[String],
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server_id = pki(dir.path())?;
    let mut children = Servers(Vec::new());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut ports = Vec::new();
    for _ in 0..servers {
        ports.push(spawn_server(dir.path(), &flags, &mut children)?);
    }

    let paths = tls::TlsPaths {
        ca: &dir.path().join("ca.pem"),
        cert: &dir.path().join("client.pem"),
        key: &dir.path().join("client.key"),
    };
    let client = tls::client_config(&paths, server_id, TRUST_DOMAIN)?;
    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let n = servers * per;
    let mut senders = Vec::with_capacity(n);
    for i in 0..n {
        let channel = tls::channel(&format!("127.0.0.1:{}", ports[i % servers]), client.clone())?;
        let (tx, rx) = mpsc::channel(64);
        let mut inbound = LinkClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .open(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let (received, done) = (received.clone(), done.clone());
        tokio::spawn(async move {
            while let Ok(Some(_)) = inbound.message().await {
                if received.fetch_add(1, Ordering::SeqCst) + 1 == n as u64 {
                    done.notify_one();
                }
            }
        });
        senders.push(tx);
    }
    println!(
        "{n} connections to {servers} echo servers ({}); {rounds} rounds of one {size}-byte frame each way",
        if flags.is_empty() {
            "default".to_string()
        } else {
            flags.join(", ")
        }
    );

    let pids: Vec<u32> = children.0.iter().map(Child::id).collect();
    let me = std::process::id();
    let cpu_now = || -> anyhow::Result<(Duration, Duration)> {
        let servers = pids
            .iter()
            .map(|p| cpu(*p))
            .sum::<anyhow::Result<Duration>>()?;
        Ok((servers, cpu(me)?))
    };
    let frame = batch(size);
    let (mut server_total, mut client_total, mut walls) = (Duration::ZERO, Duration::ZERO, vec![]);
    for round in 0..=rounds {
        received.store(0, Ordering::SeqCst);
        let (s0, c0) = cpu_now()?;
        let t0 = Instant::now();
        for tx in &senders {
            tx.send(frame.clone()).await?;
        }
        tokio::time::timeout(Duration::from_secs(60), done.notified())
            .await
            .context("echoes did not all come back")?;
        let wall = t0.elapsed();
        let (s1, c1) = cpu_now()?;
        // Round 0 warms up (first frames on fresh connections).
        if round > 0 {
            server_total += s1 - s0;
            client_total += c1 - c0;
            walls.push(wall);
        }
    }
    walls.sort();
    let per_frame = |d: Duration| d.as_secs_f64() * 1e6 / (rounds * n) as f64;
    println!(
        "round wall p50 {:.0} ms (min {:.0}, max {:.0}); CPU per connection and round (one frame each way): servers {:.1} µs, client {:.1} µs, both {:.1} µs; CPU per round {:.0} ms",
        walls[walls.len() / 2].as_secs_f64() * 1e3,
        walls[0].as_secs_f64() * 1e3,
        walls[walls.len() - 1].as_secs_f64() * 1e3,
        per_frame(server_total),
        per_frame(client_total),
        per_frame(server_total + client_total),
        (server_total + client_total).as_secs_f64() * 1e3 / rounds as f64,
    );
    Ok(())
}
