//! Capability routing: how long the supervisor takes to choose the agent for a request sent to a
//! capability, with 1,000 agents deployed declaring 100 capabilities between them.
//!
//! What is timed is the daemon's own path, `Supervisor::route` without the live-table read: the
//! registry's current agents (a read lock and 1,000 `Arc` clones, as the daemon takes them) and
//! `Router::route` with the `best` strategy (filter by capability, order by requests in flight
//! and last use). The comparison, in the same run, is looking an agent up by name in the same
//! registry (what `caxton agent run NAME` costs). Goal: p99 under 100 µs.
//!
//! Run: `cargo bench --bench routing`.

use std::time::Instant;

use caxton_api_contract::routing::Strategy;
use caxton_supervisor::agent::AgentRegistry;
use caxton_supervisor::router::Router;
use caxton_test_kit::stats::{Samples, ms};
use caxton_test_kit::table::{Table, verdict};

const AGENTS: usize = 1_000;
const CAPABILITIES: usize = 100;
const ROUTES: usize = 20_000;
const WARMUP: usize = 1_000;
const LIMIT_US: f64 = 100.0;

fn main() {
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    // Each agent declares three capabilities, spread so every capability has about 30 agents.
    for i in 0..AGENTS {
        let capabilities: Vec<String> = (0..3)
            .map(|k| format!("\"capability-{}\"", (i * 7 + k * 31) % CAPABILITIES))
            .collect();
        let source = format!(
            "name = \"agent-{i:04}\"\nversion = \"1\"\nuser_prompt_template = \"{{{{ request }}}}\"\ncapabilities = [{}]\n",
            capabilities.join(", ")
        );
        std::fs::write(dir.path().join(format!("agent-{i:04}.toml")), source)
            .expect("cannot write an agent file");
    }
    let registry = AgentRegistry::new(dir.path());
    let report = registry.reload().expect("cannot load the agents");
    assert_eq!(report.loaded, AGENTS, "{:?}", report.errors);
    let router = Router::default();
    let idle = |_: &str| 0;

    println!(
        "[1] {ROUTES} routing decisions over {AGENTS} agents and {CAPABILITIES} capabilities ..."
    );
    let mut routed = Vec::with_capacity(ROUTES);
    let mut by_name = Vec::with_capacity(ROUTES);
    for i in 0..WARMUP + ROUTES {
        let capability = format!("capability-{}", i % CAPABILITIES);
        let name = format!("agent-{:04}", i % AGENTS);
        let t = Instant::now();
        let agents = registry.list();
        let chosen = router
            .route(&agents, &capability, Strategy::Best, idle)
            .expect("every capability has agents");
        let route_ms = ms(t.elapsed());
        std::hint::black_box(chosen);
        let t = Instant::now();
        std::hint::black_box(registry.get(&name).expect("the agent is deployed"));
        let name_ms = ms(t.elapsed());
        if i >= WARMUP {
            routed.push(route_ms * 1000.0);
            by_name.push(name_ms * 1000.0);
        }
    }
    let routed = Samples::new(routed);
    let by_name = Samples::new(by_name);
    let mut table = Table::default();
    table.row(
        "routing decision p50 (best, 1000 agents, 100 capabilities)",
        format!("{:.1} µs", routed.pct(50.0)),
        format!("lookup by name p50 {:.2} µs", by_name.pct(50.0)),
        "info",
    );
    table.row(
        "routing decision p99",
        format!("{:.1} µs", routed.pct(99.0)),
        format!(
            "< {LIMIT_US:.0} µs (lookup by name p99 {:.2} µs)",
            by_name.pct(99.0)
        ),
        verdict(routed.pct(99.0) < LIMIT_US),
    );
    print!("{}", table.render("Caxton routing benchmark"));
}
