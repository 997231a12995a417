"""The region's network: a dedicated VPC, or the existing one in the config.

A dedicated VPC has a public and a private subnet in each of two availability
zones. The load balancer sits in the public subnets, which route to an
internet gateway. The instances sit in the private subnets, which have no
route out, so they reach Systems Manager through interface VPC endpoints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from infra.errors import UserError
from infra.plan import Action
from infra.rollout.context import PENDING, RegionContext

log = logging.getLogger(__name__)

VPC_CIDR = "10.64.0.0/16"
PUBLIC_CIDRS = ("10.64.0.0/20", "10.64.16.0/20")
PRIVATE_CIDRS = ("10.64.128.0/20", "10.64.144.0/20")
# Marks a dedicated VPC's subnet as public or private.
TIER = "notary:subnet-tier"
# Interface endpoints the SSM agent needs when the subnet has no internet route.
SSM_ENDPOINT_SERVICES = ("ssm", "ssmmessages", "ec2messages")


@dataclass(frozen=True)
class Network:
    vpc_id: str
    cidr: str
    public_subnets: tuple[str, ...]
    private_subnets: tuple[str, ...]
    # False for an existing VPC from the config, which destroy leaves alone.
    dedicated: bool


def ensure_network(ctx: RegionContext) -> Network:
    """Find or create the region's VPC, subnets, gateway and route table."""
    existing = ctx.config.region(ctx.region).vpc
    if existing is not None:
        return _existing_network(ctx, existing.vpc_id, existing)
    vpc_id = _ensure_vpc(ctx)
    public = tuple(_ensure_subnet(ctx, vpc_id, "public", index) for index in range(2))
    private = tuple(_ensure_subnet(ctx, vpc_id, "private", index) for index in range(2))
    _ensure_internet_route(ctx, vpc_id, public)
    ctx.step_done("network")
    return Network(vpc_id, VPC_CIDR, public, private, dedicated=True)


def _existing_network(ctx: RegionContext, vpc_id: str, existing: Any) -> Network:
    ec2 = ctx.client("ec2")
    vpc = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
    ctx.record("vpc", vpc_id, Action.UNCHANGED, "existing VPC from the config")
    return Network(
        vpc_id,
        vpc["CidrBlock"],
        tuple(existing.public_subnets),
        tuple(existing.private_subnets),
        dedicated=False,
    )


def find_vpc(ctx: RegionContext) -> dict[str, Any] | None:
    vpcs = ctx.client("ec2").describe_vpcs(Filters=ctx.tag_filters("vpc"))["Vpcs"]
    return vpcs[0] if vpcs else None


def _ensure_vpc(ctx: RegionContext) -> str:
    ec2 = ctx.client("ec2")
    vpc = find_vpc(ctx)
    if vpc is None:
        ctx.record("vpc", ctx.base_name, Action.CREATE, VPC_CIDR)
        if ctx.dry_run:
            return PENDING
        vpc = ec2.create_vpc(
            CidrBlock=VPC_CIDR, TagSpecifications=ctx.tag_specs("vpc", "vpc")
        )["Vpc"]
    else:
        ctx.record("vpc", vpc["VpcId"], Action.UNCHANGED)
    vpc_id = str(vpc["VpcId"])
    # Interface endpoints with private DNS need both attributes on.
    _ensure_vpc_attribute(ctx, vpc_id, "enableDnsSupport")
    _ensure_vpc_attribute(ctx, vpc_id, "enableDnsHostnames")
    return vpc_id


def _ensure_vpc_attribute(ctx: RegionContext, vpc_id: str, name: str) -> None:
    ec2 = ctx.client("ec2")
    key = name[0].upper() + name[1:]
    current = ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=name)[key]["Value"]
    if not current:
        ctx.record("vpc-attribute", f"{vpc_id} {name}", Action.UPDATE, "enable")
        if not ctx.dry_run:
            ec2.modify_vpc_attribute(VpcId=vpc_id, **{key: {"Value": True}})


def _zones(ctx: RegionContext) -> list[str]:
    """Return the first two available zones, by name, that offer the region's
    instance type."""
    ec2 = ctx.client("ec2")
    instance_type = ctx.config.instance_type_for(ctx.region)
    zones = ec2.describe_availability_zones(
        Filters=[
            {"Name": "state", "Values": ["available"]},
            {"Name": "zone-type", "Values": ["availability-zone"]},
        ]
    )["AvailabilityZones"]
    offerings = ec2.describe_instance_type_offerings(
        LocationType="availability-zone",
        Filters=[{"Name": "instance-type", "Values": [instance_type]}],
    )["InstanceTypeOfferings"]
    offered = {offering["Location"] for offering in offerings}
    usable = sorted(z["ZoneName"] for z in zones if z["ZoneName"] in offered)
    if len(usable) < 2:
        raise UserError(
            f"instance type {instance_type} is offered in {len(usable)} zones of "
            f"{ctx.region}, and a rollout needs two: choose another instance_type "
            "for this region"
        )
    return usable[:2]


