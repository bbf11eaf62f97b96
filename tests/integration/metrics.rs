//! `/metrics` as Prometheus reads it: linted by its own `promtool` in the text format served by
//! default, negotiated to OpenMetrics for a scraper that asks, and both parsed by a real parser.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use openmetrics_parser::{OpenMetricsType, PrometheusType};

use crate::support::{Daemon, DaemonOptions, FakeLlm, echo_agent, text};

/// What Prometheus 2.x sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Where `scripts/install-test-clients.sh` unpacks promtool.
fn promtool() -> PathBuf {
    let cache = crate::support::test_clients_cache();
    let bin = cache.join("promtool/promtool");
    assert!(
        bin.is_file(),
        "promtool is not unpacked: run scripts/install-test-clients.sh (scripts/setup.sh does)"
    );
    bin
}

/// A daemon whose counters, gauges and histograms all have samples.
fn busy_daemon() -> (FakeLlm, Daemon) {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    daemon.deploy("echo", &echo_agent("echo", ""));
    daemon.deploy(
        "boss",
        &echo_agent("boss", "[delegation]\nagents = [\"echo\"]\n"),
    );
    assert_eq!(daemon.run("echo", "one").0, 200);
    assert_eq!(daemon.run("echo", "[500]").0, 502);
    // A delegation (tool calls, a message from an agent) and a refused one.
    let ask =
        |agent: &str| format!("[call ask_agent {{\"agent\": \"{agent}\", \"request\": \"hi\"}}]");
    assert_eq!(daemon.run("boss", &ask("echo")).0, 200);
    assert_eq!(daemon.run("boss", &ask("stranger")).0, 200);
    assert_eq!(daemon.run("boss", "[call make_coffee {}]").0, 200);
    (llm, daemon)
}

/// `GET /metrics` with this `Accept` header: content type and body.
fn scrape(daemon: &Daemon, accept: Option<&str>) -> (String, String) {
    use std::io::Read;
    let mut stream = std::os::unix::net::UnixStream::connect(&daemon.env.socket).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    (content_type, body.to_owned())
}

#[test]
fn metrics_served_by_default_pass_promtool_check_metrics() {
    let (_llm, daemon) = busy_daemon();
    for accept in [None, Some("*/*"), Some("text/plain")] {
        let (content_type, body) = scrape(&daemon, accept);
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        let mut lint = Command::new(promtool())
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        lint.stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = lint.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics ({accept:?}): {}{}\n{body}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

#[test]
fn prometheus_gets_openmetrics_and_both_formats_parse() {
    let (_llm, daemon) = busy_daemon();

    let (content_type, body) = scrape(&daemon, Some(PROMETHEUS_ACCEPT));
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = openmetrics_parser::openmetrics::parse_openmetrics(&body)
        .unwrap_or_else(|e| panic!("not OpenMetrics: {e:?}\n{body}"));
    for (family, kind) in [
        ("caxton_executions", OpenMetricsType::Counter),
        (
            "caxton_execution_duration_seconds",
            OpenMetricsType::Histogram,
        ),
        (
            "caxton_worker_spawn_duration_seconds",
            OpenMetricsType::Histogram,
        ),
        ("caxton_live_workers", OpenMetricsType::Gauge),
        ("caxton_agents_deployed", OpenMetricsType::Gauge),
        ("caxton_model_calls", OpenMetricsType::Counter),
        (
            "caxton_model_call_duration_seconds",
            OpenMetricsType::Histogram,
        ),
        ("caxton_model_tokens", OpenMetricsType::Counter),
        ("caxton_tool_calls", OpenMetricsType::Counter),
        (
            "caxton_tool_call_duration_seconds",
            OpenMetricsType::Histogram,
        ),
        (
            "caxton_worker_slot_wait_seconds",
            OpenMetricsType::Histogram,
        ),
        ("caxton_messages_processed", OpenMetricsType::Counter),
        (
            "caxton_message_processing_duration_seconds",
            OpenMetricsType::Histogram,
        ),
        ("caxton_delegations_refused", OpenMetricsType::Counter),
    ] {
        let f = om
            .families
            .get(family)
            .unwrap_or_else(|| panic!("{family} missing from:\n{body}"));
        assert_eq!(f.family_type, kind, "{family}");
        assert!(!f.help.is_empty(), "{family} has no help");
    }
    // echo succeeded and failed; boss succeeded (its child is echo's).
    assert_eq!(om.families["caxton_executions"].iter_samples().count(), 3);
    // Bounded labels: the configured model, a granted tool or `(not granted)`.
    for expected in [
        r#"caxton_model_calls_total{provider="fake",model="fake-model",outcome="ok"}"#,
        r#"caxton_model_calls_total{provider="fake",model="fake-model",outcome="error"} 1"#,
        r#"caxton_model_tokens_total{provider="fake",model="fake-model",direction="input"}"#,
        r#"caxton_tool_calls_total{tool="ask_agent",outcome="ok"} 1"#,
        r#"caxton_tool_calls_total{tool="ask_agent",outcome="refused"} 1"#,
        r#"caxton_tool_calls_total{tool="(not granted)",outcome="refused"} 1"#,
        r#"caxton_delegations_refused_total{reason="not_allowed"} 1"#,
    ] {
        assert!(body.contains(expected), "{expected} missing from:\n{body}");
    }

    let (_, body) = scrape(&daemon, None);
    let text = openmetrics_parser::prometheus::parse_prometheus(&body)
        .unwrap_or_else(|e| panic!("not the Prometheus text format: {e:?}\n{body}"));
    let counters: Vec<&str> = text
        .families
        .values()
        .filter(|f| f.family_type == PrometheusType::Counter)
        .map(|f| f.family_name.as_str())
        .collect();
    assert!(
        counters.contains(&"caxton_executions_total"),
        "{counters:?}"
    );
    assert!(
        counters.iter().all(|c| c.ends_with("_total")),
        "{counters:?}"
    );
    assert!(text.families.contains_key("caxton_live_workers"));
}
