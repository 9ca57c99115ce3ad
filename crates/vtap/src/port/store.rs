//! What the stores of interfaces vtap does not create through the registry
//! (host uplinks, VXLAN tunnels) have in common: their entries by id, found
//! by name or id, each with a data path whose rx mode and capture work the
//! same whatever the kind.

use std::collections::BTreeMap;

use crate::datapath::{self, capture, RxMode, SharedDataPath};
use crate::kind::ErrorKind;

/// An entry of a [`Store`].
pub trait Stored {
    /// Its id.
    fn id(&self) -> u32;
    /// Its data-plane name.
    fn name(&self) -> &str;
    /// Its data path.
    fn datapath(&self) -> &SharedDataPath;
}

/// Why a capture could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A capture is already running.
    #[error("interface '{iface}': a capture is running ({captured} frames so far); stop it first")]
    Running {
        /// The interface.
        iface: String,
        /// Frames captured so far.
        captured: u64,
    },
    /// No capture to stop.
    #[error("interface '{0}': no capture is running")]
    None(String),
}

impl CaptureError {
    /// This error's class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CaptureError::Running { .. } => ErrorKind::Conflict,
            CaptureError::None(_) => ErrorKind::NotFound,
        }
    }
}

/// Entries by id.
#[derive(Debug)]
pub struct Store<T> {
    map: BTreeMap<u32, T>,
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
        }
    }
}

impl<T: Stored> Store<T> {
    /// Entries, by id.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.map.values()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether `id` is taken.
    pub fn contains(&self, id: u32) -> bool {
        self.map.contains_key(&id)
    }

    /// Entry `id`.
    pub fn get(&self, id: u32) -> Option<&T> {
        self.map.get(&id)
    }

    /// The id `key` (a name or an id) names, if it is an entry's.
    pub fn find(&self, key: &str) -> Option<u32> {
        if let Ok(id) = key.parse::<u32>() {
            return self.map.contains_key(&id).then_some(id);
        }
        self.map.values().find(|e| e.name() == key).map(T::id)
    }

    /// Adds an entry under its id.
    pub fn insert(&mut self, e: T) {
        self.map.insert(e.id(), e);
    }

    /// Takes entry `id` out.
    pub fn remove(&mut self, id: u32) -> Option<T> {
        self.map.remove(&id)
    }

    /// Sets the rx mode of every queue of entry `id`.
    pub fn set_rx_mode(&self, id: u32, mode: RxMode) -> Result<(), datapath::Error> {
        let Some(e) = self.map.get(&id) else {
            return Ok(());
        };
        let mut d = datapath::lock(e.datapath());
        for q in 0..d.num_rx() {
            d.set_rx_mode(q, mode)?;
        }
        Ok(())
    }

    /// Starts a pcap capture on entry `id` (named `key` in errors).
    pub fn start_capture(
        &self,
        id: u32,
        key: &str,
        direction: capture::Direction,
        count: Option<u64>,
    ) -> Result<capture::Stream, CaptureError> {
        let Some(e) = self.map.get(&id) else {
            return Err(CaptureError::None(key.into()));
        };
        datapath::lock(e.datapath())
            .start_capture_exclusive(direction, count, false)
            .map_err(|captured| CaptureError::Running {
                iface: key.into(),
                captured,
            })
    }

    /// Stops entry `id`'s running capture.
    pub fn stop_capture(&self, id: u32, key: &str) -> Result<capture::CaptureState, CaptureError> {
        self.map
            .get(&id)
            .and_then(|e| datapath::lock(e.datapath()).stop_capture())
            .ok_or_else(|| CaptureError::None(key.into()))
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixDatagram;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::datapath::DataPath;

    #[derive(Debug)]
    struct Entry {
        id: u32,
        name: String,
        dp: SharedDataPath,
    }

    impl Stored for Entry {
        fn id(&self) -> u32 {
            self.id
        }
        fn name(&self) -> &str {
            &self.name
        }
        fn datapath(&self) -> &SharedDataPath {
            &self.dp
        }
    }

    /// An entry whose data path is one end of a datagram socket pair (no
    /// root, no kernel interface).
    fn entry(id: u32, name: &str) -> Entry {
        let (a, _b) = UnixDatagram::pair().expect("socketpair");
        let f = Arc::new(File::from(OwnedFd::from(a)));
        Entry {
            id,
            name: name.into(),
            dp: Arc::new(Mutex::new(DataPath::start_sockets(&[f], 12))),
        }
    }

    #[test]
    fn entries_are_found_by_name_or_id_and_captured_one_at_a_time() {
        let mut s = Store::default();
        s.insert(entry(70_000, "host-eth1"));
        s.insert(entry(1 << 20, "vxlan_tunnel0"));
        // (key, found)
        for (key, found) in [
            ("host-eth1", Some(70_000)),
            ("70000", Some(70_000)),
            ("vxlan_tunnel0", Some(1 << 20)),
            ("1048576", Some(1 << 20)),
            ("tap0", None),
            ("4", None),
        ] {
            assert_eq!(s.find(key), found, "{key}");
        }
        assert_eq!(
            (s.len(), s.is_empty(), s.contains(70_000)),
            (2, false, true)
        );

        let both = capture::Direction::Both;
        let _stream = s
            .start_capture(70_000, "host-eth1", both, None)
            .expect("start");
        let busy = s
            .start_capture(70_000, "host-eth1", both, None)
            .expect_err("busy");
        assert!(
            matches!(busy, CaptureError::Running { captured: 0, .. }),
            "{busy}"
        );
        assert_eq!(busy.kind(), ErrorKind::Conflict);
        s.stop_capture(70_000, "host-eth1").expect("stop");
        let none = s.stop_capture(70_000, "host-eth1").expect_err("none");
        assert_eq!(
            none.to_string(),
            "interface 'host-eth1': no capture is running"
        );
        assert_eq!(none.kind(), ErrorKind::NotFound);
        s.set_rx_mode(1 << 20, RxMode::Polling).expect("rx mode");
        let dp = datapath::lock(s.get(1 << 20).expect("entry").datapath()).state();
        assert_eq!(dp.rx[0].mode, Some(RxMode::Polling));
        assert!(s.remove(70_000).is_some());
        assert_eq!(s.find("host-eth1"), None);
    }
}
