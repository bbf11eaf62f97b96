//! WASI's clocks bounded by the call's deadline: `poll_oneoff` never waits past it.
//!
//! Epoch interruption stops WebAssembly code, not a host function blocked in a sleep, so a module
//! that asks WASI to sleep longer than its call has left would hold its thread (and its call
//! slot) for as long as it asked. `poll_oneoff` is the only WASI preview 1 import that can wait
//! for an unbounded time here (files, the empty stdin and the captured stdout are always ready),
//! so it is wrapped: a poll whose earliest clock would fire after the call's deadline sleeps
//! until the deadline and then ends the call with its time-limit fault; any other poll goes to
//! wasmtime-wasi unchanged, so its answers and errors stay WASI's own.

use std::time::{Duration, Instant, SystemTime};

use wasmtime::{AsContextMut, Caller, Extern, Linker};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1};

use crate::CallState;

const MODULE: &str = "wasi_snapshot_preview1";
const POLL_ONEOFF: &str = "poll_oneoff";
/// `subscription` in preview 1: 48 bytes, the union's tag at 8 and its payload at 16.
const SUBSCRIPTION_SIZE: usize = 48;
const TAG_CLOCK: u8 = 0;
const CLOCK_REALTIME: u32 = 0;
const CLOCK_MONOTONIC: u32 = 1;
const SUBCLOCK_ABSTIME: u16 = 1;

/// The trap that ends a call whose WASI wait would outlast its deadline; the call reports it as
/// its time-limit fault.
#[derive(Debug)]
pub(crate) struct SleptPastDeadline;

impl std::fmt::Display for SleptPastDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a WASI sleep would outlast the call's time limit")
    }
}

impl std::error::Error for SleptPastDeadline {}

/// The monotonic clock a call's WASI context reads: nanoseconds since the call's `origin`, which
/// the host also knows, so an absolute monotonic timeout can be turned into an `Instant`.
pub(crate) struct CallClock {
    pub(crate) origin: Instant,
}

impl wasmtime_wasi::HostMonotonicClock for CallClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Replace wasmtime-wasi's `poll_oneoff` in `linker` with the deadline-bounded one.
pub(crate) fn bound_poll_oneoff(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let defined = linker
        .func_wrap(
            MODULE,
            POLL_ONEOFF,
            |mut caller: Caller<'_, CallState>,
             subs: i32,
             events: i32,
             nsubs: i32,
             nevents: i32|
             -> wasmtime::Result<i32> {
                let deadline = caller.data().io.deadline;
                if let Some(wake) = clock_only_wake(&mut caller, subs, nsubs)
                    && wake.is_none_or(|w| w > deadline)
                {
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    return Err(wasmtime::Error::new(SleptPastDeadline));
                }
                wasi_poll_oneoff(&mut caller, subs, events, nsubs, nevents)
            },
        )
        .map(|_| ());
    linker.allow_shadowing(false);
    defined
}

/// wasmtime-wasi's own `poll_oneoff`, called as its linker entry would call it: on the
/// module's memory, with the call's fuel for host work, blocking on its runtime.
fn wasi_poll_oneoff(
    caller: &mut Caller<'_, CallState>,
    subs: i32,
    events: i32,
    nsubs: i32,
    nevents: i32,
) -> wasmtime::Result<i32> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Err(wasmtime::Error::msg("missing required memory export"));
    };
    let fuel = caller.as_context_mut().hostcall_fuel();
    let (bytes, state) = memory.data_and_store_mut(&mut *caller);
    let ctx = state.wasi_ctx();
    ctx.set_hostcall_fuel(fuel);
    let mut memory = wiggle::GuestMemory::Unshared(bytes);
    wasmtime_wasi::runtime::in_tokio(p1::poll_oneoff(
        ctx,
        &mut memory,
        subs,
        events,
        nsubs,
        nevents,
    ))
}

/// When a poll made only of clock subscriptions would return: `Some(None)` for never (a time
/// past what an `Instant` holds), `None` when the poll is not clock-only or cannot be read (then
/// WASI answers it, with its own error where there is one).
fn clock_only_wake(
    caller: &mut Caller<'_, CallState>,
    subs: i32,
    nsubs: i32,
) -> Option<Option<Instant>> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return None;
    };
    let count = usize::try_from(nsubs).ok().filter(|n| *n > 0)?;
    let start = subs as u32 as usize;
    let end = start.checked_add(count.checked_mul(SUBSCRIPTION_SIZE)?)?;
    let bytes = memory.data(&*caller).get(start..end)?;
    let origin = caller.data().clock_origin;
    let now = Instant::now();
    let mut earliest: Option<Option<Instant>> = None;
    for sub in bytes.chunks_exact(SUBSCRIPTION_SIZE) {
        if sub[8] != TAG_CLOCK {
            return None;
        }
        let id = u32::from_le_bytes(sub[16..20].try_into().ok()?);
        let timeout = u64::from_le_bytes(sub[24..32].try_into().ok()?);
        let flags = u16::from_le_bytes(sub[40..42].try_into().ok()?);
        let absolute = flags & SUBCLOCK_ABSTIME != 0;
        let wake = match (id, absolute) {
            (CLOCK_REALTIME | CLOCK_MONOTONIC, false) => now.checked_add(nanos(timeout)),
            (CLOCK_MONOTONIC, true) => origin.checked_add(nanos(timeout)),
            (CLOCK_REALTIME, true) => {
                let unix_now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                now.checked_add(nanos(timeout).saturating_sub(unix_now))
            }
            // Clocks WASI refuses here (CPU time): let it say so.
            _ => return None,
        };
        earliest = Some(match (earliest, wake) {
            (None, w) => w,
            (Some(None), w) | (Some(w), None) => w,
            (Some(Some(a)), Some(b)) => Some(a.min(b)),
        });
    }
    earliest
}

fn nanos(n: u64) -> Duration {
    Duration::from_nanos(n)
}
