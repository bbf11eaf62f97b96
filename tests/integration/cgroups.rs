//! Each worker's cgroup: in a delegated cgroup v2 subtree where the daemon has one (bounded,
//! ended by `cgroup.kill`, OOM kills named), the cgroup v1 pids fallback or none otherwise,
//! and the `caxton status` line that says which and why.
//!
//! The v2 tests make a cgroup of their own under the v2 hierarchy and start the daemon in it,
//! so they need to be root on a host with cgroup v2 mounted (the unified hierarchy, or its
//! hybrid mount at `/sys/fs/cgroup/unified`); elsewhere they print `SKIPPED` and why. What the
//! subtree can bound depends on the controllers the host offers it: the tests check each limit
//! where its controller is there.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::*;

/// The cgroup v2 hierarchy's mount point, from this process's mountinfo.
fn v2_mount() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

/// A cgroup made for one test right under the v2 hierarchy's root, removed with everything the
/// daemon made in it when the test ends.
struct TestCgroup {
    dir: PathBuf,
    /// As `/proc/PID/cgroup` shows it.
    relative: String,
}

impl TestCgroup {
    fn make(name: &str) -> Option<Self> {
        let Some(mount) = v2_mount() else {
            eprintln!("SKIPPED: no cgroup v2 hierarchy is mounted");
            return None;
        };
        let relative = format!("/caxton-test-{}-{name}", std::process::id());
        let dir = mount.join(&relative[1..]);
        if let Err(e) = std::fs::create_dir(&dir) {
            eprintln!("SKIPPED: cannot make {}: {e}", dir.display());
            return None;
        }
        Some(Self { dir, relative })
    }

    /// A child cgroup, as a systemd unit's would be.
    fn child(&self, name: &str) -> (PathBuf, String) {
        let dir = self.dir.join(name);
        std::fs::create_dir(&dir).unwrap();
        (dir, format!("{}/{name}", self.relative))
    }

    /// The command prefix that starts the daemon in `dir`.
    fn wrapper(dir: &Path) -> Vec<String> {
        vec![
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
                dir.display()
            ),
        ]
    }

    /// The controllers the host offers this cgroup's children.
    fn offers(&self, controller: &str) -> bool {
        std::fs::read_to_string(self.dir.join("cgroup.controllers"))
            .unwrap_or_default()
            .split_whitespace()
            .any(|c| c == controller)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Deepest first; a member still exiting holds its directory for a moment.
        fn remove(dir: &Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        remove(&entry.path());
                    }
                }
            }
            for _ in 0..100 {
                if std::fs::remove_dir(dir).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        remove(&self.dir);
    }
}

fn start_in(dir: &Path, opts: DaemonOptions) -> Daemon {
    let env = Env::new(&opts);
    Daemon::start_wrapped(env, &opts.env, &TestCgroup::wrapper(dir))
}

fn status_cgroups(daemon: &Daemon) -> String {
    let (code, status) = http(&daemon.env.socket, "GET", "/api/v1/status", None).unwrap();
    assert_eq!(code, 200, "{status}");
    status["cgroups"].as_str().unwrap_or_default().to_owned()
}

/// The cgroup v2 path of a process.
fn v2_cgroup_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        .unwrap_or_default()
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let give_up = Instant::now() + limit;
    while Instant::now() < give_up {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

fn fixture_options(llm: &FakeLlm) -> DaemonOptions {
    let scratch = tempfile::tempdir().unwrap().keep();
    let mut opts = DaemonOptions::new(llm);
    opts.worker_path = Some(fixture_worker(&scratch, ""));
    opts
}

#[test]
fn without_a_delegated_v2_subtree_the_daemon_says_what_bounds_workers_instead() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    let cgroups = status_cgroups(&daemon);
    let own = v2_cgroup_of(std::process::id());
    if own == "/" {
        // The root cgroup is nobody's delegation: the daemon falls back and says why.
        assert!(
            cgroups.contains("no cgroup v2: the daemon runs in the root cgroup"),
            "{cgroups}"
        );
        assert!(
            cgroups.starts_with("v1 pids /") || cgroups.starts_with("none ("),
            "{cgroups}"
        );
        assert!(
            daemon.log().contains("workers get no cgroup"),
            "no fallback line in the log: {}",
            daemon.log()
        );
        // Workers run all the same.
        daemon.deploy("victim", &echo_agent("victim", ""));
        let (code, body) = daemon.run("victim", "hello");
        assert_eq!(code, 200, "{body}");
    } else {
        eprintln!(
            "SKIPPED the fallback check: this test runs in {own}, not the root cgroup ({cgroups})"
        );
    }
}

