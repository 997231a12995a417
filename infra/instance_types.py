"""Instance types that can host a Nitro Enclave, known without an AWS call.

Validation runs before any AWS call, so it checks the instance type against
this table. AWS keeps the authority: with `target: aws` the rollout also reads
`NitroEnclavesSupport` from DescribeInstanceTypes.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceType:
    vcpus: int
    memory_mib: int
    enclaves: bool
    graviton: bool = False

    @property
    def parent_vcpus(self) -> int:
        """vCPUs the parent instance keeps: one full core (two threads on x86)."""
        return 1 if self.graviton else 2


# Figures from DescribeInstanceTypes. Enclaves need at least 4 vCPUs on Intel
# and AMD, 2 on Graviton, and are not offered on T3, T3a, T4g, A1, C7i, M7i or
# R7i, among others.
INSTANCE_TYPES: dict[str, InstanceType] = {
    "m5.large": InstanceType(2, 8192, False),
    "m5.xlarge": InstanceType(4, 16384, True),
    "m5.2xlarge": InstanceType(8, 32768, True),
    "m5.4xlarge": InstanceType(16, 65536, True),
    "m6i.xlarge": InstanceType(4, 16384, True),
    "m6i.2xlarge": InstanceType(8, 32768, True),
    "m6a.xlarge": InstanceType(4, 16384, True),
    "m6a.2xlarge": InstanceType(8, 32768, True),
    "c5.xlarge": InstanceType(4, 8192, True),
    "c5.2xlarge": InstanceType(8, 16384, True),
    "c6i.xlarge": InstanceType(4, 8192, True),
    "c6i.2xlarge": InstanceType(8, 16384, True),
    "c6a.xlarge": InstanceType(4, 8192, True),
    "c6a.2xlarge": InstanceType(8, 16384, True),
    "r5.xlarge": InstanceType(4, 32768, True),
    "r6i.xlarge": InstanceType(4, 32768, True),
    "m6g.large": InstanceType(2, 8192, True, graviton=True),
    "m6g.xlarge": InstanceType(4, 16384, True, graviton=True),
    "c6g.large": InstanceType(2, 4096, True, graviton=True),
    "c6g.xlarge": InstanceType(4, 8192, True, graviton=True),
    "c7g.xlarge": InstanceType(4, 8192, True, graviton=True),
    "t3.xlarge": InstanceType(4, 16384, False),
    "t3a.xlarge": InstanceType(4, 16384, False),
    "t4g.xlarge": InstanceType(4, 16384, False, graviton=True),
    "m7i.xlarge": InstanceType(4, 16384, False),
    "c7i.xlarge": InstanceType(4, 8192, False),
    "r7i.xlarge": InstanceType(4, 32768, False),
}

# Memory the parent keeps for its own OS, the bridge and the health service.
PARENT_MEMORY_MIB = 1024
