//! Bridge domains on the workers: created on the least loaded worker,
//! which serves every rx queue of every port (a domain's MAC table is
//! locked for a whole round, so its ports gain nothing from a second
//! worker); ports join and leave while it runs.

use super::*;

impl Forwarder {
    /// The bridge interface `id` is in, if any.
    pub fn bridge_of(&self, id: u32) -> Option<String> {
        self.bridges
            .iter()
            .find(|(_, (b, _))| lock_bd(b).ports.iter().any(|p| p.id == id))
            .map(|(n, _)| n.clone())
    }

    /// What `id` is attached to, in words, if anything.
    pub fn attachment(&self, id: u32) -> Option<String> {
        self.involving(id)
            .map(|x| {
                format!(
                    "cross-connected ({} <-> {}); remove the xconnect first",
                    x.a, x.b
                )
            })
            .or_else(|| {
                self.bridge_of(id)
                    .map(|b| format!("in bridge {b}; remove it from the bridge first"))
            })
    }

    pub(super) fn shared_bridge(&self, name: &str) -> Result<(SharedBridge, usize), Error> {
        self.bridges
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NoBridge(name.to_string()))
    }

    /// Creates an empty bridge domain with the default learn limit.
    pub fn bridge_create(&mut self, name: &str) -> Result<BridgeInfo, Error> {
        self.bridge_create_with(name, None)
    }

    /// Creates an empty bridge domain that learns at most `mac_limit`
    /// addresses (default: [`Forwarder::default_mac_limit`]).
    pub fn bridge_create_with(
        &mut self,
        name: &str,
        mac_limit: Option<usize>,
    ) -> Result<BridgeInfo, Error> {
        check_bridge_name(name)?;
        let limit = mac_limit.unwrap_or(self.default_mac_limit);
        check_mac_limit(limit)?;
        if self.bridges.contains_key(name) {
            return Err(Error::BridgeExists(name.to_string()));
        }
        let bd = Arc::new(Mutex::new(BridgeDomain {
            name: name.to_string(),
            ports: Vec::new(),
            macs: MacTable::new(limit, MAC_AGING, self.clock.now()),
            clock: self.clock.clone(),
        }));
        let worker = self.least_loaded();
        self.workers[worker].send(Cmd::AddBridge(bd.clone()));
        self.bridges.insert(name.to_string(), (bd, worker));
        tracing::info!(bridge = name, worker, mac_limit = limit, "bridge created");
        self.bridge(name)
    }

    /// Adds interface `end` to bridge `name`.
    pub fn bridge_add(&mut self, name: &str, end: End) -> Result<BridgeInfo, Error> {
        let (bd, worker) = self.shared_bridge(name)?;
        if end.tun {
            return Err(Error::BridgeTun {
                bridge: name.to_string(),
                iface: end.name,
            });
        }
        if let Some(what) = self.attachment(end.id) {
            return Err(Error::Attached {
                iface: end.name,
                what,
            });
        }
        let datapath = end
            .datapath
            .ok_or_else(|| Error::NoDataPath(end.name.clone()))?;
        set_rx_workers(&datapath, Some(worker));
        lock_bd(&bd).ports.push(BridgePort {
            id: end.id,
            name: end.name.clone(),
            datapath,
            shg: end.split_horizon,
        });
        self.workers[worker].send(Cmd::Wake);
        tracing::info!(bridge = name, iface = %end.name, "bridge port added");
        self.bridge(name)
    }

    /// Removes interface `id` (named `iface`) from bridge `name`; once this
    /// returns the worker no longer pumps it.
    pub fn bridge_remove(&mut self, name: &str, id: u32, iface: &str) -> Result<BridgeInfo, Error> {
        let (bd, worker) = self.shared_bridge(name)?;
        {
            // The worker pumps a bridge under this lock: once we hold it and
            // drop the port, the worker cannot touch the port again.
            let mut b = lock_bd(&bd);
            let Some(at) = b.ports.iter().position(|p| p.id == id) else {
                return Err(Error::NotAPort {
                    bridge: name.to_string(),
                    iface: iface.to_string(),
                });
            };
            let port = b.ports.remove(at);
            b.macs.remove_port(at);
            set_rx_workers(&port.datapath, None);
        }
        self.workers[worker].send(Cmd::Wake);
        tracing::info!(bridge = name, iface, "bridge port removed");
        self.bridge(name)
    }

    /// Deletes an empty bridge domain.
    pub fn bridge_delete(&mut self, name: &str) -> Result<(), Error> {
        let (bd, worker) = self.shared_bridge(name)?;
        if !lock_bd(&bd).ports.is_empty() {
            return Err(Error::BridgeNotEmpty(name.to_string()));
        }
        let (done_tx, done_rx) = mpsc::channel();
        self.workers[worker].send(Cmd::RemoveBridge(name.to_string(), done_tx));
        let _ = done_rx.recv();
        self.bridges.remove(name);
        tracing::info!(bridge = name, "bridge deleted");
        Ok(())
    }

    /// One bridge domain, with its MAC table.
    pub fn bridge(&self, name: &str) -> Result<BridgeInfo, Error> {
        let (bd, worker) = self.shared_bridge(name)?;
        let b = lock_bd(&bd);
        let now = b.clock.now();
        let mut macs: Vec<MacEntry> = b
            .macs
            .entries(now)
            .filter(|(_, _, age)| *age < MAC_AGING)
            .filter_map(|(mac, port, age)| {
                Some(MacEntry {
                    mac: crate::MacAddr(mac).to_string(),
                    iface: b.ports.get(port)?.name.clone(),
                    age_s: age.as_secs(),
                })
            })
            .collect();
        macs.sort_by(|x, y| x.mac.cmp(&y.mac));
        Ok(BridgeInfo {
            name: b.name.clone(),
            interfaces: b.ports.iter().map(|p| p.name.clone()).collect(),
            macs,
            mac_limit: b.macs.limit(),
            learn_refused: b.macs.learn_refused(),
            worker,
        })
    }

    /// Every bridge domain.
    pub fn bridges(&self) -> Vec<BridgeInfo> {
        self.bridges
            .keys()
            .filter_map(|n| self.bridge(n).ok())
            .collect()
    }
}

/// Tells every rx queue of `port` which worker reads it (`None`: none).
fn set_rx_workers(port: &SharedPort, worker: Option<usize>) {
    let mut d = lock(port);
    for q in 0..d.num_rx() {
        d.set_rx_worker(q, worker);
    }
}
