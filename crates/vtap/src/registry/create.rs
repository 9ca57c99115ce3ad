//! Creating (or attaching to) an interface: [`Registry::create`] as named
//! [`Step`]s over a [`Rollback`], and the write-ahead hook
//! ([`Registry::create_with_intent`]).

use super::*;

/// What a create is about to make, for a caller that records it first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    /// The interface id.
    pub id: u32,
    /// The host-side name.
    pub host_if_name: String,
    /// The namespace as given.
    pub host_ns: Option<String>,
    /// An attach to an existing interface (which must then stay).
    pub attach: bool,
}

/// One inverse operation, run if a later step fails.
#[derive(Clone, Debug)]
enum Undo {
    ClearPersist,
    DeleteLink(u32),
    ReleaseController(u32),
    DelAddress(u32, IpAddr, u8),
    LinkDown(u32),
    DelRoute(u32, IpAddr),
    DelOtherRoute(u32, Route),
}

/// The inverses of the steps done so far, and the resources they act on.
#[derive(Debug, Default)]
struct Rollback {
    host: Option<Host>,
    datapath: Option<DataPath>,
    /// The queue fds, shared (not duplicated) with a direct data path.
    queues: Vec<Arc<std::fs::File>>,
    name: String,
    undo: Vec<Undo>,
}

/// What a rollback asks of the kernel: the inverse of one step. The seam
/// between the rollback's order and the kernel, so that the order is
/// tested without root (`tests` below); [`Kernel`] is the real one.
trait Inverse {
    /// Undoes one step.
    async fn undo(&self, u: &Undo) -> Result<(), StepError>;
}

/// The real kernel of one interface's rollback: its netlink connection and
/// its queue fds.
struct Kernel<'a> {
    host: Option<&'a Host>,
    queues: &'a [Arc<std::fs::File>],
    name: &'a str,
}

impl Inverse for Kernel<'_> {
    async fn undo(&self, u: &Undo) -> Result<(), StepError> {
        match (u, self.host) {
            (Undo::ClearPersist, _) => match self.queues.first() {
                Some(fd) => tun::set_persist(fd, self.name, false).map_err(StepError::from),
                None => Ok(()),
            },
            (Undo::DeleteLink(i), Some(h)) => h.delete_link(*i).await.map_err(Into::into),
            (Undo::ReleaseController(i), Some(h)) => {
                h.set_controller(*i, None).await.map_err(Into::into)
            }
            (Undo::DelAddress(i, a, l), Some(h)) => {
                h.del_address(*i, *a, *l).await.map_err(Into::into)
            }
            (Undo::LinkDown(i), Some(h)) => h.set_up(*i, false).await.map_err(Into::into),
            (Undo::DelRoute(i, gw), Some(h)) => {
                h.del_default_route(*i, *gw).await.map_err(Into::into)
            }
            (Undo::DelOtherRoute(i, r), Some(h)) => h
                .del_route(*i, r.dst, r.len, r.gw)
                .await
                .map_err(Into::into),
            (_, None) => Ok(()),
        }
    }
}

/// Runs every inverse in `undo`, newest first, through `k`; a failing one
/// is logged and the rest run regardless. Returns how many failed.
async fn undo_all(undo: &mut Vec<Undo>, k: &impl Inverse, name: &str) -> usize {
    let mut failed = 0;
    while let Some(u) = undo.pop() {
        if let Err(e) = k.undo(&u).await {
            // ENODEV: the link went away already (deleting it undoes
            // everything on it); anything else is worth a warning.
            if !matches!(&e, StepError::Host(h) if h.errno() == Some(libc::ENODEV)) {
                failed += 1;
                tracing::warn!(interface = %name, undo = ?u, error = %error_chain(&e), "rollback step failed");
            }
        }
    }
    failed
}

impl Rollback {
    /// Runs every inverse, newest first, then closes the queue fds.
    /// Failures are logged: rollback goes on with the rest regardless.
    async fn run(mut self) {
        // The data path goes first: its backend holds the queue fds.
        self.datapath = None;
        let kernel = Kernel {
            host: self.host.as_ref(),
            queues: &self.queues,
            name: &self.name,
        };
        undo_all(&mut self.undo, &kernel, &self.name).await;
        self.queues.clear();
    }
}

pub(super) fn step<T>(
    faults: &Faults,
    s: Step,
    f: impl FnOnce() -> Result<T, StepError>,
) -> Result<T, Error> {
    faults.check(s).map_err(|e| Error::Step {
        step: s,
        source: StepError::Injected(e),
    })?;
    f().map_err(|source| Error::Step { step: s, source })
}

