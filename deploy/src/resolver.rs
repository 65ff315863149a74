//! A local unbound for an enterprise's `rpz` point: its config, remote-control keys, a
//! zone of test names (`example.`: bad, good, worse, later) served as an `auth-zone` for
//! upstream, so RPZ applies to them (names from `local-data` are answered before RPZ), and
//! the `[[enforcement]]` lines that point the enterprise at it. Used by `isms-devnet` and
//! the tests. Must not start the resolver: its callers do, and stop it by its PID.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The policy zone's name.
pub const RPZ_ZONE: &str = "rpz.isms.";

/// A configured, not yet started, unbound.
#[derive(Debug, Clone)]
pub struct Unbound {
    pub dir: PathBuf,
    pub conf: PathBuf,
    /// Where it answers (127.0.0.1, UDP and TCP).
    pub port: u16,
    /// The policy zone file the enterprise writes.
    pub zone_file: PathBuf,
    /// Where unbound writes its PID once daemonized (`daemonize`).
    pub pid_file: PathBuf,
}

/// Whether `unbound` and `unbound-control-setup` are on the PATH.
pub fn installed() -> bool {
    ["unbound", "unbound-control-setup", "unbound-control"]
        .iter()
        .all(|p| {
            Command::new("sh")
                .args(["-c", &format!("command -v {p}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// A port nobody holds now, for UDP and TCP.
fn free_port() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port")
}

/// Writes an unbound under `dir` for an enterprise whose policy zone is `zone_file`;
/// `daemonize` for a background resolver (the devnet), else it stays in the foreground
/// (a test's child).
pub fn configure(dir: &Path, zone_file: &Path, daemonize: bool) -> anyhow::Result<Unbound> {
    std::fs::create_dir_all(dir)?;
    let keys = Command::new("unbound-control-setup")
        .arg("-d")
        .arg(dir)
        .output()
        .context("unbound-control-setup")?;
    if !keys.status.success() {
        bail!(
            "unbound-control-setup: {}",
            String::from_utf8_lossy(&keys.stderr)
        );
    }
    std::fs::write(
        dir.join("example.zone"),
        "$ORIGIN example.\n@ 3600 IN SOA ns.example. admin.example. 1 3600 600 86400 60\n\
         @ 3600 IN NS ns.example.\nns 3600 IN A 127.0.0.1\n\
         bad 60 IN A 192.0.2.1\ngood 60 IN A 192.0.2.2\nworse 60 IN A 192.0.2.3\n\
         later 60 IN A 192.0.2.4\n",
    )?;
    // An empty policy zone until the enterprise writes its own.
    std::fs::write(
        zone_file,
        format!(
            "{RPZ_ZONE} IN SOA localhost. hostmaster.localhost. 1 3600 600 86400 60\n\
             {RPZ_ZONE} IN NS localhost.\n"
        ),
    )?;
    let (port, control) = (free_port()?, free_port()?);
    let d = dir.display();
    let conf = dir.join("unbound.conf");
    let pid_file = dir.join("pid");
    std::fs::write(
        &conf,
        format!(
            "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-daemonize: {}\n  \
             username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{}\"\n  \
             use-syslog: no\n  logfile: \"{d}/unbound.log\"\n  \
             module-config: \"respip validator iterator\"\n  \
             access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n  \
             cache-max-ttl: 1\n  cache-max-negative-ttl: 1\n\
             auth-zone:\n  name: \"example.\"\n  zonefile: \"{d}/example.zone\"\n  \
             for-upstream: yes\n  for-downstream: yes\n\
             rpz:\n  name: \"{RPZ_ZONE}\"\n  zonefile: \"{}\"\n\
             remote-control:\n  control-enable: yes\n  control-interface: 127.0.0.1\n  \
             control-port: {control}\n  server-key-file: \"{d}/unbound_server.key\"\n  \
             server-cert-file: \"{d}/unbound_server.pem\"\n  \
             control-key-file: \"{d}/unbound_control.key\"\n  \
             control-cert-file: \"{d}/unbound_control.pem\"\n",
            if daemonize { "yes" } else { "no" },
            pid_file.display(),
            zone_file.display()
        ),
    )?;
    Ok(Unbound {
        dir: dir.to_path_buf(),
        conf,
        port,
        zone_file: zone_file.to_path_buf(),
        pid_file,
    })
}

impl Unbound {
    /// The `[[enforcement]]` entry of an enterprise config that feeds this resolver.
    pub fn enforcement_toml(&self) -> String {
        format!(
            "\n[[enforcement]]\npoint = \"rpz\"\nzone = \"{RPZ_ZONE}\"\nzone_file = \"{}\"\n\
             reload = [\"unbound-control\", \"-c\", \"{}\", \"auth_zone_reload\", \"{RPZ_ZONE}\"]\n\
             verify_with = \"127.0.0.1:{}\"\n",
            self.zone_file.display(),
            self.conf.display(),
            self.port
        )
    }

    /// Adds this resolver as an `rpz` point, and the rules file as a `file` point, to the
    /// enterprise config at `config_path`.
    pub fn attach(&self, config_path: &Path) -> anyhow::Result<()> {
        let mut config = std::fs::read_to_string(config_path)?;
        config.push_str(&self.enforcement_toml());
        config.push_str("\n[[enforcement]]\npoint = \"file\"\npath = \"rules.json\"\n");
        std::fs::write(config_path, config)?;
        Ok(())
    }
}
