"""Broken echo: says hello in protocol 999, with raw pyzmq (not the SDK).

Exits 3 when the daemon rejects it (the expected outcome), 1 if the daemon
welcomes it anyway, 4 if the daemon never answers.
"""

import os
import sys

import zmq

import ipc
from skills._env import RuntimeEnv

PROTOCOL = 999
TOOLS = [
    ipc.ToolSpec("say", "Repeat text.", {"type": "object"}),
    ipc.ToolSpec("ping", 'Answer "pong".', {"type": "object"}, idempotent=True),
    ipc.ToolSpec("noop", "Do nothing.", {"type": "object"}),
    ipc.ToolSpec("fail", "Raise ValueError(message).", {"type": "object"}),
    ipc.ToolSpec("unencodable", "Return a value msgpack cannot encode.", {"type": "object"}),
    ipc.ToolSpec("big", "Return a string of n bytes.", {"type": "object"}),
    ipc.ToolSpec("env", "Return an environment variable.", {"type": "object"}),
]


def main() -> int:
    endpoint = os.environ.get(ipc.ENV_ENDPOINT)
    if not endpoint:
        print("run this under the zskill daemon", file=sys.stderr)
        return 2
    instance = os.environ.get(ipc.ENV_INSTANCE, f"echo-{os.getpid()}")
    # The secret comes through a pipe; read it as the SDK does, so that only
    # the protocol version is wrong.
    env = RuntimeEnv.from_environ()
    secret = env.secret if env is not None else ""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.ROUTING_ID, instance.encode())
    ipc.configure(sock)
    sock.connect(endpoint)
    hello = ipc.Hello(
        protocol=PROTOCOL,
        skill="echo",
        version=os.environ.get("ECHO_VERSION", "2.0.0-wrong-protocol"),
        instance=instance,
        pid=os.getpid(),
        concurrency=8,
        tools=TOOLS,
        has_health=False,
        secret=secret,
    )
    sock.send_multipart(ipc.encode(hello))
    try:
        if not sock.poll(30_000):
            print("no answer from the daemon", file=sys.stderr)
            return 4
        answer = ipc.decode(sock.recv_multipart())
        print(f"wrong_protocol: the daemon answered {answer!r}", file=sys.stderr)
        return 3 if isinstance(answer, ipc.Reject) else 1
    finally:
        sock.close(linger=0)
        ctx.term()


if __name__ == "__main__":
    sys.exit(main())
