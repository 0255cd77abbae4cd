"""The worker: its wire format treats every byte as hostile, and the sandbox contains what student code does."""
from __future__ import annotations

import json
import os
import socket
import struct
import time

import pytest
import torch

from autograder.sandbox import Limits, Opaque, WorkerCrashed, WorkerPool, WorkerTimeout, detect_level, wire

pytestmark = pytest.mark.grader

LEVELS = ["bwrap", "rlimits"] if detect_level() == "bwrap" else [detect_level()]


# --- wire format -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", sorted(wire.DTYPES.values(), key=str))
@pytest.mark.parametrize("shape", [(), (0,), (1,), (2, 3), (1, 0, 2)])
def test_tensors_round_trip_bit_for_bit(dtype, shape):
    original = (torch.randn(shape, dtype=torch.float64) * 3).to(dtype)
    payloads: list[bytes] = []
    back = wire.decode(wire.encode(original, payloads), payloads)
    assert type(back) is torch.Tensor and back.dtype == dtype and back.shape == original.shape
    assert torch.equal(back, original)


def test_nested_values_round_trip():
    value = (1, 2.5, float("nan"), None, True, "text", [torch.ones(2)], {"a": torch.zeros(1)}, torch.bfloat16)
    payloads: list[bytes] = []
    back = wire.decode(wire.encode(value, payloads), payloads)
    assert back[:2] == (1, 2.5) and back[2] != back[2] and back[3:6] == (None, True, "text")
    assert torch.equal(back[6][0], torch.ones(2)) and torch.equal(back[7]["a"], torch.zeros(1))
    assert back[8] is torch.bfloat16


class LyingTensor(torch.Tensor):
    def __eq__(self, other):
        return True


class AlwaysEqual:
    def __eq__(self, other):
        return True


@pytest.mark.parametrize("value, words", [
    (torch.ones(2).as_subclass(LyingTensor), "subclass of torch.Tensor"),
    (torch.nn.Parameter(torch.ones(2)), "subclass of torch.Tensor"),
    (AlwaysEqual(), "an object of type"),
    (torch.ones(2).numpy(), "numpy.ndarray"),
])
def test_anything_but_a_plain_tensor_becomes_opaque(value, words):
    payloads: list[bytes] = []
    back = wire.decode(wire.encode(value, payloads), payloads)
    assert isinstance(back, Opaque) and words in back.why


@pytest.mark.parametrize("tree, payloads, words", [
    ({"t": "tensor", "payload": 0, "dtype": "float32", "shape": [2]}, [b"1234"], "needs 8 bytes"),
    ({"t": "tensor", "payload": 0, "dtype": "object", "shape": [1]}, [b"1234"], "unknown dtype"),
    ({"t": "tensor", "payload": 3, "dtype": "float32", "shape": [1]}, [b"1234"], "out of range"),
    ({"t": "tensor", "payload": 0, "dtype": "float32", "shape": [2**40]}, [b""], "malformed shape"),
    ({"t": "pickle", "v": "cos\nsystem\n"}, [], "unknown value kind"),
    ({"t": "int", "v": "3"}, [], "malformed int"),
    ("not a dict", [], "malformed value"),
])
def test_decoder_rejects_malformed_values(tree, payloads, words):
    with pytest.raises(wire.ProtocolError, match=words):
        wire.decode(tree, payloads)


@pytest.mark.parametrize("raw, words", [
    (struct.pack(">Q", 2**40), "over the"),
    (struct.pack(">Q", 5) + b"nope!", "not JSON"),
    (struct.pack(">Q", 2) + b"{}", "payload sizes"),
    (struct.pack(">Q", 17) + b'{"sizes": [2**9]}', "not JSON"),
])
def test_framing_rejects_garbage(raw, words):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(raw)
        theirs.shutdown(socket.SHUT_WR)
        with pytest.raises(wire.ProtocolError, match=words):
            wire.receive(ours)


# --- the worker ----------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=LEVELS)
def pool(request):
    with WorkerPool(level=request.param, limits=Limits(call_cpu_s=2.0)) as pool:
        yield pool


def run(pool: WorkerPool, source: str, call: str | None = None, *args):
    """Run `source` as one cell in a fresh session; then call `call(*args)` if given."""
    with pool.session() as session:
        cells = session.exec_cells([{"id": "cell", "source": source}])
        return cells[0] if call is None else session.call(call, list(args), {})


def test_cells_run_in_order_and_an_error_does_not_stop_the_next(pool):
    with pool.session() as session:
        results = session.exec_cells([{"id": "a", "source": "x = 1\nprint('hello')"},
                                      {"id": "b", "source": "1 / 0"},
                                      {"id": "c", "source": "%matplotlib inline\ndef y():\n    return x + 1"}])
        assert [r.ok for r in results] == [True, False, True]
        assert results[0].stdout == "hello\n" and "ZeroDivisionError" in results[1].error
        assert session.call("y", [], {}).value == 2


def test_calls_return_data_and_the_arguments_after_the_call(pool):
    result = run(pool, "def f(x):\n    x.add_(1)\n    return x * 2", "f", torch.zeros(2))
    assert torch.equal(result.value, torch.full((2,), 2.0)) and torch.equal(result.args_after[0], torch.ones(2))


