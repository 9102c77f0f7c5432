"""Pipe ``saslkit sasl client`` into ``saslkit sasl server`` (real processes, both directions)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading

SASLKIT = [sys.executable, "-m", "saslkit"]


def pipe_exchange(env: dict[str, str], mech: str, user: str, secret: str, *extra: str,
                  timeout: float = 60) -> tuple[int, int, list[str]]:
    """Run one exchange; return (client exit, server exit, transcript lines "C: …"/"S: …")."""
    full_env = {**os.environ, **env}
    server = subprocess.Popen([*SASLKIT, "sasl", "server", "--mech", mech, *extra], env=full_env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    client = subprocess.Popen([*SASLKIT, "sasl", "client", "--mech", mech, "--user", user, *extra], env=full_env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert client.stdin and client.stdout and server.stdin and server.stdout
    client.stdin.write(secret + "\n")  # the first stdin line is the secret
    client.stdin.flush()
    transcript: list[str] = []

    def relay(src: io.TextIOBase, dst: io.TextIOBase, who: str) -> None:
        for line in src:
            transcript.append(f"{who}: {line.rstrip()}")
            try:
                dst.write(line)
                dst.flush()
            except (BrokenPipeError, ValueError):
                break
        try:
            dst.close()
        except BrokenPipeError:
            pass

    threads = [threading.Thread(target=relay, args=(client.stdout, server.stdin, "C")),
               threading.Thread(target=relay, args=(server.stdout, client.stdin, "S"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    return client.wait(timeout=timeout), server.wait(timeout=timeout), transcript
