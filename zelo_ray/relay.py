"""Progress lines from Ray workers, shown once on the driver's console.

With Ray's worker output kept off the console (see :func:`zelo_ray.raysession.ensure_ray`), a
long worker-side loop (training) still reports to the person watching: each line goes through a
small queue actor to a thread of the driver, which logs it. Workers on any node can reach it; a
worker whose relay is gone goes on training and only its log file has the line.

    with LineRelay(log=print) as relay:
        trainer = TorchTrainer(..., train_loop_config={"relay": relay.queue, ...})
        trainer.fit()

    # in the worker: a line for the console, and optionally a record the driver keeps
    say(cfg.get("relay"), f"[train] step {step}/{total} ...", step=step, loss=loss)
    relay.records  # → [{"step": ..., "loss": ...}, ...] on the driver
"""

from __future__ import annotations

import threading

__all__ = ["LineRelay", "say"]


def say(queue, line: str, *, show: bool = True, **record) -> None:
    """Print ``line`` in the worker (its log file) and send it to the driver, with ``record``
    (numbers worth keeping, e.g. a training curve's point) when given; ``show=False`` keeps the
    line off the console (the driver still keeps the record)."""
    print(line, flush=True)
    if queue is None:
        return
    try:
        queue.put({"line": line, "record": record or None, "show": show}, timeout=10)
    except Exception:  # noqa: BLE001 - the console is a convenience: training never stops for it
        pass


class LineRelay:
    """A queue actor (no CPU reserved) and a driver thread that logs what arrives in it."""

    def __init__(self, log, indent: str = "      "):
        self.log, self.indent = log, indent
        self.queue = None
        self.records: list[dict] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "LineRelay":
        from ray.util.queue import Queue

        from zelo_ray.raysession import beside_this_process

        self.queue = Queue(actor_options={"num_cpus": 0, **beside_this_process()})
        self._thread = threading.Thread(target=self._pump, name="zelo-line-relay", daemon=True)
        self._thread.start()
        return self

    def _pump(self) -> None:
        from ray.exceptions import ActorDiedError
        from ray.util.queue import Empty

        while not self._stop.is_set():
            try:
                self._show(self.queue.get(timeout=0.5))
            except Empty:
                continue
            except ActorDiedError:
                return  # the queue is gone for good: nothing more will arrive
            except Exception:  # noqa: BLE001 - a node of the cluster was lost meanwhile: the queue lives on
                self._stop.wait(0.5)

    def _show(self, item: dict) -> None:
        if item.get("show", True):
            self.log(self.indent + item["line"])
        if item.get("record"):
            self.records.append(item["record"])

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            while True:  # what arrived after the last poll, until Empty (or the actor is gone)
                self._show(self.queue.get_nowait())
        except Exception:  # noqa: BLE001
            pass
        try:
            self.queue.shutdown()
        except Exception:  # noqa: BLE001
            pass
