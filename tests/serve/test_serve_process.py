"""``unigen serve`` as a real process: start-up errors are one line and exit 2 before anything says it is
serving, and a 50 MB chunked body is refused with 413 without the server's memory growing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import unigen

SRC = str(Path(unigen.__file__).resolve().parents[1])


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unigen", "serve", *args], capture_output=True, text=True,
                          env=_env(), timeout=120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "serving" not in result.stdout and result.stdout == ""
    assert result.stderr.startswith("unigen: error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def test_a_port_in_use_is_one_line_before_serving(folders):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        err = one_line(serve(str(folders[1]["onnx"]), "--port", str(port)))
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--max-texts", "0"], "argument --max-texts: must be at least 1, got 0"),
    (["--max-chars", "-5"], "argument --max-chars: must be at least 1, got -5"),
    (["--port", "70000"], "argument --port: 70000 is not a port number"),
    (["--host", "no-such-host.invalid"], "--host no-such-host.invalid: not an address of this machine"),
    (["--device", "foo"], "--device foo"),
    (["--precision", "bf16"], "--precision bf16: {model} is an ONNX export, which runs in float32 only"),
    (["--precision", "fp16"], "argument --precision: invalid choice: 'fp16'"),
])
def test_bad_start_up_arguments_are_one_line(folders, args, message):
    err = one_line(serve(str(folders[1]["onnx"]), "--port", "0", *args))
    assert message.format(model=folders[1]["onnx"]) in err, err


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _post(port: int, chunks, *, chunked: bool = True) -> tuple[int, bytes]:
    """POST /predict over a raw socket, the body sent in chunked transfer encoding while the server may
    answer early; returns (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for chunk in chunks:
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the whole body was sent
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                lengths = [h.split(b":")[1] for h in head.split(b"\r\n")
                           if h.lower().startswith(b"content-length:")]
                if lengths and len(body) >= int(lengths[0]):
                    break
        except ConnectionResetError:
            pass
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc for VmHWM")
def test_a_50_mb_chunked_body_is_refused_and_memory_stays_flat(folders):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "unigen", "serve", str(folders[1]["onnx"]), "--port",
                             str(port), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving onnx model") and f":{port}/" in line, (line, proc.stderr.read())
        deadline = time.monotonic() + 60
        while True:  # warm up: a normal request, so the baseline includes a request's working memory
            try:
                status, body = _post(port, [b'{"texts": ["the movie was really good", "awful"]}'])
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert status == 200 and json.loads(body)["predictions"][0]["label"] == "positive"
        before = _vm_hwm_kib(proc.pid)
        block = b" " * (1 << 20)
        status, body = _post(port, [b'{"text": "good"'] + [block] * 50 + [b"}"])
        after = _vm_hwm_kib(proc.pid)
        assert status == 413 and b"too large" in body, body
        print(f"VmHWM {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB")
        assert after - before < 20 * 1024, f"VmHWM grew by {(after - before) / 1024:.1f} MiB"
        status, _ = _post(port, [b'{"text": "still serving"}'])
        assert status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