pub(super) async fn astep<T, F>(faults: &Faults, s: Step, f: F) -> Result<T, Error>
where
    F: std::future::Future<Output = Result<T, StepError>>,
{
    faults.check(s).map_err(|e| Error::Step {
        step: s,
        source: StepError::Injected(e),
    })?;
    f.await.map_err(|source| Error::Step { step: s, source })
}

/// The errno of a failed netlink step, if that is what failed.
fn host_errno(e: &Error) -> Option<i32> {
    match e {
        Error::Step {
            source: StepError::Host(h),
            ..
        } => h.errno(),
        _ => None,
    }
}

/// Maps a route-add failure to the error users understand.
fn route_error(e: Error, field: &'static str, gw: IpAddr, name: &str) -> Error {
    match host_errno(&e) {
        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => Error::GatewayUnreachable {
            field,
            gw,
            name: name.to_string(),
        },
        Some(libc::EEXIST) => Error::RouteExists { field, gw },
        _ => e,
    }
}

/// Puts `limits` (checked by validation) in force on a new data path.
fn set_rate_limits(dp: &mut DataPath, limits: Option<&RateLimits>) -> Result<(), Error> {
    let Some(l) = limits else { return Ok(()) };
    for dir in [Direction::Rx, Direction::Tx] {
        if let Some(o) = l.get(dir) {
            dp.set_rate_limit(dir, Some(o)).map_err(|e| {
                Error::Invalid(options::Error {
                    field: "rate-limit",
                    value: format!("{dir:?}"),
                    reason: e.to_string(),
                })
            })?;
        }
    }
    Ok(())
}

/// Maps a failure to add one of `host_routes` to the error users
/// understand.
fn other_route_error(e: Error, r: &Route, name: &str) -> Error {
    match host_errno(&e) {
        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => Error::RouteRefused {
            route: r.to_string(),
            reason: format!("gateway unreachable from {name}"),
        },
        Some(libc::EEXIST) => Error::RouteRefused {
            route: r.to_string(),
            reason: "the namespace has a route to this destination already".into(),
        },
        _ => e,
    }
}

/// Fills an attached interface's host addresses and gateways from the
/// kernel (the first global address and default gateway of each family).
/// Best effort: a failed query leaves the fields empty, it does not fail the
/// attach.
async fn read_back_host_config(host: &host::Host, index: u32, info: &mut TapInfo) {
    if let Ok(addrs) = host.addresses(index).await {
        let first = |v6: bool| addrs.iter().find(|(a, _)| a.is_ipv6() == v6).copied();
        let firsts = [first(false), first(true)];
        info.host_ip4_addr = firsts[0].map(|(a, l)| format!("{a}/{l}"));
        info.host_ip6_addr = firsts[1].map(|(a, l)| format!("{a}/{l}"));
        info.host_addrs = addrs
            .iter()
            .filter(|a| !firsts.contains(&Some(**a)))
            .map(|(a, l)| format!("{a}/{l}"))
            .collect();
    }
    if let Ok(routes) = host.routes(index).await {
        let gw = |v6: bool| {
            routes
                .iter()
                .find(|(d, l, g)| *l == 0 && d.is_ipv6() == v6 && g.is_some())
                .and_then(|(_, _, g)| g.map(|g| g.to_string()))
        };
        info.host_ip4_gw = gw(false);
        info.host_ip6_gw = gw(true);
        info.host_routes = routes
            .iter()
            .filter(|(_, l, g)| *l != 0 || g.is_none())
            .map(|&(dst, len, gw)| Route { dst, len, gw }.to_option())
            .collect();
    }
}

