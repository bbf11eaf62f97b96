//! The tool host: MCP tool servers compiled to WebAssembly, run by wasmtime inside the
//! supervisor, one fresh instance per call.
//!
//! The ABI a module implements is written down in `docs/tool-abi.md`; in short:
//! - export `memory`;
//! - export `caxton_alloc(len: i32) -> i32`: a pointer to `len` writable bytes;
//! - export `caxton_call(name_ptr: i32, name_len: i32, args_ptr: i32, args_len: i32) -> i64`:
//!   run tool `name` with the UTF-8 JSON arguments, and return `(ptr << 32) | len` of an MCP
//!   `CallToolResult` as UTF-8 JSON (`{"content": [...], "isError": bool}`) in its memory;
//! - optionally import `caxton.log`, `caxton.http_request`, `caxton.sqlite_query` and WASI
//!   preview 1 (only the grant's preopened directories; no environment, no sockets).
//!
//! Architecture invariants: one `Engine` per host; compiled modules are cached on disk by the
//! hash of their bytes and of the engine's settings; every call gets a fresh instance from a
//! pre-linked `InstancePre` on the pooling allocator, so nothing leaks between calls; CPU is
//! bounded by fuel, wall time by epoch interruption, memory by a per-call limiter, host
//! functions (WASI's `poll_oneoff` included) by the call's remaining wall time; files only
//! inside the granted directories, HTTP only where one allowlist entry grants both host and
//! port, with addresses checked at connect time; any fault is an error for that call, never a
//! panic of the host.
#![deny(missing_docs)]

mod arguments;
mod cache;
mod call;
mod host_fns;
pub mod http_access;
pub mod manifest;
mod server;
mod slots;
mod sqlite_access;
mod wasi_time;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, PoolingAllocationConfig,
};

pub use arguments::ArgumentSchema;
pub use call::{CallLimits, DirGrant, Grants, ToolFault};
pub use server::{CallContext, PackageError, ToolCallError, ToolServer};
pub use slots::{CallSlot, CallSlots, SlotLimits, SlotsClosed};

/// How often the wall-clock tick advances; call deadlines are counted in these.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Why a module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a valid module.
    #[error("tool module {name}: {detail}")]
    Invalid {
        /// The tool server's name.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// The module does not implement the ABI.
    #[error("tool module {name} does not implement the Caxton tool ABI: {detail}")]
    Abi {
        /// The tool server's name.
        name: String,
        /// What is missing or has the wrong type.
        detail: String,
    },
    /// The engine could not be set up.
    #[error("tool host: {0}")]
    Engine(String),
}

/// Sizes of the host's instance pool.
#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    /// Instances alive at once (concurrent calls).
    pub max_instances: u32,
    /// Largest linear memory any call may have, in bytes.
    pub max_memory_bytes: usize,
}

impl Default for HostLimits {
    fn default() -> Self {
        Self {
            max_instances: 64,
            max_memory_bytes: 64 << 20,
        }
    }
}

/// Per-call state: what the limiter allows, whether a call ran into it, and what the call's
/// host functions may reach.
pub(crate) struct CallState {
    pub(crate) memory_limit: usize,
    pub(crate) hit_memory_limit: bool,
    /// Present when the module imports WASI.
    pub(crate) wasi: Option<wasmtime_wasi::p1::WasiP1Ctx>,
    /// Time zero of the call's WASI monotonic clock.
    pub(crate) clock_origin: Instant,
    pub(crate) io: host_fns::CallIo,
}

impl CallState {
    /// The call's WASI context; a module that imports WASI without a grant gets one with nothing
    /// preopened.
    pub(crate) fn wasi_ctx(&mut self) -> &mut wasmtime_wasi::p1::WasiP1Ctx {
        let origin = self.clock_origin;
        self.wasi.get_or_insert_with(|| {
            wasmtime_wasi::WasiCtxBuilder::new()
                .monotonic_clock(wasi_time::CallClock { origin })
                .build_p1()
        })
    }
}

impl wasmtime::ResourceLimiter for CallState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.hit_memory_limit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The engine, its epoch ticker, the compile cache and the runtime host functions block on.
pub struct ToolHost {
    engine: Engine,
    linker: Linker<CallState>,
    cache_dir: PathBuf,
    limits: HostLimits,
    ticking: Arc<AtomicBool>,
    /// Host functions (HTTP) run their I/O here; calls themselves run on the caller's thread.
    io_runtime: Option<tokio::runtime::Runtime>,
}

impl ToolHost {
    /// Create the engine (pooling allocator, fuel, epochs) and start its ticker thread.
    pub fn new(cache_dir: impl Into<PathBuf>, limits: HostLimits) -> Result<Self, LoadError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(limits.max_instances)
            .total_memories(limits.max_instances)
            .total_tables(limits.max_instances)
            .max_memory_size(limits.max_memory_bytes);
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            // Deep recursion ends in a stack-overflow trap well before the host's stack.
            .max_wasm_stack(512 << 10)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;
        let ticking = Arc::new(AtomicBool::new(true));
        let ticker = {
            let (engine, ticking) = (engine.clone(), ticking.clone());
            move || {
                while ticking.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            }
        };
        std::thread::Builder::new()
            .name("caxton-epoch".into())
            .spawn(ticker)
            .map_err(|e| LoadError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        let mut linker = Linker::new(&engine);
        let linking =
            |e: wasmtime::Error| LoadError::Engine(format!("cannot link host functions: {e:#}"));
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, CallState::wasi_ctx).map_err(linking)?;
        wasi_time::bound_poll_oneoff(&mut linker).map_err(linking)?;
        host_fns::add_to_linker(&mut linker).map_err(linking)?;
        let io_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("caxton-tool-io")
            .enable_all()
            .build()
            .map_err(|e| LoadError::Engine(format!("cannot start the tool I/O runtime: {e}")))?;
        Ok(Self {
            engine,
            linker,
            cache_dir: cache_dir.into(),
            limits,
            ticking,
            io_runtime: Some(io_runtime),
        })
    }

    /// Compile (or load from the cache) and pre-link a module, checking its exports.
    pub fn load(&self, name: &str, wasm: &[u8]) -> Result<ToolModule, LoadError> {
        let module = cache::compile_cached(&self.engine, &self.cache_dir, name, wasm)?;
        call::check_exports(name, &module)?;
        let pre: InstancePre<CallState> =
            self.linker
                .instantiate_pre(&module)
                .map_err(|e| LoadError::Abi {
                    name: name.to_owned(),
                    detail: format!("{e:#}"),
                })?;
        let imports_wasi = module
            .imports()
            .any(|i| i.module() == "wasi_snapshot_preview1");
        let io = match &self.io_runtime {
            Some(rt) => rt.handle().clone(),
            None => return Err(LoadError::Engine("the tool host is shutting down".into())),
        };
        Ok(ToolModule {
            name: name.to_owned(),
            engine: self.engine.clone(),
            pre,
            max_memory: self.limits.max_memory_bytes,
            imports_wasi,
            io,
        })
    }
}

impl Drop for ToolHost {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Relaxed);
        // Dropping a runtime blocks, which panics inside async code; the supervisor may drop
        // the host there.
        if let Some(rt) = self.io_runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A loaded tool server, ready for calls.
pub struct ToolModule {
    name: String,
    engine: Engine,
    pre: InstancePre<CallState>,
    max_memory: usize,
    imports_wasi: bool,
    io: tokio::runtime::Handle,
}

impl ToolModule {
    /// The tool server's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}
