//! systemd integration: READY=1 once the API answers, STOPPING=1 when draining.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::support::*;

fn receive(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification before the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn serve_notifies_ready_then_stopping() {
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
    let mut daemon = Daemon::start(opts);
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
fn the_unit_file_keeps_the_settings_the_daemon_relies_on() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/caxton.service"
    ))
    .unwrap();
    for line in [
        "Type=notify",
        "KillMode=mixed",
        "OOMPolicy=continue",
        "StateDirectory=caxton",
        "RuntimeDirectory=caxton",
        // The exit status of a refused configuration (src/main.rs): no restart loop on it.
        "RestartPreventExitStatus=78",
    ] {
        assert!(unit.lines().any(|l| l.trim() == line), "missing {line}");
    }
    assert!(
        !unit
            .lines()
            .any(|l| l.trim().starts_with("MemoryDenyWriteExecute=yes")),
        "wasmtime needs W^X toggling"
    );
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/caxton.service"
    ))
    .unwrap();
    // verify checks that ExecStart's binary exists: point it at the one under test.
    let unit = unit.replace(
        "ExecStart=/usr/bin/caxton",
        &format!("ExecStart={}", caxton_bin().display()),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("caxton.service");
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (scripts/setup.sh installs the systemd package)");
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    // systemd before 254 does not know the restart back-off keys and says so; nothing else.
    for line in err.lines() {
        assert!(
            line.contains("Unknown key 'RestartSteps'")
                || line.contains("Unknown key 'RestartMaxDelaySec'"),
            "systemd-analyze verify: {line}"
        );
    }
}