/// Checks that an existing link can be attached to as `cfg` asks; returns
/// whether it is multi-queue.
fn check_attachable(link: &host::Link, cfg: &TapConfig, name: &str) -> Result<bool, Error> {
    let mismatch = |reason: String| Error::AttachMismatch {
        name: name.to_string(),
        reason,
    };
    let Some(t) = link.tun.as_ref() else {
        return Err(mismatch(format!(
            "it is a {} interface, not TUN/TAP",
            link.kind.as_deref().unwrap_or("plain")
        )));
    };
    let want_tap = cfg.mode == Mode::Tap;
    if t.tap != want_tap {
        return Err(mismatch(format!(
            "it is a {}, and {} was asked for",
            if t.tap { "TAP" } else { "TUN" },
            if want_tap { "TAP" } else { "TUN (tun)" }
        )));
    }
    if !t.vnet_hdr {
        return Err(mismatch("it was created without IFF_VNET_HDR".into()));
    }
    if t.pi {
        return Err(mismatch("it was created without IFF_NO_PI".into()));
    }
    if cfg.num_rx_queues > 1 && !t.multi_queue {
        return Err(mismatch(format!(
            "num-rx-queues {} needs IFF_MULTI_QUEUE, which it was created without",
            cfg.num_rx_queues
        )));
    }
    // A single-queue tap already held by another process is refused by
    // TUNSETIFF itself (EBUSY); the kernel reports no queue count for it.
    Ok(t.multi_queue)
}

impl Registry {
    fn allocate_id(&self, want: Option<u32>) -> Result<u32, Error> {
        match want {
            Some(id) if self.taps.contains_key(&id) => Err(Error::IdTaken(id)),
            Some(id) => Ok(id),
            None => (0..=MAX_ID)
                .find(|id| !self.taps.contains_key(id))
                .ok_or(Error::NoFreeId),
        }
    }

    /// Creates (or attaches to) an interface. On error nothing is left.
    pub async fn create(&mut self, opts: &CreateOptions) -> Result<TapInfo, Error> {
        self.create_with_intent(opts, &mut |_| Ok(())).await
    }

