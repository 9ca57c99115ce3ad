//! vtapd: the vtap daemon.
//!
//! It owns the interface registry (and so every tap fd), and serves the REST
//! API of [`api`] on a Unix socket. Control operations are serialised behind
//! one async mutex, as VPP runs them on its main thread. On SIGTERM/SIGINT it
//! stops accepting requests, removes its socket and closes every queue fd:
//! interfaces created without `persist` disappear with them, persistent ones
//! stay for the next daemon to attach to.

#![deny(missing_docs)]

pub mod api;
pub mod app;
pub mod client;
pub mod config;
pub mod declare;
#[doc(hidden)]
pub mod fuzz;
pub mod journal;
pub mod metrics;
pub mod saved;
pub mod state;
pub mod statefile;

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{UnixListener, UnixStream};
use vtap::registry::{Registry, Settings};

pub use config::Config;

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// Another daemon answers on the socket.
    #[error("socket {0}: another vtapd is already serving it")]
    SocketInUse(PathBuf),
    /// The socket (or its directory) could not be set up.
    #[error("socket {}: cannot {what}", path.display())]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The registry could not be created.
    #[error(transparent)]
    Registry(#[from] vtap::registry::Error),
    /// The forwarding plane could not start.
    #[error(transparent)]
    Forwarding(vtap::forward::Error),
    /// The state file.
    #[error(transparent)]
    State(#[from] state::Error),
    /// Serving failed.
    #[error("serving the API")]
    Serve(#[source] io::Error),
}

/// How to run the daemon.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// The config file, if any.
    pub config: Option<PathBuf>,
    /// The socket path, overriding the config.
    pub socket: Option<PathBuf>,
}

fn socket_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Socket {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// Binds the socket: refuses a path a live daemon serves, removes a stale
/// one, creates the directory (0700) if missing, and makes the socket 0600.
pub async fn bind_socket(path: &Path) -> Result<UnixListener, Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(socket_err(path, "create its directory"))?;
        }
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(Error::SocketInUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(socket_err(path, "remove the stale socket"))?;
    }
    let listener = UnixListener::bind(path).map_err(socket_err(path, "bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(socket_err(path, "set its mode to 0600"))?;
    Ok(listener)
}

/// Sets up logging from the config (`RUST_LOG` overrides the level).
pub fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let level = cfg.log.level.clone().unwrap_or_else(|| "info".into());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_writer(io::stderr);
    let _ = match cfg.log.format {
        config::LogFormat::Human => builder.try_init(),
        config::LogFormat::Json => builder.json().try_init(),
    };
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the daemon still runs; it just cannot
        // clean up on a signal.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// Retries the detached interfaces every `every` while there are any.
async fn retry_detached(s: Arc<app::AppState>, every: std::time::Duration) {
    loop {
        tokio::time::sleep(every).await;
        if app::detached(&s).is_empty() {
            continue;
        }
        let back = state::retry_detached(&s).await;
        if !back.is_empty() {
            let node = s.node.lock().await;
            if let Err(e) = state::save(&s, &node, &[]) {
                tracing::warn!(error = %vtap::registry::error_chain(&e), "cannot save after re-attaching");
            }
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(opts: DaemonOptions) -> Result<(), Error> {
    let cfg = Config::load(opts.config.as_deref())?;
    init_logging(&cfg);
    let socket = opts
        .socket
        .or_else(|| cfg.socket.clone())
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_SOCKET));
    let settings = Settings {
        default_host_mtu: cfg.tap.host_mtu,
        allow_uso: cfg.tap.uso,
        allow_offload: cfg.tap.offload,
        ..Settings::default()
    };
    let registry = Registry::new(settings)?;
    let workers = cfg
        .forwarding
        .workers
        .unwrap_or_else(vtap::forward::default_workers);
    let mut forwarder = match &cfg.forwarding.cpus {
        Some(cpus) => vtap::forward::Forwarder::pinned(cpus),
        None => vtap::forward::Forwarder::new(workers),
    }
    .map_err(Error::Forwarding)?;
    forwarder.set_split_directions(cfg.forwarding.split_directions);
    if let Some(us) = cfg.forwarding.poll_window_us {
        forwarder
            .set_poll_window(std::time::Duration::from_micros(us))
            .map_err(Error::Forwarding)?;
    }
    if let Some(limit) = cfg.forwarding.mac_limit {
        forwarder
            .set_default_mac_limit(limit)
            .map_err(Error::Forwarding)?;
    }
    let state_file = cfg
        .state_file
        .clone()
        .unwrap_or_else(|| state::default_path(&socket));
    // A live daemon on the socket is the clearer refusal: check it first.
    let listener = bind_socket(&socket).await?;
    // One daemon per state file, held for this process's life.
    let _state_lock = match state::lock(&state_file) {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(Error::State(e));
        }
    };
    let state = Arc::new(app::AppState {
        fault_injection: cfg.debug.fault_injection,
        socket: socket.display().to_string(),
        state_file: Some(state_file.clone()),
        journal: std::sync::Mutex::new(None),
        ..app::AppState::new(registry, forwarder)
    });
    if let (true, Some(f)) = (cfg.debug.fault_injection, cfg.debug.start_fault) {
        state.node.lock().await.registry.faults().arm(f);
    }
    match state::load(&state_file) {
        Ok(Some(saved)) => {
            let n = state::restore(&state, saved).await;
            tracing::info!(interfaces = n, file = %state_file.display(), "state restored");
        }
        Ok(None) => {}
        // A state file we cannot read is not ours to overwrite.
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(Error::State(e));
        }
    }
    let config_path = opts.config.clone().unwrap_or_default();
    if let Err(e) = declare::apply(&state, &cfg, &config_path).await {
        let _ = std::fs::remove_file(&socket);
        return Err(Error::Config(e));
    }
    {
        let node = state.node.lock().await;
        if let Err(e) = state::save(&state, &node, &[]) {
            drop(node);
            let _ = std::fs::remove_file(&socket);
            return Err(Error::State(e));
        }
    }
    let retry = tokio::spawn(retry_detached(
        state.clone(),
        std::time::Duration::from_secs(
            cfg.reattach_interval_secs
                .unwrap_or(config::DEFAULT_REATTACH_SECS),
        ),
    ));
    tracing::info!(socket = %socket.display(), pid = std::process::id(), "vtapd listening");
    let served = axum::serve(listener, api::router(state.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await;
    retry.abort();
    let _ = std::fs::remove_file(&socket);
    let mut node = state.node.lock().await;
    tracing::info!(
        interfaces = node.registry.len(),
        "vtapd stopping; closing queues"
    );
    // Stop pumping before the interfaces (and their data paths) go.
    node.forwarder.clear();
    drop(node);
    served.map_err(Error::Serve)
}
