"""The agent as a caller sees it: a real gRPC server on a loopback port."""

from __future__ import annotations

import json
import time
from concurrent import futures

import grpc
import pytest
from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from agentmesh_forecast import skill
from agentmesh_forecast.protos import pb, registry, registry_rpc
from agentmesh_forecast.registration import Registration


def request(task_id: str, given: dict, key: str = "", deadline_s: float = 30.0, **extra):
    s = struct_pb2.Struct()
    s.update(given)
    deadline = timestamp_pb2.Timestamp()
    deadline.FromNanoseconds(int((time.time() + deadline_s) * 1e9))
    beat = duration_pb2.Duration()
    beat.FromMilliseconds(100)
    return pb.ExecuteTaskRequest(
        task_id=task_id,
        run_id="run-1",
        skill_id=extra.pop("skill_id", skill.SKILL_ID),
        input=s,
        idempotency_key=key,
        attempt=1,
        deadline=deadline,
        heartbeat_interval=beat,
        **extra,
    )


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)
    assert status is not None, "the status carries no details"
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError("no ErrorInfo among the details")


def kinds(events):
    return [e.WhichOneof("event") for e in events]


def test_card_names_the_skill_with_schemas(agent):
    card = agent.GetAgentCard(pb.GetAgentCardRequest()).card
    assert card.name == "forecast" and card.protocol_version == "agentmesh.v1"
    [s] = card.skills
    assert s.id == "forecast.revenue"
    assert list(s.consumes) == ["sales.dataset"] and list(s.produces) == ["sales.forecast"]
    assert "forecast" in s.tags
    assert s.planning.future_periods and s.planning.full_history
    assert dict(s.planning.upstream_input)["group_by"] == ["month"]
    assert json.loads(s.examples[1]) == skill.example_input()


def test_a_forecast_streams_its_result_and_chart(agent):
    events = list(agent.ExecuteTask(request("t1", skill.example_input())))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert all(e.task_id == "t1" for e in events)
    assert kinds(events)[:2] == ["status", "status"]
    assert kinds(events)[-2:] == ["result", "status"]
    final = events[-1].status
    assert final.final and final.state == pb.TASK_STATE_COMPLETED
    result = events[-2].result
    out = json_format.MessageToDict(result.output)
    assert out["horizon"] == 3
    forecast = out["forecast"]
    assert [p["month"] for p in forecast] == ["2025-01", "2025-02", "2025-03"]
    for p in forecast:
        assert p["lower"] <= p["revenue"] <= p["upper"]
    chunks = [e.artifact_chunk for e in events if e.HasField("artifact_chunk")]
    assert list(result.artifact_ids) == ["revenue_forecast"]
    assert chunks[0].media_type == "image/svg+xml" and chunks[-1].last_chunk
    svg = b"".join(c.data for c in chunks)
    assert svg.startswith(b"<svg") and b"Revenue forecast" in svg
    assert chunks[0].metadata["alt_text"].startswith("Monthly revenue")


@pytest.mark.parametrize(
    "given, field",
    [
        ({}, "input"),
        ({"dataset": {"rows": []}, "surprise": 1}, "input"),
        ({"dataset": {"rows": [{"month": "2024-13", "revenue": 1}]}}, "dataset.rows.0.month"),
        ({**skill.example_input(), "horizon": 40}, "horizon"),
    ],
)
def test_input_outside_the_schema_is_refused_with_the_field(agent, given, field):
    with pytest.raises(grpc.RpcError) as e:
        list(agent.ExecuteTask(request("bad", given)))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(e.value)
    assert (info.domain, info.reason, info.metadata["field"]) == ("agentmesh", "INVALID_INPUT", field)


def test_a_history_the_model_cannot_use_fails_the_task_with_why(agent):
    rows = skill.example_input()["dataset"]["rows"][:6]
    events = list(agent.ExecuteTask(request("short", {"dataset": {"rows": rows}})))
    failure = events[-2].failure
    assert failure.reason == "INVALID_INPUT" and "at least 12" in failure.message
    assert events[-1].status.state == pb.TASK_STATE_FAILED


def test_an_unknown_skill_is_refused(agent):
    with pytest.raises(grpc.RpcError) as e:
        list(agent.ExecuteTask(request("u", {}, skill_id="sales.extract")))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(e.value).reason == "UNKNOWN_SKILL"


