//! End-to-end tests: real `caxton` and `caxton-worker` processes, real Unix sockets, a real
//! SQLite file, and a loopback HTTP server that speaks the OpenAI chat-completions protocol.

mod api;
mod cli;
mod faults;
mod signals;
mod support;
mod systemd;
