//! A daemon under test: a scratch data directory with a config file ([`Env`]), `caxton serve`
//! started on it and waited for until its health endpoint answers ([`Daemon`]), the CLI run
//! against it, and the waits that go with processes.
//!
//! Layout of an [`Env`]: the temporary directory is the data directory; it holds `caxton.toml`,
//! the socket `caxton.sock` and the daemon's log `serve.log`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::FakeLlm;
use crate::api_client::http;
use crate::binaries::Binaries;

/// How long a daemon may take to answer its health endpoint. Generous: only a failing start
/// waits this long, and a shared machine under a parallel test run is slow.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long [`Daemon::stop`] waits after SIGTERM before it kills.
const STOP_WITHIN: Duration = Duration::from_secs(5);
/// The interval of the waits below: short beside what they wait for.
const POLL: Duration = Duration::from_millis(10);
/// The daemon's log filter in tests: the supervisor's debug lines are what a failure needs.
const TEST_LOG_FILTER: &str = "info,caxton_supervisor=debug";

/// Options for a daemon under test (the config [`Env::new`] writes).
pub struct DaemonOptions {
    /// Base URL of the `fake` OpenAI-compatible provider; empty for none.
    pub llm_url: String,
    /// The config's `[worker] path`; by default the daemon uses the `caxton-worker` beside it.
    pub worker_path: Option<PathBuf>,
    /// Appended to the config as it is.
    pub extra_config: String,
    /// More lines for the config's `[worker]` table.
    pub worker_config: String,
    /// Environment variables for `caxton serve`.
    pub env: Vec<(String, String)>,
}

impl DaemonOptions {
    /// A daemon whose `fake` provider is `llm`.
    pub fn new(llm: &FakeLlm) -> Self {
        Self {
            llm_url: llm.base_url(),
            worker_path: None,
            extra_config: String::new(),
            worker_config: String::new(),
            env: Vec::new(),
        }
    }

    /// No HTTP provider at all: the built-in offline model is the default, read from `models`.
    pub fn offline(models: &Path) -> Self {
        Self {
            llm_url: String::new(),
            worker_path: None,
            extra_config: String::new(),
            worker_config: String::new(),
            env: vec![("CAXTON_MODELS_DIR".into(), models.display().to_string())],
        }
    }

    /// Listen on a free loopback TCP port too, with `token` as its bearer token (passed in
    /// `CAXTON_TEST_TOKEN`); `api` is more lines for the `[api]` table. Returns the port.
    pub fn listen_tcp(&mut self, token: &str, api: &str) -> u16 {
        let port = crate::api_client::free_port();
        self.extra_config.push_str(&format!(
            "[api]\ntcp_listen = \"127.0.0.1:{port}\"\ntoken_env = \"CAXTON_TEST_TOKEN\"\n{api}"
        ));
        self.env.push(("CAXTON_TEST_TOKEN".into(), token.into()));
        port
    }
}

/// A data directory with a config file; a daemon may or may not be running on it.
pub struct Env {
    /// The data directory itself, removed on drop.
    pub dir: tempfile::TempDir,
    /// `caxton.toml` in it.
    pub config: PathBuf,
    /// Where the daemon listens (`caxton.sock` in it).
    pub socket: PathBuf,
    /// `CAXTON_LOG` for a daemon on it; `None` leaves this process's environment (and so the
    /// daemon's default, `info`) alone.
    log_filter: Option<&'static str>,
}

impl Env {
    /// The tests' environment: short grace periods, the `fake` provider of `opts` (20 s
    /// timeout), and the daemon logging the supervisor's debug lines.
    pub fn new(opts: &DaemonOptions) -> Self {
        let worker = opts
            .worker_path
            .as_ref()
            .map(|p| format!("path = \"{}\"\n", p.display()))
            .unwrap_or_default();
        let fake = if opts.llm_url.is_empty() {
            String::new()
        } else {
            format!(
                "[providers.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"fake-model\"\ntimeout = \"20s\"\n\n",
                opts.llm_url
            )
        };
        let mut env = Self::scratch(tempfile::tempdir().expect("tempdir"));
        env.write_config(&format!(
            "[worker]\n{worker}grace_period = \"300ms\"\n{}\n[shutdown]\ngrace_period = \"5s\"\n\n{fake}{}",
            opts.worker_config, opts.extra_config
        ));
        env.log_filter = Some(TEST_LOG_FILTER);
        env
    }

    /// A fresh directory whose name starts with `prefix`, with `config` as its config file; the
    /// daemon logs at its default level (the benches: the config is theirs, nothing added).
    pub fn with_config(prefix: &str, config: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("cannot create a temporary directory");
        let env = Self::scratch(dir);
        env.write_config(config);
        env
    }

    fn scratch(dir: tempfile::TempDir) -> Self {
        Self {
            config: dir.path().join("caxton.toml"),
            socket: dir.path().join("caxton.sock"),
            dir,
            log_filter: None,
        }
    }