def test_heartbeats_while_waiting_then_cancel_ends_the_stream(make_agent):
    _, stub, _ = make_agent(fault_delay_ms=10_000)
    stream = stub.ExecuteTask(request("slow", skill.example_input()))
    seen = []
    for event in stream:
        seen.append(event)
        if kinds(seen).count("heartbeat") == 3:
            assert stub.CancelTask(pb.CancelTaskRequest(task_id="slow")).state == pb.TASK_STATE_CANCELED
    assert seen[-1].status.state == pb.TASK_STATE_CANCELED and seen[-1].status.final
    assert seen[-2].failure.reason == "CANCELED"
    again = stub.CancelTask(pb.CancelTaskRequest(task_id="slow"))
    assert again.state == pb.TASK_STATE_CANCELED


def answer(task_id: str, input_id: str, value: dict):
    s = struct_pb2.Struct()
    s.update(value)
    return pb.AgentServiceProvideInputRequest(
        task_id=task_id, answer=pb.InputAnswer(input_id=input_id, answer=s)
    )


def test_without_a_horizon_the_task_asks_and_goes_on_when_answered(make_agent):
    # A short deadline: it must not run while the task waits for a person.
    _, stub, _ = make_agent(ask_horizon=True)
    given = {k: v for k, v in skill.example_input().items() if k != "horizon"}
    stream = stub.ExecuteTask(request("asks", given, deadline_s=1.0))
    seen = []
    for event in stream:
        seen.append(event)
        if event.WhichOneof("event") == "status" and event.status.state == pb.TASK_STATE_INPUT_REQUIRED:
            asked = event.status.input
            assert asked.input_id == "horizon"
            assert "months" in asked.question
            schema = json_format.MessageToDict(asked.answer_schema)
            assert schema["properties"]["horizon"]["maximum"] == 12
            # Heartbeats go on while it waits, past the task's deadline.
            while kinds(seen).count("heartbeat") < 12:
                seen.append(next(stream))
            # Outside the schema: refused, naming the field.
            with pytest.raises(grpc.RpcError) as bad:
                stub.ProvideInput(answer("asks", "horizon", {"horizon": 40}))
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error_info(bad.value).metadata["field"] == "answer.horizon"
            # Not the question it asked.
            with pytest.raises(grpc.RpcError) as other:
                stub.ProvideInput(answer("asks", "level", {"level": 0.8}))
            assert other.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error_info(other.value).reason == "NOT_WAITING"
            stub.ProvideInput(answer("asks", "horizon", {"horizon": 6}))
    assert seen[-1].status.state == pb.TASK_STATE_COMPLETED, seen[-3:]
    states = [e.status.state for e in seen if e.WhichOneof("event") == "status"]
    assert states.index(pb.TASK_STATE_INPUT_REQUIRED) < len(states) - 2
    assert pb.TASK_STATE_WORKING in states[states.index(pb.TASK_STATE_INPUT_REQUIRED):]
    result = next(e.result for e in seen if e.WhichOneof("event") == "result")
    assert len(json_format.MessageToDict(result.output)["forecast"]) == 6
    # Answered already: a second answer is refused.
    with pytest.raises(grpc.RpcError) as again:
        stub.ProvideInput(answer("asks", "horizon", {"horizon": 6}))
    assert error_info(again.value).reason == "NOT_WAITING"


def test_an_answer_an_earlier_attempt_got_is_used_without_asking(make_agent):
    _, stub, _ = make_agent(ask_horizon=True)
    given = {k: v for k, v in skill.example_input().items() if k != "horizon"}
    s = struct_pb2.Struct()
    s.update({"horizon": 2})
    events = list(
        stub.ExecuteTask(
            request("carried", given, answers=[pb.InputAnswer(input_id="horizon", answer=s)])
        )
    )
    states = [e.status.state for e in events if e.WhichOneof("event") == "status"]
    assert pb.TASK_STATE_INPUT_REQUIRED not in states
    result = next(e.result for e in events if e.WhichOneof("event") == "result")
    assert len(json_format.MessageToDict(result.output)["forecast"]) == 2


