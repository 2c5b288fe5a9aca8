"""The daemon's gRPC API through the official Python client (`grpcio`), as other local tools use it:
channels to `unix:PATH` with the client's own default `:authority` (the percent-encoded socket
path, which h2 alone would refuse) and with a raw path (what grpc-java sends), messages built
at run time from the daemon's server reflection (`grpcio-reflection`), streamed generation that
matches the Rust client's tokens, and errors with their gRPC status.

Usage: grpc_conformance.py SOCKET MODEL EXPECTED_TOKENS_JSON

The Rust test `tests/e2e/daemon.rs` starts the real daemon with a tiny model named MODEL, generates
8 greedy tokens from the prompt tokens [5, 17, 42] with tonic, and passes them here.

Each check is a function named check_*; all run, failures are reported together, and the exit
status is the number of failures (0 = all passed).
"""

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import run  # noqa: E402

SOCKET, MODEL, EXPECTED = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
PROMPT = [5, 17, 42]


def channel(**options):
    ch = grpc.insecure_channel(f"unix:{SOCKET}", options=list(options.items()))
    grpc.channel_ready_future(ch).result(timeout=30)
    return ch


DEFAULT = channel()
POOL = DescriptorPool(ProtoReflectionDescriptorDatabase(DEFAULT))


def message(name):
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(name))


def generate_on(ch):
    method = POOL.FindServiceByName("zeta.mlx.v1.Generation").methods_by_name["Generate"]
    request, event = message_factory.GetMessageClass(method.input_type), message_factory.GetMessageClass(method.output_type)
    return ch.unary_stream(
        "/zeta.mlx.v1.Generation/Generate",
        request_serializer=request.SerializeToString,
        response_deserializer=event.FromString,
    ), request


def greedy(ch, model=MODEL):
    call, request = generate_on(ch)
    req = request(model=model, max_tokens=len(EXPECTED))
    req.prompt_tokens.ids.extend(PROMPT)
    req.sampling.temperature = 0.0
    tokens, kinds = [], []
    for ev in call(req, timeout=120):
        kind = ev.WhichOneof("event")
        kinds.append(kind)
        if kind == "delta":
            tokens.extend(ev.delta.token_ids)
    return tokens, kinds


def check_reflection_lists_the_versioned_services():
    services = ProtoReflectionDescriptorDatabase(DEFAULT).get_services()
    for s in ["zeta.mlx.v1.Generation", "zeta.mlx.v1.Models", "zeta.mlx.v1.Daemon", "grpc.health.v1.Health"]:
        assert s in services, services


def check_health_answers_with_the_default_authority():
    check = DEFAULT.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=message("grpc.health.v1.HealthCheckRequest").SerializeToString,
        response_deserializer=message("grpc.health.v1.HealthCheckResponse").FromString,
    )
    reply = check(message("grpc.health.v1.HealthCheckRequest")(service="zeta.mlx.v1.Generation"), timeout=10)
    assert reply.status == 1, reply  # SERVING


def check_generation_streams_the_rust_clients_tokens():
    # Several calls on one channel: later requests refer to the authority through HPACK's table.
    for _ in range(3):
        tokens, kinds = greedy(DEFAULT)
        assert tokens == EXPECTED, (tokens, EXPECTED)
        assert kinds[0] == "started" and kinds[-1] == "finished", kinds


def check_concurrent_streams_on_one_channel():
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: greedy(DEFAULT)[0], range(4)))
    assert all(r == EXPECTED for r in results), results


def check_a_raw_socket_path_as_authority_works_too():
    ch = channel(**{"grpc.default_authority": SOCKET})
    assert greedy(ch)[0] == EXPECTED


def check_errors_carry_their_grpc_status():
    try:
        greedy(DEFAULT, model="no-such-model")
        raise AssertionError("an unknown model was accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, (e.code(), e.details())
        assert "no-such-model" in e.details(), e.details()


def check_bytes_that_are_no_request_are_an_invalid_argument():
    # Field 3 (prompt, a string) holding bytes that are not UTF-8; then a truncated message.
    raw = DEFAULT.unary_stream("/zeta.mlx.v1.Generation/Generate", request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)
    tokenize = DEFAULT.unary_unary("/zeta.mlx.v1.Models/Tokenize", request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
    for call, body in [(raw, b"\x1a\x04\xff\xfehi"), (raw, b"\x0a\x10ab"), (tokenize, b"\x0a\x05\xff")]:
        try:
            list(call(body, timeout=10)) if call is raw else call(body, timeout=10)
            raise AssertionError(f"{body!r} was accepted")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (body, e.code(), e.details())
            assert "decode" in e.details(), e.details()


def check_a_message_over_the_limit_is_resource_exhausted():
    # gRPC's code for a message too large; OUT_OF_RANGE is this API's prompt over the context.
    big = channel(**{"grpc.max_send_message_length": 80 << 20})
    tokenize = big.unary_unary("/zeta.mlx.v1.Models/Tokenize", request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)
    size = (64 << 20) + 1
    varint = bytearray()
    n = size
    while n >= 0x80:
        varint.append(n & 0x7F | 0x80)
        n >>= 7
    varint.append(n)
    try:
        tokenize(b"\x12" + bytes(varint) + b"a" * size, timeout=60)
        raise AssertionError("a message over 64 MiB was accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (e.code(), e.details())
        assert "too large" in e.details(), e.details()
    big.close()


def check_status_reports_the_loaded_model():
    call = DEFAULT.unary_unary(
        "/zeta.mlx.v1.Daemon/GetStatus",
        request_serializer=message("zeta.mlx.v1.GetStatusRequest").SerializeToString,
        response_deserializer=message("zeta.mlx.v1.DaemonStatus").FromString,
    )
    status = call(message("zeta.mlx.v1.GetStatusRequest")(), timeout=10)
    assert any(e.model == MODEL for e in status.engines), status


run(globals())
