//! One call: a fresh instance, the arguments in, the `CallToolResult` out, every fault named.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use wasmtime::{Module, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::host_fns::CallIo;
use crate::http_access::HttpAccess;
use crate::wasi_time::{CallClock, SleptPastDeadline};
use crate::{CallState, LoadError, ToolModule};

/// What a module's stdout and stderr may hold per call; the rest is dropped.
const CAPTURED_OUTPUT: usize = 16 << 10;

/// A host directory a call may use, and where the module sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DirGrant {
    /// The directory on the host.
    pub host: PathBuf,
    /// Its path inside the module (`.` makes relative paths resolve there).
    pub guest: String,
    /// Whether the module may create, change and delete files in it.
    pub writable: bool,
}

/// Everything a call may reach beyond its own memory.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Preopened directories.
    pub dirs: Vec<DirGrant>,
    /// HTTP through the allowlist, when the server may use it.
    pub http: Option<HttpAccess>,
}

/// Bounds of one call.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// Fuel (roughly, WebAssembly instructions) the call may burn.
    pub fuel: u64,
    /// Wall-clock time the call may take.
    pub wall: Duration,
    /// Largest linear memory, in bytes.
    pub memory_bytes: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            fuel: 1_000_000_000,
            wall: Duration::from_secs(5),
            memory_bytes: 16 << 20,
        }
    }
}

/// Why a call produced no result; each is that call's error, never the host's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolFault {
    /// The fuel ran out (an endless or very long computation).
    #[error("tool {tool} used up its CPU budget of {fuel} fuel")]
    OutOfFuel {
        /// Tool server.
        tool: String,
        /// The budget.
        fuel: u64,
    },
    /// The wall-clock limit passed.
    #[error("tool {tool} did not finish within {limit:?}, its time limit")]
    WallClock {
        /// Tool server.
        tool: String,
        /// The limit.
        limit: Duration,
    },
    /// It wanted more memory than allowed.
    #[error("tool {tool} exceeded its memory limit of {limit} bytes")]
    OutOfMemory {
        /// Tool server.
        tool: String,
        /// The limit.
        limit: usize,
    },
    /// Recursion too deep.
    #[error("tool {tool} overflowed its stack (recursion too deep)")]
    StackOverflow {
        /// Tool server.
        tool: String,
    },
    /// Any other trap (unreachable, out-of-bounds access, a guest panic).
    #[error("tool {tool} crashed: {detail}")]
    Trap {
        /// Tool server.
        tool: String,
        /// The trap.
        detail: String,
    },
    /// A granted directory could not be opened for the module.
    #[error("tool {tool} cannot be given directory {dir}: {detail}")]
    Grant {
        /// Tool server.
        tool: String,
        /// The host directory.
        dir: String,
        /// Why.
        detail: String,
    },
    /// The result was not a `CallToolResult`.
    #[error("tool {tool} returned an invalid result: {detail}")]
    BadOutput {
        /// Tool server.
        tool: String,
        /// What was wrong.
        detail: String,
    },
}

const ALLOC: &str = "caxton_alloc";
const CALL: &str = "caxton_call";

/// Refuse, at load time, a module whose exports do not match the ABI.
pub fn check_exports(name: &str, module: &Module) -> Result<(), LoadError> {
    let abi = |detail: String| LoadError::Abi {
        name: name.to_owned(),
        detail,
    };
    let func = |export: &str,
                params: &[wasmtime::ValType],
                results: &[wasmtime::ValType]|
     -> Result<(), LoadError> {
        let Some(ty) = module.get_export(export) else {
            return Err(abi(format!("no `{export}` export")));
        };
        let Some(f) = ty.func() else {
            return Err(abi(format!("`{export}` is not a function")));
        };
        let same = |a: &mut dyn ExactSizeIterator<Item = wasmtime::ValType>,
                    b: &[wasmtime::ValType]| {
            a.len() == b.len() && a.zip(b).all(|(x, y)| wasmtime::ValType::eq(&x, y))
        };
        if !same(&mut f.params(), params) || !same(&mut f.results(), results) {
            return Err(abi(format!(
                "`{export}` has type {f}, expected {params:?} -> {results:?}"
            )));
        }
        Ok(())
    };
    use wasmtime::ValType::{I32, I64};
    func(ALLOC, &[I32], &[I32])?;
    func(CALL, &[I32, I32, I32, I32], &[I64])?;
    if module
        .get_export("memory")
        .and_then(|e| e.memory().cloned())
        .is_none()
    {
        return Err(abi("no exported `memory`".into()));
    }
    Ok(())
}

impl ToolModule {
    /// Run `tool` with `args_json` in a fresh instance with no grants.
    pub fn call(
        &self,
        tool: &str,
        args_json: &str,
        limits: CallLimits,
    ) -> Result<serde_json::Value, ToolFault> {
        self.call_with(tool, args_json, &Grants::default(), limits)
    }