def test_a_task_cancelled_while_it_waits_ends_canceled(make_agent):
    _, stub, _ = make_agent(ask_horizon=True)
    given = {k: v for k, v in skill.example_input().items() if k != "horizon"}
    stream = stub.ExecuteTask(request("dropped", given))
    seen = []
    for event in stream:
        seen.append(event)
        if event.WhichOneof("event") == "status" and event.status.state == pb.TASK_STATE_INPUT_REQUIRED:
            stub.CancelTask(pb.CancelTaskRequest(task_id="dropped"))
    assert seen[-1].status.state == pb.TASK_STATE_CANCELED


def test_a_deadline_passing_mid_task_fails_it(make_agent):
    _, stub, _ = make_agent(fault_delay_ms=10_000)
    events = list(stub.ExecuteTask(request("late", skill.example_input(), deadline_s=0.5)))
    assert events[-2].failure.reason == "DEADLINE_EXCEEDED"
    assert events[-1].status.state == pb.TASK_STATE_FAILED


def test_the_same_key_follows_a_running_task_and_replays_a_finished_one(make_agent):
    _, stub, _ = make_agent(fault_delay_ms=600)
    given = skill.example_input()
    first = stub.ExecuteTask(request("a1", given, key="k"))
    next(first)  # the task is running
    follower = list(stub.ExecuteTask(request("a2", given, key="k")))
    rest = list(first)
    assert follower[-1].status.state == rest[-1].status.state == pb.TASK_STATE_COMPLETED
    assert follower[-2].result == rest[-2].result
    assert all(e.task_id == "a2" for e in follower)
    replay = list(stub.ExecuteTask(request("a3", given, key="k")))
    assert replay[-2].result == rest[-2].result
    assert [e.seq for e in replay] == list(range(1, len(replay) + 1))


def test_past_the_concurrency_cap_a_task_is_refused(make_agent):
    _, stub, _ = make_agent(fault_delay_ms=5_000, max_concurrency=1)
    first = stub.ExecuteTask(request("c1", skill.example_input()))
    next(first)
    with pytest.raises(grpc.RpcError) as e:
        list(stub.ExecuteTask(request("c2", skill.example_input())))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(e.value).metadata["limit"] == "max_concurrency"
    first.cancel()


def test_draining_turns_health_off_and_refuses_new_tasks(make_agent):
    server, stub, channel = make_agent()
    health = health_pb2_grpc.HealthStub(channel)
    check = lambda: health.Check(health_pb2.HealthCheckRequest(service="agentmesh.v1.AgentService")).status
    assert check() == health_pb2.HealthCheckResponse.SERVING
    for name in ("", "agentmesh.v1.AgentService"):
        server.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    server.agent.drain()
    assert check() == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(grpc.RpcError) as e:
        list(stub.ExecuteTask(request("d", skill.example_input())))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(e.value).reason == "AGENT_UNAVAILABLE"


class _Registry(registry_rpc.RegistryServiceServicer):
    """A registry that forgets the first lease after one renewal."""

    def __init__(self):
        self.calls: list[str] = []
        self.addresses: list[str] = []
        self.leases = 0

    def Register(self, request, context):
        self.calls.append("register")
        self.addresses.append(request.address)
        self.leases += 1
        lease = duration_pb2.Duration()
        lease.FromMilliseconds(300)
        return registry.RegisterResponse(lease_id=f"lease-{self.leases}", lease=lease)

    def RenewLease(self, request, context):
        self.calls.append("renew")
        if request.lease_id == "lease-1" and self.calls.count("renew") > 1:
            context.abort(grpc.StatusCode.NOT_FOUND, "expired")
        lease = duration_pb2.Duration()
        lease.FromMilliseconds(300)
        return registry.RenewLeaseResponse(lease=lease)

    def Deregister(self, request, context):
        self.calls.append(f"deregister {request.lease_id}")
        return registry.DeregisterResponse()


def test_registration_renews_registers_again_when_lost_and_deregisters():
    fake = _Registry()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    registry_rpc.add_RegistryServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        reg = Registration(f"127.0.0.1:{port}", "127.0.0.1:50061", lease_ms=300)
        reg.start()
        deadline = time.time() + 5
        while fake.leases < 2 and time.time() < deadline:
            time.sleep(0.05)
        reg.stop()
    finally:
        server.stop(0)
    assert fake.addresses[0] == "http://127.0.0.1:50061"
    assert fake.calls[:3] == ["register", "renew", "renew"]
    assert fake.leases >= 2, fake.calls
    assert fake.calls[-1] == "deregister lease-2"
