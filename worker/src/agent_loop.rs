//! One request, start to finish: handshake, job, prompt, completion, answer.

use std::os::unix::net::UnixStream;

use caxton_ipc_protocol::{
    ChatMessage, ChatRole, CompletionRequest, SupervisorMessage, WorkerMessage,
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

/// Run the single job the supervisor hands us.
pub fn run(socket: UnixStream) -> Result<Outcome, ChannelError> {
    let mut channel = Channel::handshake(socket)?;
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

fn answer(channel: &mut Channel, job: &caxton_ipc_protocol::Job) -> Result<String, Failure> {
    let rendered = prompt::render(&job.agent, &job.input).map_err(Failure::Agent)?;
    let mut messages = Vec::with_capacity(2);
    if !rendered.system.trim().is_empty() {
        messages.push(ChatMessage::text(ChatRole::System, rendered.system));
    }
    messages.push(ChatMessage::text(ChatRole::User, rendered.user));
    const CALL_ID: u32 = 1;
    let request = CompletionRequest {
        messages,
        tools: Vec::new(),
        stream: job.stream,
    };
    channel.send(&WorkerMessage::Complete {
        call_id: CALL_ID,
        request,
    })?;
    loop {
        match channel.receive()? {
            // The one completion is the answer, so its pieces go straight to the user.
            SupervisorMessage::CompletionDelta {
                call_id: CALL_ID,
                text,
            } => {
                channel.send(&WorkerMessage::AnswerDelta { text })?;
            }
            SupervisorMessage::Completion {
                call_id: CALL_ID,
                result,
            } => {
                return match result {
                    Ok(response) => Ok(response.content),
                    Err(failure) => Err(Failure::Agent(failure.message)),
                };
            }
            other => {
                return Err(Failure::Channel(ChannelError::Unexpected {
                    expected: "Completion for call 1",
                    received: describe(&other),
                }));
            }
        }
    }
}
