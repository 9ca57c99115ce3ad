//! A minimal HTTP/1.1 client for the daemon's Unix socket.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// Why a request to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No daemon answers on the socket.
    #[error("cannot connect to vtapd at {} (is `vtap daemon` running? --socket/VTAP_SOCKET choose another)", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("talking to vtapd")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("building the request")]
    Request(#[from] hyper::http::Error),
    /// The daemon answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The daemon's one-line reason.
        message: String,
    },
    /// The daemon's answer was not the JSON expected.
    #[error("unexpected answer from vtapd")]
    Decode(#[from] serde_json::Error),
}

/// Sends one request and returns the JSON answer (`Null` for 204).
pub async fn request(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, Error> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| Error::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let bytes = match &body {
        Some(v) => Bytes::from(serde_json::to_vec(v)?),
        None => Bytes::new(),
    };
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "vtapd")
        .header("content-type", "application/json")
        .body(Full::new(bytes))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    conn.abort();
    let value: serde_json::Value = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body)?
    };
    if status.is_success() {
        Ok(value)
    } else {
        let message = value
            .get("error")
            .and_then(|m| m.as_str())
            .map(String::from)
            .unwrap_or_else(|| format!("vtapd answered {status}"));
        Err(Error::Api { status, message })
    }
}
