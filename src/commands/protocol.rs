//! `caxton protocol contract-net | auction | negotiate` and `caxton topic publish`: the
//! interaction protocols a caller starts, through the daemon or in this process.

use std::process::ExitCode;

use anyhow::bail;
use caxton_api_contract::protocols::{
    AwardRule, CallForProposals, NegotiationOutcome, NegotiationRequest, PublishRequest,
};
use caxton_supervisor::config::Config;

use crate::backend::Backend;
use crate::cli::{ProtocolCommand, TopicCommand};
use crate::client::ApiClient;
use crate::output;

pub async fn run(
    cmd: ProtocolCommand,
    config: &Config,
    client: &ApiClient,
) -> anyhow::Result<ExitCode> {
    let backend = Backend::choose(config, client, "protocol").await?;
    let (args, rule) = match cmd {
        ProtocolCommand::ContractNet(args) => (args, AwardRule::HighestScore),
        ProtocolCommand::Auction(args) => (args, AwardRule::LowestPrice),
        ProtocolCommand::Negotiate {
            initiator,
            responder,
            subject,
            rounds,
            conversation,
            json,
        } => {
            let answer = backend
                .negotiate(NegotiationRequest {
                    initiator,
                    responder,
                    subject,
                    max_rounds: Some(rounds),
                    conversation,
                })
                .await?;
            if json {
                output::print_json(&answer);
            } else {
                output::print_negotiation(&answer);
            }
            if answer.outcome == NegotiationOutcome::Failed {
                bail!("the negotiation stopped: an agent's execution failed");
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    let body = CallForProposals {
        capability: args.capability,
        task: args.task,
        conversation: args.conversation,
    };
    let answer = backend.call_for_proposals(body, rule).await?;
    if args.json {
        output::print_json(&answer);
    } else {
        output::print_award(&answer);
    }
    match (&answer.awarded, &answer.result) {
        (None, _) => bail!("no agent made a valid proposal, so nothing was awarded"),
        (Some(winner), Some(r)) if r.failure_message().is_some() => bail!(
            "{winner} was awarded the task but failed: {}",
            r.failure_message().unwrap_or_default()
        ),
        _ => Ok(ExitCode::SUCCESS),
    }
}

pub async fn topic(
    cmd: TopicCommand,
    config: &Config,
    client: &ApiClient,
) -> anyhow::Result<ExitCode> {
    let TopicCommand::Publish {
        topic,
        content,
        conversation,
        json,
    } = cmd;
    let backend = Backend::choose(config, client, "topic publish").await?;
    let answer = backend
        .publish(
            &topic,
            PublishRequest {
                content,
                conversation,
            },
        )
        .await?;
    if json {
        output::print_json(&answer);
    } else {
        output::print_labelled(&answer.deliveries);
    }
    let failed = answer
        .deliveries
        .iter()
        .filter(|r| r.failure_message().is_some())
        .count();
    if failed > 0 {
        bail!(
            "{failed} of the {} subscribers of {topic:?} failed",
            answer.deliveries.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
