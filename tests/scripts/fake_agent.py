"""A stand-in for an agent command-line tool, for the CommandAdapter tests.

usage: fake_agent.py MODE [ARG]
  events  read the prompt on stdin; print events (JSON lines, plain text, blanks) and a result
  argv    print ARG back as a delta event (the prompt substituted into argv)
  json    read the run input as JSON on stdin; print its prompt back as a message event
  plain   print plain text lines and a usage event; no result object
  fail    print one event, write to stderr, exit with code 3
  hang    start a grandchild, print both pids as an event, then sleep until killed
"""

import json
import os
import subprocess
import sys
import time


def emit(obj: object) -> None:
    print(json.dumps(obj), flush=True)


def main() -> int:
    mode = sys.argv[1]
    if mode == "events":
        prompt = sys.stdin.read()
        emit({"type": "run_started"})
        emit({"type": "delta", "text": f"echo: {prompt}"})
        print("plain text line", flush=True)
        print("", flush=True)
        print("[1, 2]", flush=True)
        emit({"type": "tool_use", "data": {"tool": "ls"}, "metadata": {"step": 1}})
        emit({"type": "usage", "input_tokens": 5, "output_tokens": 7})
        emit({"type": "result", "output": {"answer": "42"}, "usage": {"input_tokens": 5}})
        return 0
    if mode == "argv":
        emit({"type": "delta", "text": sys.argv[2]})
        return 0
    if mode == "json":
        run_input = json.loads(sys.stdin.readline())
        emit({"type": "message", "data": {"content": run_input["prompt"]}})
        return 0
    if mode == "plain":
        print("thinking...", flush=True)
        emit({"type": "usage", "data": {"output_tokens": 2}})
        print("done thinking", flush=True)
        return 0
    if mode == "fail":
        emit({"type": "run_started"})
        print("fatal: model overloaded", file=sys.stderr, flush=True)
        return 3
    if mode == "hang":
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        emit({"type": "run_started", "data": {"pid": os.getpid(), "grandchild": grandchild.pid}})
        time.sleep(600)
        return 0
    print(f"unknown mode {mode!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