@pytest.mark.parametrize("body, error", [
    ("raise ValueError('bad size')", "ValueError"),
    ("raise SystemExit(1)", "SystemExit"),
    ("raise KeyboardInterrupt", "KeyboardInterrupt"),
])
def test_exceptions_are_reported_not_obeyed(pool, body, error):
    result = run(pool, f"def f():\n    {body}", "f")
    assert not result.ok and result.error_type == error


@pytest.mark.parametrize("body", ["while True: pass", "torch.ones(3000, 3000) @ torch.ones(3000, 3000)\n"
                                  "    while True: torch.ones(3000, 3000) @ torch.ones(3000, 3000)"])
def test_busy_loops_time_out_on_cpu_time(pool, body):
    with pytest.raises(WorkerTimeout, match="timed out after 2 s of CPU time"):
        run(pool, f"import torch\ndef f():\n    {body}", "f")
    assert run(pool, "def g():\n    return 1", "g").value == 1  # the pool still works


def test_sleeping_times_out_on_the_wall_clock(pool):
    with pytest.raises(WorkerTimeout, match="without answering"):
        run(pool, "import time\ndef f():\n    time.sleep(60)", "f")


@pytest.mark.parametrize("body, words", [
    ("import os; os._exit(3)", "exited with status 3"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "killed by SIGKILL"),
])
def test_crashes_are_reported_in_plain_words(pool, body, words):
    with pytest.raises(WorkerCrashed, match=words):
        run(pool, f"def f():\n    {body}", "f")


def test_memory_bombs_fail_inside_the_worker(pool):
    result = run(pool, "def f():\n    return bytearray(64 * 2**30)", "f")
    assert not result.ok and result.error_type == "MemoryError"


def test_big_files_are_cut_off(pool):
    result = run(pool, "def f():\n    open('big', 'wb').write(b'x' * 2**26)", "f")
    assert not result.ok and result.error_type in ("OSError", "MemoryError")


def test_output_floods_are_truncated(pool):
    cell = run(pool, "for _ in range(100000): print('spam' * 10)")
    assert cell.ok and len(cell.stdout) < 20000 and "more characters not shown" in cell.stdout


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and marker.encode() in open(f"/proc/{entry}/environ", "rb").read():
                found.append(int(entry))
        except OSError:
            pass
    return found


def test_forked_children_do_not_survive_the_session(pool):
    marker = f"LEFTOVER_{os.getpid()}_{time.monotonic_ns()}"
    with pool.session() as session:
        session.exec_cells([{"id": "fork", "source": "import os\nfor _ in range(3):\n    if os.fork() == 0:\n"
                                                      "        os.setsid()\n        if os.fork() == 0:\n"
                                                      f"            os.execve('/bin/sleep', ['sleep', '600'], {{'{marker}': '1'}})\n"
                                                      "        os._exit(0)"}])
        time.sleep(0.3)
        assert len(_processes_with(marker)) >= 3
    assert _processes_with(marker) == []


def test_the_fork_server_survives_a_child_that_kills_it(pool):
    with pytest.raises(Exception):
        run(pool, "import os, signal\ndef f():\n    os.kill(os.getppid(), signal.SIGKILL)\n    os._exit(0)", "f")
    assert run(pool, "def g():\n    return 2", "g").value == 2


def test_grader_environment_is_invisible():
    os.environ["AUTOGRADER_TEST_SECRET"] = "hunter2"
    try:
        with WorkerPool() as fresh:
            seen = run(fresh, "import json, os\ndef f():\n    return json.dumps(dict(os.environ))", "f").value
    finally:
        del os.environ["AUTOGRADER_TEST_SECRET"]
    assert "hunter2" not in seen and "AUTOGRADER_TEST_SECRET" not in json.loads(seen)


def test_references_cannot_be_imported_or_read(pool):
    assert "solutions" in run(pool, "import solutions").error
    read = run(pool, "def f(p):\n    return open(p).read()", "f", str(__import__("solutions").__path__[0]) + "/attention.py")
    assert not read.ok


@pytest.mark.skipif("bwrap" not in LEVELS, reason="needs bubblewrap")
def test_bwrap_level_has_no_network_and_a_read_only_root():
    with WorkerPool(level="bwrap") as pool:
        net = run(pool, "import socket\ndef f():\n    socket.create_connection(('127.0.0.1', 22), timeout=2)", "f")
        assert not net.ok
        write = run(pool, "def f():\n    open('/etc/forged', 'w')", "f")
        assert not write.ok


def test_two_pools_work_side_by_side():
    with WorkerPool(limits=Limits()) as first, WorkerPool(limits=Limits()) as second:
        assert run(first, "def f():\n    return 1", "f").value == 1
        assert run(second, "def f():\n    return 2", "f").value == 2


def test_a_student_writing_garbage_to_the_channel_only_breaks_their_session(pool):
    source = ("import os, socket\ndef f():\n    for fd in range(3, 20):\n        try:\n"
              "            os.write(fd, b'\\xff' * 64)\n        except OSError:\n            pass\n    return 1")
    try:
        run(pool, source, "f")
    except Exception as error:  # noqa: BLE001 - either a protocol error or a crash is acceptable
        assert "worker" in str(error)
    assert run(pool, "def g():\n    return 3", "g").value == 3
