//! A minimal HTTP/1.1 client for the daemon's Unix socket, for the CLI
//! and the CNI plugin: one connection per request (the daemon serves
//! many; a CNI plugin lives for one request anyway).

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
    #[error("cannot connect to vtapd at {} (is vtapd running?)", path.display())]
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

/// Opens a connection and sends one request; returns the response.
async fn send(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<
    (
        hyper::Response<hyper::body::Incoming>,
        tokio::task::JoinHandle<Result<(), hyper::Error>>,
    ),
    Error,
> {
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
    Ok((resp, conn))
}

/// The daemon's error answer as an [`Error`].
fn api_error(status: StatusCode, body: &[u8]) -> Error {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|m| m.as_str()).map(String::from))
        .unwrap_or_else(|| format!("vtapd answered {status}"));
    Error::Api { status, message }
}

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    /// The JSON body (`Null` for 204).
    pub body: serde_json::Value,
    /// The daemon's warnings (`Warning: 199 vtapd "..."`): the change was
    /// made, with a consequence the caller should know.
    pub warnings: Vec<String>,
}

/// Sends one request and returns the answer.
pub async fn request(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<Answer, Error> {
    let (resp, conn) = send(socket, method, path, body).await?;
    let status = resp.status();
    let warnings = resp
        .headers()
        .get_all(hyper::header::WARNING)
        .iter()
        .filter_map(|w| w.to_str().ok())
        .map(|t| {
            t.trim_start_matches("199 vtapd ")
                .trim_matches('"')
                .to_string()
        })
        .collect();
    let body = resp.into_body().collect().await?.to_bytes();
    conn.abort();
    if !status.is_success() {
        return Err(api_error(status, &body));
    }
    let body = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body)?
    };
    Ok(Answer { body, warnings })
}

/// Sends one request whose answer is a stream, handing each chunk to
/// `sink` as it arrives, until the daemon ends the stream. Returns the
/// bytes received.
pub async fn stream(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
    mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<u64, StreamError> {
    let (resp, conn) = send(socket, method, path, body).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let bytes = body.collect().await.map_err(Error::from)?.to_bytes();
        conn.abort();
        return Err(api_error(status, &bytes).into());
    }
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(Error::from)?.into_data() {
            sink(&data).map_err(StreamError::Sink)?;
            n += data.len() as u64;
        }
    }
    conn.abort();
    Ok(n)
}

/// Why a streamed request failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The request or the daemon.
    #[error(transparent)]
    Request(#[from] Error),
    /// Writing what arrived.
    #[error("writing the output")]
    Sink(#[source] std::io::Error),
}
