"""Function instances: each one a long-lived worker process (local/fc/worker.py) running one call at a time,
as FC's python runtime does (instance concurrency 1).

A process per instance gives what an in-process call cannot: the function's own environment
(spec.environment, FC_*, ALIBABA_CLOUD_*) without touching the emulator's, a timeout enforced by killing the
instance, a crash (os._exit, a segfault) that costs one instance and not the emulator, and the initializer
run once per instance. Memory is not limited.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from local.fc.context import Credentials, FcContext
from local.fc.functions import FunctionSpec

UNHANDLED = "UnhandledInvocationError"
BOOT_TIMEOUT_SECONDS = 30.0
_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding the `local` package
_BOOTSTRAP = (
    "import sys; root = sys.argv[2]; sys.path[0] = root; "
    "from local.fc.worker import main; sys.exit(main(int(sys.argv[1]), root))"
)


@dataclass
class Outcome:
    """One call's result: the response body, or FC's error body."""

    body: bytes = b""
    error: dict[str, Any] | None = None
    logs: str = ""
    duration_ms: float = 0.0
    instance_id: str = ""
    error_type: str = field(default=UNHANDLED)

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failure(cls, message: str, error_type: str = "", **kwargs: Any) -> Outcome:
        error: dict[str, Any] = {"errorMessage": message}
        if error_type:
            error["errorType"] = error_type
        return cls(error=error, **kwargs)


def reserved_environment(
    spec: FunctionSpec, credentials: Credentials, *, region: str, account_id: str, instance_id: str
) -> dict[str, str]:
    """The variables FC sets in every instance (reference/fc.md §4.3, §8)."""
    return {
        "FC_FUNC_CODE_PATH": str(spec.code_uri),
        "FC_ACCOUNT_ID": account_id,
        "FC_REGION": region,
        "FC_SERVICE_NAME": spec.service,
        "FC_FUNCTION_NAME": spec.name,
        "FC_FUNCTION_HANDLER": spec.handler,
        "FC_FUNCTION_MEMORY_SIZE": str(spec.memory),
        "FC_TIMEOUT": str(max(1, round(spec.timeout))),
        "FC_RUNTIME": spec.runtime,
        "FC_INSTANCE_ID": instance_id,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": credentials.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": credentials.access_key_secret,
        "ALIBABA_CLOUD_SECURITY_TOKEN": credentials.security_token,
    }


def _function_output() -> int | None:
    """The function's stdout joins its stderr on the emulator's stderr, so stdout stays free for the caller."""
    try:
        return sys.__stderr__.fileno() if sys.__stderr__ is not None else None
    except (OSError, ValueError):
        return None


class Instance:
    """One worker process. Not thread-safe: the pool hands it to one caller at a time."""

    def __init__(self, spec: FunctionSpec, environment: Mapping[str, str], instance_id: str | None = None) -> None:
        self.spec = spec
        self.id = instance_id or uuid.uuid4().hex[:16]
        self.environment = dict(environment)
        self.initialized = False
        self._process: subprocess.Popen | None = None
        self._connection: Connection | None = None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        parent, child = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, str(child.fileno()), _ROOT],
                env=self.environment,
                cwd=self.spec.code_uri,
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=_function_output(),
            )
        except OSError:
            parent.close()
            raise
        finally:
            child.close()
        self._connection = Connection(parent.detach())
        try:
            self._connection.send(
                {
                    "code_uri": str(self.spec.code_uri),
                    "python_path": [str(p) for p in self.spec.python_path],
                    "handler": self.spec.handler,
                    "initializer": self.spec.initializer,
                }
            )
            if self._connection.poll(BOOT_TIMEOUT_SECONDS) and self._connection.recv().get("ready"):
                return
        except (OSError, EOFError):
            pass
        self.kill()
        raise OSError(f"the worker process did not start within {BOOT_TIMEOUT_SECONDS:g} seconds")

    def initialize(self, context: FcContext) -> Outcome:
        message = {"op": "init", "context": context.to_dict()}
        outcome = self._call(message, self.spec.init_timeout, "Function initialization")
        self.initialized = outcome.ok
        return outcome

    def invoke(self, event: bytes, context: FcContext) -> Outcome:
        return self._call({"op": "invoke", "event": event, "context": context.to_dict()}, self.spec.timeout, "Function")

    def _call(self, message: dict[str, Any], timeout: float, what: str) -> Outcome:
        started = time.monotonic()
        connection = self._connection
        if connection is None or not self.alive:
            return Outcome.failure("Process exited unexpectedly before completing request", instance_id=self.id)
        try:
            connection.send(message)
            ready = connection.poll(timeout)
        except (OSError, EOFError):
            ready = True  # the recv below reports the broken instance
        elapsed = (time.monotonic() - started) * 1000
        if not ready:
            self.kill()
            return Outcome.failure(
                f"{what} timed out after {timeout:g} seconds", duration_ms=elapsed, instance_id=self.id
            )
        try:
            reply = connection.recv()
        except (OSError, EOFError):
            self.kill()
            return Outcome.failure(
                f"Process exited unexpectedly before completing request (duration: {elapsed:.0f}ms)",
                duration_ms=elapsed,
                instance_id=self.id,
            )
        return Outcome(
            body=reply.get("body", b""),
            error=None if reply["ok"] else reply["error"],
            logs=reply.get("logs", ""),
            duration_ms=reply.get("duration_ms", elapsed),
            instance_id=self.id,
        )

    def kill(self, close_connection: bool = True) -> None:
        """Ends the process. A caller blocked in a call on another thread sees EOF and closes the connection
        itself (close_connection=False), so a descriptor is never closed under a thread still reading it."""
        if self._process is not None:
            if self._process.poll() is None:
                with contextlib.suppress(OSError):
                    self._process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
        if close_connection and self._connection is not None:
            with contextlib.suppress(OSError):
                self._connection.close()
            self._connection = None


class InstancePool:
    """The instances of one function: reuses an idle one, starts a new one up to `max_instances`, else waits."""

    def __init__(
        self,
        spec: FunctionSpec,
        environment: Callable[[str], Mapping[str, str]],
        context_for_initializer: Callable[[], FcContext],
        max_instances: int = 4,
    ) -> None:
        self.spec = spec
        self._environment = environment
        self._init_context = context_for_initializer
        self._max = max(1, max_instances)
        self._idle: list[Instance] = []
        self._all: set[Instance] = set()
        self._closed = False
        self._changed = threading.Condition()

    @property
    def size(self) -> int:
        with self._changed:
            return len(self._all)

    def invoke(self, event: bytes, context: FcContext) -> Outcome:
        instance = self._acquire()
        if instance is None:
            return Outcome.failure("the emulator is stopping", error_type="InstanceStopped")
        try:
            if not instance.alive and not instance.initialized:
                try:
                    instance.start()
                except OSError as exc:
                    return Outcome.failure(f"cannot start an instance: {exc}", error_type=type(exc).__name__)
            if not instance.initialized:
                outcome = instance.initialize(self._init_context())
                if not outcome.ok:
                    instance.kill()  # FC retries a failed initializer on a new instance
                    return outcome
            return instance.invoke(event, context)
        finally:
            self._release(instance)

    def _acquire(self) -> Instance | None:
        with self._changed:
            while True:
                if self._closed:
                    return None
                while self._idle:
                    instance = self._idle.pop()
                    if instance.alive:
                        return instance
                    instance.kill()  # died while idle
                    self._all.discard(instance)
                if len(self._all) < self._max:
                    instance_id = uuid.uuid4().hex[:16]
                    instance = Instance(self.spec, self._environment(instance_id), instance_id)
                    self._all.add(instance)
                    return instance
                self._changed.wait()

    def _release(self, instance: Instance) -> None:
        with self._changed:
            if instance.alive and not self._closed:
                self._idle.append(instance)
            else:
                instance.kill()
                self._all.discard(instance)
            self._changed.notify()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            idle, busy = list(self._idle), [i for i in self._all if i not in self._idle]
            self._idle.clear()
            self._all.clear()
            self._changed.notify_all()
        for instance in idle:
            instance.kill()
        for instance in busy:
            instance.kill(close_connection=False)
