"""The task table: each task's events, cancellation, idempotency keys.

A task's events are recorded once, as the work produces them; every stream
that shows the task (the first call, and later calls with the same
idempotency key) reads the record and numbers the events for its own task
id. The first ending wins: a result, a failure, a cancel or a passed
deadline, whichever comes first, closes the record.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator

import jsonschema
from google.protobuf import struct_pb2, timestamp_pb2

from .errors import MeshError, schema_error
from .protos import pb

TERMINAL = {
    pb.TASK_STATE_COMPLETED,
    pb.TASK_STATE_FAILED,
    pb.TASK_STATE_CANCELED,
    pb.TASK_STATE_REJECTED,
}


def to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


@dataclass
class Artifact:
    """An output artifact, streamed in chunks."""

    artifact_id: str
    name: str
    description: str
    media_type: str
    data: bytes
    metadata: dict[str, Any]


class Cancelled(Exception):
    """The task was cancelled (or its deadline passed) while it worked."""


class Task:
    """One task's record."""

    def __init__(self, task_id: str, key: str, deadline: float | None) -> None:
        self.task_id = task_id
        self.key = key
        self.deadline = deadline
        self.events: list[pb.TaskEvent] = []
        self.state = pb.TASK_STATE_SUBMITTED
        self.cancelled = threading.Event()
        self.cond = threading.Condition()
        self.ended_at: float | None = None
        # The failure's reason, once it failed ("" otherwise).
        self.reason = ""
        # Answers to questions an earlier attempt asked (input_id -> answer).
        self.answers: dict[str, dict[str, Any]] = {}
        # The question the task waits on: (input_id, its answer's validator).
        self.pending: tuple[str, jsonschema.Draft202012Validator] | None = None
        self.answer: dict[str, Any] | None = None

    # --- writing -------------------------------------------------------

    def _append(self, **event: Any) -> None:
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        self.events.append(pb.TaskEvent(task_id=self.task_id, time=now, **event))

    def status(self, state: int, message: str) -> None:
        with self.cond:
            if self.state in TERMINAL:
                return
            self.state = state
            self._append(status=pb.TaskStatusUpdate(state=state, message=message))
            self.cond.notify_all()

    def progress(self, message: str, fraction: float = -1.0) -> None:
        with self.cond:
            if self.state in TERMINAL:
                return
            self._append(progress=pb.TaskProgress(message=message, fraction=fraction))
            self.cond.notify_all()

    def complete(
        self, output: dict[str, Any], artifacts: list[Artifact], chunk_bytes: int
    ) -> bool:
        """Records the result; False if the task had already ended."""
        with self.cond:
            if self.state in TERMINAL:
                return False
            for a in artifacts:
                pieces = [a.data[i : i + chunk_bytes] for i in range(0, len(a.data), chunk_bytes)]
                for i, piece in enumerate(pieces or [b""]):
                    first = i == 0
                    self._append(
                        artifact_chunk=pb.ArtifactChunk(
                            artifact_id=a.artifact_id,
                            name=a.name if first else "",
                            description=a.description if first else "",
                            media_type=a.media_type if first else "",
                            metadata=to_struct(a.metadata) if first else None,
                            data=piece,
                            append=not first,
                            last_chunk=i == max(len(pieces), 1) - 1,
                        )
                    )
            self._append(
                result=pb.TaskResult(
                    output=to_struct(output),
                    artifact_ids=[a.artifact_id for a in artifacts],
                )
            )
            self._end(pb.TASK_STATE_COMPLETED, "completed")
            return True

    def fail(
        self,
        reason: str,
        message: str,
        retryable: bool = False,
        state: int = pb.TASK_STATE_FAILED,
    ) -> bool:
        """Records a failure; False if the task had already ended."""
        with self.cond:
            if self.state in TERMINAL:
                return False
            self.reason = reason
            self._append(
                failure=pb.TaskFailure(reason=reason, message=message, retryable=retryable)
            )
            self._end(state, message)
            self.cancelled.set()
            return True

    def cancel(self, why: str) -> int:
        """Cancels a running task; answers the state it ends in."""
        self.fail("CANCELED", f"canceled: {why}" if why else "canceled", state=pb.TASK_STATE_CANCELED)
        return self.state

    # doc:begin ask
    def ask(self, input_id: str, question: str, schema: dict[str, Any]) -> dict[str, Any]:
        """Asks a person and waits for the answer, which is checked against
        `schema` (JSON Schema 2020-12) before it is returned. The task goes
        INPUT_REQUIRED with the question; its deadline does not run while it
        waits; heartbeats go on. An answer an earlier attempt got
        (ExecuteTaskRequest.answers) is returned at once. Raises `Cancelled`
        if the task is cancelled while it waits."""
        validator = jsonschema.Draft202012Validator(schema)
        given = self.answers.get(input_id)
        if given is not None and not list(validator.iter_errors(given)):
            return given
        with self.cond:
            if self.state in TERMINAL:
                raise Cancelled()
            self.pending = (input_id, validator)
            self.answer = None
            self.state = pb.TASK_STATE_INPUT_REQUIRED
            self._append(
                status=pb.TaskStatusUpdate(
                    state=pb.TASK_STATE_INPUT_REQUIRED,
                    message=question,
                    input=pb.InputRequest(
                        input_id=input_id, question=question, answer_schema=to_struct(schema)
                    ),
                )
            )
            self.cond.notify_all()
            since = time.time()
            while self.answer is None and self.state not in TERMINAL:
                self.cond.wait()
            self.pending = None
            if self.deadline is not None:
                self.deadline += time.time() - since
            if self.answer is None:
                raise Cancelled()
            answer = self.answer
            self.state = pb.TASK_STATE_WORKING
            self._append(status=pb.TaskStatusUpdate(state=pb.TASK_STATE_WORKING, message="answered"))
            self.cond.notify_all()
            return answer

    def provide(self, input_id: str, answer: dict[str, Any]) -> None:
        """A person's answer (AgentService.ProvideInput). Raises `MeshError`:
        NOT_WAITING if the task waits for no such question, INVALID_INPUT
        (field `answer.<path>`) if the answer does not fit its schema."""
        with self.cond:
            if self.pending is None or self.pending[0] != input_id:
                waits = self.pending[0] if self.pending else None
                raise MeshError(
                    "NOT_WAITING",
                    f"task {self.task_id} waits for no answer to {input_id!r}"
                    + (f"; it waits for {waits!r}" if waits else ""),
                    {"input_id": input_id},
                )
            refused = schema_error(self.pending[1], answer, prefix="answer")
            if refused is not None:
                raise refused
            self.answer = answer
            self.cond.notify_all()
    # doc:end ask

    def _end(self, state: int, message: str) -> None:
        self.state = state
        self.ended_at = time.monotonic()
        self._append(status=pb.TaskStatusUpdate(state=state, message=message, final=True))
        self.cond.notify_all()

    # --- reading -------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    def check(self) -> None:
        """Raises `Cancelled` once the task was cancelled or ended."""
        if self.cancelled.is_set():
            raise Cancelled()

    def sleep(self, seconds: float) -> None:
        """Waits, waking at once on cancel (then raises `Cancelled`)."""
        if self.cancelled.wait(seconds):
            raise Cancelled()

    def follow(
        self, task_id: str, heartbeat: float, replay: bool
    ) -> Iterator[pb.TaskEvent]:
        """The task's events for a stream of task `task_id`, numbered 1, 2, ...;
        heartbeats every `heartbeat` seconds of silence while it works. A
        replay leaves out the first run's progress."""
        seq = 0
        index = 0
        while True:
            with self.cond:
                if index == len(self.events) and not self.done:
                    wait = heartbeat
                    if self.deadline is not None:
                        wait = min(wait, max(self.deadline - time.time(), 0.0))
                    self.cond.wait(wait)
                new = self.events[index:]
                index = len(self.events)
                done = self.done
            # doc:begin heartbeat
            if not new and not done:
                waiting = self.pending is not None
                if not waiting and self.deadline is not None and time.time() >= self.deadline:
                    self.fail("DEADLINE_EXCEEDED", "the task's deadline passed before it finished")
                    continue
            # doc:end heartbeat
                seq += 1
                yield _renumbered(pb.TaskEvent(heartbeat=pb.Heartbeat()), task_id, seq)
                continue
            for event in new:
                if replay and event.WhichOneof("event") == "progress":
                    continue
                seq += 1
                yield _renumbered(event, task_id, seq)
            if done:
                return


