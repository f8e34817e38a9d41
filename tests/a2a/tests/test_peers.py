"""The peers' own behaviour, in process: the agent answers through the SDK's
client, and the client scenario reassembles chunked artifacts."""

import asyncio

import httpx
from a2a.client import ClientConfig, ClientFactory
from a2a.helpers import new_text_part
from a2a.types import (
    Artifact,
    Message,
    Part,
    Role,
    SendMessageRequest,
    TaskArtifactUpdateEvent,
    TaskState,
)
from google.protobuf import struct_pb2

from agentmesh_a2a_peers import agent
from agentmesh_a2a_peers.client import Files

URL = "http://agent.test"


def send(skill: str, text: str):
    async def go():
        transport = httpx.ASGITransport(app=agent.app(f"{URL}/"))
        async with httpx.AsyncClient(transport=transport, base_url=URL) as http:
            config = ClientConfig(streaming=False, httpx_client=http)
            client = await ClientFactory(config).create_from_url(URL)
            metadata = struct_pb2.Struct()
            metadata.update({"agentmesh": {"skill": skill}})
            request = SendMessageRequest(
                message=Message(
                    role=Role.ROLE_USER, message_id="m-1", parts=[new_text_part(text)]
                ),
                metadata=metadata,
            )
            return [event async for event in client.send_message(request)]

    return asyncio.run(go())


def test_the_card_declares_the_mesh_extension():
    card = agent.card(f"{URL}/")
    assert [s.id for s in card.skills] == ["shout", "ask", "fail"]
    ext = card.capabilities.extensions[0]
    assert ext.uri == agent.MESH_EXTENSION
    assert ext.params["skills"]["shout"]["produces"] == ["demo.shout"]
    assert card.supported_interfaces[0].protocol_version == "1.0"


def test_shout_answers_in_capitals():
    task = send("shout", "hello")[-1].task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert task.artifacts[0].parts[0].text == "HELLO"


def test_ask_waits_for_input_and_fail_fails():
    asked = send("ask", "greet")[-1].task
    assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert "Which language" in asked.status.message.parts[0].text
    failed = send("fail", "x")[-1].task
    assert failed.status.state == TaskState.TASK_STATE_FAILED


def test_files_reassemble_appended_chunks():
    files = Files()
    for data, append, last in [(b"<h1>", False, False), (b"Q2</h1>", True, True)]:
        files.take(
            TaskArtifactUpdateEvent(
                task_id="t",
                artifact=Artifact(artifact_id="a", name="report.html", parts=[Part(raw=data)]),
                append=append,
                last_chunk=last,
            )
        )
    assert files.summary() == {"report.html": {"bytes": 11, "complete": True}}
