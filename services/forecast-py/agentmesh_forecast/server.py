"""The gRPC server: `agentmesh.v1.AgentService`, health and reflection.

Every rule of the task stream is kept here, for any skill: input validated
against the skill's schema before the task starts, events numbered per
stream, heartbeats while working, the deadline, CancelTask and the caller
dropping the stream, the concurrency cap, idempotency keys, and a drain on
shutdown.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import grpc
import jsonschema
from google.protobuf import json_format
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from . import __version__, skill, tracing
from .errors import MeshError, schema_error
from .protos import pb, rpc
from .tasks import Cancelled, Table, Task, to_struct

log = logging.getLogger("agentmesh_forecast")

AGENT_SERVICE = "agentmesh.v1.AgentService"


@dataclass
class Settings:
    """The agent's limits; every one is a flag of the command line."""

    max_concurrency: int = 8
    heartbeat_ms: int = 1000
    max_task_ms: int = 60_000
    max_message_bytes: int = 4 * 1024 * 1024
    artifact_chunk_bytes: int = 64 * 1024
    idempotency_entries: int = 1024
    idempotency_ttl_ms: int = 600_000
    shutdown_grace_ms: int = 10_000
    fault_delay_ms: int = 0
    # Ask a person how many months to forecast when the input names none.
    ask_horizon: bool = False


