//! `vtap demo`: two namespaces joined through vtap, measured, cleaned up.
//!
//! Creates two network namespaces, a tap in each (198.18.0.1/24 and
//! 198.18.0.2/24, GSO on), cross-connects them with vtap's forwarding plane,
//! measures round-trip time (UDP echo, in-process) and TCP throughput (iperf3
//! when it is installed, run inside the namespaces with `nsenter`; else a
//! built-in sender and receiver), prints a report, and removes everything it
//! made — also on Ctrl-C. Runs in this process; no daemon needed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use vtap::forward::Forwarder;
use vtap::netns::{Netns, NetnsSpec, OwnedNetns};
use vtap::node::Node;
use vtap::registry::{error_chain, Registry, Settings};
use vtap::{CreateOptions, TapInfo};

fn open(ns: &OwnedNetns) -> Result<Netns, String> {
    Netns::open(&NetnsSpec::Name(ns.name().to_string())).map_err(|e| error_chain(&e))
}

/// Runs `f` inside `ns` and returns its result (sockets keep the namespace).
fn inside<T: Send>(ns: &Netns, f: impl FnOnce() -> std::io::Result<T> + Send) -> Result<T, String> {
    ns.run_in(f)
        .map_err(|e| error_chain(&e))?
        .map_err(|e| e.to_string())
}

/// Round-trip times (µs) of `n` UDP probes from `a` to an echo in `b`.
fn rtt(a: &Netns, b: &Netns, n: usize) -> Result<Vec<f64>, String> {
    let server = inside(b, || UdpSocket::bind("198.18.0.2:7"))?;
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((len, from)) = server.recv_from(&mut buf) {
            if server.send_to(&buf[..len], from).is_err() || buf[..len] == *b"stop" {
                break;
            }
        }
    });
    let client = inside(a, || UdpSocket::bind("198.18.0.1:0"))?;
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(n);
    let mut buf = [0u8; 64];
    for i in 0..n {
        let t = Instant::now();
        client
            .send_to(&(i as u64).to_le_bytes(), "198.18.0.2:7")
            .map_err(|e| e.to_string())?;
        if client.recv_from(&mut buf).is_ok() {
            out.push(t.elapsed().as_secs_f64() * 1e6);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = client.send_to(b"stop", "198.18.0.2:7");
    let _ = echo.join();
    Ok(out)
}

/// Bytes moved over one TCP connection from `a` to `b` in `secs`, and the
/// time it took.
fn throughput(a: &Netns, b: &Netns, secs: u64) -> Result<(u64, Duration), String> {
    let listener = inside(b, || TcpListener::bind("198.18.0.2:5201"))?;
    let receiver = std::thread::spawn(move || -> u64 {
        let Ok((mut s, _)) = listener.accept() else {
            return 0;
        };
        let mut buf = vec![0u8; 1 << 18];
        let mut total = 0u64;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });
    let addr = "198.18.0.2:5201"
        .parse()
        .map_err(|_| "address".to_string())?;
    let mut stream = inside(a, || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(3))
    })?;
    let chunk = vec![0x5au8; 1 << 18];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        stream.write_all(&chunk).map_err(|e| e.to_string())?;
    }
    drop(stream);
    let got = receiver
        .join()
        .map_err(|_| "receiver thread panicked".to_string())?;
    Ok((got, start.elapsed()))
}

/// The `p`th percentile (nearest rank) of sorted samples.
/// Whether `prog` is on the PATH.
fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// iperf3 TCP from namespace `a` to a one-shot server in `b`: Gbit/s.
fn iperf3(a: &OwnedNetns, b: &OwnedNetns, secs: u64) -> Result<f64, String> {
    let net = |ns: &OwnedNetns| format!("--net=/var/run/netns/{}", ns.name());
    let mut server = std::process::Command::new("nsenter")
        .args([net(b).as_str(), "iperf3", "-s", "-1", "-B", "198.18.0.2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start iperf3 -s: {e}"))?;
    std::thread::sleep(Duration::from_millis(300));
    let out = std::process::Command::new("nsenter")
        .args([
            net(a).as_str(),
            "iperf3",
            "-c",
            "198.18.0.2",
            "-t",
            &secs.to_string(),
            "-J",
        ])
        .output()
        .map_err(|e| format!("cannot run iperf3 -c: {e}"));
    let _ = server.kill();
    let _ = server.wait();
    let out = out?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("iperf3 output: {e}"))?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .ok_or_else(|| format!("iperf3: {}", v["error"].as_str().unwrap_or("no result")))
}

