//! Configurations that cannot work are refused when the daemon starts: `file:line` and the
//! reason on stderr, the configuration exit status (78), and no socket left behind.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// The exit status of `caxton` for a configuration it refuses (sysexits' EX_CONFIG).
const EXIT_CONFIG: i32 = 78;

/// A data directory and a config file with `body`.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("caxton.toml");
        std::fs::write(&config, body).unwrap();
        Self { dir, config }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("caxton.sock")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(caxton_bin());
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(args)
            .env_remove("CAXTON_SOCKET")
            .env_remove("CAXTON_CONFIG")
            .env_remove("CAXTON_DATA_DIR")
            .env_remove("CAXTON_WORKER_PATH")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Run `caxton serve`: a refused configuration makes it exit at once; a daemon that
    /// starts anyway is killed after the limit (and fails the caller's assertions).
    fn serve(&self, mut cmd: Command) -> Refusal {
        let mut child = KillOnDrop(cmd.spawn().expect("spawn caxton serve"));
        let status = wait_child(&mut child, Duration::from_secs(20));
        if status.is_none() {
            let _ = child.kill();
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            pipe.read_to_string(&mut stderr).unwrap();
        }
        Refusal {
            code: status.and_then(|s| s.code()),
            stderr,
        }
    }

    /// `caxton serve` must refuse: exit 78, `caxton.toml:LINE:` and every one of `reason` on
    /// stderr, and no socket file.
    fn assert_refused(&self, out: &Refusal, line: usize, reason: &[&str]) {
        let err = &out.stderr;
        assert_eq!(out.code, Some(EXIT_CONFIG), "{err}");
        let at = format!("{}:{line}:", self.config.display());
        assert!(err.contains(&at), "expected {at} in: {err}");
        for r in reason {
            assert!(err.contains(r), "expected {r:?} in: {err}");
        }
        assert!(
            !self.socket().exists(),
            "a refused start left {} behind",
            self.socket().display()
        );
    }
}

/// How `caxton serve` ended.
struct Refusal {
    code: Option<i32>,
    stderr: String,
}

fn refused_at_start(body: &str, line: usize, reason: &[&str]) {
    let setup = Setup::new(body);
    let out = setup.serve(setup.command(&["serve"]));
    setup.assert_refused(&out, line, reason);
}

#[test]
fn a_zero_worker_timeout_is_refused_with_its_line_and_range() {
    refused_at_start(
        "[worker]\ngrace_period = \"1s\"\ntimeout = \"0s\"\n",
        3,
        &["worker.timeout = \"0s\"", "between 100ms and 24h"],
    );
}

#[test]
fn an_unparsable_worker_timeout_names_its_line() {
    refused_at_start(
        "# comment\n[worker]\ntimeout = \"soon\"\n",
        3,
        &["worker.timeout = \"soon\""],
    );
}

#[test]
fn a_worker_memory_limit_no_worker_can_run_in_is_refused_naming_the_minimum() {
    refused_at_start(
        "[worker]\nmemory = \"1KiB\"\n",
        2,
        &["worker.memory = \"1KiB\"", "16MiB"],
    );
}

#[test]
fn an_extreme_duration_or_size_anywhere_in_the_config_is_refused() {
    refused_at_start(
        "[shutdown]\ngrace_period = \"200years\"\n",
        2,
        &["shutdown.grace_period"],
    );
    refused_at_start(
        "[providers.p]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\ntimeout = \"0s\"\n",
        4,
        &["providers.p.timeout"],
    );
    refused_at_start(
        "[api]\nmax_body = \"1KiB\"\n",
        2,
        &["api.max_body", "between"],
    );
    refused_at_start(
        "[worker]\ncpu_seconds = 0\n",
        2,
        &["worker.cpu_seconds = 0"],
    );
}

#[test]
fn open_files_above_the_daemons_hard_limit_is_refused() {
    let setup = Setup::new("[worker]\nopen_files = 512\n");
    let mut cmd = setup.command(&["serve"]);
    // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = setup.serve(cmd);
    setup.assert_refused(
        &out,
        2,
        &["worker.open_files = 512", "RLIMIT_NOFILE of 256"],
    );
}

#[test]
fn a_worker_path_that_is_not_an_executable_file_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let plain = scratch.path().join("not-executable");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (path, reason) in [
        (plain.as_path(), "not executable"),
        (scratch.path(), "not a regular file"),
        (Path::new("/nonexistent/caxton-worker"), "not found"),
    ] {
        refused_at_start(
            &format!("[worker]\npath = \"{}\"\n", path.display()),
            2,
            &["worker.path", reason],
        );
    }
}

#[test]
fn a_short_tcp_token_is_refused_before_any_socket_is_bound() {
    let setup = Setup::new("");
    let token = setup.dir.path().join("token");
    std::fs::write(&token, "short\n").unwrap();
    std::fs::write(
        &setup.config,
        format!(
            "[api]\ntcp_listen = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
            token.display()
        ),
    )
    .unwrap();
    let out = setup.serve(setup.command(&["serve"]));
    setup.assert_refused(&out, 3, &["5 characters", "at least 16"]);
}

#[test]
fn other_commands_exit_with_the_configuration_status_too() {
    let setup = Setup::new("[worker]\ntimeout = \"soon\"\n");
    let out = setup.command(&["status"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(EXIT_CONFIG),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains(&format!("{}:2:", setup.config.display())),
        "{}",
        text(&out.stderr)
    );
    // Anything else that fails is not a configuration error.
    let setup = Setup::new("");
    let out = setup
        .command(&["agent", "show", "nobody"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

#[test]
fn an_extreme_agent_timeout_is_refused_by_validate_and_deploy_with_its_line() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    let file = daemon.env.agent_file(
        "forever",
        &echo_agent("forever", "[limits]\ntimeout = 18446744073709551615\n"),
    );
    for command in ["validate", "deploy"] {
        let out = daemon.cli(&["agent", command, file.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {err}");
        assert!(err.contains("forever.src.toml:5:"), "{command}: {err}");
        assert!(
            err.contains("limits.timeout = 18446744073709551615") && err.contains("24h"),
            "{command}: {err}"
        );
    }
    // The daemon is still serving and nothing was deployed.
    let out = daemon.cli(&["agent", "show", "forever"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
}
