//! Deleting interfaces (one, or a batch whose kernel waits overlap), and
//! removing what a crash left behind.

use super::*;

impl Registry {
    /// Deletes a TAP/TUN link named `host_if_name` in namespace `host_ns`
    /// that no registry serves: what a create interrupted by a crash left,
    /// or a detached interface the operator deletes. A link of another kind
    /// is never touched. Returns whether one was deleted.
    pub async fn remove_leftover(
        &self,
        host_ns: Option<&str>,
        host_if_name: &str,
    ) -> Result<bool, Error> {
        let ns = match host_ns {
            Some(spec) => {
                let spec: NetnsSpec = spec.parse().map_err(Error::Namespace)?;
                Netns::open(&spec).map_err(Error::Namespace)?
            }
            None => self.own_ns.try_clone().map_err(|e| Error::Step {
                step: Step::OpenNamespace,
                source: StepError::Io(e),
            })?,
        };
        let host = Host::open(&ns).map_err(|e| Error::Step {
            step: Step::OpenNetlink,
            source: e.into(),
        })?;
        let link = host
            .link_by_name(host_if_name)
            .await
            .map_err(|e| Error::Step {
                step: Step::CheckHost,
                source: e.into(),
            })?;
        let Some(link) = link.filter(|l| l.kind.as_deref() == Some("tun")) else {
            return Ok(false);
        };
        let index = link.index;
        tokio::task::spawn_blocking(move || host::delete_link_blocking(&ns, index))
            .await
            .map_err(|j| Error::Step {
                step: Step::DeleteLink,
                source: StepError::Io(io::Error::other(j.to_string())),
            })?
            .map_err(|e| Error::Step {
                step: Step::DeleteLink,
                source: e.into(),
            })?;
        tracing::info!(
            host_if_name,
            host_ns = host_ns.unwrap_or("-"),
            "leftover interface removed"
        );
        Ok(true)
    }

    /// Deletes an interface: gone from its namespace, fds closed, id free.
    pub async fn delete(&mut self, key: &str) -> Result<TapInfo, Error> {
        self.delete_many(&[key])
            .await
            .pop()
            .unwrap_or_else(|| Err(Error::NotFound(key.into())))
    }

    /// Deletes several interfaces at once; returns each key's outcome, in
    /// order. One that fails stays intact and can be deleted again. Their
    /// `RTM_DELLINK`s run on threads of their own (never on the async
    /// runtime's): the kernel answers each only after waiting
    /// for RCU grace periods (~20 ms here, outside the RTNL lock), and those
    /// waits overlap. A key given twice is refused the second time.
    pub async fn delete_many(&mut self, keys: &[&str]) -> Vec<Result<TapInfo, Error>> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out: Vec<Result<u32, Error>> = keys
            .iter()
            .map(|k| {
                self.resolve(k).and_then(|id| {
                    if seen.insert(id) {
                        Ok(id)
                    } else {
                        Err(Error::Duplicate((*k).to_string()))
                    }
                })
            })
            .collect();
        let mut jobs = Vec::new();
        for (i, slot) in out.iter_mut().enumerate() {
            let Ok(id) = *slot else { continue };
            match self.start_link_deletion(id) {
                Ok(job) => jobs.push((i, id, job)),
                Err(e) => *slot = Err(e),
            }
        }
        for (i, id, job) in jobs {
            let done = match job.await {
                Ok(r) => r,
                Err(join) => Err(Error::Step {
                    step: Step::DeleteLink,
                    source: StepError::Io(io::Error::other(join.to_string())),
                }),
            };
            if let Err(e) = done {
                self.restore_persist(id);
                out[i] = Err(e);
            }
        }
        out.into_iter()
            .zip(keys)
            .map(|(r, key)| r.and_then(|id| self.forget(id, key)))
            .collect()
    }

    /// Starts the kernel half of a deletion on a blocking thread (persist
    /// cleared first). The job's error leaves the link in place; the caller
    /// then restores persist, so that the interface is exactly as it was and
    /// the deletion can be retried.
    fn start_link_deletion(
        &self,
        id: u32,
    ) -> Result<tokio::task::JoinHandle<Result<(), Error>>, Error> {
        let f = &self.faults;
        let tap = self.taps.get(&id).ok_or(Error::NotFound(id.to_string()))?;
        let ns = step(f, Step::OpenNetlink, || match tap.ns.open() {
            Ok(ns) => Ok(Some(ns)),
            // The namespace's file is gone (`ip netns del`) or names another
            // namespace: the tap's lives on only through vtap's own fds, and
            // its link goes with the queue fds when the interface is
            // forgotten (persist is cleared first, below).
            Err(netns::Error::Replaced { .. }) => Ok(None),
            Err(netns::Error::Open { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(StepError::Netns(e)),
        })?;
        if tap.info.persist {
            step(f, Step::DeleteClearPersist, || match tap.queues.first() {
                Some(q) => tun::set_persist(q, &tap.info.host_if_name, false).map_err(Into::into),
                None => Ok(()),
            })?;
        }
        let (faults, index) = (f.clone(), tap.info.host_ifindex);
        if let Some(w) = &tap.watch {
            w.expect_removal(true);
        }
        Ok(tokio::task::spawn_blocking(move || {
            step(&faults, Step::DeleteLink, || match &ns {
                Some(ns) => host::delete_link_blocking(ns, index).map_err(Into::into),
                None => Ok(()),
            })
        }))
    }

    /// Makes a persistent interface persistent again after a failed
    /// deletion cleared it.
    fn restore_persist(&self, id: u32) {
        if let Some(w) = self.taps.get(&id).and_then(|t| t.watch.as_ref()) {
            w.expect_removal(false);
        }
        let Some(tap) = self.taps.get(&id).filter(|t| t.info.persist) else {
            return;
        };
        if let Some(q) = tap.queues.first() {
            if let Err(pe) = tun::set_persist(q, &tap.info.host_if_name, true) {
                tracing::warn!(id, error = %error_chain(&pe), "could not restore persist");
            }
        }
    }

    /// The registry half of a deletion, once the link is gone: the data
    /// path stopped, fds closed, the id free.
    fn forget(&mut self, id: u32, key: &str) -> Result<TapInfo, Error> {
        let tap = self.take(id).ok_or_else(|| Error::NotFound(key.into()))?;
        tracing::info!(id, host_if_name = %tap.info.host_if_name, "interface deleted");
        Ok(tap.info)
    }

    /// Lets go of an interface without touching the kernel: its data path
    /// stops and its fds close, so a persistent link stays as it is (the
    /// undo of an attach, which must not delete what existed before).
    pub fn release(&mut self, key: &str) -> Result<TapInfo, Error> {
        let id = self.resolve(key)?;
        let tap = self.take(id).ok_or_else(|| Error::NotFound(key.into()))?;
        if let Some(w) = &tap.watch {
            // Closing the fds of a non-persistent tap removes it: no news.
            w.expect_removal(true);
        }
        tracing::info!(id, host_if_name = %tap.info.host_if_name, "interface released");
        Ok(tap.info)
    }
}
