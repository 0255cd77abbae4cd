"""The worker: its wire format treats every byte as hostile, and the sandbox contains what student code does."""
from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from autograder.sandbox import (IsolationError, Limits, Opaque, WorkerCrashed, WorkerPool, WorkerTimeout, detect_level,
                                isolation, seccomp, wire, world_writable_dirs)

pytestmark = pytest.mark.grader

LEVELS = ["bwrap", "rlimits"] if detect_level() == "bwrap" else [detect_level()]
ROOT = Path(__file__).resolve().parent.parent


# --- wire format -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", sorted(wire.DTYPES.values(), key=str))
@pytest.mark.parametrize("shape", [(), (0,), (1,), (2, 3), (1, 0, 2)])
def test_tensors_round_trip_bit_for_bit(dtype, shape):
    original = (torch.randn(shape, dtype=torch.float64) * 3).to(dtype)
    payloads: list[bytes] = []
    back = wire.decode(wire.encode(original, payloads), payloads)
    assert type(back) is torch.Tensor and back.dtype == dtype and back.shape == original.shape
    assert torch.equal(back, original)


@pytest.mark.parametrize("view", [lambda t: t.t(), lambda t: t[::2], lambda t: t.conj(), lambda t: t.expand(3, 4, 4)[1]],
                         ids=["transposed", "strided", "conjugated", "expanded"])
def test_views_round_trip_as_the_values_they_show(view):
    original = view(torch.randn(4, 4, dtype=torch.complex64))
    payloads: list[bytes] = []
    back = wire.decode(wire.encode(original, payloads), payloads)
    assert back.is_contiguous() and torch.equal(back, original.resolve_conj())


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


def test_calls_return_data_and_the_arguments_after_the_call_when_asked(pool):
    with pool.session() as session:
        session.exec_cells([{"id": "cell", "source": "def f(x):\n    x.add_(1)\n    return x * 2"}])
        asked = session.call("f", [torch.zeros(2)], {}, args_after=True)
        plain = session.call("f", [torch.zeros(2)], {})
    assert torch.equal(asked.value, torch.full((2,), 2.0)) and torch.equal(asked.args_after[0], torch.ones(2))
    assert torch.equal(plain.value, asked.value) and plain.args_after == [], "no bytes spent on what nobody reads"


BATCHED = """
import os, time
def f(x, burn=0.0):
    end = time.process_time() + burn
    while time.process_time() < end:
        pass
    if x == 2:
        raise ValueError('two')
    if x == 3:
        os._exit(3)
    while x == 5:
        pass
    return x * 10
"""


def batch(pool: WorkerPool, *calls: tuple) -> list:
    """Results of `f(*args)` for each args in `calls`, made in one batch; a WorkerError ends the list with it."""
    results = []
    with pool.session() as session:
        session.exec_cells([{"id": "cell", "source": BATCHED}])
        try:
            for result in session.batch([("call", ("f", list(args), {}), {}) for args in calls]):
                results.append(result)
        except (WorkerCrashed, WorkerTimeout) as error:
            results.append(error)
    return results


def test_a_batch_answers_every_call_in_order_each_within_its_own_cpu_limit(pool):
    # Three calls of 0.8 s of CPU: together over the 2 s a call may take, each well within it.
    results = batch(pool, (0, 0.8), (1, 0.8), (2,), (4, 0.8))
    assert [r.value if r.ok else r.error_type for r in results] == [0, 10, "ValueError", 40]


@pytest.mark.parametrize("stopping, error", [(3, "exited with status 3"), (5, "timed out after 2 s of CPU time")])
def test_a_call_that_kills_or_hangs_the_worker_in_a_batch_is_reported_at_that_call(pool, stopping, error):
    results = batch(pool, (1,), (stopping,), (4,))
    assert results[0].value == 10 and len(results) == 2 and error in str(results[1])


LATE_BACKWARD = """
import torch
def forward(x):
    global leaf, out
    leaf = x.clone().requires_grad_()
    out = double(leaf)
    return out.detach()
def backward():
    (3 * out).sum().backward()
    return leaf.grad
"""


def test_a_backward_pass_through_a_stand_in_after_its_request_ended_gets_the_gradient_all_the_same(pool):
    # The grader drops the graphs it kept for a request once it answers it: the backward pass made in a later
    # request sends the stand-in's arguments again.
    with pool.session() as session:
        session.exec_cells([{"id": "cell", "source": LATE_BACKWARD}])
        session.trust({"double": lambda x: 2 * x})
        assert torch.equal(session.call("forward", [torch.ones(3)], {}).value, torch.full((3,), 2.0))
        assert torch.equal(session.call("backward", [], {}).value, torch.full((3,), 6.0))


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


def test_no_network_and_a_read_only_root(pool):
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


# --- one submission cannot reach the next, and is stopped whole ---------------------------------------

