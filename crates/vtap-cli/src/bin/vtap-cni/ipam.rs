//! Delegation to the IPAM plugin exactly as the spec says: the plugin
//! named by `ipam.type`, found in `CNI_PATH` (never a path from the
//! config), run with this plugin's environment and `CNI_COMMAND`, the
//! whole network configuration on stdin, its result or error object on
//! stdout.
//!
//! IPAM plugins lag behind the spec: Debian's `host-local` speaks up to
//! 1.0.0. So each call first asks it `VERSION` and hands it the
//! configuration at the highest version it speaks that reads the same
//! (1.0.0 for a 1.1.0 network: the result format did not change); GC and
//! STATUS go to it only where it speaks 1.1.0.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::spec::{code, version_key, Attachment, CniError};

/// A call to the IPAM plugin.
pub trait Ipam {
    /// Runs `command` (`ADD`, `DEL`, `CHECK`, `GC`, `STATUS`) with the
    /// network configuration `conf`; `att` overrides the container and
    /// interface (GC's per-attachment `DEL`). Returns its result, if any.
    fn call(
        &self,
        command: &str,
        conf: &Value,
        att: Option<&Attachment>,
    ) -> Result<Option<Value>, CniError>;
    /// Whether it speaks spec version `v` (for GC and STATUS).
    fn speaks(&self, conf: &Value, v: &str) -> Result<bool, CniError>;
}

/// The real one: an executable in `CNI_PATH`.
#[derive(Debug)]
pub struct Exec {
    /// `ipam.type`.
    pub name: String,
    /// `CNI_PATH`, split.
    pub path: Vec<PathBuf>,
}

impl Exec {
    fn find(&self) -> Result<PathBuf, CniError> {
        use std::os::unix::fs::PermissionsExt;
        self.path
            .iter()
            .map(|d| d.join(&self.name))
            .find(|p| {
                p.metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
            .ok_or_else(|| {
                CniError::new(
                    code::INVALID_CONFIG,
                    format!("ipam.type: no plugin '{}' in CNI_PATH", self.name),
                )
            })
    }

    fn run(
        &self,
        command: &str,
        stdin: &Value,
        att: Option<&Attachment>,
    ) -> Result<Option<Value>, CniError> {
        let bin = self.find()?;
        let mut cmd = Command::new(&bin);
        cmd.env("CNI_COMMAND", command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(a) = att {
            cmd.env("CNI_CONTAINERID", &a.container_id)
                .env("CNI_IFNAME", &a.ifname)
                .env("CNI_NETNS", "");
        }
        let io = |e: std::io::Error| CniError::new(code::IO, format!("ipam {}: {e}", self.name));
        let mut child = cmd.spawn().map_err(io)?;
        if let Some(mut input) = child.stdin.take() {
            // A plugin may answer without reading (VERSION does): a closed
            // pipe is no error, its exit status and stdout say how it went.
            match input.write_all(stdin.to_string().as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(io(e)),
                _ => {}
            }
        }
        let out = child.wait_with_output().map_err(io)?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(ipam_error(
                &self.name,
                command,
                &text,
                &String::from_utf8_lossy(&out.stderr),
            ));
        }
        if text.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&text).map(Some).map_err(|e| {
            CniError::new(
                code::DECODE,
                format!("ipam {} {command}: result is not JSON: {e}", self.name),
            )
        })
    }

    /// The versions it speaks.
    fn versions(&self, ours: &str) -> Result<Vec<String>, CniError> {
        let answer = self.run("VERSION", &serde_json::json!({"cniVersion": ours}), None)?;
        Ok(answer
            .as_ref()
            .and_then(|v| v.get("supportedVersions"))
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// The error an IPAM plugin printed, as ours (its code kept).
fn ipam_error(name: &str, command: &str, stdout: &str, stderr: &str) -> CniError {
    match serde_json::from_str::<Value>(stdout) {
        Ok(v) if v.get("code").is_some() => CniError {
            code: v["code"]
                .as_u64()
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(code::IO),
            msg: format!(
                "ipam {name} {command}: {}",
                v["msg"].as_str().unwrap_or("failed")
            ),
            details: v["details"].as_str().unwrap_or("").to_string(),
        },
        _ => CniError::new(
            code::IO,
            format!("ipam {name} {command} failed: {}", stderr.trim()),
        ),
    }
}

/// The version to hand an IPAM plugin that speaks `theirs` a network of
/// version `ours`: ours if it speaks it, else the highest it speaks whose
/// result reads the same (1.0.0 and later read alike; 0.4.0 only itself).
pub fn pick_version(ours: &str, theirs: &[String]) -> Option<String> {
    if theirs.iter().any(|t| t == ours) {
        return Some(ours.to_string());
    }
    let ours_key = version_key(ours)?;
    if ours_key < (1, 0, 0) {
        return None;
    }
    theirs
        .iter()
        .filter(|t| version_key(t).is_some_and(|k| k >= (1, 0, 0) && k <= ours_key))
        .max_by_key(|t| version_key(t))
        .cloned()
}

impl Ipam for Exec {
    fn call(
        &self,
        command: &str,
        conf: &Value,
        att: Option<&Attachment>,
    ) -> Result<Option<Value>, CniError> {
        let ours = conf["cniVersion"].as_str().unwrap_or("1.0.0");
        let theirs = self.versions(ours)?;
        let v = pick_version(ours, &theirs).ok_or_else(|| {
            CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "ipam {}: speaks {} but not {ours}",
                    self.name,
                    theirs.join(", ")
                ),
            )
        })?;
        let mut conf = conf.clone();
        conf["cniVersion"] = Value::String(v);
        self.run(command, &conf, att)
    }

    fn speaks(&self, conf: &Value, v: &str) -> Result<bool, CniError> {
        let ours = conf["cniVersion"].as_str().unwrap_or("1.0.0");
        Ok(self.versions(ours)?.iter().any(|t| t == v))
    }
}

/// `CNI_PATH` split into directories.
pub fn split_path(p: &str) -> Vec<PathBuf> {
    p.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).to_path_buf())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_picked_for_the_ipam_plugin() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let host_local = s(&["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"]);
        assert_eq!(pick_version("1.1.0", &host_local).as_deref(), Some("1.0.0"));
        assert_eq!(pick_version("1.0.0", &host_local).as_deref(), Some("1.0.0"));
        assert_eq!(pick_version("0.4.0", &host_local).as_deref(), Some("0.4.0"));
        assert_eq!(pick_version("0.4.0", &s(&["1.0.0"])), None);
        assert_eq!(pick_version("1.1.0", &s(&["0.4.0"])), None);
        assert_eq!(
            pick_version("1.1.0", &s(&["1.0.0", "1.1.0"])).as_deref(),
            Some("1.1.0")
        );
    }

    #[test]
    fn an_ipam_error_keeps_its_code() {
        let e = ipam_error(
            "host-local",
            "ADD",
            r#"{"code": 11, "msg": "no IP addresses available"}"#,
            "",
        );
        assert_eq!(e.code, 11);
        assert_eq!(e.msg, "ipam host-local ADD: no IP addresses available");
        let e = ipam_error("x", "DEL", "garbage", "boom\n");
        assert_eq!(
            (e.code, e.msg.as_str()),
            (code::IO, "ipam x DEL failed: boom")
        );
    }
}
