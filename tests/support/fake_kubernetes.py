"""A FAKE Kubernetes API server for tests: no cluster runs here, so this stands in for one.

It is a real HTTP server (http.server in a thread) that the official `kubernetes` client talks to, but
it implements only what `KubernetesExecutor` uses, with none of Kubernetes' behaviour beyond that:

- `batch/v1` Jobs: create (409 if the name exists; assigns uid/creationTimestamp), read, delete
  (records `propagationPolicy`/`gracePeriodSeconds`; removes the Job, its pods and the Secrets it owns,
  i.e. garbage collection is immediate whatever the policy).
- `v1` Secrets: create, read, merge-patch (a shallow merge of `metadata`), delete.
- `v1` Pods: list by an equality `labelSelector` (`a=b,c=d` only), delete (records the grace period and
  marks the pod terminating; nothing exits until the test says so).
- Creating a Job makes one Pending pod from its template, labelled `job-name=<job>` like the Job
  controller does. There is no scheduler, kubelet, admission or schema validation (tests check the
  manifests with `tests.support.kubernetes_schema`), no watch, no auth check (the bearer token is
  recorded in `requests`).

A test drives state transitions with `run`, `succeed`, `fail`, `waiting` and `deadline_exceeded`, and
inspects `jobs`, `secrets`, `pods` and `requests`.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


@dataclass
class FakeKubernetes:
    url: str = ""
    jobs: dict[Key, Obj] = field(default_factory=dict)
    secrets: dict[Key, Obj] = field(default_factory=dict)
    pods: dict[Key, Obj] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- what a test drives ---------------------------------------------------------------------

    def job_pod(self, namespace: str, job: str) -> Obj:
        with self.lock:
            for (ns, _), pod in self.pods.items():
                if ns == namespace and pod["metadata"]["labels"].get("job-name") == job:
                    return pod
        raise KeyError(f"no pod for job {namespace}/{job}")

    def run(self, namespace: str, job: str) -> None:
        """The pod is scheduled and its trainer container runs."""
        self._set(namespace, job, phase="Running", state={"running": {"startedAt": _now()}}, active=1)

    def succeed(self, namespace: str, job: str) -> None:
        self._set(namespace, job, phase="Succeeded", state=_terminated(0, "Completed"))
        self._condition(namespace, job, "Complete", None, succeeded=1)

    def fail(
        self,
        namespace: str,
        job: str,
        exit_code: int = 1,
        reason: str = "Error",
        pod_reason: str | None = None,
        pod_message: str | None = None,
    ) -> None:
        """The trainer exits with `exit_code` (`reason` "OOMKilled" for the kernel's OOM killer; a
        `pod_reason` of "Evicted" for an eviction) and the Job fails with BackoffLimitExceeded."""
        self._set(
            namespace,
            job,
            phase="Failed",
            state=_terminated(exit_code, reason),
            pod_reason=pod_reason,
            pod_message=pod_message,
        )
        self._condition(namespace, job, "Failed", "BackoffLimitExceeded", failed=1)

    def waiting(self, namespace: str, job: str, reason: str, message: str = "") -> None:
        """The container waits, e.g. `ImagePullBackOff` (the Job stays active)."""
        self._set(namespace, job, phase="Pending", state={"waiting": {"reason": reason, "message": message}})

    def deadline_exceeded(self, namespace: str, job: str) -> None:
        self._set(namespace, job, phase="Failed", state=_terminated(143, "Error"))
        self._condition(namespace, job, "Failed", "DeadlineExceeded", failed=1)

    def calls(self, method: str, fragment: str = "") -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == method and fragment in r.path]

    def _set(
        self,
        namespace: str,
        job: str,
        *,
        phase: str,
        state: Obj,
        active: int | None = None,
        pod_reason: str | None = None,
        pod_message: str | None = None,
    ) -> None:
        pod = self.job_pod(namespace, job)
        with self.lock:
            container = pod["spec"]["containers"][0]
            pod["status"] = {
                "phase": phase,
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container.get("image", ""),
                        "imageID": "",
                        "ready": phase == "Running",
                        "restartCount": 0,
                        "state": state,
                    }
                ],
            }
            if pod_reason:
                pod["status"]["reason"] = pod_reason
            if pod_message:
                pod["status"]["message"] = pod_message
            if active is not None:
                self.jobs[(namespace, job)]["status"]["active"] = active

    def _condition(self, namespace: str, job: str, kind: str, reason: str | None, **counts: int) -> None:
        with self.lock:
            status = self.jobs[(namespace, job)]["status"]
            status.pop("active", None)
            status.update(counts)
            condition = {"type": kind, "status": "True", "lastTransitionTime": _now()}
            if reason:
                condition["reason"] = reason
            status.setdefault("conditions", []).append(condition)

    # -- the API --------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Obj]:
        parts = path.strip("/").split("/")
        # /apis/batch/v1/namespaces/{ns}/jobs[/{name}]  or  /api/v1/namespaces/{ns}/{secrets|pods}[/{name}]
        if parts[:3] == ["apis", "batch", "v1"] and len(parts) >= 6 and parts[5] == "jobs":
            namespace, rest = parts[4], parts[6:]
            store, kind = self.jobs, "jobs"
        elif parts[:2] == ["api", "v1"] and len(parts) >= 5 and parts[4] in ("secrets", "pods"):
            namespace, rest = parts[3], parts[5:]
            store, kind = (self.secrets, "secrets") if parts[4] == "secrets" else (self.pods, "pods")
        else:
            return 404, _status(404, "NotFound", f"the fake has no route {path}")
        with self.lock:
            if not rest:
                if method == "POST" and kind != "pods":
                    return self._create(store, kind, namespace, body)
                if method == "GET":
                    return 200, self._list(store, kind, namespace, query.get("labelSelector", ""))
                return 405, _status(405, "MethodNotAllowed", method)
            key = (namespace, rest[0])
            obj = store.get(key)
            if obj is None:
                return 404, _status(404, "NotFound", f'{kind} "{rest[0]}" not found')
            if method == "GET":
                return 200, copy.deepcopy(obj)
            if method == "PATCH":
                obj["metadata"].update((body or {}).get("metadata", {}))
                return 200, copy.deepcopy(obj)
            if method == "DELETE":
                return self._delete(kind, key, obj)
            return 405, _status(405, "MethodNotAllowed", method)

    def _create(self, store: dict[Key, Obj], kind: str, namespace: str, body: Obj) -> tuple[int, Obj]:
        name = body["metadata"]["name"]
        if (namespace, name) in store:
            return 409, _status(409, "AlreadyExists", f'{kind} "{name}" already exists')
        obj = copy.deepcopy(body)
        meta = obj["metadata"]
        meta.update(namespace=namespace, uid=secrets.token_hex(16), creationTimestamp=_now())
        if kind == "jobs":
            obj["status"] = {}
            template = obj["spec"]["template"]
            pod_name = f"{name}-{secrets.token_hex(3)}"
            labels = {**template.get("metadata", {}).get("labels", {}), "job-name": name}
            self.pods[(namespace, pod_name)] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": namespace,
                    "uid": secrets.token_hex(16),
                    "creationTimestamp": _now(),
                    "labels": labels,
                    "ownerReferences": [
                        {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": meta["uid"]}
                    ],
                },
                "spec": copy.deepcopy(template["spec"]),
                "status": {"phase": "Pending"},
            }
        store[(namespace, name)] = obj
        return 201, copy.deepcopy(obj)

    def _list(self, store: dict[Key, Obj], kind: str, namespace: str, selector: str) -> Obj:
        wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
        items = [
            copy.deepcopy(obj)
            for (ns, _), obj in store.items()
            if ns == namespace
            and all(obj["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
        ]
        list_kind = {"jobs": "JobList", "secrets": "SecretList", "pods": "PodList"}[kind]
        return {"apiVersion": "v1", "kind": list_kind, "metadata": {}, "items": items}

    def _delete(self, kind: str, key: Key, obj: Obj) -> tuple[int, Obj]:
        if kind == "pods":
            # Terminating: the kubelet would SIGTERM the container and wait the grace period.
            obj["metadata"]["deletionTimestamp"] = _now()
            return 200, copy.deepcopy(obj)
        store = self.jobs if kind == "jobs" else self.secrets
        del store[key]
        if kind == "jobs":  # garbage collection of what the Job owns
            uid = obj["metadata"]["uid"]
            for other in (self.pods, self.secrets):
                for k in [
                    k
                    for k, o in other.items()
                    if any(ref.get("uid") == uid for ref in o["metadata"].get("ownerReferences", []))
                ]:
                    del other[k]
        return 200, _status(200, None, "deleted")


def _terminated(exit_code: int, reason: str) -> Obj:
    return {
        "terminated": {"exitCode": exit_code, "reason": reason, "startedAt": _now(), "finishedAt": _now()}
    }


def _status(code: int, reason: str | None, message: str) -> Obj:
    status: Obj = {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "code": code,
    }
    if reason:
        status["reason"] = reason
    return status


def _handler(fake: FakeKubernetes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            with fake.lock:
                fake.requests.append(
                    Request(
                        self.command, url.path, query, body, {k.lower(): v for k, v in self.headers.items()}
                    )
                )
            code, payload = fake.handle(self.command, url.path, query, body)
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def run_fake_kubernetes() -> Iterator[FakeKubernetes]:
    """Serve a `FakeKubernetes` on a free local port for the duration of the block."""
    fake = FakeKubernetes()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