    /// Creates an interface as [`Registry::create`] does, calling `intent`
    /// once every check has passed and before the first kernel change, with
    /// what is about to be made: a caller that must survive a crash records
    /// it there (write-ahead) and refuses by returning an error, which
    /// fails the create with nothing done.
    pub async fn create_with_intent(
        &mut self,
        opts: &CreateOptions,
        intent: &mut (dyn FnMut(&Intent) -> Result<(), String> + Send),
    ) -> Result<TapInfo, Error> {
        let cfg = opts.validate()?;
        self.offload_allowed(cfg.offload, cfg.gro_coalesce)?;
        let mut rb = Rollback::default();
        match self.build(&cfg, &mut rb, intent).await {
            Ok(tap) => {
                let info = tap.snapshot();
                tracing::info!(
                    id = info.id,
                    host_if_name = %info.host_if_name,
                    host_ns = info.host_ns.as_deref().unwrap_or("-"),
                    backend = %info.backend,
                    attached = info.attached,
                    "interface created"
                );
                self.taps.insert(info.id, tap);
                self.bump(info.id);
                Ok(info)
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "create failed, rolling back");
                rb.run().await;
                Err(e)
            }
        }
    }

    /// Refuses offloads when the daemon's kill switch is off.
    fn offload_allowed(&self, mode: OffloadMode, gro: bool) -> Result<(), Error> {
        let asked = match (mode, gro) {
            (OffloadMode::Gso, _) => "gso",
            (OffloadMode::Csum, _) => "csum-offload",
            (_, true) => "gro-coalesce",
            (OffloadMode::None, false) => return Ok(()),
        };
        if self.settings.allow_offload {
            return Ok(());
        }
        Err(Error::Invalid(options::Error {
            field: "offload",
            value: asked.into(),
            reason: "offloads are switched off in this daemon ([tap] offload = false)".into(),
        }))
    }

    async fn build(
        &self,
        cfg: &TapConfig,
        rb: &mut Rollback,
        intent: &mut (dyn FnMut(&Intent) -> Result<(), String> + Send),
    ) -> Result<Tap, Error> {
        let f = &self.faults;
        let id = step(f, Step::AllocateId, || Ok(())).and_then(|()| self.allocate_id(cfg.id))?;
        let prefix = match cfg.mode {
            Mode::Tap => "tap",
            Mode::Tun => "tun",
        };
        let name = cfg
            .host_if_name
            .clone()
            .unwrap_or_else(|| format!("{prefix}{id}"));
        rb.name.clone_from(&name);
        let ns_words = ns_label(cfg.host_ns.as_ref());

        f.check(Step::OpenNamespace).map_err(|e| Error::Step {
            step: Step::OpenNamespace,
            source: StepError::Injected(e),
        })?;
        let ns = match &cfg.host_ns {
            Some(spec) => Netns::open(spec).map_err(Error::Namespace)?,
            None => step(f, Step::OpenNamespace, || {
                self.own_ns.try_clone().map_err(StepError::from)
            })?,
        };

        let host = step(f, Step::OpenNetlink, || Host::open(&ns).map_err(Into::into))?;
        let host = rb.host.insert(host);

        // Check the target namespace before changing anything in it.
        let existing = astep(f, Step::CheckHost, async {
            host.link_by_name(&name).await.map_err(Into::into)
        })
        .await?;
        let multi_queue = match (&existing, cfg.attach) {
            (Some(_), false) => return Err(Error::NameTaken { name, ns: ns_words }),
            (None, true) => return Err(Error::AttachMissing { name, ns: ns_words }),
            (Some(link), true) => Some(check_attachable(link, cfg, &name)?),
            (None, false) => None,
        };
        let bridge = match &cfg.host_bridge {
            Some(br) => {
                let link = astep(f, Step::CheckHost, async {
                    host.link_by_name(br).await.map_err(Into::into)
                })
                .await?
                .ok_or_else(|| Error::BridgeMissing {
                    name: br.clone(),
                    ns: ns_words.clone(),
                })?;
                if !link.is_bridge() {
                    return Err(Error::NotBridge {
                        name: br.clone(),
                        kind: link.kind.unwrap_or_else(|| "plain".into()),
                    });
                }
                Some(link.index)
            }
            None => None,
        };

        // The tap itself: queues, flags, offloads, persistence.
        // Single-queue unless more queues are asked for. A multi-queue tap
        // has tun's 256 tx queues, and its default qdisc (mq) puts a
        // pfifo_fast with three 1000-slot rings under each: about 6 MB of
        // kernel memory per interface, measured (VPP sets IFF_MULTI_QUEUE
        // whenever the kernel offers it, and pays that).
        let want_mq = multi_queue.unwrap_or(cfg.num_rx_queues > 1 || cfg.num_tx_queues > 1);
        if want_mq && !tun::offers_multi_queue(&self.settings.tun_device).unwrap_or(true) {
            return Err(Error::Invalid(options::Error {
                field: "num-rx-queues",
                value: cfg.num_rx_queues.to_string(),
                reason: "this kernel's TUN driver has no multi-queue support".into(),
            }));
        }
        intent(&Intent {
            id,
            host_if_name: name.clone(),
            host_ns: cfg.host_ns.as_ref().map(ToString::to_string),
            attach: cfg.attach,
        })
        .map_err(Error::NotDurable)?;
        rb.queues = step(f, Step::OpenQueues, || {
            tun::open_queues(
                &ns,
                &self.settings.tun_device,
                &name,
                cfg.mode,
                cfg.num_rx_queues,
                want_mq,
            )
            .map_err(Into::into)
        })?
        .into_iter()
        .map(|fd| Arc::new(std::fs::File::from(fd)))
        .collect();
        if !cfg.attach {
            // From here on the interface exists: deleting it is the
            // innermost inverse (it also removes addresses and routes).
            rb.undo.push(Undo::ClearPersist);
        }
        step(f, Step::ConfigureQueues, || {
            rb.queues
                .iter()
                .try_for_each(|q| tun::configure_queue(q, &name, cfg.mode))
                .map_err(Into::into)
        })?;
        let mask = step(f, Step::SetOffload, || {
            tun::set_offload(&rb.queues, &name, cfg.offload, self.settings.allow_uso)
                .map_err(Into::into)
        })?;
        let persist = if cfg.attach {
            cfg.persist || multi_queue.is_some()
        } else {
            cfg.persist
        };
        if cfg.persist && !cfg.attach {
            step(f, Step::SetPersist, || match rb.queues.first() {
                Some(q) => tun::set_persist(q, &name, true).map_err(Into::into),
                None => Ok(()),
            })?;
        }
        let backend = step(f, Step::SelectBackend, || Ok(()))
            .and_then(|()| self.select_backend(cfg.backend))?;
        if self.settings.datapath {
            let mut dp = step(f, Step::StartDataPath, || {
                self.start_datapath(cfg, backend, &rb.queues)
                    .map_err(Into::into)
            })?;
            let tun = cfg.mode == Mode::Tun;
            dp.set_offload_caps(Caps::from_mask(mask, cfg.gro_coalesce, tun));
            set_rate_limits(&mut dp, cfg.rate_limit.as_ref())?;
            rb.datapath = Some(dp);
        }

        let link = astep(f, Step::LookupLink, async {
            host.link_by_name(&name).await?.ok_or_else(|| {
                StepError::Io(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{name} vanished right after creation"),
                ))
            })
        })
        .await?;
        let index = link.index;
        if !cfg.attach {
            rb.undo.push(Undo::DeleteLink(index));
        }

        // Host-side configuration (none of it on attach: the interface keeps
        // what it had).
        let host_mac = match (cfg.mode, cfg.attach) {
            (Mode::Tap, false) => {
                let mac = match cfg.host_mac_addr {
                    Some(m) => m,
                    None => MacAddr::random().map_err(|e| Error::Step {
                        step: Step::SetMac,
                        source: e.into(),
                    })?,
                };
                astep(f, Step::SetMac, async {
                    host.set_mac(index, mac).await.map_err(Into::into)
                })
                .await?;
                Some(mac)
            }
            _ => None,
        };
        let hw_addr = match cfg.mode {
            Mode::Tap => Some(match cfg.hw_addr {
                Some(m) => m,
                None => MacAddr::random().map_err(|e| Error::Step {
                    step: Step::SetMac,
                    source: e.into(),
                })?,
            }),
            Mode::Tun => None,
        };
        let mtu = cfg.host_mtu_size.or(if cfg.attach {
            None
        } else {
            self.settings.default_host_mtu
        });
        if let Some(mtu) = mtu {
            astep(f, Step::SetMtu, async {
                host.set_mtu(index, mtu).await.map_err(Into::into)
            })
            .await?;
        }
        if let Some(br) = bridge {
            astep(f, Step::SetBridge, async {
                host.set_controller(index, Some(br))
                    .await
                    .map_err(Into::into)
            })
            .await?;
            rb.undo.push(Undo::ReleaseController(index));
        }
        let addrs = [
            (Step::AddIp4, cfg.host_ip4_addr.map(|p| (p.ip(), p.len))),
            (Step::AddIp6, cfg.host_ip6_addr.map(|p| (p.ip(), p.len))),
        ];
        let more = cfg
            .host_addrs
            .iter()
            .map(|p| (Step::AddAddrs, Some((p.addr, p.len))));
        for (s, addr) in addrs.into_iter().chain(more) {
            let Some((ip, len)) = addr else { continue };
            astep(f, s, async {
                host.add_address(index, ip, len).await.map_err(Into::into)
            })
            .await?;
            rb.undo.push(Undo::DelAddress(index, ip, len));
        }
        if !cfg.attach {
            astep(f, Step::LinkUp, async {
                host.set_up(index, true).await.map_err(Into::into)
            })
            .await?;
            rb.undo.push(Undo::LinkDown(index));
        }
        if let Some(gw) = cfg.host_ip4_gw {
            let gw = IpAddr::V4(gw);
            astep(f, Step::AddIp4Route, async {
                host.add_default_route(index, gw).await.map_err(Into::into)
            })
            .await
            .map_err(|e| route_error(e, "host-ip4-gw", gw, &name))?;
            rb.undo.push(Undo::DelRoute(index, gw));
        }
        if let Some(gw) = cfg.host_ip6_gw {
            let gw = IpAddr::V6(gw);
            astep(f, Step::AddIp6Route, async {
                host.add_default_route(index, gw).await.map_err(Into::into)
            })
            .await
            .map_err(|e| route_error(e, "host-ip6-gw", gw, &name))?;
            rb.undo.push(Undo::DelRoute(index, gw));
        }
        for r in &cfg.host_routes {
            astep(f, Step::AddRoutes, async {
                host.add_route(index, r.dst, r.len, r.gw)
                    .await
                    .map_err(Into::into)
            })
            .await
            .map_err(|e| other_route_error(e, r, &name))?;
            rb.undo.push(Undo::DelOtherRoute(index, *r));
        }

        // Read the effective state back from the kernel.
        let now = astep(f, Step::ReadBack, async {
            host.link_by_index(index).await?.ok_or_else(|| {
                StepError::Io(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{name} vanished during configuration"),
                ))
            })
        })
        .await?;
        let host_bridge = match now.controller {
            Some(c) if cfg.host_bridge.is_none() => {
                host.link_by_index(c).await.ok().flatten().map(|l| l.name)
            }
            _ => cfg.host_bridge.clone(),
        };
        let host_mac_addr = match cfg.mode {
            Mode::Tap => now
                .mac
                .as_deref()
                .and_then(|m| <[u8; 6]>::try_from(m).ok())
                .map(MacAddr)
                .or(host_mac),
            Mode::Tun => None,
        };
        let mut info = TapInfo {
            id,
            name: format!("{prefix}{id}"),
            host_if_name: name,
            host_ns: cfg.host_ns.as_ref().map(ToString::to_string),
            host_ns_inode: ns.inode(),
            host_ifindex: index,
            host_mac_addr,
            hw_addr,
            host_bridge,
            host_ip4_addr: cfg.host_ip4_addr.map(|p| p.to_string()),
            host_ip4_gw: cfg.host_ip4_gw.map(|a| a.to_string()),
            host_ip6_addr: cfg.host_ip6_addr.map(|p| p.to_string()),
            host_ip6_gw: cfg.host_ip6_gw.map(|a| a.to_string()),
            host_addrs: cfg.host_addrs.iter().map(ToString::to_string).collect(),
            host_routes: cfg.host_routes.iter().map(Route::to_option).collect(),
            labels: cfg.labels.clone(),
            host_mtu_size: now.mtu,
            rx_ring_size: cfg.rx_ring_size,
            tx_ring_size: cfg.tx_ring_size,
            num_rx_queues: cfg.num_rx_queues,
            num_tx_queues: cfg.num_tx_queues,
            multi_queue: want_mq,
            gso: false,
            csum_offload: false,
            gro_coalesce: false,
            tun: cfg.mode == Mode::Tun,
            persist,
            attached: cfg.attach,
            backend,
            tun_offload: 0,
            tun_offload_flags: Vec::new(),
            datapath: None,
            state: AttachState::Attached,
            reason: None,
        };
        info.set_offload(cfg.offload, cfg.gro_coalesce, mask);
        if cfg.attach {
            // The interface kept its host configuration: say what it is.
            read_back_host_config(host, index, &mut info).await;
        }
        let watch = self
            .links
            .watch(&ns, index, id, info.host_mtu_size)
            .map_err(|e| {
                tracing::warn!(id, error = %error_chain(&e), "host-side link events unavailable");
            })
            .ok();
        Ok(Tap {
            info,
            datapath: rb.datapath.take().map(|d| Arc::new(Mutex::new(d))),
            ns: super::TapNs::new(ns),
            queues: std::mem::take(&mut rb.queues),
            watch,
            rev: 0,
        })
    }

    /// Starts the data path on the interface's queues. The direct engine
    /// shares the registry's fds (one fd per queue in all); the ring
    /// backends get duplicates they own.
    fn start_datapath(
        &self,
        cfg: &TapConfig,
        backend: Backend,
        queues: &[Arc<std::fs::File>],
    ) -> Result<DataPath, datapath::Error> {
        // Validated to 1..=32768, which fits.
        let ring = |n: u32| u16::try_from(n).unwrap_or(crate::virtq::split::MAX_SIZE);
        let dcfg = datapath::Config {
            rx_ring_size: ring(cfg.rx_ring_size),
            tx_ring_size: ring(cfg.tx_ring_size),
            num_rx_queues: cfg.num_rx_queues,
            num_tx_queues: cfg.num_tx_queues,
            event_idx: self.settings.event_idx,
            indirect: true,
            backend,
        };
        if matches!(backend, Backend::Direct | Backend::IoUring) {
            return DataPath::start_direct_shared(&dcfg, queues);
        }
        let taps = queues
            .iter()
            .map(|q| q.try_clone())
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| datapath::Error::Queue(datapath::queue::Error::EventFd(e)))?;
        DataPath::start(&dcfg, &taps)
    }

    fn select_backend(&self, req: BackendRequest) -> Result<Backend, Error> {
        let probe = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.settings.vhost_device)
                .map(drop)
        };
        match req {
            BackendRequest::Userspace => Ok(Backend::Userspace),
            BackendRequest::Direct => Ok(Backend::Direct),
            BackendRequest::IoUring => Ok(Backend::IoUring),
            // Without vhost-net, rings served by a vtap thread only add
            // copies and thread hand-offs: the direct engine is faster on
            // every measure (docs/benchmarks.md).
            BackendRequest::Auto => Ok(match probe() {
                Ok(()) => Backend::VhostNet,
                Err(_) => Backend::Direct,
            }),
            BackendRequest::VhostNet => {
                probe().map_err(|source| Error::VhostUnavailable {
                    path: self.settings.vhost_device.display().to_string(),
                    source,
                })?;
                Ok(Backend::VhostNet)
            }
        }
    }
}

#[cfg(test)]
#[path = "create_tests.rs"]
mod tests;
