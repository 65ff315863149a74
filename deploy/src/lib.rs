//! Turns a topology into a runnable network: a development CA, a certificate and an operator
//! certificate per node, and one TOML config per node, all under one directory. Used by
//! `isms-devnet` and by the end-to-end tests, so both run exactly what an operator would.
//! The development CA (`pki`) lives here too: production operators bring their own.
//! Must not be needed to run a node: it only writes the files a node reads.

pub mod pki;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use crate::pki::DevCa;
use anyhow::Context;
use isms_config::{
    Child, Config, KindName, LinkTuning, Parent, Telemetry, Testing, TlsFiles, TlsIdentityFiles,
};
use isms_domain::identity::{Identity, NodeId, Tier};

/// Which nodes exist and who is whose parent.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Province codes with the IDs of their enterprises.
    pub provinces: Vec<(String, Vec<String>)>,
    /// Enterprises hanging directly under the ministry.
    pub direct: Vec<String>,
}

impl Topology {
    /// The local development network: provinces 11, 31 and 44 with two enterprises each,
    /// and one enterprise directly under the ministry.
    pub fn devnet() -> Topology {
        Topology::uniform(&["11", "31", "44"], 2, 1)
    }

    /// `per_province` enterprises `e<code><nn>` under each province, and `direct`
    /// enterprises `e00<nn>` under the ministry.
    pub fn uniform(codes: &[&str], per_province: usize, direct: usize) -> Topology {
        Topology {
            provinces: codes
                .iter()
                .map(|c| {
                    let es = (1..=per_province).map(|i| format!("e{c}{i:02}")).collect();
                    (c.to_string(), es)
                })
                .collect(),
            direct: (1..=direct).map(|i| format!("e00{i:02}")).collect(),
        }
    }

    /// Every enterprise ID.
    pub fn enterprises(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .provinces
            .iter()
            .flat_map(|(_, es)| es.iter().cloned())
            .collect();
        out.extend(self.direct.iter().cloned());
        out
    }
}

/// Settings applied to every node of a generated network.
#[derive(Debug, Clone)]
pub struct Options {
    pub trust_domain: String,
    pub otlp_endpoint: Option<String>,
    pub log_filter: String,
    pub link: LinkTuning,
    /// `scheduling` of every node.
    pub scheduling: isms_config::Scheduling,
    /// Give every node a testing clock file (`<node dir>/clock`), moved with `NAME clock`.
    pub clock_files: bool,
    /// The working-day calendar copied into the network (`<root>/calendar`).
    pub calendar: PathBuf,
    /// Province codes whose operators confirm requirements by hand; every other province
    /// auto-confirms every kind.
    pub manual_confirm: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            trust_domain: "isms.local".into(),
            otlp_endpoint: None,
            log_filter: "info".into(),
            link: LinkTuning::default(),
            scheduling: Default::default(),
            clock_files: false,
            calendar: Path::new(env!("CARGO_MANIFEST_DIR")).join("../calendar"),
            manual_confirm: Vec::new(),
        }
    }
}

/// One generated node.
#[derive(Debug, Clone)]
pub struct NodeLayout {
    pub id: NodeId,
    /// The directory holding its config, certificates, store, rules file and log.
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub config: Config,
    /// `ministry-node`, `province-node` or `enterprise-node`.
    pub binary: &'static str,
}

impl NodeLayout {
    pub fn listen(&self) -> SocketAddr {
        self.config.listen
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }
    pub fn pid_path(&self) -> PathBuf {
        self.dir.join("pid")
    }
    pub fn rules_path(&self) -> Option<PathBuf> {
        self.config.rules_file.as_ref().map(|r| self.dir.join(r))
    }
}

/// A generated network.
#[derive(Debug, Clone)]
pub struct Network {
    pub root: PathBuf,
    pub nodes: Vec<NodeLayout>,
    /// The CA that signed every certificate, kept in memory for tests that mint more.
    pub ca: std::sync::Arc<DevCa>,
}

impl Network {
    pub fn node(&self, id: &str) -> Option<&NodeLayout> {
        self.nodes.iter().find(|n| n.id.as_str() == id)
    }
}

pub fn binary_for(tier: Tier) -> &'static str {
    match tier {
        Tier::Ministry => "ministry-node",
        Tier::Province => "province-node",
        Tier::Enterprise => "enterprise-node",
    }
}

/// A directory name for a node ID (`province/44` → `province-44`).
pub fn slug(id: &NodeId) -> String {
    id.as_str().replace('/', "-")
}

/// The kernel's ephemeral port range, from which it picks ports for `:0` binds and
/// outgoing connections.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|p| p.parse().ok());
            Some((it.next()?, it.next()?))
        })
        .unwrap_or((32768, 60999))
}

