"""Invoke entry point: `invoke --list` shows every task.

The tasks are thin: each parses options and calls library code in `infra/`,
`enclave/` or `healthcheck/`. Each module in `infra/cli/` lists its tasks in
TASKS; the enclave and emulator tasks get their own namespaces.
"""

from invoke import Collection

from infra.cli import bake, copy, core, demo, enclave, health, rollout, verify

namespace = Collection()
for module in (bake, copy, rollout, health, verify, demo):
    for task in module.TASKS:
        namespace.add_task(task)
namespace.add_task(core.validate)
namespace.add_collection(Collection("emulator", core.start, core.stop, core.status))
namespace.add_collection(Collection("enclave", *enclave.TASKS))