#[test]
fn a_systemd_units_cgroup_is_used_only_once_the_unit_delegates_it() {
    let Some(test) = TestCgroup::make("unit") else {
        return;
    };
    let (unit, unit_relative) = test.child("caxton.service");
    let llm = FakeLlm::start();

    let mut daemon = start_in(&unit, DaemonOptions::new(&llm));
    let cgroups = status_cgroups(&daemon);
    assert!(
        cgroups.contains(&format!(
            "no cgroup v2: {unit_relative} is a systemd unit's cgroup that is not delegated"
        )) && cgroups.contains("Delegate=yes"),
        "{cgroups}"
    );
    // Nothing was made in a cgroup that is not the daemon's to manage.
    assert!(!unit.join("supervisor").exists());
    assert!(daemon.stop().is_some_and(|s| s.success()));

    // What systemd marks a delegated cgroup with.
    let path = std::ffi::CString::new(unit.to_str().unwrap()).unwrap();
    // SAFETY: NUL-terminated path and name, a one-byte value and its length.
    let rc = unsafe {
        libc::setxattr(
            path.as_ptr(),
            c"trusted.delegate".as_ptr(),
            b"1".as_ptr().cast(),
            1,
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr: {}", std::io::Error::last_os_error());
    let daemon = start_in(&unit, DaemonOptions::new(&llm));
    let cgroups = status_cgroups(&daemon);
    assert!(
        cgroups.starts_with(&format!("v2 {unit_relative}/workers (")),
        "{cgroups}"
    );
    // The daemon left the delegated cgroup for a leaf of its own (cgroup v2 lets only leaves
    // hold processes once children have controllers).
    assert_eq!(
        v2_cgroup_of(daemon.pid() as u32),
        format!("{unit_relative}/supervisor")
    );
}

#[test]
fn in_a_delegated_v2_subtree_each_worker_has_a_cgroup_that_ends_all_it_started() {
    let Some(test) = TestCgroup::make("workers") else {
        return;
    };
    let llm = FakeLlm::start();
    let mut opts = fixture_options(&llm);
    opts.worker_config = "processes = 8\ncpus = 0.5\n".into();
    let daemon = start_in(&test.dir, opts);
    let cgroups = status_cgroups(&daemon);
    let workers = format!("{}/workers", test.relative);
    assert!(cgroups.starts_with(&format!("v2 {workers} (")), "{cgroups}");
    assert!(cgroups.contains("cgroup.kill"), "{cgroups}");
    for (controller, file) in [("memory", "memory.max"), ("cpu", "cpu.max")] {
        assert_eq!(
            cgroups.contains(file),
            test.offers(controller),
            "{controller} is {}offered, yet the status says {cgroups}",
            if test.offers(controller) { "" } else { "not " }
        );
    }
    // Processes: the subtree's pids controller, else the cgroup v1 pids hierarchy beside it (a
    // hybrid host binds the controller to v1), else nothing.
    let v1_pids = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" - cgroup ") && l.split(',').any(|o| o.trim() == "pids"));
    let pids_bounded = test.offers("pids") || v1_pids;
    let pids_line = if test.offers("pids") {
        "pids.max, "
    } else if v1_pids {
        "pids.max from the cgroup v1 pids hierarchy"
    } else {
        "no pids bound"
    };
    assert!(cgroups.contains(pids_line), "{cgroups}");
    daemon.deploy(
        "victim",
        &echo_agent(
            "victim",
            "[limits]\ntimeout = \"2s\"\nmemory = \"128MiB\"\n",
        ),
    );

    // A worker that hangs: while it runs it is in its own cgroup, with its limits.
    let hanging = daemon.run_in_background("victim", "hang");
    let mut pid = 0;
    assert!(
        wait_until(Duration::from_secs(5), || {
            let (_, body) = http(&daemon.env.socket, "GET", "/api/v1/workers", None).unwrap();
            pid = body["workers"][0]["pid"].as_u64().unwrap_or(0) as u32;
            pid != 0 && v2_cgroup_of(pid) == format!("{workers}/worker-{pid}")
        }),
        "worker {pid} is in {:?}, not a cgroup of its own under {workers}",
        v2_cgroup_of(pid)
    );
    let own = test.dir.join(format!("workers/worker-{pid}"));
    if test.offers("memory") {
        let max = std::fs::read_to_string(own.join("memory.max")).unwrap();
        assert_eq!(max.trim(), (128u64 << 20).to_string());
    }
    if test.offers("pids") {
        assert_eq!(
            std::fs::read_to_string(own.join("pids.max"))
                .unwrap()
                .trim(),
            "8"
        );
    }
    if test.offers("cpu") {
        assert_eq!(
            std::fs::read_to_string(own.join("cpu.max")).unwrap().trim(),
            "50000 100000"
        );
    }
    let (code, body) = hanging.join().unwrap().unwrap();
    assert_eq!(code, 504, "{body}");
    assert!(
        wait_until(Duration::from_secs(5), || !own.exists()),
        "{} outlived its worker",
        own.display()
    );

    // Processes that left the worker's group and session are in its cgroup all the same, and
    // end with it.
    let (code, body) = daemon.run("victim", "escape");
    assert_eq!(code, 200, "{body}");
    let escaped: u32 = body["answer"].as_str().unwrap().parse().unwrap();
    let (code, body) = daemon.run("victim", "spawn-many");
    assert_eq!(code, 200, "{body}");
    let spawned: Vec<u32> = body["answer"]
        .as_str()
        .unwrap()
        .split(',')
        .filter_map(|p| p.parse().ok())
        .collect();
    if pids_bounded {
        // The worker itself is one of the 8.
        assert!(
            spawned.len() <= 7,
            "{} children started: {body}",
            spawned.len()
        );
    }
    for pid in spawned.iter().chain([&escaped]) {
        assert!(
            wait_until(Duration::from_secs(5), || {
                !Path::new(&format!("/proc/{pid}")).exists()
            }),
            "process {pid} outlived its request"
        );
    }
    let worker_cgroups = || -> Vec<PathBuf> {
        std::fs::read_dir(test.dir.join("workers"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(5), || worker_cgroups().is_empty()),
        "worker cgroups left behind: {:?}",
        worker_cgroups()
    );
}

#[test]
fn a_worker_over_its_cgroup_memory_is_ended_by_the_oom_killer_and_says_so() {
    let Some(test) = TestCgroup::make("oom") else {
        return;
    };
    if !test.offers("memory") {
        eprintln!(
            "SKIPPED: the host offers no memory controller to cgroup v2 cgroups here ({}), so \
             no OOM kill can be caused",
            test.dir.display()
        );
        return;
    }
    let llm = FakeLlm::start();
    let daemon = start_in(&test.dir, fixture_options(&llm));
    daemon.deploy(
        "hungry",
        &echo_agent(
            "hungry",
            "[limits]\ntimeout = \"30s\"\nmemory = \"64MiB\"\n",
        ),
    );
    // Four processes of 40 MiB: each within its own address space, together over memory.max.
    let (code, body) = daemon.run("hungry", "memory-bomb-split");
    assert_eq!(code, 500, "{body}");
    assert_eq!(body["error"]["kind"], "memory_limit", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("reached its limit of 64 MiB")
            && message.contains("SIGKILL from the kernel's OOM killer in its cgroup"),
        "{message}"
    );
}
