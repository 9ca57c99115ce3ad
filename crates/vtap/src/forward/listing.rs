//! What the forwarding plane holds, as a state file keeps it: names and
//! ports, without the MAC tables or counters that `Forwarder::bridges`
//! gathers for `show`.

use super::{lock_bd, Forwarder};

impl Forwarder {
    /// Every bridge domain's name, ports and learn limit: what a state file
    /// keeps, without the MAC tables [`Forwarder::bridges`] copies.
    pub fn bridge_ports(&self) -> Vec<(String, Vec<String>, usize)> {
        self.bridges
            .keys()
            .filter_map(|n| self.shared_bridge(n).ok())
            .map(|(bd, _)| {
                let b = lock_bd(&bd);
                let ports = b.ports.iter().map(|p| p.name.clone()).collect();
                (b.name.clone(), ports, b.macs.limit())
            })
            .collect()
    }
}
