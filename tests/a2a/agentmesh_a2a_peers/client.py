"""The official A2A Python SDK's client against the mesh's A2A facade.

Runs the scenario the end-to-end test asks for over one binding and prints
what it saw as one JSON object (the test asserts on it); any protocol error
or unmet expectation exits non-zero with the reason.

1. ``goal``: send the goal, stream it to the end, reassemble the report's
   files from the artifact updates; then GetTask and ListTasks.
2. ``resubscribe``: start a second run, drop the stream after its first
   events, SubscribeToTask, and read it to the end.
3. ``cancel``: start a slow run (an explicit plan in a data part), cancel it
   with CancelTask, and read its final state with GetTask.

    python -m agentmesh_a2a_peers.client --url http://127.0.0.1:50060 \
        --binding GRPC --goal "..." --slow-skill slow
"""

import argparse
import asyncio
import json
import sys
import uuid

import grpc
import httpx
from a2a.client import ClientConfig, ClientFactory
from a2a.helpers import new_data_part, new_text_part
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskState,
)
from google.protobuf import json_format


def message(parts, context_id=None) -> Message:
    m = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=parts)
    if context_id:
        m.context_id = context_id
    return m


class Files:
    """Artifacts reassembled from artifact updates (append / lastChunk)."""

    def __init__(self):
        self.files: dict[str, bytearray] = {}
        self.names: dict[str, str] = {}
        self.complete: set[str] = set()
        self.data: dict[str, object] = {}

    def take(self, update) -> None:
        art = update.artifact
        data = b"".join(p.raw for p in art.parts if p.HasField("raw"))
        for p in art.parts:
            if p.HasField("data"):
                value = json_format.MessageToDict(p.data)
                self.data[art.name or art.artifact_id] = value
                data += json.dumps(value).encode()
        if not update.append or art.artifact_id not in self.files:
            self.files[art.artifact_id] = bytearray()
        self.files[art.artifact_id] += data
        if art.name:
            self.names[art.artifact_id] = art.name
        if update.last_chunk:
            self.complete.add(art.artifact_id)

    def summary(self) -> dict:
        out = {
            self.names.get(i, i): {"bytes": len(d), "complete": i in self.complete}
            for i, d in self.files.items()
        }
        report = self.data.get("report.json")
        if isinstance(report, dict):
            out["report.json"]["title"] = report.get("title")
            out["report.json"]["agents"] = sorted(
                {p.get("agent") for p in report.get("provenance", [])}
            )
        return out


def state_name(state) -> str:
    return TaskState.Name(state)


async def read(stream, files: Files, stop_after: int | None = None):
    """Reads a stream; returns (task_id, states seen, kinds of events)."""
    task_id, states, kinds = None, [], []
    async for event in stream:
        kinds.append(event.WhichOneof("payload"))
        if event.HasField("task"):
            task_id = event.task.id
            states.append(state_name(event.task.status.state))
        elif event.HasField("status_update"):
            task_id = event.status_update.task_id
            states.append(state_name(event.status_update.status.state))
        elif event.HasField("artifact_update"):
            task_id = event.artifact_update.task_id
            files.take(event.artifact_update)
        if stop_after is not None and len(kinds) >= stop_after:
            break
    return task_id, states, kinds


def expect(condition: bool, what: str) -> None:
    if not condition:
        print(f"expectation failed: {what}", file=sys.stderr)
        sys.exit(1)


async def scenario(args) -> dict:
    http = httpx.AsyncClient(timeout=httpx.Timeout(120.0))
    config = ClientConfig(
        streaming=True,
        supported_protocol_bindings=[args.binding],
        use_client_preference=True,
        httpx_client=http,
        grpc_channel_factory=grpc.aio.insecure_channel,
    )
    client = await ClientFactory(config).create_from_url(args.url)
    out: dict = {"binding": args.binding}

    # 1. The goal, streamed to the end.
    files = Files()
    context_id = str(uuid.uuid4())
    request = SendMessageRequest(message=message([new_text_part(args.goal)], context_id))
    task_id, states, kinds = await read(client.send_message(request), files)
    out["goal"] = {
        "task_id": task_id,
        "states": states,
        "first": kinds[0] if kinds else None,
        "files": files.summary(),
    }
    expect(states and states[-1] == "TASK_STATE_COMPLETED", f"goal ended {states[-1:]}")
    task = await client.get_task(GetTaskRequest(id=task_id))
    out["goal"]["get_task"] = {
        "state": state_name(task.status.state),
        "context_id": task.context_id,
        "artifacts": sorted(a.name for a in task.artifacts),
        "run_state": json_format.MessageToDict(task.metadata).get("agentmesh", {}).get("runState"),
    }
    listed = await client.list_tasks(ListTasksRequest(context_id=context_id))
    out["goal"]["listed"] = [t.id for t in listed.tasks]

    # 2. Drop the stream of a second run, then subscribe again.
    files = Files()
    request = SendMessageRequest(message=message([new_text_part(args.goal)]))
    stream = client.send_message(request)
    task_id, first_states, seen = await read(stream, files, stop_after=2)
    await stream.aclose()
    resumed_id, states, _ = await read(client.subscribe(SubscribeToTaskRequest(id=task_id)), files)
    out["resubscribe"] = {
        "task_id": task_id,
        "before": first_states,
        "after": states,
        "same_task": resumed_id == task_id,
        "files": files.summary(),
    }
    expect(states and states[-1] == "TASK_STATE_COMPLETED", f"resubscribed run ended {states[-1:]}")

    # 3. Cancel a slow run.
    plan = {"plan": {"steps": [{"id": "wait", "skill": args.slow_skill, "input": {"sleep_ms": 60000}}]}}
    request = SendMessageRequest(message=message([new_text_part("wait a minute"), new_data_part(plan)]))
    stream = client.send_message(request)
    task_id, _, _ = await read(stream, Files(), stop_after=2)
    await stream.aclose()
    canceled = await client.cancel_task(CancelTaskRequest(id=task_id))
    after = await client.get_task(GetTaskRequest(id=task_id))
    out["cancel"] = {
        "task_id": task_id,
        "state": state_name(canceled.status.state),
        "get_task": state_name(after.status.state),
    }
    await client.close()
    await http.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="base URL of the agent card")
    parser.add_argument("--binding", default="JSONRPC", choices=["JSONRPC", "GRPC"])
    parser.add_argument("--goal", required=True)
    parser.add_argument("--slow-skill", default="slow")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(scenario(args))))


if __name__ == "__main__":
    main()