fn pct(sorted: &[f64], p: usize) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n => sorted[((n - 1) * p / 100).min(n - 1)],
    }
}

async fn tap(reg: &mut Registry, ns: &OwnedNetns, addr: &str) -> Result<TapInfo, String> {
    reg.create(&CreateOptions {
        host_ns: Some(ns.name().to_string()),
        host_ip4_addr: Some(addr.into()),
        gso: true,
        ..Default::default()
    })
    .await
    .map_err(|e| error_chain(&e))
}

async fn run(secs: u64, builtin: bool) -> Result<(), String> {
    let pid = std::process::id();
    let ns_a = OwnedNetns::create(&format!("vtap-demo-a-{pid}")).map_err(|e| error_chain(&e))?;
    let ns_b = OwnedNetns::create(&format!("vtap-demo-b-{pid}")).map_err(|e| error_chain(&e))?;
    let workers = vtap::forward::default_workers();
    let mut node = Node::new(
        Registry::new(Settings::default()).map_err(|e| error_chain(&e))?,
        Forwarder::new(workers).map_err(|e| error_chain(&e))?,
    );
    let a = tap(&mut node.registry, &ns_a, "198.18.0.1/24").await?;
    let b = tap(&mut node.registry, &ns_b, "198.18.0.2/24").await?;
    node.xconnect(&a.name, &b.name)
        .map_err(|e| error_chain(&e))?;
    println!(
        "vtap demo: {} ({}) in {} <-> {} ({}) in {}, cross-connected by {} worker(s), backend {}",
        a.name,
        a.host_if_name,
        ns_a.name(),
        b.name,
        b.host_if_name,
        ns_b.name(),
        workers,
        a.backend
    );

    let (na, nb) = (open(&ns_a)?, open(&ns_b)?);
    let work = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let mut r = rtt(&na, &nb, 50)?;
        r.sort_by(f64::total_cmp);
        Ok(r)
    });
    let rtts = work.await.map_err(|e| e.to_string())??;
    let use_iperf3 = !builtin && on_path("iperf3") && on_path("nsenter");
    let (gbps, tool) = if use_iperf3 {
        let (a_ns, b_ns) = (&ns_a, &ns_b);
        let g = tokio::task::block_in_place(|| iperf3(a_ns, b_ns, secs))?;
        (g, "iperf3")
    } else {
        let (na, nb) = (open(&ns_a)?, open(&ns_b)?);
        let (bytes, took) = tokio::task::spawn_blocking(move || throughput(&na, &nb, secs))
            .await
            .map_err(|e| e.to_string())??;
        (
            bytes as f64 * 8.0 / took.as_secs_f64() / 1e9,
            "built-in sender/receiver",
        )
    };
    let st = node
        .registry
        .get(&a.name)
        .map_err(|e| error_chain(&e))?
        .datapath
        .ok_or("no data path")?;
    let (pkts, octets) = st.rx.iter().fold((0u64, 0u64), |(p, o), q| {
        (p + q.counters.packets, o + q.counters.bytes)
    });
    println!(
        "  round trip (UDP echo, {} of 50 answered): avg {:.0} µs, p50 {:.0} µs, p99 {:.0} µs",
        rtts.len(),
        rtts.iter().sum::<f64>() / rtts.len().max(1) as f64,
        pct(&rtts, 50),
        pct(&rtts, 99)
    );
    println!(
        "  TCP {} -> {}: {:.2} Gbit/s over {} s ({})",
        a.host_if_name, b.host_if_name, gbps, secs, tool
    );
    println!(
        "  {} rx: {} frames, {} MB, average {} bytes (GSO super-frames cross whole)",
        a.name,
        pkts,
        octets >> 20,
        octets / pkts.max(1)
    );
    node.xconnect_remove(&a.name).map_err(|e| error_chain(&e))?;
    for t in [&a, &b] {
        node.delete(&t.name).await.map_err(|e| error_chain(&e))?;
    }
    println!("  cleaned up: interfaces and namespaces removed");
    Ok(())
}

/// `vtap demo`: runs, and on Ctrl-C stops and cleans up (dropping the
/// demo's state deletes its interfaces and namespaces).
pub async fn demo(secs: u64, builtin: bool) -> Result<(), String> {
    tokio::select! {
        r = run(secs, builtin) => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("vtap demo: interrupted; cleaning up");
            Ok(())
        }
    }
}
