//! Run-time changes to a live interface: rx mode, MTU, offloads, capture.

use super::*;

/// A run-time offload change (`vtap set IF offload ACTION`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OffloadAction {
    /// Checksum + segmentation offload on.
    GsoEnable,
    /// Segmentation offload off (checksum offload off too).
    GsoDisable,
    /// Checksum offload only (turns GSO off).
    CsumOffloadEnable,
    /// Checksum offload off.
    CsumOffloadDisable,
    /// GRO coalescing on (needs GSO).
    GroCoalesceEnable,
    /// GRO coalescing off.
    GroCoalesceDisable,
}

impl std::str::FromStr for OffloadAction {
    type Err = options::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value::<Self>(serde_json::Value::String(s.to_string())).map_err(|_| {
            options::Error {
                field: "offload",
                value: s.to_string(),
                reason: "expected gso-enable, gso-disable, csum-offload-enable, \
                         csum-offload-disable, gro-coalesce-enable or gro-coalesce-disable"
                    .into(),
            }
        })
    }
}

/// The offload state after `action`, or why it is refused. Pure: the table
/// test below pins every combination.
pub fn next_offload(
    mode: OffloadMode,
    gro: bool,
    action: OffloadAction,
) -> Result<(OffloadMode, bool), String> {
    use OffloadAction::*;
    use OffloadMode as M;
    match action {
        GsoEnable => Ok((M::Gso, gro)),
        GsoDisable if gro => {
            Err("gro-coalesce is on and needs gso: gro-coalesce-disable first".into())
        }
        GsoDisable => Ok((if mode == M::Gso { M::None } else { mode }, false)),
        CsumOffloadEnable if gro => {
            Err("gro-coalesce is on and needs gso: gro-coalesce-disable first".into())
        }
        CsumOffloadEnable => Ok((M::Csum, false)),
        CsumOffloadDisable if mode == M::Gso => {
            Err("gso is on and includes checksum offload: use gso-disable".into())
        }
        CsumOffloadDisable => Ok((M::None, false)),
        GroCoalesceEnable if mode != M::Gso => {
            Err("gro-coalesce needs gso: gso-enable first".into())
        }
        GroCoalesceEnable => Ok((mode, true)),
        GroCoalesceDisable => Ok((mode, false)),
    }
}

impl Registry {
    /// The interface `key` names, with its running data path.
    fn with_datapath(&self, key: &str) -> Result<(u32, &Tap, &SharedDataPath), Error> {
        let id = self.resolve(key)?;
        let t = &self.taps[&id];
        let dp = t.datapath.as_ref().ok_or_else(|| Error::NoDataPath {
            iface: key.to_string(),
            reason: "runs no data path",
        })?;
        Ok((id, t, dp))
    }

    /// Sets the rx mode of every rx queue of an interface (takes effect at
    /// once; the worker serving it follows at its next idle round).
    pub fn set_rx_mode(&mut self, key: &str, mode: datapath::RxMode) -> Result<TapInfo, Error> {
        let (id, t, dp) = self.with_datapath(key)?;
        {
            let mut d = lock(dp);
            for q in 0..d.num_rx() {
                d.set_rx_mode(q, mode)?;
            }
        }
        tracing::info!(id, ?mode, "rx mode changed");
        let info = t.snapshot();
        self.bump(id);
        Ok(info)
    }

    /// Sets an interface's MTU: the host side in the kernel, read back, and
    /// what vtap shows. (The data plane's buffers are merged per frame, so
    /// any MTU in range fits them: there is nothing else to resize.)
    pub async fn set_mtu(&mut self, key: &str, mtu: u32) -> Result<TapInfo, Error> {
        if !options::MTU_RANGE.contains(&mtu) {
            return Err(Error::Invalid(options::Error {
                field: "mtu",
                value: mtu.to_string(),
                reason: "must be in 68..=65521 (the kernel's range for a tap)".into(),
            }));
        }
        let id = self.resolve(key)?;
        // A new revision whether or not the change is made: at worst the
        // state file compares this interface once more.
        self.bump(id);
        let tap = self
            .taps
            .get_mut(&id)
            .ok_or_else(|| Error::NotFound(key.into()))?;
        let index = tap.info.host_ifindex;
        let faults = self.faults.clone();
        let ns = tap.ns.open().map_err(Error::Namespace)?;
        let now = astep(&faults, Step::SetMtu, async {
            let host = Host::open(&ns)?;
            host.set_mtu(index, mtu).await?;
            Ok(host.link_by_index(index).await?)
        })
        .await?;
        if let Some(link) = now {
            tap.info.host_mtu_size = link.mtu;
            if let Some(w) = &tap.watch {
                w.set_mtu(link.mtu);
            }
        }
        tracing::info!(id, mtu = tap.info.host_mtu_size, "mtu changed");
        Ok(tap.snapshot())
    }

