//! Readings of `/proc` the benches report: a process's memory and CPU time, the machine's
//! busy time, and a wait for the machine to go quiet before a timed series.

use std::time::{Duration, Instant};

/// A `kB` field of /proc/PID/status (`"VmRSS:"`, `"VmHWM:"`, ...).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// The same field in MB (2^20 bytes, /proc's kB / 1024); NaN if it cannot be read.
pub fn status_mb(pid: u32, field: &str) -> f64 {
    status_kb(pid, field).map_or(f64::NAN, |kb| kb as f64 / 1024.0)
}

/// CPU time of a process in clock ticks, from /proc/PID/stat.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTicks {
    /// utime + stime.
    pub own: u64,
    /// cutime + cstime: the children it has reaped (a daemon's workers).
    pub children: u64,
}

/// [`CpuTicks`] of a process.
pub fn cpu_ticks(pid: u32) -> Option<CpuTicks> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; the fields after it do not.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // After the name, field 3 (state) is index 0, so utime (14) is 11 ... cstime (17) is 14.
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(CpuTicks {
        own: tick(11)? + tick(12)?,
        children: tick(13)? + tick(14)?,
    })
}

/// Clock ticks per second, the unit of /proc's CPU times.
pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// Ticks all CPUs spent neither idle nor waiting for I/O, from the `cpu` line of /proc/stat
/// (steal included: time the hypervisor gave to someone else is interference too).
pub fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    let total: u64 = fields.iter().take(8).sum();
    Some(total - fields.get(3)? - fields.get(4)?)
}

/// The number of CPUs this process may use.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How [`wait_for_quiet`] ended.
#[derive(Debug, Clone, Copy)]
pub struct Quiet {
    /// Whether the machine went quiet before the limit.
    pub quiet: bool,
    /// Share of all CPUs (0 to 1) busy in the last half-second window.
    pub share: f64,
    /// How long it waited.
    pub waited: Duration,
}

/// Wait (at most `limit`) until the machine has been nearly idle (less than `noisy` of all
/// CPUs busy) for two half-second windows in a row, so a series does not start in the middle
/// of someone else's build. Call it while the bench and its daemon have nothing to do, so any
/// busy CPU is someone else's.
pub fn wait_for_quiet(limit: Duration, noisy: f64) -> Quiet {
    let window = Duration::from_millis(500);
    let started = Instant::now();
    let give_up = started + limit;
    let mut share = 0.0;
    let mut quiet_windows = 0;
    while quiet_windows < 2 && Instant::now() < give_up {
        let before = machine_busy_ticks().unwrap_or(0);
        std::thread::sleep(window);
        let busy = machine_busy_ticks().unwrap_or(0).saturating_sub(before) as f64;
        share = busy / clock_ticks_per_second() / (window.as_secs_f64() * cpus() as f64);
        quiet_windows = if share < noisy { quiet_windows + 1 } else { 0 };
    }
    Quiet {
        quiet: quiet_windows >= 2,
        share,
        waited: started.elapsed(),
    }
}
