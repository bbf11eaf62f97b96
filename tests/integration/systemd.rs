//! systemd integration: READY=1 once the API answers, STOPPING=1 when draining.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::support::*;

fn receive(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification before the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The socket systemd would listen on for a service's notifications, and the daemon started
/// with it as `NOTIFY_SOCKET` and `extra_env`; its first notification is READY=1.
struct Notified {
    _llm: FakeLlm,
    _scratch: tempfile::TempDir,
    notify: UnixDatagram,
    daemon: Daemon,
}

fn notified(extra_env: &[(&str, &str)]) -> Notified {
    let llm = FakeLlm::start();
    let scratch = tempfile::tempdir().unwrap();
    let notify_path = scratch.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut opts = DaemonOptions::new(&llm);
    opts.env
        .push(("NOTIFY_SOCKET".into(), notify_path.display().to_string()));
    for (name, value) in extra_env {
        opts.env.push(((*name).into(), (*value).into()));
    }
    let daemon = Daemon::start(opts);
    Notified {
        _llm: llm,
        _scratch: scratch,
        notify,
        daemon,
    }
}

#[test]
fn serve_notifies_ready_then_stopping() {
    // Bound whole: the socket's directory and the fake model live as long as the test.
    let Notified {
        notify,
        mut daemon,
        _llm,
        _scratch,
    } = notified(&[]);
    let first = receive(&notify);
    assert!(first.lines().any(|l| l == "READY=1"), "{first}");
    // READY=1 is only sent once the API answers.
    assert!(daemon.cli(&["health"]).status.success());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.pid(), libc::SIGTERM) };
    let second = receive(&notify);
    assert!(second.lines().any(|l| l == "STOPPING=1"), "{second}");
    let status = wait_child(&mut daemon.child, Duration::from_secs(20)).unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_stopped_daemon_stops_its_watchdog_pings_so_systemd_would_restart_it() {
    // As systemd passes WatchdogSec=400ms: a ping every 200 ms.
    // Bound whole: the socket's directory and the fake model live as long as the test.
    let Notified {
        notify,
        mut daemon,
        _llm,
        _scratch,
    } = notified(&[("WATCHDOG_USEC", "400000")]);
    assert!(receive(&notify).lines().any(|l| l == "READY=1"));
    let pings_within = |window: Duration| {
        let end = Instant::now() + window;
        let mut pings = 0;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            notify
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut buf = [0u8; 4096];
            match notify.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    pings += text.lines().filter(|l| *l == "WATCHDOG=1").count();
                }
                Err(_) => break,
            }
        }
        pings
    };
    let running = pings_within(Duration::from_millis(1100));
    assert!(running >= 3, "{running} pings in 1.1 s at a 200 ms beat");

    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.pid(), libc::SIGSTOP) };
    // What was sent before the stop took effect, then silence: more than two watchdog periods,
    // after which systemd would kill and restart the service.
    let _ = pings_within(Duration::from_millis(100));
    let stopped = pings_within(Duration::from_millis(1000));
    assert_eq!(stopped, 0, "a stopped daemon pinged the watchdog");

    // SAFETY: as above.
    unsafe { libc::kill(daemon.pid(), libc::SIGCONT) };
    let resumed = pings_within(Duration::from_millis(1100));
    assert!(resumed >= 2, "{resumed} pings in 1.1 s after SIGCONT");
    assert!(daemon.cli(&["health"]).status.success());
    assert_eq!(daemon.stop().and_then(|s| s.code()), Some(0));
}

#[test]
fn the_unit_file_keeps_the_settings_the_daemon_relies_on() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    for line in [
        "Type=notify",
        "KillMode=mixed",
        "OOMPolicy=continue",
        "StateDirectory=caxton",
        "RuntimeDirectory=caxton",
        // The exit status of a refused configuration (src/main.rs): no restart loop on it.
        "RestartPreventExitStatus=78",
        // Each worker's cgroup v2 (tests/integration/cgroups.rs): the subtree is delegated and
        // writable.
        "Delegate=memory pids cpu",
        "ProtectControlGroups=no",
    ] {
        assert!(unit.lines().any(|l| l.trim() == line), "missing {line}");
    }
    assert!(
        !unit
            .lines()
            .any(|l| l.trim().starts_with("MemoryDenyWriteExecute=yes")),
        "wasmtime needs W^X toggling"
    );
    // The socket's access check reads a client's /proc/PID/status (its supplementary groups),
    // which hidepid= would hide.
    assert!(
        !unit.lines().any(|l| l.trim().starts_with("ProtectProc=")),
        "ProtectProc= hides clients' /proc/PID from the socket's group check"
    );
}

/// The shipped unit file.
const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/caxton.service");

/// `systemd-analyze` with `args`, or a failure that says where it comes from.
fn systemd_analyze(args: &[&str]) -> std::process::Output {
    match std::process::Command::new("systemd-analyze")
        .args(args)
        .env("LC_ALL", "C")
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "systemd-analyze is not installed: scripts/setup.sh installs it (Debian package \
             `systemd`)"
        ),
        Err(e) => panic!("systemd-analyze: {e}"),
    }
}

/// The major version of the installed systemd (`systemd 252 (252.38-1~deb12u1)`).
fn systemd_version() -> u32 {
    let out = systemd_analyze(&["--version"]);
    let text = text(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no version in `systemd-analyze --version`: {text}"))
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    // verify checks that ExecStart's binary exists: point it at the one under test, so the
    // result does not depend on what is installed in /usr/bin.
    let unit = unit.replace(
        "ExecStart=/usr/bin/caxton",
        &format!("ExecStart={}", caxton_bin().display()),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("caxton.service");
    std::fs::write(&path, unit).unwrap();
    let out = systemd_analyze(&["verify", "--man=no", path.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    // systemd before 254 does not know the restart back-off keys and says so; from 254 on,
    // and otherwise always, verify must print nothing at all.
    let tolerated: &[&str] = if systemd_version() < 254 {
        &[
            "Unknown key 'RestartSteps'",
            "Unknown key 'RestartMaxDelaySec'",
        ]
    } else {
        &[]
    };
    for line in err.lines().chain(text(&out.stdout).lines()) {
        assert!(
            tolerated.iter().any(|t| line.contains(t)),
            "systemd-analyze verify: {line}"
        );
    }
}

#[test]
fn the_unit_file_scores_at_most_2_0_in_systemd_analyze_security() {
    // --threshold is in tenths of the printed score: exit non-zero above 2.0.
    let out = systemd_analyze(&[
        "security",
        "--offline=yes",
        "--threshold=20",
        "--no-pager",
        UNIT,
    ]);
    let report = text(&out.stdout);
    let failing: Vec<&str> = report
        .lines()
        // LC_ALL=C: a failing setting is marked `-`, a passing one `+`.
        .filter(|l| l.starts_with("- "))
        .collect();
    let score: f64 = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for caxton.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no overall exposure level in the report:\n{report}{}",
                text(&out.stderr)
            )
        });
    assert!(
        score <= 2.0 && out.status.success(),
        "exposure {score} (at most 2.0 allowed); failing settings:\n{}",
        failing.join("\n")
    );
}