WRITE = """
import os
def write(places, name):
    done = []
    for place in places:
        try:
            with open(os.path.join(place, name), 'w') as handle:
                handle.write('answers for the next submission')
            done.append(os.path.abspath(os.path.join(place, name)))
        except OSError:
            pass
    return done
"""


def test_nothing_one_submission_writes_is_seen_by_the_next(pool):
    if pool.level == "unprotected":
        pytest.skip("the unprotected level shares the grading user's files")
    name = f"answers-{time.monotonic_ns()}.txt"
    written = run(pool, WRITE, "write", ["/tmp", "/var/tmp", "/dev/shm", "/run/lock", "."], name).value
    assert written  # at least its own working folder
    seen = run(pool, "import os\ndef read(paths):\n    return [p for p in paths if os.path.exists(p)]", "read",
               written).value
    assert seen == []


def test_no_host_folder_anyone_may_write_to_keeps_what_a_submission_wrote(pool):
    if pool.level == "unprotected":
        pytest.skip("the unprotected level shares the grading user's files")
    name = f"left-behind-{time.monotonic_ns()}"
    places = list(world_writable_dirs())
    run(pool, WRITE, "write", places, name)
    assert [p for p in places if os.path.exists(os.path.join(p, name))] == []


def _processes_named(name: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and open(f"/proc/{entry}/comm").read().strip() == name:
                found.append(int(entry))
        except OSError:
            pass
    return found


CHAIN = """
import ctypes, os, time
def start(name):
    if os.fork() == 0:
        try:
            ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME, inherited by every generation
            while True:
                time.sleep(0.01)
                if os.fork() > 0:
                    os._exit(0)  # the parent leaves, its child carries on: a chain that keeps re-growing
        finally:
            os._exit(0)
    return 1
"""


def test_a_process_chain_that_keeps_regrowing_is_killed_whole(pool):
    name = f"chain{time.monotonic_ns() % 10**9}"
    with pool.session() as session:
        session.exec_cells([{"id": "chain", "source": CHAIN}])
        assert session.call("start", [name], {}).value == 1
        time.sleep(1.0)  # about 100 generations: more than any fixed number of cleanup rounds
        assert _processes_named(name)
    time.sleep(0.5)
    assert _processes_named(name) == []
    assert run(pool, "def g():\n    return 4", "g").value == 4


@pytest.fixture(scope="module", params=LEVELS)
def tight(request):
    """A pool with small per-submission budgets."""
    limits = Limits(call_cpu_s=3.0, submission_cpu_s=4, memory_bytes=3 * 2**29)
    with WorkerPool(level=request.param, limits=limits) as pool:
        yield pool


def test_a_sleeping_submission_is_stopped_at_its_wall_budget_during_a_check(tight):
    with tight.session(deadline=time.monotonic() + 2) as session:
        session.exec_cells([{"id": "nap", "source": "import time\ndef f():\n    time.sleep(1)\n    return 1"}])
        with pytest.raises(WorkerTimeout, match="used up its .* wall-clock budget"):
            for _ in range(5):  # each call is well within the per-call limits; only the budget stops it
                session.call("f", [], {})
        with pytest.raises(WorkerCrashed, match="wall-clock budget"):
            session.call("f", [], {})


BURN = """
import os, time
def burn(seconds):
    if os.fork() == 0:
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass
        os._exit(0)
    os.wait()
    return 1
"""


def test_the_cpu_budget_counts_child_processes(tight):
    with tight.session() as session:
        session.exec_cells([{"id": "burn", "source": BURN}])
        with pytest.raises(WorkerTimeout, match="budget of 4 s of CPU time"):
            for _ in range(4):  # 1.5 s per call, each in a child: under the per-call limit, over the budget
                session.call("burn", [1.5], {})


HOG = """
import os, time
def hog(children, mib):
    for _ in range(children):
        if os.fork() == 0:
            block = b'x' * (mib * 2**20)
            time.sleep(60)
            os._exit(0)
    time.sleep(60)
"""


def test_the_memory_budget_counts_child_processes(tight):
    # Four children of 400 MiB: each far below the 1.5 GiB budget, together above it.
    with tight.session() as session:
        session.exec_cells([{"id": "hog", "source": HOG}])
        with pytest.raises(WorkerCrashed, match="processes together used more than 1.5 GiB"):
            session.call("hog", [4, 400], {})


def test_submissions_run_without_privileges(pool):
    status = run(pool, "def f():\n    return open('/proc/self/status').read()", "f").value
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["NoNewPrivs"] == "1" and int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0
    assert fields["Seccomp"] == ("2" if seccomp.supported() else "0")
    if pool.level != "unprotected":
        assert fields["Uid"].split()[0] != "0"


def test_no_nested_namespaces_or_root(pool):
    result = run(pool, "import subprocess\ndef f():\n    return subprocess.run(['unshare', '-Urn', 'id', '-u'], "
                       "capture_output=True, text=True).returncode", "f")
    assert result.value != 0


@pytest.mark.skipif("bwrap" not in LEVELS, reason="needs bubblewrap")
def test_bwrap_itself_disables_user_namespaces():
    """Without the seccomp filter (not loaded here), bubblewrap alone refuses `unshare -Urn`."""
    launch = isolation.Launch("bwrap", tmp_bytes=1 << 20)
    try:
        result = subprocess.run(launch.wrap(["unshare", "-Urn", "true"]), capture_output=True, text=True, timeout=60)
    finally:
        launch.cleanup()
    assert result.returncode != 0 and "unshare failed" in result.stderr


def test_proc_shows_only_the_submission(pool):
    if pool.level not in ("bwrap", "rlimits"):
        pytest.skip("only levels with a pid namespace per submission")
    pids = run(pool, "import os\ndef f():\n    return [int(p) for p in os.listdir('/proc') if p.isdigit()]", "f").value
    assert sorted(pids) == [1, 2]  # the namespace's pid 1, which only waits, and the submission


def test_the_uid_level_refuses_references_others_may_read(monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    folder = Path(__import__("tempfile").mkdtemp(dir="/run"))
    try:
        (folder / "attention.py").write_text("def reference(): ...")
        os.chmod(folder, 0o755)
        monkeypatch.setattr(isolation, "reference_paths", lambda: [folder])
        with pytest.raises(IsolationError, match="chmod go-rwx"):
            isolation.check_references(POOL_UID)
        isolation.protect_references()
        isolation.check_references(POOL_UID)
    finally:
        shutil.rmtree(folder)


POOL_UID = 200_001  # any unprivileged user id: what matters is that it is not the files' owner

IN_THE_CONTAINER = """
import json, sys
from autograder.sandbox import WorkerPool, detect_level, reference_paths
from autograder.cli import main
level = detect_level()
reference = str(reference_paths()[0] / 'attention.py')
with WorkerPool() as pool, pool.session() as session:
    session.exec_cells([{'id': 'spy', 'source': 'import socket\\ndef spy(p):\\n    return open(p).read()\\n'
                         'def net():\\n    socket.socket(socket.AF_INET)'}])
    spied, net = session.call('spy', [reference], {}), session.call('net', [], {})
code = main(['grade', 'attention', *sys.argv[1:3], '--out', sys.argv[3]])
print(json.dumps({'level': level, 'spied': spied.ok, 'spy_error': spied.error_type, 'net': net.ok, 'exit': code}))
"""


@pytest.mark.xdist_group("release")  # shares the released notebooks with the grading tests
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_in_a_container_without_cap_sys_admin_the_uid_level_grades_and_hides_the_references(attention_samples,
                                                                                             tmp_path):
    notebooks = [attention_samples / name / "attention" / "attention.ipynb"
                 for name in ("reference", "mask_hides_diagonal")]
    process = subprocess.Popen(["unshare", "--mount", "--propagation", "private", sys.executable,
                                str(ROOT / "tests" / "unprivileged_container.py"), sys.executable, "-c",
                                IN_THE_CONTAINER, *map(str, notebooks), str(tmp_path / "out")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        stdout, stderr = process.communicate(timeout=600)
    finally:
        process.kill()
        shutil.rmtree(f"/run/autograder-container-{process.pid}", ignore_errors=True)
    assert process.returncode == 0, stderr[-3000:]
    seen = json.loads(stdout.strip().splitlines()[-1])
    assert seen == {"level": "uid", "spied": False, "spy_error": "PermissionError", "net": False, "exit": 0}
    reference = json.loads((tmp_path / "out" / "reference.json").read_text())
    wrong = json.loads((tmp_path / "out" / "mask_hides_diagonal.json").read_text())
    assert reference["score"] == sum(t["max_score"] for t in reference["tests"]) > wrong["score"]
    assert reference["extra_data"]["isolation"] == "uid"


# --- a grader installed under a folder each submission gets fresh ---------------------------------------

KEPT_PROBE = """
import sys
from autograder.sandbox import WorkerPool
with WorkerPool(level=sys.argv[1]) as pool, pool.session() as session:
    cell = session.exec_cells([{"id": "probe", "source": "import hypothesis"}])[0]
print("imported" if cell.ok else cell.error)
"""


@pytest.mark.parametrize("level", LEVELS)
def test_a_grader_whose_environment_lives_under_tmp_still_imports_from_it(tmp_path, level):
    """CI may clone the project under /tmp: each submission's fresh /tmp must not hide the environment the
    worker imports from (a module the fork server did not import loads from it long after the start)."""
    os.chmod(tmp_path, 0o755)  # the pool's users must be able to reach it, as they reach a clone
    venv = tmp_path / "venv"
    venv.symlink_to(sys.prefix)   # the project's environment, as a path under /tmp
    run = subprocess.run([str(venv / "bin" / "python"), "-c", KEPT_PROBE, level], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert run.stdout.strip().endswith("imported"), run.stdout + run.stderr
