"""Routes Lambda invocations made by moto's ASL interpreter to the real handlers, in process.

moto cannot run Lambda code without Docker. Its interpreter calls Lambda through an ordinary boto3
client, so a botocore `before-call.lambda.Invoke` hook sees every invoke; answering it there
short-circuits the HTTP call. A handler's exception becomes `FunctionError: Unhandled` with the
exception's class name as errorType, exactly as the Lambda service reports it, so the ASL's
Retry/Catch `ErrorEquals` match our error class names.
"""

from __future__ import annotations

import importlib.util
import io
import itertools
import json
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote

import boto3
import botocore.handlers
from botocore.awsrequest import AWSResponse
from botocore.client import BaseClient
from botocore.compat import HTTPHeaders
from botocore.response import StreamingBody
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

Handler = Callable[[Any, Any], Any]
REPO_ROOT = Path(__file__).resolve().parents[3]
# The module-level name moto's Lambda Task states build their client with.
_CLIENT_FACTORY = "boto_client_for"


def load_handler(function_dir: str, repo_root: Path = REPO_ROOT) -> Handler:
    """Import functions/<dir>/app.py by path (each function's module is named `app` on Lambda)."""
    path = repo_root / "functions" / function_dir / "app.py"
    spec = importlib.util.spec_from_file_location(f"avatar_functions.{function_dir}.app", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler: Handler = module.lambda_handler
    return handler


@dataclass
class FakeLambdaContext:
    function_name: str
    memory_limit_in_mb: int = 512
    timeout_ms: int = 900_000
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    log_group_name: str = ""
    log_stream_name: str = ""
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        """Counts down from the invocation's start, like Lambda's."""
        return max(0, self.timeout_ms - int((time.monotonic() - self.started) * 1000))


@dataclass
class Invocation:
    function: str
    event: Any
    error_type: str | None


@dataclass
class InvocationScope:
    """The handler invocation the current thread works for (see CURRENT_INVOCATION)."""

    function: str  # the registered label: submit, poll, finalize, report_failure (or the function name)
    number: int  # the router's count of invocations, from 1
    event: Any
    # Set by the crash injector once the invocation "died": every later AWS or provider call in it fails.
    dead: bool = False


# The invocation being served, while a handler runs (None outside one): what lets the offline stack's
# crash injector act on handler code only, never on the harness's or moto's own calls.
CURRENT_INVOCATION: ContextVar[InvocationScope | None] = ContextVar("avatar_local_invocation", default=None)
_INVOCATION_NUMBERS = itertools.count(1)


def function_label(function_name: str) -> str:
    """submit / poll / finalize / report_failure / split for a function's (physical) name, else the name."""
    squashed = function_name.lower().replace("_", "").replace("-", "")
    for label in ("reportfailure", "submit", "poll", "finalize", "split"):
        if label in squashed:
            return "report_failure" if label == "reportfailure" else label
    return function_name


class LambdaRouter:
    """Maps function names (or ARNs) to handlers; install() hooks botocore, uninstall() unhooks.

    Like Lambda, each function has a pool of execution environments, each serving one invocation at
    a time: a module-level object in a handler (Powertools' BatchProcessor keeps the current batch
    on itself) is never shared by two concurrent invocations. An environment is a fresh import of
    the handler's module, made on demand (a cold start) and reused after.
    """

    def __init__(self) -> None:
        self._loaders: dict[str, Callable[[], Handler]] = {}
        self._idle: dict[str, list[Handler]] = {}
        self.cold_starts: Counter[str] = Counter()
        self._timeouts: dict[str, float] = {}
        self._lock = threading.Lock()
        self.invocations: list[Invocation] = []
        self.calls: Counter[str] = Counter()
        self._installed = False
        self._clients: dict[tuple[str, str], BaseClient] = {}
        self._original_client_for: Callable[..., BaseClient] = vars(lambda_eval_utils)[_CLIENT_FACTORY]

    def register(self, function_name: str, loader: Callable[[], Handler], timeout_seconds: float = 900.0) -> None:
        """`loader` makes a new execution environment (imports the handler afresh);
        `timeout_seconds` is what the context reports as remaining time (already time-scaled)."""
        self._loaders[function_name] = loader
        self._idle[function_name] = []
        self._timeouts[function_name] = timeout_seconds

    def _acquire(self, name: str) -> Handler:
        with self._lock:
            if self._idle[name]:
                return self._idle[name].pop()
            self.cold_starts[name] += 1
        return self._loaders[name]()

    def _release(self, name: str, handler: Handler) -> None:
        with self._lock:
            self._idle[name].append(handler)

    def invoke(self, function_name: str, event: Any) -> tuple[Any, str | None]:
        """Run a handler as Lambda would; returns (payload, function_error)."""
        name = function_name.rsplit(":function:", 1)[-1].split(":", 1)[0]
        if name not in self._loaders:
            raise KeyError(f"no handler registered for Lambda function {name!r}")
        handler = self._acquire(name)
        error_type: str | None = None
        runtime_died = False
        scope = InvocationScope(function=function_label(name), number=next(_INVOCATION_NUMBERS), event=event)
        token = CURRENT_INVOCATION.set(scope)
        try:
            context = FakeLambdaContext(function_name=name, timeout_ms=int(self._timeouts.get(name, 900.0) * 1000))
            payload = handler(event, context)
        except BaseException as exc:  # every handler error becomes a Lambda function error
            # Lambda names a dead runtime "Runtime.ExitError"; a simulated crash carries that name. A
            # crash that no handler code may catch (a BaseException) must carry it; anything else
            # that is not an Exception (KeyboardInterrupt, SystemExit) is not the handler's.
            crash_type = getattr(exc, "lambda_error_type", None)
            if not isinstance(exc, Exception) and crash_type is None:
                raise
            runtime_died = crash_type is not None
            error_type = str(crash_type or type(exc).__name__)
            payload = {
                "errorType": error_type,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_exception(exc)[-3:],
            }
        finally:
            CURRENT_INVOCATION.reset(token)
        if not runtime_died:
            # A runtime that died is gone, as on Lambda: the next invocation gets a fresh environment.
            self._release(name, handler)
        with self._lock:
            self.calls[name] += 1
            self.invocations.append(Invocation(function=name, event=event, error_type=error_type))
        return payload, ("Unhandled" if error_type else None)

    # --- botocore hook ---------------------------------------------------------------------------
    def _on_invoke(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        url_path = str(params.get("url_path", ""))
        marker = "/functions/"
        if marker not in url_path:
            return None
        name = unquote(url_path.split(marker, 1)[1].split("/", 1)[0])
        if name.rsplit(":function:", 1)[-1].split(":", 1)[0] not in self._loaders:
            return None
        body = params.get("body") or b"{}"
        event = json.loads(body.decode() if isinstance(body, bytes) else body)
        payload, function_error = self.invoke(name, event)
        raw = json.dumps(payload).encode()
        parsed: dict[str, Any] = {
            "StatusCode": 200,
            "ExecutedVersion": "$LATEST",
            "Payload": StreamingBody(io.BytesIO(raw), len(raw)),
        }
        if function_error:
            parsed["FunctionError"] = function_error
        return AWSResponse(url_path, 200, HTTPHeaders(), None), parsed

    def install(self) -> None:
        if self._installed:
            return
        botocore.handlers.BUILTIN_HANDLERS.append(("before-call.lambda.Invoke", self._on_invoke))
        # Sessions copy the handler list when created: start a fresh default session.
        boto3.DEFAULT_SESSION = None
        # moto's interpreter builds a new boto3 Lambda client for every Task state it runs (loading
        # the service model each time): a fifth of the offline stack's CPU under load. Reuse one per
        # region while this router is installed; the clients carry its hook, so they go with it.
        self._original_client_for = vars(lambda_eval_utils)[_CLIENT_FACTORY]
        vars(lambda_eval_utils)[_CLIENT_FACTORY] = self._client_for
        self._installed = True

    def uninstall(self) -> None:
        entry = ("before-call.lambda.Invoke", self._on_invoke)
        if entry in botocore.handlers.BUILTIN_HANDLERS:
            botocore.handlers.BUILTIN_HANDLERS.remove(entry)
        boto3.DEFAULT_SESSION = None
        if self._installed:
            vars(lambda_eval_utils)[_CLIENT_FACTORY] = self._original_client_for
            with self._lock:
                self._clients.clear()
        self._installed = False

    def _client_for(self, region: str, service: str, state_credentials: Any = None) -> BaseClient:
        with self._lock:
            key = (region, service)
            if key not in self._clients:
                self._clients[key] = self._original_client_for(region, service, state_credentials)
            return self._clients[key]
