//! The interaction protocols end to end, started by a caller (CLI, API) and by an agent (its
//! delegation tools): contract-net and auction award by the stated rule with ties to the first
//! name, negotiation ends in agreement, refusal or the round limit, and a publication reaches
//! every subscriber of a topic. The fake model answers protocol prompts from markers in each
//! agent's system prompt (`[bid X]`, `[decline]`, `[negotiate D0,D1,...]`).

use serde_json::{Value, json};

use crate::support::{Daemon, DaemonOptions, FakeLlm, echo_agent, http, text};

fn agent(name: &str, system: &str, extra: &str) -> String {
    echo_agent(name, &format!("system_prompt = \"{system}\"\n{extra}"))
}

fn json_cli(d: &Daemon, args: &[&str]) -> Value {
    let out = d.cli(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn bidders(d: &Daemon) {
    let cap = "capabilities = [\"translation\"]\n";
    d.deploy("cheap", &agent("cheap", "[bid 0.4]", cap));
    d.deploy("ace", &agent("ace", "[bid 0.9]", cap));
    d.deploy("bold", &agent("bold", "[bid 0.9]", cap));
    d.deploy("shy", &agent("shy", "[decline]", cap));
}

#[test]
fn contract_net_and_auction_award_by_the_stated_rule_and_tell_the_others() {
    let llm = FakeLlm::start();
    let d = Daemon::start(DaemonOptions::new(&llm));
    bidders(&d);

    let answer = json_cli(
        &d,
        &[
            "protocol",
            "contract-net",
            "--capability",
            "translation",
            "translate hi",
            "--json",
        ],
    );
    // Highest score; ace and bold tie at 0.9 and ace sorts first.
    assert_eq!(answer["awarded"], "ace", "{answer}");
    assert!(
        answer["rule_text"]
            .as_str()
            .unwrap()
            .contains("highest score wins")
    );
    let valid: Vec<(&str, bool)> = answer["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["agent"].as_str().unwrap(), p["valid"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        valid,
        [
            ("ace", true),
            ("bold", true),
            ("cheap", true),
            ("shy", false)
        ]
    );
    let result = answer["result"]["answer"].as_str().unwrap();
    assert!(
        result.contains("You were awarded this task (contract-net): translate hi"),
        "{result}"
    );

    let id = answer["conversation_id"].as_str().unwrap();
    let shown = json_cli(&d, &["conversation", "show", id, "--json"]);
    assert_eq!(shown["conversation"]["protocol"], "contract-net");
    assert_eq!(
        shown["executions"].as_array().unwrap().len(),
        5,
        "four proposals, one award"
    );
    let told: Vec<&str> = shown["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "notification")
        .map(|m| m["receiver"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(told, ["bold", "cheap", "shy"]);

    // Auction: the lowest price wins.
    let out = d.cli(&[
        "protocol",
        "auction",
        "--capability",
        "translation",
        "translate hi",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.contains("awarded to: cheap"), "{page}");
    assert!(page.contains("lowest price wins"), "{page}");

    // Nobody with the capability; nobody with a valid proposal.
    let out = d.cli(&["protocol", "auction", "--capability", "juggling", "x"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no deployed agent declares capability \"juggling\""));
    d.deploy(
        "mute",
        &agent("mute", "[decline]", "capabilities = [\"silence\"]\n"),
    );
    let out = d.cli(&["protocol", "contract-net", "--capability", "silence", "x"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no agent made a valid proposal"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_negotiation_ends_in_agreement_refusal_or_the_round_limit() {
    let llm = FakeLlm::start();
    let d = Daemon::start(DaemonOptions::new(&llm));
    // Round K's answer is the K-th entry (round 0 is the opening offer).
    d.deploy(
        "buyer",
        &agent("buyer", "[negotiate offer,x,counter,x,counter]", ""),
    );
    d.deploy(
        "seller",
        &agent("seller", "[negotiate x,counter,x,accept]", ""),
    );
    d.deploy(
        "stubborn",
        &agent("stubborn", "[negotiate x,counter,x,counter,x,counter]", ""),
    );
    d.deploy("grump", &agent("grump", "[negotiate x,reject]", ""));

    let deal = json_cli(
        &d,
        &[
            "protocol",
            "negotiate",
            "buyer",
            "seller",
            "a bike",
            "--json",
        ],
    );
    assert_eq!(deal["outcome"], "agreed", "{deal}");
    assert_eq!(deal["agreement"], "offer 2");
    let decisions: Vec<&str> = deal["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["offer", "counter", "counter", "accept"]);

    let limit = json_cli(
        &d,
        &[
            "protocol",
            "negotiate",
            "buyer",
            "stubborn",
            "a bike",
            "--rounds",
            "3",
            "--json",
        ],
    );
    assert_eq!(limit["outcome"], "round-limit", "{limit}");
    assert_eq!(
        limit["turns"].as_array().unwrap().len(),
        4,
        "an offer and three responses"
    );

    let out = d.cli(&["protocol", "negotiate", "buyer", "grump", "a bike"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("outcome: refused"));

    let body =
        json!({"initiator": "buyer", "responder": "seller", "subject": "x", "max_rounds": 0})
            .to_string();
    let (code, answer) = http(
        &d.env.socket,
        "POST",
        "/api/v1/protocols/negotiation",
        Some(&body),
    )
    .unwrap();
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 to 20 rounds"),
        "{answer}"
    );

    let body = json!({"initiator": "buyer", "responder": "buyer", "subject": "x"}).to_string();
    let (code, answer) = http(
        &d.env.socket,
        "POST",
        "/api/v1/protocols/negotiation",
        Some(&body),
    )
    .unwrap();
    assert_eq!(code, 400, "{answer}");
}

#[test]
fn a_publication_reaches_every_subscriber_of_its_topic() {
    let llm = FakeLlm::start();
    let d = Daemon::start(DaemonOptions::new(&llm));
    d.deploy(
        "reader-a",
        &echo_agent("reader-a", "subscriptions = [\"news\"]\n"),
    );
    d.deploy(
        "reader-b",
        &echo_agent("reader-b", "subscriptions = [\"news\", \"sport\"]\n"),
    );
    d.deploy("other", &echo_agent("other", ""));

    let out = d.cli(&["topic", "publish", "news", "tea is hot"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "[reader-a] echo: tea is hot\n[reader-b] echo: tea is hot\n"
    );
    let out = d.cli(&["topic", "publish", "weather", "rain"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "no agent subscribes to topic \"weather\"; topics with subscribers: news, sport"
        ),
        "{err}"
    );
}

#[test]
fn an_agent_starts_each_protocol_through_its_tools() {
    let llm = FakeLlm::start();
    let d = Daemon::start(DaemonOptions::new(&llm));
    bidders(&d);
    d.deploy(
        "buyer",
        &agent("buyer", "[negotiate offer,x,counter,x,counter]", ""),
    );
    d.deploy(
        "seller",
        &agent("seller", "[negotiate x,counter,x,accept]", ""),
    );
    d.deploy(
        "reader",
        &echo_agent("reader", "subscriptions = [\"news\"]\n"),
    );
    d.deploy(
        "boss",
        &echo_agent(
            "boss",
            "[delegation]\ncapabilities = [\"translation\"]\nagents = [\"buyer\", \"seller\"]\ntopics = [\"news\"]\n",
        ),
    );
    let call = |tool: &str, args: Value| format!("[call {tool} {args}]");

    let (code, report) = d.run(
        "boss",
        &call(
            "call_for_proposals",
            json!({"capability": "translation", "task": "translate hi", "protocol": "auction"}),
        ),
    );
    assert_eq!(code, 200, "{report}");
    let answer = report["answer"].as_str().unwrap();
    assert!(
        answer.starts_with("tool said: awarded to cheap"),
        "{answer}"
    );
    let shown = json_cli(
        &d,
        &[
            "conversation",
            "show",
            report["conversation_id"].as_str().unwrap(),
            "--json",
        ],
    );
    let children = shown["executions"][0]["children"].as_array().unwrap();
    assert_eq!(
        children.len(),
        5,
        "the proposals and the award are the boss's children: {shown}"
    );

    let (_, report) = d.run(
        "boss",
        &call(
            "negotiate",
            json!({"initiator": "buyer", "responder": "seller", "subject": "a bike"}),
        ),
    );
    assert_eq!(
        report["answer"], "tool said: agreed on: offer 2",
        "{report}"
    );

    let (_, report) = d.run(
        "boss",
        &call("publish", json!({"topic": "news", "content": "hello"})),
    );
    assert_eq!(
        report["answer"], "tool said: published to news: reader",
        "{report}"
    );

    // The only subscriber is the publisher itself: refused as the cycle it would be.
    d.deploy(
        "loner",
        &echo_agent(
            "loner",
            "subscriptions = [\"echoes\"]\n[delegation]\ntopics = [\"echoes\"]\n",
        ),
    );
    let (_, report) = d.run(
        "loner",
        &call("publish", json!({"topic": "echoes", "content": "hi"})),
    );
    let answer = report["answer"].as_str().unwrap();
    assert!(
        answer.contains("would make a cycle (loner → loner)"),
        "{answer}"
    );

    let (_, report) = d.run(
        "boss",
        &call("publish", json!({"topic": "sport", "content": "goal"})),
    );
    let answer = report["answer"].as_str().unwrap();
    assert!(answer.contains("may not reach topic \"sport\""), "{answer}");
}

#[test]
fn without_a_daemon_the_protocols_run_in_the_cli_s_own_process() {
    let llm = FakeLlm::start();
    let env = crate::support::Env::new(&DaemonOptions::new(&llm));
    env.deploy(
        "reader",
        &echo_agent("reader", "subscriptions = [\"news\"]\n"),
    );
    env.deploy(
        "ace",
        &agent("ace", "[bid 0.9]", "capabilities = [\"translation\"]\n"),
    );
    env.deploy("buyer", &agent("buyer", "[negotiate offer,x,counter]", ""));
    env.deploy("seller", &agent("seller", "[negotiate x,accept]", ""));
    let run = |args: &[&str]| {
        let out = env.cli(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(
        run(&["topic", "publish", "news", "hi"]),
        "[reader] echo: hi\n"
    );
    assert!(
        run(&[
            "protocol",
            "contract-net",
            "--capability",
            "translation",
            "x"
        ])
        .contains("awarded to: ace")
    );
    assert!(
        run(&["protocol", "negotiate", "buyer", "seller", "a bike"]).contains("agreement: offer 0")
    );
}
