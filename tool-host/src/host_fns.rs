//! The `caxton` import module: what a tool may ask of the host beyond WASI.
//!
//! Every function reads its request from the module's memory and writes its reply into a buffer
//! the module's own `caxton_alloc` hands out, so the module frees it as it frees anything else.
//! A function never blocks past the call's deadline; epoch interruption cannot stop host code,
//! so each one bounds itself by the time the call has left.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use wasmtime::{Caller, Extern, Linker};

use crate::CallState;
use crate::call::DirGrant;
use crate::http_access::{HttpAccess, HttpRequest};

/// Log lines one call may write; a chatty or looping module cannot flood the journal.
pub(crate) const LOG_LINES_PER_CALL: u32 = 200;
/// Longest log line kept, in bytes.
const MAX_LOG_LINE: usize = 4 << 10;
/// Largest request a module may pass to a host function.
const MAX_REQUEST: usize = 1 << 20;

/// What the host functions of one call may reach, and until when.
pub(crate) struct CallIo {
    pub(crate) server: String,
    pub(crate) deadline: Instant,
    pub(crate) dirs: Vec<DirGrant>,
    pub(crate) http: Option<HttpAccess>,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) logs_left: u32,
}

impl CallIo {
    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Define `caxton.log`, `caxton.http_request` and `caxton.sqlite_query`.
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "caxton",
        "log",
        |mut caller: Caller<'_, CallState>, level: i32, ptr: i32, len: i32| {
            let io = &mut caller.data_mut().io;
            if io.logs_left == 0 {
                return Ok(());
            }
            io.logs_left -= 1;
            let take = (len.max(0) as usize).min(MAX_LOG_LINE) as i32;
            let bytes = read_guest(&mut caller, ptr, take)?;
            let message = String::from_utf8_lossy(&bytes);
            let server = caller.data().io.server.as_str();
            match level {
                0 => tracing::error!(tool_server = server, message = %message, "tool log"),
                1 => tracing::warn!(tool_server = server, message = %message, "tool log"),
                2 => tracing::info!(tool_server = server, message = %message, "tool log"),
                _ => tracing::debug!(tool_server = server, message = %message, "tool log"),
            }
            Ok(())
        },
    )?;
    linker.func_wrap(
        "caxton",
        "http_request",
        |mut caller: Caller<'_, CallState>, ptr: i32, len: i32| -> wasmtime::Result<i64> {
            let request = read_request(&mut caller, ptr, len)?;
            let reply = http_request(caller.data().io.http.clone(), &caller.data().io, request);
            write_reply(&mut caller, &reply)
        },
    )?;
    linker.func_wrap(
        "caxton",
        "sqlite_query",
        |mut caller: Caller<'_, CallState>, ptr: i32, len: i32| -> wasmtime::Result<i64> {
            let request = read_request(&mut caller, ptr, len)?;
            let io = &caller.data().io;
            let reply = match serde_json::from_slice(&request) {
                Ok(req) => crate::sqlite_access::query(&io.dirs, req, io.deadline),
                Err(e) => error_reply(format!("bad sqlite_query request: {e}")),
            };
            write_reply(&mut caller, &reply)
        },
    )?;
    Ok(())
}

fn http_request(access: Option<HttpAccess>, io: &CallIo, request: Vec<u8>) -> serde_json::Value {
    let Some(access) = access else {
        return error_reply(format!(
            "tool server {} has no http_hosts capability",
            io.server
        ));
    };
    let request: HttpRequest = match serde_json::from_slice(&request) {
        Ok(r) => r,
        Err(e) => return error_reply(format!("bad http_request request: {e}")),
    };
    let timeout = io.remaining();
    if timeout.is_zero() {
        return error_reply("the call's time is up".into());
    }
    tracing::debug!(tool_server = %io.server, ?timeout, "tool http request");
    io.runtime.block_on(access.request(request, io.deadline))
}

/// The reply a host function gives when it refuses or fails.
pub(crate) fn error_reply(message: String) -> serde_json::Value {
    serde_json::json!({ "error": message })
}

fn read_request(
    caller: &mut Caller<'_, CallState>,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<Vec<u8>> {
    if len < 0 || len as usize > MAX_REQUEST {
        return Err(wasmtime::Error::msg(format!(
            "host function request of {len} bytes (at most {MAX_REQUEST})"
        )));
    }
    read_guest(caller, ptr, len)
}