    /// Replace the config file.
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).expect("cannot write the config file");
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Run the CLI against this environment.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, None)
    }

    /// Run the CLI with extra environment variables.
    pub fn cli_with_env(&self, args: &[&str], vars: &[(&str, PathBuf)]) -> Output {
        self.run_cli(args, None, vars)
    }

    /// Run the CLI with `stdin` as its standard input (none if `None`).
    pub fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.run_cli(args, stdin, &[])
    }

    fn run_cli(&self, args: &[&str], stdin: Option<&str>, vars: &[(&str, PathBuf)]) -> Output {
        let mut cmd = Command::new(&Binaries::get().caxton);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args);
        cmd.env_remove("CAXTON_SOCKET")
            .env_remove("CAXTON_CONFIG")
            .env_remove("CAXTON_DATA_DIR")
            .env_remove("NOTIFY_SOCKET");
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn caxton");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("caxton output")
    }

    /// Write an agent file into the data directory (not the agents directory: deploying it is
    /// the caller's step).
    pub fn agent_file(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.src.toml"));
        std::fs::write(&path, body).expect("write agent");
        path
    }

    /// Deploy an agent through the CLI and assert it worked.
    pub fn deploy(&self, name: &str, body: &str) {
        let file = self.agent_file(name, body);
        let out = self.cli(&["agent", "deploy", file.to_str().expect("utf8 path")]);
        assert!(out.status.success(), "deploy {name}: {}", text(&out.stderr));
    }
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A child process killed (and reaped) on drop, so a failing test leaves nothing running.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `caxton serve`. Dropping it kills the daemon (before its directory goes, as the
/// fields drop in order); [`Daemon::stop`] ends it as an operator would.
pub struct Daemon {
    /// The `caxton serve` process.
    pub child: KillOnDrop,
    /// Its data directory and config.
    pub env: Env,
    /// The environment variables it was started with, for [`Daemon::restart`].
    vars: Vec<(String, String)>,
    started_at: Instant,
}

impl Daemon {
    /// A daemon on a fresh [`Env::new`] of `opts`.
    pub fn start(opts: DaemonOptions) -> Self {
        let env = Env::new(&opts);
        Self::start_in(env, &opts.env)
    }

    /// A bench's daemon: the worker binary of `bins`, `llm` as its one provider, at most
    /// `max_concurrent` requests at once, its directory named after `prefix`; the daemon logs at
    /// its default level.
    pub fn for_bench(bins: &Binaries, llm: &FakeLlm, prefix: &str, max_concurrent: usize) -> Self {
        Self::for_bench_with_env(bins, llm, prefix, max_concurrent, &[])
    }

    /// [`Daemon::for_bench`] with environment variables for `caxton serve` (a bench comparing
    /// the same daemon with and without, say, `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn for_bench_with_env(
        bins: &Binaries,
        llm: &FakeLlm,
        prefix: &str,
        max_concurrent: usize,
        extra_env: &[(String, String)],
    ) -> Self {
        Self::for_bench_configured(
            bins,
            llm,
            prefix,
            &format!("max_concurrent = {max_concurrent}\n"),
            "",
            extra_env,
        )
    }

    /// A bench's daemon as [`Daemon::for_bench`] makes it, with `worker_lines` in its `[worker]`
    /// table (`max_concurrent = 8`, `sandbox = "strict"`), `extra` tables after the provider's
    /// (`[api]`), and `extra_env` for `caxton serve`.
    pub fn for_bench_configured(
        bins: &Binaries,
        llm: &FakeLlm,
        prefix: &str,
        worker_lines: &str,
        extra: &str,
        extra_env: &[(String, String)],
    ) -> Self {
        let worker = Value::from(bins.worker.to_string_lossy().into_owned());
        let config = format!(
            "[worker]\npath = {worker}\n{worker_lines}\n\
             [providers.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"m\"\n\n{extra}",
            llm.base_url()
        );
        Self::start_in(Env::with_config(prefix, &config), extra_env)
    }

    /// `caxton serve` on `env` (this process's environment without `NOTIFY_SOCKET`, plus
    /// `extra_env`), its stderr in `serve.log`; returns once `GET /api/v1/health` answers 200,
    /// and panics with the log if it exits or does not answer first.
    pub fn start_in(env: Env, extra_env: &[(String, String)]) -> Self {
        Self::start_wrapped(env, extra_env, &[])
    }

    /// [`Daemon::start_in`] with `caxton serve` run by `wrapper` (a command and its arguments
    /// that ends by exec'ing the arguments it is given, as `unshare` does, so the PID is the
    /// daemon's); nothing wraps it when `wrapper` is empty.
    pub fn start_wrapped(env: Env, extra_env: &[(String, String)], wrapper: &[String]) -> Self {
        let log = std::fs::File::create(Self::log_path(&env))
            .expect("cannot create the daemon's log file");
        let mut cmd = match wrapper.split_first() {
            None => Command::new(&Binaries::get().caxton),
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&Binaries::get().caxton);
                cmd
            }
        };
        cmd.arg("--config")
            .arg(&env.config)
            .arg("--data-dir")
            .arg(env.data_dir())
            .arg("--socket")
            .arg(&env.socket)
            .arg("serve");
        cmd.env_remove("NOTIFY_SOCKET");
        if let Some(filter) = env.log_filter {
            cmd.env("CAXTON_LOG", filter);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let started_at = Instant::now();
        let child = KillOnDrop(cmd.spawn().expect("cannot start `caxton serve`"));
        let mut daemon = Self {
            child,
            env,
            vars: extra_env.to_vec(),
            started_at,
        };
        daemon.wait_ready();
        daemon
    }

    /// The file the daemon started in `env` writes its stderr to (`serve.log`).
    pub fn log_path(env: &Env) -> PathBuf {
        env.data_dir().join("serve.log")
    }

    /// Wait for the explicit sign of readiness: the health endpoint answering 200.
    fn wait_ready(&mut self) {
        let give_up = Instant::now() + READY_WITHIN;
        while Instant::now() < give_up {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "`caxton serve` exited with {status} before it was ready; its log:\n{}",
                    self.log()
                );
            }
            if let Ok((200, _)) = http(&self.env.socket, "GET", "/api/v1/health", None) {
                return;
            }
            std::thread::sleep(POLL);
        }
        panic!(
            "`caxton serve` not ready after {} s; its log:\n{}",
            READY_WITHIN.as_secs(),
            self.log()
        );
    }

    /// Stop it as an operator would: SIGTERM, then wait for it to drain and exit; killed if it
    /// takes longer than 5 s. Its exit status, if it exited by itself.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        // SAFETY: kill(2) on our own unreaped child; the PID cannot have been recycled.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let status = wait_child(&mut self.child, STOP_WITHIN);
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        status
    }

    /// [`Daemon::stop`] this daemon and start another on the same directory and config (same
    /// agents, tools, database and caches), with the same environment.
    pub fn restart(mut self) -> Self {
        self.stop();
        let Self { env, vars, .. } = self;
        Self::start_in(env, &vars)
    }

    /// Everything the daemon has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(Self::log_path(&self.env)).unwrap_or_default()
    }

    /// The daemon's PID.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// When the daemon was spawned.
    pub fn started_at(&self) -> Instant {
        self.started_at
    }

    /// Run the CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.env.cli(args)
    }

    /// Deploy an agent through the CLI and assert it worked.
    pub fn deploy(&self, name: &str, body: &str) {
        self.env.deploy(name, body);
    }

    /// `POST /api/v1/agents/NAME/run` with this request text.
    pub fn run(&self, agent: &str, request: &str) -> (u16, Value) {
        http(
            &self.env.socket,
            "POST",
            &format!("/api/v1/agents/{agent}/run"),
            Some(&serde_json::json!({"request": request}).to_string()),
        )
        .expect("run request")
    }

    /// [`Daemon::run`] on a thread of its own, for a request that will hang or be killed.
    pub fn run_in_background(
        &self,
        agent: &str,
        request: &str,
    ) -> std::thread::JoinHandle<std::io::Result<(u16, Value)>> {
        let socket = self.env.socket.clone();
        let path = format!("/api/v1/agents/{agent}/run");
        let body = serde_json::json!({"request": request}).to_string();
        std::thread::spawn(move || http(&socket, "POST", &path, Some(&body)))
    }

    /// [`Daemon::run`], which must answer 200; the body.
    pub fn run_ok(&self, agent: &str, request: &str) -> Value {
        let (code, body) = self.run(agent, request);
        assert_eq!(code, 200, "{body}");
        body
    }

    /// `GET /api/v1/conversations/ID`, which must answer 200; the body.
    pub fn conversation(&self, id: &str) -> Value {
        let (code, body) = http(
            &self.env.socket,
            "GET",
            &format!("/api/v1/conversations/{id}"),
            None,
        )
        .expect("conversation request");
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Poll the live table until a worker for `agent` waits on the model; returns its PID.
    pub fn wait_for_worker(&self, agent: &str) -> u32 {
        let mut found = None;
        wait_until(Duration::from_secs(10), || {
            if let Ok((200, body)) = http(&self.env.socket, "GET", "/api/v1/workers", None) {
                found = body["workers"]
                    .as_array()
                    .and_then(|w| {
                        w.iter()
                            .find(|w| w["agent"] == agent && w["state"] == "awaiting_model")
                    })
                    .and_then(|w| w["pid"].as_u64());
            }
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no worker for {agent} appeared")) as u32
    }

    /// Send a signal to the daemon and wait for it to exit.
    pub fn signal_and_wait(&mut self, signal: i32) -> ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), signal) };
        wait_child(&mut self.child, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("daemon did not exit: {}", self.log()))
    }
}

/// Wait up to `limit` for `child` to exit; its status, or `None` if it is still running.
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(limit, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

/// Whether a process exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Wait until a process is gone.
pub fn wait_gone(pid: u32, limit: Duration) -> bool {
    wait_until(limit, || !process_alive(pid))
}

/// Poll `done` until it holds, up to `limit`; whether it did.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(POLL);
    }
    false
}