/// Picks `n` free loopback ports below the kernel's ephemeral range. A port the OS hands
/// out for `:0` can be taken by anyone between our probe and the node's bind; these ports
/// are only ever taken by an explicit bind, and this process never hands one out twice, so
/// networks generated side by side (parallel tests) do not collide.
fn free_ports(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    use std::hash::{BuildHasher, Hasher};
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let (ephemeral_low, _) = ephemeral_range();
    let (low, high) = (10_000u16, ephemeral_low.saturating_sub(1));
    anyhow::ensure!(
        high > low + 1000,
        "the ephemeral port range starts at {ephemeral_low}: no room for reserved ports"
    );
    let span = u64::from(high - low);
    // A random start per call: parallel test processes start far apart.
    let seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let mut probes = Vec::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    for i in 0..span {
        if out.len() == n {
            break;
        }
        // u64 arithmetic keeps this in range: the result is < span <= u16::MAX.
        let port = low + u16::try_from((seed.wrapping_add(i)) % span).unwrap_or(0);
        if handed_out.contains(&port) {
            continue;
        }
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            out.push(l.local_addr()?);
            handed_out.insert(port);
            probes.push(l);
        }
    }
    anyhow::ensure!(out.len() == n, "found only {} free ports of {n}", out.len());
    Ok(out)
}

/// Generates the CA, certificates and configs of `topology` under `root`.
pub fn generate(root: &Path, topology: &Topology, options: &Options) -> anyhow::Result<Network> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let root = root.canonicalize()?;
    let ca = DevCa::generate(&options.trust_domain, "ISMS development CA")?;
    let ca_path = root.join("ca.pem");
    ca.write_cert(&ca_path)?;
    let calendar = root.join("calendar");
    std::fs::create_dir_all(&calendar)?;
    for entry in std::fs::read_dir(&options.calendar)
        .with_context(|| format!("reading the calendar {}", options.calendar.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, calendar.join(path.file_name().unwrap_or_default()))?;
        }
    }

    let ministry = NodeId::ministry();
    let mut plan: Vec<(NodeId, Option<NodeId>, Vec<Child>)> = Vec::new();
    let mut ministry_children = Vec::new();
    for (code, enterprises) in &topology.provinces {
        let province: NodeId = format!("province/{code}").parse()?;
        let es: Vec<NodeId> = enterprises
            .iter()
            .map(|e| format!("enterprise/{e}").parse())
            .collect::<Result<_, _>>()?;
        ministry_children.push(Child {
            id: province.clone(),
            enterprises: es.clone(),
        });
        let children = es
            .iter()
            .map(|e| Child {
                id: e.clone(),
                enterprises: vec![],
            })
            .collect();
        plan.push((province.clone(), Some(ministry.clone()), children));
        for e in es {
            plan.push((e, Some(province.clone()), vec![]));
        }
    }
    for e in &topology.direct {
        let id: NodeId = format!("enterprise/{e}").parse()?;
        ministry_children.push(Child {
            id: id.clone(),
            enterprises: vec![],
        });
        plan.push((id, Some(ministry.clone()), vec![]));
    }
    plan.insert(0, (ministry, None, ministry_children));

    let ports = free_ports(plan.len())?;
    let address_of = |id: &NodeId| -> Option<SocketAddr> {
        plan.iter().position(|(n, _, _)| n == id).map(|i| ports[i])
    };
    let mut nodes = Vec::new();
    for (i, (id, parent, children)) in plan.iter().enumerate() {
        let dir = root.join(slug(id));
        std::fs::create_dir_all(&dir)?;
        ca.issue(&Identity::Node(id.clone()))?.write(&dir, "node")?;
        ca.issue(&Identity::Operator {
            node: id.clone(),
            name: "admin".into(),
        })?
        .write(&dir, "operator")?;
        std::fs::copy(&ca_path, dir.join("ca.pem"))?;
        let parent = match parent {
            Some(p) => Some(Parent {
                id: p.clone(),
                address: address_of(p)
                    .context("parent not in the topology")?
                    .to_string(),
            }),
            None => None,
        };
        let config = Config {
            node_id: id.clone(),
            trust_domain: options.trust_domain.clone(),
            listen: ports[i],
            data_dir: "store".into(),
            tls: TlsFiles {
                ca: "ca.pem".into(),
                cert: "node.pem".into(),
                key: "node.key".into(),
            },
            parent,
            children: children.clone(),
            rules_file: (id.tier() == Tier::Enterprise).then(|| "rules.json".into()),
            calendar_dir: (id.tier() != Tier::Enterprise).then(|| "../calendar".into()),
            access_log: None,
            auto_confirm: match id.as_str().strip_prefix("province/") {
                Some(code) if !options.manual_confirm.iter().any(|m| m == code) => {
                    KindName::ALL.to_vec()
                }
                _ => Vec::new(),
            },
            scheduling: options.scheduling,
            link: options.link.clone(),
            telemetry: Telemetry {
                otlp_endpoint: options.otlp_endpoint.clone(),
                log_filter: options.log_filter.clone(),
                ..Telemetry::default()
            },
            operator_client: Some(TlsIdentityFiles {
                cert: "operator.pem".into(),
                key: "operator.key".into(),
            }),
            testing: Testing {
                clock_file: options.clock_files.then(|| "clock".into()),
            },
        };
        let config_path = dir.join("config.toml");
        let text = format!(
            "# Generated by isms-deploy for {id}. Paths are relative to this file.\n{}",
            toml::to_string_pretty(&config)?
        );
        std::fs::write(&config_path, text)?;
        nodes.push(NodeLayout {
            id: id.clone(),
            dir,
            config_path,
            config,
            binary: binary_for(id.tier()),
        });
    }
    Ok(Network {
        root,
        nodes,
        ca: std::sync::Arc::new(ca),
    })
}
