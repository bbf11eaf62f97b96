//! One request, start to finish: handshake, job, prompt, completion, answer.

use std::os::unix::net::UnixStream;

use caxton_ipc_protocol::{
    ChatMessage, ChatRole, CompletionRequest, SandboxReport, SupervisorMessage, WorkerMessage,
};

use crate::channel::{Channel, ChannelError, describe};
use crate::prompt;

/// How the request ended, when the supervisor could be told.
pub enum Outcome {
    /// The answer was sent.
    Answered,
    /// The agent failed and the supervisor was told why.
    AgentFailed,
}

/// Run the single job the supervisor hands us, having told it how we are confined.
pub fn run(socket: UnixStream, sandbox: SandboxReport) -> Result<Outcome, ChannelError> {
    let mut channel = Channel::handshake(socket, sandbox)?;
    let job = match channel.receive()? {
        SupervisorMessage::Job(job) => job,
        other => {
            return Err(ChannelError::Unexpected {
                expected: "Job",
                received: describe(&other),
            });
        }
    };
    let execution_id = job.execution_id.clone();
    match answer(&mut channel, &job) {
        Ok(answer) => {
            channel.send(&WorkerMessage::Finished {
                execution_id,
                answer,
            })?;
            Ok(Outcome::Answered)
        }
        Err(Failure::Agent(error)) => {
            channel.send(&WorkerMessage::Failed {
                execution_id,
                error,
            })?;
            Ok(Outcome::AgentFailed)
        }
        Err(Failure::Channel(e)) => Err(e),
    }
}

enum Failure {
    /// Something the user should hear about (bad template input, provider error).
    Agent(String),
    /// The supervisor connection itself broke.
    Channel(ChannelError),
}

impl From<ChannelError> for Failure {
    fn from(e: ChannelError) -> Self {
        Self::Channel(e)
    }
}

/// The conversation with the model: ask, run the tools it calls, give it their results, and
/// repeat until it answers or the agent's tool-call budget is spent.
fn answer(channel: &mut Channel, job: &caxton_ipc_protocol::Job) -> Result<String, Failure> {
    let rendered = prompt::render(&job.agent, &job.input).map_err(Failure::Agent)?;
    let mut messages = Vec::with_capacity(2 + 2 * job.input.history.len());
    if !rendered.system.trim().is_empty() {
        messages.push(ChatMessage::text(ChatRole::System, rendered.system));
    }
    // A continued conversation: the model sees its earlier turns as the chat they were.
    for turn in &job.input.history {
        messages.push(ChatMessage::text(ChatRole::User, turn.request.clone()));
        messages.push(ChatMessage::text(ChatRole::Assistant, turn.answer.clone()));
    }
    messages.push(ChatMessage::text(ChatRole::User, rendered.user));
    let budget = job.agent.max_tool_calls as usize;
    let mut calls_made = 0usize;
    let mut call_id = 0u32;
    loop {
        call_id += 1;
        // With the budget spent the model gets no tools, so it has to answer.
        let tools = if calls_made < budget {
            job.agent.tools.clone()
        } else {
            Vec::new()
        };
        let offered_tools = !tools.is_empty();
        let response = complete(
            channel,
            call_id,
            CompletionRequest {
                messages: messages.clone(),
                tools,
                stream: job.stream,
            },
        )?;
        if response.tool_calls.is_empty() {
            return Ok(response.content);
        }
        if !offered_tools {
            return Err(Failure::Agent(format!(
                "the model kept calling tools after the limit of {budget} tool calls \
                 ([limits] max_tool_calls) was reached"
            )));
        }
        let mut calls = response.tool_calls;
        // Calls past the budget are not run; the model hears why in their results.
        let over = calls.split_off(calls.len().min(budget - calls_made));
        calls_made += calls.len();
        call_id += 1;
        channel.send(&WorkerMessage::CallTools {
            call_id,
            calls: calls.clone(),
        })?;
        let results = match channel.receive()? {
            SupervisorMessage::ToolResults {
                call_id: answered,
                results,
            } if answered == call_id && results.len() == calls.len() => results,
            other => {
                return Err(Failure::Channel(ChannelError::Unexpected {
                    expected: "ToolResults for the calls just sent",
                    received: describe(&other),
                }));
            }
        };
        let mut assistant = ChatMessage::text(ChatRole::Assistant, response.content);
        assistant.tool_calls = calls.iter().chain(&over).cloned().collect();
        messages.push(assistant);
        for result in results {
            messages.push(tool_turn(result.tool_call_id, result.content));
        }
        for skipped in over {
            messages.push(tool_turn(
                skipped.id,
                format!("not run: the limit of {budget} tool calls for this request was reached"),
            ));
        }
    }
}

fn tool_turn(call_id: String, content: String) -> ChatMessage {
    let mut turn = ChatMessage::text(ChatRole::Tool, content);
    turn.tool_call_id = Some(call_id);
    turn
}

/// One completion; its streamed pieces go straight to the user.
fn complete(
    channel: &mut Channel,
    call_id: u32,
    request: CompletionRequest,
) -> Result<caxton_ipc_protocol::CompletionResponse, Failure> {
    channel.send(&WorkerMessage::Complete { call_id, request })?;
    loop {
        match channel.receive()? {
            SupervisorMessage::CompletionDelta {
                call_id: answered,
                text,
            } if answered == call_id => {
                channel.send(&WorkerMessage::AnswerDelta { text })?;
            }
            SupervisorMessage::Completion {
                call_id: answered,
                result,
            } if answered == call_id => {
                return result.map_err(|failure| Failure::Agent(failure.message));
            }
            other => {
                return Err(Failure::Channel(ChannelError::Unexpected {
                    expected: "Completion for the request just sent",
                    received: describe(&other),
                }));
            }
        }
    }
}