class AgentService(rpc.AgentServiceServicer):
    """The forecast agent's AgentService."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tasks = Table(settings.idempotency_entries, settings.idempotency_ttl_ms / 1000)
        self.draining = threading.Event()
        self.validator = jsonschema.Draft202012Validator(skill.INPUT_SCHEMA)
        card = skill.card_entry()
        planning = card.pop("planning")
        planning["upstream_input"] = to_struct(planning["upstream_input"])
        self.card = pb.AgentCard(
            name=skill.NAME,
            version=__version__,
            description=(
                "Revenue forecasts from the sales dataset, written in Python: a seasonal "
                "least-squares model with a prediction interval and a chart."
            ),
            protocol_version="agentmesh.v1",
            max_concurrency=settings.max_concurrency,
            skills=[
                pb.Skill(
                    **card,
                    planning=pb.SkillPlanning(**planning),
                    input_schema=to_struct(skill.INPUT_SCHEMA),
                    output_schema=to_struct(skill.OUTPUT_SCHEMA),
                    hints=pb.SkillHints(idempotent=True, read_only=True),
                )
            ],
        )

    def GetAgentCard(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.GetAgentCardResponse(card=self.card)

    # doc:begin execute
    def ExecuteTask(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        # The task's span continues the caller's trace (its attempt's span).
        span = tracing.tracer().start_span(
            "task",
            context=tracing.parent(context.invocation_metadata(), request),
            kind=SpanKind.SERVER,
            attributes={
                "run_id": request.run_id,
                "task_id": request.task_id,
                "skill": request.skill_id,
                "attempt": request.attempt,
            },
        )
        with trace.use_span(span, end_on_exit=False):
            try:
                task, new, given = self._admit(request, context)
            except MeshError as e:
                log.info("task %s refused: %s %s", request.task_id, e.reason, e.message)
                tracing.end(span, e.reason.lower())
                e.abort(context)
                return
        if new:
            # The caller dropping the stream cancels the task it started.
            context.add_callback(lambda: task.cancel("the caller went away"))
            threading.Thread(
                target=self._work, args=(task, given, span), name=f"task-{task.task_id}", daemon=True
            ).start()
        else:
            tracing.end(span, "completed")
        heartbeat = self.settings.heartbeat_ms / 1000
        if request.HasField("heartbeat_interval"):
            asked = request.heartbeat_interval.ToTimedelta().total_seconds()
            if asked > 0:
                heartbeat = min(heartbeat, asked)
        yield from task.follow(request.task_id, heartbeat, replay=not new)
    # doc:end execute

    # doc:begin cancel
    def CancelTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        task = self._known(request.task_id, context)
        state = task.cancel(request.reason)
        log.info("task %s: cancel asked (%s), now %s", request.task_id, request.reason, pb.TaskState.Name(state))
        return pb.CancelTaskResponse(state=state)
    # doc:end cancel

    # doc:begin provide
    def ProvideInput(self, request: Any, context: grpc.ServicerContext) -> Any:
        task = self._known(request.task_id, context)
        answer = json_format.MessageToDict(request.answer.answer)
        try:
            task.provide(request.answer.input_id, answer)
        except MeshError as e:
            log.info("task %s: answer refused: %s %s", request.task_id, e.reason, e.message)
            e.abort(context)
            return None
        log.info("task %s: answered %s", request.task_id, request.answer.input_id)
        return pb.AgentServiceProvideInputResponse()
    # doc:end provide

    def _known(self, task_id: str, context: grpc.ServicerContext) -> Task:
        """The task `task_id`; ends the call NOT_FOUND for one never seen."""
        task = self.tasks.get(task_id)
        if task is None:
            MeshError("NOT_FOUND", f"no task {task_id!r} here", {"task_id": task_id}).abort(context)
        return task

    # --- the task's life ------------------------------------------------

    def _admit(self, request: Any, context: grpc.ServicerContext) -> tuple[Task, bool, dict[str, Any]]:
        if self.draining.is_set():
            raise MeshError("AGENT_UNAVAILABLE", "the agent is shutting down; try another replica")
        if not request.task_id:
            raise MeshError("INVALID_INPUT", "task_id is empty", {"field": "task_id"})
        if request.skill_id != skill.SKILL_ID:
            raise MeshError(
                "UNKNOWN_SKILL",
                f"this agent has no skill {request.skill_id!r}; it offers {skill.SKILL_ID}",
                {"skill_id": request.skill_id},
            )
        # doc:begin validate
        given = json_format.MessageToDict(request.input) if request.HasField("input") else {}
        refused = schema_error(self.validator, given)
        if refused is not None:
            raise refused
        deadline = time.time() + self.settings.max_task_ms / 1000
        if request.HasField("deadline"):
            deadline = min(deadline, request.deadline.ToNanoseconds() / 1e9)
        remaining = context.time_remaining()
        if remaining is not None:
            deadline = min(deadline, time.time() + remaining)
        if deadline <= time.time():
            raise MeshError("DEADLINE_EXCEEDED", "the task's deadline had passed before it started")
        # doc:end validate
        admitted = self.tasks.start(
            request.task_id, request.idempotency_key, deadline, self.settings.max_concurrency
        )
        if admitted is None:
            raise MeshError(
                "RESOURCE_EXHAUSTED",
                f"{self.settings.max_concurrency} tasks already running (max_concurrency)",
                {"limit": "max_concurrency"},
            )
        task, new = admitted
        if new:
            task.answers = {
                a.input_id: json_format.MessageToDict(a.answer) for a in request.answers
            }
        log.info(
            "task %s %s (run %s, attempt %d, key %s)",
            request.task_id,
            "started" if new else "follows an earlier task with its key",
            request.run_id,
            request.attempt,
            request.idempotency_key or "-",
        )
        return task, new, given

    def _work(self, task: Task, given: dict[str, Any], span: trace.Span) -> None:
        with trace.use_span(span, end_on_exit=False):
            self._run(task, given)
        completed = task.state == pb.TASK_STATE_COMPLETED
        tracing.end(span, "completed" if completed else (task.reason or "canceled").lower())

    def _run(self, task: Task, given: dict[str, Any]) -> None:
        task.status(pb.TASK_STATE_SUBMITTED, "accepted")
        task.status(pb.TASK_STATE_WORKING, "working")
        try:
            if self.settings.fault_delay_ms:
                task.progress(f"fault injection: waiting {self.settings.fault_delay_ms} ms")
                task.sleep(self.settings.fault_delay_ms / 1000)
            output, artifacts = skill.execute(task, given, ask_horizon=self.settings.ask_horizon)
            task.check()
            task.complete(output, artifacts, self.settings.artifact_chunk_bytes)
        except Cancelled:
            pass  # the task already ended (cancel or deadline)
        except MeshError as e:
            log.info("task %s failed: %s %s", task.task_id, e.reason, e.message)
            task.fail(e.reason, e.message)
        except Exception:  # a bug must fail the task, never the agent
            log.exception("task %s failed", task.task_id)
            task.fail("AGENT_FAILED", "the forecast failed inside the agent (see its log)", retryable=True)
        log.info("task %s ended %s", task.task_id, pb.TaskState.Name(task.state))

    def drain(self) -> None:
        """Refuses new tasks from now on."""
        self.draining.set()

    def cancel_all(self, why: str) -> None:
        for task in self.tasks.all_running():
            task.fail("AGENT_UNAVAILABLE", why, retryable=True, state=pb.TASK_STATE_CANCELED)


class Server:
    """A running agent: the gRPC server and its health service."""

    def __init__(self, listen: str, settings: Settings) -> None:
        self.settings = settings
        self.agent = AgentService(settings)
        limit = settings.max_message_bytes
        # One thread per open task stream, plus room for cards, cancels and health.
        self.grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=2 * settings.max_concurrency + 8),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
            ],
        )
        # doc:begin health
        rpc.add_AgentServiceServicer_to_server(self.agent, self.grpc)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        reflection.enable_server_reflection(
            [AGENT_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.grpc,
        )
        # doc:end health
        self.port = self.grpc.add_insecure_port(listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {listen}")

    def start(self) -> None:
        self.grpc.start()
        for name in ("", AGENT_SERVICE):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, before_drain: Callable[[], None] | None = None) -> None:
        """Drains: NOT_SERVING, new tasks refused, running ones get the grace
        period, then the rest are cancelled."""
        for name in ("", AGENT_SERVICE):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.agent.drain()
        if before_drain:
            before_drain()
        grace = self.settings.shutdown_grace_ms / 1000
        end = time.monotonic() + grace
        while self.agent.tasks.all_running() and time.monotonic() < end:
            time.sleep(0.05)
        self.agent.cancel_all("the agent is shutting down")
        self.grpc.stop(1.0).wait()
