"""Child processes for crash tests: run a runner or a relay, to be killed with SIGKILL at a chosen line.

Usage: python procs.py runner-crash-before-offset-commit BOOTSTRAP URL SCHEMA TOPIC GROUP OUT_TOPIC
       python procs.py relay BOOTSTRAP URL SCHEMA
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from arrears_shared.db.engine import make_engine  # noqa: E402
from arrears_shared.stream.relay import OutboxRelay, make_producer  # noqa: E402
from arrears_shared.stream.runner import StreamRunner  # noqa: E402

from tests.backbone.support import recording_handler, settings  # noqa: E402


async def runner_crash(bootstrap: str, url: str, schema: str, topic: str, group: str, out_topic: str) -> None:
    s = settings(bootstrap, url, runner_max_batch=20)
    runner = StreamRunner(
        group=group,
        topics=[topic],
        handler=recording_handler(schema, out_topic),
        engine=make_engine(url),
        schema=schema,
        settings=s,
    )

    async def crash(*_a: object) -> None:  # the DB transaction has committed; the offsets have not
        print("CRASHING before offset commit", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    runner._commit = crash  # type: ignore[method-assign]
    await runner.run()


async def relay(bootstrap: str, url: str, schema: str) -> None:
    s = settings(bootstrap, url, outbox_batch=500)
    producer = make_producer(s, "crash-relay")
    await producer.start()
    print("RELAY started", flush=True)
    await OutboxRelay(
        engine=make_engine(url), schema=schema, producer=producer, settings=s, service="t"
    ).run()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "runner-crash-before-offset-commit":
        asyncio.run(runner_crash(*args))
    elif mode == "relay":
        asyncio.run(relay(*args))
    else:
        raise SystemExit(f"unknown mode {mode}")