def _ensure_subnet(ctx: RegionContext, vpc_id: str, tier: str, index: int) -> str:
    cidr = (PUBLIC_CIDRS if tier == "public" else PRIVATE_CIDRS)[index]
    name = f"{ctx.base_name}-{tier}-{index}"
    found = []
    if vpc_id != PENDING:
        found = ctx.client("ec2").describe_subnets(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc_id]},
                {"Name": "cidr-block", "Values": [cidr]},
            ]
        )["Subnets"]
    if found:
        ctx.record("subnet", found[0]["SubnetId"], Action.UNCHANGED, f"{tier} {cidr}")
        return str(found[0]["SubnetId"])
    ctx.record("subnet", name, Action.CREATE, f"{tier} {cidr}")
    if ctx.dry_run:
        return PENDING
    subnet = ctx.client("ec2").create_subnet(
        VpcId=vpc_id,
        CidrBlock=cidr,
        AvailabilityZone=_zones(ctx)[index],
        TagSpecifications=ctx.tag_specs("subnet", "subnet", **{TIER: tier}),
    )["Subnet"]
    return str(subnet["SubnetId"])


def _ensure_internet_route(
    ctx: RegionContext, vpc_id: str, public_subnets: tuple[str, ...]
) -> None:
    ec2 = ctx.client("ec2")
    gateways = ec2.describe_internet_gateways(
        Filters=ctx.tag_filters("internet-gateway")
    )["InternetGateways"]
    if gateways:
        gateway_id = gateways[0]["InternetGatewayId"]
        attached = [a["VpcId"] for a in gateways[0].get("Attachments", [])]
        ctx.record("internet-gateway", gateway_id, Action.UNCHANGED)
    else:
        ctx.record("internet-gateway", ctx.base_name, Action.CREATE)
        gateway_id, attached = PENDING, []
        if not ctx.dry_run:
            gateway_id = ec2.create_internet_gateway(
                TagSpecifications=ctx.tag_specs("internet-gateway", "internet-gateway")
            )["InternetGateway"]["InternetGatewayId"]
    if vpc_id not in attached:
        ctx.record("internet-gateway", gateway_id, Action.UPDATE, f"attach {vpc_id}")
        if not ctx.dry_run:
            ec2.attach_internet_gateway(InternetGatewayId=gateway_id, VpcId=vpc_id)
    _ensure_public_routes(ctx, vpc_id, gateway_id, public_subnets)


def _ensure_public_routes(
    ctx: RegionContext, vpc_id: str, gateway_id: str, public_subnets: tuple[str, ...]
) -> None:
    ec2 = ctx.client("ec2")
    tables = ec2.describe_route_tables(Filters=ctx.tag_filters("route-table"))[
        "RouteTables"
    ]
    if tables:
        table = tables[0]
        ctx.record("route-table", table["RouteTableId"], Action.UNCHANGED)
    else:
        ctx.record("route-table", f"{ctx.base_name}-public", Action.CREATE)
        if ctx.dry_run:
            table = {"RouteTableId": PENDING, "Routes": [], "Associations": []}
        else:
            table = ec2.create_route_table(
                VpcId=vpc_id,
                TagSpecifications=ctx.tag_specs("route-table", "route-table"),
            )["RouteTable"]
    table_id = table["RouteTableId"]
    has_default = any(
        route.get("DestinationCidrBlock") == "0.0.0.0/0"
        and route.get("GatewayId") == gateway_id
        for route in table.get("Routes", [])
    )
    if not has_default:
        ctx.record("route", f"{table_id} 0.0.0.0/0", Action.CREATE, gateway_id)
        if not ctx.dry_run:
            ec2.create_route(
                RouteTableId=table_id,
                DestinationCidrBlock="0.0.0.0/0",
                GatewayId=gateway_id,
            )
    associated = {a.get("SubnetId") for a in table.get("Associations", [])}
    for subnet_id in public_subnets:
        if subnet_id in associated:
            continue
        ctx.record("route-table-association", subnet_id, Action.CREATE, table_id)
        if not ctx.dry_run:
            ec2.associate_route_table(RouteTableId=table_id, SubnetId=subnet_id)


def ensure_ssm_endpoints(
    ctx: RegionContext, network: Network, security_group_id: str
) -> None:
    """Create the interface endpoints that let the SSM agent work without a
    route to the internet."""
    ec2 = ctx.client("ec2")
    found: dict[str, dict[str, Any]] = {}
    if network.vpc_id != PENDING:
        endpoints = ec2.describe_vpc_endpoints(
            Filters=[
                {"Name": "vpc-id", "Values": [network.vpc_id]},
                *ctx.tag_filters("vpc-endpoint"),
            ]
        )["VpcEndpoints"]
        for endpoint in endpoints:
            if endpoint.get("State", "").lower() not in ("deleting", "deleted"):
                found[endpoint["ServiceName"]] = endpoint
    for service in SSM_ENDPOINT_SERVICES:
        service_name = f"com.amazonaws.{ctx.region}.{service}"
        if service_name in found:
            endpoint_id = found[service_name]["VpcEndpointId"]
            ctx.record("vpc-endpoint", endpoint_id, Action.UNCHANGED, service)
            continue
        ctx.record("vpc-endpoint", service_name, Action.CREATE, "interface")
        if ctx.dry_run:
            continue
        ec2.create_vpc_endpoint(
            VpcEndpointType="Interface",
            VpcId=network.vpc_id,
            ServiceName=service_name,
            SubnetIds=list(network.private_subnets),
            SecurityGroupIds=[security_group_id],
            PrivateDnsEnabled=True,
            TagSpecifications=ctx.tag_specs("vpc-endpoint", "vpc-endpoint"),
        )
    ctx.step_done("endpoints")
