"""A small A2A agent written with the official A2A Python SDK, which the
end-to-end tests join to the mesh through ``[[discovery.a2a]]``.

Skill ``shout``: the message's text in capitals, streamed as a working
status, then an artifact, then COMPLETED. The card declares agentmesh's
skill extension (input and output schemas, the kinds it reads and makes), so
plans may feed it another step's output; an agent without the extension is
used as text in, text out. Skill ``fail``: ends FAILED with a reason. Skill
``ask``: asks which language to greet in (INPUT_REQUIRED), and completes
with a greeting once a message to the same task answers.

    python -m agentmesh_a2a_peers.agent --port 9100
"""

import argparse
import asyncio
import logging

import uvicorn
from a2a.helpers import new_task, new_text_artifact_update_event, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentExtension,
    AgentInterface,
    AgentSkill,
    Role,
    TaskState,
)
from google.protobuf import struct_pb2
from starlette.applications import Starlette

# agentmesh's skill extension (docs/A2A.md).
MESH_EXTENSION = "https://agentmesh.dev/a2a/extensions/skills/v1"


def card(url: str) -> AgentCard:
    params = struct_pb2.Struct()
    params.update(
        {
            "skills": {
                "shout": {
                    "inputSchema": {
                        "type": "object",
                        "required": ["text"],
                        "properties": {"text": {"type": "string", "minLength": 1}},
                    },
                    "produces": ["demo.shout"],
                    "phrases": ["shout"],
                }
            }
        }
    )
    return AgentCard(
        name="shouter",
        description="Says it louder (an A2A agent built with the A2A Python SDK)",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(protocol_binding="JSONRPC", protocol_version="1.0", url=url)
        ],
        capabilities=AgentCapabilities(
            streaming=True,
            extensions=[AgentExtension(uri=MESH_EXTENSION, params=params)],
        ),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(
                id="shout",
                name="Shout",
                description="The text in capitals",
                tags=["text"],
                examples=["hello"],
            ),
            AgentSkill(
                id="ask",
                name="Ask",
                description="Asks a question before it answers",
                tags=["test"],
            ),
            AgentSkill(
                id="fail",
                name="Fail",
                description="Always fails, saying why",
                tags=["test"],
            ),
        ],
    )


class Shouter(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        text = context.get_user_input()
        current = context.current_task
        if current is not None and current.status.state == TaskState.TASK_STATE_INPUT_REQUIRED:
            # The answer to the question below.
            await updater.start_work()
            await event_queue.enqueue_event(
                new_text_artifact_update_event(
                    task_id=context.task_id,
                    context_id=context.context_id,
                    name="greeting.txt",
                    text=f"greeting in {text}",
                    last_chunk=True,
                )
            )
            await updater.complete()
            return
        await event_queue.enqueue_event(
            new_task(
                context.task_id,
                context.context_id,
                TaskState.TASK_STATE_SUBMITTED,
                history=[context.message],
            )
        )
        skill = context.metadata.get("agentmesh", {}).get("skill", "shout")
        if skill == "ask":
            await updater.requires_input(
                new_text_message("Which language should I greet in?", role=Role.ROLE_AGENT)
            )
            return
        if skill == "fail":
            await updater.failed(
                new_text_message("the fail skill always fails", role=Role.ROLE_AGENT)
            )
            return
        await updater.start_work(
            new_text_message(f"shouting {len(text)} characters", role=Role.ROLE_AGENT)
        )
        await asyncio.sleep(0.05)
        await event_queue.enqueue_event(
            new_text_artifact_update_event(
                task_id=context.task_id,
                context_id=context.context_id,
                name="shout.txt",
                text=text.upper(),
                last_chunk=True,
            )
        )
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


def app(url: str) -> Starlette:
    """The agent's ASGI app: its card and the JSON-RPC binding at ``/``."""
    agent_card = card(url)
    handler = DefaultRequestHandler(
        agent_executor=Shouter(), task_store=InMemoryTaskStore(), agent_card=agent_card
    )
    routes = create_agent_card_routes(agent_card) + create_jsonrpc_routes(handler, rpc_url="/")
    return Starlette(routes=routes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(
        app(f"http://{args.host}:{args.port}/"),
        host=args.host,
        port=args.port,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
