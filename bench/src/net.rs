//! The benchmark's network: generated like any deployment (isms-deploy), real ministry and
//! province processes, one real enterprise process, and the rest simulated in-process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use isms_config::LinkTuning;
use isms_deploy::{Network, NodeLayout, Options, Topology};
use isms_domain::identity::NodeId;
use isms_proto::v1::NodeStatusRequest;
use isms_proto::v1::operator_client::OperatorClient;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tonic::transport::Channel;

/// The 31 provincial-level divisions of the mainland, by GB/T 2260 code.
pub const PROVINCE_CODES: [&str; 31] = [
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41",
    "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65",
];

pub struct BenchNet {
    pub net: Network,
    bin_dir: PathBuf,
    children: Vec<(NodeId, Child)>,
}

impl BenchNet {
    /// Generates `provinces` × `per_province` enterprises under `root`.
    pub fn generate(
        root: &Path,
        bin_dir: PathBuf,
        provinces: usize,
        per_province: usize,
        link: LinkTuning,
        scheduling: isms_config::Scheduling,
    ) -> anyhow::Result<BenchNet> {
        anyhow::ensure!(
            (1..=PROVINCE_CODES.len()).contains(&provinces),
            "--provinces must be 1..=31"
        );
        anyhow::ensure!(per_province >= 1, "--per-province must be at least 1");
        for bin in ["ministry-node", "province-node", "enterprise-node"] {
            if !bin_dir.join(bin).is_file() {
                bail!(
                    "{} not found; build with `cargo build --release --workspace --bins`",
                    bin_dir.join(bin).display()
                );
            }
        }
        let topology = Topology {
            provinces: PROVINCE_CODES[..provinces]
                .iter()
                .map(|c| {
                    let es = (1..=per_province).map(|i| format!("e{c}x{i:04}")).collect();
                    (c.to_string(), es)
                })
                .collect(),
            direct: Vec::new(),
        };
        let options = Options {
            log_filter: "info".into(),
            link,
            scheduling,
            calendar: Path::new(env!("CARGO_MANIFEST_DIR")).join("../calendar"),
            ..Options::default()
        };
        let net = isms_deploy::generate(root, &topology, &options)?;
        Ok(BenchNet {
            net,
            bin_dir,
            children: Vec::new(),
        })
    }

    pub fn layout(&self, id: &str) -> anyhow::Result<&NodeLayout> {
        self.net
            .node(id)
            .with_context(|| format!("{id} not generated"))
    }

    pub fn spawn(&mut self, id: &str) -> anyhow::Result<()> {
        let node = self.layout(id)?.clone();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log_path())?;
        let child = Command::new(self.bin_dir.join(node.binary))
            .arg("serve")
            .arg("--config")
            .arg(&node.config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {id}"))?;
        self.children.push((node.id.clone(), child));
        Ok(())
    }

    pub fn pid(&self, id: &str) -> Option<u32> {
        self.children
            .iter()
            .find(|(n, _)| n.as_str() == id)
            .map(|(_, c)| c.id())
    }

    /// SIGTERM and wait (bounded) for the node to exit.
    pub fn stop(&mut self, id: &str) -> anyhow::Result<()> {
        let Some(pos) = self.children.iter().position(|(n, _)| n.as_str() == id) else {
            bail!("{id} is not running");
        };
        let (_, mut child) = self.children.remove(pos);
        terminate(&mut child)
    }

    pub fn stop_all(&mut self) {
        for (_, child) in &self.children {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        }
        for (id, mut child) in self.children.drain(..) {
            if let Err(e) = terminate(&mut child) {
                eprintln!("stopping {id}: {e}");
            }
        }
    }

    pub async fn operator(&self, id: &str) -> anyhow::Result<OperatorClient<Channel>> {
        let args = isms_cli::ClientArgs {
            config: self.layout(id)?.config_path.clone(),
            operator_cert: None,
            operator_key: None,
        };
        Ok(isms_cli::connect(&args)
            .await?
            .max_encoding_message_size(64 << 20))
    }

    /// Polls until every parent among `parents` reports all its children linked.
    pub async fn wait_linked(&self, parents: &[String], timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for parent in parents {
            let mut client = self.operator(parent).await?;
            loop {
                let up = match client.node_status(NodeStatusRequest {}).await {
                    Ok(r) => r
                        .into_inner()
                        .peers
                        .iter()
                        .filter(|p| p.role == "child")
                        .all(|p| p.up),
                    Err(_) => false,
                };
                if up {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("{parent} did not see all its children linked in time");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }
}

impl Drop for BenchNet {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn terminate(child: &mut Child) -> anyhow::Result<()> {
    let pid = Pid::from_raw(i32::try_from(child.id())?);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("did not exit within 30s of SIGTERM; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `VmRSS` and `VmHWM` (peak) of a process, in bytes.
pub fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time (user + system) a process has used so far, in ms; 0 once it is gone.
pub fn cpu_ms(pid: u32) -> u64 {
    isms_node::scheduling::process_stat(pid).map_or(0, |s| {
        u64::try_from(s.cpu_time().as_millis()).unwrap_or(u64::MAX)
    })
}

/// Bytes under `dir` (apparent size of every file).
pub fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += disk_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
