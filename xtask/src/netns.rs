//! The private network namespace the tests run in.
//!
//! Inside it, loopback is up and carries IPv4 multicast and limited
//! broadcast, 192.0.2.0/24 (TEST-NET-1) is a black hole in which TCP
//! connects stay pending, DNS fails at once for every name that
//! `/etc/hosts` does not know, and nothing can reach any other network.
//! Tests that depend on this check `EVENTCORE_TEST_NETNS=1`.
//!
//! The namespace also has its own mount namespace (for a private
//! `/etc/resolv.conf`) and its own PID namespace, so that when a leg ends or
//! is killed for taking too long, every process it started dies with it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cmd::{find_program, Job, Result};
use crate::fail;

/// The variable that tells tests they run inside the test namespace.
pub const ENV_VAR: &str = "EVENTCORE_TEST_NETNS";

/// The address the black-hole probe connects to (TEST-NET-1, RFC 5737).
const BLACK_HOLE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 1);

/// The options given to `unshare`: a new network, mount and PID namespace,
/// with `/proc` remounted for the new PID namespace, and the whole
/// namespace killed if `unshare` itself dies.
const UNSHARE_FLAGS: &[&str] = &["--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc"];

/// The shell script that sets the namespace up and then runs the command.
/// Its positional parameters are: the `ip` program, the private
/// `resolv.conf`, the xtask executable (for the probe), then the command.
const SETUP_SCRIPT: &str = r#"set -eu
ip=$1 resolv=$2 probe=$3
shift 3
# Loopback, with IPv4 multicast and the limited broadcast address routed
# onto it, so that multicast and broadcast tests stay on this machine.
"$ip" link set lo up multicast on
"$ip" route add 224.0.0.0/4 dev lo src 127.0.0.1
"$ip" route add broadcast 255.255.255.255 dev lo table local src 127.0.0.1
# The black hole: a veth whose peer stays down. With ARP off, nothing ever
# answers or fails, so a TCP connect into 192.0.2.0/24 stays pending until
# the kernel gives up (about 135 seconds with the default SYN retries).
"$ip" link add ecv0 type veth peer name ecv1
"$ip" link set ecv0 arp off up
"$ip" addr add 192.0.2.254/24 dev ecv0
# A resolver that points at a port nobody listens on: lookups of names that
# /etc/hosts does not know fail at once. Without any resolv.conf, the C
# library asks 127.0.0.1 anyway.
if [ -e /etc/resolv.conf ]; then
    mount --bind "$resolv" /etc/resolv.conf
fi
"$probe" netns-probe
export EVENTCORE_TEST_NETNS=1
exec "$@"
"#;

/// The resolver configuration used inside the namespace.
const RESOLV_CONF: &str = "\
# Written by `cargo xtask test` for the test network namespace. Nothing
# listens on port 53 there, so every lookup that /etc/hosts cannot answer
# fails at once with a refused connection.
nameserver 127.0.0.1
options timeout:1 attempts:1
";

/// How the tests will be isolated from the network.
#[derive(Clone, Debug)]
pub enum Isolation {
    /// The tests run in a fresh namespace set up as described above.
    Namespace {
        /// The `unshare` program.
        unshare: PathBuf,
        /// The `ip` program.
        ip: PathBuf,
        /// The private `resolv.conf` to bind over `/etc/resolv.conf`.
        resolv: PathBuf,
        /// The xtask executable, which probes the namespace before use.
        probe: PathBuf,
    },
    /// No namespace can be made; the tests run on the host network and the
    /// namespace-only tests skip themselves.
    Host {
        /// Why no namespace could be made.
        reason: String,
    },
}

impl Isolation {
    /// Finds out whether a test namespace can be made here, and prepares
    /// what it needs under `scratch`.
    pub fn detect(dir: &Path, scratch: &Path) -> Result<Isolation> {
        let Some(unshare) = find_program("unshare") else {
            return Ok(Isolation::Host {
                reason: "`unshare` (util-linux) is not installed".to_owned(),
            });
        };
        let Some(ip) = find_program("ip") else {
            return Ok(Isolation::Host {
                reason: "`ip` (iproute2) is not installed".to_owned(),
            });
        };
        let permitted = Job::new(&unshare)
            .args(UNSHARE_FLAGS)
            .args(["--", "true"])
            .quiet(dir, None)?;
        if !permitted {
            return Ok(Isolation::Host {
                reason: "`unshare --net --mount --pid` is not permitted (it needs root)".to_owned(),
            });
        }
        std::fs::create_dir_all(scratch)?;
        let resolv = scratch.join("resolv.conf");
        std::fs::write(&resolv, RESOLV_CONF)?;
        let probe = std::env::current_exe().map_err(|e| fail!("Cannot find the xtask executable: {e}."))?;
        Ok(Isolation::Namespace {
            unshare,
            ip,
            resolv,
            probe,
        })
    }

    /// Whether the tests get the namespace.
    pub fn is_namespace(&self) -> bool {
        matches!(self, Isolation::Namespace { .. })
    }