    /// Starts a pcap capture on an interface's data path; the capture is
    /// the returned stream (nothing is written anywhere by vtap).
    pub fn start_capture(
        &self,
        key: &str,
        direction: datapath::capture::Direction,
        count: Option<u64>,
    ) -> Result<datapath::capture::Stream, Error> {
        let (id, t, dp) = self.with_datapath(key)?;
        let stream = lock(dp)
            .start_capture_exclusive(direction, count, t.info.tun)
            .map_err(|captured| Error::CaptureRunning {
                iface: key.to_string(),
                captured,
            })?;
        tracing::info!(id, ?direction, count, "capture started");
        Ok(stream)
    }

    /// Stops an interface's capture (its stream ends); returns its state.
    pub fn stop_capture(&self, key: &str) -> Result<datapath::capture::CaptureState, Error> {
        let (id, _, dp) = self.with_datapath(key)?;
        let st = lock(dp).stop_capture().ok_or_else(|| Error::NoDataPath {
            iface: key.to_string(),
            reason: "no capture is running",
        })?;
        tracing::info!(
            id,
            frames = st.captured,
            dropped = st.dropped,
            "capture stopped"
        );
        Ok(st)
    }

    /// Changes the offloads of a live interface, on every queue.
    pub async fn set_offload(
        &mut self,
        key: &str,
        action: OffloadAction,
    ) -> Result<TapInfo, Error> {
        let id = self.resolve(key)?;
        let tap = self
            .taps
            .get(&id)
            .ok_or_else(|| Error::NotFound(key.into()))?;
        let action_name = serde_json::to_value(action)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let (mode, gro) = next_offload(tap.info.offload_mode(), tap.info.gro_coalesce, action)
            .map_err(|reason| Error::Offload {
                action: action_name.clone(),
                reason,
            })?;
        if !self.settings.allow_offload && (mode != OffloadMode::None || gro) {
            return Err(Error::Offload {
                action: action_name,
                reason: "offloads are switched off in this daemon ([tap] offload = false)".into(),
            });
        }
        self.apply_offload(id, mode, gro, &action_name)
    }

    /// Puts an interface's offloads back as `before` had them (undoing a
    /// run-time change that could not be saved).
    pub fn restore_offload(&mut self, key: &str, before: &TapInfo) -> Result<TapInfo, Error> {
        let id = self.resolve(key)?;
        self.apply_offload(id, before.offload_mode(), before.gro_coalesce, "restore")
    }

    /// Sets offload `mode` and `gro` on every queue of interface `id`.
    fn apply_offload(
        &mut self,
        id: u32,
        mode: OffloadMode,
        gro: bool,
        action_name: &str,
    ) -> Result<TapInfo, Error> {
        let allow_uso = self.settings.allow_uso;
        let faults = self.faults.clone();
        self.bump(id);
        let tap = self
            .taps
            .get_mut(&id)
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        let mask = step(&faults, Step::SetOffload, || {
            tun::set_offload(&tap.queues, &tap.info.host_if_name, mode, allow_uso)
                .map_err(Into::into)
        })?;
        tap.info.set_offload(mode, gro, mask);
        if let Some(dp) = &tap.datapath {
            lock(dp).set_offload_caps(Caps::from_mask(mask, gro, tap.info.tun));
        }
        tracing::info!(id, action = %action_name, tun_offload = mask, "offload changed");
        Ok(tap.snapshot())
    }
}