    /// Run `tool` with `args_json` in a fresh instance that may use `grants`. The result is the
    /// module's `CallToolResult` JSON, checked to have a `content` array.
    pub fn call_with(
        &self,
        tool: &str,
        args_json: &str,
        grants: &Grants,
        limits: CallLimits,
    ) -> Result<serde_json::Value, ToolFault> {
        let memory_limit = limits.memory_bytes.min(self.max_memory);
        let output = MemoryOutputPipe::new(CAPTURED_OUTPUT);
        let started = Instant::now();
        let wasi = if self.imports_wasi {
            Some(self.wasi_context(grants, &output, started)?)
        } else {
            None
        };
        let io = CallIo {
            server: self.name.clone(),
            deadline: started + limits.wall,
            dirs: grants.dirs.clone(),
            http: grants.http.clone(),
            runtime: self.io.clone(),
            logs_left: crate::host_fns::LOG_LINES_PER_CALL,
        };
        let mut store = Store::new(
            &self.engine,
            CallState {
                memory_limit,
                hit_memory_limit: false,
                wasi,
                clock_origin: started,
                io,
            },
        );
        store.limiter(|s| s as &mut dyn wasmtime::ResourceLimiter);
        // Fuel setting cannot fail: fuel consumption is enabled on the engine.
        let _ = store.set_fuel(limits.fuel);
        let ticks = (limits.wall.as_millis() as u64).max(1);
        store.set_epoch_deadline(ticks);
        let result = self.run(&mut store, tool, args_json);
        let printed = output.contents();
        if !printed.is_empty() {
            tracing::debug!(
                tool_server = %self.name,
                tool,
                output = %String::from_utf8_lossy(&printed),
                "tool module printed"
            );
        }
        result.map_err(|e| self.classify(e, &store, limits))
    }

    /// WASI preview 1 with only the granted directories: no environment, no arguments, no
    /// sockets; stdout and stderr go to the log.
    fn wasi_context(
        &self,
        grants: &Grants,
        output: &MemoryOutputPipe,
        clock_origin: Instant,
    ) -> Result<wasmtime_wasi::p1::WasiP1Ctx, ToolFault> {
        let mut builder = WasiCtxBuilder::new();
        builder
            .monotonic_clock(CallClock {
                origin: clock_origin,
            })
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for dir in &grants.dirs {
            let perms = if dir.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            builder
                .preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| ToolFault::Grant {
                    tool: self.name.clone(),
                    dir: dir.host.display().to_string(),
                    detail: format!("{e:#}"),
                })?;
        }
        Ok(builder.build_p1())
    }

    fn run(
        &self,
        store: &mut Store<CallState>,
        tool: &str,
        args: &str,
    ) -> wasmtime::Result<serde_json::Value> {
        let instance = self.pre.instantiate(&mut *store)?;
        // A WASI reactor (C through wasi-libc) runs its constructors here; the ABI allows it.
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut *store, "_initialize") {
            init.call(&mut *store, ())?;
        }
        let memory = instance
            .get_memory(&mut *store, "memory")
            .ok_or_else(|| wasmtime::Error::msg("no memory"))?;
        let alloc = instance.get_typed_func::<i32, i32>(&mut *store, ALLOC)?;
        let call = instance.get_typed_func::<(i32, i32, i32, i32), i64>(&mut *store, CALL)?;
        let put = |store: &mut Store<CallState>, bytes: &[u8]| -> wasmtime::Result<(i32, i32)> {
            let len = i32::try_from(bytes.len())
                .map_err(|_| wasmtime::Error::msg("argument too large"))?;
            let ptr = alloc.call(&mut *store, len)?;
            memory
                .write(&mut *store, ptr as u32 as usize, bytes)
                .map_err(|_| {
                    wasmtime::Error::msg(format!("{ALLOC} returned a pointer outside memory"))
                })?;
            Ok((ptr, len))
        };
        let (name_ptr, name_len) = put(store, tool.as_bytes())?;
        let (args_ptr, args_len) = put(store, args.as_bytes())?;
        let packed = call.call(&mut *store, (name_ptr, name_len, args_ptr, args_len))? as u64;
        let (ptr, len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        let data = memory.data(&*store);
        let bytes = ptr
            .checked_add(len)
            .and_then(|end| data.get(ptr..end))
            .ok_or_else(|| {
                wasmtime::Error::new(BadOutput(format!(
                    "result at {ptr}+{len} lies outside the module's memory"
                )))
            })?;
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| wasmtime::Error::new(BadOutput(format!("not JSON: {e}"))))?;
        if !value
            .get("content")
            .is_some_and(serde_json::Value::is_array)
        {
            return Err(wasmtime::Error::new(BadOutput(
                "no `content` array (not an MCP CallToolResult)".into(),
            )));
        }
        Ok(value)
    }

    fn classify(
        &self,
        e: wasmtime::Error,
        store: &Store<CallState>,
        limits: CallLimits,
    ) -> ToolFault {
        let tool = self.name.clone();
        if let Some(BadOutput(detail)) = e.downcast_ref::<BadOutput>() {
            return ToolFault::BadOutput {
                tool,
                detail: detail.clone(),
            };
        }
        if e.downcast_ref::<SleptPastDeadline>().is_some() {
            return ToolFault::WallClock {
                tool,
                limit: limits.wall,
            };
        }
        if store.data().hit_memory_limit {
            return ToolFault::OutOfMemory {
                tool,
                limit: store.data().memory_limit,
            };
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => ToolFault::OutOfFuel {
                tool,
                fuel: limits.fuel,
            },
            Some(Trap::Interrupt) => ToolFault::WallClock {
                tool,
                limit: limits.wall,
            },
            Some(Trap::StackOverflow) => ToolFault::StackOverflow { tool },
            Some(trap) => ToolFault::Trap {
                tool,
                detail: trap.to_string(),
            },
            None => ToolFault::Trap {
                tool,
                detail: format!("{e:#}"),
            },
        }
    }
}

/// A result the module produced that is not a valid `CallToolResult`.
#[derive(Debug)]
struct BadOutput(String);

impl std::fmt::Display for BadOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadOutput {}
