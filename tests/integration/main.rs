//! End-to-end tests: real `caxton` and `caxton-worker` processes, real Unix sockets, a real
//! SQLite file, and a loopback HTTP server that speaks the OpenAI chat-completions protocol.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot set up should fail loudly"
)]

mod a2a;
mod a2a_remote;
mod a2a_sdk;
mod agent_memory;
mod api;
mod cgroups;
mod cli;
mod cli_output;
mod config_errors;
mod conversations;
mod delegation;
mod executions;
mod faults;
mod local_model;
mod logging;
mod mcp;
mod memory_api;
mod metrics;
mod packaging;
mod protocols;
mod providers;
mod routing;
mod sandbox;
mod signals;
mod support;
mod systemd;
mod tools;
mod traces;
