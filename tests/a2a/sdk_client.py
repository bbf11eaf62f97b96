"""Drive one Caxton agent's A2A endpoint with the official A2A Python SDK (PyPI `a2a-sdk`
0.3.26, the last release that speaks A2A 0.3.0). The SDK validates every card, task and event
it reads with its pydantic models, so a step that prints is a step whose wire form it accepted.

Usage: python3 sdk_client.py AGENT_URL TOKEN
AGENT_URL is the agent's base (http://127.0.0.1:PORT/a2a/AGENT): its card is under it at
.well-known/agent-card.json. Prints one JSON object per step on stdout, each with a "step"
member; the Rust test (tests/integration/a2a_sdk.rs) asserts on them. Before cancelling the
hanging task it prints the "hanging" step and waits for a line on stdin, so the test can find
the task's worker first and check afterwards that it is gone.
"""
import asyncio
import json
import sys

import httpx
from a2a.client import (
    A2ACardResolver,
    ClientConfig,
    ClientFactory,
    create_text_message_object,
)
from a2a.client.errors import A2AClientJSONRPCError
from a2a.types import Task, TaskIdParams, TaskQueryParams

# Every wait is bounded: a server that never answers fails the test instead of hanging it.
STEP_TIMEOUT = 30


def emit(step: str, **fields) -> None:
    print(json.dumps({"step": step, **fields}), flush=True)


def answer_text(task: Task) -> str:
    """The text of the task's artifacts, parts in order (streamed pieces joined)."""
    return "".join(
        part.root.text
        for artifact in task.artifacts or []
        for part in artifact.parts
        if part.root.kind == "text"
    )


def state(task: Task) -> str:
    return task.status.state.value


async def collect(events) -> tuple[Task | None, list[str]]:
    """Read a client's event stream to its end: the last task, and each event's kind."""
    task, kinds = None, []
    async for event in events:
        if isinstance(event, tuple):
            task, update = event
            kinds.append(update.kind if update is not None else "task")
        else:
            kinds.append(event.kind)
    return task, kinds


async def main(url: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers, timeout=STEP_TIMEOUT) as http:
        card = await A2ACardResolver(http, url).get_agent_card()
        emit(
            "card",
            name=card.name,
            protocol_version=card.protocol_version,
            url=card.url,
            preferred_transport=card.preferred_transport,
            streaming=card.capabilities.streaming,
            skills=[s.id for s in card.skills],
            security_schemes=sorted((card.security_schemes or {}).keys()),
            bearer_scheme=(
                card.security_schemes["bearer"].root.scheme
                if card.security_schemes and "bearer" in card.security_schemes
                else None
            ),
            security=card.security,
        )

        # The client picks the transport and URL from the card, as any A2A client would.
        plain = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
        streaming = ClientFactory(ClientConfig(streaming=True, httpx_client=http)).create(card)

        message = create_text_message_object(content="hello from the a2a sdk")
        task, kinds = await asyncio.wait_for(
            collect(plain.send_message(message)), STEP_TIMEOUT
        )
        emit(
            "send",
            kinds=kinds,
            task_id=task.id,
            context_id=task.context_id,
            state=state(task),
            answer=answer_text(task),
            history_roles=[m.role.value for m in task.history or []],
        )
        sent_id = task.id

        message = create_text_message_object(content="stream me please")
        task, kinds = await asyncio.wait_for(
            collect(streaming.send_message(message)), STEP_TIMEOUT
        )
        emit("stream", kinds=kinds, task_id=task.id, state=state(task), answer=answer_text(task))

        got = await plain.get_task(TaskQueryParams(id=sent_id))
        emit("get", task_id=got.id, state=state(got), answer=answer_text(got))

        # A task that never ends: its first streamed event names it, then it is canceled while
        # the stream is still open, and the stream ends with the canceled status.
        events = streaming.send_message(create_text_message_object(content="wait [hang]"))
        first = await asyncio.wait_for(anext(events), STEP_TIMEOUT)
        hanging: Task = first[0]
        emit("hanging", task_id=hanging.id, state=state(hanging))
        await asyncio.wait_for(asyncio.to_thread(sys.stdin.readline), STEP_TIMEOUT)
        canceled = await plain.cancel_task(TaskIdParams(id=hanging.id))
        emit("cancel", task_id=canceled.id, state=state(canceled))
        last, kinds = await asyncio.wait_for(collect(events), STEP_TIMEOUT)
        emit("canceled_stream", kinds=kinds, state=state(last) if last else None)

        try:
            await plain.cancel_task(TaskIdParams(id=hanging.id))
            emit("cancel_again", error=None)
        except A2AClientJSONRPCError as e:
            emit("cancel_again", error={"code": e.error.code, "message": e.error.message})

        try:
            await plain.get_task(TaskQueryParams(id="no-such-task"))
            emit("get_unknown", error=None)
        except A2AClientJSONRPCError as e:
            emit("get_unknown", error={"code": e.error.code, "message": e.error.message})

        task, kinds = await asyncio.wait_for(
            collect(streaming.resubscribe(TaskIdParams(id=sent_id))), STEP_TIMEOUT
        )
        emit("resubscribe", kinds=kinds, state=state(task), answer=answer_text(task))

        # A streaming method that fails: the SDK reads only an event stream there, so the error
        # must arrive as an event for it to surface as a JSON-RPC error.
        emit("resubscribe_unknown", error=await stream_error(
            streaming.resubscribe(TaskIdParams(id="no-such-task"))
        ))
        unknown_context = create_text_message_object(content="continue")
        unknown_context.context_id = "no-such-conversation"
        emit("stream_unknown_context", error=await stream_error(
            streaming.send_message(unknown_context)
        ))


async def stream_error(events) -> dict:
    """The error a stream that should fail ends with: a JSON-RPC error, or what else the SDK
    raised instead."""
    try:
        await asyncio.wait_for(collect(events), STEP_TIMEOUT)
        return {"raised": None}
    except A2AClientJSONRPCError as e:
        return {"code": e.error.code, "message": e.error.message}
    except Exception as e:  # noqa: BLE001 - reported, for the test to show
        return {"raised": type(e).__name__, "message": str(e)}


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
