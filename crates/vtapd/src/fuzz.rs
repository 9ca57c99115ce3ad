//! Entry points for the cargo-fuzz targets in `fuzz/` (and for the corpus
//! replay that `cargo test` runs on stable): arbitrary bytes as an API
//! request body and as a config file. Each must never panic, and whatever
//! it accepts or refuses must keep its promises (asserted here).

use std::path::Path;

use axum::body::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use crate::api::{self, parse_body};
use crate::config::Config;

/// Parses `body` as `T` the way the API does. Accepted: it serializes and
/// parses back to the same JSON (nothing read positionally or half-way).
/// Refused: a 400 whose message says it is about the request body.
fn body_as<T: DeserializeOwned + Serialize>(body: &Bytes) -> Option<T> {
    match parse_body::<T>(body) {
        Ok(v) => {
            let json = serde_json::to_value(&v).expect("serializes");
            let again: T = serde_json::from_value(json.clone()).expect("parses back");
            assert_eq!(serde_json::to_value(&again).expect("serializes"), json);
            Some(v)
        }
        Err(e) => {
            let (status, message) = e.parts();
            assert_eq!(status, axum::http::StatusCode::BAD_REQUEST);
            assert!(message.starts_with("request body: "), "{message}");
            None
        }
    }
}

/// The first byte picks a request type; the rest is its body.
pub fn api_body(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let body = Bytes::copy_from_slice(rest);
    match sel % 8 {
        0 => {
            if let Some(o) = body_as::<vtap::CreateOptions>(&body) {
                if let Err(e) = o.validate() {
                    // A refusal names the field it is about, and a reason.
                    assert!(!e.field.is_empty() && !e.reason.is_empty(), "{e}");
                }
            }
        }
        1 => drop(body_as::<api::MtuRequest>(&body)),
        2 => drop(body_as::<api::XconnectRequest>(&body)),
        3 => {
            if let Some(r) = body_as::<api::OffloadRequest>(&body) {
                let _ = r.action.parse::<vtap::registry::OffloadAction>();
            }
        }
        4 => drop(body_as::<api::BridgeRequest>(&body)),
        5 => drop(body_as::<api::PortRequest>(&body)),
        6 => drop(body_as::<api::CaptureRequest>(&body)),
        _ => drop(body_as::<api::RxModeRequest>(&body)),
    }
}

/// Arbitrary text as the daemon's config file. Refused: the message names
/// the file, and a line it names exists.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = Config::parse(&text, Path::new("fuzz.toml")) {
        let msg = e.to_string();
        assert!(msg.starts_with("config fuzz.toml"), "{msg}");
        if let crate::config::Error::Declared { line, .. } = e {
            assert!(line >= 1 && line <= text.lines().count().max(1), "{msg}");
        }
    }
}
