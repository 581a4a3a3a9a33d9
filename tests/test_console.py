"""What a user sees on the console: Ray's worker output and Ray Data's progress reports stay in
Ray's log files unless asked for (`zelo --verbose`), and worker progress that matters reaches the
driver's console once, through the line relay."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import ray, ray.data
    from zelo_ray.config import RayConfig
    from zelo_ray.raysession import ensure_ray
    from zelo_ray.relay import LineRelay, say

    ensure_ray(RayConfig(num_cpus=1))

    class Work:
        def __call__(self, batch):
            print("worker-internal chatter", flush=True)
            return batch

    @ray.remote(num_cpus=0)
    def progress(queue):
        for i in range(3):
            say(queue, f"[job] step {i}")

    assert ray.data.range(200).map_batches(Work, compute=ray.data.ActorPoolStrategy(size=1)).count() == 200
    with LineRelay(lambda line: print(line, flush=True), indent="> ") as relay:
        ray.get(progress.remote(relay.queue))
    print("done", flush=True)
""")


def _run(tmp_path, **env) -> tuple[str, str]:
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=180,
                       env={**os.environ, "RAY_TMPDIR": str(tmp_path), **env})
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout, r.stderr


def test_the_console_is_quiet_by_default_and_relayed_lines_arrive_once(ray_tmp):
    stdout, stderr = _run(ray_tmp)
    assert stdout.splitlines() == [f"> [job] step {i}" for i in range(3)] + ["done"]
    for noise in ("worker-internal chatter", "Running Dataset", "Total Progress", "Token authentication",
                  "Progress bars disabled", "execution finished"):
        assert noise not in stderr, noise


def test_verbose_shows_ray_worker_output(ray_tmp):
    stdout, stderr = _run(ray_tmp, ZELO_VERBOSE="1")
    out = stdout + stderr
    assert "worker-internal chatter" in out
    assert sum(line.endswith("[job] step 0") for line in out.splitlines()) >= 1


def test_library_logs_and_warnings_go_to_the_run_directory(tmp_path, capsys):
    """What libraries say while a command runs lands in <workdir>/logs/zelo.log, not on the
    console; --verbose keeps warnings on the console too."""
    import logging
    import warnings

    from zelo_ray.runlog import run_log

    with run_log(tmp_path) as path:
        logging.getLogger("some.library").info("connection pool ready")
        warnings.warn("an internal deprecation", DeprecationWarning, stacklevel=1)
        logging.getLogger("zelo_ray.data.collection").warning("corpus.jsonl: 2 empty documents kept")
    err = capsys.readouterr().err
    assert "2 empty documents kept" in err and "2 empty documents kept" in path.read_text()
    text = path.read_text()
    assert path == tmp_path / "logs" / "zelo.log"
    assert "connection pool ready" in text and "an internal deprecation" in text
    assert "an internal deprecation" not in err and "connection pool ready" not in err
    assert not logging.getLogger().handlers or all(
        getattr(h, "baseFilename", None) != str(path) for h in logging.getLogger().handlers)  # removed after
    with run_log(None):  # no run directory: nothing written, nothing changed
        pass