def _renumbered(event: pb.TaskEvent, task_id: str, seq: int) -> pb.TaskEvent:
    out = pb.TaskEvent()
    out.CopyFrom(event)
    out.task_id = task_id
    out.seq = seq
    if not out.HasField("time"):
        out.time.GetCurrentTime()
    return out


class Table:
    """Tasks by id and by idempotency key, bounded: ended tasks are
    forgotten after `ttl` seconds or when more than `limit` are kept."""

    def __init__(self, limit: int, ttl: float) -> None:
        self.limit = limit
        self.ttl = ttl
        self.lock = threading.Lock()
        self.by_id: OrderedDict[str, Task] = OrderedDict()
        self.by_key: dict[str, Task] = {}

    def get(self, task_id: str) -> Task | None:
        with self.lock:
            return self.by_id.get(task_id)

    def start(
        self, task_id: str, key: str, deadline: float | None, cap: int
    ) -> tuple[Task, bool] | None:
        """The task to show under `task_id`, and whether it is new (to run).
        A key whose task is running or completed is followed; one whose task
        failed runs again. None when `cap` tasks already run."""
        with self.lock:
            self._forget()
            seen = self.by_key.get(key) if key else None
            if seen is not None and seen.state not in (
                pb.TASK_STATE_FAILED,
                pb.TASK_STATE_CANCELED,
                pb.TASK_STATE_REJECTED,
            ):
                self.by_id[task_id] = seen
                return seen, False
            if len({id(t) for t in self.by_id.values() if not t.done}) >= cap:
                return None
            task = Task(task_id, key, deadline)
            self.by_id[task_id] = task
            if key:
                self.by_key[key] = task
            return task, True

    def all_running(self) -> list[Task]:
        with self.lock:
            return list({id(t): t for t in self.by_id.values() if not t.done}.values())

    def _forget(self) -> None:
        now = time.monotonic()
        over = len(self.by_id) - self.limit
        for task_id, task in list(self.by_id.items()):
            if task.ended_at is None:
                continue
            if now - task.ended_at <= self.ttl and over <= 0:
                continue
            del self.by_id[task_id]
            over -= 1
            if task.key and self.by_key.get(task.key) is task:
                del self.by_key[task.key]
