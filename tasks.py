"""Invoke entry point: `invoke --list` shows every task.

The tasks are thin: each parses options and calls library code in `infra/`,
`enclave/` or `healthcheck/`.
"""

from invoke import Collection

from infra.tasks import core

namespace = Collection()
namespace.add_task(core.validate)

emulator = Collection("emulator")
emulator.add_task(core.start)
emulator.add_task(core.stop)
emulator.add_task(core.status)
namespace.add_collection(emulator)