fn memory(caller: &mut Caller<'_, CallState>) -> wasmtime::Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(wasmtime::Error::msg("module has no exported memory")),
    }
}

fn read_guest(caller: &mut Caller<'_, CallState>, ptr: i32, len: i32) -> wasmtime::Result<Vec<u8>> {
    let memory = memory(caller)?;
    let (start, len) = (ptr as u32 as usize, len.max(0) as usize);
    memory
        .data(&*caller)
        .get(start..start.saturating_add(len))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            wasmtime::Error::msg(format!(
                "host function argument at {start}+{len} lies outside the module's memory"
            ))
        })
}

/// Put `reply` into a buffer from the module's `caxton_alloc`; return `(ptr << 32) | len`.
fn write_reply(
    caller: &mut Caller<'_, CallState>,
    reply: &serde_json::Value,
) -> wasmtime::Result<i64> {
    let bytes = serde_json::to_vec(reply)?;
    let len = i32::try_from(bytes.len()).map_err(|_| wasmtime::Error::msg("reply too large"))?;
    let alloc = match caller.get_export("caxton_alloc") {
        Some(Extern::Func(f)) => f.typed::<i32, i32>(&*caller)?,
        _ => return Err(wasmtime::Error::msg("module has no caxton_alloc export")),
    };
    let ptr = alloc.call(&mut *caller, len)?;
    let memory = memory(caller)?;
    memory
        .write(&mut *caller, ptr as u32 as usize, &bytes)
        .map_err(|_| wasmtime::Error::msg("caxton_alloc returned a pointer outside memory"))?;
    Ok(((ptr as u32 as i64) << 32) | len as i64)
}

/// The host path a module's path means, if it lies inside a granted directory. Symlinks are
/// resolved before the check, so a link that points out of the grant is refused.
pub(crate) fn resolve_guest_path(dirs: &[DirGrant], path: &str) -> Result<PathBuf, String> {
    let denied = || format!("{path:?} is outside the directories granted to this tool");
    if path.split('/').any(|c| c == "..") {
        return Err(denied());
    }
    for dir in dirs {
        let guest = dir.guest.trim_end_matches('/');
        let rest = if guest == "." || guest.is_empty() {
            if path.starts_with('/') {
                continue;
            }
            path.trim_start_matches("./")
        } else if let Some(rest) = path.strip_prefix(guest) {
            match rest.strip_prefix('/') {
                Some(r) => r,
                None if rest.is_empty() => "",
                None => continue,
            }
        } else {
            continue;
        };
        let root = dir
            .host
            .canonicalize()
            .map_err(|e| format!("granted directory {}: {e}", dir.host.display()))?;
        let full = root
            .join(rest)
            .canonicalize()
            .map_err(|e| format!("{path}: {e}"))?;
        if !full.starts_with(&root) {
            return Err(denied());
        }
        return Ok(full);
    }
    Err(denied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_stay_inside_their_grant() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.db"), b"").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.db"), b"").unwrap();
        std::fs::write(outside.path().join("secret.db"), b"").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.db"), dir.path().join("link.db"))
            .unwrap();
        let root = dir.path().canonicalize().unwrap();
        let dot = [DirGrant {
            host: dir.path().to_owned(),
            guest: ".".into(),
            writable: false,
        }];
        assert_eq!(resolve_guest_path(&dot, "a.db").unwrap(), root.join("a.db"));
        assert_eq!(
            resolve_guest_path(&dot, "./sub/b.db").unwrap(),
            root.join("sub/b.db")
        );
        for bad in [
            "../a.db",
            "sub/../../x",
            "/etc/passwd",
            "link.db",
            "sub/b.db/",
        ] {
            assert!(
                resolve_guest_path(&dot, bad).is_err(),
                "{bad} must be refused"
            );
        }
        let named = [DirGrant {
            host: dir.path().to_owned(),
            guest: "/data".into(),
            writable: false,
        }];
        assert_eq!(
            resolve_guest_path(&named, "/data/a.db").unwrap(),
            root.join("a.db")
        );
        assert!(resolve_guest_path(&named, "/database/a.db").is_err());
        assert!(resolve_guest_path(&named, "a.db").is_err());
    }
}
