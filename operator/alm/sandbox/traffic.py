"""The sandbox's traffic generator: steady tasks to an Agent's running pods, from a thread.

The emulated API server has no Service proxy, so the generator does what the Service would:
it reads the Agent's Running pods (their ``http`` port is a real local ``alm-agent`` process)
and spreads requests over them, refreshing the list as pods come and go. A failed task (HTTP
500) is still a task; a pod going away is skipped.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from alm.kube.api import Kube

__all__ = ["Traffic", "post_task"]


def post_task(address: str, text: str, timeout: float = 5) -> bool:
    """POST one task to the runtime at ``host:port``; True when the agent answered at all.

    A failed task answers HTTP 500 and still counts (it is a task the agent measured); only an
    agent that cannot be reached (a pod going away) is False.
    """
    request = urllib.request.Request(f"http://{address}/v1/tasks", method="POST",
                                     data=json.dumps({"input": text}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


class Traffic:
    def __init__(self, kube: Kube, namespace: str, agent: str, pause: float = 0.02) -> None:
        self.kube, self.namespace, self.agent, self.pause = kube, namespace, agent, pause
        self.sent = 0
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alm-sandbox-traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(15)

    def _ports(self) -> list[int]:
        pods: list[dict[str, Any]] = self.kube.list("Pod", self.namespace, {"alm.dev/agent": self.agent})
        ports = []
        for pod in pods:
            if (pod.get("status") or {}).get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
                continue
            for port in pod["spec"]["containers"][0].get("ports") or []:
                if port.get("name") == "http":
                    ports.append(int(port["containerPort"]))
        return ports

    def _run(self) -> None:
        i, ports, refreshed = 0, list[int](), 0.0
        while not self._stop.is_set():
            if time.monotonic() - refreshed > 0.25 or not ports:  # a new canary pod gets traffic at once
                refreshed = time.monotonic()
                try:
                    ports = self._ports()
                except Exception:  # the API server is going away: try again, or stop
                    ports = []
            for port in ports:
                self.sent += 1
                if post_task(f"127.0.0.1:{port}", f"Where is my order #{1000 + i}?"):
                    self.answered += 1
            i += 1
            self._stop.wait(self.pause if ports else 0.2)