    /// Wraps `job` so that it runs inside a fresh test namespace (or leaves
    /// it as it is when there is none).
    pub fn wrap(&self, job: Job) -> Job {
        let Isolation::Namespace {
            unshare,
            ip,
            resolv,
            probe,
        } = self
        else {
            return job;
        };
        let mut label = String::from("[test namespace] ");
        label.push_str(&job.program().to_string_lossy());
        for arg in job.arguments() {
            label.push(' ');
            label.push_str(&crate::cmd::quote(&arg.to_string_lossy()));
        }
        let mut wrapped = Job::new(unshare)
            .args(UNSHARE_FLAGS)
            .args(["--", "sh", "-c", SETUP_SCRIPT, "sh"])
            .arg(ip)
            .arg(resolv)
            .arg(probe)
            .arg(job.program())
            .args(job.arguments())
            .label(label);
        for (key, value) in job.environment() {
            wrapped = match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        wrapped
    }
}

/// One check of the probe: what it found, or why the namespace is wrong.
type Check = fn() -> std::result::Result<String, String>;

/// The hidden `netns-probe` command: checks, from inside the namespace,
/// that it behaves as the tests expect, and prints what it found.
pub fn probe() -> ExitCode {
    // Outside the namespace these checks would send a SYN to a real
    // machine: this host's own network may well be 192.0.2.0/24 (it is on
    // the project's machines), so the probe refuses to run anywhere but in
    // a namespace whose only routes lead to loopback or the black hole.
    match routed_interfaces() {
        Ok(names) if names.iter().any(|n| n == "ecv0") && names.iter().all(|n| n == "lo" || n == "ecv0") => {}
        Ok(names) => {
            eprintln!(
                "xtask: netns-probe runs only inside the test namespace, whose routes use lo and ecv0 \
                 only, but here they use: {}.",
                names.join(", ")
            );
            return ExitCode::FAILURE;
        }
        Err(error) => {
            eprintln!("xtask: netns-probe cannot read the routing table: {error}.");
            return ExitCode::FAILURE;
        }
    }
    let checks: [(&str, Check); 5] = [
        ("localhost", probe_localhost),
        ("dns", probe_invalid_name),
        ("black hole", probe_black_hole),
        ("multicast", probe_multicast),
        ("broadcast", probe_broadcast),
    ];
    let mut failed = false;
    let mut found = Vec::new();
    for (name, check) in checks {
        match check() {
            Ok(what) => found.push(format!("{name}: {what}")),
            Err(why) => {
                eprintln!("xtask: the test namespace is not as expected: {name}: {why}");
                failed = true;
            }
        }
    }
    println!("Test namespace checked: {}.", found.join("; "));
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The interfaces that the main IPv4 routing table of the caller's network
/// namespace routes over, sorted and without repeats. `/proc/net/route`
/// follows the reader's network namespace.
fn routed_interfaces() -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string("/proc/net/route")?;
    let mut names: Vec<String> = text
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

fn probe_localhost() -> std::result::Result<String, String> {
    let addrs: Vec<SocketAddr> = ("localhost", 0)
        .to_socket_addrs()
        .map_err(|e| format!("`localhost` does not resolve: {e}"))?
        .collect();
    if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(format!("`localhost` resolves to {addrs:?}"));
    }
    let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    Ok(format!("resolves to {}", list.join(", ")))
}

fn probe_invalid_name() -> std::result::Result<String, String> {
    let started = Instant::now();
    let result = ("eventcore-probe.invalid", 0).to_socket_addrs();
    let elapsed = started.elapsed();
    if let Ok(addrs) = result {
        return Err(format!(
            "`eventcore-probe.invalid` resolved to {:?}",
            addrs.collect::<Vec<_>>()
        ));
    }
    if elapsed > Duration::from_secs(1) {
        return Err(format!(
            "looking up `eventcore-probe.invalid` took {} ms",
            elapsed.as_millis()
        ));
    }
    Ok(format!(".invalid fails in {} ms", elapsed.as_millis()))
}

fn probe_black_hole() -> std::result::Result<String, String> {
    let wait = Duration::from_millis(1000);
    match TcpStream::connect_timeout(&BLACK_HOLE, wait) {
        Ok(_) => Err(format!("a connect to {BLACK_HOLE} succeeded")),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(format!(
            "connect to {BLACK_HOLE} still pending after {} ms",
            wait.as_millis()
        )),
        Err(e) => Err(format!("a connect to {BLACK_HOLE} failed at once: {e}")),
    }
}

fn probe_multicast() -> std::result::Result<String, String> {
    let group = Ipv4Addr::new(239, 255, 67, 67);
    let receiver = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
    receiver
        .join_multicast_v4(&group, &Ipv4Addr::UNSPECIFIED)
        .map_err(|e| format!("joining {group} failed: {e}"))?;
    let port = receiver.local_addr().map_err(|e| e.to_string())?.port();
    let sender = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
    sender
        .send_to(b"probe", (group, port))
        .map_err(|e| format!("sending to {group} failed: {e}"))?;
    receive(&receiver).map(|from| format!("{group} loops back from {from}"))
}

fn probe_broadcast() -> std::result::Result<String, String> {
    let receiver = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
    let port = receiver.local_addr().map_err(|e| e.to_string())?.port();
    let sender = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
    sender.set_broadcast(true).map_err(|e| e.to_string())?;
    sender
        .send_to(b"probe", (Ipv4Addr::BROADCAST, port))
        .map_err(|e| format!("sending to 255.255.255.255 failed: {e}"))?;
    receive(&receiver).map(|from| format!("255.255.255.255 loops back from {from}"))
}

fn receive(socket: &UdpSocket) -> std::result::Result<IpAddr, String> {
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 16];
    let (_, from) = socket
        .recv_from(&mut buf)
        .map_err(|e| format!("nothing arrived: {e}"))?;
    Ok(from.ip())
}
