//! `vtap`: the command line of vtap.
//!
//! Every subcommand but `daemon` is a REST call to a running `vtap daemon` on
//! its Unix socket (`--socket`, `VTAP_SOCKET`, default `/run/vtap/vtap.sock`).
//! The flag names are VPP's (`create tap ...`), so its users feel at home.
//! Every error ends the process with a non-zero status and one line on
//! stderr that names the field and the reason.

mod args;
mod capture;
mod demo;
mod show;

use args::{CreateArgs, RateLimitArgs};
use capture::capture;
use show::{opt, print_table, print_tunnels, print_uplinks};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hyper::Method;
use serde_json::{json, Value};
use vtap::CreateOptions;
use vtapd::client;

#[derive(Debug, Parser)]
#[command(
    name = "vtap",
    version,
    about = "Fast, fully configured TAP/TUN interfaces"
)]
struct Cli {
    /// The daemon's socket.
    #[arg(long, global = true, env = "VTAP_SOCKET", default_value = vtapd::config::DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (serves the REST API on --socket).
    Daemon {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Create a tap (or attach to a persistent one).
    Create(Box<CreateArgs>),
    /// Host uplinks: an existing host interface as a port of vtap
    /// (VPP's `create host-interface`).
    HostInterface {
        #[command(subcommand)]
        what: HostInterfaceCommand,
    },
    /// VXLAN tunnels (VPP's `create vxlan tunnel`).
    Vxlan {
        #[command(subcommand)]
        what: VxlanCommand,
    },
    /// Delete interfaces: tap<id>, tun<id>, host-<ifname>, vxlan_tunnel<N>
    /// or the id. Several are deleted
    /// at once (the kernel's waits overlap); each one that cannot be is
    /// named on stderr and left intact.
    Delete {
        /// The interfaces.
        #[arg(required = true)]
        ifaces: Vec<String>,
    },
    /// Show interfaces (`vtap show bridge BD` shows a bridge).
    Show {
        /// One interface (all if absent), or `bridge`.
        iface: Option<String>,
        /// With `bridge`: the bridge's name.
        bridge: Option<String>,
        /// Print JSON (a list of objects).
        #[arg(long)]
        json: bool,
    },
    /// Cross-connect two interfaces (L2: TAP-TAP or TUN-TUN), or remove one.
    Xconnect {
        /// One end.
        iface: Option<String>,
        /// The other end.
        peer: Option<String>,
        /// Remove the cross-connect IF is part of.
        #[arg(long)]
        delete: bool,
        /// List the cross-connects (JSON).
        #[arg(long)]
        list: bool,
    },
    /// Capture an interface's frames to a pcap file (or stop a capture).
    /// The daemon streams the capture; this command writes it, until the
    /// count is reached, the capture is stopped, or Ctrl-C.
    Capture {
        /// The interface.
        iface: String,
        /// rx (from the host side), tx (to it) or both.
        #[arg(default_value = "both")]
        direction: String,
        /// The pcap file, written by this command with your rights
        /// (`-` for standard output: `--file - | tcpdump -r -`).
        #[arg(long)]
        file: Option<String>,
        /// Stop after this many frames.
        #[arg(long)]
        count: Option<u64>,
        /// Stop the running capture.
        #[arg(long)]
        stop: bool,
    },
    /// L2 bridge domains.
    Bridge {
        #[command(subcommand)]
        what: BridgeCommand,
    },
    /// Two namespaces joined through vtap: latency, throughput, counters.
    /// Runs in this process (root needed; no daemon), cleans up after itself.
    Demo {
        /// Seconds of TCP throughput measurement.
        #[arg(long, default_value_t = 5)]
        duration: u64,
        /// Use the built-in TCP sender/receiver even if iperf3 is installed.
        #[arg(long)]
        builtin: bool,
    },
    /// Change an interface at run time.
    Set {
        /// The interface.
        iface: String,
        #[command(subcommand)]
        what: SetCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BridgeCommand {
    /// Create an empty bridge domain.
    Create {
        /// Its name.
        bd: String,
        /// Most MAC addresses it learns (default 16384, or the daemon's
        /// `[forwarding] mac_limit`); beyond it frames are still flooded.
        #[arg(long)]
        mac_limit: Option<usize>,
    },
    /// Add an interface (TAP) to a bridge.
    Add {
        /// The bridge.
        bd: String,
        /// The interface.
        iface: String,
    },
    /// Remove an interface from a bridge.
    Remove {
        /// The bridge.
        bd: String,
        /// The interface.
        iface: String,
    },
    /// Delete an empty bridge domain.
    Delete {
        /// Its name.
        bd: String,
    },
    /// Show bridges with their MAC tables (JSON).
    Show {
        /// One bridge.
        bd: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum HostInterfaceCommand {
    /// Open an uplink on an existing interface; prints its name
    /// (`host-IF`), which show, delete, xconnect, bridge add, capture and
    /// set rx-mode take.
    Create {
        /// The host interface (`eth0`).
        host_if_name: String,
        /// Its namespace: NAME, /path, or pid:N (the daemon's if absent).
        #[arg(long)]
        host_ns: Option<String>,
        /// af-packet (the default: a copy of every frame, the host's stack
        /// still sees them) or af-xdp (an XDP program hands the interface's
        /// frames to vtap; jumbo frames where the kernel has multi-buffer
        /// XDP sockets, Linux 6.6+, else an MTU up to 3 822).
        #[arg(long)]
        mode: Option<String>,
        /// Queues (1..=64): one socket each. af-packet: flows spread by
        /// hash, 1 by default; af-xdp: one per receive queue of the
        /// interface (the default, and the only count taken).
        #[arg(long)]
        num_queues: Option<u16>,
        /// polling | interrupt | adaptive.
        #[arg(long)]
        rx_mode: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum VxlanCommand {
    /// Make a tunnel to a remote VTEP; prints its name
    /// (`vxlan_tunnel<N>`), which show, delete, xconnect, bridge add and
    /// capture take.
    Create {
        /// The local VTEP address (an address of the underlay namespace).
        #[arg(long)]
        src: String,
        /// The remote VTEP address.
        #[arg(long)]
        dst: String,
        /// The VXLAN network identifier (0..=16777215).
        #[arg(long)]
        vni: u64,
        /// The UDP port, both ends (default 4789).
        #[arg(long)]
        port: Option<u16>,
        /// The namespace whose UDP carries it: NAME, /path, or pid:N (the
        /// daemon's if absent).
        #[arg(long)]
        underlay_ns: Option<String>,
        /// N in vxlan_tunnel<N> (the lowest free if absent).
        #[arg(long)]
        instance: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
enum SetCommand {
    /// gso-enable | gso-disable | csum-offload-enable | csum-offload-disable |
    /// gro-coalesce-enable | gro-coalesce-disable
    Offload {
        /// The change.
        action: String,
    },
    /// polling | interrupt | adaptive
    RxMode {
        /// The mode.
        mode: String,
    },
    /// The MTU (68..=65521), host side included.
    Mtu {
        /// The MTU.
        mtu: u32,
    },
    /// A token-bucket rate limit on one direction: rx (frames vtap takes
    /// from the interface) or tx (frames it sends to it); --off lifts it.
    RateLimit(RateLimitArgs),
    /// Which forwarding worker reads rx queue QUEUE of a cross-connected
    /// interface (the peer's queue of that number moves with it, unless
    /// directions are split); kept across restarts.
    RxPlacement {
        /// The rx queue (from 0).
        queue: usize,
        /// The worker (from 0).
        worker: usize,
    },
}

/// Formats an error and its sources on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    vtap::registry::error_chain(e).replace('\n', " ")
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("vtap: {msg}");
    ExitCode::FAILURE
}

/// Whether `iface` names a host uplink (`host-<ifname>`).
fn is_uplink(iface: &str) -> bool {
    iface.starts_with("host-")
}

/// Whether `iface` names a VXLAN tunnel (`vxlan_tunnel<N>`).
fn is_tunnel(iface: &str) -> bool {
    iface.starts_with("vxlan_tunnel")
}

/// An interface key, checked (refuses what cannot be one).
fn iface_key(iface: &str) -> Result<&str, String> {
    let ok = if let Some(n) = iface.strip_prefix("vxlan_tunnel") {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    } else if let Some(ifname) = iface.strip_prefix("host-") {
        vtap::options::check_ifname("interface", ifname).is_ok()
            && ifname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    } else {
        !iface.is_empty() && iface.bytes().all(|b| b.is_ascii_alphanumeric())
    };
    if ok {
        Ok(iface)
    } else {
        Err(format!(
            "interface '{iface}': not an interface name (give tap<id>, tun<id>, host-<ifname>, vxlan_tunnel<N> or the id)"
        ))
    }
}

/// Path of an interface resource: a tap's or an uplink's.
fn iface_path(iface: &str) -> Result<String, String> {
    let key = iface_key(iface)?;
    if is_uplink(key) {
        Ok(format!("/v1/host-interfaces/{key}"))
    } else if is_tunnel(key) {
        Ok(format!("/v1/vxlan-tunnels/{key}"))
    } else {
        Ok(format!("/v1/taps/{key}"))
    }
}

/// Path of a bridge resource (refuses what cannot be a bridge name).
fn bridge_path(bd: &str) -> Result<String, String> {
    vtap::forward::check_bridge_name(bd).map_err(|e| e.to_string())?;
    Ok(format!("/v1/bridges/{bd}"))
}

async fn run(cli: Cli) -> Result<(), String> {
    let sock = &cli.socket;
    let call = |method: Method, path: String, body: Option<Value>| async move {
        let answer = client::request(sock, method, &path, body)
            .await
            .map_err(|e| match &e {
                client::Error::Connect { .. } => format!(
                    "{} (`vtap daemon` starts one; --socket/VTAP_SOCKET choose another)",
                    one_line(&e)
                ),
                _ => one_line(&e),
            })?;
        for w in &answer.warnings {
            eprintln!("vtap: warning: {w}");
        }
        Ok::<Value, String>(answer.body)
    };
    match cli.command {
        Command::Daemon { config } => vtapd::run(vtapd::DaemonOptions {
            config,
            socket: Some(cli.socket.clone()),
        })
        .await
        .map_err(|e| one_line(&e)),
        Command::Create(args) => {
            let opts = CreateOptions::from(*args);
            let body = serde_json::to_value(&opts).map_err(|e| e.to_string())?;
            let t = call(Method::POST, "/v1/taps".into(), Some(body)).await?;
            println!("{}", opt(&t, "name"));
            Ok(())
        }
        Command::HostInterface {
            what:
                HostInterfaceCommand::Create {
                    host_if_name,
                    host_ns,
                    mode,
                    num_queues,
                    rx_mode,
                },
        } => {
            let body = json!({
                "host_if_name": host_if_name,
                "host_ns": host_ns,
                "mode": mode,
                "num_queues": num_queues,
                "rx_mode": rx_mode,
            });
            let v = call(Method::POST, "/v1/host-interfaces".into(), Some(body)).await?;
            println!("{}", opt(&v, "name"));
            Ok(())
        }
        Command::Vxlan {
            what:
                VxlanCommand::Create {
                    src,
                    dst,
                    vni,
                    port,
                    underlay_ns,
                    instance,
                },
        } => {
            let body = json!({
                "src": src,
                "dst": dst,
                "vni": vni,
                "port": port,
                "underlay_ns": underlay_ns,
                "instance": instance,
            });
            let v = call(Method::POST, "/v1/vxlan-tunnels".into(), Some(body)).await?;
            println!("{}", opt(&v, "name"));
            Ok(())
        }
        Command::Delete { ifaces } if ifaces.iter().any(|i| is_uplink(i) || is_tunnel(i)) => {
            // Uplinks and tunnels one by one (closing sockets has no kernel
            // wait to overlap); taps as usual.
            let mut failed = 0;
            for i in &ifaces {
                if let Err(e) = call(Method::DELETE, iface_path(i)?, None).await {
                    eprintln!("vtap: {e}");
                    failed += 1;
                }
            }
            if failed == 0 {
                Ok(())
            } else {
                Err(format!("{failed} of {} not deleted", ifaces.len()))
            }
        }
        Command::Delete { ifaces } => match ifaces.as_slice() {
            [iface] => {
                call(Method::DELETE, iface_path(iface)?, None).await?;
                Ok(())
            }
            _ => {
                let body = serde_json::json!({ "interfaces": ifaces });
                let r = call(Method::POST, "/v1/taps/delete".into(), Some(body)).await?;
                let failed = r["failed"].as_array().cloned().unwrap_or_default();
                for f in &failed {
                    eprintln!("vtap: {}", opt(f, "error"));
                }
                if failed.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{} of {} not deleted", failed.len(), ifaces.len()))
                }
            }
        },
        Command::Show {
            iface: Some(kw),
            bridge: Some(bd),
            ..
        } if kw == "bridge" => {
            let v = call(Method::GET, bridge_path(&bd)?, None).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
            );
            Ok(())
        }
        Command::Show {
            bridge: Some(b), ..
        } => Err(format!("show: unexpected argument '{b}'")),
        Command::Show { iface, json, .. } => {
            let list = |v: Value| match v {
                Value::Array(a) => a,
                other => vec![other],
            };
            let (mut taps, mut uplinks, mut tunnels) = (vec![], vec![], vec![]);
            match iface {
                Some(i) => {
                    let one = call(Method::GET, iface_path(&i)?, None).await?;
                    if is_uplink(&i) {
                        uplinks.push(one);
                    } else if is_tunnel(&i) {
                        tunnels.push(one);
                    } else {
                        taps.push(one);
                    }
                }
                None => {
                    taps = list(call(Method::GET, "/v1/taps".into(), None).await?);
                    uplinks = list(call(Method::GET, "/v1/host-interfaces".into(), None).await?);
                    tunnels = list(call(Method::GET, "/v1/vxlan-tunnels".into(), None).await?);
                }
            }
            if json {
                let all: Vec<&Value> = taps.iter().chain(&uplinks).chain(&tunnels).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?
                );
            } else {
                if !taps.is_empty() || (uplinks.is_empty() && tunnels.is_empty()) {
                    print_table(&taps);
                }
                print_uplinks(&uplinks);
                print_tunnels(&tunnels);
            }
            Ok(())
        }
        Command::Xconnect {
            iface,
            peer,
            delete,
            list,
        } => match (iface, peer, delete, list) {
            (None, None, false, true) => {
                let v = call(Method::GET, "/v1/xconnects".into(), None).await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
                );
                Ok(())
            }
            (Some(i), None, true, false) => {
                let path = format!("/v1/xconnects/{}", iface_key(&i)?);
                call(Method::DELETE, path, None).await?;
                Ok(())
            }
            (Some(a), Some(b), false, false) => {
                iface_path(&a)?;
                iface_path(&b)?;
                call(
                    Method::POST,
                    "/v1/xconnects".into(),
                    Some(json!({ "a": a, "b": b })),
                )
                .await?;
                Ok(())
            }
            _ => Err("xconnect: give IF1 IF2 to connect, IF --delete to remove, or --list".into()),
        },
        Command::Bridge { what } => {
            let (method, path, body) = match what {
                BridgeCommand::Create { bd, mac_limit } => (
                    Method::POST,
                    "/v1/bridges".to_string(),
                    Some(json!({ "name": bd, "mac_limit": mac_limit })),
                ),
                BridgeCommand::Add { bd, iface } => {
                    iface_path(&iface)?;
                    (
                        Method::POST,
                        format!("{}/interfaces", bridge_path(&bd)?),
                        Some(json!({ "iface": iface })),
                    )
                }
                BridgeCommand::Remove { bd, iface } => {
                    iface_path(&iface)?;
                    (
                        Method::DELETE,
                        format!("{}/interfaces/{iface}", bridge_path(&bd)?),
                        None,
                    )
                }
                BridgeCommand::Delete { bd } => (Method::DELETE, bridge_path(&bd)?, None),
                BridgeCommand::Show { bd } => match bd {
                    Some(bd) => (Method::GET, bridge_path(&bd)?, None),
                    None => (Method::GET, "/v1/bridges".to_string(), None),
                },
            };
            let show = method == Method::GET;
            let v = call(method, path, body).await?;
            if show {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
                );
            }
            Ok(())
        }
        Command::Capture {
            iface,
            direction,
            file,
            count,
            stop,
        } => {
            let path = format!("{}/capture", iface_path(&iface)?);
            if stop {
                let v = call(Method::DELETE, path, None).await?;
                println!("{} frames in {}", opt(&v, "captured"), opt(&v, "file"));
                return Ok(());
            }
            if !["rx", "tx", "both"].contains(&direction.as_str()) {
                return Err(format!("direction '{direction}': expected rx, tx or both"));
            }
            let file = file.ok_or("capture: --file F is needed (or --stop)")?;
            capture(sock, &path, &direction, &file, count).await
        }
        Command::Demo { duration, builtin } => demo::demo(duration, builtin).await,
        Command::Set {
            iface,
            what: SetCommand::Offload { .. } | SetCommand::Mtu { .. },
        } if is_uplink(&iface) => Err(format!(
            "interface '{iface}': a host uplink keeps the host's own offloads and MTU \
             (change them with ethtool and ip link; vtap follows)"
        )),
        Command::Set {
            iface,
            what: SetCommand::Offload { .. } | SetCommand::Mtu { .. },
        } if is_tunnel(&iface) => Err(format!(
            "interface '{iface}': a VXLAN tunnel takes no offloads and carries what its \
             underlay's MTU allows (see inner-mtu in vtap show {iface})"
        )),
        Command::Set {
            iface,
            what: SetCommand::Offload { action },
        } => {
            let path = format!("{}/offload", iface_path(&iface)?);
            call(Method::POST, path, Some(json!({ "action": action }))).await?;
            Ok(())
        }
        Command::Set {
            iface,
            what: SetCommand::RxMode { mode },
        } => {
            if !["polling", "interrupt", "adaptive"].contains(&mode.as_str()) {
                return Err(format!(
                    "rx-mode '{mode}': expected polling, interrupt or adaptive"
                ));
            }
            let path = format!("{}/rx-mode", iface_path(&iface)?);
            call(Method::POST, path, Some(json!({ "mode": mode }))).await?;
            Ok(())
        }
        Command::Set {
            iface,
            what: SetCommand::RateLimit(a),
        } => {
            if !["rx", "tx"].contains(&a.direction.as_str()) {
                return Err(format!("direction '{}': expected rx or tx", a.direction));
            }
            let given = [a.bytes_per_sec, a.packets_per_sec]
                .iter()
                .any(Option::is_some);
            if !given && !a.off {
                return Err("rate-limit: give --bytes-per-sec, --packets-per-sec or --off".into());
            }
            let body = json!({"direction": a.direction, "bytes_per_sec": a.bytes_per_sec,
                "burst": a.burst, "one_time_burst": a.one_time_burst,
                "packets_per_sec": a.packets_per_sec, "packet_burst": a.packet_burst});
            let path = format!("{}/rate-limit", iface_path(&iface)?);
            let st = call(Method::POST, path, Some(body)).await?;
            println!("{}", show::rate_limit_line(&iface, &st));
            Ok(())
        }
        Command::Set {
            iface,
            what: SetCommand::RxPlacement { queue, worker },
        } => {
            let path = format!("{}/rx-placement", iface_path(&iface)?);
            let x = call(
                Method::POST,
                path,
                Some(json!({ "queue": queue, "worker": worker })),
            )
            .await?;
            println!("{}", show::placement_lines(&x));
            Ok(())
        }
        Command::Set {
            iface,
            what: SetCommand::Mtu { mtu },
        } => {
            let path = format!("{}/mtu", iface_path(&iface)?);
            call(Method::POST, path, Some(json!({ "mtu": mtu }))).await?;
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.render().to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("bad arguments");
            let line = line.trim_start_matches("error: ");
            eprintln!("vtap: {line}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => fail(msg),
    }
}
