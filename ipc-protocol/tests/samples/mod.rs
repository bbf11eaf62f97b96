//! One sample of every IPC message, named, shared by the golden-bytes test and the async codec's
//! round trips (an integration test's shared module: `mod samples;` in each).

#![allow(dead_code, reason = "each test binary uses part of the samples")]

use caxton_ipc_protocol::{
    ChatMessage, ChatRole, CompletionFailure, CompletionRequest, CompletionResponse, Hello, Job,
    JobAgent, JobInput, SandboxLayer, SandboxReport, SupervisorMessage, ToolCall, ToolResult,
    ToolSpec, Turn, WorkerMessage,
};

pub fn tool_call() -> ToolCall {
    ToolCall {
        id: "call-1".into(),
        name: "csv_parse".into(),
        arguments_json: r#"{"csv":"a,b"}"#.into(),
    }
}

pub fn tool_spec() -> ToolSpec {
    ToolSpec {
        name: "csv_parse".into(),
        description: "Parse CSV".into(),
        input_schema_json: r#"{"type":"object"}"#.into(),
    }
}

pub fn response() -> CompletionResponse {
    CompletionResponse {
        content: "ok".into(),
        model: "m".into(),
        prompt_tokens: Some(3),
        completion_tokens: None,
        tool_calls: vec![tool_call()],
    }
}

/// One sample of every worker message; the match makes a new variant a compile error here.
pub fn worker_samples() -> Vec<(&'static str, WorkerMessage)> {
    let samples = vec![
        (
            "Hello",
            WorkerMessage::Hello(Hello {
                protocol_version: 7,
                worker_version: "0.1.0".into(),
                pid: 42,
                sandbox: SandboxReport {
                    mode: "strict".into(),
                    layers: vec![
                        SandboxLayer {
                            name: "landlock".into(),
                            applied: true,
                            detail: "no file system, no TCP (ABI 7)".into(),
                        },
                        SandboxLayer {
                            name: "seccomp".into(),
                            applied: false,
                            detail: "off".into(),
                        },
                    ],
                },
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
pub fn supervisor_samples() -> Vec<(&'static str, SupervisorMessage)> {
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
            SupervisorMessage::Job(Box::new(Job {
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
                    conversation_id: "c-1".into(),
                    history: vec![Turn {
                        agent: "hello".into(),
                        request: "before".into(),
                        answer: "then".into(),
                    }],
                },
                stream: false,
            })),
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
