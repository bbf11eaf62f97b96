//! The wire format is pinned per protocol version: one sample of every message, encoded, must
//! match the bytes stored for the current `PROTOCOL_VERSION` in `tests/golden/`. bincode does not
//! describe fields, so a changed message that keeps its version would be misread by a worker of
//! the other build; this test fails first and says to bump the version.
//!
//! After a deliberate change: bump `PROTOCOL_VERSION`, then run
//! `CAXTON_BLESS=1 cargo test -p caxton-ipc-protocol --test golden` to write the new file.

use std::fmt::Write as _;
use std::path::PathBuf;

use caxton_ipc_protocol::{
    ChatMessage, ChatRole, CompletionFailure, CompletionRequest, CompletionResponse, Hello, Job,
    JobAgent, JobInput, PROTOCOL_VERSION, SupervisorMessage, ToolCall, ToolResult, ToolSpec,
    WorkerMessage, encode_frame,
};

fn tool_call() -> ToolCall {
    ToolCall {
        id: "call-1".into(),
        name: "csv_parse".into(),
        arguments_json: r#"{"csv":"a,b"}"#.into(),
    }
}

fn tool_spec() -> ToolSpec {
    ToolSpec {
        name: "csv_parse".into(),
        description: "Parse CSV".into(),
        input_schema_json: r#"{"type":"object"}"#.into(),
    }
}

fn response() -> CompletionResponse {
    CompletionResponse {
        content: "ok".into(),
        model: "m".into(),
        prompt_tokens: Some(3),
        completion_tokens: None,
        tool_calls: vec![tool_call()],
    }
}

/// One sample of every worker message; the match makes a new variant a compile error here.
fn worker_samples() -> Vec<(&'static str, WorkerMessage)> {
    let samples = vec![
        (
            "Hello",
            WorkerMessage::Hello(Hello {
                protocol_version: 7,
                worker_version: "0.1.0".into(),
                pid: 42,
            }),
        ),
        (
            "Complete",
            WorkerMessage::Complete {
                call_id: 1,
                request: CompletionRequest {
                    messages: vec![
                        ChatMessage::text(ChatRole::System, "sys"),
                        ChatMessage {
                            role: ChatRole::Assistant,
                            content: String::new(),
                            tool_calls: vec![tool_call()],
                            tool_call_id: None,
                        },
                        ChatMessage {
                            role: ChatRole::Tool,
                            content: "1".into(),
                            tool_calls: Vec::new(),
                            tool_call_id: Some("call-1".into()),
                        },
                        ChatMessage::text(ChatRole::User, "hi"),
                    ],
                    tools: vec![tool_spec()],
                    stream: true,
                },
            },
        ),
        (
            "CallTools",
            WorkerMessage::CallTools {
                call_id: 2,
                calls: vec![tool_call()],
            },
        ),
        (
            "AnswerDelta",
            WorkerMessage::AnswerDelta { text: "pie".into() },
        ),
        (
            "Finished",
            WorkerMessage::Finished {
                execution_id: "e-1".into(),
                answer: "done".into(),
            },
        ),
        (
            "Failed",
            WorkerMessage::Failed {
                execution_id: "e-1".into(),
                error: "no".into(),
            },
        ),
    ];
    for (_, m) in &samples {
        match m {
            WorkerMessage::Hello(_)
            | WorkerMessage::Complete { .. }
            | WorkerMessage::CallTools { .. }
            | WorkerMessage::AnswerDelta { .. }
            | WorkerMessage::Finished { .. }
            | WorkerMessage::Failed { .. } => {}
        }
    }
    samples
}

/// One sample of every supervisor message (both arms of a completion's result).
fn supervisor_samples() -> Vec<(&'static str, SupervisorMessage)> {
    let samples = vec![
        ("Welcome", SupervisorMessage::Welcome),
        (
            "VersionMismatch",
            SupervisorMessage::VersionMismatch {
                supervisor: 5,
                worker: 4,
            },
        ),
        (
            "Job",
            SupervisorMessage::Job(Job {
                execution_id: "e-1".into(),
                agent: JobAgent {
                    name: "hello".into(),
                    version: "1.0.0".into(),
                    system_prompt: "sys".into(),
                    user_prompt_template: "{{ request }}".into(),
                    parameters_json: "{}".into(),
                    tools: vec![tool_spec()],
                    max_tool_calls: 8,
                },
                input: JobInput {
                    request: "hi".into(),
                    context: "c".into(),
                    requirements: "r".into(),
                    memory_context: "m".into(),
                },
                stream: false,
            }),
        ),
        (
            "CompletionDelta",
            SupervisorMessage::CompletionDelta {
                call_id: 1,
                text: "pi".into(),
            },
        ),
        (
            "ToolResults",
            SupervisorMessage::ToolResults {
                call_id: 2,
                results: vec![ToolResult {
                    tool_call_id: "call-1".into(),
                    content: "[]".into(),
                    is_error: false,
                }],
            },
        ),
        (
            "Completion/Ok",
            SupervisorMessage::Completion {
                call_id: 1,
                result: Ok(response()),
            },
        ),
        (
            "Completion/Err",
            SupervisorMessage::Completion {
                call_id: 1,
                result: Err(CompletionFailure {
                    message: "down".into(),
                }),
            },
        ),
    ];
    for (_, m) in &samples {
        match m {
            SupervisorMessage::Welcome
            | SupervisorMessage::VersionMismatch { .. }
            | SupervisorMessage::Job(_)
            | SupervisorMessage::CompletionDelta { .. }
            | SupervisorMessage::ToolResults { .. }
            | SupervisorMessage::Completion { .. } => {}
        }
    }
    samples
}

/// `NAME HEX` per line, worker messages first.
fn encoded() -> String {
    let mut text = String::new();
    let mut line = |name: &str, bytes: Vec<u8>| {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(text, "{name} {hex}");
    };
    for (name, m) in worker_samples() {
        line(
            &format!("worker/{name}"),
            encode_frame(&m).expect("encodes"),
        );
    }
    for (name, m) in supervisor_samples() {
        line(
            &format!("supervisor/{name}"),
            encode_frame(&m).expect("encodes"),
        );
    }
    text
}

#[test]
fn the_wire_format_matches_the_bytes_stored_for_this_protocol_version() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("v{PROTOCOL_VERSION}.txt"));
    let now = encoded();
    if std::env::var_os("CAXTON_BLESS").is_some() {
        std::fs::create_dir_all(file.parent().expect("has a parent")).expect("golden dir");
        std::fs::write(&file, &now).expect("golden file written");
        return;
    }
    let stored = std::fs::read_to_string(&file).unwrap_or_else(|_| {
        panic!(
            "no stored wire format for protocol v{PROTOCOL_VERSION} ({}): after bumping \
             PROTOCOL_VERSION, run CAXTON_BLESS=1 cargo test -p caxton-ipc-protocol --test golden",
            file.display()
        )
    });
    for (was, is) in stored.lines().zip(now.lines()) {
        assert_eq!(
            was, is,
            "the encoding of a message changed while PROTOCOL_VERSION stayed {PROTOCOL_VERSION}: \
             a worker and a supervisor of different builds would misread each other. Bump \
             PROTOCOL_VERSION and bless a new golden file (see this file's header)"
        );
    }
    assert_eq!(
        stored.lines().count(),
        now.lines().count(),
        "messages were added or removed while PROTOCOL_VERSION stayed {PROTOCOL_VERSION}"
    );
}
