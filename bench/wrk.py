"""wrk: installing it, its Lua scripts, running it and reading its summary."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Printed by every script's done(): the numbers, without parsing wrk's human text.
DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"status":%d,"connect":%d,' ..
    '"read":%d,"write":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read,
    e.write, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""

# args: METHOD [BODY]; one request formatted once per thread (wrk's fast path).
STATIC = r"""
init = function(args)
  wrk.method = args[1] or "GET"
  if args[2] and args[2] ~= "" then
    wrk.body = args[2]
    wrk.headers["Content-Type"] = "application/json"
  end
end
""" + DONE

# args: PREFIX DATA; POST {"name": PREFIX t<thread> n<counter>, "data": DATA}: a name no
# other request of this run uses (PREFIX differs between runs).
UNIQUE_POST = r"""
local threads = 0
local counter = 0
local prefix, data, head
setup = function(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
init = function(args)
  prefix = args[1] .. "t" .. tostring(tid) .. "n"
  data = args[2]
  wrk.headers["Content-Type"] = "application/json"
end
request = function()
  counter = counter + 1
  return wrk.format("POST", nil, nil,
                    '{"name":"' .. prefix .. counter .. '","data":"' .. data .. '"}')
end
""" + DONE


@dataclass
class WrkResult:
    requests: int
    seconds: float
    status_errors: int       # answers with status >= 400 ("Non-2xx or 3xx responses")
    socket_errors: int       # connect + read + write + timeout
    p50_ms: float
    p99_ms: float
    non2xx_text: int         # the same count read from wrk's own text, as a cross-check

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    print("wrk is missing: installing it from Debian's packages (apt-get install -y wrk)",
          flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    install = sudo + ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env).returncode != 0:
        subprocess.run(sudo + ["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("bench: wrk could not be installed")
    return path


def write_scripts(folder: Path) -> dict[str, Path]:
    scripts = {"static": folder / "static.lua", "unique_post": folder / "unique_post.lua"}
    scripts["static"].write_text(STATIC)
    scripts["unique_post"].write_text(UNIQUE_POST)
    return scripts


def run(url: str, script: Path, args: list[str], token: str, connections: int,
        threads: int, duration: float) -> WrkResult:
    threads = max(1, min(threads, connections))
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
               "--latency",
               "--timeout", "10s", "-s", str(script), "-H", f"Authorization: Bearer {token}",
               url, "--", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    match = re.search(r"^BENCHJSON (\{.*\})$", done.stdout, re.M)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[:500]}\n"
                           f"{done.stdout[-1000:]}")
    data = json.loads(match.group(1))
    text = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", done.stdout)
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        status_errors=data["status"],
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        p50_ms=data["p50"] / 1000,
        p99_ms=data["p99"] / 1000,
        non2xx_text=int(text.group(1)) if text else 0,
    )
